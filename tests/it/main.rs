//! The one integration-test binary: real SQLite files, real HTTP servers on 127.0.0.1, the real binary.
mod common;
mod daemon;
mod notify_daemon;
mod notify_receivers;
mod notify_route;
mod notify_sender;
mod notify_test_cmd;
mod promql;
mod query;
mod reload;
mod replay;
mod rhai;
mod rules;
mod scheduler;
mod scrape;
mod store;
mod textparse;
