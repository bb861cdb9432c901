//! The triggers of a reload: a file watcher, SIGHUP and (through [`ReloadRequest::api`]) the
//! `POST /-/reload` handler all send a [`ReloadRequest`] into one channel, which one reload
//! function, [`Reloader`], drains: it reads the rule files and `tocsin.yml` (its notification
//! sections and its target set: static targets, discovery, relabelling, intervals, limits),
//! validates all of it, and swaps in all of it or none. Settings a reload cannot apply
//! ([`restart_settings`]: `storage.*`, `server.*`, `evaluation`, `rule_files`, ...) are
//! reported as needing a restart, never ignored silently.
//!
//! Invariants:
//! - nothing here blocks the async runtime: notify watches on its own threads, and the watcher and
//!   the SIGHUP task forward with `try_send`; when the channel is full a reload is already pending
//!   and will read the newest files, so the trigger is dropped (with a warning);
//! - the watcher watches directories, never files, and never recursively: the parent directory of
//!   each rule file, of `tocsin.yml`, and each rule directory. Editors that save atomically (write a temporary file,
//!   rename it over the original) or delete and recreate a file replace its inode, which a watch on
//!   the file itself would not survive; a watch on its directory does;
//! - a watched directory that is removed loses its watch (inotify drops it with the inode), so the
//!   watcher then watches its nearest existing ancestor until the directory is back, re-adds the
//!   watch and requests a reload;
//! - one debounced batch of file events sends at most one request; events that touch no rule file
//!   (reads, editors' swap, backup and lock files, rule unit tests, other files in the directories)
//!   send none;
//! - after [`RuleWatcher`] is dropped no request is sent and its sender is released;
//! - a file-triggered reload ([`Reloader::run`]) loads only complete, stable files: every rule
//!   file and `tocsin.yml` unchanged (size, modification time, content hash) for [`SETTLE`]
//!   before the read and the same after it; SIGHUP and `POST /-/reload` load at once. Only the reload loop reads
//!   the clock (tokio's, for the settle period).
//!
//! The set of watched paths is fixed at creation: when a reload changes the rule files the config
//! names (its globs now match other files or directories), the owner drops the [`RuleWatcher`] and
//! calls [`watch_rule_files`] again with the new paths.
//!
//! Limits: a path is watched as written (made absolute, `..` kept, symlinks not resolved), so a
//! rule file reached through a symlink whose target changes elsewhere (a Kubernetes ConfigMap
//! mount swaps a `..data` link) is not seen; SIGHUP and the API cover those cases.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use notify::event::ModifyKind;
use notify::{EventKind, RecursiveMode};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::fswatch::{Batch, Debouncer};

/// How long file events are held and merged before they become one reload request: long enough
/// to cover an editor's save (temporary file, rename, swap file cleanup), short enough to feel
/// immediate.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// How long every rule file must stay unchanged (size, modification time, content hash) before a
/// file-triggered reload reads them: a writer that writes a file in parts with pauses shorter
/// than this is never caught half-way (a YAML file cut at a rule boundary is valid YAML, a
/// shorter rule set).
pub const SETTLE: Duration = Duration::from_secs(1);

/// How often the rule files are looked at while they settle.
const SETTLE_POLL: Duration = Duration::from_millis(250);

/// How long a file-triggered reload waits for the rule files to settle; files still changing
/// then load nothing: the reload is requested again (behind any waiting SIGHUP or API request).
pub const SETTLE_GIVE_UP: Duration = Duration::from_secs(10);

/// Why a reload was requested; logged with the reload and used as a metric label through
/// [`ReloadCause::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadCause {
    /// Rule files changed on disk: the files (or, when a watched directory came back or the
    /// kernel dropped events, the directories) one debounced batch of events touched, sorted.
    FileChange(Vec<PathBuf>),
    /// The process received SIGHUP.
    Signal,
    /// `POST /-/reload` was called.
    Api,
    /// The daemon started: the first load of the rules.
    Startup,
}

/// One request to reload the rules, sent by a trigger to the reload function.
#[derive(Debug)]
pub struct ReloadRequest {
    /// what triggered the reload
    pub cause: ReloadCause,
    /// where the reload function reports the outcome, when the trigger waits for it (the API does;
    /// the file watcher and SIGHUP do not)
    pub done: Option<oneshot::Sender<ReloadOutcome>>,
}

/// What a reload did, reported to a trigger that waits for it (the API returns it as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadOutcome {
    /// the new rules were loaded and swapped in; when false the previous rules stay active
    pub ok: bool,
    /// why the reload failed, one message per problem (file:line:col first where known); empty when `ok`
    pub errors: Vec<String>,
    /// settings of `tocsin.yml` that changed and apply only after a restart (`server.listen`,
    /// `storage.path`, ...); the rest of the reload went in
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs_restart: Vec<String>,
}

/// Reloads kept in [`ReloadHistory`].
pub const RELOADS_KEPT: usize = 20;

/// One reload, as `/api/v1/status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadRecord {
    /// when the reload finished (ms since the epoch)
    pub t: i64,
    /// `file`, `signal`, `api` or `startup` ([`ReloadCause::kind`])
    pub cause: &'static str,
    pub ok: bool,
    pub errors: Vec<String>,
    /// settings that changed and need a restart ([`ReloadOutcome::needs_restart`])
    pub needs_restart: Vec<String>,
}

/// The last [`RELOADS_KEPT`] reloads, oldest first: written by the reload loop, read by the API.
#[derive(Debug, Default)]
pub struct ReloadHistory {
    records: Mutex<std::collections::VecDeque<ReloadRecord>>,
}

