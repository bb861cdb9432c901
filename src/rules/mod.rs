//! Rule files: Prometheus's format (`groups`, `rules` with `alert`/`record`, `expr`, `for`,
//! `keep_firing_for`, `labels`, `annotations`) plus tocsin's extensions (`script`, `resolve`,
//! `flap_detection`, `dry_run`). This module holds the compiled types ([`RuleSet`], [`Group`],
//! [`Rule`]), what a rule file is ([`is_rule_file`]) and when a group evaluates
//! ([`slot_offset`]/[`slot_at`]/[`next_slot`]).
//!
//! - [`load`]: loading parses every file, validates every rule, compiles every expression,
//!   script and template, and collects every error (file:line:col, group, rule) before
//!   returning: a rule set is either wholly valid or not used at all. Its entry points are
//!   re-exported here ([`load_files`], [`parse_file`], [`expand_globs`]).
//! - [`tracker`]: the alert state machine (pure: `now` is an argument).
//! - [`group`]: evaluating a group at one time (conditions, templates, tracker, recording rules).
//! - [`step`]: one evaluation step (a group at a slot, then the notification stages) returning
//!   its batch; the one driver logic the daemon ([`manager`]), `tocsin test` ([`unittest`]) and
//!   `tocsin replay` ([`replay`]) share.
//! - [`manager`]: the daemon's group tasks, reloads and published alerts.
//! - [`unittest`]: `tocsin test`, promtool's rule unit-test format over the real engine and tracker.

pub mod group;
pub mod labelcheck;
pub mod load;
pub mod manager;
pub mod replay;
pub mod source;
pub mod step;
pub mod template;
pub mod tracker;
pub mod unittest;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use load::{
    SELF_RULES, WATCHDOG_RULES, builtin_rules, expand_globs, is_self_rules, load_files, parse_file,
};

use crate::promql::rhai::CompiledScript;
use crate::rules::template::Template;

/// One problem in a rule file, located.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    pub path: PathBuf,
    pub line: u64,
    pub col: u64,
    /// `group "x", rule "Y"` or a field path; empty when the whole file is concerned
    pub context: String,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.path.display(), self.line, self.col)?;
        if !self.context.is_empty() {
            write!(f, "{}: ", self.context)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found while loading a set of rule files.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct RuleErrors(pub Vec<RuleError>);

// ---------------------------------------------------------------- compiled rules

/// A rule condition: PromQL or a Rhai script.
#[derive(Clone)]
pub enum Condition {
    PromQL {
        text: Arc<str>,
        expr: Arc<PromExpr>,
    },
    Script {
        text: String,
        script: Arc<CompiledScript>,
    },
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

impl Condition {
    pub fn text(&self) -> &str {
        match self {
            Condition::PromQL { text, .. } => text,
            Condition::Script { text, .. } => text,
        }
    }
}

/// A PromQL expression validated at load, its syntax tree kept only where tocsin's engine
/// runs it: a rule of a group on a remote datasource sends its text, and its tree (2.4 KB a
/// rule for `benches/vmalert.sh`'s rules, `benches/rule_memory.rs`) is parsed again only if
/// something walks it. Dereferences to the tree.
pub struct PromExpr {
    text: Arc<str>,
    /// boxed: an empty cell costs 8 bytes, not the size of an `Expr`
    tree: std::sync::OnceLock<Box<promql_parser::parser::Expr>>,
}

impl PromExpr {
    /// An expression whose tree is kept.
    pub fn parsed(text: Arc<str>, tree: promql_parser::parser::Expr) -> PromExpr {
        PromExpr {
            text,
            tree: std::sync::OnceLock::from(Box::new(tree)),
        }
    }

    /// An expression `crate::promql::parse` accepted, whose tree is dropped until needed.
    pub fn text_only(text: Arc<str>) -> PromExpr {
        PromExpr {
            text,
            tree: std::sync::OnceLock::new(),
        }
    }

    /// The syntax tree, parsed again if it was not kept.
    pub fn tree(&self) -> &promql_parser::parser::Expr {
        self.tree.get_or_init(|| {
            // the same text parsed at load, and parsing is deterministic
            Box::new(
                crate::promql::parse(&self.text)
                    .expect("an expression validated at load parses again"),
            )
        })
    }

    /// `f` over the syntax tree: the one kept, or one parsed for this call and dropped after it,
    /// so a walk over every rule (the label check after a load) does not keep the trees of
    /// remote rules (measured: 22 of the daemon's 47 MB of heap at 10,000 remote rules).
    pub fn with_tree<R>(&self, f: impl FnOnce(&promql_parser::parser::Expr) -> R) -> R {
        match self.tree.get() {
            Some(tree) => f(tree),
            None => f(&crate::promql::parse(&self.text)
                .expect("an expression validated at load parses again")),
        }
    }

    /// Whether the tree is held now.
    pub fn is_parsed(&self) -> bool {
        self.tree.get().is_some()
    }
}

impl std::ops::Deref for PromExpr {
    type Target = promql_parser::parser::Expr;

    fn deref(&self) -> &Self::Target {
        self.tree()
    }
}

impl fmt::Debug for PromExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Nagios-style flap detection thresholds (percent state change over the last 21 evaluations).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlapDetection {
    pub low: f64,
    pub high: f64,
}

/// What distinguishes an alerting rule from a recording rule.
#[derive(Debug, Clone)]
pub enum RuleKind {
    Alert {
        hold: i64,
        keep_firing_for: i64,
        resolve: Option<Condition>,
        annotations: Vec<(String, Arc<Template>)>,
        flap: Option<FlapDetection>,
    },
    Record,
}

/// One rule, compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    /// alert name or recorded metric name
    pub name: String,
    pub kind: RuleKind,
    pub condition: Condition,
    pub labels: Vec<(String, Arc<Template>)>,
    pub dry_run: bool,
    /// stable identity: group, name, condition and label templates; alert state is kept across
    /// reloads and restarts for a rule whose key is unchanged
    pub key: String,
    /// where the rule starts in its file
    pub line: u64,
}

impl Rule {
    pub fn is_alert(&self) -> bool {
        matches!(self.kind, RuleKind::Alert { .. })
    }
}

/// One group: rules evaluated in order at the group's interval.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub file: PathBuf,
    pub interval_ms: i64,
    /// most alerts (or recorded series) a rule may produce; 0 = no limit
    pub limit: usize,
    /// evaluation happens at `t - query_offset` (Prometheus's `query_offset`)
    pub query_offset_ms: i64,
    /// labels added to every rule's output
    pub labels: BTreeMap<String, String>,
    pub rules: Vec<Rule>,
    /// the remote engine the group's queries go to (`datasource:`); None: the embedded store
    pub datasource: Option<DatasourceRef>,
}

