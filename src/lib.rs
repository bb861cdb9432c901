//! tocsin: a standalone alert daemon. The code map with invariants is ARCHITECTURE.md; in short:
//!
//! - [`config`]: `tocsin.yml` parsed (located errors), validated (every error at once), built.
//! - [`textparse`]: strict zero-copy Prometheus/OpenMetrics text parser.
//! - [`scrape`]: HTTP fetch of metrics and health endpoints, ingest into the store.
//! - [`scheduler`]: per-endpoint tasks at stable offsets, store flushes; the only clock reader.
//! - [`promql`]: the query engine (Prometheus semantics) and its PromQL front end.
//! - [`rhai_api`]: the Rhai front end: hardened script engine over the same query engine.
//! - [`store`]: in-memory head of Gorilla chunks over one SQLite file; range and instant reads.
//! - [`replay`]: the rules over stored history with a manual clock: transitions and notifications.
//! - [`reload`]: the triggers of a rule reload (debounced file watcher, SIGHUP, API request) feeding one channel.
//! - [`server`]: axum HTTP surface (health, readiness, status, self-metrics).
//! - [`labels`], [`duration`], [`timefmt`], [`clock`], [`selfmetrics`]: shared vocabulary; [`sys`]: the one libc call.
pub mod clock;
pub mod config;
pub mod duration;
pub mod labels;
pub mod notify;
pub mod promql;
pub mod reload;
pub mod replay;
pub mod rhai_api;
pub mod rules;
pub mod scheduler;
pub mod scrape;
pub mod selfmetrics;
pub mod server;
pub mod store;
pub mod sys;
pub mod template;
pub mod textparse;
pub mod timefmt;
