//! Probes beyond HTTP: `tcp`, `tls`, `dns` and `smtp`. A probe run is one async function per kind
//! that collects samples into a [`ProbeReport`] (pure data, no store); the scheduler writes the
//! report with [`write_report`] on a blocking thread, and `tocsin probe` prints it.
//!
//! Every run is bounded: by the probe's timeout (the whole run; for `dns` each server separately,
//! all in parallel), by its `response_size_limit` (a DNS message, the SMTP/IMAP/POP3 replies, a
//! `tcp` expect buffer) and by a line length and line count for text protocols. A failure is a
//! [`ProbeError`] whose text is the report's reason, with the stage reached when it timed out.
//!
//! Series (labels: the target's and the probe's, `job`, `instance`, `probe`): `up` (answered:
//! connected and, for text protocols, greeted), `probe_success` (answered and every check passed),
//! `probe_duration_seconds`, and the kind-specific series documented in each module.

pub mod dns;
pub mod smtp;
pub mod tcp;
pub mod tls;

use std::collections::BTreeSet;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::{Probe, ProbeKind, Target};
use crate::labels::Labels;
use crate::store::{Store, chunk::stale_nan};

/// Longest line of a text protocol reply (SMTP allows 512; some servers send longer banners).
pub const MAX_LINE_BYTES: usize = 4096;
/// Most lines in one reply (an EHLO answer has one per extension).
pub const MAX_REPLY_LINES: usize = 256;

/// One sample a probe produced: metric name, labels beyond the probe's base labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub metric: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// The outcome of one probe run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProbeReport {
    /// the service answered (the `up` series)
    pub up: bool,
    /// it answered and every check passed (the `probe_success` series)
    pub success: bool,
    /// why it failed (errors and failed checks, `; `-separated); None on success
    pub error: Option<String>,
    pub duration_seconds: f64,
    /// the kind-specific samples
    pub samples: Vec<Sample>,
}

impl ProbeReport {
    /// Every sample the report writes, `up`, `probe_success` and `probe_duration_seconds` first.
    pub fn all_samples(&self) -> Vec<Sample> {
        let one = |b: bool| if b { 1.0 } else { 0.0 };
        let mut all = vec![
            Sample::new("up", one(self.up)),
            Sample::new("probe_success", one(self.success)),
            Sample::new("probe_duration_seconds", self.duration_seconds),
        ];
        all.extend(self.samples.iter().cloned());
        all
    }
}

