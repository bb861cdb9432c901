//! The recording notifier: the real stages after the tracker ([`Stages`]: inhibit → route →
//! group → dedup) with the notification log in memory, recording what each receiver's
//! integrations would send instead of sending it. Shared by `tocsin test`'s `notification_test`
//! and `tocsin replay`; the daemon runs the same [`Stages::tick`] through its
//! [`Notifier`](super::pipeline::Notifier) with the log in the store.

use std::collections::HashMap;

use super::dispatch::Outgoing;
use super::email::{self, RenderedEmail};
use super::pipeline::{PipelineState, Stages, Tick, Ticked};
use super::route::Inhibitor;
use super::setup::{NotifyPlan, TreeRoutes};
use super::webhook::{self, WebhookConfig};
use super::{AlertState, Notification};
use crate::rules::tracker::Alert;

/// The routing and receivers a recording runs against.
pub struct NotifySetup {
    routes: TreeRoutes,
    inhibitor: Inhibitor,
    /// receiver name → what its integrations send
    receivers: HashMap<String, Outputs>,
}

/// What one receiver's integrations make of a notification.
struct Outputs {
    webhook: Option<WebhookConfig>,
    /// the email integration's `send_resolved`; None without an email integration
    email: Option<bool>,
}

impl NotifySetup {
    /// The stages and receivers of a validated configuration.
    pub fn new(plan: &NotifyPlan) -> Self {
        let receivers = plan
            .receivers
            .iter()
            .map(|r| {
                // the integrations as the daemon builds them (no secret: nothing is signed)
                let webhook = super::setup::webhook_config(r, None);
                let email = super::setup::email_send_resolved(r);
                (r.name.value.clone(), Outputs { webhook, email })
            })
            .collect();
        NotifySetup {
            routes: plan.routes(),
            inhibitor: plan.routing.inhibitor.clone(),
            receivers,
        }
    }

    /// Without a configuration: every alert to the receiver `default`, grouped by alertname,
    /// with Alertmanager's default timings, a webhook (resolved alerts sent) and an email (not).
    pub fn builtin() -> Self {
        const BUILTIN: &str = r#"
route:
  receiver: default
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
receivers:
  - name: default
    webhook: { url: "http://127.0.0.1/", send_resolved: true }
    email:
      to: [default@localhost]
      from: tocsin@localhost
      smarthost: localhost:25
      send_resolved: false
"#;
        let plan = crate::config::Config::from_yaml(BUILTIN, std::path::Path::new("built-in"))
            .ok()
            .and_then(|c| c.notify_plan())
            .expect("the built-in routing is valid");
        Self::new(&plan)
    }

    /// Digest groups flush at most once per `ms`, as the daemon sets it (its evaluation
    /// interval; see [`TreeRoutes::with_digest_interval`]).
    pub fn with_digest_interval(mut self, ms: i64) -> Self {
        self.routes = self.routes.with_digest_interval(ms);
        self
    }

    /// `n` as its receiver's integrations send it, at `at`; None when nothing goes out (a
    /// notification with no alerts left, a receiver without integrations, resolved alerts only
    /// for integrations that do not send them).
    pub fn deliver(&self, n: &Notification, at: i64) -> Option<Sent> {
        if n.alerts.is_empty() {
            // the sender only logs it
            return None;
        }
        let out = self.receivers.get(&n.receiver)?;
        let webhook = out
            .webhook
            .as_ref()
            .and_then(|cfg| webhook::payload(n, cfg));
        let email = out.email.and_then(|send_resolved| {
            // as `email::send` filters before rendering
            let mut n = n.clone();
            if !send_resolved {
                n.alerts.retain(|a| a.status == AlertState::Firing);
            }
            (!n.alerts.is_empty()).then(|| email::render(&n))
        });
        if webhook.is_none() && email.is_none() {
            return None;
        }
        let status = if n.alerts.iter().any(|a| a.status == AlertState::Firing) {
            AlertState::Firing
        } else {
            AlertState::Resolved
        };
        Some(Sent {
            at,
            receiver: n.receiver.clone(),
            status,
            alerts: n.alerts.len(),
            subject: email::render(n).subject,
            email,
            webhook,
            notification: n.clone(),
        })
    }
}

