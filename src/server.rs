//! The HTTP surface (axum): liveness, readiness, status and self-metrics.
//! Handlers never touch SQLite: they read the [`StatusBoard`] and the self-metrics, which the
//! scheduler keeps current.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;

use crate::clock::Clock;
use crate::scheduler::StatusBoard;
use crate::selfmetrics::SelfMetrics;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub status: Arc<StatusBoard>,
    pub metrics: Arc<SelfMetrics>,
    pub clock: Arc<dyn Clock>,
    pub started_ms: i64,
    pub store_path: String,
    /// where `POST /-/reload` sends its request (None: rules not running)
    pub reload: Option<tokio::sync::mpsc::Sender<crate::reload::ReloadRequest>>,
    pub rules: Option<Arc<crate::rules::manager::RuleManager>>,
    pub silences: Option<Arc<crate::notify::silence::Silences>>,
    /// bearer token API writes need (None: writes are refused unless no token is configured,
    /// see `server.api_token_env`)
    pub api_token: Option<String>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/-/reload", axum::routing::post(reload))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/silences", get(list_silences).post(post_silence))
        .route(
            "/api/v1/silences/{id}",
            axum::routing::delete(delete_silence),
        )
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .merge(crate::ui::routes())
        .with_state(state)
}

async fn live() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
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
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

/// Reloads the rules and answers with the outcome: 200 when the new rules are in use, 500 with
/// every error when the old ones kept running (as Prometheus's `/-/reload`).
async fn reload(State(s): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let Some(tx) = s.reload else {
        return (StatusCode::SERVICE_UNAVAILABLE, "rules are not running").into_response();
    };
    let (req, done) = crate::reload::ReloadRequest::api();
    if tx.send(req).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "reloader stopped").into_response();
    }
    match done.await {
        Ok(outcome) if outcome.ok => Json(outcome).into_response(),
        Ok(outcome) => (StatusCode::INTERNAL_SERVER_ERROR, Json(outcome)).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "reload abandoned").into_response(),
    }
}

/// Pending and firing alerts in Prometheus's `/api/v1/alerts` shape.
async fn alerts(State(s): State<AppState>) -> Json<serde_json::Value> {
    let list: Vec<serde_json::Value> = s
        .rules
        .map(|m| m.alerts())
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, a)| a.is_active())
        .map(|(group, a)| {
            json!({
                "labels": a.labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
                "annotations": a.annotations,
                "state": a.status.as_str(),
                "activeAt": crate::timefmt::format_rfc3339(a.active_at),
                "firedAt": a.fired_at.map(crate::timefmt::format_rfc3339),
                "value": crate::promql::format_float(a.value),
                "group": group,
                "flapping": a.flapping,
            })
        })
        .collect();
    Json(json!({"status": "success", "data": {"alerts": list}}))
}

/// The refusal of a write without the configured bearer token (None: allowed).
fn unauthorized(s: &AppState, headers: &axum::http::HeaderMap) -> Option<Response> {
    let Some(token) = &s.api_token else {
        return None;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    (given != Some(token.as_str())).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"status": "error", "error": "missing or wrong bearer token"})),
        )
            .into_response()
    })
}

fn bad_request(msg: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"status": "error", "error": msg.into()})),
    )
        .into_response()
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
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
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
                Err(e) => return bad_request(e),
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
    headers: axum::http::HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
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
        Ok(Ok(false)) => (
            StatusCode::NOT_FOUND,
            Json(json!({"status": "error", "error": "no such silence"})),
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
