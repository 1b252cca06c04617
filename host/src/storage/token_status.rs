//! What a Bearer check needs to know beyond the token itself, kept in
//! memory: the revoked `jti`s until their `exp`, and each user looked up
//! (existence, scopes, password-change cutoff).
//!
//! It is invalidated by the change log, never by time: a write through this
//! process applies its change here before it answers, and the follower
//! ([`super::change_feed`]) applies everyone else's. The memory is used only
//! while the follower keeps it current: each successful read of the log
//! renews a short lease, and once the lease runs out (the feed is broken)
//! every check reads the database again, as if there were no memory.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::StoredUser;
use super::changes::AuthChange;

/// Users remembered at most; past it the memory of users starts over.
const MAX_USERS: usize = 100_000;

/// A user as a Bearer check needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserStatus {
    pub user: StoredUser,
    /// Tokens issued (`iat`) at or before this Unix second are revoked:
    /// those of an earlier account of the name, and those from before the
    /// last password change.
    pub tokens_revoked_through: i64,
}

/// The in-memory token status of one process.
#[derive(Debug)]
pub(super) struct TokenStatusMemory {
    started: Instant,
    revoked: RwLock<HashMap<String, i64>>,
    /// Remembered lookups; `None`: no such user.
    users: RwLock<HashMap<String, Option<UserStatus>>>,
    /// Bumped by every user change, so a lookup that raced one is not kept.
    generation: AtomicU64,
    /// Milliseconds since `started` until which the memory may be used.
    lease_until_ms: AtomicI64,
    /// The newest change applied.
    applied_seq: AtomicI64,
    /// Bumped after every change to what the memory answers.
    version: AtomicU64,
}

impl TokenStatusMemory {
    pub(super) fn new() -> Self {
        Self {
            started: Instant::now(),
            revoked: RwLock::new(HashMap::new()),
            users: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            lease_until_ms: AtomicI64::new(i64::MIN),
            applied_seq: AtomicI64::new(0),
            version: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// Whether the follower has kept the memory current recently enough.
    pub(super) fn is_current(&self) -> bool {
        self.now_ms() < self.lease_until_ms.load(Ordering::Acquire)
    }

    /// The follower read the log up to now: the memory may be used for `lease`.
    pub(super) fn renew(&self, lease: Duration) {
        let until = self
            .now_ms()
            .saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        self.lease_until_ms.store(until, Ordering::Release);
    }

    /// The feed is broken: stop answering from memory at once.
    pub(super) fn expire(&self) {
        self.lease_until_ms.store(i64::MIN, Ordering::Release);
    }

    pub(super) fn applied_seq(&self) -> i64 {
        self.applied_seq.load(Ordering::Acquire)
    }

    /// Starts over from a snapshot: the revocations in force, as of log
    /// sequence `seq` (read before the snapshot, so that changes after it
    /// are applied again, harmlessly).
    pub(super) fn reset(&self, revoked: Vec<(String, i64)>, seq: i64) {
        *write(&self.revoked) = revoked.into_iter().collect();
        self.generation.fetch_add(1, Ordering::AcqRel);
        write(&self.users).clear();
        self.applied_seq.store(seq, Ordering::Release);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Applies one change, made here or read from the log.
    pub(super) fn apply(&self, change: &AuthChange) {
        match change {
            AuthChange::TokenRevoked { jti, expires_at } => {
                write(&self.revoked).insert(jti.clone(), *expires_at);
            }
            AuthChange::UserChanged { username } => {
                self.generation.fetch_add(1, Ordering::AcqRel);
                write(&self.users).remove(username);
            }
        }
        // After the change is in place: whoever reads the new version also
        // sees the change.
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Changes every time what the memory answers changes.
    pub(super) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Applies a change read from the log at `seq`.
    pub(super) fn apply_logged(&self, seq: i64, change: &AuthChange) {
        self.apply(change);
        self.applied_seq.fetch_max(seq, Ordering::AcqRel);
    }

    /// Forgets revocations of tokens that expired before `before`.
    pub(super) fn prune(&self, before: i64) {
        write(&self.revoked).retain(|_, expires_at| *expires_at >= before);
    }

    pub(super) fn is_revoked(&self, jti: &str) -> bool {
        read(&self.revoked).contains_key(jti)
    }

    /// What is remembered of `username`: `Some(None)` for a user known not
    /// to exist, `None` when nothing is remembered.
    pub(super) fn user(&self, username: &str) -> Option<Option<UserStatus>> {
        read(&self.users).get(username).cloned()
    }

    /// The generation to pass to [`Self::remember`] for a lookup starting now.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Remembers a lookup of `username` that started at `generation`,
    /// unless a user change was applied since (it may predate the change).
    pub(super) fn remember(&self, username: &str, status: Option<UserStatus>, generation: u64) {
        let mut users = write(&self.users);
        // Checked under the lock that `apply` also takes after bumping it.
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if users.len() >= MAX_USERS {
            users.clear();
        }
        users.insert(username.to_owned(), status);
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserStatus {
        UserStatus {
            user: StoredUser {
                username: "alice".into(),
                password_hash: "h".into(),
                scopes: vec!["tasks:read".into()],
            },
            tokens_revoked_through: 0,
        }
    }

    #[test]
    fn the_memory_is_used_only_under_a_lease() {
        let memory = TokenStatusMemory::new();
        assert!(!memory.is_current(), "nothing has followed the feed yet");
        memory.renew(Duration::from_secs(60));
        assert!(memory.is_current());
        memory.expire();
        assert!(!memory.is_current());
        memory.renew(Duration::ZERO);
        assert!(!memory.is_current());
    }

    #[test]
    fn changes_apply_and_a_lookup_that_raced_one_is_not_kept() {
        let memory = TokenStatusMemory::new();
        memory.apply(&AuthChange::TokenRevoked {
            jti: "j".into(),
            expires_at: 100,
        });
        assert!(memory.is_revoked("j"));
        let generation = memory.generation();
        memory.remember("alice", Some(alice()), generation);
        assert_eq!(memory.user("alice"), Some(Some(alice())));
        memory.apply(&AuthChange::UserChanged {
            username: "alice".into(),
        });
        assert_eq!(memory.user("alice"), None);
        // A lookup that began before the change must not be remembered.
        memory.remember("alice", Some(alice()), generation);
        assert_eq!(memory.user("alice"), None);
        memory.remember("bob", None, memory.generation());
        assert_eq!(memory.user("bob"), Some(None));
        memory.prune(101);
        assert!(!memory.is_revoked("j"));
    }

    #[test]
    fn a_reset_replaces_everything() {
        let memory = TokenStatusMemory::new();
        memory.remember("alice", Some(alice()), memory.generation());
        memory.reset(vec![("k".into(), 5)], 42);
        assert_eq!(memory.user("alice"), None);
        assert!(memory.is_revoked("k"));
        assert_eq!(memory.applied_seq(), 42);
        memory.apply_logged(
            43,
            &AuthChange::UserChanged {
                username: "x".into(),
            },
        );
        memory.apply_logged(
            41,
            &AuthChange::UserChanged {
                username: "x".into(),
            },
        );
        assert_eq!(memory.applied_seq(), 43);
    }
}
