//! The `tocsin` binary: command-line parsing, logging setup, and the daemon's start and stop.
//! `anyhow` lives here only; the library has typed errors.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use tokio::sync::watch;

use tocsin::clock::{Clock, SystemClock};
use tocsin::config::{Config, ConfigError, DEFAULT_CONFIG_FILE, LogFormat};
use tocsin::duration::PromDuration;
use tocsin::ingest::scheduler::{Scheduler, StatusBoard};
use tocsin::selfmetrics::SelfMetrics;
use tocsin::store::{Store, StoreOptions};
use tocsin::ingest::textparse::{Entry, Parser as TextParser};

#[derive(Parser)]
#[command(name = "tocsin", version = tocsin::LONG_VERSION, about = "scrape, store, alert: one binary")]
struct Cli {
    /// Log format: text or json (overrides the config file and TOCSIN_LOG_FORMAT).
    #[arg(long, global = true)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon. Without --config, uses ./tocsin.yml if present, else the built-in default
    /// (listen on 127.0.0.1:9477, watch itself, store in ./data/).
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Shadow mode: evaluate, route and record every notification, deliver none (they are
        /// listed as `shadow` at /api/v1/notifications and counted in self-metrics).
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate a configuration file and rule files (templates and scripts included); prints
    /// every error with file:line:col. Exit 0 valid, 1 invalid. A directory means its rule files
    /// (`*.yml`, `*.yaml` but not `*_test.yml`); a file with top-level `groups` is a rule file;
    /// another file is the configuration (its `rule_files` are checked too).
    Check {
        /// default: ./tocsin.yml
        paths: Vec<PathBuf>,
    },
    /// Manage silences of a running daemon through its API (like amtool silence).
    Silence {
        #[command(subcommand)]
        action: SilenceAction,
        /// the daemon's address (default: the configured server.listen)
        #[arg(long, global = true)]
        url: Option<String>,
        /// configuration file whose listen address and token variable to use
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Run rule unit tests in promtool's format. Exit 0 all passed, 1 a test failed.
    Test {
        files: Vec<PathBuf>,
        /// only test groups whose name matches this regex
        #[arg(long)]
        run: Option<String>,
        /// write a JUnit XML report here
        #[arg(long)]
        junit: Option<PathBuf>,
        /// PromQL semantics where Prometheus 2.x and 3.x differ: 2 or 3 (default: 2, as promtool
        /// 2.x, which wrote most existing rule tests)
        #[arg(long, default_value = "2", value_parser = parse_compat)]
        promql_compat: tocsin::promql::Compat,
    },
    /// Fetch one metrics endpoint and print its samples, or the parse error with its line.
    Scrape {
        url: String,
        /// whole-request timeout
        #[arg(long, default_value = "10s")]
        timeout: PromDuration,
        /// maximum body size in bytes (after decompression)
        #[arg(long, default_value_t = 64 << 20)]
        body_limit: u64,
    },
    /// Evaluate a PromQL expression (or, with --rhai, a rule script) against a store file
    /// (read-only: safe beside a running daemon) and print the result. Exit 1 if it fails.
    /// Print the receivers an alert with these labels would reach (`label=value …`), as
    /// `amtool config routes test` does.
    RouteTest {
        #[arg(required = true)]
        labels: Vec<String>,
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Exit non-zero unless the receivers are exactly these (comma-separated, in order).
        #[arg(long)]
        verify_receivers: Option<String>,
    },
    /// Print the configuration reference (Markdown), generated from the config types' doc
    /// comments. Exit 2 if a config type, field or value lacks one.
    ConfigReference,
    Query {
        expr: String,
        /// EXPR is a Rhai rule script, not PromQL
        #[arg(long)]
        rhai: bool,
        /// evaluation time: unix seconds, RFC 3339, `now` or `-1h` (default: now)
        #[arg(long, allow_hyphen_values = true)]
        at: Option<String>,
        /// store file (default: the configured storage path)
        #[arg(long)]
        db: Option<PathBuf>,
        /// configuration file whose storage path to read (default: ./tocsin.yml or built-in)
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Backtest: evaluate rules over stored history with the daemon's engine, alert tracker and
    /// notification pipeline (a manual clock, nothing sent) and print the timeline of alert
    /// transitions and of the notifications that would have gone out, with totals. The store
    /// is opened read-only: safe beside a running daemon, it sees what the daemon has flushed.
    /// Exit 1 when rules fail to load, the range holds no samples, or --compare finds a
    /// difference; 2 on usage or I/O errors (a missing store).
    Replay {
        /// store file (default: the configured storage path)
        #[arg(long)]
        db: Option<PathBuf>,
        /// rule file or directory (default: the configuration's rule_files)
        #[arg(long)]
        rules: Option<PathBuf>,
        /// first evaluation time: unix seconds, RFC 3339, `now` or `-1d` (before now)
        #[arg(long, allow_hyphen_values = true)]
        from: String,
        /// last evaluation time (inclusive), as --from
        #[arg(long, allow_hyphen_values = true, default_value = "now")]
        to: String,
        /// evaluate every group at this step from --from (default: each group's own interval,
        /// at the offsets the daemon uses)
        #[arg(long)]
        step: Option<PromDuration>,
        /// evaluate this long before --from without reporting it, so alerts already pending or
        /// firing at --from keep their state (e.g. the longest `for` of the rules)
        #[arg(long, default_value = "0s")]
        warmup: PromDuration,
        /// configuration whose route and receivers, evaluation interval, targets' startup
        /// grace and storage path to use (default: ./tocsin.yml or built-in; without a route,
        /// one receiver `default` grouped by alertname, as `tocsin test`)
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// output: text or json (one document)
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
        /// replay these rules too and print the alerts whose firing differs
        #[arg(long)]
        compare: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SilenceAction {
    /// Silence alerts matching every MATCHER (`alertname="Down"`, `instance=~"db.*"`).
    Add {
        #[arg(required = true)]
        matchers: Vec<String>,
        /// how long, from now
        #[arg(long, default_value = "1h")]
        duration: PromDuration,
        #[arg(long, default_value_t = std::env::var("USER").unwrap_or_else(|_| "tocsin".into()))]
        author: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// List silences.
    List,
    /// End a silence now.
    Expire { id: String },
}

/// How a command ended: 0 ok, 1 a check failed, 2 usage or I/O error.
enum Outcome {
    Ok,
    CheckFailed,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::CheckFailed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<Outcome> {
    match cli.command {
        Command::Run { config, dry_run } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(daemon(config, cli.log_format, dry_run))?;
            Ok(Outcome::Ok)
        }
        Command::Check { paths } => check(paths),
        Command::Silence {
            action,
            url,
            config,
        } => silence(action, url, config),
        Command::Test {
            files,
            run,
            junit,
            promql_compat,
        } => test(&files, run.as_deref(), junit, promql_compat),
        Command::Scrape {
            url,
            timeout,
            body_limit,
        } => scrape(&url, timeout, body_limit),
        Command::RouteTest {
            labels,
            config,
            verify_receivers,
        } => route_test(&labels, config, verify_receivers.as_deref()),
        Command::Query {
            expr,
            rhai,
            at,
            db,
            config,
        } => query(&expr, rhai, at.as_deref(), db, config),
        Command::ConfigReference => config_reference(),
        Command::Replay {
            db,
            rules,
            from,
            to,
            step,
            warmup,
            config,
            format,
            compare,
        } => replay(ReplayArgs {
            db,
            rules,
            from,
            to,
            step,
            warmup,
            config,
            json: format == "json",
            compare,
        }),
    }
}

fn config_reference() -> Result<Outcome> {
    let text = tocsin::config::reference::generate()
        .context("cannot generate the configuration reference")?;
    print!("{text}");
    Ok(Outcome::Ok)
}

fn init_logging(format: LogFormat, level: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("invalid log level {level:?}"))?;
    // colours only on a terminal: a log file or journal gets plain text
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

/// The configuration `run` and `check` use, and where it came from.
fn load_config(explicit: Option<PathBuf>) -> Result<(Config, Option<PathBuf>), ConfigError> {
    let path = explicit.or_else(|| {
        let p = PathBuf::from(DEFAULT_CONFIG_FILE);
        p.exists().then_some(p)
    });
    match path {
        Some(p) => Ok((Config::load(&p)?, Some(p))),
        None => Ok((Config::builtin_default(), None)),
    }
}

fn route_test(labels: &[String], config: Option<PathBuf>, verify: Option<&str>) -> Result<Outcome> {
    let (cfg, source) = load_config(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(plan) = cfg.notify_plan() else {
        bail!(
            "{}: no route configured",
            source
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "built-in configuration".into())
        );
    };
    let mut map = std::collections::BTreeMap::new();
    for l in labels {
        let Ok((k, v)) = &tocsin::labels::parse_label_pair(l) else {
            bail!("expected label=value, got {l:?}");
        };
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        map.insert(k.trim().to_string(), v.to_string());
    }
    let receivers = plan.routes().route_test(&map);
    println!("{}", receivers.join(","));
    if let Some(want) = verify {
        let want: Vec<&str> = want.split(',').map(str::trim).collect();
        if want != receivers {
            eprintln!(
                "want receivers {}, got {}",
                want.join(","),
                receivers.join(",")
            );
            return Ok(Outcome::CheckFailed);
        }
    }
    Ok(Outcome::Ok)
}

fn check(paths: Vec<PathBuf>) -> Result<Outcome> {
    use tocsin::rules::{RuleErrors, expand_globs, load_files};
    let paths = if paths.is_empty() {
        vec![PathBuf::from(DEFAULT_CONFIG_FILE)]
    } else {
        paths
    };
    let mut failed = false;
    let mut rule_files: Vec<PathBuf> = Vec::new();
    let mut default_interval = 15_000;
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(&path)
                .with_context(|| format!("cannot read directory {}", path.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let n = p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    (n.ends_with(".yml") || n.ends_with(".yaml")) && !n.contains("_test.")
                })
                .collect();
            found.sort();
            rule_files.extend(found);
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let is_rules = text.lines().any(|l| l.starts_with("groups:"));
        if is_rules {
            rule_files.push(path);
            continue;
        }
        match Config::from_yaml(&text, &path) {
            Ok(cfg) => {
                match cfg.notify_plan() {
                    Some(plan) => println!(
                        "{}: notifications: {} receivers, {} inhibition rules",
                        path.display(),
                        plan.receivers.len(),
                        plan.routing.inhibitor.len()
                    ),
                    None => println!(
                        "{}: warning: no route: alerts are tracked but no notification is sent",
                        path.display()
                    ),
                }
                default_interval = cfg.evaluation.interval.as_millis();
                let base = path.parent().map(PathBuf::from).unwrap_or_default();
                match expand_globs(&cfg.rule_files, &base) {
                    Ok(files) => rule_files.extend(files),
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
                println!("{}: ok ({} targets)", path.display(), cfg.targets.len());
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if !rule_files.is_empty() {
        let scripts = tocsin::promql::rhai::ScriptEngine::new();
        match load_files(&rule_files, default_interval, &scripts) {
            Ok(set) => {
                for f in &set.files {
                    let n: usize = set
                        .groups
                        .iter()
                        .filter(|g| &g.file == f)
                        .map(|g| g.rules.len())
                        .sum();
                    println!("{}: ok ({n} rules)", f.display());
                }
            }
            Err(RuleErrors(errors)) => {
                for e in errors {
                    eprintln!("{e}");
                }
                failed = true;
            }
        }
    }
    Ok(if failed {
        Outcome::CheckFailed
    } else {
        Outcome::Ok
    })
}

fn parse_compat(s: &str) -> Result<tocsin::promql::Compat, String> {
    match s {
        "2" => Ok(tocsin::promql::Compat::Prometheus2),
        "3" => Ok(tocsin::promql::Compat::Prometheus3),
        other => Err(format!("expected 2 or 3, got {other:?}")),
    }
}

fn test(
    files: &[PathBuf],
    run: Option<&str>,
    junit: Option<PathBuf>,
    compat: tocsin::promql::Compat,
) -> Result<Outcome> {
    use tocsin::rules::unittest::{junit_xml, run_file};
    let run = run
        .map(regex::Regex::new)
        .transpose()
        .context("invalid --run regex")?;
    if files.is_empty() {
        bail!("no test files given");
    }
    let mut failed = false;
    let mut reports = Vec::new();
    for f in files {
        println!("Unit Testing:  {}", f.display());
        match run_file(f, run.as_ref(), compat) {
            Ok(r) => {
                for g in &r.groups {
                    for msg in &g.skipped {
                        println!("  skipped in {}: {msg}", g.name);
                    }
                }
                if r.passed() {
                    println!("  SUCCESS");
                } else {
                    failed = true;
                    println!("  FAILED:");
                    for g in r.groups.iter().filter(|g| !g.failures.is_empty()) {
                        for msg in &g.failures {
                            println!("    in {}: {msg}", g.name);
                        }
                    }
                }
                reports.push(Ok(r));
            }
            Err(e) => {
                failed = true;
                println!("  FAILED:\n{e}");
                reports.push(Err((f.clone(), e.to_string())));
            }
        }
        println!();
    }
    if let Some(path) = junit {
        std::fs::write(&path, junit_xml(&reports))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if failed {
        Outcome::CheckFailed
    } else {
        Outcome::Ok
    })
}

fn scrape(url: &str, timeout: PromDuration, body_limit: u64) -> Result<Outcome> {
    let url = url::Url::parse(url).with_context(|| format!("invalid url {url:?}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = tocsin::ingest::scrape::client();
    let resp = rt
        .block_on(tocsin::ingest::scrape::fetch(
            &client,
            &url,
            timeout.0,
            body_limit,
            None,
            "text/plain;version=0.0.4",
        ))
        .with_context(|| format!("scrape {url}"))?;
    if !(200..300).contains(&resp.status) {
        bail!("scrape {url}: server returned HTTP status {}", resp.status);
    }
    let body = std::str::from_utf8(&resp.body)
        .with_context(|| format!("scrape {url}: body is not utf-8"))?;
    let mut out = String::new();
    let mut count = 0usize;
    for entry in TextParser::new(body) {
        match entry {
            Ok(Entry::Sample(s)) => {
                count += 1;
                out.push_str(s.series);
                out.push(' ');
                out.push_str(&s.value.to_string());
                if let Some(ts) = s.timestamp_ms {
                    out.push(' ');
                    out.push_str(&ts.to_string());
                }
                out.push('\n');
            }
            Ok(_) => {}
            Err(e) => {
                print!("{out}");
                eprintln!("{url}: {e}");
                return Ok(Outcome::CheckFailed);
            }
        }
    }
    print!("{out}");
    eprintln!("{count} samples");
    Ok(Outcome::Ok)
}

async fn daemon(
    config: Option<PathBuf>,
    log_format: Option<LogFormat>,
    dry_run: bool,
) -> Result<()> {
    let (mut cfg, source) = load_config(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    cfg.apply_env(std::env::vars())
        .map_err(|e| anyhow::anyhow!(e))?;
    if source.is_none() {
        cfg.add_self_target_if_empty();
    }
    init_logging(log_format.unwrap_or(cfg.log.format), &cfg.log.level)?;
    match &source {
        Some(p) => tracing::info!(config = %p.display(), "configuration loaded"),
        None => tracing::info!("no configuration file: running the built-in default"),
    }
    let targets = cfg.build_targets()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let started_ms = clock.now_ms();
    let store_path = cfg.storage.path.clone();
    let opts = StoreOptions {
        head_window_ms: cfg.storage.head_window.as_millis(),
        retention_ms: cfg.storage.retention.as_millis(),
    };
    let store = {
        let path = store_path.clone();
        tokio::task::spawn_blocking(move || Store::open(&path, opts))
            .await
            .context("store open task")??
    };
    let store = Arc::new(store);
    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
    tracing::info!(listen = %cfg.server.listen, store = %store_path.display(), targets = targets.len(), "tocsin started");

    let metrics = Arc::new(SelfMetrics::new(started_ms as f64 / 1000.0));
    let status = Arc::new(StatusBoard::default());
    let scheduler = Scheduler {
        store: store.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        status: status.clone(),
        client: tocsin::ingest::scrape::client(),
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = scheduler.spawn(targets, cfg.storage.flush_interval.0, shutdown_rx.clone());

    // rules: restore persisted alert state, load, evaluate; reload on file change, SIGHUP, API
    let rule_config = tocsin::rules::manager::RuleConfig {
        patterns: cfg.rule_files.clone(),
        base: source
            .as_ref()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_default(),
        default_interval_ms: cfg.evaluation.interval.as_millis(),
        grace: cfg
            .targets
            .iter()
            .map(|t| (t.name.value.clone(), t.startup_grace.as_millis()))
            .collect(),
        external_labels: Default::default(),
        external_url: format!("http://{}", cfg.server.listen),
        compat: cfg.evaluation.compat(),
    };
    let manager = tocsin::rules::manager::RuleManager::new(
        store.clone(),
        clock.clone(),
        metrics.clone(),
        rule_config.clone(),
    );
    {
        let m = manager.clone();
        match tokio::task::spawn_blocking(move || m.restore()).await? {
            Ok(n) if n > 0 => tracing::info!(alerts = n, "alert state restored"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot read persisted alert state"),
        }
    }
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    // set once notifications are built below; a reload then re-reads their sections
    let notify_reload: Arc<std::sync::Mutex<Option<NotifyReload>>> = Default::default();
    let reloads = Arc::new(tocsin::daemon::reload::ReloadHistory::default());
    let reloader = tokio::spawn(reload_loop(
        manager.clone(),
        reloads.clone(),
        clock.clone(),
        rule_config,
        notify_reload.clone(),
        reload_tx.clone(),
        reload_rx,
    ));
    #[cfg(unix)]
    let _sighup = tocsin::daemon::reload::spawn_sighup(reload_tx.clone())
        .context("cannot install the SIGHUP handler")?;
    let _ = reload_tx
        .send(tocsin::daemon::reload::ReloadRequest::signal())
        .await;

    let silences = {
        let store = store.clone();
        let now = clock.now_ms();
        Arc::new(
            tokio::task::spawn_blocking(move || {
                tocsin::notify::silence::Silences::load(store, now)
            })
            .await??,
        )
    };
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let sender_task = match cfg.notify_plan() {
        Some(plan) => {
            let tocsin::notify::setup::NotifyParts {
                routes,
                inhibitor,
                names,
                integrations,
            } = plan
                .parts(
                    &env,
                    tocsin::ingest::scrape::client(),
                    cfg.evaluation.interval.as_millis(),
                )
                .map_err(|e| anyhow::anyhow!("receivers: {}", e.join("; ")))?;
            let notifier = {
                let store = store.clone();
                let names = names.clone();
                let url = format!("http://{}", cfg.server.listen);
                tokio::task::spawn_blocking(move || {
                    tocsin::notify::pipeline::Notifier::new(&store, routes, inhibitor, names, url)
                })
                .await??
            };
            let wakeup = Arc::new(tokio::sync::Notify::new());
            manager.set_delivery_wakeup(wakeup.clone());
            let notifier = Arc::new(
                notifier
                    .with_silences(silences.clone())
                    .with_metrics(metrics.clone())
                    .with_dry_run(dry_run),
            );
            manager.set_notifier(notifier.clone());
            let (integrations_tx, integrations_rx) = watch::channel(None);
            if let Some(path) = &source {
                *notify_reload.lock().expect("notify reload lock") = Some(NotifyReload {
                    source: path.clone(),
                    notifier,
                    integrations: integrations_tx,
                    current: notify_sections(&cfg),
                    digest_interval_ms: cfg.evaluation.interval.as_millis(),
                });
            }
            tracing::info!(
                receivers = plan.receivers.len(),
                integrations = integrations.len(),
                "notifications on"
            );
            let sender = tocsin::notify::sender::Sender::new(
                store.clone(),
                clock.clone(),
                integrations,
                names,
            );
            if dry_run {
                // what an earlier run queued stays queued for the next run that delivers
                tracing::warn!("dry run: notifications are recorded as shadow ones, none is sent");
                None
            } else {
                Some(tokio::spawn(sender_loop(
                    sender,
                    metrics.clone(),
                    wakeup,
                    integrations_rx,
                    shutdown_rx.clone(),
                )))
            }
        }
        None => {
            tracing::warn!("no route configured: alerts are tracked but no notification is sent");
            None
        }
    };
    let api_token = match &cfg.server.api_token_env {
        Some(var) => Some(
            std::env::var(var)
                .with_context(|| format!("server.api_token_env names {var}, which is not set"))?,
        ),
        None => None,
    };
    if api_token.is_none() {
        tracing::warn!(
            "server.api_token_env is not set: API writes (silences, reload) need no token"
        );
    }
    let read_token =
        match &cfg.server.api_read_token_env {
            Some(var) => Some(std::env::var(var).with_context(|| {
                format!("server.api_read_token_env names {var}, which is not set")
            })?),
            None => None,
        };
    let app = tocsin::server::router(tocsin::server::AppState {
        status,
        metrics,
        clock: clock.clone(),
        started_ms,
        store_path: store_path.display().to_string(),
        reload: Some(reload_tx),
        reloads,
        rules: Some(manager.clone()),
        silences: Some(silences.clone()),
        store: Some(store.clone()),
        engine: tocsin::promql::Engine::new(tocsin::promql::EngineOptions {
            compat: cfg.evaluation.compat(),
            default_subquery_step_ms: cfg.evaluation.interval.as_millis(),
            // the API refuses more than 11,000 points per series itself (Prometheus's check)
            max_steps: tocsin::server::MAX_POINTS + 1,
            ..Default::default()
        }),
        api_token,
        read_token,
    });
    let mut server_shutdown = shutdown_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_shutdown.changed().await;
            })
            .await
    });

    wait_for_signal().await;
    tracing::info!("shutting down: stopping rules and scrapes, flushing the store");
    reloader.abort();
    manager.stop().await;
    if let Some(sender) = sender_task {
        // a delivery in flight finishes (bounded by its timeout); what is left stays queued
        let _ = shutdown_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(15), sender).await;
    }
    let _ = shutdown_tx.send(true);
    while tasks.join_next().await.is_some() {}
    let now = clock.now_ms();
    let closed = tokio::task::spawn_blocking(move || store.close(now))
        .await
        .context("store close task")?;
    match closed {
        Ok(stats) => tracing::info!(
            samples = stats.samples,
            chunks = stats.chunks,
            "store flushed"
        ),
        Err(e) => {
            tracing::error!(error = %e, "final store flush failed; samples since the last flush may be lost")
        }
    }
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "http server error"),
        Err(_) => tracing::warn!("http server did not stop within 5s"),
        _ => {}
    }
    Ok(())
}

/// Drains the outbox: a pass as soon as an evaluation made notifications durable, and every
/// 250 ms for retries that came due, until shutdown.
async fn sender_loop(
    mut sender: tocsin::notify::sender::Sender,
    metrics: Arc<SelfMetrics>,
    wakeup: Arc<tokio::sync::Notify>,
    mut reloaded: watch::Receiver<Option<Integrations>>,
    mut shutdown: watch::Receiver<bool>,
) {
    use tocsin::notify::sender::BreakerState;
    use tocsin::selfmetrics::{DeliveryLabels, IntegrationLabels};
    loop {
        if reloaded.has_changed().unwrap_or(false)
            && let Some((integrations, receivers)) = reloaded.borrow_and_update().clone()
        {
            sender.integrations = integrations;
            sender.receivers = receivers;
        }
        let report = sender.pass().await;
        let count = |integration: &str, result: &'static str| {
            metrics
                .notifications
                .get_or_create(&DeliveryLabels {
                    integration: integration.to_string(),
                    result,
                })
                .inc();
        };
        for (i, _) in &report.delivered {
            count(i, "delivered");
        }
        for i in &report.retried {
            count(i, "retried");
        }
        for (i, _) in &report.failed {
            count(i, "failed");
        }
        for (integration, state) in sender.breakers() {
            let v = match state {
                BreakerState::Closed => 0,
                BreakerState::Open { .. } => 1,
                BreakerState::HalfOpen => 2,
            };
            metrics
                .notification_breaker_state
                .get_or_create(&IntegrationLabels { integration })
                .set(v);
        }
        let store = sender.store.clone();
        if let Ok(Ok(depth)) = tokio::task::spawn_blocking(move || store.outbox_depth()).await {
            metrics.notification_outbox_depth.set(depth as i64);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = wakeup.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("can install a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn query(
    expr: &str,
    rhai: bool,
    at: Option<&str>,
    db: Option<PathBuf>,
    config: Option<PathBuf>,
) -> Result<Outcome> {
    use tocsin::promql::{Engine, Evaluator, Value};
    use tocsin::promql::rhai::{ScriptEngine, ScriptValue};

    let now = SystemClock.now_ms();
    let t = match at {
        Some(s) => tocsin::timefmt::parse_time_at(s, now)?,
        None => now,
    };
    let (cfg, _) = load_config(config)?;
    let path = db.unwrap_or_else(|| cfg.storage.path.clone());
    let engine_opts = tocsin::promql::EngineOptions {
        compat: cfg.evaluation.compat(),
        ..Default::default()
    };
    // compile before opening the store: a typo fails fast and touches nothing
    enum Compiled {
        PromQL(promql_parser::parser::Expr),
        Rhai(Box<ScriptEngine>, tocsin::promql::rhai::CompiledScript),
    }
    let compiled = if rhai {
        let engine = ScriptEngine::new();
        match engine.compile(expr) {
            Ok(c) => Compiled::Rhai(Box::new(engine), c),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(Outcome::CheckFailed);
            }
        }
    } else {
        match tocsin::promql::parse(expr) {
            Ok(p) => Compiled::PromQL(p),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(Outcome::CheckFailed);
            }
        }
    };
    let store = Arc::new(Store::open_read_only(&path)?);
    let result = match &compiled {
        Compiled::PromQL(e) => Engine::new(engine_opts.clone())
            .instant(store.as_ref(), e, t)
            .map_err(|e| e.to_string()),
        Compiled::Rhai(engine, script) => {
            let ev = Evaluator::new(Engine::new(engine_opts.clone()), store, t);
            engine
                .run(script, &ev)
                .map(|v| match v {
                    ScriptValue::Vector(s) => Value::Vector(s),
                    ScriptValue::Number(n) => Value::Scalar(n),
                    ScriptValue::Bool(b) => Value::Scalar(if b { 1.0 } else { 0.0 }),
                })
                .map_err(|e| e.to_string())
        }
    };
    match result {
        Ok(v) => {
            print!("{v}");
            Ok(Outcome::Ok)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(Outcome::CheckFailed)
        }
    }
}

/// Serves reload requests one at a time: reloads the rules, answers the requester, and re-aims
/// the file watcher at the files of the rule set now in use.
/// The sender's integrations and each receiver's integration names, as a reload replaces them.
type Integrations = (
    std::collections::HashMap<String, tocsin::notify::sender::Integration>,
    std::collections::HashMap<String, Vec<String>>,
);

/// What a reload needs to swap the notification sections of the configuration file.
struct NotifyReload {
    source: PathBuf,
    notifier: Arc<tocsin::notify::pipeline::Notifier>,
    integrations: watch::Sender<Option<Integrations>>,
    /// the sections in force, to tell whether a reload changed them
    current: String,
    digest_interval_ms: i64,
}

/// The notification sections of `cfg`, compared across reloads.
fn notify_sections(cfg: &Config) -> String {
    serde_json::json!([
        cfg.route,
        cfg.receivers,
        cfg.inhibit_rules,
        cfg.time_intervals
    ])
    .to_string()
}

/// Re-reads the configuration file and swaps routing, inhibition and receivers when their
/// sections changed; every error keeps the old ones. Other sections (targets, storage, server)
/// need a restart.
fn reload_notifications(r: &mut NotifyReload) -> Result<bool, Vec<String>> {
    let cfg = Config::load(&r.source).map_err(|e| vec![e.to_string()])?;
    let sections = notify_sections(&cfg);
    if sections == r.current {
        return Ok(false);
    }
    let Some(plan) = cfg.notify_plan() else {
        return Err(vec![format!(
            "{}: route removed: turning notifications off needs a restart",
            r.source.display()
        )]);
    };
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let parts = plan
        .parts(&env, tocsin::ingest::scrape::client(), r.digest_interval_ms)
        .map_err(|e| {
            e.into_iter()
                .map(|e| format!("{}: {e}", r.source.display()))
                .collect::<Vec<_>>()
        })?;
    r.notifier
        .set_routing(parts.routes, parts.inhibitor, parts.names.clone());
    let _ = r.integrations.send(Some((parts.integrations, parts.names)));
    r.current = sections;
    Ok(true)
}

async fn reload_loop(
    manager: Arc<tocsin::rules::manager::RuleManager>,
    history: Arc<tocsin::daemon::reload::ReloadHistory>,
    clock: Arc<dyn Clock>,
    config: tocsin::rules::manager::RuleConfig,
    notify: Arc<std::sync::Mutex<Option<NotifyReload>>>,
    tx: tokio::sync::mpsc::Sender<tocsin::daemon::reload::ReloadRequest>,
    mut rx: tokio::sync::mpsc::Receiver<tocsin::daemon::reload::ReloadRequest>,
) {
    use tocsin::daemon::reload::{ReloadOutcome, watch_rule_files};
    let mut watcher = None;
    while let Some(req) = rx.recv().await {
        tracing::info!(cause = %req.cause, "reloading rules");
        let report = manager.reload().await;
        history.record(tocsin::daemon::reload::ReloadRecord {
            t: clock.now_ms(),
            cause: req.cause.kind(),
            ok: report.ok,
            errors: report.errors.clone(),
        });
        if report.ok || watcher.is_none() {
            // watch the files in use, and the directories of glob patterns for new files
            let files = manager.rules().files.clone();
            let dirs: Vec<PathBuf> = config
                .patterns
                .iter()
                .filter(|p| p.contains(['*', '?', '[']))
                .filter_map(|p| config.base.join(p).parent().map(PathBuf::from))
                .filter(|d| d.is_dir())
                .collect();
            match watch_rule_files(&files, &dirs, tx.clone()) {
                Ok(w) => watcher = Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch rule files; SIGHUP and POST /-/reload still reload")
                }
            }
        }
        let mut errors = report.errors;
        if let Some(r) = notify.lock().expect("notify reload lock").as_mut() {
            match reload_notifications(r) {
                Ok(true) => tracing::info!("notification routing and receivers reloaded"),
                Ok(false) => {}
                Err(e) => {
                    for line in &e {
                        tracing::error!(
                            error = line,
                            "notification configuration not reloaded, the old one stays"
                        );
                    }
                    errors.extend(e);
                }
            }
        }
        req.respond(if errors.is_empty() {
            ReloadOutcome::succeeded()
        } else {
            ReloadOutcome::failed(errors)
        });
    }
}

fn silence(action: SilenceAction, url: Option<String>, config: Option<PathBuf>) -> Result<Outcome> {
    let (cfg, _) = load_config(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = url.unwrap_or_else(|| format!("http://{}", cfg.server.listen));
    let token = match &cfg.server.api_token_env {
        Some(var) => std::env::var(var).ok(),
        None => std::env::var("TOCSIN_API_TOKEN").ok(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = reqwest::Client::new();
    let auth = |r: reqwest::RequestBuilder| match &token {
        Some(t) => r.bearer_auth(t),
        None => r,
    };
    let endpoint = format!("{base}/api/v1/silences");
    let (status, text) = rt.block_on(async {
        let req = match &action {
            SilenceAction::Add {
                matchers,
                duration,
                author,
                comment,
            } => {
                let ends = SystemClock.now_ms() + duration.as_millis();
                let body = serde_json::json!({
                    "matchers": matchers,
                    "endsAt": tocsin::timefmt::format_rfc3339(ends),
                    "createdBy": author,
                    "comment": comment,
                });
                auth(client.post(&endpoint))
                    .header("content-type", "application/json")
                    .body(body.to_string())
            }
            SilenceAction::List => client.get(&endpoint),
            SilenceAction::Expire { id } => auth(client.delete(format!("{endpoint}/{id}"))),
        };
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))?;
        let status = resp.status();
        anyhow::Ok((status, resp.text().await.unwrap_or_default()))
    })?;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        eprintln!(
            "error: {}: {}",
            status,
            v["error"].as_str().unwrap_or(&text)
        );
        return Ok(Outcome::CheckFailed);
    }
    match action {
        SilenceAction::Add { .. } => println!("{}", v["data"]["silenceID"].as_str().unwrap_or("")),
        SilenceAction::List => {
            for s in v["data"].as_array().cloned().unwrap_or_default() {
                let matchers: Vec<String> = s["matchers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|m| {
                        let op = match (m["isEqual"].as_bool(), m["isRegex"].as_bool()) {
                            (Some(false), Some(true)) => "!~",
                            (_, Some(true)) => "=~",
                            (Some(false), _) => "!=",
                            _ => "=",
                        };
                        format!(
                            "{}{op}{:?}",
                            m["name"].as_str().unwrap_or(""),
                            m["value"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                println!(
                    "{}  {}  {}  until {}  {}  {}",
                    s["id"].as_str().unwrap_or(""),
                    s["status"]["state"].as_str().unwrap_or(""),
                    matchers.join(","),
                    s["endsAt"].as_str().unwrap_or(""),
                    s["createdBy"].as_str().unwrap_or(""),
                    s["comment"].as_str().unwrap_or("")
                );
            }
        }
        SilenceAction::Expire { id } => println!("expired {id}"),
    }
    Ok(Outcome::Ok)
}

/// The arguments of `tocsin replay`.
struct ReplayArgs {
    db: Option<PathBuf>,
    rules: Option<PathBuf>,
    from: String,
    to: String,
    step: Option<PromDuration>,
    warmup: PromDuration,
    config: Option<PathBuf>,
    json: bool,
    compare: Option<PathBuf>,
}

fn replay(args: ReplayArgs) -> Result<Outcome> {
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
    let default_interval = cfg.evaluation.interval.as_millis();
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
                match expand_globs(&cfg.rule_files, &base) {
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

    let path = args.db.unwrap_or_else(|| cfg.storage.path.clone());
    let store = Arc::new(Store::open_read_only(&path)?);
    if let Err(e) = check_range(from, to, store.sample_range()?) {
        eprintln!("error: {}: {e}", path.display());
        return Ok(Outcome::CheckFailed);
    }
    let first_seen: std::collections::HashMap<String, i64> =
        store.targets_first_seen()?.into_iter().collect();
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
    let note_store = store.clone();
    let note = move |l: &tocsin::labels::Labels| note_store.note(l);
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
        external_url: format!("http://{}", cfg.server.listen),
        grace,
        note: &note,
        silences: store
            .stored_silences()?
            .iter()
            .filter_map(|t| tocsin::notify::silence::Silence::from_json(t))
            .collect(),
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
        if args.json {
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
    if args.json {
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
