//! Fetching targets over HTTP: one bounded exchange per scrape or probe. With `notify`, the only
//! code that touches the network. One timeout covers connect, headers and the whole body; the
//! body (decompressed) stops at the size limit.

use std::time::Duration;

use futures_util::StreamExt;

use crate::config::Secret;
use crate::ingest::textparse::ParseError;

/// Occurs when a scrape or probe fails; the reason is kept in the target's status.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("timeout after {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Http(String),
    #[error("server returned HTTP status {0}")]
    Status(u16),
    #[error("body exceeds the limit of {limit} bytes (body_size_limit)")]
    BodyTooLarge { limit: u64 },
    #[error("malformed exposition: {0}")]
    Parse(#[from] ParseError),
    #[error(transparent)]
    LabelLimit(#[from] crate::ingest::cache::LabelLimitError),
    #[error("{got} samples exceed the sample limit of {limit} (sample_limit)")]
    SampleLimit { limit: usize, got: usize },
    /// The ingest task panicked (a bug): logged and counted in `tocsin_task_panics_total`.
    #[error("ingest failed unexpectedly (a panic, logged)")]
    Panicked,
}

/// A fetched response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// One HTTP client for every target: connection pooling and keep-alive across scrapes.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("http client builds")
}

/// GETs `url` with one `timeout` for the whole exchange, reading at most `body_limit` bytes
/// (after gzip decoding). Any status is returned; the caller decides what it means.
pub async fn fetch(
    client: &reqwest::Client,
    url: &url::Url,
    timeout: Duration,
    body_limit: u64,
    bearer: Option<&Secret>,
    accept: &str,
) -> Result<Response, ScrapeError> {
    let work = async {
        let mut req = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, accept);
        if let Some(token) = bearer {
            req = req.bearer_auth(&token.0);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ScrapeError::Http(crate::error::chain(&e)))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if resp.content_length().is_some_and(|n| n > body_limit) {
            return Err(ScrapeError::BodyTooLarge { limit: body_limit });
        }
        // sized once when the length is announced: growing by doubling would briefly hold 1.5x the body
        let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0) as usize);
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ScrapeError::Http(crate::error::chain(&e)))?;
            if body.len() as u64 + chunk.len() as u64 > body_limit {
                return Err(ScrapeError::BodyTooLarge { limit: body_limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            content_type,
            body,
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(ScrapeError::Timeout(timeout)))
}
