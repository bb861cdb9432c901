//! Configuration: raw (as written in `tocsin.yml`) → validated ([`Config`]) → built (secrets read, by the daemon).
//!
//! Parsing rejects unknown fields and duplicate keys and reports `file:line:col`. Validation is pure and
//! collects every error before returning, each naming its file, line, column and field. Secrets are
//! never written in the file: only `*_env` (an environment variable's name) or `*_file` (a path).
//! `TOCSIN_*` environment variables override the top-level settings ([`Config::apply_env`]).
//! Every field's doc comment is its user documentation.

pub mod datasource;
pub mod import;
pub mod preflight;
pub mod reference;
pub mod remote_write;
pub mod schema;
pub mod sd;
pub mod secret;

pub use preflight::{PreflightError, PreflightErrors};
pub use secret::{MAX_SECRET_FILE_BYTES, SecretFileError, read_secret_file};

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::duration::{MIN_RULE_INTERVAL, MIN_SCRAPE_INTERVAL, PromDuration};
use crate::labels::{valid_label_name, valid_metric_name};
use crate::notify::receivers::ReceiverConfig;
use crate::notify::route::{InhibitRuleConfig, RouteConfig, TimeIntervalConfig};

/// The file name `tocsin run` looks for in the working directory when no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "tocsin.yml";
/// Listen address of the built-in default configuration.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9477";

/// Occurs when a configuration file cannot be read, parsed or validated.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed, has an unknown field, a duplicate key or a value of the wrong type.
    #[error("{path}:{line}:{col}: {message}")]
    Parse {
        path: PathBuf,
        line: u64,
        col: u64,
        message: String,
    },
    /// The YAML parsed but values are inconsistent; every problem is listed.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

/// One validation problem, located in its file.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub path: PathBuf,
    pub line: u64,
    pub col: u64,
    /// dotted field path, e.g. `targets[1].timeout`
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.path.display(),
            self.line,
            self.col,
            self.field,
            self.message
        )
    }
}

/// The whole configuration file. Environment variables override some settings: `TOCSIN_LISTEN`
/// (`server.listen`), `TOCSIN_STORAGE_PATH` (`storage.path`), `TOCSIN_DATA_DIR` (the database
/// becomes `<dir>/tocsin.db`), `TOCSIN_RETENTION`, `TOCSIN_LOG_FORMAT`, `TOCSIN_LOG_LEVEL`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where samples are stored and for how long.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Defaults for every target's scrapes and probes.
    #[serde(default)]
    pub scrape: ScrapeConfig,
    /// How often rules are evaluated.
    #[serde(default)]
    pub evaluation: EvaluationConfig,
    /// The services to watch: each has a metrics endpoint, a health endpoint, or both.
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    /// Rule files (Prometheus rule-file format plus tocsin's `script`, `resolve`,
    /// `flap_detection`, `dry_run`): paths or patterns with wildcards in the file name
    /// (`rules/*.yml`), relative to the directory of this configuration file. A pattern never
    /// matches rule test files (`*_test.yml`). A path that names no file, or a pattern that
    /// matches none, is an error (the daemon would run without those rules). The reserved entry
    /// `tocsin:self` loads tocsin's own alerts (rule evaluations failing, notifications failing,
    /// the outbox stuck or growing, the store unable to write, a target down, no rules loaded),
    /// built into the binary as `rules/tocsin-self.yml`; the built-in configuration loads it.
    /// `tocsin:watchdog` loads `Watchdog`, an alert that is always firing, for a dead-man's
    /// switch downstream (route it there: see `rules/tocsin-watchdog.yml`).
    #[serde(default)]
    pub rule_files: Vec<Spanned<String>>,
    /// Remote query engines serving the Prometheus HTTP API (Prometheus, VictoriaMetrics,
    /// Thanos, Mimir). A rule group with `datasource: <name>` sends its PromQL there instead of
    /// evaluating it over tocsin's own store; alert state, routing and notifications stay here.
    #[serde(default, deserialize_with = "empty_when_null")]
    pub datasources: Vec<datasource::DatasourceConfig>,
    /// Receivers of Prometheus remote write 1.0 (VictoriaMetrics, Prometheus, Mimir, Thanos
    /// Receive): tocsin's samples are sent there too, from a durable queue in the store, so a
    /// receiver that is down or a restart loses nothing. Changing them needs a restart.
    #[serde(default, deserialize_with = "empty_when_null")]
    pub remote_write: Vec<Spanned<remote_write::RemoteWriteConfig>>,
    /// The HTTP server.
    #[serde(default)]
    pub server: ServerConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Labels added to every alert sent to a receiver (webhook, email, alertmanager) and shown
    /// with the alerts of `/api/v2/alerts`, as Prometheus's `global.external_labels`: an alert's
    /// own label of the same name wins. Name an instance of an HA pair here (`replica: a`) and
    /// drop it again in an `alertmanager` receiver's `alert_relabel_configs`, so the
    /// Alertmanager cluster deduplicates the pair. Changing them needs a restart.
    #[serde(default)]
    pub external_labels: Option<Spanned<BTreeMap<String, String>>>,
    /// The notification routing tree, in Alertmanager's form: `receiver`, `group_by`,
    /// `group_wait` (30s), `group_interval` (5m), `repeat_interval` (4h), `matchers`,
    /// `continue`, `mute_time_intervals`, `active_time_intervals` and child `routes`.
    /// Without it no notification is sent (alerts are still tracked and served by the API).
    #[serde(default)]
    pub route: Option<Spanned<RouteConfig>>,
    /// Where notifications go: each receiver has a `name`, a `webhook` and/or an `email`
    /// integration (or an `alertmanager` one alone), an optional `fallback` receiver for what it
    /// fails permanently, and an optional `digest: all | changes_only`.
    #[serde(default, deserialize_with = "empty_when_null")]
    pub receivers: Vec<ReceiverConfig>,
    /// Inhibition rules: `source_matchers`, `target_matchers`, `equal`.
    #[serde(default, deserialize_with = "empty_when_null")]
    pub inhibit_rules: Vec<InhibitRuleConfig>,
    /// Named time intervals (`times`, `weekdays`, `days_of_month`, `months`, `years`,
    /// `location`) that routes mute or activate by name.
    #[serde(default, deserialize_with = "empty_when_null")]
    pub time_intervals: Vec<TimeIntervalConfig>,
}

/// A list section left empty (`inhibit_rules:` with nothing after it, or `~`) is an empty list.
fn empty_when_null<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<Vec<T>>::deserialize(d).map(Option::unwrap_or_default)
}

/// Where samples are stored and for how long.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The SQLite database file (created with its directory if missing). Default `data/tocsin.db`.
    pub path: PathBuf,
    /// How long samples are kept; older data is dropped in whole hour-long blocks. Default `15d`.
    pub retention: Spanned<PromDuration>,
    /// How often buffered samples are made durable. A crash loses at most this much. Default `5s`.
    pub flush_interval: Spanned<PromDuration>,
    /// Recent data each series keeps in memory besides its open chunk, so rule windows are read
    /// without touching the file. Older data is read from the file. Memory grows with it: at 100k
    /// series scraped every second, each minute costs about 25 MiB. Default `0s` (the rule engine
    /// raises it to the longest range its rules read).
    pub head_window: PromDuration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("data/tocsin.db"),
            retention: unlocated(PromDuration::from_secs(15 * 24 * 3600)),
            flush_interval: unlocated(PromDuration::from_secs(5)),
            head_window: PromDuration::from_secs(0),
        }
    }
}

/// Defaults for every target; each target may override them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrapeConfig {
    /// Time between two scrapes (and two health probes) of a target, at least `100ms`. Default `15s`.
    pub interval: Spanned<PromDuration>,
    /// A scrape or probe that takes longer fails with `up` 0. At most `interval`. Default `10s`,
    /// or the interval when that is shorter (as Prometheus).
    pub timeout: Option<Spanned<PromDuration>>,
    /// A scrape with more samples than this fails (`up` 0) and stores nothing. Default `200000`.
    pub sample_limit: usize,
    /// A response body larger than this (after decompression) fails the scrape. Bytes, or with a unit:
    /// `512KiB`, `32MiB`, `1GB`. Default `32MiB`.
    pub body_size_limit: ByteSize,
    /// A scrape exposing a new series with more labels than this fails as a whole (`up` 0, nothing
    /// stored), as Prometheus's `label_limit`. The metric name and the target's labels (`job`,
    /// `instance`, `labels`) count. Default `0`: no limit (the body size limit already bounds the
    /// work, and labels are parsed in linear time).
    pub label_limit: usize,
    /// A scrape exposing a new series with a label name longer than this many bytes fails as a
    /// whole, as Prometheus's `label_name_length_limit`. Default `0`: no limit.
    pub label_name_length_limit: usize,
    /// A scrape exposing a new series with a label value longer than this many bytes fails as a
    /// whole, as Prometheus's `label_value_length_limit`; the metric name counts as the value of
    /// `__name__`. Default `0`: no limit.
    pub label_value_length_limit: usize,
    /// Store tocsin's own metrics (`tocsin_*`, what `/metrics` serves) every `interval`, in-process
    /// and without HTTP, as the series of target `job="tocsin"`, so rules (the `tocsin:self`
    /// rules among them) can alert on tocsin itself, even while the store cannot write (they are
    /// read from memory). Default `true`.
    pub self_metrics: bool,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        ScrapeConfig {
            interval: unlocated(PromDuration::from_secs(15)),
            timeout: None,
            sample_limit: 200_000,
            body_size_limit: ByteSize(32 << 20),
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            self_metrics: true,
        }
    }
}

