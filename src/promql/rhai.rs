//! The Rhai front end of the query engine: rule conditions written as scripts (`script:`)
//! instead of PromQL (`expr:`).
//!
//! The API is a thin layer over the same vector engine the PromQL front end uses
//! ([`crate::promql`]): selectors and range functions are built as PromQL syntax trees and
//! evaluated by the rule's [`Evaluator`]; operators and aggregations on already-evaluated vectors
//! go through [`binary::apply`] and [`aggregate::aggregate`], so label matching, name dropping and
//! NaN handling are Prometheus's. What a script can call:
//!
//! - `select(sel)`: instant vector; `range(sel, dur)`: range vector; `query(promql)`: any PromQL
//!   (a vector, a number for a scalar, a range vector for a matrix, a string).
//! - `rate`, `increase`, `delta`, `irate`, `idelta`, `deriv`, `changes`, `resets`, and the
//!   `*_over_time` family, each as `f(sel, dur)` or `f(range)`; `quantile_over_time(q, sel, dur)`,
//!   `predict_linear(sel, dur, seconds)`, `histogram_quantile(q, vector)`, `absent(sel)`.
//! - Helpers PromQL lacks: `monotonic_increase(sel, dur)`, `last_sample_age(sel)`,
//!   `ratio_by(num_sel, den_sel, dur, labels)`.
//! - `now()`: the evaluation time in seconds; never the wall clock.
//! - Vector methods: `sum_by(labels)` (and `avg_by`, `min_by`, `max_by`, `count_by`), `sum()`
//!   (and `avg`, `min`, `max`, `count`), `len`, `is_empty`, `samples` (also what `for s in v`
//!   yields: maps `#{labels: #{..}, value: f}`), `labels`, `values`, `filter_label(name, value)`;
//!   `vector(samples)` builds a vector back from such maps.
//! - Operators `+ - * / % ** ^` (`^` is power, as in PromQL) and the filtering comparisons
//!   `> < >= <= == !=` between vectors (one-to-one matching on every label but the name) and
//!   between a vector and a number, either side.
//!
//! Selectors (`sel`) are PromQL series selectors such as `http_requests_total{code=~"5.."}`;
//! durations (`dur`) are Prometheus durations such as `5m` or `1h30m`. Both are parsed into syntax
//! trees, never pasted into query text, so no argument can change the shape of a query.
//!
//! The sandbox is [`ScriptEngine::new`]: operation, call depth, expression depth, string, array,
//! map and variable limits, plus a run-time budget for what the operation count cannot see; no
//! file, network, module or clock access (the standard library is registered without its time
//! package and without `sleep`, `eval` is disabled); `print` and `debug` go to `tracing` at debug
//! level.
//!
//! The rule's [`Evaluator`] reaches the registered functions through a thread-local slot that
//! [`ScriptEngine::run`] fills for the duration of the run: Rhai needs `'static` functions and
//! calls them synchronously on the running thread, so the slot always holds the current run's.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use promql_parser::label::Labels as GroupingLabels;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    Call, Expr, Function, FunctionArgs, LabelModifier, MatrixSelector, NumberLiteral,
    VectorMatchCardinality,
};
use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicBlobPackage, BasicFnPackage, BasicIteratorPackage,
    BasicMapPackage, BasicMathPackage, BasicStringPackage, BitFieldPackage, LogicPackage,
    MoreStringPackage, Package,
};
use rhai::{Array, Dynamic, Engine, EvalAltResult, ImmutableString, Map, Position, Scope};

use crate::duration::PromDuration;
use crate::labels::{Labels, METRIC_NAME};
use crate::promql::binary::{self, Op};
use crate::promql::{Evaluator, MemStorage, QueryError, Sample, Series, Value, aggregate};

/// Most operations one run may perform (every expression node, loop iteration and function call
/// counts one): a few tens of milliseconds of script work. Queries run by the API functions cost
/// one operation each; the query engine has its own sample limit.
pub const MAX_OPERATIONS: u64 = 1_000_000;
/// Deepest nesting of script-defined function calls (recursion depth).
pub const MAX_CALL_LEVELS: usize = 32;
/// Deepest nesting of an expression at the top level of a script, checked when compiling.
pub const MAX_EXPR_DEPTH: usize = 64;
/// Deepest nesting of an expression inside a script-defined function, checked when compiling.
pub const MAX_FUNCTION_EXPR_DEPTH: usize = 32;
/// Longest string a script may build, in characters.
pub const MAX_STRING_SIZE: usize = 64 * 1024;
/// Most elements of an array a script may build or receive (`samples()`, `labels()`, `values()`
/// of a larger vector fail; iterating with `for` and the vector methods have no such limit).
/// Rhai re-measures an array after every change, so building one costs time quadratic in this.
pub const MAX_ARRAY_SIZE: usize = 10_000;
/// Most entries of an object map a script may build.
pub const MAX_MAP_SIZE: usize = 10_000;
/// Most variables in scope at once.
pub const MAX_VARIABLES: usize = 1_000;
/// Most functions one script may define.
pub const MAX_FUNCTIONS: usize = 100;
/// Longest one run may compute, checked every [`TIME_CHECK_EVERY`] operations. The operation
/// limit does not weigh operations by the data they copy (assigning a 10 000-element array is
/// one operation), so a script within it could still spin for minutes; this bounds it. The
/// script never sees this timer, and query time inside one API call is the engine's to limit.
pub const MAX_RUN_TIME: Duration = Duration::from_secs(1);
/// How many operations pass between two checks of [`MAX_RUN_TIME`] (each check reads the
/// monotonic clock once).
pub const TIME_CHECK_EVERY: u64 = 1024;
/// How far back `last_sample_age` looks for a series' newest sample (1 h, in ms). A series silent
/// for longer is not in its result at all: pair it with `absent(sel)` to catch that.
pub const LAST_SAMPLE_LOOKBACK_MS: i64 = 3600 * 1000;

/// The one hardened Rhai engine: built once, shared by every rule (it is `Send + Sync`; each run
/// gets a fresh scope, so runs do not see each other's variables).
pub struct ScriptEngine {
    engine: Engine,
    /// how long one run may compute ([`MAX_RUN_TIME`] unless built with another limit)
    time_limit: Duration,
}

/// A script compiled once at load time; run it at every evaluation with [`ScriptEngine::run`].
#[derive(Clone, Debug)]
pub struct CompiledScript {
    ast: rhai::AST,
}

/// What a rule script evaluated to. [`to_vector`] turns it into alert candidates.
#[derive(Clone, Debug, PartialEq)]
pub enum ScriptValue {
    /// One alert candidate per element.
    Vector(Vec<Sample>),
    /// `true` is one candidate without labels, `false` none.
    Bool(bool),
    /// One candidate without labels, with this value.
    Number(f64),
}

/// Occurs when a script cannot be compiled or one evaluation of it fails. Each error concerns one
/// script; other rules are unaffected. Lines and columns are 1-based within the script text
/// (0 when Rhai does not know the position).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScriptError {
    /// The script is not valid Rhai, or nests deeper than [`MAX_EXPR_DEPTH`]. Reported at load
    /// and by `check`.
    #[error("script syntax error at {line}:{col}: {message}")]
    Compile {
        line: usize,
        col: usize,
        message: String,
    },
    /// The script failed while running: a type error, an unknown function, a bad selector or
    /// duration argument, or a sandbox limit (operations, call depth, data sizes).
    #[error("script failed at {line}:{col}: {message}")]
    Runtime {
        line: usize,
        col: usize,
        message: String,
    },
    /// A query the script ran failed in the query engine (many-to-many matching, a storage
    /// error, an invalid `query(..)` text).
    #[error("query in script failed: {0}")]
    Query(#[from] QueryError),
    /// The script ended with a value that is not a vector, a bool or a number.
    #[error(
        "script returned {type_name}; a rule script must end with a vector, a bool or a number"
    )]
    BadResult { type_name: String },
}

/// An instant vector in a script: what `select`, `rate` and the operators return.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Vector(pub Vec<Sample>);

