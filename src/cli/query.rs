//! `tocsin query`: evaluate PromQL or a Rhai script against a store file.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use super::{Outcome, load_config};
use tocsin::clock::{Clock, SystemClock};
use tocsin::store::Store;

pub(crate) fn query(
    expr: &str,
    rhai: bool,
    at: Option<&str>,
    db: Option<PathBuf>,
    config: Option<PathBuf>,
) -> Result<Outcome> {
    use tocsin::promql::rhai::{ScriptEngine, ScriptValue};
    use tocsin::promql::{Engine, Evaluator, Value};

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
