//! Service discovery: the target set the scheduler runs, from the static targets of
//! `tocsin.yml` and the targets `file_sd`, `http_sd` and `dns_sd` discover, relabelled.
//!
//! [`Discovery::run`] is one loop that owns the wanted target set: it receives the configured
//! sources ([`TargetSources`], at start and at each reload of `tocsin.yml`), runs one discoverer
//! task per discovery source (restarting only those whose configuration changed), keeps each
//! source's last good list of [`Group`]s, and after every change sends the whole target set to
//! the scheduler ([`crate::ingest::scheduler::Scheduler::spawn_updatable`]), which starts,
//! stops and restarts only what differs.
//!
//! Invariants:
//! - a failed refresh (a broken file, an unreachable endpoint, a failed lookup) keeps the
//!   source's last good list; it is logged, counted (`tocsin_sd_refresh_failures_total
//!   {mechanism}`) and shown by `/api/v1/status`;
//! - every list is bounded: [`MAX_SD_BYTES`] per file or answer, [`MAX_SD_TARGETS`] targets per
//!   source and [`MAX_SD_TOTAL_TARGETS`] over all, [`MAX_GROUP_LABELS`] labels per group, label
//!   names checked;
//! - building targets from groups ([`targets_of`]) and relabelling ([`relabel`]) are pure;
//!   only the discoverers do I/O, and only they (once per refresh) read the clock.
//!
//! Target names: a discovered target is `<template name>/<instance>`; two discovered targets
//! with one name and different labels get `#<hash>` appended, so each keeps its own tasks.
//!
//! File changes settle: a `file_sd` source re-read after a change is read again [`file::SETTLE`]
//! later, until two reads agree (at most [`file::SETTLE_READS`] reads), so a file written in
//! parts is not taken while cut at a group boundary (valid and shorter). All sources together
//! give at most [`MAX_SD_TOTAL_TARGETS`] addresses: a refresh that would pass it fails and its
//! source keeps its last good list.

pub mod dns;
pub mod file;
pub mod http;
pub mod relabel;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::clock::Clock;
use crate::config::sd::DnsSdType;
use crate::config::{Config, Secret, SecretError, Target, TargetConfig};
use crate::selfmetrics::{MechanismLabels, SelfMetrics};
use relabel::{LabelMap, Relabel};

/// The largest SD file or HTTP SD answer read (a larger one fails the refresh).
pub const MAX_SD_BYTES: u64 = 4 << 20;
/// The most targets one discovery source may give (more fails the refresh).
pub const MAX_SD_TARGETS: usize = 10_000;
/// The most addresses all discovery sources together may give: a refresh that would make more
/// fails (its source keeps its last good list).
pub const MAX_SD_TOTAL_TARGETS: usize = 50_000;
/// The most labels one target group may carry.
pub const MAX_GROUP_LABELS: usize = 64;
/// The longest target address accepted.
pub const MAX_ADDRESS_BYTES: usize = 1024;

/// One target group, as Prometheus's SD formats give it: addresses sharing labels (the
/// discovery's `__meta_*` labels included).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// `host:port` addresses
    pub targets: Vec<String>,
    /// labels of every target of the group
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Why a refresh failed; the source's last good list stays.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SdError {
    /// The file or answer is not a list of `{targets, labels}` groups.
    #[error("{at}: {message}")]
    Format { at: String, message: String },
    /// More than [`MAX_SD_BYTES`] or [`MAX_SD_TARGETS`].
    #[error("{at}: {message}")]
    Limit { at: String, message: String },
    /// The file, endpoint or DNS server could not be read.
    #[error("{at}: {message}")]
    Io { at: String, message: String },
}

/// Parses groups in Prometheus's SD format (JSON when `json`, else YAML) and checks them;
/// `source` names the file or URL in errors.
pub fn parse_groups(bytes: &[u8], json: bool, source: &str) -> Result<Vec<Group>, SdError> {
    let format = |message: String| SdError::Format {
        at: source.to_string(),
        message,
    };
    if bytes.len() as u64 > MAX_SD_BYTES {
        return Err(SdError::Limit {
            at: source.to_string(),
            message: format!("larger than the limit of {MAX_SD_BYTES} bytes"),
        });
    }
    let groups: Vec<Group> = if json {
        serde_json::from_slice(bytes)
            .map_err(|e| format(format!("line {} column {}: {e}", e.line(), e.column())))?
    } else {
        let text = std::str::from_utf8(bytes).map_err(|e| format(format!("not UTF-8: {e}")))?;
        if text.trim().is_empty() {
            Vec::new()
        } else {
            serde_saphyr::from_str(text).map_err(|e| {
                let at = e
                    .location()
                    .map(|l| format!("line {} column {}: ", l.line(), l.column()))
                    .unwrap_or_default();
                format(format!("{at}{e}"))
            })?
        }
    };
    let count: usize = groups.iter().map(|g| g.targets.len()).sum();
    if count > MAX_SD_TARGETS {
        return Err(SdError::Limit {
            at: source.to_string(),
            message: format!("{count} targets, more than the limit of {MAX_SD_TARGETS}"),
        });
    }
    for (i, g) in groups.iter().enumerate() {
        if g.labels.len() > MAX_GROUP_LABELS {
            return Err(format(format!(
                "group {i}: {} labels, more than the limit of {MAX_GROUP_LABELS}",
                g.labels.len()
            )));
        }
        if let Some(bad) = g
            .labels
            .keys()
            .find(|k| !crate::labels::valid_label_name(k))
        {
            return Err(format(format!("group {i}: invalid label name {bad:?}")));
        }
        if let Some(bad) = g
            .targets
            .iter()
            .find(|t| t.is_empty() || t.len() > MAX_ADDRESS_BYTES || t.contains(['/', ' ']))
        {
            return Err(format(format!(
                "group {i}: invalid target {bad:?} (host:port expected)"
            )));
        }
    }
    Ok(groups)
}

