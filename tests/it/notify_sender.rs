//! The outbox sender over a real store with a manual clock: retries across a 10-minute outage
//! deliver everything once and in order; a permanent failure goes to the fallback; the breaker
//! opens and closes again; a webhook that hangs does not delay another receiver (the daemon's
//! loop against real HTTP servers on 127.0.0.1); shutdown starts no new attempt.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tocsin::clock::{Clock, ManualClock};
use tocsin::notify::dedup::LogEntry;
use tocsin::notify::sender::{BreakerState, DeliverFn, Integration, Sender};
use tocsin::notify::{Change, DeliveryError, Notification};
use tocsin::store::{EvaluationRows, OutboxEntry};

use crate::common::{Deadline, open_store};

fn notification(key: &str) -> Notification {
    Notification {
        receiver: "ops".into(),
        group_key: format!("{{}}:{{alertname=\"{key}\"}}"),
        group_labels: Default::default(),
        alerts: vec![tocsin::notify::AlertSnapshot {
            labels: tocsin::labels::Labels::from_pairs([("alertname", key)]),
            annotations: Default::default(),
            status: tocsin::notify::AlertState::Firing,
            starts_at: 0,
            ends_at: None,
            generator_url: String::new(),
            fingerprint: tocsin::labels::Labels::from_pairs([("alertname", key)]).fingerprint(),
        }],
        external_url: String::new(),
        idempotency_key: format!("idem-{key}"),
        change: Change::FirstNotification,
        changed: Default::default(),
    }
}

fn enqueue(store: &tocsin::store::Store, integration: &str, n: &Notification, now: i64) {
    store
        .commit_evaluation(EvaluationRows {
            outbox: vec![OutboxEntry {
                receiver: integration.into(),
                group_key: n.group_key.clone(),
                idempotency_key: n.idempotency_key.clone(),
                payload: n.to_json(),
                created: now,
                log_entry: LogEntry::default().to_json(),
                log_receiver: "ops".into(),
            }],
            ..Default::default()
        })
        .unwrap();
    store.flush(now).unwrap();
}

/// One pipeline tick at `now` committed as the rule manager commits an evaluation's: the
/// outbox rows and shadow notifications in one transaction.
fn tick(
    n: &tocsin::notify::pipeline::Notifier,
    alerts: &[tocsin::rules::tracker::Alert],
    shadow: &[tocsin::rules::tracker::Alert],
    store: &tocsin::store::Store,
    now: i64,
) {
    let ticked = n.tick(alerts, shadow, now, true);
    store
        .commit_evaluation(EvaluationRows {
            outbox: n.outbox_rows(&ticked.sent, now),
            shadow: n.shadow_rows(&ticked.shadow, now),
            ..Default::default()
        })
        .unwrap();
}

/// A receiver that fails (transiently or permanently) until `down_until`, recording deliveries.
fn receiver(
    clock: Arc<ManualClock>,
    down_until: i64,
    permanent: bool,
    got: Arc<Mutex<Vec<String>>>,
) -> DeliverFn {
    Arc::new(move |n: Notification, _| {
        let (clock, got) = (clock.clone(), got.clone());
        Box::pin(async move {
            if clock.now_ms() < down_until {
                return Err(if permanent {
                    DeliveryError::Permanent("HTTP 400: bad request".into())
                } else {
                    DeliveryError::Transient("HTTP 500".into())
                });
            }
            got.lock().unwrap().push(n.idempotency_key.clone());
            Ok(())
        })
    })
}