/// A range vector in a script (`range(sel, dur)`, or `query` of a matrix expression). It keeps
/// the expression it came from, so `rate(r)` and friends evaluate `rate(<expr>)` with Prometheus's
/// extrapolation instead of re-implementing it over the points.
#[derive(Clone, Debug)]
pub struct RangeVector {
    /// The series read, points ascending in time.
    pub series: Vec<Series>,
    /// A range-typed PromQL expression (a matrix selector or a subquery).
    expr: Expr,
}

/// Turns a script's result into alert candidates at evaluation time `t` (ms): a vector as is,
/// `true` and a number as one sample without labels (value 1 / the number), `false` as none.
pub fn to_vector(value: ScriptValue, t: i64) -> Vec<Sample> {
    let one = |v| {
        vec![Sample {
            metric: Labels::default(),
            t,
            v,
        }]
    };
    match value {
        ScriptValue::Vector(samples) => samples,
        ScriptValue::Bool(true) => one(1.0),
        ScriptValue::Bool(false) => Vec::new(),
        ScriptValue::Number(v) => one(v),
    }
}

impl Default for ScriptEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptEngine {
    /// Builds the sandboxed engine: every limit set, the standard library without its time
    /// package and without `sleep`/`exit` (Rhai's core-language package is left out entirely),
    /// `eval` disabled, `print`/`debug` routed to `tracing`, and the query API registered.
    pub fn new() -> Self {
        Self::with_time_limit(MAX_RUN_TIME)
    }

    /// [`ScriptEngine::new`] with another run-time limit than [`MAX_RUN_TIME`].
    pub fn with_time_limit(time_limit: Duration) -> Self {
        let mut engine = Engine::new_raw();
        // the standard package minus BasicTimePackage (`timestamp()` reads the clock) and minus
        // LanguageCorePackage (`sleep` blocks outside the operation limit; `exit`, `tag`,
        // `parse_json`, `get_fn_metadata_list` are not needed by rules)
        engine
            .register_global_module(ArithmeticPackage::new().as_shared_module())
            .register_global_module(BasicStringPackage::new().as_shared_module())
            .register_global_module(BasicIteratorPackage::new().as_shared_module())
            .register_global_module(BasicFnPackage::new().as_shared_module())
            .register_global_module(BitFieldPackage::new().as_shared_module())
            .register_global_module(LogicPackage::new().as_shared_module())
            .register_global_module(BasicMathPackage::new().as_shared_module())
            .register_global_module(BasicArrayPackage::new().as_shared_module())
            .register_global_module(BasicBlobPackage::new().as_shared_module())
            .register_global_module(BasicMapPackage::new().as_shared_module())
            .register_global_module(MoreStringPackage::new().as_shared_module());
        engine
            .set_max_operations(MAX_OPERATIONS)
            .set_max_call_levels(MAX_CALL_LEVELS)
            .set_max_expr_depths(MAX_EXPR_DEPTH, MAX_FUNCTION_EXPR_DEPTH)
            .set_max_string_size(MAX_STRING_SIZE)
            .set_max_array_size(MAX_ARRAY_SIZE)
            .set_max_map_size(MAX_MAP_SIZE)
            .set_max_variables(MAX_VARIABLES)
            .set_max_functions(MAX_FUNCTIONS)
            // a typo in a variable name is a load-time error, not a runtime surprise
            .set_strict_variables(true)
            // Simple never calls registered functions at compile time (Full would run queries
            // without an evaluator)
            .set_optimization_level(rhai::OptimizationLevel::Simple);
        // `eval` compiles text at run time: scripts compile once, at load
        engine.disable_symbol("eval");
        engine.on_print(|text| tracing::debug!(script_output = text, "rule script print"));
        engine.on_debug(|text, _source, pos| {
            tracing::debug!(
                script_output = text,
                line = pos.line().unwrap_or(0),
                "rule script debug"
            )
        });
        engine.on_progress(|operations| {
            if operations % TIME_CHECK_EVERY != 0 {
                return None;
            }
            let late = CURRENT.with(|c| {
                c.borrow()
                    .as_ref()
                    .is_some_and(|run| Instant::now() >= run.deadline)
            });
            late.then(|| Dynamic::from(TimeLimitExceeded))
        });
        register_api(&mut engine);
        ScriptEngine { engine, time_limit }
    }

    /// Compiles a script (once, at load). Syntax errors carry the script's line and column.
    pub fn compile(&self, script: &str) -> Result<CompiledScript, ScriptError> {
        let ast = self.engine.compile(script).map_err(|e| {
            let pos = e.position();
            let message = match e.err_type() {
                rhai::ParseErrorType::ExprTooDeep => format!(
                    "expression nests deeper than the limit of {MAX_EXPR_DEPTH} levels ({MAX_FUNCTION_EXPR_DEPTH} inside functions)"
                ),
                other => lowercase_first(&other.to_string()),
            };
            ScriptError::Compile {
                line: pos.line().unwrap_or(0),
                col: pos.position().unwrap_or(0),
                message,
            }
        })?;
        Ok(CompiledScript { ast })
    }

    /// Runs a compiled script with a fresh scope against `ev`, whose evaluation time is the only
    /// time the script sees.
    ///
    /// The evaluator reaches the registered API functions through a thread-local slot set for
    /// the duration of this call (Rhai's registered functions must be `'static`, and Rhai runs
    /// them synchronously on the calling thread, so the slot is always the current run's; the
    /// previous value is restored on return or panic, so nested runs are safe too).
    pub fn run(&self, script: &CompiledScript, ev: &Evaluator) -> Result<ScriptValue, ScriptError> {
        let _current = CurrentRun::enter(Run {
            evaluator: ev.clone(),
            deadline: Instant::now() + self.time_limit,
        });
        let mut scope = Scope::new();
        let result: Dynamic = self
            .engine
            .eval_ast_with_scope(&mut scope, &script.ast)
            .map_err(|e| runtime_error(*e, self.time_limit))?;
        self.script_value(result)
    }

    fn script_value(&self, value: Dynamic) -> Result<ScriptValue, ScriptError> {
        if value.is::<Vector>() {
            return Ok(ScriptValue::Vector(value.cast::<Vector>().0));
        }
        if let Ok(b) = value.as_bool() {
            return Ok(ScriptValue::Bool(b));
        }
        if let Ok(v) = value.as_float() {
            return Ok(ScriptValue::Number(v));
        }
        if let Ok(v) = value.as_int() {
            return Ok(ScriptValue::Number(v as f64));
        }
        let type_name = match self.engine.map_type_name(value.type_name()) {
            "()" => "nothing (the last statement ends with `;` or is not an expression)".into(),
            name => format!("a value of type {name}"),
        };
        Err(ScriptError::BadResult { type_name })
    }
}

impl Vector {
    fn from_value(v: Value) -> Result<Self, Box<EvalAltResult>> {
        match v {
            Value::Vector(samples) => Ok(Vector(samples)),
            other => Err(script_error(format!(
                "expected an instant vector, got a {}",
                other.type_name()
            ))),
        }
    }
}

impl fmt::Display for Vector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", s.metric, crate::promql::format_float(s.v))?;
        }
        f.write_str("]")
    }
}

impl IntoIterator for Vector {
    type Item = Dynamic;
    type IntoIter = std::vec::IntoIter<Dynamic>;

    /// What `for s in vector` yields: one `#{labels: #{..}, value: f}` map per sample.
    fn into_iter(self) -> Self::IntoIter {
        self.0
            .iter()
            .map(sample_map)
            .collect::<Vec<_>>()
            .into_iter()
    }
}

impl RangeVector {
    /// The range-typed PromQL expression the series were read with.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }
}

// ---------------------------------------------------------------------------------------------
// The current run

/// What the registered functions and the progress callback need from the run in progress.
struct Run {
    evaluator: Evaluator,
    /// when the run has used up its [`ScriptEngine::with_time_limit`]
    deadline: Instant,
}

thread_local! {
    /// The run in progress on this thread (see [`ScriptEngine::run`]).
    static CURRENT: RefCell<Option<Run>> = const { RefCell::new(None) };
}