/// A target with discovery, built: the template every discovered target copies, and its
/// sources.
#[derive(Debug, Clone)]
pub struct SdJob {
    /// the target's settings (no url): name, job, labels, interval, timeout, limits, token
    pub template: Target,
    pub scheme: String,
    pub metrics_path: String,
    pub relabel: Relabel,
    /// (key, source): the key changes whenever the source's configuration does
    pub sources: Vec<(String, Arc<SdSource>)>,
}

/// One discovery source, built.
#[derive(Debug, Clone)]
pub enum SdSource {
    /// absolute paths or patterns (wildcards in the file name)
    File {
        patterns: Vec<PathBuf>,
        refresh: Duration,
    },
    Http {
        url: url::Url,
        refresh: Duration,
        timeout: Duration,
        bearer_token: Option<Secret>,
        basic_auth: Option<(String, Secret)>,
    },
    Dns {
        names: Vec<String>,
        kind: DnsSdType,
        port: u16,
        refresh: Duration,
        nameserver: Option<String>,
    },
}

impl SdSource {
    /// `file`, `http` or `dns`: the metric label.
    pub fn mechanism(&self) -> &'static str {
        match self {
            SdSource::File { .. } => "file",
            SdSource::Http { .. } => "http",
            SdSource::Dns { .. } => "dns",
        }
    }

    /// What the status page shows of the source (a URL through `redact_url`).
    pub fn describe(&self) -> String {
        match self {
            SdSource::File { patterns, .. } => patterns
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            SdSource::Http { url, .. } => crate::notify::webhook::redact_url(url.as_str()),
            SdSource::Dns { names, .. } => names.join(", "),
        }
    }

    fn refresh(&self) -> Duration {
        match self {
            SdSource::File { refresh, .. }
            | SdSource::Http { refresh, .. }
            | SdSource::Dns { refresh, .. } => *refresh,
        }
    }
}

/// Everything the scheduler's target set is made of: what a reload of `tocsin.yml` hands over.
#[derive(Debug, Clone, Default)]
pub struct TargetSources {
    pub statics: Vec<Target>,
    pub jobs: Vec<SdJob>,
}

impl Config {
    /// The targets with discovery, built (secrets read: the I/O); relative file patterns are
    /// taken relative to `base` (the configuration file's directory).
    pub fn build_sd_jobs(
        &self,
        env: &HashMap<String, String>,
        base: &Path,
    ) -> Result<Vec<SdJob>, SecretError> {
        self.targets
            .iter()
            .filter(|t| t.discovers())
            .map(|t| self.build_sd_job(t, env, base))
            .collect()
    }

    /// The static targets and the targets with discovery, built.
    pub fn build_target_sources(
        &self,
        env: &HashMap<String, String>,
        base: &Path,
    ) -> Result<TargetSources, SecretError> {
        Ok(TargetSources {
            statics: self.build_targets(env)?,
            jobs: self.build_sd_jobs(env, base)?,
        })
    }

