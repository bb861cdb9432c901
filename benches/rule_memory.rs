//! Live heap bytes per rule, counted by a wrapping global allocator: what a [`RuleManager`]
//! holds for `benches/vmalert.sh`'s rule files (`bench_rules.py`'s shapes over
//! `../shared/peer/target.py`'s metrics, groups of 100 on `datasource: vm`), loaded, installed
//! and evaluated a few times against an in-process stand-in of the remote engine that answers
//! a sample or two for one rule in 32 (the share that fires in `vmalert.sh`) and an empty vector
//! for the rest, as VictoriaMetrics does for a threshold not crossed.
//!
//! Printed per part, in bytes and bytes per rule: the parsed rule set (the PromQL ASTs, the
//! templates, the strings and the rest, each weighed by building it again alone), what
//! installing it adds (the group tasks and the empty states), what evaluating adds, what the label
//! check the daemon runs after each load keeps (it walks every tree: none may stay), then the
//! teardown: the group tasks' own states, the published snapshots, the alert lists, the rule set,
//! and what stays in the store (the `ALERTS` series). The base is a manager with zero rules over
//! an empty store. SQLite's memory is outside Rust's allocator: printed apart
//! (`sqlite3_memory_used`). Exact counts, independent of the machine's load, unlike RSS (which
//! adds the allocator's free lists, thread stacks and the code). The peak is the most live bytes
//! seen at any moment: transient copies made during evaluations show there.
//!
//! Run: `cargo bench --bench rule_memory` (`-- RULES PER_GROUP EVALUATIONS` to change the
//! 10,000, 100 and 3).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use tocsin::labels::Labels;
use tocsin::promql::{Cancel, Sample, Value};
use tocsin::rules::manager::{RuleConfig, RuleManager};
use tocsin::rules::source::{Answer, Datasources, RemoteEngine, SourceError};
use tocsin::rules::template::Template;
use tocsin::rules::{Condition, RuleKind, RuleSet};
use tocsin::selfmetrics::SelfMetrics;
use tocsin::store::{Store, StoreOptions};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
/// live allocations (blocks): each costs malloc its header and rounding on top of its size
static BLOCKS: AtomicIsize = AtomicIsize::new(0);

fn grew(by: isize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size() as isize);
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Starts a new peak from the live bytes now.
fn reset_peak() {
    PEAK.store(live(), Ordering::Relaxed);
}

fn peak() -> isize {
    PEAK.load(Ordering::Relaxed)
}

/// Bytes SQLite has allocated (its own allocator, not counted above).
fn sqlite_bytes() -> i64 {
    unsafe { rusqlite::ffi::sqlite3_memory_used() }
}

const T0: i64 = 1_700_000_000_000;
const SERIES: usize = 100_000;
const INTERVAL_S: i64 = 15;

// ------------------------------------------------------------- bench_rules.py, in Rust

const ROUTES: [(&str, &str); 8] = [
    ("GET", "/api/v1/zones"),
    ("GET", "/api/v1/zones/{zone}/records"),
    ("POST", "/api/v1/zones/{zone}/records"),
    ("PATCH", "/api/v1/zones/{zone}/records"),
    ("DELETE", "/api/v1/zones/{zone}/records"),
    ("GET", "/dns-query"),
    ("POST", "/dns-query"),
    ("GET", "/healthz"),
];
const QUEUES: [&str; 3] = ["email:process", "smtp:deliver", "webhook:deliver"];
const SEED_SERIES: usize = 262;
const PAD_GROUPS: usize = 256;

fn pad_idx(r: usize, series: usize, gauge: bool) -> usize {
    let pad = series.saturating_sub(SEED_SERIES).max(1) as i64;
    let mut i = (r as i64 * 7919) % pad;
    if gauge {
        i = i - i % 5 + 4;
        if i >= pad {
            i -= 5;
        }
    } else if i % 5 == 4 {
        i -= 1;
    }
    i.max(0) as usize
}

