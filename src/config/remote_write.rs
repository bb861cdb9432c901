//! `remote_write:`: where tocsin sends its samples with Prometheus's remote write protocol 1.0
//! (VictoriaMetrics, Prometheus with `--web.enable-remote-write-receiver`, Mimir, Thanos
//! Receive). Raw types, their pure validation and their build (secrets read: the only I/O);
//! the sender is `crate::remotewrite`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::datasource::{
    BasicAuthConfig, SecretProblem, client_problems, read_client_auth, read_secret,
};
use super::{FieldError, Secret, SecretFileError};
use crate::duration::PromDuration;

/// Default `timeout` of one remote write request.
pub const DEFAULT_RW_TIMEOUT_S: u64 = 30;
/// Default `queue.max_samples_per_send` (Prometheus's default): a request of ~2000 samples is
/// ~30-60 KB of protobuf before snappy.
pub const DEFAULT_MAX_SAMPLES_PER_SEND: u64 = 2_000;
/// Largest `queue.max_samples_per_send`: 50,000 samples of 10 labels stay under ~8 MB of
/// protobuf, below the receivers' limits (VictoriaMetrics 32 MB, Prometheus none by default).
pub const MAX_SAMPLES_PER_SEND: u64 = 50_000;
/// Default `queue.batch_send_deadline`.
pub const DEFAULT_BATCH_SEND_DEADLINE_MS: i64 = 5_000;
/// Default `queue.min_backoff`.
pub const DEFAULT_MIN_BACKOFF_MS: i64 = 30;
/// Default `queue.max_backoff`.
pub const DEFAULT_MAX_BACKOFF_MS: i64 = 5_000;
/// Default `queue.max_pending_samples`: ~240 MB of queue on disk (about 12 bytes a sample); at
/// 100k series scraped every 15 s, a receiver down for about 50 minutes.
pub const DEFAULT_MAX_PENDING_SAMPLES: u64 = 20_000_000;

/// A remote write receiver: every sample tocsin stores (those of the kinds in `send`) is also
/// sent there, in order per series, from a durable queue in the store, so neither a receiver
/// that is down nor a restart of tocsin loses any. `external_labels` are added to every series
/// (a series' own label of the same name wins).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Unique name: the `remote` label of the `tocsin_remote_write_*` self-metrics, and the key
    /// of this entry's position in the queue (renaming an entry starts it afresh). Default: the
    /// URL's `host:port`; required with `url_env` or `url_file`.
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// The receiver's write endpoint, e.g. `http://127.0.0.1:8428/api/v1/write` for
    /// VictoriaMetrics, `http://127.0.0.1:9090/api/v1/write` for Prometheus. Set one of `url`,
    /// `url_env`, `url_file`.
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    /// Name of an environment variable holding the URL (for a URL with a key in it).
    #[serde(default)]
    pub url_env: Option<String>,
    /// Path of a file holding the URL (trailing newline ignored): a regular file of at most 64 KiB.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// A request that takes longer fails and is retried. Default `30s`.
    #[serde(default)]
    pub timeout: Option<PromDuration>,
    /// Name of an environment variable holding a bearer token sent with every request.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// Path of a file holding a bearer token sent with every request (trailing newline
    /// ignored): a regular file of at most 64 KiB.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// HTTP basic authentication sent with every request.
    #[serde(default)]
    pub basic_auth: Option<BasicAuthConfig>,
    /// Extra HTTP headers sent with every request (e.g. `X-Scope-OrgID` for Mimir or Cortex).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// What to send. Default: all three.
    #[serde(default)]
    pub send: Option<Vec<RemoteWriteSend>>,
    /// Batching, retries and the backlog's bound.
    #[serde(default)]
    pub queue: Option<RemoteWriteQueueConfig>,
    /// Which series to send by metric name, Prometheus's `write_relabel_configs` in its
    /// minimal form: each rule in order keeps or drops series whose `__name__` matches its
    /// regex; a series any rule refuses is not sent (it stays in tocsin's store).
    #[serde(default)]
    pub write_relabel: Vec<WriteRelabelConfig>,
}

