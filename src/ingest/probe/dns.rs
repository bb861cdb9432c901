//! The `dns` probe: asks each of `servers` for `query_name`/`query_type` over UDP or TCP, all in
//! parallel, each within the probe's timeout (hickory-proto encodes and decodes the messages; the
//! sockets are ours, so every read is bounded by `response_size_limit`).
//!
//! Series, each with a `server` label: `probe_dns_success`, `probe_dns_rcode` (numeric),
//! `probe_dns_answer_count`, `probe_dns_duration_seconds`, `probe_dns_soa_serial` (the SOA in the
//! answer or, for other types, in the authority section), `probe_dns_rrsig_expiry_timestamp_seconds`
//! (the earliest RRSIG expiry in the answer, with `dnssec: true`). `up` = every server answered;
//! success = every server answered NOERROR, not truncated, with the expected answers (and an
//! RRSIG when `dnssec`). Failures: refused (ICMP or TCP), timeout, garbage or a wrong-id answer,
//! an answer over the limit, a truncated UDP answer.

use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use super::{ProbeError, Progress, Sample, split_host_port};
use crate::config::{DnsTransport, Probe};

/// Answers with another id (stray or spoofed datagrams) ignored before giving up.
const MAX_STRAY_DATAGRAMS: usize = 16;

/// What one server said.
#[derive(Debug, Default)]
struct Answer {
    rcode: u16,
    truncated: bool,
    /// (record in zone-file form, record data alone, type)
    records: Vec<(String, String, RecordType)>,
    soa_serial: Option<u32>,
    rrsig_expiry: Option<u32>,
}

pub(crate) async fn run(probe: &Probe, p: &mut Progress) -> Result<(), ProbeError> {
    let c = &probe.config;
    let name = Name::from_ascii(c.query_name.as_deref().unwrap_or(""))
        .map_err(|e| ProbeError::Resolve(e.to_string()))?;
    let rtype: RecordType = c
        .query_type
        .as_deref()
        .unwrap_or("A")
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| p.protocol("unknown query type"))?;
    let transport = c.transport.unwrap_or_default();
    let answer_re = c
        .answer_regex
        .as_deref()
        .map(super::compile_regex)
        .transpose()
        .map_err(|e| p.protocol(e.to_string()))?;
    let asks = c.servers.iter().map(|server| {
        let name = name.clone();
        async move {
            let started = Instant::now();
            let r = tokio::time::timeout(
                probe.timeout.0,
                ask(server, name, rtype, transport, c.dnssec, probe.size_limit),
            )
            .await
            .unwrap_or(Err(ProbeError::Timeout {
                after: probe.timeout,
                stage: "waiting for the answer",
            }));
            (server, r, started.elapsed().as_secs_f64())
        }
    });
    let results = futures_util::future::join_all(asks).await;
    let mut all_answered = true;
    for (server, result, seconds) in results {
        let s = |metric, v: f64| Sample::new(metric, v).with("server", server.clone());
        p.push(s("probe_dns_duration_seconds", seconds));
        let answer = match result {
            Ok(a) => a,
            Err(e) => {
                all_answered = false;
                p.push(s("probe_dns_success", 0.0));
                p.problems.push(format!("{server}: {e}"));
                continue;
            }
        };
        let mut problems = Vec::new();
        p.push(s("probe_dns_rcode", f64::from(answer.rcode)));
        let of_type: Vec<_> = answer.records.iter().filter(|r| r.2 == rtype).collect();
        p.push(s("probe_dns_answer_count", of_type.len() as f64));
        if let Some(serial) = answer.soa_serial {
            p.push(s("probe_dns_soa_serial", f64::from(serial)));
        }
        if let Some(exp) = answer.rrsig_expiry {
            p.push(s(
                "probe_dns_rrsig_expiry_timestamp_seconds",
                f64::from(exp),
            ));
        } else if c.dnssec && answer.rcode == 0 {
            problems.push("no RRSIG in the answer".to_string());
        }
        if answer.rcode != 0 {
            problems.push(format!("rcode {}", rcode_name(answer.rcode)));
        }
        if answer.truncated {
            problems.push("answer truncated (TC): use transport tcp".into());
        }
        if let Some(re) = &answer_re
            && let Some(bad) = of_type.iter().find(|r| !re.is_match(&r.0))
        {
            problems.push(format!("answer {:?} does not match the regex", bad.0));
        }
        if !c.answer_set.is_empty() {
            let got: std::collections::BTreeSet<&str> =
                of_type.iter().map(|r| r.1.as_str()).collect();
            let want: std::collections::BTreeSet<&str> =
                c.answer_set.iter().map(String::as_str).collect();
            if got != want {
                problems.push(format!("answers {got:?}, expected {want:?}"));
            }
        }
        p.push(s(
            "probe_dns_success",
            if problems.is_empty() { 1.0 } else { 0.0 },
        ));
        p.problems
            .extend(problems.into_iter().map(|e| format!("{server}: {e}")));
    }
    p.up = all_answered && !c.servers.is_empty();
    Ok(())
}