impl ReloadHistory {
    /// Records a finished reload, forgetting the oldest beyond [`RELOADS_KEPT`].
    pub fn record(&self, record: ReloadRecord) {
        let mut r = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        if r.len() == RELOADS_KEPT {
            r.pop_front();
        }
        r.push_back(record);
    }

    /// The kept reloads, oldest first.
    pub fn recent(&self) -> Vec<ReloadRecord> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

/// Watches rule files and rule directories and sends a [`ReloadRequest`] when they change.
/// Stops watching when dropped.
pub struct RuleWatcher {
    /// shared with the event handler on notify's debouncer thread, which holds only a weak
    /// reference, so dropping this releases the watcher and the channel sender
    inner: Arc<Mutex<Inner>>,
}

/// Why the rule watcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The platform's file watcher could not be created (for example the per-user limit of
    /// inotify instances is reached).
    #[error("cannot create the rule file watcher")]
    CreateWatcher(#[source] notify::Error),
    /// A rule directory, or the directory of a rule file, could not be watched: it does not exist,
    /// is not readable, or the per-user limit of inotify watches is reached.
    #[error("cannot watch {}", path.display())]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

impl ReloadCause {
    /// A short fixed name for metric labels and logs: `file`, `signal`, `api` or `startup`.
    pub fn kind(&self) -> &'static str {
        match self {
            ReloadCause::FileChange(_) => "file",
            ReloadCause::Signal => "signal",
            ReloadCause::Api => "api",
            ReloadCause::Startup => "startup",
        }
    }
}

impl fmt::Display for ReloadCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadCause::FileChange(paths) => {
                f.write_str("rule files changed:")?;
                for path in paths {
                    write!(f, " {}", path.display())?;
                }
                Ok(())
            }
            ReloadCause::Signal => f.write_str("sighup received"),
            ReloadCause::Api => f.write_str("reload requested through the api"),
            ReloadCause::Startup => f.write_str("daemon started"),
        }
    }
}

impl ReloadRequest {
    /// A request from the file watcher; nobody waits for its outcome.
    pub fn file_change(paths: Vec<PathBuf>) -> ReloadRequest {
        ReloadRequest {
            cause: ReloadCause::FileChange(paths),
            done: None,
        }
    }

    /// A request from SIGHUP; nobody waits for its outcome.
    pub fn signal() -> ReloadRequest {
        ReloadRequest {
            cause: ReloadCause::Signal,
            done: None,
        }
    }

    /// The first load at start-up; nobody waits for its outcome.
    pub fn startup() -> ReloadRequest {
        ReloadRequest {
            cause: ReloadCause::Startup,
            done: None,
        }
    }

    /// A request from `POST /-/reload` and the receiver its outcome arrives on. The handler
    /// should `send(..).await` it (not `try_send`) so that its caller always gets an answer.
    pub fn api() -> (ReloadRequest, oneshot::Receiver<ReloadOutcome>) {
        let (done, outcome) = oneshot::channel();
        let request = ReloadRequest {
            cause: ReloadCause::Api,
            done: Some(done),
        };
        (request, outcome)
    }

    /// Reports the outcome to the trigger if it waits for one; a trigger that stopped waiting
    /// (the HTTP client went away) is ignored.
    pub fn respond(self, outcome: ReloadOutcome) {
        if let Some(done) = self.done {
            let _ = done.send(outcome);
        }
    }
}

impl ReloadOutcome {
    /// The new rules are active.
    pub fn succeeded() -> ReloadOutcome {
        ReloadOutcome {
            ok: true,
            errors: Vec::new(),
            needs_restart: Vec::new(),
        }
    }

    /// The reload failed for these reasons; the previous rules stay active.
    pub fn failed(errors: Vec<String>) -> ReloadOutcome {
        ReloadOutcome {
            ok: false,
            errors,
            needs_restart: Vec::new(),
        }
    }
}

/// Starts watching `files` (each through its parent directory, so atomic saves and
/// delete-and-recreate are seen) and `dirs` (any rule file in them, [`crate::rules::is_rule_file`],
/// created, changed or removed; not recursive), sending one [`ReloadCause::FileChange`] request per debounced batch
/// of changes ([`DEBOUNCE`]) to `tx`.
///
/// Relative paths are taken relative to the current directory; the paths in requests are
/// absolute. Every directory must exist now; a directory removed later is watched for again
/// (see the module documentation). Editors' swap, backup and lock files (`*.swp`, `*~`, `.#*`,
/// vim's `4913` probe) never trigger a request.
///
/// The channel should be small (1 is enough): a request waiting in it already covers later
/// changes, so the watcher drops triggers while it is full. Start watching before the first load
/// of the rules, so that no change between loading and watching goes unseen.
pub fn watch_rule_files(
    files: &[PathBuf],
    dirs: &[PathBuf],
    tx: mpsc::Sender<ReloadRequest>,
) -> Result<RuleWatcher, ReloadError> {
    let absolute = |path: &PathBuf| {
        std::path::absolute(path).map_err(|e| ReloadError::Watch {
            path: path.clone(),
            source: notify::Error::io(e),
        })
    };
    let files = files
        .iter()
        .map(absolute)
        .collect::<Result<BTreeSet<_>, _>>()?;
    let dirs = dirs
        .iter()
        .map(absolute)
        .collect::<Result<BTreeSet<_>, _>>()?;
    let mut roots = dirs.clone();
    roots.extend(
        files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf)),
    );

    let inner = Arc::new(Mutex::new(Inner {
        debouncer: None,
        tx,
        files,
        dirs,
        roots,
        watched: BTreeSet::new(),
    }));
    let weak: Weak<Mutex<Inner>> = Arc::downgrade(&inner);
    let debouncer = Debouncer::new(DEBOUNCE, move |batch: Batch| {
        // runs on the watcher's thread; a failed upgrade means the RuleWatcher is gone
        if let Some(inner) = weak.upgrade() {
            lock(&inner).on_batch(batch);
        }
    })
    .map_err(ReloadError::CreateWatcher)?;

    {
        let mut guard = lock(&inner);
        let Inner {
            debouncer: slot,
            roots,
            watched,
            ..
        } = &mut *guard;
        let debouncer = slot.insert(debouncer);
        for root in roots.iter() {
            debouncer
                .watch(root, RecursiveMode::NonRecursive)
                .map_err(|source| ReloadError::Watch {
                    path: root.clone(),
                    source,
                })?;
            watched.insert(root.clone());
        }
        debug!(directories = ?roots, "watching rule files");
    }
    Ok(RuleWatcher { inner })
}

