//! The command line: clap's types, one module per command, and what commands share (loading
//! the configuration, logging). This is the binary's edge: errors are `anyhow` here, typed below.

pub(crate) mod check;
pub(crate) mod import;
pub(crate) mod probe;
pub(crate) mod query;
pub(crate) mod replay;
pub(crate) mod route_test;
pub(crate) mod run;
pub(crate) mod schema;
pub(crate) mod scrape;
pub(crate) mod silence;
pub(crate) mod test;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use tocsin::config::{Config, ConfigError, DEFAULT_CONFIG_FILE, LogFormat};
use tocsin::duration::PromDuration;

#[derive(Parser)]
#[command(name = "tocsin", version = tocsin::LONG_VERSION, about = "scrape, store, alert: one binary")]
pub(crate) struct Cli {
    /// Log format: text or json (overrides the config file and TOCSIN_LOG_FORMAT).
    #[arg(long, global = true)]
    pub(crate) log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the daemon. Without --config, uses ./tocsin.yml if present, else the built-in default
    /// (listen on 127.0.0.1:9477, watch itself, store in ./data/).
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Shadow mode: evaluate, route and record every notification, deliver none (they are
        /// listed as `shadow` at /api/v1/notifications and counted in self-metrics).
        #[arg(long)]
        dry_run: bool,
        /// Listen on a non-loopback address without `server.api_token_env`: anyone who reaches
        /// the port may then create silences and reload. Without this flag the daemon refuses.
        #[arg(long, env = "TOCSIN_ALLOW_OPEN_WRITES")]
        allow_open_writes: bool,
    },
    /// Validate a configuration file and rule files (templates and scripts included); prints
    /// every error with file:line:col. Exit 0 valid, 1 invalid. A directory means its rule files
    /// (`*.yml`, `*.yaml` but not `*_test.yml`); a file with top-level `groups` is a rule file;
    /// another file is the configuration (its `rule_files` are checked too).
    Check {
        /// default: ./tocsin.yml
        paths: Vec<PathBuf>,
    },
    /// Convert alertmanager.yml or prometheus.yml into tocsin's configuration (YAML on stdout).
    ///
    /// Reads an Alertmanager configuration (route, receivers, inhibit_rules, time_intervals,
    /// global SMTP settings) or a Prometheus one (global intervals, scrape_configs with
    /// static_configs, rule_files) and prints tocsin's equivalent on stdout, to save as tocsin.yml
    /// (or append to it). Every field that is not converted exactly is printed on stderr as
    /// `file:line:col: field: note|changed|dropped: reason`. Exit 0: the conversion is exact
    /// (notes only); 1: something changes meaning or was dropped (the output is still printed);
    /// 2: the file cannot be read or parsed, is too large or too deep, or is neither kind.
    Import {
        /// alertmanager.yml or prometheus.yml (recognised by their top-level keys)
        file: PathBuf,
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
    /// Run rule unit tests in promtool's format. Exit 0 all passed, 1 a test failed. With
    /// --watch, rerun the affected ones on every save.
    Test {
        /// test files, or directories (their `*_test.yml` and `*_test.yaml` files)
        files: Vec<PathBuf>,
        /// only test groups whose name matches this regex
        #[arg(long)]
        run: Option<String>,
        /// write a JUnit XML report here
        #[arg(long)]
        junit: Option<PathBuf>,
        /// PromQL semantics where Prometheus 2.x and 3.x differ: 2 or 3 (default: 2, as promtool
        /// 2.x, which wrote most existing rule tests)
        #[arg(long, default_value = "2", value_parser = test::parse_compat)]
        promql_compat: tocsin::promql::Compat,
        /// after the first run, rerun the affected test files whenever a test file or a rule
        /// file they load changes, until Ctrl-C (exit code: the last run's)
        #[arg(long)]
        watch: bool,
    },
    /// Fetch one metrics endpoint and print its samples, or the parse error with its line; a
    /// health endpoint (a JSON answer) prints the samples its health probe would write.
    Scrape {
        url: String,
        /// whole-request timeout
        #[arg(long, default_value = "10s")]
        timeout: PromDuration,
        /// maximum body size in bytes (after decompression)
        #[arg(long, default_value_t = 64 << 20)]
        body_limit: u64,
        /// a health endpoint's JSON field to preview as `health_json` would keep it (repeatable),
        /// e.g. `--field status --field 'checks[name=db].ok'`
        #[arg(long = "field")]
        fields: Vec<String>,
    },
    /// Run one tcp, tls, dns or smtp probe and print the samples it would write, and why it failed.
    Probe(probe::ProbeArgs),
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
    /// Print the JSON Schema (draft-07) of tocsin.yml (`config`), rule files (`rules`) or rule
    /// test files (`tests`), generated from the same doc comments as config-reference, for
    /// editors: yaml-language-server (VS Code's YAML extension) completes and checks with it.
    /// `--out-dir DIR` writes all three as DIR/tocsin-{config,rules,tests}.schema.json.
    Schema {
        /// config, rules or tests
        #[arg(long = "kind", value_name = "KIND")]
        kind_flag: Option<tocsin::config::schema::SchemaKind>,
        /// config, rules or tests
        #[arg(conflicts_with = "kind_flag")]
        kind: Option<tocsin::config::schema::SchemaKind>,
        /// write the three schemas into this directory (created if missing)
        #[arg(long, conflicts_with_all = ["kind", "kind_flag"])]
        out_dir: Option<PathBuf>,
    },
    /// Evaluate a PromQL expression (or, with --rhai, a rule script) against a store file
    /// (read-only: safe beside a running daemon) and print the result: `tocsin query EXPR` at one
    /// time, `tocsin query range EXPR --start -1h` over a range; `-o json` prints Prometheus's API
    /// answer. Exit 1 if it fails.
    Query(query::QueryArgs),
    /// Backtest: evaluate rules over stored history with the daemon's engine, alert tracker and
    /// notification pipeline (a manual clock, nothing sent) and print the timeline of alert
    /// transitions and of the notifications that would have gone out, with totals. The store
    /// is opened read-only: safe beside a running daemon, it sees what the daemon has flushed.
    /// Exit 1 when rules fail to load, the range holds no samples, or --compare finds a
    /// difference; 2 on usage or I/O errors (a missing store).
    Replay(replay::ReplayArgs),
}

#[derive(Subcommand)]
pub(crate) enum SilenceAction {
    /// Silence alerts matching every MATCHER (`alertname="Down"`, `instance=~"db.*"`); prints
    /// the new silence's id. Flags as amtool's.
    Add {
        #[arg(required = true)]
        matchers: Vec<String>,
        /// how long, from the start (ignored when --end is given)
        #[arg(long, short, default_value = "1h")]
        duration: PromDuration,
        /// start: unix seconds, RFC 3339 or `now` (default: now)
        #[arg(long)]
        start: Option<String>,
        /// end: unix seconds or RFC 3339 (default: start + duration)
        #[arg(long)]
        end: Option<String>,
        /// who creates it (default: $USER)
        #[arg(long, short, default_value_t = std::env::var("USER").unwrap_or_else(|_| "tocsin".into()))]
        author: String,
        /// why (no short flag: `-c` is the configuration file)
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// List silences (active and pending; --expired adds expired ones), those whose matchers
    /// satisfy every MATCHER given, as `amtool silence query` filters.
    #[command(visible_alias = "list")]
    Query {
        matchers: Vec<String>,
        /// include expired silences
        #[arg(long)]
        expired: bool,
        /// print only the ids, one per line
        #[arg(long, short)]
        quiet: bool,
        /// output: text, or json (an array of silences, what `silence import` reads)
        #[arg(long, short, value_enum, default_value_t = SilenceOutput::Text)]
        output: SilenceOutput,
    },
    /// End silences now.
    Expire {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Create the silences of a JSON array (`tocsin silence query -o json` or `amtool silence
    /// query -o json` output) from FILE or stdin; expired ones are skipped, each gets a new id.
    Import {
        /// default: stdin
        file: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum SilenceOutput {
    Text,
    Json,
}

/// How a command ended: 0 ok, 1 a check failed, 2 usage or I/O error.
pub(crate) enum Outcome {
    Ok,
    CheckFailed,
}

pub(crate) fn config_reference() -> Result<Outcome> {
    let text = tocsin::config::reference::generate()
        .context("cannot generate the configuration reference")?;
    print!("{text}");
    Ok(Outcome::Ok)
}

pub(crate) fn init_logging(format: LogFormat, level: &str) -> Result<()> {
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
pub(crate) fn load_config(
    explicit: Option<PathBuf>,
) -> Result<(Config, Option<PathBuf>), ConfigError> {
    let path = explicit.or_else(|| {
        let p = PathBuf::from(DEFAULT_CONFIG_FILE);
        p.exists().then_some(p)
    });
    match path {
        Some(p) => Ok((Config::load(&p)?, Some(p))),
        None => Ok((Config::builtin_default(), None)),
    }
}
