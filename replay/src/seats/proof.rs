//! The pure proof over one license's history (no I/O): the license stream
//! folded with `events::license::apply`, merged by recorded time then
//! position with the tokens of its sessions' streams (see the parent module
//! for the rules proven).
//!
//! Must not: read the log, or restate a seat rule the fold answers (seats
//! in force, live sessions, strictness and token lifetime come from
//! `LicenseState`).

use super::{History, LicenseSeats, Rule, Violation};
use crate::history::Timed;
use crate::time::fmt_time;
use chrono::{DateTime, TimeDelta, Utc};
use events::catalog::LicenseEvent;
use events::ids::SessionId;
use events::license::{self, LicenseState, DEFAULT_TOKEN_TTL_SECS};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// A token as recorded in a session stream.
struct Token<'a> {
    session: SessionId,
    recorded: &'a Timed,
    expires_at: Option<DateTime<Utc>>,
}

/// One life of a session: when it ended, and the `tokens_valid_until` of
/// the event that ended it.
type Life = (DateTime<Utc>, DateTime<Utc>);

/// The walk over one license's timeline and what it found so far.
struct Proof<'a> {
    history: &'a History,
    out: LicenseSeats,
    violations: Vec<Violation>,
    /// The license as folded up to the current instant.
    state: LicenseState,
    /// Sessions holding an unexpired token -> until when.
    holding: HashMap<SessionId, DateTime<Utc>>,
    /// Those instants, soonest first (stale entries are skipped when popped).
    lapses: BinaryHeap<Reverse<(DateTime<Utc>, SessionId)>>,
    /// Ended sessions -> when each of their lives ended and the
    /// `tokens_valid_until` of the event that ended it (a revived session
    /// has several lives).
    ended: HashMap<SessionId, Vec<Life>>,
    /// Revived sessions -> when they were last revived.
    revived: HashMap<SessionId, DateTime<Utc>>,
    /// Every token with the instant it stops being valid.
    token_ends: Vec<(&'a Token<'a>, DateTime<Utc>)>,
}

/// Checks one license's history (pure: no I/O).
pub fn check_license(history: &History) -> LicenseSeats {
    let mut violations = Vec::new();
    let tokens = session_tokens(history, &mut violations);
    let mut proof = Proof {
        history,
        out: LicenseSeats {
            license_id: history.license.to_string(),
            tenant: String::new(),
            product: String::new(),
            seats: 0,
            strict: false,
            events: history.events.len(),
            sessions: history.sessions.len(),
            grants_checked: 0,
            peak_live: 0,
            peak_live_seats: 0,
            tokens_checked: 0,
            peak_tokens: 0,
            peak_tokens_seats: 0,
            peak_tokens_at: None,
            violations: 0,
            first_violation: None,
        },
        violations,
        state: LicenseState::default(),
        holding: HashMap::new(),
        lapses: BinaryHeap::new(),
        ended: HashMap::new(),
        revived: HashMap::new(),
        token_ends: Vec::with_capacity(tokens.len()),
    };
    // The license stream in version order, merged with the tokens by
    // (recorded time, position).
    let mut license_events = history.events.iter().peekable();
    let mut tokens = tokens.iter().peekable();
    loop {
        match (license_events.peek(), tokens.peek()) {
            (Some(e), Some(t)) if (e.at, e.position) > (t.recorded.at, t.recorded.position) => {
                proof.token(t);
                tokens.next();
            }
            (Some(e), _) => {
                proof.license_event(e);
                license_events.next();
            }
            (None, Some(t)) => {
                proof.token(t);
                tokens.next();
            }
            (None, None) => break,
        }
    }
    proof.finish()
}

/// Every token of the license's sessions, by (recorded time, position);
/// records the ones that follow their stream's `SessionClosed`.
fn session_tokens<'a>(history: &'a History, violations: &mut Vec<Violation>) -> Vec<Token<'a>> {
    let mut tokens = Vec::new();
    for (session, events) in &history.sessions {
        let mut closed_at = None;
        for e in events {
            match &e.event {
                LicenseEvent::SessionClosed { .. } => closed_at = closed_at.or(Some(e.position)),
                // Revived: tokens may follow again.
                LicenseEvent::SessionReopened { .. } => closed_at = None,
                LicenseEvent::TokenIssued { expires_at, .. } => {
                    if let Some(closed) = closed_at {
                        let detail = format!(
                            "TokenIssued to session {session} after its SessionClosed (position {closed})"
                        );
                        violations.push(found(
                            history,
                            Rule::TokenAfterClose,
                            e,
                            *session,
                            None,
                            detail,
                        ));
                    }
                    tokens.push(Token {
                        session: *session,
                        recorded: e,
                        expires_at: *expires_at,
                    });
                }
                _ => {}
            }
        }
    }
    tokens.sort_by_key(|t| (t.recorded.at, t.recorded.position));
    tokens
}

fn found(
    history: &History,
    rule: Rule,
    e: &Timed,
    session: SessionId,
    counts: Option<(usize, u32)>,
    detail: String,
) -> Violation {
    Violation {
        license_id: history.license.to_string(),
        rule,
        position: e.position,
        at: e.at,
        session_id: session.to_string(),
        count: counts.map(|c| c.0),
        seats: counts.map(|c| c.1),
        detail,
    }
}

