//! The webhook and email receivers against real servers on 127.0.0.1 started by each test: an
//! axum server recording requests, and a small scripted SMTP server (EHLO/AUTH/MAIL/RCPT/DATA/
//! QUIT, in `common.rs`) that can be told to refuse AUTH, refuse MAIL, or drop the connection
//! mid-DATA.
//! The SMTP tests run in plain mode (`tls: none` to 127.0.0.1): TLS would need certificates;
//! the STARTTLS case checks that a server not offering it gets nothing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::net::TcpListener;

use tocsin::labels::Labels;
use tocsin::notify::email::{self, EmailConfig, TlsMode};

use crate::common::{Answer, Script, WebhookSink, free_addr, smtp_server};
use tocsin::notify::webhook::{self, WebhookConfig};
use tocsin::notify::{AlertSnapshot, AlertState, Change, DeliveryError, Notification};

fn alert(instance: &str, status: AlertState) -> AlertSnapshot {
    AlertSnapshot {
        labels: Labels::from_pairs([
            ("alertname", "ScaiSendQueueGrowing"),
            ("instance", instance),
            ("job", "scaisend"),
        ]),
        annotations: BTreeMap::from([
            ("summary".into(), format!("queue on {instance} grows")),
            (
                "runbook_url".into(),
                "https://runbooks.example/queue".into(),
            ),
        ]),
        status,
        starts_at: 1_700_000_000_000,
        ends_at: (status == AlertState::Resolved).then_some(1_700_000_300_250),
        generator_url: "http://tocsin:9300/rules".into(),
        // instances are hex digits here: `a` has fingerprint 0xa
        fingerprint: u64::from_str_radix(instance, 16).unwrap(),
    }
}

fn notification(alerts: Vec<AlertSnapshot>) -> Notification {
    Notification {
        receiver: "ops".into(),
        group_key: "{}:{alertname=\"ScaiSendQueueGrowing\", job=\"scaisend\"}".into(),
        group_labels: Labels::from_pairs([
            ("alertname", "ScaiSendQueueGrowing"),
            ("job", "scaisend"),
        ]),
        alerts,
        external_url: "http://tocsin:9300".into(),
        idempotency_key: "5eed5eed5eed5eed".into(),
        change: Change::NewAlerts,
        changed: [0xa, 0xc].into(),
    }
}

fn two_firing_one_resolved() -> Notification {
    notification(vec![
        alert("a", AlertState::Firing),
        alert("b", AlertState::Firing),
        alert("c", AlertState::Resolved),
    ])
}

// ---------------------------------------------------------------------------------------------
// webhook

/// A server that accepts connections and never says a word.
async fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

fn webhook_config(url: String) -> WebhookConfig {
    WebhookConfig {
        url,
        secret: None,
        timeout: Duration::from_secs(5),
        max_alerts: 0,
        send_resolved: true,
        body: None,
        signature: webhook::SignatureFormat::Tocsin,
    }
}

/// A templated body goes out as rendered, with its content type, signed like any other body.
#[tokio::test]
async fn a_templated_webhook_body_is_posted_with_its_content_type_and_signature() {
    let hook = WebhookSink::start(Answer::Status(200)).await;
    let template = tocsin::rules::template::Template::parse(
        "{{ .Status }} {{ len .Alerts.Firing }}/{{ len .Alerts }} {{ .Secret }} \
         {{ range .Alerts }}[{{ .Labels.instance }} {{ .StartsAt.Format \"15:04\" }}]{{ end }} {{ now }}",
    )
    .unwrap();
    let cfg = WebhookConfig {
        secret: Some("s3cret".into()),
        body: Some(webhook::WebhookBody {
            template: std::sync::Arc::new(template),
            content_type: "text/plain; charset=utf-8".into(),
            secret: Some("pd-key".into()),
        }),
        ..webhook_config(hook.url().to_string())
    };
    webhook::send(
        &reqwest::Client::new(),
        &cfg,
        &two_firing_one_resolved(),
        1_700_000_000_000,
    )
    .await
    .unwrap();
    let got = hook.hits();
    assert_eq!(got.len(), 1);
    let (headers, body) = (&got[0].headers, &got[0].raw);
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.starts_with("firing 2/3 pd-key ["), "{text}");
    assert!(text.ends_with("] 1.7e+09"), "{text}");
    let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        headers["x-tocsin-signature"],
        format!("sha256={hex}").as_str()
    );
}

