//! Health probes: judging a health response (status code, latency, JSON body) and writing its
//! series. CPU work and store writes: run on a blocking thread.
//!
//! Configured JSON fields (`health_json`) are read by a [`JsonPath`]: keys, array indexes and
//! array elements chosen by a key's value. Every input is bounded: the body by the target's
//! `body_size_limit`, its nesting by serde_json's recursion limit (128), a path by
//! [`MAX_PATH_BYTES`] and [`MAX_PATH_STEPS`], the fields of a target by [`MAX_JSON_FIELDS`], the
//! states of a string field by [`MAX_STATES`] (each cut at [`MAX_STATE_BYTES`]) and the checks of a
//! body by [`MAX_CHECKS`].

use std::collections::{BTreeMap, BTreeSet};

use super::fetch::{Response, ScrapeError};
use crate::labels::Labels;
use crate::store::{Store, chunk::stale_nan};

/// The longest `health_json` path, in bytes.
pub const MAX_PATH_BYTES: usize = 256;
/// The most steps (keys, indexes, selections) in a `health_json` path.
pub const MAX_PATH_STEPS: usize = 16;
/// The most `health_json` fields of one target.
pub const MAX_JSON_FIELDS: usize = 64;
/// The most values (each a `state` series) a string field is written with.
pub const MAX_STATES: usize = 16;
/// A state value longer than this is cut (it becomes a label value).
pub const MAX_STATE_BYTES: usize = 128;
/// The most entries of a body's `checks` kept as `health_check_ok` series (one series each).
pub const MAX_CHECKS: usize = 256;

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// an object's key
    Key(String),
    /// an array's element
    Index(usize),
    /// the first object of an array whose `key` is `value` (compared as text)
    Select { key: String, value: String },
}

/// A parsed `health_json` path: `stats.queue.depth`, `checks[0].ok`, `checks[name=db].ok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(pub Vec<Step>);

impl JsonPath {
    /// Parses a path, or says what is wrong with it (pure).
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        if text.is_empty() {
            return Err("empty path".into());
        }
        if text.len() > MAX_PATH_BYTES {
            return Err(format!("longer than {MAX_PATH_BYTES} bytes"));
        }
        let mut steps = Vec::new();
        let mut key = String::new();
        // a key is due: at the start and after each `.` (a selection may open the path)
        let mut need_key = true;
        let mut at_start = true;
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            match c {
                '.' => {
                    if need_key && key.is_empty() {
                        return Err(format!("empty key in {text:?}"));
                    }
                    if !key.is_empty() {
                        steps.push(Step::Key(std::mem::take(&mut key)));
                    }
                    need_key = true;
                    rest = &rest[1..];
                }
                '[' => {
                    if need_key && key.is_empty() && !at_start {
                        return Err(format!("empty key in {text:?}"));
                    }
                    if !key.is_empty() {
                        steps.push(Step::Key(std::mem::take(&mut key)));
                    }
                    let inner = &rest[1..];
                    let Some(end) = inner.find(']') else {
                        return Err(format!("unclosed '[' in {text:?}"));
                    };
                    let sel = &inner[..end];
                    if sel.contains('[') {
                        return Err(format!("unexpected '[' in {text:?}"));
                    }
                    steps.push(match sel.split_once('=') {
                        Some((k, v)) if !k.is_empty() => Step::Select {
                            key: k.to_string(),
                            value: v.to_string(),
                        },
                        Some(_) => return Err(format!("empty key in selection [{sel}]")),
                        None => {
                            Step::Index(sel.parse().map_err(|_| {
                                format!("[{sel}] is neither an index nor key=value")
                            })?)
                        }
                    });
                    need_key = false;
                    rest = &inner[end + 1..];
                    if !rest.is_empty() && !rest.starts_with(['.', '[']) {
                        return Err(format!("expected '.' or '[' at {rest:?}"));
                    }
                }
                ']' => return Err(format!("unexpected ']' in {text:?}")),
                c => {
                    key.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
            at_start = false;
        }
        if !key.is_empty() {
            steps.push(Step::Key(key));
        } else if need_key {
            return Err(format!("empty key in {text:?}"));
        }
        if steps.len() > MAX_PATH_STEPS {
            return Err(format!("more than {MAX_PATH_STEPS} steps"));
        }
        Ok(JsonPath(steps))
    }

