//! `tocsin replay`: backtest rules over stored history.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use super::{Outcome, load_config};
use tocsin::clock::{Clock, SystemClock};
use tocsin::duration::PromDuration;
use tocsin::rules::source::{Datasources, RemoteEngine};
use tocsin::store::Store;

/// The arguments of `tocsin replay`.
#[derive(clap::Args)]
pub(crate) struct ReplayArgs {
    /// store file (default: the configured storage path)
    #[arg(long)]
    pub(crate) db: Option<PathBuf>,
    /// rule file or directory (default: the configuration's rule_files)
    #[arg(long)]
    pub(crate) rules: Option<PathBuf>,
    /// first evaluation time: unix seconds, RFC 3339, `now` or `-1d` (before now)
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) from: String,
    /// last evaluation time (inclusive), as --from
    #[arg(long, allow_hyphen_values = true, default_value = "now")]
    pub(crate) to: String,
    /// evaluate every group at this step from --from (default: each group's own interval,
    /// at the offsets the daemon uses)
    #[arg(long)]
    pub(crate) step: Option<PromDuration>,
    /// evaluate this long before --from without reporting it, so alerts already pending or
    /// firing at --from keep their state (e.g. the longest `for` of the rules)
    #[arg(long, default_value = "0s")]
    pub(crate) warmup: PromDuration,
    /// configuration whose route and receivers, evaluation interval, targets' startup
    /// grace and storage path to use (default: ./tocsin.yml or built-in; without a route,
    /// one receiver `default` grouped by alertname, as `tocsin test`)
    #[arg(long, short)]
    pub(crate) config: Option<PathBuf>,
    /// output: text or json (one document)
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub(crate) format: String,
    /// replay these rules too and print the alerts whose firing differs
    #[arg(long)]
    pub(crate) compare: Option<PathBuf>,
    /// evaluate every group against this datasource (a name from the configuration's
    /// datasources, or the URL of a Prometheus-API engine) instead of the store; without it,
    /// groups with `datasource:` query theirs and the others the store
    #[arg(long)]
    pub(crate) datasource: Option<String>,
    /// how remote history is read: `range` (one query_range per rule and group, then answered
    /// from memory; the default, the same answers as `instant`) or `instant` (one query per rule
    /// and evaluation)
    #[arg(long, default_value = "range", value_parser = ["range", "instant"])]
    pub(crate) datasource_mode: String,
}

