//! Ready instances kept for reuse.
//!
//! Why reuse (measured on 2 cores, see docs/benchmarks.md): a Bearer check
//! on a reused instance costs ~7 µs, on a fresh one ~60 µs with the pooling
//! allocator and ~95 µs without, against ~3 µs for native verification.
//! Reuse is safe because the policy's decisions take everything they need
//! as arguments or from imports; an instance is still replaced after
//! [`MAX_CALLS_PER_INSTANCE`] calls, and dropped after any fault.

use std::sync::Mutex;

use wasmtime::Store;

use super::imports::StoreState;
use super::worlds::Policy;

/// An instance is replaced after this many calls, so that whatever state a
/// policy accumulates (allocator fragmentation, caches) stays bounded.
const MAX_CALLS_PER_INSTANCE: u32 = 10_000;

/// A ready instance and the store it lives in.
pub(super) struct ReadyInstance {
    pub(super) store: Store<StoreState>,
    pub(super) policy: Policy,
    pub(super) calls: u32,
}

/// Idle instances of one loaded component.
pub(super) struct InstancePool {
    idle: Mutex<Vec<ReadyInstance>>,
    capacity: usize,
}

impl InstancePool {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            capacity,
        }
    }

    pub(super) fn take(&self) -> Option<ReadyInstance> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Keeps `instance` for the next call, unless it has served enough or
    /// enough are idle already.
    pub(super) fn give_back(&self, instance: ReadyInstance) {
        if instance.calls >= MAX_CALLS_PER_INSTANCE {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.capacity {
            idle.push(instance);
        }
    }
}
