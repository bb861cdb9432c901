//! The `dns` probe against real PowerDNS authoritative servers (bind backend, zones written by
//! the test, one DNSSEC-signed with pdnsutil), two instances serving different SOA serials; and
//! the bad-input list against in-process UDP/TCP servers: refused, hanging, garbage, answers
//! with another id, answers over the size limit.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

use crate::common::{Deadline, free_addr};
use crate::probe_tls::{probe_from, raw_server, run_bounded, value};
use tocsin::ingest::probe::ProbeReport;

const PDNS: &str = "/usr/sbin/pdns_server";
const PDNSUTIL: &str = "/usr/bin/pdnsutil";

/// A pdns_server on a loopback port, stopped (by its pid) when dropped.
struct Pdns {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Pdns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn zone(serial: u32) -> String {
    format!(
        "$ORIGIN example.test.
@ 300 IN SOA ns1.example.test. hostmaster.example.test. {serial} 3600 600 86400 300
@ 300 IN NS ns1.example.test.
ns1 300 IN A 192.0.2.53
www 300 IN A 192.0.2.1
www 300 IN A 192.0.2.2
mail 300 IN MX 10 mx.example.test.
"
    )
}

/// Starts a pdns_server serving example.test with this serial (and signed.test, DNSSEC-signed,
/// when `signed`); None (with the reason printed) when PowerDNS is not installed.
fn pdns(serial: u32, signed: bool) -> Option<Pdns> {
    if !Path::new(PDNS).exists() || !Path::new(PDNSUTIL).exists() {
        println!(
            "skipping: {PDNS} or {PDNSUTIL} absent (apt-get install pdns-server pdns-backend-bind)"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let addr = free_addr();
    std::fs::write(d.join("example.test.zone"), zone(serial)).unwrap();
    std::fs::write(
        d.join("signed.test.zone"),
        zone(serial).replace("example.test", "signed.test"),
    )
    .unwrap();
    let mut named = format!(
        "zone \"example.test\" {{ type master; file \"{}\"; }};\n",
        d.join("example.test.zone").display()
    );
    if signed {
        named += &format!(
            "zone \"signed.test\" {{ type master; file \"{}\"; }};\n",
            d.join("signed.test.zone").display()
        );
    }
    std::fs::write(d.join("named.conf"), named).unwrap();
    std::fs::write(
        d.join("pdns.conf"),
        format!(
            "launch=bind\nbind-config={0}/named.conf\nbind-dnssec-db={0}/dnssec.db\nlocal-address=127.0.0.1\nlocal-port={1}\nsocket-dir={0}\nguardian=no\ndaemon=no\ndisable-syslog=yes\nwrite-pid=no\nloglevel=3\nreceiver-threads=1\ndistributor-threads=1\n",
            d.display(),
            addr.port()
        ),
    )
    .unwrap();
    let util = |args: &[&str]| {
        let out = Command::new(PDNSUTIL)
            .arg(format!("--config-dir={}", d.display()))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pdnsutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    util(&["create-bind-db", &d.join("dnssec.db").to_string_lossy()]);
    if signed {
        util(&["secure-zone", "signed.test"]);
    }
    let child = Command::new(PDNS)
        .arg(format!("--config-dir={}", d.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Some(Pdns {
        child,
        addr,
        _dir: dir,
    })
}

/// Probes until every server answers (the servers start asynchronously), bounded.
async fn probe_until_up(yaml: &str) -> ProbeReport {
    let probe = probe_from(yaml);
    Deadline::within("pdns_server never answered", Duration::from_secs(20))
        .every(Duration::from_millis(100))
        .until_some(async || {
            let r = run_bounded(&probe, Duration::from_secs(10)).await;
            r.up.then_some(r)
        })
        .await
}

fn per_server(r: &ProbeReport, metric: &str, server: SocketAddr) -> Option<f64> {
    r.samples
        .iter()
        .find(|s| s.metric == metric && s.labels == vec![("server", server.to_string())])
        .map(|s| s.value)
}

#[tokio::test]
async fn two_authoritative_servers_report_their_own_soa_serials() {
    let (Some(a), Some(b)) = (pdns(2024010101, false), pdns(2024010102, false)) else {
        return;
    };
    for transport in ["udp", "tcp"] {
        let r = probe_until_up(&format!(
            "{{kind: dns, servers: [\"{}\", \"{}\"], query_name: example.test., query_type: SOA, transport: {transport}, timeout: 2s, interval: 10s}}",
            a.addr, b.addr
        ))
        .await;
        assert_eq!(r.error, None, "{transport}");
        assert!(r.success);
        assert_eq!(
            per_server(&r, "probe_dns_soa_serial", a.addr),
            Some(2024010101.0)
        );
        assert_eq!(
            per_server(&r, "probe_dns_soa_serial", b.addr),
            Some(2024010102.0)
        );
        assert_eq!(per_server(&r, "probe_dns_rcode", a.addr), Some(0.0));
        assert_eq!(per_server(&r, "probe_dns_answer_count", b.addr), Some(1.0));
    }
    // the expected answers, exact set and regex; the serial also comes from the authority section
    let r = probe_until_up(&format!(
        "{{kind: dns, servers: [\"{}\"], query_name: www.example.test., answer_set: [192.0.2.1, 192.0.2.2], answer_regex: '^www\\.example\\.test\\. 300 IN A 192\\.0\\.2\\.[12]$', timeout: 2s, interval: 10s}}",
        a.addr
    ))
    .await;
    assert_eq!(r.error, None);
    assert_eq!(per_server(&r, "probe_dns_answer_count", a.addr), Some(2.0));
    let wrong = probe_until_up(&format!(
        "{{kind: dns, servers: [\"{}\"], query_name: www.example.test., answer_set: [192.0.2.1], timeout: 2s, interval: 10s}}",
        a.addr
    ))
    .await;
    assert!(wrong.up && !wrong.success);
    let e = wrong.error.unwrap();
    assert!(
        e.contains("answers {\"192.0.2.1\", \"192.0.2.2\"}, expected {\"192.0.2.1\"}"),
        "{e}"
    );
    // an unknown name and a zone the server does not serve
    let nx = probe_until_up(&format!(
        "{{kind: dns, servers: [\"{}\"], query_name: nope.example.test., timeout: 2s, interval: 10s}}",
        a.addr
    ))
    .await;
    assert_eq!(
        nx.error.as_deref(),
        Some(format!("{}: rcode 3 (NXDOMAIN)", a.addr).as_str())
    );
    assert_eq!(
        per_server(&nx, "probe_dns_soa_serial", a.addr),
        Some(2024010101.0)
    );
    let refused = probe_until_up(&format!(
        "{{kind: dns, servers: [\"{}\"], query_name: other.test., timeout: 2s, interval: 10s}}",
        a.addr
    ))
    .await;
    assert_eq!(
        refused.error.as_deref(),
        Some(format!("{}: rcode 5 (REFUSED)", a.addr).as_str())
    );
}

#[tokio::test]
async fn a_dnssec_signed_zone_reports_its_rrsig_expiry_and_an_unsigned_one_fails() {
    let Some(s) = pdns(2024010101, true) else {
        return;
    };
    let r = probe_until_up(&format!(
        "{{kind: dns, servers: [\"{}\"], query_name: www.signed.test., dnssec: true, timeout: 2s, interval: 10s}}",
        s.addr
    ))
    .await;
    assert_eq!(r.error, None);
    let expiry = per_server(&r, "probe_dns_rrsig_expiry_timestamp_seconds", s.addr).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    // PowerDNS signs with about two weeks of validity
    assert!(
        expiry > now && expiry < now + 40.0 * 86400.0,
        "{expiry} vs {now}"
    );
    let unsigned = probe_until_up(&format!(
        "{{kind: dns, servers: [\"{}\"], query_name: www.example.test., dnssec: true, timeout: 2s, interval: 10s}}",
        s.addr
    ))
    .await;
    assert_eq!(
        unsigned.error.as_deref(),
        Some(format!("{}: no RRSIG in the answer", s.addr).as_str())
    );
}

/// A UDP server answering each datagram with what `answer` makes of it.
async fn udp_server(answer: fn(&[u8]) -> Vec<Vec<u8>>) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            for reply in answer(&buf[..n]) {
                let _ = sock.send_to(&reply, from).await;
            }
        }
    });
    addr
}

#[tokio::test]
async fn refusing_hanging_garbage_stray_and_enormous_answers_fail_with_a_reason() {
    // a port nothing listens on: the ICMP error comes back as "connection refused"
    let refused = UdpSocket::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let hang = udp_server(|_| Vec::new()).await;
    let garbage = udp_server(|_| vec![b"garbage, not dns".to_vec()]).await;
    // the query echoed with the response bit set but another id, many times
    let stray = udp_server(|q| {
        let mut r = q.to_vec();
        r[0] ^= 0xff;
        r[2] |= 0x80;
        vec![r; 20]
    })
    .await;
    let enormous = udp_server(|q| {
        let mut r = q.to_vec();
        r[2] |= 0x80;
        r.resize(3000, 0);
        vec![r]
    })
    .await;
    let cases = [
        ("refused", refused, "udp", "Connection refused"),
        (
            "hanging",
            hang,
            "udp",
            "timeout after 300ms while waiting for the answer",
        ),
        ("garbage", garbage, "udp", "invalid dns answer"),
        ("stray", stray, "udp", "only answers with another id"),
        (
            "enormous",
            enormous,
            "udp",
            "answer exceeds the limit of 1024 bytes",
        ),
    ];
    for (case, addr, transport, reason) in cases {
        let probe = probe_from(&format!(
            "{{kind: dns, servers: [\"{addr}\"], query_name: example.test., transport: {transport}, response_size_limit: 1KiB, timeout: 300ms, interval: 1s}}"
        ));
        let r = run_bounded(&probe, Duration::from_secs(5)).await;
        assert!(!r.up && !r.success, "{case}");
        let e = r.error.clone().unwrap();
        assert!(
            e.starts_with(&format!("{addr}: ")) && e.contains(reason),
            "{case}: {e}"
        );
        assert_eq!(per_server(&r, "probe_dns_success", addr), Some(0.0));
    }
    // over TCP: a length over the limit, a connection that closes mid-answer, one that hangs
    let long = raw_server(|mut sock| async move {
        let mut b = [0u8; 512];
        let _ = sock.read(&mut b).await;
        let _ = sock.write_all(&[0xff, 0xff, 1, 2, 3]).await;
    })
    .await;
    let cut = raw_server(|mut sock| async move {
        let mut b = [0u8; 512];
        let _ = sock.read(&mut b).await;
        let _ = sock.write_all(&[0x00, 0x40, 1, 2, 3]).await;
    })
    .await;
    let tcp_cases = [
        ("tcp refused", free_addr(), "connecting: "),
        (
            "tcp length over the limit",
            long,
            "answer exceeds the limit of 1024 bytes",
        ),
        ("tcp cut", cut, "waiting for the answer: "),
    ];
    for (case, addr, reason) in tcp_cases {
        let probe = probe_from(&format!(
            "{{kind: dns, servers: [\"{addr}\"], query_name: example.test., transport: tcp, response_size_limit: 1KiB, timeout: 300ms, interval: 1s}}"
        ));
        let r = run_bounded(&probe, Duration::from_secs(5)).await;
        assert!(!r.up, "{case}");
        let e = r.error.clone().unwrap();
        assert!(e.contains(reason), "{case}: {e}");
    }
    // one dead server among live ones: the others' answers are kept
    let ok = udp_server(|q| {
        let mut r = q.to_vec();
        r[2] |= 0x84; // response, authoritative
        vec![r]
    })
    .await;
    let probe = probe_from(&format!(
        "{{kind: dns, servers: [\"{ok}\", \"{hang}\"], query_name: example.test., timeout: 300ms, interval: 1s}}"
    ));
    let r = run_bounded(&probe, Duration::from_secs(5)).await;
    assert!(!r.up);
    assert_eq!(per_server(&r, "probe_dns_rcode", ok), Some(0.0));
    assert_eq!(per_server(&r, "probe_dns_success", hang), Some(0.0));
    let _ = value(&r, "up");
}
