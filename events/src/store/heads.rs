//! What a writer believes of each stream's head: the newest (version, hash)
//! this process saw, from its reads and its own appends.

use super::hash::{GENESIS, HASH_LEN};
use super::{ExpectedVersion, StreamAppend};
use std::num::NonZeroUsize;
use std::sync::Mutex;

pub(super) type Hash = [u8; HASH_LEN];

/// Streams whose head is remembered.
pub const HEADS_CAP: usize = 200_000;

/// A belief that cannot match any stored hash (the head is unknown here).
pub(super) const UNKNOWN: Hash = [0xff; HASH_LEN];

/// The newest head (version, hash) this process knows of each stream.
pub(super) struct Heads(Mutex<lru::LruCache<String, (i64, Hash)>>);

impl Heads {
    pub(super) fn new(cap: usize) -> Self {
        let cap = NonZeroUsize::new(cap).unwrap_or(NonZeroUsize::MIN);
        Self(Mutex::new(lru::LruCache::new(cap)))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, lru::LruCache<String, (i64, Hash)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `stream` is at `version` with `hash` (a read or a write
    /// saw it); an older version than the one known changes nothing, unless
    /// the database just said so under the stream's lock (`actual`).
    pub(super) fn learn(&self, stream: &str, version: i64, hash: &[u8], actual: bool) {
        let Ok(hash) = Hash::try_from(hash) else {
            return;
        };
        let mut map = self.map();
        match map.get_mut(stream) {
            Some(known) if known.0 > version && !actual => {}
            Some(known) => *known = (version, hash),
            None => {
                map.put(stream.to_owned(), (version, hash));
            }
        }
    }

    fn known(&self, stream: &str) -> Option<(i64, Hash)> {
        self.map().get(stream).copied()
    }

    /// What the writer believes `append`'s stream head to be.
    pub(super) fn belief(&self, append: &StreamAppend) -> (i64, Hash) {
        let known = self.known(&append.stream);
        match append.expected {
            ExpectedVersion::NoStream => (-1, GENESIS),
            ExpectedVersion::Exact(v) => match known {
                Some((kv, hash)) if kv == v => (v, hash),
                _ => (v, UNKNOWN),
            },
            ExpectedVersion::Any => known.unwrap_or((-1, GENESIS)),
            ExpectedVersion::StreamExists => match known {
                Some((kv, hash)) if kv >= 0 => (kv, hash),
                // A belief that cannot hold: the answer says what is there.
                _ => (-2, UNKNOWN),
            },
        }
    }
}
