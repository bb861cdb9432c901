//! The routing tree: routes as written ([`RouteConfig`]), validated and compiled into a
//! [`Router`] that answers which routes an alert takes ([`Router::matches`]) and its group key.
//! Options a route leaves out are inherited from its parent, the root's from Alertmanager's
//! defaults.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};
use serde_saphyr::{Location, Spanned};

use super::{
    DEFAULT_GROUP_INTERVAL_MS, DEFAULT_GROUP_WAIT_MS, DEFAULT_REPEAT_INTERVAL_MS, RouteError,
    RouteErrorKind, RouteErrors, TimeIntervals, lenient_opt_spanned, lenient_spanned_map,
    matches_all, values,
};
use crate::duration::PromDuration;
use crate::labels::{self, Labels, MatchOp, Matcher};

/// One node of the routing tree, as written. Options that are not set are inherited from the
/// parent node (the root inherits Alertmanager's defaults).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The receiver that gets the alerts this route matches. Required on the root route.
    #[serde(default)]
    pub receiver: Option<Spanned<String>>,
    /// Labels whose values split alerts into groups (one notification per group). `['...']`
    /// groups by every label, so each alert is its own group. An empty list is the same as
    /// leaving it out (inherited), as in Alertmanager.
    #[serde(default)]
    pub group_by: Option<Vec<Spanned<String>>>,
    /// Whether an alert matched by this route goes on to be matched against the following
    /// sibling routes. Default `false`: the first matching sibling wins. Not allowed on the root.
    #[serde(default)]
    pub r#continue: Option<Spanned<bool>>,
    /// Label matchers an alert must all satisfy to take this route: `severity="page"`,
    /// `alertname=~"Foo|Bar"` (regexes are anchored at both ends), `team!=x`, `env!~"dev.*"`.
    /// One entry may hold several, separated by commas. The root route has none.
    #[serde(default)]
    pub matchers: Vec<Spanned<String>>,
    /// Deprecated Alertmanager form of `matchers`: label name → exact value.
    #[serde(default, deserialize_with = "lenient_spanned_map")]
    pub r#match: BTreeMap<String, Spanned<String>>,
    /// Deprecated Alertmanager form of `matchers`: label name → regex (anchored).
    #[serde(default, deserialize_with = "lenient_spanned_map")]
    pub match_re: BTreeMap<String, Spanned<String>>,
    /// How long a new group waits for more alerts before its first notification, e.g. `30s`.
    /// Default `30s`.
    #[serde(default, deserialize_with = "lenient_opt_spanned")]
    pub group_wait: Option<Spanned<String>>,
    /// How long a group waits before notifying about alerts added to or resolved in it,
    /// e.g. `5m`. Default `5m`; must not be zero.
    #[serde(default, deserialize_with = "lenient_opt_spanned")]
    pub group_interval: Option<Spanned<String>>,
    /// How long before a notification is sent again for a group that has not changed, e.g. `4h`.
    /// Default `4h`; must not be zero.
    #[serde(default, deserialize_with = "lenient_opt_spanned")]
    pub repeat_interval: Option<Spanned<String>>,
    /// Names of time intervals during which this route sends nothing (it still matches, so it
    /// still stops later siblings unless `continue` is set). Not allowed on the root.
    #[serde(default)]
    pub mute_time_intervals: Option<Vec<Spanned<String>>>,
    /// Names of time intervals outside of which this route sends nothing. Not allowed on the root.
    #[serde(default)]
    pub active_time_intervals: Option<Vec<Spanned<String>>>,
    /// Child routes, tried in order.
    #[serde(default)]
    pub routes: Vec<Spanned<RouteConfig>>,
}

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
    /// tree; every problem is reported with its path and position.
    pub fn new<S: AsRef<str>>(
        route: &Spanned<RouteConfig>,
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

    pub(super) fn compile(
        spanned: &Spanned<RouteConfig>,
        receivers: &BTreeSet<&str>,
        time_intervals: &BTreeSet<&str>,
        errors: &mut Vec<RouteError>,
    ) -> Router {
        let path = "route";
        let route = &spanned.value;
        let err = |errors: &mut Vec<RouteError>, field: &str, at: Location, kind| {
            errors.push(RouteError {
                path: format!("{path}.{field}"),
                at,
                kind,
            })
        };
        match &route.receiver {
            Some(r) if !r.value.is_empty() => {}
            // an empty name points at itself, a missing one at the route
            r => err(
                errors,
                "receiver",
                r.as_ref().map_or(spanned.referenced, |r| r.referenced),
                RouteErrorKind::RootWithoutReceiver,
            ),
        }
        for (field, at) in [
            ("matchers", route.matchers.first().map(|m| m.referenced)),
            ("match", route.r#match.values().next().map(|m| m.referenced)),
            (
                "match_re",
                route.match_re.values().next().map(|m| m.referenced),
            ),
        ] {
            if let Some(at) = at {
                err(errors, field, at, RouteErrorKind::RootWithMatchers);
            }
        }
        if let Some(c) = route.r#continue.as_ref().filter(|c| c.value) {
            err(
                errors,
                "continue",
                c.referenced,
                RouteErrorKind::RootWithContinue,
            );
        }
        for (field, which, names) in [
            ("mute_time_intervals", "mute", &route.mute_time_intervals),
            (
                "active_time_intervals",
                "active",
                &route.active_time_intervals,
            ),
        ] {
            if let Some(first) = names.as_ref().and_then(|v| v.first()) {
                err(
                    errors,
                    field,
                    first.referenced,
                    RouteErrorKind::RootWithTimeIntervals(which),
                );
            }
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
        let mut root = compile_node(
            spanned,
            path,
            None,
            String::new(),
            &defaults,
            &known,
            errors,
        );
        assign_route_ids(&mut root);
        Router { root }
    }

    /// The routes an alert with `labels` takes, in order: Alertmanager's depth-first,
    /// left-to-right search, where a matching child stops its later siblings unless it has
    /// `continue`, and a route none of whose children match answers itself.
    pub fn matches(&self, labels: &Labels) -> Vec<RouteMatch> {
        let mut out = Vec::new();
        self.root.collect(labels, &mut out);
        out
    }

    /// Alertmanager's group key for an alert taking route `m`, `{route id}:{group labels}`
    /// (e.g. `{}/{severity="page"}:{alertname="Down", service="api"}`), and the group labels:
    /// the alert's values of the route's `group_by` labels (every label for `...`).
    pub fn group_key(&self, m: &RouteMatch, labels: &Labels) -> (String, Labels) {
        let group_labels = match &m.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => labels.filter(|k| names.iter().any(|n| n == k)),
        };
        let mut key = m.route_id.clone();
        key.push(':');
        write_label_set(&mut key, &group_labels);
        (key, group_labels)
    }

    /// The receivers an alert with `labels` reaches, in routing order, once per matching route
    /// (as `amtool config routes test` prints them).
    pub fn route_test(&self, labels: &Labels) -> Vec<String> {
        self.matches(labels)
            .into_iter()
            .map(|m| m.receiver)
            .collect()
    }
}

