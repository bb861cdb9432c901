//! The metadata part of Prometheus's HTTP API, which Grafana's metric browser and
//! autocompletion read: `GET|POST /api/v1/labels`, `GET /api/v1/label/{name}/values` and
//! `GET|POST /api/v1/series`, with their parameters (`match[]`, `start`, `end`, `limit`), shapes
//! and errors as Prometheus 2.42 answers them (`limit` as later versions: at most that many,
//! and the warning `results truncated due to limit`).
//!
//! Bounded: at most [`MAX_SELECTORS`] `match[]` selectors of at most [`MAX_SELECTOR_BYTES`]
//! each (400 beyond), selectors that match every series refused as Prometheus refuses them, and
//! at most [`MAX_RESULTS`] items an answer: more are cut, with a warning naming the bound (as
//! `limit` cuts). The store reads run under `spawn_blocking` (`Store::series_matching` and its
//! siblings), which keep at most the answer's items in memory however many series match, within
//! a query's default timeout (2 min; 503 `timeout`), and stop when the request ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

use super::api::{param, request_params, time_param};
use super::{ApiError, AppState, api_error};
use crate::labels::Matcher;
use crate::promql::json::labels_map;
use crate::store::{Capped, StoreError};

/// Most `match[]` selectors one request may give (Prometheus has no bound; Grafana sends one).
pub const MAX_SELECTORS: usize = 100;

/// Longest `match[]` selector, in bytes (a selector of 100 metric names in a regex is ~3 KiB).
pub const MAX_SELECTOR_BYTES: usize = 16 * 1024;

/// Longest label name in `/api/v1/label/{name}/values`, in bytes.
pub const MAX_LABEL_NAME_BYTES: usize = 1024;

/// Most items (series, names or values) one answer holds, whatever `limit` says: more are cut
/// with a warning. Prometheus has no such bound; 100,000 label sets are ~20 MB of JSON, far
/// beyond what a metric browser shows.
pub const MAX_RESULTS: usize = 100_000;

/// Prometheus's default `start`: its `minTime` (year -292273086), in ms.
const MIN_TIME_MS: i64 = (i64::MIN / 1000 + 62_135_596_801) * 1000;
/// Prometheus's default `end`: its `maxTime`, in ms.
const MAX_TIME_MS: i64 = (i64::MAX / 1000 - 62_135_596_801) * 1000;

/// What the three endpoints read from their parameters.
struct MetaRequest {
    /// one conjunction of matchers per selector (and per `or` alternative); empty: every series
    sets: Vec<Vec<Matcher>>,
    mint: i64,
    maxt: i64,
    /// the items asked for, within [`MAX_RESULTS`]
    limit: usize,
    /// `limit` asked for fewer than [`MAX_RESULTS`]: a cut is the user's, not the bound's
    user_limit: bool,
}

fn bad_data(msg: impl Into<String>) -> ApiError {
    ApiError::bad_data(msg)
}

/// The parameters common to the three endpoints, checked in Prometheus's order: `start`, `end`,
/// then the selectors; then `limit`.
fn meta_request(params: &[(String, String)]) -> Result<MetaRequest, ApiError> {
    let mint = time_param(params, "start")?.unwrap_or(MIN_TIME_MS);
    let maxt = time_param(params, "end")?.unwrap_or(MAX_TIME_MS);
    let selectors: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "match[]")
        .map(|(_, v)| v.as_str())
        .collect();
    if selectors.len() > MAX_SELECTORS {
        return Err(bad_data(format!(
            "invalid parameter \"match[]\": {} selectors, more than the limit of {MAX_SELECTORS}",
            selectors.len()
        )));
    }
    let mut sets = Vec::new();
    for s in selectors {
        sets.extend(
            selector_sets(s)
                .map_err(|e| bad_data(format!("invalid parameter \"match[]\": {e}")))?,
        );
    }
    let (limit, user_limit) = match param(params, "limit") {
        None | Some("") => (MAX_RESULTS, false),
        Some(v) => match v.parse::<i64>() {
            Ok(0) => (MAX_RESULTS, false),
            Ok(n) if n > 0 => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                (n.min(MAX_RESULTS), n < MAX_RESULTS)
            }
            _ => {
                return Err(bad_data(format!(
                    "invalid parameter \"limit\": {v:?} is not a non-negative integer"
                )));
            }
        },
    };
    // the store's arithmetic stays far from i64's ends (a time parses saturating)
    let clamp = |t: i64| t.clamp(MIN_TIME_MS, MAX_TIME_MS);
    Ok(MetaRequest {
        sets,
        mint: clamp(mint),
        maxt: clamp(maxt),
        limit,
        user_limit,
    })
}

