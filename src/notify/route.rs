//! The routing tree, time intervals and inhibition rules, with Alertmanager's semantics and names.
//!
//! Configuration goes raw → validated → built, as everywhere in tocsin: [`RouteConfig`],
//! [`InhibitRuleConfig`] and [`TimeIntervalConfig`] are the YAML as written (unknown fields
//! rejected); [`Router::new`], [`Inhibitor::new`], [`TimeIntervals::new`] (or [`Routing::new`] for
//! all three) validate them without I/O, report every problem at once with its path
//! (`route.routes[1].matchers[0]`), and return the compiled form. Nothing here reads the clock:
//! [`RouteMatch::muted_at`] takes `now` as an argument.
//!
//! Where tocsin departs from Alertmanager, on purpose:
//! - `mute_time_intervals` and `active_time_intervals` are inherited by child routes that do not
//!   set them (Alertmanager copies every other option but not these, a long-standing complaint,
//!   prometheus/alertmanager#2833); a child that sets them, even to `[]`, replaces the parent's.
//! - Group keys are distinct per route: when two routes would share Alertmanager's key (the same
//!   matchers along the same path), the route's index path is appended, as in Alertmanager's
//!   route ID (`{}/{team="a"}/1`), so their groups and notification logs never mix.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::{self, Write as _};

use chrono::{Datelike, Timelike};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer};

use crate::duration::{DurationError, PromDuration};
use crate::labels::{MatchOp, Matcher};

/// An alert's labels, as the notification stages pass them.
pub type LabelMap = BTreeMap<String, String>;

/// Alertmanager's default `group_wait`: how long a new group waits for more alerts (30s).
pub const DEFAULT_GROUP_WAIT_MS: i64 = 30_000;
/// Alertmanager's default `group_interval`: how long a group waits before telling about changes (5m).
pub const DEFAULT_GROUP_INTERVAL_MS: i64 = 5 * 60_000;
/// Alertmanager's default `repeat_interval`: how long before an unchanged group is sent again (4h).
pub const DEFAULT_REPEAT_INTERVAL_MS: i64 = 4 * 3_600_000;

// ---------------------------------------------------------------------------------------------
// Raw configuration
// ---------------------------------------------------------------------------------------------

/// The routing-related sections of `tocsin.yml`, read on their own: other sections are ignored
/// here (the whole file's schema is `config`'s business), typos inside these sections are not.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RoutingConfig {
    /// The root of the routing tree.
    #[serde(default)]
    pub route: Option<RouteConfig>,
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

/// One node of the routing tree, as written. Options that are not set are inherited from the
/// parent node (the root inherits Alertmanager's defaults).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The receiver that gets the alerts this route matches. Required on the root route.
    #[serde(default)]
    pub receiver: Option<String>,
    /// Labels whose values split alerts into groups (one notification per group). `['...']`
    /// groups by every label, so each alert is its own group. An empty list is the same as
    /// leaving it out (inherited), as in Alertmanager.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// Whether an alert matched by this route goes on to be matched against the following
    /// sibling routes. Default `false`: the first matching sibling wins. Not allowed on the root.
    #[serde(default)]
    pub r#continue: bool,
    /// Label matchers an alert must all satisfy to take this route: `severity="page"`,
    /// `alertname=~"Foo|Bar"` (regexes are anchored at both ends), `team!=x`, `env!~"dev.*"`.
    /// One entry may hold several, separated by commas. The root route has none.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Deprecated Alertmanager form of `matchers`: label name → exact value.
    #[serde(default, deserialize_with = "lenient_map")]
    pub r#match: BTreeMap<String, String>,
    /// Deprecated Alertmanager form of `matchers`: label name → regex (anchored).
    #[serde(default, deserialize_with = "lenient_map")]
    pub match_re: BTreeMap<String, String>,
    /// How long a new group waits for more alerts before its first notification, e.g. `30s`.
    /// Default `30s`.
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub group_wait: Option<String>,
    /// How long a group waits before notifying about alerts added to or resolved in it,
    /// e.g. `5m`. Default `5m`; must not be zero.
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub group_interval: Option<String>,
    /// How long before a notification is sent again for a group that has not changed, e.g. `4h`.
    /// Default `4h`; must not be zero.
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub repeat_interval: Option<String>,
    /// Names of time intervals during which this route sends nothing (it still matches, so it
    /// still stops later siblings unless `continue` is set). Not allowed on the root.
    #[serde(default)]
    pub mute_time_intervals: Option<Vec<String>>,
    /// Names of time intervals outside of which this route sends nothing. Not allowed on the root.
    #[serde(default)]
    pub active_time_intervals: Option<Vec<String>>,
    /// Child routes, tried in order.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// One inhibition rule, as written: while an alert matching the source matchers fires, alerts
/// matching the target matchers that have the same values for the `equal` labels are not sent.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRuleConfig {
    /// Matchers the inhibiting (source) alert must satisfy, e.g. `alertname="TargetDown"`.
    #[serde(default)]
    pub source_matchers: Vec<String>,
    /// Matchers the inhibited (target) alert must satisfy, e.g. `severity="warning"`.
    #[serde(default)]
    pub target_matchers: Vec<String>,
    /// Labels that must have the same value in source and target (a label missing from both
    /// counts as equal).
    #[serde(default)]
    pub equal: Vec<String>,
    /// Deprecated Alertmanager form of `source_matchers`: label name → exact value.
    #[serde(default, deserialize_with = "lenient_map")]
    pub source_match: BTreeMap<String, String>,
    /// Deprecated Alertmanager form of `source_matchers`: label name → regex.
    #[serde(default, deserialize_with = "lenient_map")]
    pub source_match_re: BTreeMap<String, String>,
    /// Deprecated Alertmanager form of `target_matchers`: label name → exact value.
    #[serde(default, deserialize_with = "lenient_map")]
    pub target_match: BTreeMap<String, String>,
    /// Deprecated Alertmanager form of `target_matchers`: label name → regex.
    #[serde(default, deserialize_with = "lenient_map")]
    pub target_match_re: BTreeMap<String, String>,
}

/// A named time interval, as written: the union of its `time_intervals`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeIntervalConfig {
    /// The name routes refer to.
    pub name: String,
    /// The instants in the interval: an instant is in it when any of these contains it.
    #[serde(default)]
    pub time_intervals: Vec<TimeIntervalSpec>,
}

