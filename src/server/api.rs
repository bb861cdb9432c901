//! The read side of `/api/v1/`: `query` and `query_range` (Prometheus's parameters, response
//! shape, error types and status codes), `rules` and `targets` (Prometheus's shapes plus tocsin's
//! fields) and `status`. Store reads and query evaluation run under `spawn_blocking`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde_json::{Value as Json_, json};

use super::{ApiError, AppState, api_error, body_or_refusal};
use crate::promql::json::{labels_map, value_json};
use crate::promql::{Cancel, CancelReason, QueryError, Value, format_float};
use crate::rules::tracker::{Alert, AlertStatus};
use crate::rules::{Rule, RuleKind};
use crate::timefmt::format_rfc3339;

/// Most points per series a range query may return (Prometheus's limit).
pub const MAX_POINTS: i64 = 11_000;

/// A query's time limit when it gives no `timeout` (Prometheus's `query.timeout` default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Most API queries evaluated at once (Prometheus's `--query.max-concurrency` default). A
/// request over it waits for a slot, as in Prometheus's query queue, and the wait counts against
/// its `timeout` (503 `timeout` when no slot frees in time). A constant, not a setting: the
/// configuration has no knob for it yet. Rule evaluations do not take slots.
pub const MAX_CONCURRENT_QUERIES: usize = 20;

/// What bounds and stops API queries: the slots of [`MAX_CONCURRENT_QUERIES`] and the root
/// cancellation token the daemon's shutdown trips. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct QueryLimits {
    /// one permit per query being evaluated; the evaluation's thread holds it to its end, so
    /// the slots count threads really busy, not requests answered
    slots: Arc<tokio::sync::Semaphore>,
    /// every query's token is a child of this one: [`QueryLimits::shutdown`] stops them all
    root: Cancel,
    /// the threads queries are evaluated on, one per slot
    pool: Arc<QueryPool>,
}

type Job = Box<dyn FnOnce() + Send>;

/// The threads API queries run on: started at the first query, one per slot, each at
/// [`crate::sys::QUERY_NICE`], so under a burst of heavy queries the rule evaluations (on the
/// runtime's blocking threads, nice 0) keep their CPU: measured by `benches/chaos.py`'s api
/// phase (missed iterations of the 1 s group). Not the runtime's blocking pool, whose threads
/// also run evaluations (a thread's nice value can be raised but not lowered back). The stack
/// is the daemon's [`crate::daemon::THREAD_STACK_BYTES`], as deep expressions need.
#[derive(Debug)]
struct QueryPool {
    threads: usize,
    queue: std::sync::OnceLock<std::sync::mpsc::Sender<Job>>,
}

impl QueryPool {
    fn run(&self, job: Job) -> bool {
        let tx = self.queue.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Job>();
            let rx = Arc::new(std::sync::Mutex::new(rx));
            for i in 0..self.threads {
                let rx = rx.clone();
                let started = std::thread::Builder::new()
                    .name(format!("tocsin-query-{i}"))
                    .stack_size(crate::daemon::THREAD_STACK_BYTES)
                    .spawn(move || {
                        crate::sys::lower_thread_priority(crate::sys::QUERY_NICE);
                        loop {
                            let job = match rx.lock() {
                                Ok(rx) => rx.recv(),
                                Err(_) => return,
                            };
                            let Ok(job) = job else { return };
                            // a panic is the job's (its answer channel drops: a 500); the
                            // thread goes on
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                    });
                if let Err(e) = started {
                    tracing::error!(error = %e, "cannot start a query thread");
                }
            }
            tx
        });
        tx.send(job).is_ok()
    }
}

