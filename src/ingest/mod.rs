//! Ingest: everything that brings samples into the store, and the only code besides `notify`
//! that touches the network.
//!
//! - [`fetch`]: one bounded HTTP exchange per scrape or probe.
//! - [`textparse`]: the strict Prometheus/OpenMetrics text parser.
//! - [`cache`]: the per-target scrape cache and metrics ingest (staleness, duplicates, limits).
//! - [`health`]: health probes judged and written as `up`/`probe_*`/`health_check_ok` series.
//! - [`probe`]: the `tcp`, `tls`, `dns` and `smtp` probes of a target's `probes:` list.
//! - [`push`]: pushed text-format bodies and heartbeat check-ins (the dead-man's switch).
//! - [`scheduler`]: a supervisor running the target set it is sent (one task per endpoint at a
//!   stable offset), and the store's periodic flush.
//! - [`sd`]: the target set: static targets and `file_sd`/`http_sd`/`dns_sd`, relabelled.
//! - [`selfscrape`]: tocsin's own metrics stored in-process as target `job="tocsin"`.
//!
//! Series labels: every series from a target gets the target's `labels`, `job` = the target's `job` (its name by default) and
//! `instance` = host:port of the URL (or what relabelling set). Health-probe series also get `probe="health"`, so the probe's
//! `up` and the metrics scrape's `up` stay apart. An exposed label that collides with one of these
//! is kept as `exported_<name>` (Prometheus's `honor_labels: false`). A `tcp`/`tls`/`dns`/`smtp`
//! probe's series carry the target's and the probe's labels, `job`, `instance` = the probe's address
//! (or DNS query name) and `probe` = the probe's name. A heartbeat target's series carry the
//! target's labels, `job` and `probe="heartbeat"` (no `instance`: nothing is dialled).

pub mod cache;
pub mod fetch;

/// The `Accept` header of a metrics scrape, as Prometheus 3 asks: the text format with UTF-8
/// names left unescaped (`{"my.metric"}`) first, then the classic text format, OpenMetrics, and
/// anything (read as the text format).
pub const SCRAPE_ACCEPT: &str = "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.9,\
text/plain;version=0.0.4;q=0.8,\
application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,*/*;q=0.1";
pub mod health;
pub mod probe;
pub mod push;
pub mod scheduler;
pub mod sd;
pub mod selfscrape;
pub mod textparse;

use crate::config::Target;
use crate::labels::Labels;

pub use cache::{IngestReport, ScrapeCache};
pub use fetch::{Response, ScrapeError, client, fetch};
pub use health::{HealthReport, ingest_health};

/// `host:port` of a URL (the default port filled in), for the `instance` label.
pub fn instance_of(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// The labels every series from this target's metrics endpoint carries.
pub fn metrics_base_labels(target: &Target, url: &url::Url) -> Labels {
    Labels::from_pairs(
        target
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain([
                ("job".to_string(), target.job.clone()),
                (
                    "instance".to_string(),
                    target.instance.clone().unwrap_or_else(|| instance_of(url)),
                ),
            ]),
    )
}

/// The labels every series from this target's health probe carries.
pub fn health_base_labels(target: &Target, url: &url::Url) -> Labels {
    metrics_base_labels(target, url).with("probe", "health")
}

/// The labels every series of this target's heartbeat carries.
pub fn heartbeat_base_labels(target: &Target) -> Labels {
    Labels::from_pairs(
        target
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain([
                ("job".to_string(), target.name.clone()),
                ("probe".to_string(), "heartbeat".to_string()),
            ]),
    )
}
