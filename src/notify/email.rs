//! The email receiver: one message per notification over SMTP (lettre, async, rustls), with a
//! subject that says what changed, a plain-text and an HTML part, and the outcome classified
//! for the sender's retry loop.
//!
//! TLS is chosen from the port unless configured: 465 is implicit TLS (SMTPS), anything else
//! requires STARTTLS; plain SMTP is allowed only to a relay on this host. Neither credentials
//! nor mail go over an unencrypted link to another host, and a server that does not offer
//! STARTTLS when it is required gets nothing (lettre refuses before AUTH or MAIL).

use std::collections::BTreeSet;
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Severity;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::webhook::{REDACTED, redact_url, scrub};
use super::{AlertSnapshot, AlertState, DeliveryError, Notification};
use crate::labels::Labels;
use crate::timefmt::format_rfc3339;

/// The header carrying [`Notification::idempotency_key`] verbatim; the `Message-ID` is derived
/// from the same key, so a second delivery of one group state is recognisably the same message.
pub const IDEMPOTENCY_HEADER: &str = "X-Tocsin-Idempotency-Key";

/// One email integration, as the `receivers` config section builds it. Its `Debug` shows the
/// smarthost redacted ([`redact_url`]: userinfo written into it) and never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailConfig {
    /// recipients, all in one message's `To`
    pub to: Vec<String>,
    /// sender address (`alerts@example.org` or `Tocsin <alerts@example.org>`)
    pub from: String,
    /// SMTP server as `host:port` (`[::1]:25` for an IPv6 literal)
    pub smarthost: String,
    /// AUTH user name; set together with `password`
    pub username: Option<String>,
    /// AUTH password (read from the environment or a file by the config layer)
    pub password: Option<String>,
    /// how the connection is encrypted; see [`TlsMode::default_for_port`]
    pub tls: TlsMode,
    /// whether resolved alerts are sent (default false, as Alertmanager)
    pub send_resolved: bool,
    /// limit for the whole SMTP exchange, from connect to QUIT (and for each read or write)
    pub timeout: Duration,
    /// the name sent in EHLO; the machine's host name when unset
    pub hello: Option<String>,
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("to", &self.to)
            .field("from", &self.from)
            .field("smarthost", &redact_url(&self.smarthost))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("tls", &self.tls)
            .field("send_resolved", &self.send_resolved)
            .field("timeout", &self.timeout)
            .field("hello", &self.hello)
            .finish()
    }
}

/// How the SMTP connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS from the first byte (SMTPS, port 465)
    Implicit,
    /// plain connect, then STARTTLS, which the server must offer (port 587 or 25)
    StartTls,
    /// no encryption: only for a relay on this host (localhost, 127.0.0.1, ::1)
    None,
}

/// The two parts of one notification email and its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// `[FIRING:2] ScaiSendQueueGrowing (scaisend)` or `[RESOLVED] …`
    pub subject: String,
    /// the plain-text part
    pub text: String,
    /// the HTML part: every label, annotation and URL escaped
    pub html: String,
}

impl TlsMode {
    /// The mode a port implies: 465 is implicit TLS (RFC 8314), anything else STARTTLS.
    pub fn default_for_port(port: u16) -> TlsMode {
        if port == 465 {
            TlsMode::Implicit
        } else {
            TlsMode::StartTls
        }
    }

    /// The config spelling: `implicit`, `starttls` or `none`.
    pub fn parse(s: &str) -> Option<TlsMode> {
        match s {
            "implicit" => Some(TlsMode::Implicit),
            "starttls" => Some(TlsMode::StartTls),
            "none" => Some(TlsMode::None),
            _ => None,
        }
    }
}