impl QueryLimits {
    /// At most `max_concurrent` queries evaluated at once.
    pub fn new(max_concurrent: usize) -> Self {
        QueryLimits {
            slots: Arc::new(tokio::sync::Semaphore::new(max_concurrent)),
            root: Cancel::new(),
            pool: Arc::new(QueryPool {
                threads: max_concurrent.max(1),
                queue: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Cancels every query in flight and every later one (the daemon is stopping): their
    /// blocking threads end within a few evaluation steps, so the runtime's shutdown does not
    /// wait for them.
    pub fn shutdown(&self) {
        self.root.cancel(CancelReason::ShuttingDown);
    }

    /// Slots free now (for tests and self-observation).
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits::new(MAX_CONCURRENT_QUERIES)
    }
}

/// Cancels a query's token when the handler's future ends, whatever the way: after the answer
/// (harmless), or when the client went away and axum dropped the future mid-evaluation.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel(CancelReason::Abandoned);
    }
}

/// What Prometheus shows for a time that never happened (a target never scraped).
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Parameters of a request: the URL's query string, then a form body; repeated names kept.
pub(super) fn params(query: Option<&str>, form: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    if let Some(q) = query {
        out.extend(url::form_urlencoded::parse(q.as_bytes()).into_owned());
    }
    out.extend(url::form_urlencoded::parse(form).into_owned());
    out
}

pub(super) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn bad_data(msg: impl Into<String>) -> ApiError {
    ApiError::bad_data(msg)
}

/// The parameters of a GET or form POST: a body must be `application/x-www-form-urlencoded`.
pub(super) fn request_params(
    q: Option<&str>,
    headers: &HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Vec<(String, String)>, ApiError> {
    let body = body_or_refusal(body)?;
    if !body.is_empty() {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.starts_with("application/x-www-form-urlencoded") {
            return Err(ApiError {
                code: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                kind: "bad_data",
                message: format!(
                    "unsupported content type {ct:?}: expected application/x-www-form-urlencoded"
                ),
            });
        }
    }
    Ok(params(q, &body))
}

/// A time parameter: unix seconds or RFC 3339, in ms.
pub(super) fn time_param(params: &[(String, String)], name: &str) -> Result<Option<i64>, ApiError> {
    param(params, name)
        .map(|v| {
            crate::timefmt::parse_time(v).map_err(|_| {
                bad_data(format!(
                    "invalid parameter {name:?}: cannot parse {v:?} to a valid timestamp"
                ))
            })
        })
        .transpose()
}

/// A duration parameter: float seconds or Prometheus notation (`15s`, `1m30s`), in ms.
fn duration_param(params: &[(String, String)], name: &str) -> Result<Option<i64>, ApiError> {
    param(params, name)
        .map(|v| {
            let err = || {
                bad_data(format!(
                    "invalid parameter {name:?}: cannot parse {v:?} to a valid duration"
                ))
            };
            if let Ok(secs) = v.parse::<f64>() {
                let ms = (secs * 1000.0).round();
                if !ms.is_finite() || ms.abs() > i64::MAX as f64 / 2.0 {
                    return Err(err());
                }
                return Ok(ms as i64);
            }
            crate::duration::PromDuration::parse(v)
                .map(|d| d.as_millis())
                .map_err(|_| err())
        })
        .transpose()
}

/// The parsed expression, or the refusal of a missing or invalid one. A regex matcher that
/// [`crate::labels::compile_regex`] refuses (syntax, size, nested repetitions over 1,000) is
/// refused here too: Prometheus compiles matchers when it parses, so a bad one is a 400
/// `bad_data`, not an evaluation error.
fn expr_param(params: &[(String, String)]) -> Result<promql_parser::parser::Expr, ApiError> {
    let q = param(params, "query").unwrap_or("");
    if q.trim().is_empty() {
        return Err(bad_data("invalid parameter \"query\": empty query"));
    }
    let expr = crate::promql::parse(q)
        .map_err(|e| bad_data(format!("invalid parameter \"query\": {e}")))?;
    promql_parser::util::walk_expr(&mut RegexCheck, &expr)
        .map_err(|e| bad_data(format!("invalid parameter \"query\": {e}")))?;
    Ok(expr)
}

/// Compiles every regex matcher of the selectors it visits, as the engine will.
struct RegexCheck;

impl promql_parser::util::ExprVisitor for RegexCheck {
    type Error = String;

    fn pre_visit(&mut self, e: &promql_parser::parser::Expr) -> Result<bool, String> {
        use promql_parser::label::MatchOp;
        use promql_parser::parser::Expr;
        let matchers = match e {
            Expr::VectorSelector(v) => &v.matchers,
            Expr::MatrixSelector(m) => &m.vs.matchers,
            _ => return Ok(true),
        };
        let all = matchers
            .matchers
            .iter()
            .chain(matchers.or_matchers.iter().flatten());
        for m in all {
            if matches!(m.op, MatchOp::Re(_) | MatchOp::NotRe(_))
                && let Err(err) = crate::labels::compile_regex(&m.value)
            {
                return Err(format!(
                    "invalid regular expression in matcher {}{}{:?}: {err}",
                    m.name, m.op, m.value
                ));
            }
        }
        Ok(true)
    }
}

/// Runs `f` (an evaluation, given its cancellation token) on a blocking thread within `timeout`,
/// answering in Prometheus's shape; `t` is the evaluation time of an instant query. The timeout
/// covers waiting for a slot ([`MAX_CONCURRENT_QUERIES`]) and the evaluation; when it fires the
/// query's token is tripped, so the blocking thread stops within a few evaluation steps and
/// gives its slot back.
async fn run_query(
    limits: &QueryLimits,
    timeout_ms: i64,
    t: Option<i64>,
    f: impl FnOnce(&Cancel) -> Result<Value, QueryError> + Send + 'static,
) -> Response {
    let timeout = Duration::from_millis(timeout_ms.max(0) as u64);
    let deadline = tokio::time::Instant::now() + timeout;
    let cancel = CancelOnDrop(limits.root.child());
    let permit = match tokio::time::timeout_at(deadline, limits.slots.clone().acquire_owned()).await
    {
        Ok(Ok(permit)) => permit,
        // the slots are never closed; answered as shutting down all the same
        Ok(Err(_)) => return cancelled(CancelReason::ShuttingDown),
        Err(_) => return cancelled(CancelReason::TimedOut(timeout)),
    };
    if let Some(reason) = cancel.0.reason() {
        return cancelled(reason);
    }
    let token = cancel.0.clone();
    let (tx, task) = tokio::sync::oneshot::channel();
    let queued = limits.pool.run(Box::new(move || {
        let result = f(&token);
        // the slot is free before the answer is
        drop(permit);
        let _ = tx.send(result);
    }));
    if !queued {
        return api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no query thread is running",
        );
    }
    match tokio::time::timeout_at(deadline, task).await {
        Err(_) => {
            cancel.0.cancel(CancelReason::TimedOut(timeout));
            cancelled(CancelReason::TimedOut(timeout))
        }
        Ok(Err(_)) => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the query's evaluation panicked",
        ),
        Ok(Ok(Err(QueryError::Cancelled(reason)))) => cancelled(reason),
        Ok(Ok(Err(QueryError::Storage(e)))) => {
            api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e)
        }
        Ok(Ok(Err(QueryError::Parse { message, .. }))) => bad_data(message).into_response(),
        Ok(Ok(Err(QueryError::Eval(e)))) if e.starts_with("invalid expression type") => {
            bad_data(e).into_response()
        }
        Ok(Ok(Err(e))) => api_error(StatusCode::UNPROCESSABLE_ENTITY, "execution", e.to_string()),
        Ok(Ok(Ok(v))) => {
            Json(json!({"status": "success", "data": value_json(&v, t)})).into_response()
        }
    }
}

