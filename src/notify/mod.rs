//! Notifications: what the alert tracker's state becomes on its way to people. Stages, in order:
//! inhibit → silence → route → group → dedup → deliver (retry) → log. This module holds the types
//! the stages share; `route` (routing tree, inhibition, time intervals), `webhook` and `email`
//! (receivers) are separate files.

pub mod dedup;
pub mod dispatch;

use std::collections::BTreeMap;

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
