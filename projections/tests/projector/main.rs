//! The projector against real Postgres, Redis and NATS (JetStream). Each
//! test is isolated: its own Postgres schema, a random Redis key prefix
//! (only that prefix's keys are ever deleted: the shared Redis is never
//! flushed), a random JetStream stream and subject prefix (deleted at the
//! end), and for the outage test a private nats-server.

mod billing;
mod common;
mod live_vs_rebuild;
mod outage;
mod redelivery;
mod rollout;