impl EmailConfig {
    /// Checks what can be checked without a network: recipients and sender parse as
    /// addresses, `smarthost` is `host:port`, credentials come in pairs, and `tls: none` points
    /// at this host. Every problem is reported, joined by `; `.
    pub fn validate(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        if self.to.is_empty() {
            errors.push("to: needs at least one recipient".to_string());
        }
        for to in &self.to {
            if let Err(e) = to.parse::<Mailbox>() {
                errors.push(format!("to: {to:?} is not an address: {e}"));
            }
        }
        if let Err(e) = self.from.parse::<Mailbox>() {
            errors.push(format!("from: {:?} is not an address: {e}", self.from));
        }
        match split_host_port(&self.smarthost) {
            Err(e) => errors.push(e),
            Ok((host, _)) => {
                if self.tls == TlsMode::None && !is_local(&host) {
                    errors.push(format!(
                        "tls: none is only allowed for localhost, 127.0.0.1 or ::1, not {host:?}"
                    ));
                }
            }
        }
        if self.username.is_some() != self.password.is_some() {
            errors.push("username and password: set both or neither".to_string());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// The subject and both parts for `n`, as sent (no filtering: [`send`] leaves resolved alerts
/// out first when `send_resolved` is false).
///
/// The subject follows Alertmanager's: `[FIRING:<firing count>]` or `[RESOLVED]`, the group's
/// alertname, then the values of the other group labels in parentheses. The body opens with
/// why it was sent ([`super::Change`]) and lists the alerts new since the last notification of
/// the group, then the resolved ones, then those still firing (known before), each with labels,
/// summary, description, runbook link and times.
pub fn render(n: &Notification) -> RenderedEmail {
    let (firing, resolved): (Vec<&AlertSnapshot>, Vec<&AlertSnapshot>) = n
        .alerts
        .iter()
        .partition(|a| a.status == AlertState::Firing);
    let (new, still): (Vec<&AlertSnapshot>, Vec<&AlertSnapshot>) = firing
        .iter()
        .partition(|a| n.changed.contains(&a.fingerprint));
    let subject = subject(n, firing.len());
    let sections = [
        ("New", &new),
        ("Resolved", &resolved),
        ("Still firing", &still),
    ];

    let mut text = format!("{subject}\n\nWhy: {}\n", n.change.as_str());
    if !n.group_labels.is_empty() {
        text.push_str(&format!("Group: {}\n", label_list(&n.group_labels)));
    }
    for (title, alerts) in sections {
        if alerts.is_empty() {
            continue;
        }
        let heading = format!("{title} ({})", alerts.len());
        text.push_str(&format!("\n{heading}\n{}\n", "-".repeat(heading.len())));
        for a in alerts.iter() {
            text.push_str(&alert_text(a));
        }
    }
    if !n.external_url.is_empty() {
        text.push_str(&format!("\n-- \nSent by tocsin: {}\n", n.external_url));
    }

    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\n<body style=\"font-family: sans-serif\">\n",
    );
    html.push_str(&format!("<h2>{}</h2>\n", escape(&subject)));
    html.push_str(&format!(
        "<p><b>Why:</b> {}</p>\n",
        escape(n.change.as_str())
    ));
    if !n.group_labels.is_empty() {
        html.push_str(&format!(
            "<p><b>Group:</b> <code>{}</code></p>\n",
            escape(&label_list(&n.group_labels))
        ));
    }
    for (title, alerts) in sections {
        if alerts.is_empty() {
            continue;
        }
        html.push_str(&format!("<h3>{title} ({})</h3>\n<ul>\n", alerts.len()));
        for a in alerts.iter() {
            html.push_str(&alert_html(a));
        }
        html.push_str("</ul>\n");
    }
    if !n.external_url.is_empty() {
        html.push_str(&format!(
            "<p style=\"color: #666\">Sent by tocsin: {}</p>\n",
            link(&n.external_url, &n.external_url)
        ));
    }
    html.push_str("</body></html>\n");
    RenderedEmail {
        subject,
        text,
        html,
    }
}

/// Sends `n` as one message to every recipient and classifies the outcome. With
/// `send_resolved` false, resolved alerts are left out, and a notification with nothing left
/// counts as delivered without connecting.
pub async fn send(cfg: &EmailConfig, n: &Notification) -> Result<(), DeliveryError> {
    cfg.validate()
        .map_err(|e| DeliveryError::Permanent(format!("email config: {e}")))?;
    let mut n = n.clone();
    if !cfg.send_resolved {
        n.alerts.retain(|a| a.status == AlertState::Firing);
        if n.alerts.is_empty() {
            return Ok(());
        }
    }
    let message = message(cfg, &n)?;
    let transport = transport(cfg)?;
    match tokio::time::timeout(cfg.timeout, transport.send(message)).await {
        Err(_) => Err(DeliveryError::Transient(format!(
            "smtp {}: no answer within {:?}",
            redact_url(&cfg.smarthost),
            cfg.timeout
        ))),
        Ok(Err(e)) => Err(classify(&cfg.smarthost, &e)),
        Ok(Ok(_)) => Ok(()),
    }
}

/// The decision for a failed SMTP exchange with `smarthost`:
/// - a 4xx reply (transient negative completion), connection refused or reset, a connection
///   closed before a complete reply, a timeout → transient;
/// - a 5xx reply (535: authentication rejected), STARTTLS required but not offered, no common
///   AUTH mechanism, a TLS handshake that fails on the certificate → permanent.
///
/// The smarthost is named redacted ([`redact_url`]), in the message and in lettre's words.
pub fn classify(smarthost: &str, e: &lettre::transport::smtp::Error) -> DeliveryError {
    let redacted = redact_url(smarthost);
    let detail = scrub(crate::error::chain(e), smarthost);
    let smarthost = redacted.as_str();
    if let Some(code) = e.status() {
        let number = u16::from(code);
        let what = match number {
            534 | 535 | 538 => "authentication rejected",
            454 => "authentication temporarily failed",
            _ => "server refused",
        };
        let message = format!("smtp {smarthost}: {what}: {detail}");
        return match code.severity {
            Severity::TransientNegativeCompletion => DeliveryError::Transient(message),
            _ => DeliveryError::Permanent(message),
        };
    }
    if e.is_timeout() {
        return DeliveryError::Transient(format!("smtp {smarthost}: timed out: {detail}"));
    }
    if e.is_client() {
        // lettre's words for a server that does not advertise STARTTLS
        if detail.contains("STARTTLS") {
            return DeliveryError::Permanent(format!(
                "smtp {smarthost}: tls is starttls but the server does not offer STARTTLS; \
                 nothing was sent (use tls: implicit for port 465, or fix the server)"
            ));
        }
        return DeliveryError::Permanent(format!("smtp {smarthost}: {detail}"));
    }
    if e.is_tls() && !io_interrupted(e) {
        return DeliveryError::Permanent(format!("smtp {smarthost}: tls failed: {detail}"));
    }
    if e.is_response() {
        // lettre's "incomplete response": the server hung up mid-exchange
        return DeliveryError::Transient(format!(
            "smtp {smarthost}: connection closed before a complete reply: {detail}"
        ));
    }
    // network and connection errors: refused, reset, unreachable
    DeliveryError::Transient(format!("smtp {smarthost}: {detail}"))
}

/// `host:port` into its parts; the brackets of `[::1]:25` are removed.
fn split_host_port(smarthost: &str) -> Result<(String, u16), String> {
    let err = || {
        format!(
            "smarthost: expected host:port, got {:?}",
            redact_url(smarthost)
        )
    };
    let (host, port) = smarthost.rsplit_once(':').ok_or_else(err)?;
    let port: u16 = port.parse().map_err(|_| err())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || port == 0 {
        return Err(err());
    }
    Ok((host.to_string(), port))
}

fn is_local(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

fn transport(cfg: &EmailConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, DeliveryError> {
    let (host, port) = split_host_port(&cfg.smarthost).map_err(DeliveryError::Permanent)?;
    let tls_error = |e: lettre::transport::smtp::Error| {
        DeliveryError::Permanent(format!(
            "smtp {}: tls setup: {}",
            redact_url(&cfg.smarthost),
            scrub(crate::error::chain(&e), &cfg.smarthost)
        ))
    };
    let mut builder = match cfg.tls {
        TlsMode::Implicit => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&host).map_err(tls_error)?
        }
        TlsMode::StartTls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host).map_err(tls_error)?
        }
        TlsMode::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host),
    }
    .port(port)
    .timeout(Some(cfg.timeout));
    if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    if let Some(hello) = &cfg.hello {
        builder = builder.hello_name(ClientId::Domain(hello.clone()));
    }
    Ok(builder.build())
}

