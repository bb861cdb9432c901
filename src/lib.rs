//! tocsin: a standalone alert daemon (module map in ARCHITECTURE.md)
pub mod config;
pub mod duration;
pub mod labels;
pub mod store;
pub mod textparse;
