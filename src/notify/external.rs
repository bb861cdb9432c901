//! Alerts posted by other systems (`POST /api/v2/alerts`, what Prometheus, vmalert or a script
//! sends an Alertmanager), kept as Alertmanager keeps them: an alert without `endsAt` fires until
//! `RESOLVE_TIMEOUT_MS` after its last post (the sender re-sends it while it lasts), one with
//! `endsAt` resolves then; a post that overlaps the alert already held merges into it
//! (earliest `startsAt`; the younger post's `endsAt` unless an explicit older one is later).
//! They enter the same pipeline as tocsin's own alerts (inhibit, silence, route, group, dedup)
//! as [`Alert`]s of the pseudo-group [`EXTERNAL_GROUP`]. Held in memory only, as Alertmanager
//! holds alerts: after a restart a sender's next re-send brings them back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::labels::Labels;
use crate::rules::tracker::{Alert, AlertStatus, RESOLVED_RETENTION_MS};

/// The group name external alerts carry in the API and the UI.
pub const EXTERNAL_GROUP: &str = "tocsin:external";

/// Alertmanager's default `resolve_timeout`: how long an alert posted without `endsAt` fires
/// after its last post.
pub const RESOLVE_TIMEOUT_MS: i64 = 5 * 60_000;

/// At most this many alerts are held (active and recently resolved); a post that would exceed
/// it is refused whole.
pub const MAX_EXTERNAL_ALERTS: usize = 10_000;

/// At most this many labels an alert, and this many annotations.
pub const MAX_LABELS: usize = 64;

/// At most this many bytes in one label or annotation value.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;

/// One alert as posted (`PostableAlert`); times in ms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PostedAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
}

/// Why a post was refused; nothing of it was taken.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExternalAlertError {
    #[error("alert {index}: {reason}")]
    Invalid { index: usize, reason: String },
    #[error("too many alerts: at most {MAX_EXTERNAL_ALERTS} are held")]
    TooMany,
}

#[derive(Debug, Clone)]
struct Held {
    labels: Labels,
    annotations: BTreeMap<String, String>,
    starts_at: i64,
    ends_at: i64,
    /// `endsAt` was not given: set by the resolve timeout
    timeout: bool,
    updated_at: i64,
}

impl Held {
    fn resolved(&self, now: i64) -> bool {
        self.ends_at <= now
    }

    /// Alertmanager's `Alert.Merge`: `o` is the younger post.
    fn merge(&self, o: Held, now: i64) -> Held {
        let mut res = o.clone();
        res.starts_at = self.starts_at.min(o.starts_at);
        if o.resolved(now) {
            if self.resolved(now) && self.ends_at > o.ends_at {
                res.ends_at = self.ends_at;
            }
        } else if self.ends_at > o.ends_at && !self.timeout {
            res.ends_at = self.ends_at;
        }
        res
    }

    fn to_alert(&self, now: i64) -> Alert {
        let resolved = self.resolved(now);
        Alert {
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            status: if resolved {
                AlertStatus::Inactive
            } else {
                AlertStatus::Firing
            },
            active_at: self.starts_at,
            fired_at: Some(self.starts_at),
            resolved_at: resolved.then_some(self.ends_at),
            keep_firing_since: None,
            value: 0.0,
            source_key: String::new(),
            flap_history: 0,
            flap_len: 0,
            flapping: false,
        }
    }
}

/// The alerts other systems posted, by fingerprint.
#[derive(Debug, Default)]
pub struct ExternalAlerts {
    held: Mutex<HashMap<u64, Held>>,
    /// woken after each accepted post, so the pipeline need not wait for its next tick
    pub posted: tokio::sync::Notify,
}

