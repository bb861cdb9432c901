//! `tocsin query`: evaluate PromQL (at one time or over a range) or a Rhai script against a
//! store file, printed as text or as Prometheus's API JSON.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};

use super::{Outcome, load_config};
use tocsin::clock::{Clock, SystemClock};
use tocsin::promql::Value;
use tocsin::store::Store;

/// `tocsin query EXPR` (at one time) or `tocsin query range EXPR`, as promtool's `query instant`
/// and `query range`. (No `instant` subcommand: clap cannot flatten the same arguments into the
/// command and one of its subcommands.)
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct QueryArgs {
    #[command(subcommand)]
    mode: Option<QueryMode>,
    #[command(flatten)]
    instant: InstantArgs,
}

#[derive(Subcommand)]
enum QueryMode {
    /// Evaluate at every step of a time range (PromQL only), as `/api/v1/query_range`.
    Range(RangeArgs),
}

/// What both modes take.
#[derive(Args)]
struct Common {
    /// the expression (an `Option` only because clap fills the command's own arguments even
    /// when a subcommand is used; required either way)
    #[arg(required = true)]
    expr: Option<String>,
    /// store file (default: the configured storage path)
    #[arg(long)]
    db: Option<PathBuf>,
    /// configuration file whose storage path and PromQL semantics to use (default: ./tocsin.yml
    /// or built-in)
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// output: text (one line per series) or json (Prometheus's API answer, for jq)
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Args)]
struct InstantArgs {
    #[command(flatten)]
    common: Common,
    /// EXPR is a Rhai rule script, not PromQL
    #[arg(long)]
    rhai: bool,
    /// evaluation time: unix seconds, RFC 3339, `now` or `-1h` (default: now)
    #[arg(long, allow_hyphen_values = true)]
    at: Option<String>,
}

#[derive(Args)]
struct RangeArgs {
    #[command(flatten)]
    common: Common,
    /// start: unix seconds, RFC 3339, `now` or `-1h` (default: an hour before the end)
    #[arg(long, allow_hyphen_values = true)]
    start: Option<String>,
    /// end, in the same forms (default: now)
    #[arg(long, allow_hyphen_values = true)]
    end: Option<String>,
    /// resolution step, e.g. `15s` (default: the range / 250, at least 1s)
    #[arg(long)]
    step: Option<tocsin::duration::PromDuration>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// How an evaluation is asked for, once the command line is read.
enum Request {
    Instant { t: i64, rhai: bool },
    Range { start: i64, end: i64, step: i64 },
}

pub(crate) fn query(args: QueryArgs) -> Result<Outcome> {
    let now = SystemClock.now_ms();
    let (common, request) = match args.mode {
        None => instant_request(args.instant, now)?,
        Some(QueryMode::Range(r)) => {
            let end = match &r.end {
                Some(s) => tocsin::timefmt::parse_time_at(s, now)?,
                None => now,
            };
            let start = match &r.start {
                Some(s) => tocsin::timefmt::parse_time_at(s, now)?,
                None => end - 3_600_000,
            };
            let step = match r.step {
                Some(d) => d.as_millis(),
                None => ((end - start) / 250 / 1000 * 1000).max(1000),
            };
            (r.common, Request::Range { start, end, step })
        }
    };
    evaluate(common, request)
}

fn instant_request(i: InstantArgs, now: i64) -> Result<(Common, Request)> {
    let t = match &i.at {
        Some(s) => tocsin::timefmt::parse_time_at(s, now)?,
        None => now,
    };
    Ok((i.common, Request::Instant { t, rhai: i.rhai }))
}

fn evaluate(common: Common, request: Request) -> Result<Outcome> {
    let Some(expr) = common.expr.as_deref() else {
        anyhow::bail!("no expression given");
    };
    use tocsin::promql::rhai::{ScriptEngine, ScriptValue};
    use tocsin::promql::{Engine, Evaluator};

    let (cfg, _) = load_config(common.config)?;
    let path = common.db.unwrap_or_else(|| cfg.storage.path.clone());
    let engine_opts = tocsin::promql::EngineOptions {
        compat: cfg.evaluation.compat(),
        ..Default::default()
    };
    // compile before opening the store: a typo fails fast and touches nothing
    enum Compiled {
        PromQL(promql_parser::parser::Expr),
        Rhai(Box<ScriptEngine>, tocsin::promql::rhai::CompiledScript),
    }
    let compiled = match request {
        Request::Instant { rhai: true, .. } => {
            let engine = ScriptEngine::new();
            match engine.compile(expr) {
                Ok(c) => Compiled::Rhai(Box::new(engine), c),
                Err(e) => return failed(common.output, "bad_data", &e.to_string()),
            }
        }
        _ => match tocsin::promql::parse(expr) {
            Ok(p) => Compiled::PromQL(p),
            Err(e) => return failed(common.output, "bad_data", &e.to_string()),
        },
    };
    let store = Arc::new(Store::open_read_only(&path)?);
    let engine = Engine::new(engine_opts);
    let (result, t) = match (&compiled, request) {
        (Compiled::PromQL(e), Request::Instant { t, .. }) => (
            engine
                .instant(store.as_ref(), e, t)
                .map_err(|e| e.to_string()),
            Some(t),
        ),
        (Compiled::PromQL(e), Request::Range { start, end, step }) => (
            engine
                .range(store.as_ref(), e, start, end, step)
                .map_err(|e| e.to_string()),
            None,
        ),
        (Compiled::Rhai(scripts, script), Request::Instant { t, .. }) => {
            let ev = Evaluator::new(engine, store, t);
            let v = scripts
                .run(script, &ev)
                .map(|v| match v {
                    ScriptValue::Vector(s) => Value::Vector(s),
                    ScriptValue::Number(n) => Value::Scalar(n),
                    ScriptValue::Bool(b) => Value::Scalar(if b { 1.0 } else { 0.0 }),
                })
                .map_err(|e| e.to_string());
            (v, Some(t))
        }
        (Compiled::Rhai(..), Request::Range { .. }) => unreachable!("range takes no --rhai"),
    };
    match result {
        Ok(v) => {
            match common.output {
                Output::Text => print!("{v}"),
                Output::Json => println!(
                    "{}",
                    serde_json::json!({
                        "status": "success",
                        "data": tocsin::promql::json::value_json(&v, t),
                    })
                ),
            }
            Ok(Outcome::Ok)
        }
        Err(e) => failed(common.output, "execution", &e),
    }
}

/// Prints a failure (to stderr as text, to stdout in the API's error shape as JSON).
fn failed(output: Output, kind: &str, message: &str) -> Result<Outcome> {
    match output {
        Output::Text => eprintln!("error: {message}"),
        Output::Json => println!(
            "{}",
            serde_json::json!({"status": "error", "errorType": kind, "error": message})
        ),
    }
    Ok(Outcome::CheckFailed)
}
