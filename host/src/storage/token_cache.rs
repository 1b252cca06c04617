//! An optional, short-lived memory of Bearer-check lookups
//! (`--token-status-cache-ms`, off by default).
//!
//! Off, every check reads the database, so a revocation, removal or
//! password change made anywhere takes effect on the next request. On, a
//! token's status is remembered for the configured time: changes made
//! through this process clear what they affect at once, while changes made
//! by another replica or by the CLI take effect within that time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::StoredUser;

/// Entries kept at most; past it the memory starts over.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug)]
pub(super) struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Clone)]
struct Entry {
    at: Instant,
    subject: String,
    issued_at: i64,
    revoked: bool,
    user: Option<StoredUser>,
}

impl TokenCache {
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn get(
        &self,
        jti: &str,
        subject: &str,
        issued_at: i64,
    ) -> Option<(bool, Option<StoredUser>)> {
        let entries = self.lock();
        let entry = entries.get(jti)?;
        (entry.at.elapsed() < self.ttl && entry.subject == subject && entry.issued_at == issued_at)
            .then(|| (entry.revoked, entry.user.clone()))
    }

    pub(super) fn put(
        &self,
        jti: &str,
        subject: &str,
        issued_at: i64,
        status: &(bool, Option<StoredUser>),
    ) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            jti.to_owned(),
            Entry {
                at: Instant::now(),
                subject: subject.to_owned(),
                issued_at,
                revoked: status.0,
                user: status.1.clone(),
            },
        );
    }

    /// Forgets one token (it was just revoked).
    pub(super) fn forget(&self, jti: &str) {
        self.lock().remove(jti);
    }

    /// Forgets every token of `subject` (removed, or a new password).
    pub(super) fn forget_subject(&self, subject: &str) {
        self.lock().retain(|_, entry| entry.subject != subject);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_are_forgotten() {
        let cache = TokenCache::new(Duration::from_secs(60));
        cache.put("j1", "alice", 10, &(false, None));
        assert_eq!(cache.get("j1", "alice", 10), Some((false, None)));
        assert_eq!(
            cache.get("j1", "mallory", 10),
            None,
            "the subject must match"
        );
        cache.forget("j1");
        assert_eq!(cache.get("j1", "alice", 10), None);
        cache.put("j2", "alice", 10, &(false, None));
        cache.forget_subject("alice");
        assert_eq!(cache.get("j2", "alice", 10), None);

        let expired = TokenCache::new(Duration::ZERO);
        expired.put("j", "alice", 10, &(false, None));
        assert_eq!(expired.get("j", "alice", 10), None);
    }
}
