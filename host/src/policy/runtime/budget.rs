//! How long a call may run, and how much of the machine calls that run
//! long may take together.
//!
//! Each kind of call has a deadline of its own: a Bearer decision or a
//! refresh grant takes microseconds (7 µs HS256, 150 µs EdDSA in the
//! component), a password grant tens of milliseconds (argon2id, ~43 ms).
//! Time spent awaiting the host's imports (storage) does not count: storage
//! has its own timeout.
//!
//! The engine's epoch advances every [`EPOCH_TICK`], and at each tick a
//! running call yields to the async runtime, so a call that spins never
//! holds a worker thread for more than a tick. A call still running past
//! its kind's normal cost ([`CallKind::normal_cost`]) has overrun: it must
//! take one of a few *overrun slots* (one per two cores) or be refused at
//! once, and while it holds one it runs at most every other tick (it sleeps
//! a tick after each tick it ran). So all overrunning calls together use at
//! most a quarter of the machine: on 2 cores, measured with 4 clients
//! sending spinning requests back to back and 2 more sending panics and
//! memory bombs, valid Bearer traffic kept most of its throughput (see
//! docs/benchmarks.md), where before one spinning call held a whole worker
//! for its 2 s deadline and two of them stalled the server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::UpdateDeadline;

use crate::policy::Lookup;

/// How often the epoch advances: the granularity of deadlines and of
/// yielding to the async runtime.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// What a call does, which decides its deadline and what it may look up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CallKind {
    /// A Bearer decision: microseconds, on the request's task.
    Decision,
    /// A refresh grant: microseconds (no password work), on the request's task.
    Refresh,
    /// Password work (the password grant, hashing a new password, the
    /// self-check): tens of milliseconds, on the policy's grant threads.
    Password,
}

impl CallKind {
    /// Past this, a call of this kind has overrun what it normally costs
    /// (with a wide margin for a loaded machine) and needs an overrun slot.
    fn normal_cost(self) -> Duration {
        match self {
            CallKind::Decision | CallKind::Refresh => Duration::from_millis(10),
            CallKind::Password => Duration::from_millis(250),
        }
    }

    /// Where the call's user lookups are answered from: a decision may use
    /// the token-status memory; a grant, which mints a token, reads the
    /// database.
    pub(super) fn lookup(self) -> Lookup {
        match self {
            CallKind::Decision => Lookup::Decision,
            CallKind::Refresh | CallKind::Password => Lookup::Grant,
        }
    }
}

/// The deadline of each kind of call.
#[derive(Clone, Copy, Debug)]
pub struct CallDeadlines {
    /// Bearer decisions and refresh grants.
    pub decision: Duration,
    /// Password grants, password hashing and the self-check.
    pub password: Duration,
}

impl Default for CallDeadlines {
    fn default() -> Self {
        Self {
            decision: Duration::from_millis(50),
            password: Duration::from_secs(2),
        }
    }
}

impl CallDeadlines {
    fn of(&self, kind: CallKind) -> Duration {
        match kind {
            CallKind::Decision | CallKind::Refresh => self.decision,
            CallKind::Password => self.password,
        }
    }
}

/// A call refused because every overrun slot was taken.
#[derive(Debug, thiserror::Error)]
#[error("refused: ran past its normal cost while {0} long-running calls were running")]
pub(super) struct Overrun(pub(super) usize);

/// The clock of the call an instance is running.
pub(super) struct CallClock {
    kind: CallKind,
    started: Instant,
    in_imports: Duration,
    deadline: Duration,
    overrun: Option<OwnedSemaphorePermit>,
    slots: Arc<Semaphore>,
    slot_count: usize,
}

impl CallClock {
    pub(super) fn new(slots: Arc<Semaphore>, slot_count: usize) -> Self {
        Self {
            kind: CallKind::Decision,
            started: Instant::now(),
            in_imports: Duration::ZERO,
            deadline: Duration::ZERO,
            overrun: None,
            slots,
            slot_count,
        }
    }

