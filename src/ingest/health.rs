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

/// The verdict of one health probe, as blackbox_exporter splits it: `up` says the endpoint
/// answered, `success` that it answered healthy. A partly failing endpoint is up and unhealthy,
/// never an outage.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    /// the endpoint answered: an HTTP response of any status whose body could be read (the `up`
    /// series); false when the request failed (refused, timeout, body over the limit)
    pub up: bool,
    /// it answered healthy: 2xx, a body that is valid JSON if it looks like JSON, and the JSON
    /// `status`, if any, says ok (the `probe_success` series)
    pub success: bool,
    /// why the request failed or the endpoint is unhealthy (the failing checks, else the JSON
    /// status, after the HTTP status when that is not 2xx: `HTTP status 503; pdns: connection
    /// refused`), or a warning about a healthy body
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

/// Judges one probe's outcome (pure): the report, and the configured JSON fields read as gauges
/// (metric, value).
fn judge(
    result: &Result<Response, ScrapeError>,
    json_gauges: &[(String, String)],
) -> (HealthReport, Vec<(String, f64)>) {
    let mut report = HealthReport {
        up: false,
        success: false,
        error: None,
        checks: Vec::new(),
    };
    let mut gauges = Vec::new();
    let resp = match result {
        Err(e) => {
            report.error = Some(e.to_string());
            return (report, gauges);
        }
        Ok(resp) => resp,
    };
    report.up = true;
    let ok_status = (200..300).contains(&resp.status);
    // what is wrong with the answer, the HTTP status first: named only when it is not 2xx, so a
    // 200 with a failing check never reads "HTTP status 200"
    let mut problems = Vec::new();
    if !ok_status {
        problems.push(format!("HTTP status {}", resp.status));
    }
    let mut warning = None;
    let looks_json = resp.content_type.contains("json")
        || resp.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    match looks_json.then(|| serde_json::from_slice::<serde_json::Value>(&resp.body)) {
        Some(Ok(json)) => {
            let bad_status = json.get("status").filter(|v| !check_verdict(v).0);
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
            if !missing.is_empty() {
                warning = Some(format!(
                    "json fields missing or not numbers: {}",
                    missing.join(", ")
                ));
            }
            let failing: Vec<String> = report
                .checks
                .iter()
                .filter(|c| !c.1)
                .map(|c| format!("{}: {}", c.0, c.2))
                .collect();
            // a failing check alone does not make the endpoint unhealthy (its `status` is the
            // verdict; `health_check_ok` carries the check); when it is unhealthy, the failing
            // checks say why, and the status word only when no check fails
            if !ok_status || bad_status.is_some() {
                if !failing.is_empty() {
                    problems.push(failing.join(", "));
                } else if let Some(status) = bad_status {
                    problems.push(format!("JSON status {status}"));
                }
            }
        }
        Some(Err(e)) => problems.push(format!("invalid JSON body: {e}")),
        None => {
            if !json_gauges.is_empty() {
                warning = Some("body is not JSON: configured fields unavailable".into());
            }
        }
    }
    report.success = problems.is_empty();
    report.error = if report.success {
        warning
    } else {
        Some(problems.join("; "))
    };
    (report, gauges)
}

