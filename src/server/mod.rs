//! The HTTP surface (axum): liveness, readiness, status, self-metrics, and the JSON API under
//! `/api/v1/` (alerts, rules, targets, silences, query, query_range, labels, label values, series,
//! status, its OpenAPI document).
//!
//! Every route is one entry of [`routes`]: the router is built from that list and the test of the
//! OpenAPI document (`openapi.json`, served at `/api/v1/openapi.json`) compares it with the same
//! list, so a route cannot be added without documenting it. Each route has an [`Access`] level,
//! checked before the handler runs: writes need `server.api_token_env`'s token, reads need
//! `server.api_read_token_env`'s (or the write token) when one is configured.
//!
//! Handlers never touch SQLite on the async runtime: the [`StatusBoard`], the self-metrics and the
//! rule manager are memory; store reads and queries run under `spawn_blocking`.

mod amv2;
mod api;
mod meta;

pub use api::{MAX_CONCURRENT_QUERIES, MAX_POINTS, QueryLimits};

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::handler::Handler;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{MethodFilter, MethodRouter};
use serde_json::json;

use crate::clock::Clock;
use crate::ingest::scheduler::StatusBoard;
use crate::selfmetrics::SelfMetrics;

/// The OpenAPI 3.0 document of every route, served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Largest request body accepted (silences, query forms): larger ones get 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub status: Arc<StatusBoard>,
    pub metrics: Arc<SelfMetrics>,
    pub clock: Arc<dyn Clock>,
    pub started_ms: i64,
    pub store_path: String,
    /// where `POST /-/reload` sends its request (None: rules not running)
    pub reload: Option<tokio::sync::mpsc::Sender<crate::daemon::reload::ReloadRequest>>,
    /// the last reloads, for `/api/v1/status`
    pub reloads: Arc<crate::daemon::reload::ReloadHistory>,
    pub rules: Option<Arc<crate::rules::manager::RuleManager>>,
    pub silences: Option<Arc<crate::notify::silence::Silences>>,
    /// the store `query`, `query_range` and `rules` read (None: those answer 503)
    pub store: Option<Arc<crate::store::Store>>,
    /// the engine API queries run on
    pub engine: crate::promql::Engine,
    /// the slots API queries wait for and the token shutdown cancels them with
    pub queries: QueryLimits,
    /// bearer token API writes need (None: writes are refused unless no token is configured,
    /// see `server.api_token_env`)
    pub api_token: Option<String>,
    /// bearer token API reads need besides the write token (None: reads are open, see
    /// `server.api_read_token_env`)
    pub read_token: Option<String>,
    /// where pushed bodies and heartbeat check-ins go (None: those routes answer 503)
    pub push: Option<Arc<crate::ingest::push::Push>>,
    /// the largest pushed body (`server.push_body_size_limit`); larger ones get 413
    pub push_body_limit: u64,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// anyone: probes, self-metrics, the API description
    Open,
    /// anyone unless `server.api_read_token_env` is set, then that token or the write token
    Read,
    /// the bearer token of `server.api_token_env` (anyone when none is configured)
    Write,
}

/// One route: method, path (axum's syntax, which is OpenAPI's: `/api/v1/silences/{id}`), access
/// and handler.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    handler: MethodRouter<AppState>,
}

fn route<H, T>(method: Method, path: &'static str, access: Access, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a routable method");
    Route {
        method,
        path,
        access,
        handler: axum::routing::on(filter, handler),
    }
}