/// A group's `datasource:` as written, with its position for errors.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasourceRef {
    pub name: String,
    pub line: u64,
    pub col: u64,
}

impl RuleSet {
    /// Every group whose `datasource:` names none of `known` (the configuration's
    /// `datasources`), as errors at the field; `tocsin check`, replay and each reload call it.
    pub fn check_datasources(&self, known: &[String]) -> Result<(), RuleErrors> {
        let errors: Vec<RuleError> = self
            .groups
            .iter()
            .filter_map(|g| {
                let d = g.datasource.as_ref()?;
                (!known.contains(&d.name)).then(|| RuleError {
                    path: g.file.clone(),
                    line: d.line,
                    col: d.col,
                    context: format!("group {:?}: datasource", g.name),
                    message: if known.is_empty() {
                        format!(
                            "datasource {:?} is not configured (tocsin.yml has no datasources)",
                            d.name
                        )
                    } else {
                        format!(
                            "datasource {:?} is not configured (configured: {})",
                            d.name,
                            known.join(", ")
                        )
                    },
                })
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RuleErrors(errors))
        }
    }
}

/// Every group of every rule file, validated and compiled.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// shared with the group tasks, which each hold theirs (a copy per task was 300 B a rule)
    pub groups: Vec<Arc<Group>>,
    /// the files loaded, for the watcher
    pub files: Vec<PathBuf>,
}

impl RuleSet {
    /// The longest range any rule reads is not known without walking every AST; the daemon
    /// asks for this much memory-resident history (see `Store::set_head_window`).
    pub fn rule_count(&self) -> usize {
        self.groups.iter().map(|g| g.rules.len()).sum()
    }
}

/// Whether `path` names a rule file: `*.yml` or `*.yaml`, not a rule unit test (`*_test.yml`,
/// `*_test.yaml`, which live beside their rule files) and not hidden. Editors' artifacts do not
/// qualify: vim's `.x.yml.swp` and `4913` probe, `x.yml~` backups and `x.yml.tmp` atomic saves do
/// not end in `.yml`, emacs lock links (`.#x.yml`) are hidden. Looks at the name only, so it
/// answers for a path already removed. The one definition, for the reload watcher, `tocsin replay`
/// and directories given to `tocsin check`.
pub fn is_rule_file(path: &Path) -> bool {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy()) else {
        return false;
    };
    (name.ends_with(".yml") || name.ends_with(".yaml"))
        && !name.starts_with('.')
        && !is_rule_test_file_name(&name)
}