    /// The value the path leads to in `v`, if any.
    pub fn lookup<'a>(&self, v: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        self.0.iter().try_fold(v, |v, step| match step {
            Step::Key(k) => v.get(k),
            Step::Index(i) => v.as_array()?.get(*i),
            Step::Select { key, value } => v.as_array()?.iter().find(|e| {
                e.get(key).is_some_and(|x| {
                    let text: std::borrow::Cow<'_, str> = match x {
                        serde_json::Value::String(s) => s.into(),
                        other => other.to_string().into(),
                    };
                    text == value.as_str()
                })
            }),
        })
    }
}

/// A `health_json` field with its defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonField {
    /// the path as written (for messages)
    pub field: String,
    pub path: JsonPath,
    pub metric: String,
    /// the configured states of a string field
    pub states: Vec<String>,
}

/// What a health endpoint's probes remember from one to the next: the checks written (a check
/// that disappears gets a stale marker) and the states seen per string field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthMemory {
    pub checks: BTreeSet<String>,
    /// metric → the state values written (configured and seen, at most [`MAX_STATES`])
    pub states: BTreeMap<String, BTreeSet<String>>,
}

/// One sample a health probe writes: metric, labels beyond the endpoint's, value.
pub type HealthSample = (String, Vec<(&'static str, String)>, f64);

/// One sample of a configured JSON field: metric, `state` label (string fields), value.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonSample {
    pub metric: String,
    pub state: Option<String>,
    pub value: f64,
}

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
    /// it answered and its JSON body says it works in part: some checks fail while others pass
    /// (or its `status` is ok), or its `status` is a word for "in part" (`degraded`, `warn`,
    /// `warning`, `partial`); shown as degraded rather than down, whatever the HTTP status. An
    /// endpoint whose every check fails under a bad status is not degraded but down
    pub degraded: bool,
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
        // `status` (a word or a boolean), else an `ok` or `healthy` boolean
        serde_json::Value::Object(m) => {
            match ["status", "ok", "healthy"].iter().find_map(|k| m.get(*k)) {
                Some(serde_json::Value::String(s)) => (is_ok_word(s), v.to_string()),
                Some(serde_json::Value::Bool(b)) => (*b, v.to_string()),
                _ => (false, v.to_string()),
            }
        }
        other => (false, other.to_string()),
    }
}

/// Status words of a JSON health body for "working in part".
fn is_degraded_word(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "degraded" | "warn" | "warning" | "partial"
    )
}

/// Whether an answered JSON body reports a partial failure (see [`HealthReport::degraded`]):
/// `status` is the body's `status` field, `checks` its checks.
fn is_degraded(status: Option<&serde_json::Value>, checks: &[(String, bool, String)]) -> bool {
    let failing = checks.iter().filter(|c| !c.1).count();
    let passing = checks.len() - failing;
    let status_ok = status.is_none_or(|v| check_verdict(v).0);
    let word = status
        .and_then(|v| v.as_str())
        .is_some_and(is_degraded_word);
    word || (failing > 0 && (passing > 0 || status_ok))
}

/// Whether a response is a JSON health body: served as JSON, or its first non-blank byte opens
/// an object or an array.
pub fn looks_like_json(content_type: &str, body: &[u8]) -> bool {
    content_type.contains("json")
        || matches!(
            body.iter().find(|b| !b.is_ascii_whitespace()),
            Some(b'{' | b'[')
        )
}

