//! The daemon.
pub mod reload;
