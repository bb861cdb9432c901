//! `tocsin silence`: manage the silences of a running daemon through its API, with amtool's
//! verbs and flags (`add -a -d --comment --start --end`, `query`, `expire`, `import`).

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::{Outcome, SilenceAction, SilenceOutput, load_config};
use tocsin::clock::{Clock, SystemClock};
use tocsin::labels::{Labels, Matcher};

/// Largest import file read (a silence is well under 1 KiB; the API takes 64 KiB a request).
const MAX_IMPORT_BYTES: u64 = 16 << 20;

pub(crate) fn silence(
    action: SilenceAction,
    url: Option<String>,
    config: Option<PathBuf>,
) -> Result<Outcome> {
    let (cfg, _) = load_config(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = url.unwrap_or_else(|| format!("http://{}", cfg.server.listen.value));
    let token = match &cfg.server.api_token_env {
        Some(var) => std::env::var(var).ok(),
        None => std::env::var("TOCSIN_API_TOKEN").ok(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let api = Api {
        client: reqwest::Client::new(),
        endpoint: format!("{base}/api/v1/silences"),
        base,
        token,
    };
    let now = SystemClock.now_ms();
    rt.block_on(async {
        match action {
            SilenceAction::Add {
                matchers,
                duration,
                start,
                end,
                author,
                comment,
            } => {
                let starts = match start.as_deref() {
                    Some(s) => tocsin::timefmt::parse_time_at(s, now)?,
                    None => now,
                };
                let ends = match end.as_deref() {
                    Some(s) => tocsin::timefmt::parse_time_at(s, now)?,
                    None => starts + duration.as_millis(),
                };
                let body = json!({
                    "matchers": matchers,
                    "startsAt": tocsin::timefmt::format_rfc3339(starts),
                    "endsAt": tocsin::timefmt::format_rfc3339(ends),
                    "createdBy": author,
                    "comment": comment,
                });
                match api.create(&body).await? {
                    Ok(id) => println!("{id}"),
                    Err(e) => return fail(&e),
                }
            }
            SilenceAction::Query {
                matchers,
                expired,
                quiet,
                output,
            } => {
                let filter = matchers
                    .iter()
                    .map(|m| {
                        tocsin::labels::parse_matcher(m)
                            .map_err(|e| anyhow::anyhow!("matcher {m:?}: {e}"))
                    })
                    .collect::<Result<Vec<Matcher>>>()?;
                let (ok, v) = api.send(api.client.get(&api.endpoint)).await?;
                if !ok {
                    return fail(&error_text(&v));
                }
                let list: Vec<Value> = v["data"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|s| expired || s["status"]["state"] != "expired")
                    .filter(|s| silence_matches(s, &filter))
                    .collect();
                match (output, quiet) {
                    (_, true) => list
                        .iter()
                        .for_each(|s| println!("{}", s["id"].as_str().unwrap_or(""))),
                    (SilenceOutput::Json, false) => println!("{}", Value::Array(list)),
                    (SilenceOutput::Text, false) => list.iter().for_each(print_silence),
                }
            }
            SilenceAction::Expire { ids } => {
                let mut failed = false;
                for id in ids {
                    let req = api.auth(api.client.delete(format!("{}/{id}", api.endpoint)));
                    let (ok, v) = api.send(req).await?;
                    if ok {
                        println!("expired {id}");
                    } else {
                        eprintln!("error: {id}: {}", error_text(&v));
                        failed = true;
                    }
                }
                if failed {
                    return Ok(Outcome::CheckFailed);
                }
            }
            SilenceAction::Import { file } => return import(&api, file, now).await,
        }
        Ok(Outcome::Ok)
    })
}

/// The daemon's silences endpoint and its write token.
struct Api {
    client: reqwest::Client,
    base: String,
    endpoint: String,
    token: Option<String>,
}

impl Api {
    fn auth(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends `req`; whether it succeeded and its JSON body (`Null` if none).
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(bool, Value)> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let ok = resp.status().is_success();
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|_| json!({"error": format!("{status}: {text}")}));
        Ok((ok, v))
    }

    /// Creates a silence: its id, or the daemon's refusal.
    async fn create(&self, body: &Value) -> Result<Result<String, String>> {
        let req = self
            .auth(self.client.post(&self.endpoint))
            .header("content-type", "application/json")
            .body(body.to_string());
        let (ok, v) = self.send(req).await?;
        Ok(if ok {
            Ok(v["data"]["silenceID"].as_str().unwrap_or("").to_string())
        } else {
            Err(error_text(&v))
        })
    }
}

fn error_text(v: &Value) -> String {
    v["error"]
        .as_str()
        .map_or_else(|| v.to_string(), str::to_string)
}

fn fail(message: &str) -> Result<Outcome> {
    eprintln!("error: {message}");
    Ok(Outcome::CheckFailed)
}

/// Whether a silence's matchers, read as a label set (name → value), satisfy every filter
/// matcher: how Alertmanager filters `GET /silences?filter=`.
fn silence_matches(s: &Value, filter: &[Matcher]) -> bool {
    if filter.is_empty() {
        return true;
    }
    let pairs: Vec<(String, String)> = s["matchers"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    let text = |k: &str| m[k].as_str().unwrap_or("").to_string();
                    (text("name"), text("value"))
                })
                .collect()
        })
        .unwrap_or_default();
    let labels = Labels::from_pairs(pairs);
    filter.iter().all(|m| m.matches_labels(&labels))
}