/// `s` cut to at most `max` bytes at a character boundary.
fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The samples of the configured fields in `json`, and the fields missing or of another type.
/// `memory` holds the states each string field was written with; a new value joins them while
/// there are fewer than [`MAX_STATES`].
fn read_fields(
    json: &serde_json::Value,
    fields: &[JsonField],
    memory: &mut BTreeMap<String, BTreeSet<String>>,
) -> (Vec<JsonSample>, Vec<String>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for f in fields {
        let sample = |value: f64| JsonSample {
            metric: f.metric.clone(),
            state: None,
            value,
        };
        match f.path.lookup(json) {
            Some(serde_json::Value::Number(n)) => match n.as_f64() {
                Some(x) => out.push(sample(x)),
                None => problems.push(format!("{:?} is not a float", f.field)),
            },
            Some(serde_json::Value::Bool(b)) => out.push(sample(if *b { 1.0 } else { 0.0 })),
            Some(serde_json::Value::String(text)) => {
                let current = clip(text, MAX_STATE_BYTES);
                let known = memory.entry(f.metric.clone()).or_default();
                for s in &f.states {
                    if known.len() < MAX_STATES {
                        known.insert(clip(s, MAX_STATE_BYTES).to_string());
                    }
                }
                if !known.contains(current) {
                    if known.len() < MAX_STATES {
                        known.insert(current.to_string());
                    } else {
                        problems.push(format!(
                            "{:?}: value {current:?} not written, the field already has {MAX_STATES} states",
                            f.field
                        ));
                    }
                }
                for s in known.iter() {
                    out.push(JsonSample {
                        metric: f.metric.clone(),
                        state: Some(s.clone()),
                        value: if s == current { 1.0 } else { 0.0 },
                    });
                }
            }
            Some(other) => problems.push(format!(
                "{:?} is {}, not a number, boolean or string",
                f.field,
                match other {
                    serde_json::Value::Null => "null",
                    serde_json::Value::Array(_) => "an array",
                    _ => "an object",
                }
            )),
            None => problems.push(format!("{:?} missing", f.field)),
        }
    }
    (out, problems)
}

/// The checks of a JSON body: an object of `name: verdict`, or an array of objects each with a
/// `name` (and a `status`), at most [`MAX_CHECKS`].
fn read_checks(json: &serde_json::Value) -> Vec<(String, bool, String)> {
    match json.get("checks") {
        Some(serde_json::Value::Object(checks)) => checks
            .iter()
            .take(MAX_CHECKS)
            .map(|(name, v)| {
                let (ok, text) = check_verdict(v);
                (name.clone(), ok, text)
            })
            .collect(),
        Some(serde_json::Value::Array(checks)) => checks
            .iter()
            .filter_map(|v| {
                let name = v.get("name")?.as_str()?;
                let (ok, text) = check_verdict(v);
                Some((clip(name, MAX_STATE_BYTES).to_string(), ok, text))
            })
            .take(MAX_CHECKS)
            .collect(),
        _ => Vec::new(),
    }
}