    /// Starts timing a call of `kind`.
    pub(super) fn start(&mut self, kind: CallKind, deadlines: &CallDeadlines) {
        self.kind = kind;
        self.started = Instant::now();
        self.in_imports = Duration::ZERO;
        self.deadline = deadlines.of(kind);
        self.overrun = None;
    }

    /// The call ended: its overrun slot, if it took one, is free again.
    pub(super) fn finish(&mut self) {
        self.overrun = None;
    }

    pub(super) fn kind(&self) -> CallKind {
        self.kind
    }

    pub(super) fn add_import_time(&mut self, took: Duration) {
        self.in_imports += took;
    }

    /// What the running call does at an epoch tick: trap past its deadline,
    /// be refused if it overran with no slot free, otherwise yield (and,
    /// overrunning, sleep a tick).
    pub(super) fn on_tick(&mut self) -> wasmtime::Result<UpdateDeadline> {
        let ran = self.started.elapsed().saturating_sub(self.in_imports);
        if ran >= self.deadline {
            return Ok(UpdateDeadline::Interrupt);
        }
        if ran >= self.kind.normal_cost() && self.overrun.is_none() {
            match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(slot) => self.overrun = Some(slot),
                Err(_) => return Err(wasmtime::Error::new(Overrun(self.slot_count))),
            }
        }
        Ok(if self.overrun.is_some() {
            UpdateDeadline::YieldCustom(1, Box::pin(tokio::time::sleep(EPOCH_TICK)))
        } else {
            UpdateDeadline::Yield(1)
        })
    }
}

/// Overrun slots for a machine of `cores`: one per two cores, at least one.
pub(super) fn overrun_slots(cores: usize) -> usize {
    (cores / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(slots: usize) -> CallClock {
        CallClock::new(Arc::new(Semaphore::new(slots)), slots)
    }

    #[tokio::test]
    async fn a_call_within_its_normal_cost_only_yields() {
        let mut clock = clock(1);
        clock.start(CallKind::Decision, &CallDeadlines::default());
        assert!(matches!(clock.on_tick().unwrap(), UpdateDeadline::Yield(1)));
    }

    #[tokio::test]
    async fn past_its_deadline_a_call_is_interrupted() {
        let mut clock = clock(1);
        let deadlines = CallDeadlines {
            decision: Duration::ZERO,
            password: Duration::ZERO,
        };
        clock.start(CallKind::Decision, &deadlines);
        assert!(matches!(
            clock.on_tick().unwrap(),
            UpdateDeadline::Interrupt
        ));
    }

    #[tokio::test]
    async fn import_time_does_not_count() {
        let mut clock = clock(1);
        let deadlines = CallDeadlines {
            decision: Duration::from_millis(30),
            password: Duration::from_secs(1),
        };
        clock.start(CallKind::Decision, &deadlines);
        clock.started -= Duration::from_millis(40);
        clock.add_import_time(Duration::from_millis(35));
        assert!(matches!(clock.on_tick().unwrap(), UpdateDeadline::Yield(1)));
    }

    #[tokio::test]
    async fn overrunning_calls_share_the_slots_and_the_rest_are_refused() {
        let slots = Arc::new(Semaphore::new(1));
        let deadlines = CallDeadlines::default();
        let mut first = CallClock::new(Arc::clone(&slots), 1);
        let mut second = CallClock::new(Arc::clone(&slots), 1);
        for clock in [&mut first, &mut second] {
            clock.start(CallKind::Decision, &deadlines);
            clock.started -= Duration::from_millis(20);
        }
        assert!(matches!(
            first.on_tick().unwrap(),
            UpdateDeadline::YieldCustom(1, _)
        ));
        let refused = second.on_tick().err().expect("no slot was free");
        assert!(refused.downcast_ref::<Overrun>().is_some());
        first.finish();
        second.start(CallKind::Decision, &deadlines);
        second.started -= Duration::from_millis(20);
        assert!(matches!(
            second.on_tick().unwrap(),
            UpdateDeadline::YieldCustom(1, _)
        ));
    }
}
