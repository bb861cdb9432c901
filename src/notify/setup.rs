//! From the configuration to the notification stages: the typed `route`, `receivers`,
//! `inhibit_rules` and `time_intervals` fields of [`Config`] are validated together
//! ([`NotifyPlan::new`], no I/O, every problem at once with its field path and position), then
//! turned into what the pipeline and the sender run: [`TreeRoutes`] (the routing tree as the
//! dispatcher's [`Routes`], with time muting and digest receivers), the receivers' integration
//! names, and the integrations themselves ([`NotifyPlan::integrations`], which reads secrets).

use std::collections::HashMap;
use std::sync::Arc;

use serde_saphyr::Location;

use super::alertmanager::{
    AlertmanagerConfig, Auth, DEFAULT_RESEND_DELAY, Relabel, ends_at_horizon_ms,
};
use super::dispatch::{Digest, RouteTarget, Routes};
use super::email::{EmailConfig, TlsMode};
use super::receivers::{
    self, AlertmanagerRaw, DEFAULT_TIMEOUT, ReceiverConfig, ReceiverError, ReceiverErrorKind,
};
use super::route::{RouteError, RouteErrorKind, Router, Routing, TimeIntervals};
use super::sender::{DeliverFn, Integration};
use super::webhook::WebhookConfig;
use crate::config::Config;
use crate::labels::Labels;

/// The notification sections, validated.
#[derive(Debug, Clone)]
pub struct NotifyPlan {
    pub routing: Routing,
    pub receivers: Vec<ReceiverConfig>,
    /// `evaluation.interval` (ms): an `alertmanager` receiver's `endsAt` horizon counts it
    pub evaluation_interval_ms: i64,
}

/// One problem in the notification sections, located by its field path and position.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct NotifyError {
    /// Dotted field path, e.g. `route.routes[1].receiver` or `receivers[0] ("ops").webhook.url`.
    pub path: String,
    /// Where the field is written ([`Location::UNKNOWN`] when not read from YAML).
    pub at: Location,
    /// What is wrong there.
    pub kind: NotifyErrorKind,
}

/// What is wrong with one field of the notification sections.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotifyErrorKind {
    /// A problem in `route`, `inhibit_rules` or `time_intervals`.
    #[error(transparent)]
    Route(RouteErrorKind),
    /// A problem in `receivers`.
    #[error(transparent)]
    Receiver(ReceiverErrorKind),
    /// Receivers are defined but there is no `route` (notifications would be off).
    #[error("receivers are defined but no route sends anything to them")]
    ReceiversWithoutRoute,
}

impl From<RouteError> for NotifyError {
    fn from(e: RouteError) -> Self {
        NotifyError {
            path: e.path,
            at: e.at,
            kind: NotifyErrorKind::Route(e.kind),
        }
    }
}

impl From<ReceiverError> for NotifyError {
    fn from(e: ReceiverError) -> Self {
        NotifyError {
            path: e.path,
            at: e.at,
            kind: NotifyErrorKind::Receiver(e.kind),
        }
    }
}

/// What a receiver's routes need to know about it.
#[derive(Debug, Clone, Copy, Default)]
struct ReceiverOpts {
    send_resolved: bool,
    digest: Digest,
    /// an `alertmanager` receiver's `resend_delay` (ms)
    resend_delay_ms: Option<i64>,
}

impl NotifyPlan {
    /// Validates the notification sections of `cfg` together, without I/O. `Ok(None)` when there
    /// is no `route`: notifications are off (alerts are still tracked and served by the API).
    /// Every problem of every section is returned, each with its path and position.
    pub fn new(cfg: &Config) -> Result<Option<NotifyPlan>, Vec<NotifyError>> {
        let mut errors: Vec<NotifyError> = receivers::validate(&cfg.receivers)
            .into_iter()
            .map(NotifyError::from)
            .collect();
        if cfg.route.is_none() {
            if let Some(first) = cfg.receivers.first() {
                errors.push(NotifyError {
                    path: "route".into(),
                    at: first.name.referenced,
                    kind: NotifyErrorKind::ReceiversWithoutRoute,
                });
            }
            return if errors.is_empty() {
                Ok(None)
            } else {
                Err(errors)
            };
        }
        let names: Vec<&str> = cfg
            .receivers
            .iter()
            .map(|r| r.name.value.as_str())
            .collect();
        let routing = Routing::from_sections(
            cfg.route.as_ref(),
            &names,
            &cfg.time_intervals,
            &[],
            &cfg.inhibit_rules,
        );
        match routing {
            Ok(routing) if errors.is_empty() => Ok(Some(NotifyPlan {
                routing,
                receivers: cfg.receivers.clone(),
                evaluation_interval_ms: cfg.evaluation.interval.value.as_millis(),
            })),
            Ok(_) => Err(errors),
            Err(es) => {
                errors.extend(es.0.into_iter().map(NotifyError::from));
                Err(errors)
            }
        }
    }

