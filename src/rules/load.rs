//! Loading rule files: glob patterns expanded to files ([`expand_globs`]), every file parsed
//! ([`parse_file`]), every rule validated and its expression, script and templates compiled,
//! every error collected with its file:line:col, group and rule ([`load_files`]). A rule set is
//! either wholly valid or not used at all. The types it builds ([`RuleSet`], [`Group`], [`Rule`])
//! and what a rule file is ([`super::is_rule_file`]) are in the parent module.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{
    Condition, FlapDetection, Group, PromExpr, Rule, RuleError, RuleErrors, RuleKind, RuleSet,
    is_rule_test_file_name,
};
use crate::duration::{MIN_RULE_INTERVAL, PromDuration};
use crate::labels::{valid_label_name, valid_metric_name};
use crate::promql::rhai::ScriptEngine;
use crate::rules::template::Template;

/// The reserved `rule_files` entry that loads tocsin's own self-alert rules
/// (`rules/tocsin-self.yml`, built into the binary): no file is read, and the groups' file and
/// every error's path is this name (positions are the built-in file's).
pub const SELF_RULES: &str = "tocsin:self";

/// The reserved `rule_files` entry that loads the always-firing `Watchdog` alert
/// (`rules/tocsin-watchdog.yml`, built in), the dead-man's switch users route to a receiver
/// that notices when it stops arriving. Loaded only when listed.
pub const WATCHDOG_RULES: &str = "tocsin:watchdog";

/// `rules/tocsin-self.yml`, compiled in: what [`SELF_RULES`] loads.
pub const SELF_RULES_YAML: &str = include_str!("../../rules/tocsin-self.yml");

/// `rules/tocsin-watchdog.yml`, compiled in: what [`WATCHDOG_RULES`] loads.
pub const WATCHDOG_RULES_YAML: &str = include_str!("../../rules/tocsin-watchdog.yml");

/// The built-in rule file a reserved `rule_files` entry (as [`expand_globs`] returns it) names.
pub fn builtin_rules(path: &Path) -> Option<&'static str> {
    if path == Path::new(SELF_RULES) {
        Some(SELF_RULES_YAML)
    } else if path == Path::new(WATCHDOG_RULES) {
        Some(WATCHDOG_RULES_YAML)
    } else {
        None
    }
}

/// Whether `path` is a reserved built-in entry ([`SELF_RULES`], [`WATCHDOG_RULES`]): tocsin's
/// own rules, not counted as the user's.
pub fn is_self_rules(path: &Path) -> bool {
    builtin_rules(path).is_some()
}

// ---------------------------------------------------------------- raw file format

// The `///` comments of these types are the user documentation of the rule file format:
// `tocsin schema rules` turns them into the JSON Schema editors read (`config::schema`).

/// A rule file: Prometheus's rule-file format (it loads unchanged), plus `script`, `resolve`,
/// `flap_detection` and `dry_run` on rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    /// The rule groups. Each group is evaluated on its own schedule, its rules in order.
    #[serde(default)]
    groups: Vec<RawGroup>,
}

/// A group of rules evaluated together, in order, at one time per tick; a recording rule's
/// result is visible to the rules after it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    /// The group's name, unique among the loaded files; its identity (schedule and alert state
    /// follow it when it moves to another file).
    name: Spanned<String>,
    /// How often the group is evaluated (at least 1s). Default: `evaluation.interval` of
    /// tocsin.yml.
    #[serde(default)]
    interval: Option<Spanned<PromDuration>>,
    /// The most series a recording rule or alerts an alerting rule may produce; an evaluation
    /// over it fails. 0 (the default): no limit.
    #[serde(default)]
    limit: Option<Spanned<i64>>,
    /// How far back from the evaluation time the group's queries look, for data that arrives
    /// late. Default: none (a datasource's own `query_offset` for a remote group).
    #[serde(default)]
    query_offset: Option<Spanned<PromDuration>>,
    /// The name of a `datasources:` entry of tocsin.yml whose engine answers this group's
    /// queries instead of the embedded store (PromQL rules only).
    #[serde(default)]
    datasource: Option<Spanned<String>>,
    /// Labels added to every series and alert of the group's rules (a rule's own labels win).
    #[serde(default)]
    labels: RawMap,
    /// The rules, evaluated in this order.
    #[serde(default)]
    rules: Vec<RawRule>,
}

// The fields most rules leave out are boxed: a file's raw rules are all held at once while it
// loads, and each `Spanned` field is 80 bytes or more (two locations of 28), so a rule is 328 bytes
// instead of ~650.
/// One rule: an alerting rule (`alert`) or a recording rule (`record`), with its condition in
/// PromQL (`expr`) or a Rhai script (`script`), exactly one of each pair.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    /// The alert's name (the `alertname` label); makes this an alerting rule.
    #[serde(default)]
    alert: Option<Spanned<String>>,
    /// The name of the series this recording rule writes (a valid metric name).
    #[serde(default)]
    record: Option<Box<Spanned<String>>>,
    /// The condition or recorded value in PromQL: an instant vector whose every element is an
    /// alert instance (or recorded series).
    #[serde(default)]
    expr: Option<Spanned<String>>,
    /// The condition as a Rhai script (tocsin's extension) returning a vector, a bool or a
    /// number, instead of `expr`.
    #[serde(default)]
    script: Option<Box<Spanned<String>>>,
    /// A PromQL condition that must hold before a firing alert resolves (hysteresis), instead of
    /// resolving as soon as `expr` returns nothing.
    #[serde(default)]
    resolve: Option<Box<Spanned<String>>>,
    /// How long the condition must hold before the alert fires (pending meanwhile). Default `0s`.
    #[serde(default, rename = "for")]
    for_: Option<Spanned<PromDuration>>,
    /// How long a firing alert keeps firing after its condition stopped holding. Default `0s`.
    #[serde(default)]
    keep_firing_for: Option<Box<Spanned<PromDuration>>>,
    /// Labels added to the alert or recorded series; templates in alerting rules
    /// (`{{ $labels.instance }}`).
    #[serde(default)]
    labels: RawMap,
    /// An alert's annotations (`summary`, `description`, …): templates with `$labels`,
    /// `$value`, `humanize` and Prometheus's other template functions.
    #[serde(default)]
    annotations: RawMap,
    /// Nagios-style flap detection over the last 21 evaluations: a flapping alert sends no
    /// notification until it settles.
    #[serde(default)]
    flap_detection: Option<Box<Spanned<RawFlap>>>,
    /// Evaluate and record this rule's alerts but deliver no notification for them (shadow
    /// mode for one rule). Default `false`.
    #[serde(default)]
    dry_run: bool,
}