fn check(i: usize, a: &PostedAlert) -> Result<(), ExternalAlertError> {
    let bad = |reason: String| ExternalAlertError::Invalid { index: i, reason };
    if a.labels.is_empty() {
        return Err(bad("at least one label pair required".into()));
    }
    if a.labels.len() > MAX_LABELS || a.annotations.len() > MAX_LABELS {
        return Err(bad(format!("more than {MAX_LABELS} labels or annotations")));
    }
    for (name, value) in &a.labels {
        if !crate::labels::valid_label_name(name) {
            return Err(bad(format!("invalid label name {name:?}")));
        }
        if value.is_empty() {
            return Err(bad(format!("empty value of label {name:?}")));
        }
    }
    for (name, value) in a.labels.iter().chain(&a.annotations) {
        if value.len() > MAX_VALUE_BYTES {
            return Err(bad(format!(
                "value of {name:?} longer than {MAX_VALUE_BYTES} bytes"
            )));
        }
    }
    for name in a.annotations.keys() {
        if !crate::labels::valid_label_name(name) {
            return Err(bad(format!("invalid annotation name {name:?}")));
        }
    }
    if let (Some(s), Some(e)) = (a.starts_at, a.ends_at)
        && e < s
    {
        return Err(bad("start time must be before end time".into()));
    }
    Ok(())
}