    /// The routing tree as the dispatcher sees it.
    pub fn routes(&self) -> TreeRoutes {
        let opts = self
            .receivers
            .iter()
            .map(|r| {
                let webhook = webhook_config(r, None).map(|w| w.send_resolved);
                let email = email_send_resolved(r);
                (
                    r.name.value.clone(),
                    ReceiverOpts {
                        send_resolved: webhook.unwrap_or(false)
                            || email.unwrap_or(false)
                            || r.alertmanager.is_some(),
                        digest: r.digest,
                        resend_delay_ms: r.alertmanager.as_ref().map(resend_delay_ms),
                    },
                )
            })
            .collect();
        TreeRoutes {
            router: self.routing.router.clone(),
            time_intervals: self.routing.time_intervals.clone(),
            receivers: opts,
            digest_interval_ms: 0,
        }
    }

    /// Receiver name → the outbox names of its integrations (`ops/webhook`, `ops/email`).
    pub fn integration_names(&self) -> HashMap<String, Vec<String>> {
        self.receivers
            .iter()
            .map(|r| {
                let name = &r.name.value;
                let mut names = Vec::new();
                if r.webhook.is_some() {
                    names.push(format!("{name}/webhook"));
                }
                if r.email.is_some() {
                    names.push(format!("{name}/email"));
                }
                if let Some(am) = &r.alertmanager {
                    for i in 0..am.urls.value.len() {
                        names.push(alertmanager_integration(name, i));
                    }
                }
                (name.clone(), names)
            })
            .collect()
    }

    /// Whether every integration can be built in `env` (secrets set and readable, email settings
    /// valid): [`NotifyPlan::integrations`] itself, its result dropped. For `Config::preflight`.
    pub fn check_integrations(&self, env: &HashMap<String, String>) -> Result<(), Vec<String>> {
        self.integrations(env, reqwest::Client::new()).map(|_| ())
    }

