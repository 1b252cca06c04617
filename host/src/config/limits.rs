//! What one client may take: connections, request heads and bodies, and
//! failed logins.

use std::time::Duration;

use clap::Args;

use crate::server::ConnectionLimits;
use crate::throttle::LoginLimits;

#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Failed logins per username within the window before `/token` answers 429.
    #[arg(
        long,
        env = "TASKFLOW_LOGIN_MAX_FAILURES_PER_USER",
        default_value_t = 5
    )]
    pub login_max_failures_per_user: usize,
    /// Failed logins per client address within the window before `/token` answers 429.
    #[arg(
        long,
        env = "TASKFLOW_LOGIN_MAX_FAILURES_PER_ADDRESS",
        default_value_t = 100
    )]
    pub login_max_failures_per_address: usize,
    /// The window failed logins are counted in, in seconds.
    #[arg(long, env = "TASKFLOW_LOGIN_FAILURE_WINDOW", default_value_t = 900)]
    pub login_failure_window: u64,
    /// Longest a request body may take to arrive, in seconds; past it, 408.
    #[arg(long, env = "TASKFLOW_BODY_TIMEOUT", default_value_t = 30)]
    pub body_timeout: u64,
    /// Longest a request's head may take to arrive, in seconds; past it the
    /// connection is closed.
    #[arg(long, env = "TASKFLOW_HEADER_TIMEOUT", default_value_t = 10)]
    pub header_timeout: u64,
    /// Largest request head (request line and headers), in bytes; past it, 431.
    #[arg(long, env = "TASKFLOW_MAX_HEADER_BYTES", default_value_t = 16384)]
    pub max_header_bytes: usize,
    /// Most client connections open at once; past it, new ones get 503.
    #[arg(long, env = "TASKFLOW_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Most client connections open at once from one address (an IPv6
    /// client's /64 counts as one); past it, that address's new ones get
    /// 503. 0: no cap but --max-connections (behind a proxy that is the
    /// only address) [default: a quarter of --max-connections].
    #[arg(long, env = "TASKFLOW_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: Option<usize>,
}

impl LimitArgs {
    /// Brute-force limits of `/token` (zero limits are raised to one).
    pub fn login_limits(&self) -> LoginLimits {
        LoginLimits {
            per_user: self.login_max_failures_per_user.max(1),
            per_address: self.login_max_failures_per_address.max(1),
            window: Duration::from_secs(self.login_failure_window.max(1)),
        }
    }

    /// How long a request body may take to arrive (at least a second).
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout.max(1))
    }

    /// Limits on client connections (zeros are raised to the least that works).
    pub fn connection_limits(&self) -> ConnectionLimits {
        let max_connections = self.max_connections.max(1);
        ConnectionLimits {
            header_timeout: Duration::from_secs(self.header_timeout.max(1)),
            max_header_bytes: self.max_header_bytes.max(1024),
            max_connections,
            max_connections_per_address: match self.max_connections_per_address {
                Some(0) => None,
                Some(cap) => Some(cap.min(max_connections)),
                None => Some((max_connections / 4).max(1)),
            },
        }
    }
}
