//! The webhook receiver: Alertmanager's version 4 JSON payload (so receivers written for
//! Alertmanager work unchanged), signed with HMAC-SHA256 when a secret is set, POSTed with a
//! timeout, and the outcome classified for the sender's retry loop.
//!
//! Classification is the one place that decides retry for HTTP: 2xx is delivered; 429, 5xx,
//! connect errors, resets and timeouts are transient; every other status is permanent.

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{AlertSnapshot, AlertState, DeliveryError, Notification};
use crate::labels::{AsMap, Labels, format_fingerprint};
use crate::rules::template::Template;
use crate::timefmt::format_rfc3339;

/// The header carrying `sha256=<hex HMAC-SHA256 of the body>` when a secret is set.
pub const SIGNATURE_HEADER: &str = "X-Tocsin-Signature";
/// The header carrying [`Notification::idempotency_key`]: a receiver that sees the same value
/// twice got the same group state twice (the one at-least-once case) and can drop the second.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// What Alertmanager writes as `endsAt` while an alert fires (Go's zero `time.Time`).
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// How much of an error response's body goes into the failure message.
const BODY_EXCERPT_BYTES: usize = 200;

/// One webhook integration, as the `receivers` config section builds it. Its `Debug` shows the
/// URL through [`redact_url`] and never the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// where the payload is POSTed
    pub url: String,
    /// HMAC-SHA256 key for the `X-Tocsin-Signature` header; no header when unset
    pub secret: Option<String>,
    /// limit for the whole request (connect, send, response); Alertmanager's default is 10 s
    pub timeout: Duration,
    /// most alerts in one payload, the rest counted in `truncatedAlerts`; 0 means all
    pub max_alerts: usize,
    /// whether resolved alerts are sent (default true, as Alertmanager)
    pub send_resolved: bool,
    /// a templated body instead of Alertmanager's JSON (Slack, Teams, PagerDuty …)
    pub body: Option<WebhookBody>,
    /// how the HMAC signature is sent when `secret` is set
    pub signature: SignatureFormat,
}

/// The header and form of a webhook's HMAC-SHA256 signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SignatureFormat {
    /// `X-Tocsin-Signature: sha256=<hex HMAC of the body>`
    #[default]
    Tocsin,
    /// Grafana's: `X-Grafana-Alerting-Signature: <hex HMAC>`, over `<unix seconds>:<body>` with
    /// the seconds in `timestamp_header` when one is named, else over the body
    Grafana { timestamp_header: Option<String> },
}

/// Grafana's signature header.
pub const GRAFANA_SIGNATURE_HEADER: &str = "X-Grafana-Alerting-Signature";

/// A webhook's templated body: rendered over Alertmanager's template data (the version 4
/// payload, [`Template::render_notification`]), sent with its content type.
#[derive(Clone)]
pub struct WebhookBody {
    pub template: std::sync::Arc<Template>,
    pub content_type: String,
    /// `.Secret` in the template (a PagerDuty routing key), from `body_secret_env`/`_file`
    pub secret: Option<String>,
}

impl PartialEq for WebhookBody {
    fn eq(&self, other: &Self) -> bool {
        self.template.source() == other.template.source()
            && self.content_type == other.content_type
            && self.secret == other.secret
    }
}

impl Eq for WebhookBody {}

impl WebhookBody {
    /// The body for `n` at `now_ms`: the template over the payload Alertmanager's webhook would
    /// send. A template that fails to render is a permanent failure (a retry renders the same).
    pub fn render(
        &self,
        payload: &serde_json::Value,
        now_ms: i64,
    ) -> Result<Vec<u8>, DeliveryError> {
        let extra: Vec<(&str, &str)> = self
            .secret
            .as_deref()
            .map(|s| ("Secret", s))
            .into_iter()
            .collect();
        self.template
            .render_notification(payload, &extra, now_ms)
            .map(String::into_bytes)
            .map_err(|e| DeliveryError::Permanent(format!("webhook body template: {e}")))
    }
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &redact_url(&self.url))
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("max_alerts", &self.max_alerts)
            .field("send_resolved", &self.send_resolved)
            .field(
                "body",
                &self.body.as_ref().map(|b| {
                    (
                        b.content_type.as_str(),
                        b.secret.as_ref().map(|_| "<redacted>"),
                    )
                }),
            )
            .finish()
    }
}

