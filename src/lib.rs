//! tocsin: a standalone alert daemon. The code map with invariants is ARCHITECTURE.md; in short,
//! one folder per layer, from the edge inwards:
//!
//! - [`daemon`]: `Daemon::start(config, clock, options) -> Running`, the wiring of everything below,
//!   and the one reload function (rules and notification sections swapped together or not at all).
//! - [`config`]: `tocsin.yml` raw (located errors) → validated (every error at once) → built; and
//!   `tocsin config-reference`.
//! - [`ingest`]: HTTP fetch, the strict text parser, the scrape cache, health probes, service
//!   discovery and relabelling, the scheduler.
//! - [`store`]: in-memory head of Gorilla chunks over one SQLite file; the only SQLite code.
//! - [`promql`]: the query engine (Prometheus semantics), its PromQL and Rhai front ends.
//! - [`rules`]: rule files (load), templates, the alert tracker, the one evaluation step, and its
//!   three drivers: the daemon's manager, `tocsin test`, `tocsin replay`.
//! - [`datasource`]: the client of remote query engines (Prometheus HTTP API) that rule groups
//!   with `datasource:` evaluate against.
//! - [`remotewrite`]: Prometheus remote write out of the store's durable queue.
//! - [`notify`]: routing, inhibition, silences, grouping, dedup, the outbox sender, webhook, email.
//! - [`server`]: axum HTTP surface (health, status, self-metrics, `/api/v1/`, its OpenAPI document).
//! - [`ui`]: the web UI at `/`, a static bundle embedded in the binary, reading the JSON API.
//! - Shared vocabulary: [`labels`] (label sets, the one matcher grammar), [`persist`] (persisted
//!   rows' versions and errors), [`error`] (error chains), [`hash`], [`task`] (blocking work with
//!   panics caught), [`fswatch`] (file watching in batches), [`clock`], [`duration`], [`timefmt`], [`selfmetrics`], [`sys`] (the one libc call).
pub mod clock;
pub mod config;
pub mod daemon;
pub mod datasource;
pub mod duration;
pub mod error;
pub mod fswatch;
pub mod hash;
pub mod ingest;
pub mod labels;
pub mod notify;
pub mod persist;
pub mod process;
pub mod promql;
pub mod remotewrite;
pub mod rules;
pub mod selfmetrics;
pub mod server;
pub mod store;
pub mod sys;
pub mod task;
pub mod timefmt;
pub mod ui;

/// The commit tocsin was built from (`git rev-parse --short=12 HEAD` at build time, set by
/// `build.rs`), "unknown" when built without `.git`.
pub const GIT_HASH: &str = match option_env!("TOCSIN_GIT_HASH") {
    Some(h) => h,
    None => "unknown",
};

/// What `tocsin --version` prints after the name: `0.1.0 (0123456789ab)`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("TOCSIN_GIT_HASH"),
    ")"
);
