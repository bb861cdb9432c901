//! Ingest: everything that brings samples into the store.
pub mod scheduler;
pub mod scrape;
pub mod textparse;
