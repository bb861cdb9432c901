//! `tocsin scrape`: fetch and parse one metrics endpoint.

use anyhow::{Context, Result, bail};

use super::Outcome;
use tocsin::duration::PromDuration;
use tocsin::ingest::textparse::{Entry, Parser as TextParser};

pub(crate) fn scrape(url: &str, timeout: PromDuration, body_limit: u64) -> Result<Outcome> {
    let url = url::Url::parse(url).with_context(|| format!("invalid url {url:?}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = tocsin::ingest::client();
    let resp = rt
        .block_on(tocsin::ingest::fetch(
            &client,
            &url,
            timeout.0,
            body_limit,
            None,
            "text/plain;version=0.0.4",
        ))
        .with_context(|| format!("scrape {url}"))?;
    if !(200..300).contains(&resp.status) {
        bail!("scrape {url}: server returned HTTP status {}", resp.status);
    }
    let body = std::str::from_utf8(&resp.body)
        .with_context(|| format!("scrape {url}: body is not utf-8"))?;
    let mut out = String::new();
    let mut count = 0usize;
    for entry in TextParser::new(body) {
        match entry {
            Ok(Entry::Sample(s)) => {
                count += 1;
                out.push_str(s.series);
                out.push(' ');
                out.push_str(&s.value.to_string());
                if let Some(ts) = s.timestamp_ms {
                    out.push(' ');
                    out.push_str(&ts.to_string());
                }
                out.push('\n');
            }
            Ok(_) => {}
            Err(e) => {
                print!("{out}");
                eprintln!("{url}: {e}");
                return Ok(Outcome::CheckFailed);
            }
        }
    }
    print!("{out}");
    eprintln!("{count} samples");
    Ok(Outcome::Ok)
}