    /// The sender's integrations, with secrets read from `env` (pass the process environment)
    /// or files. Errors name the receiver and field.
    pub fn integrations(
        &self,
        env: &HashMap<String, String>,
        client: reqwest::Client,
    ) -> Result<HashMap<String, Integration>, Vec<String>> {
        let mut out = HashMap::new();
        let mut errors = Vec::new();
        for r in &self.receivers {
            let name = &r.name.value;
            let fallback = r.fallback.as_ref().map(|f| f.value.clone());
            let at = format!("receivers ({name:?})");
            if let Some(w) = &r.webhook {
                let url = receivers::webhook_url(w, env);
                let secret = receivers::secret(&w.secret_env, &w.secret_file, env, "secret");
                let body_secret =
                    receivers::secret(&w.body_secret_env, &w.body_secret_file, env, "body_secret");
                if let Err(e) = &url {
                    errors.push(format!("{at}.webhook.{e}"));
                }
                if let Err(e) = &body_secret {
                    errors.push(format!("{at}.webhook.{e}"));
                }
                match secret {
                    Ok(_) if url.is_err() || body_secret.is_err() => {}
                    Ok(secret) => {
                        let mut cfg =
                            webhook_config(r, secret).expect("the receiver has a webhook");
                        cfg.url = url.expect("checked above");
                        if let Some(b) = &mut cfg.body {
                            b.secret = body_secret.expect("checked above");
                        }
                        let client = client.clone();
                        let deliver: DeliverFn = Arc::new(move |n, attempt| {
                            let (client, cfg) = (client.clone(), cfg.clone());
                            Box::pin(async move {
                                super::webhook::send(&client, &cfg, &n, attempt.now).await
                            })
                        });
                        out.insert(
                            format!("{name}/webhook"),
                            Integration {
                                deliver,
                                fallback: fallback.clone(),
                            },
                        );
                    }
                    Err(e) => errors.push(format!("{at}.webhook.{e}")),
                }
            }
            if let Some(am) = &r.alertmanager {
                match self.alertmanager_configs(am, env) {
                    Ok(configs) => {
                        for (i, cfg) in configs.into_iter().enumerate() {
                            let client = client.clone();
                            let deliver: DeliverFn = Arc::new(move |n, attempt| {
                                let (client, cfg) = (client.clone(), cfg.clone());
                                Box::pin(async move {
                                    super::alertmanager::send(&client, &cfg, &n, attempt).await
                                })
                            });
                            out.insert(
                                alertmanager_integration(name, i),
                                Integration {
                                    deliver,
                                    fallback: fallback.clone(),
                                },
                            );
                        }
                    }
                    Err(e) => errors.push(format!("{at}.alertmanager.{e}")),
                }
            }
            if let Some(e) = &r.email {
                let password =
                    match receivers::secret(&e.password_env, &e.password_file, env, "password") {
                        Ok(p) => p,
                        Err(msg) => {
                            errors.push(format!("{at}.email.{msg}"));
                            continue;
                        }
                    };
                let port = e
                    .smarthost
                    .value
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse().ok())
                    .unwrap_or(25);
                let cfg = EmailConfig {
                    to: e.to.value.clone(),
                    from: e.from.clone(),
                    smarthost: e.smarthost.value.clone(),
                    username: e.username.clone(),
                    password,
                    tls: e
                        .tls
                        .as_ref()
                        .and_then(|t| TlsMode::parse(&t.value))
                        .unwrap_or_else(|| TlsMode::default_for_port(port)),
                    send_resolved: email_send_resolved(r).unwrap_or(false),
                    timeout: e.timeout.map(|t| t.0).unwrap_or(DEFAULT_TIMEOUT),
                    hello: None,
                };
                if let Err(msg) = cfg.validate() {
                    errors.push(format!("{at}.email: {msg}"));
                    continue;
                }
                let deliver: DeliverFn = Arc::new(move |n, _| {
                    let cfg = cfg.clone();
                    Box::pin(async move { super::email::send(&cfg, &n).await })
                });
                out.insert(format!("{name}/email"), Integration { deliver, fallback });
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }
}

impl NotifyPlan {
    /// One [`AlertmanagerConfig`] per URL of `am`, secrets read from `env` or files. The error
    /// names the field (after `alertmanager.`).
    fn alertmanager_configs(
        &self,
        am: &AlertmanagerRaw,
        env: &HashMap<String, String>,
    ) -> Result<Vec<AlertmanagerConfig>, String> {
        let bearer = receivers::secret(
            &am.bearer_token_env,
            &am.bearer_token_file,
            env,
            "bearer_token",
        )?;
        let auth = match (bearer, &am.basic_auth) {
            (Some(token), _) => Auth::Bearer(token),
            (None, Some(b)) => {
                let password = receivers::secret(
                    &b.password_env,
                    &b.password_file,
                    env,
                    "basic_auth.password",
                )?
                .ok_or_else(|| "basic_auth: set password_env or password_file".to_string())?;
                Auth::Basic {
                    username: b.username.clone(),
                    password,
                }
            }
            (None, None) => Auth::None,
        };
        let relabel = am
            .alert_relabel_configs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                crate::labels::compile_regex(&r.regex.value)
                    .map(|regex| Relabel {
                        action: r.action,
                        regex,
                    })
                    .map_err(|e| {
                        format!(
                            "alert_relabel_configs[{i}].regex: invalid regex: {}",
                            crate::labels::regex_reason(&e)
                        )
                    })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let horizon_ms = ends_at_horizon_ms(self.evaluation_interval_ms, resend_delay_ms(am));
        Ok(am
            .urls
            .value
            .iter()
            .map(|url| AlertmanagerConfig {
                url: url.clone(),
                timeout: am.timeout.map(|t| t.0).unwrap_or(DEFAULT_TIMEOUT),
                auth: auth.clone(),
                horizon_ms,
                relabel: relabel.clone(),
            })
            .collect())
    }
}

/// The outbox name of the `i`th URL of an `alertmanager` receiver: `<receiver>/alertmanager[i]`.
pub fn alertmanager_integration(receiver: &str, i: usize) -> String {
    format!("{receiver}/alertmanager[{i}]")
}

/// An `alertmanager` integration's `resend_delay` in ms, its default applied.
pub fn resend_delay_ms(am: &AlertmanagerRaw) -> i64 {
    am.resend_delay
        .as_ref()
        .map(|d| d.value.as_millis())
        .unwrap_or(DEFAULT_RESEND_DELAY.as_millis() as i64)
}

/// The receiver's webhook integration with its defaults applied (`send_resolved` true,
/// timeout 10 s, every alert); None without one. `secret` is read by the caller; so is the URL
/// when it comes from `url_env` or `url_file` ([`receivers::webhook_url`]): until then it is
/// empty.
pub fn webhook_config(r: &ReceiverConfig, secret: Option<String>) -> Option<WebhookConfig> {
    r.webhook.as_ref().map(|w| WebhookConfig {
        url: w.url.as_ref().map(|u| u.value.clone()).unwrap_or_default(),
        secret,
        timeout: w.timeout.map(|t| t.0).unwrap_or(DEFAULT_TIMEOUT),
        max_alerts: w.max_alerts.unwrap_or(0),
        send_resolved: w.send_resolved.unwrap_or(true),
        signature: match w.signature_format.as_ref().map(|f| f.value.as_str()) {
            Some("grafana") => super::webhook::SignatureFormat::Grafana {
                timestamp_header: w.signature_timestamp_header.clone(),
            },
            _ => super::webhook::SignatureFormat::Tocsin,
        },
        // validated: a template that does not parse never reaches here
        body: w.body.as_ref().and_then(|b| {
            let template = crate::rules::template::Template::parse(&b.value).ok()?;
            Some(super::webhook::WebhookBody {
                template: Arc::new(template),
                content_type: w
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "application/json".into()),
                secret: None,
            })
        }),
    })
}