/// What replaces a secret part of a URL.
pub const REDACTED: &str = "<redacted>";

/// `url` with everything that may be a secret replaced by `<redacted>`: the one form in which a
/// webhook URL is ever logged, stored in an error, served or printed.
///
/// Kept: the scheme, host and port, and the first path segment (`/services`, `/api`,
/// `/webhookb2`): enough to tell which endpoint failed. Replaced: userinfo (`<redacted>@host`),
/// every path segment after the first (Slack, Teams and Discord keep their keys there), a lone
/// first segment that looks like a token (longer than 16 bytes or holding a digit), each query
/// value (`?token=<redacted>`), a query item without `=`, and the fragment. Works on text that
/// does not parse as a URL too (a validation error shows the same form).
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(end);
    let mut out = String::with_capacity(url.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    match authority.rsplit_once('@') {
        Some((_, host)) => {
            out.push_str(REDACTED);
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, _)) => (rest, true),
        None => (rest, false),
    };
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if let Some(path) = path.strip_prefix('/') {
        out.push('/');
        let (first, more) = match path.split_once('/') {
            Some((first, more)) => (first, Some(more)),
            None => (path, None),
        };
        let token_like = first.len() > 16 || first.bytes().any(|b| b.is_ascii_digit());
        if more.is_none() && token_like {
            out.push_str(REDACTED);
        } else {
            out.push_str(first);
        }
        if let Some(more) = more {
            out.push('/');
            if !more.is_empty() {
                out.push_str(REDACTED);
            }
        }
    }
    if let Some(query) = query {
        out.push('?');
        let items: Vec<String> = query
            .split('&')
            .map(|item| match item.split_once('=') {
                Some((key, _)) => format!("{key}={REDACTED}"),
                None if item.is_empty() => String::new(),
                None => REDACTED.to_string(),
            })
            .collect();
        out.push_str(&items.join("&"));
    }
    if fragment {
        out.push('#');
        out.push_str(REDACTED);
    }
    out
}

/// `message` with every occurrence of `url` replaced by its [`redact_url`] form: the last guard
/// on a delivery error, whose text may quote the URL (a response body echoing the request, an
/// error from another crate naming it).
pub(crate) fn scrub(message: String, url: &str) -> String {
    if url.is_empty() || !message.contains(url) {
        return message;
    }
    message.replace(url, &redact_url(url))
}

/// The version 4 payload for `n`, or None when nothing is left to send (every alert resolved
/// and `send_resolved` is false).
///
/// Order of operations follows Alertmanager: resolved alerts are left out first (when
/// `send_resolved` is false), then the list is cut to `max_alerts`, then `status`,
/// `commonLabels` and `commonAnnotations` are computed over the alerts actually sent.
pub fn payload(n: &Notification, cfg: &WebhookConfig) -> Option<serde_json::Value> {
    let mut alerts: Vec<&AlertSnapshot> = n
        .alerts
        .iter()
        .filter(|a| cfg.send_resolved || a.status == AlertState::Firing)
        .collect();
    if alerts.is_empty() {
        return None;
    }
    let truncated = if cfg.max_alerts > 0 && alerts.len() > cfg.max_alerts {
        let cut = alerts.len() - cfg.max_alerts;
        alerts.truncate(cfg.max_alerts);
        cut
    } else {
        0
    };
    let status = if alerts.iter().any(|a| a.status == AlertState::Firing) {
        AlertState::Firing
    } else {
        AlertState::Resolved
    };
    let json_alerts: Vec<serde_json::Value> = alerts
        .iter()
        .map(|a| {
            serde_json::json!({
                "status": a.status.as_str(),
                "labels": AsMap(&a.labels),
                "annotations": a.annotations,
                "startsAt": format_rfc3339(a.starts_at),
                "endsAt": ends_at(a),
                "generatorURL": a.generator_url,
                "fingerprint": format_fingerprint(a.fingerprint),
            })
        })
        .collect();
    Some(serde_json::json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": truncated,
        "status": status.as_str(),
        "receiver": n.receiver,
        "groupLabels": AsMap(&n.group_labels),
        "commonLabels": AsMap(&common_labels(alerts.iter().map(|a| &a.labels))),
        "commonAnnotations": common(alerts.iter().map(|a| &a.annotations)),
        "externalURL": n.external_url,
        "alerts": json_alerts,
    }))
}