/// How often rules are evaluated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationConfig {
    /// Default interval of rule groups that set none, at least `1s` (as a group's own `interval`).
    /// Default `15s`.
    pub interval: Spanned<PromDuration>,
    /// PromQL semantics where Prometheus 2.x and 3.x differ (range windows that include or
    /// exclude their start, `rate` near a counter's start, compensated sums): `"2"` or `"3"`.
    /// Default `"2"`, what rules written for today's Prometheus 2.x deployments expect.
    pub promql_compat: Spanned<String>,
}

impl EvaluationConfig {
    /// The engine setting for `promql_compat` (validated to be 2 or 3).
    pub fn compat(&self) -> crate::promql::Compat {
        match self.promql_compat.value.as_str() {
            "3" => crate::promql::Compat::Prometheus3,
            _ => crate::promql::Compat::Prometheus2,
        }
    }
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        EvaluationConfig {
            interval: unlocated(PromDuration::from_secs(15)),
            promql_compat: unlocated("2".into()),
        }
    }
}

/// One watched service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Unique name; becomes the `job` label of every series from this target unless `job` is set.
    pub name: Spanned<String>,
    /// The `job` label of this target's metrics, health and probe series, when it is not the
    /// name: several targets may share a job, as the instances of one Prometheus job do (each
    /// target its own `instance`). A heartbeat's series keep the name, which pushes check in by.
    /// Default: the name.
    #[serde(default)]
    pub job: Option<Spanned<String>>,
    /// URL of a Prometheus text-format endpoint, e.g. `http://127.0.0.1:8000/metrics`.
    #[serde(default)]
    pub metrics: Option<Spanned<String>>,
    /// URL of an HTTP health endpoint: status code, latency and, for a JSON body, per-check results.
    #[serde(default)]
    pub health: Option<Spanned<String>>,
    /// Extra labels added to every series from this target.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Overrides `scrape.interval`.
    #[serde(default)]
    pub interval: Option<Spanned<PromDuration>>,
    /// Overrides `scrape.timeout`.
    #[serde(default)]
    pub timeout: Option<Spanned<PromDuration>>,
    /// Overrides `scrape.sample_limit`.
    #[serde(default)]
    pub sample_limit: Option<usize>,
    /// Overrides `scrape.body_size_limit`.
    #[serde(default)]
    pub body_size_limit: Option<ByteSize>,
    /// Overrides `scrape.label_limit`.
    #[serde(default)]
    pub label_limit: Option<usize>,
    /// Overrides `scrape.label_name_length_limit`.
    #[serde(default)]
    pub label_name_length_limit: Option<usize>,
    /// Overrides `scrape.label_value_length_limit`.
    #[serde(default)]
    pub label_value_length_limit: Option<usize>,
    /// No alert fires for this target until it has been watched this long (a starting service is
    /// not an outage). Default `0s`.
    #[serde(default)]
    pub startup_grace: PromDuration,
    /// Numeric fields of the health endpoint's JSON body to keep as gauges.
    #[serde(default)]
    pub health_json: Vec<JsonGauge>,
    /// Name of an environment variable holding a bearer token sent to both endpoints.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// Path of a file holding a bearer token sent to both endpoints (trailing newline ignored): a
    /// regular file of at most 64 KiB.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    // --- probes (issue 15): keep at the end of the struct ---
    /// TCP, TLS, DNS and SMTP probes of this target; each is its own endpoint in `/status`, with
    /// the series labels `job`, `instance` (the address, or the DNS query name) and `probe` (its name).
    #[serde(default)]
    pub probes: Vec<ProbeConfig>,
    /// A dead-man's switch: the target is expected to check in (`POST /api/v1/heartbeat/<name>`,
    /// or a push to `/api/v1/import/prometheus` with `extra_label=job=<name>`) at least every
    /// `expected_interval`; silent longer than that plus `grace`, its `up{probe="heartbeat"}`
    /// turns 0 at once (to the millisecond, not at the next tick). Its series are written every
    /// `interval` and at each change.
    #[serde(default)]
    pub heartbeat: Option<HeartbeatConfig>,
    // --- service discovery and relabelling (issue 14): keep at the end of the struct ---
    /// Relabelling of this target's labels (of each discovered target's, with discovery), in
    /// order, as Prometheus's `relabel_configs`: a `keep` or `drop` can remove the target, and
    /// `instance`, `job`, the labels and (for a `metrics` url or discovered targets) the
    /// address, scheme and path can be rewritten.
    #[serde(default)]
    pub relabel_configs: Vec<sd::TargetRelabelConfig>,
    /// Targets from files in Prometheus's `file_sd` format. A target with discovery is a job
    /// template: each discovered address is scraped as `<scheme>://<address><metrics_path>` with
    /// this target's settings, as a target named `<name>/<instance>`.
    #[serde(default)]
    pub file_sd: Vec<sd::FileSdConfig>,
    /// Targets from HTTP endpoints in Prometheus's HTTP SD format.
    #[serde(default)]
    pub http_sd: Vec<sd::HttpSdConfig>,
    /// Targets from DNS `A`, `AAAA` or `SRV` records.
    #[serde(default)]
    pub dns_sd: Vec<sd::DnsSdConfig>,
    /// The path scraped on discovered targets. Default `/metrics`.
    #[serde(default)]
    pub metrics_path: Option<String>,
    /// The scheme of discovered targets, `http` or `https`. Default `http`.
    #[serde(default)]
    pub scheme: Option<String>,
}

/// A target that checks in by itself (a job, a stream, a cron script) instead of being scraped.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// The longest the target may stay silent between two check-ins, at least `100ms`. After
    /// tocsin starts, the target has this long (plus `grace`) for its first check-in.
    pub expected_interval: Spanned<PromDuration>,
    /// Extra silence tolerated on top of `expected_interval` (network delays, a slow job).
    /// Default `0s`.
    #[serde(default)]
    pub grace: PromDuration,
}

impl TargetConfig {
    /// Whether the target discovers its addresses (`file_sd`, `http_sd` or `dns_sd`).
    pub fn discovers(&self) -> bool {
        !self.file_sd.is_empty() || !self.http_sd.is_empty() || !self.dns_sd.is_empty()
    }

    /// The value of the `job` label of this target's series: `job`, or the name.
    pub fn job_label(&self) -> &str {
        self.job.as_ref().map_or(&self.name.value, |j| &j.value)
    }
}

/// What a probe checks.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// Connects (connect time), optionally sends `send` and expects `expect`.
    Tcp,
    /// A TLS handshake (optionally after STARTTLS): certificate dates, name, chain, version.
    Tls,
    /// Asks each of `servers` for `query_name`/`query_type`: rcode, answers, SOA serial, RRSIG expiry.
    Dns,
    /// Banner, EHLO, STARTTLS offered and working, and the certificate presented after it.
    Smtp,
}

impl ProbeKind {
    /// The kind as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Tcp => "tcp",
            ProbeKind::Tls => "tls",
            ProbeKind::Dns => "dns",
            ProbeKind::Smtp => "smtp",
        }
    }
}

/// The protocol a `tls` probe speaks to upgrade a plain connection to TLS.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StartTls {
    /// SMTP: `EHLO`, then `STARTTLS`.
    Smtp,
    /// IMAP: `a1 STARTTLS`.
    Imap,
    /// POP3: `STLS`.
    Pop3,
}

/// Transport of a `dns` probe.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DnsTransport {
    /// One datagram each way (the default); a truncated answer is reported, not retried.
    #[default]
    Udp,
    /// A TCP connection, the message prefixed by its length.
    Tcp,
}