#[tokio::test]
async fn a_ten_minute_outage_delivers_everything_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_store(&dir));
    let clock = Arc::new(ManualClock::new(0));
    let got = Arc::new(Mutex::new(Vec::new()));
    let integrations = HashMap::from([(
        "ops/webhook".to_string(),
        Integration {
            deliver: receiver(clock.clone(), 600_000, false, got.clone()),
            fallback: None,
        },
    )]);
    let mut sender = Sender::new(store.clone(), clock.clone(), integrations, HashMap::new());
    for k in ["a", "b", "c"] {
        enqueue(&store, "ops/webhook", &notification(k), 0);
    }
    let mut opened = false;
    let mut passes = 0;
    while got.lock().unwrap().len() < 3 {
        sender.pass().await;
        opened |= matches!(sender.breaker("ops/webhook"), BreakerState::Open { .. });
        clock.advance(1000);
        passes += 1;
        assert!(passes < 2000, "not delivered within the simulated hour");
    }
    assert_eq!(*got.lock().unwrap(), ["idem-a", "idem-b", "idem-c"]);
    assert!(opened, "the breaker opened during the outage");
    assert_eq!(sender.breaker("ops/webhook"), BreakerState::Closed);
    // nothing left, nothing sent twice
    for _ in 0..120 {
        sender.pass().await;
        clock.advance(1000);
    }
    assert_eq!(got.lock().unwrap().len(), 3);
    assert_eq!(store.outbox_depth().unwrap(), 0);
    // the outage bounded the retry rate: backoff and the breaker, not one attempt a second
    assert!(passes >= 600);
}

#[tokio::test]
async fn a_permanent_failure_is_not_retried_and_goes_to_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_store(&dir));
    let clock = Arc::new(ManualClock::new(0));
    let ops = Arc::new(Mutex::new(Vec::new()));
    let pager = Arc::new(Mutex::new(Vec::new()));
    let integrations = HashMap::from([
        (
            "ops/webhook".to_string(),
            Integration {
                deliver: receiver(clock.clone(), i64::MAX, true, ops.clone()),
                fallback: Some("pager".into()),
            },
        ),
        (
            "pager/webhook".to_string(),
            Integration {
                deliver: receiver(clock.clone(), 0, false, pager.clone()),
                fallback: None,
            },
        ),
    ]);
    let receivers = HashMap::from([("pager".to_string(), vec!["pager/webhook".to_string()])]);
    let mut sender = Sender::new(store.clone(), clock.clone(), integrations, receivers);
    enqueue(&store, "ops/webhook", &notification("a"), 0);
    let first = sender.pass().await;
    assert_eq!(first.failed.len(), 1);
    assert!(first.failed[0].1.contains("400"));
    let second = sender.pass().await;
    assert_eq!(
        second.delivered,
        [("pager/webhook".to_string(), "idem-a/fallback".to_string())]
    );
    // the fallback receiver is handed the row's key, not the failed delivery's
    assert_eq!(*pager.lock().unwrap(), ["idem-a/fallback"]);
    clock.advance(3_600_000);
    let later = sender.pass().await;
    assert!(
        later.delivered.is_empty() && later.failed.is_empty(),
        "never retried"
    );
    assert!(ops.lock().unwrap().is_empty());
}

/// One fixed route: every alert to `ops`, grouped by alertname, group_wait 30s.
struct OneRoute;
impl tocsin::notify::dispatch::Routes for OneRoute {
    fn routes(
        &self,
        labels: &tocsin::labels::Labels,
        _now: i64,
    ) -> Vec<tocsin::notify::dispatch::RouteTarget> {
        let name = labels.get("alertname").unwrap_or_default();
        vec![tocsin::notify::dispatch::RouteTarget {
            receiver: "ops".into(),
            group_key: format!("{{}}:{{alertname={name:?}}}"),
            group_labels: tocsin::labels::Labels::from_pairs([("alertname", name)]),
            group_wait_ms: 30_000,
            group_interval_ms: 300_000,
            repeat_interval_ms: 4 * 3_600_000,
            send_resolved: true,
            ..Default::default()
        }]
    }
}

