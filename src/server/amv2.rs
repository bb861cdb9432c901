//! `/api/v2/`: the subset of Alertmanager's API v2 that `amtool` and Grafana's Alertmanager data
//! source use, in the shapes of Alertmanager 0.25's OpenAPI document: status, receivers, alerts
//! (with Alertmanager's `active`/`silenced`/`inhibited`/`filter`/`receiver` filters), alert
//! groups, silences. Alerts are tocsin's firing alerts as the notification pipeline sees them
//! now (routes, silences, inhibition). Errors are a JSON string, as Alertmanager answers.
//! `POST /api/v2/alerts` takes alerts from other systems into the same pipeline
//! ([`crate::notify::external`]).

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde_json::{Value, json};

use super::AppState;
use crate::labels::{Labels, Matcher};
use crate::notify::pipeline::AlertRouting;
use crate::notify::silence::{MatcherSpec, Silence};
use crate::rules::tracker::{Alert, AlertStatus};
use crate::timefmt::format_rfc3339;

/// How long past `now` a firing alert's `endsAt` lies, as Prometheus sets it on the alerts it
/// sends (four times its one-minute resend delay): Alertmanager resolves an alert no longer
/// re-sent by then.
const ENDS_AFTER_MS: i64 = 4 * 60_000;

/// An error in Alertmanager's shape: the message as a JSON string.
fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(Value::String(message.into()))).into_response()
}

/// A refused parameter: 400 with its message.
struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.0)
    }
}

fn params(q: Option<&str>) -> Vec<(String, String)> {
    q.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    })
    .unwrap_or_default()
}

/// The `filter` parameters (repeatable; one matcher each, Alertmanager's grammar).
fn filters(params: &[(String, String)]) -> Result<Vec<Matcher>, BadRequest> {
    params
        .iter()
        .filter(|(k, _)| k == "filter")
        .map(|(_, v)| {
            crate::labels::parse_matcher(v)
                .map_err(|e| BadRequest(format!("bad matcher format: {v}: {e}")))
        })
        .collect()
}

/// A boolean parameter (`true`/`false`), `default` when absent.
fn flag(params: &[(String, String)], name: &str, default: bool) -> Result<bool, BadRequest> {
    match params.iter().rev().find(|(k, _)| k == name) {
        None => Ok(default),
        Some((_, v)) => match v.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(BadRequest(format!(
                "{name} in query must be of type boolean: {v:?}"
            ))),
        },
    }
}

/// `GET /api/v2/status`: no cluster (tocsin is one process), the version, the start time.
/// `config.original` is empty: tocsin's configuration is not Alertmanager's (use `tocsin
/// route-test` where `amtool config routes` would read it).
pub(super) async fn status(State(s): State<AppState>) -> Json<Value> {
    Json(json!({
        "cluster": {"name": "", "status": "disabled", "peers": []},
        "config": {"original": ""},
        "uptime": format_rfc3339(s.started_ms),
        "versionInfo": {
            "version": env!("CARGO_PKG_VERSION"),
            "revision": crate::GIT_HASH,
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "tocsin (rust)",
        },
    }))
}

/// `GET /api/v2/receivers`.
pub(super) async fn receivers(State(s): State<AppState>) -> Json<Value> {
    let names = s
        .rules
        .as_ref()
        .and_then(|r| r.notifier().map(|n| n.receiver_names()))
        .unwrap_or_default();
    Json(Value::Array(
        names.into_iter().map(|n| json!({"name": n})).collect(),
    ))
}

/// The firing alerts with their routing now, or nothing when rules or notifications are off.
fn firing_with_routing(s: &AppState, now: i64) -> Vec<(Alert, AlertRouting)> {
    let Some(rules) = &s.rules else {
        return Vec::new();
    };
    let mut firing: Vec<Alert> = rules
        .alerts()
        .into_iter()
        .map(|(_, a)| a)
        .filter(|a| a.status == AlertStatus::Firing)
        .collect();
    // with `external_labels`, as the receivers and the silences see them
    if let Some(n) = rules.notifier() {
        for a in &mut firing {
            a.labels = a.labels.with_defaults(n.external_labels());
        }
    }
    firing.sort_by(|a, b| a.labels.cmp(&b.labels));
    let refs: Vec<&Alert> = firing.iter().collect();
    let routing = match rules.notifier() {
        Some(n) => n.routing_of(&refs, &refs, now),
        None => vec![AlertRouting::default(); refs.len()],
    };
    firing.into_iter().zip(routing).collect()
}