/// Sets [`CURRENT`] for its lifetime and restores the previous value when dropped.
struct CurrentRun {
    previous: Option<Run>,
}

impl CurrentRun {
    fn enter(run: Run) -> Self {
        let previous = CURRENT.with(|c| c.replace(Some(run)));
        CurrentRun { previous }
    }
}

impl Drop for CurrentRun {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// The token the progress callback stops a run with when its time is up.
#[derive(Clone, Copy, Debug)]
struct TimeLimitExceeded;

/// The current run's evaluator (a cheap clone: options and an `Arc` of the storage).
fn evaluator() -> Result<Evaluator, Box<EvalAltResult>> {
    CURRENT
        .with(|c| c.borrow().as_ref().map(|run| run.evaluator.clone()))
        .ok_or_else(|| script_error("query functions are only available while a rule evaluates"))
}

fn eval(expr: &Expr) -> Result<Value, Box<EvalAltResult>> {
    evaluator()?.eval(expr).map_err(query_error)
}

fn eval_vector(expr: &Expr) -> Result<Vector, Box<EvalAltResult>> {
    Vector::from_value(eval(expr)?)
}

// ---------------------------------------------------------------------------------------------
// Registration

type Fallible<T> = Result<T, Box<EvalAltResult>>;

/// Range functions taking one range vector, registered as `f(sel, dur)` and `f(range)`.
const RANGE_FUNCTIONS: &[&str] = &[
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "deriv",
    "changes",
    "resets",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "present_over_time",
    "absent_over_time",
];

/// Aggregations offered as `v.<op>_by(labels)` and `v.<op>()`.
const AGGREGATIONS: &[&str] = &["sum", "avg", "min", "max", "count"];

/// Operators between vectors and numbers: Rhai spelling, engine operator.
const OPERATORS: &[(&str, &str)] = &[
    ("+", "+"),
    ("-", "-"),
    ("*", "*"),
    ("/", "/"),
    ("%", "%"),
    ("**", "^"),
    ("^", "^"),
    (">", ">"),
    ("<", "<"),
    (">=", ">="),
    ("<=", "<="),
    ("==", "=="),
    ("!=", "!="),
];

fn register_api(engine: &mut Engine) {
    engine
        .register_type_with_name::<Vector>("Vector")
        .register_type_with_name::<RangeVector>("RangeVector")
        .register_iterator::<Vector>();

    engine.register_fn("now", || -> Fallible<f64> {
        Ok(evaluator()?.time() as f64 / 1000.0)
    });
    engine.register_fn("select", |sel: &str| -> Fallible<Vector> {
        eval_vector(&Expr::VectorSelector(selector(sel)?))
    });
    engine.register_fn("range", |sel: &str, dur: &str| -> Fallible<RangeVector> {
        let expr = range_expr(sel, dur)?;
        eval_range(expr)
    });
    engine.register_fn("query", |promql: &str| -> Fallible<Dynamic> {
        let expr = crate::promql::parse(promql).map_err(query_error)?;
        Ok(match eval(&expr)? {
            Value::Vector(v) => Dynamic::from(Vector(v)),
            Value::Scalar(v) => Dynamic::from_float(v),
            Value::Matrix(series) => Dynamic::from(RangeVector { series, expr }),
            Value::String(s) => Dynamic::from(s),
        })
    });
    engine.register_fn("absent", |sel: &str| -> Fallible<Vector> {
        eval_vector(&call("absent", vec![Expr::VectorSelector(selector(sel)?)]))
    });

    for &name in RANGE_FUNCTIONS {
        engine.register_fn(name, move |sel: &str, dur: &str| -> Fallible<Vector> {
            eval_vector(&call(name, vec![range_expr(sel, dur)?]))
        });
        engine.register_fn(name, move |r: &mut RangeVector| -> Fallible<Vector> {
            eval_vector(&call(name, vec![r.expr.clone()]))
        });
    }
    engine.register_fn(
        "quantile_over_time",
        |q: Dynamic, sel: &str, dur: &str| -> Fallible<Vector> {
            let q = number_literal(&q, "quantile")?;
            eval_vector(&call("quantile_over_time", vec![q, range_expr(sel, dur)?]))
        },
    );
    engine.register_fn(
        "quantile_over_time",
        |q: Dynamic, r: RangeVector| -> Fallible<Vector> {
            let q = number_literal(&q, "quantile")?;
            eval_vector(&call("quantile_over_time", vec![q, r.expr]))
        },
    );
    engine.register_fn(
        "predict_linear",
        |sel: &str, dur: &str, seconds: Dynamic| -> Fallible<Vector> {
            let s = number_literal(&seconds, "prediction time")?;
            eval_vector(&call("predict_linear", vec![range_expr(sel, dur)?, s]))
        },
    );
    engine.register_fn(
        "predict_linear",
        |r: &mut RangeVector, seconds: Dynamic| -> Fallible<Vector> {
            let s = number_literal(&seconds, "prediction time")?;
            eval_vector(&call("predict_linear", vec![r.expr.clone(), s]))
        },
    );
    engine.register_fn(
        "histogram_quantile",
        |q: Dynamic, buckets: Vector| -> Fallible<Vector> {
            histogram_quantile_of(number(&q, "quantile")?, buckets)
        },
    );
    engine.register_fn(
        "histogram_quantile",
        |q: Dynamic, promql: &str| -> Fallible<Vector> {
            let q = number_literal(&q, "quantile")?;
            let inner = crate::promql::parse(promql).map_err(query_error)?;
            eval_vector(&call("histogram_quantile", vec![q, inner]))
        },
    );

    engine.register_fn(
        "monotonic_increase",
        |sel: &str, dur: &str| -> Fallible<Vector> {
            let r = eval_range(range_expr(sel, dur)?)?;
            monotonic_increase(&r.series)
        },
    );
    engine.register_fn(
        "monotonic_increase",
        |r: &mut RangeVector| -> Fallible<Vector> { monotonic_increase(&r.series) },
    );
    engine.register_fn("last_sample_age", |sel: &str| -> Fallible<Vector> {
        last_sample_age(sel)
    });
    engine.register_fn(
        "ratio_by",
        |num: &str, den: &str, dur: &str, by: Array| -> Fallible<Vector> {
            ratio_by(num, den, dur, &by)
        },
    );

    // vector methods
    engine.register_fn("len", |v: &mut Vector| v.0.len() as rhai::INT);
    engine.register_fn("is_empty", |v: &mut Vector| v.0.is_empty());
    engine.register_fn("samples", |v: &mut Vector| -> Array {
        v.0.iter().map(sample_map).collect()
    });
    engine.register_fn("labels", |v: &mut Vector| -> Array {
        v.0.iter()
            .map(|s| Dynamic::from_map(labels_map(&s.metric)))
            .collect()
    });
    engine.register_fn("values", |v: &mut Vector| -> Array {
        v.0.iter().map(|s| Dynamic::from_float(s.v)).collect()
    });
    engine.register_fn(
        "filter_label",
        |v: &mut Vector, name: &str, value: &str| -> Vector {
            Vector(
                v.0.iter()
                    .filter(|s| s.metric.get(name).unwrap_or("") == value)
                    .cloned()
                    .collect(),
            )
        },
    );
    engine.register_fn("vector", |samples: Array| -> Fallible<Vector> {
        vector_from_maps(samples)
    });
    engine.register_fn("to_string", |v: &mut Vector| v.to_string());
    engine.register_fn("to_debug", |v: &mut Vector| format!("Vector{v}"));
    engine.register_fn("len", |r: &mut RangeVector| r.series.len() as rhai::INT);
    engine.register_fn("is_empty", |r: &mut RangeVector| r.series.is_empty());
    engine.register_fn("series", |r: &mut RangeVector| -> Array {
        r.series.iter().map(series_map).collect()
    });

    for &op in AGGREGATIONS {
        engine.register_fn(
            format!("{op}_by"),
            move |v: &mut Vector, by: Array| -> Fallible<Vector> {
                let grouping = LabelModifier::Include(grouping_labels(&by)?);
                aggregate_vector(op, v, Some(&grouping))
            },
        );
        engine.register_fn(op, move |v: &mut Vector| -> Fallible<Vector> {
            aggregate_vector(op, v, None)
        });
    }

    for &(rhai_op, promql_op) in OPERATORS {
        let op = Op::parse(promql_op).expect("every operator in OPERATORS is a PromQL operator");
        engine.register_fn(rhai_op, move |l: Vector, r: Vector| {
            apply_op(op, Value::Vector(l.0), Value::Vector(r.0))
        });
        engine.register_fn(rhai_op, move |l: Vector, r: f64| {
            apply_op(op, Value::Vector(l.0), Value::Scalar(r))
        });
        engine.register_fn(rhai_op, move |l: Vector, r: rhai::INT| {
            apply_op(op, Value::Vector(l.0), Value::Scalar(r as f64))
        });
        engine.register_fn(rhai_op, move |l: f64, r: Vector| {
            apply_op(op, Value::Scalar(l), Value::Vector(r.0))
        });
        engine.register_fn(rhai_op, move |l: rhai::INT, r: Vector| {
            apply_op(op, Value::Scalar(l as f64), Value::Vector(r.0))
        });
    }
    engine.register_fn("-", |v: Vector| -> Fallible<Vector> {
        apply_op(Op::Mul, Value::Vector(v.0), Value::Scalar(-1.0))
    });
}

// ---------------------------------------------------------------------------------------------
// Building and running queries

/// Parses a series selector (`name{label="value"}`, `offset` and `@` allowed).
fn selector(sel: &str) -> Fallible<promql_parser::parser::VectorSelector> {
    match crate::promql::parse(sel) {
        Ok(Expr::VectorSelector(vs)) => Ok(vs),
        Ok(_) => Err(script_error(format!(
            "{sel:?} is not a series selector (write it like http_requests_total{{code=~\"5..\"}}; use query() for other PromQL)"
        ))),
        Err(e) => Err(script_error(format!("invalid series selector: {e}"))),
    }
}

/// Parses a range duration (positive, Prometheus notation).
fn duration(dur: &str) -> Fallible<std::time::Duration> {
    let d = PromDuration::parse(dur).map_err(|e| script_error(e.to_string()))?;
    if d.0.is_zero() {
        return Err(script_error(format!(
            "range {dur:?} must be longer than zero"
        )));
    }
    Ok(d.0)
}

/// `sel[dur]` as a syntax tree.
fn range_expr(sel: &str, dur: &str) -> Fallible<Expr> {
    Ok(Expr::MatrixSelector(MatrixSelector {
        vs: selector(sel)?,
        range: duration(dur)?,
    }))
}

/// A call of a PromQL function as a syntax tree (the engine dispatches on the name).
fn call(name: &'static str, args: Vec<Expr>) -> Expr {
    let arg_types = args.iter().map(Expr::value_type).collect();
    let mut fargs = FunctionArgs::empty_args();
    for a in args {
        fargs = fargs.append_args(a);
    }
    Expr::Call(Call {
        func: Function::new(name, arg_types, 0, ValueType::Vector, false),
        args: fargs,
    })
}

fn eval_range(expr: Expr) -> Fallible<RangeVector> {
    match eval(&expr)? {
        Value::Matrix(series) => Ok(RangeVector { series, expr }),
        other => Err(script_error(format!(
            "expected a range vector, got a {}",
            other.type_name()
        ))),
    }
}

/// `histogram_quantile` over an already-evaluated vector: the buckets are put in a scratch
/// in-memory storage at the evaluation time and the engine's own `histogram_quantile` reads them
/// back, so the bucket interpolation is the engine's, not a second implementation.
fn histogram_quantile_of(q: f64, buckets: Vector) -> Fallible<Vector> {
    let ev = evaluator()?;
    let t = ev.time();
    let mut scratch = MemStorage::new();
    for s in &buckets.0 {
        scratch.add(&s.metric, t, s.v);
    }
    let every_bucket = crate::promql::parse(r#"{le!=""}"#).map_err(query_error)?;
    let expr = call(
        "histogram_quantile",
        vec![Expr::NumberLiteral(NumberLiteral::new(q)), every_bucket],
    );
    let scratch_ev = Evaluator::new(ev.engine().clone(), Arc::new(scratch), t);
    Vector::from_value(scratch_ev.eval(&expr).map_err(query_error)?)
}

fn aggregate_vector(
    op: &str,
    v: &mut Vector,
    grouping: Option<&LabelModifier>,
) -> Fallible<Vector> {
    let ev = evaluator()?;
    let (t, compat) = (ev.time(), ev.engine().options().compat);
    let out =
        aggregate::aggregate(op, None, v.0.clone(), grouping, t, compat).map_err(query_error)?;
    Vector::from_value(out)
}

fn apply_op(op: Op, lhs: Value, rhs: Value) -> Fallible<Vector> {
    let t = evaluator()?.time();
    let out = binary::apply(
        op,
        lhs,
        rhs,
        &VectorMatchCardinality::OneToOne,
        None,
        false,
        t,
    )
    .map_err(query_error)?;
    Vector::from_value(out)
}

/// Series that never decreased within the window and grew overall; value = last - first, name
/// dropped. A series younger than the window is judged on the samples it has (at least two).
fn monotonic_increase(series: &[Series]) -> Fallible<Vector> {
    let t = evaluator()?.time();
    let out: Vec<Sample> = series
        .iter()
        .filter_map(|s| {
            let (&(_, first), &(_, last)) = (s.points.first()?, s.points.last()?);
            let never_fell = s.points.windows(2).all(|w| w[1].1 >= w[0].1);
            (s.points.len() >= 2 && never_fell && last > first).then(|| Sample {
                metric: without_name(&s.metric),
                t,
                v: last - first,
            })
        })
        .collect();
    unique(out)
}

/// Per series, seconds from its newest sample in the last [`LAST_SAMPLE_LOOKBACK_MS`] to the
/// evaluation time; name dropped.
fn last_sample_age(sel: &str) -> Fallible<Vector> {
    let t = evaluator()?.time();
    let expr = Expr::MatrixSelector(MatrixSelector {
        vs: selector(sel)?,
        range: std::time::Duration::from_millis(LAST_SAMPLE_LOOKBACK_MS as u64),
    });
    let r = eval_range(expr)?;
    let out: Vec<Sample> = r
        .series
        .iter()
        .filter_map(|s| {
            let &(last_t, _) = s.points.last()?;
            Some(Sample {
                metric: without_name(&s.metric),
                t,
                v: (t - last_t) as f64 / 1000.0,
            })
        })
        .collect();
    unique(out)
}

/// `sum by (labels) (increase(num[dur])) / sum by (labels) (increase(den[dur]))`, leaving out
/// groups whose denominator is zero or missing.
fn ratio_by(num: &str, den: &str, dur: &str, by: &Array) -> Fallible<Vector> {
    let ev = evaluator()?;
    let (t, compat) = (ev.time(), ev.engine().options().compat);
    let grouping = LabelModifier::Include(grouping_labels(by)?);
    let summed = |sel: &str| -> Fallible<Vec<Sample>> {
        let increase = eval_vector(&call("increase", vec![range_expr(sel, dur)?]))?;
        let sum = aggregate::aggregate("sum", None, increase.0, Some(&grouping), t, compat)
            .map_err(query_error)?;
        Ok(Vector::from_value(sum)?.0)
    };
    let numerators = summed(num)?;
    let denominators: BTreeMap<Labels, f64> =
        summed(den)?.into_iter().map(|s| (s.metric, s.v)).collect();
    Ok(Vector(
        numerators
            .into_iter()
            .filter_map(|s| {
                let d = *denominators.get(&s.metric)?;
                (d != 0.0).then(|| Sample { v: s.v / d, ..s })
            })
            .collect(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Conversions between engine values and Rhai values

fn labels_map(l: &Labels) -> Map {
    l.iter()
        .map(|(k, v)| (k.into(), Dynamic::from(ImmutableString::from(v))))
        .collect()
}

fn sample_map(s: &Sample) -> Dynamic {
    let mut m = Map::new();
    m.insert("labels".into(), Dynamic::from_map(labels_map(&s.metric)));
    m.insert("value".into(), Dynamic::from_float(s.v));
    Dynamic::from_map(m)
}

fn series_map(s: &Series) -> Dynamic {
    let points: Array = s
        .points
        .iter()
        .map(|&(t, v)| {
            Dynamic::from_array(vec![
                Dynamic::from_float(t as f64 / 1000.0),
                Dynamic::from_float(v),
            ])
        })
        .collect();
    let mut m = Map::new();
    m.insert("labels".into(), Dynamic::from_map(labels_map(&s.metric)));
    m.insert("points".into(), Dynamic::from_array(points));
    Dynamic::from_map(m)
}

/// `vector([#{labels: #{..}, value: f}, ..])`: the inverse of `samples()`.
fn vector_from_maps(samples: Array) -> Fallible<Vector> {
    let t = evaluator()?.time();
    let mut out = Vec::with_capacity(samples.len());
    for (i, item) in samples.into_iter().enumerate() {
        let bad = |what: &str| script_error(format!("vector(): element {i} {what}"));
        let map = item
            .try_cast::<Map>()
            .ok_or_else(|| bad("is not a map like #{labels: #{job: \"api\"}, value: 1.0}"))?;
        let value = map.get("value").ok_or_else(|| bad("has no value"))?;
        let v = number(value, "value").map_err(|_| bad("has a value that is not a number"))?;
        let labels = match map.get("labels") {
            None => Labels::default(),
            Some(l) => {
                let l = l
                    .read_lock::<Map>()
                    .ok_or_else(|| bad("has labels that are not a map"))?;
                let mut pairs = Vec::with_capacity(l.len());
                for (k, v) in l.iter() {
                    let v = v
                        .read_lock::<ImmutableString>()
                        .ok_or_else(|| bad(&format!("has a label {k} that is not a string")))?;
                    pairs.push((k.to_string(), v.to_string()));
                }
                Labels::from_pairs(pairs)
            }
        };
        out.push(Sample {
            metric: labels,
            t,
            v,
        });
    }
    unique(out)
}

fn grouping_labels(by: &Array) -> Fallible<GroupingLabels> {
    let mut names = Vec::with_capacity(by.len());
    for l in by {
        let name = l.read_lock::<ImmutableString>().ok_or_else(|| {
            script_error(format!(
                "label names must be strings, like [\"job\", \"instance\"], got a {}",
                l.type_name()
            ))
        })?;
        names.push(name.to_string());
    }
    Ok(GroupingLabels::new(
        names.iter().map(String::as_str).collect(),
    ))
}

/// A number argument (an integer or a float).
fn number(d: &Dynamic, what: &str) -> Fallible<f64> {
    if let Ok(v) = d.as_float() {
        return Ok(v);
    }
    if let Ok(v) = d.as_int() {
        return Ok(v as f64);
    }
    Err(script_error(format!(
        "{what} must be a number, got a {}",
        d.type_name()
    )))
}

fn number_literal(d: &Dynamic, what: &str) -> Fallible<Expr> {
    Ok(Expr::NumberLiteral(NumberLiteral::new(number(d, what)?)))
}

fn without_name(l: &Labels) -> Labels {
    if l.metric_name().is_none() {
        return l.clone();
    }
    Labels::from_pairs(l.iter().filter(|(k, _)| *k != METRIC_NAME))
}

/// Fails as the engine does when two samples share a label set (after names were dropped).
fn unique(samples: Vec<Sample>) -> Fallible<Vector> {
    let mut seen = HashSet::with_capacity(samples.len());
    for s in &samples {
        if !seen.insert(&s.metric) {
            return Err(query_error(QueryError::Eval(
                "vector cannot contain metrics with the same labelset".into(),
            )));
        }
    }
    Ok(Vector(samples))
}

// ---------------------------------------------------------------------------------------------
// Errors

/// A runtime error with a message (Rhai adds the position of the call).
fn script_error(message: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(message.into()),
        Position::NONE,
    ))
}

/// A query engine error, carried through Rhai unchanged so [`ScriptEngine::run`] can return it
/// as [`ScriptError::Query`].
fn query_error(e: QueryError) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(e),
        Position::NONE,
    ))
}

fn runtime_error(err: EvalAltResult, time_limit: Duration) -> ScriptError {
    // a failure inside a script-defined function arrives wrapped once per call level; the
    // innermost error says what went wrong and where
    let mut err = err;
    let mut pos = err.position();
    let mut functions = Vec::new();
    while let EvalAltResult::ErrorInFunctionCall(name, _, inner, _) = err {
        functions.push(name);
        err = *inner;
        if !err.position().is_none() {
            pos = err.position();
        }
    }
    let mut message = match err {
        EvalAltResult::ErrorRuntime(d, _) if d.is::<QueryError>() => {
            return ScriptError::Query(d.cast::<QueryError>());
        }
        EvalAltResult::ErrorRuntime(d, _) if d.is_string() => d.to_string(),
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "script exceeded the operation limit of {MAX_OPERATIONS} operations (an endless loop?)"
        ),
        EvalAltResult::ErrorStackOverflow(_) => format!(
            "script exceeded the call depth limit of {MAX_CALL_LEVELS} nested function calls (endless recursion?)"
        ),
        EvalAltResult::ErrorTerminated(token, _) if token.is::<TimeLimitExceeded>() => format!(
            "script exceeded the time limit of {} ms (a loop copying large values?)",
            time_limit.as_millis()
        ),
        EvalAltResult::ErrorTooManyVariables(_) => {
            format!("script exceeded the limit of {MAX_VARIABLES} variables")
        }
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            let what = what.to_lowercase();
            if what.contains("array") {
                format!("array exceeds the size limit of {MAX_ARRAY_SIZE} elements")
            } else if what.contains("string") {
                format!("string exceeds the size limit of {MAX_STRING_SIZE} characters")
            } else if what.contains("map") {
                format!("object map exceeds the size limit of {MAX_MAP_SIZE} entries")
            } else {
                format!("{what} exceeds its size limit")
            }
        }
        mut other => {
            // the position goes in its own fields, not the message
            let _ = other.take_position();
            lowercase_first(&other.to_string())
        }
    };
    if !functions.is_empty() {
        functions.reverse();
        message.push_str(&format!(
            " (in function {})",
            functions.join(", called from ")
        ));
    }
    ScriptError::Runtime {
        line: pos.line().unwrap_or(0),
        col: pos.position().unwrap_or(0),
        message,
    }
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::Engine;

    const T0: i64 = 1_700_000_000_000;
    /// The evaluation time of every test: 10 minutes after the first sample.
    const NOW: i64 = T0 + 600_000;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    /// Samples every 15 s from T0 to NOW:
    /// - `http_requests_total` {code=200} +10/s and {code=500} +1/s (job=api)
    /// - `queue_depth` {queue=growing} +1 each step; {queue=dipped} the same but one step down;
    ///   {queue=flat} constant
    /// - `temperature` {room=lab} cycling 20, 21, 22, 23
    /// - `request_duration_seconds_bucket` le=0.1/1/+Inf: 50, 90, 100 per second
    /// - `heartbeat` {job=cron}: one sample 10 minutes before NOW
    fn storage() -> MemStorage {
        let mut m = MemStorage::new();
        let ok = labels(&[
            ("__name__", "http_requests_total"),
            ("code", "200"),
            ("job", "api"),
        ]);
        let err = labels(&[
            ("__name__", "http_requests_total"),
            ("code", "500"),
            ("job", "api"),
        ]);
        let q = |name| labels(&[("__name__", "queue_depth"), ("queue", name)]);
        let temp = labels(&[("__name__", "temperature"), ("room", "lab")]);
        let bucket = |le| labels(&[("__name__", "request_duration_seconds_bucket"), ("le", le)]);
        for i in 0..=40 {
            let t = T0 + i * 15_000;
            let f = i as f64;
            m.add(&ok, t, 150.0 * f);
            m.add(&err, t, 15.0 * f);
            m.add(&q("growing"), t, f);
            m.add(&q("dipped"), t, if i == 30 { f - 2.0 } else { f });
            m.add(&q("flat"), t, 5.0);
            m.add(&temp, t, 20.0 + (i % 4) as f64);
            m.add(&bucket("0.1"), t, 750.0 * f);
            m.add(&bucket("1"), t, 1350.0 * f);
            m.add(&bucket("+Inf"), t, 1500.0 * f);
        }
        m.add(
            &labels(&[("__name__", "heartbeat"), ("job", "cron")]),
            T0,
            1.0,
        );
        m
    }

    fn evaluator() -> Evaluator {
        Evaluator::new(Engine::default(), Arc::new(storage()), NOW)
    }

    fn run(script: &str) -> Result<ScriptValue, ScriptError> {
        let engine = ScriptEngine::new();
        let compiled = engine.compile(script)?;
        engine.run(&compiled, &evaluator())
    }

    /// The script's vector as sorted (labels, value) pairs.
    fn vector(script: &str) -> Vec<(String, f64)> {
        match run(script) {
            Ok(ScriptValue::Vector(v)) => sorted(v),
            other => panic!("{script}: expected a vector, got {other:?}"),
        }
    }

    fn promql(expr: &str) -> Vec<(String, f64)> {
        match evaluator().query(expr).unwrap() {
            Value::Vector(v) => sorted(v),
            other => panic!("{expr}: expected a vector, got {other:?}"),
        }
    }

    fn sorted(mut v: Vec<Sample>) -> Vec<(String, f64)> {
        v.sort_by(|a, b| a.metric.cmp(&b.metric));
        v.into_iter().map(|s| (s.metric.to_string(), s.v)).collect()
    }

    fn runtime_message(script: &str) -> String {
        match run(script) {
            Err(ScriptError::Runtime { message, .. }) => message,
            other => panic!("{script}: expected a runtime error, got {other:?}"),
        }
    }

    #[test]
    fn script_functions_agree_with_promql() {
        // (script, the PromQL it stands for)
        let cases = [
            (r#"select("http_requests_total")"#, "http_requests_total"),
            (
                r#"select("http_requests_total{code=~\"5..\"}")"#,
                r#"http_requests_total{code=~"5.."}"#,
            ),
            (
                r#"select("http_requests_total offset 5m")"#,
                "http_requests_total offset 5m",
            ),
            (
                r#"rate("http_requests_total", "5m")"#,
                "rate(http_requests_total[5m])",
            ),
            // the range form re-runs the function over the same selector and window
            (
                r#"rate(range("http_requests_total", "5m"))"#,
                "rate(http_requests_total[5m])",
            ),
            (
                r#"range("http_requests_total", "5m").rate()"#,
                "rate(http_requests_total[5m])",
            ),
            (
                r#"increase("http_requests_total", "1h")"#,
                "increase(http_requests_total[1h])",
            ),
            (r#"delta("queue_depth", "5m")"#, "delta(queue_depth[5m])"),
            (
                r#"irate("http_requests_total", "1m")"#,
                "irate(http_requests_total[1m])",
            ),
            (r#"idelta("queue_depth", "1m")"#, "idelta(queue_depth[1m])"),
            (r#"deriv("queue_depth", "5m")"#, "deriv(queue_depth[5m])"),
            (
                r#"changes("temperature", "5m")"#,
                "changes(temperature[5m])",
            ),
            (
                r#"resets("queue_depth", "10m")"#,
                "resets(queue_depth[10m])",
            ),
            (
                r#"avg_over_time("temperature", "5m")"#,
                "avg_over_time(temperature[5m])",
            ),
            (
                r#"min_over_time("temperature", "5m")"#,
                "min_over_time(temperature[5m])",
            ),
            (
                r#"max_over_time("temperature", "5m")"#,
                "max_over_time(temperature[5m])",
            ),
            (
                r#"sum_over_time("temperature", "5m")"#,
                "sum_over_time(temperature[5m])",
            ),
            (
                r#"count_over_time("temperature", "5m")"#,
                "count_over_time(temperature[5m])",
            ),
            (
                r#"last_over_time("temperature", "5m")"#,
                "last_over_time(temperature[5m])",
            ),
            (
                r#"stddev_over_time("temperature", "5m")"#,
                "stddev_over_time(temperature[5m])",
            ),
            (
                r#"stdvar_over_time("temperature", "5m")"#,
                "stdvar_over_time(temperature[5m])",
            ),
            (
                r#"present_over_time("temperature", "5m")"#,
                "present_over_time(temperature[5m])",
            ),
            (
                r#"absent_over_time("nothing", "5m")"#,
                "absent_over_time(nothing[5m])",
            ),
            (
                r#"quantile_over_time(0.9, "temperature", "5m")"#,
                "quantile_over_time(0.9, temperature[5m])",
            ),
            // integer literals are numbers too
            (
                r#"quantile_over_time(1, range("temperature", "5m"))"#,
                "quantile_over_time(1, temperature[5m])",
            ),
            (
                r#"predict_linear("queue_depth{queue=\"growing\"}", "5m", 3600)"#,
                r#"predict_linear(queue_depth{queue="growing"}[5m], 3600)"#,
            ),
            (
                r#"histogram_quantile(0.9, rate("request_duration_seconds_bucket", "5m"))"#,
                "histogram_quantile(0.9, rate(request_duration_seconds_bucket[5m]))",
            ),
            (
                r#"histogram_quantile(0.5, "sum by (le) (rate(request_duration_seconds_bucket[5m]))")"#,
                "histogram_quantile(0.5, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
            ),
            (
                r#"absent("nothing{job=\"x\"}")"#,
                r#"absent(nothing{job="x"})"#,
            ),
            (
                r#"absent("http_requests_total")"#,
                "absent(http_requests_total)",
            ),
            (
                r#"query("sum by (job) (rate(http_requests_total[5m]))")"#,
                "sum by (job) (rate(http_requests_total[5m]))",
            ),
            // aggregations
            (
                r#"rate("http_requests_total", "5m").sum_by(["job"])"#,
                "sum by (job) (rate(http_requests_total[5m]))",
            ),
            (
                r#"select("queue_depth").avg_by(["queue"])"#,
                "avg by (queue) (queue_depth)",
            ),
            (
                r#"select("queue_depth").max_by([])"#,
                "max by () (queue_depth)",
            ),
            (r#"select("queue_depth").min()"#, "min(queue_depth)"),
            (
                r#"select("http_requests_total").count_by(["job", "code"])"#,
                "count by (job, code) (http_requests_total)",
            ),
            (
                r#"select("http_requests_total").sum()"#,
                "sum(http_requests_total)",
            ),
            // operators: vector-vector matching on all labels but the name, both scalar sides
            (
                r#"rate("http_requests_total{code=\"500\"}", "5m").sum_by(["job"]) / rate("http_requests_total", "5m").sum_by(["job"])"#,
                r#"sum by (job) (rate(http_requests_total{code="500"}[5m])) / sum by (job) (rate(http_requests_total[5m]))"#,
            ),
            (r#"select("queue_depth") * 2"#, "queue_depth * 2"),
            (r#"select("queue_depth") * 2.5"#, "queue_depth * 2.5"),
            (r#"100 - select("queue_depth")"#, "100 - queue_depth"),
            (r#"1.5 + select("queue_depth")"#, "1.5 + queue_depth"),
            (r#"select("queue_depth") % 3"#, "queue_depth % 3"),
            (r#"select("queue_depth") ** 2"#, "queue_depth ^ 2"),
            (r#"select("queue_depth") ^ 2"#, "queue_depth ^ 2"),
            (r#"-select("queue_depth")"#, "-queue_depth"),
            (
                r#"select("queue_depth") - select("queue_depth")"#,
                "queue_depth - queue_depth",
            ),
            // comparisons filter and keep values (and names), as in PromQL
            (r#"select("queue_depth") > 10"#, "queue_depth > 10"),
            (r#"select("queue_depth") >= 40.0"#, "queue_depth >= 40"),
            (r#"select("queue_depth") < 10"#, "queue_depth < 10"),
            (r#"select("queue_depth") <= 5"#, "queue_depth <= 5"),
            (r#"select("queue_depth") == 5"#, "queue_depth == 5"),
            (r#"select("queue_depth") != 5"#, "queue_depth != 5"),
            (r#"10 < select("queue_depth")"#, "10 < queue_depth"),
            (
                r#"select("queue_depth") > select("queue_depth{queue=\"flat\"}") * 0 + 30"#,
                r#"queue_depth > queue_depth{queue="flat"} * 0 + 30"#,
            ),
        ];
        for (script, expr) in cases {
            let want = promql(expr);
            assert_eq!(vector(script), want, "script {script} vs PromQL {expr}");
        }
    }

    #[test]
    fn promql_reference_results_are_not_empty() {
        // guards the table above against comparing two empty vectors by mistake
        for expr in [
            "rate(http_requests_total[5m])",
            "histogram_quantile(0.9, rate(request_duration_seconds_bucket[5m]))",
            "queue_depth > 10",
            "changes(temperature[5m])",
        ] {
            assert!(!promql(expr).is_empty(), "{expr}");
        }
    }

    #[test]
    fn histogram_quantile_of_a_vector_interpolates_buckets() {
        // 50% of requests under 0.1 s, 90% under 1 s: the 90th percentile is at the 1 s bound
        let got =
            vector(r#"histogram_quantile(0.9, rate("request_duration_seconds_bucket", "5m"))"#);
        assert_eq!(got.len(), 1);
        assert!((got[0].1 - 1.0).abs() < 1e-9, "{got:?}");
    }

    #[test]
    fn query_returns_the_type_of_its_expression() {
        assert_eq!(run(r#"query("1 + 2")"#), Ok(ScriptValue::Number(3.0)));
        assert_eq!(
            vector(r#"query("queue_depth{queue=\"flat\"}")"#),
            vec![(r#"queue_depth{queue="flat"}"#.to_string(), 5.0)]
        );
        // a matrix comes back as a range vector the range functions accept
        assert_eq!(
            vector(
                r#"let r = query("temperature[5m]"); if r.len() != 1 { throw "len" } max_over_time(r)"#
            ),
            promql("max_over_time(temperature[5m])")
        );
        assert_eq!(
            vector(r#"rate(query("http_requests_total[10m:1m]"))"#),
            promql("rate(http_requests_total[10m:1m])")
        );
    }

    #[test]
    fn now_is_the_evaluation_time_in_seconds() {
        assert_eq!(run("now()"), Ok(ScriptValue::Number(NOW as f64 / 1000.0)));
    }

    #[test]
    fn vectors_can_be_inspected_and_rebuilt_in_plain_rhai() {
        let v = r#"select("queue_depth")"#;
        assert_eq!(run(&format!("{v}.len()")), Ok(ScriptValue::Number(3.0)));
        assert_eq!(
            run(&format!("{v}.is_empty()")),
            Ok(ScriptValue::Bool(false))
        );
        assert_eq!(
            run(r#"select("nothing").is_empty()"#),
            Ok(ScriptValue::Bool(true))
        );
        assert_eq!(
            run(&format!(
                "{v}.filter_label(\"queue\", \"flat\").values()[0]"
            )),
            Ok(ScriptValue::Number(5.0))
        );
        assert_eq!(
            run(&format!(
                "{v}.labels().map(|l| l.queue).sort(); {v}.labels().len()"
            )),
            Ok(ScriptValue::Number(3.0))
        );
        // iteration yields #{labels, value} maps; a lookup table sets per-queue thresholds and
        // vector() turns the kept samples back into alert candidates
        let script = r#"
            let limits = #{ growing: 30, dipped: 100 };
            let out = [];
            for s in select("queue_depth") {
                let limit = limits[s.labels.queue] ?? 1;
                if s.value > limit { out.push(s); }
            }
            vector(out)
        "#;
        assert_eq!(
            vector(script),
            vec![
                (r#"queue_depth{queue="flat"}"#.to_string(), 5.0),
                (r#"queue_depth{queue="growing"}"#.to_string(), 40.0),
            ]
        );
        assert_eq!(
            vector(r#"vector([#{labels: #{team: "db"}, value: 2}, #{value: 0.5}])"#),
            vec![("{}".to_string(), 0.5), (r#"{team="db"}"#.to_string(), 2.0)]
        );
        assert_eq!(
            run(r#"range("queue_depth{queue=\"flat\"}", "1m").series()[0].points.len()"#),
            Ok(ScriptValue::Number(4.0))
        );
        assert_eq!(
            run(r#"`${select("queue_depth{queue=\"flat\"}")}`.len() > 0"#),
            Ok(ScriptValue::Bool(true))
        );
    }

    #[test]
    fn vector_rejects_malformed_samples() {
        assert!(runtime_message(r#"vector([1])"#).contains("element 0 is not a map"));
        assert!(runtime_message(r#"vector([#{labels: #{}}])"#).contains("has no value"));
        assert!(runtime_message(r#"vector([#{value: "x"}])"#).contains("not a number"));
        assert!(matches!(
            run(r#"vector([#{value: 1}, #{value: 2}])"#),
            Err(ScriptError::Query(QueryError::Eval(m))) if m.contains("same labelset")
        ));
    }

    #[test]
    fn monotonic_increase_keeps_series_that_never_fell_and_grew() {
        // growing: +1 every 15 s; dipped: the same with one step down 2.5 minutes ago; flat: no growth
        assert_eq!(
            vector(r#"monotonic_increase("queue_depth", "5m")"#),
            vec![(r#"{queue="growing"}"#.to_string(), 19.0)]
        );
        // a window that ends before the dip keeps the dipped queue too
        assert_eq!(
            vector(r#"monotonic_increase(range("queue_depth offset 3m", "5m"))"#).len(),
            2
        );
    }

    #[test]
    fn last_sample_age_counts_seconds_since_the_newest_sample() {
        assert_eq!(
            vector(r#"last_sample_age("heartbeat")"#),
            vec![(r#"{job="cron"}"#.to_string(), 600.0)]
        );
        assert_eq!(
            vector(r#"last_sample_age("queue_depth{queue=\"flat\"}")"#),
            vec![(r#"{queue="flat"}"#.to_string(), 0.0)]
        );
    }

    #[test]
    fn ratio_by_divides_grouped_increases_and_drops_zero_denominators() {
        let got = vector(
            r#"ratio_by("http_requests_total{code=\"500\"}", "http_requests_total", "5m", ["job"])"#,
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, r#"{job="api"}"#);
        assert!((got[0].1 - 1.0 / 11.0).abs() < 1e-9, "{got:?}");
        // the flat queue's increase is 0: its group is left out instead of giving NaN or +Inf
        assert_eq!(
            vector(r#"ratio_by("queue_depth", "queue_depth", "5m", ["queue"])"#)
                .into_iter()
                .map(|(l, _)| l)
                .collect::<Vec<_>>(),
            vec![r#"{queue="dipped"}"#, r#"{queue="growing"}"#]
        );
    }

    #[test]
    fn scripts_return_vectors_bools_or_numbers() {
        assert_eq!(run("1 > 0"), Ok(ScriptValue::Bool(true)));
        assert_eq!(run("42"), Ok(ScriptValue::Number(42.0)));
        assert_eq!(run("0.25"), Ok(ScriptValue::Number(0.25)));
        assert_eq!(run(r#"select("nothing")"#), Ok(ScriptValue::Vector(vec![])));
        assert!(matches!(
            run(r#""firing""#),
            Err(ScriptError::BadResult { type_name }) if type_name.contains("string")
        ));
        assert!(matches!(
            run(r#"range("queue_depth", "1m")"#),
            Err(ScriptError::BadResult { type_name }) if type_name.contains("RangeVector")
        ));
        let err = run("let x = 1;").unwrap_err();
        assert!(err.to_string().contains("returned nothing"), "{err}");
    }

    #[test]
    fn to_vector_turns_bools_and_numbers_into_unlabelled_samples() {
        let one = |v| {
            vec![Sample {
                metric: Labels::default(),
                t: NOW,
                v,
            }]
        };
        assert_eq!(to_vector(ScriptValue::Bool(true), NOW), one(1.0));
        assert_eq!(to_vector(ScriptValue::Bool(false), NOW), vec![]);
        assert_eq!(to_vector(ScriptValue::Number(0.3), NOW), one(0.3));
        assert_eq!(to_vector(ScriptValue::Vector(one(7.0)), NOW), one(7.0));
    }

    #[test]
    fn an_endless_loop_stops_at_the_operation_limit() {
        let message = runtime_message("loop {}");
        assert!(message.contains("operation limit"), "{message}");
        // try/catch cannot swallow a limit
        let message = runtime_message("loop { try { loop {} } catch {} }");
        assert!(message.contains("operation limit"), "{message}");
    }

    #[test]
    fn data_limits_stop_growing_arrays_strings_and_maps() {
        // a time limit that cannot come first, so the data limits are what stops each script
        // even on a loaded machine (the default 1 s was reached first under a parallel build)
        let runtime_message = |script: &str| {
            let engine = ScriptEngine::with_time_limit(Duration::from_secs(600));
            let compiled = engine.compile(script).unwrap();
            match engine.run(&compiled, &evaluator()) {
                Err(ScriptError::Runtime { message, .. }) => message,
                other => panic!("{script}: expected a runtime error, got {other:?}"),
            }
        };
        let message = runtime_message("let a = []; loop { a.push(1) }");
        assert!(
            message.contains("array exceeds the size limit"),
            "{message}"
        );
        let message = runtime_message(r#"let s = "x"; loop { s += s }"#);
        assert!(
            message.contains("string exceeds the size limit"),
            "{message}"
        );
        // Rhai checks a map's size when it is next used, not on every insertion
        let message = runtime_message("let m = #{}; for i in 0..20000 { m[`k${i}`] = i } m.len()");
        assert!(message.contains("map exceeds the size limit"), "{message}");
    }

    #[test]
    fn a_loop_copying_large_values_stops_at_the_time_limit() {
        // every iteration is a few operations but copies 9 000 elements
        let engine = ScriptEngine::with_time_limit(Duration::from_millis(100));
        let script = engine
            .compile("let a = []; a.pad(9000, 0); loop { let b = a; }")
            .unwrap();
        match engine.run(&script, &evaluator()) {
            Err(ScriptError::Runtime { message, .. }) => {
                assert!(message.contains("time limit of 100 ms"), "{message}")
            }
            other => panic!("expected a runtime error, got {other:?}"),
        }
    }

    #[test]
    fn endless_recursion_stops_at_the_call_depth_limit() {
        let err = run("fn down(n) { down(n + 1) } down(0)").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("call depth limit"), "{message}");
    }

    #[test]
    fn deep_expressions_are_rejected_at_compile_time() {
        let script = format!("{}1{}", "(".repeat(200), ")".repeat(200));
        match ScriptEngine::new().compile(&script) {
            Err(ScriptError::Compile { message, .. }) => {
                assert!(message.contains("nests deeper"), "{message}")
            }
            other => panic!("expected a compile error, got {other:?}"),
        }
    }

    #[test]
    fn clock_sleep_and_eval_are_unavailable() {
        for script in ["timestamp()", "sleep(1)", "sleep(0.5)", "exit(1)"] {
            let message = runtime_message(script);
            assert!(
                message.contains("function not found"),
                "{script}: {message}"
            );
        }
        assert!(matches!(
            ScriptEngine::new().compile(r#"eval("1")"#),
            Err(ScriptError::Compile { .. })
        ));
        // print and debug do not fail (they go to tracing)
        assert_eq!(
            run(r#"print("x"); debug(1); true"#),
            Ok(ScriptValue::Bool(true))
        );
    }

    #[test]
    fn compile_errors_carry_line_and_column() {
        let err = ScriptEngine::new()
            .compile("let a = 1;\nlet b = ;")
            .unwrap_err();
        match &err {
            ScriptError::Compile { line, col, .. } => assert_eq!((*line, *col), (2, 9)),
            other => panic!("expected a compile error, got {other:?}"),
        }
        assert!(
            err.to_string().starts_with("script syntax error at 2:9: "),
            "{err}"
        );
        // an unknown variable is a load-time error, not a runtime surprise
        assert!(matches!(
            ScriptEngine::new().compile("bounce > 1"),
            Err(ScriptError::Compile { line: 1, .. })
        ));
    }

    #[test]
    fn bad_arguments_are_runtime_errors_at_the_call() {
        match run("let x = 1;\n  rate(\"http_requests_total\", \"5 minutes\")") {
            Err(ScriptError::Runtime { line, col, message }) => {
                assert_eq!((line, col), (2, 3));
                assert!(message.contains("invalid duration"), "{message}");
            }
            other => panic!("expected a runtime error, got {other:?}"),
        }
        let message = runtime_message(r#"rate("http_requests_total", "0s")"#);
        assert!(message.contains("longer than zero"), "{message}");
        // a selector is parsed, never pasted into query text
        let message = runtime_message(r#"rate("http_requests_total[1h]) or vector(1", "5m")"#);
        assert!(message.contains("series selector"), "{message}");
        let message = runtime_message(r#"select("sum(http_requests_total)")"#);
        assert!(message.contains("is not a series selector"), "{message}");
        // inside a script function, the error names the function
        let message = runtime_message("fn r() { rate(\"x\", \"5\") }\nfn outer() { r() }\nouter()");
        assert!(
            message.contains("in function r, called from outer"),
            "{message}"
        );
        let message = runtime_message(r#"select("queue_depth").sum_by([1])"#);
        assert!(message.contains("label names must be strings"), "{message}");
        let message = runtime_message(r#"select("queue_depth") * "x""#);
        assert!(message.contains("function not found"), "{message}");
    }

    #[test]
    fn query_engine_errors_come_back_as_query_errors() {
        assert!(matches!(
            run(r#"query("sum(")"#),
            Err(ScriptError::Query(QueryError::Parse { .. }))
        ));
        // many-to-many matching: both sides have two series per empty label set after dropping code
        let err =
            run(r#"select("http_requests_total").sum_by(["job"]) / select("http_requests_total")"#);
        assert!(err.is_ok(), "one-to-many is not reached here: {err:?}");
        let err = run(
            r#"rate("http_requests_total", "5m").sum_by(["code"]) * 0 + monotonic_increase("queue_depth", "5m").count_by([])"#,
        );
        assert!(err.is_ok(), "{err:?}");
        assert!(matches!(
            run(r#"query("http_requests_total") * query("-http_requests_total")"#),
            Ok(ScriptValue::Vector(v)) if v.len() == 2
        ));
        assert!(matches!(
            run(r#"query("-http_requests_total").sum_by(["job"]) + query("-http_requests_total")"#),
            Ok(ScriptValue::Vector(v)) if v.is_empty()
        ));
        assert!(matches!(
            run(r#"query("label_replace(-http_requests_total, \"code\", \"\", \"\", \"\")")"#),
            Err(ScriptError::Query(QueryError::Eval(m))) if m.contains("same labelset")
        ));
    }

    #[test]
    fn runs_do_not_share_variables_and_the_engine_is_reusable() {
        let engine = ScriptEngine::new();
        let script = engine
            .compile(r#"let n = select("queue_depth").len(); n"#)
            .unwrap();
        let ev = evaluator();
        assert_eq!(engine.run(&script, &ev), Ok(ScriptValue::Number(3.0)));
        assert_eq!(engine.run(&script, &ev), Ok(ScriptValue::Number(3.0)));
        // an evaluator at another time sees that time
        let later = Evaluator::new(Engine::default(), Arc::new(storage()), NOW + 60_000);
        let now = engine.compile("now()").unwrap();
        assert_eq!(
            engine.run(&now, &later),
            Ok(ScriptValue::Number((NOW + 60_000) as f64 / 1000.0))
        );
        // and nothing is left behind on the thread
        assert!(CURRENT.with(|c| c.borrow().is_none()));
    }

    #[test]
    fn engine_and_scripts_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ScriptEngine>();
        assert_send_sync::<CompiledScript>();
    }
}
