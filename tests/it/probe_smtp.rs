//! The `smtp` probe (and the `tls` probe with `starttls: smtp`) against an in-process SMTP
//! server on loopback, with and without STARTTLS, and the bad-input list.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::common::free_addr;
use crate::probe_tls::{Leaf, TestCa, probe_from, raw_server, run_bounded, server_config, value};

/// Answers one SMTP dialog; true when the client asked for STARTTLS and was told to go ahead.
async fn dialog<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufReader<S>, offer_tls: bool) -> bool {
    let mut line = String::new();
    loop {
        line.clear();
        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
            return false;
        }
        let cmd = line.trim().to_ascii_uppercase();
        let answer: &[u8] = if cmd.starts_with("EHLO") {
            if offer_tls {
                b"250-mail.test greets you\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 STARTTLS\r\n"
            } else {
                b"250-mail.test greets you\r\n250 8BITMIME\r\n"
            }
        } else if cmd == "STARTTLS" && offer_tls {
            let _ = s.write_all(b"220 2.0.0 ready to start TLS\r\n").await;
            return true;
        } else if cmd == "QUIT" {
            let _ = s.write_all(b"221 2.0.0 bye\r\n").await;
            return false;
        } else {
            b"502 5.5.2 command not recognized\r\n"
        };
        if s.write_all(answer).await.is_err() {
            return false;
        }
    }
}

/// An SMTP server on loopback; with a certificate it offers STARTTLS.
async fn smtp_server(leaf: Option<&Leaf>) -> SocketAddr {
    let acceptor = leaf.map(|l| tokio_rustls::TlsAcceptor::from(server_config(l)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut s = BufReader::new(sock);
                if s.write_all(b"220 mail.test ESMTP tocsin-test\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                if dialog(&mut s, acceptor.is_some()).await
                    && let Some(acceptor) = acceptor
                    && let Ok(tls) = acceptor.accept(s.into_inner()).await
                {
                    dialog(&mut BufReader::new(tls), false).await;
                }
            });
        }
    });
    addr
}

fn ca_path(ca: &TestCa) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ca.pem");
    std::fs::write(&p, &ca.pem).unwrap();
    let s = p.to_string_lossy().into_owned();
    (dir, s)
}

#[tokio::test]
async fn starttls_offered_and_working_reports_the_certificate_after_it() {
    let ca = TestCa::new();
    let addr = smtp_server(Some(&ca.leaf(&["mail.test"], 2029, 2031))).await;
    let (_d, ca_file) = ca_path(&ca);
    let probe = probe_from(&format!(
        "{{kind: smtp, address: \"{addr}\", server_name: mail.test, ca_file: \"{ca_file}\", timeout: 5s, interval: 10s}}"
    ));
    let r = run_bounded(&probe, Duration::from_secs(10)).await;
    assert_eq!(r.error, None);
    assert!(r.up && r.success);
    assert_eq!(value(&r, "probe_smtp_starttls_offered"), Some(1.0));
    assert_eq!(value(&r, "probe_smtp_starttls_ok"), Some(1.0));
    assert_eq!(value(&r, "probe_tls_cert_verified"), Some(1.0));
    assert_eq!(
        value(&r, "probe_tls_cert_not_after_seconds"),
        Some(1_924_992_000.0)
    );
    // the EHLO after STARTTLS was answered
    assert_eq!(value(&r, "probe_smtp_status_code"), Some(250.0));
    assert!(value(&r, "probe_smtp_banner_seconds").is_some());

    // the tls probe does the same upgrade
    let tls = probe_from(&format!(
        "{{kind: tls, starttls: smtp, address: \"{addr}\", server_name: mail.test, ca_file: \"{ca_file}\", timeout: 5s, interval: 10s}}"
    ));
    let r = run_bounded(&tls, Duration::from_secs(10)).await;
    assert_eq!(r.error, None);
    assert_eq!(value(&r, "probe_tls_cert_covers_name"), Some(1.0));
}