/// Python's `str(float)` for the thresholds bench_rules.py writes (shortest round trip).
fn py(v: f64) -> String {
    let s = format!("{v}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

/// (alertname, expr, for) of rule number `r`: `bench_rules.py`'s `rule`.
fn rule(r: usize, series: usize) -> (String, String, &'static str) {
    match r % 12 {
        0 => (
            format!("PadLevelHigh{r}"),
            format!(
                "scaipad_level{{idx=\"{:06}\"}} > 1e9",
                pad_idx(r, series, true)
            ),
            "1m",
        ),
        1 => (
            format!("PadRateHigh{r}"),
            format!(
                "rate(scaipad_ops_total{{idx=\"{:06}\"}}[5m]) > 1e6",
                pad_idx(r, series, false)
            ),
            "2m",
        ),
        2 => {
            let a = pad_idx(r, series, false);
            let mut b = a + 5 * PAD_GROUPS;
            if b >= series - SEED_SERIES {
                b = a;
            }
            (
                format!("PadRateRatio{r}"),
                format!(
                    "rate(scaipad_ops_total{{idx=\"{a:06}\"}}[5m]) / ignoring (idx) rate(scaipad_ops_total{{idx=\"{b:06}\"}}[5m]) > 1000"
                ),
                "5m",
            )
        }
        3 => {
            let (_, path) = ROUTES[r % ROUTES.len()];
            (
                format!("DnsErrorRatio{r}"),
                format!(
                    "sum by (job, instance) (rate(scaidns_http_requests_total{{path=\"{path}\",status=~\"5..\"}}[5m])) / sum by (job, instance) (rate(scaidns_http_requests_total{{path=\"{path}\"}}[5m])) > {}",
                    py(0.05 + (r % 7) as f64 / 100.0)
                ),
                "1m",
            )
        }
        4 => {
            let (method, path) = ROUTES[r % ROUTES.len()];
            let t = if r % 96 == 4 {
                py(0.1)
            } else {
                py(2.5 + (r % 5) as f64)
            };
            (
                format!("DnsLatencyP99{r}"),
                format!(
                    "histogram_quantile(0.99, sum by (job, instance, le) (rate(scaidns_http_request_duration_seconds_bucket{{method=\"{method}\",path=\"{path}\"}}[5m]))) > {t}"
                ),
                "1m",
            )
        }
        5 => {
            let i = pad_idx(r, series, false) + if r % 96 == 5 { 10_000_000 } else { 0 };
            (
                format!("PadAbsent{r}"),
                format!("absent(scaipad_ops_total{{idx=\"{i:06}\"}})"),
                "1m",
            )
        }
        6 => {
            let t = format!("tenant-{:02}", r % 40);
            (
                format!("BounceRatio{r}"),
                format!(
                    "sum by (job, tenant) (rate(scaisend_emails_bounces_total{{tenant=\"{t}\"}}[10m])) / sum by (job, tenant) (rate(scaisend_emails_requests_total{{tenant=\"{t}\"}}[10m])) > {}",
                    py(0.2 + (r % 5) as f64 / 10.0)
                ),
                "5m",
            )
        }
        7 => {
            let q = QUEUES[r % QUEUES.len()];
            (
                format!("QueueGrowing{r}"),
                format!(
                    "deriv(scaisend_queue_depth{{queue=\"{q}\"}}[5m]) > {}",
                    1000 + r % 100
                ),
                "15m",
            )
        }
        8 => {
            let t = if r % 96 == 8 {
                py(0.001)
            } else {
                (10 + r % 10).to_string()
            };
            (
                format!("PdnsLockWait{r}"),
                format!(
                    "rate(pdns_lock_wait_seconds_sum[1m]) / rate(pdns_lock_wait_seconds_count[1m]) > {t}"
                ),
                "1m",
            )
        }
        9 => {
            let g = (r * 31) % PAD_GROUPS;
            (
                format!("PadGroupLevel{r}"),
                format!("max by (shard) (scaipad_level{{group=\"g{g:03}\"}}) > 1e12"),
                "1m",
            )
        }
        10 => {
            let q = QUEUES[r % QUEUES.len()];
            (
                format!("QueueTooDeep{r}"),
                format!("scaisend_queue_depth{{queue=\"{q}\"}} > {}", 1_000_000 + r),
                "",
            )
        }
        _ => (
            format!("PadStalled{r}"),
            format!(
                "increase(scaipad_ops_total{{idx=\"{:06}\"}}[2m]) < 0",
                pad_idx(r, series, false)
            ),
            "1m",
        ),
    }
}

/// `bench_rules.py`'s `rules_yaml` with `datasource`.
fn rules_yaml(n: usize, per_group: usize, datasource: &str) -> String {
    let mut out = String::from("# generated as benches/bench_rules.py does\ngroups:\n");
    for g in 0..n.div_ceil(per_group) {
        out += &format!("  - name: bench-{g:04}\n    interval: {INTERVAL_S}s\n");
        out += &format!("    datasource: {datasource}\n    rules:\n");
        for r in g * per_group..n.min((g + 1) * per_group) {
            let (name, expr, hold) = rule(r, SERIES);
            out += &format!("      - alert: {name}\n        expr: '{expr}'\n");
            if !hold.is_empty() {
                out += &format!("        for: {hold}\n");
            }
            out += &format!(
                "        labels:\n          severity: warning\n          bench_pattern: p{}\n",
                r % 12
            );
            out += &format!(
                "        annotations:\n          summary: \"rule {r} value {{{{ $value }}}}\"\n"
            );
        }
    }
    out
}

// ------------------------------------------------------------- the stand-in remote engine

/// Answers one query in `FIRING_ONE_IN` (by the hash of its text, so the same rules every
/// time) with two samples, labelled as the target's series are, and the rest with an empty
/// vector: a threshold not crossed.
struct StandIn;

const FIRING_ONE_IN: u64 = 32;

impl RemoteEngine for StandIn {
    fn name(&self) -> &str {
        "vm"
    }
    fn query_offset_ms(&self) -> i64 {
        0
    }
    fn error_for_ms(&self) -> i64 {
        0
    }
    fn instant(&self, query: &str, t: i64, _: Option<&Cancel>) -> Result<Answer, SourceError> {
        let h = xxhash_rust::xxh3::xxh3_64(query.as_bytes());
        let samples = if h.is_multiple_of(FIRING_ONE_IN) {
            (0..2)
                .map(|i| Sample {
                    metric: Labels::from_pairs([
                        ("group", format!("g{:03}", h % 256)),
                        ("instance", "127.0.0.1:19110".to_string()),
                        ("job", "seed".to_string()),
                        ("shard", format!("s{i:02}")),
                    ]),
                    t,
                    v: 1.5 + i as f64,
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Answer {
            value: Value::Vector(samples),
            warnings: Vec::new(),
        })
    }
}

// ------------------------------------------------------------- weighing the parsed rules

/// The bytes of each part of the parsed rule set, each built again on its own and weighed.
struct Parsed {
    asts: isize,
    templates: isize,
    strings: isize,
}

fn weigh_parsed(set: &RuleSet) -> Parsed {
    let rules: Vec<&tocsin::rules::Rule> = set.groups.iter().flat_map(|g| &g.rules).collect();
    // the trees the rule set holds (a remote group's are not kept), each built again
    let mut asts = Vec::with_capacity(rules.len());
    let before = live();
    for r in &rules {
        if let Condition::PromQL { text, expr } = &r.condition
            && expr.is_parsed()
        {
            asts.push(Arc::new(tocsin::promql::parse(text).unwrap()));
        }
    }
    let ast_bytes = live() - before;
    drop(asts);
    let mut templates = Vec::with_capacity(rules.len() * 4);
    let mut seen = std::collections::HashSet::with_capacity(rules.len() * 4);
    let before = live();
    for r in &rules {
        let annotations = match &r.kind {
            RuleKind::Alert { annotations, .. } => annotations.as_slice(),
            RuleKind::Record => &[],
        };
        for (_, t) in r.labels.iter().chain(annotations) {
            // a template shared by several rules (a plain text, parsed once a load) once
            if seen.insert(Arc::as_ptr(t)) {
                templates.push(Arc::new(Template::parse(t.source()).unwrap()));
            }
        }
    }
    let template_bytes = live() - before;
    drop(templates);
    // the rule's own strings, by capacity: name, key, condition text (an `Arc<str>`)
    let strings: usize = rules
        .iter()
        .map(|r| {
            let text = match &r.condition {
                Condition::PromQL { text, .. } => text.len() + 16,
                Condition::Script { text, .. } => text.capacity(),
            };
            r.name.capacity() + r.key.capacity() + text
        })
        .sum();
    Parsed {
        asts: ast_bytes,
        templates: template_bytes,
        strings: strings as isize,
    }
}

// ------------------------------------------------------------- the run

struct Report {
    rules: usize,
}

impl Report {
    fn line(&self, what: &str, bytes: isize) {
        println!(
            "  {what:<46} {bytes:>12} B  {:>8.1} B/rule",
            bytes as f64 / self.rules.max(1) as f64
        );
    }
}

/// Lets the paused clock run to `until` (ms after T0), a time no group's slot falls on, so every
/// evaluation due before it has finished (paused time does not advance while one runs).
async fn run_until(until: i64) {
    let now = tokio::time::Instant::now();
    let target = START.with(|s| s.get()).unwrap() + Duration::from_millis(until as u64);
    if target > now {
        tokio::time::sleep_until(target).await;
    }
}

thread_local! {
    static START: std::cell::Cell<Option<tokio::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// A time (ms after T0) in the `k`th interval that no group's slot falls on.
fn quiet_time(groups: &[String], k: i64) -> i64 {
    let interval = INTERVAL_S * 1000;
    let offsets: Vec<i64> = groups
        .iter()
        .map(|g| tocsin::rules::slot_offset(g, interval))
        .collect();
    let base = k * interval;
    (0..interval)
        .map(|o| base + o)
        .find(|t| {
            let m = (T0 + t).rem_euclid(interval);
            offsets.iter().all(|&o| (o - m).abs() > 50)
        })
        .expect("a quiet millisecond")
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rules = args.first().copied().unwrap_or(10_000);
    let per_group = args.get(1).copied().unwrap_or(100).max(1);
    let evaluations = args.get(2).copied().unwrap_or(3).max(1) as i64;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(run(rules, per_group, evaluations));
}

async fn run(rules: usize, per_group: usize, evaluations: i64) {
    START.with(|s| s.set(Some(tokio::time::Instant::now())));
    let out = Report { rules };
    let dir = tempfile::tempdir().unwrap();
    let yaml = rules_yaml(rules, per_group, "vm");
    std::fs::write(dir.path().join("rules.yml"), &yaml).unwrap();
    let yaml_len = yaml.len();
    drop(yaml);

    let start = live();
    let sqlite_start = sqlite_bytes();
    let store =
        Arc::new(Store::open(&dir.path().join("tocsin.db"), StoreOptions::default()).unwrap());
    let mut datasources = Datasources::default();
    datasources
        .0
        .insert("vm".to_string(), Arc::new(StandIn) as Arc<dyn RemoteEngine>);
    let config = RuleConfig {
        patterns: vec!["rules.yml".into()],
        base: dir.path().to_path_buf(),
        default_interval_ms: INTERVAL_S * 1000,
        grace: Default::default(),
        external_labels: Default::default(),
        external_url: String::new(),
        compat: Default::default(),
        datasources,
    };
    let clock = Arc::new(tocsin::clock::TokioClock::new(T0));
    let manager = RuleManager::new(
        store.clone(),
        clock,
        Arc::new(SelfMetrics::new(0.0)),
        config,
    );
    manager.apply(RuleSet::default(), T0).await;
    run_until(2_000).await;
    let base = live();
    let sqlite_base = sqlite_bytes();

    // the parsed rule set, and the most held while parsing it
    reset_peak();
    let blocks_base = BLOCKS.load(Ordering::Relaxed);
    let set = manager.load_rules().unwrap();
    let parsed = live() - base;
    let load_peak = peak() - base;
    let parsed_blocks = BLOCKS.load(Ordering::Relaxed) - blocks_base;
    let group_names: Vec<String> = set.groups.iter().map(|g| g.name.clone()).collect();
    let weighed = weigh_parsed(&set);

    // installed: the group tasks start, each with its group, and empty states are published
    let before_apply = live();
    manager.apply(set, T0 + 2_000).await;
    let installed = live() - before_apply;

    // evaluated
    reset_peak();
    let before_eval = live();
    run_until(quiet_time(&group_names, evaluations)).await;
    let evaluated = live() - before_eval;
    let eval_peak = peak() - before_eval;
    let firing = manager.alerts().len();
    // the label check the daemon runs after each load, over the store's label names (the ALERTS
    // series give some): it walks every rule's tree and must keep none of them
    let before_check = live();
    let unknown = manager.warn_unknown_labels();
    let checked = live() - before_check;
    let total = live() - base;
    let total_blocks = BLOCKS.load(Ordering::Relaxed) - blocks_base;

    // the teardown, part by part
    let before_stop = live();
    manager.stop().await;
    let tasks = before_stop - live();
    let mut parts = Vec::new();
    for (name, part) in manager.take_parts_for_measurement() {
        let before = live();
        drop(part);
        parts.push((name, before - live()));
    }
    let left = live() - base;

    println!(
        "rule memory: {rules} alerting rules in {} groups of {per_group} on a stand-in remote engine (one rule in {FIRING_ONE_IN} answers 2 samples), {evaluations} evaluations each; rule file {yaml_len} B",
        group_names.len()
    );
    println!(
        "  alerts held: {firing}; store series: {}",
        store.stats().series
    );
    out.line("base: store + manager, zero rules", base - start);
    println!(
        "  {:<46} {:>12} B  (SQLite's own allocator, not counted above)",
        "  SQLite at base",
        sqlite_base - sqlite_start
    );
    out.line("parsed rule set (load_rules)", parsed);
    out.line("  peak while loading", load_peak);
    println!(
        "  {:<46} {:>12}    {:>8.1} a rule",
        "  allocations held",
        parsed_blocks,
        parsed_blocks as f64 / rules as f64
    );
    out.line("  PromQL syntax trees held", weighed.asts);
    out.line("  templates (labels, annotations)", weighed.templates);
    out.line("  name, key, condition text", weighed.strings);
    out.line(
        "  the rest (Rule, Group, Vecs)",
        parsed - weighed.asts - weighed.templates - weighed.strings,
    );
    out.line("installed (apply: tasks, empty states)", installed);
    out.line("evaluated (states, snapshots, store, metrics)", evaluated);
    out.line("  peak during evaluation, over the installed", eval_peak);
    out.line(
        &format!("label check after a load, kept ({unknown} unknown)"),
        checked,
    );
    out.line("total over the base", total);
    println!(
        "  {:<46} {:>12}    {:>8.1} a rule",
        "  allocations held",
        total_blocks,
        total_blocks as f64 / rules as f64
    );
    println!("  teardown:");
    out.line("  group tasks (own states, Arc<Group>, futures)", tasks);
    for (name, bytes) in &parts {
        out.line(&format!("  {name}"), *bytes);
    }
    out.line("  left (store: ALERTS series; metrics)", left);
    println!(
        "  {:<46} {:>12} B  (SQLite's own allocator)",
        "  SQLite now, over its base",
        sqlite_bytes() - sqlite_base
    );
}