/// With `signature_format: grafana`, a receiver written for Grafana's webhook verifies the body:
/// hex HMAC in `X-Grafana-Alerting-Signature`, over `<seconds>:<body>` with a timestamp header.
#[tokio::test]
async fn a_grafana_style_signature_verifies_as_grafana_receivers_check_it() {
    let hex = |key: &[u8], parts: &[&[u8]]| -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        for p in parts {
            mac.update(p);
        }
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    for timestamp_header in [None, Some("X-Grafana-Alerting-Timestamp".to_string())] {
        let hook = WebhookSink::start(Answer::Status(200)).await;
        let cfg = WebhookConfig {
            secret: Some("s3cret".into()),
            signature: webhook::SignatureFormat::Grafana {
                timestamp_header: timestamp_header.clone(),
            },
            ..webhook_config(hook.url().to_string())
        };
        webhook::send(
            &reqwest::Client::new(),
            &cfg,
            &two_firing_one_resolved(),
            1_700_000_123_456,
        )
        .await
        .unwrap();
        let got = hook.hits();
        let (headers, body) = (&got[0].headers, &got[0].raw);
        assert!(headers.get("x-tocsin-signature").is_none());
        let sig = headers["x-grafana-alerting-signature"].to_str().unwrap();
        match &timestamp_header {
            None => assert_eq!(sig, hex(b"s3cret", &[body])),
            Some(h) => {
                assert_eq!(headers[h.as_str()], "1700000123");
                assert_eq!(sig, hex(b"s3cret", &[b"1700000123:", body]));
            }
        }
    }
}