/// One probe of a TCP, TLS, DNS or SMTP service.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// What the probe checks: `tcp`, `tls`, `dns` or `smtp`.
    pub kind: ProbeKind,
    /// Name of the probe, unique inside the target; the value of the `probe` label. Default: the kind.
    #[serde(default)]
    pub name: Option<String>,
    /// `host:port` to connect to (`tcp`, `tls`, `smtp`); an IP address or a host name.
    #[serde(default)]
    pub address: Option<String>,
    /// `dns`: the servers asked, each `host:port` (`:53` when the port is omitted), e.g. every
    /// authoritative server of a zone; each answer is written with a `server` label.
    #[serde(default)]
    pub servers: Vec<String>,
    /// `tls`, `smtp`: the name sent as SNI and checked against the certificate. Default: the host
    /// of `address`. Set it to probe one node among many by its IP under the public name.
    #[serde(default)]
    pub server_name: Option<String>,
    /// `tls`: upgrade a plain connection with STARTTLS first: `smtp`, `imap` or `pop3`.
    #[serde(default)]
    pub starttls: Option<StartTls>,
    /// `smtp`: whether the probe fails when STARTTLS is not offered or does not work. Default `true`.
    #[serde(default)]
    pub require_starttls: Option<bool>,
    /// `tls`, `smtp`: a PEM file of CA certificates the chain is verified against instead of the
    /// system's roots (a regular file of at most 64 KiB).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `dns`: the name asked for, e.g. `example.org.`
    #[serde(default)]
    pub query_name: Option<String>,
    /// `dns`: the record type asked for, e.g. `A`, `SOA`, `MX`, `DNSKEY`. Default `A`.
    #[serde(default)]
    pub query_type: Option<String>,
    /// `dns`: `udp` (default) or `tcp`.
    #[serde(default)]
    pub transport: Option<DnsTransport>,
    /// `dns`: ask for DNSSEC records (the DO bit), so `probe_dns_rrsig_expiry_timestamp_seconds`
    /// is written; the probe fails when the answer carries no RRSIG. Default `false`.
    #[serde(default)]
    pub dnssec: bool,
    /// `dns`: a regular expression every answer record must match, in zone-file form
    /// (`example.org. 300 IN A 192.0.2.1`); the probe fails on the first that does not.
    #[serde(default)]
    pub answer_regex: Option<String>,
    /// `dns`: the exact set of answer values expected (the record data in zone-file form, e.g.
    /// `192.0.2.1`); the probe fails when the set differs.
    #[serde(default)]
    pub answer_set: Vec<String>,
    /// `tcp`: text sent after connecting (`\n` and `\r` in YAML double quotes are sent as is).
    #[serde(default)]
    pub send: Option<String>,
    /// `tcp`: a regular expression the received text must match before the timeout.
    #[serde(default)]
    pub expect: Option<String>,
    /// Overrides the target's interval, at least `100ms`.
    #[serde(default)]
    pub interval: Option<Spanned<PromDuration>>,
    /// Overrides the target's timeout: the whole probe (every server of a `dns` probe in parallel).
    #[serde(default)]
    pub timeout: Option<Spanned<PromDuration>>,
    /// Extra labels of this probe's series, added to the target's.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Largest answer read (a DNS message, an SMTP reply, the `tcp` expect buffer). Default `64KiB`.
    #[serde(default)]
    pub response_size_limit: Option<ByteSize>,
}

impl ProbeConfig {
    /// The probe's name: `name`, or the kind.
    pub fn probe_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.kind.as_str().to_string())
    }
}

/// A probe with every default applied: what the scheduler runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// the `probe` label
    pub name: String,
    pub config: ProbeConfig,
    pub interval: PromDuration,
    pub timeout: PromDuration,
    pub size_limit: u64,
    /// the `ca_file`'s contents
    pub ca_pem: Option<Vec<u8>>,
}

/// Default `response_size_limit` of a probe.
pub const DEFAULT_PROBE_SIZE_LIMIT: u64 = 64 * 1024;

/// A field of a health endpoint's JSON body kept as a series. A number is the series' value, a
/// boolean is 1 or 0, a string is a state: one series per value with a `state` label, 1 for the
/// current value and 0 for the others (as blackbox_exporter's `probe_json_status`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JsonGauge {
    /// Path into the body: keys separated by `.` (`stats.queue.depth`), an array element by
    /// index (`checks[0].ok`) or as the first object whose key has a value
    /// (`checks[name=db].ok`; the value is compared as text and may hold dots but no closing
    /// bracket). At most 256 bytes and 16 steps; a
    /// key cannot contain a dot or a square bracket.
    pub field: Spanned<String>,
    /// Name of the series. When unset, `health_json_` followed by the path with every character
    /// not allowed in a metric name replaced by `_` (`checks[0].ok` becomes
    /// `health_json_checks_0_ok`).
    #[serde(default)]
    pub metric: Option<String>,
    /// For a string field: the values it may take, each written (0 or 1) at every probe, so a
    /// rule sees a state turn 0. Values not listed are written too once seen, up to 16 values a
    /// field; a value longer than 128 bytes is cut. Default: none (only values seen).
    #[serde(default)]
    pub states: Vec<String>,
}

impl JsonGauge {
    /// The metric name the gauge is stored under.
    pub fn metric_name(&self) -> String {
        self.metric.clone().unwrap_or_else(|| {
            let mut name = String::from("health_json_");
            for c in self.field.value.chars() {
                let keep = c.is_ascii_alphanumeric() || c == '_' || c == ':';
                let c = if keep { c } else { '_' };
                // `checks[0].ok`: one `_` for `[`, `].`
                if !(c == '_' && name.ends_with('_')) {
                    name.push(c);
                }
            }
            name.trim_end_matches('_').to_string()
        })
    }
}

/// The HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on. Default `127.0.0.1:9477`.
    pub listen: Spanned<String>,
    /// Name of an environment variable holding the bearer token required by API writes.
    pub api_token_env: Option<String>,
    /// Name of an environment variable holding a bearer token required by API reads
    /// (`/api/v1/*`, `/status`). Unset: reads are open. The write token is accepted for reads too.
    /// `/health/*`, `/metrics` and `/api/v1/openapi.json` stay open.
    pub api_read_token_env: Option<String>,
    /// Largest body `POST /api/v1/import/prometheus` accepts (larger ones get 413), at most
    /// `64MiB`. Bytes, or with a unit: `512KiB`, `16MiB`. Default `4MiB`. Pushed samples also
    /// obey `scrape.sample_limit` and the `scrape.label_*` limits.
    pub push_body_size_limit: Spanned<ByteSize>,
}

/// The largest `server.push_body_size_limit` allowed.
pub const MAX_PUSH_BODY_SIZE_LIMIT: u64 = 64 << 20;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: unlocated(DEFAULT_LISTEN.to_string()),
            api_token_env: None,
            api_read_token_env: None,
            push_body_size_limit: unlocated(ByteSize(4 << 20)),
        }
    }
}

/// Logging to stdout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (human) or `json` (one object a line). Default `text`.
    pub format: LogFormat,
    /// Minimum level, or a tracing filter such as `info,tocsin::ingest=debug`. Default `info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_string(),
        }
    }
}

/// A value not read from a file (a default, an environment override): no position.
fn unlocated<T>(value: T) -> Spanned<T> {
    Spanned::new(value, Location::UNKNOWN, Location::UNKNOWN)
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people: time, level, message and fields on one line (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object a line, for a log collector.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?} (text or json)")),
        }
    }
}

/// A size in bytes, written as a number or with a unit (`B KB MB GB KiB MiB GiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid size {s:?}: expected a number such as 32MiB"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            other => return Err(format!("invalid size {s:?}: unknown unit {other:?}")),
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("invalid size {s:?}: too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// A target with every default applied: what the scheduler runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    /// the `job` label: `job`, or the name
    pub job: String,
    pub metrics: Option<url::Url>,
    pub health: Option<url::Url>,
    pub labels: BTreeMap<String, String>,
    pub interval: PromDuration,
    pub timeout: PromDuration,
    pub sample_limit: usize,
    pub body_size_limit: u64,
    pub label_limits: LabelLimits,
    pub startup_grace: PromDuration,
    pub health_json: Vec<crate::ingest::health::JsonField>,
    pub bearer_token: Option<Secret>,
    pub probes: Vec<Probe>,
    /// the dead-man's switch, when the target checks in by itself
    pub heartbeat: Option<Heartbeat>,
    /// the `instance` label when relabelling set it; otherwise `host:port` of the url
    pub instance: Option<String>,
}

/// A heartbeat with its defaults applied: what the scheduler watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub expected_interval: PromDuration,
    pub grace: PromDuration,
}

/// A target's label limits (Prometheus's), checked on each new series of a scrape; 0 is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LabelLimits {
    pub label_limit: usize,
    pub label_name_length_limit: usize,
    pub label_value_length_limit: usize,
}