impl ExternalAlerts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a post at `now`, all or nothing: every alert is checked first (labels, sizes,
    /// times), as Alertmanager does. Returns how many alerts are held afterwards.
    pub fn post(&self, now: i64, alerts: Vec<PostedAlert>) -> Result<usize, ExternalAlertError> {
        for (i, a) in alerts.iter().enumerate() {
            check(i, a)?;
        }
        let mut held = self.held.lock().expect("external alerts lock");
        let incoming: Vec<(u64, Held)> = alerts
            .into_iter()
            .map(|a| {
                // Alertmanager: no start is the end if given, else now; no end is now + timeout
                let starts_at = a.starts_at.or(a.ends_at).unwrap_or(now);
                let (ends_at, timeout) = match a.ends_at {
                    Some(e) => (e, false),
                    None => (now.saturating_add(RESOLVE_TIMEOUT_MS), true),
                };
                let labels = Labels::from_pairs(a.labels);
                (
                    labels.fingerprint(),
                    Held {
                        labels,
                        annotations: a.annotations,
                        starts_at,
                        ends_at,
                        timeout,
                        updated_at: now,
                    },
                )
            })
            .collect();
        let new = incoming
            .iter()
            .filter(|(fp, _)| !held.contains_key(fp))
            .count();
        if held.len() + new > MAX_EXTERNAL_ALERTS {
            return Err(ExternalAlertError::TooMany);
        }
        for (fp, alert) in incoming {
            let merged = match held.get(&fp) {
                // merged only when the activity ranges overlap (Alertmanager's mem provider)
                Some(old)
                    if (alert.ends_at > old.starts_at && alert.ends_at < old.ends_at)
                        || (alert.starts_at > old.starts_at && alert.starts_at < old.ends_at) =>
                {
                    if alert.updated_at < old.updated_at {
                        alert.merge(old.clone(), now)
                    } else {
                        old.merge(alert, now)
                    }
                }
                _ => alert,
            };
            held.insert(fp, merged);
        }
        let n = held.len();
        drop(held);
        self.posted.notify_one();
        Ok(n)
    }

    /// The held alerts as the pipeline sees them at `now` (firing, or resolved at their
    /// `endsAt`); those resolved longer than the pipeline keeps resolved alerts are dropped (counted
    /// from the last post at the earliest, so an end posted far in the past is still notified).
    pub fn alerts(&self, now: i64) -> Vec<Alert> {
        let mut held = self.held.lock().expect("external alerts lock");
        held.retain(|_, h| now - h.ends_at.max(h.updated_at) <= RESOLVED_RETENTION_MS);
        let mut out: Vec<Alert> = held.values().map(|h| h.to_alert(now)).collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Whether no alert is held.
    pub fn is_empty(&self) -> bool {
        self.held.lock().expect("external alerts lock").is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posted(name: &str, starts: Option<i64>, ends: Option<i64>) -> PostedAlert {
        PostedAlert {
            labels: BTreeMap::from([("alertname".to_string(), name.to_string())]),
            starts_at: starts,
            ends_at: ends,
            ..Default::default()
        }
    }

    #[test]
    fn without_ends_at_an_alert_fires_until_the_resolve_timeout_after_its_last_post() {
        let x = ExternalAlerts::new();
        x.post(1_000, vec![posted("A", None, None)]).unwrap();
        let a = &x.alerts(1_000)[0];
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!(a.fired_at, Some(1_000));
        // re-sent before the timeout: still firing past the first post's timeout, same start
        x.post(200_000, vec![posted("A", Some(1_000), None)])
            .unwrap();
        let a = &x.alerts(1_000 + RESOLVE_TIMEOUT_MS + 1)[0];
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!(a.fired_at, Some(1_000));
        // no more posts: resolved at the last post's timeout
        let end = 200_000 + RESOLVE_TIMEOUT_MS;
        let a = &x.alerts(end)[0];
        assert_eq!(a.status, AlertStatus::Inactive);
        assert_eq!(a.resolved_at, Some(end));
        // and forgotten once resolved longer than the pipeline keeps resolved alerts
        assert!(x.alerts(end + RESOLVED_RETENTION_MS + 1).is_empty());
        // an end posted long past is kept from the post on, so receivers hear it resolved
        x.post(10_000_000, vec![posted("B", None, Some(5))])
            .unwrap();
        let b = &x.alerts(10_000_000)[0];
        assert_eq!((b.status, b.resolved_at), (AlertStatus::Inactive, Some(5)));
    }

    #[test]
    fn an_explicit_end_resolves_and_a_later_post_after_it_starts_a_new_alert() {
        let x = ExternalAlerts::new();
        x.post(0, vec![posted("A", Some(0), None)]).unwrap();
        x.post(60_000, vec![posted("A", Some(0), Some(60_000))])
            .unwrap();
        let a = &x.alerts(60_000)[0];
        assert_eq!(
            (a.status, a.resolved_at),
            (AlertStatus::Inactive, Some(60_000))
        );
        // a post starting after the end does not overlap: a new incident, its own start
        x.post(120_000, vec![posted("A", Some(120_000), None)])
            .unwrap();
        let a = &x.alerts(120_000)[0];
        assert_eq!((a.status, a.fired_at), (AlertStatus::Firing, Some(120_000)));
    }

    #[test]
    fn a_bad_alert_refuses_the_whole_post_naming_it() {
        let x = ExternalAlerts::new();
        let mut bad_name = posted("A", None, None);
        bad_name.labels.insert("0bad".into(), "v".into());
        let cases = [
            (
                PostedAlert::default(),
                "alert 1: at least one label pair required",
            ),
            (bad_name, "alert 1: invalid label name \"0bad\""),
            (
                posted("A", Some(10), Some(5)),
                "alert 1: start time must be before end time",
            ),
        ];
        for (bad, want) in cases {
            let err = x
                .post(0, vec![posted("ok", None, None), bad])
                .unwrap_err()
                .to_string();
            assert_eq!(err, want);
            assert!(x.is_empty(), "nothing of a refused post is taken");
        }
        let mut huge = posted("A", None, None);
        huge.annotations
            .insert("d".into(), "x".repeat(MAX_VALUE_BYTES + 1));
        assert!(x.post(0, vec![huge]).is_err());
    }

    #[test]
    fn the_number_held_is_bounded() {
        let x = ExternalAlerts::new();
        let many: Vec<PostedAlert> = (0..MAX_EXTERNAL_ALERTS)
            .map(|i| posted(&format!("A{i}"), None, None))
            .collect();
        x.post(0, many).unwrap();
        // re-posting a held alert is fine, one more is not
        x.post(1, vec![posted("A0", None, None)]).unwrap();
        assert_eq!(
            x.post(1, vec![posted("new", None, None)]),
            Err(ExternalAlertError::TooMany)
        );
    }
}
