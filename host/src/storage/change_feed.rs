//! Follows the change log so that the in-memory token status stays current:
//! woken by PostgreSQL `NOTIFY` (other replicas' changes arrive in
//! milliseconds) and, on both backends, reading the log every
//! [`FeedTiming::poll`] (SQLite has no notifications; on PostgreSQL the
//! poll catches what a lost notification missed). Each successful read
//! renews the memory's lease; when reads fail the lease runs out and every
//! Bearer check reads the database instead, never a stale memory. After an
//! outage the follower catches up from the log by sequence number, or
//! reloads from scratch if it was away longer than the log keeps changes.

use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;

use super::changes::{CHANGES_CHANNEL, LOG_RETENTION_SECONDS};
use super::{Backend, Database, StorageError};

/// How the follower paces itself.
#[derive(Debug, Clone, Copy)]
pub struct FeedTiming {
    /// Longest between two reads of the log.
    pub poll: Duration,
    /// How long after a successful read the memory may still be used.
    pub lease: Duration,
}

impl FeedTiming {
    /// SQLite: no notifications, so the log is read often (a read is one
    /// indexed query, ~50 µs). PostgreSQL: notifications carry the changes,
    /// the poll is a backstop.
    pub fn for_backend(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self {
                poll: Duration::from_millis(20),
                lease: Duration::from_millis(500),
            },
            Backend::Postgres => Self {
                poll: Duration::from_millis(100),
                lease: Duration::from_millis(500),
            },
        }
    }
}

/// Wait between attempts to re-open the PostgreSQL listener.
const LISTENER_RETRY: Duration = Duration::from_secs(1);
/// How often revocations of expired tokens are dropped from memory.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How long past its `exp` a revoked token is remembered (clock skew).
const KEEP_AFTER_EXPIRY_SECONDS: i64 = 60;

impl Database {
    /// Keeps this process's token status current until `stop` resolves.
    /// `url` is the database's URL, for the PostgreSQL listener.
    pub async fn follow_changes(&self, url: &str, stop: impl Future<Output = ()>) {
        let timing = FeedTiming::for_backend(self.backend);
        tokio::pin!(stop);
        let mut follower = Follower {
            db: self,
            wakeups: Wakeups::new(self.backend, url, CHANGES_CHANNEL),
            last_read: None,
            pruned_at: Instant::now(),
            failing: false,
        };
        loop {
            follower.read_log(timing).await;
            tokio::select! {
                () = &mut stop => break,
                () = follower.wakeups.wait(timing.poll) => {}
            }
        }
        self.status.expire();
    }
}

struct Follower<'a> {
    db: &'a Database,
    wakeups: Wakeups,
    /// When the log was last read successfully.
    last_read: Option<Instant>,
    pruned_at: Instant,
    /// The last read failed (logged once, until one succeeds).
    failing: bool,
}

impl Follower<'_> {
    /// Applies what the log holds since the last read; on failure, stops
    /// the memory from being used.
    async fn read_log(&mut self, timing: FeedTiming) {
        let started = Instant::now();
        match self.catch_up().await {
            Ok(()) => {
                self.db.status.renew(timing.lease);
                self.last_read = Some(started);
                if std::mem::take(&mut self.failing) {
                    tracing::info!(
                        "following the change log again; Bearer checks answer from memory"
                    );
                }
            }
            Err(e) => {
                self.db.status.expire();
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(error = %e, "cannot read the change log; Bearer checks read the database until it can");
                }
            }
        }
    }

    async fn catch_up(&mut self) -> Result<(), StorageError> {
        let memory = &self.db.status;
        let away_too_long = self
            .last_read
            .is_none_or(|at| at.elapsed() > Duration::from_secs(LOG_RETENTION_SECONDS as u64 / 2));
        let now = crate::clock::unix_now();
        if away_too_long {
            // The sequence number first: changes committed after it are in
            // the snapshot and applied again from the log, harmlessly.
            let seq = self.db.latest_change().await?;
            let revoked = self
                .db
                .revoked_tokens(now - KEEP_AFTER_EXPIRY_SECONDS)
                .await?;
            memory.reset(revoked, seq);
        }
        for logged in self.db.changes_since(memory.applied_seq()).await? {
            memory.apply_logged(logged.seq, &logged.change);
        }
        if self.pruned_at.elapsed() >= PRUNE_EVERY {
            memory.prune(now - KEEP_AFTER_EXPIRY_SECONDS);
            self.pruned_at = Instant::now();
        }
        Ok(())
    }
}

/// What wakes a follower: a PostgreSQL notification on one channel, or
/// the poll interval (SQLite has no notifications; on PostgreSQL the poll
/// catches what a lost notification missed).
pub(crate) struct Wakeups {
    backend: Backend,
    url: String,
    channel: &'static str,
    listener: Option<PgListener>,
    retry_at: Instant,
}

impl Wakeups {
    /// Wakeups from `channel` of the database at `url`.
    pub(crate) fn new(backend: Backend, url: &str, channel: &'static str) -> Self {
        Self {
            backend,
            url: url.to_owned(),
            channel,
            listener: None,
            retry_at: Instant::now(),
        }
    }

    /// Waits for a notification (PostgreSQL) or `poll`, whichever is first.
    pub(crate) async fn wait(&mut self, poll: Duration) {
        if self.backend != Backend::Postgres {
            tokio::time::sleep(poll).await;
            return;
        }
        if self.listener.is_none() && Instant::now() >= self.retry_at {
            self.listener = self.listen().await;
            if self.listener.is_none() {
                self.retry_at = Instant::now() + LISTENER_RETRY;
            }
        }
        let Some(listener) = self.listener.as_mut() else {
            tokio::time::sleep(poll).await;
            return;
        };
        tokio::select! {
            received = listener.try_recv() => match received {
                Ok(Some(_)) => {}
                // The connection was lost; notifications sent meanwhile are
                // gone, and the next read of the log catches up.
                Ok(None) | Err(_) => {
                    tracing::debug!(channel = self.channel, "listener lost its connection");
                    self.listener = None;
                }
            },
            () = tokio::time::sleep(poll) => {}
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let attempt = async {
            let mut listener = PgListener::connect(&self.url).await?;
            // A lost connection is reported at once (and re-opened here,
            // after LISTENER_RETRY), never re-opened inside the wait.
            listener.eager_reconnect(false);
            listener.listen(self.channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match tokio::time::timeout(LISTENER_RETRY, attempt).await {
            Ok(Ok(listener)) => Some(listener),
            Ok(Err(e)) => {
                tracing::debug!(channel = self.channel, error = %e, "cannot listen yet");
                None
            }
            Err(_) => {
                tracing::debug!(channel = self.channel, "cannot listen yet: no answer");
                None
            }
        }
    }
}
