//! The evaluator: walks the AST at one evaluation time. A range query evaluates at every step
//! (what Prometheus's range evaluation amounts to), sharing the compiled matchers.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher};
use promql_parser::parser::{
    AtModifier, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector,
};

use super::{
    CANCEL_CHECK_EVERY, Cancel, QueryError, Sample, Series, Storage, Value, aggregate, binary,
    functions,
};
use crate::hash::BuildOneShot;
use crate::labels::{Labels, MatchOp, Matcher};
use crate::store::is_stale;

/// The default of [`EngineOptions::max_samples`]: Prometheus's `--query.max-samples` default.
pub const MAX_SAMPLES: usize = 50_000_000;

/// The default of [`EngineOptions::max_subquery_steps`]: as many as the samples limit, since each
/// step of an instant-vector subquery holds at least one sample when it returns one. Not
/// 11,000 per level (the API's points limit): rules legitimately write `max_over_time(x[30d:1m])`
/// (43,200 steps), which Prometheus evaluates; the product is what grows exponentially with
/// nesting.
pub const MAX_SUBQUERY_STEPS: u64 = 50_000_000;

/// Engine limits and defaults.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5 m).
    pub lookback_ms: i64,
    /// Step of a subquery written without one (`x[1h:]`): the rule group's interval in
    /// Prometheus; 1 m here unless the caller says otherwise.
    pub default_subquery_step_ms: i64,
    /// Most samples a query may hold at once (Prometheus's `--query.max-samples`), counted as
    /// selectors and subqueries load them: within one step of a range query or subquery, every
    /// sample selected so far plus the results the enclosing steps keep. A query over it fails
    /// with [`QueryError::Limit`] naming the limit.
    pub max_samples: usize,
    /// Most evaluation steps a subquery may cause, multiplied through nesting and by the steps
    /// of the range query around it (`max_over_time(x[1h:1s])` over 100 range steps: 360,000).
    /// Checked before a subquery evaluates anything, so `up[1y:1ms]` fails at once.
    pub max_subquery_steps: u64,
    /// Most steps one range query may evaluate.
    pub max_steps: i64,
    /// Which Prometheus's semantics to follow where 2.x and 3.x differ.
    pub compat: Compat,
}

/// Where Prometheus 2.x and 3.x evaluate differently, which to follow.
///
/// - Range selectors and the instant lookback: 2.x includes a sample exactly at the window's
///   start (`[t - range, t]`), 3.x does not (`(t - range, t]`): `rate(x[1m])` over samples one
///   minute apart has two samples in 2.x and one (no result) in 3.x.
/// - `rate`/`increase`/`delta` extrapolation: 2.x applies the counter's zero point before the
///   extrapolation threshold and multiplies in another order (results differ in the last bits).
/// - `sum`, `avg`, `sum_over_time`, `avg_over_time`: 2.x uses plain sums and an incremental
///   mean, 3.x compensated (Kahan) sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
pub enum Compat {
    /// Prometheus 2.x (what rules written for 2.x, and promtool 2.x tests, expect)
    #[serde(rename = "2")]
    Prometheus2,
    /// Prometheus 3.x
    #[default]
    #[serde(rename = "3")]
    Prometheus3,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_ms: 5 * 60 * 1000,
            default_subquery_step_ms: 60 * 1000,
            max_samples: MAX_SAMPLES,
            max_subquery_steps: MAX_SUBQUERY_STEPS,
            max_steps: 11_000,
            compat: Compat::Prometheus3,
        }
    }
}

/// Evaluates expressions over a storage. Stateless apart from its options and, when asked for,
/// a cache of compiled selector matchers; share freely (clones share the cache).
#[derive(Clone, Debug, Default)]
pub struct Engine {
    opts: EngineOptions,
    /// [`Engine::with_selector_cache`]: compiled matchers by selector text, across queries
    selectors: Option<Arc<SelectorCache>>,
}

/// Compiled matchers of selectors, by the selector's text. A rule's selectors are the same at
/// every evaluation, and compiling a regex matcher (`status=~"5.."`, its DFA) each time was most
/// of `tocsin test`'s time on a suite of seed-like rules (perf: regex compilation at the top;
/// with this cache 1.00 → 0.21 CPU seconds for `benches/rule-tests.sh`'s 500 groups).
#[derive(Debug, Default)]
struct SelectorCache(std::sync::Mutex<HashMap<String, Arc<Vec<Vec<Matcher>>>>>);

