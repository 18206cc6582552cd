//! License Ledger's service: REST API, auth, signer, publisher, reaper and wiring.

pub mod problem;
