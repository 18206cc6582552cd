//! License Ledger's audit tooling, behind the `ledger` binary.
//!
//! Reads the Postgres log directly and replays it with the live system's own
//! folds (`events::license::apply`, `events::session::apply`) — never a
//! second copy of the rules. Modules: [`verify`] (chains and signed
//! checkpoints in the database), [`anchored`] (the log against the
//! checkpoints kept outside it, and their freshness), [`export`] and [`offline`] (JSON-lines
//! archives checked with only a public key), [`state`] (a license at an
//! instant), [`report`] with [`render`] and [`svg`] (usage figures),
//! [`seats`] (proof that seats and strict tokens never exceeded the seat count),
//! [`what_if`] (the recorded demand replayed under another policy).
//!
//! Must not: write to the log (the tool is read-only), or decide anything
//! for the live system (`what-if` runs the pure `decide` on a copy).

pub mod anchored;
pub mod checkpoints;
pub mod cli;
pub mod export;
pub mod history;
pub mod keys;
pub mod offline;
pub mod render;
pub mod report;
pub mod seats;
pub mod selection;
pub mod state;
pub mod svg;
pub mod time;
pub mod verify;
pub mod what_if;
