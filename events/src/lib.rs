//! License Ledger's events: the catalogue, the pure aggregates, and the
//! Postgres event log that is the system's only source of truth.

pub mod aggregate;
pub mod anchor;
pub mod audit;
pub mod catalog;
pub mod checkpoint;
pub mod envelope;
pub mod ids;
pub mod integral;
pub mod license;
mod pairs;
pub mod session;
pub mod store;
pub mod testing;
