//! The `receivers` section: typed (a field of `config::Config`, the fields errors point at
//! `Spanned`), validated without I/O ([`validate`], every problem with its path and position),
//! secrets read from the environment or files (never written in the file itself) when
//! `notify::setup` builds the sender's integrations.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};
use serde_saphyr::{Location, Spanned};

use super::dispatch::Digest;
use crate::duration::PromDuration;

/// One receiver: where the notifications routed to it go: a `webhook`, an `email` or both (each
/// notification goes to every integration it has), or an `alertmanager` alone.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Unique name, referred to by `route.receiver` and by other receivers' `fallback`.
    pub name: Spanned<String>,
    /// Deliver as an HTTP POST of Alertmanager's version 4 webhook JSON.
    #[serde(default)]
    pub webhook: Option<WebhookRaw>,
    /// Deliver as an email over SMTP.
    #[serde(default)]
    pub email: Option<EmailRaw>,
    /// Forward the alerts to an Alertmanager cluster, as Prometheus does. Such a receiver has
    /// neither `webhook` nor `email` nor `digest`: the routes that reach it choose which alerts
    /// it gets, and its own `group_by` and timings do not apply (Alertmanager groups).
    #[serde(default)]
    pub alertmanager: Option<AlertmanagerRaw>,
    /// Name of the receiver that gets what this one failed permanently (an HTTP 4xx other than
    /// 429, an SMTP 5xx, rejected auth). It cannot be the receiver itself.
    #[serde(default)]
    pub fallback: Option<Spanned<String>>,
    /// `all` or `changes_only`: everything routed to this receiver goes out as at most one
    /// notification per evaluation cycle (see [`Digest`](super::dispatch::Digest)). Default `off`
    /// (Alertmanager's behaviour: one notification per group).
    #[serde(default, serialize_with = "digest_name")]
    pub digest: Digest,
}

/// A webhook integration: Alertmanager's version 4 JSON, so existing receivers work.
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookRaw {
    /// The URL notifications are POSTed to. Each carries an `Idempotency-Key` header, the same
    /// on a repeat after a crash. Exactly one of `url`, `url_env` and `url_file` is set; use one
    /// of the other two when the URL holds a secret (Slack, Teams and Discord keep their keys in
    /// the path). Logs, errors and the API show a URL redacted: scheme, host, port and first path
    /// segment, the rest `<redacted>`.
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    /// Name of an environment variable holding the URL; instead of `url`.
    #[serde(default)]
    pub url_env: Option<String>,
    /// Path of a file holding the URL (trailing newline ignored; a regular file of at most
    /// 64 KiB); instead of `url`.
    #[serde(default)]
    pub url_file: Option<String>,
    /// Name of an environment variable holding the HMAC-SHA256 secret: each body is signed in
    /// the `X-Tocsin-Signature` header. No signature when neither this nor `secret_file` is set.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Path of a file holding the HMAC secret (trailing newline ignored; a regular file of at most
    /// 64 KiB); instead of `secret_env`.
    #[serde(default)]
    pub secret_file: Option<String>,
    /// How the HMAC signature is sent: `tocsin` (`X-Tocsin-Signature: sha256=<hex>`, the
    /// default) or `grafana`, as Grafana's webhook contact point signs
    /// (`X-Grafana-Alerting-Signature: <hex>`), so receivers written for Grafana verify it.
    #[serde(default)]
    pub signature_format: Option<Spanned<String>>,
    /// With `signature_format: grafana`: a header for the Unix time in seconds, which is then
    /// signed too (`<seconds>:<body>`), so a receiver can refuse replays. Default none.
    #[serde(default)]
    pub signature_timestamp_header: Option<String>,
    /// A delivery that takes longer fails and is retried. Default `10s`.
    #[serde(default)]
    pub timeout: Option<PromDuration>,
    /// Most alerts listed in one notification (the rest are counted in `truncatedAlerts`);
    /// `0` lists all. Default `0`.
    #[serde(default)]
    pub max_alerts: Option<usize>,
    /// Whether resolved alerts are sent (and a group whose alerts all resolved). Default `true`.
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// A Go template for the request body, instead of Alertmanager's JSON: for services that
    /// want their own shape (Slack, Microsoft Teams, Discord, Mattermost, ntfy, PagerDuty: see
    /// `fixtures/examples/recipes/`). It sees Alertmanager's template data: `.Status`,
    /// `.Receiver`, `.GroupLabels`, `.CommonLabels`, `.CommonAnnotations`, `.ExternalURL`,
    /// `.GroupKey`, `.TruncatedAlerts` and `.Alerts` (`.Alerts.Firing`, `.Alerts.Resolved`), each
    /// alert with `.Status`, `.Labels`, `.Annotations`, `.StartsAt`, `.EndsAt`, `.GeneratorURL`
    /// and `.Fingerprint`; and `.Secret` (see `body_secret_env`). Prometheus's template functions
    /// apply, plus `toJson` (any value as JSON: write `{{ .CommonAnnotations.summary | toJson }}`
    /// for a JSON string, quoted and escaped) and `join`. Checked when the configuration loads;
    /// at most 1 MiB of output.
    #[serde(default)]
    pub body: Option<Spanned<String>>,
    /// The `Content-Type` of a templated `body`. Default `application/json`.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Name of an environment variable holding a secret the body needs (a PagerDuty routing
    /// key), `.Secret` in the `body` template.
    #[serde(default)]
    pub body_secret_env: Option<String>,
    /// Path of a file holding the body's secret (trailing newline ignored; a regular file of at
    /// most 64 KiB); instead of `body_secret_env`.
    #[serde(default)]
    pub body_secret_file: Option<String>,
}