/// Sends a [`ReloadCause::Signal`] request on every SIGHUP until `tx` is closed; abort the
/// returned task to stop earlier.
///
/// Must be called from within a tokio runtime. The signal handler is installed before this
/// returns, so a SIGHUP sent afterwards never takes the default action (terminating the
/// process); it stays installed for the life of the process, even after the task ends.
#[cfg(unix)]
pub fn spawn_sighup(
    tx: mpsc::Sender<ReloadRequest>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};

    let mut hangups = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            info!("sighup received, requesting a rule reload");
            if !forward(&tx, ReloadRequest::signal()) {
                break;
            }
        }
    }))
}

/// What a reload needs to swap the notification sections of the configuration file.
pub struct NotifyReload {
    /// the configuration file the sections are re-read from
    pub source: PathBuf,
    /// the notifier whose routing and inhibition a reload replaces
    pub notifier: Arc<crate::notify::pipeline::Notifier>,
    /// where the sender receives its new integrations
    pub integrations: tokio::sync::watch::Sender<Option<crate::notify::sender::Integrations>>,
    /// the sections in force, to tell whether a reload changed them
    pub current: String,
    /// a digest receiver's interval (the evaluation interval)
    pub digest_interval_ms: i64,
}

/// The notification sections of `cfg` as they are compared across reloads: the typed sections
/// serialized as JSON, and a hash of the content of every secret file they name (`url_file`,
/// `password_file`, ...), so a rotated secret or a new URL in a file is rebuilt by a reload like
/// an edited section. Positions are not part of it (`Spanned` serializes its value only), so
/// moving or reformatting a section (block or flow style) is no change and rebuilds nothing.
/// Blocking: reads the secret files (bounded by [`crate::config::read_secret_file`]).
pub fn notify_sections(cfg: &crate::config::Config) -> String {
    let sections = serde_json::json!([
        cfg.route,
        cfg.receivers,
        cfg.inhibit_rules,
        cfg.time_intervals
    ]);
    let mut files = Vec::new();
    secret_file_digests(&sections, &mut files);
    format!("{sections}{files:?}")
}

/// (path, xxh3 of its content or of why it cannot be read) of every `*_file` value in `v`.
fn secret_file_digests(v: &serde_json::Value, out: &mut Vec<(String, u64)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match x.as_str() {
                    Some(path) if k.ends_with("_file") => {
                        let content = crate::config::read_secret_file(Path::new(path))
                            .unwrap_or_else(|e| e.to_string());
                        out.push((
                            path.to_string(),
                            xxhash_rust::xxh3::xxh3_64(content.as_bytes()),
                        ));
                    }
                    _ => secret_file_digests(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| secret_file_digests(x, out)),
        _ => {}
    }
}

/// New notification sections, built and validated, ready to swap in.
struct PreparedNotify {
    sections: String,
    parts: crate::notify::setup::NotifyParts,
}

impl NotifyReload {
    /// Builds the notification sections of a newly read configuration when they changed
    /// (`None`: unchanged). Blocking: reads secret files.
    fn prepare(
        &self,
        cfg: &crate::config::Config,
        env: &std::collections::HashMap<String, String>,
    ) -> Result<Option<PreparedNotify>, Vec<String>> {
        let sections = notify_sections(cfg);
        if sections == self.current {
            return Ok(None);
        }
        let Some(plan) = cfg.notify_plan() else {
            return Err(vec![format!(
                "{}: route removed: turning notifications off needs a restart",
                self.source.display()
            )]);
        };
        let parts = plan
            .parts(env, crate::ingest::client(), self.digest_interval_ms)
            .map_err(|e| {
                e.into_iter()
                    .map(|e| format!("{}: {e}", self.source.display()))
                    .collect::<Vec<_>>()
            })?;
        Ok(Some(PreparedNotify { sections, parts }))
    }

    /// Swaps in what [`NotifyReload::prepare`] built.
    fn apply(&mut self, p: PreparedNotify) {
        self.notifier
            .set_routing(p.parts.routes, p.parts.inhibitor, p.parts.names.clone());
        let _ = self
            .integrations
            .send(Some((p.parts.integrations, p.parts.names)));
        self.current = p.sections;
    }
}