/// One recurring time range. Every field that is set must match for an instant to be inside;
/// within a field, any one entry matching is enough; a field left out (or empty) matches always.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeIntervalSpec {
    /// Times of day, `start_time` inclusive and `end_time` exclusive, `HH:MM` (`24:00` allowed as
    /// an end), in `location`'s wall-clock time.
    #[serde(default)]
    pub times: Vec<TimeOfDayConfig>,
    /// Days of the week, by English name, alone or as an inclusive range: `monday:friday`,
    /// `saturday`. Weeks start on Sunday, so write the weekend as `[saturday, sunday]`.
    #[serde(default, deserialize_with = "lenient_strings")]
    pub weekdays: Vec<String>,
    /// Days of the month, alone or as inclusive ranges; negative counts from the end of the
    /// month (`-1` is its last day): `1:5`, `-3:-1`, `15`.
    #[serde(default, deserialize_with = "lenient_strings")]
    pub days_of_month: Vec<String>,
    /// Months by English name or number 1–12, alone or as inclusive ranges: `january:march`, `12`.
    #[serde(default, deserialize_with = "lenient_strings")]
    pub months: Vec<String>,
    /// Years, alone or as inclusive ranges: `2025`, `2025:2027`.
    #[serde(default, deserialize_with = "lenient_strings")]
    pub years: Vec<String>,
    /// The IANA time zone the other fields are read in, e.g. `Europe/Berlin`. Default `UTC`.
    #[serde(default)]
    pub location: Option<String>,
}

/// A time-of-day range, as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeOfDayConfig {
    /// Start, inclusive, `HH:MM`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub start_time: String,
    /// End, exclusive, `HH:MM` (`24:00` for the end of the day).
    #[serde(default, deserialize_with = "lenient_string")]
    pub end_time: String,
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// One problem in the routing configuration, located by its path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{kind}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct RouteError {
    /// Dotted field path, e.g. `route.routes[1].matchers[0]`; empty when the YAML itself is
    /// malformed.
    pub path: String,
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
    /// A matcher does not parse or its regex does not compile.
    #[error(transparent)]
    Matcher(#[from] MatcherSyntaxError),
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

/// Occurs when a matcher string does not parse or its regex does not compile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid matcher {input:?}: {reason}")]
pub struct MatcherSyntaxError {
    /// The matcher as written.
    pub input: String,
    /// Why it was rejected.
    pub reason: String,
}

/// Every problem found in the routing configuration, in the order of the file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct RouteErrors(pub Vec<RouteError>);

// ---------------------------------------------------------------------------------------------
// Built forms
// ---------------------------------------------------------------------------------------------

/// Which labels split a route's alerts into groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// These labels (those present on the alert); an empty list puts all alerts in one group.
    Labels(Vec<String>),
    /// Every label (`group_by: ['...']`): each distinct alert is its own group.
    All,
}

/// What a route says for an alert it matched: where it goes and how it is grouped and timed.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteMatch {
    /// The receiver's name.
    pub receiver: String,
    /// How the route's alerts are split into groups.
    pub group_by: GroupBy,
    /// Milliseconds.
    pub group_wait: i64,
    /// Milliseconds.
    pub group_interval: i64,
    /// Milliseconds.
    pub repeat_interval: i64,
    /// Time interval names during which this route is muted.
    pub mute_time_intervals: Vec<String>,
    /// Time interval names outside of which this route is muted (none: always active).
    pub active_time_intervals: Vec<String>,
    /// Stable identity of the route for group keys: the matchers along its path
    /// (`{}/{severity="page"}`), plus its index path when another route has the same matchers.
    pub route_id: String,
    /// Where the route is written, e.g. `route.routes[0]`, for messages.
    pub path: String,
}

/// The compiled routing tree.
#[derive(Debug, Clone)]
pub struct Router {
    root: RouteNode,
}

/// Named time intervals, compiled.
#[derive(Debug, Clone, Default)]
pub struct TimeIntervals {
    by_name: BTreeMap<String, Vec<TimeInterval>>,
}

/// One recurring time range, compiled (see [`TimeIntervalSpec`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TimeInterval {
    /// [start, end) in minutes of the day
    times: Vec<(u32, u32)>,
    /// inclusive, 0 = Sunday
    weekdays: Vec<(u32, u32)>,
    /// inclusive, negative from the end of the month
    days_of_month: Vec<(i32, i32)>,
    /// inclusive, 1 = January
    months: Vec<(u32, u32)>,
    /// inclusive
    years: Vec<(i32, i32)>,
    location: Tz,
}

/// The compiled inhibition rules.
#[derive(Debug, Clone, Default)]
pub struct Inhibitor {
    rules: Vec<InhibitRule>,
}

/// Everything routing needs at run time, built from one [`RoutingConfig`].
#[derive(Debug, Clone)]
pub struct Routing {
    pub router: Router,
    pub inhibitor: Inhibitor,
    pub time_intervals: TimeIntervals,
}

#[derive(Debug, Clone)]
struct RouteNode {
    /// sorted as Alertmanager sorts them (name, value, operator), so keys do not depend on order
    matchers: Vec<Matcher>,
    r#continue: bool,
    /// what this node answers when it is the deepest match
    target: RouteMatch,
    /// Alertmanager's route key: the parent's key, `/`, this node's matchers
    key: String,
    /// child positions from the root, e.g. `1/0`; empty for the root
    index_path: String,
    routes: Vec<RouteNode>,
}

#[derive(Debug, Clone)]
struct InhibitRule {
    source: Vec<Matcher>,
    target: Vec<Matcher>,
    equal: Vec<String>,
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
                kind: RouteErrorKind::Parse(first.to_string()),
            }])
        })
    }

    /// Reads the routing sections from the untyped values `config` keeps for them; every section
    /// that does not have the expected shape is reported.
    pub fn from_values(
        route: Option<&serde_json::Value>,
        receivers: Option<&serde_json::Value>,
        inhibit_rules: Option<&serde_json::Value>,
        time_intervals: Option<&serde_json::Value>,
    ) -> Result<Self, RouteErrors> {
        let mut errors = Vec::new();
        let cfg = RoutingConfig {
            route: section(route, "route", &mut errors),
            receivers: section(receivers, "receivers", &mut errors).unwrap_or_default(),
            inhibit_rules: section(inhibit_rules, "inhibit_rules", &mut errors).unwrap_or_default(),
            time_intervals: section(time_intervals, "time_intervals", &mut errors)
                .unwrap_or_default(),
            mute_time_intervals: Vec::new(),
        };
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(RouteErrors(errors))
        }
    }

    /// The receiver names, for [`Router::new`].
    pub fn receiver_names(&self) -> Vec<&str> {
        self.receivers.iter().map(|r| r.name.as_str()).collect()
    }
}

