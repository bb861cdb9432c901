//! The daemon as a library: [`Daemon::start`] wires the store, the scrape scheduler, the rule
//! manager, the notification pipeline and sender, the reload loop and the HTTP server from a
//! validated [`Config`], and returns a [`Running`] daemon; [`Running::shutdown`] stops it in order
//! (rules, sender, scrapes, final store flush, HTTP server). `tocsin run` is this plus signal
//! handling and logging; tests start it in-process on a loopback port.
//!
//! Invariants:
//! - nothing here reads the clock except to stamp the start time: the loops it starts read the
//!   [`Clock`] they are given, once per tick;
//! - nothing here reads the process environment: secrets and tokens come from
//!   [`DaemonOptions::env`], which `tocsin run` fills from `std::env::vars()`;
//! - SQLite work runs on blocking threads, never on the runtime's;
//! - shutdown never waits longer than its bounds (15 s for a delivery in flight, 5 s for the HTTP
//!   server) and always ends with a final store flush; it first cancels API queries in flight,
//!   so no blocking thread keeps the runtime from stopping (rule evaluations are not cancelled:
//!   the engine's limits bound them, and the group loops finish the one in progress).

pub mod reload;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::Config;
use crate::ingest::scheduler::{Scheduler, StatusBoard};
use crate::notify::pipeline::Notifier;
use crate::rules::manager::{RuleConfig, RuleManager};
use crate::selfmetrics::SelfMetrics;
use crate::store::{Store, StoreError, StoreOptions};