/// What a reload needs to swap the target set: the discovery loop's sources, and the settings
/// that need a restart as the daemon started with them.
pub struct TargetsReload {
    /// where the discovery loop receives the new static targets and discovery sources
    pub sources: tokio::sync::watch::Sender<Arc<crate::ingest::sd::TargetSources>>,
    /// `file_sd` patterns are relative to this directory (the configuration file's)
    pub base: PathBuf,
    /// [`restart_settings`] of the configuration the daemon started with
    pub started_with: Vec<(&'static str, String)>,
}

/// The settings of `tocsin.yml` a reload cannot apply, each with its value as compared: a reload
/// that changes one says so (`needs a restart: server.listen`) instead of ignoring it.
pub fn restart_settings(cfg: &crate::config::Config) -> Vec<(&'static str, String)> {
    let d = |v: &dyn fmt::Debug| format!("{v:?}");
    vec![
        ("storage.path", d(&cfg.storage.path)),
        ("storage.retention", d(&cfg.storage.retention.value)),
        (
            "storage.flush_interval",
            d(&cfg.storage.flush_interval.value),
        ),
        ("storage.head_window", d(&cfg.storage.head_window)),
        ("server.listen", d(&cfg.server.listen.value)),
        (
            "server",
            d(&(
                &cfg.server.api_token_env,
                &cfg.server.api_read_token_env,
                cfg.server.push_body_size_limit.value.0,
            )),
        ),
        ("scrape.self_metrics", d(&cfg.scrape.self_metrics)),
        (
            "evaluation",
            d(&(
                &cfg.evaluation.interval.value,
                &cfg.evaluation.promql_compat.value,
            )),
        ),
        ("rule_files", d(&cfg.rule_file_patterns())),
        ("external_labels", d(&cfg.external_labels())),
        (
            "datasources",
            d(&serde_json::to_string(&cfg.datasource_names()).unwrap_or_default()),
        ),
        ("log", d(&(&cfg.log.level, &cfg.log.format))),
    ]
}

impl TargetsReload {
    /// Builds the target set of a newly read configuration (secrets read: blocking) and lists
    /// the settings that changed but need a restart.
    fn prepare(
        &self,
        source: &Path,
        cfg: &crate::config::Config,
        env: &std::collections::HashMap<String, String>,
    ) -> PreparedTargets {
        let sources = cfg
            .build_target_sources(env, &self.base)
            .map_err(|e| vec![format!("{}: targets: {e}", source.display())])?;
        let now = restart_settings(cfg);
        let needs_restart = self
            .started_with
            .iter()
            .zip(&now)
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, _)| a.0.to_string())
            .collect();
        Ok((sources, needs_restart, cfg.startup_graces()))
    }
}

/// A new target set and the settings that changed but need a restart, or the errors.
type PreparedTargets = Result<
    (
        crate::ingest::sd::TargetSources,
        Vec<String>,
        HashMap<String, i64>,
    ),
    Vec<String>,
>;

/// What one reload read from `tocsin.yml`, ready to swap in.
struct PreparedConfig {
    notify: Option<Result<Option<PreparedNotify>, Vec<String>>>,
    targets: Option<PreparedTargets>,
    /// `tocsin.yml` itself did not load
    error: Option<Vec<String>>,
}

/// The one reload function: serves reload requests one at a time. Each reload validates the
/// rule files and the configuration's notification sections together on a blocking thread,
/// then swaps both or neither; it answers the requester and re-aims the file watcher at the
/// rule files now in use.
pub struct Reloader {
    pub manager: Arc<crate::rules::manager::RuleManager>,
    pub history: Arc<ReloadHistory>,
    pub clock: Arc<dyn crate::clock::Clock>,
    pub rules: crate::rules::manager::RuleConfig,
    /// `None`: notifications are off or come from the built-in default (not reloadable)
    pub notify: Option<NotifyReload>,
    /// the environment `*_env` secrets of receivers are read from
    pub env: std::collections::HashMap<String, String>,
    /// handed to the file watcher
    pub tx: mpsc::Sender<ReloadRequest>,
    /// the configuration file: re-read by every reload, watched like the rule files (`None`:
    /// the built-in default, only rules reload)
    pub source: Option<PathBuf>,
    /// `None`: the target set is not reloadable (no configuration file)
    pub targets: Option<TargetsReload>,
}

impl Reloader {
    /// Runs until every sender of `rx` is gone.
    ///
    /// A file-triggered request loads only complete, stable files: it waits until every rule
    /// file has been unchanged for [`SETTLE`], loads, and keeps the result only if the files
    /// are still the same after the read; when they changed meanwhile it settles again. Files
    /// that do not settle within [`SETTLE_GIVE_UP`] load nothing and the request is queued
    /// again. A file-triggered request that finds the files as the last successful load left
    /// them reloads nothing (the watcher often sends a second request for one save). SIGHUP
    /// and `POST /-/reload` load at once.
    pub async fn run(mut self, mut rx: mpsc::Receiver<ReloadRequest>) {
        let mut watcher = None;
        // the rule files as the last successful reload read them, when known
        let mut loaded: Option<FilesSnapshot> = None;
        while let Some(req) = rx.recv().await {
            let file_triggered = matches!(req.cause, ReloadCause::FileChange(_));
            let (now, errors, needs_restart, snapshot) = if file_triggered {
                match self.reload_settled(&loaded).await {
                    Settled::Reloaded(now, (errors, restart), snapshot) => {
                        (now, errors, restart, snapshot)
                    }
                    Settled::Unchanged => {
                        debug!(cause = %req.cause, "rule files unchanged since the last load, nothing to reload");
                        continue;
                    }
                    Settled::StillChanging => {
                        warn!(
                            cause = %req.cause,
                            waited = ?SETTLE_GIVE_UP,
                            "rule files still changing, reload postponed"
                        );
                        if let ReloadCause::FileChange(paths) = req.cause {
                            forward(&self.tx, ReloadRequest::file_change(paths));
                        }
                        continue;
                    }
                }
            } else {
                info!(cause = %req.cause, "reloading rules");
                // the reload's time, read once: recorded, and the resolved time of the alerts
                // of removed rules
                let now = self.clock.now_ms();
                match self.reload_once(now, None).await {
                    Attempt::Done((errors, restart), snapshot) => (now, errors, restart, snapshot),
                    // only a file-triggered reload compares the files before and after its read
                    Attempt::Changed => {
                        (now, vec![CHANGED_WHILE_READ.to_string()], Vec::new(), None)
                    }
                }
            };
            if errors.is_empty() {
                loaded = snapshot;
                // label names the new rules read that no stored series has: warnings only
                let manager = self.manager.clone();
                tokio::task::spawn_blocking(move || manager.warn_unknown_labels());
            }
            let ok = errors.is_empty();
            self.history.record(ReloadRecord {
                t: now,
                cause: req.cause.kind(),
                ok,
                errors: errors.clone(),
                needs_restart: needs_restart.clone(),
            });
            if ok || watcher.is_none() {
                // watch the files in use, and the directories of glob patterns for new files
                let mut files = self.manager.rules().files.clone();
                files.extend(self.source.clone());
                let dirs: Vec<PathBuf> = self
                    .rules
                    .patterns
                    .iter()
                    .filter(|p| p.contains(['*', '?', '[']))
                    .filter_map(|p| self.rules.base.join(p).parent().map(PathBuf::from))
                    .filter(|d| d.is_dir())
                    .collect();
                match watch_rule_files(&files, &dirs, self.tx.clone()) {
                    Ok(w) => watcher = Some(w),
                    Err(e) => {
                        warn!(error = %e, "cannot watch rule files; SIGHUP and POST /-/reload still reload")
                    }
                }
            }
            req.respond(if ok {
                ReloadOutcome {
                    needs_restart,
                    ..ReloadOutcome::succeeded()
                }
            } else {
                ReloadOutcome::failed(errors)
            });
        }
    }