/// One rule of `write_relabel`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteRelabelConfig {
    /// What to do with the series whose metric name matches `regex`.
    pub action: WriteRelabelAction,
    /// A regular expression over the metric name, anchored at both ends as Prometheus's
    /// (`node_.*` matches `node_load1`, not `my_node_load1`).
    pub regex: Spanned<String>,
}

/// What a `write_relabel` rule does.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WriteRelabelAction {
    /// Send only the series whose name matches (of those earlier rules let through).
    Keep,
    /// Send none of the series whose name matches.
    Drop,
}

/// A kind of samples remote write sends.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RemoteWriteSend {
    /// Samples of scrapes, probes, pushes and tocsin's own metrics.
    Scraped,
    /// Recording rules' results.
    Recorded,
    /// `ALERTS` and `ALERTS_FOR_STATE`, as Prometheus writes them.
    Alerts,
}

/// How a remote write entry batches and retries.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteQueueConfig {
    /// Samples in one request, at most 50000. Default `2000`.
    pub max_samples_per_send: Option<u64>,
    /// The longest the sender sleeps while nothing is queued before it looks again; a store
    /// flush or rule evaluation that queues samples wakes it at once, and what is queued goes
    /// out at once (a flush is already a batch). Default `5s`.
    pub batch_send_deadline: Option<PromDuration>,
    /// The first wait before a retry (a 5xx or 429 answer, a timeout, no connection), doubled
    /// after each failure up to `max_backoff`. Default `30ms`.
    pub min_backoff: Option<PromDuration>,
    /// The longest wait between retries (a 429's `Retry-After` is honoured up to 5 minutes).
    /// Default `5s`.
    pub max_backoff: Option<PromDuration>,
    /// The backlog's bound: when more samples than this wait (a receiver down for long), the
    /// oldest queued batches are dropped, counted in `tocsin_remote_write_samples_dropped_total`
    /// and logged. Default `20000000` (~240 MB on disk).
    pub max_pending_samples: Option<u64>,
    /// The backlog's age bound: queued batches whose newest sample is older than this (a
    /// receiver down for long) are dropped, oldest first, counted in
    /// `tocsin_remote_write_samples_dropped_total{reason="too_old"}` and logged as a warning.
    /// Default `storage.retention`: what the store itself no longer keeps is not sent either.
    pub max_age: Option<PromDuration>,
}

/// Which kinds an entry sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendSet {
    pub scraped: bool,
    pub recorded: bool,
    pub alerts: bool,
}

/// A remote write entry with defaults applied and secrets read.
#[derive(Clone)]
pub struct RemoteWrite {
    pub name: String,
    pub url: url::Url,
    pub timeout: Duration,
    pub bearer_token: Option<Secret>,
    pub basic_auth: Option<(String, Secret)>,
    pub headers: Vec<(String, String)>,
    pub send: SendSet,
    pub max_samples_per_send: usize,
    pub batch_send_deadline: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub max_pending_samples: u64,
    /// `queue.max_age`, or the store's retention
    pub max_age: Duration,
    /// `write_relabel`: (keep, regex over the metric name), in order
    pub relabel: Vec<(bool, regex::Regex)>,
}

impl RemoteWrite {
    /// Whether `write_relabel` lets a series of metric name `name` through.
    pub fn sends_name(&self, name: &str) -> bool {
        self.relabel
            .iter()
            .all(|(keep, re)| re.is_match(name) == *keep)
    }
}

impl std::fmt::Debug for RemoteWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the URL may hold a key (url_env, url_file): only its redacted form is ever printed
        f.debug_struct("RemoteWrite")
            .field("name", &self.name)
            .field(
                "url",
                &crate::notify::webhook::redact_url(self.url.as_str()),
            )
            .field("send", &self.send)
            .finish_non_exhaustive()
    }
}