/// Whether the receiver's email integration sends resolutions: as set, else false (as
/// Alertmanager) but true for a digest receiver; None without an email integration.
pub fn email_send_resolved(r: &ReceiverConfig) -> Option<bool> {
    r.email
        .as_ref()
        .map(|e| e.send_resolved.unwrap_or(r.digest != Digest::Off))
}

/// What the daemon runs from a plan: the notifier's routes, inhibitor and receivers'
/// integration names, and the sender's integrations.
pub struct NotifyParts {
    pub routes: Arc<TreeRoutes>,
    pub inhibitor: Arc<super::route::Inhibitor>,
    /// receiver name → its outbox integration names
    pub names: HashMap<String, Vec<String>>,
    pub integrations: HashMap<String, Integration>,
}

impl NotifyPlan {
    /// Everything the daemon needs at startup or after a reload, secrets read from `env`;
    /// digest groups flush at most once per `digest_interval_ms`.
    pub fn parts(
        &self,
        env: &HashMap<String, String>,
        client: reqwest::Client,
        digest_interval_ms: i64,
    ) -> Result<NotifyParts, Vec<String>> {
        Ok(NotifyParts {
            integrations: self.integrations(env, client)?,
            routes: Arc::new(self.routes().with_digest_interval(digest_interval_ms)),
            inhibitor: Arc::new(self.routing.inhibitor.clone()),
            names: self.integration_names(),
        })
    }
}

/// The routing tree as the dispatcher's [`Routes`]: one target per matching route, muted when
/// its time intervals say so at `now`. A digest receiver gets one group for everything routed to
/// it (group key `{digest}:<receiver>`), flushed without waiting and then at most once per
/// [`TreeRoutes::with_digest_interval`].
#[derive(Debug, Clone)]
pub struct TreeRoutes {
    router: Router,
    time_intervals: TimeIntervals,
    receivers: HashMap<String, ReceiverOpts>,
    /// how often a digest group may flush: the evaluation interval
    digest_interval_ms: i64,
}

impl TreeRoutes {
    /// Digest groups flush at most once per `ms` (pass the evaluation interval, so a cycle in
    /// which several rule groups evaluate still sends one digest; what a later group of the
    /// cycle changed goes into the next one). 0: at every evaluation.
    pub fn with_digest_interval(mut self, ms: i64) -> Self {
        self.digest_interval_ms = ms.max(0);
        self
    }

    /// The receivers an alert reaches (`tocsin route-test`), once per matching route.
    pub fn route_test(&self, labels: &Labels) -> Vec<String> {
        self.router.route_test(labels)
    }
}

