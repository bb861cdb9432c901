//! The `receivers` section: typed, validated, secrets read from the environment or files
//! (never written in the file itself), and turned into the sender's integrations.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde::Deserialize;

use crate::duration::PromDuration;

/// One receiver: where the notifications routed to it go. It needs a `webhook`, an `email` or
/// both (each notification goes to every integration it has).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Unique name, referred to by `route.receiver` and by other receivers' `fallback`.
    pub name: String,
    /// Deliver as an HTTP POST of Alertmanager's version 4 webhook JSON.
    #[serde(default)]
    pub webhook: Option<WebhookRaw>,
    /// Deliver as an email over SMTP.
    #[serde(default)]
    pub email: Option<EmailRaw>,
    /// Name of the receiver that gets what this one failed permanently (an HTTP 4xx other than
    /// 429, an SMTP 5xx, rejected auth). It cannot be the receiver itself.
    #[serde(default)]
    pub fallback: Option<String>,
    /// `all` or `changes_only`: everything routed to this receiver goes out as at most one
    /// notification per evaluation cycle (see [`Digest`](super::dispatch::Digest)). Default `off`
    /// (Alertmanager's behaviour: one notification per group).
    #[serde(default)]
    pub digest: super::dispatch::Digest,
}

/// A webhook integration: Alertmanager's version 4 JSON, so existing receivers work.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookRaw {
    /// The URL notifications are POSTed to. Each carries an `Idempotency-Key` header, the same
    /// on a repeat after a crash.
    pub url: String,
    /// Name of an environment variable holding the HMAC-SHA256 secret: each body is signed in
    /// the `X-Tocsin-Signature` header. No signature when neither this nor `secret_file` is set.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Path of a file holding the HMAC secret (trailing newline ignored); instead of `secret_env`.
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

/// An email integration: one message per notification, text and HTML parts, over SMTP with TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailRaw {
    /// Recipients, at least one.
    pub to: Vec<String>,
    /// Sender address.
    pub from: String,
    /// The SMTP server, `host:port`. Port 465 means implicit TLS unless `tls` says otherwise.
    pub smarthost: String,
    /// SMTP AUTH user name, set together with a password.
    #[serde(default)]
    pub username: Option<String>,
    /// Name of an environment variable holding the SMTP AUTH password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Path of a file holding the SMTP AUTH password (trailing newline ignored); instead of
    /// `password_env`.
    #[serde(default)]
    pub password_file: Option<String>,
    /// `implicit` (TLS from the start), `starttls` (required, never skipped) or `none` (only for
    /// a server on localhost). When unset, `implicit` on port 465 and `starttls` on any other.
    #[serde(default)]
    pub tls: Option<String>,
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
        (Some(v), None) => env
            .get(v)
            .cloned()
            .map(Some)
            .ok_or_else(|| format!("{field}_env names {v}, which is not set")),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|e| format!("{field}_file {f}: {e}")),
        (None, None) => Ok(None),
    }
}

/// Parses and checks the `receivers` section: names unique and non-empty, at least one
/// integration each, fallbacks that exist and are not the receiver itself, URLs that parse.
pub fn parse(value: &serde_json::Value) -> Result<Vec<ReceiverConfig>, Vec<String>> {
    let list: Vec<ReceiverConfig> =
        serde_json::from_value(value.clone()).map_err(|e| vec![format!("receivers: {e}")])?;
    let mut errors = Vec::new();
    let mut names = BTreeSet::new();
    for (i, r) in list.iter().enumerate() {
        let at = format!("receivers[{i}] ({:?})", r.name);
        if r.name.trim().is_empty() {
            errors.push(format!("receivers[{i}].name: must not be empty"));
        } else if !names.insert(r.name.clone()) {
            errors.push(format!("{at}: duplicate receiver name"));
        }
        if let Some(w) = &r.webhook
            && url::Url::parse(&w.url).is_err()
        {
            errors.push(format!("{at}.webhook.url: not a valid url: {:?}", w.url));
        }
        if let Some(e) = &r.email {
            if e.to.is_empty() {
                errors.push(format!("{at}.email.to: needs at least one recipient"));
            }
            if !e.smarthost.contains(':') {
                errors.push(format!(
                    "{at}.email.smarthost: expected host:port, got {:?}",
                    e.smarthost
                ));
            }
            if let Some(t) = &e.tls
                && !matches!(t.as_str(), "implicit" | "starttls" | "none")
            {
                errors.push(format!(
                    "{at}.email.tls: expected implicit, starttls or none, got {t:?}"
                ));
            }
            if e.tls.as_deref() == Some("none") {
                let host = e.smarthost.rsplit_once(':').map(|h| h.0).unwrap_or("");
                if !matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]") {
                    errors.push(format!(
                        "{at}.email.tls: none is only allowed for localhost"
                    ));
                }
            }
        }
    }
    for (i, r) in list.iter().enumerate() {
        if let Some(f) = &r.fallback {
            if f == &r.name {
                errors.push(format!(
                    "receivers[{i}].fallback: a receiver cannot be its own fallback"
                ));
            } else if !names.contains(f) {
                errors.push(format!("receivers[{i}].fallback: no receiver named {f:?}"));
            }
        }
    }
    if errors.is_empty() {
        Ok(list)
    } else {
        Err(errors)
    }
}

/// The default webhook timeout (Alertmanager's is 10 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_validate_with_every_error() {
        let v = serde_json::json!([
            {"name": "ops", "webhook": {"url": "http://127.0.0.1:1/hook"}, "fallback": "pager"},
            {"name": "ops", "webhook": {"url": "not a url"}},
            {"name": "mail", "email": {"to": [], "from": "a@b", "smarthost": "mail.example.org:25", "tls": "none"}, "fallback": "mail"},
        ]);
        let e = parse(&v).unwrap_err().join("\n");
        for want in [
            "duplicate receiver name",
            "not a valid url",
            "needs at least one recipient",
            "none is only allowed for localhost",
            "cannot be its own fallback",
            "no receiver named \"pager\"",
        ] {
            assert!(e.contains(want), "{want} missing in:\n{e}");
        }
        let unknown = serde_json::json!([{"name": "x", "slack": {}}]);
        assert!(parse(&unknown).unwrap_err()[0].contains("unknown field"));
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
