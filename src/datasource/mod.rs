//! The client of remote query engines (`datasources:` in `tocsin.yml`): the Prometheus HTTP
//! API's `/api/v1/query` and `/api/v1/query_range`, as Prometheus, VictoriaMetrics, Thanos
//! Query and Mimir serve them. With `ingest/` and `notify/`, the only code that connects out
//! (`tests/it/architecture.rs`): querying a remote engine is neither bringing samples in nor
//! notifying, and the rule engine must stay free of I/O, so the client lives here and the rule
//! engine sees it only as a [`RemoteEngine`].
//!
//! One request per query: POST, form-encoded (`query`, `time` or `start`/`end`/`step`), so a
//! long expression fits; an instant query's answer asked for uncompressed, a range query's
//! gzip-compressed ([`Encoding`]); one timeout over connect, headers and body; the body stops at
//! `response_size_limit`; JSON nesting is bounded by serde_json's recursion limit (128). An
//! answer is classified once ([`classify`]): unreachable, a timeout, 429, 5xx, or an answer not
//! in the API's shape is [`SourceError::Unavailable`]; a 4xx or 422 error answer, a result of
//! the wrong type or an answer over the size limit is [`SourceError::Query`], the rule's own
//! error. Every query sets `tocsin_datasource_up{datasource}` and counts in
//! `tocsin_datasource_queries_total{datasource,result}`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;

use crate::config::datasource::Datasource;
use crate::labels::Labels;
use crate::promql::{Cancel, Sample, Series, Value};
use crate::rules::source::{Answer, RemoteEngine, SourceError};
use crate::selfmetrics::{DatasourceLabels, DatasourceResultLabels, SelfMetrics};

/// How often a query in flight looks at its cancellation token.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// A remote engine: its settings, one HTTP client (connections kept alive across queries) and
/// the runtime its requests run on.
pub struct Client {
    ds: Datasource,
    http: reqwest::Client,
    /// the async runtime the blocking [`RemoteEngine::instant`] hands its request to (the
    /// evaluation runs on a blocking thread, outside the runtime's workers)
    runtime: tokio::runtime::Handle,
    metrics: Option<Arc<SelfMetrics>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("datasource", &self.ds.name)
            .finish()
    }
}

/// The answer's encoding a request asks for. An instant query's answer is small (the series
/// of one alerting condition) and is asked for as it is: inflating a gzip answer costs a fixed
/// ~40 µs (the decoder's state and tables), measured at a third of the query path's CPU and ~9%
/// of the daemon's beside vmalert at 100 remote rules (`perf`). A range query's answer (replay)
/// runs to megabytes, where compression pays for itself on any network but loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
}

/// A range query's answer: a matrix and the engine's warnings.
#[derive(Debug, Clone, Default)]
pub struct RangeAnswer {
    pub series: Vec<Series>,
    pub warnings: Vec<String>,
}

impl Client {
    pub fn new(
        ds: Datasource,
        runtime: tokio::runtime::Handle,
        metrics: Option<Arc<SelfMetrics>>,
    ) -> Client {
        let http = reqwest::Client::builder()
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("http client builds");
        Client {
            ds,
            http,
            runtime,
            metrics,
        }
    }

    pub fn datasource(&self) -> &Datasource {
        &self.ds
    }

    /// `query` at `t` (ms): a vector or a scalar.
    pub async fn query(&self, query: &str, t: i64) -> Result<Answer, SourceError> {
        let form = [("query", query.to_string()), ("time", seconds(t))];
        let (data, warnings) = self.call("api/v1/query", &form, Encoding::Identity).await?;
        let value = decode_instant(data, t).map_err(|reason| self.query_error(reason))?;
        Ok(Answer { value, warnings })
    }

    /// `query` at every `step` from `start` to `end` (ms, inclusive): a matrix.
    pub async fn query_range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<RangeAnswer, SourceError> {
        let form = [
            ("query", query.to_string()),
            ("start", seconds(start)),
            ("end", seconds(end)),
            ("step", seconds(step)),
        ];
        let (data, warnings) = self
            .call("api/v1/query_range", &form, Encoding::Gzip)
            .await?;
        let series = decode_range(data).map_err(|reason| self.query_error(reason))?;
        Ok(RangeAnswer { series, warnings })
    }

    fn query_error(&self, reason: String) -> SourceError {
        SourceError::Query {
            datasource: self.ds.name.clone(),
            reason,
        }
    }

