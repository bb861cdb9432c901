//! The `smtp` probe: banner, `EHLO`, `STARTTLS` offered and working, the certificate presented
//! after it (the `tls` series), then `QUIT`.
//!
//! Series: `probe_smtp_banner_seconds` (connect to banner), `probe_smtp_ehlo_seconds`,
//! `probe_smtp_status_code` (the last reply's code), `probe_smtp_starttls_offered`,
//! `probe_smtp_starttls_ok` (the handshake completed), and the `tls` probe's certificate series.
//! `up` = a banner was read. Success needs a 220 banner, a 250 EHLO and, unless
//! `require_starttls: false`, STARTTLS offered with a verified certificate. Failures: refused,
//! timeout (at the stage reached), garbage replies, lines or replies over the limits, data sent
//! after the STARTTLS reply, a failed handshake.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::{LineConn, MAX_REPLY_LINES, ProbeError, Progress, Sample, connect};
use crate::config::Probe;

/// One SMTP reply: the code and the text of each line.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

/// Reads one (possibly multi-line) reply: `250-first`, …, `250 last`.
pub(crate) async fn reply<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineConn<S>,
    p: &Progress,
) -> Result<Reply, ProbeError> {
    let mut lines = Vec::new();
    for _ in 0..MAX_REPLY_LINES {
        let line = conn.line(p).await?;
        let bytes = line.as_bytes();
        let code = (bytes.len() >= 3 && bytes[..3].iter().all(u8::is_ascii_digit))
            .then(|| line[..3].parse::<u16>().ok())
            .flatten()
            .filter(|_| matches!(bytes.get(3), None | Some(b' ') | Some(b'-')))
            .ok_or_else(|| p.protocol(format!("not an smtp reply: {:?}", truncate(&line))))?;
        let more = bytes.get(3) == Some(&b'-');
        lines.push(line.get(4..).unwrap_or("").to_string());
        if !more {
            return Ok(Reply { code, lines });
        }
    }
    Err(ProbeError::TooManyLines { stage: p.stage })
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Banner, EHLO and STARTTLS for a `tls` probe with `starttls: smtp`: fails unless offered
/// and accepted.
pub(crate) async fn starttls<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut LineConn<S>,
    p: &mut Progress,
) -> Result<(), ProbeError> {
    p.stage = "reading the smtp banner";
    let banner = reply(conn, p).await?;
    if banner.code != 220 {
        return Err(p.protocol(format!("banner {} {}", banner.code, banner.lines.join(" "))));
    }
    p.stage = "in EHLO";
    conn.send("EHLO tocsin.invalid\r\n", p).await?;
    let ehlo = reply(conn, p).await?;
    if ehlo.code != 250 {
        return Err(p.protocol(format!("EHLO answered {}", ehlo.code)));
    }
    if !offers_starttls(&ehlo) {
        return Err(p.protocol("STARTTLS not offered"));
    }
    p.stage = "in STARTTLS";
    conn.send("STARTTLS\r\n", p).await?;
    let r = reply(conn, p).await?;
    if r.code != 220 {
        return Err(p.protocol(format!(
            "STARTTLS answered {} {}",
            r.code,
            r.lines.join(" ")
        )));
    }
    Ok(())
}

fn offers_starttls(ehlo: &Reply) -> bool {
    ehlo.lines
        .iter()
        .skip(1)
        .any(|l| l.trim().eq_ignore_ascii_case("STARTTLS"))
}

pub(crate) async fn run(probe: &Probe, now_ms: i64, p: &mut Progress) -> Result<(), ProbeError> {
    let started = Instant::now();
    let require_tls = probe.config.require_starttls.unwrap_or(true);
    let stream = connect(probe.config.address.as_deref().unwrap_or(""), p).await?;
    let mut conn = LineConn::new(stream, probe.size_limit);
    p.stage = "reading the smtp banner";
    let banner = reply(&mut conn, p).await?;
    p.up = true;
    p.push(Sample::new(
        "probe_smtp_banner_seconds",
        started.elapsed().as_secs_f64(),
    ));
    let status = |p: &mut Progress, code: u16| {
        p.samples.retain(|s| s.metric != "probe_smtp_status_code");
        p.push(Sample::new("probe_smtp_status_code", f64::from(code)));
    };
    status(p, banner.code);
    if banner.code != 220 {
        p.problems.push(format!(
            "banner {} {}",
            banner.code,
            truncate(&banner.lines.join(" "))
        ));
        let _ = conn.send("QUIT\r\n", p).await;
        return Ok(());
    }
    p.stage = "in EHLO";
    let ehlo_started = Instant::now();
    conn.send("EHLO tocsin.invalid\r\n", p).await?;
    let ehlo = reply(&mut conn, p).await?;
    p.push(Sample::new(
        "probe_smtp_ehlo_seconds",
        ehlo_started.elapsed().as_secs_f64(),
    ));
    status(p, ehlo.code);
    if ehlo.code != 250 {
        p.problems.push(format!("EHLO answered {}", ehlo.code));
        let _ = conn.send("QUIT\r\n", p).await;
        return Ok(());
    }
    let offered = offers_starttls(&ehlo);
    p.push(Sample::new(
        "probe_smtp_starttls_offered",
        if offered { 1.0 } else { 0.0 },
    ));
    if !offered {
        if require_tls {
            p.problems.push("STARTTLS not offered".into());
        }
        p.stage = "in QUIT";
        conn.send("QUIT\r\n", p).await?;
        let _ = reply(&mut conn, p).await;
        return Ok(());
    }
    p.stage = "in STARTTLS";
    conn.send("STARTTLS\r\n", p).await?;
    let r = reply(&mut conn, p).await?;
    status(p, r.code);
    if r.code != 220 {
        p.push(Sample::new("probe_smtp_starttls_ok", 0.0));
        let problem = format!(
            "STARTTLS answered {} {}",
            r.code,
            truncate(&r.lines.join(" "))
        );
        if require_tls {
            p.problems.push(problem);
        }
        return Ok(());
    }
    let stream = conn.into_inner(p)?;
    let problems_before = p.problems.len();
    let tls = super::tls::handshake(
        stream,
        &super::tls::sni(probe),
        probe.ca_pem.as_deref(),
        now_ms,
        p,
    )
    .await;
    let tls = match tls {
        Ok(tls) => tls,
        Err(e) => {
            p.push(Sample::new("probe_smtp_starttls_ok", 0.0));
            if require_tls {
                return Err(e);
            }
            return Ok(());
        }
    };
    p.push(Sample::new("probe_smtp_starttls_ok", 1.0));
    if !require_tls {
        // the certificate is reported, not required
        p.problems.truncate(problems_before);
    }
    let mut conn = LineConn::new(tls, probe.size_limit);
    p.stage = "in EHLO after STARTTLS";
    conn.send("EHLO tocsin.invalid\r\n", p).await?;
    let ehlo = reply(&mut conn, p).await?;
    status(p, ehlo.code);
    if ehlo.code != 250 {
        p.problems
            .push(format!("EHLO after STARTTLS answered {}", ehlo.code));
    }
    p.stage = "in QUIT";
    let _ = conn.send("QUIT\r\n", p).await;
    Ok(())
}
