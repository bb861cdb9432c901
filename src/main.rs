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
use tocsin::scheduler::{Scheduler, StatusBoard};
use tocsin::selfmetrics::SelfMetrics;
use tocsin::store::{Store, StoreOptions};
use tocsin::textparse::{Entry, Parser as TextParser};

#[derive(Parser)]
#[command(name = "tocsin", version, about = "scrape, store, alert: one binary")]
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
    },
    /// Validate a configuration file; prints every error with file:line:col. Exit 0 valid, 1 invalid.
    Check {
        /// default: ./tocsin.yml
        config: Option<PathBuf>,
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
    Query {
        expr: String,
        /// EXPR is a Rhai rule script, not PromQL
        #[arg(long)]
        rhai: bool,
        /// evaluation time: unix seconds or RFC 3339 (default: now)
        #[arg(long)]
        at: Option<String>,
        /// store file (default: the configured storage path)
        #[arg(long)]
        db: Option<PathBuf>,
        /// configuration file whose storage path to read (default: ./tocsin.yml or built-in)
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
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
        Command::Run { config } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(daemon(config, cli.log_format))?;
            Ok(Outcome::Ok)
        }
        Command::Check { config } => check(config),
        Command::Scrape {
            url,
            timeout,
            body_limit,
        } => scrape(&url, timeout, body_limit),
        Command::Query {
            expr,
            rhai,
            at,
            db,
            config,
        } => query(&expr, rhai, at.as_deref(), db, config),
    }
}

fn init_logging(format: LogFormat, level: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("invalid log level {level:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
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

fn check(config: Option<PathBuf>) -> Result<Outcome> {
    let path = config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE));
    match Config::load(&path) {
        Ok(cfg) => {
            for section in cfg.inactive_sections() {
                println!(
                    "{}: warning: {section} is accepted but not yet acted on",
                    path.display()
                );
            }
            println!("{}: ok ({} targets)", path.display(), cfg.targets.len());
            Ok(Outcome::Ok)
        }
        Err(ConfigError::Read { path, source }) => {
            Err(anyhow::Error::new(source).context(format!("cannot read {}", path.display())))
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(Outcome::CheckFailed)
        }
    }
}

fn scrape(url: &str, timeout: PromDuration, body_limit: u64) -> Result<Outcome> {
    let url = url::Url::parse(url).with_context(|| format!("invalid url {url:?}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = tocsin::scrape::client();
    let resp = rt
        .block_on(tocsin::scrape::fetch(
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

async fn daemon(config: Option<PathBuf>, log_format: Option<LogFormat>) -> Result<()> {
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
    for section in cfg.inactive_sections() {
        tracing::warn!(
            section,
            "configuration section accepted but not yet acted on"
        );
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
        client: tocsin::scrape::client(),
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = scheduler.spawn(targets, cfg.storage.flush_interval.0, shutdown_rx.clone());

    let app = tocsin::server::router(tocsin::server::AppState {
        status,
        metrics,
        clock: clock.clone(),
        started_ms,
        store_path: store_path.display().to_string(),
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
    tracing::info!("shutting down: stopping scrapes and flushing the store");
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
    use tocsin::rhai_api::{ScriptEngine, ScriptValue};

    let t = match at {
        Some(s) => tocsin::timefmt::parse_time(s)?,
        None => SystemClock.now_ms(),
    };
    let path = match db {
        Some(p) => p,
        None => load_config(config)?.0.storage.path,
    };
    // compile before opening the store: a typo fails fast and touches nothing
    enum Compiled {
        PromQL(promql_parser::parser::Expr),
        Rhai(Box<ScriptEngine>, tocsin::rhai_api::CompiledScript),
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
        Compiled::PromQL(e) => Engine::default()
            .instant(store.as_ref(), e, t)
            .map_err(|e| e.to_string()),
        Compiled::Rhai(engine, script) => {
            let ev = Evaluator::new(Engine::default(), store, t);
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
