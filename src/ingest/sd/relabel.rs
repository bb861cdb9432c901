//! Target relabelling with Prometheus's semantics (`relabel_configs`): pure, total (no input
//! makes it panic), compiled once per configuration.
//!
//! Actions: `replace`, `keep`, `drop`, `labelmap`, `labeldrop`, `labelkeep`. Regexes are anchored
//! at both ends and compiled by [`crate::labels::compile_regex`] (RE2 syntax, Go's repetition
//! limit). Missing source labels read as the empty string; a `replace` whose expanded target is
//! not a valid label name does nothing, and one whose result is empty removes the label
//! (Prometheus's `relabel.go`).

use std::collections::BTreeMap;

use regex::Regex;

use crate::config::sd::{TargetRelabelAction, TargetRelabelConfig};

/// A label set being relabelled: name → value, sorted.
pub type LabelMap = BTreeMap<String, String>;

/// One compiled step.
#[derive(Debug, Clone)]
pub struct Step {
    source_labels: Vec<String>,
    separator: String,
    regex: Regex,
    target_label: String,
    replacement: String,
    action: TargetRelabelAction,
}

/// Compiled `relabel_configs`.
#[derive(Debug, Clone, Default)]
pub struct Relabel {
    steps: Vec<Step>,
}

/// Occurs when a relabelling step does not compile (validation refuses these first).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("relabel_configs[{index}]: {message}")]
pub struct RelabelError {
    pub index: usize,
    pub message: String,
}