/// The URL shown redacted ([`redact_url`](crate::notify::webhook::redact_url)).
impl std::fmt::Debug for WebhookRaw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self.url.as_ref().map(|u| {
            (
                crate::notify::webhook::redact_url(&u.value),
                u.referenced.line(),
                u.referenced.column(),
            )
        });
        f.debug_struct("WebhookRaw")
            .field("url", &url)
            .field("url_env", &self.url_env)
            .field("url_file", &self.url_file)
            .field("secret_env", &self.secret_env)
            .field("secret_file", &self.secret_file)
            .field("signature_format", &self.signature_format)
            .field(
                "signature_timestamp_header",
                &self.signature_timestamp_header,
            )
            .field("timeout", &self.timeout)
            .field("max_alerts", &self.max_alerts)
            .field("send_resolved", &self.send_resolved)
            .field("body", &self.body.as_ref().map(|b| b.value.len()))
            .field("content_type", &self.content_type)
            .field("body_secret_env", &self.body_secret_env)
            .field("body_secret_file", &self.body_secret_file)
            .finish()
    }
}

/// An `alertmanager` integration: every alert routed to the receiver, firing and resolved, is
/// POSTed to Alertmanager's API v2 (`/api/v2/alerts`) of every URL, as Prometheus sends them. No
/// grouping, no `group_wait`: an alert goes out at the evaluation that fires or resolves it, and
/// every alert is sent again every `resend_delay`: a firing one with `endsAt` 4 × the longer of
/// `evaluation.interval` and `resend_delay` after the evaluation that sent it (so Alertmanager
/// resolves it by itself only if tocsin stops sending), a resolved one with its resolve time,
/// for the 15 minutes tocsin keeps it. tocsin's silences and inhibition apply first.
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerRaw {
    /// The Alertmanager instances, each as its base URL (`http://am-1:9093`, or with the path
    /// prefix it serves under); alerts are POSTed to `<url>/api/v2/alerts`. List every member of
    /// a cluster: each URL gets every alert and has its own queue, retries and breaker, so a dead
    /// one never delays another. At least one; http or https.
    pub urls: Spanned<Vec<String>>,
    /// How long one POST may take (connect, send, response); it then fails and is retried.
    /// Default `10s`.
    #[serde(default)]
    pub timeout: Option<PromDuration>,
    /// How often the alerts are sent again while nothing changes (Prometheus's
    /// `--rules.alert.resend-delay`). Default `1m`.
    #[serde(default)]
    pub resend_delay: Option<Spanned<PromDuration>>,
    /// Name of an environment variable holding a bearer token (`Authorization: Bearer`).
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// Path of a file holding a bearer token (trailing newline ignored; a regular file of at most
    /// 64 KiB); instead of `bearer_token_env`.
    #[serde(default)]
    pub bearer_token_file: Option<String>,
    /// HTTP basic authentication, instead of a bearer token (credentials in a URL's userinfo
    /// work too, and are redacted like a webhook's).
    #[serde(default)]
    pub basic_auth: Option<BasicAuthRaw>,
    /// Rewrites of the alerts' labels before they are sent, in Prometheus's
    /// `alert_relabel_configs` form, applied in order. Two actions: `labeldrop` and `labelkeep`.
    /// Drop the replica label of an HA pair here (`{action: labeldrop, regex: replica}`), so the
    /// Alertmanager cluster sees one alert from both replicas and notifies once.
    #[serde(default)]
    pub alert_relabel_configs: Vec<RelabelRaw>,
}

