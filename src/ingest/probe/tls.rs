//! The `tls` probe: a TLS handshake to `address` (optionally after STARTTLS in SMTP, IMAP or
//! POP3) with SNI `server_name`, and the leaf certificate judged at the probe's time.
//!
//! The handshake accepts any certificate so the certificate can always be read; the real
//! verification (the system's roots or `ca_file`, through the same aws-lc-rs provider reqwest
//! uses) is run at the probe's time and recorded. Series: `probe_tls_cert_not_after_seconds`,
//! `probe_tls_cert_not_before_seconds` (Unix seconds), `probe_tls_cert_covers_name` (SAN check,
//! wildcards one label deep), `probe_tls_cert_verified` (chain, dates and name; the reason in the
//! probe's error), `probe_tls_version_info{version}`, `probe_tls_handshake_seconds`. `up` = the
//! handshake completed; a refused, truncated or garbage handshake is a failure with rustls's reason.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use super::{LineConn, ProbeError, Progress, Sample, connect};
use crate::config::{Probe, StartTls};

/// The verifier used for the handshake: delegates signature checks, records the certificate
/// verification (at the probe's time) instead of failing the handshake on it.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ServerCertVerifier>,
    now: UnixTime,
    outcome: Mutex<Option<(CertificateDer<'static>, Result<(), rustls::Error>)>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self
            .inner
            .verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                self.now,
            )
            .map(|_| ());
        *self.outcome.lock().expect("verifier lock") =
            Some((end_entity.clone().into_owned(), verdict));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The verifier of record: `ca_pem`'s certificates as the only roots, else the platform's.
fn real_verifier(ca_pem: Option<&[u8]>) -> Result<Arc<dyn ServerCertVerifier>, ProbeError> {
    match ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| ProbeError::Tls(format!("ca_file: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| ProbeError::Tls(format!("ca_file: {e}")))?;
            }
            if roots.is_empty() {
                return Err(ProbeError::Tls("ca_file holds no certificate".into()));
            }
            let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| ProbeError::Tls(format!("ca_file: {e}")))?;
            Ok(v)
        }
        None => Ok(Arc::new(
            rustls_platform_verifier::Verifier::new(provider())
                .map_err(|e| ProbeError::Tls(format!("system roots: {e}")))?,
        )),
    }
}

/// Runs a TLS handshake over `stream` as `server_name` and records the certificate series;
/// returns the TLS stream (for an SMTP probe's EHLO after STARTTLS).
pub(crate) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    server_name: &str,
    ca_pem: Option<&[u8]>,
    now_ms: i64,
    p: &mut Progress,
) -> Result<TlsStream<S>, ProbeError> {
    p.stage = "in the tls handshake";
    let recording = Arc::new(Recording {
        inner: real_verifier(ca_pem)?,
        now: UnixTime::since_unix_epoch(Duration::from_millis(now_ms.max(0) as u64)),
        outcome: Mutex::new(None),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(recording.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| ProbeError::Tls(format!("invalid server name {server_name:?}: {e}")))?;
    let started = Instant::now();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| ProbeError::Tls(e.to_string()))?;
    p.push(Sample::new(
        "probe_tls_handshake_seconds",
        started.elapsed().as_secs_f64(),
    ));
    if let Some(v) = tls.get_ref().1.protocol_version() {
        let version = match v {
            rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2".to_string(),
            rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3".to_string(),
            other => format!("{other:?}"),
        };
        p.push(Sample::new("probe_tls_version_info", 1.0).with("version", version));
    }
    let outcome = recording.outcome.lock().expect("verifier lock").take();
    let Some((leaf, verdict)) = outcome else {
        return Err(ProbeError::Tls(
            "the server presented no certificate".into(),
        ));
    };
    judge_certificate(&leaf, server_name, verdict, p);
    Ok(tls)
}

/// Writes the leaf certificate's series and adds the failed checks to the problems.
fn judge_certificate(
    leaf: &CertificateDer<'_>,
    server_name: &str,
    verdict: Result<(), rustls::Error>,
    p: &mut Progress,
) {
    let one = |b: bool| if b { 1.0 } else { 0.0 };
    match x509_parser::parse_x509_certificate(leaf.as_ref()) {
        Ok((_, cert)) => {
            let validity = cert.validity();
            p.push(Sample::new(
                "probe_tls_cert_not_before_seconds",
                validity.not_before.timestamp() as f64,
            ));
            p.push(Sample::new(
                "probe_tls_cert_not_after_seconds",
                validity.not_after.timestamp() as f64,
            ));
            let covers = covers_name(&cert, server_name);
            p.push(Sample::new("probe_tls_cert_covers_name", one(covers)));
            if !covers {
                p.problems.push(format!(
                    "certificate does not cover the name {server_name:?}"
                ));
            }
        }
        Err(e) => p
            .problems
            .push(format!("certificate cannot be parsed: {e}")),
    }
    p.push(Sample::new("probe_tls_cert_verified", one(verdict.is_ok())));
    if let Err(e) = verdict {
        p.problems.push(e.to_string());
    }
}

/// Whether the certificate's subject alternative names cover `name` (an IP address is compared
/// with the IP entries; `*.example.org` covers one label).
pub fn covers_name(cert: &x509_parser::certificate::X509Certificate<'_>, name: &str) -> bool {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let ip: Option<std::net::IpAddr> = name.parse().ok();
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    san.value.general_names.iter().any(|g| match (g, ip) {
        (GeneralName::IPAddress(bytes), Some(ip)) => match ip {
            std::net::IpAddr::V4(v4) => *bytes == v4.octets().as_slice(),
            std::net::IpAddr::V6(v6) => *bytes == v6.octets().as_slice(),
        },
        (GeneralName::DNSName(d), None) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            match d.strip_prefix("*.") {
                Some(rest) => name
                    .split_once('.')
                    .is_some_and(|(first, tail)| !first.is_empty() && tail == rest),
                None => d == name,
            }
        }
        _ => false,
    })
}

