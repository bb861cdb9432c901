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
        let (head, resp) = request(client, url, body_limit, bearer, accept).await?;
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
            status: head.status,
            content_type: head.content_type,
            body,
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(ScrapeError::Timeout(timeout)))
}

/// A response's status and content type, before its body.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    pub content_type: String,
}

/// Sends the GET and reads the response's head; a body announced over `body_limit` is an error.
async fn request(
    client: &reqwest::Client,
    url: &url::Url,
    body_limit: u64,
    bearer: Option<&Secret>,
    accept: &str,
) -> Result<(Head, reqwest::Response), ScrapeError> {
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
    let head = Head {
        status: resp.status().as_u16(),
        content_type: resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
    };
    if resp.content_length().is_some_and(|n| n > body_limit) {
        return Err(ScrapeError::BodyTooLarge { limit: body_limit });
    }
    Ok((head, resp))
}

/// What [`stream`] GETs, as [`fetch`] takes it.
pub struct Get<'a> {
    pub client: &'a reqwest::Client,
    pub url: &'a url::Url,
    pub timeout: Duration,
    pub body_limit: u64,
    pub bearer: Option<&'a Secret>,
    pub accept: &'a str,
}

/// A piece of a body as it arrives ([`stream`]), or why the body broke off. Give the bytes
/// back ([`give_back`]) once read.
pub type Piece = Result<Vec<u8>, ScrapeError>;

/// How many pieces of a body may wait for the parser: the rest waits in the socket.
pub const PIECES_IN_FLIGHT: usize = 8;

/// The size of a piece: the body's bytes are copied into pieces this size, and the buffer the
/// HTTP client read them into is free again at once.
///
/// Why copy: handed on as they come, the client's buffers (up to 400 KB each) stay in use
/// until parsed, so the client reads every body into freshly mapped memory: at 100k series, 6%
/// of the daemon's CPU went to page faults in the socket read (`perf`), as much as holding the
/// whole body had cost. Pieces are few and reused ([`SPARE_PIECES`]).
pub const PIECE_BYTES: usize = 32 << 10;

/// Read pieces kept for the next ones, across scrapes (2 MB at most).
const SPARE_PIECES: usize = 64;

static SPARE: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// An empty piece, reused if one was given back.
fn take_piece() -> Vec<u8> {
    let spare = SPARE.lock().unwrap_or_else(|e| e.into_inner()).pop();
    spare.unwrap_or_else(|| Vec::with_capacity(PIECE_BYTES))
}

/// Gives a read piece back for reuse.
pub fn give_back(mut piece: Vec<u8>) {
    if piece.capacity() != PIECE_BYTES {
        return;
    }
    piece.clear();
    let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    if spare.len() < SPARE_PIECES {
        spare.push(piece);
    }
}

/// GETs `url` as [`fetch`] does, but hands the body over as it arrives instead of holding it:
/// the head comes back, and the body's pieces go to `pieces` (at most [`PIECES_IN_FLIGHT`]
/// waiting), ending with an error piece if it breaks off (timeout, size limit, connection).
/// The returned future ends when the body has been handed over or the receiver is gone (the
/// parser stopped at an error). One `timeout` covers the head and the body.
pub async fn stream(
    get: Get<'_>,
    head: tokio::sync::oneshot::Sender<Result<Head, ScrapeError>>,
    pieces: tokio::sync::mpsc::Sender<Piece>,
) {
    let Get {
        client,
        url,
        timeout,
        body_limit,
        bearer,
        accept,
    } = get;
    let deadline = tokio::time::Instant::now() + timeout;
    let timed_out = || ScrapeError::Timeout(timeout);
    let resp =
        match tokio::time::timeout_at(deadline, request(client, url, body_limit, bearer, accept))
            .await
        {
            Ok(Ok((h, resp))) => {
                if head.send(Ok(h)).is_err() {
                    return;
                }
                resp
            }
            Ok(Err(e)) => {
                let _ = head.send(Err(e));
                return;
            }
            Err(_) => {
                let _ = head.send(Err(timed_out()));
                return;
            }
        };
    let body = async {
        let mut stream = resp.bytes_stream();
        let mut read = 0u64;
        let mut piece = take_piece();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ScrapeError::Http(crate::error::chain(&e)))?;
            read += chunk.len() as u64;
            if read > body_limit {
                return Err(ScrapeError::BodyTooLarge { limit: body_limit });
            }
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let n = rest.len().min(PIECE_BYTES - piece.len());
                piece.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                if piece.len() == PIECE_BYTES {
                    let full = std::mem::replace(&mut piece, take_piece());
                    if pieces.send(Ok(full)).await.is_err() {
                        // the parser stopped: the rest is not wanted
                        return Ok(());
                    }
                }
            }
        }
        if !piece.is_empty() {
            let _ = pieces.send(Ok(piece)).await;
        }
        Ok(())
    };
    let broke = match tokio::time::timeout_at(deadline, body).await {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(_) => timed_out(),
    };
    let _ = pieces.send(Err(broke)).await;
}
