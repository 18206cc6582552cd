//! License Ledger's read models: the projector that turns the log's events
//! (delivered by NATS JetStream, or replayed straight from Postgres) into
//! seat counts and TTL sessions in Redis.
//!
//! Owns the Redis key layout ([`keys`]), the idempotent, per-stream ordered
//! apply ([`RedisProjection::apply`]; one Lua script call applies up to 100
//! events, each atomically with its stream version), the live
//! consumer ([`run`]), the rebuild from the log ([`rebuild`]), the read side
//! used by the HTTP usage API ([`read`]) and the billing seat-hour fold
//! ([`billing`]).
//!
//! Must not: decide anything or write to the log. Redis is derived state
//! (invariant 2): it can be wiped at any time and [`rebuild`] restores it,
//! equal key by key to what live processing produced (invariant 6).

pub mod billing;
pub mod connect;
mod consumer;
pub mod keys;
mod ordered;
mod projection;
pub mod read;
mod rebuild;
mod stats;

pub use consumer::{consumer_config, durable_name, run};
pub use projection::{Applied, ProjectionError, RedisProjection, DEFAULT_PREFIX};
pub use rebuild::{rebuild, RebuildReport};
pub use stats::ProjectorStats;