/// The name a `tls` or `smtp` probe sends as SNI: `server_name`, or the host of the address.
pub(crate) fn sni(probe: &Probe) -> String {
    probe.config.server_name.clone().unwrap_or_else(|| {
        super::split_host_port(probe.config.address.as_deref().unwrap_or(""), 0)
            .map(|(h, _)| h)
            .unwrap_or_default()
    })
}

pub(crate) async fn run(probe: &Probe, now_ms: i64, p: &mut Progress) -> Result<(), ProbeError> {
    let stream = connect(probe.config.address.as_deref().unwrap_or(""), p).await?;
    let stream = match probe.config.starttls {
        None => stream,
        Some(proto) => {
            let mut conn = LineConn::new(stream, probe.size_limit);
            match proto {
                StartTls::Smtp => super::smtp::starttls(&mut conn, p).await?,
                StartTls::Imap => imap_starttls(&mut conn, p).await?,
                StartTls::Pop3 => pop3_starttls(&mut conn, p).await?,
            }
            conn.into_inner(p)?
        }
    };
    let mut tls = handshake(stream, &sni(probe), probe.ca_pem.as_deref(), now_ms, p).await?;
    p.up = true;
    // a polite close; its failure says nothing about the certificate
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
    Ok(())
}

async fn imap_starttls<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineConn<S>,
    p: &mut Progress,
) -> Result<(), ProbeError> {
    p.stage = "reading the imap greeting";
    let greeting = conn.line(p).await?;
    if !greeting.starts_with("* OK") {
        return Err(p.protocol(format!("unexpected greeting {greeting:?}")));
    }
    p.stage = "asking for STARTTLS";
    conn.send("a1 STARTTLS\r\n", p).await?;
    for _ in 0..super::MAX_REPLY_LINES {
        let line = conn.line(p).await?;
        if line.starts_with("a1 ") {
            return if line.starts_with("a1 OK") {
                Ok(())
            } else {
                Err(p.protocol(format!("STARTTLS refused: {line:?}")))
            };
        }
    }
    Err(ProbeError::TooManyLines { stage: p.stage })
}

async fn pop3_starttls<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineConn<S>,
    p: &mut Progress,
) -> Result<(), ProbeError> {
    p.stage = "reading the pop3 greeting";
    let greeting = conn.line(p).await?;
    if !greeting.starts_with("+OK") {
        return Err(p.protocol(format!("unexpected greeting {greeting:?}")));
    }
    p.stage = "asking for STLS";
    conn.send("STLS\r\n", p).await?;
    let line = conn.line(p).await?;
    if line.starts_with("+OK") {
        Ok(())
    } else {
        Err(p.protocol(format!("STLS refused: {line:?}")))
    }
}