impl Sample {
    pub fn new(metric: &'static str, value: f64) -> Sample {
        Sample {
            metric,
            labels: Vec::new(),
            value,
        }
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Sample {
        self.labels.push((name, value.into()));
        self
    }
}

/// Why a probe failed; the text is the reason shown in `/status`.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("timeout after {after} while {stage}")]
    Timeout {
        after: crate::duration::PromDuration,
        stage: &'static str,
    },
    #[error("{stage}: {source}")]
    Io {
        stage: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{stage}: connection closed by the server")]
    Closed { stage: &'static str },
    #[error("{stage}: answer exceeds the limit of {limit} bytes")]
    TooLarge { stage: &'static str, limit: u64 },
    #[error("{stage}: line longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong { stage: &'static str },
    #[error("{stage}: reply of more than {MAX_REPLY_LINES} lines")]
    TooManyLines { stage: &'static str },
    #[error("{stage}: {message}")]
    Protocol {
        stage: &'static str,
        message: String,
    },
    #[error("tls handshake: {0}")]
    Tls(String),
    #[error("cannot resolve {0:?}")]
    Resolve(String),
}

/// What a run collects as it goes, kept when the run times out.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub stage: &'static str,
    pub up: bool,
    pub problems: Vec<String>,
    pub samples: Vec<Sample>,
}

impl Progress {
    pub fn push(&mut self, s: Sample) {
        self.samples.push(s);
    }
    pub fn io(&self, source: std::io::Error) -> ProbeError {
        ProbeError::Io {
            stage: self.stage,
            source,
        }
    }
    pub fn protocol(&self, message: impl Into<String>) -> ProbeError {
        ProbeError::Protocol {
            stage: self.stage,
            message: message.into(),
        }
    }
}

/// Runs one probe at wall time `now_ms` (the certificate dates are judged at it).
pub async fn run(probe: &Probe, now_ms: i64) -> ProbeReport {
    let started = Instant::now();
    let mut p = Progress {
        stage: "connecting",
        ..Progress::default()
    };
    let result = match probe.config.kind {
        // each server has its own timeout inside, all in parallel
        ProbeKind::Dns => dns::run(probe, &mut p).await,
        kind => {
            let timeout = probe.timeout;
            let body = async {
                match kind {
                    ProbeKind::Tcp => tcp::run(probe, &mut p).await,
                    ProbeKind::Tls => tls::run(probe, now_ms, &mut p).await,
                    _ => smtp::run(probe, now_ms, &mut p).await,
                }
            };
            match tokio::time::timeout(timeout.0, body).await {
                Ok(r) => r,
                Err(_) => Err(ProbeError::Timeout {
                    after: timeout,
                    stage: p.stage,
                }),
            }
        }
    };
    if let Err(e) = result {
        p.problems.insert(0, e.to_string());
    }
    ProbeReport {
        up: p.up,
        success: p.up && p.problems.is_empty(),
        error: (!p.problems.is_empty()).then(|| p.problems.join("; ")),
        duration_seconds: started.elapsed().as_secs_f64(),
        samples: p.samples,
    }
}

/// The `instance` label of a probe: its address, or the DNS query name.
pub fn instance_of(probe: &Probe) -> String {
    match probe.config.kind {
        ProbeKind::Dns => probe.config.query_name.clone().unwrap_or_default(),
        _ => probe.config.address.clone().unwrap_or_default(),
    }
}

/// What `/status` shows as the probe's URL, e.g. `tls://192.0.2.7:443`.
pub fn describe(probe: &Probe) -> String {
    let c = &probe.config;
    match c.kind {
        ProbeKind::Dns => format!(
            "dns://{}/{}?type={}",
            c.servers.join(","),
            c.query_name.as_deref().unwrap_or(""),
            c.query_type.as_deref().unwrap_or("A")
        ),
        k => format!("{}://{}", k.as_str(), c.address.as_deref().unwrap_or("")),
    }
}

/// The labels every series of this probe carries.
pub fn base_labels(target: &Target, probe: &Probe) -> Labels {
    Labels::from_pairs(
        target
            .labels
            .iter()
            .chain(&probe.config.labels)
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain([
                ("job".to_string(), target.job.clone()),
                ("instance".to_string(), instance_of(probe)),
                ("probe".to_string(), probe.name.clone()),
            ]),
    )
}

/// Writes a report's samples at `t`; series the last run wrote and this one did not (a
/// certificate series after a refused connection, a server's serial after a timeout) end with a
/// stale marker. `last` holds the series written, for the next run. Blocking: store writes.
pub fn write_report(
    store: &Store,
    base: &Labels,
    t: i64,
    report: &ProbeReport,
    last: &mut BTreeSet<Vec<(String, String)>>,
) {
    let samples = report.all_samples();
    let labels: Vec<Labels> = samples
        .iter()
        .map(|s| {
            s.labels
                .iter()
                .fold(base.with("__name__", s.metric), |l, (k, v)| l.with(k, v))
        })
        .collect();
    let keys: BTreeSet<Vec<(String, String)>> = labels.iter().map(key_of).collect();
    let gone: Vec<Labels> = last
        .difference(&keys)
        .map(|k| Labels::from_pairs(k.iter().cloned()))
        .collect();
    let ids = store.series_refs(labels);
    let mut batch: Vec<_> = ids
        .iter()
        .zip(&samples)
        .map(|(&id, s)| (id, t, s.value))
        .collect();
    if !gone.is_empty() {
        batch.extend(
            store
                .series_refs(gone)
                .into_iter()
                .map(|id| (id, t, stale_nan())),
        );
    }
    store.append(&batch);
    if let Some(e) = &report.error {
        // the reason, kept with the probe_success series
        store.set_note(ids[1], t, e);
    }
    *last = keys;
}

fn key_of(l: &Labels) -> Vec<(String, String)> {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Splits `host:port` (`[v6]:port` too); `default_port` when the port is omitted and nonzero.
pub fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some((sa.ip().to_string(), sa.port()));
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return (default_port != 0).then(|| (ip.to_string(), default_port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok()?),
        None if default_port != 0 => (s, default_port),
        None => return None,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    ok.then(|| (host.to_string(), port))
}

/// Compiles a probe's regex (unanchored: it matches anywhere) within the label regexes' limits.
pub fn compile_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(crate::labels::REGEX_SIZE_LIMIT)
        .dfa_size_limit(crate::labels::REGEX_DFA_SIZE_LIMIT)
        .build()
}

/// Connects to `address`, recording `probe_connect_seconds`.
pub(crate) async fn connect(address: &str, p: &mut Progress) -> Result<TcpStream, ProbeError> {
    p.stage = "connecting";
    let started = Instant::now();
    let (host, port) =
        split_host_port(address, 0).ok_or_else(|| ProbeError::Resolve(address.to_string()))?;
    let stream = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| p.io(e))?;
    p.push(Sample::new(
        "probe_connect_seconds",
        started.elapsed().as_secs_f64(),
    ));
    Ok(stream)
}

/// A bounded reader of CRLF-terminated lines that can hand its stream back (for STARTTLS).
pub(crate) struct LineConn<S> {
    stream: S,
    buf: Vec<u8>,
    /// bytes read so far against the size limit
    read: u64,
    limit: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> LineConn<S> {
    pub fn new(stream: S, limit: u64) -> Self {
        LineConn {
            stream,
            buf: Vec::new(),
            read: 0,
            limit,
        }
    }

    /// The next line without its line ending.
    pub async fn line(&mut self, p: &Progress) -> Result<String, ProbeError> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.buf.len() > MAX_LINE_BYTES {
                return Err(ProbeError::LineTooLong { stage: p.stage });
            }
            if self.read >= self.limit {
                return Err(ProbeError::TooLarge {
                    stage: p.stage,
                    limit: self.limit,
                });
            }
            let mut chunk = [0u8; 1024];
            let want = chunk.len().min((self.limit - self.read) as usize);
            let n = self
                .stream
                .read(&mut chunk[..want])
                .await
                .map_err(|e| p.io(e))?;
            if n == 0 {
                return Err(ProbeError::Closed { stage: p.stage });
            }
            self.read += n as u64;
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub async fn send(&mut self, text: &str, p: &Progress) -> Result<(), ProbeError> {
        self.stream
            .write_all(text.as_bytes())
            .await
            .map_err(|e| p.io(e))?;
        self.stream.flush().await.map_err(|e| p.io(e))
    }

    /// The stream, for a TLS handshake; refused when the server sent more than was asked for
    /// (data before the handshake would be taken as if it came through TLS).
    pub fn into_inner(self, p: &Progress) -> Result<S, ProbeError> {
        if self.buf.is_empty() {
            Ok(self.stream)
        } else {
            Err(p.protocol("the server sent data after its STARTTLS reply"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_are_split_and_bad_ones_refused() {
        assert_eq!(
            split_host_port("127.0.0.1:53", 0),
            Some(("127.0.0.1".into(), 53))
        );
        assert_eq!(split_host_port("[::1]:25", 0), Some(("::1".into(), 25)));
        assert_eq!(
            split_host_port("ns1.example.org", 53),
            Some(("ns1.example.org".into(), 53))
        );
        assert_eq!(split_host_port("::1", 53), Some(("::1".into(), 53)));
        assert_eq!(split_host_port("mail.example.org", 0), None);
        assert_eq!(split_host_port("a b:25", 0), None);
        assert_eq!(split_host_port("x:99999", 0), None);
    }
}