/// The URLs shown redacted ([`redact_url`](crate::notify::webhook::redact_url)).
impl std::fmt::Debug for AlertmanagerRaw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self
            .urls
            .value
            .iter()
            .map(|u| crate::notify::webhook::redact_url(u))
            .collect();
        f.debug_struct("AlertmanagerRaw")
            .field("urls", &urls)
            .field("timeout", &self.timeout)
            .field("resend_delay", &self.resend_delay)
            .field("bearer_token_env", &self.bearer_token_env)
            .field("bearer_token_file", &self.bearer_token_file)
            .field("basic_auth", &self.basic_auth)
            .field("alert_relabel_configs", &self.alert_relabel_configs)
            .finish()
    }
}

/// HTTP basic authentication: a user name and a password from the environment or a file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthRaw {
    /// The user name.
    pub username: String,
    /// Name of an environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Path of a file holding the password (trailing newline ignored; a regular file of at most
    /// 64 KiB); instead of `password_env`.
    #[serde(default)]
    pub password_file: Option<String>,
}

/// One relabelling step of an alert's labels (Prometheus's form, two actions).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelRaw {
    /// What to do with the labels whose name the regex matches.
    pub action: RelabelAction,
    /// A regular expression (RE2 syntax, anchored at both ends) over label names, e.g.
    /// `replica` or `replica|cluster`.
    pub regex: Spanned<String>,
}

/// A relabelling action on label names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RelabelAction {
    /// Remove every label whose name matches.
    Labeldrop,
    /// Keep only the labels whose name matches.
    Labelkeep,
}

/// An email integration: one message per notification, text and HTML parts, over SMTP with TLS.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmailRaw {
    /// Recipients, at least one.
    pub to: Spanned<Vec<String>>,
    /// Sender address.
    pub from: String,
    /// The SMTP server, `host:port`. Port 465 means implicit TLS unless `tls` says otherwise.
    pub smarthost: Spanned<String>,
    /// SMTP AUTH user name, set together with a password.
    #[serde(default)]
    pub username: Option<String>,
    /// Name of an environment variable holding the SMTP AUTH password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Path of a file holding the SMTP AUTH password (trailing newline ignored; a regular file of
    /// at most 64 KiB); instead of `password_env`.
    #[serde(default)]
    pub password_file: Option<String>,
    /// `implicit` (TLS from the start), `starttls` (required, never skipped) or `none` (only for
    /// a server on localhost). When unset, `implicit` on port 465 and `starttls` on any other.
    #[serde(default)]
    pub tls: Option<Spanned<String>>,
    /// Whether resolved alerts are sent. Default `false`, or `true` for a `digest` receiver.
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// A delivery (connect, TLS, auth and send) that takes longer fails and is retried.
    /// Default `10s`.
    #[serde(default)]
    pub timeout: Option<PromDuration>,
}