/// `sha256=<lowercase hex HMAC-SHA256 of body keyed by secret>`: the `X-Tocsin-Signature`
/// value. A receiver recomputes it over the raw body bytes it received.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac takes any key length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 2 * digest.len());
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// POSTs the payload of `n` to `cfg.url` and classifies the outcome. Nothing to send (see
/// [`payload`]) counts as delivered.
pub async fn send(
    client: &reqwest::Client,
    cfg: &WebhookConfig,
    n: &Notification,
    now_ms: i64,
) -> Result<(), DeliveryError> {
    let Some(payload) = payload(n, cfg) else {
        return Ok(());
    };
    let (body, content_type) = match &cfg.body {
        Some(b) => (b.render(&payload, now_ms)?, b.content_type.as_str()),
        None => (
            serde_json::to_vec(&payload).expect("a json value always serializes"),
            "application/json",
        ),
    };
    let mut request = client
        .post(&cfg.url)
        .timeout(cfg.timeout)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .header(IDEMPOTENCY_HEADER, &n.idempotency_key);
    if let Some(secret) = &cfg.secret {
        request = match &cfg.signature {
            SignatureFormat::Tocsin => request.header(SIGNATURE_HEADER, signature(secret, &body)),
            SignatureFormat::Grafana { timestamp_header } => {
                let hex = |signed: &[u8]| {
                    signature(secret, signed)
                        .trim_start_matches("sha256=")
                        .to_string()
                };
                match timestamp_header {
                    Some(h) => {
                        let ts = now_ms.div_euclid(1000).to_string();
                        let mut signed = format!("{ts}:").into_bytes();
                        signed.extend_from_slice(&body);
                        request
                            .header(h.as_str(), ts)
                            .header(GRAFANA_SIGNATURE_HEADER, hex(&signed))
                    }
                    None => request.header(GRAFANA_SIGNATURE_HEADER, hex(&body)),
                }
            }
        };
    }
    post(request, body, &cfg.url, "webhook").await
}

/// Sends a prepared POST with `body` and classifies the outcome: the one HTTP delivery path of
/// the webhook and `alertmanager` integrations. `url` is scrubbed from every message, which
/// names the integration kind (`what`).
pub(crate) async fn post(
    request: reqwest::RequestBuilder,
    body: Vec<u8>,
    url: &str,
    what: &str,
) -> Result<(), DeliveryError> {
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|e| classify_error(url, what, e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let excerpt = scrub(body_excerpt(response).await, url);
    Err(classify(status.as_u16(), &excerpt, what))
}

/// The decision for an HTTP status that is not 2xx: 429 and 5xx are worth retrying, every
/// other status is permanent. `excerpt` (the start of the response body) goes into the message.
pub fn classify_status(status: u16, excerpt: &str) -> DeliveryError {
    classify(status, excerpt, "webhook")
}

/// [`classify_status`] for an integration kind (`webhook`, `alertmanager`).
fn classify(status: u16, excerpt: &str, what: &str) -> DeliveryError {
    let message = if excerpt.is_empty() {
        format!("{what} returned http {status}")
    } else {
        format!("{what} returned http {status}: {excerpt}")
    };
    if status == 429 || (500..600).contains(&status) {
        DeliveryError::Transient(message)
    } else {
        DeliveryError::Permanent(message)
    }
}

/// A request that did not get a response: a bad URL or request is permanent; connect errors,
/// timeouts, resets and broken bodies are transient. The message names the URL redacted
/// ([`redact_url`]); reqwest's own copy of it is dropped (`without_url`) and the cause chain
/// scrubbed of it.
fn classify_error(url: &str, what: &str, e: reqwest::Error) -> DeliveryError {
    let e = e.without_url();
    let failure = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    // the source chain holds the cause (connection refused, reset…); reqwest's Display does not
    let mut message = format!("{what} {}: {failure}", redact_url(url));
    if let Some(cause) = std::error::Error::source(&e) {
        message.push_str(": ");
        message.push_str(&scrub(crate::error::chain(cause), url));
    }
    if e.is_builder() {
        DeliveryError::Permanent(message)
    } else {
        DeliveryError::Transient(message)
    }
}

/// The first [`BODY_EXCERPT_BYTES`] of a response body, whitespace collapsed; empty when the
/// body cannot be read (the status alone then tells what happened).
async fn body_excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < BODY_EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(BODY_EXCERPT_BYTES);
    String::from_utf8_lossy(&bytes)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn ends_at(a: &AlertSnapshot) -> String {
    match (a.status, a.ends_at) {
        (AlertState::Resolved, Some(ms)) => format_rfc3339(ms),
        _ => ZERO_TIME.to_string(),
    }
}

/// The pairs every label set holds with the same value (Alertmanager's `commonLabels`).
fn common_labels<'a>(mut sets: impl Iterator<Item = &'a Labels>) -> Labels {
    let Some(first) = sets.next() else {
        return Labels::default();
    };
    let rest: Vec<&Labels> = sets.collect();
    first.filter(|k| rest.iter().all(|l| l.get(k) == first.get(k)))
}

