//! The `alertmanager` receiver: alerts forwarded to an Alertmanager cluster through its API v2
//! (`POST /api/v2/alerts`, a JSON array of `{labels, annotations, startsAt, endsAt,
//! generatorURL}`), as Prometheus's notifier sends them, so a team's existing Alertmanager does
//! the grouping, silencing and notifying.
//!
//! How it fits the pipeline: a route whose receiver has an `alertmanager` integration hands it
//! that route's alerts (after tocsin's own inhibition and silences), but the receiver's group is
//! every alert routed to it ([`crate::notify::setup::TreeRoutes`], group key
//! `{alertmanager}:<receiver>`), flushed at every evaluation without `group_wait`, and forwarded
//! whole whenever [`crate::notify::dedup::decide_forward`] says so: an alert newly firing or
//! resolved, or `resend_delay` since the last forward. Each URL of the list is an integration of
//! its own (`<receiver>/alertmanager[<i>]`) with its own outbox rows, retries and breaker.
//!
//! Time: `endsAt` of a firing alert is `queued + 4 × max(evaluation interval, resend_delay)`,
//! where `queued` is the evaluation that queued the row (Prometheus: the evaluation time). A row
//! that waited in the outbox (an Alertmanager down) until that time passed no longer speaks for
//! its firing alerts: sent, it would tell Alertmanager they ended; they are left out ([`payload`])
//! and the newer rows behind it, in order, carry them. Resolved alerts keep their resolve time
//! and always go out: a resolution is news however late (the outbox keeps it across restarts, so
//! none is lost; firing alerts would be re-sent anyway).

use std::collections::BTreeMap;
use std::time::Duration;

use super::sender::Attempt;
use super::{AlertState, DeliveryError, Notification};
use crate::labels::{AsMap, Labels};
use crate::timefmt::format_rfc3339;

/// The default `resend_delay` (Prometheus's `--rules.alert.resend-delay`).
pub const DEFAULT_RESEND_DELAY: Duration = Duration::from_secs(60);
/// How many `max(evaluation interval, resend_delay)` a firing alert's `endsAt` lies ahead
/// (Prometheus's factor): three missed resends before Alertmanager resolves it by itself.
pub const ENDS_AT_FACTOR: i64 = 4;
/// The API path appended to each URL.
pub const ALERTS_PATH: &str = "/api/v2/alerts";
/// Most alerts in one POST (Prometheus's notifier batches 64): a receiver with thousands of
/// alerts sends several bounded requests, not one body of megabytes.
pub const MAX_BATCH: usize = 64;

/// How to authenticate to the Alertmanagers.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Bearer(String),
    Basic { username: String, password: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => write!(f, "None"),
            Auth::Bearer(_) => write!(f, "Bearer(<redacted>)"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
        }
    }
}

/// One relabelling step, compiled ([`super::receivers::RelabelRaw`]).
#[derive(Debug, Clone)]
pub struct Relabel {
    pub action: super::receivers::RelabelAction,
    /// anchored ([`crate::labels::compile_regex`])
    pub regex: regex::Regex,
}

/// Applies `steps` in order to `labels` (Prometheus's `labeldrop` / `labelkeep`).
pub fn relabel(labels: &Labels, steps: &[Relabel]) -> Labels {
    use super::receivers::RelabelAction;
    let mut out = labels.clone();
    for step in steps {
        out = out.filter(|name| match step.action {
            RelabelAction::Labeldrop => !step.regex.is_match(name),
            RelabelAction::Labelkeep => step.regex.is_match(name),
        });
    }
    out
}

/// One Alertmanager of an `alertmanager` receiver, as `notify::setup` builds it. Its `Debug`
/// shows the URL through [`redact_url`](super::webhook::redact_url) and no secret.
#[derive(Clone)]
pub struct AlertmanagerConfig {
    /// the base URL; alerts go to `url` + [`ALERTS_PATH`]
    pub url: String,
    pub timeout: Duration,
    pub auth: Auth,
    /// how far ahead a firing alert's `endsAt` lies (ms): [`ends_at_horizon_ms`]
    pub horizon_ms: i64,
    pub relabel: Vec<Relabel>,
}

impl std::fmt::Debug for AlertmanagerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertmanagerConfig")
            .field("url", &super::webhook::redact_url(&self.url))
            .field("timeout", &self.timeout)
            .field("auth", &self.auth)
            .field("horizon_ms", &self.horizon_ms)
            .field("relabel", &self.relabel.len())
            .finish()
    }
}

/// How far ahead of its evaluation a firing alert's `endsAt` lies:
/// 4 × max(evaluation interval, resend delay), as Prometheus computes it.
pub fn ends_at_horizon_ms(evaluation_interval_ms: i64, resend_delay_ms: i64) -> i64 {
    ENDS_AT_FACTOR * evaluation_interval_ms.max(resend_delay_ms)
}