fn print_silence(s: &Value) {
    let matchers: Vec<String> = s["matchers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let op = match (m["isEqual"].as_bool(), m["isRegex"].as_bool()) {
                (Some(false), Some(true)) => "!~",
                (_, Some(true)) => "=~",
                (Some(false), _) => "!=",
                _ => "=",
            };
            format!(
                "{}{op}{:?}",
                m["name"].as_str().unwrap_or(""),
                m["value"].as_str().unwrap_or("")
            )
        })
        .collect();
    println!(
        "{}  {}  {}  until {}  {}  {}",
        s["id"].as_str().unwrap_or(""),
        s["status"]["state"].as_str().unwrap_or(""),
        matchers.join(","),
        s["endsAt"].as_str().unwrap_or(""),
        s["createdBy"].as_str().unwrap_or(""),
        s["comment"].as_str().unwrap_or("")
    );
}

/// `silence import`: every silence of the array not yet ended is created anew (a new id: a
/// client-chosen id never creates one); prints each new id. Exit 1 if any was refused.
async fn import(api: &Api, file: Option<PathBuf>, now: i64) -> Result<Outcome> {
    let mut text = String::new();
    match file.as_deref() {
        Some(p) if p.as_os_str() != "-" => std::fs::File::open(p)
            .with_context(|| format!("cannot open {}", p.display()))?
            .take(MAX_IMPORT_BYTES)
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read {}", p.display()))?,
        _ => std::io::stdin()
            .take(MAX_IMPORT_BYTES)
            .read_to_string(&mut text)
            .context("cannot read stdin")?,
    };
    let what = file.map_or_else(|| "stdin".to_string(), |p| p.display().to_string());
    let list: Vec<Value> = match serde_json::from_str(&text) {
        Ok(Value::Array(a)) => a,
        Ok(_) => bail!("{what}: expected a JSON array of silences"),
        Err(e) => bail!("{what}: not JSON: {e}"),
    };
    let mut refused = 0;
    for (i, s) in list.iter().enumerate() {
        let ends = s["endsAt"].as_str().map(tocsin::timefmt::parse_time);
        match ends {
            Some(Ok(t)) if t <= now => continue,
            Some(Ok(_)) => {}
            _ => {
                eprintln!("error: {what}: silence {i}: no valid endsAt");
                refused += 1;
                continue;
            }
        }
        let body = json!({
            "matchers": s["matchers"],
            "startsAt": s["startsAt"],
            "endsAt": s["endsAt"],
            "createdBy": s["createdBy"],
            "comment": s["comment"].as_str().unwrap_or(""),
        });
        match api.create(&body).await? {
            Ok(id) => println!("{id}"),
            Err(e) => {
                eprintln!("error: {what}: silence {i}: {e}");
                refused += 1;
            }
        }
    }
    Ok(if refused == 0 {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}