/// A YAML mapping of label (or annotation) names to strings, as pairs sorted by name: what a
/// `BTreeMap<String, Spanned<String>>` holds, in a fifth of its memory for a rule's few labels.
/// A file's raw rules are all held at once while it loads, and a map's first B-tree node is room
/// for 11 pairs of 104 bytes, so two maps a rule made over half of the load's peak
/// (`benches/rule_memory.rs`: 40 MB to load 10,000 rules that keep 10.6). The parser refuses a
/// repeated key, as it does for a map.
#[derive(Debug, Default)]
struct RawMap(Vec<(String, Spanned<String>)>);

impl RawMap {
    fn iter(&self) -> impl Iterator<Item = (&String, &Spanned<String>)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<'de> Deserialize<'de> for RawMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> serde::de::Visitor<'de> for Pairs {
            type Value = RawMap;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of names to strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<RawMap, A::Error> {
                let mut pairs: Vec<(String, Spanned<String>)> = Vec::new();
                while let Some(pair) = m.next_entry()? {
                    pairs.push(pair);
                }
                // as a map would: in name order, the last of a repeated name (the parser
                // refuses repeats before this)
                pairs.reverse();
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                pairs.dedup_by(|later, first| later.0 == first.0);
                pairs.shrink_to_fit();
                Ok(RawMap(pairs))
            }
        }
        d.deserialize_map(Pairs)
    }
}

/// Flap detection thresholds, in percent of state changes over the last 21 evaluations.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct RawFlap {
    /// Percent state change below which a flapping alert stops flapping. Default `20` (Nagios's).
    #[serde(default = "default_flap_low")]
    low: f64,
    /// Percent state change above which an alert starts flapping. Default `30` (Nagios's).
    #[serde(default = "default_flap_high")]
    high: f64,
}

fn default_flap_low() -> f64 {
    20.0
}
fn default_flap_high() -> f64 {
    30.0
}

/// Expands glob patterns (`rules/*.yml`) relative to `base` into sorted, existing files. A pattern
/// without wildcards must name an existing file; a pattern with wildcards must match at least one
/// (rule test files `*_test.yml` never count).
pub fn expand_globs(patterns: &[String], base: &Path) -> Result<Vec<PathBuf>, RuleErrors> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for p in patterns {
        if p == SELF_RULES || p == WATCHDOG_RULES {
            out.push(PathBuf::from(p));
            continue;
        }
        let full = if Path::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            base.join(p)
        };
        let has_glob = p.contains(['*', '?', '[']);
        if !has_glob {
            if full.is_file() {
                out.push(full);
            } else {
                errors.push(file_error(&full, format!("rule file {p:?} not found")));
            }
            continue;
        }
        let dir = full.parent().map(Path::to_path_buf).unwrap_or_default();
        let pat = full
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if dir.to_string_lossy().contains(['*', '?', '[']) {
            errors.push(file_error(
                &full,
                "wildcards are supported in the file name only".into(),
            ));
            continue;
        }
        // unlike Prometheus, a pattern that matches nothing (its directory missing included) is
        // an error: the daemon would run without the rules the pattern was written for
        let no_match = || file_error(&full, format!("pattern {p:?} matches no file"));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            errors.push(no_match());
            continue;
        };
        // rule unit tests live beside their rule files (`x.yml`, `x_test.yml`): a glob never
        // loads a test file as rules
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.file_name().is_some_and(|n| {
                        let n = n.to_string_lossy();
                        glob_match(&pat, &n) && !is_rule_test_file_name(&n)
                    })
            })
            .collect();
        if found.is_empty() {
            errors.push(no_match());
        }
        found.sort();
        out.extend(found);
    }
    if errors.is_empty() {
        out.dedup();
        Ok(out)
    } else {
        Err(RuleErrors(errors))
    }
}

