//! License Ledger's service: REST API, auth, signer, publisher, reaper and wiring.

pub mod auth;
pub mod config;
pub mod http;
pub mod metrics;
pub mod problem;
pub mod publisher;
pub mod service;
pub mod signer;
