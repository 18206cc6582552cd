//! Billing: seat-hours per tenant, from the events published on JetStream.
//!
//! * [`fold`]: the rules, pure — what an event means to billing, one
//!   session's span, and the in-memory [`SeatHours`] fold for tests and
//!   reports.
//! * [`store`]: the durable state in Postgres ([`BillingStore`]): billed
//!   event ids, sessions not billed yet, totals per tenant; one transaction
//!   per billable event.
//! * [`consume`](mod@consume): the durable JetStream consumer used by
//!   `examples/billing_consumer.rs`; it stores, then acknowledges.
//!
//! Events are deduplicated by `event_id` (the `Nats-Msg-Id`), so a
//! redelivery never bills twice. Must not: write to the event log, or keep
//! billing state only in memory on the consumer's path.

pub mod consume;
pub mod fold;
pub mod store;

pub use consume::{consume, durable_consumer, ConsumeError, ConsumeReport, ConsumerConfig};
pub use fold::{Fact, SeatHours, SessionSpan, TenantTotals};
pub use store::{BillingStore, InvalidSchemaName, Recorded, SchemaName, StoreError};

pub use events::envelope::Envelope;

/// Decodes a published message's payload into an [`Envelope`].
pub fn decode(payload: &[u8]) -> Result<Envelope, events::envelope::EnvelopeError> {
    Envelope::from_json(payload)
}