/// The stack of every thread of the daemon's runtime (workers and blocking threads), 8 MiB
/// instead of tokio's 2: query evaluation recurses once per level of the expression, bounded by
/// [`crate::promql::MAX_EXPR_DEPTH`], about 20 KB a level in a debug build. The memory is
/// reserved, not committed: a thread touches only what it uses.
pub const THREAD_STACK_BYTES: usize = 8 << 20;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration cannot run in this environment (the checks `tocsin check` makes).
    #[error("{0}")]
    Preflight(#[from] crate::config::PreflightErrors),
    /// A `*_env`/`*_file` secret of a target could not be read.
    #[error("targets: {0}")]
    Secret(#[from] crate::config::SecretError),
    /// A datasource's secret cannot be read (checked by preflight first).
    #[error("{0}")]
    DatasourceSecret(#[from] crate::config::datasource::DatasourceSecretError),
    /// A remote write entry's URL or secret cannot be read (checked by preflight first).
    #[error("{0}")]
    RemoteWriteSecret(#[from] crate::config::remote_write::RemoteWriteSecretError),
    /// The store could not be opened or read.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    /// A receiver could not be built (a missing secret, an invalid URL).
    #[error("receivers: {0}")]
    Receivers(String),
    /// `server.api_token_env` or `server.api_read_token_env` names an unset variable.
    #[error("server.{field} names {var}, which is not set in this environment")]
    TokenUnset { field: &'static str, var: String },
    /// A non-loopback listener without a write token: anyone who reaches the port could create
    /// silences and reload.
    #[error(
        "refusing to listen on {addr} without server.api_token_env: anyone who reaches it could create silences and reload; set a write token, listen on loopback, or pass --allow-open-writes"
    )]
    OpenWrites { addr: SocketAddr },
    /// The SIGHUP handler could not be installed.
    #[error("cannot install the sighup handler: {0}")]
    Signal(std::io::Error),
    /// A blocking start-up task panicked.
    #[error("start-up task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// How to run besides the configuration.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// The configuration file, re-read by reloads for its notification sections and its target
    /// set, and watched; `None` for the built-in default (then only rules reload).
    pub source: Option<PathBuf>,
    /// Shadow mode: evaluate, route and record every notification, deliver none.
    pub dry_run: bool,
    /// Listen on a non-loopback address without a write token (`tocsin run --allow-open-writes`);
    /// refused otherwise.
    pub allow_open_writes: bool,
    /// The environment `*_env` settings are read from.
    pub env: HashMap<String, String>,
}

/// The entry point: see the module documentation.
pub struct Daemon;

/// A started daemon. Dropping it without [`Running::shutdown`] aborts nothing: call shutdown.
pub struct Running {
    addr: SocketAddr,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    manager: Arc<RuleManager>,
    shutdown_tx: watch::Sender<bool>,
    /// API queries' slots and root cancellation: shutdown cancels the queries in flight first
    queries: crate::server::QueryLimits,
    scrapes: tokio::task::JoinSet<()>,
    /// one sender per `remote_write` entry
    remote_writes: tokio::task::JoinSet<()>,
    sender: Option<JoinHandle<()>>,
    reloader: JoinHandle<()>,
    server: JoinHandle<std::io::Result<()>>,
    #[cfg(unix)]
    sighup: JoinHandle<()>,
}

impl Daemon {
    /// Starts the HTTP server (answering `/health/live` at once and 503 elsewhere until the rest
    /// is up), opens the store, starts every loop, and requests the first rule load.
    pub async fn start(
        cfg: Config,
        clock: Arc<dyn Clock>,
        opts: DaemonOptions,
    ) -> Result<Running, DaemonError> {
        // the checks `tocsin check` makes: secrets, tokens, rule file patterns
        cfg.preflight(opts.source.as_deref(), &opts.env)?;
        let config_dir = opts
            .source
            .as_ref()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_default();
        let sources = cfg.build_target_sources(&opts.env, &config_dir)?;
        let targets = sources.statics.clone();
        let started_ms = clock.now_ms();
        let store_path = cfg.storage.path.clone();
        let store_opts = StoreOptions {
            head_window_ms: cfg.storage.head_window.as_millis(),
            retention_ms: cfg.storage.retention.value.as_millis(),
            ..StoreOptions::default()
        };
        let listener = tokio::net::TcpListener::bind(&cfg.server.listen.value)
            .await
            .map_err(|source| DaemonError::Listen {
                addr: cfg.server.listen.value.clone(),
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| DaemonError::Listen {
                addr: cfg.server.listen.value.clone(),
                source,
            })?;
        if cfg.server.api_token_env.is_none() && !addr.ip().is_loopback() && !opts.allow_open_writes
        {
            return Err(DaemonError::OpenWrites { addr });
        }
        // the server answers from the start: `/health/live` at once, everything else 503 until
        // the store is open and every loop runs (a store with a million series takes seconds to
        // open, and an orchestrator would kill a process whose liveness check waited on it);
        // dropping `shutdown_tx` on an error below stops it
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let gate = crate::server::Gate::default();
        let server = {
            let mut server_shutdown = shutdown_rx.clone();
            let app = gate.router();
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = server_shutdown.changed().await;
                    })
                    .await
            })
        };
        let store = {
            let path = store_path.clone();
            tokio::task::spawn_blocking(move || Store::open(&path, store_opts)).await??
        };
        let store = Arc::new(store);
        tracing::info!(listen = %addr, store = %store_path.display(), targets = targets.len(), discovering = sources.jobs.len(), "tocsin started");

        let metrics = Arc::new(SelfMetrics::new(started_ms as f64 / 1000.0));
        let status = Arc::new(StatusBoard::default());
        let heartbeats = Arc::new(crate::ingest::push::Heartbeats::default());
        let scheduler = Scheduler {
            store: store.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            status: status.clone(),
            client: crate::ingest::client(),
            heartbeats: heartbeats.clone(),
        };
        // the static targets start at once; the discovery loop adds the discovered ones and
        // follows reloads
        let (targets_tx, targets_rx) = watch::channel(Arc::new(targets));
        let (sources_tx, sources_rx) = watch::channel(Arc::new(sources));
        let mut scrapes = scheduler.spawn_updatable(
            targets_rx,
            cfg.storage.flush_interval.value.0,
            shutdown_rx.clone(),
        );
        scrapes.spawn(
            crate::ingest::sd::Discovery {
                clock: clock.clone(),
                metrics: metrics.clone(),
                status: status.clone(),
                client: crate::ingest::client(),
            }
            .run(sources_rx, targets_tx, shutdown_rx.clone()),
        );
        // tocsin's own metrics, stored in-process (and the store's write counters kept current)
        let self_scrape = crate::ingest::selfscrape::SelfScrape {
            store: store.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            interval: cfg.scrape.interval.value.0,
            enabled: cfg.scrape.self_metrics,
            instance: addr.to_string(),
            sample_limit: cfg.scrape.sample_limit,
        };
        scrapes.spawn(self_scrape.run(shutdown_rx.clone()));

        // remote write: the store queues what the entries send (nothing without entries), one
        // sender each. A dry run writes nothing to any remote, as it delivers no notification:
        // a shadow instance's samples, recorded series and ALERTS would land in the storage the
        // live instance writes. Nothing is queued either (so a later live run sends only its own
        // samples), and the store is left unconfigured, so the positions and backlog of a live
        // run's entries stay for the next one.
        let remote_writes = {
            let mut entries = cfg.build_remote_writes(&opts.env)?;
            if opts.dry_run {
                if !entries.is_empty() {
                    tracing::warn!(
                        entries = entries.len(),
                        "dry run: remote write is off, nothing is queued or sent"
                    );
                }
                entries.clear();
            } else {
                let names: Vec<String> = entries.iter().map(|r| r.name.clone()).collect();
                let kinds = crate::remotewrite::queue_kinds(&entries);
                let s = store.clone();
                tokio::task::spawn_blocking(move || s.rw_configure(&names, kinds)).await??;
            }
            let mut set = tokio::task::JoinSet::new();
            for rw in entries {
                let writer = crate::remotewrite::RemoteWriter {
                    rw,
                    store: store.clone(),
                    clock: clock.clone(),
                    metrics: metrics.clone(),
                    external_labels: cfg.external_labels(),
                };
                set.spawn(writer.run(shutdown_rx.clone()));
            }
            set
        };

        // rules: built once notifications are (the manager is given the pipeline), persisted
        // alert state restored; the reload loop loads them
        let rule_config = RuleConfig {
            patterns: cfg.rule_file_patterns(),
            base: opts
                .source
                .as_ref()
                .and_then(|p| p.parent().map(PathBuf::from))
                .unwrap_or_default(),
            default_interval_ms: cfg.evaluation.interval.value.as_millis(),
            grace: cfg.startup_graces(),
            external_labels: Default::default(),
            external_url: format!("http://{addr}"),
            compat: cfg.evaluation.compat(),
            datasources: crate::rules::source::Datasources(
                cfg.build_datasources(&opts.env)?
                    .into_iter()
                    .map(|d| {
                        let name = d.name.clone();
                        let client = crate::datasource::Client::new(
                            d,
                            tokio::runtime::Handle::current(),
                            Some(metrics.clone()),
                        );
                        (
                            name,
                            Arc::new(client) as Arc<dyn crate::rules::source::RemoteEngine>,
                        )
                    })
                    .collect(),
            ),
        };
        let silences = {
            let store = store.clone();
            let now = clock.now_ms();
            Arc::new(
                tokio::task::spawn_blocking(move || {
                    crate::notify::silence::Silences::load(store, now)
                })
                .await??,
            )
        };
        let Notifications {
            reload: notify_reload,
            sender,
            pipeline,
        } = start_notifications(
            &cfg,
            &opts,
            addr,
            &store,
            &clock,
            &metrics,
            &silences,
            shutdown_rx.clone(),
        )
        .await?;
        let mut builder = RuleManager::builder(
            store.clone(),
            clock.clone(),
            metrics.clone(),
            rule_config.clone(),
        );
        if let Some((notifier, wakeup)) = pipeline {
            builder = builder.notifications(notifier, wakeup);
        }
        let manager = builder.build();
        {
            let m = manager.clone();
            match tokio::task::spawn_blocking(move || m.restore()).await? {
                Ok(n) if n > 0 => tracing::info!(alerts = n, "alert state restored"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "cannot read persisted alert state"),
            }
        }

        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
        let reloads = Arc::new(reload::ReloadHistory::default());
        let reloader = tokio::spawn(
            reload::Reloader {
                manager: manager.clone(),
                history: reloads.clone(),
                clock: clock.clone(),
                rules: rule_config,
                notify: notify_reload,
                env: opts.env.clone(),
                tx: reload_tx.clone(),
                source: opts.source.clone(),
                targets: opts.source.as_ref().map(|_| reload::TargetsReload {
                    sources: sources_tx,
                    base: config_dir.clone(),
                    started_with: reload::restart_settings(&cfg),
                }),
            }
            .run(reload_rx),
        );
        #[cfg(unix)]
        let sighup = reload::spawn_sighup(reload_tx.clone()).map_err(DaemonError::Signal)?;
        let _ = reload_tx.send(reload::ReloadRequest::startup()).await;

        let token = |field: &'static str, var: &Option<String>| match var {
            Some(var) => match opts.env.get(var) {
                Some(v) => Ok(Some(v.clone())),
                None => Err(DaemonError::TokenUnset {
                    field,
                    var: var.clone(),
                }),
            },
            None => Ok(None),
        };
        let api_token = token("api_token_env", &cfg.server.api_token_env)?;
        let read_token = token("api_read_token_env", &cfg.server.api_read_token_env)?;
        if api_token.is_none() {
            tracing::warn!(
                "server.api_token_env is not set: API writes (silences, reload) need no token"
            );
        }
        let queries = crate::server::QueryLimits::default();
        let app = crate::server::router(crate::server::AppState {
            status,
            metrics,
            clock: clock.clone(),
            started_ms,
            store_path: store_path.display().to_string(),
            reload: Some(reload_tx),
            reloads,
            rules: Some(manager.clone()),
            silences: Some(silences),
            store: Some(store.clone()),
            engine: crate::promql::Engine::new(crate::promql::EngineOptions {
                compat: cfg.evaluation.compat(),
                default_subquery_step_ms: cfg.evaluation.interval.value.as_millis(),
                // the API refuses more than 11,000 points per series itself (Prometheus's check)
                max_steps: crate::server::MAX_POINTS + 1,
                ..Default::default()
            }),
            queries: queries.clone(),
            api_token,
            read_token,
            push: Some(Arc::new(crate::ingest::push::Push {
                store: store.clone(),
                limits: crate::ingest::push::PushLimits {
                    sample_limit: cfg.scrape.sample_limit,
                    label_limits: crate::config::LabelLimits {
                        label_limit: cfg.scrape.label_limit,
                        label_name_length_limit: cfg.scrape.label_name_length_limit,
                        label_value_length_limit: cfg.scrape.label_value_length_limit,
                    },
                },
                heartbeats,
            })),
            push_body_limit: cfg.server.push_body_size_limit.value.0,
        });
        gate.open(app);
        Ok(Running {
            addr,
            store,
            clock,
            manager,
            shutdown_tx,
            queries,
            scrapes,
            remote_writes,
            sender,
            reloader,
            server,
            #[cfg(unix)]
            sighup,
        })
    }
}