    /// One request, classified; the answer's `data` and warnings on success.
    async fn call(
        &self,
        path: &str,
        form: &[(&str, String)],
        encoding: Encoding,
    ) -> Result<(serde_json::Value, Vec<String>), SourceError> {
        let out = self.exchange(path, form, encoding).await;
        let result = match &out {
            Ok(_) => "ok",
            Err(SourceError::Query { .. }) => "query_error",
            Err(SourceError::Unavailable { .. }) => "unavailable",
        };
        if let Some(m) = &self.metrics {
            m.datasource_up
                .get_or_create(&DatasourceLabels {
                    datasource: self.ds.name.clone(),
                })
                .set(i64::from(result != "unavailable"));
            m.datasource_queries
                .get_or_create(&DatasourceResultLabels {
                    datasource: self.ds.name.clone(),
                    result,
                })
                .inc();
        }
        if let Ok((_, warnings)) = &out {
            for w in warnings {
                tracing::warn!(datasource = self.ds.name, warning = w, "datasource warning");
            }
        }
        out
    }

    async fn exchange(
        &self,
        path: &str,
        form: &[(&str, String)],
        encoding: Encoding,
    ) -> Result<(serde_json::Value, Vec<String>), SourceError> {
        let unavailable = |reason: String| SourceError::Unavailable {
            datasource: self.ds.name.clone(),
            reason,
        };
        let url = self
            .ds
            .url
            .join(path)
            .map_err(|e| unavailable(e.to_string()))?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        let limit = self.ds.response_size_limit;
        let work = async {
            let mut req = self
                .http
                .post(url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .header(reqwest::header::ACCEPT, "application/json")
                .body(body);
            if encoding == Encoding::Identity {
                // set here, the client adds no `gzip` and the engine compresses nothing
                req = req.header(reqwest::header::ACCEPT_ENCODING, "identity");
            }
            for (k, v) in &self.ds.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            if let Some(token) = &self.ds.bearer_token {
                req = req.bearer_auth(&token.0);
            }
            if let Some((user, password)) = &self.ds.basic_auth {
                req = req.basic_auth(user, Some(&password.0));
            }
            let resp = req
                .send()
                .await
                .map_err(|e| unavailable(crate::error::chain(&e.without_url())))?;
            let status = resp.status().as_u16();
            if resp.content_length().is_some_and(|n| n > limit) {
                return Err(self.query_error(format!(
                    "answer exceeds response_size_limit of {limit} bytes"
                )));
            }
            let mut body = Vec::new();
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk =
                    chunk.map_err(|e| unavailable(crate::error::chain(&e.without_url())))?;
                if body.len() as u64 + chunk.len() as u64 > limit {
                    return Err(self.query_error(format!(
                        "answer exceeds response_size_limit of {limit} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            classify(&self.ds.name, status, &body)
        };
        let timeout = self.ds.timeout;
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(unavailable(format!(
                    "timeout after {}",
                    crate::duration::PromDuration(timeout)
                )))
            })
    }
}

impl RemoteEngine for Client {
    fn name(&self) -> &str {
        &self.ds.name
    }

    fn query_offset_ms(&self) -> i64 {
        self.ds.query_offset_ms
    }

    fn error_for_ms(&self) -> i64 {
        self.ds.error_for_ms
    }

    fn instant(&self, query: &str, t: i64, cancel: Option<&Cancel>) -> Result<Answer, SourceError> {
        let cancel = cancel.cloned();
        self.runtime.block_on(async {
            let Some(cancel) = cancel else {
                return self.query(query, t).await;
            };
            let stopped = async {
                loop {
                    if let Some(reason) = cancel.reason() {
                        return reason;
                    }
                    tokio::time::sleep(CANCEL_POLL).await;
                }
            };
            tokio::select! {
                answer = self.query(query, t) => answer,
                reason = stopped => Err(self.query_error(reason.to_string())),
            }
        })
    }

    fn instant_async<'a>(
        &'a self,
        query: &'a str,
        t: i64,
    ) -> Option<crate::rules::source::AnswerFuture<'a>> {
        Some(Box::pin(self.query(query, t)))
    }
}

/// One range query to run ahead of a replay: `query` at `start + k·step` up to `end` (ms).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RangeJob {
    pub query: String,
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

/// Points per range query: Prometheus refuses more than 11,000 per series.
const MAX_RANGE_POINTS: i64 = 10_000;
/// Range queries in flight at once while prefetching.
const PREFETCH_CONCURRENCY: usize = 4;

/// A replay's datasource: each rule's whole history fetched ahead with `query_range`
/// ([`Prefetched::prefetch`]), then answered per evaluation from memory; a query or time not
/// prefetched (a template's `query`, a range whose answer did not fall on its grid) is sent as
/// an instant query. A range query evaluates its expression at each step exactly as an instant
/// query at that time does, so the answers are the same; the `replay` tests compare the two
/// against Prometheus and VictoriaMetrics.
pub struct Prefetched {
    client: Arc<Client>,
    /// per query: its grid (start, step, end) and the samples at each step
    cache: std::collections::HashMap<String, Vec<Grid>>,
}

struct Grid {
    start: i64,
    step: i64,
    end: i64,
    at: std::collections::HashMap<i64, Vec<Sample>>,
    warnings: Vec<String>,
}

impl Prefetched {
    pub fn new(client: Arc<Client>) -> Prefetched {
        Prefetched {
            client,
            cache: Default::default(),
        }
    }