    /// A file-triggered reload: waits for the rule files to settle, then loads them as
    /// [`Reloader::reload_once`] does, settling again when they changed during the read.
    async fn reload_settled(&mut self, loaded: &Option<FilesSnapshot>) -> Settled {
        let started = tokio::time::Instant::now();
        loop {
            let Some(stable) = self.settle(started).await else {
                return Settled::StillChanging;
            };
            if loaded.as_ref() == Some(&stable) {
                return Settled::Unchanged;
            }
            info!(
                files = stable.files.len(),
                "rule files settled, reloading rules"
            );
            // the reload's time, read once the files are stable: recorded, and the resolved
            // time of the alerts of removed rules
            let now = self.clock.now_ms();
            match self.reload_once(now, Some(stable)).await {
                Attempt::Done(errors, snapshot) => {
                    return Settled::Reloaded(now, errors, snapshot);
                }
                Attempt::Changed => {
                    debug!(
                        "rule files changed while they were read, waiting for them to settle again"
                    );
                }
            }
        }
    }

    /// Waits until the rule files (those the patterns match now) have been unchanged for
    /// [`SETTLE`] and returns them as they are; `None` when they still change
    /// [`SETTLE_GIVE_UP`] after `started`. Paused-time friendly: only tokio's timer is read.
    async fn settle(&self, started: tokio::time::Instant) -> Option<FilesSnapshot> {
        let mut last = self.snapshot().await;
        let mut since = tokio::time::Instant::now();
        loop {
            let now = tokio::time::Instant::now();
            if now.duration_since(since) >= SETTLE {
                return Some(last);
            }
            if now.duration_since(started) >= SETTLE_GIVE_UP {
                return None;
            }
            tokio::time::sleep(SETTLE_POLL).await;
            let current = self.snapshot().await;
            if current != last || !current.complete() {
                last = current;
                since = tokio::time::Instant::now();
            }
        }
    }

    /// The rule files as they are now, read on a blocking thread.
    async fn snapshot(&self) -> FilesSnapshot {
        let (patterns, base) = (self.rules.patterns.clone(), self.rules.base.clone());
        let source = self.source.clone();
        tokio::task::spawn_blocking(move || {
            FilesSnapshot::take(&patterns, &base, source.as_deref())
        })
        .await
        .unwrap_or_else(|e| FilesSnapshot {
            files: Vec::new(),
            error: Some(format!("cannot read the rule files: {e}")),
        })
    }

    /// One reload: every error of the rules and of the notification sections, or none when
    /// both were swapped in; with the rule files as read when they did not change during the
    /// read (`None` when they did, or could not be compared).
    ///
    /// With `expect` (a file-triggered reload, the files as they settled), the files are looked
    /// at again after the read: when they are no longer `expect`, nothing is swapped in and the
    /// result is [`Attempt::Changed`].
    async fn reload_once(&mut self, now: i64, expect: Option<FilesSnapshot>) -> Attempt {
        let manager = self.manager.clone();
        let notify = self.notify.take();
        let targets = self.targets.take();
        let env = self.env.clone();
        let source = self.source.clone();
        let (patterns, base) = (self.rules.patterns.clone(), self.rules.base.clone());
        let file_compared = expect.is_some();
        let prepared = tokio::task::spawn_blocking(move || {
            let before = match expect {
                Some(expect) => expect,
                None => FilesSnapshot::take(&patterns, &base, source.as_deref()),
            };
            let rules = manager.load_rules();
            let config = prepare_config(source.as_deref(), notify.as_ref(), targets.as_ref(), &env);
            let after = FilesSnapshot::take(&patterns, &base, source.as_deref());
            let same = (before == after).then_some(after);
            (rules, config, notify, targets, same)
        })
        .await;
        let (rules, config, notify, targets, same) = match prepared {
            Ok(p) => p,
            Err(e) => {
                // the handles went with the task: notifications and targets stay as they are but
                // can no longer reload; say so loudly
                tracing::error!(error = %e, "reload task failed; notification sections and targets can no longer reload");
                return Attempt::Done((vec![format!("reload task failed: {e}")], Vec::new()), None);
            }
        };
        self.notify = notify;
        self.targets = targets;
        if file_compared && same.is_none() {
            return Attempt::Changed;
        }
        Attempt::Done(self.swap(now, rules, config).await, same)
    }