fn message(cfg: &EmailConfig, n: &Notification) -> Result<Message, DeliveryError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        DeliveryError::Permanent(format!("email {what}: {e}"))
    };
    let rendered = render(n);
    let mut builder = Message::builder()
        .from(cfg.from.parse::<Mailbox>().map_err(|e| bad("from", &e))?)
        .subject(rendered.subject)
        .message_id(Some(message_id(&n.idempotency_key)))
        // every email of one group (firing, still firing, resolved) refers to the same thread,
        // so a mail client shows the resolution under the alert it ends
        .in_reply_to(thread_id(n))
        .references(thread_id(n))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(IDEMPOTENCY_HEADER),
            n.idempotency_key.clone(),
        ));
    for to in &cfg.to {
        builder = builder.to(to.parse::<Mailbox>().map_err(|e| bad("to", &e))?);
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            rendered.text,
            rendered.html,
        ))
        .map_err(|e| bad("message", &e))
}

/// The `In-Reply-To`/`References` of every email of a group: `<thread.<hash of receiver and
/// group key>@tocsin>`, the same for as long as the group exists, across restarts.
fn thread_id(n: &Notification) -> String {
    let key = format!("{}\u{0}{}", n.receiver, n.group_key);
    format!(
        "<thread.{:016x}@tocsin>",
        xxhash_rust::xxh3::xxh3_64(key.as_bytes())
    )
}

