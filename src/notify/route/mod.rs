//! The routing tree, time intervals and inhibition rules, with Alertmanager's semantics and names:
//! `tree` (routes, grouping, route ids), `time_intervals`, `inhibit`; this module holds what
//! they share (the raw `RoutingConfig`, errors, [`Routing`] building all three). Matcher strings
//! are parsed by [`crate::labels::parse_matchers`], the one matcher grammar.
//!
//! Configuration goes raw → validated → built, as everywhere in tocsin: [`RouteConfig`],
//! [`InhibitRuleConfig`] and [`TimeIntervalConfig`] are the YAML as written (unknown fields
//! rejected), fields of `tocsin.yml`'s `Config`; the fields an error can point at are
//! `Spanned`, so every [`RouteError`] carries its line and column besides its path.
//! [`Router::new`], [`Inhibitor::new`], [`TimeIntervals::new`] (or [`Routing::new`] /
//! [`Routing::from_sections`] for all three) validate them without I/O, report every problem at
//! once with its path (`route.routes[1].matchers[0]`), and return the compiled form. Nothing here
//! reads the clock: [`RouteMatch::muted_at`] takes `now` as an argument.
//!
//! Where tocsin departs from Alertmanager, on purpose:
//! - `mute_time_intervals` and `active_time_intervals` are inherited by child routes that do not
//!   set them (Alertmanager copies every other option but not these, a long-standing complaint,
//!   prometheus/alertmanager#2833); a child that sets them, even to `[]`, replaces the parent's.
//! - Group keys are distinct per route: when two routes would share Alertmanager's key (the same
//!   matchers along the same path), the route's index path is appended, as in Alertmanager's
//!   route ID (`{}/{team="a"}/1`), so their groups and notification logs never mix.

mod inhibit;
mod time_intervals;
mod tree;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_saphyr::{Location, Spanned};

use crate::duration::DurationError;
use crate::labels::{Labels, Matcher, MatcherError, MatcherParseError};

pub use inhibit::{InhibitRuleConfig, Inhibitor};
pub use time_intervals::{
    TimeInterval, TimeIntervalConfig, TimeIntervalSpec, TimeIntervals, TimeOfDayConfig,
};
pub use tree::{GroupBy, RouteConfig, RouteMatch, Router, label_set_text};

/// Alertmanager's default `group_wait`: how long a new group waits for more alerts (30s).
pub const DEFAULT_GROUP_WAIT_MS: i64 = 30_000;
/// Alertmanager's default `group_interval`: how long a group waits before telling about changes (5m).
pub const DEFAULT_GROUP_INTERVAL_MS: i64 = 5 * 60_000;
/// Alertmanager's default `repeat_interval`: how long before an unchanged group is sent again (4h).
pub const DEFAULT_REPEAT_INTERVAL_MS: i64 = 4 * 3_600_000;

// ---------------------------------------------------------------------------------------------
// Raw configuration
// ---------------------------------------------------------------------------------------------

/// The routing-related sections of `tocsin.yml`, read on their own (routing tests, tools): other
/// sections are ignored here, typos inside these sections are not. The daemon reads the same
/// section types as fields of `config::Config` and validates them with [`Routing::from_sections`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RoutingConfig {
    /// The root of the routing tree.
    #[serde(default)]
    pub route: Option<Spanned<RouteConfig>>,
    /// The receivers; only their names matter for routing.
    #[serde(default)]
    pub receivers: Vec<ReceiverName>,
    /// Inhibition rules.
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitRuleConfig>,
    /// Named time intervals that routes refer to in `mute_time_intervals` and
    /// `active_time_intervals`.
    #[serde(default)]
    pub time_intervals: Vec<TimeIntervalConfig>,
    /// The same as `time_intervals`, under Alertmanager's deprecated top-level name.
    #[serde(default)]
    pub mute_time_intervals: Vec<TimeIntervalConfig>,
}

/// A receiver as routing sees it: its name (the other fields belong to `receivers`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReceiverName {
    /// The name routes refer to in `receiver`.
    pub name: String,
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// One problem in the routing configuration, located by its path and position.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{kind}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct RouteError {
    /// Dotted field path, e.g. `route.routes[1].matchers[0]`; empty when the YAML itself is
    /// malformed.
    pub path: String,
    /// Where the field is written (line and column; [`Location::UNKNOWN`] when the sections were
    /// not read from YAML, or for a section that is missing altogether).
    pub at: Location,
    /// What is wrong there.
    pub kind: RouteErrorKind,
}

