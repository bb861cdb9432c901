//! `http_sd`: target groups from an HTTP endpoint in Prometheus's HTTP SD format: a `GET` with
//! the configured auth, one timeout over the whole exchange, a 2xx answer with `Content-Type:
//! application/json` of at most [`super::MAX_SD_BYTES`]. Each group gets `__meta_url` (the URL,
//! redacted as webhook URLs are).

use std::time::Duration;

use futures_util::StreamExt;

use super::{Group, MAX_SD_BYTES, SdError};
use crate::config::Secret;

/// One fetch of the list.
pub async fn refresh(
    client: &reqwest::Client,
    url: &url::Url,
    timeout: Duration,
    bearer_token: &Option<Secret>,
    basic_auth: &Option<(String, Secret)>,
) -> Result<Vec<Group>, SdError> {
    let shown = crate::notify::webhook::redact_url(url.as_str());
    let io = |message: String| SdError::Io {
        at: shown.clone(),
        message,
    };
    let work = async {
        let mut req = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(t) = bearer_token {
            req = req.bearer_auth(&t.0);
        }
        if let Some((user, pass)) = basic_auth {
            req = req.basic_auth(user, Some(&pass.0));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| io(crate::error::chain(&e.without_url())))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(io(format!("http status {}", status.as_u16())));
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mime = content_type.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/json") {
            return Err(SdError::Format {
                at: shown.clone(),
                message: format!("content type {content_type:?}, application/json expected"),
            });
        }
        let too_large = || SdError::Limit {
            at: shown.clone(),
            message: format!("answer larger than the limit of {MAX_SD_BYTES} bytes"),
        };
        if resp.content_length().is_some_and(|n| n > MAX_SD_BYTES) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| io(crate::error::chain(&e.without_url())))?;
            if body.len() as u64 + chunk.len() as u64 > MAX_SD_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let body = tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(io(format!("timed out after {timeout:?}"))))?;
    let groups = super::parse_groups(&body, true, &shown)?;
    Ok(groups
        .into_iter()
        .map(|mut g| {
            g.labels.insert("__meta_url".into(), shown.clone());
            g
        })
        .collect())
}