/// One notification as its receiver got it.
#[derive(Debug, Clone)]
pub struct Sent {
    /// when it went out (ms; relative to the recorder's `start`)
    pub at: i64,
    pub receiver: String,
    /// firing when any alert listed fires (the webhook payload's `status`)
    pub status: AlertState,
    /// the alerts the notification lists
    pub alerts: usize,
    /// the subject an email of this notification has (whether or not the receiver has email)
    pub subject: String,
    /// None when the receiver has no email integration or it sends nothing for this one
    pub email: Option<RenderedEmail>,
    /// None when the receiver has no webhook integration or it sends nothing for this one
    pub webhook: Option<serde_json::Value>,
    /// what the pipeline decided to send
    pub notification: Notification,
}

/// The recording notifier: the real stages after the tracker, with the notification log in
/// memory and the silences it is given (none in `tocsin test`), recording what receivers would
/// get.
pub struct Recorder<'a> {
    setup: &'a NotifySetup,
    external_url: &'a str,
    /// recorded times are relative to this (ms)
    start: i64,
    state: PipelineState,
    /// applied at the time of each tick (each active then or not)
    silences: Vec<crate::notify::silence::CompiledSilence>,
    /// what was sent, in order
    pub sent: Vec<Sent>,
}

impl<'a> Recorder<'a> {
    /// An empty recording; `start` is subtracted from recorded times (0: absolute times).
    pub fn new(setup: &'a NotifySetup, external_url: &'a str, start: i64) -> Self {
        Recorder {
            setup,
            external_url,
            start,
            state: PipelineState::default(),
            silences: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// Applies these silences, each while it was active (`tocsin replay` passes the stored ones).
    pub fn with_silences(mut self, silences: Vec<crate::notify::silence::Silence>) -> Self {
        self.silences = silences
            .into_iter()
            .map(crate::notify::silence::CompiledSilence::new)
            .collect();
        self
    }

    /// Records what a tick sent at `now` as its receivers' integrations would send it; returns
    /// how many notifications it recorded.
    pub fn record(&mut self, sent: &[Outgoing], now: i64) -> usize {
        let before = self.sent.len();
        for o in sent {
            if let Some(s) = self.setup.deliver(&o.notification, now - self.start) {
                self.sent.push(s);
            }
        }
        self.sent.len() - before
    }
}

impl Tick for Recorder<'_> {
    /// One pipeline tick at `now` over every rule's alerts, as the daemon runs it after a group
    /// evaluation. The alerts of `dry_run` rules go with the others: a recording shows what a
    /// rule would send, shadow or not (nothing here is delivered either way).
    fn tick(
        &mut self,
        alerts: &[Alert],
        shadow: &[Alert],
        now: i64,
        all_evaluated: bool,
    ) -> Ticked {
        let silences = &self.silences;
        let silenced = |labels: &crate::labels::Labels, now: i64| {
            silences.iter().any(|s| s.silences(labels, now))
        };
        let stages = Stages {
            routes: &self.setup.routes,
            inhibitor: &self.setup.inhibitor,
            silenced: &silenced,
            external_url: self.external_url,
            // `tocsin test` and replay read no tocsin.yml: no external labels
            external_labels: &crate::labels::Labels::default(),
        };
        let all: Vec<Alert>;
        let alerts = if shadow.is_empty() {
            alerts
        } else {
            all = alerts.iter().chain(shadow).cloned().collect();
            &all
        };
        Ticked {
            sent: stages.tick(alerts, &mut self.state, now, all_evaluated),
            shadow: Vec::new(),
        }
    }
}
