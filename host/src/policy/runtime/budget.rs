//! How long a call may run, and how much of the machine calls that run
//! long may take together.
//!
//! Each kind of call has a deadline of its own: a Bearer decision or a
//! refresh grant takes microseconds (7 µs HS256, 150 µs EdDSA in the
//! component), a password grant tens of milliseconds (argon2id, ~43 ms).
//! Time spent awaiting the host's imports (storage) does not count: storage
//! has its own timeout. Nor does waiting for a slot to hash a password in:
//! that is queueing behind other password work. The hashing itself does.
//!
//! The engine's epoch advances every [`EPOCH_TICK`] (1 ms). A call that sees
//! a tick notes its thread's CPU time and runs on; at the next tick it
//! counts the CPU time it used and parks for a tick, so a call that spins
//! never holds a worker thread for more than two ticks, and runs at most
//! every other one. CPU time, not wall time, decides whether a call has
//! overrun its kind's normal cost ([`CallKind::normal_cost`]: 0.5 ms for a
//! decision, whose real cost is 7–170 µs): a busy or preempted thread must
//! not make a normal call look long. A call past its normal cost must take
//! one of a few *overrun slots* (one per two cores) or be refused at once,
//! and while it holds one it parks three ticks for each it runs. Together
//! with the delay of a faulted request's answer (`FAULT_ANSWER_DELAY` in the
//! runtime), this keeps misbehaving calls to a small share of the machine:
//! on 2 cores, with 4 clients sending spinning requests back to back and 2
//! more sending panics and memory bombs, valid Bearer traffic kept 81% of
//! its throughput with no request failed (docs/benchmarks.md), where before
//! one spinning call held a whole worker for its 2 s deadline and two of
//! them stalled the server.
//!
//! Deadlines are in time the call ran: since it started, less the time it
//! awaited imports or was parked at ticks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::UpdateDeadline;

use crate::policy::Lookup;

/// How often the epoch advances: the granularity of deadlines and of
/// yielding to the async runtime.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Ticks an overrunning call sleeps after each tick it runs.
const OVERRUN_SLEEP_TICKS: u32 = 3;

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

/// Memory a decision may allocate above its instance's start, when that
/// start is large.
const DECISION_HEADROOM: usize = 8 << 20;

impl CallKind {
    /// Past this, a call of this kind has overrun what it normally costs
    /// (with a wide margin for a loaded machine) and needs an overrun slot.
    fn normal_cost(self) -> Duration {
        match self {
            CallKind::Decision | CallKind::Refresh => Duration::from_micros(500),
            CallKind::Password => Duration::from_millis(250),
        }
    }

    /// Most memory an instance for calls of this kind may grow to, under
    /// the sandbox's cap, for a component whose fresh instance holds
    /// `instance_bytes` (0: not known yet). Decisions run on reused
    /// instances that never do password work: a Rust policy's ~1 MiB
    /// instance needs a few MiB, and a call that allocates without bound
    /// stops at 16 MiB, a quarter of the work a 64 MiB bomb costs. An
    /// interpreter starts bigger (CPython ~13 MiB), so its decisions get
    /// [`DECISION_HEADROOM`] above its own start instead.
    pub(super) fn memory_cap(self, sandbox_cap: usize, instance_bytes: usize) -> usize {
        match self {
            CallKind::Decision | CallKind::Refresh if instance_bytes > 0 => {
                sandbox_cap.min((16 << 20).max(instance_bytes + DECISION_HEADROOM))
            }
            CallKind::Decision | CallKind::Refresh | CallKind::Password => sandbox_cap,
        }
    }

    /// The kind's name, for messages.
    fn name(self) -> &'static str {
        match self {
            CallKind::Decision => "decision",
            CallKind::Refresh => "refresh",
            CallKind::Password => "password",
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
    /// Password grants, password hashing, the self-check, and starting an
    /// instance (see [`CallClock::start_instantiation`]).
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

/// A call stopped at its deadline, with what its time went on: enough to
/// tell a policy that spins from a machine too busy to run it.
#[derive(Debug, thiserror::Error)]
#[error(
    "deadline exceeded: {what} ran {ran} ms of its {deadline} ms ({cpu} ms of CPU time, {primitives} ms in the host's primitives)",
    what = self.what(),
    ran = self.ran.as_millis(),
    deadline = self.deadline.as_millis(),
    cpu = self.cpu.as_millis(),
    primitives = self.in_primitives.as_millis()
)]
pub(super) struct DeadlineExceeded {
    kind: CallKind,
    starting: bool,
    ran: Duration,
    deadline: Duration,
    cpu: Duration,
    in_primitives: Duration,
}

