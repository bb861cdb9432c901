//! The `tcp` probe: connect, optionally send `send`, optionally read until `expect` matches.
//!
//! Series: `probe_connect_seconds`; with `expect`, `probe_tcp_expect_matched` (1/0). `up` = the
//! connection was accepted. Failures: refused, unresolvable, timeout (while connecting or waiting
//! for the expected text), the answer over `response_size_limit`, closed before a match.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ProbeError, Progress, Sample, connect};
use crate::config::Probe;

pub(crate) async fn run(probe: &Probe, p: &mut Progress) -> Result<(), ProbeError> {
    let c = &probe.config;
    let mut stream = connect(c.address.as_deref().unwrap_or(""), p).await?;
    p.up = true;
    if let Some(send) = &c.send {
        p.stage = "sending";
        stream
            .write_all(send.as_bytes())
            .await
            .map_err(|e| p.io(e))?;
    }
    let Some(expect) = &c.expect else {
        return Ok(());
    };
    let re = super::compile_regex(expect).map_err(|e| p.protocol(e.to_string()))?;
    p.stage = "waiting for the expected text";
    let limit = probe.size_limit;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if re.is_match(&String::from_utf8_lossy(&buf)) {
            p.push(Sample::new("probe_tcp_expect_matched", 1.0));
            return Ok(());
        }
        if buf.len() as u64 >= limit {
            p.push(Sample::new("probe_tcp_expect_matched", 0.0));
            return Err(ProbeError::TooLarge {
                stage: p.stage,
                limit,
            });
        }
        let want = chunk.len().min((limit - buf.len() as u64) as usize);
        let n = match stream.read(&mut chunk[..want]).await {
            Ok(n) => n,
            Err(e) => {
                p.push(Sample::new("probe_tcp_expect_matched", 0.0));
                return Err(p.io(e));
            }
        };
        if n == 0 {
            p.push(Sample::new("probe_tcp_expect_matched", 0.0));
            return Err(p.protocol(format!(
                "connection closed after {} bytes without a match for {expect:?}",
                buf.len()
            )));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