/// What [`start_notifications`] started, for the rule manager, the reload loop and shutdown.
#[derive(Default)]
struct Notifications {
    /// what a reload needs to swap the notification sections (when they come from a file)
    reload: Option<reload::NotifyReload>,
    /// the sender task (none in dry-run)
    sender: Option<JoinHandle<()>>,
    /// the notifier and the sender's wake-up, for the rule manager's builder
    pipeline: Option<(Arc<Notifier>, Arc<tokio::sync::Notify>)>,
}

/// Builds routing, receivers and the notifier from the configuration's notification sections
/// and starts the sender (unless dry-run). Nothing when no route is configured.
#[allow(clippy::too_many_arguments)]
async fn start_notifications(
    cfg: &Config,
    opts: &DaemonOptions,
    addr: SocketAddr,
    store: &Arc<Store>,
    clock: &Arc<dyn Clock>,
    metrics: &Arc<SelfMetrics>,
    silences: &Arc<crate::notify::silence::Silences>,
    shutdown: watch::Receiver<bool>,
) -> Result<Notifications, DaemonError> {
    let Some(plan) = cfg.notify_plan() else {
        tracing::warn!("no route configured: alerts are tracked but no notification is sent");
        return Ok(Notifications::default());
    };
    let digest_interval_ms = cfg.evaluation.interval.value.as_millis();
    let crate::notify::setup::NotifyParts {
        routes,
        inhibitor,
        names,
        integrations,
    } = plan
        .parts(&opts.env, crate::ingest::client(), digest_interval_ms)
        .map_err(|e| DaemonError::Receivers(e.join("; ")))?;
    let notifier = {
        let store = store.clone();
        let names = names.clone();
        let url = format!("http://{addr}");
        tokio::task::spawn_blocking(move || Notifier::new(&store, routes, inhibitor, names, url))
            .await??
    };
    let wakeup = Arc::new(tokio::sync::Notify::new());
    let notifier = Arc::new(
        notifier
            .with_silences(silences.clone())
            .with_external_labels(cfg.external_labels())
            .with_metrics(metrics.clone())
            .with_dry_run(opts.dry_run),
    );
    let pipeline = Some((notifier.clone(), wakeup.clone()));
    let (integrations_tx, integrations_rx) = watch::channel(None);
    let notify_reload = opts.source.as_ref().map(|path| reload::NotifyReload {
        source: path.clone(),
        notifier,
        integrations: integrations_tx,
        current: reload::notify_sections(cfg),
        digest_interval_ms,
    });
    tracing::info!(
        receivers = plan.receivers.len(),
        integrations = integrations.len(),
        "notifications on"
    );
    if opts.dry_run {
        // what an earlier run queued stays queued for the next run that delivers
        tracing::warn!("dry run: notifications are recorded as shadow ones, none is sent");
        return Ok(Notifications {
            reload: notify_reload,
            sender: None,
            pipeline,
        });
    }
    let sender =
        crate::notify::sender::Sender::new(store.clone(), clock.clone(), integrations, names);
    let task = tokio::spawn(crate::notify::sender::run(
        sender,
        metrics.clone(),
        wakeup,
        integrations_rx,
        shutdown,
    ));
    Ok(Notifications {
        reload: notify_reload,
        sender: Some(task),
        pipeline,
    })
}