    fn build_sd_job(
        &self,
        t: &TargetConfig,
        env: &HashMap<String, String>,
        base: &Path,
    ) -> Result<SdJob, SecretError> {
        let template = self.build_target(t, env)?;
        let name = template.name.clone();
        let secs = |d: &Option<serde_saphyr::Spanned<crate::duration::PromDuration>>, def: u64| {
            d.as_ref().map_or(Duration::from_secs(def), |d| d.value.0)
        };
        let mut sources = Vec::new();
        for (i, f) in t.file_sd.iter().enumerate() {
            let source = SdSource::File {
                patterns: f.files.value.iter().map(|p| base.join(p)).collect(),
                refresh: secs(
                    &f.refresh_interval,
                    crate::config::sd::DEFAULT_FILE_SD_REFRESH_S,
                ),
            };
            let key = format!("{name}\u{0}file\u{0}{i}\u{0}{}", json(f));
            sources.push((key, Arc::new(source)));
        }
        for (i, h) in t.http_sd.iter().enumerate() {
            let secret = |what: &str, env_var: &Option<String>, file: &Option<PathBuf>| {
                sd_secret(&name, what, env_var, file, env)
            };
            let bearer_token = secret("bearer_token", &h.bearer_token_env, &h.bearer_token_file)?;
            let basic_auth = match &h.basic_auth {
                Some(b) => secret("basic_auth.password", &b.password_env, &b.password_file)?
                    .map(|p| (b.username.clone(), p)),
                None => None,
            };
            // a changed secret restarts the source: its hash is part of the key
            let secrets = xxhash_rust::xxh3::xxh3_64(
                format!(
                    "{}\u{0}{}",
                    bearer_token.as_ref().map_or("", |s| s.0.as_str()),
                    basic_auth.as_ref().map_or("", |b| b.1.0.as_str())
                )
                .as_bytes(),
            );
            let source = SdSource::Http {
                url: url::Url::parse(&h.url.value).expect("validated url"),
                refresh: secs(
                    &h.refresh_interval,
                    crate::config::sd::DEFAULT_HTTP_SD_REFRESH_S,
                ),
                timeout: h.timeout.map_or(Duration::from_secs(10), |t| t.0),
                bearer_token,
                basic_auth,
            };
            let key = format!("{name}\u{0}http\u{0}{i}\u{0}{}\u{0}{secrets:x}", json(h));
            sources.push((key, Arc::new(source)));
        }
        for (i, d) in t.dns_sd.iter().enumerate() {
            let source = SdSource::Dns {
                names: d.names.value.clone(),
                kind: d.kind.unwrap_or_default(),
                port: d.port.unwrap_or(0),
                refresh: secs(
                    &d.refresh_interval,
                    crate::config::sd::DEFAULT_DNS_SD_REFRESH_S,
                ),
                nameserver: d.nameserver.clone(),
            };
            let key = format!("{name}\u{0}dns\u{0}{i}\u{0}{}", json(d));
            sources.push((key, Arc::new(source)));
        }
        Ok(SdJob {
            template,
            scheme: t.scheme.clone().unwrap_or_else(|| "http".into()),
            metrics_path: t.metrics_path.clone().unwrap_or_else(|| "/metrics".into()),
            relabel: Relabel::compile(&t.relabel_configs).expect("validated relabel_configs"),
            sources,
        })
    }
}

/// Every `http_sd` secret of `t` that cannot be read (`tocsin check` and the daemon's start
/// refuse these, through [`Config::preflight`]).
pub fn sd_secret_errors(t: &TargetConfig, env: &HashMap<String, String>) -> Vec<SecretError> {
    let name = &t.name.value;
    let mut out = Vec::new();
    for h in &t.http_sd {
        if let Err(e) = sd_secret(
            name,
            "bearer_token",
            &h.bearer_token_env,
            &h.bearer_token_file,
            env,
        ) {
            out.push(e);
        }
        if let Some(b) = &h.basic_auth
            && let Err(e) = sd_secret(
                name,
                "basic_auth.password",
                &b.password_env,
                &b.password_file,
                env,
            )
        {
            out.push(e);
        }
    }
    out
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A discovery secret from `*_env` (in `env`) or `*_file`.
fn sd_secret(
    target: &str,
    what: &str,
    env_var: &Option<String>,
    file: &Option<PathBuf>,
    env: &HashMap<String, String>,
) -> Result<Option<Secret>, SecretError> {
    if let Some(var) = env_var {
        return match env.get(var) {
            Some(v) => Ok(Some(Secret(v.clone()))),
            None => Err(SecretError::MissingEnv {
                target: format!("{target} (http_sd {what})"),
                var: var.clone(),
            }),
        };
    }
    match file {
        Some(path) => crate::config::read_secret_file(path)
            .map(|s| Some(Secret(s.trim_end_matches(['\r', '\n']).to_string())))
            .map_err(|source| SecretError::File {
                target: format!("{target} (http_sd {what})"),
                source,
            }),
        None => Ok(None),
    }
}

/// The labels a target starts relabelling with: the template's labels, the group's (which win),
/// `__address__`, `__scheme__`, `__metrics_path__` and `job`.
fn initial_labels(
    template: &Target,
    scheme: &str,
    path: &str,
    address: &str,
    group: &BTreeMap<String, String>,
) -> LabelMap {
    let mut l: LabelMap = template.labels.clone();
    l.extend(group.iter().map(|(k, v)| (k.clone(), v.clone())));
    l.insert("job".into(), template.job.clone());
    l.insert("__address__".into(), address.to_string());
    l.insert("__scheme__".into(), scheme.to_string());
    l.insert("__metrics_path__".into(), path.to_string());
    l
}

/// A target from relabelled labels (pure): `None` when the address is empty or the URL
/// `__scheme__://__address____metrics_path__?__param_*` does not parse. `instance` defaults to
/// the address; labels starting with `__` and empty ones are removed.
fn finish(template: &Target, name_prefix: &str, labels: LabelMap) -> Option<Target> {
    let address = labels.get("__address__").filter(|a| !a.is_empty())?.clone();
    let scheme = labels.get("__scheme__").map_or("http", String::as_str);
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let path = labels
        .get("__metrics_path__")
        .map_or("/metrics", String::as_str);
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let mut url = url::Url::parse(&format!("{scheme}://{address}{path}")).ok()?;
    if url.host_str().is_none_or(str::is_empty) {
        return None;
    }
    let params: Vec<(&str, &str)> = labels
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("__param_")?, v.as_str())))
        .collect();
    if !params.is_empty() {
        url.query_pairs_mut().extend_pairs(params);
    }
    let instance = labels
        .get("instance")
        .filter(|i| !i.is_empty())
        .cloned()
        .unwrap_or_else(|| address.clone());
    let job = labels
        .get("job")
        .filter(|j| !j.is_empty())
        .cloned()
        .unwrap_or_else(|| template.job.clone());
    let kept: BTreeMap<String, String> = labels
        .into_iter()
        .filter(|(k, v)| !k.starts_with("__") && k != "job" && k != "instance" && !v.is_empty())
        .collect();
    let mut t = template.clone();
    t.name = format!("{name_prefix}{instance}");
    t.job = job;
    t.instance = Some(instance);
    t.labels = kept;
    t.metrics = Some(url);
    t.health = None;
    Some(t)
}

