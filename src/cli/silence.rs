//! `tocsin silence`: manage the silences of a running daemon through its API.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::{Outcome, SilenceAction, load_config};
use tocsin::clock::{Clock, SystemClock};

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
    let client = reqwest::Client::new();
    let auth = |r: reqwest::RequestBuilder| match &token {
        Some(t) => r.bearer_auth(t),
        None => r,
    };
    let endpoint = format!("{base}/api/v1/silences");
    let (status, text) = rt.block_on(async {
        let req = match &action {
            SilenceAction::Add {
                matchers,
                duration,
                author,
                comment,
            } => {
                let ends = SystemClock.now_ms() + duration.as_millis();
                let body = serde_json::json!({
                    "matchers": matchers,
                    "endsAt": tocsin::timefmt::format_rfc3339(ends),
                    "createdBy": author,
                    "comment": comment,
                });
                auth(client.post(&endpoint))
                    .header("content-type", "application/json")
                    .body(body.to_string())
            }
            SilenceAction::List => client.get(&endpoint),
            SilenceAction::Expire { id } => auth(client.delete(format!("{endpoint}/{id}"))),
        };
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))?;
        let status = resp.status();
        anyhow::Ok((status, resp.text().await.unwrap_or_default()))
    })?;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        eprintln!(
            "error: {}: {}",
            status,
            v["error"].as_str().unwrap_or(&text)
        );
        return Ok(Outcome::CheckFailed);
    }
    match action {
        SilenceAction::Add { .. } => println!("{}", v["data"]["silenceID"].as_str().unwrap_or("")),
        SilenceAction::List => {
            for s in v["data"].as_array().cloned().unwrap_or_default() {
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
        }
        SilenceAction::Expire { id } => println!("expired {id}"),
    }
    Ok(Outcome::Ok)
}
