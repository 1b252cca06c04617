//! What an instance's store holds, and the host imports the policy calls:
//! the WIT `host` interface, one method per import, each awaiting storage
//! on the calling task (never blocking a thread), and WASI with nothing in
//! it but clocks, randomness and output that goes to the log.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::budget::CallClock;
use super::output::GuestOutput;
use super::worlds::{current, wit};
use crate::policy::Directory;

/// What the host provides to every instance of one loaded component.
pub(super) struct HostEnv {
    /// Swapped whole when the signing keys change.
    pub(super) settings: ArcSwap<wit::PolicySettings>,
    pub(super) users: Arc<dyn Directory>,
    /// Where the component's stdout and stderr go.
    pub(super) output: GuestOutput,
    /// Argon2 hashes the `primitives` import may compute at once.
    pub(super) hash_slots: Arc<tokio::sync::Semaphore>,
    /// Ed25519 public keys the `primitives` import worked out before.
    pub(super) ed25519_keys: Arc<super::primitives::Ed25519Keys>,
}

/// The data of one instance's `Store`.
pub(super) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: MeteredLimits,
    pub(super) env: Arc<HostEnv>,
    /// The running call's time and share of the machine.
    pub(super) clock: CallClock,
}

impl StoreState {
    pub(super) fn new(env: Arc<HostEnv>, limits: StoreLimits, clock: CallClock) -> Self {
        // No preopens, environment, arguments or network: the guest reaches
        // nothing but the `host` import, clocks, randomness and the log.
        let wasi = WasiCtx::builder()
            .stdout(env.output.stream("stdout"))
            .stderr(env.output.stream("stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limits: MeteredLimits {
                limits,
                memory_bytes: 0,
            },
            env,
            clock,
        }
    }

    /// Awaits `lookup` with the time it takes kept off the call's deadline:
    /// a slow database is the database's fault, not the policy's, and has
    /// its own timeout.
    pub(super) async fn outside_deadline<T>(&mut self, lookup: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = lookup.await;
        self.clock.add_import_time(started.elapsed());
        result
    }

    /// Awaits the host's primitive `work`: its time counts as the call's
    /// own (the policy asked for that work), and is noted apart for the
    /// deadline's message.
    pub(super) async fn in_primitive<T>(&mut self, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = work.await;
        self.clock.add_primitive_time(started.elapsed());
        result
    }
}

/// The store's limits, counting the linear memory its instance holds: how
/// heavy an instance of a policy is (a few MiB for a Rust policy, more for
/// an interpreter's heap) decides how many idle ones are kept.
pub(super) struct MeteredLimits {
    limits: StoreLimits,
    /// Linear memory grown so far, in bytes.
    pub(super) memory_bytes: usize,
}

impl ResourceLimiter for MeteredLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_bytes += desired.saturating_sub(current);
        }
        Ok(allowed)
    }

    // Delegated too: with `trap_on_grow_failure`, a refused growth traps.
    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::Host for StoreState {}

impl current::taskflow::auth::host::Host for StoreState {
    async fn settings(&mut self) -> wit::PolicySettings {
        wit::PolicySettings::clone(&self.env.settings.load())
    }

    async fn find_user(&mut self, username: String) -> Result<Option<wit::UserRecord>, String> {
        let users = Arc::clone(&self.env.users);
        let lookup = self.clock.kind().lookup();
        let user = self
            .outside_deadline(users.find_user(&username, lookup))
            .await?;
        Ok(user.map(|u| wit::UserRecord {
            username: u.username,
            password_hash: u.password_hash,
            scopes: u.scopes,
        }))
    }

    async fn find_token_status(
        &mut self,
        token_id: String,
        subject: String,
        issued_at: u64,
    ) -> Result<wit::TokenStatus, String> {
        let users = Arc::clone(&self.env.users);
        let status = self
            .outside_deadline(users.token_status(&token_id, &subject, issued_at))
            .await?;
        Ok(super::convert::token_status(status))
    }
}
