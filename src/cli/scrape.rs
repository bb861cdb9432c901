//! `tocsin scrape`: fetch and parse one metrics endpoint, or preview a health endpoint.

use anyhow::{Context, Result, bail};

use super::Outcome;
use tocsin::duration::PromDuration;
use tocsin::ingest::textparse::{Entry, Parser as TextParser};

pub(crate) fn scrape(
    url: &str,
    timeout: PromDuration,
    body_limit: u64,
    fields: &[String],
) -> Result<Outcome> {
    let url = url::Url::parse(url).with_context(|| format!("invalid url {url:?}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = tocsin::ingest::client();
    let started = std::time::Instant::now();
    let resp = rt
        .block_on(tocsin::ingest::fetch(
            &client,
            &url,
            timeout.0,
            body_limit,
            None,
            "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.9,text/plain;version=0.0.4;q=0.8,application/json;q=0.5,*/*;q=0.1",
        ))
        .with_context(|| format!("scrape {url}"))?;
    let seconds = started.elapsed().as_secs_f64();
    // a health endpoint answers JSON (any status: a 503 with its failing checks is an answer)
    if tocsin::ingest::health::looks_like_json(&resp.content_type, &resp.body) {
        return health_preview(&url, Ok(resp), seconds, fields);
    }
    if !fields.is_empty() {
        bail!("scrape {url}: --field needs a JSON health endpoint; the answer is not JSON");
    }
    if !(200..300).contains(&resp.status) {
        bail!("scrape {url}: server returned HTTP status {}", resp.status);
    }
    let body = std::str::from_utf8(&resp.body)
        .with_context(|| format!("scrape {url}: body is not utf-8"))?;
    let format = tocsin::ingest::textparse::Format::from_content_type(&resp.content_type);
    let mut out = String::new();
    let mut count = 0usize;
    for entry in TextParser::with_format(body, format) {
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

/// Prints the samples a health probe of `url` would write (`probe="health"` and the target's
/// labels left out) and its verdict; fails (exit 1) when the endpoint is not healthy.
fn health_preview(
    url: &url::Url,
    resp: Result<tocsin::ingest::Response, tocsin::ingest::ScrapeError>,
    seconds: f64,
    fields: &[String],
) -> Result<Outcome> {
    let fields = fields
        .iter()
        .map(|f| {
            let path = tocsin::ingest::health::JsonPath::parse(f)
                .map_err(|e| anyhow::anyhow!("--field {f:?}: {e}"))?;
            let gauge = tocsin::config::JsonGauge {
                field: serde_saphyr::Spanned::new(
                    f.clone(),
                    serde_saphyr::Location::UNKNOWN,
                    serde_saphyr::Location::UNKNOWN,
                ),
                metric: None,
                states: Vec::new(),
            };
            Ok(tocsin::ingest::health::JsonField {
                field: f.clone(),
                path,
                metric: gauge.metric_name(),
                states: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let (report, samples) = tocsin::ingest::health::preview(&resp, seconds, &fields);
    for (metric, labels, value) in &samples {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        if labels.is_empty() {
            println!("{metric} {value}");
        } else {
            println!("{metric}{{{}}} {value}", labels.join(","));
        }
    }
    eprintln!("{url}: health endpoint, {} samples", samples.len());
    match (&report.error, report.success) {
        (Some(e), false) => {
            eprintln!("unhealthy: {e}");
            Ok(Outcome::CheckFailed)
        }
        (Some(w), true) => {
            eprintln!("healthy; {w}");
            Ok(Outcome::Ok)
        }
        (None, _) => Ok(Outcome::Ok),
    }
}
