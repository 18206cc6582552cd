//! End-to-end tests of the license service over HTTP, against the real local
//! Postgres, NATS and Redis (one integration-test binary).

mod anchor;
mod cli;
mod console;
mod harness;
mod http_api;
mod kms;
mod metrics;
mod nats;
mod outage;
mod policies;
mod queue;
mod seats;
mod tls;
mod tokens;
mod usage;
