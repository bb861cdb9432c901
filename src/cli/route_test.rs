//! `tocsin route-test`: the receivers an alert with given labels would reach.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::{Outcome, load_config};

pub(crate) fn route_test(
    labels: &[String],
    config: Option<PathBuf>,
    verify: Option<&str>,
) -> Result<Outcome> {
    let (cfg, source) = load_config(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(plan) = cfg.notify_plan() else {
        bail!(
            "{}: no route configured",
            source
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "built-in configuration".into())
        );
    };
    let mut pairs = Vec::new();
    for l in labels {
        let (k, v) = tocsin::labels::parse_label_pair(l)
            .with_context(|| format!("expected label=value, got {l:?}"))?;
        pairs.push((k, v));
    }
    // a repeated name keeps its last value, an empty value is an absent label (as matching reads it)
    let receivers = plan
        .routes()
        .route_test(&tocsin::labels::Labels::from_pairs(pairs));
    println!("{}", receivers.join(","));
    if let Some(want) = verify {
        let want: Vec<&str> = want.split(',').map(str::trim).collect();
        if want != receivers {
            eprintln!(
                "want receivers {}, got {}",
                want.join(","),
                receivers.join(",")
            );
            return Ok(Outcome::CheckFailed);
        }
    }
    Ok(Outcome::Ok)
}