pub(crate) fn replay(args: ReplayArgs) -> Result<Outcome> {
    use tocsin::notify::recorder::NotifySetup;
    use tocsin::rules::replay::{Replay, check_range, compare, replay, rule_files, show_intervals};
    use tocsin::rules::{RuleErrors, RuleSet, expand_globs, load_files};

    let now = SystemClock.now_ms();
    let from = tocsin::timefmt::parse_time_at(&args.from, now).context("--from")?;
    let to = tocsin::timefmt::parse_time_at(&args.to, now).context("--to")?;
    if args.step.is_some_and(|s| s.as_millis() <= 0) {
        bail!("--step must be positive");
    }
    let (cfg, source) = load_config(args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let default_interval = cfg.evaluation.interval.value.as_millis();
    // rules first: a broken file fails fast and opens nothing
    let scripts = tocsin::promql::rhai::ScriptEngine::new();
    let load = |path: Option<&PathBuf>| -> Result<Result<RuleSet, RuleErrors>> {
        let files = match path {
            Some(p) => rule_files(p)?,
            None => {
                if cfg.rule_files.is_empty() {
                    bail!("no rules: give --rules or a configuration with rule_files");
                }
                let base = source
                    .as_ref()
                    .and_then(|p| p.parent().map(PathBuf::from))
                    .unwrap_or_default();
                match expand_globs(&cfg.rule_file_patterns(), &base) {
                    Ok(f) => f,
                    Err(e) => return Ok(Err(e)),
                }
            }
        };
        Ok(load_files(&files, default_interval, &scripts))
    };
    let mut sets = vec![load(args.rules.as_ref())?];
    if let Some(other) = &args.compare {
        sets.push(load(Some(other))?);
    }
    let mut failed = false;
    for set in &sets {
        if let Err(RuleErrors(errors)) = set {
            for e in errors {
                eprintln!("{e}");
            }
            failed = true;
        }
    }
    if failed {
        return Ok(Outcome::CheckFailed);
    }
    let sets: Vec<RuleSet> = sets.into_iter().flatten().collect();
    if args.datasource.is_none() {
        let names = cfg.datasource_names();
        for set in &sets {
            if let Err(RuleErrors(errors)) = set.check_datasources(&names) {
                for e in errors {
                    eprintln!("{e}");
                }
                failed = true;
            }
        }
        if failed {
            return Ok(Outcome::CheckFailed);
        }
    }

    // remote engines: the requests run on a small runtime of their own, the replay on this thread
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let configured = cfg
        .build_datasources(&env)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let client = |d: tocsin::config::datasource::Datasource| {
        Arc::new(tocsin::datasource::Client::new(
            d,
            runtime.handle().clone(),
            None,
        ))
    };
    let all_on = match &args.datasource {
        None => None,
        Some(given) => match configured.iter().find(|d| &d.name == given) {
            Some(d) => Some(client(d.clone())),
            None if given.contains("://") => Some(client(
                tocsin::config::datasource::from_url(given)
                    .map_err(|e| anyhow::anyhow!("--datasource: {e}"))?,
            )),
            None => bail!(
                "--datasource {given:?} is neither a configured datasource nor a URL (configured: {})",
                cfg.datasource_names().join(", ")
            ),
        },
    };
    let clients: Vec<Arc<tocsin::datasource::Client>> = match &all_on {
        Some(c) => vec![c.clone()],
        None => configured.into_iter().map(client).collect(),
    };

    // the store is read when some group evaluates over it
    let on_store = all_on.is_none()
        && sets
            .iter()
            .any(|s| s.groups.iter().any(|g| g.datasource.is_none()));
    let path = args.db.unwrap_or_else(|| cfg.storage.path.clone());
    let store: Arc<dyn tocsin::promql::Storage + Send + Sync>;
    let mut first_seen: std::collections::HashMap<String, i64> = Default::default();
    let mut silences = Vec::new();
    let mut note_store = None;
    if on_store {
        let opened = Arc::new(Store::open_read_only(&path)?);
        if let Err(e) = check_range(from, to, opened.sample_range()?) {
            eprintln!("error: {}: {e}", path.display());
            return Ok(Outcome::CheckFailed);
        }
        first_seen = opened.targets_first_seen()?.into_iter().collect();
        silences = tocsin::notify::silence::read_stored(&opened.stored_silences()?);
        note_store = Some(opened.clone());
        store = opened;
    } else {
        store = Arc::new(tocsin::promql::MemStorage::new());
    }
    let grace = cfg
        .targets
        .iter()
        .filter_map(|t| {
            let first = *first_seen.get(&t.name.value)?;
            Some((t.name.value.clone(), (t.startup_grace.as_millis(), first)))
        })
        .collect();
    let setup = match cfg.notify_plan() {
        Some(plan) => NotifySetup::new(&plan),
        None => NotifySetup::builtin(),
    }
    .with_digest_interval(default_interval);
    let note = move |l: &tocsin::labels::Labels| note_store.as_ref().and_then(|s| s.note(l));
    let mut input = Replay {
        storage: store.clone(),
        rules: &sets[0],
        notify: Some(&setup),
        from,
        to,
        step_ms: args.step.map(|s| s.as_millis()),
        warmup_ms: args.warmup.as_millis(),
        default_interval_ms: default_interval,
        compat: cfg.evaluation.compat(),
        external_labels: Default::default(),
        external_url: format!("http://{}", cfg.server.listen.value),
        grace,
        note: &note,
        silences,
        datasources: Default::default(),
        all_on: None,
    };
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} evaluations ({per_sec}, eta {eta})",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut timelines = Vec::new();
    for (i, set) in sets.iter().enumerate() {
        input.rules = set;
        // each remote engine this replay queries, its history fetched ahead in `range` mode
        let engine = |c: &Arc<tocsin::datasource::Client>| -> Arc<dyn RemoteEngine> {
            if args.datasource_mode == "instant" {
                return c.clone();
            }
            let mut p = tocsin::datasource::Prefetched::new(c.clone());
            let jobs = range_jobs(
                set,
                from - input.warmup_ms.max(0),
                to,
                input.step_ms,
                |g| all_on.is_some() || g.datasource.as_ref().is_some_and(|d| d.name == c.name()),
                c.as_ref(),
            );
            let failed = p.prefetch(&jobs);
            if failed > 0 {
                eprintln!(
                    "datasource {}: {failed} of the range queries failed or were off their grid: their evaluations query one by one",
                    c.name()
                );
            }
            Arc::new(p)
        };
        match &all_on {
            Some(c) => input.all_on = Some(engine(c)),
            None => {
                input.datasources = Datasources(
                    clients
                        .iter()
                        .filter(|c| {
                            set.groups
                                .iter()
                                .any(|g| g.datasource.as_ref().is_some_and(|d| d.name == c.name()))
                        })
                        .map(|c| (c.name().to_string(), engine(c)))
                        .collect(),
                )
            }
        }
        bar.reset();
        bar.set_message(if i == 0 { "replay" } else { "compare" });
        let started = std::time::Instant::now();
        let timeline = replay(&input, &mut |done, total| {
            if done == 1 {
                bar.set_length(total);
            }
            if done % 64 == 0 || done == total {
                bar.set_position(done);
            }
        });
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "replayed {} group evaluations in {secs:.2}s ({:.0}/s)",
            timeline.totals.evaluations,
            timeline.totals.evaluations as f64 / secs.max(1e-9)
        );
        timelines.push(timeline);
    }
    bar.finish_and_clear();

    let Some(other) = timelines.get(1) else {
        let t = &timelines[0];
        if args.format == "json" {
            println!("{}", t.to_json());
        } else {
            print!("{}", t.render_text());
        }
        return Ok(Outcome::Ok);
    };
    let diffs = compare(&timelines[0], other);
    let (a, b) = (
        args.rules
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "configured rules".into()),
        args.compare
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    );
    if args.format == "json" {
        let doc = serde_json::json!({
            "a": a,
            "b": b,
            "differences": diffs.iter().map(|d| serde_json::json!({
                "alert": d.alert,
                "a": d.a.iter().map(|(s, e)| serde_json::json!([s, e])).collect::<Vec<_>>(),
                "b": d.b.iter().map(|(s, e)| serde_json::json!([s, e])).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "a_timeline": timelines[0].to_json(),
            "b_timeline": other.to_json(),
        });
        println!("{doc}");
    } else {
        println!("a: {a}\nb: {b}");
        for d in &diffs {
            let what = match (d.a.is_empty(), d.b.is_empty()) {
                (false, true) => "only in a",
                (true, false) => "only in b",
                _ => "differs",
            };
            println!("{what:<10} {}", d.alert);
            println!("    a: {}", show_intervals(&d.a));
            println!("    b: {}", show_intervals(&d.b));
        }
        println!(
            "{} alerts differ ({} fired in a, {} in b)",
            diffs.len(),
            timelines[0].firing_intervals().len(),
            other.firing_intervals().len()
        );
    }
    Ok(if diffs.is_empty() {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}

/// The range queries that answer every PromQL condition (and `resolve`) of the groups `on`
/// selects at the slots a replay from `from` to `to` evaluates them (each group's grid: its
/// slots, or `from + k·step`, minus its query offset).
fn range_jobs(
    set: &tocsin::rules::RuleSet,
    from: i64,
    to: i64,
    step_ms: Option<i64>,
    on: impl Fn(&tocsin::rules::Group) -> bool,
    engine: &dyn RemoteEngine,
) -> Vec<tocsin::datasource::RangeJob> {
    use tocsin::rules::{Condition, RuleKind};
    let slots = tocsin::rules::replay::schedule(set, from, to, step_ms);
    let mut jobs = Vec::new();
    for (gi, g) in set.groups.iter().enumerate() {
        if !on(g) {
            continue;
        }
        let mut mine = slots.iter().filter(|(_, i)| *i == gi).map(|(t, _)| *t);
        let Some(first) = mine.next() else {
            continue;
        };
        let last = mine.next_back().unwrap_or(first);
        let at = |t| tocsin::rules::group::query_time(g, Some(engine), t);
        let step = step_ms.unwrap_or(g.interval_ms).max(1);
        for rule in &g.rules {
            let resolve = match &rule.kind {
                RuleKind::Alert { resolve, .. } => resolve.as_ref(),
                RuleKind::Record => None,
            };
            for c in std::iter::once(&rule.condition).chain(resolve) {
                if let Condition::PromQL { text, .. } = c {
                    jobs.push(tocsin::datasource::RangeJob {
                        query: text.to_string(),
                        start: at(first),
                        end: at(last),
                        step,
                    });
                }
            }
        }
    }
    jobs.sort_by(|a, b| (&a.query, a.start).cmp(&(&b.query, b.start)));
    jobs.dedup();
    jobs
}
