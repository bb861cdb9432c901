//! `tocsin probe KIND TARGET`: run one probe and print the samples it would write.
//!
//! The options become a one-probe configuration that goes through the same validation and
//! building as `tocsin.yml`, so the preview runs exactly what the daemon would.

use anyhow::{Context, Result};
use clap::Args;

use super::Outcome;
use tocsin::config::Config;
use tocsin::duration::PromDuration;

#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// tcp, tls, dns or smtp
    kind: String,
    /// host:port to connect to; for dns the servers, comma-separated
    target: String,
    /// tls, smtp: name sent as SNI and checked against the certificate
    #[arg(long)]
    server_name: Option<String>,
    /// tls: smtp, imap or pop3
    #[arg(long)]
    starttls: Option<String>,
    /// tls, smtp: PEM file of CA certificates to verify against instead of the system's
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// smtp: do not fail when STARTTLS is missing or fails
    #[arg(long)]
    no_require_starttls: bool,
    /// dns: the name to ask for
    #[arg(long)]
    query_name: Option<String>,
    /// dns: the record type (default A)
    #[arg(long)]
    query_type: Option<String>,
    /// dns: udp or tcp
    #[arg(long)]
    transport: Option<String>,
    /// dns: ask for DNSSEC records
    #[arg(long)]
    dnssec: bool,
    /// dns: a regex every answer must match
    #[arg(long)]
    answer_regex: Option<String>,
    /// tcp: text to send after connecting
    #[arg(long)]
    send: Option<String>,
    /// tcp: a regex the received text must match
    #[arg(long)]
    expect: Option<String>,
    /// the whole probe
    #[arg(long, default_value = "10s")]
    timeout: PromDuration,
}

pub(crate) fn probe(args: ProbeArgs) -> Result<Outcome> {
    let mut p = serde_json::Map::new();
    let mut set = |k: &str, v: serde_json::Value| {
        p.insert(k.to_string(), v);
    };
    set("kind", args.kind.clone().into());
    if args.kind == "dns" {
        set(
            "servers",
            args.target
                .split(',')
                .map(|s| s.trim().to_string())
                .collect(),
        );
    } else {
        set("address", args.target.clone().into());
    }
    let opt = [
        ("server_name", args.server_name),
        ("starttls", args.starttls),
        ("query_name", args.query_name),
        ("query_type", args.query_type),
        ("transport", args.transport),
        ("answer_regex", args.answer_regex),
        ("send", args.send),
        ("expect", args.expect),
        (
            "ca_file",
            args.ca_file.map(|f| f.to_string_lossy().into_owned()),
        ),
    ];
    for (k, v) in opt {
        if let Some(v) = v {
            set(k, v.into());
        }
    }
    if args.dnssec {
        set("dnssec", true.into());
    }
    if args.no_require_starttls {
        set("require_starttls", false.into());
    }
    set("timeout", args.timeout.to_string().into());
    set("interval", args.timeout.to_string().into());
    // JSON is YAML: the values need no escaping of their own
    let yaml = format!(
        "targets: [{{name: probe, probes: [{}]}}]\n",
        serde_json::Value::Object(p)
    );
    let config = Config::from_yaml(&yaml, std::path::Path::new("<command line>"))
        .context("invalid probe options")?;
    let probe = config
        .build_targets(&Default::default())
        .context("cannot read the probe's files")?
        .remove(0)
        .probes
        .remove(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let report = rt.block_on(tocsin::ingest::probe::run(&probe, now));
    for s in report.all_samples() {
        let labels: Vec<String> = std::iter::once(("probe", probe.name.clone()))
            .chain(s.labels.iter().map(|(k, v)| (*k, v.clone())))
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        println!("{}{{{}}} {}", s.metric, labels.join(","), s.value);
    }
    match &report.error {
        Some(e) => {
            eprintln!("probe failed: {e}");
            Ok(Outcome::CheckFailed)
        }
        None => Ok(Outcome::Ok),
    }
}