fn compile_node(
    spanned: &Spanned<RouteConfig>,
    path: &str,
    parent_key: Option<&str>,
    index_path: String,
    parent: &Inherited,
    known: &Known,
    errors: &mut Vec<RouteError>,
) -> RouteNode {
    let cfg = &spanned.value;
    let mut push = |field: String, at: Location, kind: RouteErrorKind| {
        errors.push(RouteError {
            path: format!("{path}.{field}"),
            at,
            kind,
        })
    };
    let mut opts = parent.clone();

    if let Some(receiver) = cfg.receiver.as_ref().filter(|r| !r.value.is_empty()) {
        if !known.receivers.contains(receiver.value.as_str()) {
            push(
                "receiver".into(),
                receiver.referenced,
                RouteErrorKind::UnknownReceiver(receiver.value.clone()),
            );
        }
        opts.receiver = receiver.value.clone();
    }

    if let Some(group_by) = cfg.group_by.as_ref().filter(|g| !g.is_empty()) {
        let mut seen = BTreeSet::new();
        let mut names = Vec::new();
        let mut all = None;
        for (i, name) in group_by.iter().enumerate() {
            let (at, name) = (name.referenced, &name.value);
            if name == "..." {
                all = Some(at);
            } else if !labels::valid_label_name(name) {
                push(
                    format!("group_by[{i}]"),
                    at,
                    RouteErrorKind::InvalidLabelName(name.clone()),
                );
            } else if !seen.insert(name.as_str()) {
                push(
                    format!("group_by[{i}]"),
                    at,
                    RouteErrorKind::DuplicateGroupBy(name.clone()),
                );
            } else {
                names.push(name.clone());
            }
        }
        if let Some(at) = all
            && group_by.len() > 1
        {
            push("group_by".into(), at, RouteErrorKind::WildcardWithLabels);
        }
        opts.group_by = if all.is_some() {
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
        match PromDuration::parse(&raw.value) {
            Ok(d) if d.as_millis() == 0 && !may_be_zero => push(
                field.into(),
                raw.referenced,
                RouteErrorKind::ZeroInterval(field),
            ),
            Ok(d) => *slot = d.as_millis(),
            Err(e) => push(field.into(), raw.referenced, RouteErrorKind::Duration(e)),
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
            if !known.time_intervals.contains(name.value.as_str()) {
                push(
                    format!("{field}[{i}]"),
                    name.referenced,
                    RouteErrorKind::UnknownTimeInterval(name.value.clone()),
                );
            }
        }
        *slot = values(names);
    }

    let mut matchers = Vec::new();
    for (name, value) in &cfg.r#match {
        if labels::valid_label_name(name) {
            matchers.push(Matcher::equal(name, &value.value));
        } else {
            push(
                format!("match.{name}"),
                value.referenced,
                RouteErrorKind::InvalidLabelName(name.clone()),
            );
        }
    }
    for (name, value) in &cfg.match_re {
        if !labels::valid_label_name(name) {
            push(
                format!("match_re.{name}"),
                value.referenced,
                RouteErrorKind::InvalidLabelName(name.clone()),
            );
            continue;
        }
        match Matcher::new(MatchOp::Regex, name, &value.value) {
            Ok(m) => matchers.push(m),
            Err(e) => push(
                format!("match_re.{name}"),
                value.referenced,
                RouteErrorKind::Regex(e),
            ),
        }
    }
    for (i, line) in cfg.matchers.iter().enumerate() {
        match labels::parse_matchers(&line.value) {
            Ok(ms) => matchers.extend(ms),
            Err(e) => push(
                format!("matchers[{i}]"),
                line.referenced,
                RouteErrorKind::Matcher(e),
            ),
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
        r#continue: cfg.r#continue.as_ref().is_some_and(|c| c.value),
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
    fn collect(&self, labels: &Labels, out: &mut Vec<RouteMatch>) -> bool {
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

fn op_rank(op: MatchOp) -> u8 {
    match op {
        MatchOp::Equal => 0,
        MatchOp::NotEqual => 1,
        MatchOp::Regex => 2,
        MatchOp::NotRegex => 3,
    }
}

/// `{a="1",b=~"x"}`, as Alertmanager prints matchers in route keys.
fn write_matchers(out: &mut String, matchers: &[Matcher]) {
    out.push('{');
    for (i, m) in matchers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&m.name);
        out.push_str(labels::op_text(m.op));
        write_quoted(out, &m.value);
    }
    out.push('}');
}

/// `{a="1", b="2"}`, as Alertmanager prints label sets in group keys.
/// A label set as a group key writes it (`{alertname="Down", service="api"}`).
pub fn label_set_text(labels: &Labels) -> String {
    let mut out = String::new();
    write_label_set(&mut out, labels);
    out
}

fn write_label_set(out: &mut String, labels: &Labels) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn route_keys_print_sorted_matchers_as_alertmanager() {
        let mut ms = labels::parse_matchers(r#"team!="b", severity="page", team=~"a|b""#).unwrap();
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
}