/// A secret value; never printed.
#[derive(Clone, PartialEq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// Occurs when a target's secret named by `*_env` or `*_file` cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// `bearer_token_env` names a variable absent from the environment `tocsin` runs in.
    #[error("target {target}: bearer_token_env names {var}, which is not set in this environment")]
    MissingEnv { target: String, var: String },
    /// `bearer_token_file` is missing, not a regular file or too large ([`read_secret_file`]).
    #[error("target {target}: bearer_token_file: {source}")]
    File {
        target: String,
        #[source]
        source: SecretFileError,
    },
    /// A probe's `ca_file` is missing, not a regular file or too large.
    #[error("target {target}: probe {probe}: ca_file: {source}")]
    CaFile {
        target: String,
        probe: String,
        #[source]
        source: SecretFileError,
    },
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_yaml(&text, path)
    }

    /// Parses and validates configuration text; `path` is only used in error messages.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        // an empty file is a valid, empty configuration
        let cfg: Config = if text.trim().is_empty() {
            serde_saphyr::from_str("{}")
        } else {
            serde_saphyr::from_str(text)
        }
        .map_err(|e| {
            let (line, col) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                col,
                message: parse_message(&e),
            }
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Each target's `startup_grace` in ms, by its `job` label (what the rule manager judges by).
    pub fn startup_graces(&self) -> HashMap<String, i64> {
        self.targets
            .iter()
            .map(|t| (t.job_label().to_string(), t.startup_grace.as_millis()))
            .collect()
    }

    /// `external_labels` as a label set (empty when unset).
    pub fn external_labels(&self) -> crate::labels::Labels {
        self.external_labels
            .as_ref()
            .map(|e| crate::labels::Labels::from_pairs(e.value.clone()))
            .unwrap_or_default()
    }

    /// The built-in configuration used when no file is given: tocsin watches itself (its own
    /// metrics, stored in-process, and the `tocsin:self` rules).
    pub fn builtin_default() -> Config {
        serde_saphyr::from_str("rule_files: [\"tocsin:self\"]\n")
            .expect("the built-in configuration parses")
    }

    /// When the configuration names no target, probe tocsin's own `/health/ready`, so a fresh
    /// `tocsin run` shows a target at once (its metrics are stored in-process:
    /// `scrape.self_metrics`). Called after [`Config::apply_env`] so it follows an overridden
    /// listen address.
    pub fn add_self_target_if_empty(&mut self) {
        if !self.targets.is_empty() {
            return;
        }
        let yaml = format!(
            "targets:\n  - name: tocsin\n    health: http://{0}/health/ready\n",
            self.server.listen.value
        );
        let with_target: Config = serde_saphyr::from_str(&yaml).expect("built-in target parses");
        self.targets = with_target.targets;
    }

    /// Applies `TOCSIN_*` overrides from `vars` (pass `std::env::vars()`): `TOCSIN_LISTEN`,
    /// `TOCSIN_STORAGE_PATH`, `TOCSIN_DATA_DIR` (the database becomes `<dir>/tocsin.db`),
    /// `TOCSIN_RETENTION`, `TOCSIN_LOG_FORMAT`, `TOCSIN_LOG_LEVEL`. Unknown `TOCSIN_*` names are ignored
    /// (`TOCSIN_API_TOKEN` and the like are secrets read elsewhere).
    pub fn apply_env<I: IntoIterator<Item = (String, String)>>(
        &mut self,
        vars: I,
    ) -> Result<(), String> {
        for (k, v) in vars {
            match k.as_str() {
                "TOCSIN_LISTEN" => self.server.listen = unlocated(v),
                "TOCSIN_STORAGE_PATH" => self.storage.path = PathBuf::from(v),
                "TOCSIN_DATA_DIR" => self.storage.path = Path::new(&v).join("tocsin.db"),
                "TOCSIN_RETENTION" => {
                    self.storage.retention = unlocated(
                        PromDuration::parse(&v).map_err(|e| format!("TOCSIN_RETENTION: {e}"))?,
                    )
                }
                "TOCSIN_LOG_FORMAT" => {
                    self.log.format = v.parse().map_err(|e| format!("TOCSIN_LOG_FORMAT: {e}"))?
                }
                "TOCSIN_LOG_LEVEL" => self.log.level = v,
                _ => {}
            }
        }
        if self.server.listen.value.parse::<SocketAddr>().is_err() {
            return Err(format!(
                "listen address {:?} is not host:port",
                self.server.listen.value
            ));
        }
        Ok(())
    }

    /// Checks everything that types alone cannot, the notification sections included
    /// ([`crate::notify::setup::NotifyPlan::new`]); returns every problem at once.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let mut errors = datasource::validate(&self.datasources, path);
        errors.extend(remote_write::validate(&self.remote_write, path));
        let mut err = |line: u64, col: u64, field: String, message: String| {
            errors.push(FieldError {
                path: path.to_path_buf(),
                line,
                col,
                field,
                message,
            })
        };
        // each at the value's position: a section's field is `Spanned` like every other
        let at = |l: &Location| (l.line(), l.column());
        let compat = &self.evaluation.promql_compat;
        if !matches!(compat.value.as_str(), "2" | "3") {
            let (l, c) = at(&compat.referenced);
            err(
                l,
                c,
                "evaluation.promql_compat".into(),
                format!("must be \"2\" or \"3\", got {:?}", compat.value),
            );
        }
        let listen = &self.server.listen;
        if listen.value.parse::<SocketAddr>().is_err() {
            let (l, c) = at(&listen.referenced);
            err(
                l,
                c,
                "server.listen".into(),
                format!("{:?} is not host:port", listen.value),
            );
        }
        let push_limit = &self.server.push_body_size_limit;
        if push_limit.value.0 == 0 || push_limit.value.0 > MAX_PUSH_BODY_SIZE_LIMIT {
            let (l, c) = at(&push_limit.referenced);
            err(
                l,
                c,
                "server.push_body_size_limit".into(),
                format!(
                    "{} bytes: must be positive and at most {MAX_PUSH_BODY_SIZE_LIMIT} (64MiB)",
                    push_limit.value.0
                ),
            );
        }
        let scrape_interval = &self.scrape.interval;
        if scrape_interval.value.0 < MIN_SCRAPE_INTERVAL {
            let (l, c) = at(&scrape_interval.referenced);
            err(
                l,
                c,
                "scrape.interval".into(),
                format!(
                    "{} is shorter than the minimum of {}",
                    scrape_interval.value,
                    PromDuration(MIN_SCRAPE_INTERVAL)
                ),
            );
        }
        let eval_interval = &self.evaluation.interval;
        if eval_interval.value.0 < MIN_RULE_INTERVAL {
            let (l, c) = at(&eval_interval.referenced);
            err(
                l,
                c,
                "evaluation.interval".into(),
                format!(
                    "{} is shorter than the minimum of {}",
                    eval_interval.value,
                    PromDuration(MIN_RULE_INTERVAL)
                ),
            );
        }
        if let Some(timeout) = &self.scrape.timeout
            && timeout.value > scrape_interval.value
        {
            let (l, c) = at(&timeout.referenced);
            err(
                l,
                c,
                "scrape.timeout".into(),
                format!(
                    "{} is longer than the interval {}",
                    timeout.value, scrape_interval.value
                ),
            );
        }
        for (field, d) in [
            ("storage.retention", &self.storage.retention),
            ("storage.flush_interval", &self.storage.flush_interval),
        ] {
            if d.value.0.is_zero() {
                let (l, c) = at(&d.referenced);
                err(l, c, field.into(), "must be positive".into());
            }
        }
        if let Some(ext) = &self.external_labels {
            let (l, c) = at(&ext.referenced);
            for (k, v) in &ext.value {
                if !valid_label_name(k) || k.starts_with("__") {
                    err(
                        l,
                        c,
                        "external_labels".into(),
                        format!("invalid label name {k:?}"),
                    );
                } else if v.is_empty() {
                    err(
                        l,
                        c,
                        format!("external_labels.{k}"),
                        "must not be empty".into(),
                    );
                }
            }
        }
        let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
        let mut sd_errors = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            let (line, col) = (t.name.referenced.line(), t.name.referenced.column());
            let field = |f: &str| format!("targets[{i}].{f}");
            sd_errors.extend(sd::validate(t, path, (line, col), &|f: &str| {
                format!("targets[{i}]{}{f}", if f.is_empty() { "" } else { "." })
            }));
            let name = t.name.value.as_str();
            if name.is_empty() {
                err(line, col, field("name"), "must not be empty".into());
            } else if let Some(first) = seen.insert(name, line) {
                err(
                    line,
                    col,
                    field("name"),
                    format!("duplicate target name {name:?} (first at line {first})"),
                );
            }
            if let Some(job) = &t.job
                && job.value.is_empty()
            {
                err(
                    job.referenced.line(),
                    job.referenced.column(),
                    field("job"),
                    "must not be empty".into(),
                );
            }
            if t.metrics.is_none()
                && t.health.is_none()
                && t.probes.is_empty()
                && t.heartbeat.is_none()
                && !t.discovers()
            {
                err(
                    line,
                    col,
                    format!("targets[{i}]"),
                    format!(
                        "target {name:?} has neither metrics nor health nor probes nor heartbeat"
                    ),
                );
            }
            if let Some(hb) = &t.heartbeat {
                let iv = &hb.expected_interval;
                if iv.value.0 < MIN_SCRAPE_INTERVAL {
                    err(
                        iv.referenced.line(),
                        iv.referenced.column(),
                        field("heartbeat.expected_interval"),
                        format!(
                            "{} is shorter than the minimum of {}",
                            iv.value,
                            PromDuration(MIN_SCRAPE_INTERVAL)
                        ),
                    );
                }
            }
            for (key, url) in [("metrics", &t.metrics), ("health", &t.health)] {
                if let Some(u) = url {
                    let (l, c) = (u.referenced.line(), u.referenced.column());
                    match url::Url::parse(&u.value) {
                        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
                        Ok(parsed) => err(
                            l,
                            c,
                            field(key),
                            format!("unsupported scheme {:?} (http or https)", parsed.scheme()),
                        ),
                        Err(e) => err(l, c, field(key), format!("invalid url {:?}: {e}", u.value)),
                    }
                }
            }
            let interval = t
                .interval
                .as_ref()
                .map(|s| s.value)
                .unwrap_or(self.scrape.interval.value);
            let timeout = t
                .timeout
                .as_ref()
                .map(|s| s.value)
                .unwrap_or_else(|| self.default_timeout(interval));
            if let Some(iv) = &t.interval
                && iv.value.0 < MIN_SCRAPE_INTERVAL
            {
                err(
                    iv.referenced.line(),
                    iv.referenced.column(),
                    field("interval"),
                    format!(
                        "{} is shorter than the minimum of {}",
                        iv.value,
                        PromDuration(MIN_SCRAPE_INTERVAL)
                    ),
                );
            }
            if timeout > interval {
                let (l, c) = t
                    .timeout
                    .as_ref()
                    .map(|s| (s.referenced.line(), s.referenced.column()))
                    .unwrap_or((line, col));
                err(
                    l,
                    c,
                    field("timeout"),
                    format!("{timeout} is longer than the interval {interval}"),
                );
            }
            for k in t.labels.keys() {
                if !valid_label_name(k) || k.starts_with("__") {
                    err(
                        line,
                        col,
                        field("labels"),
                        format!("invalid label name {k:?}"),
                    );
                }
                if k == "job" || k == "instance" {
                    err(
                        line,
                        col,
                        field("labels"),
                        format!("label {k:?} is set by tocsin from the target's name and url"),
                    );
                }
            }
            if t.bearer_token_env.is_some() && t.bearer_token_file.is_some() {
                err(
                    line,
                    col,
                    field("bearer_token_env"),
                    "set bearer_token_env or bearer_token_file, not both".into(),
                );
            }
            for (j, g) in t.health_json.iter().enumerate() {
                let (l, c) = (g.field.referenced.line(), g.field.referenced.column());
                if t.health.is_none() {
                    err(
                        l,
                        c,
                        field(&format!("health_json[{j}]")),
                        "needs a health url".into(),
                    );
                }
                if let Err(e) = crate::ingest::health::JsonPath::parse(&g.field.value) {
                    err(
                        l,
                        c,
                        field(&format!("health_json[{j}].field")),
                        format!("invalid path {:?}: {e}", g.field.value),
                    );
                }
                if g.states.len() > crate::ingest::health::MAX_STATES {
                    err(
                        l,
                        c,
                        field(&format!("health_json[{j}].states")),
                        format!(
                            "{} states, more than the limit of {}",
                            g.states.len(),
                            crate::ingest::health::MAX_STATES
                        ),
                    );
                }
                let metric = g.metric_name();
                if !valid_metric_name(&metric) {
                    err(
                        l,
                        c,
                        field(&format!("health_json[{j}].metric")),
                        format!("invalid metric name {metric:?}"),
                    );
                }
            }
            if t.health_json.len() > crate::ingest::health::MAX_JSON_FIELDS {
                err(
                    line,
                    col,
                    field("health_json"),
                    format!(
                        "{} fields, more than the limit of {}",
                        t.health_json.len(),
                        crate::ingest::health::MAX_JSON_FIELDS
                    ),
                );
            }
            let target_interval = interval;
            let mut probe_names = BTreeMap::new();
            for (j, p) in t.probes.iter().enumerate() {
                let f = |x: &str| field(&format!("probes[{j}]{x}"));
                for message in validate_probe(p) {
                    err(line, col, f(""), message);
                }
                let pname = p.probe_name();
                if probe_names.insert(pname.clone(), j).is_some() || pname == "health" {
                    err(
                        line,
                        col,
                        f(".name"),
                        format!("duplicate probe name {pname:?} in target {name:?}"),
                    );
                }
                let interval = p.interval.as_ref().map_or(target_interval, |s| s.value);
                if let Some(iv) = &p.interval
                    && iv.value.0 < MIN_SCRAPE_INTERVAL
                {
                    err(
                        iv.referenced.line(),
                        iv.referenced.column(),
                        f(".interval"),
                        format!(
                            "{} is shorter than the minimum of {}",
                            iv.value,
                            PromDuration(MIN_SCRAPE_INTERVAL)
                        ),
                    );
                }
                let timeout = p
                    .timeout
                    .as_ref()
                    .map_or(timeout.min(interval), |s| s.value);
                if timeout > interval || timeout.0.is_zero() {
                    let (l, c) = p
                        .timeout
                        .as_ref()
                        .map(|s| (s.referenced.line(), s.referenced.column()))
                        .unwrap_or((line, col));
                    err(
                        l,
                        c,
                        f(".timeout"),
                        format!("{timeout} must be positive and at most the interval {interval}"),
                    );
                }
                for k in p.labels.keys() {
                    if !valid_label_name(k)
                        || k.starts_with("__")
                        || matches!(k.as_str(), "job" | "instance" | "probe" | "server")
                    {
                        err(
                            line,
                            col,
                            f(".labels"),
                            format!("invalid or reserved label name {k:?}"),
                        );
                    }
                }
            }
        }
        errors.extend(sd_errors);
        if let Err(notify) = crate::notify::setup::NotifyPlan::new(self) {
            errors.extend(notify.into_iter().map(|e| FieldError {
                path: path.to_path_buf(),
                line: e.at.line(),
                col: e.at.column(),
                message: e.kind.to_string(),
                field: e.path,
            }));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// Every target with defaults applied and secrets read (the only I/O here): `*_env`
    /// settings from `env` (the process environment, passed in by the command line).
    pub fn build_targets(
        &self,
        env: &std::collections::HashMap<String, String>,
    ) -> Result<Vec<Target>, SecretError> {
        let built: Result<Vec<Target>, SecretError> = self
            .targets
            .iter()
            .filter(|t| !t.discovers())
            .map(|t| self.build_target(t, env))
            .collect();
        // relabelling may drop a static target (validated: the steps compile)
        Ok(built?
            .into_iter()
            .zip(self.targets.iter().filter(|t| !t.discovers()))
            .filter_map(|(target, t)| {
                let relabel = crate::ingest::sd::relabel::Relabel::compile(&t.relabel_configs)
                    .expect("validated relabel_configs");
                crate::ingest::sd::relabel_static(target, &relabel)
            })
            .collect())
    }

    /// One target with defaults applied and secrets read; a target with discovery is built as
    /// its job template (no url).
    pub fn build_target(
        &self,
        t: &TargetConfig,
        env: &std::collections::HashMap<String, String>,
    ) -> Result<Target, SecretError> {
        {
            {
                let name = t.name.value.clone();
                let bearer_token = target_secret(t, env)?;
                let parse = |u: &Option<Spanned<String>>| {
                    u.as_ref()
                        .map(|s| url::Url::parse(&s.value).expect("validated url"))
                };
                Ok(Target {
                    job: t.job_label().to_string(),
                    metrics: parse(&t.metrics),
                    health: parse(&t.health),
                    labels: t.labels.clone(),
                    interval: t
                        .interval
                        .as_ref()
                        .map(|s| s.value)
                        .unwrap_or(self.scrape.interval.value),
                    timeout: t.timeout.as_ref().map(|s| s.value).unwrap_or_else(|| {
                        self.default_timeout(
                            t.interval
                                .as_ref()
                                .map(|s| s.value)
                                .unwrap_or(self.scrape.interval.value),
                        )
                    }),
                    sample_limit: t.sample_limit.unwrap_or(self.scrape.sample_limit),
                    body_size_limit: t.body_size_limit.unwrap_or(self.scrape.body_size_limit).0,
                    label_limits: LabelLimits {
                        label_limit: t.label_limit.unwrap_or(self.scrape.label_limit),
                        label_name_length_limit: t
                            .label_name_length_limit
                            .unwrap_or(self.scrape.label_name_length_limit),
                        label_value_length_limit: t
                            .label_value_length_limit
                            .unwrap_or(self.scrape.label_value_length_limit),
                    },
                    startup_grace: t.startup_grace,
                    health_json: t
                        .health_json
                        .iter()
                        .map(|g| crate::ingest::health::JsonField {
                            path: crate::ingest::health::JsonPath::parse(&g.field.value)
                                .expect("validated path"),
                            field: g.field.value.clone(),
                            metric: g.metric_name(),
                            states: g.states.clone(),
                        })
                        .collect(),
                    bearer_token,
                    probes: build_probes(t, self)?,
                    heartbeat: t.heartbeat.as_ref().map(|h| Heartbeat {
                        expected_interval: h.expected_interval.value,
                        grace: h.grace,
                    }),
                    instance: None,
                    name,
                })
            }
        }
    }

    /// The timeout of a target scraped every `interval` that sets none: `scrape.timeout`, or
    /// 10 s capped at the interval (Prometheus's default).
    pub fn default_timeout(&self, interval: PromDuration) -> PromDuration {
        self.scrape
            .timeout
            .as_ref()
            .map(|t| t.value)
            .unwrap_or_else(|| PromDuration::from_secs(10).min(interval))
    }

    /// Every datasource with defaults applied and secrets read (`*_env` from `env`).
    pub fn build_datasources(
        &self,
        env: &std::collections::HashMap<String, String>,
    ) -> Result<Vec<datasource::Datasource>, datasource::DatasourceSecretError> {
        self.datasources
            .iter()
            .map(|d| datasource::build(d, env))
            .collect()
    }

    /// Every remote write entry with defaults applied and secrets read (`*_env` from `env`).
    pub fn build_remote_writes(
        &self,
        env: &std::collections::HashMap<String, String>,
    ) -> Result<Vec<remote_write::RemoteWrite>, remote_write::RemoteWriteSecretError> {
        self.remote_write
            .iter()
            .map(|r| remote_write::build(&r.value, env, self.retention()))
            .collect()
    }

    /// `storage.retention`: how long the store keeps samples.
    pub fn retention(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.storage.retention.value.as_millis().max(0) as u64)
    }

    /// The names of the configured datasources.
    pub fn datasource_names(&self) -> Vec<String> {
        self.datasources
            .iter()
            .map(|d| d.name.value.clone())
            .collect()
    }

    /// The `rule_files` entries as written.
    pub fn rule_file_patterns(&self) -> Vec<String> {
        self.rule_files.iter().map(|p| p.value.clone()).collect()
    }

    /// The notification sections, validated; None when there is no `route` (notifications off).
    pub fn notify_plan(&self) -> Option<crate::notify::setup::NotifyPlan> {
        crate::notify::setup::NotifyPlan::new(self).ok().flatten()
    }
}