/// Every route the server answers: the one list the router is built from and the OpenAPI
/// document is checked against.
pub fn routes() -> Vec<Route> {
    use Access::{Open, Read, Write};
    vec![
        route(Method::GET, "/health/live", Open, live),
        route(Method::GET, "/health/ready", Open, ready),
        route(Method::GET, "/metrics", Open, metrics),
        route(Method::GET, "/-/healthy", Open, healthy),
        route(Method::GET, "/-/ready", Open, ready_text),
        route(Method::GET, "/status", Read, status),
        route(Method::POST, "/-/reload", Write, reload),
        route(Method::GET, "/api/v1/alerts", Read, alerts),
        route(Method::GET, "/api/v1/rules", Read, api::rules),
        route(Method::GET, "/api/v1/targets", Read, api::targets),
        route(Method::GET, "/api/v1/silences", Read, list_silences),
        route(Method::POST, "/api/v1/silences", Write, post_silence),
        route(
            Method::DELETE,
            "/api/v1/silences/{id}",
            Write,
            delete_silence,
        ),
        route(Method::GET, "/api/v1/query", Read, api::query),
        route(Method::POST, "/api/v1/query", Read, api::query),
        route(Method::GET, "/api/v1/query_range", Read, api::query_range),
        route(Method::POST, "/api/v1/query_range", Read, api::query_range),
        route(Method::GET, "/api/v1/status", Read, api::status),
        route(Method::GET, "/api/v1/labels", Read, meta::labels),
        route(Method::POST, "/api/v1/labels", Read, meta::labels),
        route(
            Method::GET,
            "/api/v1/label/{name}/values",
            Read,
            meta::label_values,
        ),
        route(Method::GET, "/api/v1/series", Read, meta::series),
        route(Method::POST, "/api/v1/series", Read, meta::series),
        route(
            Method::GET,
            "/api/v1/notifications",
            Read,
            api::notifications,
        ),
        route(
            Method::POST,
            "/api/v1/import/prometheus",
            Write,
            import_prometheus,
        ),
        route(Method::POST, "/api/v1/heartbeat/{name}", Write, heartbeat),
        route(Method::GET, "/api/v1/openapi.json", Open, openapi),
        route(Method::GET, "/api/v2/status", Read, amv2::status),
        route(Method::GET, "/api/v2/receivers", Read, amv2::receivers),
        route(Method::GET, "/api/v2/alerts", Read, amv2::alerts),
        route(Method::POST, "/api/v2/alerts", Write, amv2::post_alerts),
        route(
            Method::GET,
            "/api/v2/alerts/groups",
            Read,
            amv2::alert_groups,
        ),
        route(Method::GET, "/api/v2/silences", Read, amv2::silences),
        route(Method::POST, "/api/v2/silences", Write, amv2::post_silence),
        route(Method::GET, "/api/v2/silence/{id}", Read, amv2::silence),
        route(
            Method::DELETE,
            "/api/v2/silence/{id}",
            Write,
            amv2::delete_silence,
        ),
    ]
}

/// The HTTP server of a daemon that is starting: it listens before the store opens (a store with
/// a million series takes seconds), answers `/health/live` and `/-/healthy` at once, readiness
/// and everything else 503 (`Retry-After: 1`), and hands every request to the daemon's router
/// once [`Gate::open`] gave it. Prometheus answers the same way while it replays its WAL.
#[derive(Clone, Default)]
pub struct Gate(Arc<std::sync::OnceLock<Router>>);

impl Gate {
    /// The router to serve from the start.
    pub fn router(&self) -> Router {
        let gate = self.clone();
        Router::new().fallback(move |req: axum::extract::Request| {
            let gate = gate.clone();
            async move {
                match gate.0.get() {
                    Some(app) => {
                        use tower::ServiceExt;
                        match app.clone().oneshot(req).await {
                            Ok(r) => r,
                            Err(never) => match never {},
                        }
                    }
                    None => starting(req.uri().path()).await,
                }
            }
        })
    }

    /// Serves `app` from now on (the first call wins).
    pub fn open(&self, app: Router) {
        let _ = self.0.set(app);
    }
}

/// The answers while the daemon starts (see [`Gate`]).
async fn starting(path: &str) -> Response {
    match path {
        "/health/live" => live().await.into_response(),
        "/-/healthy" => healthy().await.into_response(),
        "/health/ready" => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(json!({
                "status": "degraded",
                "checks": { "store": "opening", "scrape_loop": "not running" },
            })),
        )
            .into_response(),
        "/-/ready" => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "Service Unavailable\n",
        )
            .into_response(),
        _ => {
            let mut r = api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "tocsin is starting: the store is opening",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            r
        }
    }
}

pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for r in routes() {
        let guard = axum::middleware::from_fn_with_state((state.clone(), r.access), authorize);
        router = router.route(r.path, r.handler.route_layer(guard));
    }
    router
        .merge(crate::ui::routes())
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Compares a given token with the configured one in time that does not depend on where they
/// differ (only on the length), so the token cannot be guessed byte by byte from timings.
fn token_eq(given: &str, want: &str) -> bool {
    given.len() == want.len()
        && given
            .bytes()
            .zip(want.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Refuses a request without the token its route's [`Access`] needs.
async fn authorize(
    State((s, access)): State<(AppState, Access)>,
    req: axum::extract::Request,
    next: Next,
) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let matches = |want: &str| given.is_some_and(|g| token_eq(g, want));
    let write_ok = s.api_token.as_deref().is_none_or(matches);
    let allowed = match access {
        Access::Open => true,
        Access::Write => write_ok,
        Access::Read => match &s.read_token {
            None => true,
            Some(t) => matches(t) || (s.api_token.is_some() && write_ok),
        },
    };
    if allowed {
        next.run(req).await
    } else {
        api_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        )
    }
}

/// An error in Prometheus's API shape: `{"status":"error","errorType":…,"error":…}`.
fn api_error(code: StatusCode, error_type: &str, msg: impl Into<String>) -> Response {
    (
        code,
        Json(json!({"status": "error", "errorType": error_type, "error": msg.into()})),
    )
        .into_response()
}

/// A refused or failed API request, answered in Prometheus's error shape with its status code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// 400 for bad parameters, 413 for a body over [`BODY_LIMIT`], 422 for evaluation errors…
    pub code: StatusCode,
    /// Prometheus's `errorType`: `bad_data`, `execution`, `timeout`, `internal`, …
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    fn bad_data(message: impl Into<String>) -> ApiError {
        ApiError {
            code: StatusCode::BAD_REQUEST,
            kind: "bad_data",
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        api_error(self.code, self.kind, self.message)
    }
}

