//! What every loaded policy shares: the engine and its epoch ticker, the
//! linker, the compiled-component cache, the limits, and the threads that
//! run password work.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::LoadError;
use super::budget::{self, EPOCH_TICK};
use super::imports::StoreState;
use super::primitives::Ed25519Keys;
use super::worlds;
use crate::policy::SandboxLimits;

/// The engine, linker and limits every loaded policy shares.
pub(in crate::policy) struct Sandbox {
    pub(super) engine: Engine,
    pub(super) linker: Linker<StoreState>,
    pub(super) limits: SandboxLimits,
    /// Calls running at once, past which calls fail fast.
    pub(super) running: Semaphore,
    /// Calls past their normal cost at once; see [`budget`].
    pub(super) overrun_slots: Arc<Semaphore>,
    pub(super) overrun_slot_count: usize,
    /// Argon2 hashes the `primitives` import computes at once: one per
    /// password thread, whichever kind of call asks.
    pub(super) hash_slots: Arc<Semaphore>,
    /// Ed25519 public keys the `primitives` import worked out, for every
    /// loaded policy (the same signing keys serve each).
    pub(super) ed25519_keys: Arc<Ed25519Keys>,
    cache_dir: Option<PathBuf>,
    grants: GrantThreads,
}

impl Sandbox {
    pub(in crate::policy) fn new(
        limits: SandboxLimits,
        cache_dir: Option<PathBuf>,
    ) -> Result<Self, LoadError> {
        let engine = new_engine(&limits)?;
        let mut linker = Linker::<StoreState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        worlds::add_to_linker(&mut linker).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        start_epoch_ticker(&engine);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let overrun_slot_count = budget::overrun_slots(cores);
        Ok(Self {
            engine,
            linker,
            running: Semaphore::new(limits.max_instances.max(1)),
            overrun_slots: Arc::new(Semaphore::new(overrun_slot_count)),
            overrun_slot_count,
            hash_slots: Arc::new(Semaphore::new(limits.concurrent_hashes.max(1))),
            ed25519_keys: Arc::new(Ed25519Keys::new()),
            grants: GrantThreads::new(limits.concurrent_hashes.max(1))?,
            limits,
            cache_dir,
        })
    }

    pub(super) fn cache_dir(&self) -> Option<&Path> {
        self.cache_dir.as_deref()
    }

    /// Runs `work` (password work: tens of milliseconds of argon2) on the
    /// policy's own threads, so that it never holds one of the threads that
    /// serve requests, and awaits its result.
    pub(in crate::policy) async fn on_grant_threads<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, String> {
        self.grants
            .handle()
            .spawn(work)
            .await
            .map_err(|e| format!("password work failed: {e}"))
    }

    /// Compiles the component, or loads the result of an earlier
    /// compilation from the cache directory (keyed by the file's digest and
    /// the engine's settings). Slow: seconds of CPU for a fresh component.
    pub(super) fn compile(
        &self,
        path: &Path,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<Component, LoadError> {
        super::check_shape(path, bytes)?;
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            path: path.to_owned(),
            reason: super::one_line(&format!("{e:#}")),
        };
        let engine = &self.engine;
        let Some(cache_dir) = self.cache_dir() else {
            return Component::new(engine, bytes).map_err(invalid);
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let cached = cache_dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish()));
        if cached.exists() {
            // SAFETY: the cache directory is created 0700 by this program, and
            // entries are only ever written by `precompile_component` below with
            // an engine of the same settings (the file name carries their hash).
            match unsafe { Component::deserialize_file(engine, &cached) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(file = %cached.display(), error = %e, "ignoring unusable compiled component")
                }
            }
        }
        let compiled = engine.precompile_component(bytes).map_err(invalid)?;
        if let Err(e) = crate::files::write_private(&cached, &compiled) {
            tracing::warn!(file = %cached.display(), error = %e, "cannot cache the compiled component");
        }
        // SAFETY: `compiled` was produced just now by this engine.
        unsafe { Component::deserialize(engine, &compiled) }.map_err(invalid)
    }
}

fn new_engine(limits: &SandboxLimits) -> Result<Engine, LoadError> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(limits)));
    // Calls are futures (`call_async`): a call yields to the async runtime
    // at each epoch tick, and host imports await storage instead of
    // blocking a thread.
    config.epoch_interruption(true);
    Engine::new(&config).map_err(|e| LoadError::Engine(format!("{e:#}")))
}

/// The pooling allocator keeps memories, tables and the calls' async stacks
/// of finished instances for the next ones. A password grant instantiates
/// afresh each time (argon2's 19 MiB must not stay resident), and so does
/// every replacement of a faulted instance: measured back to back on 2
/// cores (the policy bench's "cheap hash, fresh instance" row, A-B-A-B),
/// 140–205 µs a grant pooled against 200–259 µs allocated on demand.
///
/// Slots for every instance that can exist at once: the calls running (at
/// most `max_instances`), the idle instances of the active component and of
/// one being swapped in, and a self-check's probe. An instance beyond them
/// fails to instantiate (503), as a call beyond `max_instances` does. Each
/// memory slot reserves address space, not memory: 4 GiB of it, so that
/// the compiled code needs no bounds checks.
fn pooling(limits: &SandboxLimits) -> PoolingAllocationConfig {
    let slots =
        u32::try_from(limits.max_instances + 2 * limits.idle_instances + 2).unwrap_or(u32::MAX);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        // A component built by `wasm32-wasip2` holds a few core instances
        // (the program and the shims that wire its imports) and tables.
        .total_core_instances(slots.saturating_mul(8))
        .total_tables(slots.saturating_mul(8))
        .total_memories(slots)
        .total_stacks(slots)
        .max_memory_size(limits.memory_bytes);
    pool
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is gone.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("policy-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}

/// A small async runtime of its own for password work: as many threads as
/// password hashes may run at once. Its calls are async like every other
/// (their imports await storage), but their tens of milliseconds of CPU
/// stay off the threads that serve requests.
struct GrantThreads {
    runtime: Option<tokio::runtime::Runtime>,
}

impl GrantThreads {
    fn new(threads: usize) -> Result<Self, LoadError> {
        // Its threads log where the code that made them logs: the process's
        // log, or, with several applications in one process (as in tests),
        // the log of the one these threads work for.
        let logs = tracing::dispatcher::get_default(Clone::clone);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("policy-grants")
            .on_thread_start(move || {
                std::mem::forget(tracing::dispatcher::set_default(&logs));
            })
            .enable_all()
            .build()
            .map_err(|e| LoadError::Engine(format!("cannot start the password threads: {e}")))?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the runtime lives until drop")
            .handle()
    }
}

impl Drop for GrantThreads {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed on an async thread;
        // this one is dropped wherever the last policy handle goes.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
