//! Ready instances kept for reuse.
//!
//! Why reuse (measured on 2 cores, see docs/benchmarks.md): a Bearer check
//! on a reused instance costs ~7 µs, on a fresh one ~60 µs with the pooling
//! allocator and ~95 µs without, against ~3 µs for native verification.
//! Reuse is safe because the policy's decisions take everything they need
//! as arguments or from imports; an instance is still replaced after
//! [`MAX_CALLS_PER_INSTANCE`] calls, and dropped after any fault.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::Store;

use super::imports::StoreState;
use super::worlds::Policy;

/// An instance is replaced after this many calls, so that whatever state a
/// policy accumulates (allocator fragmentation, caches) stays bounded.
const MAX_CALLS_PER_INSTANCE: u32 = 10_000;

/// Most linear memory the idle instances of one component hold together.
/// A Rust policy's instance is small, so the configured count decides; an
/// interpreter's (CPython: its whole heap) is many times larger, and then
/// this does, so that a heavy policy on many cores keeps fewer idle.
const IDLE_MEMORY_BUDGET: usize = 128 << 20;

/// A ready instance and the store it lives in.
pub(super) struct ReadyInstance {
    pub(super) store: Store<StoreState>,
    pub(super) policy: Policy,
    pub(super) calls: u32,
}

/// Idle instances of one loaded component.
pub(super) struct InstancePool {
    idle: Mutex<Vec<ReadyInstance>>,
    capacity: AtomicUsize,
}

impl InstancePool {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            capacity: AtomicUsize::new(capacity),
        }
    }

    /// Keeps at most as many idle instances of `instance_bytes` each as fit
    /// in [`IDLE_MEMORY_BUDGET`] (at least one, at most the configured count).
    pub(super) fn fit(&self, instance_bytes: usize) {
        let fitting = (IDLE_MEMORY_BUDGET / instance_bytes.max(1)).max(1);
        self.capacity.fetch_min(fitting, Ordering::Relaxed);
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
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
        if idle.len() < self.capacity() {
            idle.push(instance);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_instances_are_kept_idle_within_the_memory_budget() {
        let small = InstancePool::new(8);
        small.fit(2 << 20);
        assert_eq!(small.capacity(), 8);
        let heavy = InstancePool::new(64);
        heavy.fit(24 << 20);
        assert_eq!(heavy.capacity(), IDLE_MEMORY_BUDGET / (24 << 20));
        let huge = InstancePool::new(8);
        huge.fit(IDLE_MEMORY_BUDGET * 2);
        assert_eq!(huge.capacity(), 1);
    }
}
