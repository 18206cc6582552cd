//! The billing rules, pure: what an event means to billing ([`Fact`]), one
//! session's span ([`SessionSpan`]) and the in-memory seat-time fold
//! ([`SeatHours`]) used by tests and reports.
//!
//! A `SeatAcquired` starts a seat, the session's `SeatReleased`,
//! `SessionExpired` or `SessionRevoked` ends it; the seat time is the end event's `recorded_at`
//! minus the start's, billed to the tenant of the start. The first start and
//! the first end of a session win. An end that arrives before its start (a
//! JetStream redelivery can reorder messages) waits for it, so the totals do
//! not depend on delivery order.
//!
//! Must not: do I/O or read clocks. The durable store
//! ([`super::BillingStore`]) applies these same rules in Postgres.

use super::Envelope;
use chrono::{DateTime, Utc};
use events::catalog::LicenseEvent;
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// Microseconds in an hour.
const MICROS_PER_HOUR: f64 = 3_600_000_000.0;

/// The tenant billed when an event carries no `metadata.tenant_id`.
pub const UNKNOWN_TENANT: &str = "_";

/// What one event means to billing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// A session took a seat (`SeatAcquired`, or `SessionRevived`: a new life).
    Started {
        /// The session (`data.session_id`).
        session: String,
        /// Its tenant (`metadata.tenant_id`, [`UNKNOWN_TENANT`] if absent).
        tenant: String,
        /// The event's `recorded_at`.
        at: DateTime<Utc>,
    },
    /// A session gave its seat back (`SeatReleased`, `SessionExpired` or `SessionRevoked`).
    Ended {
        /// The session (`data.session_id`).
        session: String,
        /// The event's `recorded_at`.
        at: DateTime<Utc>,
    },
    /// Anything else: billing ignores it.
    Other,
}

impl Fact {
    /// Reads the billing meaning of an event.
    pub fn of(event: &Envelope) -> Self {
        match event.event() {
            Ok(LicenseEvent::SeatAcquired { session_id, .. }) => Self::Started {
                session: span_key(&session_id, 0),
                tenant: tenant(event),
                at: event.recorded_at,
            },
            Ok(LicenseEvent::SessionRevived {
                session_id,
                revival,
                ..
            }) => Self::Started {
                session: span_key(&session_id, revival),
                tenant: tenant(event),
                at: event.recorded_at,
            },
            Ok(LicenseEvent::SeatReleased {
                session_id,
                revival,
                ..
            })
            | Ok(LicenseEvent::SessionExpired {
                session_id,
                revival,
                ..
            })
            | Ok(LicenseEvent::SessionRevoked {
                session_id,
                revival,
                ..
            }) => Self::Ended {
                session: span_key(&session_id, revival),
                at: event.recorded_at,
            },
            _ => Self::Other,
        }
    }

    /// The session the fact is about, if any.
    pub fn session(&self) -> Option<&str> {
        match self {
            Self::Started { session, .. } | Self::Ended { session, .. } => Some(session),
            Self::Other => None,
        }
    }
}

/// The key of one life of a session: its id, then `#n` for its n-th
/// revival (each life is billed on its own).
pub fn span_key(session: &events::ids::SessionId, revival: u32) -> String {
    if revival == 0 {
        session.to_string()
    } else {
        format!("{session}#{revival}")
    }
}

fn tenant(event: &Envelope) -> String {
    event
        .meta()
        .tenant_id
        .map_or_else(|| UNKNOWN_TENANT.to_owned(), |t| t.to_string())
}

/// What billing knows of one session that is not billed yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionSpan {
    /// Tenant of the start, once seen.
    pub tenant: Option<String>,
    /// `recorded_at` of the start, once seen.
    pub started_at: Option<DateTime<Utc>>,
    /// `recorded_at` of the end, once seen.
    pub ended_at: Option<DateTime<Utc>>,
}

impl SessionSpan {
    /// Adds a fact about this session; the first start and first end win.
    pub fn merge(&mut self, fact: &Fact) {
        match fact {
            Fact::Started { tenant, at, .. } => {
                if self.started_at.is_none() {
                    self.tenant = Some(tenant.clone());
                    self.started_at = Some(*at);
                }
            }
            Fact::Ended { at, .. } => {
                self.ended_at = self.ended_at.or(Some(*at));
            }
            Fact::Other => {}
        }
    }

    /// The tenant and seat time in microseconds, once both ends are known.
    pub fn billable(&self) -> Option<(&str, i64)> {
        let (tenant, start, end) = (self.tenant.as_deref()?, self.started_at?, self.ended_at?);
        Some((tenant, seat_micros(start, end)))
    }
}

/// Seat time between a start and an end, in microseconds (0 if it does not
/// fit in an `i64`).
pub fn seat_micros(start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
    (end - start).num_microseconds().unwrap_or(0)
}

/// One tenant's billed totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantTotals {
    /// Seat time of ended sessions, in microseconds (exact).
    pub seat_micros: i64,
    /// Ended sessions.
    pub sessions_closed: u64,
}

impl TenantTotals {
    /// Seat-hours of ended sessions.
    pub fn seat_hours(&self) -> f64 {
        self.seat_micros as f64 / MICROS_PER_HOUR
    }
}

/// The in-memory seat-time fold (not durable: a restart forgets it).
#[derive(Debug, Default, Clone)]
pub struct SeatHours {
    seen: HashSet<Uuid>,
    spans: HashMap<String, SessionSpan>,
    totals: BTreeMap<String, TenantTotals>,
}