impl DeadlineExceeded {
    /// What ran: a call, or the start of an instance for one.
    fn what(&self) -> String {
        let kind = self.kind.name();
        if self.starting {
            format!("starting an instance for a {kind} call")
        } else {
            format!("a {kind} call")
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
    /// Whether the clock times the start of an instance, not a call.
    starting: bool,
    started: Instant,
    in_imports: Duration,
    /// Time in the host's primitives (argon2id, Ed25519): part of the
    /// call's running time, counted apart for the deadline's message.
    in_primitives: Duration,
    /// Nanoseconds the call spent parked at ticks (yielded or sleeping),
    /// added by the parking future when it resumes.
    parked: Arc<AtomicU64>,
    /// The thread's CPU time at the first tick of the current stretch of
    /// running (since the call started, an import returned or it parked).
    cpu_mark: Option<Duration>,
    /// CPU time the call used between ticks: what decides an overrun. Not
    /// wall time, which grows when the thread is preempted or the machine
    /// is busy, and would make a normal call look long.
    cpu_ran: Duration,
    deadline: Duration,
    /// CPU time past which the call needs an overrun slot.
    normal_cost: Duration,
    overrun: Option<OwnedSemaphorePermit>,
    slots: Arc<Semaphore>,
    slot_count: usize,
}

/// What starting an instance normally costs at most: ~0.15 ms for a Rust
/// policy, ~4 ms for CPython (whose heap the instance copies in), more on
/// a loaded machine. Starting one is the host's choice (the pool had none
/// idle), not the call's doing, so it is not held to a decision's 0.5 ms.
const INSTANTIATION_NORMAL_COST: Duration = Duration::from_millis(25);

impl CallClock {
    pub(super) fn new(slots: Arc<Semaphore>, slot_count: usize) -> Self {
        Self {
            kind: CallKind::Decision,
            starting: false,
            started: Instant::now(),
            in_imports: Duration::ZERO,
            in_primitives: Duration::ZERO,
            parked: Arc::new(AtomicU64::new(0)),
            cpu_mark: None,
            cpu_ran: Duration::ZERO,
            deadline: Duration::ZERO,
            normal_cost: Duration::ZERO,
            overrun: None,
            slots,
            slot_count,
        }
    }

    /// Starts timing a call of `kind`.
    pub(super) fn start(&mut self, kind: CallKind, deadlines: &CallDeadlines) {
        self.kind = kind;
        self.starting = false;
        self.started = Instant::now();
        self.in_imports = Duration::ZERO;
        self.in_primitives = Duration::ZERO;
        self.parked.store(0, Ordering::Relaxed);
        self.cpu_mark = None;
        self.cpu_ran = Duration::ZERO;
        self.deadline = deadlines.of(kind);
        self.normal_cost = kind.normal_cost();
        self.overrun = None;
    }

    /// Starts timing the instantiation of an instance for calls of `kind`,
    /// with the normal cost of starting an instance and under the start-up
    /// (password) deadline when it is the longer. Starting an instance
    /// takes no input, the component's first start was held to that
    /// deadline when it loaded, and the pool having none idle is the
    /// host's doing: a burst that drains it on a busy machine (CPython's
    /// ~4 ms start, many at once) must not turn into refused requests.
    /// The call that follows is held to its own deadline again.
    pub(super) fn start_instantiation(&mut self, kind: CallKind, deadlines: &CallDeadlines) {
        self.start(kind, deadlines);
        self.starting = true;
        self.deadline = self.deadline.max(deadlines.password);
        self.normal_cost = self.normal_cost.max(INSTANTIATION_NORMAL_COST);
    }

    /// The call ended: its overrun slot, if it took one, is free again.
    pub(super) fn finish(&mut self) {
        self.overrun = None;
    }

    pub(super) fn kind(&self) -> CallKind {
        self.kind
    }

    /// An import was awaited for `took`: off the deadline, and the end of
    /// a stretch of running (the call may resume on another thread).
    pub(super) fn add_import_time(&mut self, took: Duration) {
        self.in_imports += took;
        self.cpu_mark = None;
    }

    /// The host's primitives computed for the call for `took`: counted as
    /// running, and the end of a stretch of running, as for an import.
    pub(super) fn add_primitive_time(&mut self, took: Duration) {
        self.in_primitives += took;
        self.cpu_mark = None;
    }

    #[cfg(test)]
    pub(super) fn import_time(&self) -> Duration {
        self.in_imports
    }

    #[cfg(test)]
    pub(super) fn primitive_time(&self) -> Duration {
        self.in_primitives
    }

    /// How long the call has run: since it started, less the time it
    /// awaited imports or was parked at a tick.
    fn ran(&self) -> Duration {
        let parked = Duration::from_nanos(self.parked.load(Ordering::Relaxed));
        self.started
            .elapsed()
            .saturating_sub(self.in_imports)
            .saturating_sub(parked)
    }

    /// What the running call does at an epoch tick: trap past its deadline;
    /// at the first tick of a stretch of running, note the thread's CPU
    /// time and go on; at the next, count the CPU time used, take an
    /// overrun slot past the normal cost (or be refused), and park: a tick,
    /// or [`OVERRUN_SLEEP_TICKS`] holding a slot.
    pub(super) fn on_tick(&mut self) -> wasmtime::Result<UpdateDeadline> {
        let ran = self.ran();
        if ran >= self.deadline {
            return Err(wasmtime::Error::new(DeadlineExceeded {
                kind: self.kind,
                starting: self.starting,
                ran,
                deadline: self.deadline,
                cpu: self.cpu_ran,
                in_primitives: self.in_primitives,
            }));
        }
        let now = thread_cpu_time();
        match self.cpu_mark.replace(now) {
            None => return Ok(UpdateDeadline::Continue(1)),
            Some(mark) => self.cpu_ran += now.saturating_sub(mark),
        }
        if self.cpu_ran >= self.normal_cost && self.overrun.is_none() {
            match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(slot) => self.overrun = Some(slot),
                Err(_) => return Err(wasmtime::Error::new(Overrun(self.slot_count))),
            }
        }
        self.cpu_mark = None;
        let ticks = if self.overrun.is_some() {
            OVERRUN_SLEEP_TICKS
        } else {
            1
        };
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(park(Arc::clone(&self.parked), EPOCH_TICK * ticks)),
        ))
    }
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill in.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// Sleeps `time`, then adds how long it was away to `parked`.
async fn park(parked: Arc<AtomicU64>, time: Duration) {
    let started = Instant::now();
    tokio::time::sleep(time).await;
    let away = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    parked.fetch_add(away, Ordering::Relaxed);
}