/// A `GettableAlert`.
fn alert_json(a: &Alert, r: &AlertRouting, now: i64) -> Value {
    let state = if r.silenced_by.is_empty() && r.inhibited_by.is_empty() {
        "active"
    } else {
        "suppressed"
    };
    let mut receivers: Vec<&str> = r.targets.iter().map(|t| t.receiver.as_str()).collect();
    receivers.dedup();
    json!({
        "labels": a.labels.iter().collect::<BTreeMap<_, _>>(),
        "annotations": a.annotations,
        "startsAt": format_rfc3339(a.fired_at.unwrap_or(a.active_at)),
        "endsAt": format_rfc3339(now + ENDS_AFTER_MS),
        "updatedAt": format_rfc3339(now),
        "generatorURL": "",
        "fingerprint": crate::labels::format_fingerprint(a.fingerprint()),
        "receivers": receivers.iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
        "status": {
            "state": state,
            "silencedBy": r.silenced_by,
            "inhibitedBy": r.inhibited_by.iter().map(|f| crate::labels::format_fingerprint(*f)).collect::<Vec<_>>(),
        },
    })
}

/// The alerts `GET /api/v2/alerts` and `/alerts/groups` select, as Alertmanager's filters do:
/// `active`, `silenced`, `inhibited` (each default true), `filter` matchers over the labels,
/// `receiver` a regex over receiver names (whole name).
fn select(
    s: &AppState,
    q: Option<&str>,
    now: i64,
) -> Result<Vec<(Alert, AlertRouting)>, BadRequest> {
    let p = params(q);
    let matchers = filters(&p)?;
    let active = flag(&p, "active", true)?;
    let silenced = flag(&p, "silenced", true)?;
    let inhibited = flag(&p, "inhibited", true)?;
    let receiver = match p.iter().find(|(k, _)| k == "receiver") {
        None => None,
        Some((_, v)) => Some(
            crate::labels::compile_regex(&format!("^(?:{v})$"))
                .map_err(|e| BadRequest(format!("bad receiver regex: {e}")))?,
        ),
    };
    Ok(firing_with_routing(s, now)
        .into_iter()
        .filter(|(a, r)| {
            let is_silenced = !r.silenced_by.is_empty();
            let is_inhibited = !r.inhibited_by.is_empty();
            (active || is_silenced || is_inhibited)
                && (silenced || !is_silenced)
                && (inhibited || !is_inhibited)
                && matchers.iter().all(|m| m.matches_labels(&a.labels))
                && receiver
                    .as_ref()
                    .is_none_or(|re| r.targets.iter().any(|t| re.is_match(&t.receiver)))
        })
        .collect())
}

/// `GET /api/v2/alerts`.
pub(super) async fn alerts(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let now = s.clock.now_ms();
    let state = s.clone();
    let selected =
        match tokio::task::spawn_blocking(move || select(&state, q.as_deref(), now)).await {
            Ok(Ok(v)) => v,
            Ok(Err(bad)) => return bad.into_response(),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    Json(Value::Array(
        selected
            .iter()
            .map(|(a, r)| alert_json(a, r, now))
            .collect(),
    ))
    .into_response()
}

/// `GET /api/v2/alerts/groups`: the selected alerts grouped by receiver and group labels, as
/// the routing tree groups them.
pub(super) async fn alert_groups(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let now = s.clock.now_ms();
    let state = s.clone();
    let selected =
        match tokio::task::spawn_blocking(move || select(&state, q.as_deref(), now)).await {
            Ok(Ok(v)) => v,
            Ok(Err(bad)) => return bad.into_response(),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    let mut groups: BTreeMap<(String, String), (Labels, Vec<Value>)> = BTreeMap::new();
    for (a, r) in &selected {
        for t in &r.targets {
            groups
                .entry((t.receiver.clone(), t.group_key.clone()))
                .or_insert_with(|| (t.group_labels.clone(), Vec::new()))
                .1
                .push(alert_json(a, r, now));
        }
    }
    Json(Value::Array(
        groups
            .into_iter()
            .map(|((receiver, _), (labels, alerts))| {
                json!({
                    "labels": labels.iter().collect::<BTreeMap<_, _>>(),
                    "receiver": {"name": receiver},
                    "alerts": alerts,
                })
            })
            .collect(),
    ))
    .into_response()
}

/// A `GettableSilence`.
fn silence_json(x: &Silence, now: i64) -> Value {
    json!({
        "id": x.id,
        "matchers": x.matchers,
        "startsAt": format_rfc3339(x.starts_at),
        "endsAt": format_rfc3339(x.ends_at),
        "updatedAt": format_rfc3339(x.starts_at.min(now)),
        "createdBy": x.created_by,
        "comment": x.comment,
        "status": {"state": x.state(now)},
    })
}

/// `GET /api/v2/silences`: every silence (expired ones for Alertmanager's retention too) whose
/// matchers, read as a label set, satisfy every `filter`, as Alertmanager filters them.
pub(super) async fn silences(State(s): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let p = params(q.as_deref());
    let matchers = match filters(&p) {
        Ok(m) => m,
        Err(bad) => return bad.into_response(),
    };
    let now = s.clock.now_ms();
    let list = s.silences.as_ref().map(|x| x.all()).unwrap_or_default();
    Json(Value::Array(
        list.iter()
            .filter(|x| {
                let labels = Labels::from_pairs(
                    x.matchers
                        .iter()
                        .map(|m| (m.name.as_str(), m.value.as_str())),
                );
                matchers.iter().all(|m| m.matches_labels(&labels))
            })
            .map(|x| silence_json(x, now))
            .collect(),
    ))
    .into_response()
}

/// `GET /api/v2/silence/{id}`.
pub(super) async fn silence(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let now = s.clock.now_ms();
    let list = s.silences.as_ref().map(|x| x.all()).unwrap_or_default();
    match list.iter().find(|x| x.id == id) {
        Some(x) => Json(silence_json(x, now)).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("silence {id} not found")),
    }
}

/// A `PostableAlert`: times in RFC 3339; Go's zero time (`0001-01-01T00:00:00Z`) or none means
/// not set, as Alertmanager reads it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PostableAlert {
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default, rename = "startsAt")]
    starts_at: Option<String>,
    #[serde(default, rename = "endsAt")]
    ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    _generator_url: Option<String>,
}