    /// Runs `jobs` (split at 10,000 points, 4 at a time) and keeps what they answer; returns
    /// how many range queries failed or answered off their grid (their times are then
    /// queried one by one, so a failure shows in the replay as it would have in the daemon).
    pub fn prefetch(&mut self, jobs: &[RangeJob]) -> usize {
        let mut parts = Vec::new();
        for j in jobs {
            let step = j.step.max(1);
            let mut start = j.start;
            while start <= j.end {
                let end = (start + step * (MAX_RANGE_POINTS - 1)).min(j.end);
                parts.push(RangeJob {
                    query: j.query.clone(),
                    start,
                    end,
                    step,
                });
                start = end + step;
            }
        }
        let client = self.client.clone();
        let answers: Vec<(RangeJob, Result<RangeAnswer, SourceError>)> =
            self.client.runtime.block_on(async {
                futures_util::stream::iter(parts.into_iter().map(|p| {
                    let client = client.clone();
                    async move {
                        let answer = client.query_range(&p.query, p.start, p.end, p.step).await;
                        (p, answer)
                    }
                }))
                .buffer_unordered(PREFETCH_CONCURRENCY)
                .collect()
                .await
            });
        let mut failed = 0;
        for (job, answer) in answers {
            let Ok(answer) = answer else {
                failed += 1;
                continue;
            };
            let mut at: std::collections::HashMap<i64, Vec<Sample>> = Default::default();
            let mut on_grid = true;
            for s in answer.series {
                for (t, v) in s.points {
                    if t < job.start || t > job.end || (t - job.start) % job.step != 0 {
                        on_grid = false;
                        break;
                    }
                    at.entry(t).or_default().push(Sample {
                        metric: s.metric.clone(),
                        t,
                        v,
                    });
                }
            }
            if !on_grid {
                failed += 1;
                continue;
            }
            self.cache.entry(job.query).or_default().push(Grid {
                start: job.start,
                step: job.step,
                end: job.end,
                at,
                warnings: answer.warnings,
            });
        }
        failed
    }
}

impl RemoteEngine for Prefetched {
    fn name(&self) -> &str {
        self.client.name()
    }

    fn query_offset_ms(&self) -> i64 {
        self.client.query_offset_ms()
    }

    fn error_for_ms(&self) -> i64 {
        self.client.error_for_ms()
    }

    fn instant(&self, query: &str, t: i64, cancel: Option<&Cancel>) -> Result<Answer, SourceError> {
        let grid = self.cache.get(query).and_then(|grids| {
            grids
                .iter()
                .find(|g| t >= g.start && t <= g.end && (t - g.start) % g.step == 0)
        });
        match grid {
            Some(g) => Ok(Answer {
                value: Value::Vector(g.at.get(&t).cloned().unwrap_or_default()),
                warnings: g.warnings.clone(),
            }),
            None => self.client.instant(query, t, cancel),
        }
    }
}

/// Whether `name: value` can be sent as an HTTP header (for the configuration's validation).
pub fn valid_header(name: &str, value: &str) -> bool {
    reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
        && reqwest::header::HeaderValue::from_str(value).is_ok()
}

/// `t` (ms) as the API's seconds.
fn seconds(t: i64) -> String {
    if t % 1000 == 0 {
        (t / 1000).to_string()
    } else {
        format!("{:.3}", t as f64 / 1000.0)
    }
}

/// The API's envelope.
#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: serde_json::Value,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
    /// VictoriaMetrics: some vmstorage nodes did not answer
    #[serde(default, rename = "isPartial")]
    is_partial: bool,
}