/// A cancelled query's answer: 503, Prometheus's `timeout` or `canceled` error type.
fn cancelled(reason: CancelReason) -> Response {
    let kind = match reason {
        CancelReason::TimedOut(_) | CancelReason::GroupBudget(_) => "timeout",
        CancelReason::ShuttingDown | CancelReason::Abandoned => "canceled",
    };
    api_error(StatusCode::SERVICE_UNAVAILABLE, kind, reason.to_string())
}

/// What both query endpoints read first: the parameters (query string and form body) and the
/// parsed `query`.
fn query_request(
    q: Option<&str>,
    headers: &HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<(Vec<(String, String)>, promql_parser::parser::Expr), ApiError> {
    let params = request_params(q, headers, body)?;
    let expr = expr_param(&params)?;
    Ok((params, expr))
}

/// `timeout`, default [`DEFAULT_TIMEOUT`] (ms).
fn timeout_param(params: &[(String, String)]) -> Result<i64, ApiError> {
    Ok(duration_param(params, "timeout")?.unwrap_or(DEFAULT_TIMEOUT.as_millis() as i64))
}

/// `GET|POST /api/v1/query`: `query`, `time` (default now), `timeout`.
pub(super) async fn query(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (params, expr) = query_request(q.as_deref(), &headers, body)?;
    let t = time_param(&params, "time")?.unwrap_or_else(|| s.clock.now_ms());
    let timeout = timeout_param(&params)?;
    let Some(store) = s.store.clone() else {
        return Ok(api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no store",
        ));
    };
    let engine = s.engine.clone();
    Ok(run_query(&s.queries, timeout, Some(t), move |cancel| {
        engine.instant_cancellable(store.as_ref(), &expr, t, Some(cancel))
    })
    .await)
}