/// Selectors a [`SelectorCache`] holds before it starts over: rule files have a fixed set; the
/// bound only matters if an engine with a cache is given ever-new queries.
const SELECTOR_CACHE_ENTRIES: usize = 10_000;

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Engine {
            opts,
            selectors: None,
        }
    }

    /// This engine keeping every selector's compiled matchers across queries (bounded by
    /// [`SELECTOR_CACHE_ENTRIES`]): for evaluating the same rules again and again, not for
    /// arbitrary queries, whose matchers would be kept for nothing.
    pub fn with_selector_cache(mut self) -> Self {
        self.selectors = Some(Arc::default());
        self
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `expr` at time `t` (ms).
    pub fn instant(&self, storage: &dyn Storage, expr: &Expr, t: i64) -> Result<Value, QueryError> {
        self.instant_cancellable(storage, expr, t, None)
    }

    /// [`Engine::instant`] that stops with [`QueryError::Cancelled`] soon after `cancel` is
    /// tripped.
    pub fn instant_cancellable(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        t: i64,
        cancel: Option<&Cancel>,
    ) -> Result<Value, QueryError> {
        let mut ctx = Ctx::new(storage, &self.opts, t, t, cancel);
        ctx.selectors = self.selectors.as_deref();
        ctx.check_cancel()?;
        let v = ctx.eval(expr, t)?;
        if let Value::Vector(samples) = &v {
            check_unique(samples)?;
        }
        Ok(v)
    }

    /// Evaluates `expr` at every step from `start` to `end` (inclusive, ms): a matrix with one
    /// series per label set, sorted by labels (scalar results become one series without labels).
    pub fn range(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Value, QueryError> {
        self.range_cancellable(storage, expr, start, end, step, None)
    }

    /// [`Engine::range`] that stops with [`QueryError::Cancelled`] soon after `cancel` is
    /// tripped.
    pub fn range_cancellable(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
        cancel: Option<&Cancel>,
    ) -> Result<Value, QueryError> {
        if step <= 0 {
            return Err(QueryError::Eval(
                "zero or negative query resolution step widths are not accepted".into(),
            ));
        }
        if end < start {
            return Err(QueryError::Eval(
                "end timestamp must not be before start time".into(),
            ));
        }
        if (end - start) / step >= self.opts.max_steps {
            return Err(QueryError::Limit(format!(
                "exceeded maximum resolution of {} points per timeseries",
                self.opts.max_steps
            )));
        }
        let mut ctx = Ctx::new(storage, &self.opts, start, end, cancel);
        ctx.selectors = self.selectors.as_deref();
        ctx.steps.set(((end - start) / step + 1) as u64);
        ctx.check_cancel()?;
        let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        // the result's points: they are held while later steps load theirs
        let mut kept = 0usize;
        let mut t = start;
        while t <= end {
            ctx.samples.set(kept);
            match ctx.eval(expr, t)? {
                Value::Scalar(v) => {
                    kept += 1;
                    out.entry(Labels::default()).or_default().push((t, v))
                }
                Value::Vector(samples) => {
                    check_unique(&samples)?;
                    kept += samples.len();
                    ctx.check_samples(kept)?;
                    for s in samples {
                        out.entry(s.metric).or_default().push((t, s.v));
                    }
                }
                other => {
                    return Err(QueryError::Eval(format!(
                        "invalid expression type {:?} for range query, must be scalar or instant vector",
                        other.type_name()
                    )));
                }
            }
            t += step;
        }
        Ok(Value::Matrix(
            out.into_iter()
                .map(|(metric, points)| Series { metric, points })
                .collect(),
        ))
    }
}

/// An engine bound to a storage and one evaluation time, owning both: what front ends that
/// evaluate many small queries per rule (Rhai scripts) hold. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Evaluator {
    engine: Engine,
    storage: Arc<dyn Storage + Send + Sync>,
    t: i64,
    /// every query of this evaluator stops once it is tripped (a rule group's budget, shutdown)
    cancel: Option<Cancel>,
}

impl Evaluator {
    pub fn new(engine: Engine, storage: Arc<dyn Storage + Send + Sync>, t: i64) -> Self {
        Evaluator {
            engine,
            storage,
            t,
            cancel: None,
        }
    }

    /// This evaluator, its queries run with `cancel` ([`Engine::instant_cancellable`]).
    pub fn with_cancel(mut self, cancel: Option<Cancel>) -> Self {
        self.cancel = cancel;
        self
    }