/// Reads `*_env` / `*_file` secrets; `env` is the process environment (an argument for tests).
pub fn secret(
    env_var: &Option<String>,
    file: &Option<String>,
    env: &HashMap<String, String>,
    field: &str,
) -> Result<Option<String>, String> {
    match (env_var, file) {
        (Some(_), Some(_)) => Err(format!("{field}: set either _env or _file, not both")),
        (Some(v), None) => {
            env.get(v).cloned().map(Some).ok_or_else(|| {
                format!("{field}_env names {v}, which is not set in this environment")
            })
        }
        (None, Some(f)) => crate::config::read_secret_file(std::path::Path::new(f))
            .map(Some)
            .map_err(|e| format!("{field}_file: {e}")),
        (None, None) => Ok(None),
    }
}

/// One problem in the `receivers` section, located by its path and position.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct ReceiverError {
    /// Field path with the receiver's name, e.g. `receivers[1] ("ops").webhook.url`.
    pub path: String,
    /// Where the field is written ([`Location::UNKNOWN`] when not read from YAML).
    pub at: Location,
    /// What is wrong there.
    pub kind: ReceiverErrorKind,
}

/// What is wrong with one field of a receiver.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReceiverErrorKind {
    /// A receiver's `name` is empty or blank.
    #[error("must not be empty")]
    EmptyName,
    /// Two receivers have the same name.
    #[error("duplicate receiver name")]
    DuplicateName,
    /// A webhook `url` does not parse as a URL; it holds the URL redacted
    /// ([`redact_url`](crate::notify::webhook::redact_url)), never the text written.
    #[error("not a valid url: {0:?}")]
    InvalidUrl(String),
    /// A webhook has none or more than one of `url`, `url_env` and `url_file`.
    #[error("set exactly one of url, url_env and url_file")]
    UrlSource,
    /// `signature_format` is neither `tocsin` nor `grafana`.
    #[error("expected tocsin or grafana, got {0:?}")]
    UnknownSignatureFormat(String),
    /// `signature_timestamp_header` without `signature_format: grafana`, or not a header name.
    #[error("needs signature_format: grafana and a valid header name")]
    BadTimestampHeader,
    /// A webhook `body` template does not parse (its own line and column in the message).
    #[error("template: {0}")]
    BodyTemplate(String),
    /// Both `body_secret_env` and `body_secret_file` are set.
    #[error("set at most one of body_secret_env and body_secret_file")]
    BodySecretSource,
    /// `content_type` or a body secret without a `body`.
    #[error("content_type, body_secret_env and body_secret_file need a body template")]
    BodyFieldsWithoutBody,
    /// `content_type` is empty, longer than 256 bytes or holds a control character.
    #[error("not a valid content type")]
    BadContentType,
    /// An email integration has an empty `to`.
    #[error("needs at least one recipient")]
    NoRecipient,
    /// An email `smarthost` has no port.
    #[error("expected host:port, got {0:?}")]
    SmarthostWithoutPort(String),
    /// An email `tls` is not one of the three modes.
    #[error("expected implicit, starttls or none, got {0:?}")]
    UnknownTls(String),
    /// `tls: none` for a server other than localhost (credentials and alerts in clear text).
    #[error("none is only allowed for localhost")]
    PlainTextNotLocal,
    /// An `alertmanager` receiver also has a `webhook`, an `email` or a `digest`.
    #[error(
        "an alertmanager receiver forwards every alert ungrouped: it cannot also have a webhook, an email or a digest"
    )]
    AlertmanagerNotAlone,
    /// An `alertmanager` integration has no URL.
    #[error("needs at least one url")]
    NoUrl,
    /// A URL is not http or https.
    #[error("unsupported scheme {0:?} (http or https)")]
    UnsupportedScheme(String),
    /// Both a bearer token and basic auth, or both `_env` and `_file` of one secret.
    #[error("{0}")]
    ConflictingAuth(&'static str),
    /// A duration that must be positive is zero.
    #[error("must be positive")]
    NotPositive,
    /// A relabelling regex does not compile (or exceeds the regex limits).
    #[error("invalid regex: {0}")]
    InvalidRegex(String),
    /// A receiver names itself as its `fallback`.
    #[error("a receiver cannot be its own fallback")]
    OwnFallback,
    /// A `fallback` names no receiver.
    #[error("no receiver named {0:?}")]
    UnknownFallback(String),
}

