//! Health probes: judging a health response (status code, latency, JSON body) and writing its
//! series. CPU work and store writes: run on a blocking thread.

use super::fetch::{Response, ScrapeError};
use crate::labels::Labels;
use crate::store::{Store, chunk::stale_nan};

pub(super) fn write_gauges(store: &Store, base: &Labels, t: i64, gauges: &[(&str, f64)]) {
    let labels = gauges
        .iter()
        .map(|(name, _)| base.with("__name__", name))
        .collect();
    let ids = store.series_refs(labels);
    let batch: Vec<_> = ids
        .into_iter()
        .zip(gauges)
        .map(|(id, (_, v))| (id, t, *v))
        .collect();
    store.append(&batch);
}

/// The verdict of one health probe.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    pub up: bool,
    /// why the probe is down, or a warning about the body
    pub error: Option<String>,
    /// per-check results of a JSON body: (check, ok, text)
    pub checks: Vec<(String, bool, String)>,
}

/// Values a JSON health body uses for "fine".
fn is_ok_word(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "ok" | "up" | "pass" | "passed" | "healthy" | "green" | "true" | "ready"
    )
}

fn check_verdict(v: &serde_json::Value) -> (bool, String) {
    match v {
        serde_json::Value::String(s) => (is_ok_word(s), s.clone()),
        serde_json::Value::Bool(b) => (*b, b.to_string()),
        serde_json::Value::Object(m) => match m.get("status") {
            Some(serde_json::Value::String(s)) => (is_ok_word(s), v.to_string()),
            Some(serde_json::Value::Bool(b)) => (*b, v.to_string()),
            _ => (false, v.to_string()),
        },
        other => (false, other.to_string()),
    }
}

fn json_path<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

/// Judges a health response and writes its series at `t`: `up` and `probe_success`
/// (2xx, and the JSON `status`, if any, says ok), `probe_http_status_code`, `probe_duration_seconds`,
/// `health_check_ok{check}` per entry of a JSON `checks` object (its text kept as the series' note),
/// and the configured JSON fields as gauges.
pub fn ingest_health(
    store: &Store,
    base: &Labels,
    t: i64,
    seconds: f64,
    result: &Result<Response, ScrapeError>,
    json_gauges: &[(String, String)],
    last_checks: &mut std::collections::BTreeSet<String>,
) -> HealthReport {
    let mut report = HealthReport {
        up: false,
        error: None,
        checks: Vec::new(),
    };
    let mut gauges: Vec<(String, f64)> = Vec::new();
    let status = match result {
        Err(e) => {
            report.error = Some(e.to_string());
            0
        }
        Ok(resp) => {
            let ok_status = (200..300).contains(&resp.status);
            let looks_json = resp.content_type.contains("json")
                || resp.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
            let parsed =
                looks_json.then(|| serde_json::from_slice::<serde_json::Value>(&resp.body));
            match parsed {
                Some(Ok(json)) => {
                    let status_ok = match json.get("status") {
                        Some(v) => check_verdict(v).0,
                        None => true,
                    };
                    if let Some(serde_json::Value::Object(checks)) = json.get("checks") {
                        for (name, v) in checks {
                            let (ok, text) = check_verdict(v);
                            report.checks.push((name.clone(), ok, text));
                        }
                    }
                    let mut missing = Vec::new();
                    for (field, metric) in json_gauges {
                        match json_path(&json, field).and_then(|v| v.as_f64()) {
                            Some(x) => gauges.push((metric.clone(), x)),
                            None => missing.push(format!("{field:?}")),
                        }
                    }
                    report.up = ok_status && status_ok;
                    if report.up && !missing.is_empty() {
                        report.error = Some(format!(
                            "json fields missing or not numbers: {}",
                            missing.join(", ")
                        ));
                    }
                    if !report.up {
                        let failing: Vec<String> = report
                            .checks
                            .iter()
                            .filter(|c| !c.1)
                            .map(|c| format!("{}: {}", c.0, c.2))
                            .collect();
                        report.error = Some(if failing.is_empty() {
                            format!("HTTP status {}", resp.status)
                        } else {
                            format!("HTTP status {}; {}", resp.status, failing.join(", "))
                        });
                    }
                }
                Some(Err(e)) => {
                    report.error = Some(format!("invalid JSON body: {e}"));
                }
                None => {
                    report.up = ok_status;
                    if !ok_status {
                        report.error = Some(format!("HTTP status {}", resp.status));
                    } else if !json_gauges.is_empty() {
                        report.error =
                            Some("body is not JSON: configured fields unavailable".into());
                    }
                }
            }
            resp.status
        }
    };
    let up = if report.up { 1.0 } else { 0.0 };
    let mut fixed: Vec<(&str, f64)> = vec![
        ("up", up),
        ("probe_success", up),
        ("probe_http_status_code", f64::from(status)),
        ("probe_duration_seconds", seconds),
    ];
    for (metric, v) in &gauges {
        fixed.push((metric.as_str(), *v));
    }
    write_gauges(store, base, t, &fixed);
    if !report.checks.is_empty() {
        let labels = report
            .checks
            .iter()
            .map(|(name, _, _)| base.with("__name__", "health_check_ok").with("check", name))
            .collect();
        let ids = store.series_refs(labels);
        let batch: Vec<_> = ids
            .iter()
            .zip(&report.checks)
            .map(|(&id, (_, ok, _))| (id, t, if *ok { 1.0 } else { 0.0 }))
            .collect();
        store.append(&batch);
        for (&id, (_, _, text)) in ids.iter().zip(&report.checks) {
            store.set_note(id, t, text);
        }
    }
    // checks the last probe reported and this one did not (gone from the body, or the probe
    // failed): their series end with a stale marker, as Prometheus ends a vanished series, so
    // `health_check_ok == 0` does not stay true on the last value forever
    let now: std::collections::BTreeSet<String> =
        report.checks.iter().map(|(n, _, _)| n.clone()).collect();
    let gone: Vec<Labels> = last_checks
        .difference(&now)
        .map(|name| base.with("__name__", "health_check_ok").with("check", name))
        .collect();
    if !gone.is_empty() {
        let ids = store.series_refs(gone);
        let batch: Vec<_> = ids.iter().map(|&id| (id, t, stale_nan())).collect();
        store.append(&batch);
    }
    *last_checks = now;
    report
}