fn section<T: serde::de::DeserializeOwned>(
    value: Option<&serde_json::Value>,
    path: &str,
    errors: &mut Vec<RouteError>,
) -> Option<T> {
    let value = value.filter(|v| !v.is_null())?;
    match serde_json::from_value(value.clone()) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(RouteError {
                path: path.to_string(),
                kind: RouteErrorKind::Parse(e.to_string()),
            });
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation and building
// ---------------------------------------------------------------------------------------------

impl Routing {
    /// Validates and builds the routing tree, inhibition rules and time intervals together,
    /// reporting every problem in all three.
    pub fn new(cfg: &RoutingConfig) -> Result<Self, RouteErrors> {
        let mut errors = Vec::new();
        let time_intervals = TimeIntervals::compile(
            cfg.time_intervals
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("time_intervals[{i}]"), t))
                .chain(
                    cfg.mute_time_intervals
                        .iter()
                        .enumerate()
                        .map(|(i, t)| (format!("mute_time_intervals[{i}]"), t)),
                ),
            &mut errors,
        );
        // every configured name counts as defined, so a malformed interval is reported once
        let interval_names: BTreeSet<&str> = cfg
            .time_intervals
            .iter()
            .chain(&cfg.mute_time_intervals)
            .map(|t| t.name.as_str())
            .collect();
        let receivers: BTreeSet<&str> = cfg.receivers.iter().map(|r| r.name.as_str()).collect();
        let router = match &cfg.route {
            Some(route) => Some(Router::compile(
                route,
                &receivers,
                &interval_names,
                &mut errors,
            )),
            None => {
                errors.push(RouteError {
                    path: "route".into(),
                    kind: RouteErrorKind::NoRoute,
                });
                None
            }
        };
        let inhibitor = Inhibitor::compile(&cfg.inhibit_rules, &mut errors);
        match router {
            Some(router) if errors.is_empty() => Ok(Routing {
                router,
                inhibitor,
                time_intervals,
            }),
            _ => Err(RouteErrors(errors)),
        }
    }
}

/// Options a child route inherits from its parent.
#[derive(Debug, Clone)]
struct Inherited {
    receiver: String,
    group_by: GroupBy,
    group_wait: i64,
    group_interval: i64,
    repeat_interval: i64,
    mute_time_intervals: Vec<String>,
    active_time_intervals: Vec<String>,
}

/// Names a route may refer to.
struct Known<'a> {
    receivers: &'a BTreeSet<&'a str>,
    time_intervals: &'a BTreeSet<&'a str>,
}

impl Router {
    /// Validates `route` against the receiver names and the defined time intervals and builds the
    /// tree; every problem is reported with its path.
    pub fn new<S: AsRef<str>>(
        route: &RouteConfig,
        receivers: &[S],
        time_intervals: &TimeIntervals,
    ) -> Result<Self, RouteErrors> {
        let receivers: BTreeSet<&str> = receivers.iter().map(|r| r.as_ref()).collect();
        let names: BTreeSet<&str> = time_intervals.by_name.keys().map(|n| n.as_str()).collect();
        let mut errors = Vec::new();
        let router = Router::compile(route, &receivers, &names, &mut errors);
        if errors.is_empty() {
            Ok(router)
        } else {
            Err(RouteErrors(errors))
        }
    }

    fn compile(
        route: &RouteConfig,
        receivers: &BTreeSet<&str>,
        time_intervals: &BTreeSet<&str>,
        errors: &mut Vec<RouteError>,
    ) -> Router {
        let path = "route";
        let err = |errors: &mut Vec<RouteError>, field: &str, kind| {
            errors.push(RouteError {
                path: format!("{path}.{field}"),
                kind,
            })
        };
        if route.receiver.as_deref().is_none_or(str::is_empty) {
            err(errors, "receiver", RouteErrorKind::RootWithoutReceiver);
        }
        for (field, present) in [
            ("matchers", !route.matchers.is_empty()),
            ("match", !route.r#match.is_empty()),
            ("match_re", !route.match_re.is_empty()),
        ] {
            if present {
                err(errors, field, RouteErrorKind::RootWithMatchers);
            }
        }
        if route.r#continue {
            err(errors, "continue", RouteErrorKind::RootWithContinue);
        }
        if route
            .mute_time_intervals
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        {
            err(
                errors,
                "mute_time_intervals",
                RouteErrorKind::RootWithTimeIntervals("mute"),
            );
        }
        if route
            .active_time_intervals
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        {
            err(
                errors,
                "active_time_intervals",
                RouteErrorKind::RootWithTimeIntervals("active"),
            );
        }
        let defaults = Inherited {
            receiver: String::new(),
            group_by: GroupBy::Labels(Vec::new()),
            group_wait: DEFAULT_GROUP_WAIT_MS,
            group_interval: DEFAULT_GROUP_INTERVAL_MS,
            repeat_interval: DEFAULT_REPEAT_INTERVAL_MS,
            mute_time_intervals: Vec::new(),
            active_time_intervals: Vec::new(),
        };
        let known = Known {
            receivers,
            time_intervals,
        };
        let mut root = compile_node(route, path, None, String::new(), &defaults, &known, errors);
        assign_route_ids(&mut root);
        Router { root }
    }

    /// The routes an alert with `labels` takes, in order: Alertmanager's depth-first,
    /// left-to-right search, where a matching child stops its later siblings unless it has
    /// `continue`, and a route none of whose children match answers itself.
    pub fn matches(&self, labels: &LabelMap) -> Vec<RouteMatch> {
        let mut out = Vec::new();
        self.root.collect(labels, &mut out);
        out
    }

    /// Alertmanager's group key for an alert taking route `m`, `{route id}:{group labels}`
    /// (e.g. `{}/{severity="page"}:{alertname="Down", service="api"}`), and the group labels:
    /// the alert's values of the route's `group_by` labels (every label for `...`).
    pub fn group_key(&self, m: &RouteMatch, labels: &LabelMap) -> (String, LabelMap) {
        let group_labels: LabelMap = match &m.group_by {
            GroupBy::All => labels
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            GroupBy::Labels(names) => names
                .iter()
                .filter_map(|n| {
                    labels
                        .get(n)
                        .filter(|v| !v.is_empty())
                        .map(|v| (n.clone(), v.clone()))
                })
                .collect(),
        };
        let mut key = m.route_id.clone();
        key.push(':');
        write_label_set(&mut key, &group_labels);
        (key, group_labels)
    }