#[tokio::test]
async fn tracker_states_become_notifications_once_across_a_restart() {
    use tocsin::labels::Labels;
    use tocsin::notify::pipeline::{NoInhibition, Notifier};
    use tocsin::rules::tracker::{Candidate, RuleState, Timing};

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_store(&dir));
    let integrations = HashMap::from([("ops".to_string(), vec!["ops/webhook".to_string()])]);
    let notifier = |store: &tocsin::store::Store| {
        Notifier::new(
            store,
            Arc::new(OneRoute),
            Arc::new(NoInhibition),
            integrations.clone(),
            "http://tocsin".into(),
        )
        .unwrap()
    };
    let n = notifier(&store);
    let mut state = RuleState::default();
    let cand = || Candidate {
        labels: Labels::from_pairs([("alertname", "Down"), ("instance", "a")]),
        annotations: Default::default(),
        value: 1.0,
        source_key: String::new(),
    };
    let none = Default::default();
    // fires at 0; group_wait holds it until 30 s
    for t in [0, 15_000, 30_000, 45_000] {
        state.update(vec![cand()], &none, Timing::default(), t);
        let alerts: Vec<_> = state.alerts.values().cloned().collect();
        tick(&n, &alerts, &[], &store, t);
        store.flush(t).unwrap();
    }
    assert_eq!(
        store.outbox_depth().unwrap(),
        1,
        "one notification for the firing alert"
    );

    // a restart: the log is durable, so the same state is not notified again
    drop(n);
    let n = notifier(&store);
    for t in [60_000, 90_000, 120_000] {
        state.update(vec![cand()], &none, Timing::default(), t);
        let alerts: Vec<_> = state.alerts.values().cloned().collect();
        tick(&n, &alerts, &[], &store, t);
        store.flush(t).unwrap();
    }
    assert_eq!(store.outbox_depth().unwrap(), 1);

    // it resolves: the next flush of the group sends the resolution
    for t in [150_000, 450_000] {
        state.update(vec![], &none, Timing::default(), t);
        let alerts: Vec<_> = state.alerts.values().cloned().collect();
        tick(&n, &alerts, &[], &store, t);
        store.flush(t).unwrap();
    }
    let clock = Arc::new(ManualClock::new(450_000));
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    let deliver: DeliverFn = Arc::new(move |n: Notification, _| {
        let seen = seen.clone();
        Box::pin(async move {
            seen.lock().unwrap().push((n.change, n.alerts[0].status));
            Ok(())
        })
    });
    let mut sender = Sender::new(
        store.clone(),
        clock,
        HashMap::from([(
            "ops/webhook".to_string(),
            Integration {
                deliver,
                fallback: None,
            },
        )]),
        HashMap::new(),
    );
    sender.pass().await;
    assert_eq!(
        *got.lock().unwrap(),
        [
            (
                Change::FirstNotification,
                tocsin::notify::AlertState::Firing
            ),
            (Change::AllResolved, tocsin::notify::AlertState::Resolved)
        ]
    );
}

#[tokio::test]
async fn shadow_notifications_are_recorded_and_never_queued() {
    use tocsin::labels::Labels;
    use tocsin::notify::pipeline::{NoInhibition, Notifier};
    use tocsin::rules::tracker::{Candidate, RuleState, Timing};

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_store(&dir));
    let integrations = HashMap::from([("ops".to_string(), vec!["ops/webhook".to_string()])]);
    let notifier = |dry_run: bool| {
        Notifier::new(
            &store,
            Arc::new(OneRoute),
            Arc::new(NoInhibition),
            integrations.clone(),
            "http://tocsin".into(),
        )
        .unwrap()
        .with_dry_run(dry_run)
    };
    let cand = |name: &str| Candidate {
        labels: Labels::from_pairs([("alertname", name), ("instance", "a")]),
        annotations: Default::default(),
        value: 1.0,
        source_key: String::new(),
    };
    let none = Default::default();
    let (mut real, mut dry) = (RuleState::default(), RuleState::default());

    // a dry_run rule beside an ordinary one: only the ordinary one reaches the outbox
    let n = notifier(false);
    for t in [0, 30_000] {
        real.update(vec![cand("Real")], &none, Timing::default(), t);
        dry.update(vec![cand("Shadow")], &none, Timing::default(), t);
        let a: Vec<_> = real.alerts.values().cloned().collect();
        let s: Vec<_> = dry.alerts.values().cloned().collect();
        tick(&n, &a, &s, &store, t);
        store.flush(t).unwrap();
    }
    assert_eq!(store.outbox_depth().unwrap(), 1, "the real alert is queued");
    let shadow = store.sent(10, Some("shadow")).unwrap();
    assert_eq!(shadow.len(), 1, "{shadow:?}");
    assert_eq!(shadow[0].integration, "ops/webhook");
    assert!(shadow[0].group_key.contains("Shadow"), "{shadow:?}");
    let payload = Notification::from_json(&shadow[0].payload).unwrap();
    assert_eq!(payload.alerts[0].labels.get("alertname"), Some("Shadow"));

    // --dry-run: everything is shadow, nothing is queued
    let dir = tempfile::tempdir().unwrap();
    let store2 = Arc::new(open_store(&dir));
    let n = Notifier::new(
        &store2,
        Arc::new(OneRoute),
        Arc::new(NoInhibition),
        integrations.clone(),
        "http://tocsin".into(),
    )
    .unwrap()
    .with_dry_run(true);
    let mut all = RuleState::default();
    for t in [0, 30_000] {
        all.update(vec![cand("Real")], &none, Timing::default(), t);
        let a: Vec<_> = all.alerts.values().cloned().collect();
        tick(&n, &a, &[], &store2, t);
        store2.flush(t).unwrap();
    }
    assert_eq!(store2.outbox_depth().unwrap(), 0);
    assert_eq!(store2.sent(10, Some("shadow")).unwrap().len(), 1);
    assert!(
        store2.nflog().unwrap().is_empty(),
        "shadow notifications leave the real notification log alone"
    );
}