/// Occurs when a remote write entry's URL or secret named by `*_env` or `*_file` cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteSecretError {
    /// A `*_env` field names a variable absent from the environment `tocsin` runs in.
    #[error("remote_write {remote}: {field} names {var}, which is not set in this environment")]
    MissingEnv {
        remote: String,
        field: &'static str,
        var: String,
    },
    /// A `*_file` field names a file that is missing, not a regular file or too large.
    #[error("remote_write {remote}: {field}: {source}")]
    File {
        remote: String,
        field: &'static str,
        #[source]
        source: SecretFileError,
    },
    /// The URL read from `url_env` or `url_file` is not an http or https URL (its text is not
    /// shown: it may hold a key).
    #[error("remote_write {remote}: {field}: not an http or https URL")]
    BadUrl { remote: String, field: &'static str },
}

/// The entry's name: given, or the URL's `host:port`.
pub fn entry_name(r: &RemoteWriteConfig) -> Option<String> {
    if let Some(n) = &r.name {
        return Some(n.value.clone());
    }
    let u = url::Url::parse(&r.url.as_ref()?.value).ok()?;
    let host = u.host_str()?;
    Some(match u.port_or_known_default() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

fn http_url(text: &str) -> Result<url::Url, String> {
    match url::Url::parse(text.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u),
        Ok(_) => Err("must be an http or https URL".into()),
        Err(e) => Err(format!("invalid URL: {e}")),
    }
}

/// Every problem of the `remote_write` section (pure), each at its position in `path`.
pub fn validate(entries: &[Spanned<RemoteWriteConfig>], path: &Path) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let r = &e.value;
        let (line, col) = (e.referenced.line(), e.referenced.column());
        let mut err = |line: u64, col: u64, field: &str, message: String| {
            errors.push(FieldError {
                path: path.to_path_buf(),
                line,
                col,
                field: format!("remote_write[{i}]{field}"),
                message,
            })
        };
        let sources = [r.url.is_some(), r.url_env.is_some(), r.url_file.is_some()];
        match sources.iter().filter(|s| **s).count() {
            0 => err(line, col, "", "needs url, url_env or url_file".into()),
            1 => {}
            _ => err(
                line,
                col,
                ".url",
                "set one of url, url_env and url_file".into(),
            ),
        }
        if let Some(u) = &r.url {
            let (ul, uc) = (u.referenced.line(), u.referenced.column());
            if let Err(m) = http_url(&u.value) {
                err(ul, uc, ".url", m);
            }
        }
        match (&r.name, entry_name(r)) {
            (Some(n), _) if n.value.trim().is_empty() => err(
                n.referenced.line(),
                n.referenced.column(),
                ".name",
                "must not be empty".into(),
            ),
            (_, Some(name)) => {
                let (nl, nc) = r.name.as_ref().map_or((line, col), |n| {
                    (n.referenced.line(), n.referenced.column())
                });
                if let Some(first) = seen.insert(name.clone(), nl) {
                    err(
                        nl,
                        nc,
                        ".name",
                        format!(
                            "duplicate remote_write name {name:?} (first at line {first}); name each entry"
                        ),
                    );
                }
            }
            (None, None) if r.url.is_none() => err(
                line,
                col,
                ".name",
                "is required with url_env or url_file".into(),
            ),
            _ => {}
        }
        if r.timeout.is_some_and(|t| t.as_millis() <= 0) {
            err(line, col, ".timeout", "must be positive".into());
        }
        for (field, message) in client_problems(
            &r.bearer_token_env,
            &r.bearer_token_file,
            r.basic_auth.as_ref(),
            &r.headers,
        ) {
            err(line, col, &field, message);
        }
        for k in r.headers.keys() {
            if matches!(
                k.to_ascii_lowercase().as_str(),
                "content-type"
                    | "content-encoding"
                    | "content-length"
                    | "x-prometheus-remote-write-version"
                    | "user-agent"
            ) {
                err(
                    line,
                    col,
                    &format!(".headers.{k}"),
                    "is set by the remote write protocol".into(),
                );
            }
        }
        if r.send.as_ref().is_some_and(Vec::is_empty) {
            err(
                line,
                col,
                ".send",
                "must name at least one of scraped, recorded, alerts (leave it out for all)".into(),
            );
        }
        for (k, rule) in r.write_relabel.iter().enumerate() {
            if let Err(e) = crate::labels::compile_regex(&rule.regex.value) {
                err(
                    rule.regex.referenced.line(),
                    rule.regex.referenced.column(),
                    &format!(".write_relabel[{k}].regex"),
                    format!("invalid regex: {}", crate::labels::regex_reason(&e)),
                );
            }
        }
        if let Some(q) = &r.queue {
            if let Some(n) = q.max_samples_per_send
                && !(1..=MAX_SAMPLES_PER_SEND).contains(&n)
            {
                err(
                    line,
                    col,
                    ".queue.max_samples_per_send",
                    format!("must be between 1 and {MAX_SAMPLES_PER_SEND}"),
                );
            }
            for (field, d) in [
                ("batch_send_deadline", q.batch_send_deadline),
                ("min_backoff", q.min_backoff),
                ("max_backoff", q.max_backoff),
            ] {
                if d.is_some_and(|d| d.as_millis() <= 0) {
                    err(
                        line,
                        col,
                        &format!(".queue.{field}"),
                        "must be positive".into(),
                    );
                }
            }
            let min = q
                .min_backoff
                .map_or(DEFAULT_MIN_BACKOFF_MS, |d| d.as_millis());
            let max = q
                .max_backoff
                .map_or(DEFAULT_MAX_BACKOFF_MS, |d| d.as_millis());
            if min > max {
                err(
                    line,
                    col,
                    ".queue.min_backoff",
                    "must not exceed max_backoff".into(),
                );
            }
            if q.max_age.is_some_and(|d| d.as_millis() <= 0) {
                err(line, col, ".queue.max_age", "must be positive".into());
            }
            if q.max_pending_samples == Some(0) {
                err(
                    line,
                    col,
                    ".queue.max_pending_samples",
                    "must be positive".into(),
                );
            }
        }
    }
    errors
}