/// What is wrong with one probe's settings for its kind (pure).
fn validate_probe(p: &ProbeConfig) -> Vec<String> {
    let mut errors = Vec::new();
    let kind = p.kind.as_str();
    let only = |errors: &mut Vec<String>, set: bool, key: &str, kinds: &[ProbeKind]| {
        if set && !kinds.contains(&p.kind) {
            errors.push(format!("{key} does not apply to a {kind} probe"));
        }
    };
    let dns = p.kind == ProbeKind::Dns;
    if dns {
        if p.servers.is_empty() {
            errors.push("a dns probe needs servers".into());
        }
        match &p.query_name {
            None => errors.push("a dns probe needs query_name".into()),
            Some(n) if hickory_proto::rr::Name::from_ascii(n).is_err() => {
                errors.push(format!("invalid query_name {n:?}"))
            }
            Some(_) => {}
        }
        if let Some(t) = &p.query_type
            && t.to_ascii_uppercase()
                .parse::<hickory_proto::rr::RecordType>()
                .is_err()
        {
            errors.push(format!("unknown query_type {t:?}"));
        }
        for s in &p.servers {
            if crate::ingest::probe::split_host_port(s, 53).is_none() {
                errors.push(format!("invalid server {s:?} (host:port)"));
            }
        }
    } else {
        match &p.address {
            None => errors.push(format!("a {kind} probe needs an address (host:port)")),
            Some(a) if crate::ingest::probe::split_host_port(a, 0).is_none_or(|(_, p)| p == 0) => {
                errors.push(format!("invalid address {a:?} (host:port)"))
            }
            Some(_) => {}
        }
    }
    only(
        &mut errors,
        p.address.is_some(),
        "address",
        &[ProbeKind::Tcp, ProbeKind::Tls, ProbeKind::Smtp],
    );
    only(
        &mut errors,
        !p.servers.is_empty(),
        "servers",
        &[ProbeKind::Dns],
    );
    for (key, set) in [
        ("query_name", p.query_name.is_some()),
        ("query_type", p.query_type.is_some()),
        ("transport", p.transport.is_some()),
        ("dnssec", p.dnssec),
        ("answer_regex", p.answer_regex.is_some()),
        ("answer_set", !p.answer_set.is_empty()),
    ] {
        only(&mut errors, set, key, &[ProbeKind::Dns]);
    }
    only(&mut errors, p.send.is_some(), "send", &[ProbeKind::Tcp]);
    only(&mut errors, p.expect.is_some(), "expect", &[ProbeKind::Tcp]);
    only(
        &mut errors,
        p.starttls.is_some(),
        "starttls",
        &[ProbeKind::Tls],
    );
    only(
        &mut errors,
        p.require_starttls.is_some(),
        "require_starttls",
        &[ProbeKind::Smtp],
    );
    for (key, set) in [
        ("server_name", p.server_name.is_some()),
        ("ca_file", p.ca_file.is_some()),
    ] {
        only(&mut errors, set, key, &[ProbeKind::Tls, ProbeKind::Smtp]);
    }
    for (key, re) in [("answer_regex", &p.answer_regex), ("expect", &p.expect)] {
        if let Some(re) = re
            && let Err(e) = crate::ingest::probe::compile_regex(re)
        {
            errors.push(format!("{key}: {e}"));
        }
    }
    if let Some(n) = &p.name
        && n.is_empty()
    {
        errors.push("name must not be empty".into());
    }
    errors
}

