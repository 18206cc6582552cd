//! The background workers of `licensed`, one module each, named after the
//! subcommand that runs them alone:
//!
//! * [`sign`] — consumes `SeatAcquired`, mints the token, records `TokenIssued`;
//! * [`checkpoint`] — signs the log's running hash periodically (runs with `sign`);
//! * [`reap`] — expires sessions whose heartbeats stopped;
//! * [`token_waiters`] — hands `TokenIssued` from NATS to waiting acquires (runs with `serve`).
//!
//! The publisher (`licensed publish`) is the `publisher` crate and the
//! projector (`licensed project`) the `projections` crate. Workers are started and
//! supervised by `App` (`src/app.rs`).

pub mod checkpoint;
pub mod reap;
pub mod sign;
pub mod token_waiters;
