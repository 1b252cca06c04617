//! Brute-force limits on `/token`: failed logins are counted per username
//! and per client address in a sliding window; past either limit, attempts
//! are refused with 429 before any password work. A successful login clears
//! its username's count (not its address's: one right password must not
//! reset an address that is guessing at many accounts).
//!
//! The limits bound how many passwords are checked, however many requests
//! arrive at once: an attempt takes its place under both limits
//! ([`LoginThrottle::reserve`]) in the same step that checks them, before
//! its password is looked at, and counts as a failure from then on unless
//! it turns out right or is never checked. A check and a later record would
//! let every request that arrives while the first passwords are being
//! hashed past the check.
//!
//! Counts live in this process's memory: what a single server (SQLite)
//! uses. Replicas on PostgreSQL count in the database instead
//! ([`crate::login_limits`]), with the same rules.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most distinct usernames and addresses tracked at once. Past it, expired
/// entries are pruned; if that is not enough, new names are not tracked,
/// but addresses always are.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    pub per_user: usize,
    pub per_address: usize,
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            per_user: 5,
            per_address: 100,
            window: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(IpAddr),
}

/// One attempt counted against a key.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    /// When it was reserved; it counts for the window from then.
    at: Instant,
    /// Its place in the order of reservations and failures.
    id: u64,
    /// `None` while its password is being checked; then the order number
    /// of its failure.
    failed: Option<u64>,
}

#[derive(Default)]
struct Counts {
    attempts: HashMap<Key, VecDeque<Attempt>>,
    /// The next order number (of a reservation or a failure).
    next: u64,
}

impl Counts {
    fn next(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Applies `change` to attempt `id` under each of `keys`, and drops the
    /// keys left with nothing counted.
    fn each(&mut self, keys: &[Key], mut change: impl FnMut(&mut VecDeque<Attempt>)) {
        for key in keys {
            if let Some(attempts) = self.attempts.get_mut(key) {
                change(attempts);
                if attempts.is_empty() {
                    self.attempts.remove(key);
                }
            }
        }
    }
}

pub struct LoginThrottle {
    limits: LoginLimits,
    counts: Mutex<Counts>,
}

/// An attempt's place under the limits, taken before its password is
/// checked. Settle it with what the check found; dropped unsettled (the
/// request went away mid-check), it stays counted as a failure, since its
/// password may have been checked.
#[must_use = "an unsettled reservation counts as a failure"]
pub struct Reservation<'a> {
    throttle: &'a LoginThrottle,
    id: u64,
    /// The keys the attempt is counted under (a username may not be, when
    /// too many are tracked).
    keys: Vec<Key>,
    settled: bool,
}

impl LoginThrottle {
    pub fn new(limits: LoginLimits) -> Self {
        Self {
            limits,
            counts: Mutex::new(Counts::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place for one attempt at `username`'s password from
    /// `address`, if neither limit is reached counting the failures in the
    /// window and the attempts still being checked; `Err(wait)` otherwise:
    /// retry after `wait` (as if every attempt still being checked fails).
    pub fn reserve(
        &self,
        username: &str,
        address: IpAddr,
        now: Instant,
    ) -> Result<Reservation<'_>, Duration> {
        let mut counts = self.lock();
        let window = self.limits.window;
        if counts.attempts.len() >= MAX_TRACKED {
            counts.attempts.retain(|_, attempts| {
                expire(attempts, now, window);
                !attempts.is_empty()
            });
        }
        let limited = [
            (Key::User(username.to_owned()), self.limits.per_user),
            (Key::Address(address), self.limits.per_address),
        ];
        let mut wait = Duration::ZERO;
        for (key, limit) in &limited {
            if let Some(attempts) = counts.attempts.get_mut(key) {
                expire(attempts, now, window);
                if attempts.len() >= *limit {
                    let oldest = attempts[attempts.len() - limit].at;
                    wait = wait.max(window.saturating_sub(now - oldest));
                }
            }
        }
        if !wait.is_zero() {
            return Err(wait.max(Duration::from_secs(1)));
        }
        let id = counts.next();
        let attempt = Attempt {
            at: now,
            id,
            failed: None,
        };
        let mut keys = Vec::with_capacity(2);
        for (key, _) in limited {
            let untracked_name = matches!(key, Key::User(_))
                && !counts.attempts.contains_key(&key)
                && counts.attempts.len() >= MAX_TRACKED;
            if untracked_name {
                continue;
            }
            counts
                .attempts
                .entry(key.clone())
                .or_default()
                .push_back(attempt);
            keys.push(key);
        }
        Ok(Reservation {
            throttle: self,
            id,
            keys,
            settled: false,
        })
    }
}

impl LoginThrottle {
    /// Forgets `username`'s failed logins (an operator's unlock), and
    /// returns how many there were. Attempts still being checked keep
    /// their places; failures counted against client addresses stay.
    pub fn forget_failures(&self, username: &str) -> usize {
        let mut counts = self.lock();
        let Some(attempts) = counts.attempts.get_mut(&Key::User(username.to_owned())) else {
            return 0;
        };
        let before = attempts.len();
        attempts.retain(|a| a.failed.is_none());
        before - attempts.len()
    }
}

impl Reservation<'_> {
    /// The password was wrong: the attempt counts as a failure under both
    /// limits for the rest of the window.
    pub fn failed(mut self) {
        self.settled = true;
        self.mark_failed();
    }

    /// The password was right: the username's failures that ended before
    /// this attempt began are forgotten (not those of attempts that ran
    /// alongside it, which may be someone else's guesses), and this attempt
    /// does not count. The address keeps its failures.
    pub fn succeeded(mut self) {
        self.settled = true;
        let id = self.id;
        let mut counts = self.throttle.lock();
        for key in &self.keys {
            let Some(attempts) = counts.attempts.get_mut(key) else {
                continue;
            };
            match key {
                Key::User(_) => {
                    attempts.retain(|a| a.id != id && a.failed.is_none_or(|failed| failed > id));
                }
                Key::Address(_) => attempts.retain(|a| a.id != id),
            }
            if attempts.is_empty() {
                counts.attempts.remove(key);
            }
        }
    }

    /// No password was checked (a malformed request, or the policy could not
    /// answer): the attempt does not count.
    pub fn not_checked(mut self) {
        self.settled = true;
        let id = self.id;
        self.throttle
            .lock()
            .each(&self.keys, |attempts| attempts.retain(|a| a.id != id));
    }

    fn mark_failed(&self) {
        let id = self.id;
        let mut counts = self.throttle.lock();
        let failed = counts.next();
        counts.each(&self.keys, |attempts| {
            if let Some(attempt) = attempts.iter_mut().find(|a| a.id == id) {
                attempt.failed = Some(failed);
            }
        });
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.mark_failed();
        }
    }
}