/// The error of remote `remote` for a secret it could not read.
fn secret_error(remote: &str, p: SecretProblem) -> RemoteWriteSecretError {
    let remote = remote.to_string();
    match p {
        SecretProblem::MissingEnv { field, var } => {
            RemoteWriteSecretError::MissingEnv { remote, field, var }
        }
        SecretProblem::File { field, source } => RemoteWriteSecretError::File {
            remote,
            field,
            source,
        },
    }
}

/// `r` with defaults applied and secrets read (`*_env` from `env`); `r` is validated.
/// `retention` (`storage.retention`) is the default `queue.max_age`.
pub fn build(
    r: &RemoteWriteConfig,
    env: &HashMap<String, String>,
    retention: Duration,
) -> Result<RemoteWrite, RemoteWriteSecretError> {
    let name = entry_name(r).unwrap_or_default();
    let url = match &r.url {
        Some(u) => http_url(&u.value).expect("validated url"),
        None => {
            let field = if r.url_env.is_some() {
                "url_env"
            } else {
                "url_file"
            };
            let text = read_secret(env, ("url_env", &r.url_env), ("url_file", &r.url_file))
                .map_err(|p| secret_error(&name, p))?
                .map(|s| s.0)
                .unwrap_or_default();
            http_url(&text).map_err(|_| RemoteWriteSecretError::BadUrl {
                remote: name.clone(),
                field,
            })?
        }
    };
    let (bearer_token, basic_auth) = read_client_auth(
        env,
        &r.bearer_token_env,
        &r.bearer_token_file,
        r.basic_auth.as_ref(),
    )
    .map_err(|p| secret_error(&name, p))?;
    let send = match &r.send {
        Some(kinds) => SendSet {
            scraped: kinds.contains(&RemoteWriteSend::Scraped),
            recorded: kinds.contains(&RemoteWriteSend::Recorded),
            alerts: kinds.contains(&RemoteWriteSend::Alerts),
        },
        None => SendSet {
            scraped: true,
            recorded: true,
            alerts: true,
        },
    };
    let q = r.queue.clone().unwrap_or_default();
    let ms = |d: Option<PromDuration>, default: i64| {
        Duration::from_millis(d.map_or(default, |d| d.as_millis()).max(1) as u64)
    };
    Ok(RemoteWrite {
        name,
        url,
        timeout: ms(r.timeout, DEFAULT_RW_TIMEOUT_S as i64 * 1000),
        bearer_token,
        basic_auth,
        headers: r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        send,
        max_samples_per_send: q
            .max_samples_per_send
            .unwrap_or(DEFAULT_MAX_SAMPLES_PER_SEND)
            .clamp(1, MAX_SAMPLES_PER_SEND) as usize,
        batch_send_deadline: ms(q.batch_send_deadline, DEFAULT_BATCH_SEND_DEADLINE_MS),
        min_backoff: ms(q.min_backoff, DEFAULT_MIN_BACKOFF_MS),
        max_backoff: ms(q.max_backoff, DEFAULT_MAX_BACKOFF_MS),
        max_pending_samples: q.max_pending_samples.unwrap_or(DEFAULT_MAX_PENDING_SAMPLES),
        max_age: q.max_age.map_or(retention, |d| {
            Duration::from_millis(d.as_millis().max(1) as u64)
        }),
        relabel: r
            .write_relabel
            .iter()
            .map(|rule| {
                (
                    rule.action == WriteRelabelAction::Keep,
                    crate::labels::compile_regex(&rule.regex.value).expect("validated regex"),
                )
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn errors(yaml: &str) -> String {
        match Config::from_yaml(yaml, Path::new("t.yml")) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_problem_of_the_section_is_reported_at_its_field() {
        let e = errors(
            "remote_write:\n  - url: ftp://x\n  \
             - url: http://vm:8428/api/v1/write\n  \
             - url: http://vm:8428/api/v1/write\n    bearer_token_env: T\n    bearer_token_file: /t\n    \
             headers: { Authorization: x, Content-Encoding: y }\n    send: []\n  \
             - url_env: RW\n  \
             - name: q\n    queue: { max_samples_per_send: 0, min_backoff: 10s, max_backoff: 1s, max_pending_samples: 0, max_age: 0s }\n  \
             - name: u\n    url: http://x\n    url_file: /u\n",
        );
        for want in [
            "t.yml:2:10: remote_write[0].url: must be an http or https URL",
            "t.yml:4:5: remote_write[2].name: duplicate remote_write name \"vm:8428\" (first at line 3)",
            "remote_write[2].bearer_token_env: set bearer_token_env or bearer_token_file, not both",
            "remote_write[2].headers.Authorization: use bearer_token_env/_file or basic_auth",
            "remote_write[2].headers.Content-Encoding: is set by the remote write protocol",
            "remote_write[2].send: must name at least one",
            "t.yml:9:5: remote_write[3].name: is required with url_env or url_file",
            "t.yml:10:5: remote_write[4]: needs url, url_env or url_file",
            "remote_write[4].queue.max_samples_per_send: must be between 1 and 50000",
            "remote_write[4].queue.min_backoff: must not exceed max_backoff",
            "remote_write[4].queue.max_pending_samples: must be positive",
            "remote_write[4].queue.max_age: must be positive",
            "remote_write[5].url: set one of url, url_env and url_file",
        ] {
            assert!(e.contains(want), "{want}\n---\n{e}");
        }
        let e = errors(
            "remote_write:\n  - url: http://x\n    write_relabel:\n      - { action: keep, regex: 'a(' }\n",
        );
        assert!(
            e.contains("remote_write[0].write_relabel[0].regex: invalid regex"),
            "{e}"
        );
        assert!(e.contains("t.yml:4:"), "{e}");
        let e = errors("remote_write:\n  - url: http://x\n    send: [everything]\n");
        assert!(e.contains("t.yml:3:"), "{e}");
    }

    #[test]
    fn urls_and_secrets_come_from_env_or_file_and_defaults_apply() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, "https://key@mimir.example/api/v1/push\n").unwrap();
        let cfg = Config::from_yaml(
            &format!(
                "remote_write:\n  - url: http://127.0.0.1:8428/api/v1/write\n  \
                 - name: mimir\n    url_file: {}\n    bearer_token_env: TOK\n    send: [alerts, recorded]\n    \
                 timeout: 5s\n    queue: {{ max_samples_per_send: 500, batch_send_deadline: 1s, min_backoff: 1s, max_backoff: 1m, max_pending_samples: 1000, max_age: 36h }}\n\
                 storage: {{ retention: 2d }}\n",
                file.display()
            ),
            Path::new("t.yml"),
        )
        .unwrap();
        let env: HashMap<String, String> = [("TOK".to_string(), "t0k".to_string())].into();
        let built = cfg.build_remote_writes(&env).unwrap();
        assert_eq!(built[0].name, "127.0.0.1:8428");
        assert_eq!(built[0].timeout, Duration::from_secs(30));
        assert_eq!(built[0].max_samples_per_send, 2000);
        assert_eq!(built[0].max_pending_samples, DEFAULT_MAX_PENDING_SAMPLES);
        assert!(built[0].send.scraped && built[0].send.recorded && built[0].send.alerts);
        assert_eq!(
            built[1].url.as_str(),
            "https://key@mimir.example/api/v1/push"
        );
        assert_eq!(built[1].bearer_token, Some(Secret("t0k".into())));
        assert_eq!(
            built[1].send,
            SendSet {
                scraped: false,
                recorded: true,
                alerts: true
            }
        );
        assert_eq!(built[1].max_samples_per_send, 500);
        assert_eq!(built[1].batch_send_deadline, Duration::from_secs(1));
        assert_eq!(built[1].max_backoff, Duration::from_secs(60));
        assert_eq!(built[1].max_pending_samples, 1000);
        // the age bound: the store's retention unless set
        assert_eq!(built[0].max_age, Duration::from_secs(2 * 86_400));
        assert_eq!(built[1].max_age, Duration::from_secs(36 * 3_600));
        assert!(built[0].sends_name("anything"));
        // neither the URL's key nor the token is printed
        let debug = format!("{built:?}");
        assert!(!debug.contains("key@") && !debug.contains("t0k"), "{debug}");
        let e = cfg
            .build_remote_writes(&HashMap::new())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "remote_write mimir: bearer_token_env names TOK, which is not set in this environment"
        );
        // a URL from a file that is not one is refused without showing it
        std::fs::write(&file, "s3cret-not-a-url\n").unwrap();
        let e = cfg.build_remote_writes(&env).unwrap_err().to_string();
        assert_eq!(e, "remote_write mimir: url_file: not an http or https URL");
    }
}

#[cfg(test)]
mod relabel_tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn write_relabel_keeps_and_drops_by_anchored_metric_name_in_order() {
        let cfg = Config::from_yaml(
            "remote_write:\n  - url: http://x\n    write_relabel:\n      \
             - { action: keep, regex: 'node_.*|up' }\n      - { action: drop, regex: 'node_debug_.*' }\n",
            Path::new("t.yml"),
        )
        .unwrap();
        let rw = &cfg.build_remote_writes(&HashMap::new()).unwrap()[0];
        // (name, sent)
        for (name, sent) in [
            ("node_load1", true),
            ("up", true),
            ("my_node_load1", false), // anchored, as Prometheus
            ("upx", false),
            ("node_debug_x", false),
            ("http_requests_total", false),
        ] {
            assert_eq!(rw.sends_name(name), sent, "{name}");
        }
    }
}