/// What an answer means: data and warnings, or which kind of failure (see the module doc).
pub fn classify(
    datasource: &str,
    status: u16,
    body: &[u8],
) -> Result<(serde_json::Value, Vec<String>), SourceError> {
    let unavailable = |reason: String| SourceError::Unavailable {
        datasource: datasource.to_string(),
        reason,
    };
    let query = |reason: String| SourceError::Query {
        datasource: datasource.to_string(),
        reason,
    };
    let envelope: Option<Envelope> = serde_json::from_slice(body).ok();
    let retryable = status == 429 || status >= 500;
    match envelope {
        Some(e) if e.status == "success" && (200..300).contains(&status) => {
            let mut warnings = e.warnings;
            if e.is_partial {
                warnings.push("partial response: some storage nodes did not answer".into());
            }
            Ok((e.data, warnings))
        }
        Some(e) => {
            let reason = format!(
                "{}: {} (HTTP status {status})",
                e.error_type.as_deref().unwrap_or("error"),
                e.error.as_deref().unwrap_or("no error message"),
            );
            // Prometheus: 503 `unavailable`, 500 `internal`, 504 `timeout`; 400 `bad_data`,
            // 422 `execution`
            if retryable || matches!(e.error_type.as_deref(), Some("timeout" | "unavailable")) {
                Err(unavailable(reason))
            } else {
                Err(query(reason))
            }
        }
        None if retryable || (200..300).contains(&status) => Err(unavailable(format!(
            "HTTP status {status} with an answer that is not the Prometheus API's JSON: {}",
            snippet(body)
        ))),
        None => Err(query(format!("HTTP status {status}: {}", snippet(body)))),
    }
}

/// The start of a body, for an error message: at most 120 characters, control characters
/// replaced.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .take(120)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > 120 {
        out.push('…');
    }
    out.trim().to_string()
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorItem {
    #[serde(default)]
    metric: std::collections::BTreeMap<String, String>,
    value: (f64, String),
}

#[derive(Deserialize)]
struct MatrixItem {
    #[serde(default)]
    metric: std::collections::BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

/// A value as the API writes it: a Go float (`NaN`, `+Inf`, `-Inf`, decimal).
fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s
            .parse::<f64>()
            .map_err(|_| format!("invalid sample value {:?}", snippet(s.as_bytes()))),
    }
}

fn millis(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

fn labels(metric: std::collections::BTreeMap<String, String>) -> Result<Labels, String> {
    for k in metric.keys() {
        if !crate::labels::valid_label_name(k) && k != crate::labels::METRIC_NAME {
            return Err(format!(
                "invalid label name {:?} in the answer",
                snippet(k.as_bytes())
            ));
        }
    }
    Ok(Labels::from_pairs(metric))
}

/// An instant query's `data` as the local engine's value: a vector (each sample at `t`, as the
/// local engine stamps them) or a scalar; a matrix or string is an error, as a rule expression
/// of that type is.
pub fn decode_instant(data: serde_json::Value, t: i64) -> Result<Value, String> {
    let d: Data = serde_json::from_value(data).map_err(|e| format!("malformed answer: {e}"))?;
    match d.result_type.as_str() {
        "vector" => {
            let items: Vec<VectorItem> =
                serde_json::from_value(d.result).map_err(|e| format!("malformed vector: {e}"))?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(Sample {
                    metric: labels(item.metric)?,
                    t,
                    v: parse_value(&item.value.1)?,
                });
            }
            Ok(Value::Vector(out))
        }
        "scalar" => {
            let (_, v): (f64, String) =
                serde_json::from_value(d.result).map_err(|e| format!("malformed scalar: {e}"))?;
            Ok(Value::Scalar(parse_value(&v)?))
        }
        other => Err(format!(
            "rule expression must give a vector or a scalar, got a {other}"
        )),
    }
}

