//! The admin channel `serve` listens on and `auth reload` talks to.

use std::path::{Path, PathBuf};

use clap::Args;

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Unix socket of the admin channel [default: DATA_DIR/admin.sock].
    #[arg(long, env = "TASKFLOW_ADMIN_SOCKET")]
    pub admin_socket: Option<PathBuf>,
}

impl AdminArgs {
    /// Where the admin channel listens.
    pub fn socket(&self, data_dir: &Path) -> PathBuf {
        self.admin_socket
            .clone()
            .unwrap_or_else(|| data_dir.join("admin.sock"))
    }
}