/// Judges a health response and writes its series at `t`: `up` (answered),
/// `probe_success` (answered healthy: see [`HealthReport`]), `probe_http_status_code` (0 without
/// an answer), `probe_duration_seconds`, `health_check_ok{check}` per entry of a JSON `checks`
/// object (its text kept as the series' note), and the configured JSON fields as gauges.
pub fn ingest_health(
    store: &Store,
    base: &Labels,
    t: i64,
    seconds: f64,
    result: &Result<Response, ScrapeError>,
    json_gauges: &[(String, String)],
    last_checks: &mut std::collections::BTreeSet<String>,
) -> HealthReport {
    let (report, gauges) = judge(result, json_gauges);
    let status = result.as_ref().map_or(0, |resp| resp.status);
    let one_if = |b: bool| if b { 1.0 } else { 0.0 };
    let mut fixed: Vec<(&str, f64)> = vec![
        ("up", one_if(report.up)),
        ("probe_success", one_if(report.success)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Result<Response, ScrapeError> {
        Ok(Response {
            status,
            content_type: "application/json".into(),
            body: body.as_bytes().to_vec(),
        })
    }

    const DEGRADED: &str =
        r#"{"status":"degraded","checks":{"database":"ok","pdns":"connection refused"}}"#;

    /// (name, outcome, up, success, error)
    type Case = (
        &'static str,
        Result<Response, ScrapeError>,
        bool,
        bool,
        Option<&'static str>,
    );

    /// `up` = answered, `success` = answered healthy, and the reason names what is wrong
    #[test]
    fn up_is_answered_success_is_healthy_and_the_reason_names_the_problem() {
        let html = Ok(Response {
            status: 503,
            content_type: "text/html".into(),
            body: b"<html>maintenance</html>".to_vec(),
        });
        let cases: Vec<Case> = vec![
            // the ScaiDNS shape, healthy
            (
                "200 ok",
                answer(200, r#"{"status":"ok","checks":{"pdns":"ok"}}"#),
                true,
                true,
                None,
            ),
            // the trust issue: answered, one check failing; no "HTTP status 200"
            (
                "200 degraded",
                answer(200, DEGRADED),
                true,
                false,
                Some("pdns: connection refused"),
            ),
            // both problems named
            (
                "503 degraded",
                answer(503, DEGRADED),
                true,
                false,
                Some("HTTP status 503; pdns: connection refused"),
            ),
            // no check explains the status word: the word is the reason
            (
                "200 Warning",
                answer(200, r#"{"status":"Warning"}"#),
                true,
                false,
                Some(r#"JSON status "Warning""#),
            ),
            (
                "503, an empty body served as JSON",
                answer(503, ""),
                true,
                false,
                Some(
                    "HTTP status 503; invalid JSON body: EOF while parsing a value at line 1 column 0",
                ),
            ),
            ("503 HTML", html, true, false, Some("HTTP status 503")),
            // the endpoint's own verdict is ok: the failing check shows in health_check_ok
            (
                "200 ok, a check failing",
                answer(200, r#"{"status":"ok","checks":{"pdns":"down"}}"#),
                true,
                true,
                None,
            ),
            (
                "503 ok, a check failing",
                answer(503, r#"{"status":"ok","checks":{"pdns":"down"}}"#),
                true,
                false,
                Some("HTTP status 503; pdns: down"),
            ),
            // the body was read, so it answered
            (
                "200 broken JSON",
                answer(200, r#"{"status":"ok","#),
                true,
                false,
                Some("invalid JSON body: EOF while parsing a value at line 1 column 15"),
            ),
            // no answer at all
            (
                "timeout",
                Err(ScrapeError::Timeout(std::time::Duration::from_secs(1))),
                false,
                false,
                Some("timeout after 1s"),
            ),
            (
                "body over the limit",
                Err(ScrapeError::BodyTooLarge { limit: 10 }),
                false,
                false,
                Some("body exceeds the limit of 10 bytes"),
            ),
        ];
        for (name, outcome, up, success, error) in cases {
            let (report, _) = judge(&outcome, &[]);
            assert_eq!(
                (report.up, report.success, report.error.as_deref()),
                (up, success, error),
                "{name}"
            );
        }
    }

    #[test]
    fn a_missing_json_field_is_a_warning_on_a_healthy_body_and_not_the_reason_otherwise() {
        let fields = [("uptime".to_string(), "svc_uptime".to_string())];
        let (ok, gauges) = judge(&answer(200, r#"{"status":"ok"}"#), &fields);
        assert!(ok.success);
        assert_eq!(
            ok.error.as_deref(),
            Some(r#"json fields missing or not numbers: "uptime""#)
        );
        assert!(gauges.is_empty());
        let (bad, _) = judge(&answer(200, DEGRADED), &fields);
        assert_eq!(bad.error.as_deref(), Some("pdns: connection refused"));
    }
}