#[tokio::test]
async fn an_expired_certificate_after_starttls_fails_with_its_reason() {
    let ca = TestCa::new();
    let addr = smtp_server(Some(&ca.leaf(&["mail.test"], 2020, 2021))).await;
    let (_d, ca_file) = ca_path(&ca);
    let probe = probe_from(&format!(
        "{{kind: smtp, address: \"{addr}\", server_name: mail.test, ca_file: \"{ca_file}\", timeout: 5s, interval: 10s}}"
    ));
    let r = run_bounded(&probe, Duration::from_secs(10)).await;
    assert!(r.up && !r.success);
    assert_eq!(value(&r, "probe_smtp_starttls_ok"), Some(1.0));
    assert_eq!(value(&r, "probe_tls_cert_verified"), Some(0.0));
    assert!(
        r.error.as_deref().unwrap().contains("expired"),
        "{:?}",
        r.error
    );
}

#[tokio::test]
async fn a_server_without_starttls_fails_unless_starttls_is_optional() {
    let addr = smtp_server(None).await;
    let probe = probe_from(&format!(
        "{{kind: smtp, address: \"{addr}\", timeout: 5s, interval: 10s}}"
    ));
    let r = run_bounded(&probe, Duration::from_secs(10)).await;
    assert!(r.up && !r.success);
    assert_eq!(r.error.as_deref(), Some("STARTTLS not offered"));
    assert_eq!(value(&r, "probe_smtp_starttls_offered"), Some(0.0));
    let optional = probe_from(&format!(
        "{{kind: smtp, address: \"{addr}\", require_starttls: false, timeout: 5s, interval: 10s}}"
    ));
    let r = run_bounded(&optional, Duration::from_secs(10)).await;
    assert_eq!(r.error, None);
    assert!(r.success);

    // a tls probe asking for STARTTLS says why it could not start
    let tls = probe_from(&format!(
        "{{kind: tls, starttls: smtp, address: \"{addr}\", server_name: mail.test, timeout: 5s, interval: 10s}}"
    ));
    let r = run_bounded(&tls, Duration::from_secs(10)).await;
    assert!(!r.up);
    assert_eq!(r.error.as_deref(), Some("in EHLO: STARTTLS not offered"));
}