/// Relabels a static target (pure): `None` when a `keep` or `drop` removed it. The address,
/// scheme and path come from its `metrics` url (or `health`), and a rewritten one changes the
/// `metrics` url; `job`, `instance` and the labels take what relabelling left.
pub fn relabel_static(target: Target, relabel: &Relabel) -> Option<Target> {
    if relabel.is_empty() {
        return Some(target);
    }
    let url = target.metrics.as_ref().or(target.health.as_ref())?.clone();
    let address = super::instance_of(&url);
    let mut labels = initial_labels(
        &target,
        url.scheme(),
        url.path(),
        &address,
        &BTreeMap::new(),
    );
    labels.insert("instance".into(), address.clone());
    let labels = relabel.apply(labels)?;
    let moved = labels.get("__address__") != Some(&address)
        || labels.get("__scheme__").map(String::as_str) != Some(url.scheme())
        || labels.get("__metrics_path__").map(String::as_str) != Some(url.path());
    let name = target.name.clone();
    let mut out = finish(&target, "", labels)?;
    out.name = name;
    out.health = target.health.clone();
    out.metrics = match (&target.metrics, moved) {
        (Some(m), false) => Some(m.clone()),
        (Some(_), true) => out.metrics,
        (None, _) => None,
    };
    if target.metrics.is_none() || !moved {
        // an instance equal to the url's is the default: leave it implicit
        if out.instance.as_deref() == Some(address.as_str()) {
            out.instance = None;
        }
    }
    Some(out)
}

/// The targets a job's discovered groups give (pure), relabelled, in a stable order, with
/// unique names.
pub fn targets_of<'a>(job: &SdJob, groups: impl IntoIterator<Item = &'a Group>) -> Vec<Target> {
    targets_and_dropped(job, groups, 0).0
}

/// [`targets_of`], and the discovered labels (before relabelling) of at most `keep_dropped` of
/// the addresses relabelling dropped (a `keep`/`drop`, an empty `__address__`, a URL that does
/// not parse), with how many it dropped in all: what `/api/v1/targets` lists as dropped.
pub fn targets_and_dropped<'a>(
    job: &SdJob,
    groups: impl IntoIterator<Item = &'a Group>,
    keep_dropped: usize,
) -> (Vec<Target>, Vec<LabelMap>, usize) {
    let prefix = format!("{}/", job.template.name);
    let mut out: Vec<Target> = Vec::new();
    let mut dropped = Vec::new();
    let mut dropped_count = 0usize;
    for g in groups {
        for address in &g.targets {
            let labels = initial_labels(
                &job.template,
                &job.scheme,
                &job.metrics_path,
                address,
                &g.labels,
            );
            match job
                .relabel
                .apply(labels)
                .and_then(|l| finish(&job.template, &prefix, l))
            {
                Some(t) => out.push(t),
                None => {
                    dropped_count += 1;
                    if dropped.len() < keep_dropped {
                        // built again (pure) for the few dropped, not copied for every address
                        dropped.push(initial_labels(
                            &job.template,
                            &job.scheme,
                            &job.metrics_path,
                            address,
                            &g.labels,
                        ));
                    }
                }
            }
        }
    }
    (unique_names(out), dropped, dropped_count)
}

/// A discovered address relabelling dropped, as `/api/v1/targets?state=dropped` lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DroppedTarget {
    /// the target (job template) whose discovery found it
    pub target: String,
    /// its labels before relabelling (`__address__`, `__meta_*`, `job`, …)
    pub discovered_labels: LabelMap,
}

/// How many dropped targets the status keeps for the API, over all sources (Prometheus's
/// `keep_dropped_targets`, bounded here so a discovery that drops 100,000 addresses costs
/// little memory); the count per target is always whole.
pub const KEEP_DROPPED_TARGETS: usize = 1_000;