impl Running {
    /// The address the HTTP server listens on (the port chosen when the config says `:0`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The rule manager, for in-process tests and tools.
    pub fn rules(&self) -> &Arc<RuleManager> {
        &self.manager
    }

    /// The store, for in-process tests and tools.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Cancels API queries in flight (their blocking threads end within a few evaluation
    /// steps, so neither the HTTP server's graceful stop nor the runtime waits on one), stops
    /// rules, the sender (a delivery in flight finishes, bounded by its timeout; what is left
    /// stays queued), scrapes, flushes the store and stops the HTTP server.
    pub async fn shutdown(mut self) {
        tracing::info!("shutting down: stopping rules and scrapes, flushing the store");
        self.queries.shutdown();
        self.reloader.abort();
        #[cfg(unix)]
        self.sighup.abort();
        // trips every rule evaluation's token first, so no runaway evaluation holds shutdown
        self.manager.shutdown().await;
        let _ = self.shutdown_tx.send(true);
        if let Some(sender) = self.sender.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), sender).await;
        }
        while self.scrapes.join_next().await.is_some() {}
        // a request in flight finishes (bounded); what is unsent stays queued for the next start
        let remote_writes = async { while self.remote_writes.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(15), remote_writes)
            .await
            .is_err()
        {
            tracing::warn!("remote write did not stop within 15s");
        }
        let now = self.clock.now_ms();
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.close(now)).await {
            Ok(Ok(stats)) => tracing::info!(
                samples = stats.samples,
                chunks = stats.chunks,
                "store flushed"
            ),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "final store flush failed; samples since the last flush may be lost")
            }
            Err(e) => tracing::error!(error = %e, "final store flush task failed"),
        }
        match tokio::time::timeout(Duration::from_secs(5), self.server).await {
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "http server error"),
            Err(_) => tracing::warn!("http server did not stop within 5s"),
            _ => {}
        }
    }
}