impl SeatHours {
    /// Folds one event; returns false for a duplicate (same event id).
    pub fn observe(&mut self, event: &Envelope) -> bool {
        if !self.seen.insert(event.event_id) {
            return false;
        }
        let fact = Fact::of(event);
        let Some(session) = fact.session() else {
            return true;
        };
        let span = self.spans.entry(session.to_owned()).or_default();
        span.merge(&fact);
        if let Some((tenant, micros)) = span.billable() {
            let totals = self.totals.entry(tenant.to_owned()).or_default();
            totals.seat_micros += micros;
            totals.sessions_closed += 1;
            self.spans.remove(session);
        }
        true
    }

    /// Billed totals per tenant.
    pub fn totals(&self) -> &BTreeMap<String, TenantTotals> {
        &self.totals
    }

    /// Seat time of ended sessions per tenant, in microseconds (exact).
    pub fn seat_micros(&self) -> BTreeMap<String, i64> {
        self.map(|t| t.seat_micros)
    }

    /// Seat-hours of ended sessions per tenant.
    pub fn seat_hours(&self) -> BTreeMap<String, f64> {
        self.map(TenantTotals::seat_hours)
    }

    /// Ended sessions per tenant.
    pub fn sessions_closed(&self) -> BTreeMap<String, u64> {
        self.map(|t| t.sessions_closed)
    }

    /// Sessions still holding a seat (not billed yet).
    pub fn open_sessions(&self) -> usize {
        self.spans
            .values()
            .filter(|s| s.started_at.is_some())
            .count()
    }

    fn map<T>(&self, f: impl Fn(&TenantTotals) -> T) -> BTreeMap<String, T> {
        self.totals.iter().map(|(k, v)| (k.clone(), f(v))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn event(kind: &str, session: u32, tenant: &str, second: i64) -> Envelope {
        use events::ids::{HardwareId, SessionId, UserId};
        let at = DateTime::from_timestamp(1_700_000_000 + second, 0).unwrap();
        let session_id = SessionId::from_uuid(Uuid::from_u128(u128::from(session) + 1));
        let typed = match kind {
            "SeatAcquired" => LicenseEvent::SeatAcquired {
                borrowed_until: None,
                queued: false,
                session_id,
                user_id: UserId::parse("u").unwrap(),
                hardware_id: HardwareId::parse("h").unwrap(),
                expires_at: at,
                idempotency_key: None,
                policy_version: 0,
                overdraft: false,
                reservation: None,
            },
            "SeatReleased" => LicenseEvent::SeatReleased {
                session_id,
                tokens_valid_until: None,
                linger_until: None,
                revival: 0,
            },
            "SessionExpired" => LicenseEvent::SessionExpired {
                session_id,
                deadline: at,
                tokens_valid_until: None,
                policy_version: 0,
                revival: 0,
            },
            _ => LicenseEvent::HeartbeatRecorded {
                session_id,
                expires_at: at,
            },
        };
        Envelope {
            event_id: Uuid::new_v4(),
            event_type: typed.event_type().to_owned(),
            schema_version: 1,
            stream: "license-x".to_owned(),
            stream_version: 0,
            position: 0,
            recorded_at: at,
            data: typed.data(),
            metadata: json!({ "tenant_id": tenant }),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn a_released_session_bills_its_tenant_once() {
        let mut fold = SeatHours::default();
        let start = event("SeatAcquired", 1, "acme", 0);
        let end = event("SeatReleased", 1, "globex", 90);
        assert!(fold.observe(&start));
        assert_eq!(fold.open_sessions(), 1);
        assert!(fold.observe(&end));
        assert!(!fold.observe(&end), "the same event id is a duplicate");
        let want = TenantTotals {
            seat_micros: 90_000_000,
            sessions_closed: 1,
        };
        assert_eq!(fold.totals().get("acme"), Some(&want));
        assert_eq!(fold.totals().len(), 1);
        assert_eq!(fold.open_sessions(), 0);
    }

    #[test]
    fn an_end_before_its_start_waits_for_it() {
        let mut fold = SeatHours::default();
        fold.observe(&event("SessionExpired", 7, "acme", 60));
        assert_eq!(fold.open_sessions(), 0);
        assert!(fold.totals().is_empty());
        fold.observe(&event("SeatAcquired", 7, "acme", 0));
        assert_eq!(fold.seat_micros().get("acme"), Some(&60_000_000));
    }

    #[test]
    fn events_without_a_session_are_ignored() {
        let mut fold = SeatHours::default();
        let mut e = event("SeatAcquired", 1, "acme", 0);
        e.data = json!({});
        assert!(fold.observe(&e));
        assert_eq!(fold.open_sessions(), 0);
        assert_eq!(
            Fact::of(&event("HeartbeatRecorded", 1, "a", 0)),
            Fact::Other
        );
    }

    proptest! {
        /// Any delivery order, with any event repeated, bills the same.
        #[test]
        fn totals_do_not_depend_on_order_or_repeats(
            sessions in prop::collection::vec((0u8..3, 0i64..1000, 1i64..1000, any::<bool>()), 1..12),
            order in prop::collection::vec(any::<prop::sample::Index>(), 0..60),
        ) {
            let mut events = Vec::new();
            for (i, (tenant, start, length, ended)) in sessions.iter().enumerate() {
                let tenant = format!("t{tenant}");
                events.push(event("SeatAcquired", i as u32, &tenant, *start));
                if *ended {
                    events.push(event("SeatReleased", i as u32, &tenant, start + length));
                }
            }
            let mut in_order = SeatHours::default();
            events.iter().for_each(|e| { in_order.observe(e); });
            let mut shuffled = SeatHours::default();
            for index in &order {
                shuffled.observe(&events[index.index(events.len())]);
            }
            events.iter().rev().for_each(|e| { shuffled.observe(e); });
            prop_assert_eq!(in_order.totals(), shuffled.totals());
            prop_assert_eq!(in_order.open_sessions(), shuffled.open_sessions());
        }
    }
}