    /// The evaluation time (ms).
    pub fn time(&self) -> i64 {
        self.t
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Parses and evaluates PromQL text at the evaluation time. Unlike [`Engine::instant`], a
    /// range selector (`x[5m]`) is allowed and gives a matrix.
    pub fn query(&self, promql: &str) -> Result<Value, QueryError> {
        let expr = super::parse(promql)?;
        self.eval(&expr)
    }

    /// Evaluates a parsed expression at the evaluation time.
    pub fn eval(&self, expr: &Expr) -> Result<Value, QueryError> {
        self.engine
            .instant_cancellable(self.storage.as_ref(), expr, self.t, self.cancel.as_ref())
    }
}

/// Fails when two samples of a vector share a label set (after a name was dropped, typically).
pub(super) fn check_unique(samples: &[Sample]) -> Result<(), QueryError> {
    if samples.len() < 2 {
        return Ok(());
    }
    let mut seen = HashSet::with_capacity_and_hasher(samples.len(), BuildOneShot);
    for s in samples {
        if !seen.insert(&s.metric) {
            return Err(QueryError::Eval(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(())
}

/// A range vector and the window it was read for: what `rate` and friends need besides points.
pub(super) struct RangeArg {
    pub series: Vec<Series>,
    /// end of the window (the evaluation time after `@` and `offset`), inclusive
    pub maxt: i64,
    /// length of the window (ms); the window is (maxt - range, maxt]
    pub range: i64,
    /// the evaluation time, before `@` and `offset` (`predict_linear` predicts from it, as
    /// Prometheus does)
    pub eval_t: i64,
    pub compat: Compat,
}

/// What [`Ctx::for_each_range`] calls per series: the window, the series' labels, its points.
pub(super) type RangeVisitor<'a> = dyn FnMut(&RangeArg, &Labels, &[(i64, f64)]) + 'a;

/// Selector matchers compiled once per query, keyed by the selector's address in the AST.
type MatcherCache = RefCell<HashMap<*const VectorSelector, Arc<Vec<Vec<Matcher>>>>>;

/// One query's evaluation state.
pub(super) struct Ctx<'a> {
    pub storage: &'a dyn Storage,
    pub opts: &'a EngineOptions,
    /// the query's range (equal for an instant query), for `@ start()` and `@ end()`
    start: i64,
    end: i64,
    matchers: MatcherCache,
    /// the engine's cache across queries, if it has one
    selectors: Option<&'a SelectorCache>,
    /// checked every [`CANCEL_CHECK_EVERY`] nodes and per series of a range selection
    cancel: Option<&'a Cancel>,
    /// nodes evaluated since the last look at `cancel`
    ticks: Cell<u32>,
    /// samples held now: loaded in the current step plus the results enclosing steps keep
    /// (see [`EngineOptions::max_samples`])
    samples: Cell<usize>,
    /// the product of the step counts of the range query and the subqueries around the node
    /// being evaluated (see [`EngineOptions::max_subquery_steps`]; a `Cell`: subqueries nest
    /// through `&self`)
    steps: Cell<u64>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(
        storage: &'a dyn Storage,
        opts: &'a EngineOptions,
        start: i64,
        end: i64,
        cancel: Option<&'a Cancel>,
    ) -> Self {
        Ctx {
            storage,
            opts,
            start,
            end,
            matchers: RefCell::new(HashMap::new()),
            selectors: None,
            cancel,
            ticks: Cell::new(0),
            samples: Cell::new(0),
            steps: Cell::new(1),
        }
    }

    /// Fails when the query was cancelled.
    fn check_cancel(&self) -> Result<(), QueryError> {
        match self.cancel.and_then(Cancel::reason) {
            Some(reason) => Err(QueryError::Cancelled(reason)),
            None => Ok(()),
        }
    }

    /// Counts one node; every [`CANCEL_CHECK_EVERY`] nodes, [`Ctx::check_cancel`].
    fn tick(&self) -> Result<(), QueryError> {
        let n = self.ticks.get() + 1;
        if n < CANCEL_CHECK_EVERY {
            self.ticks.set(n);
            return Ok(());
        }
        self.ticks.set(0);
        self.check_cancel()
    }

    /// Fails when `held` samples exceed [`EngineOptions::max_samples`].
    fn check_samples(&self, held: usize) -> Result<(), QueryError> {
        if held > self.opts.max_samples {
            return Err(self.too_many_samples());
        }
        Ok(())
    }

    /// The error of [`EngineOptions::max_samples`], naming it.
    fn too_many_samples(&self) -> QueryError {
        QueryError::Limit(format!(
            "query processing would load too many samples into memory in query execution: more than the limit of {} samples",
            self.opts.max_samples
        ))
    }

    /// Counts `n` more samples held, failing over [`EngineOptions::max_samples`].
    fn add_samples(&self, n: usize) -> Result<(), QueryError> {
        let held = self.samples.get().saturating_add(n);
        self.samples.set(held);
        self.check_samples(held)
    }

    /// 1 when windows exclude their start (Prometheus 3), 0 when they include it (2).
    fn open(&self) -> i64 {
        match self.opts.compat {
            Compat::Prometheus2 => 0,
            Compat::Prometheus3 => 1,
        }
    }

    /// The lookback as `Storage::latest` takes it: (t - lookback, t].
    fn lookback(&self) -> i64 {
        self.opts.lookback_ms + 1 - self.open()
    }

    /// Evaluates `e` at time `t`.
    pub(super) fn eval(&self, e: &Expr, t: i64) -> Result<Value, QueryError> {
        self.tick()?;
        match e {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(samples) => {
                    let out: Vec<Sample> = samples
                        .into_iter()
                        .map(|s| Sample {
                            metric: drop_name(&s.metric),
                            t,
                            v: -s.v,
                        })
                        .collect();
                    check_unique(&out)?;
                    Ok(Value::Vector(out))
                }
                other => Err(type_error("unary expression", &other)),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.select_vector(vs, t)?)),
            Expr::MatrixSelector(ms) => Ok(Value::Matrix(self.select_matrix(ms, t)?.series)),
            Expr::Subquery(sq) => Ok(Value::Matrix(self.subquery(sq, t)?.series)),
            Expr::Binary(b) => binary::eval(self, b, t),
            Expr::Aggregate(a) => aggregate::eval(self, a, t),
            Expr::Call(c) => functions::call(self, c, t),
            Expr::Extension(_) => Err(QueryError::Eval("unsupported expression extension".into())),
        }
    }

    /// Evaluates an argument that must be a scalar.
    pub(super) fn eval_scalar(&self, e: &Expr, t: i64) -> Result<f64, QueryError> {
        match self.eval(e, t)? {
            Value::Scalar(v) => Ok(v),
            other => Err(type_error("expected scalar", &other)),
        }
    }

    /// Evaluates an argument that must be an instant vector.
    pub(super) fn eval_vector(&self, e: &Expr, t: i64) -> Result<Vec<Sample>, QueryError> {
        match self.eval(e, t)? {
            Value::Vector(v) => Ok(v),
            other => Err(type_error("expected instant vector", &other)),
        }
    }

    /// Evaluates an argument that must be a range vector (a matrix selector or a subquery,
    /// possibly in parentheses).
    pub(super) fn eval_range(&self, e: &Expr, t: i64) -> Result<RangeArg, QueryError> {
        match e {
            Expr::MatrixSelector(ms) => self.select_matrix(ms, t),
            Expr::Subquery(sq) => self.subquery(sq, t),
            Expr::Paren(p) => self.eval_range(&p.expr, t),
            other => Err(QueryError::Eval(format!(
                "expected range vector, got {}",
                expr_type_name(other)
            ))),
        }
    }

    /// Calls `f` with each series of a range argument (staleness markers removed) without
    /// materializing the whole range vector when the argument is a plain matrix selector; the
    /// `RangeArg` passed has no series, only the window.
    pub(super) fn for_each_range(
        &self,
        e: &Expr,
        t: i64,
        f: &mut RangeVisitor<'_>,
    ) -> Result<(), QueryError> {
        let ms = match e {
            Expr::MatrixSelector(ms) => ms,
            Expr::Paren(p) => return self.for_each_range(&p.expr, t, f),
            other => {
                let r = self.eval_range(other, t)?;
                let window = RangeArg {
                    series: Vec::new(),
                    ..r
                };
                for s in &r.series {
                    f(&window, &s.metric, &s.points);
                }
                return Ok(());
            }
        };
        let vs = &ms.vs;
        let maxt = self.ref_time(&vs.at, &vs.offset, t);
        let range = duration_ms(&ms.range);
        let window = RangeArg {
            series: Vec::new(),
            maxt,
            range,
            eval_t: t,
            compat: self.opts.compat,
        };
        let sets = self.compiled_matchers(vs)?;
        let mut seen: HashSet<Arc<Labels>> = HashSet::new();
        let mut buf: Vec<(i64, f64)> = Vec::new();
        // plain locals, not `add_samples`/`check_cancel` per series: those cost ~20% of the
        // rules bench over 100k series (measured); the store's loop cannot be stopped, so after
        // a limit or a cancellation the remaining series are skipped
        let budget = self.opts.max_samples.saturating_sub(self.samples.get());
        let mut loaded = 0usize;
        let (mut over, mut cancelled, mut visited) = (false, false, 0u32);
        for set in sets.iter() {
            self.storage.select_each(
                set,
                maxt - range + self.open(),
                maxt,
                &mut |labels, samples| {
                    if over || cancelled || (sets.len() > 1 && !seen.insert(labels.clone())) {
                        return;
                    }
                    visited = visited.wrapping_add(1);
                    if visited % CANCEL_CHECK_EVERY == 0
                        && self.cancel.is_some_and(|c| c.reason().is_some())
                    {
                        cancelled = true;
                        return;
                    }
                    let points: &[(i64, f64)] = if samples.iter().any(|p| is_stale(p.1)) {
                        buf.clear();
                        buf.extend(samples.iter().filter(|p| !is_stale(p.1)));
                        &buf
                    } else {
                        samples
                    };
                    if points.is_empty() {
                        return;
                    }
                    loaded += points.len();
                    if loaded > budget {
                        over = true;
                        return;
                    }
                    f(&window, labels, points);
                },
            )?;
            if cancelled {
                self.check_cancel()?;
            }
            if over {
                return Err(self.too_many_samples());
            }
        }
        self.add_samples(loaded)
    }

    /// The time a selector reads at: `@` replaces the evaluation time, `offset` moves it back.
    fn ref_time(&self, at: &Option<AtModifier>, offset: &Option<Offset>, t: i64) -> i64 {
        let base = match at {
            None => t,
            Some(AtModifier::Start) => self.start,
            Some(AtModifier::End) => self.end,
            Some(AtModifier::At(st)) => system_time_ms(*st),
        };
        base - offset_ms(offset)
    }

    fn compiled_matchers(&self, vs: &VectorSelector) -> Result<Arc<Vec<Vec<Matcher>>>, QueryError> {
        let key = vs as *const VectorSelector;
        if let Some(m) = self.matchers.borrow().get(&key) {
            return Ok(m.clone());
        }
        let m = match self.selectors {
            None => Arc::new(convert_matchers(vs)?),
            Some(cache) => {
                let text = vs.to_string();
                let hit = cache
                    .0
                    .lock()
                    .expect("selector cache lock")
                    .get(&text)
                    .cloned();
                match hit {
                    Some(m) => m,
                    None => {
                        let m = Arc::new(convert_matchers(vs)?);
                        let mut c = cache.0.lock().expect("selector cache lock");
                        if c.len() >= SELECTOR_CACHE_ENTRIES {
                            c.clear();
                        }
                        c.insert(text, m.clone());
                        m
                    }
                }
            }
        };
        self.matchers.borrow_mut().insert(key, m.clone());
        Ok(m)
    }

    /// Instant-vector selection: each series' newest sample in (t - lookback, t], unless stale.
    pub(super) fn select_vector(
        &self,
        vs: &VectorSelector,
        t: i64,
    ) -> Result<Vec<Sample>, QueryError> {
        let rt = self.ref_time(&vs.at, &vs.offset, t);
        let sets = self.compiled_matchers(vs)?;
        let mut out = Vec::new();
        let mut seen: HashSet<Arc<Labels>> = HashSet::new();
        for set in sets.iter() {
            for (labels, st, v) in self.storage.latest(set, rt, self.lookback())? {
                if sets.len() > 1 && !seen.insert(labels.clone()) {
                    continue;
                }
                out.push(Sample {
                    metric: (*labels).clone(),
                    t: st,
                    v,
                });
            }
        }
        self.add_samples(out.len())?;
        Ok(out)
    }

    /// [`Ctx::select_vector`] without copying label sets: `(labels, sample time, value)`.
    pub(super) fn select_vector_shared(
        &self,
        vs: &VectorSelector,
        t: i64,
    ) -> Result<Vec<(Arc<Labels>, i64, f64)>, QueryError> {
        let rt = self.ref_time(&vs.at, &vs.offset, t);
        let sets = self.compiled_matchers(vs)?;
        if sets.len() == 1 {
            let out = self.storage.latest(&sets[0], rt, self.lookback())?;
            self.add_samples(out.len())?;
            return Ok(out);
        }
        let mut out = Vec::new();
        let mut seen: HashSet<Arc<Labels>> = HashSet::new();
        for set in sets.iter() {
            for item in self.storage.latest(set, rt, self.lookback())? {
                if seen.insert(item.0.clone()) {
                    out.push(item);
                }
            }
        }
        self.add_samples(out.len())?;
        Ok(out)
    }

    /// Range-vector selection: each series' samples in (t - range, t], staleness markers removed.
    fn select_matrix(&self, ms: &MatrixSelector, t: i64) -> Result<RangeArg, QueryError> {
        let vs = &ms.vs;
        let maxt = self.ref_time(&vs.at, &vs.offset, t);
        let range = duration_ms(&ms.range);
        let sets = self.compiled_matchers(vs)?;
        let mut series = Vec::new();
        let mut seen: HashSet<Arc<Labels>> = HashSet::new();
        for set in sets.iter() {
            for s in self.storage.select(set, maxt - range + self.open(), maxt)? {
                if sets.len() > 1 && !seen.insert(s.labels.clone()) {
                    continue;
                }
                self.check_cancel()?;
                let mut points = s.samples;
                points.retain(|p| !is_stale(p.1));
                if points.is_empty() {
                    continue;
                }
                self.add_samples(points.len())?;
                series.push(Series {
                    metric: (*s.labels).clone(),
                    points,
                });
            }
        }
        Ok(RangeArg {
            series,
            maxt,
            range,
            eval_t: t,
            compat: self.opts.compat,
        })
    }

    /// `expr[range:step]`: the inner expression at every step-aligned time in (t - range, t].
    fn subquery(&self, sq: &SubqueryExpr, t: i64) -> Result<RangeArg, QueryError> {
        let maxt = self.ref_time(&sq.at, &sq.offset, t);
        let range = duration_ms(&sq.range);
        let step = match &sq.step {
            Some(d) if !d.is_zero() => duration_ms(d),
            _ => self.opts.default_subquery_step_ms,
        };
        let lo = maxt - range;
        // the first step-aligned time after lo, as Prometheus computes it (Go's truncating
        // division included)
        let mut ts = step * (lo / step);
        if ts < lo + self.open() {
            ts += step;
        }
        // checked before evaluating anything: `up[1y:1ms]` would run for hours, nesting
        // multiplies (each level's steps times the enclosing ones')
        let own = if ts <= maxt {
            ((maxt - ts) / step + 1) as u64
        } else {
            0
        };
        let outer = self.steps.get();
        let steps = outer.saturating_mul(own);
        if steps > self.opts.max_subquery_steps {
            return Err(QueryError::Limit(format!(
                "subquery would evaluate {steps} steps ({own} here, times the enclosing range query's and subqueries'), more than the limit of {} steps",
                self.opts.max_subquery_steps
            )));
        }
        self.steps.set(outer.saturating_mul(own.max(1)));
        let result = self.subquery_steps(sq, ts, maxt, step);
        self.steps.set(outer);
        Ok(RangeArg {
            series: result?,
            maxt,
            range,
            eval_t: t,
            compat: self.opts.compat,
        })
    }

    /// The steps of [`Ctx::subquery`] from `ts` to `maxt`: one series per label set. The samples
    /// an inner step loads are released after it; the points kept stay counted.
    fn subquery_steps(
        &self,
        sq: &SubqueryExpr,
        mut ts: i64,
        maxt: i64,
        step: i64,
    ) -> Result<Vec<Series>, QueryError> {
        let base = self.samples.get();
        let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        let mut kept = 0usize;
        while ts <= maxt {
            match self.eval(&sq.expr, ts)? {
                Value::Scalar(v) => {
                    kept += 1;
                    out.entry(Labels::default()).or_default().push((ts, v))
                }
                Value::Vector(samples) => {
                    check_unique(&samples)?;
                    kept += samples.len();
                    for s in samples {
                        out.entry(s.metric).or_default().push((ts, s.v));
                    }
                }
                other => return Err(type_error("subquery", &other)),
            }
            self.samples.set(base);
            self.add_samples(kept)?;
            ts += step;
        }
        Ok(out
            .into_iter()
            .map(|(metric, points)| Series { metric, points })
            .collect())
    }
}

/// The selector's matchers in the store's form, one set per `or` alternative (also the
/// metadata API's `match[]`).
pub(crate) fn convert_matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let convert = |set: &[PMatcher]| -> Result<Vec<Matcher>, QueryError> {
        let mut out = Vec::with_capacity(set.len() + 1);
        if let Some(name) = &vs.name {
            out.push(Matcher::equal(crate::labels::METRIC_NAME, name));
        }
        for m in set {
            let op = match m.op {
                PMatchOp::Equal => MatchOp::Equal,
                PMatchOp::NotEqual => MatchOp::NotEqual,
                PMatchOp::Re(_) => MatchOp::Regex,
                PMatchOp::NotRe(_) => MatchOp::NotRegex,
            };
            out.push(
                Matcher::new(op, &m.name, &m.value).map_err(|e| QueryError::Eval(e.to_string()))?,
            );
        }
        Ok(out)
    };
    if vs.matchers.or_matchers.is_empty() {
        Ok(vec![convert(&vs.matchers.matchers)?])
    } else {
        vs.matchers
            .or_matchers
            .iter()
            .map(|set| {
                let mut all = vs.matchers.matchers.clone();
                all.extend(set.iter().cloned());
                convert(&all)
            })
            .collect()
    }
}

pub(super) fn duration_ms(d: &Duration) -> i64 {
    d.as_millis() as i64
}

pub(super) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

fn system_time_ms(st: SystemTime) -> i64 {
    match st.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// A copy of the label set without `__name__`.
pub(super) fn drop_name(l: &Labels) -> Labels {
    l.without_name()
}

pub(super) fn type_error(what: &str, v: &Value) -> QueryError {
    QueryError::Eval(format!(
        "{what}: unexpected value of type {}",
        v.type_name()
    ))
}

fn expr_type_name(e: &Expr) -> &'static str {
    match e {
        Expr::NumberLiteral(_) => "scalar",
        Expr::StringLiteral(_) => "string",
        Expr::MatrixSelector(_) | Expr::Subquery(_) => "range vector",
        _ => "instant vector",
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::promql::{CancelReason, MemStorage, parse};

    /// Ten series `x{i}`, a sample every second over 100 s.
    fn storage() -> MemStorage {
        let mut s = MemStorage::new();
        for i in 0..10 {
            let l = Labels::from_pairs([("__name__", "x".to_string()), ("i", i.to_string())]);
            for t in 0..100 {
                s.add(&l, t * 1000, t as f64);
            }
        }
        s
    }

    fn limit_error(r: Result<Value, QueryError>) -> String {
        match r {
            Err(QueryError::Limit(m)) => m,
            other => panic!("expected a limit error, got {other:?}"),
        }
    }

    #[test]
    fn a_cancelled_query_stops_mid_evaluation() {
        // a billion innermost steps with the step limit lifted: hours of work
        let engine = Engine::new(EngineOptions {
            max_subquery_steps: u64::MAX,
            ..Default::default()
        });
        let expr = parse(
            "count_over_time(count_over_time(count_over_time(vector(1)[1000s:1s])[1000s:1s])[1000s:1s])",
        )
        .unwrap();
        let cancel = Cancel::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let token = cancel.clone();
        let handle = std::thread::spawn(move || {
            let storage = MemStorage::new();
            let _ = tx.send(engine.instant_cancellable(&storage, &expr, 3_000_000, Some(&token)));
        });
        std::thread::sleep(Duration::from_millis(50));
        cancel.cancel(CancelReason::TimedOut(Duration::from_millis(50)));
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the evaluation stops within 10 s of its cancellation");
        assert_eq!(
            got,
            Err(QueryError::Cancelled(CancelReason::TimedOut(
                Duration::from_millis(50)
            )))
        );
        assert_eq!(
            got.unwrap_err().to_string(),
            "query timed out after 0.05s in expression evaluation"
        );
        handle.join().unwrap();
    }

    #[test]
    fn a_query_under_a_cancelled_parent_stops_and_range_selections_check_per_series() {
        let root = Cancel::new();
        let child = root.child();
        root.cancel(CancelReason::ShuttingDown);
        let engine = Engine::default();
        let storage = storage();
        for q in ["x", "rate(x[1m])", "sum_over_time(x[1m])", "x[1m]"] {
            let got =
                engine.instant_cancellable(&storage, &parse(q).unwrap(), 60_000, Some(&child));
            assert_eq!(
                got,
                Err(QueryError::Cancelled(CancelReason::ShuttingDown)),
                "{q}"
            );
        }
        let got = engine.range_cancellable(
            &storage,
            &parse("x").unwrap(),
            0,
            99_000,
            1_000,
            Some(&child),
        );
        assert_eq!(got, Err(QueryError::Cancelled(CancelReason::ShuttingDown)));
        // not cancelled: the same queries answer
        assert!(
            engine
                .instant_cancellable(
                    &storage,
                    &parse("rate(x[1m])").unwrap(),
                    60_000,
                    Some(&Cancel::new())
                )
                .is_ok()
        );
    }

    #[test]
    fn subquery_steps_are_bounded_before_evaluation_through_nesting() {
        let engine = Engine::default();
        let storage = storage();
        let started = Instant::now();
        // 3.15e10 steps: ran ~1.5 h before
        let m = limit_error(engine.instant(
            &storage,
            &parse("count_over_time(x[1y:1ms])").unwrap(),
            100_000,
        ));
        assert!(m.contains("more than the limit of 50000000 steps"), "{m}");
        // 4 steps a level, 13 levels: 4^13 = 67,108,864
        let nested = format!("{}x{}", "max_over_time(".repeat(13), "[1m:15s])".repeat(13));
        let m = limit_error(engine.instant(&storage, &parse(&nested).unwrap(), 100_000));
        assert!(m.contains("limit of 50000000 steps"), "{m}");
        // a range query's steps multiply: 11,000 × 7,200
        let m = limit_error(engine.range(
            &storage,
            &parse("max_over_time(x[2h:1s])").unwrap(),
            0,
            10_999_000,
            1_000,
        ));
        assert!(m.contains("limit of 50000000 steps"), "{m}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "refused before evaluating"
        );
        // within the limit: evaluated
        assert!(
            engine
                .instant(
                    &storage,
                    &parse("max_over_time(x[1h:1s])").unwrap(),
                    100_000
                )
                .is_ok()
        );
    }

    #[test]
    fn samples_are_counted_across_the_selectors_of_a_query() {
        let engine = Engine::new(EngineOptions {
            max_samples: 1_500,
            ..Default::default()
        });
        let storage = storage();
        let run = |q: &str| engine.instant(&storage, &parse(q).unwrap(), 99_000);
        // 10 series × 100 samples = 1,000: within the limit
        assert!(run("sum_over_time(x[100s])").is_ok());
        assert!(run("x[100s]").is_ok());
        // two selections of 1,000 each: 2,000 held at once (each alone passed before)
        let m = limit_error(run("sum_over_time(x[100s]) + on(i) sum_over_time(x[100s])"));
        assert_eq!(
            m,
            "query processing would load too many samples into memory in query execution: more than the limit of 1500 samples"
        );
        // a subquery keeps its points: 10 series × 200 steps (each step finds a sample within
        // the lookback)
        let m = limit_error(engine.instant(
            &storage,
            &parse("max_over_time(x[200s:1s])").unwrap(),
            199_000,
        ));
        assert!(m.contains("limit of 1500 samples"), "{m}");
        // a range query keeps its result: 10 series × 200 steps
        let m = limit_error(engine.range(&storage, &parse("x").unwrap(), 0, 199_000, 1_000));
        assert!(m.contains("limit of 1500 samples"), "{m}");
        // the samples a subquery step loads are released after it: 10 × 100 steps kept, each step
        // loading 10 × 20
        assert!(run("max_over_time(sum_over_time(x[20s])[100s:1s])").is_ok());
    }

    #[test]
    fn regex_matchers_over_the_nested_repetition_limit_are_refused_at_compile() {
        let engine = Engine::default();
        let storage = storage();
        let started = Instant::now();
        for q in [
            r#"x{i=~"(a{1,100}){1,100}b"}"#,
            r#"x{i!~"(a{1,100}){1,100}b"}"#,
            r#"label_replace(x, "y", "$1", "i", "(a{1,100}){1,100}b")"#,
        ] {
            match engine.instant(&storage, &parse(q).unwrap(), 99_000) {
                Err(QueryError::Eval(m)) => {
                    assert!(m.contains("more than the limit of 1000 times"), "{q}: {m}")
                }
                other => panic!("{q}: expected a refusal, got {other:?}"),
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            engine
                .instant(
                    &storage,
                    &parse(r#"x{i=~"(1{1,10}){1,100}|2"}"#).unwrap(),
                    99_000
                )
                .is_ok()
        );
    }
}