/// Checks the `receivers` section without I/O: names unique and non-empty, fallbacks that exist
/// and are not the receiver itself, URLs that parse, email settings that make sense. Returns
/// every problem, in the order of the file.
pub fn validate(list: &[ReceiverConfig]) -> Vec<ReceiverError> {
    let mut errors = Vec::new();
    let mut push = |path: String, at: Location, kind| errors.push(ReceiverError { path, at, kind });
    let mut names = BTreeSet::new();
    for (i, r) in list.iter().enumerate() {
        let name = &r.name.value;
        let at = format!("receivers[{i}] ({name:?})");
        if name.trim().is_empty() {
            push(
                format!("receivers[{i}].name"),
                r.name.referenced,
                ReceiverErrorKind::EmptyName,
            );
        } else if !names.insert(name.as_str()) {
            push(
                at.clone(),
                r.name.referenced,
                ReceiverErrorKind::DuplicateName,
            );
        }
        if let Some(w) = &r.webhook {
            let sources = usize::from(w.url.is_some())
                + usize::from(w.url_env.is_some())
                + usize::from(w.url_file.is_some());
            if sources != 1 {
                push(
                    format!("{at}.webhook"),
                    w.url.as_ref().map_or(r.name.referenced, |u| u.referenced),
                    ReceiverErrorKind::UrlSource,
                );
            }
            if let Some(u) = &w.url
                && url::Url::parse(&u.value).is_err()
            {
                push(
                    format!("{at}.webhook.url"),
                    u.referenced,
                    ReceiverErrorKind::InvalidUrl(crate::notify::webhook::redact_url(&u.value)),
                );
            }
            if let Some(f) = &w.signature_format
                && f.value != "tocsin"
                && f.value != "grafana"
            {
                push(
                    format!("{at}.webhook.signature_format"),
                    f.referenced,
                    ReceiverErrorKind::UnknownSignatureFormat(f.value.clone()),
                );
            }
            if let Some(h) = &w.signature_timestamp_header
                && (w.signature_format.as_ref().map(|f| f.value.as_str()) != Some("grafana")
                    || reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err())
            {
                push(
                    format!("{at}.webhook.signature_timestamp_header"),
                    r.name.referenced,
                    ReceiverErrorKind::BadTimestampHeader,
                );
            }
            if let Some(b) = &w.body
                && let Err(e) = crate::rules::template::Template::parse(&b.value)
            {
                push(
                    format!("{at}.webhook.body"),
                    b.referenced,
                    ReceiverErrorKind::BodyTemplate(e.to_string()),
                );
            }
            if w.body_secret_env.is_some() && w.body_secret_file.is_some() {
                push(
                    format!("{at}.webhook"),
                    r.name.referenced,
                    ReceiverErrorKind::BodySecretSource,
                );
            }
            if w.body.is_none()
                && (w.content_type.is_some()
                    || w.body_secret_env.is_some()
                    || w.body_secret_file.is_some())
            {
                push(
                    format!("{at}.webhook"),
                    r.name.referenced,
                    ReceiverErrorKind::BodyFieldsWithoutBody,
                );
            }
            if let Some(ct) = &w.content_type
                && (ct.is_empty() || ct.len() > 256 || ct.chars().any(|c| c.is_control()))
            {
                push(
                    format!("{at}.webhook.content_type"),
                    r.name.referenced,
                    ReceiverErrorKind::BadContentType,
                );
            }
        }
        if let Some(am) = &r.alertmanager {
            validate_alertmanager(am, r, &at, &mut push);
        }
        if let Some(e) = &r.email {
            if e.to.value.is_empty() {
                push(
                    format!("{at}.email.to"),
                    e.to.referenced,
                    ReceiverErrorKind::NoRecipient,
                );
            }
            if !e.smarthost.value.contains(':') {
                push(
                    format!("{at}.email.smarthost"),
                    e.smarthost.referenced,
                    ReceiverErrorKind::SmarthostWithoutPort(e.smarthost.value.clone()),
                );
            }
            if let Some(t) = &e.tls {
                if !matches!(t.value.as_str(), "implicit" | "starttls" | "none") {
                    push(
                        format!("{at}.email.tls"),
                        t.referenced,
                        ReceiverErrorKind::UnknownTls(t.value.clone()),
                    );
                }
                if t.value == "none" {
                    let host = e
                        .smarthost
                        .value
                        .rsplit_once(':')
                        .map(|h| h.0)
                        .unwrap_or("");
                    if !matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]") {
                        push(
                            format!("{at}.email.tls"),
                            t.referenced,
                            ReceiverErrorKind::PlainTextNotLocal,
                        );
                    }
                }
            }
        }
    }
    for (i, r) in list.iter().enumerate() {
        if let Some(f) = &r.fallback {
            let path = format!("receivers[{i}].fallback");
            if f.value == r.name.value {
                push(path, f.referenced, ReceiverErrorKind::OwnFallback);
            } else if !names.contains(f.value.as_str()) {
                push(
                    path,
                    f.referenced,
                    ReceiverErrorKind::UnknownFallback(f.value.clone()),
                );
            }
        }
    }
    errors
}