/// Drops exact duplicates and gives targets that share a name and differ a `#<hash>` suffix.
fn unique_names(mut targets: Vec<Target>) -> Vec<Target> {
    targets.sort_by(|a, b| {
        (&a.name, a.metrics.as_ref().map(url::Url::as_str), &a.labels).cmp(&(
            &b.name,
            b.metrics.as_ref().map(url::Url::as_str),
            &b.labels,
        ))
    });
    targets.dedup();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in &targets {
        *seen.entry(t.name.clone()).or_default() += 1;
    }
    for t in &mut targets {
        if seen[&t.name] > 1 {
            let h = xxhash_rust::xxh3::xxh3_64(
                format!(
                    "{:?}{:?}",
                    t.metrics.as_ref().map(url::Url::as_str),
                    t.labels
                )
                .as_bytes(),
            );
            t.name = format!("{}#{:08x}", t.name, h as u32);
        }
    }
    targets
}

/// What `/api/v1/status` shows of one discovery source.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SdSourceStatus {
    /// the target (job template) the source belongs to
    pub target: String,
    /// `file`, `http` or `dns`
    pub mechanism: &'static str,
    /// the files, the URL (redacted) or the names
    pub source: String,
    /// ms since the epoch of the last refresh, good or not
    pub last_refresh_ms: Option<i64>,
    /// why the last refresh failed (the previous targets stay); None after a good one
    pub last_error: Option<String>,
    /// addresses of the last good refresh, before relabelling
    pub targets: usize,
}

/// One refresh's outcome, sent by a discoverer to the loop.
struct Refreshed {
    key: String,
    at_ms: i64,
    result: Result<Vec<Group>, SdError>,
}

/// The discovery loop; see the module documentation.
pub struct Discovery {
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<SelfMetrics>,
    pub status: Arc<crate::ingest::scheduler::StatusBoard>,
    pub client: reqwest::Client,
}