#[tokio::test]
async fn webhook_posts_alertmanager_payload_signed_with_idempotency_key() {
    let hook = WebhookSink::start(Answer::Status(200)).await;
    let cfg = WebhookConfig {
        secret: Some("s3cret".into()),
        ..webhook_config(hook.url().to_string())
    };
    let n = two_firing_one_resolved();
    webhook::send(&reqwest::Client::new(), &cfg, &n, 0)
        .await
        .unwrap();

    let got = hook.hits();
    assert_eq!(got.len(), 1);
    let (headers, body) = (&got[0].headers, &got[0].raw);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["idempotency-key"], "5eed5eed5eed5eed");

    // the signature verifies over the raw body with the shared secret
    let signature = headers["x-tocsin-signature"].to_str().unwrap();
    let hex = signature.strip_prefix("sha256=").expect("sha256= prefix");
    let expected: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(body);
    mac.verify_slice(&expected)
        .expect("signature verifies with the secret");
    let mut wrong = Hmac::<Sha256>::new_from_slice(b"other").unwrap();
    wrong.update(body);
    assert!(wrong.verify_slice(&expected).is_err());

    let p: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(p["version"], "4");
    assert_eq!(p["groupKey"], n.group_key);
    assert_eq!(p["status"], "firing");
    assert_eq!(p["receiver"], "ops");
    assert_eq!(p["truncatedAlerts"], 0);
    assert_eq!(p["externalURL"], "http://tocsin:9300");
    assert_eq!(
        p["groupLabels"],
        serde_json::json!({"alertname": "ScaiSendQueueGrowing", "job": "scaisend"})
    );
    assert_eq!(
        p["commonLabels"],
        serde_json::json!({"alertname": "ScaiSendQueueGrowing", "job": "scaisend"})
    );
    assert_eq!(
        p["commonAnnotations"],
        serde_json::json!({"runbook_url": "https://runbooks.example/queue"})
    );
    let alerts = p["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 3);
    assert_eq!(alerts[0]["status"], "firing");
    assert_eq!(alerts[0]["startsAt"], "2023-11-14T22:13:20Z");
    assert_eq!(alerts[0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(alerts[0]["fingerprint"], "000000000000000a");
    assert_eq!(alerts[0]["generatorURL"], "http://tocsin:9300/rules");
    assert_eq!(alerts[2]["status"], "resolved");
    assert_eq!(alerts[2]["endsAt"], "2023-11-14T22:18:20.250Z");
}

#[tokio::test]
async fn webhook_without_secret_sends_no_signature() {
    let hook = WebhookSink::start(Answer::Status(200)).await;
    let cfg = webhook_config(hook.url().to_string());
    webhook::send(&reqwest::Client::new(), &cfg, &two_firing_one_resolved(), 0)
        .await
        .unwrap();
    let got = hook.hits();
    assert!(got[0].headers.get("x-tocsin-signature").is_none());
    assert_eq!(got[0].headers["idempotency-key"], "5eed5eed5eed5eed");
}

#[tokio::test]
async fn webhook_with_nothing_to_send_does_not_call_the_receiver() {
    let hook = WebhookSink::start(Answer::Status(200)).await;
    let cfg = WebhookConfig {
        send_resolved: false,
        ..webhook_config(hook.url().to_string())
    };
    let all_resolved = notification(vec![alert("c", AlertState::Resolved)]);
    webhook::send(&reqwest::Client::new(), &cfg, &all_resolved, 0)
        .await
        .unwrap();
    assert!(hook.hits().is_empty());
}

#[tokio::test]
async fn webhook_statuses_classify_as_transient_or_permanent() {
    let hook = WebhookSink::start(Answer::Status(200)).await;
    let client = reqwest::Client::new();
    let n = two_firing_one_resolved();
    let cases = [
        // the receiver is failing: retry later
        (500, true),
        // rate limited: retry later
        (429, true),
        // the request is wrong: retrying changes nothing
        (400, false),
    ];
    for (code, transient) in cases {
        hook.answer(Answer::Reply(code, "receiver says no\n  (details)"));
        let cfg = webhook_config(hook.url().to_string());
        let err = webhook::send(&client, &cfg, &n, 0).await.unwrap_err();
        let message = match (&err, transient) {
            (DeliveryError::Transient(m), true) | (DeliveryError::Permanent(m), false) => m,
            _ => panic!("{code}: wrong class: {err}"),
        };
        // the status and an excerpt of the body, whitespace collapsed
        assert!(
            message.contains(&format!("http {code}: receiver says no (details)")),
            "{message}"
        );
    }
}

#[tokio::test]
async fn webhook_to_a_closed_port_is_transient() {
    let addr = free_addr();
    let cfg = webhook_config(format!("http://{addr}/hook"));
    let err = webhook::send(&reqwest::Client::new(), &cfg, &two_firing_one_resolved(), 0)
        .await
        .unwrap_err();
    match err {
        DeliveryError::Transient(m) => assert!(m.contains("could not connect"), "{m}"),
        other => panic!("expected transient, got {other}"),
    }
}

#[tokio::test]
async fn webhook_that_never_answers_is_transient_after_the_timeout() {
    let addr = silent_server().await;
    let cfg = WebhookConfig {
        timeout: Duration::from_millis(300),
        ..webhook_config(format!("http://{addr}/hook"))
    };
    let started = Instant::now();
    let err = webhook::send(&reqwest::Client::new(), &cfg, &two_firing_one_resolved(), 0)
        .await
        .unwrap_err();
    let took = started.elapsed();
    match err {
        DeliveryError::Transient(m) => assert!(m.contains("timed out"), "{m}"),
        other => panic!("expected transient, got {other}"),
    }
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// email

fn email_config(addr: SocketAddr) -> EmailConfig {
    EmailConfig {
        to: vec!["ops@example.org".into(), "Pager <pager@example.org>".into()],
        from: "Tocsin <tocsin@example.org>".into(),
        smarthost: addr.to_string(),
        username: None,
        password: None,
        tls: TlsMode::None,
        send_resolved: true,
        timeout: Duration::from_secs(5),
        hello: Some("tocsin.test".into()),
    }
}

fn expect_permanent(result: Result<(), DeliveryError>) -> String {
    match result {
        Err(DeliveryError::Permanent(m)) => m,
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

fn expect_transient(result: Result<(), DeliveryError>) -> String {
    match result {
        Err(DeliveryError::Transient(m)) => m,
        other => panic!("expected a transient failure, got {other:?}"),
    }
}

#[tokio::test]
async fn email_reaches_every_recipient_with_subject_and_both_parts() {
    let (addr, mails) = smtp_server(Script::default()).await;
    let cfg = EmailConfig {
        username: Some("alerts".into()),
        password: Some("hunter2".into()),
        ..email_config(addr)
    };
    email::send(&cfg, &two_firing_one_resolved()).await.unwrap();

    let mails = mails.lock().unwrap();
    assert_eq!(mails.len(), 1, "one message for all recipients");
    let m = &mails[0];
    assert_eq!(m.from, "<tocsin@example.org>");
    assert_eq!(m.rcpt, vec!["<ops@example.org>", "<pager@example.org>"]);
    // AUTH PLAIN with the configured credentials: base64("\0alerts\0hunter2")
    assert_eq!(m.auth.as_deref(), Some("AUTH PLAIN AGFsZXJ0cwBodW50ZXIy"));
    let data = &m.data;
    for want in [
        "Subject: [FIRING:2] ScaiSendQueueGrowing (scaisend)",
        "Message-ID: <5eed5eed5eed5eed@tocsin>",
        "X-Tocsin-Idempotency-Key: 5eed5eed5eed5eed",
        "Content-Type: multipart/alternative",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Type: text/html; charset=utf-8",
        // from the text part
        "New (1)",
        "Still firing (1)",
        "Summary: queue on a grows",
        // from the html part
        "<h3>Resolved (1)</h3>",
    ] {
        assert!(data.contains(want), "{want:?} missing in:\n{data}");
    }
    assert!(data.contains("ops@example.org") && data.contains("pager@example.org"));
}

#[tokio::test]
async fn email_leaves_resolved_out_unless_send_resolved() {
    // nothing listens: Ok proves no connection was attempted
    let cfg = EmailConfig {
        send_resolved: false,
        ..email_config(free_addr())
    };
    let all_resolved = notification(vec![alert("c", AlertState::Resolved)]);
    email::send(&cfg, &all_resolved).await.unwrap();

    let (addr, mails) = smtp_server(Script::default()).await;
    let cfg = EmailConfig {
        send_resolved: false,
        ..email_config(addr)
    };
    email::send(&cfg, &two_firing_one_resolved()).await.unwrap();
    let data = mails.lock().unwrap()[0].data.clone();
    assert!(data.contains("New (1)"), "{data}");
    assert!(!data.contains("Resolved ("), "{data}");
}

#[tokio::test]
async fn email_dropped_mid_data_is_transient() {
    let (addr, mails) = smtp_server(Script {
        drop_in_data: true,
        ..Script::default()
    })
    .await;
    let m = expect_transient(email::send(&email_config(addr), &two_firing_one_resolved()).await);
    // the client either sees the hang-up while writing or finds no reply after the data
    assert!(
        m.contains("connection closed") || m.contains("network error"),
        "{m}"
    );
    assert!(mails.lock().unwrap().is_empty());
}

#[tokio::test]
async fn email_refused_with_550_is_permanent_and_451_transient() {
    let (addr, _) = smtp_server(Script {
        mail_reply: Some("550 5.7.1 sender rejected"),
        ..Script::default()
    })
    .await;
    let m = expect_permanent(email::send(&email_config(addr), &two_firing_one_resolved()).await);
    assert!(m.contains("550") && m.contains("sender rejected"), "{m}");

    let (addr, _) = smtp_server(Script {
        mail_reply: Some("451 4.3.0 try again later"),
        ..Script::default()
    })
    .await;
    let m = expect_transient(email::send(&email_config(addr), &two_firing_one_resolved()).await);
    assert!(m.contains("451"), "{m}");
}

#[tokio::test]
async fn email_auth_rejected_is_permanent() {
    let (addr, mails) = smtp_server(Script {
        auth_reply: Some("535 5.7.8 authentication credentials invalid"),
        ..Script::default()
    })
    .await;
    let cfg = EmailConfig {
        username: Some("alerts".into()),
        password: Some("wrong".into()),
        ..email_config(addr)
    };
    let m = expect_permanent(email::send(&cfg, &two_firing_one_resolved()).await);
    assert!(m.contains("authentication rejected"), "{m}");
    assert!(mails.lock().unwrap().is_empty());
}

#[tokio::test]
async fn email_starttls_required_but_not_offered_is_permanent_and_sends_nothing() {
    let (addr, mails) = smtp_server(Script::default()).await;
    let cfg = EmailConfig {
        tls: TlsMode::StartTls,
        username: Some("alerts".into()),
        password: Some("hunter2".into()),
        ..email_config(addr)
    };
    let m = expect_permanent(email::send(&cfg, &two_firing_one_resolved()).await);
    assert!(m.contains("does not offer STARTTLS"), "{m}");
    assert!(mails.lock().unwrap().is_empty());
}

#[tokio::test]
async fn email_to_a_closed_port_or_a_silent_server_is_transient() {
    let cfg = email_config(free_addr());
    expect_transient(email::send(&cfg, &two_firing_one_resolved()).await);

    let cfg = EmailConfig {
        timeout: Duration::from_millis(300),
        ..email_config(silent_server().await)
    };
    let started = Instant::now();
    expect_transient(email::send(&cfg, &two_firing_one_resolved()).await);
    assert!(started.elapsed() < Duration::from_secs(5));
}