/// A `match[]` selector as Prometheus's `ParseMetricSelector` reads it: a vector selector only
/// (no offset, `@`, range or function), every regex compiled within
/// [`crate::labels::compile_regex`]'s limits; each `or` alternative becomes its own set, and
/// each set needs a matcher that does not match the empty string.
fn selector_sets(text: &str) -> Result<Vec<Vec<Matcher>>, String> {
    use promql_parser::parser::Expr;
    if text.len() > MAX_SELECTOR_BYTES {
        return Err(format!(
            "selector of {} bytes, longer than the limit of {MAX_SELECTOR_BYTES}",
            text.len()
        ));
    }
    const EMPTY_MATCHING: &str = "match[] must contain at least one non-empty matcher";
    let expr = crate::promql::parse(text).map_err(|e| match e {
        // the PromQL parser refuses a selector matching every series itself: said in
        // Prometheus's words for `match[]`
        crate::promql::QueryError::Parse { message, .. }
            if message.contains("at least one non-empty matcher") =>
        {
            EMPTY_MATCHING.to_string()
        }
        crate::promql::QueryError::Parse { message, .. } => message,
        other => other.to_string(),
    })?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!("{text:?} is not a series selector"));
    };
    if vs.offset.is_some() || vs.at.is_some() {
        return Err(format!(
            "{text:?} is not a series selector (no offset or @ modifier)"
        ));
    }
    let sets = crate::promql::convert_matchers(&vs).map_err(|e| match e {
        crate::promql::QueryError::Eval(message) => message,
        other => other.to_string(),
    })?;
    if sets
        .iter()
        .any(|set| set.iter().all(Matcher::matches_empty))
    {
        return Err(EMPTY_MATCHING.to_string());
    }
    Ok(sets)
}

/// A label name from the path: plain, or in Prometheus 3's `U__` escaping (`U__my_2e_label` is
/// `my.label`; `__` is `_`); an escape that does not decode is taken as written, as Prometheus
/// does. Any non-empty UTF-8 name is accepted (tocsin stores UTF-8 names).
fn label_name_param(raw: &str) -> Result<String, ApiError> {
    if raw.is_empty() || raw.len() > MAX_LABEL_NAME_BYTES {
        return Err(bad_data(format!(
            "invalid label name: {:?}",
            raw.chars().take(64).collect::<String>()
        )));
    }
    Ok(raw
        .strip_prefix("U__")
        .and_then(unescape_name)
        .unwrap_or_else(|| raw.to_string()))
}

/// The value-encoding escape of Prometheus's `model.UnescapeName` (after the `U__` prefix):
/// `__` is `_`, `_<hex>_` the code point; None when malformed.
fn unescape_name(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '_' {
            if !(c.is_ascii_alphanumeric() || c == ':') {
                return None;
            }
            out.push(c);
            continue;
        }
        let mut hex = String::new();
        loop {
            match chars.next()? {
                '_' => break,
                h if h.is_ascii_hexdigit() && hex.len() < 8 => hex.push(h),
                _ => return None,
            }
        }
        if hex.is_empty() {
            out.push('_');
        } else {
            out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
        }
    }
    Some(out)
}

/// The answer's `data` with the warning of a cut, if any.
fn answer(data: serde_json::Value, truncated: bool, req: &MetaRequest) -> Response {
    if !truncated {
        return Json(json!({"status": "success", "data": data})).into_response();
    }
    let warning = if req.user_limit {
        "results truncated due to limit".to_string()
    } else {
        format!("results truncated due to limit: at most {MAX_RESULTS} items an answer")
    };
    Json(json!({"status": "success", "data": data, "warnings": [warning]})).into_response()
}

