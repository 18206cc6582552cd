//! License Ledger's service: REST API, auth, signer, publisher, reaper and wiring.

pub mod app;
pub mod auth;
pub mod config;
pub mod dev;
pub mod http;
pub mod metrics;
pub mod problem;
pub mod service;
pub mod signer;
pub mod telemetry;
pub mod workers;