/// A target's probes with defaults applied and `ca_file`s read (bounded).
fn build_probes(t: &TargetConfig, cfg: &Config) -> Result<Vec<Probe>, SecretError> {
    let target_interval = t
        .interval
        .as_ref()
        .map_or(cfg.scrape.interval.value, |s| s.value);
    let target_timeout = t
        .timeout
        .as_ref()
        .map_or_else(|| cfg.default_timeout(target_interval), |s| s.value);
    t.probes
        .iter()
        .map(|p| {
            let interval = p.interval.as_ref().map_or(target_interval, |s| s.value);
            let ca_pem = match &p.ca_file {
                Some(path) => Some(
                    read_secret_file(path)
                        .map_err(|source| SecretError::CaFile {
                            target: t.name.value.clone(),
                            probe: p.probe_name(),
                            source,
                        })?
                        .into_bytes(),
                ),
                None => None,
            };
            Ok(Probe {
                name: p.probe_name(),
                config: p.clone(),
                interval,
                timeout: p
                    .timeout
                    .as_ref()
                    .map_or(target_timeout.min(interval), |s| s.value),
                size_limit: p
                    .response_size_limit
                    .map_or(DEFAULT_PROBE_SIZE_LIMIT, |b| b.0),
                ca_pem,
            })
        })
        .collect()
}

/// A target's bearer token from `bearer_token_env` (looked up in `env`) or `bearer_token_file`.
fn target_secret(
    t: &TargetConfig,
    env: &std::collections::HashMap<String, String>,
) -> Result<Option<Secret>, SecretError> {
    let target = || t.name.value.clone();
    match (&t.bearer_token_env, &t.bearer_token_file) {
        (Some(var), _) => match env.get(var) {
            Some(v) => Ok(Some(Secret(v.clone()))),
            None => Err(SecretError::MissingEnv {
                target: target(),
                var: var.clone(),
            }),
        },
        (None, Some(path)) => read_secret_file(path)
            .map(|s| Some(Secret(s)))
            .map_err(|source| SecretError::File {
                target: target(),
                source,
            }),
        (None, None) => Ok(None),
    }
}