/// How long a metadata read may take ([`super::api::DEFAULT_TIMEOUT`], a query's): then the
/// answer is 503 `timeout` and the read stops at its next series.
const READ_TIMEOUT: std::time::Duration = super::api::DEFAULT_TIMEOUT;

/// Tells a store read to stop when dropped: after the answer (harmless), on a timeout, or when
/// the client went away and axum dropped the handler's future.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs a store read on a blocking thread within [`READ_TIMEOUT`] (the read is told to stop
/// after it, or when the request ends); 503 without a store or on the timeout, 500 when it fails.
async fn read_store<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&crate::store::Store, &dyn Fn() -> bool) -> Result<Capped<T>, StoreError>
    + Send
    + 'static,
) -> Result<Capped<T>, Response> {
    let Some(store) = s.store.clone() else {
        return Err(api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no store",
        ));
    };
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let flag = stop.0.clone();
    let read = tokio::task::spawn_blocking(move || f(&store, &|| flag.load(Ordering::Relaxed)));
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Err(_) => Err(api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the store read took longer than {}s",
                READ_TIMEOUT.as_secs()
            ),
        )),
        Ok(Ok(Ok(c))) => Ok(c),
        Ok(Ok(Err(e))) => Err(api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        )),
        Ok(Err(e)) => Err(api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the store read failed: {e}"),
        )),
    }
}

/// `GET|POST /api/v1/labels`: the label names of the series matching any `match[]` (none: all
/// series) with a sample in [`start`, `end`], sorted.
pub(super) async fn labels(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let params = request_params(q.as_deref(), &headers, body)?;
    let req = Arc::new(meta_request(&params)?);
    let r = req.clone();
    let found = read_store(&s, move |store, stop| {
        store.label_names_matching(&r.sets, r.mint, r.maxt, r.limit, stop)
    })
    .await;
    Ok(match found {
        Ok(c) => answer(json!(c.items), c.truncated, &req),
        Err(resp) => resp,
    })
}

/// `GET /api/v1/label/{name}/values`: the values label `name` takes (`__name__`: metric names)
/// on the series matching any `match[]` (none: all series) with a sample in [`start`, `end`],
/// sorted.
pub(super) async fn label_values(
    State(s): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    // a path that does not decode (invalid UTF-8 in its escapes) in Prometheus's error shape
    let Path(name) = name.map_err(|e| bad_data(format!("invalid label name: {e}")))?;
    let name = label_name_param(&name)?;
    let params = super::api::params(q.as_deref(), &[]);
    let req = Arc::new(meta_request(&params)?);
    let r = req.clone();
    let found = read_store(&s, move |store, stop| {
        store.label_values_matching(&name, &r.sets, r.mint, r.maxt, r.limit, stop)
    })
    .await;
    Ok(match found {
        Ok(c) => answer(json!(c.items), c.truncated, &req),
        Err(resp) => resp,
    })
}