impl Routes for TreeRoutes {
    fn routes(&self, labels: &Labels, now: i64) -> Vec<RouteTarget> {
        let mut out: Vec<RouteTarget> = Vec::new();
        for m in self.router.matches(labels) {
            let opts = self.receivers.get(&m.receiver).copied().unwrap_or_default();
            let muted = m.muted_at(&self.time_intervals, now);
            let target = if let Some(resend) = opts.resend_delay_ms {
                // every alert routed to the receiver in one group, forwarded at every tick that
                // has news and every resend delay ([`crate::notify::alertmanager`])
                RouteTarget {
                    group_key: format!("{{alertmanager}}:{}", m.receiver),
                    receiver: m.receiver,
                    group_labels: Labels::default(),
                    group_wait_ms: 0,
                    group_interval_ms: 0,
                    repeat_interval_ms: resend,
                    send_resolved: true,
                    muted,
                    digest: Digest::Off,
                    resend_delay_ms: Some(resend),
                }
            } else if opts.digest == Digest::Off {
                let (group_key, group_labels) = self.router.group_key(&m, labels);
                RouteTarget {
                    receiver: m.receiver,
                    group_key,
                    group_labels,
                    group_wait_ms: m.group_wait,
                    group_interval_ms: m.group_interval,
                    repeat_interval_ms: m.repeat_interval,
                    send_resolved: opts.send_resolved,
                    muted,
                    digest: Digest::Off,
                    resend_delay_ms: None,
                }
            } else {
                RouteTarget {
                    group_key: format!("{{digest}}:{}", m.receiver),
                    receiver: m.receiver,
                    group_labels: Labels::default(),
                    group_wait_ms: 0,
                    group_interval_ms: self.digest_interval_ms,
                    repeat_interval_ms: m.repeat_interval,
                    send_resolved: opts.send_resolved,
                    muted,
                    digest: opts.digest,
                    resend_delay_ms: None,
                }
            };
            // two routes to one digest (or alertmanager) receiver are still one group
            if !out
                .iter()
                .any(|t| t.receiver == target.receiver && t.group_key == target.group_key)
            {
                out.push(target);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    /// The sections as `config` reads them (raw, not yet validated).
    fn sections(yaml: &str) -> Config {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn plan(yaml: &str) -> NotifyPlan {
        NotifyPlan::new(&sections(yaml)).unwrap().unwrap()
    }

    #[test]
    fn no_route_means_notifications_off_and_orphan_receivers_are_an_error() {
        assert!(NotifyPlan::new(&sections("{}")).unwrap().is_none());
        let cfg = sections("receivers: [{ name: ops, webhook: { url: \"http://127.0.0.1:1/\" } }]");
        let e = NotifyPlan::new(&cfg).unwrap_err();
        assert_eq!(e[0].path, "route");
        assert_eq!(
            (e[0].at.line(), e[0].at.column()),
            (1, 21),
            "the first receiver"
        );
    }

    #[test]
    fn errors_from_every_section_come_together_with_paths() {
        let cfg = sections(
            r#"
route: { receiver: ops, routes: [{ receiver: oncall, matchers: ['severity=~"("'] }] }
receivers: [{ name: ops, webhook: { url: "not a url" } }]
"#,
        );
        let e = NotifyPlan::new(&cfg).unwrap_err();
        let text: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        let text = text.join("\n");
        assert!(text.contains("webhook.url: not a valid url"), "{text}");
        assert!(text.contains("undefined receiver \"oncall\""), "{text}");
        assert!(text.contains("route.routes[0].matchers[0]"), "{text}");
    }

    #[test]
    fn targets_carry_group_key_timing_and_send_resolved() {
        let p = plan(
            r#"
route:
  receiver: ops
  group_by: [alertname]
  group_wait: 10s
  routes: [{ matchers: ['severity="page"'], receiver: mail, continue: true }]
receivers:
  - { name: ops, webhook: { url: "http://127.0.0.1:1/" } }
  - { name: mail, email: { to: [a@b], from: t@b, smarthost: "127.0.0.1:25" } }
"#,
        );
        let r = p.routes();
        let t = r.routes(&labels(&[("alertname", "Down"), ("severity", "page")]), 0);
        assert_eq!(t.len(), 1, "a matching child answers for its parent: {t:?}");
        assert_eq!(t[0].receiver, "mail");
        assert!(!t[0].send_resolved, "email defaults to send_resolved false");
        assert_eq!(t[0].group_wait_ms, 10_000);
        let t = r.routes(&labels(&[("alertname", "Down"), ("severity", "ticket")]), 0);
        assert_eq!(t[0].receiver, "ops");
        assert!(t[0].send_resolved, "webhook defaults to send_resolved true");
        assert_eq!(t[0].group_labels, labels(&[("alertname", "Down")]));
        assert_eq!(
            p.integration_names()["mail"],
            vec!["mail/email".to_string()]
        );
    }

    #[test]
    fn digest_receiver_gets_one_group_without_waiting() {
        let p = plan(
            r#"
route: { receiver: status, group_by: [alertname] }
receivers:
  - name: status
    digest: changes_only
    email: { to: [a@b], from: t@b, smarthost: "127.0.0.1:25" }
"#,
        );
        let r = p.routes();
        let a = r.routes(&labels(&[("alertname", "A")]), 0);
        let b = r.routes(&labels(&[("alertname", "B")]), 0);
        assert_eq!(a[0].group_key, b[0].group_key);
        assert_eq!(a[0].group_wait_ms, 0);
        assert_eq!(a[0].digest, Digest::ChangesOnly);
        assert!(a[0].send_resolved, "a digest lists resolutions by default");
    }

    #[test]
    fn time_intervals_mute_at_now() {
        let p = plan(
            r#"
route:
  receiver: ops
  routes: [{ receiver: ops, matchers: ['team="a"'], mute_time_intervals: [nights] }]
receivers: [{ name: ops, webhook: { url: "http://127.0.0.1:1/" } }]
time_intervals:
  - name: nights
    time_intervals: [{ times: [{ start_time: "00:00", end_time: "06:00" }] }]
"#,
        );
        let r = p.routes();
        let l = labels(&[("team", "a")]);
        // 2026-01-01T03:00Z and 12:00Z
        let night = 1_767_236_400_000;
        assert!(r.routes(&l, night)[0].muted);
        assert!(!r.routes(&l, night + 9 * 3_600_000)[0].muted);
    }

    #[test]
    fn integrations_read_secrets_and_report_missing_ones() {
        let p = plan(
            r#"
route: { receiver: ops }
receivers:
  - name: ops
    webhook: { url: "http://127.0.0.1:1/", secret_env: HOOK_SECRET }
    email: { to: [a@b], from: t@b, smarthost: "127.0.0.1:25", tls: none }
"#,
        );
        let client = reqwest::Client::new();
        let e = p
            .integrations(&HashMap::new(), client.clone())
            .err()
            .unwrap();
        assert!(e[0].contains("HOOK_SECRET"), "{e:?}");
        let env = HashMap::from([("HOOK_SECRET".to_string(), "s".to_string())]);
        let i = p.integrations(&env, client).unwrap();
        assert!(i.contains_key("ops/webhook") && i.contains_key("ops/email"));
    }

    #[test]
    fn a_webhook_url_comes_from_url_url_env_or_url_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, "https://hooks.slack.com/services/T0/B0/FROMFILE\n").unwrap();
        let p = plan(&format!(
            r#"
route: {{ receiver: a }}
receivers:
  - {{ name: a, webhook: {{ url_env: HOOK_URL }} }}
  - {{ name: b, webhook: {{ url_file: "{}" }} }}
"#,
            file.display()
        ));
        let client = reqwest::Client::new();
        let e = p
            .integrations(&HashMap::new(), client.clone())
            .err()
            .unwrap();
        assert_eq!(
            e,
            vec![
                "receivers (\"a\").webhook.url_env names HOOK_URL, which is not set in this environment"
                    .to_string()
            ]
        );
        let env = HashMap::from([("HOOK_URL".to_string(), "not a url SECRET".to_string())]);
        let e = p.integrations(&env, client.clone()).err().unwrap();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("url_env: not a valid url"), "{e:?}");
        assert!(!e[0].contains("SECRET"), "{e:?}");
        let env = HashMap::from([(
            "HOOK_URL".to_string(),
            "https://hooks.slack.com/services/T0/B0/FROMENV".to_string(),
        )]);
        assert!(p.integrations(&env, client).is_ok());
        std::fs::remove_file(&file).unwrap();
        assert!(p.check_integrations(&env).unwrap_err()[0].contains("url_file"));

        // none of them, or two: a validation error at the receiver
        for webhook in ["{ timeout: 1s }", "{ url: \"http://h/\", url_env: X }"] {
            let cfg = sections(&format!(
                "route: {{ receiver: a }}\nreceivers: [{{ name: a, webhook: {webhook} }}]\n"
            ));
            let e = NotifyPlan::new(&cfg).unwrap_err();
            assert_eq!(e[0].path, "receivers[0] (\"a\").webhook", "{webhook}");
            assert_eq!(
                e[0].kind,
                NotifyErrorKind::Receiver(ReceiverErrorKind::UrlSource)
            );
            assert_ne!(e[0].at.line(), 0);
        }
    }
}