/// A request body, or the refusal of one that is too large or unreadable (413/400 with a message).
fn body_or_refusal(
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<axum::body::Bytes, ApiError> {
    body.map_err(|r| ApiError {
        code: r.status(),
        kind: "bad_data",
        message: r.body_text().to_lowercase(),
    })
}

/// How much of a pushed body over the limit is read and dropped before the 413 (see
/// [`import_prometheus`]).
pub const PUSH_DRAIN_BYTES: u64 = 8 << 20;

/// `POST /api/v1/import/prometheus`: a text-format body stored through
/// [`crate::ingest::push::Push`] (parsing and the store on a blocking thread), 204 when stored.
/// The body is read here up to `server.push_body_size_limit` (not the API's 64 KiB).
async fn import_prometheus(
    State(s): State<AppState>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Response {
    let metrics = s.metrics.clone();
    let resp = import_body(s, q, headers, body).await;
    let result = if resp.status() == StatusCode::NO_CONTENT {
        "stored"
    } else {
        "refused"
    };
    metrics
        .pushes
        .get_or_create(&crate::selfmetrics::PushLabels {
            kind: "import",
            result,
        })
        .inc();
    resp
}

async fn import_body(
    s: AppState,
    q: Option<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Response {
    use futures_util::StreamExt;
    let Some(push) = s.push.clone() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "pushes are not accepted").into_response();
    };
    let extra = match crate::ingest::push::extra_labels(q.as_deref()) {
        Ok(e) => e,
        Err(e) => return bad_request(e.to_string()),
    };
    if let Some(enc) = headers.get(header::CONTENT_ENCODING)
        && !enc.as_bytes().eq_ignore_ascii_case(b"identity")
    {
        return api_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_data",
            "unsupported content-encoding: send the body uncompressed",
        );
    }
    let limit = s.push_body_limit;
    let too_large = || {
        api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "bad_data",
            format!("body exceeds the limit of {limit} bytes (server.push_body_size_limit)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    // a body over the limit is read on and dropped up to PUSH_DRAIN_BYTES more before the 413:
    // closing a socket with unread data resets it, and the client would see the reset, not
    // the answer; a body larger than that gets its 413 at once
    let drain_then_refuse = async |stream: &mut axum::body::BodyDataStream, mut read: u64| {
        while read <= limit + PUSH_DRAIN_BYTES {
            match stream.next().await {
                Some(Ok(c)) => read += c.len() as u64,
                _ => break,
            }
        }
        too_large()
    };
    if let Some(n) = declared.filter(|&n| n > limit) {
        if n > limit + PUSH_DRAIN_BYTES {
            return too_large();
        }
        return drain_then_refuse(&mut stream, 0).await;
    }
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(limit) as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return bad_request(format!("cannot read the body: {e}")),
        };
        if bytes.len() as u64 + chunk.len() as u64 > limit {
            let read = bytes.len() as u64 + chunk.len() as u64;
            drop(bytes);
            return drain_then_refuse(&mut stream, read).await;
        }
        bytes.extend_from_slice(&chunk);
    }
    let now = s.clock.now_ms();
    let outcome = tokio::task::spawn_blocking(move || push.ingest(&bytes, &extra, now)).await;
    match outcome {
        Ok(Ok(report)) => {
            s.metrics.samples_ingested.inc_by(report.appended as u64);
            s.metrics
                .samples_out_of_order
                .inc_by(report.rejected as u64);
            tracing::debug!(samples = report.samples, appended = report.appended, rejected = report.rejected, heartbeats = ?report.heartbeats, "push stored");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Err(e)) => bad_request(e.to_string()),
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// `POST /api/v1/heartbeat/{name}`: checks in heartbeat target `name` at the request's time.
async fn heartbeat(
    State(s): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    let Some(push) = s.push.clone() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "heartbeats are not accepted",
        )
            .into_response();
    };
    let now = s.clock.now_ms();
    let known = push.heartbeats.beat(&name, now);
    s.metrics
        .pushes
        .get_or_create(&crate::selfmetrics::PushLabels {
            kind: "heartbeat",
            result: if known { "stored" } else { "refused" },
        })
        .inc();
    if known {
        Json(json!({"status": "success", "data": {
            "target": name,
            "seenAt": crate::timefmt::format_rfc3339(now),
        }}))
        .into_response()
    } else {
        let shown: String = name.chars().take(100).collect();
        api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no heartbeat target named {shown:?}"),
        )
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn live() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `/-/healthy` as Prometheus and Alertmanager answer it (for their load balancers' checks):
/// 200 and one line of text while the process serves.
async fn healthy() -> &'static str {
    "tocsin is Healthy.\n"
}

/// `/-/ready` as Prometheus answers it: 200 and one line once the store and the scrape loop
/// run, 503 before (the checks are `/health/ready`'s).
async fn ready_text(State(s): State<AppState>) -> Response {
    if s.status.store_ok.load(Ordering::SeqCst) && s.status.running.load(Ordering::SeqCst) {
        "tocsin is Ready.\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n").into_response()
    }
}

/// 200 with every check `ok`, or 503 `degraded` naming the failing checks (the seeds' shape).
async fn ready(State(s): State<AppState>) -> Response {
    let store = if s.status.store_ok.load(Ordering::SeqCst) {
        "ok".to_string()
    } else {
        s.status
            .last_flush_error
            .read()
            .expect("status lock")
            .clone()
            .unwrap_or_else(|| "store not open".into())
    };
    let scrape = if s.status.running.load(Ordering::SeqCst) {
        "ok"
    } else {
        "scrape loop not running"
    };
    let all_ok = store == "ok" && scrape == "ok";
    let body = json!({
        "status": if all_ok { "ok" } else { "degraded" },
        "checks": { "store": store, "scrape_loop": scrape },
    });
    let code = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn status(State(s): State<AppState>) -> Json<serde_json::Value> {
    let now = s.clock.now_ms();
    let endpoints: Vec<_> = s
        .status
        .endpoints
        .read()
        .expect("status lock")
        .values()
        .cloned()
        .collect();
    let last_flush = s.status.last_flush_ms.load(Ordering::SeqCst);
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": (now - s.started_ms) as f64 / 1000.0,
        "started_ms": s.started_ms,
        "store": {
            "path": s.store_path,
            "ok": s.status.store_ok.load(Ordering::SeqCst),
            "last_flush_ms": (last_flush > 0).then_some(last_flush),
            "last_flush_error": *s.status.last_flush_error.read().expect("status lock"),
        },
        "targets": endpoints,
    }))
}