fn expire(attempts: &mut VecDeque<Attempt>, now: Instant, window: Duration) {
    while attempts
        .front()
        .is_some_and(|a| now.duration_since(a.at) >= window)
    {
        attempts.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(LoginLimits {
            per_user: 3,
            per_address: 5,
            window: Duration::from_secs(60),
        })
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn fail(t: &LoginThrottle, name: &str, address: IpAddr, at: Instant) {
        t.reserve(name, address, at).unwrap().failed();
    }

    #[test]
    fn forgetting_a_users_failures_lets_them_in_and_keeps_the_address_count() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..2 {
            fail(&t, "alice", A, now);
        }
        let checking = t.reserve("alice", B, now).unwrap();
        assert!(t.reserve("alice", B, now).is_err());
        assert_eq!(t.forget_failures("alice"), 2);
        assert_eq!(t.forget_failures("bob"), 0);
        // The attempt still being checked keeps its place: two more fit.
        let next = [
            t.reserve("alice", B, now).unwrap(),
            t.reserve("alice", B, now).unwrap(),
        ];
        assert!(t.reserve("alice", B, now).is_err());
        checking.failed();
        for attempt in next {
            attempt.not_checked();
        }
        // Alice's two failures still count against address A.
        for name in ["b", "c", "d"] {
            fail(&t, name, A, now);
        }
        assert!(t.reserve("e", A, now).is_err());
    }

    #[test]
    fn per_user_limit_and_its_window() {
        let t = throttle();
        let start = Instant::now();
        for _ in 0..3 {
            fail(&t, "alice", A, start);
        }
        let wait = t.reserve("alice", B, start).err().unwrap();
        assert_eq!(wait, Duration::from_secs(60));
        assert!(t.reserve("bob", B, start).is_ok());
        assert!(
            t.reserve("alice", B, start + Duration::from_secs(60))
                .is_ok()
        );
    }

    #[test]
    fn attempts_being_checked_count_against_both_limits() {
        let t = throttle();
        let now = Instant::now();
        // Three at once for one name: the fourth is refused before any of
        // them is settled, whatever address it comes from.
        let held: Vec<_> = (0..3)
            .map(|_| t.reserve("alice", A, now).unwrap())
            .collect();
        assert!(t.reserve("alice", B, now).is_err());
        // Two more from the address reach its limit of five.
        let more: Vec<_> = ["b", "c"]
            .iter()
            .map(|name| t.reserve(name, A, now).unwrap())
            .collect();
        assert!(t.reserve("d", A, now).is_err());
        // Attempts that checked no password give their places back.
        for reservation in more {
            reservation.not_checked();
        }
        assert!(t.reserve("d", A, now).is_ok_and(|r| {
            r.not_checked();
            true
        }));
        // Failures keep them.
        for reservation in held {
            reservation.failed();
        }
        assert!(t.reserve("alice", B, now).is_err());
    }

    #[test]
    fn a_success_forgets_only_the_failures_before_it() {
        let t = throttle();
        let now = Instant::now();
        fail(&t, "alice", A, now);
        let right = t.reserve("alice", A, now).unwrap();
        let racing = t.reserve("alice", B, now).unwrap();
        racing.failed();
        right.succeeded();
        // The failure before the success is forgotten, the one alongside it
        // is not: two more places, not three.
        let next: Vec<_> = (0..2)
            .map(|_| t.reserve("alice", B, now).unwrap())
            .collect();
        assert!(t.reserve("alice", B, now).is_err());
        for reservation in next {
            reservation.not_checked();
        }
    }

    #[test]
    fn success_clears_the_user_but_not_the_address() {
        let t = throttle();
        let now = Instant::now();
        for name in ["a", "b", "c", "alice"] {
            fail(&t, name, A, now);
        }
        t.reserve("alice", A, now).unwrap().succeeded();
        assert!(t.reserve("alice", B, now).is_ok_and(|r| {
            r.not_checked();
            true
        }));
        fail(&t, "alice", A, now);
        assert!(
            t.reserve("zed", A, now).is_err(),
            "the address made 5 failures"
        );
    }

    #[test]
    fn an_abandoned_attempt_counts_as_a_failure() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..3 {
            drop(t.reserve("alice", A, now).unwrap());
        }
        assert!(t.reserve("alice", B, now).is_err());
    }

    #[test]
    fn retry_after_counts_from_the_oldest_relevant_failure() {
        let t = throttle();
        let start = Instant::now();
        for i in 0..3 {
            fail(&t, "alice", A, start + Duration::from_secs(i * 10));
        }
        let wait = t
            .reserve("alice", A, start + Duration::from_secs(30))
            .err()
            .unwrap();
        assert_eq!(wait, Duration::from_secs(30));
    }
}