    /// The receivers an alert with `labels` reaches, in routing order, once per matching route
    /// (as `amtool config routes test` prints them).
    pub fn route_test(&self, labels: &LabelMap) -> Vec<String> {
        self.matches(labels)
            .into_iter()
            .map(|m| m.receiver)
            .collect()
    }
}

fn compile_node(
    cfg: &RouteConfig,
    path: &str,
    parent_key: Option<&str>,
    index_path: String,
    parent: &Inherited,
    known: &Known,
    errors: &mut Vec<RouteError>,
) -> RouteNode {
    let mut push = |field: String, kind: RouteErrorKind| {
        errors.push(RouteError {
            path: format!("{path}.{field}"),
            kind,
        })
    };
    let mut opts = parent.clone();

    if let Some(receiver) = cfg.receiver.as_deref().filter(|r| !r.is_empty()) {
        if !known.receivers.contains(receiver) {
            push(
                "receiver".into(),
                RouteErrorKind::UnknownReceiver(receiver.to_string()),
            );
        }
        opts.receiver = receiver.to_string();
    }

    if let Some(group_by) = cfg.group_by.as_ref().filter(|g| !g.is_empty()) {
        let mut seen = BTreeSet::new();
        let mut names = Vec::new();
        let mut all = false;
        for (i, name) in group_by.iter().enumerate() {
            if name == "..." {
                all = true;
            } else if !valid_label_name(name) {
                push(
                    format!("group_by[{i}]"),
                    RouteErrorKind::InvalidLabelName(name.clone()),
                );
            } else if !seen.insert(name.as_str()) {
                push(
                    format!("group_by[{i}]"),
                    RouteErrorKind::DuplicateGroupBy(name.clone()),
                );
            } else {
                names.push(name.clone());
            }
        }
        if all && group_by.len() > 1 {
            push("group_by".into(), RouteErrorKind::WildcardWithLabels);
        }
        opts.group_by = if all {
            GroupBy::All
        } else {
            GroupBy::Labels(names)
        };
    }

    for (field, raw, slot, may_be_zero) in [
        ("group_wait", &cfg.group_wait, &mut opts.group_wait, true),
        (
            "group_interval",
            &cfg.group_interval,
            &mut opts.group_interval,
            false,
        ),
        (
            "repeat_interval",
            &cfg.repeat_interval,
            &mut opts.repeat_interval,
            false,
        ),
    ] {
        let Some(raw) = raw else { continue };
        match PromDuration::parse(raw) {
            Ok(d) if d.as_millis() == 0 && !may_be_zero => {
                push(field.into(), RouteErrorKind::ZeroInterval(field))
            }
            Ok(d) => *slot = d.as_millis(),
            Err(e) => push(field.into(), RouteErrorKind::Duration(e)),
        }
    }

    for (field, raw, slot) in [
        (
            "mute_time_intervals",
            &cfg.mute_time_intervals,
            &mut opts.mute_time_intervals,
        ),
        (
            "active_time_intervals",
            &cfg.active_time_intervals,
            &mut opts.active_time_intervals,
        ),
    ] {
        // tocsin inherits these when unset (Alertmanager does not: see the module docs)
        let Some(names) = raw else { continue };
        for (i, name) in names.iter().enumerate() {
            if !known.time_intervals.contains(name.as_str()) {
                push(
                    format!("{field}[{i}]"),
                    RouteErrorKind::UnknownTimeInterval(name.clone()),
                );
            }
        }
        *slot = names.clone();
    }

    let mut matchers = Vec::new();
    for (name, value) in &cfg.r#match {
        if valid_label_name(name) {
            matchers.push(Matcher::equal(name, value));
        } else {
            push(
                format!("match.{name}"),
                RouteErrorKind::InvalidLabelName(name.clone()),
            );
        }
    }
    for (name, value) in &cfg.match_re {
        if !valid_label_name(name) {
            push(
                format!("match_re.{name}"),
                RouteErrorKind::InvalidLabelName(name.clone()),
            );
            continue;
        }
        match Matcher::new(MatchOp::Regex, name, value) {
            Ok(m) => matchers.push(m),
            Err(e) => push(
                format!("match_re.{name}"),
                RouteErrorKind::Matcher(MatcherSyntaxError {
                    input: format!("{name}=~{value:?}"),
                    reason: crate::labels::regex_reason(&e.source),
                }),
            ),
        }
    }
    for (i, line) in cfg.matchers.iter().enumerate() {
        match parse_matchers(line) {
            Ok(ms) => matchers.extend(ms),
            Err(e) => push(format!("matchers[{i}]"), RouteErrorKind::Matcher(e)),
        }
    }
    matchers.sort_by(|a, b| {
        (a.name.as_str(), a.value.as_str(), op_rank(a.op)).cmp(&(
            b.name.as_str(),
            b.value.as_str(),
            op_rank(b.op),
        ))
    });

    let mut key = String::new();
    if let Some(parent_key) = parent_key {
        key.push_str(parent_key);
        key.push('/');
    }
    write_matchers(&mut key, &matchers);

    let routes = cfg
        .routes
        .iter()
        .enumerate()
        .map(|(i, child)| {
            let child_index = if index_path.is_empty() {
                i.to_string()
            } else {
                format!("{index_path}/{i}")
            };
            compile_node(
                child,
                &format!("{path}.routes[{i}]"),
                Some(&key),
                child_index,
                &opts,
                known,
                errors,
            )
        })
        .collect();

    RouteNode {
        matchers,
        r#continue: cfg.r#continue,
        target: RouteMatch {
            receiver: opts.receiver,
            group_by: opts.group_by,
            group_wait: opts.group_wait,
            group_interval: opts.group_interval,
            repeat_interval: opts.repeat_interval,
            mute_time_intervals: opts.mute_time_intervals,
            active_time_intervals: opts.active_time_intervals,
            route_id: key.clone(),
            path: path.to_string(),
        },
        key,
        index_path,
        routes,
    }
}

/// Gives every route a distinct id: its key, or for routes sharing a key, key and index path.
fn assign_route_ids(root: &mut RouteNode) {
    fn count<'a>(n: &'a RouteNode, seen: &mut HashMap<&'a str, usize>) {
        *seen.entry(n.key.as_str()).or_default() += 1;
        n.routes.iter().for_each(|c| count(c, seen));
    }
    fn assign(n: &mut RouteNode, shared: &BTreeSet<String>) {
        n.target.route_id = if shared.contains(&n.key) && !n.index_path.is_empty() {
            format!("{}/{}", n.key, n.index_path)
        } else {
            n.key.clone()
        };
        n.routes.iter_mut().for_each(|c| assign(c, shared));
    }
    let mut seen = HashMap::new();
    count(root, &mut seen);
    let shared: BTreeSet<String> = seen
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, _)| k.to_string())
        .collect();
    assign(root, &shared);
}

