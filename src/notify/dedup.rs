//! The dedup stage: whether a group's current state needs a notification, as Alertmanager's
//! `DedupStage.needsUpdate` decides it, with the reason named. Pure: the notification log entry
//! and `now` are arguments.

use std::collections::BTreeSet;

use super::Change;

/// What the last notification of a group (to one receiver) said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogEntry {
    /// fingerprints of the alerts firing then
    pub firing: BTreeSet<u64>,
    /// fingerprints of the alerts resolved then
    pub resolved: BTreeSet<u64>,
    /// when it was sent (ms)
    pub at: i64,
    /// how many repeats (`repeat interval elapsed`, `resend delay elapsed`) of this same group
    /// state it was, 0 for the first notification of a state: part of the idempotency key, so
    /// each reminder has its own key, the same on both replicas of an HA pair
    pub repeats: u32,
}

/// Decides whether to notify about a group now. `firing` and `resolved` are the fingerprints of
/// the group's alerts in each state; `repeat_ms` is the route's `repeat_interval`.
pub fn decide(
    prev: Option<&LogEntry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    send_resolved: bool,
    repeat_ms: i64,
    now: i64,
) -> Option<Change> {
    let Some(prev) = prev else {
        // never notified: only when something fires (a group that fired and resolved unseen
        // within one interval is nothing the receiver knows about)
        return (!firing.is_empty()).then_some(Change::FirstNotification);
    };
    if !firing.is_subset(&prev.firing) {
        return Some(Change::NewAlerts);
    }
    if firing.is_empty() {
        // every alert the receiver heard about is resolved: notify regardless of send_resolved,
        // so the log forgets them (the sender leaves resolved alerts out when it must)
        return (!prev.firing.is_empty()).then_some(Change::AllResolved);
    }
    if send_resolved && !resolved.is_subset(&prev.resolved) {
        return Some(Change::NewResolved);
    }
    (prev.at < now - repeat_ms).then_some(Change::RepeatIntervalElapsed)
}

/// Decides whether to forward an `alertmanager` receiver's alerts now, as Prometheus's notifier
/// decides per alert (`needsSending`), over the receiver's one group: every alert routed to it,
/// firing and resolved (kept 15 minutes). Sent when something is new (an alert firing or resolved
/// that the last forward did not list so), and again once `resend_ms` (`resend_delay`) has passed
/// since the last forward while any alert is left, resolved ones included: Alertmanager resolves
/// an alert whose `endsAt` passes without news, and a replica that joined its cluster late learns
/// of the resolutions. Unlike [`decide`], a group seen for the first time with resolved alerts
/// only is forwarded too (Alertmanager takes a resolution it never saw firing without notifying).
/// Prometheus resends once the delay has passed strictly (`LastSentAt + resendDelay < now`), which
/// with an evaluation interval equal to the delay resends every other evaluation; this resends at
/// the delay.
pub fn decide_forward(
    prev: Option<&LogEntry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    resend_ms: i64,
    now: i64,
) -> Option<Change> {
    if firing.is_empty() && resolved.is_empty() {
        return None;
    }
    let Some(prev) = prev else {
        return Some(Change::FirstNotification);
    };
    if !firing.is_subset(&prev.firing) {
        return Some(Change::NewAlerts);
    }
    if !resolved.is_subset(&prev.resolved) {
        return Some(if firing.is_empty() {
            Change::AllResolved
        } else {
            Change::NewResolved
        });
    }
    (now - prev.at >= resend_ms).then_some(Change::ResendDelayElapsed)
}

/// One alert of a group as its idempotency key counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyedAlert {
    /// the fingerprint of the alert's labels without `external_labels` (those a replica added)
    pub fingerprint: u64,
    pub resolved: bool,
    /// the time of that state: the firing time (`startsAt`), or the resolve time (`endsAt`)
    pub at: i64,
}