/// Shell-style match of one path component: `*`, `?` and literal characters.
pub(crate) fn glob_match(pat: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pat.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn file_error(path: &Path, message: String) -> RuleError {
    RuleError {
        path: path.to_path_buf(),
        line: 0,
        col: 0,
        context: String::new(),
        message,
    }
}

/// Loads, validates and compiles rule files. `default_interval_ms` applies to groups without
/// `interval`. Every error of every file is returned together.
pub fn load_files(
    files: &[PathBuf],
    default_interval_ms: i64,
    scripts: &ScriptEngine,
) -> Result<RuleSet, RuleErrors> {
    let mut set = RuleSet::default();
    let mut errors = Vec::new();
    let mut group_names: HashMap<String, (PathBuf, u64)> = HashMap::new();
    // a file reached twice (a directory and the file by name, two patterns) is loaded once
    let mut seen_files = std::collections::HashSet::new();
    let mut plain = PlainTemplates::new();
    for path in files {
        if !seen_files.insert(std::fs::canonicalize(path).unwrap_or_else(|_| path.clone())) {
            continue;
        }
        let read = if let Some(yaml) = builtin_rules(path) {
            Ok(yaml.to_string())
        } else {
            std::fs::read_to_string(path)
        };
        let text = match read {
            Ok(t) => t,
            Err(e) => {
                errors.push(file_error(path, format!("cannot read rule file: {e}")));
                continue;
            }
        };
        match parse_file_at(&text, path, default_interval_ms, scripts, &mut plain) {
            Ok(groups) => {
                for (g, (line, col)) in groups {
                    if let Some((first, first_line)) = group_names.get(&g.name) {
                        errors.push(RuleError {
                            path: path.clone(),
                            line,
                            col,
                            context: format!("group {:?}", g.name),
                            message: format!(
                                "duplicate group name (first in {}:{first_line})",
                                first.display()
                            ),
                        });
                        continue;
                    }
                    group_names.insert(g.name.clone(), (path.clone(), line));
                    set.groups.push(Arc::new(g));
                }
            }
            Err(mut e) => errors.append(&mut e.0),
        }
        // the built-in file is no file to watch
        if !is_self_rules(path) {
            set.files.push(path.clone());
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        // file by file in the order given, each file's by position
        let order = |p: &Path| files.iter().position(|f| f == p).unwrap_or(usize::MAX);
        errors.sort_by_key(|e| (order(&e.path), e.line, e.col));
        Err(RuleErrors(errors))
    }
}

/// Parses and validates one rule file's text; `path` is used in messages and as the group's file.
/// Errors are sorted by position.
pub fn parse_file(
    text: &str,
    path: &Path,
    default_interval_ms: i64,
    scripts: &ScriptEngine,
) -> Result<Vec<Group>, RuleErrors> {
    parse_file_at(
        text,
        path,
        default_interval_ms,
        scripts,
        &mut PlainTemplates::new(),
    )
    .map(|groups| groups.into_iter().map(|(g, _)| g).collect())
}

/// A line and column in a rule file.
type Position = (u64, u64);

/// The plain texts (no `{{`) among one load's label and annotation templates, each parsed once
/// and shared by every rule that writes it: most labels are a few values repeated over the rules
/// (`severity: page`), and each was a template of its own (~100 bytes in three allocations).
type PlainTemplates = HashMap<String, Arc<Template>>;

/// [`parse_file`], with each group's name position (line, column) for errors across files.
fn parse_file_at(
    text: &str,
    path: &Path,
    default_interval_ms: i64,
    scripts: &ScriptEngine,
    plain: &mut PlainTemplates,
) -> Result<Vec<(Group, Position)>, RuleErrors> {
    let (raw, mut structural) = parse_raw(text, path);
    let mut errors = std::mem::take(&mut structural);
    let mut groups = Vec::new();
    let mut positions = Vec::new();
    let mut seen_groups: HashMap<String, u64> = HashMap::new();
    for (gi, g) in raw.groups.into_iter().enumerate() {
        let gline = g.name.referenced.line();
        let gname = g.name.value.clone();
        if gname.trim().is_empty() {
            er(
                &mut errors,
                path,
                gline,
                g.name.referenced.column(),
                format!("groups[{gi}].name"),
                "group name must not be empty".into(),
            );
        }
        if let Some(first) = seen_groups.insert(gname.clone(), gline) {
            er(
                &mut errors,
                path,
                gline,
                g.name.referenced.column(),
                format!("group {gname:?}"),
                format!("duplicate group name in this file (first at line {first})"),
            );
        }
        let interval_ms = match &g.interval {
            Some(i) if i.value.0 < MIN_RULE_INTERVAL => {
                er(
                    &mut errors,
                    path,
                    i.referenced.line(),
                    i.referenced.column(),
                    format!("group {gname:?}: interval"),
                    format!(
                        "interval {} is shorter than the minimum of {}",
                        i.value,
                        PromDuration(MIN_RULE_INTERVAL)
                    ),
                );
                default_interval_ms
            }
            Some(i) => i.value.as_millis(),
            None => default_interval_ms,
        };
        let limit = match &g.limit {
            Some(l) if l.value < 0 => {
                er(
                    &mut errors,
                    path,
                    l.referenced.line(),
                    l.referenced.column(),
                    format!("group {gname:?}: limit"),
                    "limit must not be negative".into(),
                );
                0
            }
            Some(l) => l.value as usize,
            None => 0,
        };
        for (k, v) in g.labels.iter() {
            if !valid_label_name(k) {
                push(
                    &mut errors,
                    path,
                    v,
                    &format!("group {gname:?}: labels"),
                    format!("invalid label name {k:?}"),
                );
            }
        }
        // a group on a remote datasource sends its expressions' texts: their trees are not kept
        let keep_trees = g.datasource.is_none();
        let mut rules = Vec::new();
        let mut seen_rules: HashMap<(String, Vec<(String, String)>), u64> = HashMap::new();
        for (ri, r) in g.rules.into_iter().enumerate() {
            let ctx_of = |name: &str| format!("group {gname:?}, rule {name:?}");
            let (name, line, col, is_alert) = match (&r.alert, r.record.as_deref()) {
                (Some(a), None) => (
                    a.value.clone(),
                    a.referenced.line(),
                    a.referenced.column(),
                    true,
                ),
                (None, Some(rec)) => (
                    rec.value.clone(),
                    rec.referenced.line(),
                    rec.referenced.column(),
                    false,
                ),
                (Some(a), Some(_)) => {
                    er(
                        &mut errors,
                        path,
                        a.referenced.line(),
                        a.referenced.column(),
                        ctx_of(&a.value),
                        "a rule has either `alert` or `record`, not both".into(),
                    );
                    continue;
                }
                (None, None) => {
                    let (l, c) = r
                        .expr
                        .as_ref()
                        .or(r.script.as_deref())
                        .map(at)
                        .unwrap_or((gline, 0));
                    er(
                        &mut errors,
                        path,
                        l,
                        c,
                        format!("group {gname:?}, rules[{ri}]"),
                        "a rule needs `alert` or `record`".into(),
                    );
                    continue;
                }
            };
            let ctx = ctx_of(&name);
            if name.trim().is_empty() {
                er(
                    &mut errors,
                    path,
                    line,
                    col,
                    ctx.clone(),
                    "rule name must not be empty".into(),
                );
            } else if !is_alert && !valid_metric_name(&name) {
                er(
                    &mut errors,
                    path,
                    line,
                    col,
                    ctx.clone(),
                    format!("invalid recording rule name {name:?}: must be a valid metric name"),
                );
            }
            let static_labels: Vec<(String, String)> = r
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect();
            if is_alert {
                if let Some(first) = seen_rules.insert((name.clone(), static_labels.clone()), line)
                {
                    er(
                        &mut errors,
                        path,
                        line,
                        col,
                        ctx.clone(),
                        format!(
                            "duplicate alert with the same labels in this group (first at line {first}): their states could not be told apart"
                        ),
                    );
                }
            } else if let Some(first) =
                seen_rules.insert((name.clone(), static_labels.clone()), line)
            {
                er(
                    &mut errors,
                    path,
                    line,
                    col,
                    ctx.clone(),
                    format!(
                        "duplicate recording rule with the same labels in this group (first at line {first})"
                    ),
                );
            }
            if let (Some(ds), Some(sc)) = (&g.datasource, r.script.as_deref()) {
                // a script reads raw series through tocsin's engine (`query()`, selectors,
                // tocsin-only helpers): the remote engine cannot run it, and sending each of its
                // queries away would answer differently from the same script on the local store
                push(
                    &mut errors,
                    path,
                    sc,
                    &ctx,
                    format!(
                        "script rules cannot run in a group on datasource {:?}: write the condition as PromQL (`expr`), or move the rule to a group on the embedded store",
                        ds.value
                    ),
                );
            }
            let condition = match (&r.expr, r.script.as_deref()) {
                (Some(e), None) => {
                    compile_promql(e, &ctx, "expr", text, path, &mut errors, keep_trees)
                }
                (None, Some(s)) => compile_script(s, &ctx, scripts, path, &mut errors),
                (Some(e), Some(_)) => {
                    push(
                        &mut errors,
                        path,
                        e,
                        &ctx,
                        "a rule has either `expr` (PromQL) or `script` (Rhai), not both".into(),
                    );
                    None
                }
                (None, None) => {
                    errors.push(RuleError {
                        path: path.to_path_buf(),
                        line,
                        col,
                        context: ctx.clone(),
                        message: "a rule needs `expr` (PromQL) or `script` (Rhai)".into(),
                    });
                    None
                }
            };
            let mut labels = Vec::new();
            for (k, v) in r.labels.iter() {
                if !valid_label_name(k) || k == crate::labels::METRIC_NAME {
                    push(
                        &mut errors,
                        path,
                        v,
                        &ctx,
                        format!("invalid label name {k:?}"),
                    );
                }
                if let Some(t) = compile_template(
                    v,
                    &ctx,
                    &format!("labels.{k}"),
                    text,
                    path,
                    &mut errors,
                    plain,
                ) {
                    labels.push((k.clone(), t));
                }
            }
            let mut kind = if is_alert {
                let mut annotations = Vec::new();
                for (k, v) in r.annotations.iter() {
                    if let Some(t) = compile_template(
                        v,
                        &ctx,
                        &format!("annotations.{k}"),
                        text,
                        path,
                        &mut errors,
                        plain,
                    ) {
                        annotations.push((k.clone(), t));
                    }
                }
                let resolve = r.resolve.as_deref().and_then(|e| {
                    compile_promql(e, &ctx, "resolve", text, path, &mut errors, keep_trees)
                });
                let flap = r.flap_detection.as_deref().and_then(|f| {
                    let v = f.value;
                    let ok = (0.0..=100.0).contains(&v.low) && (0.0..=100.0).contains(&v.high) && v.low < v.high;
                    if !ok {
                        push(&mut errors, path, f, &ctx, format!("flap_detection: need 0 <= low < high <= 100, got low {} and high {}", v.low, v.high));
                    }
                    ok.then_some(FlapDetection { low: v.low, high: v.high })
                });
                RuleKind::Alert {
                    hold: r.for_.as_ref().map(|d| d.value.as_millis()).unwrap_or(0),
                    keep_firing_for: r
                        .keep_firing_for
                        .as_deref()
                        .map(|d| d.value.as_millis())
                        .unwrap_or(0),
                    resolve,
                    annotations,
                    flap,
                }
            } else {
                for (field, present) in [
                    ("for", r.for_.as_ref().map(at)),
                    ("keep_firing_for", r.keep_firing_for.as_deref().map(at)),
                    ("resolve", r.resolve.as_deref().map(at)),
                    ("flap_detection", r.flap_detection.as_deref().map(at)),
                ] {
                    if let Some((l, c)) = present {
                        errors.push(RuleError {
                            path: path.to_path_buf(),
                            line: l,
                            col: c,
                            context: ctx.clone(),
                            message: format!("`{field}` is only valid on alerting rules"),
                        });
                    }
                }
                if let Some((_, v)) = r.annotations.iter().next() {
                    push(
                        &mut errors,
                        path,
                        v,
                        &ctx,
                        "`annotations` are only valid on alerting rules".into(),
                    );
                }
                RuleKind::Record
            };
            let Some(condition) = condition else {
                continue;
            };
            let key = rule_key(&gname, &name, &condition, &static_labels);
            // kept for the rule's life: no room for more (a pushed list has room for 4)
            labels.shrink_to_fit();
            if let RuleKind::Alert { annotations, .. } = &mut kind {
                annotations.shrink_to_fit();
            }
            rules.push(Rule {
                name,
                kind,
                condition,
                labels,
                dry_run: r.dry_run,
                key,
                line,
            });
        }
        rules.shrink_to_fit();
        groups.push(Group {
            name: gname,
            file: path.to_path_buf(),
            interval_ms,
            limit,
            query_offset_ms: g.query_offset.map(|o| o.value.as_millis()).unwrap_or(0),
            datasource: g.datasource.map(|d| super::DatasourceRef {
                line: d.referenced.line(),
                col: d.referenced.column(),
                name: d.value,
            }),
            labels: g.labels.0.into_iter().map(|(k, v)| (k, v.value)).collect(),
            rules,
        });
        positions.push((gline, g.name.referenced.column()));
    }
    if errors.is_empty() {
        Ok(groups.into_iter().zip(positions).collect())
    } else {
        errors.sort_by_key(|e| (e.line, e.col));
        Err(RuleErrors(errors))
    }
}

/// The most structural errors (YAML syntax, unknown fields, wrong types) reported for one file.
const MAX_STRUCTURAL_ERRORS: usize = 100;

/// Parses the raw file, reporting every structural error rather than the first: serde stops at the
/// first, so each error's enclosing list item (a rule, or a group when the error is outside its
/// rules) is blanked out, line count kept, and the text parsed again; the rest is then validated
/// as usual, with real positions. Flow-style items that cannot be blanked by line end the search.
fn parse_raw(text: &str, path: &Path) -> (RawFile, Vec<RuleError>) {
    let mut errors = Vec::new();
    if text.trim().is_empty() {
        return (RawFile { groups: Vec::new() }, errors);
    }
    // the text is copied only to blank an item out after an error
    let mut current = std::borrow::Cow::Borrowed(text);
    loop {
        match serde_saphyr::from_str::<RawFile>(&current) {
            Ok(raw) => return (raw, errors),
            Err(e) => {
                let (line, col) = e
                    .location()
                    .map(|l| (l.line(), l.column()))
                    .unwrap_or((0, 0));
                errors.push(RuleError {
                    path: path.to_path_buf(),
                    line,
                    col,
                    context: String::new(),
                    message: crate::config::parse_message(&e),
                });
                match blank_enclosing_item(&current, line) {
                    Some(next) if *next != *current && errors.len() < MAX_STRUCTURAL_ERRORS => {
                        current = std::borrow::Cow::Owned(next)
                    }
                    _ => return (RawFile { groups: Vec::new() }, errors),
                }
            }
        }
    }
}

/// `text` with the innermost block-sequence item (`- …` and its more indented lines) enclosing
/// 1-based `line` replaced by comment lines; None when there is none or nothing would change.
fn blank_enclosing_item(text: &str, line: u64) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let content = |l: &str| !l.trim().is_empty() && !l.trim_start().starts_with('#');
    let is_item = |l: &str| {
        let t = l.trim_start();
        t == "-" || t.starts_with("- ")
    };
    let mut k = (line as usize)
        .checked_sub(1)?
        .min(lines.len().checked_sub(1)?);
    while !content(lines[k]) {
        k = k.checked_sub(1)?;
    }
    let mut limit = indent(lines[k]);
    let start = loop {
        let l = lines[k];
        if content(l) && indent(l) <= limit {
            if is_item(l) {
                break k;
            }
            limit = indent(l).saturating_sub(1);
        }
        k = k.checked_sub(1)?;
    };
    let item_indent = indent(lines[start]);
    let mut end = start + 1;
    while end < lines.len() && (!content(lines[end]) || indent(lines[end]) > item_indent) {
        end += 1;
    }
    // an item left alone in its list becomes `[]`: a list emptied by comments would be null
    let sibling = |l: Option<&&str>| l.is_some_and(|l| is_item(l) && indent(l) == item_indent);
    let before = lines[..start]
        .iter()
        .rev()
        .find(|l| content(l) && indent(l) <= item_indent);
    let after = lines[end..].iter().find(|l| content(l));
    let alone = !sibling(before) && !sibling(after);
    let mut out = String::with_capacity(text.len());
    for (i, l) in lines.iter().enumerate() {
        if i == start && alone {
            out.push_str(&" ".repeat(item_indent));
            out.push_str("[]");
        } else if (start..end).contains(&i) {
            out.push('#');
        } else {
            out.push_str(l);
        }
        out.push('\n');
    }
    Some(out)
}

fn er(
    errors: &mut Vec<RuleError>,
    path: &Path,
    line: u64,
    col: u64,
    context: String,
    message: String,
) {
    errors.push(RuleError {
        path: path.to_path_buf(),
        line,
        col,
        context,
        message,
    });
}

fn push<T>(errors: &mut Vec<RuleError>, path: &Path, at: &Spanned<T>, ctx: &str, message: String) {
    errors.push(RuleError {
        path: path.to_path_buf(),
        line: at.referenced.line(),
        col: at.referenced.column(),
        context: ctx.to_string(),
        message,
    });
}

/// `keep_tree`: whether tocsin's engine evaluates the expression (the group has no
/// `datasource:`); a remote group's expressions are validated and kept as text.
fn compile_promql(
    e: &Spanned<String>,
    ctx: &str,
    field: &str,
    source: &str,
    path: &Path,
    errors: &mut Vec<RuleError>,
    keep_tree: bool,
) -> Option<Condition> {
    match crate::promql::parse(&e.value) {
        Ok(expr) => {
            if matches!(expr, promql_parser::parser::Expr::StringLiteral(_)) {
                push(
                    errors,
                    path,
                    e,
                    ctx,
                    format!("{field}: the expression must be a vector or a scalar, not a string"),
                );
                return None;
            }
            if matches!(
                expr,
                promql_parser::parser::Expr::MatrixSelector(_)
                    | promql_parser::parser::Expr::Subquery(_)
            ) {
                push(
                    errors,
                    path,
                    e,
                    ctx,
                    format!(
                        "{field}: the expression must be an instant vector or a scalar, not a range vector"
                    ),
                );
                return None;
            }
            let text: Arc<str> = Arc::from(e.value.as_str());
            let expr = if keep_tree {
                PromExpr::parsed(text.clone(), expr)
            } else {
                PromExpr::text_only(text.clone())
            };
            Some(Condition::PromQL {
                text,
                expr: Arc::new(expr),
            })
        }
        Err(err) => {
            let (msg, unknown) = match err {
                crate::promql::QueryError::Parse { message, .. } => {
                    crate::promql::explain_parse_error(&message)
                }
                other => (other.to_string(), None),
            };
            // an unknown function: at its call, not at the start of the expression
            let (line, col) = unknown
                .and_then(|name| call_offset(&e.value, &name))
                .map(|off| point_at(source, e, off))
                .unwrap_or((e.referenced.line(), e.referenced.column()));
            er(
                errors,
                path,
                line,
                col,
                ctx.to_string(),
                format!("{field}: {msg}"),
            );
            None
        }
    }
}

fn compile_script(
    s: &Spanned<String>,
    ctx: &str,
    scripts: &ScriptEngine,
    path: &Path,
    errors: &mut Vec<RuleError>,
) -> Option<Condition> {
    match scripts.compile(&s.value) {
        Ok(c) => Some(Condition::Script {
            text: s.value.clone(),
            script: Arc::new(c),
        }),
        Err(e) => {
            // block scalars start on the line after the key
            let (line, col) = match &e {
                crate::promql::rhai::ScriptError::Compile { line, col, .. } => {
                    (*line as u64, *col as u64)
                }
                _ => (0, 0),
            };
            errors.push(RuleError {
                path: path.to_path_buf(),
                line: s.referenced.line()
                    + line.saturating_sub(1)
                    + u64::from(s.value.contains('\n')),
                col: if line > 0 { col } else { s.referenced.column() },
                context: ctx.to_string(),
                message: format!("script: {e}"),
            });
            None
        }
    }
}

fn compile_template(
    v: &Spanned<String>,
    ctx: &str,
    field: &str,
    source: &str,
    path: &Path,
    errors: &mut Vec<RuleError>,
    plain: &mut PlainTemplates,
) -> Option<Arc<Template>> {
    if let Some(t) = plain.get(&v.value) {
        return Some(t.clone());
    }
    match Template::parse(&v.value) {
        Ok(t) if t.is_plain() => Some(
            plain
                .entry(v.value.clone())
                .or_insert_with(|| Arc::new(t))
                .clone(),
        ),
        Ok(t) => Some(Arc::new(t)),
        Err(e) => {
            // at the template's own line and column, in the file
            let (line, col) = match &e {
                crate::rules::template::TemplateError::Parse { line, col, message } => {
                    offset_of(&v.value, *line, *col).map(|off| {
                        // an unknown function: at its name, after the action's start
                        let name = message
                            .strip_prefix("function \"")
                            .and_then(|m| m.split('"').next());
                        let at = name
                            .and_then(|n| {
                                v.value[off..]
                                    .match_indices(n)
                                    .map(|(i, _)| off + i)
                                    .find(|&i| whole_word(&v.value, i, n.len()))
                            })
                            .unwrap_or(off);
                        point_at(source, v, at)
                    })
                }
                _ => None,
            }
            .unwrap_or((v.referenced.line(), v.referenced.column()));
            er(
                errors,
                path,
                line,
                col,
                ctx.to_string(),
                format!("{field}: {e}"),
            );
            None
        }
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// Whether `text[at..at + len]` is a whole word (no identifier character on either side).
fn whole_word(text: &str, at: usize, len: usize) -> bool {
    let b = text.as_bytes();
    (at == 0 || !is_word_byte(b[at - 1])) && b.get(at + len).is_none_or(|&c| !is_word_byte(c))
}

/// The byte offset of the first call of function `name` in `expr` (`name` then `(`).
fn call_offset(expr: &str, name: &str) -> Option<usize> {
    expr.match_indices(name).map(|(i, _)| i).find(|&i| {
        whole_word(expr, i, name.len()) && expr[i + name.len()..].trim_start().starts_with('(')
    })
}

/// The byte offset of 1-based `line`, `col` (bytes) in `text`.
fn offset_of(text: &str, line: usize, col: usize) -> Option<usize> {
    let start = if line <= 1 {
        0
    } else {
        text.match_indices('\n').nth(line - 2)?.0 + 1
    };
    let off = start + col.checked_sub(1)?;
    (off <= text.len() && text.is_char_boundary(off)).then_some(off)
}

/// Where in the rule file `source` the token at byte `off` of the YAML string `value` stands:
/// the same occurrence of the same token, searched from where the string starts in the file, so
/// it works for plain, quoted and block strings alike (indentation and quotes differ, the token
/// does not). Falls back to the string's start when the token cannot be found (an escape in it).
fn point_at(source: &str, value: &Spanned<String>, off: usize) -> (u64, u64) {
    let start = (value.referenced.line(), value.referenced.column());
    let text = &value.value;
    // a position just before the token (a template's pipeline) moves onto it
    let off = off + (text[off..].len() - text[off..].trim_start().len());
    if off >= text.len() {
        return start;
    }
    let len = text[off..]
        .bytes()
        .take_while(|&b| is_word_byte(b))
        .count()
        .max(1);
    let token = &text[off..off + len.min(text.len() - off)];
    let nth = text[..off]
        .match_indices(token)
        .filter(|(i, _)| whole_word(text, *i, token.len()))
        .count();
    let Some(from) = offset_of(source, start.0 as usize, 1).map(|line_start| {
        // the column counts chars
        source[line_start..]
            .char_indices()
            .nth(start.1.saturating_sub(1) as usize)
            .map_or(source.len(), |(i, _)| line_start + i)
    }) else {
        return start;
    };
    let found = source[from..]
        .match_indices(token)
        .map(|(i, _)| from + i)
        .filter(|&i| whole_word(source, i, token.len()))
        .nth(nth);
    match found {
        Some(at) => {
            let before = &source[..at];
            let line = before.matches('\n').count() as u64 + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            (line, source[line_start..at].chars().count() as u64 + 1)
        }
        None => start,
    }
}

/// The identity of a rule across reloads and restarts.
fn rule_key(group: &str, name: &str, cond: &Condition, labels: &[(String, String)]) -> String {
    let mut buf = String::new();
    for part in [group, name, cond.text()] {
        buf.push_str(part);
        buf.push('\u{0}');
    }
    for (k, v) in labels {
        buf.push_str(k);
        buf.push('=');
        buf.push_str(v);
        buf.push('\u{0}');
    }
    format!(
        "{group}/{name}/{:016x}",
        xxhash_rust::xxh3::xxh3_64(buf.as_bytes())
    )
}

/// Where a field was written: (line, column).
fn at<T>(s: &Spanned<T>) -> (u64, u64) {
    (s.referenced.line(), s.referenced.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Group>, RuleErrors> {
        parse_file(text, Path::new("r.yml"), 15_000, &ScriptEngine::new())
    }

    #[test]
    fn labels_come_in_name_order_a_repeated_name_is_an_error_and_plain_texts_are_shared() {
        let dir = tempfile::tempdir().unwrap();
        let rules = |first: &str| {
            format!(
                "groups:\n  - name: {first}\n    labels: {{ zone: b, area: a }}\n    rules:\n      - alert: A\n        expr: up == 0\n        labels: {{ team: db, severity: page }}\n        annotations: {{ summary: down, runbook: r }}\n      - alert: B\n        expr: up == 0\n        labels: {{ severity: page, team: \"{{{{ $labels.job }}}}\" }}\n"
            )
        };
        std::fs::write(dir.path().join("a.yml"), rules("ga")).unwrap();
        std::fs::write(dir.path().join("b.yml"), rules("gb")).unwrap();
        let files = expand_globs(&["*.yml".to_string()], dir.path()).unwrap();
        let set = load_files(&files, 15_000, &ScriptEngine::new()).unwrap();
        let (a, b) = (&set.groups[0], &set.groups[1]);
        // in name order, however written, as the map they replace kept them
        let names =
            |l: &[(String, Arc<Template>)]| l.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        assert_eq!(a.labels.keys().collect::<Vec<_>>(), ["area", "zone"]);
        assert_eq!(names(&a.rules[0].labels), ["severity", "team"]);
        let RuleKind::Alert { annotations, .. } = &a.rules[0].kind else {
            panic!()
        };
        assert_eq!(names(annotations), ["runbook", "summary"]);
        // `severity: page` is one template over both files; a template with an action is not shared
        let severity = |r: &Rule| r.labels[0].1.clone();
        assert!(Arc::ptr_eq(&severity(&a.rules[0]), &severity(&b.rules[1])));
        assert!(Arc::ptr_eq(&severity(&a.rules[1]), &severity(&b.rules[0])));
        assert!(!Arc::ptr_eq(
            &a.rules[1].labels[1].1,
            &b.rules[1].labels[1].1
        ));
        assert_eq!(a.rules[1].labels[1].1.source(), "{{ $labels.job }}");
        // a name written twice is refused where it is repeated, as in any other map
        let e = parse("groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: up\n        labels:\n          team: a\n          team: b\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("r.yml:8:") && e.contains("duplicate"), "{e}");
    }

    #[test]
    fn the_reserved_self_rules_entry_loads_the_built_in_file_with_positions() {
        let dir = tempfile::tempdir().unwrap();
        let files = expand_globs(&[SELF_RULES.to_string()], dir.path()).unwrap();
        assert_eq!(files, vec![PathBuf::from(SELF_RULES)]);
        let set = load_files(&files, 15_000, &ScriptEngine::new()).unwrap();
        assert_eq!(set.rule_count(), 8);
        assert!(set.groups.iter().all(|g| is_self_rules(&g.file)));
        // nothing on disk to watch
        assert!(set.files.is_empty());
        // an error involving it names it, with the built-in file's line
        let user = dir.path().join("u.yml");
        std::fs::write(&user, "groups:\n  - name: tocsin-self\n    rules: []\n").unwrap();
        let e = load_files(
            &[PathBuf::from(SELF_RULES), user],
            15_000,
            &ScriptEngine::new(),
        )
        .unwrap_err()
        .to_string();
        let line = SELF_RULES_YAML
            .lines()
            .position(|l| l.contains("- name: tocsin-self"))
            .unwrap()
            + 1;
        assert!(e.contains(&format!("first in tocsin:self:{line}")), "{e}");
    }

    #[test]
    fn the_reserved_watchdog_entry_loads_only_the_watchdog() {
        let dir = tempfile::tempdir().unwrap();
        let pats = [WATCHDOG_RULES.to_string(), SELF_RULES.to_string()];
        let files = expand_globs(&pats, dir.path()).unwrap();
        assert_eq!(
            files,
            vec![PathBuf::from(WATCHDOG_RULES), PathBuf::from(SELF_RULES)]
        );
        let set = load_files(&files[..1], 15_000, &ScriptEngine::new()).unwrap();
        assert_eq!(set.rule_count(), 1);
        assert_eq!(set.groups[0].name, "tocsin-watchdog");
        assert!(is_self_rules(&set.groups[0].file));
        assert!(set.files.is_empty());
        // both built-in files together, no group clash
        let both = load_files(&files, 15_000, &ScriptEngine::new()).unwrap();
        assert_eq!(both.rule_count(), 9);
        // a name close to a reserved one is a file like any other: missing
        assert!(expand_globs(&["tocsin:watchdogs".to_string()], dir.path()).is_err());
    }

    #[test]
    fn prometheus_rule_file_loads_unchanged() {
        let g = parse(
            "groups:\n  - name: a\n    interval: 30s\n    rules:\n      - alert: Down\n        expr: up == 0\n        for: 5m\n        keep_firing_for: 1m\n        labels: { severity: page }\n        annotations: { summary: \"{{ $labels.instance }} down\" }\n      - record: job:up:sum\n        expr: sum by (job) (up)\n",
        )
        .unwrap();
        assert_eq!(g[0].interval_ms, 30_000);
        assert_eq!(g[0].rules.len(), 2);
        let RuleKind::Alert {
            hold,
            keep_firing_for,
            ..
        } = &g[0].rules[0].kind
        else {
            panic!("alert expected")
        };
        assert_eq!((*hold, *keep_firing_for), (300_000, 60_000));
        assert!(!g[0].rules[1].is_alert());
    }

    #[test]
    fn a_remote_group_keeps_its_expressions_as_text_and_a_local_group_its_trees() {
        let g = parse(
            "groups:\n  - name: remote\n    datasource: vm\n    rules:\n      - alert: A\n        expr: up == 0\n        resolve: up == 1\n  - name: local\n    rules:\n      - alert: B\n        expr: up == 0\n",
        )
        .unwrap();
        let expr = |c: &Condition| match c {
            Condition::PromQL { expr, .. } => expr.clone(),
            Condition::Script { .. } => panic!("promql expected"),
        };
        let remote = expr(&g[0].rules[0].condition);
        let RuleKind::Alert {
            resolve: Some(resolve),
            ..
        } = &g[0].rules[0].kind
        else {
            panic!("resolve expected")
        };
        let local = expr(&g[1].rules[0].condition);
        assert!(!remote.is_parsed() && !expr(resolve).is_parsed());
        assert!(local.is_parsed());
        // still validated at load: a remote group's bad expression is an error
        let e = parse("groups:\n  - name: remote\n    datasource: vm\n    rules:\n      - alert: A\n        expr: sum(up\n").unwrap_err();
        assert!(e.to_string().contains("r.yml:6:"), "{e}");
        // whatever walks a remote tree (`tocsin check`'s label names) gets it, parsed again, and
        // does not keep it
        remote.with_tree(|r| assert_eq!(r, local.tree()));
        assert!(!remote.is_parsed());
    }

    #[test]
    fn every_error_is_reported_with_its_location() {
        let text = "groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: sum(rate(x[5m])\n      - record: bad name\n        expr: up\n        for: 1m\n      - alert: C\n        script: \"let x = ;\"\n      - alert: D\n        expr: up\n        annotations: { s: \"{{ nosuchfunc $value }}\" }\n";
        let e = parse(text).unwrap_err();
        let all = e.to_string();
        assert!(all.contains("r.yml:5:"), "{all}");
        assert!(all.contains("group \"a\", rule \"A\""), "{all}");
        assert!(all.contains("invalid recording rule name"), "{all}");
        assert!(
            all.contains("`for` is only valid on alerting rules"),
            "{all}"
        );
        assert!(all.contains("rule \"C\": script"), "{all}");
        assert!(all.contains("annotations.s"), "{all}");
        assert_eq!(e.0.len(), 5, "{all}");
    }

    #[test]
    fn unknown_fields_and_bad_durations_are_parse_errors() {
        let e = parse("groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: up\n        fro: 5m\n").unwrap_err();
        assert!(e.to_string().contains("r.yml:6:"), "{e}");
        let e = parse("groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: up\n        for: -5m\n").unwrap_err();
        assert!(e.to_string().contains("r.yml:6:"), "{e}");
    }

    #[test]
    fn durations_past_the_maximum_and_intervals_under_the_minimum_are_errors_at_their_line() {
        // `for: 300000000y` overflowed and fired at the first evaluation instead of never
        for field in ["for", "keep_firing_for"] {
            let text = format!(
                "groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: up\n        {field}: 300000000y\n"
            );
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains("r.yml:6:"), "{e}");
            assert!(e.contains("longer than the maximum of 10y"), "{e}");
        }
        let e = parse("groups:\n  - name: a\n    interval: 1ms\n    rules:\n      - alert: A\n        expr: up\n").unwrap_err().to_string();
        assert!(e.contains("r.yml:3:15:"), "{e}");
        assert!(
            e.contains("interval 1ms is shorter than the minimum of 1s"),
            "{e}"
        );
        assert!(parse("groups:\n  - name: a\n    interval: 1s\n    rules: []\n").is_ok());
    }

    #[test]
    fn errors_are_sorted_by_position_and_none_says_0_0() {
        // the group's bad label used to be reported at column 0 after the rule errors
        let text = "groups:\n  - name: a\n    labels: { \"bad-name\": x }\n    rules:\n      - alert: A\n        expr: sum(\n      - record: bad name\n        expr: up\n";
        let e = parse(text).unwrap_err();
        let at: Vec<(u64, u64)> = e.0.iter().map(|e| (e.line, e.col)).collect();
        let mut sorted = at.clone();
        sorted.sort();
        assert_eq!(at, sorted, "{e}");
        assert_eq!(at[0], (3, 27), "{e}");
        assert!(at.iter().all(|&(l, c)| l > 0 && c > 0), "{e}");
    }

    #[test]
    fn a_file_reached_twice_is_loaded_once_and_duplicate_groups_point_at_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yml");
        let b = dir.path().join("b.yml");
        std::fs::write(&a, "groups:\n  - name: g\n    rules: []\n").unwrap();
        std::fs::write(&b, "# b\ngroups:\n  - name: g\n    rules: []\n").unwrap();
        let scripts = ScriptEngine::new();
        // the same file by two paths (a directory listing and its name): one load, no duplicate
        let twice = [a.clone(), dir.path().join(".").join("a.yml")];
        let set = load_files(&twice, 15_000, &scripts).unwrap();
        assert_eq!(set.groups.len(), 1);
        let e = load_files(&[a, b.clone()], 15_000, &scripts).unwrap_err();
        assert_eq!(
            (e.0[0].path.clone(), e.0[0].line, e.0[0].col),
            (b, 3, 11),
            "{e}"
        );
        assert!(e.to_string().contains("duplicate group name"), "{e}");
    }

    #[test]
    fn every_structural_error_of_a_file_is_reported_in_one_run() {
        // serde stopped at the first (line 6): the second rule's and the second group's went
        // unreported until the first was fixed, and the invalid name at line 12 too
        let text = "groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: up\n        fro: 5m\n      - alert: B\n        expr: up\n        for: 5x\n  - name: b\n    rules:\n      - record: bad name\n        expr: up\n  - name: c\n    intervall: 1m\n    rules: []\n";
        let e = parse(text).unwrap_err();
        let at: Vec<u64> = e.0.iter().map(|e| e.line).collect();
        assert_eq!(at, [6, 9, 12, 15], "{e}");
        assert!(e.0.iter().all(|e| e.col > 0), "{e}");
        // a rule alone in its list: the list left empty is no error of its own
        let e = parse("groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: up\n        fro: 5m\n").unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
    }

    #[test]
    fn duplicates_are_errors_but_alerts_differing_in_labels_are_not() {
        let ok = "groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: x > 1\n        labels: { severity: warning }\n      - alert: A\n        expr: x > 2\n        labels: { severity: page }\n";
        assert!(parse(ok).is_ok());
        let dup = "groups:\n  - name: a\n    rules:\n      - alert: A\n        expr: x > 1\n      - alert: A\n        expr: x > 2\n  - name: a\n    rules: []\n";
        let e = parse(dup).unwrap_err().to_string();
        assert!(e.contains("duplicate alert"), "{e}");
        assert!(e.contains("duplicate group name"), "{e}");
    }

    #[test]
    fn globs_expand_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.yml", "a.yml", "c.txt", "a_test.yml"] {
            std::fs::write(dir.path().join(f), "groups: []\n").unwrap();
        }
        let got = expand_globs(&["*.yml".into()], dir.path()).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["a.yml", "b.yml"]);
        assert!(expand_globs(&["missing.yml".into()], dir.path()).is_err());
        // a pattern matching nothing used to load zero rules silently
        for p in ["*.yaml", "nodir/*.yml", "a_*.yml"] {
            let e = expand_globs(&[p.into()], dir.path())
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("pattern {p:?} matches no file")), "{e}");
        }
        assert!(glob_match("*_test.yml", "scaidns_test.yml"));
        assert!(!glob_match("*_test.yml", "scaidns.yml"));
    }
}