/// `<key@tocsin>` with anything outside RFC 5322 `atext` replaced, so the header stays valid.
fn message_id(key: &str) -> String {
    let safe: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) {
                c
            } else {
                '.'
            }
        })
        .collect();
    format!("<{safe}@tocsin>")
}

fn subject(n: &Notification, firing: usize) -> String {
    let status = if firing > 0 {
        format!("[FIRING:{firing}]")
    } else {
        "[RESOLVED]".to_string()
    };
    // the group's alertname, else the alertnames of its alerts
    let name = match n.group_labels.get("alertname") {
        Some(name) => name.to_string(),
        None => n
            .alerts
            .iter()
            .filter_map(|a| a.labels.get("alertname"))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join(", "),
    };
    let others: Vec<&str> = n
        .group_labels
        .iter()
        .filter(|(k, _)| *k != "alertname")
        .map(|(_, v)| v)
        .collect();
    let mut subject = status;
    if !name.is_empty() {
        subject.push(' ');
        subject.push_str(&name);
    }
    if !others.is_empty() {
        subject.push_str(&format!(" ({})", others.join(" ")));
    }
    subject
}

fn label_list(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn alert_text(a: &AlertSnapshot) -> String {
    let name = a.labels.get("alertname").unwrap_or("");
    let mut out = format!("* {name} {{{}}}\n", label_list(&a.labels));
    for (key, title) in [("summary", "Summary"), ("description", "Description")] {
        if let Some(v) = a.annotations.get(key) {
            out.push_str(&format!("  {title}: {v}\n"));
        }
    }
    if let Some(url) = a.annotations.get("runbook_url") {
        out.push_str(&format!("  Runbook: {url}\n"));
    }
    out.push_str(&format!("  Started: {}\n", format_rfc3339(a.starts_at)));
    if let (AlertState::Resolved, Some(ends)) = (a.status, a.ends_at) {
        out.push_str(&format!("  Ended: {}\n", format_rfc3339(ends)));
    }
    if !a.generator_url.is_empty() {
        out.push_str(&format!("  Source: {}\n", a.generator_url));
    }
    out.push('\n');
    out
}

fn alert_html(a: &AlertSnapshot) -> String {
    let name = a.labels.get("alertname").unwrap_or("");
    let mut out = format!(
        "<li><b>{}</b> <code>{}</code>\n<ul>\n",
        escape(name),
        escape(&label_list(&a.labels))
    );
    for (key, title) in [("summary", "Summary"), ("description", "Description")] {
        if let Some(v) = a.annotations.get(key) {
            out.push_str(&format!("<li>{title}: {}</li>\n", escape(v)));
        }
    }
    if let Some(url) = a.annotations.get("runbook_url") {
        out.push_str(&format!("<li>Runbook: {}</li>\n", link(url, url)));
    }
    out.push_str(&format!(
        "<li>Started: {}</li>\n",
        format_rfc3339(a.starts_at)
    ));
    if let (AlertState::Resolved, Some(ends)) = (a.status, a.ends_at) {
        out.push_str(&format!("<li>Ended: {}</li>\n", format_rfc3339(ends)));
    }
    if !a.generator_url.is_empty() {
        out.push_str(&format!("<li>{}</li>\n", link(&a.generator_url, "Source")));
    }
    out.push_str("</ul></li>\n");
    out
}

/// An `<a>` for http(s) URLs; anything else (`javascript:`, relative paths) is shown as text,
/// never as a link.
fn link(url: &str, text: &str) -> String {
    let lower = url.trim_start().to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        format!("<a href=\"{}\">{}</a>", escape(url), escape(text))
    } else {
        escape(url)
    }
}