/// A key naming one group state for one receiver: what a receiver can dedup a repeated delivery
/// on. Within one tocsin, the at-least-once case (a crash between sending and logging) resends
/// the stored row, so a retry always carries the key of its first attempt. Across the two
/// replicas of an HA pair, the key is built only from what both compute alike when they see the
/// same data: the group key and the alerts' fingerprints without `external_labels`, the alerts'
/// own firing and resolve times (evaluation slots are wall-clock aligned, the same on both), and
/// the count of repeats of that state, never the time a replica happened to flush the group; so
/// the same notification from both replicas carries the same key, and a changed group state (an
/// alert firing, resolving, or firing again later) a new one.
pub fn idempotency_key(
    receiver: &str,
    group_key: &str,
    alerts: &[KeyedAlert],
    repeats: u32,
) -> String {
    let mut alerts = alerts.to_vec();
    alerts.sort_unstable();
    let mut buf = format!("{receiver}\u{0}{group_key}\u{0}{repeats}\u{0}");
    for a in &alerts {
        buf.push_str(&crate::labels::format_fingerprint(a.fingerprint));
        buf.push_str(if a.resolved { ":r:" } else { ":f:" });
        buf.push_str(&a.at.to_string());
        buf.push(',');
    }
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(buf.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fingerprints named by letters (the label set `{alertname="a"}` for `a`).
    fn set(items: &[&str]) -> BTreeSet<u64> {
        items
            .iter()
            .map(|s| crate::labels::Labels::from_pairs([("alertname", *s)]).fingerprint())
            .collect()
    }

    const H: i64 = 3_600_000;

    #[test]
    fn named_reasons_as_alertmanager_decides() {
        let none = set(&[]);
        assert_eq!(
            decide(None, &set(&["a"]), &none, true, 4 * H, 0),
            Some(Change::FirstNotification)
        );
        assert_eq!(decide(None, &none, &set(&["a"]), true, 4 * H, 0), None);
        let prev = LogEntry {
            firing: set(&["a"]),
            resolved: none.clone(),
            at: 0,
            repeats: 0,
        };
        assert_eq!(
            decide(Some(&prev), &set(&["a"]), &none, true, 4 * H, H),
            None
        );
        assert_eq!(
            decide(Some(&prev), &set(&["a", "b"]), &none, true, 4 * H, H),
            Some(Change::NewAlerts)
        );
        assert_eq!(
            decide(Some(&prev), &none, &set(&["a"]), false, 4 * H, H),
            Some(Change::AllResolved)
        );
        assert_eq!(
            decide(Some(&prev), &set(&["a"]), &none, true, 4 * H, 4 * H + 1),
            Some(Change::RepeatIntervalElapsed)
        );
        let two = LogEntry {
            firing: set(&["a", "b"]),
            resolved: none.clone(),
            at: 0,
            repeats: 0,
        };
        assert_eq!(
            decide(Some(&two), &set(&["a"]), &set(&["b"]), true, 4 * H, H),
            Some(Change::NewResolved)
        );
        assert_eq!(
            decide(Some(&two), &set(&["a"]), &set(&["b"]), false, 4 * H, H),
            None
        );
        // fired and resolved between two notifications of an empty log: nothing to say
        let empty = LogEntry {
            firing: none.clone(),
            resolved: set(&["x"]),
            at: 0,
            repeats: 0,
        };
        assert_eq!(
            decide(Some(&empty), &none, &set(&["x", "y"]), true, 4 * H, H),
            None
        );
    }

    /// Each case: the last forward (firing, resolved, at), the group now (firing, resolved), the
    /// time, and the decision, with a resend delay of one minute.
    #[test]
    fn forwarding_sends_what_is_new_and_resends_every_resend_delay() {
        const M: i64 = 60_000;
        type Case<'a> = (
            &'a str,
            Option<(&'a [&'a str], &'a [&'a str], i64)>,
            (&'a [&'a str], &'a [&'a str]),
            i64,
            Option<Change>,
        );
        let cases: &[Case] = &[
            // nothing routed: nothing to say
            ("empty", None, (&[], &[]), 0, None),
            // the first forward, firing
            (
                "first",
                None,
                (&["a"], &[]),
                0,
                Some(Change::FirstNotification),
            ),
            // a resolution never forwarded firing (after a restart that lost nothing but a log
            // entry): forwarded, Alertmanager takes it without notifying
            (
                "first resolved",
                None,
                (&[], &["a"]),
                0,
                Some(Change::FirstNotification),
            ),
            // unchanged within the delay: nothing
            ("quiet", Some((&["a"], &[], 0)), (&["a"], &[]), M - 1, None),
            // unchanged at the delay: resent (endsAt moves on)
            (
                "resend",
                Some((&["a"], &[], 0)),
                (&["a"], &[]),
                M,
                Some(Change::ResendDelayElapsed),
            ),
            // a new alert does not wait for the delay
            (
                "new",
                Some((&["a"], &[], 0)),
                (&["a", "b"], &[]),
                1,
                Some(Change::NewAlerts),
            ),
            // a resolution does not wait either
            (
                "resolved",
                Some((&["a", "b"], &[], 0)),
                (&["a"], &["b"]),
                1,
                Some(Change::NewResolved),
            ),
            (
                "all resolved",
                Some((&["a"], &[], 0)),
                (&[], &["a"]),
                1,
                Some(Change::AllResolved),
            ),
            // resolved alerts are resent too while they are kept (15 minutes)
            (
                "resolved resend",
                Some((&[], &["a"], 0)),
                (&[], &["a"]),
                M,
                Some(Change::ResendDelayElapsed),
            ),
            (
                "resolved quiet",
                Some((&[], &["a"], 0)),
                (&[], &["a"]),
                M - 1,
                None,
            ),
            // an alert gone from the group (silenced, or its resolution aged out) is no news
            ("gone", Some((&["a", "b"], &[], 0)), (&["a"], &[]), 1, None),
        ];
        for (name, prev, (firing, resolved), now, want) in cases {
            let prev = prev.map(|(f, r, at)| LogEntry {
                firing: set(f),
                resolved: set(r),
                at,
                repeats: 0,
            });
            let got = decide_forward(prev.as_ref(), &set(firing), &set(resolved), M, *now);
            assert_eq!(got, *want, "{name}");
        }
    }

    /// Each case: a group state that must get the same key as the first, or another.
    #[test]
    fn idempotency_key_names_the_group_state_and_nothing_else() {
        let fp =
            |name: &str| crate::labels::Labels::from_pairs([("alertname", name)]).fingerprint();
        let f = |name: &str, at| KeyedAlert {
            fingerprint: fp(name),
            resolved: false,
            at,
        };
        let r = |name: &str, at| KeyedAlert {
            fingerprint: fp(name),
            resolved: true,
            at,
        };
        let k1 = idempotency_key("ops", "g", &[f("a", 5), f("b", 7)], 0);
        // the same state: the same key, whatever the order the alerts come in
        assert_eq!(k1, idempotency_key("ops", "g", &[f("b", 7), f("a", 5)], 0));
        // another state, receiver, group or repeat: another key
        for (why, other) in [
            (
                "one resolved",
                idempotency_key("ops", "g", &[f("a", 5), r("b", 9)], 0),
            ),
            (
                "fired again later",
                idempotency_key("ops", "g", &[f("a", 5), f("b", 8)], 0),
            ),
            (
                "one alert fewer",
                idempotency_key("ops", "g", &[f("a", 5)], 0),
            ),
            (
                "receiver",
                idempotency_key("oncall", "g", &[f("a", 5), f("b", 7)], 0),
            ),
            (
                "group",
                idempotency_key("ops", "h", &[f("a", 5), f("b", 7)], 0),
            ),
            (
                "a reminder",
                idempotency_key("ops", "g", &[f("a", 5), f("b", 7)], 1),
            ),
        ] {
            assert_ne!(k1, other, "{why}");
        }
    }
}
