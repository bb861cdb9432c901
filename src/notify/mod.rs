//! Notifications: what the alert tracker's state becomes on its way to people. Stages, in order:
//! inhibit → silence → route → group → dedup → deliver (retry) → log. This module holds the types
//! the stages share; `route` (routing tree, inhibition, time intervals), `webhook`, `email` and
//! `alertmanager` (receivers) are separate files.

pub mod alertmanager;
pub mod dedup;
pub mod dispatch;
pub mod email;
pub mod external;
pub mod pipeline;
pub mod receivers;
pub mod recorder;
pub mod route;
pub mod sender;
pub mod setup;
pub mod silence;
pub mod webhook;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::labels::Labels;
use crate::persist;

/// One alert as a receiver sees it (Alertmanager's webhook `alerts[]` element).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSnapshot {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    /// `firing` or `resolved`
    pub status: AlertState,
    /// when the alert fired (ms since the epoch): Prometheus's `FiredAt`, not the pending time
    /// (`active_at`, a `for` earlier); a resolved alert keeps its firing time
    pub starts_at: i64,
    /// when the alert resolved (ms since the epoch); None while firing
    pub ends_at: Option<i64>,
    pub generator_url: String,
    /// the label set's fingerprint ([`Labels::fingerprint`]); 16 hex digits in the webhook payload
    pub fingerprint: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
    /// the alerts' values of the route's `group_by` labels
    pub group_labels: Labels,
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
    pub changed: BTreeSet<u64>,
}

/// Why this notification is sent (dedup's decision, as a named reason; persisted as its text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    #[serde(rename = "first notification")]
    FirstNotification,
    #[serde(rename = "new alerts in group")]
    NewAlerts,
    #[serde(rename = "new resolved")]
    NewResolved,
    #[serde(rename = "all resolved")]
    AllResolved,
    #[serde(rename = "repeat interval elapsed")]
    RepeatIntervalElapsed,
    /// an `alertmanager` receiver's alerts forwarded again after its `resend_delay`
    #[serde(rename = "resend delay elapsed")]
    ResendDelayElapsed,
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
            Change::ResendDelayElapsed => "resend delay elapsed",
        }
    }
}

/// The outbox form of a [`Notification`] (`outbox` and `sent` payloads), version 1. Rows written
/// before versions existed have the same layout without `v`.
#[derive(Debug, Serialize, Deserialize)]
pub struct NotificationRow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<u32>,
    pub receiver: String,
    pub group_key: String,
    #[serde(with = "persist::label_map")]
    pub group_labels: Labels,
    pub alerts: Vec<AlertSnapshotRow>,
    pub external_url: String,
    pub idempotency_key: String,
    pub change: Change,
    /// absent in rows written before the email's "new" section existed
    #[serde(default, with = "persist::hex_fingerprints")]
    pub changed: BTreeSet<u64>,
}

/// One alert of a [`NotificationRow`].
#[derive(Debug, Serialize, Deserialize)]
pub struct AlertSnapshotRow {
    #[serde(with = "persist::label_map")]
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub status: AlertState,
    pub starts_at: i64,
    #[serde(default)]
    pub ends_at: Option<i64>,
    pub generator_url: String,
    #[serde(with = "persist::hex_fingerprint")]
    pub fingerprint: u64,
}

impl persist::Row for NotificationRow {
    const KIND: persist::RowKind = persist::RowKind::Notification;
    fn version(&self) -> Option<u32> {
        self.v
    }
}

impl Notification {
    /// The outbox form (JSON, [`NotificationRow`]), read back by [`Notification::from_json`].
    pub fn to_json(&self) -> String {
        let row = NotificationRow {
            v: persist::current_version(),
            receiver: self.receiver.clone(),
            group_key: self.group_key.clone(),
            group_labels: self.group_labels.clone(),
            alerts: self
                .alerts
                .iter()
                .map(|a| AlertSnapshotRow {
                    labels: a.labels.clone(),
                    annotations: a.annotations.clone(),
                    status: a.status,
                    starts_at: a.starts_at,
                    ends_at: a.ends_at,
                    generator_url: a.generator_url.clone(),
                    fingerprint: a.fingerprint,
                })
                .collect(),
            external_url: self.external_url.clone(),
            idempotency_key: self.idempotency_key.clone(),
            change: self.change,
            changed: self.changed.clone(),
        };
        serde_json::to_string(&row).expect("notification rows serialize")
    }

    /// Reads an outbox payload (any version this build knows, and rows without one).
    pub fn from_json(text: &str) -> Result<Notification, persist::PersistError> {
        let r: NotificationRow = persist::read_row(text)?;
        Ok(Notification {
            receiver: r.receiver,
            group_key: r.group_key,
            group_labels: r.group_labels,
            alerts: r
                .alerts
                .into_iter()
                .map(|a| AlertSnapshot {
                    labels: a.labels,
                    annotations: a.annotations,
                    status: a.status,
                    starts_at: a.starts_at,
                    ends_at: a.ends_at,
                    generator_url: a.generator_url,
                    fingerprint: a.fingerprint,
                })
                .collect(),
            external_url: r.external_url,
            idempotency_key: r.idempotency_key,
            change: r.change,
            changed: r.changed,
        })
    }
}