    /// Swaps in what a reload read, or nothing when any of it has an error; returns the errors.
    /// Swaps in what a reload read (rules, notification sections, target set), or nothing when
    /// any of it has an error; returns the errors and the settings that need a restart.
    async fn swap(
        &mut self,
        now: i64,
        rules: Result<crate::rules::RuleSet, crate::rules::RuleErrors>,
        config: PreparedConfig,
    ) -> (Vec<String>, Vec<String>) {
        let mut errors: Vec<String> = Vec::new();
        if let Err(e) = &rules {
            errors.extend(e.0.iter().map(|e| e.to_string()));
        }
        errors.extend(config.error.into_iter().flatten());
        if let Some(Err(e)) = &config.notify {
            errors.extend(e.iter().cloned());
        }
        if let Some(Err(e)) = &config.targets {
            errors.extend(e.iter().cloned());
        }
        if !errors.is_empty() {
            for e in &errors {
                tracing::error!(error = %e, "reload failed, the old rules, targets and notification configuration stay");
            }
            self.manager.reload_failed();
            return (errors, Vec::new());
        }
        if let Ok(set) = rules {
            self.manager.apply(set, now).await;
        }
        if let (Some(Ok(Some(p))), Some(n)) = (config.notify, self.notify.as_mut()) {
            n.apply(p);
            info!("notification routing and receivers reloaded");
        }
        let mut needs_restart = Vec::new();
        if let (Some(Ok((sources, restart, graces))), Some(t)) =
            (config.targets, self.targets.as_ref())
        {
            let _ = t.sources.send(Arc::new(sources));
            // the graces of added and changed targets apply from the next evaluation
            self.manager.set_grace(graces);
            if !restart.is_empty() {
                warn!(settings = ?restart, "changed settings need a restart");
            }
            needs_restart = restart;
        }
        (errors, needs_restart)
    }
}

/// Reads `tocsin.yml` once (with the `TOCSIN_*` overrides of `env`, as `tocsin run` applies
/// them) and prepares its notification sections and target set. Blocking.
fn prepare_config(
    source: Option<&Path>,
    notify: Option<&NotifyReload>,
    targets: Option<&TargetsReload>,
    env: &std::collections::HashMap<String, String>,
) -> PreparedConfig {
    let mut out = PreparedConfig {
        notify: None,
        targets: None,
        error: None,
    };
    let Some(source) = source else {
        return out;
    };
    if notify.is_none() && targets.is_none() {
        return out;
    }
    let loaded = crate::config::Config::load(source).and_then(|mut c| {
        let tocsin_vars = env
            .iter()
            .filter(|(k, _)| k.starts_with("TOCSIN_"))
            .map(|(k, v)| (k.clone(), v.clone()));
        c.apply_env(tocsin_vars).map_err(|e| {
            crate::config::ConfigError::Invalid(vec![crate::config::FieldError {
                path: source.to_path_buf(),
                line: 0,
                col: 0,
                field: "environment".into(),
                message: e,
            }])
        })?;
        Ok(c)
    });
    let cfg = match loaded {
        Ok(c) => c,
        Err(e) => {
            out.error = Some(vec![e.to_string()]);
            return out;
        }
    };
    out.notify = notify.map(|n| n.prepare(&cfg, env));
    out.targets = targets.map(|t| t.prepare(source, &cfg, env));
    // notifications were off at start: a route now turns them on only after a restart
    if notify.is_none()
        && cfg.route.is_some()
        && let Some(Ok((_, restart, _))) = out.targets.as_mut()
    {
        restart.push("route".into());
    }
    out
}

/// How a file-triggered reload ended.
enum Settled {
    /// The files settled and were loaded at this time (errors: none when swapped in), with the
    /// files as read.
    Reloaded(i64, (Vec<String>, Vec<String>), Option<FilesSnapshot>),
    /// The files settled as the last successful reload read them: nothing to do.
    Unchanged,
    /// The files did not settle within [`SETTLE_GIVE_UP`].
    StillChanging,
}

/// How one read of the rule files ended.
enum Attempt {
    /// Loaded and swapped in, or refused with these errors; with the files as read, when they
    /// did not change during the read.
    Done((Vec<String>, Vec<String>), Option<FilesSnapshot>),
    /// The files changed during the read of a file-triggered reload: nothing swapped in.
    Changed,
}

/// The rule files the patterns match, each with its size, modification time and content hash:
/// two equal snapshots taken a while apart mean the files were left alone in between (a writer
/// that restores the modification time and keeps size and hash changed nothing that matters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FilesSnapshot {
    /// each file with its state, or why it could not be read
    files: Vec<(PathBuf, Result<FileState, String>)>,
    /// why the patterns could not be expanded (one matches no file, a directory is unreadable)
    error: Option<String>,
}

impl FilesSnapshot {
    /// Reads every rule file `patterns` match (relative to `base`) and the configuration file
    /// `config`. Blocking.
    fn take(patterns: &[String], base: &Path, config: Option<&Path>) -> FilesSnapshot {
        let files = match crate::rules::expand_globs(patterns, base) {
            Ok(mut files) => {
                files.extend(config.map(Path::to_path_buf));
                files
            }
            Err(e) => {
                return FilesSnapshot {
                    files: Vec::new(),
                    error: Some(e.to_string()),
                };
            }
        };
        let files = files
            .into_iter()
            .map(|path| {
                let state = file_state(&path).map_err(|e| e.to_string());
                (path, state)
            })
            .collect();
        FilesSnapshot { files, error: None }
    }

