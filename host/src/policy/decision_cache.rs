//! Bearer decisions remembered for a short time, so that a client sending
//! many requests with one token pays for one policy call, not one each.
//!
//! A decision depends on the request (its `Authorization` header, method,
//! route and required scopes), on the policy, on the signing keys, on the
//! token status (revocations, users) and on the clock. The cache lives in
//! one loaded policy (a swap starts with an empty one), keys entries by the
//! whole request, and stamps each with the key-ring and token-status
//! versions read *before* the decision was made: any change to either after
//! that point makes the entry unusable, so a revocation, password change,
//! user removal or key retirement is seen by the very next request, as
//! without a cache. The clock is the one input it cannot follow, so an
//! entry lives at most `ttl`: a token may be accepted up to `ttl` after the
//! moment the policy would have begun to refuse it for its age (`exp`), on
//! top of the configured leeway.
//!
//! Nothing is remembered while the token status is not known to be current
//! (the change feed is down): then every request asks the policy, which
//! asks the database.

use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use quick_cache::Equivalent;
use quick_cache::sync::Cache;

use super::{AccessRequest, Denial, Principal};

/// Bytes of keys and answers kept at most (an entry's weight is its size).
const CAPACITY_BYTES: u64 = 16 << 20;
/// A typical entry, for sizing the table up front.
const TYPICAL_ENTRY_BYTES: u64 = 1024;

/// The versions a decision was made under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Bumped by every change of the signing keys handed to the policy.
    pub(crate) keys: u64,
    /// Bumped by every change of the token status (see `storage::token_status`).
    pub(crate) status: u64,
}

type Decision = Result<Principal, Denial>;

/// Remembered decisions of one loaded policy.
pub(crate) struct DecisionCache {
    entries: Cache<Key, Entry, Weight>,
    ttl: Duration,
}

impl DecisionCache {
    /// `None` when `ttl` is zero: decisions are not remembered.
    pub(crate) fn new(ttl: Duration) -> Option<Self> {
        (!ttl.is_zero()).then(|| Self {
            entries: Cache::with_weighter(
                (CAPACITY_BYTES / TYPICAL_ENTRY_BYTES) as usize,
                CAPACITY_BYTES,
                Weight,
            ),
            ttl,
        })
    }

    /// The decision remembered for `request`, if it was made under `stamp`
    /// less than `ttl` ago.
    pub(crate) fn get(&self, request: &AccessRequest<'_>, stamp: Stamp) -> Option<Decision> {
        let entry = self.entries.get(&Lookup(request))?;
        (entry.stamp == stamp && entry.made.elapsed() < self.ttl).then_some(entry.decision)
    }

    /// Remembers `decision`, made for `request` under `stamp` (read before
    /// the decision began).
    pub(crate) fn insert(&self, request: &AccessRequest<'_>, stamp: Stamp, decision: &Decision) {
        let key = Key {
            authorization: request.authorization.map(Box::from),
            method: request.method.into(),
            route: request.route.into(),
            scopes: request
                .required_scopes
                .iter()
                .map(|s| (*s).into())
                .collect(),
        };
        let entry = Entry {
            decision: decision.clone(),
            stamp,
            made: Instant::now(),
        };
        self.entries.insert(key, entry);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[derive(Clone, PartialEq, Eq)]
struct Key {
    authorization: Option<Box<str>>,
    method: Box<str>,
    route: Box<str>,
    scopes: Box<[Box<str>]>,
}

/// Hashes exactly as [`Lookup`] does, field by field.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.authorization.as_deref().hash(state);
        self.method.as_ref().hash(state);
        self.route.as_ref().hash(state);
        state.write_usize(self.scopes.len());
        for scope in &self.scopes {
            scope.as_ref().hash(state);
        }
    }
}

/// A request looked up without copying it into a [`Key`].
struct Lookup<'r, 'a>(&'r AccessRequest<'a>);

impl Hash for Lookup<'_, '_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.authorization.hash(state);
        self.0.method.hash(state);
        self.0.route.hash(state);
        state.write_usize(self.0.required_scopes.len());
        for scope in self.0.required_scopes {
            scope.hash(state);
        }
    }
}

