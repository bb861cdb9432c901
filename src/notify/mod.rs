//! Notifications: what the alert tracker's state becomes on its way to people. Stages, in order:
//! inhibit → silence → route → group → dedup → deliver (retry) → log. This module holds the types
//! the stages share; `route` (routing tree, inhibition, time intervals), `webhook` and `email`
//! (receivers) are separate files.

pub mod dedup;
pub mod dispatch;
pub mod email;
pub mod pipeline;
pub mod receivers;
pub mod recorder;
pub mod route;
pub mod sender;
pub mod setup;
pub mod silence;
pub mod webhook;

use std::collections::{BTreeMap, BTreeSet};

/// One alert as a receiver sees it (Alertmanager's webhook `alerts[]` element).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSnapshot {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `firing` or `resolved`
    pub status: AlertState,
    /// ms since the epoch
    pub starts_at: i64,
    /// ms since the epoch; None while firing
    pub ends_at: Option<i64>,
    pub generator_url: String,
    /// hex fingerprint of the label set (stable)
    pub fingerprint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One message to one receiver: a group of alerts in one state of the group.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub receiver: String,
    /// Alertmanager's group key, e.g. `{}/{severity="page"}:{alertname="X"}`
    pub group_key: String,
    pub group_labels: BTreeMap<String, String>,
    pub alerts: Vec<AlertSnapshot>,
    /// the daemon's URL for links
    pub external_url: String,
    /// stable for this group state: a receiver can drop a second delivery with the same key
    pub idempotency_key: String,
    /// what changed since the last notification of this group (for subjects and digests)
    pub change: Change,
    /// fingerprints of the alerts new since the last notification of this group: firing ones
    /// it did not list as firing, resolved ones it did not list as resolved (everything, for a
    /// first notification); the email's "new" section, the rest firing is "still firing"
    pub changed: BTreeSet<String>,
}

/// Why this notification is sent (dedup's decision, as a named reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    FirstNotification,
    NewAlerts,
    NewResolved,
    AllResolved,
    RepeatIntervalElapsed,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryError {
    /// worth retrying: connection refused or reset, timeout, HTTP 5xx or 429, SMTP 4xx
    Transient(String),
    /// not worth retrying: other HTTP 4xx, SMTP 5xx, authentication rejected, bad address
    Permanent(String),
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveryError::Transient(m) => write!(f, "transient: {m}"),
            DeliveryError::Permanent(m) => write!(f, "permanent: {m}"),
        }
    }
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::FirstNotification => "first notification",
            Change::NewAlerts => "new alerts in group",
            Change::NewResolved => "new resolved",
            Change::AllResolved => "all resolved",
            Change::RepeatIntervalElapsed => "repeat interval elapsed",
        }
    }

    fn parse(s: &str) -> Option<Change> {
        Some(match s {
            "first notification" => Change::FirstNotification,
            "new alerts in group" => Change::NewAlerts,
            "new resolved" => Change::NewResolved,
            "all resolved" => Change::AllResolved,
            "repeat interval elapsed" => Change::RepeatIntervalElapsed,
            _ => return None,
        })
    }
}

impl Notification {
    /// The outbox form (JSON), read back by [`Notification::from_json`].
    pub fn to_json(&self) -> String {
        let alerts: Vec<serde_json::Value> = self
            .alerts
            .iter()
            .map(|a| {
                serde_json::json!({
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "status": a.status.as_str(),
                    "starts_at": a.starts_at,
                    "ends_at": a.ends_at,
                    "generator_url": a.generator_url,
                    "fingerprint": a.fingerprint,
                })
            })
            .collect();
        serde_json::json!({
            "receiver": self.receiver,
            "group_key": self.group_key,
            "group_labels": self.group_labels,
            "alerts": alerts,
            "external_url": self.external_url,
            "idempotency_key": self.idempotency_key,
            "change": self.change.as_str(),
            "changed": self.changed,
        })
        .to_string()
    }

    /// Reads an outbox payload; None when it is not one this version wrote.
    pub fn from_json(text: &str) -> Option<Notification> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let map = |x: &serde_json::Value| -> Option<BTreeMap<String, String>> {
            serde_json::from_value(x.clone()).ok()
        };
        let alerts = v
            .get("alerts")?
            .as_array()?
            .iter()
            .map(|a| {
                Some(AlertSnapshot {
                    labels: map(a.get("labels")?)?,
                    annotations: map(a.get("annotations")?)?,
                    status: match a.get("status")?.as_str()? {
                        "firing" => AlertState::Firing,
                        _ => AlertState::Resolved,
                    },
                    starts_at: a.get("starts_at")?.as_i64()?,
                    ends_at: a.get("ends_at").and_then(|e| e.as_i64()),
                    generator_url: a.get("generator_url")?.as_str()?.to_string(),
                    fingerprint: a.get("fingerprint")?.as_str()?.to_string(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Notification {
            receiver: s("receiver")?,
            group_key: s("group_key")?,
            group_labels: map(v.get("group_labels")?)?,
            alerts,
            external_url: s("external_url")?,
            idempotency_key: s("idempotency_key")?,
            change: Change::parse(&s("change")?)?,
            changed: v
                .get("changed")
                .and_then(|c| serde_json::from_value(c.clone()).ok())
                .unwrap_or_default(),
        })
    }
}

impl dedup::LogEntry {
    pub fn to_json(&self) -> String {
        serde_json::json!({"firing": self.firing, "resolved": self.resolved, "at": self.at})
            .to_string()
    }

    pub fn from_json(text: &str) -> Option<dedup::LogEntry> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        Some(dedup::LogEntry {
            firing: serde_json::from_value(v.get("firing")?.clone()).ok()?,
            resolved: serde_json::from_value(v.get("resolved")?.clone()).ok()?,
            at: v.get("at")?.as_i64()?,
        })
    }
}

/// Exponential backoff with full jitter: a delay uniform in [0, min(cap, base · 2^attempt)],
/// base 1 s, cap 60 s (as the connector in the seeds retries). `seed` picks the point (a hash of
/// the notification and attempt: deterministic, so tests need no random source).
pub fn backoff_ms(attempt: u32, seed: u64) -> i64 {
    let ceiling = (1000i64 << attempt.min(16)).min(60_000);
    (seed % (ceiling as u64 + 1)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_round_trips_through_the_outbox_form() {
        let n = Notification {
            receiver: "ops".into(),
            group_key: "{}:{alertname=\"X\"}".into(),
            group_labels: BTreeMap::from([("alertname".into(), "X".into())]),
            alerts: vec![AlertSnapshot {
                labels: BTreeMap::from([("alertname".into(), "X".into())]),
                annotations: BTreeMap::from([("summary".into(), "s".into())]),
                status: AlertState::Resolved,
                starts_at: 1,
                ends_at: Some(2),
                generator_url: "http://g".into(),
                fingerprint: "abc".into(),
            }],
            external_url: "http://t".into(),
            idempotency_key: "k".into(),
            change: Change::AllResolved,
            changed: BTreeSet::from(["abc".to_string()]),
        };
        assert_eq!(Notification::from_json(&n.to_json()), Some(n));
    }

    #[test]
    fn backoff_grows_to_the_cap_with_full_jitter() {
        for attempt in 0..20 {
            let ceiling = (1000i64 << attempt.min(16)).min(60_000);
            for seed in [0u64, 1, 999, u64::MAX] {
                let d = backoff_ms(attempt, seed);
                assert!((0..=ceiling).contains(&d), "{attempt} {seed} {d}");
            }
        }
        assert_eq!(backoff_ms(10, 60_000), 60_000);
    }
}