/// Judges one probe's outcome (pure but for `states`, the string fields' known values): the
/// report, and the configured JSON fields' samples.
fn judge(
    result: &Result<Response, ScrapeError>,
    json_gauges: &[JsonField],
    states: &mut BTreeMap<String, BTreeSet<String>>,
) -> (HealthReport, Vec<JsonSample>) {
    let mut report = HealthReport {
        up: false,
        success: false,
        error: None,
        checks: Vec::new(),
        degraded: false,
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
    let looks_json = looks_like_json(&resp.content_type, &resp.body);
    match looks_json.then(|| serde_json::from_slice::<serde_json::Value>(&resp.body)) {
        Some(Ok(json)) => {
            let bad_status = json.get("status").filter(|v| !check_verdict(v).0);
            report.checks = read_checks(&json);
            report.degraded = is_degraded(json.get("status"), &report.checks);
            let (samples, missing) = read_fields(&json, json_gauges, states);
            gauges = samples;
            if !missing.is_empty() {
                warning = Some(format!("json fields: {}", missing.join(", ")));
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

/// Every sample of a health probe (pure): (metric, labels beyond the endpoint's, value):
/// `up`, `probe_success`, `probe_http_status_code`, `probe_duration_seconds`, the configured
/// JSON fields, then `health_check_ok{check}` per check. What [`ingest_health`] writes and
/// `tocsin scrape` prints.
pub fn health_samples(
    report: &HealthReport,
    status: u16,
    seconds: f64,
    fields: &[JsonSample],
) -> Vec<HealthSample> {
    let one_if = |b: bool| if b { 1.0 } else { 0.0 };
    let mut out: Vec<HealthSample> = vec![
        ("up".into(), vec![], one_if(report.up)),
        ("probe_success".into(), vec![], one_if(report.success)),
        ("probe_http_status_code".into(), vec![], f64::from(status)),
        ("probe_duration_seconds".into(), vec![], seconds),
    ];
    for f in fields {
        let labels = f.state.iter().map(|s| ("state", s.clone())).collect();
        out.push((f.metric.clone(), labels, f.value));
    }
    for (name, ok, _) in &report.checks {
        out.push((
            "health_check_ok".into(),
            vec![("check", name.clone())],
            one_if(*ok),
        ));
    }
    out
}

/// Judges a health response without writing it: the report and its samples
/// ([`health_samples`]), as the first probe of an endpoint would write them.
pub fn preview(
    result: &Result<Response, ScrapeError>,
    seconds: f64,
    json_gauges: &[JsonField],
) -> (HealthReport, Vec<HealthSample>) {
    let (report, fields) = judge(result, json_gauges, &mut BTreeMap::new());
    let status = result.as_ref().map_or(0, |resp| resp.status);
    let samples = health_samples(&report, status, seconds, &fields);
    (report, samples)
}

/// Judges a health response and writes its series at `t`: `up` (answered),
/// `probe_success` (answered healthy: see [`HealthReport`]), `probe_http_status_code` (0 without
/// an answer), `probe_duration_seconds`, `health_check_ok{check}` per entry of a JSON `checks`
/// object or array (its text kept as the series' note), and the configured JSON fields.
pub fn ingest_health(
    store: &Store,
    base: &Labels,
    t: i64,
    seconds: f64,
    result: &Result<Response, ScrapeError>,
    json_gauges: &[JsonField],
    memory: &mut HealthMemory,
) -> HealthReport {
    let (report, fields) = judge(result, json_gauges, &mut memory.states);
    let status = result.as_ref().map_or(0, |resp| resp.status);
    let samples = health_samples(&report, status, seconds, &fields);
    let labels: Vec<Labels> = samples
        .iter()
        .map(|(name, extra, _)| {
            extra
                .iter()
                .fold(base.with("__name__", name), |l, (k, v)| l.with(k, v))
        })
        .collect();
    let ids = store.series_refs(labels);
    let batch: Vec<_> = ids
        .iter()
        .zip(&samples)
        .map(|(&id, (_, _, v))| (id, t, *v))
        .collect();
    store.append(&batch);
    // the checks come last: their texts are kept as the series' notes
    let first_check = samples.len() - report.checks.len();
    for (&id, (_, _, text)) in ids[first_check..].iter().zip(&report.checks) {
        store.set_note(id, t, text);
    }
    // checks the last probe reported and this one did not (gone from the body, or the probe
    // failed): their series end with a stale marker, as Prometheus ends a vanished series, so
    // `health_check_ok == 0` does not stay true on the last value forever
    let now: BTreeSet<String> = report.checks.iter().map(|(n, _, _)| n.clone()).collect();
    let gone: Vec<Labels> = memory
        .checks
        .difference(&now)
        .map(|name| base.with("__name__", "health_check_ok").with("check", name))
        .collect();
    if !gone.is_empty() {
        let ids = store.series_refs(gone);
        let batch: Vec<_> = ids.iter().map(|&id| (id, t, stale_nan())).collect();
        store.append(&batch);
    }
    memory.checks = now;
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
                Some("body exceeds the limit of 10 bytes (body_size_limit)"),
            ),
        ];
        for (name, outcome, up, success, error) in cases {
            let (report, _) = judge(&outcome, &[], &mut BTreeMap::new());
            assert_eq!(
                (report.up, report.success, report.error.as_deref()),
                (up, success, error),
                "{name}"
            );
        }
    }

    /// degraded = answered with a JSON body saying it works in part; never for no answer, a
    /// body without a verdict, or every check failing under a bad status
    #[test]
    fn an_answer_reporting_a_partial_failure_is_degraded_and_a_total_one_is_not() {
        let cases: &[(&str, Result<Response, ScrapeError>, bool)] = &[
            // the ScaiDNS shape: 503, one check of two failing
            ("503 degraded", answer(503, DEGRADED), true),
            // the same with 200 (an endpoint that keeps 200 for load balancers)
            ("200 degraded", answer(200, DEGRADED), true),
            // its own verdict is ok, one check fails
            (
                "200 ok, a check failing",
                answer(200, r#"{"status":"ok","checks":{"pdns":"down"}}"#),
                true,
            ),
            // the status word alone says "in part"
            ("200 warning", answer(200, r#"{"status":"Warning"}"#), true),
            (
                "503 degraded, no checks",
                answer(503, r#"{"status":"degraded"}"#),
                true,
            ),
            // healthy
            (
                "200 ok",
                answer(200, r#"{"status":"ok","checks":{"pdns":"ok"}}"#),
                false,
            ),
            // everything fails: down, not degraded
            (
                "503 every check failing",
                answer(
                    503,
                    r#"{"status":"fail","checks":{"db":"down","pdns":"down"}}"#,
                ),
                false,
            ),
            (
                "503 status down",
                answer(503, r#"{"status":"down"}"#),
                false,
            ),
            // no verdict in a body: the HTTP status decides (down)
            ("503 empty", answer(503, ""), false),
            (
                "timeout",
                Err(ScrapeError::Timeout(std::time::Duration::from_secs(1))),
                false,
            ),
        ];
        for (name, outcome, degraded) in cases {
            let (report, _) = judge(outcome, &[], &mut BTreeMap::new());
            assert_eq!(report.degraded, *degraded, "{name}");
        }
    }

    #[test]
    fn a_missing_json_field_is_a_warning_on_a_healthy_body_and_not_the_reason_otherwise() {
        let fields = [field("uptime", &[])];
        let (ok, gauges) = judge(
            &answer(200, r#"{"status":"ok"}"#),
            &fields,
            &mut BTreeMap::new(),
        );
        assert!(ok.success);
        assert_eq!(
            ok.error.as_deref(),
            Some(r#"json fields: "uptime" missing"#)
        );
        assert!(gauges.is_empty());
        let (bad, _) = judge(&answer(200, DEGRADED), &fields, &mut BTreeMap::new());
        assert_eq!(bad.error.as_deref(), Some("pdns: connection refused"));
    }

    fn field(path: &str, states: &[&str]) -> JsonField {
        JsonField {
            field: path.to_string(),
            path: JsonPath::parse(path).unwrap(),
            metric: format!("m_{}", path.len()),
            states: states.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn paths_parse_keys_indexes_and_selections_and_refuse_the_rest() {
        use Step::*;
        let key = |k: &str| Key(k.to_string());
        // (path, steps or the start of the error)
        let good: &[(&str, Vec<Step>)] = &[
            ("status", vec![key("status")]),
            (
                "stats.queue.depth",
                vec![key("stats"), key("queue"), key("depth")],
            ),
            ("checks[0].ok", vec![key("checks"), Index(0), key("ok")]),
            // a body that is an array
            ("[2]", vec![Index(2)]),
            (
                "checks[name=db].ok",
                vec![
                    key("checks"),
                    Select {
                        key: "name".into(),
                        value: "db".into(),
                    },
                    key("ok"),
                ],
            ),
            // nested arrays
            ("m[1][0]", vec![key("m"), Index(1), Index(0)]),
            // a selected value may hold a dot
            (
                "zones[name=example.org.].serial",
                vec![
                    key("zones"),
                    Select {
                        key: "name".into(),
                        value: "example.org.".into(),
                    },
                    key("serial"),
                ],
            ),
        ];
        for (path, steps) in good {
            assert_eq!(
                JsonPath::parse(path).as_ref().map(|p| &p.0),
                Ok(steps),
                "{path}"
            );
        }
        let long = "a.".repeat(MAX_PATH_BYTES);
        let deep = vec!["a"; MAX_PATH_STEPS + 1].join(".");
        let bad: &[(&str, &str)] = &[
            ("", "empty path"),
            ("a..b", "empty key"),
            ("a.", "empty key"),
            ("a[", "unclosed '['"),
            ("a]", "unexpected ']'"),
            ("a[x]", "[x] is neither an index nor key=value"),
            ("a[-1]", "[-1] is neither"),
            ("a[=v]", "empty key in selection"),
            ("a[0]b", "expected '.' or '['"),
            (".a", "empty key"),
            ("a.[0]", "empty key"),
            ("a[[0]]", "unexpected '['"),
            (&long, "longer than 256 bytes"),
            (&deep, "more than 16 steps"),
        ];
        for (path, want) in bad {
            let e = JsonPath::parse(path).unwrap_err();
            assert!(e.starts_with(want), "{path}: {e}");
        }
    }

    #[test]
    fn numbers_booleans_and_strings_become_samples_and_states_are_remembered() {
        // the pdns connector's shape: a status word, booleans, checks in an array
        let body = r#"{"status":"Warning","ready":true,"stats":{"synced":12},
            "checks":[{"name":"netbox","ok":true,"latency":0.2},{"name":"pdns","ok":false}],
            "list":[1,"x",null,{"a":1},[1]]}"#;
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        let fields = [
            field("status", &["Healthy", "Warning", "Degraded"]),
            field("ready", &[]),
            field("stats.synced", &[]),
            field("checks[name=pdns].ok", &[]),
            field("checks[0].latency", &[]),
            field("checks[name=nothing].ok", &[]),
            field("list[9]", &[]),
            field("list[2]", &[]),
            field("list[3]", &[]),
            field("list[4]", &[]),
            field("stats[0]", &[]),
        ];
        let mut memory = BTreeMap::new();
        let (samples, problems) = read_fields(&json, &fields, &mut memory);
        let got: Vec<(String, Option<&str>, f64)> = samples
            .iter()
            .map(|s| (s.metric.clone(), s.state.as_deref(), s.value))
            .collect();
        let m = |p: &str| format!("m_{}", p.len());
        assert_eq!(
            got,
            vec![
                (m("status"), Some("Degraded"), 0.0),
                (m("status"), Some("Healthy"), 0.0),
                (m("status"), Some("Warning"), 1.0),
                (m("ready"), None, 1.0),
                (m("stats.synced"), None, 12.0),
                (m("checks[name=pdns].ok"), None, 0.0),
                (m("checks[0].latency"), None, 0.2),
            ]
        );
        assert_eq!(
            problems,
            vec![
                r#""checks[name=nothing].ok" missing"#,
                r#""list[9]" missing"#,
                r#""list[2]" is null, not a number, boolean or string"#,
                r#""list[3]" is an object, not a number, boolean or string"#,
                r#""list[4]" is an array, not a number, boolean or string"#,
                r#""stats[0]" missing"#,
            ]
        );
        // a value never configured is written once seen, and stays (0) after it changes back
        let unlisted = serde_json::json!({"status": "Maintenance"});
        let (samples, _) = read_fields(&unlisted, &fields[..1], &mut memory);
        assert_eq!(samples.len(), 4);
        let healthy = serde_json::json!({"status": "Healthy"});
        let (samples, _) = read_fields(&healthy, &fields[..1], &mut memory);
        let on: Vec<_> = samples.iter().filter(|s| s.value == 1.0).collect();
        assert_eq!((samples.len(), on.len()), (4, 1));
        assert_eq!(on[0].state.as_deref(), Some("Healthy"));
    }

    #[test]
    fn string_states_are_bounded_in_number_and_length() {
        let fields = [field("s", &[])];
        let mut memory = BTreeMap::new();
        for i in 0..MAX_STATES + 5 {
            let json = serde_json::json!({ "s": format!("state-{i:03}-{}", "x".repeat(500)) });
            let (samples, problems) = read_fields(&json, &fields, &mut memory);
            assert!(samples.len() <= MAX_STATES);
            assert!(
                samples
                    .iter()
                    .all(|s| s.state.as_ref().unwrap().len() <= MAX_STATE_BYTES)
            );
            assert_eq!(problems.is_empty(), i < MAX_STATES, "{i}: {problems:?}");
        }
        assert_eq!(memory["m_1"].len(), MAX_STATES);
    }

    #[test]
    fn checks_come_from_an_object_or_an_array_of_named_objects_and_are_bounded() {
        let array = serde_json::json!({"checks": [
            {"name": "db", "status": "ok"}, {"name": "pdns", "status": "down"}, {"status": "no name"}
        ]});
        let got: Vec<(String, bool)> = read_checks(&array)
            .into_iter()
            .map(|c| (c.0, c.1))
            .collect();
        assert_eq!(got, vec![("db".into(), true), ("pdns".into(), false)]);
        let many: serde_json::Map<String, serde_json::Value> = (0..MAX_CHECKS * 2)
            .map(|i| (format!("c{i}"), serde_json::json!("ok")))
            .collect();
        let big = serde_json::json!({ "checks": many });
        assert_eq!(read_checks(&big).len(), MAX_CHECKS);
    }

    #[test]
    fn a_deeply_nested_body_is_an_invalid_body_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let (report, _) = judge(
            &answer(200, &deep),
            &[field("a", &[])],
            &mut BTreeMap::new(),
        );
        assert!(report.up && !report.success);
        assert!(report.error.unwrap().contains("recursion limit"));
    }
}