    /// Whether no file changed while it was read.
    fn complete(&self) -> bool {
        self.files
            .iter()
            .all(|(_, state)| state.as_ref().err().is_none_or(|e| e != CHANGED_WHILE_READ))
    }
}

/// A file whose size or modification time changed while it was read.
const CHANGED_WHILE_READ: &str = "rule file changed while it was read";

/// What a snapshot keeps of one rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileState {
    size: u64,
    modified: Option<std::time::SystemTime>,
    /// xxh3 of the content
    hash: u64,
}

/// A file's size, modification time and content hash, the metadata read before the content and
/// compared after it, so that a write during the read is seen.
fn file_state(path: &Path) -> std::io::Result<FileState> {
    let meta = std::fs::metadata(path)?;
    let bytes = std::fs::read(path)?;
    let after = std::fs::metadata(path)?;
    let (size, modified) = (meta.len(), meta.modified().ok());
    if after.len() != size || after.modified().ok() != modified || bytes.len() as u64 != size {
        return Err(std::io::Error::other(CHANGED_WHILE_READ));
    }
    Ok(FileState {
        size,
        modified,
        hash: xxhash_rust::xxh3::xxh3_64(&bytes),
    })
}

impl Drop for RuleWatcher {
    fn drop(&mut self) {
        // Taking the debouncer under the lock the event handler sends under means no request is
        // sent after this; dropping it stops notify's threads (without waiting for them).
        let debouncer = lock(&self.inner).debouncer.take();
        drop(debouncer);
    }
}

impl fmt::Debug for RuleWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = lock(&self.inner);
        f.debug_struct("RuleWatcher")
            .field("files", &inner.files)
            .field("dirs", &inner.dirs)
            .field("watched", &inner.watched)
            .finish()
    }
}

/// The watcher's state, owned by [`RuleWatcher`] and used by the event handler.
struct Inner {
    /// the notify watcher and its debouncer thread; `None` once the RuleWatcher is dropped
    debouncer: Option<Debouncer>,
    /// where requests go
    tx: mpsc::Sender<ReloadRequest>,
    /// rule files watched by name (absolute)
    files: BTreeSet<PathBuf>,
    /// directories whose rule files ([`crate::rules::is_rule_file`]) are watched (absolute)
    dirs: BTreeSet<PathBuf>,
    /// the directories that should be watched: `dirs` and the parents of `files`
    roots: BTreeSet<PathBuf>,
    /// the paths with a live watch: each root that exists, and for each missing root its nearest
    /// existing ancestor, which reports the root's return
    watched: BTreeSet<PathBuf>,
}

impl Inner {
    /// Handles one debounced batch: at most one request, watches repaired first.
    fn on_batch(&mut self, batch: Batch) {
        if self.debouncer.is_none() {
            return;
        }
        let events: Vec<notify::Event> = batch
            .into_iter()
            .filter_map(|event| {
                event
                    .inspect_err(|error| warn!(error = %error, "rule file watcher error"))
                    .ok()
            })
            .collect();
        let mut changed = BTreeSet::new();
        let mut touched = Vec::new();
        let mut rescan = false;
        for event in &events {
            if event.need_rescan() {
                rescan = true;
                continue;
            }
            if moves_paths(&event.kind) {
                touched.extend(event.paths.iter().cloned());
            }
            if changes_content(&event.kind) {
                changed.extend(
                    event
                        .paths
                        .iter()
                        .filter(|path| self.is_rule_path(path))
                        .cloned(),
                );
            }
        }
        let repair = touched.iter().any(|t| {
            self.roots
                .iter()
                .chain(&self.watched)
                .any(|w| w.starts_with(t))
        });
        if repair {
            changed.extend(self.repair_watches(&touched));
        }
        if rescan {
            warn!("file events were lost (kernel queue overflow), requesting a rule reload");
            changed.extend(self.roots.iter().cloned());
        }
        if changed.is_empty() {
            tracing::trace!(events = events.len(), "file events touch no rule file");
            return;
        }
        let paths: Vec<PathBuf> = changed.into_iter().collect();
        debug!(paths = ?paths, "rule files changed");
        forward(&self.tx, ReloadRequest::file_change(paths));
    }

    /// Whether a change at `path` can change the rules: a watched file, a watched directory
    /// itself (removed or back), or a rule file in a watched directory.
    fn is_rule_path(&self, path: &Path) -> bool {
        if self.files.contains(path) || self.roots.contains(path) {
            return true;
        }
        let Some(parent) = path.parent() else {
            return false;
        };
        self.dirs.contains(parent) && crate::rules::is_rule_file(path)
    }

