//! tocsin: a standalone alert daemon. The code map with invariants is ARCHITECTURE.md; in short:
//!
//! - [`config`]: `tocsin.yml` parsed (located errors), validated (every error at once), built.
//! - [`config_reference`]: `tocsin config-reference`, Markdown from the config types' doc comments.
//! - [`textparse`]: strict zero-copy Prometheus/OpenMetrics text parser.
//! - [`scrape`]: HTTP fetch of metrics and health endpoints, ingest into the store.
//! - [`scheduler`]: per-endpoint tasks at stable offsets, store flushes; the only clock reader.
//! - [`promql`]: the query engine (Prometheus semantics) and its PromQL front end.
//! - [`rhai_api`]: the Rhai front end: hardened script engine over the same query engine.
//! - [`store`]: in-memory head of Gorilla chunks over one SQLite file; range and instant reads.
//! - [`replay`]: the rules over stored history with a manual clock: transitions and notifications.
//! - [`reload`]: the triggers of a rule reload (debounced file watcher, SIGHUP, API request) feeding one channel.
//! - [`server`]: axum HTTP surface (health, readiness, status, self-metrics, the JSON API under `/api/v1/` and its OpenAPI document).
//! - [`ui`]: the web UI at `/`, a static bundle embedded in the binary, reading the JSON API.
//! - [`persist`]: the persisted JSON rows' versions, errors and serde forms.
//! - [`labels`], [`duration`], [`timefmt`], [`clock`], [`selfmetrics`]: shared vocabulary; [`error`]: the one
//!   error-chain formatter; [`sys`]: the one libc call.
pub mod clock;
pub mod config;
pub mod daemon;
pub mod duration;
pub mod error;
pub mod hash;
pub mod ingest;
pub mod labels;
pub mod notify;
pub mod persist;
pub mod promql;
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