impl Relabel {
    /// Compiles the steps; the same checks as validation.
    pub fn compile(configs: &[TargetRelabelConfig]) -> Result<Relabel, RelabelError> {
        let mut steps = Vec::with_capacity(configs.len());
        for (index, c) in configs.iter().enumerate() {
            if let Some((_, message)) = crate::config::sd::relabel_problems(c).into_iter().next() {
                return Err(RelabelError { index, message });
            }
            let pattern = c.regex.as_ref().map_or("(.*)", |r| r.value.as_str());
            let regex = crate::labels::compile_regex(pattern).map_err(|e| RelabelError {
                index,
                message: e.to_string(),
            })?;
            steps.push(Step {
                source_labels: c.source_labels.clone(),
                separator: c.separator.clone().unwrap_or_else(|| ";".into()),
                regex,
                target_label: c.target_label.clone().unwrap_or_default(),
                replacement: c.replacement.clone().unwrap_or_else(|| "$1".into()),
                action: c.action,
            });
        }
        Ok(Relabel { steps })
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Applies every step in order; `None` when a `keep` or `drop` removed the target.
    pub fn apply(&self, mut labels: LabelMap) -> Option<LabelMap> {
        for step in &self.steps {
            if !step.apply(&mut labels) {
                return None;
            }
        }
        Some(labels)
    }
}

impl Step {
    /// One step; false when the target is dropped.
    fn apply(&self, labels: &mut LabelMap) -> bool {
        let value = || {
            self.source_labels
                .iter()
                .map(|l| labels.get(l).map_or("", String::as_str))
                .collect::<Vec<_>>()
                .join(&self.separator)
        };
        match self.action {
            TargetRelabelAction::Keep => self.regex.is_match(&value()),
            TargetRelabelAction::Drop => !self.regex.is_match(&value()),
            TargetRelabelAction::Replace => {
                let value = value();
                let Some(caps) = self.regex.captures(&value) else {
                    return true;
                };
                let mut target = String::new();
                caps.expand(&self.target_label, &mut target);
                if !crate::labels::valid_label_name(&target) {
                    return true;
                }
                let mut result = String::new();
                caps.expand(&self.replacement, &mut result);
                if result.is_empty() {
                    labels.remove(&target);
                } else {
                    labels.insert(target, result);
                }
                true
            }
            TargetRelabelAction::Labelmap => {
                let mut added = Vec::new();
                for (name, v) in labels.iter() {
                    if let Some(caps) = self.regex.captures(name) {
                        let mut to = String::new();
                        caps.expand(&self.replacement, &mut to);
                        if crate::labels::valid_label_name(&to) {
                            added.push((to, v.clone()));
                        }
                    }
                }
                labels.extend(added);
                true
            }
            TargetRelabelAction::Labeldrop => {
                labels.retain(|name, _| !self.regex.is_match(name));
                true
            }
            TargetRelabelAction::Labelkeep => {
                labels.retain(|name, _| self.regex.is_match(name));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn compile(yaml: &str) -> Relabel {
        let configs: Vec<TargetRelabelConfig> = serde_saphyr::from_str(yaml).unwrap();
        Relabel::compile(&configs).unwrap()
    }

    /// Cases from Prometheus's documentation and `model/relabel/relabel_test.go`: (steps, input,
    /// expected output or None for dropped).
    #[test]
    fn relabelling_follows_prometheus_documented_examples() {
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(&str, Pairs, Option<Pairs>)] = &[
            // replace with a capture group into a new label
            (
                "[{source_labels: [a], regex: 'f(.*)', target_label: d, replacement: 'ch${1}-ch${1}'}]",
                &[("a", "foo"), ("b", "bar")],
                Some(&[("a", "foo"), ("b", "bar"), ("d", "choo-choo")]),
            ),
            // several source labels joined with the separator
            (
                "[{source_labels: [a, b], separator: ';', regex: '(.*);(.*)', target_label: c, replacement: '$2-$1'}]",
                &[("a", "foo"), ("b", "bar")],
                Some(&[("a", "foo"), ("b", "bar"), ("c", "bar-foo")]),
            ),
            // no match: nothing changes
            (
                "[{source_labels: [a], regex: 'x(.*)', target_label: d}]",
                &[("a", "foo")],
                Some(&[("a", "foo")]),
            ),
            // the regex is anchored: a match inside the value is no match
            (
                "[{source_labels: [a], regex: 'o', target_label: d, replacement: hit}]",
                &[("a", "foo")],
                Some(&[("a", "foo")]),
            ),
            // an empty replacement result removes the target label
            (
                "[{source_labels: [a], regex: '.*', target_label: b, replacement: ''}]",
                &[("a", "foo"), ("b", "bar")],
                Some(&[("a", "foo")]),
            ),
            // an invalid expanded target label does nothing
            (
                "[{source_labels: [a], regex: '(.*)', target_label: '${1}', replacement: x}]",
                &[("a", "1bad")],
                Some(&[("a", "1bad")]),
            ),
            // the target label expanded from the match
            (
                "[{source_labels: [a], regex: 'some-([^-]+)-(.*)', target_label: '${1}', replacement: '${2}'}]",
                &[("a", "some-name-value")],
                Some(&[("a", "some-name-value"), ("name", "value")]),
            ),
            // a missing source label reads as the empty string
            (
                "[{source_labels: [missing], regex: '', target_label: empty, replacement: yes}]",
                &[("a", "foo")],
                Some(&[("a", "foo"), ("empty", "yes")]),
            ),
            // keep / drop
            (
                "[{source_labels: [a], regex: 'f.*', action: keep}]",
                &[("a", "foo")],
                Some(&[("a", "foo")]),
            ),
            (
                "[{source_labels: [a], regex: 'b.*', action: keep}]",
                &[("a", "foo")],
                None,
            ),
            (
                "[{source_labels: [a], regex: 'f.*', action: drop}]",
                &[("a", "foo")],
                None,
            ),
            (
                "[{source_labels: [a], regex: 'b.*', action: drop}]",
                &[("a", "foo")],
                Some(&[("a", "foo")]),
            ),
            // labelmap: Kubernetes' documented use, __meta_x_label_(.+) → $1
            (
                "[{action: labelmap, regex: '__meta_x_label_(.+)'}]",
                &[
                    ("__meta_x_label_app", "web"),
                    ("__meta_x_label_team", "ops"),
                    ("a", "1"),
                ],
                Some(&[
                    ("__meta_x_label_app", "web"),
                    ("__meta_x_label_team", "ops"),
                    ("a", "1"),
                    ("app", "web"),
                    ("team", "ops"),
                ]),
            ),
            // labeldrop / labelkeep over names
            (
                "[{action: labeldrop, regex: 'b.*'}]",
                &[("a", "1"), ("b1", "2"), ("b2", "3")],
                Some(&[("a", "1")]),
            ),
            (
                "[{action: labelkeep, regex: 'b.*'}]",
                &[("a", "1"), ("b1", "2"), ("b2", "3")],
                Some(&[("b1", "2"), ("b2", "3")]),
            ),
            // the documented default: replace with (.*) and $1 copies the value
            (
                "[{source_labels: [__address__], target_label: instance}]",
                &[("__address__", "host:9100")],
                Some(&[("__address__", "host:9100"), ("instance", "host:9100")]),
            ),
            // the documented `__address__` rewrite: keep the host, change the port
            (
                "[{source_labels: [__address__], regex: '([^:]+)(?::\\d+)?', target_label: __address__, replacement: '$1:9100'}]",
                &[("__address__", "host:80")],
                Some(&[("__address__", "host:9100")]),
            ),
            // steps apply in order: a later keep sees what an earlier replace wrote
            (
                "[{source_labels: [a], target_label: b, replacement: kept}, {source_labels: [b], regex: kept, action: keep}]",
                &[("a", "x")],
                Some(&[("a", "x"), ("b", "kept")]),
            ),
        ];
        for (i, (steps, input, want)) in cases.iter().enumerate() {
            let got = compile(steps).apply(labels(input));
            let want = want.map(labels);
            assert_eq!(got, want, "case {i}: {steps}");
        }
    }

    #[test]
    fn steps_that_cannot_work_are_refused() {
        for bad in [
            "[{source_labels: [a], regex: '('}]",
            "[{source_labels: [a]}]",
            "[{action: keep}]",
            "[{action: labeldrop, regex: a, target_label: b}]",
            "[{action: replace, target_label: '1x'}]",
            "[{source_labels: [a], target_label: b, regex: '(a{1000}){1000}'}]",
        ] {
            let configs: Vec<TargetRelabelConfig> = serde_saphyr::from_str(bad).unwrap();
            assert!(Relabel::compile(&configs).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// Any steps that compile, over any labels, return without panicking, and every label
        /// the result holds is a valid name.
        #[test]
        fn relabelling_never_panics(
            regex in "[a-z_.*()$1|\\\\]{0,12}",
            replacement in "[a-z_${}0-9]{0,10}",
            target in "[a-z_${}0-9]{0,8}",
            action in 0usize..6,
            values in proptest::collection::vec(("[a-z_]{1,6}", "\\PC{0,12}"), 0..6),
        ) {
            let action = ["replace", "keep", "drop", "labelmap", "labeldrop", "labelkeep"][action];
            let mut c = TargetRelabelConfig {
                source_labels: values.iter().map(|(k, _)| k.clone()).take(2).collect(),
                separator: None,
                regex: Some(serde_saphyr::Spanned::new(regex.clone(), serde_saphyr::Location::UNKNOWN, serde_saphyr::Location::UNKNOWN)),
                target_label: Some(target.clone()),
                replacement: Some(replacement.clone()),
                action: serde_saphyr::from_str(action).unwrap(),
            };
            if matches!(action, "labeldrop" | "labelkeep") {
                c.source_labels.clear();
                c.target_label = None;
                c.replacement = None;
            }
            if let Ok(r) = Relabel::compile(&[c]) {
                let input: LabelMap = values.into_iter().collect();
                let before: Vec<String> = input.keys().cloned().collect();
                if let Some(out) = r.apply(input) {
                    for k in out.keys() {
                        proptest::prop_assert!(
                            before.contains(k) || crate::labels::valid_label_name(k),
                            "{k:?}"
                        );
                    }
                }
            }
        }
    }
}
