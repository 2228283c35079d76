//! The wall-clock cap: a deadline on every call into a module.
//!
//! Fuel bounds what a module computes, but not what that costs in time on a
//! busy or slow machine, nor any operation the price list gets wrong. One
//! background thread watches the deadlines of all running calls; when one
//! passes, it lowers that call's fuel limit to zero, so the module traps at
//! its next check (a branch back to a loop's start, or a call) exactly as if
//! it had run out of fuel, and the host reports
//! that the deadline, not the budget, stopped it.
//!
//! A call is also stopped early when the work it does is no longer wanted:
//! a [`ChainWorker`](crate::ChainWorker) that is dropped (its stream closed,
//! its client gone) cancels the call running on its thread.
//!
//! The watchdog lowers the call's fuel *limit* to zero, a global the guest
//! only reads (it counts its fuel used elsewhere), so the guest cannot
//! write the old value back over it. It still stores again every
//! [`REPEAT_EVERY`] until the call returns, which costs nothing and covers
//! a call that armed after the first store.

use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often an overdue call's fuel is emptied again.
const REPEAT_EVERY: Duration = Duration::from_millis(5);

/// Where a running instance keeps its fuel limit: the i64 value of the
/// limit global inside the instance's `VMContext`.
#[derive(Clone, Copy)]
pub(crate) struct FuelCell(NonNull<i64>);

// SAFETY: the cell is only written through an atomic store, and only while
// the call that registered it is armed (see `Watchdog::arm`).
unsafe impl Send for FuelCell {}

impl FuelCell {
    /// # Safety
    /// `ptr` must point at the fuel global's value, 8-byte aligned, and stay
    /// valid for as long as any [`Armed`] made from this cell exists.
    pub(crate) unsafe fn new(ptr: NonNull<i64>) -> Self {
        FuelCell(ptr)
    }

    fn empty(self) {
        // SAFETY: per `new`, valid and aligned while armed; the watchdog
        // only calls this while it holds the entry of an armed call.
        unsafe { AtomicI64::from_ptr(self.0.as_ptr()) }.store(0, Ordering::Relaxed);
    }
}

struct Entry {
    deadline: Instant,
    fuel: FuelCell,
    fired: Arc<AtomicBool>,
    cancel: Option<Arc<AtomicBool>>,
}

impl Entry {
    fn overdue(&self, now: Instant) -> bool {
        self.deadline <= now || self.cancel.as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed))
    }
}

thread_local! {
    /// The cancel flag of the worker whose thread this is, if any.
    static CANCEL: std::cell::RefCell<Option<Arc<AtomicBool>>> = const { std::cell::RefCell::new(None) };
}

/// Makes every call this thread makes from now on stop when `flag` is set
/// and [`cancel`] is called with it.
pub(crate) fn cancel_this_threads_calls_with(flag: Arc<AtomicBool>) {
    CANCEL.with(|cancel| *cancel.borrow_mut() = Some(flag));
}

/// Sets `flag` and stops the call running under it, if any.
pub(crate) fn cancel(flag: &AtomicBool) {
    flag.store(true, Ordering::Relaxed);
    let watchdog = watchdog();
    // Taking the lock orders the store before the watchdog's next look.
    let _calls = watchdog.calls.lock().expect("watchdog lock");
    watchdog.wake.notify_one();
}

#[derive(Default)]
struct Calls {
    next_id: u64,
    armed: HashMap<u64, Entry>,
    /// When the watchdog thread will next look, if it sleeps with a
    /// timeout. A call whose deadline is later needs no wake-up: the thread
    /// looks again by then anyway, so arming costs no thread switch.
    next_look: Option<Instant>,
}

/// The process's watchdog thread and the calls it watches.
struct Watchdog {
    calls: Mutex<Calls>,
    wake: Condvar,
}

fn watchdog() -> &'static Watchdog {
    static WATCHDOG: OnceLock<&'static Watchdog> = OnceLock::new();
    WATCHDOG.get_or_init(|| {
        let watchdog: &'static Watchdog =
            Box::leak(Box::new(Watchdog { calls: Mutex::new(Calls::default()), wake: Condvar::new() }));
        std::thread::Builder::new()
            .name("smartmodule-watchdog".into())
            .spawn(move || watchdog.run())
            .expect("spawn the SmartModule watchdog thread");
        watchdog
    })
}

impl Watchdog {
    fn run(&self) {
        let mut calls = self.calls.lock().expect("watchdog lock");
        loop {
            let now = Instant::now();
            let mut next_wake: Option<Instant> = None;
            for entry in calls.armed.values() {
                if entry.overdue(now) {
                    entry.fuel.empty();
                    entry.fired.store(true, Ordering::Relaxed);
                    next_wake = Some(next_wake.map_or(now + REPEAT_EVERY, |t| t.min(now + REPEAT_EVERY)));
                } else {
                    next_wake = Some(next_wake.map_or(entry.deadline, |t| t.min(entry.deadline)));
                }
            }
            calls.next_look = next_wake;
            calls = match next_wake {
                Some(at) => {
                    let timeout = at.saturating_duration_since(Instant::now());
                    self.wake.wait_timeout(calls, timeout).expect("watchdog lock").0
                }
                None => self.wake.wait(calls).expect("watchdog lock"),
            };
        }
    }
}

/// A call being watched; dropping it stops the watch. Once dropped, the
/// watchdog never touches the call's fuel again.
pub(crate) struct Armed {
    id: u64,
    fired: Arc<AtomicBool>,
}

impl Armed {
    /// Watches a call that must end within `limit` from now.
    pub(crate) fn new(fuel: FuelCell, limit: Duration) -> Armed {
        let watchdog = watchdog();
        let fired = Arc::new(AtomicBool::new(false));
        let deadline =
            Instant::now().checked_add(limit).unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 30));
        let mut calls = watchdog.calls.lock().expect("watchdog lock");
        let id = calls.next_id;
        calls.next_id += 1;
        let cancel = CANCEL.with(|cancel| cancel.borrow().clone());
        if cancel.as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed)) {
            // Cancelled before it started: stop at the first settlement.
            fuel.empty();
            fired.store(true, Ordering::Relaxed);
        }
        calls.armed.insert(id, Entry { deadline, fuel, fired: fired.clone(), cancel });
        if calls.next_look.is_none_or(|at| deadline < at) {
            calls.next_look = Some(deadline);
            watchdog.wake.notify_one();
        }
        Armed { id, fired }
    }

    /// Whether the deadline passed, or the call was cancelled, and its fuel
    /// was emptied.
    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::Relaxed)
    }

    /// Whether this thread's calls were cancelled.
    pub(crate) fn cancelled() -> bool {
        CANCEL.with(|cancel| cancel.borrow().as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed)))
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        // Removed under the lock the watchdog writes under, so no write can
        // follow this drop.
        watchdog().calls.lock().expect("watchdog lock").armed.remove(&self.id);
    }
}