/// The pairs every map holds with the same value (Alertmanager's `commonAnnotations`).
fn common<'a>(
    mut maps: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let Some(first) = maps.next() else {
        return BTreeMap::new();
    };
    let mut shared = first.clone();
    for m in maps {
        shared.retain(|k, v| m.get(k) == Some(v));
    }
    shared
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Change;

    fn alert(name: &str, instance: &str, status: AlertState) -> AlertSnapshot {
        AlertSnapshot {
            labels: Labels::from_pairs([
                ("alertname", name),
                ("instance", instance),
                ("job", "scaisend"),
            ]),
            annotations: BTreeMap::from([
                ("summary".into(), format!("{instance} is slow")),
                ("runbook_url".into(), "https://runbooks/q".into()),
            ]),
            status,
            starts_at: 1_700_000_000_000,
            ends_at: (status == AlertState::Resolved).then_some(1_700_000_060_500),
            generator_url: "http://tocsin/rules".into(),
            // instances are hex digits here: `a` has fingerprint 0xa (others: a hash)
            fingerprint: u64::from_str_radix(instance, 16)
                .unwrap_or_else(|_| xxhash_rust::xxh3::xxh3_64(instance.as_bytes())),
        }
    }

    fn notification(alerts: Vec<AlertSnapshot>) -> Notification {
        Notification {
            receiver: "ops".into(),
            group_key: "{}:{alertname=\"Q\"}".into(),
            group_labels: Labels::from_pairs([("alertname", "Q")]),
            alerts,
            external_url: "http://tocsin:9300".into(),
            idempotency_key: "k1".into(),
            change: Change::FirstNotification,
            changed: Default::default(),
        }
    }

    fn config() -> WebhookConfig {
        WebhookConfig {
            url: "http://127.0.0.1:1/hook".into(),
            secret: None,
            timeout: Duration::from_secs(1),
            max_alerts: 0,
            send_resolved: true,
            body: None,
            signature: SignatureFormat::Tocsin,
        }
    }

    /// The body a recipe under `fixtures/examples/recipes/` renders for `n`, parsed as JSON.
    fn recipe_body(file: &str, n: &Notification) -> serde_json::Value {
        let path = format!(
            "{}/fixtures/examples/recipes/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let config = crate::config::Config::load(std::path::Path::new(&path))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let receiver = &config.receivers[0];
        let mut cfg = crate::notify::setup::webhook_config(receiver, None).unwrap();
        cfg.body.as_mut().expect("a recipe has a body").secret = Some("ROUTING-KEY".into());
        let payload = payload(n, &cfg).unwrap();
        let body = cfg.body.as_ref().expect("a recipe has a body");
        let bytes = body.render(&payload, 1_700_000_100_000).unwrap();
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{file}: not JSON ({e}):\n{}",
                String::from_utf8_lossy(&bytes)
            )
        })
    }

    #[test]
    fn every_recipe_renders_the_shape_its_service_takes() {
        // quotes, newlines and markup in labels and annotations must stay inside their strings
        let mut tricky = alert("Q", "db\"1\n<b>", AlertState::Firing);
        tricky
            .annotations
            .insert("summary".into(), "50% \"slow\"\\ {{ x }}".into());
        let firing = notification(vec![
            tricky,
            alert("Q", "b", AlertState::Firing),
            alert("Q", "c", AlertState::Resolved),
        ]);
        let resolved = notification(vec![alert("Q", "c", AlertState::Resolved)]);
        let with_severity = |mut n: Notification, sev: &str| {
            for a in &mut n.alerts {
                a.labels = a.labels.with("severity", sev);
            }
            n
        };

        let slack = recipe_body("slack.yml", &firing);
        assert_eq!(slack["text"], "[FIRING:2] Q");
        let blocks = slack["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 4, "{slack}");
        assert_eq!(
            blocks[1]["text"]["text"],
            "*FIRING* db\"1\n<b>\n50% \"slow\"\\ {{ x }}"
        );

        let teams = recipe_body("teams.yml", &firing);
        let card = &teams["attachments"][0];
        assert_eq!(
            card["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let body = card["content"]["body"].as_array().unwrap();
        assert_eq!(body.len(), 4);
        assert_eq!(body[0]["color"], "Attention");
        assert!(
            body[2]["text"]
                .as_str()
                .unwrap()
                .ends_with("(since 2023-11-14 22:13 UTC)"),
            "{teams}"
        );
        assert_eq!(card["content"]["actions"][0]["url"], "http://tocsin:9300");
        assert_eq!(
            recipe_body("teams.yml", &resolved)["attachments"][0]["content"]["body"][0]["color"],
            "Good"
        );

        let discord = recipe_body("discord.yml", &firing);
        let embeds = discord["embeds"].as_array().unwrap();
        assert_eq!(embeds.len(), 3);
        assert_eq!(embeds[0]["color"], 15158332);
        assert_eq!(embeds[2]["color"], 3066993);
        assert_eq!(embeds[1]["timestamp"], "2023-11-14T22:13:20Z");

        let mattermost = recipe_body("mattermost.yml", &firing);
        assert_eq!(mattermost["text"], "#### [FIRING:2] Q");
        assert_eq!(mattermost["attachments"].as_array().unwrap().len(), 3);

        let ntfy = recipe_body("ntfy.yml", &firing);
        assert_eq!(
            (ntfy["topic"].as_str(), ntfy["priority"].as_i64()),
            (Some("alerts"), Some(5))
        );
        assert_eq!(ntfy["title"], "[FIRING:2] Q");
        assert_eq!(recipe_body("ntfy.yml", &resolved)["priority"], 3);

        let pd = recipe_body("pagerduty.yml", &with_severity(firing.clone(), "critical"));
        assert_eq!(pd["routing_key"], "ROUTING-KEY");
        assert_eq!(pd["event_action"], "trigger");
        assert_eq!(pd["dedup_key"], "{}:{alertname=\"Q\"}");
        assert_eq!(pd["payload"]["severity"], "critical");
        assert_eq!(pd["payload"]["source"], "scaisend");
        assert_eq!(pd["payload"]["custom_details"]["firing"], 2);
        let pd = recipe_body("pagerduty.yml", &with_severity(resolved.clone(), "page"));
        assert_eq!(pd["event_action"], "resolve");
        assert_eq!(
            pd["payload"]["severity"], "error",
            "a severity PagerDuty does not take"
        );
    }

    #[test]
    fn a_body_that_fails_to_render_is_a_permanent_failure() {
        let template = Template::parse("{{ index .Alerts 7 }}").unwrap();
        let body = WebhookBody {
            template: std::sync::Arc::new(template),
            content_type: "application/json".into(),
            secret: None,
        };
        let n = notification(vec![alert("Q", "a", AlertState::Firing)]);
        match body.render(&payload(&n, &config()).unwrap(), 0) {
            Err(DeliveryError::Permanent(m)) => assert!(m.contains("out of range"), "{m}"),
            other => panic!("{other:?}"),
        }
        // a template whose output would explode is stopped
        let bomb = "{{ range .Alerts }}{{ range $.Alerts }}{{ range $.Alerts }}{{ range $.Alerts }}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{{ end }}{{ end }}{{ end }}{{ end }}";
        let body = WebhookBody {
            template: std::sync::Arc::new(Template::parse(bomb).unwrap()),
            ..body
        };
        let many = notification(
            (0..60)
                .map(|i| alert("Q", &format!("i{i}"), AlertState::Firing))
                .collect(),
        );
        match body.render(&payload(&many, &config()).unwrap(), 0) {
            Err(DeliveryError::Permanent(m)) => assert!(m.contains("too costly"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn payload_has_alertmanager_version_4_shape() {
        let n = notification(vec![
            alert("Q", "a", AlertState::Firing),
            alert("Q", "b", AlertState::Resolved),
        ]);
        let p = payload(&n, &config()).unwrap();
        let expected = serde_json::json!({
            "version": "4",
            "groupKey": "{}:{alertname=\"Q\"}",
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "ops",
            "groupLabels": {"alertname": "Q"},
            // instance and summary differ between the two alerts
            "commonLabels": {"alertname": "Q", "job": "scaisend"},
            "commonAnnotations": {"runbook_url": "https://runbooks/q"},
            "externalURL": "http://tocsin:9300",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "Q", "instance": "a", "job": "scaisend"},
                    "annotations": {"summary": "a is slow", "runbook_url": "https://runbooks/q"},
                    "startsAt": "2023-11-14T22:13:20Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://tocsin/rules",
                    "fingerprint": "000000000000000a",
                },
                {
                    "status": "resolved",
                    "labels": {"alertname": "Q", "instance": "b", "job": "scaisend"},
                    "annotations": {"summary": "b is slow", "runbook_url": "https://runbooks/q"},
                    "startsAt": "2023-11-14T22:13:20Z",
                    "endsAt": "2023-11-14T22:14:20.500Z",
                    "generatorURL": "http://tocsin/rules",
                    "fingerprint": "000000000000000b",
                },
            ],
        });
        assert_eq!(p, expected);
    }

    #[test]
    fn max_alerts_truncates_and_counts_the_rest() {
        let n = notification(vec![
            alert("Q", "a", AlertState::Resolved),
            alert("Q", "b", AlertState::Firing),
            alert("Q", "c", AlertState::Firing),
        ]);
        let cfg = WebhookConfig {
            max_alerts: 1,
            ..config()
        };
        let p = payload(&n, &cfg).unwrap();
        assert_eq!(p["truncatedAlerts"], 2);
        assert_eq!(p["alerts"].as_array().unwrap().len(), 1);
        // status and common labels describe what is sent: the one resolved alert
        assert_eq!(p["status"], "resolved");
        assert_eq!(p["commonLabels"]["instance"], "a");
    }

    #[test]
    fn send_resolved_false_leaves_resolved_alerts_out() {
        let cfg = WebhookConfig {
            send_resolved: false,
            ..config()
        };
        let mixed = notification(vec![
            alert("Q", "a", AlertState::Firing),
            alert("Q", "b", AlertState::Resolved),
        ]);
        let p = payload(&mixed, &cfg).unwrap();
        let fingerprints: Vec<_> = p["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["fingerprint"].clone())
            .collect();
        assert_eq!(fingerprints, vec!["000000000000000a"]);
        assert_eq!(p["commonLabels"]["instance"], "a");
        // nothing left: nothing to send
        let all_resolved = notification(vec![alert("Q", "b", AlertState::Resolved)]);
        assert_eq!(payload(&all_resolved, &cfg), None);
        // with send_resolved the all-resolved group is sent, status resolved
        assert_eq!(
            payload(&all_resolved, &config()).unwrap()["status"],
            "resolved"
        );
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn urls_are_redacted_to_scheme_host_port_and_first_segment() {
        let cases = [
            // Slack: workspace, channel and key in the path
            (
                "https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX",
                "https://hooks.slack.com/services/<redacted>",
            ),
            // Teams (the old connector and the workflow form)
            (
                "https://contoso.webhook.office.com/webhookb2/1f0c-4e@72f9-11/IncomingWebhook/abc123/9e8d",
                "https://contoso.webhook.office.com/webhookb2/<redacted>",
            ),
            (
                "https://prod-12.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers&sv=1.0&sig=SECRETSIG",
                "https://prod-12.westeurope.logic.azure.com:443/workflows/<redacted>?api-version=<redacted>&sp=<redacted>&sv=<redacted>&sig=<redacted>",
            ),
            // Discord: id and token in the path
            (
                "https://discord.com/api/webhooks/123456789/SECRETTOKEN",
                "https://discord.com/api/<redacted>",
            ),
            // basic auth in the userinfo, port kept
            (
                "http://alice:hunter2@127.0.0.1:9093/hook",
                "http://<redacted>@127.0.0.1:9093/hook",
            ),
            (
                "https://token@example.org/",
                "https://<redacted>@example.org/",
            ),
            // query tokens, a key without a value, a fragment
            (
                "https://example.org/alert?token=SECRET&x",
                "https://example.org/alert?token=<redacted>&<redacted>",
            ),
            (
                "https://example.org/a#SECRET",
                "https://example.org/a#<redacted>",
            ),
            // a lone segment is kept unless it looks like a token
            ("http://127.0.0.1:1/hook", "http://127.0.0.1:1/hook"),
            (
                "https://ntfy.example.org/3f9a8b7c6d5e4f3a",
                "https://ntfy.example.org/<redacted>",
            ),
            ("https://example.org", "https://example.org"),
            ("https://example.org/a/", "https://example.org/a/"),
            // text that is not a URL still loses what could be secret
            ("user:pw@host/x/SECRET", "<redacted>@host/x/<redacted>"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn debug_shows_neither_the_url_secret_nor_the_hmac_secret() {
        let cfg = WebhookConfig {
            url: "https://hooks.slack.com/services/T0/B0/KEY".into(),
            secret: Some("HMACKEY".into()),
            ..config()
        };
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("KEY"), "{debug}");
        assert!(debug.contains("https://hooks.slack.com/services/<redacted>"));
    }

    #[tokio::test]
    async fn a_failed_request_names_the_url_redacted() {
        // nothing listens on port 1; the URL carries secrets in every place it can
        let cfg = WebhookConfig {
            url: "http://user:PASSWORD@127.0.0.1:1/services/T0/SECRETPATH?token=SECRETQUERY".into(),
            ..config()
        };
        let n = notification(vec![alert("Q", "a", AlertState::Firing)]);
        let e = send(&reqwest::Client::new(), &cfg, &n, 0)
            .await
            .unwrap_err();
        let text = e.to_string();
        for secret in ["PASSWORD", "SECRETPATH", "SECRETQUERY"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(
            text.contains(
                "webhook http://<redacted>@127.0.0.1:1/services/<redacted>?token=<redacted>"
            ),
            "{text}"
        );
    }

    #[test]
    fn statuses_classify_for_retry() {
        let cases = [
            // rate limited: try again later
            (429, true),
            // server errors, including gateways in front of the receiver
            (500, true),
            (502, true),
            (503, true),
            // the request itself is wrong: retrying sends the same wrong request
            (400, false),
            (401, false),
            (404, false),
            (413, false),
            // a redirect that was not followed is a configuration problem
            (301, false),
        ];
        for (status, transient) in cases {
            let got = classify_status(status, "");
            assert_eq!(
                matches!(got, DeliveryError::Transient(_)),
                transient,
                "{status}: {got}"
            );
        }
        assert_eq!(
            classify_status(503, "down for maintenance"),
            DeliveryError::Transient("webhook returned http 503: down for maintenance".into())
        );
    }
}