/// serde-saphyr's message without its own location suffix and snippet (we print `file:line:col` first).
pub(crate) fn parse_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let first = full.lines().next().unwrap_or("").trim();
    let first = match first.find(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    // `error: line 2 column 3: unknown field …`: the caller prints the location itself
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let first = match first.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((at, rest)) if at.contains(" column ") => rest,
        _ => first,
    };
    let mut msg = first.trim_end_matches('.').to_string();
    if let Some(c) = msg.get(..1) {
        let lower = c.to_lowercase();
        msg.replace_range(..1, &lower);
    }
    // a misspelt field or value: the nearest name serde expected
    crate::error::suggest_expected(&msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(yaml, Path::new("t.yml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.scrape.interval.value.to_string(), "15s");
        assert_eq!(c.storage.retention.value.to_string(), "2w1d");
        assert_eq!(c.server.listen.value, DEFAULT_LISTEN);
        assert!(c.targets.is_empty());
    }

    #[test]
    fn design_example_parses() {
        let c = parse(include_str!("../../fixtures/config/design-example.yml")).unwrap();
        assert_eq!(c.targets.len(), 1);
        let t = &c.build_targets(&Default::default()).unwrap()[0];
        assert_eq!(t.name, "scaidns");
        assert_eq!(t.startup_grace.to_string(), "1m");
        assert_eq!(t.interval.to_string(), "15s");
        assert!(c.notify_plan().is_some());
    }

    #[test]
    fn default_timeout_is_capped_at_a_short_interval() {
        let c = parse("scrape: { interval: 5s }\ntargets:\n  - name: a\n    metrics: http://127.0.0.1:1/metrics\n  - name: b\n    metrics: http://127.0.0.1:2/metrics\n    interval: 30s\n").unwrap();
        let t = c.build_targets(&Default::default()).unwrap();
        assert_eq!(t[0].timeout.to_string(), "5s");
        assert_eq!(t[1].timeout.to_string(), "10s");
        assert!(parse("scrape: { interval: 5s, timeout: 6s }\n").is_err());
    }

    #[test]
    fn notification_errors_point_at_the_field_line() {
        let yaml = "targets: []\nroute:\n  receiver: ops\n  routes:\n    - matchers: ['a=\"b\"']\n      routes:\n        - receiver: nobody\n      receiver: ops\n    - receiver: pager\nreceivers:\n  - name: ops\n    webhook: { url: \"http://127.0.0.1:1/\" }\n";
        let ConfigError::Invalid(errors) = parse(yaml).unwrap_err() else {
            panic!("expected field errors")
        };
        let lines: Vec<(u64, u64, &str)> = errors
            .iter()
            .map(|e| (e.line, e.col, e.field.as_str()))
            .collect();
        assert!(
            lines.contains(&(9, 17, "route.routes[1].receiver")),
            "{lines:?}"
        );
        assert!(
            lines.contains(&(7, 21, "route.routes[0].routes[0].receiver")),
            "{lines:?}"
        );
        assert_eq!(
            errors[0].to_string(),
            "t.yml:7:21: route.routes[0].routes[0].receiver: undefined receiver \"nobody\" used in route"
        );
    }

    #[test]
    fn notification_errors_in_flow_style_carry_the_fields_line_and_column() {
        // (yaml, the first error as `tocsin check` prints it); flow style puts several fields
        // on one line, so only the column tells them apart
        let cases: &[(&str, &str)] = &[
            // an undefined receiver on the root route, written inline
            (
                "route: { receiver: nobody }\nreceivers: [ { name: a, webhook: { url: \"http://x/\" } } ]\n",
                "t.yml:1:20: route.receiver: undefined receiver \"nobody\" used in route",
            ),
            // a receiver's bad url inside a flow list
            (
                "route: { receiver: a }\nreceivers: [ { name: a, webhook: { url: \"x\" } } ]\n",
                "t.yml:2:41: receivers[0] (\"a\").webhook.url: not a valid url: \"x\"",
            ),
            // the second child route's receiver, both children on one line
            (
                "route: { receiver: a, routes: [ { receiver: a }, { receiver: pager } ] }\nreceivers: [ { name: a, webhook: { url: \"http://x/\" } } ]\n",
                "t.yml:1:62: route.routes[1].receiver: undefined receiver \"pager\" used in route",
            ),
            // a bad matcher in a flow list on the line after its key
            (
                "targets: []\nroute:\n  receiver: a\n  routes: [ { receiver: a,\n             matchers: ['x=~\"(\"'] } ]\nreceivers: [ { name: a, webhook: { url: \"http://x/\" } } ]\n",
                "t.yml:5:25: route.routes[0].matchers[0]: invalid matcher",
            ),
            // inhibition and time intervals, inline
            (
                "route: { receiver: a }\nreceivers: [ { name: a, webhook: { url: \"http://x/\" } } ]\ninhibit_rules: [ { source_matchers: ['a=\"1\"'], equal: [ok, \"not ok\"] } ]\n",
                "t.yml:3:60: inhibit_rules[0].equal[1]: invalid label name \"not ok\"",
            ),
            (
                "route: { receiver: a }\nreceivers: [ { name: a, webhook: { url: \"http://x/\" } } ]\ntime_intervals: [ { name: n, time_intervals: [ { location: Mars/Olympus } ] } ]\n",
                "t.yml:3:60: time_intervals[0].time_intervals[0].location: unknown time zone \"Mars/Olympus\"",
            ),
        ];
        for (yaml, want) in cases {
            let ConfigError::Invalid(errors) = parse(yaml).unwrap_err() else {
                panic!("expected field errors for {yaml:?}")
            };
            let got = errors[0].to_string();
            assert!(got.starts_with(want), "{yaml:?}\ngot  {got}\nwant {want}");
        }
    }

    #[test]
    fn empty_notification_sections_are_empty_lists() {
        let c = parse("route: { receiver: a }\nreceivers:\n  - { name: a, webhook: { url: \"http://x/\" } }\ninhibit_rules:\ntime_intervals: ~\n").unwrap();
        assert!(c.inhibit_rules.is_empty() && c.time_intervals.is_empty());
        assert!(
            parse("receivers:\nroute:\n")
                .unwrap()
                .notify_plan()
                .is_none()
        );
    }

    #[test]
    fn config_and_notification_errors_are_reported_together() {
        let yaml = "targets:\n  - name: a\nroute: { receiver: nobody }\n";
        let ConfigError::Invalid(errors) = parse(yaml).unwrap_err() else {
            panic!("expected field errors")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["targets[0]", "route.receiver"]);
    }

    #[test]
    fn unknown_field_is_an_error_with_location() {
        let err = parse("scrape:\n  intervall: 15s\n").unwrap_err();
        let s = err.to_string();
        assert!(s.starts_with("t.yml:2:"), "{s}");
        assert!(s.contains("intervall"), "{s}");
    }

    #[test]
    fn duplicate_key_is_an_error() {
        let err = parse("scrape:\n  interval: 15s\n  interval: 30s\n").unwrap_err();
        let s = err.to_string();
        assert!(s.starts_with("t.yml:3:"), "{s}");
        assert!(s.to_lowercase().contains("duplicate"), "{s}");
    }

    #[test]
    fn negative_duration_is_an_error_with_location() {
        let err = parse("scrape:\n  timeout: -5s\n").unwrap_err();
        let s = err.to_string();
        assert!(s.starts_with("t.yml:2:"), "{s}");
        assert!(s.contains("negative"), "{s}");
    }

    #[test]
    fn intervals_under_their_minimum_and_durations_over_the_maximum_are_errors() {
        let e = parse("evaluation: { interval: 1ms }\nscrape: { interval: 10ms }\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("evaluation.interval: 1ms is shorter than the minimum of 1s"),
            "{e}"
        );
        assert!(
            e.contains("scrape.interval: 10ms is shorter than the minimum of 100ms"),
            "{e}"
        );
        let e = parse("targets:\n  - name: a\n    metrics: http://x/m\n    interval: 1ms\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.yml:4:15: targets[0].interval: 1ms is shorter"),
            "{e}"
        );
        let e = parse("storage: { retention: 11y }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("longer than the maximum of 10y"), "{e}");
        assert!(parse("scrape: { interval: 100ms, timeout: 100ms }\n").is_ok());
    }

    #[test]
    fn validation_collects_every_error_with_field_and_line() {
        let yaml = "\
targets:
  - name: a
    metrics: ftp://x/metrics
    timeout: 30s
  - name: a
    health: http://x/health
    labels: { job: x }
  - name: b
";
        let ConfigError::Invalid(errors) = parse(yaml).unwrap_err() else {
            panic!("expected validation errors")
        };
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let expect = [
            "t.yml:3:14: targets[0].metrics: unsupported scheme \"ftp\"",
            "t.yml:4:14: targets[0].timeout: 30s is longer than the interval 15s",
            "t.yml:5:11: targets[1].name: duplicate target name \"a\" (first at line 2)",
            "t.yml:5:11: targets[1].labels: label \"job\" is set by tocsin",
            "t.yml:8:11: targets[2]: target \"b\" has neither metrics nor health nor probes",
        ];
        assert_eq!(errors.len(), expect.len(), "{text:#?}");
        for (got, want) in text.iter().zip(expect) {
            assert!(got.starts_with(want), "got {got:?}, want prefix {want:?}");
        }
    }

    #[test]
    fn env_overrides_top_level_settings() {
        let mut c = parse("").unwrap();
        c.apply_env([
            ("TOCSIN_LISTEN".to_string(), "127.0.0.1:1234".to_string()),
            ("TOCSIN_DATA_DIR".to_string(), "/var/lib/tocsin".to_string()),
            ("TOCSIN_LOG_FORMAT".to_string(), "json".to_string()),
            ("TOCSIN_LOG_LEVEL".to_string(), "debug".to_string()),
            ("TOCSIN_RETENTION".to_string(), "2d".to_string()),
            ("OTHER".to_string(), "x".to_string()),
        ])
        .unwrap();
        assert_eq!(c.server.listen.value, "127.0.0.1:1234");
        assert_eq!(c.storage.path, PathBuf::from("/var/lib/tocsin/tocsin.db"));
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.log.level, "debug");
        assert_eq!(c.storage.retention.value.to_string(), "2d");
        let bad = c.apply_env([("TOCSIN_LOG_FORMAT".to_string(), "xml".to_string())]);
        assert!(bad.unwrap_err().contains("TOCSIN_LOG_FORMAT"));
    }

    #[test]
    fn default_self_target_follows_listen_address() {
        let mut c = Config::builtin_default();
        c.apply_env([("TOCSIN_LISTEN".to_string(), "127.0.0.1:1234".to_string())])
            .unwrap();
        c.add_self_target_if_empty();
        let t = &c.build_targets(&Default::default()).unwrap()[0];
        // its metrics are stored in-process, not scraped over HTTP
        assert!(t.metrics.is_none());
        assert!(c.scrape.self_metrics);
        assert_eq!(c.rule_file_patterns(), vec!["tocsin:self".to_string()]);
        assert_eq!(
            t.health.as_ref().unwrap().as_str(),
            "http://127.0.0.1:1234/health/ready"
        );
    }

    #[test]
    fn secrets_come_from_env_or_file_and_are_not_printed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let yaml = format!(
            "targets:\n  - name: a\n    metrics: http://x/m\n    bearer_token_file: {}\n",
            file.display()
        );
        let t = &parse(&yaml)
            .unwrap()
            .build_targets(&Default::default())
            .unwrap()[0];
        assert_eq!(t.bearer_token, Some(Secret("s3cret".into())));
        assert!(!format!("{t:?}").contains("s3cret"));
        let yaml = "targets:\n  - name: a\n    metrics: http://x/m\n    bearer_token_env: TOCSIN_TEST_SURELY_UNSET\n";
        let err = parse(yaml)
            .unwrap()
            .build_targets(&Default::default())
            .unwrap_err();
        assert!(err.to_string().contains("TOCSIN_TEST_SURELY_UNSET"));
        // the variables come from the map given, not the process environment
        let env = std::collections::HashMap::from([(
            "TOCSIN_TEST_SURELY_UNSET".to_string(),
            "t0ken".to_string(),
        )]);
        let t = &parse(yaml).unwrap().build_targets(&env).unwrap()[0];
        assert_eq!(t.bearer_token, Some(Secret("t0ken".into())));
    }

    #[test]
    fn byte_sizes_parse_with_units() {
        assert_eq!(ByteSize::parse("32MiB").unwrap().0, 32 << 20);
        assert_eq!(ByteSize::parse("10MB").unwrap().0, 10_000_000);
        assert_eq!(ByteSize::parse("512").unwrap().0, 512);
        assert!(ByteSize::parse("5 parsecs").is_err());
        let c = parse("scrape:\n  body_size_limit: 1KiB\n").unwrap();
        assert_eq!(c.scrape.body_size_limit.0, 1024);
    }

    #[test]
    fn probes_are_validated_per_kind_and_built_with_defaults() {
        let bad = "targets:
  - name: a
    probes:
      - { kind: dns, servers: [\"ns1:53\"] }
      - { kind: tls }
      - { kind: tcp, address: \"x:25\", query_type: SOA, expect: \"(\" }
      - { kind: dns, name: tcp, servers: [\"a b\"], query_name: x., query_type: NOPE }
      - { kind: smtp, address: \"mx:25\", interval: 1s, timeout: 2s, labels: { probe: x } }
";
        let Err(ConfigError::Invalid(errors)) = Config::from_yaml(bad, Path::new("t.yml")) else {
            panic!("invalid probes accepted");
        };
        let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let want = [
            "targets[0].probes[0]: a dns probe needs query_name",
            "targets[0].probes[1]: a tls probe needs an address (host:port)",
            "targets[0].probes[2]: query_type does not apply to a tcp probe",
            "targets[0].probes[2]: expect: regex parse error",
            "targets[0].probes[3]: unknown query_type \"NOPE\"",
            "targets[0].probes[3]: invalid server \"a b\" (host:port)",
            "targets[0].probes[3].name: duplicate probe name \"tcp\"",
            "targets[0].probes[4].timeout: 2s must be positive and at most the interval 1s",
            "targets[0].probes[4].labels: invalid or reserved label name \"probe\"",
        ];
        for w in want {
            assert!(
                messages.iter().any(|m| m.contains(w)),
                "missing {w:?} in {messages:#?}"
            );
        }
        let ok = "scrape: { interval: 30s }
targets:
  - name: a
    timeout: 5s
    probes:
      - { kind: tls, address: \"192.0.2.7:443\", server_name: shop.example.org }
      - { kind: dns, name: soa, servers: [ns1.example.org], query_name: example.org., interval: 1m, timeout: 10s }
";
        let targets = Config::from_yaml(ok, Path::new("t.yml"))
            .unwrap()
            .build_targets(&Default::default())
            .unwrap();
        let p = &targets[0].probes;
        assert_eq!(
            (p[0].name.as_str(), p[0].interval, p[0].timeout),
            (
                "tls",
                PromDuration::from_secs(30),
                PromDuration::from_secs(5)
            )
        );
        assert_eq!(
            (p[1].name.as_str(), p[1].interval, p[1].timeout),
            (
                "soa",
                PromDuration::from_secs(60),
                PromDuration::from_secs(10)
            )
        );
        assert_eq!(p[1].size_limit, DEFAULT_PROBE_SIZE_LIMIT);
    }

    #[test]
    fn heartbeats_push_limits_and_json_paths_are_validated_at_their_line() {
        let bad = "server: { push_body_size_limit: 65MiB }
targets:
  - name: cron
    heartbeat: { expected_interval: 10ms }
  - name: api
    health: http://x/health
    health_json:
      - { field: 'checks[name=db.ok' }
      - { field: status, states: [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q] }
";
        let Err(ConfigError::Invalid(errors)) = Config::from_yaml(bad, Path::new("t.yml")) else {
            panic!("invalid settings accepted");
        };
        let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let want = [
            "t.yml:1:33: server.push_body_size_limit: 68157440 bytes: must be positive and at most 67108864 (64MiB)",
            "t.yml:4:37: targets[0].heartbeat.expected_interval: 10ms is shorter than the minimum of 100ms",
            "t.yml:8:18: targets[1].health_json[0].field: invalid path \"checks[name=db.ok\": unclosed '[' in \"checks[name=db.ok\"",
            "t.yml:9:18: targets[1].health_json[1].states: 17 states, more than the limit of 16",
        ];
        assert_eq!(messages, want);
        let ok = "targets:
  - name: cron
    heartbeat: { expected_interval: 1h, grace: 5m }
";
        let t = &Config::from_yaml(ok, Path::new("t.yml"))
            .unwrap()
            .build_targets(&Default::default())
            .unwrap()[0];
        assert_eq!(
            t.heartbeat,
            Some(Heartbeat {
                expected_interval: PromDuration::from_secs(3600),
                grace: PromDuration::from_secs(300),
            })
        );
        let metric = |field: &str| {
            JsonGauge {
                field: unlocated(field.to_string()),
                metric: None,
                states: vec![],
            }
            .metric_name()
        };
        assert_eq!(metric("checks[0].ok"), "health_json_checks_0_ok");
        assert_eq!(
            metric("checks[name=db].ok"),
            "health_json_checks_name_db_ok"
        );
        assert_eq!(metric("stats.queue-depth"), "health_json_stats_queue_depth");
    }
}
