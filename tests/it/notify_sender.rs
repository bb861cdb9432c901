//! The outbox sender over a real store with a manual clock: retries across a 10-minute outage
//! deliver everything once and in order; a permanent failure goes to the fallback; the breaker
//! opens and closes again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tocsin::clock::{Clock, ManualClock};
use tocsin::notify::dedup::LogEntry;
use tocsin::notify::sender::{BreakerState, DeliverFn, Integration, Sender};
use tocsin::notify::{Change, DeliveryError, Notification};
use tocsin::store::{EvaluationRows, OutboxEntry};

use crate::common::open_store;

fn notification(key: &str) -> Notification {
    Notification {
        receiver: "ops".into(),
        group_key: format!("{{}}:{{alertname=\"{key}\"}}"),
        group_labels: Default::default(),
        alerts: vec![tocsin::notify::AlertSnapshot {
            labels: [("alertname".to_string(), key.to_string())].into(),
            annotations: Default::default(),
            status: tocsin::notify::AlertState::Firing,
            starts_at: 0,
            ends_at: None,
            generator_url: String::new(),
            fingerprint: key.into(),
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
    Arc::new(move |n: Notification| {
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
        labels: &std::collections::BTreeMap<String, String>,
        _now: i64,
    ) -> Vec<tocsin::notify::dispatch::RouteTarget> {
        let name = labels.get("alertname").cloned().unwrap_or_default();
        vec![tocsin::notify::dispatch::RouteTarget {
            receiver: "ops".into(),
            group_key: format!("{{}}:{{alertname={name:?}}}"),
            group_labels: [("alertname".to_string(), name)].into(),
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
    let deliver: DeliverFn = Arc::new(move |n: Notification| {
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
    assert_eq!(payload.alerts[0].labels["alertname"], "Shadow");

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