/// `GET|POST /api/v1/query_range`: `query`, `start`, `end`, `step`, `timeout`.
pub(super) async fn query_range(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (params, expr) = query_request(q.as_deref(), &headers, body)?;
    // a malformed start or end is reported before a missing one
    let (start, end) = (time_param(&params, "start"), time_param(&params, "end"));
    let (start, end) = (start?, end?);
    let start = start.ok_or_else(|| bad_data("invalid parameter \"start\": missing"))?;
    let end = end.ok_or_else(|| bad_data("invalid parameter \"end\": missing"))?;
    if end < start {
        return Err(bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let step = duration_param(&params, "step")?
        .ok_or_else(|| bad_data("invalid parameter \"step\": missing"))?;
    if step <= 0 {
        return Err(bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let timeout = timeout_param(&params)?;
    let Some(store) = s.store.clone() else {
        return Ok(api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no store",
        ));
    };
    let engine = s.engine.clone();
    Ok(run_query(&s.queries, timeout, None, move |cancel| {
        engine.range_cancellable(store.as_ref(), &expr, start, end, step, Some(cancel))
    })
    .await)
}

/// One alert as `/api/v1/alerts` and `/api/v1/rules` show it.
pub(super) fn alert_json(a: &Alert) -> Json_ {
    json!({
        "labels": labels_map(&a.labels),
        "annotations": a.annotations,
        "state": a.status.as_str(),
        "activeAt": format_rfc3339(a.active_at),
        "firedAt": a.fired_at.map(format_rfc3339),
        "value": format_float(a.value),
        "flapping": a.flapping,
    })
}

fn templates_json(t: &[(String, std::sync::Arc<crate::rules::template::Template>)]) -> Json_ {
    json!(
        t.iter()
            .map(|(k, v)| (k.as_str(), v.source()))
            .collect::<BTreeMap<_, _>>()
    )
}

/// What the store holds of one rule: its last evaluations and transitions, newest first.
type RuleHistory = (
    Vec<crate::store::RuleEval>,
    Vec<crate::store::RuleTransition>,
);

fn rule_json(rule: &Rule, alerts: &[Alert], history: &RuleHistory, warnings: &[String]) -> Json_ {
    let (evals, transitions) = history;
    let last = evals.first();
    let mut v = json!({
        "name": rule.name,
        "warnings": warnings,
        "query": rule.condition.text(),
        "language": match rule.condition {
            crate::rules::Condition::PromQL { .. } => "promql",
            crate::rules::Condition::Script { .. } => "rhai",
        },
        "labels": templates_json(&rule.labels),
        "health": match last {
            None => "unknown",
            Some(e) if e.error.is_some() => "err",
            Some(_) => "ok",
        },
        "lastError": last.and_then(|e| e.error.clone()).unwrap_or_default(),
        "lastEvaluation": last.map_or_else(|| ZERO_TIME.to_string(), |e| format_rfc3339(e.t)),
        "evaluationTime": last.map_or(0.0, |e| e.duration_s),
        "dryRun": rule.dry_run,
        "evaluations": evals.iter().map(|e| json!({
            "t": format_rfc3339(e.t),
            "duration": e.duration_s,
            "results": e.results,
            "error": e.error,
        })).collect::<Vec<_>>(),
    });
    match &rule.kind {
        RuleKind::Record => v["type"] = json!("recording"),
        RuleKind::Alert {
            hold,
            keep_firing_for,
            annotations,
            ..
        } => {
            let state = if alerts.iter().any(|a| a.status == AlertStatus::Firing) {
                "firing"
            } else if alerts.iter().any(|a| a.status == AlertStatus::Pending) {
                "pending"
            } else {
                "inactive"
            };
            v["type"] = json!("alerting");
            v["duration"] = json!(*hold as f64 / 1000.0);
            v["keepFiringFor"] = json!(*keep_firing_for as f64 / 1000.0);
            v["annotations"] = templates_json(annotations);
            v["state"] = json!(state);
            v["alerts"] = json!(
                alerts
                    .iter()
                    .filter(|a| a.is_active())
                    .map(alert_json)
                    .collect::<Vec<_>>()
            );
            v["transitions"] = json!(
                transitions
                    .iter()
                    .map(|t| json!({
                        "t": format_rfc3339(t.t),
                        "fingerprint": crate::labels::format_fingerprint(t.fingerprint),
                        "labels": t.labels,
                        "from": t.from,
                        "to": t.to,
                        "flapping": t.flapping,
                    }))
                    .collect::<Vec<_>>()
            );
        }
    }
    v
}

/// `GET /api/v1/rules`: Prometheus's groups and rules, each rule with its last evaluations and
/// (alerting rules) its alert state transitions from the store. `type=alert|record` filters.
pub(super) async fn rules(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let params = params(q.as_deref(), &[]);
    let want = match param(&params, "type") {
        None => None,
        Some("alert") => Some(true),
        Some("record") => Some(false),
        Some(other) => {
            return bad_data(format!(
                "invalid parameter \"type\": {other:?} is not alert or record"
            ))
            .into_response();
        }
    };
    let Some(manager) = s.rules.clone() else {
        return Json(json!({"status": "success", "data": {"groups": []}})).into_response();
    };
    let set = manager.rules();
    let alerts = manager.alerts_by_rule();
    let warnings = manager.warnings_by_rule();
    let keys: Vec<String> = set
        .groups
        .iter()
        .flat_map(|g| g.rules.iter().map(|r| r.key.clone()))
        .collect();
    let history = match s.store.clone() {
        None => Ok(BTreeMap::new()),
        Some(store) => tokio::task::spawn_blocking(move || {
            let mut out = BTreeMap::new();
            for k in keys {
                let evals = store.rule_evals(&k)?;
                let transitions = store.rule_transitions(&k)?;
                out.insert(k, (evals, transitions));
            }
            Ok::<_, crate::store::StoreError>(out)
        })
        .await
        .unwrap_or_else(|e| Ok(panic_history(e))),
    };
    let history = match history {
        Ok(h) => h,
        Err(e) => {
            return api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string());
        }
    };
    let empty: RuleHistory = Default::default();
    // Prometheus's filters: each repeated parameter is a set of names; given, only those
    let set_of = |name: &str| -> Vec<&str> {
        params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let (names, group_names, files) = (
        set_of("rule_name[]"),
        set_of("rule_group[]"),
        set_of("file[]"),
    );
    let filtered = !(names.is_empty() && group_names.is_empty() && files.is_empty());
    let groups: Vec<Json_> = set
        .groups
        .iter()
        .filter(|g| group_names.is_empty() || group_names.contains(&g.name.as_str()))
        .filter(|g| files.is_empty() || files.contains(&g.file.display().to_string().as_str()))
        .filter_map(|g| {
            let rules: Vec<Json_> = g
                .rules
                .iter()
                .filter(|r| want.is_none_or(|a| r.is_alert() == a))
                .filter(|r| names.is_empty() || names.contains(&r.name.as_str()))
                .map(|r| {
                    let h = history.get(&r.key).unwrap_or(&empty);
                    rule_json(
                        r,
                        alerts.get(&r.key).map_or(&[], |v| v),
                        h,
                        warnings.get(&r.key).map_or(&[], |v| v),
                    )
                })
                .collect();
            let latest: Vec<&crate::store::RuleEval> = g
                .rules
                .iter()
                .filter_map(|r| history.get(&r.key).and_then(|h| h.0.first()))
                .collect();
            let last_t = latest.iter().map(|e| e.t).max();
            // with filters, groups left without rules are left out (as Prometheus)
            (!filtered || !rules.is_empty()).then(|| json!({
                "name": g.name,
                "file": g.file.display().to_string(),
                "interval": g.interval_ms as f64 / 1000.0,
                "limit": g.limit,
                "datasource": g.datasource.as_ref().map(|d| d.name.as_str()),
                "rules": rules,
                "lastEvaluation": last_t.map_or_else(|| ZERO_TIME.to_string(), format_rfc3339),
                "evaluationTime": latest.iter().filter(|e| Some(e.t) == last_t).map(|e| e.duration_s).sum::<f64>(),
            }))
        })
        .collect();
    Json(json!({"status": "success", "data": {"groups": groups}})).into_response()
}

/// A panicked store read answers as no history (logged): the rules themselves are still worth showing.
fn panic_history(e: tokio::task::JoinError) -> BTreeMap<String, RuleHistory> {
    tracing::error!(error = %e, "reading rule history panicked");
    BTreeMap::new()
}

/// `GET /api/v1/targets`: Prometheus's `activeTargets` (one per scraped endpoint: a target's
/// metrics and health endpoints are two) plus tocsin's `kind` and `samples`, `droppedTargets`
/// (discovered addresses relabelling dropped, at most [`crate::ingest::sd::KEEP_DROPPED_TARGETS`])
/// and `droppedTargetCounts` (per target, whole), as Prometheus 2.47+ answers.
pub(super) async fn targets(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let params = params(q.as_deref(), &[]);
    // Prometheus's `state`: discovered addresses relabelling dropped are listed as dropped
    let (active_wanted, dropped_wanted) = match param(&params, "state") {
        None | Some("any") => (true, true),
        Some("active") => (true, false),
        Some("dropped") => (false, true),
        Some(other) => {
            return bad_data(format!(
                "invalid parameter \"state\": {other:?} is not active, dropped or any"
            ))
            .into_response();
        }
    };
    let endpoints: Vec<_> = s
        .status
        .endpoints
        .read()
        .expect("status lock")
        .values()
        .filter(|_| active_wanted)
        .cloned()
        .collect();
    let active: Vec<Json_> = endpoints
        .iter()
        .map(|e| {
            let labels: BTreeMap<&str, &str> = e
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            json!({
                "discoveredLabels": labels,
                "labels": labels,
                "scrapePool": e.target,
                "scrapeUrl": e.url,
                "globalUrl": e.url,
                "lastError": e.last_error.clone().unwrap_or_default(),
                "lastScrape": e.last_scrape_ms.map_or_else(|| ZERO_TIME.to_string(), format_rfc3339),
                "lastScrapeDuration": e.last_duration_seconds.unwrap_or(0.0),
                "health": match e.up {
                    None => "unknown",
                    Some(true) => "up",
                    Some(false) => "down",
                },
                "scrapeInterval": crate::duration::PromDuration(Duration::from_secs_f64(e.interval_seconds)).to_string(),
                "kind": e.kind,
                "samples": e.samples,
                "degraded": e.degraded,
                "checks": e.checks.iter().map(|(name, ok, text)| json!({
                    "name": name,
                    "ok": ok,
                    "text": text,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let (dropped, dropped_counts) = {
        let d = s.status.dropped.read().expect("status lock");
        let list: Vec<Json_> =
            d.0.iter()
                .filter(|_| dropped_wanted)
                .map(|t| json!({"discoveredLabels": t.discovered_labels, "scrapePool": t.target}))
                .collect();
        (list, d.1.clone())
    };
    Json(json!({"status": "success", "data": {
        "activeTargets": active,
        "droppedTargets": dropped,
        "droppedTargetCounts": dropped_counts,
    }}))
    .into_response()
}

/// `GET /api/v1/status`: uptime, startup progress, reload history, build information.
pub(super) async fn status(State(s): State<AppState>) -> Response {
    let now = s.clock.now_ms();
    let (endpoints, scraped) = {
        let e = s.status.endpoints.read().expect("status lock");
        (
            e.len(),
            e.values().filter(|x| x.last_scrape_ms.is_some()).count(),
        )
    };
    let reloads = s.reloads.recent();
    let rules_loaded = reloads.iter().any(|r| r.ok);
    let (groups_evaluated, groups, rules) = match &s.rules {
        Some(m) => {
            let (done, total) = m.groups_evaluated();
            (done, total, m.rules().rule_count())
        }
        None => (0, 0, 0),
    };
    let last_flush = s.status.last_flush_ms.load(Ordering::SeqCst);
    let rule_files = s.rules.as_ref().map_or(&[][..], |m| m.rule_patterns());
    let notifications_enabled = s.rules.as_ref().is_some_and(|m| m.notifier().is_some());
    Json(json!({
        "status": "success",
        "data": {
            "startTime": format_rfc3339(s.started_ms),
            "uptimeSeconds": (now - s.started_ms) as f64 / 1000.0,
            "build": {
                "version": env!("CARGO_PKG_VERSION"),
                "gitHash": option_env!("TOCSIN_GIT_HASH").unwrap_or("unknown"),
            },
            "startup": {
                "scrapeLoopRunning": s.status.running.load(Ordering::SeqCst),
                "endpoints": endpoints,
                "endpointsScraped": scraped,
                "firstScrapeDone": scraped == endpoints,
                "rulesLoaded": rules_loaded,
                "ruleGroups": groups,
                "rules": rules,
                "ruleGroupsEvaluated": groups_evaluated,
                "firstEvaluationDone": rules_loaded && groups_evaluated == groups,
            },
            "reloads": reloads.iter().map(|r| json!({
                "time": format_rfc3339(r.t),
                "cause": r.cause,
                "success": r.ok,
                "errors": r.errors,
                "needsRestart": r.needs_restart,
            })).collect::<Vec<_>>(),
            "ruleFiles": rule_files,
            "notifications": {"enabled": notifications_enabled},
            "targetSet": *s.status.last_target_diff.read().expect("status lock"),
            "discovery": s.status.discovery.read().expect("status lock").values().map(|d| json!({
                "target": d.target,
                "mechanism": d.mechanism,
                "source": d.source,
                "lastRefresh": d.last_refresh_ms.map(format_rfc3339),
                "lastError": d.last_error,
                "targets": d.targets,
            })).collect::<Vec<_>>(),
            "store": {
                "path": s.store_path,
                "ok": s.status.store_ok.load(Ordering::SeqCst),
                "lastFlush": (last_flush > 0).then(|| format_rfc3339(last_flush)),
                "lastFlushError": *s.status.last_flush_error.read().expect("status lock"),
            },
        }
    }))
    .into_response()
}

/// `GET /api/v1/notifications`: the notification history, newest first: deliveries, permanent
/// failures and shadow (dry-run) notifications, each with the notification as queued.
/// `status=delivered|failed|shadow` filters, `limit` (default 100, at most 1000) bounds.
pub(super) async fn notifications(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let params = params(q.as_deref(), &[]);
    let status = match param(&params, "status") {
        None => None,
        Some(v @ ("delivered" | "failed" | "shadow")) => Some(v.to_string()),
        Some(other) => {
            return bad_data(format!(
                "invalid parameter \"status\": {other:?} is not delivered, failed or shadow"
            ))
            .into_response();
        }
    };
    let limit = match param(&params, "limit").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return bad_data("invalid parameter \"limit\": expected 1 to 1000").into_response();
        }
    };
    let Some(store) = s.store.clone() else {
        return Json(json!({"status": "success", "data": []})).into_response();
    };
    let rows = tokio::task::spawn_blocking(move || store.sent(limit, status.as_deref())).await;
    let rows = match rows {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => {
            return api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string());
        }
        Err(e) => {
            return api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string());
        }
    };
    let data: Vec<Json_> = rows
        .into_iter()
        .map(|r| {
            let n = crate::notify::Notification::from_json(&r.payload)
                .inspect_err(|e| {
                    tracing::warn!(
                        integration = r.integration,
                        group = r.group_key,
                        idempotency_key = r.idempotency_key,
                        error = %e,
                        "unreadable notification history payload"
                    )
                })
                .ok();
            let subject = n
                .as_ref()
                .map(|n| crate::notify::email::render(n).subject)
                .unwrap_or_default();
            json!({
                "at": format_rfc3339(r.at),
                "status": r.status,
                "integration": r.integration,
                "receiver": n.as_ref().map(|n| n.receiver.clone()),
                "groupKey": r.group_key,
                "idempotencyKey": r.idempotency_key,
                "error": r.error,
                "subject": subject,
                "reason": n.as_ref().map(|n| n.change.as_str()),
                "alerts": n.as_ref().map(|n| n.alerts.iter().map(|a| json!({
                    "status": a.status.as_str(),
                    "labels": labels_map(&a.labels),
                    "annotations": a.annotations,
                })).collect::<Vec<_>>()).unwrap_or_default(),
            })
        })
        .collect();
    Json(json!({"status": "success", "data": data})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's nice value (`/proc/thread-self/stat`, field 19).
    fn thread_nice() -> Option<i64> {
        let s = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        let after = &s[s.rfind(')')? + 1..];
        after.split_ascii_whitespace().nth(16)?.parse().ok()
    }

    #[tokio::test]
    async fn queries_run_below_the_priority_of_rule_evaluations_and_survive_a_panic() {
        if thread_nice().is_none() {
            eprintln!("skipping: no /proc/thread-self (not Linux)");
            return;
        }
        let limits = QueryLimits::new(1);
        let (tx, rx) = std::sync::mpsc::channel();
        let resp = run_query(&limits, 5_000, Some(0), move |_| {
            tx.send(thread_nice()).unwrap();
            Ok(Value::Scalar(1.0))
        })
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let own = thread_nice().unwrap();
        let query = rx.recv().unwrap().unwrap();
        assert_eq!(query, (own + i64::from(crate::sys::QUERY_NICE)).min(19));
        // a panicking evaluation is a 500, and the one thread keeps serving
        let resp = run_query(&limits, 5_000, Some(0), |_| panic!("boom")).await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let resp = run_query(&limits, 5_000, Some(0), |_| Ok(Value::Scalar(2.0))).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(limits.available(), 1);
    }
}