async fn metrics(State(s): State<AppState>) -> Response {
    // the process metrics read /proc: a blocking thread, as every other read
    let m = s.metrics.clone();
    let text = match tokio::task::spawn_blocking(move || m.encode()).await {
        Ok(t) => t,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Reloads the rules and answers with the outcome: 200 when the new rules are in use, 500 with
/// every error when the old ones kept running (as Prometheus's `/-/reload`).
async fn reload(State(s): State<AppState>) -> Response {
    let Some(tx) = s.reload else {
        return (StatusCode::SERVICE_UNAVAILABLE, "rules are not running").into_response();
    };
    let (req, done) = crate::daemon::reload::ReloadRequest::api();
    if tx.send(req).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "reloader stopped").into_response();
    }
    match done.await {
        Ok(outcome) if outcome.ok => Json(outcome).into_response(),
        Ok(outcome) => (StatusCode::INTERNAL_SERVER_ERROR, Json(outcome)).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "reload abandoned").into_response(),
    }
}

/// Pending and firing alerts in Prometheus's `/api/v1/alerts` shape. Filters: `state=firing|pending`,
/// `filter={a="b",…}` (Alertmanager matchers; repeated filters all apply) and `match[]={…}`
/// (repeated: an alert matching any one set is kept, as Prometheus's series selectors).
async fn alerts(
    State(s): State<AppState>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    use crate::labels::parse_matchers;
    let params = api::params(q.as_deref(), &[]);
    let mut state = None;
    let mut filter = Vec::new();
    let mut any_of = Vec::new();
    for (k, v) in &params {
        match k.as_str() {
            "state" => match v.as_str() {
                "firing" | "pending" => state = Some(v.clone()),
                _ => {
                    return bad_request(format!(
                        "invalid parameter \"state\": {v:?} is not firing or pending"
                    ));
                }
            },
            "filter" => match parse_matchers(v) {
                Ok(m) => filter.extend(m),
                Err(e) => return bad_request(format!("invalid parameter \"filter\": {e}")),
            },
            "match[]" => match parse_matchers(v) {
                Ok(m) => any_of.push(m),
                Err(e) => return bad_request(format!("invalid parameter \"match[]\": {e}")),
            },
            _ => {}
        }
    }
    let list: Vec<serde_json::Value> = s
        .rules
        .map(|m| m.alerts())
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, a)| a.is_active())
        .filter(|(_, a)| state.as_deref().is_none_or(|st| a.status.as_str() == st))
        .filter(|(_, a)| filter.iter().all(|m| m.matches_labels(&a.labels)))
        .filter(|(_, a)| {
            any_of.is_empty()
                || any_of
                    .iter()
                    .any(|set| set.iter().all(|m| m.matches_labels(&a.labels)))
        })
        .map(|(group, a)| {
            let mut v = api::alert_json(&a);
            v["group"] = json!(group);
            v
        })
        .collect();
    Json(json!({"status": "success", "data": {"alerts": list}})).into_response()
}

fn bad_request(msg: impl Into<String>) -> Response {
    api_error(StatusCode::BAD_REQUEST, "bad_data", msg)
}