/// What is wrong with one field of the routing configuration. Messages follow Alertmanager's
/// where it has one, so they can be searched for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouteErrorKind {
    /// A section does not have the expected shape (unknown field, wrong type, malformed YAML).
    #[error("{0}")]
    Parse(String),
    /// Routing was built without a `route` section.
    #[error("no route provided in config")]
    NoRoute,
    /// The root route has no receiver, so alerts matching no child would go nowhere.
    #[error("root route must specify a default receiver")]
    RootWithoutReceiver,
    /// The root route has matchers: it must take every alert.
    #[error("root route must not have any matchers")]
    RootWithMatchers,
    /// The root route sets `continue`: it has no siblings.
    #[error("cannot have continue in root route")]
    RootWithContinue,
    /// The root route sets mute or active time intervals (Alertmanager refuses them there too:
    /// they belong on the routes to mute, and silences cover muting everything).
    #[error("root route must not have any {0} time intervals")]
    RootWithTimeIntervals(&'static str),
    /// A route names a receiver that is not defined in `receivers`.
    #[error("undefined receiver {0:?} used in route")]
    UnknownReceiver(String),
    /// A route names a time interval that is not defined in `time_intervals`.
    #[error("undefined time interval {0:?} used in route")]
    UnknownTimeInterval(String),
    /// A matcher string does not parse or its regex does not compile.
    #[error(transparent)]
    Matcher(#[from] MatcherParseError),
    /// A regex of the legacy `match_re`, `source_match_re` or `target_match_re` does not compile.
    #[error(transparent)]
    Regex(#[from] MatcherError),
    /// A duration is not in Prometheus notation.
    #[error(transparent)]
    Duration(#[from] DurationError),
    /// `group_interval` or `repeat_interval` is zero, which would notify on every tick.
    #[error("{0} cannot be zero")]
    ZeroInterval(&'static str),
    /// A label name in `group_by`, `equal`, `match` or `match_re` is not a valid label name.
    #[error("invalid label name {0:?}")]
    InvalidLabelName(String),
    /// The same label appears twice in `group_by`.
    #[error("duplicated label {0:?} in group_by")]
    DuplicateGroupBy(String),
    /// `group_by` mixes `...` (every label) with label names.
    #[error("cannot have wildcard group_by (`...`) and other labels at the same time")]
    WildcardWithLabels,
    /// Two time intervals have the same name.
    #[error("time interval {0:?} is not unique")]
    DuplicateTimeInterval(String),
    /// A time interval field (times, weekdays, days of month, months, years) is malformed.
    #[error("{0}")]
    TimeRange(String),
    /// `location` is not a time zone of the IANA database.
    #[error("unknown time zone {0:?} (write an IANA name such as Europe/Berlin)")]
    UnknownLocation(String),
}

/// Every problem found in the routing configuration, in the order of the file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct RouteErrors(pub Vec<RouteError>);

// ---------------------------------------------------------------------------------------------
// Built forms
// ---------------------------------------------------------------------------------------------

/// Everything routing needs at run time, built from one [`RoutingConfig`].
#[derive(Debug, Clone)]
pub struct Routing {
    pub router: Router,
    pub inhibitor: Inhibitor,
    pub time_intervals: TimeIntervals,
}

// ---------------------------------------------------------------------------------------------
// Parsing the raw sections
// ---------------------------------------------------------------------------------------------

impl RoutingConfig {
    /// Reads the routing sections from YAML text (a whole `tocsin.yml` or just these sections).
    pub fn from_yaml(text: &str) -> Result<Self, RouteErrors> {
        serde_saphyr::from_str(text).map_err(|e| {
            let message = e.to_string();
            let first = message.lines().next().unwrap_or("").trim_end_matches('.');
            let first = first.strip_prefix("error: ").unwrap_or(first);
            RouteErrors(vec![RouteError {
                path: String::new(),
                at: e.location().unwrap_or(Location::UNKNOWN),
                kind: RouteErrorKind::Parse(first.to_string()),
            }])
        })
    }

    /// The receiver names, for [`Router::new`].
    pub fn receiver_names(&self) -> Vec<&str> {
        self.receivers.iter().map(|r| r.name.as_str()).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Validation and building
// ---------------------------------------------------------------------------------------------

impl Routing {
    /// Validates and builds the routing tree, inhibition rules and time intervals together,
    /// reporting every problem in all three.
    pub fn new(cfg: &RoutingConfig) -> Result<Self, RouteErrors> {
        Routing::from_sections(
            cfg.route.as_ref(),
            &cfg.receiver_names(),
            &cfg.time_intervals,
            &cfg.mute_time_intervals,
            &cfg.inhibit_rules,
        )
    }

    /// [`Routing::new`] over sections held elsewhere (`config::Config`): the root route, the
    /// receiver names routes may use, the time intervals (and those under Alertmanager's
    /// deprecated name `mute_time_intervals`) and the inhibition rules.
    pub fn from_sections(
        route: Option<&Spanned<RouteConfig>>,
        receivers: &[&str],
        time_intervals: &[TimeIntervalConfig],
        mute_time_intervals: &[TimeIntervalConfig],
        inhibit_rules: &[InhibitRuleConfig],
    ) -> Result<Self, RouteErrors> {
        let mut errors = Vec::new();
        let time_intervals_compiled = TimeIntervals::compile(
            time_intervals
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("time_intervals[{i}]"), t))
                .chain(
                    mute_time_intervals
                        .iter()
                        .enumerate()
                        .map(|(i, t)| (format!("mute_time_intervals[{i}]"), t)),
                ),
            &mut errors,
        );
        // every configured name counts as defined, so a malformed interval is reported once
        let interval_names: BTreeSet<&str> = time_intervals
            .iter()
            .chain(mute_time_intervals)
            .map(|t| t.name.value.as_str())
            .collect();
        let receivers: BTreeSet<&str> = receivers.iter().copied().collect();
        let router = match route {
            Some(route) => Some(Router::compile(
                route,
                &receivers,
                &interval_names,
                &mut errors,
            )),
            None => {
                errors.push(RouteError {
                    path: "route".into(),
                    at: Location::UNKNOWN,
                    kind: RouteErrorKind::NoRoute,
                });
                None
            }
        };
        let inhibitor = Inhibitor::compile(inhibit_rules, &mut errors);
        match router {
            Some(router) if errors.is_empty() => Ok(Routing {
                router,
                inhibitor,
                time_intervals: time_intervals_compiled,
            }),
            _ => Err(RouteErrors(errors)),
        }
    }
}

pub(super) fn matches_all(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches_labels(labels))
}

/// A label's value; an absent label reads as the empty string, as in Alertmanager.
pub(super) fn label<'a>(labels: &'a Labels, name: &str) -> &'a str {
    labels.get(name).unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Lenient scalars: `1`, `2024` or `true` where a string is expected, as Alertmanager's YAML
// decoder accepts them (`years: [2025]`, `match: {code: 500}`).
// ---------------------------------------------------------------------------------------------

struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Text::deserialize(d).map(|t| t.0)
}

fn spanned_text(t: Spanned<Text>) -> Spanned<String> {
    Spanned::new(t.value.0, t.referenced, t.defined)
}

pub(super) fn lenient_opt_spanned<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Spanned<String>>, D::Error> {
    Option::<Spanned<Text>>::deserialize(d).map(|t| t.map(spanned_text))
}

pub(super) fn lenient_spanned_strings<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<Spanned<String>>, D::Error> {
    Option::<Vec<Spanned<Text>>>::deserialize(d).map(|v| {
        v.unwrap_or_default()
            .into_iter()
            .map(spanned_text)
            .collect()
    })
}

pub(super) fn lenient_spanned_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Spanned<String>>, D::Error> {
    Option::<BTreeMap<String, Spanned<Text>>>::deserialize(d).map(|m| {
        m.unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, spanned_text(v)))
            .collect()
    })
}

