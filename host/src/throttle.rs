//! Brute-force limits on `/token`: failed logins are counted per username
//! and per client address in a sliding window; past either limit, attempts
//! are refused with 429 before any password work. A successful login clears
//! its username's count (not its address's: one right password must not
//! reset an address that is guessing at many accounts).
//!
//! Counts live in this process's memory: with several replicas, each
//! counts on its own, so a client spreading attempts over N replicas gets up
//! to N times the limit.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
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

pub struct LoginThrottle {
    limits: LoginLimits,
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

impl LoginThrottle {
    pub fn new(limits: LoginLimits) -> Self {
        Self {
            limits,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` when either limit is reached: retry after `wait`.
    pub fn check(&self, username: &str, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let keys = [
            (Key::User(username.to_owned()), self.limits.per_user),
            (Key::Address(address), self.limits.per_address),
        ];
        let mut wait = Duration::ZERO;
        for (key, limit) in keys {
            if let Some(times) = failures.get_mut(&key) {
                expire(times, now, self.limits.window);
                if times.len() >= limit {
                    let oldest = times[times.len() - limit];
                    wait = wait.max(self.limits.window.saturating_sub(now - oldest));
                }
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait.max(Duration::from_secs(1)))
        }
    }

    pub fn record_failure(&self, username: &str, address: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_TRACKED {
            let window = self.limits.window;
            failures.retain(|_, times| {
                expire(times, now, window);
                !times.is_empty()
            });
        }
        let keys = [
            (Key::Address(address), self.limits.per_address),
            (Key::User(username.to_owned()), self.limits.per_user),
        ];
        for (key, limit) in keys {
            let tracked = failures.contains_key(&key);
            if !tracked && failures.len() >= MAX_TRACKED && matches!(key, Key::User(_)) {
                continue;
            }
            let times = failures.entry(key).or_default();
            times.push_back(now);
            // Only the newest `limit` failures can ever matter.
            while times.len() > limit {
                times.pop_front();
            }
        }
    }

    pub fn record_success(&self, username: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(&Key::User(username.to_owned()));
    }
}

fn expire(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) >= window)
    {
        times.pop_front();
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

    #[test]
    fn per_user_limit_and_its_window() {
        let t = throttle();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(t.check("alice", A, start).is_ok());
            t.record_failure("alice", A, start);
        }
        let wait = t.check("alice", B, start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(60));
        assert!(t.check("bob", B, start).is_ok());
        assert!(t.check("alice", B, start + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn success_clears_the_user_but_not_the_address() {
        let t = throttle();
        let now = Instant::now();
        for name in ["a", "b", "c", "alice", "alice"] {
            t.record_failure(name, A, now);
        }
        t.record_success("alice");
        assert!(t.check("alice", B, now).is_ok());
        assert!(
            t.check("zed", A, now).is_err(),
            "the address made 5 failures"
        );
    }

    #[test]
    fn retry_after_counts_from_the_oldest_relevant_failure() {
        let t = throttle();
        let start = Instant::now();
        for i in 0..3 {
            t.record_failure("alice", A, start + Duration::from_secs(i * 10));
        }
        let wait = t
            .check("alice", A, start + Duration::from_secs(30))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(30));
    }
}
