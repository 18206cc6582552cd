//! End-to-end tests of the `ledger` tool against real Postgres (a schema per
//! test): tamper detection, signed checkpoints, exports, replayed state,
//! reports and the seat proof.

mod export;
mod figures;
mod queue;
mod seats;
mod support;
mod tamper;
mod what_if;