// ---------------------------------------------------------------------------------------------
// the daemon's loop (`sender::run`) with real webhooks

/// A webhook integration as `notify::setup` builds it, POSTing to `addr` with `timeout`.
fn webhook_integration(addr: std::net::SocketAddr, timeout: std::time::Duration) -> Integration {
    let cfg = tocsin::notify::webhook::WebhookConfig {
        url: format!("http://{addr}/hook"),
        secret: None,
        timeout,
        max_alerts: 0,
        send_resolved: true,
        body: None,
        signature: Default::default(),
    };
    let client = tocsin::ingest::client();
    Integration {
        deliver: Arc::new(move |n, attempt| {
            let (client, cfg) = (client.clone(), cfg.clone());
            Box::pin(
                async move { tocsin::notify::webhook::send(&client, &cfg, &n, attempt.now).await },
            )
        }),
        fallback: None,
    }
}

/// A webhook that answers every POST with 200, counting them.
async fn answering_webhook() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

/// A webhook that accepts the connection, reads the request and never answers, counting
/// requests; it hangs up on every connection once `true` is sent on the returned channel.
async fn hanging_webhook() -> (
    std::net::SocketAddr,
    Arc<AtomicUsize>,
    tokio::sync::watch::Sender<bool>,
) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let (hang_up, hang_up_rx) = tokio::sync::watch::channel(false);
    let counter = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (counter, mut hang_up) = (counter.clone(), hang_up_rx.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                let _ = hang_up.wait_for(|h| *h).await;
                drop(socket);
            });
        }
    });
    (addr, requests, hang_up)
}