impl RouteNode {
    /// Appends this subtree's matches; false when this node's own matchers do not match.
    fn collect(&self, labels: &LabelMap, out: &mut Vec<RouteMatch>) -> bool {
        if !matches_all(&self.matchers, labels) {
            return false;
        }
        let before = out.len();
        for child in &self.routes {
            if child.collect(labels, out) && !child.r#continue {
                break;
            }
        }
        if out.len() == before {
            out.push(self.target.clone());
        }
        true
    }
}

impl RouteMatch {
    /// Whether this route sends nothing at `now_ms` (ms since the epoch): `now` is inside one of
    /// its mute intervals, or it has active intervals and `now` is inside none of them.
    pub fn muted_at(&self, intervals: &TimeIntervals, now_ms: i64) -> bool {
        if self
            .mute_time_intervals
            .iter()
            .any(|n| intervals.contains(n, now_ms))
        {
            return true;
        }
        !self.active_time_intervals.is_empty()
            && !self
                .active_time_intervals
                .iter()
                .any(|n| intervals.contains(n, now_ms))
    }
}

// ---------------------------------------------------------------------------------------------
// Time intervals
// ---------------------------------------------------------------------------------------------

impl TimeIntervals {
    /// Validates and compiles named time intervals (paths `time_intervals[i]…`).
    pub fn new(configs: &[TimeIntervalConfig]) -> Result<Self, RouteErrors> {
        let mut errors = Vec::new();
        let t = TimeIntervals::compile(
            configs
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("time_intervals[{i}]"), t)),
            &mut errors,
        );
        if errors.is_empty() {
            Ok(t)
        } else {
            Err(RouteErrors(errors))
        }
    }

    fn compile<'a>(
        configs: impl Iterator<Item = (String, &'a TimeIntervalConfig)>,
        errors: &mut Vec<RouteError>,
    ) -> TimeIntervals {
        let mut by_name = BTreeMap::new();
        for (path, cfg) in configs {
            if by_name.contains_key(&cfg.name) {
                errors.push(RouteError {
                    path: format!("{path}.name"),
                    kind: RouteErrorKind::DuplicateTimeInterval(cfg.name.clone()),
                });
                continue;
            }
            let specs = cfg
                .time_intervals
                .iter()
                .enumerate()
                .filter_map(|(i, spec)| {
                    TimeInterval::compile(spec, &format!("{path}.time_intervals[{i}]"), errors)
                })
                .collect();
            by_name.insert(cfg.name.clone(), specs);
        }
        TimeIntervals { by_name }
    }

    /// Whether the interval named `name` contains `now_ms` (ms since the epoch); false for a
    /// name that is not defined.
    pub fn contains(&self, name: &str, now_ms: i64) -> bool {
        self.by_name
            .get(name)
            .is_some_and(|specs| specs.iter().any(|s| s.contains(now_ms)))
    }

    /// Whether an interval with this name is defined.
    pub fn is_defined(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }
}

impl TimeInterval {
    /// Compiles one spec, pushing every problem; None if there is any.
    fn compile(spec: &TimeIntervalSpec, path: &str, errors: &mut Vec<RouteError>) -> Option<Self> {
        let mut problems: Vec<(String, RouteErrorKind)> = Vec::new();
        let mut times = Vec::new();
        for (i, t) in spec.times.iter().enumerate() {
            match parse_time_of_day_range(t) {
                Ok(r) => times.push(r),
                Err(m) => problems.push((format!("times[{i}]"), RouteErrorKind::TimeRange(m))),
            }
        }
        let mut ranges =
            |field: &str, items: &[String], parse: fn(&str) -> Result<(i32, i32), String>| {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match parse(item) {
                        Ok(r) => out.push(r),
                        Err(m) => {
                            problems.push((format!("{field}[{i}]"), RouteErrorKind::TimeRange(m)))
                        }
                    }
                }
                out
            };
        let weekdays = ranges("weekdays", &spec.weekdays, parse_weekday_range);
        let days_of_month = ranges(
            "days_of_month",
            &spec.days_of_month,
            parse_day_of_month_range,
        );
        let months = ranges("months", &spec.months, parse_month_range);
        let years = ranges("years", &spec.years, parse_year_range);
        let location = match spec.location.as_deref() {
            None => Tz::UTC,
            Some(name) => name.trim().parse::<Tz>().unwrap_or_else(|_| {
                problems.push((
                    "location".into(),
                    RouteErrorKind::UnknownLocation(name.to_string()),
                ));
                Tz::UTC
            }),
        };
        if !problems.is_empty() {
            errors.extend(problems.into_iter().map(|(field, kind)| RouteError {
                path: format!("{path}.{field}"),
                kind,
            }));
            return None;
        }
        // the parsers keep these within 0..=6 and 1..=12
        let unsigned =
            |v: Vec<(i32, i32)>| v.into_iter().map(|(a, b)| (a as u32, b as u32)).collect();
        Some(TimeInterval {
            times,
            weekdays: unsigned(weekdays),
            days_of_month,
            months: unsigned(months),
            years,
            location,
        })
    }

    /// Whether the instant `now_ms` (ms since the epoch) is inside, read in the interval's
    /// time zone.
    pub fn contains(&self, now_ms: i64) -> bool {
        let Some(utc) = chrono::DateTime::from_timestamp_millis(now_ms) else {
            return false;
        };
        let t = utc.with_timezone(&self.location);
        let minute = t.hour() * 60 + t.minute();
        if !self.times.is_empty() && !self.times.iter().any(|&(s, e)| minute >= s && minute < e) {
            return false;
        }
        if !self.days_of_month.is_empty() {
            let dim = days_in_month(t.year(), t.month());
            let day = t.day() as i32;
            let inside = self.days_of_month.iter().any(|&(b, e)| {
                let begin = if b < 0 { dim + b + 1 } else { b };
                let end = if e < 0 { dim + e + 1 } else { e };
                // a range starting after the end of a short month does not spill into the next
                begin <= dim && day >= begin.clamp(-dim, dim) && day <= end.clamp(-dim, dim)
            });
            if !inside {
                return false;
            }
        }
        if !self.months.is_empty() && !in_ranges(&self.months, t.month()) {
            return false;
        }
        if !self.weekdays.is_empty()
            && !in_ranges(&self.weekdays, t.weekday().num_days_from_sunday())
        {
            return false;
        }
        if !self.years.is_empty()
            && !self
                .years
                .iter()
                .any(|&(b, e)| t.year() >= b && t.year() <= e)
        {
            return false;
        }
        true
    }
}

