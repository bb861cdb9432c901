//! The `tls` probe against rustls servers on loopback serving certificates made by the test
//! (rcgen): valid, expired, not yet valid, wrong name, self-signed; and the bad-input list:
//! refused, hanging, garbage, a truncated handshake, an endless answer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::free_addr;
use tocsin::config::{Config, Probe};
use tocsin::ingest::probe::{self, ProbeReport};

/// The probe's time: 2030-01-01T00:00:00Z (certificates are judged at it, not at the wall clock).
pub const NOW_MS: i64 = 1_893_456_000_000;

/// A CA made by the test, and certificates it signs.
pub struct TestCa {
    pub params: CertificateParams,
    pub key: KeyPair,
    pub pem: String,
    pub der: CertificateDer<'static>,
}

/// A server certificate (its chain, leaf first) and key.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "tocsin test ca");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2040, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            pem: cert.pem(),
            der: cert.der().clone(),
            params,
            key,
        }
    }

    /// A leaf for `names`, valid from `from` to `until` (years, January 1st).
    pub fn leaf(&self, names: &[&str], from: i32, until: i32) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone(), self.der.clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }
}

/// A self-signed leaf for `names` (no CA the probe trusts).
pub fn self_signed(names: &[&str]) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2040, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    Leaf {
        chain: vec![cert.der().clone()],
        key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    }
}

pub fn server_config(leaf: &Leaf) -> Arc<rustls::ServerConfig> {
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain.clone(), leaf.key.clone_key())
        .unwrap(),
    )
}

/// A TLS server on loopback; records the SNI names clients sent.
pub async fn tls_server(leaf: &Leaf) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(leaf));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sni = Arc::new(Mutex::new(Vec::new()));
    let seen = sni.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(sock).await {
                    if let Some(name) = tls.get_ref().1.server_name() {
                        seen.lock().unwrap().push(name.to_string());
                    }
                    let mut buf = [0u8; 64];
                    let _ = tls.read(&mut buf).await;
                }
            });
        }
    });
    (addr, sni)
}

/// A raw TCP server: `answer` runs on each accepted socket.
pub async fn raw_server<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(answer(sock));
        }
    });
    addr
}

/// The first probe of a one-target configuration whose probe entry is `probe_yaml` (flow style).
pub fn probe_from(probe_yaml: &str) -> Probe {
    let yaml = format!("targets:\n  - name: svc\n    probes:\n      - {probe_yaml}\n");
    Config::from_yaml(&yaml, std::path::Path::new("t.yml"))
        .unwrap()
        .build_targets(&Default::default())
        .unwrap()
        .remove(0)
        .probes
        .remove(0)
}

/// The value of a sample of the report (`metric` with these extra labels), if written.
pub fn value(report: &ProbeReport, metric: &str) -> Option<f64> {
    report
        .all_samples()
        .iter()
        .find(|s| s.metric == metric)
        .map(|s| s.value)
}

/// Runs a probe; the test fails if it is not back within `bound` (a stuck probe).
pub async fn run_bounded(probe: &Probe, bound: Duration) -> ProbeReport {
    tokio::time::timeout(bound, probe::run(probe, NOW_MS))
        .await
        .expect("the probe returned within its timeout")
}

fn ca_file(ca: &TestCa) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, &ca.pem).unwrap();
    let p = path.to_string_lossy().into_owned();
    (dir, p)
}

async fn probe_leaf(ca: &TestCa, leaf: &Leaf, name: &str) -> ProbeReport {
    let (addr, _) = tls_server(leaf).await;
    let (_dir, ca_path) = ca_file(ca);
    let probe = probe_from(&format!(
        "{{kind: tls, address: \"{addr}\", server_name: {name}, ca_file: \"{ca_path}\", timeout: 5s, interval: 10s}}"
    ));
    run_bounded(&probe, Duration::from_secs(10)).await
}