/// `GET|POST /api/v1/series`: the label sets of the series matching any `match[]` (required)
/// with a sample in [`start`, `end`], sorted as Prometheus sorts series.
pub(super) async fn series(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let params = request_params(q.as_deref(), &headers, body)?;
    if !params.iter().any(|(k, _)| k == "match[]") {
        return Err(bad_data("no match[] parameter provided"));
    }
    let req = Arc::new(meta_request(&params)?);
    let r = req.clone();
    let found = read_store(&s, move |store, stop| {
        store.series_matching(&r.sets, r.mint, r.maxt, r.limit, stop)
    })
    .await;
    Ok(match found {
        Ok(c) => {
            let data: Vec<_> = c.items.iter().map(|l| labels_map(l)).collect();
            answer(json!(data), c.truncated, &req)
        }
        Err(resp) => resp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        selector_sets(text).unwrap_err()
    }

    #[test]
    fn selectors_are_series_selectors_with_a_non_empty_matcher() {
        let sets = selector_sets("up").unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0][0].name, "__name__");
        let sets = selector_sets(r#"{job="a" or job="b"}"#).unwrap();
        assert_eq!(sets.len(), 2, "each or alternative is a set");
        for bad in [
            r#"{__name__=~".*"}"#,
            r#"{a=~".*", b!="x"}"#,
            "{}",
            r#"{a=""}"#,
        ] {
            assert_eq!(
                err(bad),
                "match[] must contain at least one non-empty matcher",
                "{bad}"
            );
        }
        assert!(err("rate(up[1m])").contains("not a series selector"));
        assert!(err("up offset 5m").contains("not a series selector"));
        assert!(err("up[5m]").contains("not a series selector"));
        assert!(err("up @ 100").contains("not a series selector"));
        assert!(err(r#"{a=~"("}"#).contains("regex"));
        assert!(err(r#"{a=~"(a{1,100}){1,100}"}"#).contains("1000"));
        assert!(err(&"a".repeat(MAX_SELECTOR_BYTES + 1)).contains("longer than the limit"));
        assert!(selector_sets(&"a".repeat(MAX_SELECTOR_BYTES)).is_ok());
    }

    #[test]
    fn escaped_label_names_decode_and_plain_ones_stay() {
        let name = |s: &str| label_name_param(s).unwrap();
        assert_eq!(name("job"), "job");
        assert_eq!(name("__name__"), "__name__");
        assert_eq!(name("U__my_2e_label"), "my.label");
        assert_eq!(name("U__a__b"), "a_b");
        assert_eq!(name("U__caf_e9_"), "café");
        assert_eq!(name("my.label"), "my.label", "a UTF-8 name as written");
        // malformed escapes are names as written, as Prometheus's UnescapeName leaves them
        assert_eq!(name("U__a_zz_"), "U__a_zz_");
        assert_eq!(name("U__a_"), "U__a_");
        assert_eq!(name("U__a_110000_"), "U__a_110000_");
        assert!(label_name_param("").is_err());
        assert!(label_name_param(&"a".repeat(MAX_LABEL_NAME_BYTES + 1)).is_err());
    }

    #[test]
    fn limits_and_times_are_checked() {
        let p = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let r = meta_request(&p(&[("limit", "5")])).unwrap();
        assert_eq!((r.limit, r.user_limit), (5, true));
        let r = meta_request(&p(&[("limit", "0")])).unwrap();
        assert_eq!((r.limit, r.user_limit), (MAX_RESULTS, false));
        let r = meta_request(&p(&[("limit", "99999999999999")])).unwrap();
        assert_eq!((r.limit, r.user_limit), (MAX_RESULTS, false));
        assert!(meta_request(&p(&[("limit", "-1")])).is_err());
        assert!(meta_request(&p(&[("limit", "x")])).is_err());
        let r = meta_request(&p(&[("start", "1e300"), ("end", "-1e300")])).unwrap();
        assert_eq!((r.mint, r.maxt), (MAX_TIME_MS, MIN_TIME_MS), "clamped");
        let e = meta_request(&p(&[("start", "yesterday")])).err().unwrap();
        assert!(e.message.contains("\"start\""), "{}", e.message);
        let many: Vec<(&str, &str)> = vec![("match[]", "up"); MAX_SELECTORS + 1];
        let e = meta_request(&p(&many)).err().unwrap();
        assert!(e.message.contains("more than the limit"), "{}", e.message);
        assert!(meta_request(&p(&many[1..])).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn no_selector_text_panics(text in ".{0,200}") {
            let _ = selector_sets(&text);
        }

        #[test]
        fn no_selector_shaped_text_panics(
            text in r#"[a-z_]{0,5}\{([a-z_]{1,4}(=|!=|=~|!~)"[a-z.*+?()|\[\]{},\\^$-]{0,12}"(,| or )?){0,4}\}"#
        ) {
            let _ = selector_sets(&text);
        }

        #[test]
        fn no_label_name_panics(text in ".{0,40}") {
            let _ = label_name_param(&format!("U__{text}"));
            let _ = label_name_param(&text);
        }
    }
}
