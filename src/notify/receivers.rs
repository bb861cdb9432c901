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

/// One receiver: where the notifications routed to it go. It needs a `webhook`, an `email` or
/// both (each notification goes to every integration it has).
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
            .field("timeout", &self.timeout)
            .field("max_alerts", &self.max_alerts)
            .field("send_resolved", &self.send_resolved)
            .finish()
    }
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

    #[test]
    fn receivers_validate_with_every_error() {
        let list: Vec<ReceiverConfig> = serde_saphyr::from_str(
            r#"
- { name: ops, webhook: { url: "http://127.0.0.1:1/hook" }, fallback: pager }
- { name: ops, webhook: { url: "not a url" } }
- name: mail
  email: { to: [], from: a@b, smarthost: "mail.example.org:25", tls: none }
  fallback: mail
"#,
        )
        .unwrap();
        let e: Vec<String> = validate(&list)
            .iter()
            .map(|e| format!("{}:{}: {e}", e.at.line(), e.at.column()))
            .collect();
        let e = e.join("\n");
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