#[tokio::test]
async fn an_idle_sender_delivers_as_soon_as_an_evaluation_wakes_it() {
    use std::time::Duration;
    use tocsin::notify::sender::run;

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_store(&dir));
    let (addr, hits) = answering_webhook().await;
    let integrations = HashMap::from([(
        "ops/webhook".to_string(),
        webhook_integration(addr, Duration::from_secs(5)),
    )]);
    let clock = Arc::new(ManualClock::new(1_000));
    let sender = Sender::new(store.clone(), clock, integrations, HashMap::new());
    let wakeup = Arc::new(tokio::sync::Notify::new());
    let (_reload_tx, reload_rx) = tokio::sync::watch::channel(None);
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run(
        sender,
        Arc::new(tocsin::selfmetrics::SelfMetrics::new(0.0)),
        wakeup.clone(),
        reload_rx,
        shutdown_rx,
    ));
    // the empty outbox makes the loop wait long (5 s) between passes; each row queued by an
    // evaluation wakes it, so each goes out well within that
    for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
        enqueue(&store, "ops/webhook", &notification(key), 0);
        wakeup.notify_one();
        let deadline = Deadline::new(
            "the woken sender delivers",
            Duration::from_secs(2),
            Duration::from_millis(10),
        );
        while hits.load(Ordering::SeqCst) < i + 1 {
            deadline.tick().await;
        }
    }
    assert_eq!(store.outbox_depth().unwrap(), 0);
    shutdown_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_hanging_webhook_does_not_delay_another_receivers_delivery() {
    use std::time::Duration;
    use tocsin::notify::sender::run;

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_store(&dir));
    let (dead_addr, dead_requests, hang_up) = hanging_webhook().await;
    let (live_addr, live_hits) = answering_webhook().await;
    let integrations = HashMap::from([
        (
            "dead/webhook".to_string(),
            webhook_integration(dead_addr, Duration::from_secs(30)),
        ),
        (
            "live/webhook".to_string(),
            webhook_integration(live_addr, Duration::from_secs(30)),
        ),
    ]);
    // the dead receiver's row is the older one: a sender taking rows one at a time starts there
    enqueue(&store, "dead/webhook", &notification("a"), 0);
    enqueue(&store, "live/webhook", &notification("b"), 0);
    let clock = Arc::new(ManualClock::new(1_000));
    let sender = Sender::new(store.clone(), clock, integrations, HashMap::new());
    let metrics = Arc::new(tocsin::selfmetrics::SelfMetrics::new(0.0));
    let (_reload_tx, reload_rx) = tokio::sync::watch::channel(None);
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run(
        sender,
        metrics.clone(),
        Arc::new(tokio::sync::Notify::new()),
        reload_rx,
        shutdown_rx,
    ));

    // well inside the dead webhook's 30 s timeout
    let deadline = Deadline::new(
        "the live receiver's delivery recorded while the dead one hangs",
        Duration::from_secs(10),
        Duration::from_millis(20),
    );
    loop {
        let delivered = store.sent(10, Some("delivered")).unwrap();
        if delivered.iter().any(|r| r.integration == "live/webhook")
            && dead_requests.load(Ordering::SeqCst) == 1
        {
            break;
        }
        deadline.tick().await;
    }
    assert_eq!(live_hits.load(Ordering::SeqCst), 1);
    let delivered = store.sent(10, Some("delivered")).unwrap();
    assert_eq!(delivered.len(), 1, "only the live receiver: {delivered:?}");
    assert_eq!(delivered[0].idempotency_key, "idem-b");
    let queued = store.outbox_due(i64::MAX, 10).unwrap();
    assert_eq!(
        (
            queued.len(),
            queued[0].receiver.as_str(),
            queued[0].attempts
        ),
        (1, "dead/webhook", 0),
        "the dead receiver's request is still in flight"
    );

    // shutdown: the attempt in flight ends (here: the server hangs up) and is recorded, the
    // loop returns, the row stays queued for the next start
    shutdown_tx.send(true).unwrap();
    hang_up.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the loop ends once the attempt in flight ends")
        .unwrap();
    let queued = store.outbox_due(i64::MAX, 10).unwrap();
    assert_eq!(
        (
            queued.len(),
            queued[0].receiver.as_str(),
            queued[0].attempts
        ),
        (1, "dead/webhook", 1),
        "the failed attempt is recorded as a retry"
    );
    assert_eq!(dead_requests.load(Ordering::SeqCst), 1, "no new attempt");
    let text = metrics.encode();
    assert!(
        text.contains(
            r#"tocsin_notifications_total{integration="live/webhook",result="delivered"} 1"#
        ),
        "{text}"
    );
    // each attempt's duration, delivered or not; the delay from queueing only for a delivery
    for line in [
        r#"tocsin_notification_latency_seconds_count{integration="live/webhook"} 1"#,
        r#"tocsin_notification_latency_seconds_count{integration="dead/webhook"} 1"#,
        r#"tocsin_notification_delivery_delay_seconds_count{integration="live/webhook"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    assert!(
        !text.contains(
            r#"tocsin_notification_delivery_delay_seconds_count{integration="dead/webhook"}"#
        ),
        "a failed attempt is no delivery: {text}"
    );
}