impl<'a> Proof<'a> {
    /// A license-stream event: checks a grant against the state before it, then folds it.
    fn license_event(&mut self, e: &Timed) {
        match &e.event {
            LicenseEvent::SeatAcquired {
                session_id,
                user_id,
                hardware_id,
                ..
            }
            | LicenseEvent::SessionRevived {
                session_id,
                user_id,
                hardware_id,
                ..
            } => {
                if matches!(e.event, LicenseEvent::SessionRevived { .. }) {
                    self.revived.insert(*session_id, e.at);
                }
                self.out.grants_checked += 1;
                // Seats in force: the seat count plus the policy's overdraft.
                let seats = u32::try_from(self.state.capacity()).unwrap_or(u32::MAX);
                let live = self.state.sessions.len();
                // Released seats the policy's linger still holds, except the
                // one this grant takes back (same user and machine).
                let lingering = self
                    .state
                    .lingering_at(e.at)
                    .filter(|(_, l)| !(&l.user_id == user_id && &l.hardware_id == hardware_id))
                    .count();
                // A repeated grant to a live session takes no second seat.
                let count =
                    live + lingering + usize::from(!self.state.sessions.contains_key(session_id));
                if count > seats as usize {
                    let held = if lingering > 0 {
                        format!("{live} session(s) were live and {lingering} seat(s) lingering")
                    } else {
                        format!("{live} session(s) were live")
                    };
                    let kind = e.event.event_type();
                    let detail = format!("{kind} granted session {session_id} a seat while {held} of {seats} seat(s)");
                    let counts = Some((count, seats));
                    self.violations.push(found(
                        self.history,
                        Rule::OverAllocation,
                        e,
                        *session_id,
                        counts,
                        detail,
                    ));
                }
                if count > self.out.peak_live {
                    (self.out.peak_live, self.out.peak_live_seats) = (count, seats);
                }
            }
            LicenseEvent::SeatReleased {
                session_id,
                tokens_valid_until: Some(until),
                ..
            }
            | LicenseEvent::SessionExpired {
                session_id,
                tokens_valid_until: Some(until),
                ..
            }
            | LicenseEvent::SessionRevoked {
                session_id,
                tokens_valid_until: until,
                ..
            } => {
                self.ended
                    .entry(*session_id)
                    .or_default()
                    .push((e.at, *until));
            }
            _ => {}
        }
        self.state = license::apply(std::mem::take(&mut self.state), &e.event);
    }

    /// A token: counts the sessions holding one if this session held none.
    fn token(&mut self, token: &'a Token<'a>) {
        let at = token.recorded.at;
        self.out.tokens_checked += 1;
        let ttl = self.state.issued.as_ref().map_or(
            TimeDelta::seconds(i64::from(DEFAULT_TOKEN_TTL_SECS)),
            |info| info.token_ttl(),
        );
        let end = token.expires_at.unwrap_or(at + ttl);
        self.token_ends.push((token, end));
        while let Some(Reverse((until, session))) = self.lapses.peek().copied() {
            if until > at {
                break;
            }
            self.lapses.pop();
            if self.holding.get(&session) == Some(&until) {
                self.holding.remove(&session);
            }
        }
        if end <= at {
            return; // expired when recorded: never held
        }
        if !self.holding.contains_key(&token.session) {
            let (count, seats) = (self.holding.len() + 1, self.state.seats());
            let strict = self.state.issued.as_ref().is_some_and(|i| i.strict_seats);
            if strict && count > seats as usize {
                let detail = format!("TokenIssued to session {} while {} other session(s) held an unexpired token, {seats} seat(s)", token.session, count - 1);
                let counts = Some((count, seats));
                self.violations.push(found(
                    self.history,
                    Rule::TokensOverSeats,
                    token.recorded,
                    token.session,
                    counts,
                    detail,
                ));
            }
            if count > self.out.peak_tokens {
                (self.out.peak_tokens, self.out.peak_tokens_seats) = (count, seats);
                self.out.peak_tokens_at = Some(at);
            }
        }
        let until = self.holding.entry(token.session).or_insert(end);
        *until = (*until).max(end);
        self.lapses.push(Reverse((*until, token.session)));
    }

    /// Checks every token against its ended session's bound; the summary.
    fn finish(mut self) -> LicenseSeats {
        for (token, end) in &self.token_ends {
            // The life the token was issued in: the first to end after it;
            // after the last end, that last life unless a revival followed.
            let life = self.ended.get(&token.session).and_then(|lives| {
                let last = lives.last().filter(|(ended_at, _)| {
                    self.revived
                        .get(&token.session)
                        .is_none_or(|revived_at| revived_at < ended_at)
                });
                lives
                    .iter()
                    .find(|(ended_at, _)| *ended_at >= token.recorded.at)
                    .or(last)
            });
            let Some((_, until)) = life.filter(|(_, u)| end > u) else {
                continue;
            };
            let detail = format!(
                "token of session {} expires at {}, after its session's tokens_valid_until {}",
                token.session,
                fmt_time(*end),
                fmt_time(*until)
            );
            let v = found(
                self.history,
                Rule::TokenOutlivesSession,
                token.recorded,
                token.session,
                None,
                detail,
            );
            self.violations.push(v);
        }
        let mut out = self.out;
        if let Some(info) = &self.state.issued {
            out.tenant = info.tenant_id.to_string();
            out.product = info.product.to_string();
            (out.seats, out.strict) = (info.seats, info.strict_seats);
        }
        out.violations = self.violations.len() as u64;
        out.first_violation = self.violations.into_iter().min_by_key(|v| v.position);
        out
    }
}
