//! `dns_sd`: targets from DNS records, asked with hickory-proto over our own sockets (the
//! `dns` probe's `exchange`: every read bounded), UDP first and TCP
//! when the answer is truncated. The server is the configured `nameserver` or the first
//! `nameserver` of `/etc/resolv.conf`. `A`/`AAAA` records give `<address>:<port>`; `SRV`
//! records give `<target>:<port>`. Each name's group gets `__meta_dns_name`, and SRV targets
//! `__meta_dns_srv_record_target` and `__meta_dns_srv_record_port`, as Prometheus sets them.

use std::collections::BTreeMap;
use std::time::Duration;

use hickory_proto::rr::{Name, RData, RecordType};

use super::{Group, MAX_SD_TARGETS, SdError};
use crate::config::DnsTransport;
use crate::config::sd::DnsSdType;

/// How long one name's lookup may take.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest DNS answer read.
const ANSWER_LIMIT: u64 = 65_535;

/// Resolves every name; one failed name fails the refresh (the last good list stays).
pub async fn refresh(
    names: &[String],
    kind: DnsSdType,
    port: u16,
    nameserver: Option<&str>,
) -> Result<Vec<Group>, SdError> {
    let server = match nameserver {
        Some(s) => s.to_string(),
        None => system_nameserver().await?,
    };
    let rtype = match kind {
        DnsSdType::A => RecordType::A,
        DnsSdType::Aaaa => RecordType::AAAA,
        DnsSdType::Srv => RecordType::SRV,
    };
    let mut out = Vec::new();
    let mut count = 0;
    for n in names {
        let err = |message: String| SdError::Io {
            at: format!("{n} ({server})"),
            message,
        };
        let name = Name::from_ascii(n).map_err(|e| err(e.to_string()))?;
        let mut reply = None;
        for transport in [DnsTransport::Udp, DnsTransport::Tcp] {
            let r = tokio::time::timeout(
                LOOKUP_TIMEOUT,
                crate::ingest::probe::dns::exchange(
                    &server,
                    name.clone(),
                    rtype,
                    transport,
                    false,
                    ANSWER_LIMIT,
                ),
            )
            .await
            .map_err(|_| err(format!("no answer within {LOOKUP_TIMEOUT:?}")))?
            .map_err(|e| err(e.to_string()))?;
            let truncated = r.metadata.truncation;
            reply = Some(r);
            if !truncated {
                break;
            }
        }
        let reply = reply.expect("one exchange at least");
        let rcode = u16::from(reply.metadata.response_code);
        // NXDOMAIN is an answer: the name has no targets (now)
        if rcode != 0 && rcode != 3 {
            return Err(err(format!("rcode {rcode}")));
        }
        for r in &reply.answers {
            let mut labels = BTreeMap::from([("__meta_dns_name".to_string(), n.clone())]);
            let address = match (&r.data, kind) {
                (RData::A(a), DnsSdType::A) => format!("{}:{port}", a.0),
                (RData::AAAA(a), DnsSdType::Aaaa) => format!("[{}]:{port}", a.0),
                (RData::SRV(srv), DnsSdType::Srv) => {
                    let target = srv.target.to_ascii();
                    let host = target.trim_end_matches('.').to_string();
                    labels.insert("__meta_dns_srv_record_target".into(), target.clone());
                    labels.insert("__meta_dns_srv_record_port".into(), srv.port.to_string());
                    format!("{host}:{}", srv.port)
                }
                // CNAMEs on the way and other types
                _ => continue,
            };
            count += 1;
            if count > MAX_SD_TARGETS {
                return Err(SdError::Limit {
                    at: n.clone(),
                    message: format!("more than the limit of {MAX_SD_TARGETS} targets"),
                });
            }
            out.push(Group {
                targets: vec![address],
                labels,
            });
        }
    }
    Ok(out)
}

/// The first `nameserver` of `/etc/resolv.conf`.
async fn system_nameserver() -> Result<String, SdError> {
    let err = |message: String| SdError::Io {
        at: "/etc/resolv.conf".into(),
        message,
    };
    let text = tokio::fs::read("/etc/resolv.conf")
        .await
        .map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8_lossy(&text[..text.len().min(64 << 10)]).into_owned();
    first_nameserver(&text).ok_or_else(|| err("no nameserver line".into()))
}

/// The first `nameserver` of a resolv.conf text, as `host` (an IPv6 address without brackets).
fn first_nameserver(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(str::trim)
        .find(|s| !s.is_empty())
        .map(|s| s.split('%').next().unwrap_or(s).to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_nameserver_of_resolv_conf_is_used() {
        let text = "# comment\nsearch example.org\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n";
        assert_eq!(super::first_nameserver(text).as_deref(), Some("10.0.0.2"));
        assert_eq!(
            super::first_nameserver("nameserver fe80::1%eth0\n").as_deref(),
            Some("fe80::1")
        );
        assert_eq!(super::first_nameserver("search x\n"), None);
    }
}
