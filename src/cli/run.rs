//! `tocsin run`: the daemon.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;

use super::{init_logging, load_config};
use tocsin::clock::{Clock, SystemClock};
use tocsin::config::{Config, LogFormat};
use tocsin::ingest::scheduler::{Scheduler, StatusBoard};
use tocsin::selfmetrics::SelfMetrics;
use tocsin::store::{Store, StoreOptions};

pub(crate) async fn daemon(
    config: Option<PathBuf>,
    log_format: Option<LogFormat>,
    dry_run: bool,
) -> Result<()> {
    let (mut cfg, source) = load_config(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    cfg.apply_env(std::env::vars())
        .map_err(|e| anyhow::anyhow!(e))?;
    if source.is_none() {
        cfg.add_self_target_if_empty();
    }
    init_logging(log_format.unwrap_or(cfg.log.format), &cfg.log.level)?;
    match &source {
        Some(p) => tracing::info!(config = %p.display(), "configuration loaded"),
        None => tracing::info!("no configuration file: running the built-in default"),
    }
    let targets = cfg.build_targets()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let started_ms = clock.now_ms();
    let store_path = cfg.storage.path.clone();
    let opts = StoreOptions {
        head_window_ms: cfg.storage.head_window.as_millis(),
        retention_ms: cfg.storage.retention.as_millis(),
    };
    let store = {
        let path = store_path.clone();
        tokio::task::spawn_blocking(move || Store::open(&path, opts))
            .await
            .context("store open task")??
    };
    let store = Arc::new(store);
    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
    tracing::info!(listen = %cfg.server.listen, store = %store_path.display(), targets = targets.len(), "tocsin started");

    let metrics = Arc::new(SelfMetrics::new(started_ms as f64 / 1000.0));
    let status = Arc::new(StatusBoard::default());
    let scheduler = Scheduler {
        store: store.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        status: status.clone(),
        client: tocsin::ingest::scrape::client(),
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = scheduler.spawn(targets, cfg.storage.flush_interval.0, shutdown_rx.clone());

    // rules: restore persisted alert state, load, evaluate; reload on file change, SIGHUP, API
    let rule_config = tocsin::rules::manager::RuleConfig {
        patterns: cfg.rule_files.clone(),
        base: source
            .as_ref()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_default(),
        default_interval_ms: cfg.evaluation.interval.as_millis(),
        grace: cfg
            .targets
            .iter()
            .map(|t| (t.name.value.clone(), t.startup_grace.as_millis()))
            .collect(),
        external_labels: Default::default(),
        external_url: format!("http://{}", cfg.server.listen),
        compat: cfg.evaluation.compat(),
    };
    let manager = tocsin::rules::manager::RuleManager::new(
        store.clone(),
        clock.clone(),
        metrics.clone(),
        rule_config.clone(),
    );
    {
        let m = manager.clone();
        match tokio::task::spawn_blocking(move || m.restore()).await? {
            Ok(n) if n > 0 => tracing::info!(alerts = n, "alert state restored"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot read persisted alert state"),
        }
    }
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    // set once notifications are built below; a reload then re-reads their sections
    let notify_reload: Arc<std::sync::Mutex<Option<NotifyReload>>> = Default::default();
    let reloads = Arc::new(tocsin::daemon::reload::ReloadHistory::default());
    let reloader = tokio::spawn(reload_loop(
        manager.clone(),
        reloads.clone(),
        clock.clone(),
        rule_config,
        notify_reload.clone(),
        reload_tx.clone(),
        reload_rx,
    ));
    #[cfg(unix)]
    let _sighup = tocsin::daemon::reload::spawn_sighup(reload_tx.clone())
        .context("cannot install the SIGHUP handler")?;
    let _ = reload_tx
        .send(tocsin::daemon::reload::ReloadRequest::signal())
        .await;

    let silences = {
        let store = store.clone();
        let now = clock.now_ms();
        Arc::new(
            tokio::task::spawn_blocking(move || {
                tocsin::notify::silence::Silences::load(store, now)
            })
            .await??,
        )
    };
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let sender_task = match cfg.notify_plan() {
        Some(plan) => {
            let tocsin::notify::setup::NotifyParts {
                routes,
                inhibitor,
                names,
                integrations,
            } = plan
                .parts(
                    &env,
                    tocsin::ingest::scrape::client(),
                    cfg.evaluation.interval.as_millis(),
                )
                .map_err(|e| anyhow::anyhow!("receivers: {}", e.join("; ")))?;
            let notifier = {
                let store = store.clone();
                let names = names.clone();
                let url = format!("http://{}", cfg.server.listen);
                tokio::task::spawn_blocking(move || {
                    tocsin::notify::pipeline::Notifier::new(&store, routes, inhibitor, names, url)
                })
                .await??
            };
            let wakeup = Arc::new(tokio::sync::Notify::new());
            manager.set_delivery_wakeup(wakeup.clone());
            let notifier = Arc::new(
                notifier
                    .with_silences(silences.clone())
                    .with_metrics(metrics.clone())
                    .with_dry_run(dry_run),
            );
            manager.set_notifier(notifier.clone());
            let (integrations_tx, integrations_rx) = watch::channel(None);
            if let Some(path) = &source {
                *notify_reload.lock().expect("notify reload lock") = Some(NotifyReload {
                    source: path.clone(),
                    notifier,
                    integrations: integrations_tx,
                    current: notify_sections(&cfg),
                    digest_interval_ms: cfg.evaluation.interval.as_millis(),
                });
            }
            tracing::info!(
                receivers = plan.receivers.len(),
                integrations = integrations.len(),
                "notifications on"
            );
            let sender = tocsin::notify::sender::Sender::new(
                store.clone(),
                clock.clone(),
                integrations,
                names,
            );
            if dry_run {
                // what an earlier run queued stays queued for the next run that delivers
                tracing::warn!("dry run: notifications are recorded as shadow ones, none is sent");
                None
            } else {
                Some(tokio::spawn(tocsin::notify::sender::run(
                    sender,
                    metrics.clone(),
                    wakeup,
                    integrations_rx,
                    shutdown_rx.clone(),
                )))
            }
        }
        None => {
            tracing::warn!("no route configured: alerts are tracked but no notification is sent");
            None
        }
    };
    let api_token = match &cfg.server.api_token_env {
        Some(var) => Some(
            std::env::var(var)
                .with_context(|| format!("server.api_token_env names {var}, which is not set"))?,
        ),
        None => None,
    };
    if api_token.is_none() {
        tracing::warn!(
            "server.api_token_env is not set: API writes (silences, reload) need no token"
        );
    }
    let read_token =
        match &cfg.server.api_read_token_env {
            Some(var) => Some(std::env::var(var).with_context(|| {
                format!("server.api_read_token_env names {var}, which is not set")
            })?),
            None => None,
        };
    let app = tocsin::server::router(tocsin::server::AppState {
        status,
        metrics,
        clock: clock.clone(),
        started_ms,
        store_path: store_path.display().to_string(),
        reload: Some(reload_tx),
        reloads,
        rules: Some(manager.clone()),
        silences: Some(silences.clone()),
        store: Some(store.clone()),
        engine: tocsin::promql::Engine::new(tocsin::promql::EngineOptions {
            compat: cfg.evaluation.compat(),
            default_subquery_step_ms: cfg.evaluation.interval.as_millis(),
            // the API refuses more than 11,000 points per series itself (Prometheus's check)
            max_steps: tocsin::server::MAX_POINTS + 1,
            ..Default::default()
        }),
        api_token,
        read_token,
    });
    let mut server_shutdown = shutdown_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_shutdown.changed().await;
            })
            .await
    });

    wait_for_signal().await;
    tracing::info!("shutting down: stopping rules and scrapes, flushing the store");
    reloader.abort();
    manager.stop().await;
    if let Some(sender) = sender_task {
        // a delivery in flight finishes (bounded by its timeout); what is left stays queued
        let _ = shutdown_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(15), sender).await;
    }
    let _ = shutdown_tx.send(true);
    while tasks.join_next().await.is_some() {}
    let now = clock.now_ms();
    let closed = tokio::task::spawn_blocking(move || store.close(now))
        .await
        .context("store close task")?;
    match closed {
        Ok(stats) => tracing::info!(
            samples = stats.samples,
            chunks = stats.chunks,
            "store flushed"
        ),
        Err(e) => {
            tracing::error!(error = %e, "final store flush failed; samples since the last flush may be lost")
        }
    }
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "http server error"),
        Err(_) => tracing::warn!("http server did not stop within 5s"),
        _ => {}
    }
    Ok(())
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("can install a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// What a reload needs to swap the notification sections of the configuration file.
pub(crate) struct NotifyReload {
    source: PathBuf,
    notifier: Arc<tocsin::notify::pipeline::Notifier>,
    integrations: watch::Sender<Option<tocsin::notify::sender::Integrations>>,
    /// the sections in force, to tell whether a reload changed them
    current: String,
    digest_interval_ms: i64,
}

/// The notification sections of `cfg`, compared across reloads.
pub(crate) fn notify_sections(cfg: &Config) -> String {
    serde_json::json!([
        cfg.route,
        cfg.receivers,
        cfg.inhibit_rules,
        cfg.time_intervals
    ])
    .to_string()
}

/// Re-reads the configuration file and swaps routing, inhibition and receivers when their
/// sections changed; every error keeps the old ones. Other sections (targets, storage, server)
/// need a restart.
pub(crate) fn reload_notifications(r: &mut NotifyReload) -> Result<bool, Vec<String>> {
    let cfg = Config::load(&r.source).map_err(|e| vec![e.to_string()])?;
    let sections = notify_sections(&cfg);
    if sections == r.current {
        return Ok(false);
    }
    let Some(plan) = cfg.notify_plan() else {
        return Err(vec![format!(
            "{}: route removed: turning notifications off needs a restart",
            r.source.display()
        )]);
    };
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let parts = plan
        .parts(&env, tocsin::ingest::scrape::client(), r.digest_interval_ms)
        .map_err(|e| {
            e.into_iter()
                .map(|e| format!("{}: {e}", r.source.display()))
                .collect::<Vec<_>>()
        })?;
    r.notifier
        .set_routing(parts.routes, parts.inhibitor, parts.names.clone());
    let _ = r.integrations.send(Some((parts.integrations, parts.names)));
    r.current = sections;
    Ok(true)
}

pub(crate) async fn reload_loop(
    manager: Arc<tocsin::rules::manager::RuleManager>,
    history: Arc<tocsin::daemon::reload::ReloadHistory>,
    clock: Arc<dyn Clock>,
    config: tocsin::rules::manager::RuleConfig,
    notify: Arc<std::sync::Mutex<Option<NotifyReload>>>,
    tx: tokio::sync::mpsc::Sender<tocsin::daemon::reload::ReloadRequest>,
    mut rx: tokio::sync::mpsc::Receiver<tocsin::daemon::reload::ReloadRequest>,
) {
    use tocsin::daemon::reload::{ReloadOutcome, watch_rule_files};
    let mut watcher = None;
    while let Some(req) = rx.recv().await {
        tracing::info!(cause = %req.cause, "reloading rules");
        let report = manager.reload().await;
        history.record(tocsin::daemon::reload::ReloadRecord {
            t: clock.now_ms(),
            cause: req.cause.kind(),
            ok: report.ok,
            errors: report.errors.clone(),
        });
        if report.ok || watcher.is_none() {
            // watch the files in use, and the directories of glob patterns for new files
            let files = manager.rules().files.clone();
            let dirs: Vec<PathBuf> = config
                .patterns
                .iter()
                .filter(|p| p.contains(['*', '?', '[']))
                .filter_map(|p| config.base.join(p).parent().map(PathBuf::from))
                .filter(|d| d.is_dir())
                .collect();
            match watch_rule_files(&files, &dirs, tx.clone()) {
                Ok(w) => watcher = Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch rule files; SIGHUP and POST /-/reload still reload")
                }
            }
        }
        let mut errors = report.errors;
        if let Some(r) = notify.lock().expect("notify reload lock").as_mut() {
            match reload_notifications(r) {
                Ok(true) => tracing::info!("notification routing and receivers reloaded"),
                Ok(false) => {}
                Err(e) => {
                    for line in &e {
                        tracing::error!(
                            error = line,
                            "notification configuration not reloaded, the old one stays"
                        );
                    }
                    errors.extend(e);
                }
            }
        }
        req.respond(if errors.is_empty() {
            ReloadOutcome::succeeded()
        } else {
            ReloadOutcome::failed(errors)
        });
    }
}
