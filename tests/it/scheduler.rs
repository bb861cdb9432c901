//! The scheduler against real servers: a hanging target never delays another.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::common::*;
use tocsin::clock::{Clock, SystemClock};
use tocsin::config::Config;
use tocsin::ingest::scheduler::{Scheduler, StatusBoard};
use tocsin::labels::MatchOp;
use tocsin::selfmetrics::SelfMetrics;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_target_does_not_delay_another() {
    let target = FakeTarget::start().await;
    target.route("/hang", Reply::hang());
    let base = target.base();
    let yaml = format!(
        "targets:
  - name: fast
    metrics: {base}/metrics
    interval: 100ms
    timeout: 100ms
  - name: stuck
    metrics: {base}/hang
    interval: 1s
    timeout: 1s
"
    );
    let targets = Config::from_yaml(&yaml, std::path::Path::new("t.yml"))
        .unwrap()
        .build_targets(&Default::default())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_store(&dir));
    let status = Arc::new(StatusBoard::default());
    let scheduler = Scheduler {
        store: store.clone(),
        clock: Arc::new(SystemClock),
        metrics: Arc::new(SelfMetrics::new(0.0)),
        status: status.clone(),
        client: tocsin::ingest::client(),
        heartbeats: Default::default(),
    };
    let (tx, rx) = watch::channel(false);
    let mut tasks = scheduler.spawn(targets, Duration::from_secs(3600), rx);

    // wait (bounded) until the stuck target's first scrape has timed out
    let deadline = Deadline::within("stuck target never timed out", Duration::from_secs(20))
        .every(Duration::from_millis(20));
    let (err, stuck_at) = deadline
        .until_some(async || {
            status
                .endpoints
                .read()
                .unwrap()
                .get(&("stuck".to_string(), "metrics"))
                .and_then(|e| {
                    e.last_error
                        .clone()
                        .map(|err| (err, e.last_scrape_ms.unwrap()))
                })
        })
        .await;
    assert_eq!(err, "timeout after 1s");
    tx.send(true).unwrap();
    while tasks.join_next().await.is_some() {}

    // while the stuck scrape hung for a second, the fast target kept its 100 ms rhythm
    let up = store
        .select(
            &[
                matcher(MatchOp::Equal, "__name__", "up"),
                matcher(MatchOp::Equal, "job", "fast"),
            ],
            stuck_at,
            stuck_at + 999,
        )
        .unwrap();
    let during = up.first().map_or(0, |s| s.samples.len());
    assert!(
        during >= 3,
        "only {during} scrapes of the fast target during the hang"
    );
    assert!(up[0].samples.iter().all(|s| s.1 == 1.0));
    // the stuck target is down with its reason, its `up` is 0
    let stuck_up = store
        .latest(
            &[
                matcher(MatchOp::Equal, "job", "stuck"),
                matcher(MatchOp::Equal, "__name__", "up"),
            ],
            SystemClock.now_ms(),
            300_000,
        )
        .unwrap();
    assert_eq!(stuck_up[0].2, 0.0);
}