#[tokio::test]
async fn a_valid_certificate_at_an_ip_with_sni_passes_and_reports_its_dates() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["cdn.example.test", "*.edge.example.test"], 2029, 2031);
    let (addr, sni) = tls_server(&leaf).await;
    let (_dir, ca_path) = ca_file(&ca);
    for name in ["cdn.example.test", "node7.edge.example.test"] {
        let probe = probe_from(&format!(
            "{{kind: tls, address: \"{addr}\", server_name: {name}, ca_file: \"{ca_path}\", timeout: 5s, interval: 10s}}"
        ));
        let r = run_bounded(&probe, Duration::from_secs(10)).await;
        assert_eq!(r.error, None, "{name}");
        assert!(r.up && r.success);
        assert_eq!(value(&r, "probe_tls_cert_verified"), Some(1.0));
        assert_eq!(value(&r, "probe_tls_cert_covers_name"), Some(1.0));
        // 2029-01-01 and 2031-01-01
        assert_eq!(
            value(&r, "probe_tls_cert_not_before_seconds"),
            Some(1_861_920_000.0)
        );
        assert_eq!(
            value(&r, "probe_tls_cert_not_after_seconds"),
            Some(1_924_992_000.0)
        );
        let version = r
            .samples
            .iter()
            .find(|s| s.metric == "probe_tls_version_info")
            .unwrap();
        assert_eq!(version.labels, vec![("version", "TLS 1.3".to_string())]);
    }
    // the name went out as SNI to the IP address
    // (the server task records it after its side of the handshake: bounded wait)
    crate::common::Deadline::within("the server saw both handshakes", Duration::from_secs(5))
        .every(Duration::from_millis(10))
        .until(|| sni.lock().unwrap().len() == 2)
        .await;
    let seen = sni.lock().unwrap().clone();
    assert_eq!(seen, vec!["cdn.example.test", "node7.edge.example.test"]);
}

#[tokio::test]
async fn expired_not_yet_valid_wrong_name_and_self_signed_certificates_fail_with_their_reason() {
    let ca = TestCa::new();
    let expired = probe_leaf(&ca, &ca.leaf(&["svc.test"], 2020, 2021), "svc.test").await;
    assert!(expired.up && !expired.success);
    assert_eq!(value(&expired, "probe_tls_cert_verified"), Some(0.0));
    assert_eq!(value(&expired, "probe_tls_cert_covers_name"), Some(1.0));
    let e = expired.error.unwrap();
    assert!(e.contains("expired"), "{e}");

    let early = probe_leaf(&ca, &ca.leaf(&["svc.test"], 2035, 2036), "svc.test").await;
    assert!(early.up && !early.success);
    let e = early.error.unwrap();
    assert!(e.contains("not valid yet"), "{e}");

    let wrong = probe_leaf(&ca, &ca.leaf(&["other.test"], 2029, 2031), "svc.test").await;
    assert!(wrong.up && !wrong.success);
    assert_eq!(value(&wrong, "probe_tls_cert_covers_name"), Some(0.0));
    let e = wrong.error.unwrap();
    assert!(e.contains("does not cover the name \"svc.test\""), "{e}");

    let selfs = probe_leaf(&ca, &self_signed(&["svc.test"]), "svc.test").await;
    assert!(selfs.up && !selfs.success);
    assert_eq!(value(&selfs, "probe_tls_cert_covers_name"), Some(1.0));
    assert_eq!(value(&selfs, "probe_tls_cert_verified"), Some(0.0));
    let e = selfs.error.unwrap();
    assert!(
        e.to_lowercase().contains("unknown issuer") || e.contains("UnknownIssuer"),
        "{e}"
    );
}

/// (case, server behaviour, the reason must contain)
#[tokio::test]
async fn refusing_hanging_garbage_truncated_and_endless_servers_fail_within_the_timeout() {
    let refused = free_addr();
    let hang = raw_server(|sock| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(sock);
    })
    .await;
    let garbage = raw_server(|mut sock| async move {
        let _ = sock.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    })
    .await;
    let truncated = raw_server(|mut sock| async move {
        let mut buf = [0u8; 1024];
        let _ = sock.read(&mut buf).await;
        // a handshake record announcing 512 bytes, 10 sent, then the connection closes
        let _ = sock
            .write_all(&[
                0x16, 0x03, 0x03, 0x02, 0x00, 0x02, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0,
            ])
            .await;
    })
    .await;
    let endless = raw_server(|mut sock| async move {
        let junk = vec![0x16u8; 64 * 1024];
        while sock.write_all(&junk).await.is_ok() {}
    })
    .await;
    let cases = [
        ("refused", refused, "connecting: "),
        (
            "hanging",
            hang,
            "timeout after 500ms while in the tls handshake",
        ),
        ("garbage", garbage, "tls handshake: "),
        ("truncated", truncated, "tls handshake: "),
        ("endless", endless, "tls handshake: "),
    ];
    for (case, addr, reason) in cases {
        let probe = probe_from(&format!(
            "{{kind: tls, address: \"{addr}\", server_name: svc.test, timeout: 500ms, interval: 1s}}"
        ));
        let r = run_bounded(&probe, Duration::from_secs(5)).await;
        assert!(!r.up && !r.success, "{case}");
        let e = r.error.clone().unwrap();
        assert!(e.contains(reason), "{case}: {e}");
        assert_eq!(value(&r, "probe_tls_cert_verified"), None, "{case}");
    }
}