fn rcode_name(code: u16) -> String {
    let name = match code {
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        9 => "NOTAUTH",
        _ => return code.to_string(),
    };
    format!("{code} ({name})")
}

/// One query to one server.
async fn ask(
    server: &str,
    name: Name,
    rtype: RecordType,
    transport: DnsTransport,
    dnssec: bool,
    limit: u64,
) -> Result<Answer, ProbeError> {
    let reply = exchange(server, name, rtype, transport, dnssec, limit).await?;
    let mut answer = Answer {
        rcode: u16::from(reply.metadata.response_code),
        truncated: reply.metadata.truncation,
        ..Answer::default()
    };
    for r in &reply.answers {
        match &r.data {
            RData::SOA(soa) => answer.soa_serial = Some(soa.serial),
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => {
                let exp = sig.input().sig_expiration.get();
                answer.rrsig_expiry = Some(answer.rrsig_expiry.map_or(exp, |e: u32| e.min(exp)));
            }
            _ => {}
        }
        answer
            .records
            .push((r.to_string(), r.data.to_string(), r.record_type()));
    }
    if answer.soa_serial.is_none() {
        answer.soa_serial = reply.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        });
    }
    Ok(answer)
}

/// One query to one server (`host` or `host:port`, port 53 by default) and its response, every
/// read bounded by `limit` bytes (the caller bounds the time); service discovery's `dns_sd`
/// asks through this too.
pub(crate) async fn exchange(
    server: &str,
    name: Name,
    rtype: RecordType,
    transport: DnsTransport,
    dnssec: bool,
    limit: u64,
) -> Result<Message, ProbeError> {
    let stage = "asking";
    let (host, port) =
        split_host_port(server, 53).ok_or_else(|| ProbeError::Resolve(server.to_string()))?;
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|source| ProbeError::Io { stage, source })?
        .next()
        .ok_or_else(|| ProbeError::Resolve(server.to_string()))?;
    let id: u16 = rand_id(server);
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(name, rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(limit.clamp(512, 4096) as u16);
    edns.set_dnssec_ok(dnssec);
    msg.set_edns(edns);
    let bytes = msg.to_vec().map_err(|e| ProbeError::Protocol {
        stage,
        message: e.to_string(),
    })?;
    let io = |source| ProbeError::Io {
        stage: "waiting for the answer",
        source,
    };
    let reply = match transport {
        DnsTransport::Udp => {
            let local: std::net::SocketAddr = if addr.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let sock = UdpSocket::bind(local).await.map_err(io)?;
            sock.connect(addr).await.map_err(io)?;
            sock.send(&bytes).await.map_err(io)?;
            // one byte more than the limit tells an oversized datagram from one that fits
            let mut buf = vec![0u8; (limit.min(65_535) + 1) as usize];
            let mut found = None;
            for _ in 0..MAX_STRAY_DATAGRAMS {
                let n = sock.recv(&mut buf).await.map_err(io)?;
                if n as u64 > limit {
                    return Err(ProbeError::TooLarge {
                        stage: "waiting for the answer",
                        limit,
                    });
                }
                let m = decode(&buf[..n])?;
                if m.metadata.id == id {
                    found = Some(m);
                    break;
                }
            }
            found.ok_or_else(|| ProbeError::Protocol {
                stage: "waiting for the answer",
                message: "only answers with another id".into(),
            })?
        }
        DnsTransport::Tcp => {
            let mut s = TcpStream::connect(addr)
                .await
                .map_err(|source| ProbeError::Io {
                    stage: "connecting",
                    source,
                })?;
            let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            s.write_all(&framed).await.map_err(io)?;
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.map_err(io)?;
            let len = u16::from_be_bytes(len) as u64;
            if len > limit {
                return Err(ProbeError::TooLarge {
                    stage: "waiting for the answer",
                    limit,
                });
            }
            let mut buf = vec![0u8; len as usize];
            s.read_exact(&mut buf).await.map_err(io)?;
            let m = decode(&buf)?;
            if m.metadata.id != id {
                return Err(ProbeError::Protocol {
                    stage: "waiting for the answer",
                    message: "answer with another id".into(),
                });
            }
            m
        }
    };
    if reply.metadata.message_type != MessageType::Response {
        return Err(ProbeError::Protocol {
            stage: "waiting for the answer",
            message: "not a response".into(),
        });
    }
    Ok(reply)
}

fn decode(bytes: &[u8]) -> Result<Message, ProbeError> {
    Message::from_vec(bytes).map_err(|e| ProbeError::Protocol {
        stage: "waiting for the answer",
        message: format!("invalid dns answer: {e}"),
    })
}

/// A query id: varies per query (a hash of the server and a process-wide counter, plus the
/// address of a stack value), so a stray answer to an earlier query is not taken for this one.
fn rand_id(server: &str) -> u16 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let local = 0u8;
    let h = xxhash_rust::xxh3::xxh3_64(format!("{server}\u{0}{n}\u{0}{:p}", &local).as_bytes());
    h as u16
}
