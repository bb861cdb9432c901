//! Blocking work started from the daemon's async loops. [`blocking`] runs a closure on tokio's
//! blocking pool and turns a panic inside it into a logged, counted `None`, so one bad input or
//! bug costs one tick of one scrape endpoint or rule group, never the loop itself (before, a
//! panic inside `spawn_blocking` ended that endpoint's task for good, silently).

use crate::selfmetrics::{SelfMetrics, TaskLabels};

/// Waits for the loop's next tick; false once `shutdown` says stop (checked after the tick too,
/// so a tick and a shutdown arriving together stop the loop). The shape every daemon loop
/// (scrape endpoints, the store flush, rule groups, retired alerts) waits with.
pub async fn next_tick(
    ticker: &mut tokio::time::Interval,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = ticker.tick() => {}
        _ = shutdown.changed() => return false,
    }
    !*shutdown.borrow()
}

/// Runs `f` on a blocking thread. A panic is logged with `task` (the kind of loop: `scrape`,
/// `probe`, `flush`, `rule_group`) and `name` (the endpoint or group), counted in
/// `tocsin_task_panics_total{task}`, and returned as `None`.
pub async fn blocking<T, F>(
    metrics: &SelfMetrics,
    task: &'static str,
    name: &str,
    f: F,
) -> Option<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(task, name, error = %e, "blocking task panicked; the loop goes on at its next tick");
            metrics
                .task_panics
                .get_or_create(&TaskLabels { task })
                .inc();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_counted_and_returned_as_none() {
        let metrics = SelfMetrics::new(0.0);
        let got: Option<u8> = blocking(&metrics, "scrape", "t1", || panic!("boom")).await;
        assert_eq!(got, None);
        let ok = blocking(&metrics, "scrape", "t1", || 7).await;
        assert_eq!(ok, Some(7));
        let count = metrics
            .task_panics
            .get_or_create(&TaskLabels { task: "scrape" })
            .get();
        assert_eq!(count, 1);
        assert!(
            metrics
                .encode()
                .contains("tocsin_task_panics_total{task=\"scrape\"} 1")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn next_tick_ticks_until_shutdown() {
        let mut ticker = tokio::time::interval(std::time::Duration::from_secs(1));
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        assert!(next_tick(&mut ticker, &mut rx).await);
        assert!(next_tick(&mut ticker, &mut rx).await);
        tx.send(true).unwrap();
        assert!(!next_tick(&mut ticker, &mut rx).await);
    }
}