async fn list_silences(State(s): State<AppState>) -> Json<serde_json::Value> {
    let now = s.clock.now_ms();
    let list: Vec<serde_json::Value> = s
        .silences
        .map(|x| x.all())
        .unwrap_or_default()
        .into_iter()
        .map(|x| {
            json!({
                "id": x.id,
                "matchers": x.matchers,
                "startsAt": crate::timefmt::format_rfc3339(x.starts_at),
                "endsAt": crate::timefmt::format_rfc3339(x.ends_at),
                "createdBy": x.created_by,
                "comment": x.comment,
                "status": {"state": x.state(now)},
            })
        })
        .collect();
    Json(json!({"status": "success", "data": list}))
}

/// `POST /api/v1/silences`: Alertmanager's silence shape (`matchers` as objects or as
/// `name="value"` strings, `startsAt`/`endsAt` RFC 3339 or unix seconds, `createdBy`, `comment`,
/// optional `id` to replace one).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    #[serde(default)]
    id: String,
    matchers: Vec<MatcherInput>,
    #[serde(rename = "startsAt", default)]
    starts_at: Option<String>,
    #[serde(rename = "endsAt")]
    ends_at: String,
    #[serde(rename = "createdBy")]
    created_by: String,
    #[serde(default)]
    comment: String,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum MatcherInput {
    Text(String),
    Spec(crate::notify::silence::MatcherSpec),
}

