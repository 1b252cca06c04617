//! The database: where it is and how many connections it gets.

use std::path::Path;
use std::time::Duration;

use clap::Args;

use crate::storage::PoolSettings;

#[derive(Debug, Args)]
pub struct StorageArgs {
    /// Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB
    /// [default: sqlite://DATA_DIR/taskflow.db].
    #[arg(long, env = "TASKFLOW_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Most database connections this process opens.
    #[arg(long, env = "TASKFLOW_DATABASE_MAX_CONNECTIONS", default_value_t = 8)]
    pub database_max_connections: u32,
    /// Longest a request waits for a database connection or one statement
    /// runs, in milliseconds; past it, 503.
    #[arg(long, env = "TASKFLOW_DATABASE_TIMEOUT_MS", default_value_t = 5000)]
    pub database_timeout_ms: u64,
    /// Removed: Bearer checks answer from memory kept current by the change
    /// log. Accepted so that old settings still start; `config check` and
    /// `serve` say it has no effect.
    #[arg(long, env = "TASKFLOW_TOKEN_STATUS_CACHE_MS", hide = true)]
    pub token_status_cache_ms: Option<u64>,
}

impl StorageArgs {
    /// The database URL, defaulting to a SQLite file in the data directory.
    pub fn database_url(&self, data_dir: &Path) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("taskflow.db").display()))
    }

    /// Connection pool size and timeouts (zeros are raised to one).
    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            max_connections: self.database_max_connections.max(1),
            timeout: Duration::from_millis(self.database_timeout_ms.max(1)),
        }
    }

    /// Settings that were removed but are still given, each with why it
    /// has no effect now.
    pub fn removed_settings(&self) -> Vec<&'static str> {
        let mut removed = Vec::new();
        if self.token_status_cache_ms.is_some() {
            removed.push(
                "token_status_cache_ms (--token-status-cache-ms, TASKFLOW_TOKEN_STATUS_CACHE_MS) was removed and has no effect: \
                 Bearer checks answer from memory that the change log keeps current, so a revocation, removal or password change \
                 is refused at once on this replica and within milliseconds on the others, with no time-based cache",
            );
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_database_is_in_the_data_dir() {
        let storage = StorageArgs {
            database_url: None,
            database_max_connections: 8,
            database_timeout_ms: 5000,
            token_status_cache_ms: None,
        };
        assert_eq!(
            storage.database_url(Path::new("/srv/tf")),
            "sqlite:///srv/tf/taskflow.db"
        );
    }
}