/// The API v2 body for `n` at `attempt`, or None when nothing is left to send.
///
/// Firing alerts get `endsAt` = `queued_at` + the horizon; when that is not after `now` (the row
/// waited that long) they are left out, as explained in the module doc. Resolved alerts get their
/// resolve time. Labels are relabelled; an alert left without labels is left out (Alertmanager
/// refuses the whole request for one).
pub fn payload(
    n: &Notification,
    cfg: &AlertmanagerConfig,
    attempt: Attempt,
) -> Option<serde_json::Value> {
    let firing_ends = attempt.queued_at.saturating_add(cfg.horizon_ms);
    let alerts: Vec<serde_json::Value> = n
        .alerts
        .iter()
        .filter_map(|a| {
            let ends = match (a.status, a.ends_at) {
                (AlertState::Firing, _) if firing_ends <= attempt.now => return None,
                (AlertState::Firing, _) => firing_ends,
                (AlertState::Resolved, Some(at)) => at,
                // a resolved snapshot always has its time; without it, now is the best bound
                (AlertState::Resolved, None) => attempt.now,
            };
            let labels = relabel(&a.labels, &cfg.relabel);
            if labels.is_empty() {
                return None;
            }
            let annotations: &BTreeMap<String, String> = &a.annotations;
            Some(serde_json::json!({
                "labels": AsMap(&labels),
                "annotations": annotations,
                "startsAt": format_rfc3339(a.starts_at),
                "endsAt": format_rfc3339(ends),
                "generatorURL": a.generator_url,
            }))
        })
        .collect();
    (!alerts.is_empty()).then_some(serde_json::Value::Array(alerts))
}

/// The URL alerts are POSTed to: the base URL with [`ALERTS_PATH`] appended (one slash between).
pub fn alerts_url(base: &str) -> String {
    format!("{}{ALERTS_PATH}", base.trim_end_matches('/'))
}

/// The request bodies for `n`: its [`payload`] cut into arrays of at most [`MAX_BATCH`] alerts.
pub fn batches(n: &Notification, cfg: &AlertmanagerConfig, attempt: Attempt) -> Vec<Vec<u8>> {
    let Some(serde_json::Value::Array(alerts)) = payload(n, cfg, attempt) else {
        return Vec::new();
    };
    alerts
        .chunks(MAX_BATCH)
        .map(|chunk| serde_json::to_vec(chunk).expect("a json value always serializes"))
        .collect()
}