struct RunningSource {
    source: Arc<SdSource>,
    target: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Discovery {
    /// Runs until `shutdown`: follows `sources`, runs the discoverers, and sends the whole target
    /// set to `targets` after every change.
    pub async fn run(
        self,
        mut sources: watch::Receiver<Arc<TargetSources>>,
        targets: watch::Sender<Arc<Vec<Target>>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let (tx, mut rx) = mpsc::channel::<Refreshed>(64);
        let mut running: BTreeMap<String, RunningSource> = BTreeMap::new();
        let mut groups: HashMap<String, Vec<Group>> = HashMap::new();
        let mut current = sources.borrow_and_update().clone();
        self.reconcile(&current, &mut running, &mut groups, &tx);
        let mut sources_open = true;
        loop {
            self.publish(&current, &groups, &targets);
            tokio::select! {
                r = sources.changed(), if sources_open => {
                    if r.is_err() {
                        sources_open = false;
                        continue;
                    }
                    current = sources.borrow_and_update().clone();
                    self.reconcile(&current, &mut running, &mut groups, &tx);
                }
                Some(r) = rx.recv() => self.refreshed(r, &running, &mut groups),
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
        for (_, s) in running {
            let _ = s.stop.send(true);
            let _ = s.task.await;
        }
    }

    /// Starts the discoverers of new sources and stops those of sources no longer configured
    /// (forgetting their groups); unchanged sources keep running and keep their groups.
    fn reconcile(
        &self,
        sources: &TargetSources,
        running: &mut BTreeMap<String, RunningSource>,
        groups: &mut HashMap<String, Vec<Group>>,
        tx: &mpsc::Sender<Refreshed>,
    ) {
        let wanted: BTreeMap<&str, (&Arc<SdSource>, &str)> = sources
            .jobs
            .iter()
            .flat_map(|j| {
                j.sources
                    .iter()
                    .map(move |(k, s)| (k.as_str(), (s, j.template.name.as_str())))
            })
            .collect();
        let gone: Vec<String> = running
            .keys()
            .filter(|k| !wanted.contains_key(k.as_str()))
            .cloned()
            .collect();
        for key in gone {
            if let Some(s) = running.remove(&key) {
                let _ = s.stop.send(true);
                s.task.abort();
            }
            groups.remove(&key);
        }
        let mut board = self.status.discovery.write().expect("status lock");
        board.retain(|k, _| wanted.contains_key(k.as_str()));
        for (key, (source, target)) in wanted {
            if running.contains_key(key) {
                continue;
            }
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(discover(
                key.to_string(),
                source.clone(),
                self.clock.clone(),
                self.client.clone(),
                tx.clone(),
                stopped,
            ));
            board.insert(
                key.to_string(),
                SdSourceStatus {
                    target: target.to_string(),
                    mechanism: source.mechanism(),
                    source: source.describe(),
                    last_refresh_ms: None,
                    last_error: None,
                    targets: 0,
                },
            );
            running.insert(
                key.to_string(),
                RunningSource {
                    source: source.clone(),
                    target: target.to_string(),
                    stop,
                    task,
                },
            );
        }
    }

    /// Records a refresh: a good one replaces the source's groups, a failed one keeps them.
    fn refreshed(
        &self,
        r: Refreshed,
        running: &BTreeMap<String, RunningSource>,
        groups: &mut HashMap<String, Vec<Group>>,
    ) {
        let Some(src) = running.get(&r.key) else {
            return; // a source stopped since
        };
        let mechanism = src.source.mechanism();
        let result = r
            .result
            .and_then(|g| within_total(&r.key, g, groups, MAX_SD_TOTAL_TARGETS));
        let mut board = self.status.discovery.write().expect("status lock");
        let entry = board.get_mut(&r.key);
        match result {
            Ok(g) => {
                let count = g.iter().map(|g| g.targets.len()).sum();
                if let Some(e) = entry {
                    e.last_refresh_ms = Some(r.at_ms);
                    e.last_error = None;
                    e.targets = count;
                }
                groups.insert(r.key, g);
            }
            Err(e) => {
                tracing::warn!(target = %src.target, mechanism, error = %e, "service discovery refresh failed, keeping the last good targets");
                self.metrics
                    .sd_refresh_failures
                    .get_or_create(&MechanismLabels { mechanism })
                    .inc();
                if let Some(entry) = entry {
                    entry.last_refresh_ms = Some(r.at_ms);
                    entry.last_error = Some(e.to_string());
                }
            }
        }
        for m in ["file", "http", "dns"] {
            let n: usize = board
                .values()
                .filter(|s| s.mechanism == m)
                .map(|s| s.targets)
                .sum();
            self.metrics
                .sd_discovered_targets
                .get_or_create(&MechanismLabels { mechanism: m })
                .set(n as i64);
        }
    }

    /// Sends the whole target set when it differs from what the scheduler has.
    fn publish(
        &self,
        sources: &TargetSources,
        groups: &HashMap<String, Vec<Group>>,
        targets: &watch::Sender<Arc<Vec<Target>>>,
    ) {
        let mut all = sources.statics.clone();
        let mut dropped: Vec<DroppedTarget> = Vec::new();
        let mut dropped_counts: BTreeMap<String, usize> = BTreeMap::new();
        for job in &sources.jobs {
            let gs = job
                .sources
                .iter()
                .filter_map(|(k, _)| groups.get(k))
                .flatten();
            let (ts, gone, count) =
                targets_and_dropped(job, gs, KEEP_DROPPED_TARGETS - dropped.len());
            all.extend(ts);
            dropped.extend(gone.into_iter().map(|l| DroppedTarget {
                target: job.template.name.clone(),
                discovered_labels: l,
            }));
            if count > 0 {
                dropped_counts.insert(job.template.name.clone(), count);
            }
        }
        *self.status.dropped.write().expect("status lock") = (dropped, dropped_counts);
        targets.send_if_modified(|t| {
            if **t == all {
                false
            } else {
                *t = Arc::new(all);
                true
            }
        });
    }
}

/// `groups`, a refresh of source `key`, unless with the other sources' last good lists the
/// addresses would pass `limit`.
fn within_total(
    key: &str,
    g: Vec<Group>,
    groups: &HashMap<String, Vec<Group>>,
    limit: usize,
) -> Result<Vec<Group>, SdError> {
    let count = |gs: &[Group]| gs.iter().map(|g| g.targets.len()).sum::<usize>();
    let others: usize = groups
        .iter()
        .filter(|(k, _)| k.as_str() != key)
        .map(|(_, gs)| count(gs))
        .sum();
    let total = others + count(&g);
    if total > limit {
        return Err(SdError::Limit {
            at: "service discovery".into(),
            message: format!(
                "all sources together would give {total} targets, more than the limit of {limit}"
            ),
        });
    }
    Ok(g)
}

/// One source's discoverer: refreshes at once, then every refresh interval and (file) when a
/// file changes, until stopped.
async fn discover(
    key: String,
    source: Arc<SdSource>,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    tx: mpsc::Sender<Refreshed>,
    mut stop: watch::Receiver<bool>,
) {
    let (wake_tx, mut wake) = mpsc::channel::<()>(1);
    let _watcher = match &*source {
        SdSource::File { patterns, .. } => file::watch(patterns, wake_tx),
        _ => None,
    };
    let every = source.refresh();
    let mut file_changed = false;
    loop {
        let result = match &*source {
            SdSource::File { patterns, .. } => {
                let read = || {
                    let patterns = patterns.clone();
                    async move {
                        tokio::task::spawn_blocking(move || file::refresh(&patterns))
                            .await
                            .unwrap_or_else(|e| {
                                Err(SdError::Io {
                                    at: "file_sd".into(),
                                    message: e.to_string(),
                                })
                            })
                    }
                };
                if std::mem::take(&mut file_changed) {
                    file::settled(read, file::SETTLE, file::SETTLE_READS).await
                } else {
                    read().await
                }
            }
            SdSource::Http {
                url,
                timeout,
                bearer_token,
                basic_auth,
                ..
            } => http::refresh(&client, url, *timeout, bearer_token, basic_auth).await,
            SdSource::Dns {
                names,
                kind,
                port,
                nameserver,
                ..
            } => dns::refresh(names, *kind, *port, nameserver.as_deref()).await,
        };
        let at_ms = clock.now_ms();
        if tx
            .send(Refreshed {
                key: key.clone(),
                at_ms,
                result,
            })
            .await
            .is_err()
        {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            Some(()) = wake.recv() => {
                // a burst of file events is one refresh: let the writer finish
                tokio::time::sleep(file::SETTLE).await;
                while wake.try_recv().is_ok() {}
                file_changed = true;
            }
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(yaml: &str) -> SdJob {
        let cfg = Config::from_yaml(yaml, Path::new("t.yml")).unwrap();
        cfg.build_sd_jobs(&HashMap::new(), Path::new("/base"))
            .unwrap()
            .remove(0)
    }

    #[test]
    fn discovered_targets_get_instance_job_url_and_labels_as_prometheus_sets_them() {
        let j = job(
            "targets:\n- name: nodes\n  labels: {team: ops}\n  metrics_path: /m\n  file_sd: [{files: [a.json]}]\n  relabel_configs:\n  - {source_labels: [__meta_filepath], regex: '.*/(.*)\\.json', target_label: file}\n  - {source_labels: [env], regex: dev, action: drop}\n  - {source_labels: [__address__], regex: '(.*):.*', target_label: __param_host, replacement: '$1'}\n",
        );
        let groups = parse_groups(
            br#"[{"targets": ["h1:9100", "h2:9100"], "labels": {"env": "prod", "__meta_filepath": "/sd/a.json"}},
                 {"targets": ["h3:9100"], "labels": {"env": "dev"}}]"#,
            true,
            "a.json",
        )
        .unwrap();
        let ts = targets_of(&j, &groups);
        assert_eq!(ts.len(), 2, "{ts:#?}");
        let t = &ts[0];
        assert_eq!(t.name, "nodes/h1:9100");
        assert_eq!(t.job, "nodes");
        assert_eq!(t.instance.as_deref(), Some("h1:9100"));
        assert_eq!(
            t.metrics.as_ref().unwrap().as_str(),
            "http://h1:9100/m?host=h1"
        );
        let labels: Vec<(&str, &str)> = t
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(labels, [("env", "prod"), ("file", "a"), ("team", "ops")]);
    }

    fn groups_of(addresses: &[&str]) -> Vec<Group> {
        vec![Group {
            targets: addresses.iter().map(|a| a.to_string()).collect(),
            labels: BTreeMap::new(),
        }]
    }

    /// A file read while its writer is half way (short, then broken, then whole) is taken only
    /// once two reads agree; a steady file costs two reads; one that never settles is taken at
    /// the last read.
    #[tokio::test(start_paused = true)]
    async fn a_changed_file_is_taken_once_two_reads_agree() {
        let script = |reads: Vec<Result<Vec<Group>, SdError>>| {
            let reads = std::sync::Arc::new(std::sync::Mutex::new(reads.into_iter()));
            let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let c = count.clone();
            let read = move || {
                let next = reads
                    .lock()
                    .unwrap()
                    .next()
                    .expect("no more reads scripted");
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move { next }
            };
            (read, count)
        };
        let broken = || SdError::Format {
            at: "a.yml".into(),
            message: "cut".into(),
        };
        let (read, count) = script(vec![
            Ok(groups_of(&["a:1"])),
            Err(broken()),
            Ok(groups_of(&["a:1", "b:1"])),
            Ok(groups_of(&["a:1", "b:1"])),
        ]);
        let started = tokio::time::Instant::now();
        let got = file::settled(read, file::SETTLE, 5).await.unwrap();
        assert_eq!(got, groups_of(&["a:1", "b:1"]));
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 4);
        assert_eq!(started.elapsed(), file::SETTLE * 3);

        let (read, count) = script(vec![Ok(groups_of(&["a:1"])), Ok(groups_of(&["a:1"]))]);
        assert_eq!(
            file::settled(read, file::SETTLE, 5).await.unwrap(),
            groups_of(&["a:1"])
        );
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);

        let (read, count) = script(vec![
            Ok(groups_of(&["a:1"])),
            Ok(groups_of(&["b:1"])),
            Ok(groups_of(&["c:1"])),
        ]);
        assert_eq!(
            file::settled(read, file::SETTLE, 3).await.unwrap(),
            groups_of(&["c:1"])
        );
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn all_sources_together_are_bounded_and_a_refresh_past_the_bound_fails() {
        let mut groups = HashMap::new();
        groups.insert("one".to_string(), groups_of(&["a:1", "b:1"]));
        groups.insert("two".to_string(), groups_of(&["c:1"]));
        // `two` growing to 2 makes 4 in all: within 4, past 3
        assert!(within_total("two", groups_of(&["c:1", "d:1"]), &groups, 4).is_ok());
        let e = within_total("two", groups_of(&["c:1", "d:1"]), &groups, 3).unwrap_err();
        assert!(
            e.to_string()
                .contains("4 targets, more than the limit of 3"),
            "{e}"
        );
        // a source's own previous list does not count twice
        assert!(within_total("one", groups_of(&["a:1", "b:1"]), &groups, 3).is_ok());
    }

    #[test]
    fn dropped_addresses_keep_their_discovered_labels_up_to_the_bound_and_are_all_counted() {
        let j = job(
            "targets:\n- name: n\n  file_sd: [{files: [a.json]}]\n  relabel_configs:\n  - {source_labels: [env], regex: prod, action: keep}\n",
        );
        let groups = parse_groups(
            br#"[{"targets": ["p:1"], "labels": {"env": "prod"}},
                 {"targets": ["d1:1", "d2:1", "d3:1"], "labels": {"env": "dev"}}]"#,
            true,
            "a.json",
        )
        .unwrap();
        let (ts, dropped, count) = targets_and_dropped(&j, &groups, 2);
        assert_eq!(ts.len(), 1);
        // three dropped by `keep`, two kept for the API
        assert_eq!(count, 3);
        assert_eq!(dropped.len(), 2);
        assert_eq!(dropped[0]["__address__"], "d1:1");
        assert_eq!(dropped[0]["env"], "dev");
        assert_eq!(dropped[0]["job"], "n");
        let (_, none, count) = targets_and_dropped(&j, &groups, 0);
        assert_eq!((none.len(), count), (0, 3));
    }

    #[test]
    fn an_instance_set_by_relabelling_names_the_target_and_duplicates_get_apart() {
        let j = job(
            "targets:\n- name: n\n  file_sd: [{files: [a.json]}]\n  relabel_configs:\n  - {target_label: instance, replacement: same}\n",
        );
        let groups =
            parse_groups(br#"[{"targets": ["a:1", "b:2", "a:1"]}]"#, true, "a.json").unwrap();
        let ts = targets_of(&j, &groups);
        assert_eq!(ts.len(), 2);
        assert!(ts.iter().all(|t| t.name.starts_with("n/same#")), "{ts:#?}");
        assert_ne!(ts[0].name, ts[1].name);
    }

    #[test]
    fn broken_and_oversized_lists_are_refused_with_a_reason() {
        let cases: &[(&[u8], bool, &str)] = &[
            (b"[{\"targets\": [\"a:1\"]", true, "line 1"),
            (b"{\"targets\": []}", true, "invalid type"),
            (b"[{\"targets\": [\"a/b:1\"]}]", true, "invalid target"),
            (
                b"[{\"targets\": [\"a:1\"], \"labels\": {\"1x\": \"v\"}}]",
                true,
                "invalid label name",
            ),
            (
                b"[{\"targets\": [\"a:1\"], \"extra\": 1}]",
                true,
                "unknown field",
            ),
            (b"- targets: [a:1]\n  labels: {x: [1]}\n", false, "line 2"),
            (b"\xff\xfe", false, "not UTF-8"),
        ];
        for (bytes, json, want) in cases {
            let e = parse_groups(bytes, *json, "f").unwrap_err().to_string();
            assert!(
                e.contains(want),
                "{:?}: {e}",
                String::from_utf8_lossy(bytes)
            );
        }
        let many: Vec<String> = (0..=MAX_SD_TARGETS).map(|i| format!("\"h:{i}\"")).collect();
        let text = format!("[{{\"targets\": [{}]}}]", many.join(","));
        let e = parse_groups(text.as_bytes(), true, "f").unwrap_err();
        assert!(matches!(e, SdError::Limit { .. }), "{e}");
        let big = vec![b' '; MAX_SD_BYTES as usize + 1];
        assert!(matches!(
            parse_groups(&big, true, "f").unwrap_err(),
            SdError::Limit { .. }
        ));
        assert_eq!(parse_groups(b"", false, "f").unwrap(), Vec::new());
    }

    #[test]
    fn a_static_target_is_relabelled_and_can_be_dropped() {
        let cfg = Config::from_yaml(
            "targets:\n- name: a\n  metrics: http://h:1/metrics\n  labels: {env: dev}\n  relabel_configs: [{source_labels: [env], regex: dev, action: drop}]\n- name: b\n  metrics: http://h:2/metrics\n  relabel_configs:\n  - {target_label: instance, replacement: web-1}\n  - {target_label: __address__, replacement: 'h:3'}\n- name: c\n  metrics: http://h:4/metrics\n",
            Path::new("t.yml"),
        )
        .unwrap();
        let ts = cfg.build_targets(&HashMap::new()).unwrap();
        let names: Vec<&str> = ts.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(ts[0].instance.as_deref(), Some("web-1"));
        assert_eq!(
            ts[0].metrics.as_ref().unwrap().as_str(),
            "http://h:3/metrics"
        );
        assert_eq!(ts[1].instance, None);
    }
}
