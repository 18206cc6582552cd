//! End-to-end tests of the `ledger` tool against real Postgres (a schema per
//! test): tamper detection, signed checkpoints, exports, replayed state and
//! reports.

mod export;
mod figures;
mod support;
mod tamper;