/// POSTs the alerts of `n` to one Alertmanager, [`MAX_BATCH`] at a time, and classifies the
/// outcome as webhooks do (2xx delivered; 429, 5xx, connect errors and timeouts transient; other
/// statuses permanent); the first failure is the row's. A retry sends every batch again, which
/// Alertmanager takes as an update. Nothing to send counts as delivered.
pub async fn send(
    client: &reqwest::Client,
    cfg: &AlertmanagerConfig,
    n: &Notification,
    attempt: Attempt,
) -> Result<(), DeliveryError> {
    let url = alerts_url(&cfg.url);
    for body in batches(n, cfg, attempt) {
        let mut request = client
            .post(&url)
            .timeout(cfg.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        request = match &cfg.auth {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Basic { username, password } => request.basic_auth(username, Some(password)),
        };
        super::webhook::post(request, body, &url, "alertmanager").await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::receivers::RelabelAction;
    use crate::notify::{AlertSnapshot, Change};

    const M: i64 = 60_000;

    fn cfg(relabel: Vec<Relabel>) -> AlertmanagerConfig {
        AlertmanagerConfig {
            url: "http://am:9093".into(),
            timeout: Duration::from_secs(10),
            auth: Auth::None,
            horizon_ms: ends_at_horizon_ms(15_000, M),
            relabel,
        }
    }

    fn alert(name: &str, status: AlertState, ends_at: Option<i64>) -> AlertSnapshot {
        let labels = Labels::from_pairs([("alertname", name), ("replica", "a")]);
        AlertSnapshot {
            fingerprint: labels.fingerprint(),
            labels,
            annotations: BTreeMap::from([("summary".to_string(), "s".to_string())]),
            status,
            starts_at: 1_000,
            ends_at,
            generator_url: "http://tocsin/api/v1/alerts".into(),
        }
    }

    fn notification(alerts: Vec<AlertSnapshot>) -> Notification {
        Notification {
            receiver: "am".into(),
            group_key: "{alertmanager}:am".into(),
            group_labels: Labels::default(),
            alerts,
            external_url: "http://tocsin".into(),
            idempotency_key: "k".into(),
            change: Change::FirstNotification,
            changed: Default::default(),
        }
    }

    #[test]
    fn the_horizon_is_four_times_the_longer_of_interval_and_resend_delay() {
        // each case: evaluation interval, resend delay, horizon (ms)
        for (interval, resend, want) in [
            (15_000, M, 4 * M),    // the resend delay is longer
            (5 * M, M, 20 * M),    // a slow evaluation: its interval is longer
            (M, M, 4 * M),         // equal
            (1_000, 1_000, 4_000), // the short settings the tests use
        ] {
            assert_eq!(
                ends_at_horizon_ms(interval, resend),
                want,
                "{interval} {resend}"
            );
        }
    }

    #[test]
    fn firing_alerts_end_a_horizon_after_their_evaluation_and_resolved_ones_at_their_resolve_time()
    {
        let n = notification(vec![
            alert("Firing", AlertState::Firing, None),
            alert("Resolved", AlertState::Resolved, Some(90_000)),
        ]);
        let queued = 100_000;
        // sent at once, and sent late but within the horizon: endsAt counts from the evaluation
        for now in [queued, queued + 4 * M - 1] {
            let body = payload(
                &n,
                &cfg(vec![]),
                Attempt {
                    now,
                    queued_at: queued,
                },
            )
            .unwrap();
            assert_eq!(
                body,
                serde_json::json!([
                    {
                        "labels": {"alertname": "Firing", "replica": "a"},
                        "annotations": {"summary": "s"},
                        "startsAt": format_rfc3339(1_000),
                        "endsAt": format_rfc3339(queued + 4 * M),
                        "generatorURL": "http://tocsin/api/v1/alerts",
                    },
                    {
                        "labels": {"alertname": "Resolved", "replica": "a"},
                        "annotations": {"summary": "s"},
                        "startsAt": format_rfc3339(1_000),
                        "endsAt": format_rfc3339(90_000),
                        "generatorURL": "http://tocsin/api/v1/alerts",
                    }
                ]),
                "{now}"
            );
        }
        // a row that waited past its horizon: its firing alert would read as ended; only the
        // resolution goes out
        let late = payload(
            &n,
            &cfg(vec![]),
            Attempt {
                now: queued + 4 * M,
                queued_at: queued,
            },
        )
        .unwrap();
        let names: Vec<&str> = late
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["labels"]["alertname"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Resolved"]);
        // and with only firing alerts in it, nothing is left to send
        let only_firing = notification(vec![alert("Firing", AlertState::Firing, None)]);
        assert_eq!(
            payload(
                &only_firing,
                &cfg(vec![]),
                Attempt {
                    now: queued + 10 * M,
                    queued_at: queued
                }
            ),
            None
        );
    }

    #[test]
    fn relabelling_drops_or_keeps_labels_by_name_and_skips_alerts_left_without_any() {
        let drop = |re: &str| Relabel {
            action: RelabelAction::Labeldrop,
            regex: crate::labels::compile_regex(re).unwrap(),
        };
        let keep = |re: &str| Relabel {
            action: RelabelAction::Labelkeep,
            regex: crate::labels::compile_regex(re).unwrap(),
        };
        let l = Labels::from_pairs([("alertname", "X"), ("replica", "a"), ("replica_set", "r")]);
        // anchored: `replica` does not drop `replica_set`
        assert_eq!(
            relabel(&l, &[drop("replica")]),
            Labels::from_pairs([("alertname", "X"), ("replica_set", "r")])
        );
        assert_eq!(
            relabel(&l, &[keep("alertname|replica")]),
            Labels::from_pairs([("alertname", "X"), ("replica", "a")])
        );
        // in order: keep, then drop
        assert_eq!(
            relabel(&l, &[keep("alertname|replica"), drop("rep.*")]),
            Labels::from_pairs([("alertname", "X")])
        );
        let n = notification(vec![alert("X", AlertState::Firing, None)]);
        let at = Attempt {
            now: 0,
            queued_at: 0,
        };
        let body = payload(&n, &cfg(vec![drop("replica")]), at).unwrap();
        assert_eq!(body[0]["labels"], serde_json::json!({"alertname": "X"}));
        assert_eq!(payload(&n, &cfg(vec![drop(".*")]), at), None);
    }

    #[test]
    fn many_alerts_go_out_in_batches_of_at_most_64() {
        let alerts: Vec<AlertSnapshot> = (0..130)
            .map(|i| alert(&format!("A{i:03}"), AlertState::Firing, None))
            .collect();
        let at = Attempt {
            now: 0,
            queued_at: 0,
        };
        let bodies = batches(&notification(alerts), &cfg(vec![]), at);
        let sizes: Vec<usize> = bodies
            .iter()
            .map(|b| {
                serde_json::from_slice::<serde_json::Value>(b)
                    .unwrap()
                    .as_array()
                    .unwrap()
                    .len()
            })
            .collect();
        assert_eq!(sizes, [64, 64, 2]);
        assert!(batches(&notification(vec![]), &cfg(vec![]), at).is_empty());
    }

    #[test]
    fn the_alerts_url_appends_the_api_path_once() {
        assert_eq!(alerts_url("http://am:9093"), "http://am:9093/api/v2/alerts");
        assert_eq!(
            alerts_url("http://am:9093/"),
            "http://am:9093/api/v2/alerts"
        );
        assert_eq!(
            alerts_url("http://h/prefix/"),
            "http://h/prefix/api/v2/alerts"
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let mut c = cfg(vec![]);
        c.url = "http://user:PW@am:9093/x/KEY".into();
        c.auth = Auth::Bearer("TOKEN".into());
        let d = format!("{c:?}");
        assert!(
            !d.contains("PW") && !d.contains("KEY") && !d.contains("TOKEN"),
            "{d}"
        );
        let b = Auth::Basic {
            username: "u".into(),
            password: "PW".into(),
        };
        assert!(!format!("{b:?}").contains("PW"));
    }
}