#[tokio::test]
async fn refusing_hanging_garbage_rejecting_and_enormous_servers_fail_with_a_reason() {
    let hang = raw_server(|sock| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(sock);
    })
    .await;
    let garbage = raw_server(|mut sock| async move {
        let _ = sock.write_all(b"HELLO THERE\r\n").await;
    })
    .await;
    let rejecting = raw_server(|mut sock| async move {
        let _ = sock.write_all(b"554 5.3.2 no service here\r\n").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await;
    let long_line = raw_server(|mut sock| async move {
        let junk = vec![b'2'; 64 * 1024];
        while sock.write_all(&junk).await.is_ok() {}
    })
    .await;
    let endless_reply = raw_server(|mut sock| async move {
        while sock.write_all(b"220-still greeting\r\n").await.is_ok() {}
    })
    .await;
    let truncated = raw_server(|mut sock| async move {
        let _ = sock.write_all(b"220 mail.te").await;
    })
    .await;
    let cases: [(&str, SocketAddr, bool, &str); 7] = [
        ("refused", free_addr(), false, "connecting: "),
        (
            "hanging",
            hang,
            false,
            "timeout after 500ms while reading the smtp banner",
        ),
        (
            "garbage",
            garbage,
            false,
            "reading the smtp banner: not an smtp reply: \"HELLO THERE\"",
        ),
        (
            "rejecting",
            rejecting,
            true,
            "banner 554 5.3.2 no service here",
        ),
        (
            "long line",
            long_line,
            false,
            "reading the smtp banner: line longer than 4096 bytes",
        ),
        (
            "endless reply",
            endless_reply,
            false,
            "reading the smtp banner: reply of more than 256 lines",
        ),
        (
            "truncated",
            truncated,
            false,
            "reading the smtp banner: connection closed by the server",
        ),
    ];
    for (case, addr, up, reason) in cases {
        let probe = probe_from(&format!(
            "{{kind: smtp, address: \"{addr}\", timeout: 500ms, interval: 1s}}"
        ));
        let r = run_bounded(&probe, Duration::from_secs(5)).await;
        assert_eq!((r.up, r.success), (up, false), "{case}");
        let e = r.error.unwrap();
        assert!(e.contains(reason), "{case}: {e}");
    }
}

/// A one-line-protocol server (IMAP or POP3): greets, answers the STARTTLS command `ask` with
/// `ok`, then hands the connection to TLS.
async fn upgrade_server(
    leaf: &Leaf,
    greeting: &'static str,
    ask: &'static str,
    ok: &'static str,
) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(leaf));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut s = BufReader::new(sock);
                let _ = s.write_all(greeting.as_bytes()).await;
                let mut line = String::new();
                if s.read_line(&mut line).await.is_ok() && line == ask {
                    let _ = s.write_all(ok.as_bytes()).await;
                    if let Ok(mut tls) = acceptor.accept(s.into_inner()).await {
                        let mut buf = [0u8; 16];
                        let _ = tokio::io::AsyncReadExt::read(&mut tls, &mut buf).await;
                    }
                } else {
                    let _ = s
                        .write_all(b"a1 BAD unknown command\r\n-ERR unknown\r\n")
                        .await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn imap_and_pop3_starttls_upgrade_before_the_certificate_is_read() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["mail.test"], 2029, 2031);
    let (_d, ca_file) = ca_path(&ca);
    let imap = upgrade_server(
        &leaf,
        "* OK IMAP4rev1 ready\r\n",
        "a1 STARTTLS\r\n",
        "a1 OK begin TLS now\r\n",
    )
    .await;
    let pop3 = upgrade_server(&leaf, "+OK POP3 ready\r\n", "STLS\r\n", "+OK begin TLS\r\n").await;
    for (proto, addr) in [("imap", imap), ("pop3", pop3)] {
        let probe = probe_from(&format!(
            "{{kind: tls, starttls: {proto}, address: \"{addr}\", server_name: mail.test, ca_file: \"{ca_file}\", timeout: 5s, interval: 10s}}"
        ));
        let r = run_bounded(&probe, Duration::from_secs(10)).await;
        assert_eq!(r.error, None, "{proto}");
        assert_eq!(value(&r, "probe_tls_cert_verified"), Some(1.0), "{proto}");
    }
    // the other protocol's greeting is refused with what was received
    let wrong = probe_from(&format!(
        "{{kind: tls, starttls: imap, address: \"{pop3}\", server_name: mail.test, timeout: 5s, interval: 10s}}"
    ));
    let r = run_bounded(&wrong, Duration::from_secs(10)).await;
    assert!(!r.up);
    assert_eq!(
        r.error.as_deref(),
        Some("reading the imap greeting: unexpected greeting \"+OK POP3 ready\"")
    );
}

#[tokio::test]
async fn data_sent_after_the_starttls_reply_is_refused_not_taken_as_tls() {
    let injecting = raw_server(|sock| async move {
        let mut s = BufReader::new(sock);
        let _ = s.write_all(b"220 mail.test\r\n").await;
        let mut line = String::new();
        let _ = s.read_line(&mut line).await;
        let _ = s.write_all(b"250-mail.test\r\n250 STARTTLS\r\n").await;
        line.clear();
        let _ = s.read_line(&mut line).await;
        // the reply and a forged answer in the same packet (CVE-2011-0411's shape)
        let _ = s.write_all(b"220 go ahead\r\n250 forged\r\n").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await;
    let probe = probe_from(&format!(
        "{{kind: smtp, address: \"{injecting}\", timeout: 2s, interval: 5s}}"
    ));
    let r = run_bounded(&probe, Duration::from_secs(5)).await;
    assert!(r.up && !r.success);
    assert_eq!(
        r.error.as_deref(),
        Some("in STARTTLS: the server sent data after its STARTTLS reply")
    );
}