/// The checks of one `alertmanager` integration (part of [`validate`]).
fn validate_alertmanager(
    am: &AlertmanagerRaw,
    r: &ReceiverConfig,
    at: &str,
    push: &mut impl FnMut(String, Location, ReceiverErrorKind),
) {
    let path = format!("{at}.alertmanager");
    if r.webhook.is_some() || r.email.is_some() || r.digest != Digest::Off {
        push(
            path.clone(),
            am.urls.referenced,
            ReceiverErrorKind::AlertmanagerNotAlone,
        );
    }
    if am.urls.value.is_empty() {
        push(
            format!("{path}.urls"),
            am.urls.referenced,
            ReceiverErrorKind::NoUrl,
        );
    }
    for (i, u) in am.urls.value.iter().enumerate() {
        let field = format!("{path}.urls[{i}]");
        match url::Url::parse(u) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
            Ok(parsed) => push(
                field,
                am.urls.referenced,
                ReceiverErrorKind::UnsupportedScheme(parsed.scheme().to_string()),
            ),
            Err(_) => push(
                field,
                am.urls.referenced,
                ReceiverErrorKind::InvalidUrl(crate::notify::webhook::redact_url(u)),
            ),
        }
    }
    if let Some(d) = &am.resend_delay
        && d.value.0.is_zero()
    {
        push(
            format!("{path}.resend_delay"),
            d.referenced,
            ReceiverErrorKind::NotPositive,
        );
    }
    let bearer = am.bearer_token_env.is_some() || am.bearer_token_file.is_some();
    if am.bearer_token_env.is_some() && am.bearer_token_file.is_some() {
        push(
            format!("{path}.bearer_token_env"),
            am.urls.referenced,
            ReceiverErrorKind::ConflictingAuth(
                "set bearer_token_env or bearer_token_file, not both",
            ),
        );
    }
    if let Some(b) = &am.basic_auth {
        if bearer {
            push(
                format!("{path}.basic_auth"),
                am.urls.referenced,
                ReceiverErrorKind::ConflictingAuth("set a bearer token or basic_auth, not both"),
            );
        }
        if b.password_env.is_some() == b.password_file.is_some() {
            push(
                format!("{path}.basic_auth"),
                am.urls.referenced,
                ReceiverErrorKind::ConflictingAuth(
                    "set exactly one of password_env and password_file",
                ),
            );
        }
    }
    for (i, rc) in am.alert_relabel_configs.iter().enumerate() {
        if let Err(e) = crate::labels::compile_regex(&rc.regex.value) {
            push(
                format!("{path}.alert_relabel_configs[{i}].regex"),
                rc.regex.referenced,
                ReceiverErrorKind::InvalidRegex(crate::labels::regex_reason(&e)),
            );
        }
    }
}