/// Overrun slots for a machine of `cores`: one per two cores, at least one.
pub(super) fn overrun_slots(cores: usize) -> usize {
    (cores / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_get_headroom_above_a_heavy_instance_within_the_sandbox_cap() {
        const MIB: usize = 1 << 20;
        let decision = CallKind::Decision;
        assert_eq!(decision.memory_cap(64 * MIB, MIB), 16 * MIB);
        assert_eq!(decision.memory_cap(64 * MIB, 13 * MIB), 21 * MIB);
        assert_eq!(decision.memory_cap(16 * MIB, 13 * MIB), 16 * MIB);
        // Not known yet: the first instance may need all of it to start.
        assert_eq!(decision.memory_cap(64 * MIB, 0), 64 * MIB);
        assert_eq!(CallKind::Password.memory_cap(64 * MIB, MIB), 64 * MIB);
    }

    fn clock(slots: usize) -> CallClock {
        CallClock::new(Arc::new(Semaphore::new(slots)), slots)
    }

    /// As if the call had used a lot of CPU since its stretch's first tick.
    fn spun(clock: &mut CallClock) {
        clock.cpu_ran = Duration::from_millis(5);
        clock.cpu_mark = Some(thread_cpu_time());
    }

    #[tokio::test]
    async fn a_call_within_its_normal_cost_only_yields() {
        let mut clock = clock(0);
        clock.start(CallKind::Decision, &CallDeadlines::default());
        assert!(matches!(
            clock.on_tick().unwrap(),
            UpdateDeadline::Continue(1)
        ));
        assert!(matches!(
            clock.on_tick().unwrap(),
            UpdateDeadline::YieldCustom(1, _)
        ));
        assert!(clock.overrun.is_none());
    }

    #[tokio::test]
    async fn past_its_deadline_a_call_is_interrupted() {
        let mut clock = clock(1);
        let deadlines = CallDeadlines {
            decision: Duration::ZERO,
            password: Duration::ZERO,
        };
        clock.start(CallKind::Decision, &deadlines);
        clock.add_primitive_time(Duration::from_millis(3));
        let stopped = clock.on_tick().err().expect("past its deadline");
        let stopped = stopped
            .downcast_ref::<DeadlineExceeded>()
            .expect("a deadline error");
        let message = stopped.to_string();
        assert!(
            message.starts_with("deadline exceeded: a decision call ran "),
            "{message}"
        );
        assert!(
            message.ends_with(" ms of its 0 ms (0 ms of CPU time, 3 ms in the host's primitives)"),
            "{message}"
        );
    }

    /// A decision that has to start an instance first (the pool had none
    /// idle) gives the start the start-up deadline: a burst of CPython
    /// starts on a busy machine ran past a decision's 50 ms and was
    /// refused. The decision itself is held to its own deadline again.
    #[tokio::test]
    async fn starting_an_instance_is_held_to_the_start_up_deadline() {
        let mut clock = clock(1);
        let deadlines = CallDeadlines {
            decision: Duration::from_millis(5),
            password: Duration::from_secs(1),
        };
        clock.start_instantiation(CallKind::Decision, &deadlines);
        clock.started -= Duration::from_millis(100);
        assert!(clock.on_tick().is_ok(), "a start within 1 s");
        clock.started -= Duration::from_secs(1);
        let stopped = clock.on_tick().err().expect("a start past 1 s");
        let message = stopped
            .downcast_ref::<DeadlineExceeded>()
            .unwrap()
            .to_string();
        assert!(
            message
                .starts_with("deadline exceeded: starting an instance for a decision call ran 1"),
            "{message}"
        );
        assert!(message.contains(" ms of its 1000 ms "), "{message}");
        clock.start(CallKind::Decision, &deadlines);
        clock.started -= Duration::from_millis(100);
        let stopped = clock.on_tick().err().expect("a decision past 5 ms");
        let message = stopped
            .downcast_ref::<DeadlineExceeded>()
            .unwrap()
            .to_string();
        assert!(
            message.starts_with("deadline exceeded: a decision call ran 1"),
            "{message}"
        );
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
        clock.add_import_time(Duration::from_micros(39_800));
        assert!(matches!(
            clock.on_tick().unwrap(),
            UpdateDeadline::Continue(1)
        ));
    }

    #[tokio::test]
    async fn time_parked_at_ticks_does_not_count() {
        let mut clock = clock(1);
        clock.start(CallKind::Decision, &CallDeadlines::default());
        clock.started -= Duration::from_millis(60);
        clock.parked.store(
            Duration::from_micros(59_800).as_nanos() as u64,
            Ordering::Relaxed,
        );
        assert!(matches!(
            clock.on_tick().unwrap(),
            UpdateDeadline::Continue(1)
        ));
    }

    #[tokio::test]
    async fn overrunning_calls_share_the_slots_and_the_rest_are_refused() {
        let slots = Arc::new(Semaphore::new(1));
        let deadlines = CallDeadlines::default();
        let mut first = CallClock::new(Arc::clone(&slots), 1);
        let mut second = CallClock::new(Arc::clone(&slots), 1);
        for clock in [&mut first, &mut second] {
            clock.start(CallKind::Decision, &deadlines);
            spun(clock);
        }
        assert!(matches!(
            first.on_tick().unwrap(),
            UpdateDeadline::YieldCustom(1, _)
        ));
        assert!(first.overrun.is_some());
        let refused = second.on_tick().err().expect("no slot was free");
        assert!(refused.downcast_ref::<Overrun>().is_some());
        first.finish();
        second.start(CallKind::Decision, &deadlines);
        spun(&mut second);
        assert!(second.on_tick().is_ok());
        assert!(second.overrun.is_some());
    }

    /// Starting a heavy instance (CPython: milliseconds) for a decision is
    /// not an overrun of the decision, with no slot free; the same CPU
    /// spent by the decision itself is.
    #[tokio::test]
    async fn starting_an_instance_is_not_held_to_a_decisions_cost() {
        let deadlines = CallDeadlines::default();
        let mut clock = clock(0);
        clock.start_instantiation(CallKind::Decision, &deadlines);
        spun(&mut clock);
        assert!(clock.on_tick().is_ok());
        assert!(clock.overrun.is_none());
        clock.start(CallKind::Decision, &deadlines);
        spun(&mut clock);
        let refused = clock.on_tick().err().expect("no slot was free");
        assert!(refused.downcast_ref::<Overrun>().is_some());
    }

    #[test]
    fn the_threads_cpu_time_advances_with_work() {
        let before = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(thread_cpu_time() > before, "{x}");
    }
}