fn in_ranges(ranges: &[(u32, u32)], v: u32) -> bool {
    ranges.iter().any(|&(b, e)| v >= b && v <= e)
}

fn days_in_month(year: i32, month: u32) -> i32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// `HH:MM` → minutes of the day; `24:00` is 1440.
fn parse_clock(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

fn parse_time_of_day_range(t: &TimeOfDayConfig) -> Result<(u32, u32), String> {
    if t.start_time.is_empty() || t.end_time.is_empty() {
        return Err("both start_time and end_time must be provided".into());
    }
    let parse = |s: &str| {
        parse_clock(s.trim()).ok_or_else(|| format!("invalid time {s:?} (write HH:MM, e.g. 09:00)"))
    };
    let (start, end) = (parse(&t.start_time)?, parse(&t.end_time)?);
    if start >= end {
        return Err(format!(
            "start time {} must be before end time {}",
            t.start_time, t.end_time
        ));
    }
    Ok((start, end))
}

/// Splits `a:b` or `a` and maps both ends.
fn parse_range(
    input: &str,
    what: &str,
    member: impl Fn(&str) -> Option<i32>,
) -> Result<(i32, i32), String> {
    let s = input.trim().to_lowercase();
    let (a, b) = match s.split_once(':') {
        Some((_, b)) if b.contains(':') => {
            return Err(format!("invalid {what} range {input:?}"));
        }
        Some((a, b)) => (a.trim(), b.trim()),
        None => (s.as_str(), s.as_str()),
    };
    let one = |x: &str| member(x).ok_or_else(|| format!("{x:?} is not a valid {what}"));
    Ok((one(a)?, one(b)?))
}

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn parse_weekday_range(s: &str) -> Result<(i32, i32), String> {
    let (b, e) = parse_range(s, "weekday", |x| {
        WEEKDAYS.iter().position(|d| *d == x).map(|p| p as i32)
    })?;
    if b > e {
        return Err(format!(
            "weekday range {s:?} ends before it starts (weeks start on sunday: write saturday and sunday as two entries)"
        ));
    }
    Ok((b, e))
}

fn parse_day_of_month_range(s: &str) -> Result<(i32, i32), String> {
    let (b, e) = parse_range(s, "day of the month", |x| x.parse().ok())?;
    for d in [b, e] {
        if d == 0 || !(-31..=31).contains(&d) {
            return Err(format!("{d} is not a valid day of the month"));
        }
    }
    if b < 0 && e > 0 {
        return Err(format!(
            "days of the month {s:?}: the end must be negative when the start is"
        ));
    }
    // with negative days the length of the month matters; 28 days catches ranges always empty
    let at = |d: i32| if d < 0 { 28 + d } else { d };
    if at(b) > at(e) {
        return Err(format!(
            "days of the month {s:?}: the end is always before the start"
        ));
    }
    Ok((b, e))
}

fn parse_month_range(s: &str) -> Result<(i32, i32), String> {
    let (b, e) = parse_range(s, "month", |x| {
        MONTHS
            .iter()
            .position(|m| *m == x)
            .map(|p| p as i32 + 1)
            .or_else(|| x.parse().ok().filter(|n| (1..=12).contains(n)))
    })?;
    if b > e {
        return Err(format!("month range {s:?} ends before it starts"));
    }
    Ok((b, e))
}

fn parse_year_range(s: &str) -> Result<(i32, i32), String> {
    let (b, e) = parse_range(s, "year", |x| x.parse().ok().filter(|y: &i32| *y >= 0))?;
    if b > e {
        return Err(format!("year range {s:?} ends before it starts"));
    }
    Ok((b, e))
}

// ---------------------------------------------------------------------------------------------
// Inhibition
// ---------------------------------------------------------------------------------------------

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

    fn compile(rules: &[InhibitRuleConfig], errors: &mut Vec<RouteError>) -> Inhibitor {
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
                if !valid_label_name(name) {
                    errors.push(RouteError {
                        path: format!("{path}.equal[{j}]"),
                        kind: RouteErrorKind::InvalidLabelName(name.clone()),
                    });
                }
            }
            if errors.len() == before {
                compiled.push(InhibitRule {
                    source,
                    target,
                    equal: r.equal.clone(),
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
    pub fn inhibited(&self, target: &LabelMap, firing_sources: &[LabelMap]) -> bool {
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

impl super::pipeline::Inhibits for Inhibitor {
    fn inhibited(&self, target: &LabelMap, sources: &[LabelMap]) -> bool {
        Inhibitor::inhibited(self, target, sources)
    }

    fn has_rules(&self) -> bool {
        !self.is_empty()
    }
}

/// Compiles one side of an inhibition rule from its new-style and legacy matchers.
fn side(
    path: &str,
    (matchers_field, matchers): (&str, &[String]),
    (eq_field, eq): (&str, &BTreeMap<String, String>),
    (re_field, re): (&str, &BTreeMap<String, String>),
    errors: &mut Vec<RouteError>,
) -> Vec<Matcher> {
    let mut out = Vec::new();
    for (name, value) in eq {
        if valid_label_name(name) {
            out.push(Matcher::equal(name, value));
        } else {
            errors.push(RouteError {
                path: format!("{path}.{eq_field}.{name}"),
                kind: RouteErrorKind::InvalidLabelName(name.clone()),
            });
        }
    }
    for (name, value) in re {
        let made = if valid_label_name(name) {
            Matcher::new(MatchOp::Regex, name, value).map_err(|e| {
                RouteErrorKind::Matcher(MatcherSyntaxError {
                    input: format!("{name}=~{value:?}"),
                    reason: crate::labels::regex_reason(&e.source),
                })
            })
        } else {
            Err(RouteErrorKind::InvalidLabelName(name.clone()))
        };
        match made {
            Ok(m) => out.push(m),
            Err(kind) => errors.push(RouteError {
                path: format!("{path}.{re_field}.{name}"),
                kind,
            }),
        }
    }
    for (i, line) in matchers.iter().enumerate() {
        match parse_matchers(line) {
            Ok(ms) => out.extend(ms),
            Err(e) => errors.push(RouteError {
                path: format!("{path}.{matchers_field}[{i}]"),
                kind: RouteErrorKind::Matcher(e),
            }),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Matchers
// ---------------------------------------------------------------------------------------------

/// Parses one entry of a `matchers` list as Alertmanager does: one or more matchers separated by
/// commas, optionally in braces (`{a="1", b=~"x|y"}`). A value may be quoted (`\"`, `\\` and
/// `\n` are unescaped; other backslashes are kept, so `"host\d+"` stays a regex) or bare.
pub fn parse_matchers(input: &str) -> Result<Vec<Matcher>, MatcherSyntaxError> {
    let err = |reason: &str| MatcherSyntaxError {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let mut s = input.trim();
    if let Some(inner) = s.strip_prefix('{') {
        s = inner
            .strip_suffix('}')
            .ok_or_else(|| err("opening brace without a closing brace"))?;
    }
    let mut tokens = Vec::new();
    let mut current = String::new();
    let (mut in_quotes, mut escaped) = (false, false);
    for c in s.chars() {
        if escaped {
            current.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                current.push(c);
            }
            '"' => {
                in_quotes = !in_quotes;
                current.push(c);
            }
            ',' if !in_quotes => tokens.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    tokens.push(current);
    // a trailing comma is tolerated, as in Alertmanager; an empty matcher elsewhere is a typo
    if tokens.len() > 1 && tokens.last().is_some_and(|t| t.trim().is_empty()) {
        tokens.pop();
    }
    if tokens.iter().any(|t| t.trim().is_empty()) {
        return Err(err(if tokens.len() == 1 {
            "no matcher"
        } else {
            "empty matcher between commas"
        }));
    }
    tokens
        .iter()
        .map(|t| parse_one_matcher(t.trim()).map_err(|reason| err(&reason)))
        .collect()
}

fn parse_one_matcher(s: &str) -> Result<Matcher, String> {
    let name_end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(s.len());
    let name = &s[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("{s:?} does not start with a label name"));
    }
    let rest = s[name_end..].trim_start();
    let (op, raw) = if let Some(v) = rest.strip_prefix("=~") {
        (MatchOp::Regex, v)
    } else if let Some(v) = rest.strip_prefix("!~") {
        (MatchOp::NotRegex, v)
    } else if let Some(v) = rest.strip_prefix("!=") {
        (MatchOp::NotEqual, v)
    } else if let Some(v) = rest.strip_prefix('=') {
        (MatchOp::Equal, v)
    } else {
        return Err(format!("expected =, !=, =~ or !~ after {name:?}"));
    };
    let value = unescape_value(raw.trim())?;
    Matcher::new(op, name, &value).map_err(|e| crate::labels::regex_reason(&e.source))
}

fn unescape_value(raw: &str) -> Result<String, String> {
    let (body, quoted) = match raw.strip_prefix('"') {
        Some(body) => (body, true),
        None => (raw, false),
    };
    let mut out = String::with_capacity(body.len());
    let mut closed = false;
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if closed {
            return Err("text after the closing quote".into());
        }
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some(c @ ('"' | '\\')) => out.push(c),
                Some(c) => {
                    out.push('\\');
                    out.push(c);
                }
                None => out.push('\\'),
            },
            '"' if quoted => closed = true,
            '"' => return Err("unescaped double quote in the value".into()),
            c => out.push(c),
        }
    }
    if quoted && !closed {
        return Err("missing closing quote".into());
    }
    Ok(out)
}

fn op_rank(op: MatchOp) -> u8 {
    match op {
        MatchOp::Equal => 0,
        MatchOp::NotEqual => 1,
        MatchOp::Regex => 2,
        MatchOp::NotRegex => 3,
    }
}

fn op_str(op: MatchOp) -> &'static str {
    match op {
        MatchOp::Equal => "=",
        MatchOp::NotEqual => "!=",
        MatchOp::Regex => "=~",
        MatchOp::NotRegex => "!~",
    }
}

fn matches_all(matchers: &[Matcher], labels: &LabelMap) -> bool {
    matchers.iter().all(|m| m.matches(label(labels, &m.name)))
}

/// A label's value; an absent label reads as the empty string, as in Alertmanager.
fn label<'a>(labels: &'a LabelMap, name: &str) -> &'a str {
    labels.get(name).map_or("", String::as_str)
}

/// Prometheus label names: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `{a="1",b=~"x"}`, as Alertmanager prints matchers in route keys.
fn write_matchers(out: &mut String, matchers: &[Matcher]) {
    out.push('{');
    for (i, m) in matchers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&m.name);
        out.push_str(op_str(m.op));
        write_quoted(out, &m.value);
    }
    out.push('}');
}

/// `{a="1", b="2"}`, as Alertmanager prints label sets in group keys.
fn write_label_set(out: &mut String, labels: &LabelMap) {
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(k);
        out.push('=');
        write_quoted(out, v);
    }
    out.push('}');
}