/// The persisted form of a [`dedup::LogEntry`] (`nflog` table and the outbox's `log_entry`),
/// version 1. Rows written before versions existed have the same layout without `v`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogEntryRow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<u32>,
    #[serde(with = "persist::hex_fingerprints")]
    pub firing: BTreeSet<u64>,
    #[serde(with = "persist::hex_fingerprints")]
    pub resolved: BTreeSet<u64>,
    pub at: i64,
    /// absent in rows written before repeats were counted: 0
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repeats: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl persist::Row for LogEntryRow {
    const KIND: persist::RowKind = persist::RowKind::LogEntry;
    fn version(&self) -> Option<u32> {
        self.v
    }
}

impl dedup::LogEntry {
    /// The persisted form (JSON, [`LogEntryRow`]), read back by [`dedup::LogEntry::from_json`].
    pub fn to_json(&self) -> String {
        let row = LogEntryRow {
            v: persist::current_version(),
            firing: self.firing.clone(),
            resolved: self.resolved.clone(),
            at: self.at,
            repeats: self.repeats,
        };
        serde_json::to_string(&row).expect("log entry rows serialize")
    }

    /// Reads a persisted log entry (any version this build knows, and rows without one).
    pub fn from_json(text: &str) -> Result<dedup::LogEntry, persist::PersistError> {
        let r: LogEntryRow = persist::read_row(text)?;
        Ok(dedup::LogEntry {
            firing: r.firing,
            resolved: r.resolved,
            at: r.at,
            repeats: r.repeats,
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
            group_labels: Labels::from_pairs([("alertname", "X")]),
            alerts: vec![AlertSnapshot {
                labels: Labels::from_pairs([("alertname", "X")]),
                annotations: BTreeMap::from([("summary".into(), "s".into())]),
                status: AlertState::Resolved,
                starts_at: 1,
                ends_at: Some(2),
                generator_url: "http://g".into(),
                fingerprint: 0xabc,
            }],
            external_url: "http://t".into(),
            idempotency_key: "k".into(),
            change: Change::AllResolved,
            changed: BTreeSet::from([0xabc]),
        };
        assert_eq!(Notification::from_json(&n.to_json()).unwrap(), n);
    }

    #[test]
    fn notification_written_before_versions_reads_back() {
        // as the hand-written `to_json` of before typed rows wrote it (no `v`, keys sorted)
        let old = r#"{"alerts":[{"annotations":{"summary":"s"},"ends_at":2,"fingerprint":"00000000000000ab","generator_url":"http://g","labels":{"alertname":"X"},"starts_at":1,"status":"resolved"}],"change":"all resolved","changed":["00000000000000ab"],"external_url":"http://t","group_key":"{}:{alertname=\"X\"}","group_labels":{"alertname":"X"},"idempotency_key":"k","receiver":"ops"}"#;
        let n = Notification::from_json(old).unwrap();
        assert_eq!(n.change, Change::AllResolved);
        assert_eq!(n.alerts[0].status, AlertState::Resolved);
        assert_eq!(n.alerts[0].ends_at, Some(2));
        assert_eq!(n.group_labels.get("alertname"), Some("X"));
        assert_eq!(n.alerts[0].fingerprint, 0xab);
        assert_eq!(n.changed, BTreeSet::from([0xab]));
        assert_eq!(Notification::from_json(&n.to_json()).unwrap(), n);
        assert!(n.to_json().starts_with(r#"{"v":1,"#));
        // rows from before `changed` existed
        let older = old.replace(r#""changed":["00000000000000ab"],"#, "");
        assert!(Notification::from_json(&older).unwrap().changed.is_empty());
    }

    #[test]
    fn a_damaged_notification_names_the_field() {
        let e = Notification::from_json(r#"{"v":1,"receiver":"ops","group_key":"g","group_labels":{},"alerts":[{"labels":{},"annotations":{},"status":"firing","generator_url":"","fingerprint":"00"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("notification: missing field `starts_at` at line 1 column"),
            "{e}"
        );
        let e = Notification::from_json(r#"{"receiver":"ops","change":"bored"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown variant `bored`"), "{e}");
    }

    #[test]
    fn log_entry_round_trips_and_reads_rows_written_before_versions() {
        let e = dedup::LogEntry {
            firing: [0xaa].into(),
            resolved: [0xbb].into(),
            at: 5,
            repeats: 0,
        };
        assert_eq!(dedup::LogEntry::from_json(&e.to_json()).unwrap(), e);
        let old = r#"{"at":5,"firing":["00000000000000aa"],"resolved":["00000000000000bb"]}"#;
        assert_eq!(dedup::LogEntry::from_json(old).unwrap(), e);
        let reminded = dedup::LogEntry { repeats: 3, ..e };
        assert_eq!(
            dedup::LogEntry::from_json(&reminded.to_json()).unwrap(),
            reminded
        );
        let damaged = dedup::LogEntry::from_json(r#"{"firing":[],"resolved":[]}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            damaged,
            "notification log entry: missing field `at` at line 1 column 27"
        );
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
