//! The scheduler against real servers: a hanging target never delays another.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use tocsin::clock::{Clock, SystemClock};
use tocsin::labels::MatchOp;

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
    let running = start_scheduler(&yaml, Arc::new(SystemClock));
    let (store, status) = (running.store.clone(), running.status.clone());

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
    running.stop().await;

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
