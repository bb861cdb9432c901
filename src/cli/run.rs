//! `tocsin run`: the daemon. Loads the configuration (file, `./tocsin.yml` or the built-in
//! default), applies `TOCSIN_*` overrides, sets up logging, starts [`tocsin::daemon::Daemon`]
//! and stops it on SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::{init_logging, load_config};
use tocsin::clock::{Clock, SystemClock};
use tocsin::config::LogFormat;
use tocsin::daemon::{Daemon, DaemonOptions};

pub(crate) async fn daemon(
    config: Option<PathBuf>,
    log_format: Option<LogFormat>,
    dry_run: bool,
    allow_open_writes: bool,
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
    tocsin::sys::exit_clearly_on_bus_error(&cfg.storage.path);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let opts = DaemonOptions {
        source,
        dry_run,
        allow_open_writes,
        env: std::env::vars().collect(),
    };
    let running = Daemon::start(cfg, clock, opts).await?;
    wait_for_signal()
        .await
        .context("cannot install the signal handlers")?;
    running.shutdown().await;
    Ok(())
}

/// Caps glibc's malloc arenas ([`tocsin::sys::limit_malloc_arenas`]) unless the environment
/// sets `MALLOC_ARENA_MAX`, glibc's own variable, which then wins, and sets its mmap and trim
/// thresholds ([`tocsin::sys::tune_malloc_thresholds`]). Before the runtime starts.
pub(crate) fn tune_malloc() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        tocsin::sys::limit_malloc_arenas();
    }
    tocsin::sys::tune_malloc_thresholds(
        std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none(),
        std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none(),
    );
}

async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