/// Text made safe for HTML content and double- or single-quoted attributes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether an I/O error in the chain says the connection was cut rather than refused on
/// principle (a TLS handshake reset is worth retrying; a bad certificate is not).
fn io_interrupted(e: &dyn std::error::Error) -> bool {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | TimedOut
            ) {
                return true;
            }
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Change;
    use std::collections::BTreeMap;

    fn alert(instance: &str, status: AlertState) -> AlertSnapshot {
        AlertSnapshot {
            labels: Labels::from_pairs([
                ("alertname", "ScaiSendQueueGrowing"),
                ("instance", instance),
                ("job", "scaisend"),
            ]),
            annotations: BTreeMap::from([
                ("summary".into(), format!("queue on {instance} grows")),
                ("description".into(), "more than 100 messages".into()),
                (
                    "runbook_url".into(),
                    "https://runbooks.example/queue".into(),
                ),
            ]),
            status,
            starts_at: 1_700_000_000_000,
            ends_at: (status == AlertState::Resolved).then_some(1_700_000_600_000),
            generator_url: "http://tocsin:9300/rules".into(),
            // instances are hex digits here: `a` has fingerprint 0xa
            fingerprint: u64::from_str_radix(instance, 16).unwrap(),
        }
    }

    fn notification(alerts: Vec<AlertSnapshot>, change: Change) -> Notification {
        Notification {
            receiver: "mail".into(),
            group_key: "{}:{alertname=\"ScaiSendQueueGrowing\", job=\"scaisend\"}".into(),
            group_labels: Labels::from_pairs([
                ("alertname", "ScaiSendQueueGrowing"),
                ("job", "scaisend"),
            ]),
            alerts,
            external_url: "http://tocsin:9300".into(),
            idempotency_key: "00ff00ff00ff00ff".into(),
            change,
            changed: [0xa].into(),
        }
    }

    fn config(smarthost: &str, tls: TlsMode) -> EmailConfig {
        EmailConfig {
            to: vec!["ops@example.org".into()],
            from: "tocsin@example.org".into(),
            smarthost: smarthost.into(),
            username: None,
            password: None,
            tls,
            send_resolved: false,
            timeout: Duration::from_secs(5),
            hello: None,
        }
    }

    #[test]
    fn emails_of_one_group_share_a_thread_and_other_groups_do_not() {
        let cfg = config("127.0.0.1:25", TlsMode::None);
        let header = |n: &Notification, name: &str| -> String {
            let raw = String::from_utf8(message(&cfg, n).unwrap().formatted()).unwrap();
            raw.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("no {name} in:\n{raw}"))
                .to_string()
        };
        let firing = notification(vec![alert("a", AlertState::Firing)], Change::NewAlerts);
        let mut resolved =
            notification(vec![alert("a", AlertState::Resolved)], Change::AllResolved);
        resolved.idempotency_key = "1111222233334444".into();
        let thread = header(&firing, "In-Reply-To");
        assert!(
            thread.starts_with("<thread.") && thread.ends_with("@tocsin>"),
            "{thread}"
        );
        assert_eq!(header(&firing, "References"), thread);
        assert_eq!(
            header(&resolved, "In-Reply-To"),
            thread,
            "the resolve joins the thread"
        );
        assert_ne!(
            header(&resolved, "Message-ID"),
            header(&firing, "Message-ID")
        );
        let mut other = firing.clone();
        other.group_key = "{}:{alertname=\"Other\"}".into();
        assert_ne!(header(&other, "In-Reply-To"), thread);
        let mut other_receiver = firing.clone();
        other_receiver.receiver = "pager".into();
        assert_ne!(header(&other_receiver, "In-Reply-To"), thread);
    }

    #[test]
    fn subject_says_what_fires_or_resolved() {
        let cases = [
            // two firing, one resolved: the count is of firing alerts only
            (
                vec![
                    alert("a", AlertState::Firing),
                    alert("b", AlertState::Firing),
                    alert("c", AlertState::Resolved),
                ],
                "[FIRING:2] ScaiSendQueueGrowing (scaisend)",
            ),
            // every alert resolved
            (
                vec![alert("a", AlertState::Resolved)],
                "[RESOLVED] ScaiSendQueueGrowing (scaisend)",
            ),
        ];
        for (alerts, want) in cases {
            assert_eq!(
                render(&notification(alerts, Change::NewAlerts)).subject,
                want
            );
        }
        // grouped by something else: the alertnames of the alerts, group values in parentheses
        let mut n = notification(
            vec![alert("a", AlertState::Firing), {
                let mut b = alert("b", AlertState::Firing);
                b.labels = b.labels.with("alertname", "DiskFull");
                b
            }],
            Change::FirstNotification,
        );
        n.group_labels = Labels::from_pairs([("job", "scaisend")]);
        assert_eq!(
            render(&n).subject,
            "[FIRING:2] DiskFull, ScaiSendQueueGrowing (scaisend)"
        );
        // no grouping labels, no parentheses
        n.group_labels = Labels::default();
        n.alerts.truncate(1);
        assert_eq!(render(&n).subject, "[FIRING:1] ScaiSendQueueGrowing");
    }

    #[test]
    fn body_lists_new_then_resolved_then_still_firing_with_annotations() {
        let n = notification(
            vec![
                alert("b", AlertState::Resolved),
                alert("a", AlertState::Firing),
                alert("c", AlertState::Firing),
            ],
            Change::NewResolved,
        );
        let r = render(&n);
        let firing = r.text.find("New (1)").expect("new section");
        let resolved = r.text.find("Resolved (1)").expect("resolved section");
        let still = r
            .text
            .find("Still firing (1)")
            .expect("still firing section");
        assert!(firing < resolved && resolved < still, "{}", r.text);
        assert!(r.text[still..].contains("instance=\"c\""));
        assert!(r.text.contains("Why: new resolved"), "{}", r.text);
        assert!(r.text[firing..resolved].contains("instance=\"a\""));
        assert!(r.text[resolved..].contains("instance=\"b\""));
        assert!(r.text.contains("Summary: queue on a grows"));
        assert!(r.text.contains("Description: more than 100 messages"));
        assert!(r.text.contains("Runbook: https://runbooks.example/queue"));
        assert!(r.text.contains("Started: 2023-11-14T22:13:20Z"));
        assert!(r.text.contains("Ended: 2023-11-14T22:23:20Z"));
        assert!(r.html.contains(
            "<a href=\"https://runbooks.example/queue\">https://runbooks.example/queue</a>"
        ));
        assert!(r.html.contains("<h3>New (1)</h3>"));
        assert!(r.html.contains("<h3>Still firing (1)</h3>"));
        assert!(r.html.contains("<h3>Resolved (1)</h3>"));
        // an all-firing notification has no resolved section
        let only_firing = render(&notification(
            vec![alert("a", AlertState::Firing)],
            Change::FirstNotification,
        ));
        assert!(!only_firing.text.contains("Resolved ("));
    }

    #[test]
    fn html_part_escapes_labels_annotations_and_links() {
        let mut a = alert("a", AlertState::Firing);
        a.labels = a.labels.with("path", "<script>alert('x')</script>");
        a.annotations
            .insert("summary".into(), "a & b <b>bold</b> \"quoted\"".into());
        a.annotations
            .insert("runbook_url".into(), "javascript:alert(1)".into());
        a.generator_url = "https://g/?a=1&b=\"><img src=x>".into();
        let mut n = notification(vec![a], Change::FirstNotification);
        n.group_labels = n.group_labels.with("team", "<ops>");
        let html = render(&n).html;
        for raw in ["<script>", "<b>bold", "<img", "<ops>", "href=\"javascript"] {
            assert!(!html.contains(raw), "{raw} unescaped in:\n{html}");
        }
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains("a &amp; b &lt;b&gt;bold&lt;/b&gt; &quot;quoted&quot;"));
        // not http(s): shown as text, not a link
        assert!(html.contains("Runbook: javascript:alert(1)</li>"));
        assert!(html.contains("href=\"https://g/?a=1&amp;b=&quot;&gt;&lt;img src=x&gt;\""));
        // the text part is plain text: no escaping there
        assert!(render(&n).text.contains("a & b <b>bold</b>"));
    }

    #[test]
    fn tls_mode_follows_the_port() {
        assert_eq!(TlsMode::default_for_port(465), TlsMode::Implicit);
        assert_eq!(TlsMode::default_for_port(587), TlsMode::StartTls);
        assert_eq!(TlsMode::default_for_port(25), TlsMode::StartTls);
        assert_eq!(TlsMode::parse("starttls"), Some(TlsMode::StartTls));
        assert_eq!(TlsMode::parse("ssl"), None);
    }

    #[test]
    fn plain_smtp_only_to_this_host() {
        let cases = [
            ("localhost:25", TlsMode::None, true),
            ("127.0.0.1:2525", TlsMode::None, true),
            ("[::1]:25", TlsMode::None, true),
            ("mail.example.org:25", TlsMode::None, false),
            ("10.0.0.5:25", TlsMode::None, false),
            // encrypted modes may go anywhere
            ("mail.example.org:465", TlsMode::Implicit, true),
            ("mail.example.org:587", TlsMode::StartTls, true),
        ];
        for (host, tls, ok) in cases {
            let got = config(host, tls).validate();
            assert_eq!(got.is_ok(), ok, "{host} {tls:?}: {got:?}");
        }
        let e = config("mail.example.org:25", TlsMode::None)
            .validate()
            .unwrap_err();
        assert!(e.contains("none is only allowed for localhost"), "{e}");
    }

    #[test]
    fn validation_reports_every_problem() {
        let cfg = EmailConfig {
            to: vec!["not an address".into()],
            from: "".into(),
            smarthost: "mail.example.org".into(),
            username: Some("u".into()),
            ..config("x:1", TlsMode::StartTls)
        };
        let e = cfg.validate().unwrap_err();
        for want in [
            "to: \"not an address\" is not an address",
            "from: \"\" is not an address",
            "smarthost: expected host:port",
            "set both or neither",
        ] {
            assert!(e.contains(want), "{want} missing in {e}");
        }
    }

    #[test]
    fn message_id_carries_the_idempotency_key() {
        assert_eq!(message_id("00ff/fallback"), "<00ff/fallback@tocsin>");
        assert_eq!(message_id("a b<c>"), "<a.b.c.@tocsin>");
    }
}