/// The webhook's URL: as written, or read from the variable `url_env` names in `env`, or from
/// `url_file`, and parsed. Errors name the field, never the URL's text (it may be a secret).
pub fn webhook_url(w: &WebhookRaw, env: &HashMap<String, String>) -> Result<String, String> {
    let url = match &w.url {
        Some(u) => u.value.clone(),
        None => secret(&w.url_env, &w.url_file, env, "url")?
            .ok_or_else(|| "url: set exactly one of url, url_env and url_file".to_string())?,
    };
    let from = if w.url_env.is_some() {
        "url_env"
    } else if w.url_file.is_some() {
        "url_file"
    } else {
        "url"
    };
    match url::Url::parse(&url) {
        Ok(_) => Ok(url),
        Err(e) => Err(format!("{from}: not a valid url: {e}")),
    }
}

/// `digest` as written (`off`, `all`, `changes_only`), so sections compare by what the file says.
fn digest_name<S: Serializer>(digest: &Digest, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match digest {
        Digest::Off => "off",
        Digest::All => "all",
        Digest::ChangesOnly => "changes_only",
    })
}

/// The default webhook timeout (Alertmanager's is 10 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every validation problem of a YAML receivers list, one `line:col: message` a line.
    fn problems(yaml: &str) -> String {
        let list: Vec<ReceiverConfig> = serde_saphyr::from_str(yaml).unwrap();
        validate(&list)
            .iter()
            .map(|e| format!("{}:{}: {e}", e.at.line(), e.at.column()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_webhook_body_is_checked_at_load() {
        let e = problems(
            r#"
- name: a
  webhook:
    url: "http://127.0.0.1:1/hook"
    body: "{{ .Status | nope }}"
- name: b
  webhook: { url: "http://127.0.0.1:1/hook", content_type: text/plain }
- name: c
  webhook: { url: "http://127.0.0.1:1/", body: x, body_secret_env: A, body_secret_file: /f }
- name: d
  webhook: { url: "http://127.0.0.1:1/", signature_format: github, signature_timestamp_header: X-T }
"#,
        );
        for want in [
            "5:11: receivers[0] (\"a\").webhook.body: template: ",
            "function \"nope\" not defined",
            "receivers[1] (\"b\").webhook: content_type, body_secret_env and body_secret_file need a body template",
            "receivers[2] (\"c\").webhook: set at most one of body_secret_env and body_secret_file",
            "receivers[3] (\"d\").webhook.signature_format: expected tocsin or grafana, got \"github\"",
            "receivers[3] (\"d\").webhook.signature_timestamp_header: needs signature_format: grafana",
        ] {
            assert!(e.contains(want), "{want} missing in:\n{e}");
        }
    }

    #[test]
    fn receivers_validate_with_every_error() {
        let e = problems(
            r#"
- { name: ops, webhook: { url: "http://127.0.0.1:1/hook" }, fallback: pager }
- { name: ops, webhook: { url: "not a url" } }
- name: mail
  email: { to: [], from: a@b, smarthost: "mail.example.org:25", tls: none }
  fallback: mail
"#,
        );
        for want in [
            "3:11: receivers[1] (\"ops\"): duplicate receiver name",
            "3:32: receivers[1] (\"ops\").webhook.url: not a valid url",
            "5:16: receivers[2] (\"mail\").email.to: needs at least one recipient",
            "5:70: receivers[2] (\"mail\").email.tls: none is only allowed for localhost",
            "6:13: receivers[2].fallback: a receiver cannot be its own fallback",
            "2:71: receivers[0].fallback: no receiver named \"pager\"",
        ] {
            assert!(e.contains(want), "{want} missing in:\n{e}");
        }
        let secret: Vec<ReceiverConfig> = serde_saphyr::from_str(
            "[{ name: s, webhook: { url: \"https://hooks.slack.com/services/T0/B0/KEY\" } }]",
        )
        .unwrap();
        assert!(!format!("{secret:?}").contains("KEY"), "{secret:?}");
        let broken: Vec<ReceiverConfig> = serde_saphyr::from_str(
            "[{ name: s, webhook: { url: \"http://a:PW@h:99999/x/KEY\" } }]",
        )
        .unwrap();
        let broken = format!("{:?}", validate(&broken));
        assert!(broken.contains("InvalidUrl"), "{broken}");
        assert!(
            !broken.contains("KEY") && !broken.contains("PW"),
            "{broken}"
        );
        let unknown = serde_saphyr::from_str::<Vec<ReceiverConfig>>("[{ name: x, slack: {} }]");
        assert!(unknown.unwrap_err().to_string().contains("unknown field"));
    }

    #[test]
    fn alertmanager_receivers_validate_with_every_error_at_its_field() {
        let yaml = r#"
- { name: ok, alertmanager: { urls: ["http://127.0.0.1:9093"], alert_relabel_configs: [{ action: labeldrop, regex: replica }] } }
- { name: none, alertmanager: { urls: [] } }
- name: mixed
  webhook: { url: "http://127.0.0.1:1/hook" }
  alertmanager: { urls: ["ftp://am:21", "http://u:PW@:99999/x/KEY"], resend_delay: 0s }
- name: auth
  alertmanager:
    urls: ["http://am:9093"]
    bearer_token_env: T
    bearer_token_file: /t
    basic_auth: { username: u }
    alert_relabel_configs: [{ action: labelkeep, regex: "(a{1000}){1000}" }, { action: labeldrop, regex: "(" }]
"#;
        let e = problems(yaml);
        for want in [
            "3:39: receivers[1] (\"none\").alertmanager.urls: needs at least one url",
            "6:25: receivers[2] (\"mixed\").alertmanager: an alertmanager receiver forwards every alert ungrouped",
            "6:25: receivers[2] (\"mixed\").alertmanager.urls[0]: unsupported scheme \"ftp\"",
            "6:25: receivers[2] (\"mixed\").alertmanager.urls[1]: not a valid url",
            "6:84: receivers[2] (\"mixed\").alertmanager.resend_delay: must be positive",
            "9:11: receivers[3] (\"auth\").alertmanager.bearer_token_env: set bearer_token_env or bearer_token_file, not both",
            "9:11: receivers[3] (\"auth\").alertmanager.basic_auth: set a bearer token or basic_auth, not both",
            "9:11: receivers[3] (\"auth\").alertmanager.basic_auth: set exactly one of password_env and password_file",
            "receivers[3] (\"auth\").alertmanager.alert_relabel_configs[0].regex: invalid regex: invalid repeat count: nested repetitions repeat more than the limit of 1000 times",
            "receivers[3] (\"auth\").alertmanager.alert_relabel_configs[1].regex: invalid regex: unclosed group",
        ] {
            assert!(e.contains(want), "{want} missing in:\n{e}");
        }
        assert!(!e.contains("receivers[0]"), "{e}");
        // the URL with credentials is shown redacted, in errors and in Debug
        assert!(!e.contains("PW") && !e.contains("KEY"), "{e}");
        let list: Vec<ReceiverConfig> = serde_saphyr::from_str(yaml).unwrap();
        let debug = format!("{:?}", list[2]);
        assert!(!debug.contains("PW") && !debug.contains("KEY"), "{debug}");
        let unknown = serde_saphyr::from_str::<Vec<ReceiverConfig>>(
            "[{ name: x, alertmanager: { urls: [\"http://a\"], alert_relabel_configs: [{ action: replace, regex: a }] } }]",
        );
        assert!(unknown.unwrap_err().to_string().contains("unknown variant"));
    }

    #[test]
    fn secrets_come_from_env_or_file_only() {
        let env = HashMap::from([("S".to_string(), "v".to_string())]);
        assert_eq!(
            secret(&Some("S".into()), &None, &env, "secret").unwrap(),
            Some("v".into())
        );
        assert!(
            secret(&Some("MISSING".into()), &None, &env, "secret")
                .unwrap_err()
                .contains("not set")
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, "from-file\n").unwrap();
        let file = Some(f.to_string_lossy().into_owned());
        assert_eq!(
            secret(&None, &file, &env, "secret").unwrap(),
            Some("from-file".into())
        );
        assert!(secret(&Some("S".into()), &file, &env, "secret").is_err());
    }
}
