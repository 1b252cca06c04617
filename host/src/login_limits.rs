//! The brute-force limits of `/token` for the whole deployment: counted in
//! this process's memory ([`crate::throttle`]) on SQLite, where there is one
//! server, and in the database on PostgreSQL, so that replicas sharing it
//! share the counts (N replicas do not give an attacker N times the tries).
//!
//! While the database cannot be reached, a login on PostgreSQL is refused
//! with 503 before any password is checked: the counts are never read as
//! zero, and no password check goes uncounted. (A login needs the database
//! for the user's record anyway.)

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::storage::{Backend, Database, LoginOutcome, LoginReservation, StorageError};
use crate::throttle::{LoginLimits, LoginThrottle, Reservation};

/// Where the counts live.
pub enum LoginLimiter {
    /// One server: its memory.
    Memory(LoginThrottle),
    /// Replicas on one PostgreSQL database: the database.
    Shared { db: Database, limits: LoginLimits },
}

/// Why an attempt gets no place.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("too many failed logins; retry after {0:?}")]
    Limited(Duration),
    #[error("the login counts cannot be read: {0}")]
    Unavailable(#[from] StorageError),
}

/// An attempt's place under the limits, taken before its password is
/// checked; settle it with what the check found. Unsettled, it counts as a
/// failure (its password may have been checked).
#[must_use = "an unsettled attempt counts as a failure"]
pub enum Attempt<'a> {
    Memory(Reservation<'a>),
    Shared {
        db: &'a Database,
        attempt: i64,
        user_key: String,
    },
}

impl LoginLimiter {
    /// The limits for a deployment on `db`.
    pub fn for_database(db: &Database, limits: LoginLimits) -> Self {
        match db.backend() {
            Backend::Sqlite => Self::Memory(LoginThrottle::new(limits)),
            Backend::Postgres => Self::Shared {
                db: db.clone(),
                limits,
            },
        }
    }

    /// Takes a place for one attempt at `username`'s password from
    /// `address`, if neither limit is reached (see [`LoginThrottle::reserve`]).
    pub async fn reserve(&self, username: &str, address: IpAddr) -> Result<Attempt<'_>, Refusal> {
        match self {
            Self::Memory(throttle) => throttle
                .reserve(username, address, Instant::now())
                .map(Attempt::Memory)
                .map_err(Refusal::Limited),
            Self::Shared { db, limits } => {
                let user_key = user_key(username);
                let keys = [
                    (user_key.clone(), limits.per_user),
                    (format!("address:{address}"), limits.per_address),
                ];
                let window_ms = i64::try_from(limits.window.as_millis()).unwrap_or(i64::MAX);
                match db.reserve_login(&keys, window_ms, unix_ms()).await? {
                    LoginReservation::Reserved(attempt) => Ok(Attempt::Shared {
                        db,
                        attempt,
                        user_key,
                    }),
                    LoginReservation::Limited(wait_ms) => Err(Refusal::Limited(
                        Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0))
                            .max(Duration::from_secs(1)),
                    )),
                }
            }
        }
    }
}

impl LoginLimiter {
    /// Forgets `username`'s failed logins (see [`LoginThrottle::forget_failures`]):
    /// in this process, or for every replica in the database. Returns how
    /// many were forgotten.
    pub async fn unlock(&self, username: &str) -> Result<u64, StorageError> {
        match self {
            Self::Memory(throttle) => Ok(throttle.forget_failures(username) as u64),
            Self::Shared { db, .. } => db.forget_login_failures(&user_key(username)).await,
        }
    }
}

/// The key a username's attempts are counted under in the database.
fn user_key(username: &str) -> String {
    format!("user:{username}")
}

impl Attempt<'_> {
    /// Records what the password check found. If the database cannot take
    /// it, the attempt stays counted as a failure until the window passes.
    pub async fn settle(self, outcome: LoginOutcome) {
        match self {
            Attempt::Memory(reservation) => match outcome {
                LoginOutcome::Failed => reservation.failed(),
                LoginOutcome::Succeeded => reservation.succeeded(),
                LoginOutcome::NotChecked => reservation.not_checked(),
            },
            Attempt::Shared {
                db,
                attempt,
                user_key,
            } => {
                if let Err(e) = db.settle_login(attempt, &user_key, outcome).await {
                    tracing::warn!(error = %e, ?outcome, "a login attempt could not be settled; it counts as a failure");
                }
            }
        }
    }
}

fn unix_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