fn posted_time(field: &str, i: usize, t: Option<&str>) -> Result<Option<i64>, String> {
    match t {
        None | Some("") => Ok(None),
        Some(t) if t.starts_with("0001-01-01T00:00:00") => Ok(None),
        Some(t) => crate::timefmt::parse_time(t)
            .map(Some)
            .map_err(|e| format!("alert {i}: {field}: {e}")),
    }
}

/// `POST /api/v2/alerts`: alerts from other systems (Prometheus, vmalert, scripts), all or
/// nothing, into the pipeline beside tocsin's own ([`crate::notify::external`]); 200 with no
/// body, as Alertmanager answers.
pub(super) async fn post_alerts(
    State(s): State<AppState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match super::body_or_refusal(body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let Some(rules) = s.rules.clone() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "rules are not running");
    };
    let raw: Vec<PostableAlert> = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid alerts: {e}")),
    };
    let mut alerts = Vec::with_capacity(raw.len());
    for (i, a) in raw.into_iter().enumerate() {
        let times = (
            posted_time("startsAt", i, a.starts_at.as_deref()),
            posted_time("endsAt", i, a.ends_at.as_deref()),
        );
        let (starts_at, ends_at) = match times {
            (Ok(x), Ok(y)) => (x, y),
            (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
        };
        alerts.push(crate::notify::external::PostedAlert {
            labels: a.labels,
            annotations: a.annotations,
            starts_at,
            ends_at,
        });
    }
    let now = s.clock.now_ms();
    match rules.external().post(now, alerts) {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// A `PostableSilence`.
#[derive(serde::Deserialize)]
struct PostableSilence {
    #[serde(default)]
    id: Option<String>,
    matchers: Vec<MatcherSpec>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt")]
    ends_at: String,
    #[serde(rename = "createdBy")]
    created_by: String,
    comment: String,
}

/// `POST /api/v2/silences`: creates a silence, or with the `id` of a stored one updates it as
/// Alertmanager does ([`crate::notify::silence::Silences::set`]); answers `{"silenceID": …}`.
pub(super) async fn post_silence(
    State(s): State<AppState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match super::body_or_refusal(body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let Some(silences) = s.silences.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "silences are not available",
        );
    };
    let b: PostableSilence = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid silence: {e}")),
    };
    let (starts_at, ends_at) = match (
        crate::timefmt::parse_time(&b.starts_at),
        crate::timefmt::parse_time(&b.ends_at),
    ) {
        (Ok(a), Ok(z)) => (a, z),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let now = s.clock.now_ms();
    let silence = Silence {
        id: b.id.unwrap_or_default(),
        matchers: b.matchers,
        // a start in the past is now, as Alertmanager does
        starts_at: starts_at.max(now),
        ends_at,
        created_by: b.created_by,
        comment: b.comment,
    };
    match tokio::task::spawn_blocking(move || silences.set(silence, now)).await {
        Ok(Ok(id)) => Json(json!({"silenceID": id})).into_response(),
        Ok(Err(e)) if e.contains("not found") => error(StatusCode::NOT_FOUND, e),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `DELETE /api/v2/silence/{id}`: expires it.
pub(super) async fn delete_silence(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(silences) = s.silences.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "silences are not available",
        );
    };
    let now = s.clock.now_ms();
    match tokio::task::spawn_blocking(move || silences.expire(&id, now)).await {
        Ok(Ok(true)) => StatusCode::OK.into_response(),
        Ok(Ok(false)) => error(StatusCode::NOT_FOUND, "silence not found"),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