/// The values of spanned strings, for messages and compiled forms.
pub(super) fn values(items: &[Spanned<String>]) -> Vec<String> {
    items.iter().map(|s| s.value.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_scalars_that_are_not_strings_are_read_as_text() {
        // unquoted years, days and times, and `[...]` unquoted: all as Alertmanager reads them
        let cfg = RoutingConfig::from_yaml(
            r#"
route:
  receiver: ops
  group_by: [...]
  routes:
    - match: { code: 500 }
      receiver: ops
time_intervals:
  - name: office
    time_intervals:
      - times: [{ start_time: 09:00, end_time: 17:00 }]
        days_of_month: [1, '-1']
        years: [2024]
receivers: [{ name: ops, webhook: { url: http://x } }]
"#,
        )
        .unwrap();
        let route = &cfg.route.as_ref().unwrap().value;
        assert_eq!(
            route.group_by.as_deref().map(values),
            Some(vec!["...".into()])
        );
        assert_eq!(
            route.routes[0]
                .value
                .r#match
                .get("code")
                .map(|v| v.value.as_str()),
            Some("500")
        );
        let spec = &cfg.time_intervals[0].time_intervals[0];
        assert_eq!(spec.times[0].value.start_time, "09:00");
        assert_eq!(values(&spec.days_of_month), vec!["1", "-1"]);
        assert_eq!(values(&spec.years), vec!["2024"]);
        // each value knows where it is written: `years: [2024]` on line 13
        assert_eq!(
            (
                spec.years[0].referenced.line(),
                spec.years[0].referenced.column()
            ),
            (13, 17)
        );
        assert_eq!(cfg.receiver_names(), vec!["ops"]);
    }

    #[test]
    fn unknown_route_fields_are_rejected() {
        let e = RoutingConfig::from_yaml("route: { receiver: ops, group_wiat: 1m }").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("line 1 column 25: unknown field `group_wiat`"),
            "{e}"
        );
    }
}