/// The rule files ([`is_rule_file`]) directly in `dir`, sorted.
pub fn rule_files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if is_rule_file(&path) && path.is_file() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Rule unit test files (`x_test.yml` beside `x.yml`): never loaded as rules, even by a glob.
pub(crate) fn is_rule_test_file_name(name: &str) -> bool {
    name.ends_with("_test.yml") || name.ends_with("_test.yaml")
}

/// Where a group's evaluation slots sit inside its interval (ms): a stable hash of the group's
/// name, its identity (names are unique across files, and rule keys are built on it). Not the
/// file: a group moved to another file, or the same file loaded from another path (`tocsin
/// replay --compare`), keeps its schedule as it keeps its alert state.
pub fn slot_offset(group_name: &str, interval_ms: i64) -> i64 {
    let h = xxhash_rust::xxh3::xxh3_64(group_name.as_bytes());
    (h % interval_ms.max(1) as u64) as i64
}

/// The group's latest evaluation slot at or before `t` (ms): `slot mod interval == offset`.
/// The daemon evaluates at the slot its tick falls in; replay walks the same slots.
pub fn slot_at(group_name: &str, interval_ms: i64, t: i64) -> i64 {
    let interval = interval_ms.max(1);
    t - (t - slot_offset(group_name, interval)).rem_euclid(interval)
}

/// The group's first evaluation slot at or after `t` (ms).
pub fn next_slot(group_name: &str, interval_ms: i64, t: i64) -> i64 {
    slot_at(
        group_name,
        interval_ms,
        t.saturating_add(interval_ms.max(1) - 1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::rhai::ScriptEngine;

    #[test]
    fn rule_file_names() {
        let cases = [
            ("x.yml", true),
            ("x.yaml", true),
            // not yaml
            ("x.json", false),
            ("README", false),
            // an atomic save's temporary file
            ("x.yml.tmp", false),
            // vim swap files and write probe
            (".x.yml.swp", false),
            (".x.yml.swo", false),
            ("4913", false),
            // backup
            ("x.yml~", false),
            // emacs lock link, which does end in .yml
            (".#x.yml", false),
            // rule unit tests, beside their rule files
            ("x_test.yml", false),
            ("x_test.yaml", false),
            ("x_test.json.yml", true),
            // hidden
            (".x.yml", false),
            // the directory does not matter
            ("/etc/tocsin/.d/x.yml", true),
            ("rules_test/x.yml", true),
        ];
        for (name, want) in cases {
            assert_eq!(is_rule_file(Path::new(name)), want, "{name}");
        }
    }

    #[test]
    fn a_directory_lists_its_rule_files_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.yaml", "a.yml", "a_test.yml", ".a.yml", "c.txt"] {
            std::fs::write(dir.path().join(f), "groups: []\n").unwrap();
        }
        std::fs::create_dir(dir.path().join("d.yml")).unwrap();
        let names: Vec<String> = rule_files_in(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.yml", "b.yaml"]);
        assert!(rule_files_in(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_group_moved_to_another_file_keeps_its_slots_and_rule_keys() {
        let text = "groups:\n  - name: disk\n    interval: 30s\n    rules:\n      - alert: Full\n        expr: disk_free < 1\n";
        let here = parse_file(text, Path::new("a/r.yml"), 15_000, &ScriptEngine::new()).unwrap();
        let there =
            parse_file(text, Path::new("b/other.yml"), 15_000, &ScriptEngine::new()).unwrap();
        let (g, h) = (&here[0], &there[0]);
        assert_ne!(g.file, h.file);
        for t in [0, 1, 29_999, 1_700_000_012_345] {
            assert_eq!(
                slot_at(&g.name, g.interval_ms, t),
                slot_at(&h.name, h.interval_ms, t)
            );
        }
        assert_eq!(g.rules[0].key, h.rules[0].key, "state follows the rule key");
        // another group name: another offset (xxh3 of the name, not of the path)
        assert_ne!(slot_offset("disk", 30_000), slot_offset("net", 30_000));
    }

    #[test]
    fn slots_are_the_latest_at_or_the_first_after_a_time() {
        let off = slot_offset("g", 10_000);
        // (t, latest slot at or before t, first slot at or after t)
        let cases = [
            (off, off, off),
            (off + 1, off, off + 10_000),
            (off + 9_999, off, off + 10_000),
            (off - 1, off - 10_000, off),
            (100_000 + off, 100_000 + off, 100_000 + off),
        ];
        for (t, at, next) in cases {
            assert_eq!(slot_at("g", 10_000, t), at, "slot_at {t}");
            assert_eq!(next_slot("g", 10_000, t), next, "next_slot {t}");
        }
    }
}