impl Equivalent<Key> for Lookup<'_, '_> {
    fn equivalent(&self, key: &Key) -> bool {
        let request = self.0;
        request.authorization == key.authorization.as_deref()
            && request.method == &*key.method
            && request.route == &*key.route
            && request.required_scopes.len() == key.scopes.len()
            && request
                .required_scopes
                .iter()
                .zip(key.scopes.iter())
                .all(|(a, b)| *a == &**b)
    }
}

#[derive(Clone)]
struct Entry {
    decision: Decision,
    stamp: Stamp,
    made: Instant,
}

#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<Key, Entry> for Weight {
    fn weight(&self, key: &Key, entry: &Entry) -> u64 {
        let strings = |list: &[String]| list.iter().map(String::len).sum::<usize>();
        let key_bytes = key.authorization.as_deref().map_or(0, str::len)
            + key.method.len()
            + key.route.len()
            + key.scopes.iter().map(|s| s.len()).sum::<usize>();
        let answer_bytes = match &entry.decision {
            Ok(principal) => principal.subject.len() + strings(&principal.scopes),
            Err(Denial::InvalidToken(reason)) => reason.len(),
            Err(Denial::InsufficientScope(scopes)) => strings(scopes),
            Err(Denial::NoCredentials) => 0,
        };
        // Plus the fixed size of an entry, so that none weighs nothing.
        (key_bytes + answer_bytes + 128) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(authorization: &'a str, scopes: &'a [&'a str]) -> AccessRequest<'a> {
        AccessRequest {
            authorization: Some(authorization),
            method: "GET",
            route: "/tasks",
            required_scopes: scopes,
        }
    }

    fn allowed() -> Decision {
        Ok(Principal {
            subject: "alice".into(),
            scopes: vec!["tasks:read".into()],
        })
    }

    const STAMP: Stamp = Stamp { keys: 1, status: 7 };

    #[test]
    fn a_decision_is_reused_only_for_the_same_request_under_the_same_versions() {
        let cache = DecisionCache::new(Duration::from_secs(60)).unwrap();
        let read = request("Bearer t", &["tasks:read"]);
        cache.insert(&read, STAMP, &allowed());
        assert_eq!(cache.get(&read, STAMP), Some(allowed()));
        // Any other request, or the same one after any change, asks again.
        assert_eq!(
            cache.get(&request("Bearer u", &["tasks:read"]), STAMP),
            None
        );
        assert_eq!(
            cache.get(&request("Bearer t", &["tasks:write"]), STAMP),
            None
        );
        assert_eq!(cache.get(&request("Bearer t", &[]), STAMP), None);
        let delete = AccessRequest {
            method: "DELETE",
            ..request("Bearer t", &["tasks:read"])
        };
        assert_eq!(cache.get(&delete, STAMP), None);
        let revoked_since = Stamp { status: 8, ..STAMP };
        assert_eq!(cache.get(&read, revoked_since), None);
        let keys_changed = Stamp { keys: 2, ..STAMP };
        assert_eq!(cache.get(&read, keys_changed), None);
    }

    #[test]
    fn denials_are_remembered_too_and_entries_age_out() {
        let cache = DecisionCache::new(Duration::from_millis(30)).unwrap();
        let bad = request("Bearer forged", &["tasks:read"]);
        let denied: Decision = Err(Denial::InvalidToken("bad signature".into()));
        cache.insert(&bad, STAMP, &denied);
        assert_eq!(cache.get(&bad, STAMP), Some(denied));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get(&bad, STAMP), None);
    }

    #[test]
    fn no_ttl_no_cache() {
        assert!(DecisionCache::new(Duration::ZERO).is_none());
    }

    #[test]
    fn the_memory_is_bounded_under_a_flood_of_distinct_tokens() {
        let cache = DecisionCache::new(Duration::from_secs(60)).unwrap();
        let token = "x".repeat(4000);
        for i in 0..20_000 {
            let authorization = format!("Bearer {i}{token}");
            let denied: Decision = Err(Denial::InvalidToken("bad signature".into()));
            cache.insert(&request(&authorization, &[]), STAMP, &denied);
        }
        // 20,000 entries of ~4 KiB would be 80 MiB; the bound is 16 MiB.
        assert!(
            cache.len() <= (CAPACITY_BYTES / 4000) as usize,
            "{}",
            cache.len()
        );
    }
}