async fn post_silence(
    State(s): State<AppState>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Response {
    let body = match body_or_refusal(body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let Some(silences) = s.silences.clone() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "silences are not available",
        )
            .into_response();
    };
    let b: SilenceBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad_request(format!("invalid silence: {e}")),
    };
    let now = s.clock.now_ms();
    let mut matchers = Vec::new();
    for m in b.matchers {
        match m {
            MatcherInput::Spec(spec) => matchers.push(spec),
            MatcherInput::Text(t) => match crate::notify::silence::MatcherSpec::parse(&t) {
                Ok(spec) => matchers.push(spec),
                Err(e) => return bad_request(e.to_string()),
            },
        }
    }
    let starts_at = match b
        .starts_at
        .as_deref()
        .map(crate::timefmt::parse_time)
        .transpose()
    {
        Ok(t) => t.unwrap_or(now),
        Err(e) => return bad_request(e.to_string()),
    };
    let ends_at = match crate::timefmt::parse_time(&b.ends_at) {
        Ok(t) => t,
        Err(e) => return bad_request(e.to_string()),
    };
    let silence = crate::notify::silence::Silence {
        id: b.id,
        matchers,
        starts_at,
        ends_at,
        created_by: b.created_by,
        comment: b.comment,
    };
    match tokio::task::spawn_blocking(move || silences.put(silence, now)).await {
        Ok(Ok(id)) => Json(json!({"status": "success", "data": {"silenceID": id}})).into_response(),
        Ok(Err(e)) => bad_request(e),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn delete_silence(
    State(s): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let Some(silences) = s.silences.clone() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "silences are not available",
        )
            .into_response();
    };
    let now = s.clock.now_ms();
    match tokio::task::spawn_blocking(move || silences.expire(&id, now)).await {
        Ok(Ok(true)) => Json(json!({"status": "success"})).into_response(),
        Ok(Ok(false)) => api_error(StatusCode::NOT_FOUND, "not_found", "no such silence"),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_compare_whole_and_exact() {
        assert!(super::token_eq("s3cret", "s3cret"));
        assert!(!super::token_eq("s3cre", "s3cret"));
        assert!(!super::token_eq("s3cres", "s3cret"));
        assert!(!super::token_eq("", "s3cret"));
    }

    use std::collections::BTreeSet;

    use axum::body::Body;
    use axum::http::Request;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;
    use crate::clock::ManualClock;
    use crate::rules::manager::{RuleConfig, RuleManager};
    use crate::store::{Store, StoreOptions};

    const T0: i64 = 1_700_000_000_000;

    fn doc() -> Value {
        serde_json::from_str(OPENAPI).expect("openapi.json is json")
    }

    fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if ["get", "post", "put", "delete", "patch", "head", "options"]
                    .contains(&method.as_str())
                {
                    out.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn the_router_serves_exactly_the_operations_the_openapi_document_lists() {
        let doc = doc();
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let served: BTreeSet<(String, String)> = routes()
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        assert_eq!(served.len(), routes().len(), "a route is listed twice");
        assert_eq!(served, documented_operations(&doc));
    }

    #[test]
    fn write_routes_are_documented_as_needing_the_bearer_token() {
        let doc = doc();
        for r in routes() {
            let op = &doc["paths"][r.path][r.method.as_str().to_lowercase()];
            let optional = op["security"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|x| x.as_object().is_some_and(|o| o.is_empty()))
            });
            assert_eq!(
                optional,
                r.access != Access::Write,
                "{} {}: security does not match its access {:?}",
                r.method,
                r.path,
                r.access
            );
        }
    }

    /// A daemon's state over a real store in `dir`, one rule group loaded and evaluated once.
    async fn state(dir: &std::path::Path) -> AppState {
        std::fs::write(
            dir.join("rules.yml"),
            "groups:\n  - name: g\n    rules:\n      - alert: Always\n        expr: vector(1)\n        labels: { severity: page }\n      - record: one\n        expr: vector(1)\n",
        )
        .unwrap();
        let store = Arc::new(Store::open(&dir.join("tocsin.db"), StoreOptions::default()).unwrap());
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(T0));
        let metrics = Arc::new(SelfMetrics::new(T0 as f64 / 1000.0));
        let manager = RuleManager::new(
            store.clone(),
            clock.clone(),
            metrics.clone(),
            RuleConfig {
                patterns: vec!["rules.yml".into()],
                base: dir.to_path_buf(),
                default_interval_ms: 60_000,
                grace: Default::default(),
                external_labels: Default::default(),
                external_url: String::new(),
                compat: Default::default(),
                datasources: Default::default(),
            },
        );
        assert!(manager.reload().await.ok);
        manager.stop().await;
        let group = manager.rules().groups[0].clone();
        let m = manager.clone();
        tokio::task::spawn_blocking(move || m.evaluate(&group, T0))
            .await
            .unwrap();
        let silences = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || {
                crate::notify::silence::Silences::load(store, T0).unwrap()
            })
            .await
            .unwrap()
        };
        let reloads = Arc::new(crate::daemon::reload::ReloadHistory::default());
        reloads.record(crate::daemon::reload::ReloadRecord {
            t: T0,
            cause: "signal",
            ok: true,
            errors: Vec::new(),
            needs_restart: Vec::new(),
        });
        let status = Arc::new(StatusBoard::default());
        status.running.store(true, Ordering::SeqCst);
        status.store_ok.store(true, Ordering::SeqCst);
        AppState {
            status,
            metrics,
            clock,
            started_ms: T0,
            store_path: "tocsin.db".into(),
            reload: None,
            reloads,
            rules: Some(manager),
            silences: Some(Arc::new(silences)),
            store: Some(store),
            engine: Default::default(),
            queries: Default::default(),
            api_token: Some("w".into()),
            read_token: None,
            push: None,
            push_body_limit: 1 << 20,
        }
    }

    /// The schema `s` with a `$ref` followed.
    fn resolve<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
        match s["$ref"].as_str() {
            Some(r) => {
                let name = r.strip_prefix("#/components/schemas/").expect("local ref");
                &doc["components"]["schemas"][name]
            }
            None => s,
        }
    }

    /// The keys `schema` requires that `body` lacks, checked at the top level and in `data`.
    fn missing_keys(doc: &Value, schema: &Value, body: &Value, at: &str) -> Vec<String> {
        let schema = resolve(doc, schema);
        let mut out = Vec::new();
        for key in schema["required"].as_array().into_iter().flatten() {
            let key = key.as_str().unwrap();
            match body.get(key) {
                None => out.push(format!("{at}{key}")),
                Some(v) if key == "data" => {
                    out.extend(missing_keys(doc, &schema["properties"]["data"], v, "data."))
                }
                Some(_) => {}
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_get_route_answers_with_the_keys_its_documented_schema_requires() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path()).await;
        let doc = doc();
        let mut checked = 0;
        // routes with a path parameter need an object to exist (tests/it/amtool.rs reads one)
        for r in routes()
            .into_iter()
            .filter(|r| r.method == Method::GET && !r.path.contains('{'))
        {
            let op = &doc["paths"][r.path]["get"];
            // required query parameters take the document's examples
            let query: Vec<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["required"] == true && p["in"] == "query")
                .map(|p| {
                    let example = p["example"]
                        .as_str()
                        .expect("required parameter has an example");
                    format!(
                        "{}={}",
                        p["name"].as_str().unwrap(),
                        url::form_urlencoded::byte_serialize(example.as_bytes())
                            .collect::<String>()
                    )
                })
                .collect();
            let uri = if query.is_empty() {
                r.path.to_string()
            } else {
                format!("{}?{}", r.path, query.join("&"))
            };
            let resp = router(state.clone())
                .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let code = resp.status();
            let doc_response = &op["responses"][code.as_str()];
            assert!(
                doc_response.is_object(),
                "GET {uri}: status {code} is not documented"
            );
            assert!(code.is_success(), "GET {uri}: {code}");
            let content = doc_response["content"]
                .as_object()
                .expect("documented content");
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            let Some(json_schema) = content.get("application/json") else {
                continue;
            };
            let body: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("GET {uri}: not json: {e}"));
            let missing = missing_keys(&doc, &json_schema["schema"], &body, "");
            assert!(
                missing.is_empty(),
                "GET {uri}: missing {missing:?} in {body}"
            );
            checked += 1;
        }
        assert!(checked >= 10, "only {checked} json routes checked");
    }

    #[tokio::test]
    async fn a_starting_daemon_is_live_and_answers_503_until_its_router_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let gate = Gate::default();
        let get = |path: &'static str| {
            gate.router()
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
        };
        assert_eq!(get("/health/live").await.unwrap().status(), StatusCode::OK);
        assert_eq!(get("/-/healthy").await.unwrap().status(), StatusCode::OK);
        for path in ["/health/ready", "/-/ready", "/api/v1/alerts", "/ui/"] {
            let resp = get(path).await.unwrap();
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
            assert_eq!(resp.headers()[header::RETRY_AFTER], "1", "{path}");
        }
        let resp = get("/api/v1/alerts").await.unwrap();
        let body: Value = serde_json::from_slice(
            &axum::body::to_bytes(resp.into_body(), 1 << 16)
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(body["status"], "error");
        assert_eq!(body["errorType"], "unavailable");
        // once open, every request reaches the daemon's router, its access checks included
        let mut state = state(dir.path()).await;
        state.read_token = Some("r".into());
        gate.open(router(state));
        assert_eq!(
            get("/api/v1/alerts").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(get("/health/ready").await.unwrap().status(), StatusCode::OK);
        assert_eq!(
            get("/nowhere").await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn reads_need_the_read_token_once_configured_and_accept_the_write_token() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = state(dir.path()).await;
        state.read_token = Some("r".into());
        let get = |token: Option<&str>| {
            let mut req = Request::get("/api/v1/alerts");
            if let Some(t) = token {
                req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
            }
            router(state.clone()).oneshot(req.body(Body::empty()).unwrap())
        };
        assert_eq!(get(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            get(Some("x")).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(get(Some("r")).await.unwrap().status(), StatusCode::OK);
        assert_eq!(get(Some("w")).await.unwrap().status(), StatusCode::OK);
        let live = router(state.clone())
            .oneshot(Request::get("/health/live").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(live.status(), StatusCode::OK, "probes stay open");
        // the read token does not authorize writes
        let reload = router(state.clone())
            .oneshot(
                Request::post("/-/reload")
                    .header(header::AUTHORIZATION, "Bearer r")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(reload.status(), StatusCode::UNAUTHORIZED);
    }
}