#[tokio::test]
async fn after_shutdown_no_attempt_starts_and_the_rest_stays_queued() {
    use std::time::Duration;
    use tocsin::notify::sender::run;

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_store(&dir));
    for k in ["a", "b"] {
        enqueue(&store, "ops/webhook", &notification(k), 0);
    }
    // each attempt is counted, then waits for a release
    let attempts = Arc::new(AtomicUsize::new(0));
    let (release, release_rx) = tokio::sync::watch::channel(false);
    let counter = attempts.clone();
    let deliver: DeliverFn = Arc::new(move |_n, _| {
        let (counter, mut release) = (counter.clone(), release_rx.clone());
        Box::pin(async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = release.wait_for(|r| *r).await;
            Ok(())
        })
    });
    let integrations = HashMap::from([(
        "ops/webhook".to_string(),
        Integration {
            deliver,
            fallback: None,
        },
    )]);
    let sender = Sender::new(
        store.clone(),
        Arc::new(ManualClock::new(1_000)),
        integrations,
        HashMap::new(),
    );
    let (_reload_tx, reload_rx) = tokio::sync::watch::channel(None);
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run(
        sender,
        Arc::new(tocsin::selfmetrics::SelfMetrics::new(0.0)),
        Arc::new(tokio::sync::Notify::new()),
        reload_rx,
        shutdown_rx,
    ));
    let deadline = Deadline::new(
        "the first attempt starts",
        Duration::from_secs(10),
        Duration::from_millis(10),
    );
    while attempts.load(Ordering::SeqCst) == 0 {
        deadline.tick().await;
    }
    // shutdown while the first attempt is in flight, then let it finish
    shutdown_tx.send(true).unwrap();
    release.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the loop ends once the attempt in flight ends")
        .unwrap();
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "the second never started"
    );
    let delivered = store.sent(10, Some("delivered")).unwrap();
    assert_eq!(
        delivered
            .iter()
            .map(|r| r.idempotency_key.as_str())
            .collect::<Vec<_>>(),
        ["idem-a"],
        "the attempt in flight is recorded"
    );
    let queued = store.outbox_due(i64::MAX, 10).unwrap();
    assert_eq!(
        queued
            .iter()
            .map(|r| (r.idempotency_key.as_str(), r.attempts))
            .collect::<Vec<_>>(),
        [("idem-b", 0)],
        "the rest stays queued, untried"
    );
}

#[tokio::test]
async fn a_store_error_after_delivery_is_counted_and_keeps_the_row_queued_in_order() {
    use std::time::Duration;
    use tocsin::notify::sender::{Held, StoreOp, run};

    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_store(&dir);
        for k in ["a", "b"] {
            enqueue(&store, "ops/webhook", &notification(k), 0);
        }
        store.close(0).unwrap();
    }
    // reads work, every write fails (SQLite refuses writes on a read-only connection)
    let store =
        Arc::new(tocsin::store::Store::open_read_only(&dir.path().join("tocsin.db")).unwrap());
    let clock = Arc::new(ManualClock::new(1_000));
    let got = Arc::new(Mutex::new(Vec::new()));
    let integrations = || {
        HashMap::from([(
            "ops/webhook".to_string(),
            Integration {
                deliver: receiver(clock.clone(), 0, false, got.clone()),
                fallback: None,
            },
        )])
    };
    let mut sender = Sender::new(store.clone(), clock.clone(), integrations(), HashMap::new());
    let report = sender.pass().await;
    assert_eq!(report.store_errors, [StoreOp::MarkDelivered]);
    assert_eq!(
        report.held,
        [("ops/webhook".to_string(), Held::StoreError)],
        "b waits behind a, whose outcome is not recorded"
    );
    assert_eq!(*got.lock().unwrap(), ["idem-a"]);
    assert_eq!(store.outbox_depth().unwrap(), 2, "a is sent again later");

    // the daemon's loop counts it in the self-metrics
    let metrics = Arc::new(tocsin::selfmetrics::SelfMetrics::new(0.0));
    let (_reload_tx, reload_rx) = tokio::sync::watch::channel(None);
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let sender = Sender::new(store.clone(), clock.clone(), integrations(), HashMap::new());
    let task = tokio::spawn(run(
        sender,
        metrics.clone(),
        Arc::new(tokio::sync::Notify::new()),
        reload_rx,
        shutdown_rx,
    ));
    let deadline = Deadline::new(
        "the store error counted",
        Duration::from_secs(10),
        Duration::from_millis(10),
    );
    while !metrics
        .encode()
        .contains(r#"tocsin_notification_store_errors_total{operation="mark_delivered"}"#)
    {
        deadline.tick().await;
    }
    shutdown_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}
