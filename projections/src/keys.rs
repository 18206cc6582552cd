//! The Redis key layout of the projection, all under one prefix (default
//! `ll:`), so several deployments or tests share one Redis server and
//! [`crate::RedisProjection::reset`] can find every key with one `SCAN`.
//!
//! | key | type | content |
//! |---|---|---|
//! | `<p>lic:<license>` | hash | `tenant`, `product`, `seats`, `in_use`, `suspended` (0/1), `session_ttl_secs`, `denials_today`, `denials_day` (UTC `YYYY-MM-DD` the count is for), `version` (license stream's applied version) |
//! | `<p>lic:<license>:sessions` | sorted set | live session ids scored by deadline (Unix ms) |
//! | `<p>lic:<license>:holders` | hash | session id -> `<session stream version>\t<hardware id>\t<user id>` (durable: outlives the session hash's TTL, removed on release/expiry) |
//! | `<p>sess:<session>` | hash | `license`, `user`, `hardware`, `deadline` (Unix ms), `version` (session stream's applied version); `PEXPIREAT` its deadline |
//! | `<p>epoch` | string | sentinel set by a completed rebuild; missing = Redis was flushed |
//! | `<p>meta` | hash | `position`, `recorded_at_ms`, `applied_at_ms` of the newest applied event (lag) |
//! | `<p>rebuilding` | string | lock held while a rebuild runs (kept by `reset`) |

use uuid::Uuid;

/// The license hash.
pub fn license(prefix: &str, license: Uuid) -> String {
    format!("{prefix}lic:{license}")
}

/// The license's sorted set of live sessions.
pub fn sessions(prefix: &str, license: Uuid) -> String {
    format!("{prefix}lic:{license}:sessions")
}

/// The license's durable holder index (session -> version, hardware, user).
pub fn holders(prefix: &str, license: Uuid) -> String {
    format!("{prefix}lic:{license}:holders")
}

/// The session hash.
pub fn session(prefix: &str, session: Uuid) -> String {
    format!("{prefix}sess:{session}")
}

/// The sentinel a completed rebuild sets.
pub fn epoch(prefix: &str) -> String {
    format!("{prefix}epoch")
}

/// Position and lag of the newest applied event.
pub fn meta(prefix: &str) -> String {
    format!("{prefix}meta")
}

/// The rebuild lock.
pub fn rebuilding(prefix: &str) -> String {
    format!("{prefix}rebuilding")
}

/// True for keys that hold projected state (compared by invariant 6), false
/// for bookkeeping (sentinel, lag, lock).
pub fn is_state_key(prefix: &str, key: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with("lic:") || rest.starts_with("sess:"))
}