/// A double-quoted string with Go's `%q` escapes for the common cases.
fn write_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupBy::All => f.write_str("[...]"),
            GroupBy::Labels(l) => write!(f, "[{}]", l.join(", ")),
        }
    }
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

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Text::deserialize(d).map(|t| t.0)
}

fn lenient_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<Text>::deserialize(d).map(|t| t.map(|t| t.0))
}

fn lenient_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Option::<Vec<Text>>::deserialize(d)
        .map(|v| v.unwrap_or_default().into_iter().map(|t| t.0).collect())
}

fn lenient_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Option::<BTreeMap<String, Text>>::deserialize(d).map(|m| {
        m.unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3339 → ms since the epoch.
    fn at(s: &str) -> i64 {
        crate::timefmt::parse_time(s).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matcher_strings_parse_as_alertmanager_writes_them() {
        // (input, [(name, op, value)])
        type Case<'a> = (&'a str, &'a [(&'a str, MatchOp, &'a str)]);
        let cases: &[Case] = &[
            // quoted equality
            (
                r#"severity="page""#,
                &[("severity", MatchOp::Equal, "page")],
            ),
            // bare value, spaces around the operator
            ("team != x", &[("team", MatchOp::NotEqual, "x")]),
            // regex with alternation, kept verbatim
            (
                r#"alertname=~"Foo|Bar""#,
                &[("alertname", MatchOp::Regex, "Foo|Bar")],
            ),
            // a backslash other than \" \\ \n is kept, so regex classes survive
            (
                r#"instance!~"host\d+""#,
                &[("instance", MatchOp::NotRegex, r"host\d+")],
            ),
            // escaped quote and comma inside quotes
            (
                r#"msg="a \"b\", c""#,
                &[("msg", MatchOp::Equal, r#"a "b", c"#)],
            ),
            // several in one entry, with braces and a trailing comma
            (
                r#"{a="1", b=~"x|y",}"#,
                &[("a", MatchOp::Equal, "1"), ("b", MatchOp::Regex, "x|y")],
            ),
            // empty value: matches alerts without the label
            (r#"env="""#, &[("env", MatchOp::Equal, "")]),
        ];
        for (input, want) in cases {
            let got: Vec<(String, MatchOp, String)> = parse_matchers(input)
                .unwrap_or_else(|e| panic!("{input}: {e}"))
                .into_iter()
                .map(|m| (m.name, m.op, m.value))
                .collect();
            let want: Vec<(String, MatchOp, String)> = want
                .iter()
                .map(|(n, o, v)| (n.to_string(), *o, v.to_string()))
                .collect();
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn bad_matcher_strings_say_why() {
        let cases = [
            ("", "no matcher"),
            ("severity", "expected =, !=, =~ or !~"),
            (r#"="x""#, "does not start with a label name"),
            (r#"a="x"y"#, "text after the closing quote"),
            (r#"a="x"#, "missing closing quote"),
            (r#"a=x"y"#, "unescaped double quote"),
            (r#"a=~"(""#, "unclosed group"),
            (r#"a="1",,b="2""#, "empty matcher"),
            (r#"{a="1""#, "closing brace"),
        ];
        for (input, reason) in cases {
            let e = parse_matchers(input).unwrap_err();
            assert!(e.to_string().contains(reason), "{input}: {e}");
            assert_eq!(e.input, input);
        }
    }

    #[test]
    fn route_keys_print_sorted_matchers_as_alertmanager() {
        let mut ms = parse_matchers(r#"team!="b", severity="page", team=~"a|b""#).unwrap();
        ms.sort_by(|a, b| {
            (a.name.as_str(), a.value.as_str(), op_rank(a.op)).cmp(&(
                b.name.as_str(),
                b.value.as_str(),
                op_rank(b.op),
            ))
        });
        let mut s = String::new();
        write_matchers(&mut s, &ms);
        assert_eq!(s, r#"{severity="page",team=~"a|b",team!="b"}"#);
    }

    #[test]
    fn label_sets_quote_like_go() {
        let mut s = String::new();
        write_label_set(
            &mut s,
            &labels(&[("b", "say \"hi\"\n"), ("a", r"c:\x"), ("c", "\u{1}")]),
        );
        assert_eq!(s, r#"{a="c:\\x", b="say \"hi\"\n", c="\x01"}"#);
    }

    #[test]
    fn range_fields_parse_and_reject_like_alertmanager() {
        // (parser, input, Ok(range) or Err(reason fragment))
        type Parse = fn(&str) -> Result<(i32, i32), String>;
        type Case<'a> = (Parse, &'a str, Result<(i32, i32), &'a str>);
        let cases: &[Case] = &[
            (parse_weekday_range, "monday:friday", Ok((1, 5))),
            (parse_weekday_range, "Saturday", Ok((6, 6))),
            // weeks start on sunday, so a weekend range wraps and is refused
            (
                parse_weekday_range,
                "saturday:sunday",
                Err("ends before it starts"),
            ),
            (parse_weekday_range, "funday", Err("not a valid weekday")),
            (
                parse_weekday_range,
                "monday:tuesday:friday",
                Err("invalid weekday range"),
            ),
            (parse_day_of_month_range, "1:5", Ok((1, 5))),
            (parse_day_of_month_range, "-3:-1", Ok((-3, -1))),
            (parse_day_of_month_range, "0", Err("not a valid day")),
            (parse_day_of_month_range, "32", Err("not a valid day")),
            (parse_day_of_month_range, "-3:5", Err("must be negative")),
            (parse_day_of_month_range, "20:10", Err("always before")),
            (parse_month_range, "january:march", Ok((1, 3))),
            (parse_month_range, "12", Ok((12, 12))),
            (parse_month_range, "13", Err("not a valid month")),
            (parse_month_range, "may:april", Err("ends before")),
            (parse_year_range, "2024:2026", Ok((2024, 2026))),
            (parse_year_range, "2026:2024", Err("ends before")),
        ];
        for (parse, input, want) in cases {
            match (parse(input), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{input}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{input}: {got}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn times_of_day_are_half_open_and_allow_24_00() {
        let range = |s: &str, e: &str| {
            parse_time_of_day_range(&TimeOfDayConfig {
                start_time: s.into(),
                end_time: e.into(),
            })
        };
        assert_eq!(range("09:00", "17:30"), Ok((540, 1050)));
        assert_eq!(range("22:00", "24:00"), Ok((1320, 1440)));
        assert!(range("17:00", "09:00").unwrap_err().contains("before"));
        assert!(range("9:00", "17:00").unwrap_err().contains("HH:MM"));
        assert!(range("24:01", "24:00").unwrap_err().contains("HH:MM"));
        assert!(range("", "17:00").unwrap_err().contains("both"));
    }

    #[test]
    fn negative_days_of_month_count_from_the_month_end() {
        let last_day = TimeInterval {
            times: vec![],
            weekdays: vec![],
            days_of_month: vec![(-1, -1)],
            months: vec![],
            years: vec![],
            location: Tz::UTC,
        };
        // 2024 is a leap year: the last day of February is the 29th
        assert!(!last_day.contains(at("2024-02-28T12:00:00Z")));
        assert!(last_day.contains(at("2024-02-29T12:00:00Z")));
        assert!(last_day.contains(at("2023-02-28T12:00:00Z")));
        // a range starting past a short month's end does not match in that month
        let the_31st = TimeInterval {
            days_of_month: vec![(31, 31)],
            ..last_day
        };
        assert!(!the_31st.contains(at("2024-04-30T12:00:00Z")));
        assert!(the_31st.contains(at("2024-05-31T12:00:00Z")));
    }

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
        let route = cfg.route.as_ref().unwrap();
        assert_eq!(route.group_by, Some(vec!["...".to_string()]));
        assert_eq!(
            route.routes[0].r#match.get("code").map(String::as_str),
            Some("500")
        );
        let spec = &cfg.time_intervals[0].time_intervals[0];
        assert_eq!(spec.times[0].start_time, "09:00");
        assert_eq!(spec.days_of_month, vec!["1", "-1"]);
        assert_eq!(spec.years, vec!["2024"]);
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