    /// Brings the live watches in line with the roots after `touched` paths were created,
    /// removed or renamed: a missing root is replaced by a watch on its nearest existing ancestor,
    /// a root that is back is watched again, and a watch whose path (or an ancestor) was touched
    /// is re-added, since it may now follow another inode. Returns the roots watched anew, whose
    /// files may have changed unseen.
    fn repair_watches(&mut self, touched: &[PathBuf]) -> Vec<PathBuf> {
        let Some(debouncer) = self.debouncer.as_mut() else {
            return Vec::new();
        };
        let mut rewatch: BTreeSet<PathBuf> = self
            .watched
            .iter()
            .filter(|w| touched.iter().any(|t| w.starts_with(t)))
            .cloned()
            .collect();
        let mut restored = Vec::new();
        // A root can come back between looking for it and watching its ancestor, unseen by any
        // watch; so look again after each change of watches, a few times at most.
        for _ in 0..4 {
            let wanted: BTreeSet<PathBuf> = self
                .roots
                .iter()
                .map(|root| nearest_existing_dir(root))
                .collect();
            rewatch.retain(|path| wanted.contains(path));
            if wanted == self.watched && rewatch.is_empty() {
                break;
            }
            for stale in self
                .watched
                .difference(&wanted)
                .cloned()
                .collect::<Vec<_>>()
            {
                // a removed directory's watch is already gone; this fails then, harmlessly
                let _ = debouncer.unwatch(&stale);
                self.watched.remove(&stale);
                if self.roots.contains(&stale) {
                    warn!(directory = %stale.display(), "rule directory removed, waiting for it to return");
                }
            }
            for path in &wanted {
                let again = rewatch.remove(path);
                if self.watched.contains(path) && !again {
                    continue;
                }
                if again {
                    let _ = debouncer.unwatch(path);
                }
                match debouncer.watch(path, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        self.watched.insert(path.clone());
                        if self.roots.contains(path) {
                            info!(directory = %path.display(), "watching rule directory again");
                            restored.push(path.clone());
                        }
                    }
                    Err(error) => {
                        // retried on the next event that creates, removes or renames it
                        self.watched.remove(path);
                        warn!(directory = %path.display(), error = %error, "cannot watch rule directory");
                    }
                }
            }
        }
        restored
    }
}

/// Event kinds that can change what a path holds; reads (`Access`) never do, and reading the
/// rules is what the reload itself does.
fn changes_content(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(_) | EventKind::Any
    )
}

/// Event kinds that create, remove or rename a path, and so may invalidate a watch.
fn moves_paths(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
    )
}

/// `path` if it is a directory, else its nearest ancestor that is (`/` at worst).
fn nearest_existing_dir(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| p.is_dir())
        .unwrap_or(path)
        .to_path_buf()
}

/// Sends without blocking; returns false when the receiver is gone.
fn forward(tx: &mpsc::Sender<ReloadRequest>, request: ReloadRequest) -> bool {
    match tx.try_send(request) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(request)) => {
            warn!(cause = %request.cause, "reload already pending, trigger dropped");
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            debug!("reload channel closed, trigger dropped");
            false
        }
    }
}

/// Locks, ignoring poisoning: the state stays consistent between statements, and a panicking
/// handler must not stop the watcher from being dropped.
fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_secret_file_of_a_receiver_is_a_change_of_the_sections() {
        let dir = tempfile::tempdir().unwrap();
        let url_file = dir.path().join("hook-url");
        std::fs::write(&url_file, "http://127.0.0.1:1/a\n").unwrap();
        let yaml = format!(
            "route: {{ receiver: hook }}\nreceivers:\n  - name: hook\n    webhook: {{ url_file: '{}' }}\n",
            url_file.display()
        );
        let cfg = crate::config::Config::from_yaml(&yaml, Path::new("t.yml")).unwrap();
        let before = notify_sections(&cfg);
        assert_eq!(before, notify_sections(&cfg));
        std::fs::write(&url_file, "http://127.0.0.1:1/b\n").unwrap();
        let after = notify_sections(&cfg);
        assert_ne!(before, after);
        assert!(
            !after.contains("127.0.0.1:1/b"),
            "the secret itself is never in it"
        );
    }

    #[test]
    fn notify_sections_ignore_layout_and_positions_but_not_values() {
        let sections = |yaml: &str| {
            notify_sections(
                &crate::config::Config::from_yaml(yaml, std::path::Path::new("t.yml")).unwrap(),
            )
        };
        let block = sections(
            "route:\n  receiver: ops\n  group_wait: 10s\nreceivers:\n  - name: ops\n    digest: all\n    webhook:\n      url: http://127.0.0.1:1/\n",
        );
        // the same sections in flow style, moved down by a target: no change, nothing rebuilt
        let flow = sections(
            "targets: [{ name: a, metrics: \"http://127.0.0.1:2/metrics\" }]\nroute: { receiver: ops, group_wait: 10s }\nreceivers: [{ name: ops, digest: all, webhook: { url: \"http://127.0.0.1:1/\" } }]\n",
        );
        assert_eq!(block, flow);
        // a changed value is a change, in any section
        let other_url = sections(
            "route: { receiver: ops, group_wait: 10s }\nreceivers: [{ name: ops, digest: all, webhook: { url: \"http://127.0.0.1:9/\" } }]\n",
        );
        assert_ne!(block, other_url);
        let other_digest = sections(
            "route: { receiver: ops, group_wait: 10s }\nreceivers: [{ name: ops, digest: changes_only, webhook: { url: \"http://127.0.0.1:1/\" } }]\n",
        );
        assert_ne!(block, other_digest);
    }

    #[test]
    fn cause_display_and_kind() {
        let cause = ReloadCause::FileChange(vec!["/r/a.yml".into(), "/r/b.yml".into()]);
        assert_eq!(cause.to_string(), "rule files changed: /r/a.yml /r/b.yml");
        assert_eq!(cause.kind(), "file");
        assert_eq!(ReloadCause::Signal.kind(), "signal");
        assert_eq!(ReloadCause::Api.kind(), "api");
    }

    #[tokio::test]
    async fn api_request_carries_the_outcome_back() {
        let (request, outcome) = ReloadRequest::api();
        assert_eq!(request.cause, ReloadCause::Api);
        request.respond(ReloadOutcome::failed(vec![
            "a.yml:3:5: unknown field".into(),
        ]));
        assert_eq!(
            outcome.await.unwrap(),
            ReloadOutcome::failed(vec!["a.yml:3:5: unknown field".into()])
        );
    }
}
