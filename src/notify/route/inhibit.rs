//! Inhibition rules (`inhibit_rules`): while an alert matching a rule's source matchers fires,
//! alerts matching its target matchers with the same `equal` labels are not sent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::{
    RouteError, RouteErrorKind, RouteErrors, label, lenient_spanned_map, matches_all, values,
};
use crate::labels::Labels;
use crate::labels::{self, MatchOp, Matcher};

/// One inhibition rule, as written: while an alert matching the source matchers fires, alerts
/// matching the target matchers that have the same values for the `equal` labels are not sent.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRuleConfig {
    /// Matchers the inhibiting (source) alert must satisfy, e.g. `alertname="TargetDown"`.
    #[serde(default)]
    pub source_matchers: Vec<Spanned<String>>,
    /// Matchers the inhibited (target) alert must satisfy, e.g. `severity="warning"`.
    #[serde(default)]
    pub target_matchers: Vec<Spanned<String>>,
    /// Labels that must have the same value in source and target (a label missing from both
    /// counts as equal).
    #[serde(default)]
    pub equal: Vec<Spanned<String>>,
    /// Deprecated Alertmanager form of `source_matchers`: label name → exact value.
    #[serde(default, deserialize_with = "lenient_spanned_map")]
    pub source_match: BTreeMap<String, Spanned<String>>,
    /// Deprecated Alertmanager form of `source_matchers`: label name → regex.
    #[serde(default, deserialize_with = "lenient_spanned_map")]
    pub source_match_re: BTreeMap<String, Spanned<String>>,
    /// Deprecated Alertmanager form of `target_matchers`: label name → exact value.
    #[serde(default, deserialize_with = "lenient_spanned_map")]
    pub target_match: BTreeMap<String, Spanned<String>>,
    /// Deprecated Alertmanager form of `target_matchers`: label name → regex.
    #[serde(default, deserialize_with = "lenient_spanned_map")]
    pub target_match_re: BTreeMap<String, Spanned<String>>,
}

/// The compiled inhibition rules.
#[derive(Debug, Clone, Default)]
pub struct Inhibitor {
    rules: Vec<InhibitRule>,
}

#[derive(Debug, Clone)]
struct InhibitRule {
    source: Vec<Matcher>,
    target: Vec<Matcher>,
    equal: Vec<String>,
}

impl Inhibitor {
    /// Validates and compiles inhibition rules (paths `inhibit_rules[i]…`).
    pub fn new(rules: &[InhibitRuleConfig]) -> Result<Self, RouteErrors> {
        let mut errors = Vec::new();
        let inhibitor = Inhibitor::compile(rules, &mut errors);
        if errors.is_empty() {
            Ok(inhibitor)
        } else {
            Err(RouteErrors(errors))
        }
    }

    pub(super) fn compile(rules: &[InhibitRuleConfig], errors: &mut Vec<RouteError>) -> Inhibitor {
        let mut compiled = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let path = format!("inhibit_rules[{i}]");
            let before = errors.len();
            let source = side(
                &path,
                ("source_matchers", &r.source_matchers),
                ("source_match", &r.source_match),
                ("source_match_re", &r.source_match_re),
                errors,
            );
            let target = side(
                &path,
                ("target_matchers", &r.target_matchers),
                ("target_match", &r.target_match),
                ("target_match_re", &r.target_match_re),
                errors,
            );
            for (j, name) in r.equal.iter().enumerate() {
                if !labels::valid_label_name(&name.value) {
                    errors.push(RouteError {
                        path: format!("{path}.equal[{j}]"),
                        at: name.referenced,
                        kind: RouteErrorKind::InvalidLabelName(name.value.clone()),
                    });
                }
            }
            if errors.len() == before {
                compiled.push(InhibitRule {
                    source,
                    target,
                    equal: values(&r.equal),
                });
            }
        }
        Inhibitor { rules: compiled }
    }

    /// Whether the alert with labels `target` is inhibited by one of `firing_sources` (the
    /// labels of the alerts firing now; `target` itself may be among them). For some rule, the
    /// target matches the target matchers and a source matches the source matchers with equal
    /// values of the `equal` labels (absent on both counts as equal). As in Alertmanager, when
    /// the target also matches the source matchers, only sources that do not match the target
    /// matchers count, so an alert never inhibits itself (nor its peers of the same kind).
    pub fn inhibited(&self, target: &Labels, firing_sources: &[Labels]) -> bool {
        self.rules.iter().any(|rule| {
            if !matches_all(&rule.target, target) {
                return false;
            }
            let two_sided = matches_all(&rule.source, target);
            firing_sources.iter().any(|source| {
                matches_all(&rule.source, source)
                    && rule
                        .equal
                        .iter()
                        .all(|n| label(source, n) == label(target, n))
                    && !(two_sided && matches_all(&rule.target, source))
            })
        })
    }

    /// Whether there are no rules (nothing is ever inhibited).
    /// The number of inhibition rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl crate::notify::pipeline::Inhibits for Inhibitor {
    fn inhibited(&self, target: &Labels, sources: &[Labels]) -> bool {
        Inhibitor::inhibited(self, target, sources)
    }

    fn has_rules(&self) -> bool {
        !self.is_empty()
    }
}

/// Compiles one side of an inhibition rule from its new-style and legacy matchers.
fn side(
    path: &str,
    (matchers_field, matchers): (&str, &[Spanned<String>]),
    (eq_field, eq): (&str, &BTreeMap<String, Spanned<String>>),
    (re_field, re): (&str, &BTreeMap<String, Spanned<String>>),
    errors: &mut Vec<RouteError>,
) -> Vec<Matcher> {
    let mut out = Vec::new();
    for (name, value) in eq {
        if labels::valid_label_name(name) {
            out.push(Matcher::equal(name, &value.value));
        } else {
            errors.push(RouteError {
                path: format!("{path}.{eq_field}.{name}"),
                at: value.referenced,
                kind: RouteErrorKind::InvalidLabelName(name.clone()),
            });
        }
    }
    for (name, value) in re {
        let made = if labels::valid_label_name(name) {
            Matcher::new(MatchOp::Regex, name, &value.value).map_err(RouteErrorKind::Regex)
        } else {
            Err(RouteErrorKind::InvalidLabelName(name.clone()))
        };
        match made {
            Ok(m) => out.push(m),
            Err(kind) => errors.push(RouteError {
                path: format!("{path}.{re_field}.{name}"),
                at: value.referenced,
                kind,
            }),
        }
    }
    for (i, line) in matchers.iter().enumerate() {
        match labels::parse_matchers(&line.value) {
            Ok(ms) => out.extend(ms),
            Err(e) => errors.push(RouteError {
                path: format!("{path}.{matchers_field}[{i}]"),
                at: line.referenced,
                kind: RouteErrorKind::Matcher(e),
            }),
        }
    }
    out
}