/// A range query's `data` as series, points ascending.
pub fn decode_range(data: serde_json::Value) -> Result<Vec<Series>, String> {
    let d: Data = serde_json::from_value(data).map_err(|e| format!("malformed answer: {e}"))?;
    if d.result_type != "matrix" {
        return Err(format!(
            "a range query must give a matrix, got a {}",
            d.result_type
        ));
    }
    let items: Vec<MatrixItem> =
        serde_json::from_value(d.result).map_err(|e| format!("malformed matrix: {e}"))?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let mut points = Vec::with_capacity(item.values.len());
        for (ts, v) in item.values {
            points.push((millis(ts), parse_value(&v)?));
        }
        points.sort_by_key(|p| p.0);
        out.push(Series {
            metric: labels(item.metric)?,
            points,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_once() {
        // (status, body, expected: Ok / Query / Unavailable)
        let cases: &[(u16, &str, &str)] = &[
            (
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
                "ok",
            ),
            (
                400,
                r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
                "query",
            ),
            (
                422,
                r#"{"status":"error","errorType":"execution","error":"many-to-many"}"#,
                "query",
            ),
            (
                503,
                r#"{"status":"error","errorType":"unavailable","error":"shutting down"}"#,
                "unavailable",
            ),
            (500, "internal server error", "unavailable"),
            (502, "<html>bad gateway</html>", "unavailable"),
            (429, "slow down", "unavailable"),
            // a proxy's login page answering 200: not the engine
            (200, "<html>login</html>", "unavailable"),
            (404, "404 page not found", "query"),
        ];
        for (status, body, want) in cases {
            let got = match classify("d", *status, body.as_bytes()) {
                Ok(_) => "ok",
                Err(SourceError::Query { .. }) => "query",
                Err(SourceError::Unavailable { .. }) => "unavailable",
            };
            assert_eq!(got, *want, "{status} {body}");
        }
    }

    #[test]
    fn warnings_and_partial_responses_are_kept() {
        let body = r#"{"status":"success","isPartial":true,"warnings":["too many series"],"data":{"resultType":"scalar","result":[1,"2"]}}"#;
        let (data, warnings) = classify("d", 200, body.as_bytes()).unwrap();
        assert_eq!(warnings.len(), 2);
        assert!(warnings[1].contains("partial response"));
        assert!(matches!(decode_instant(data, 5000), Ok(Value::Scalar(v)) if v == 2.0));
    }

    #[test]
    fn vectors_decode_as_the_local_engine_gives_them() {
        let data = serde_json::json!({"resultType":"vector","result":[
            {"metric":{"__name__":"up","job":"a"},"value":[1.5,"NaN"]},
            {"metric":{"job":"b"},"value":[1.5,"+Inf"]},
            {"metric":{},"value":[1.5,"-3.25e2"]}
        ]});
        let Value::Vector(v) = decode_instant(data, 1500).unwrap() else {
            panic!("a vector")
        };
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].metric.get("job"), Some("a"));
        assert_eq!(v[0].metric.metric_name(), Some("up"));
        assert!(v[0].v.is_nan());
        assert_eq!(v[1].v, f64::INFINITY);
        assert_eq!(v[2].v, -325.0);
        assert!(v.iter().all(|s| s.t == 1500));
    }

    #[test]
    fn wrong_types_and_garbage_are_errors_not_panics() {
        let bad = [
            serde_json::json!({"resultType":"matrix","result":[]}),
            serde_json::json!({"resultType":"string","result":[1,"x"]}),
            serde_json::json!({"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}),
            serde_json::json!({"resultType":"vector","result":[{"metric":{"a b":"c"},"value":[1,"1"]}]}),
            serde_json::json!({"resultType":"vector","result":{"x":1}}),
            serde_json::json!({"resultType":"vector"}),
            serde_json::json!([1, 2, 3]),
            serde_json::json!(null),
        ];
        for data in bad {
            assert!(decode_instant(data.clone(), 0).is_err(), "{data}");
        }
        // nesting deeper than serde_json's limit is a parse error, not a stack overflow
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(classify("d", 200, deep.as_bytes()).is_err());
    }

    #[test]
    fn range_answers_decode_sorted() {
        let data = serde_json::json!({"resultType":"matrix","result":[
            {"metric":{"job":"a"},"values":[[2,"1"],[1,"0"]]}
        ]});
        let s = decode_range(data).unwrap();
        assert_eq!(s[0].points, [(1000, 0.0), (2000, 1.0)]);
        assert_eq!(seconds(1500), "1.500");
        assert_eq!(seconds(-2000), "-2");
    }
}
