//! The persistent worker pool every CPU kernel splits its rows across.
//!
//! Decode calls [`ThreadPool::run`] about ten times per layer per token, so a call must cost
//! microseconds, not a thread spawn: workers wait on a generation counter, spinning briefly before
//! they park on a condition variable, and the caller takes part as thread 0.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle, Thread};

/// A waiting thread first spins (a few µs: the gap between two kernels of one decode step), then
/// yields its core for a while (so an oversubscribed machine still makes progress), then parks.
const SPIN_ITERS: u32 = 4_000;
const YIELD_ITERS: u32 = 4_000 + 200;

/// One step of the wait: returns false once the thread should park.
#[inline]
fn backoff(step: &mut u32) -> bool {
    if *step < SPIN_ITERS {
        std::hint::spin_loop();
    } else if *step < YIELD_ITERS {
        thread::yield_now();
    } else {
        return false;
    }
    *step += 1;
    true
}

/// The type-erased job of one `run` call: a pointer to the caller's closure.
type Job = *const (dyn Fn(usize, usize) + Sync);

struct Shared {
    /// Bumped once per `run`; a worker runs the job when it sees a generation it has not run.
    generation: AtomicUsize,
    /// Workers that have not yet finished the current job.
    pending: AtomicUsize,
    shutdown: AtomicBool,
    /// The current job; written by the caller before it bumps `generation`.
    job: UnsafeCell<Option<Job>>,
    /// The thread blocked in `run`, unparked by the last worker to finish.
    caller: UnsafeCell<Option<Thread>>,
    /// First panic payload raised by a worker during the current job.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Parked workers (guarded count) and the condition they wait on.
    sleepers: Mutex<usize>,
    wake: Condvar,
    /// Serializes `run` calls from different threads sharing the pool.
    run_lock: Mutex<()>,
}

// SAFETY: `job` and `caller` are written only by the thread holding `run_lock`, before it publishes
// them with a release increment of `generation`, and read by workers only after an acquire load of
// that new generation and before they decrement `pending`; the writer does not touch them again
// until `pending` reaches zero. The closure behind `job` is `Sync`, so calling it from any thread
// is sound. All other fields are atomics or mutexes.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointers are only dereferenced under that protocol.
unsafe impl Send for Shared {}

thread_local! {
    /// True on a thread currently executing a pool job (nested `run` then executes inline).
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

/// A fixed set of `n_threads - 1` persistent workers plus the calling thread.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    n_threads: usize,
}

impl ThreadPool {
    /// A pool of `n_threads` threads (0 is treated as 1): `n_threads - 1` workers are spawned and
    /// the thread calling [`ThreadPool::run`] is the last one.
    pub fn new(n_threads: usize) -> ThreadPool {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            generation: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            job: UnsafeCell::new(None),
            caller: UnsafeCell::new(None),
            panic: Mutex::new(None),
            sleepers: Mutex::new(0),
            wake: Condvar::new(),
            run_lock: Mutex::new(()),
        });
        let workers = (1..n_threads)
            .map(|ith| {
                let shared = Arc::clone(&shared);
                thread::Builder::new()
                    .name(format!("tandem-cpu-{ith}"))
                    .spawn(move || worker_loop(&shared, ith, n_threads))
                    .expect("failed to spawn a tandem-cpu worker thread")
            })
            .collect();
        ThreadPool {
            shared,
            workers,
            n_threads,
        }
    }

    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Calls `f(ith, nth)` exactly once for every `ith` in `0..nth` (`nth = n_threads()`), on
    /// distinct threads, the caller running `ith = 0`, and returns when all calls have returned.
    /// A panic in any call is re-raised here after every thread has finished.
    ///
    /// A `run` from inside a job of the same or another pool runs all `nth` calls inline on the
    /// current thread (no deadlock, no oversubscription).
    pub fn run<F: Fn(usize, usize) + Sync>(&self, f: F) {
        let nth = self.n_threads;
        if nth == 1 || IN_JOB.with(Cell::get) {
            for ith in 0..nth {
                f(ith, nth);
            }
            return;
        }
        let shared = &*self.shared;
        let _guard = lock(&shared.run_lock);
        let job: &(dyn Fn(usize, usize) + Sync) = &f;
        // SAFETY: only the lifetime is erased. The pointer is published to workers below and this
        // function does not return (or unwind) before `pending` is zero, i.e. before every worker
        // is done with it, so it never outlives `f`.
        let job: Job = unsafe { std::mem::transmute::<_, Job>(job) };
        // SAFETY: we hold `run_lock` and all workers finished the previous job (pending == 0), so
        // nobody else reads or writes these cells until we bump the generation.
        unsafe {
            *shared.job.get() = Some(job);
            *shared.caller.get() = Some(thread::current());
        }
        shared.pending.store(nth - 1, Ordering::Relaxed);
        shared.generation.fetch_add(1, Ordering::Release);
        // Taking the lock orders the bump before any worker's check-then-wait (no lost wakeup).
        if *lock(&shared.sleepers) > 0 {
            shared.wake.notify_all();
        }

        IN_JOB.with(|c| c.set(true));
        let mine = panic::catch_unwind(AssertUnwindSafe(|| f(0, nth)));
        IN_JOB.with(|c| c.set(false));

        let mut step = 0u32;
        while shared.pending.load(Ordering::Acquire) != 0 {
            if !backoff(&mut step) {
                // A stale unpark token only makes this return early; the loop re-checks.
                thread::park();
            }
        }
        // SAFETY: all workers are done (pending == 0), so nobody reads these cells any more.
        unsafe {
            *shared.job.get() = None;
            *shared.caller.get() = None;
        }
        let theirs = lock(&shared.panic).take();
        if let Err(payload) = mine {
            panic::resume_unwind(payload);
        }
        if let Some(payload) = theirs {
            panic::resume_unwind(payload);
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        {
            let _sleepers = lock(&self.shared.sleepers);
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            // A worker never panics itself (jobs are caught), so join only fails on a bug.
            let _ = w.join();
        }
    }
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("n_threads", &self.n_threads)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Jobs run outside every lock, so poisoning cannot leave the guarded data inconsistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn worker_loop(shared: &Shared, ith: usize, nth: usize) {
    IN_JOB.with(|c| c.set(true));
    let mut seen = 0usize;
    loop {
        // Wait for a new generation: spin, then sleep on the condvar.
        let mut step = 0u32;
        loop {
            if shared.shutdown.load(Ordering::Acquire) {
                return;
            }
            if shared.generation.load(Ordering::Acquire) != seen {
                break;
            }
            if backoff(&mut step) {
                continue;
            }
            let mut sleepers = lock(&shared.sleepers);
            *sleepers += 1;
            while shared.generation.load(Ordering::Acquire) == seen
                && !shared.shutdown.load(Ordering::Acquire)
            {
                sleepers = shared
                    .wake
                    .wait(sleepers)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            *sleepers -= 1;
        }
        seen = shared.generation.load(Ordering::Acquire);

        // SAFETY: the acquire load above saw the generation published after `job`/`caller` were
        // written, and the caller keeps them (and the closure) alive until `pending` reaches 0,
        // which happens only after our decrement below.
        let (job, caller) = unsafe { ((*shared.job.get()), (*shared.caller.get()).clone()) };
        if let Some(job) = job {
            // SAFETY: see above — the closure outlives this call.
            let f = unsafe { &*job };
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| f(ith, nth))) {
                let mut slot = lock(&shared.panic);
                if slot.is_none() {
                    *slot = Some(payload);
                }
            }
        }
        if shared.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(t) = caller {
                t.unpark();
            }
        }
    }
}

/// Number of physical cores (hyper-threads of one core counted once). Linux: unique
/// `(physical id, core id)` pairs of `/proc/cpuinfo`, else the sysfs topology; otherwise (and when
/// neither yields anything) `std::thread::available_parallelism`.
pub fn physical_cores() -> usize {
    let logical = thread::available_parallelism().map_or(1, |n| n.get());
    let found = if cfg!(any(target_os = "linux", target_os = "android")) {
        cores_from_cpuinfo().or_else(cores_from_sysfs)
    } else {
        None
    };
    match found {
        Some(n) if n >= 1 => n.min(logical),
        _ => logical,
    }
}

fn cores_from_cpuinfo() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mut cores = std::collections::HashSet::new();
    let mut package = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "physical id" => package = Some(value.trim().to_string()),
            "core id" => {
                cores.insert((package.clone(), value.trim().to_string()));
            }
            _ => {}
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

fn cores_from_sysfs() -> Option<usize> {
    let mut cores = std::collections::HashSet::new();
    for entry in std::fs::read_dir("/sys/devices/system/cpu").ok()?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(idx) = name.strip_prefix("cpu") else {
            continue;
        };
        if idx.is_empty() || !idx.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let topo = entry.path().join("topology");
        let read = |f: &str| std::fs::read_to_string(topo.join(f)).ok();
        if let (Some(pkg), Some(core)) = (read("physical_package_id"), read("core_id")) {
            cores.insert((pkg.trim().to_string(), core.trim().to_string()));
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// Splits `0..n` into `nth` contiguous, near-equal ranges whose boundaries are multiples of
/// `align` (except the final end `n`) and returns the `ith`. Ranges may be empty when there are
/// fewer aligned units than threads. `align` 0 is treated as 1.
pub fn split_range(n: usize, ith: usize, nth: usize, align: usize) -> Range<usize> {
    let align = align.max(1);
    let nth = nth.max(1);
    let units = n.div_ceil(align);
    let per = units / nth;
    let extra = units % nth;
    let start = ith * per + ith.min(extra);
    let end = start + per + usize::from(ith < extra);
    (start * align).min(n)..(end * align).min(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_range_covers_and_aligns() {
        for n in [0usize, 1, 7, 32, 33, 100, 896, 4865] {
            for nth in 1..=5 {
                for align in [1usize, 4, 16, 32] {
                    let mut next = 0;
                    for ith in 0..nth {
                        let r = split_range(n, ith, nth, align);
                        assert_eq!(r.start, next, "n={n} nth={nth} align={align}");
                        assert!(r.start <= r.end);
                        assert!(r.start.is_multiple_of(align) || r.start == n);
                        assert!(r.end.is_multiple_of(align) || r.end == n);
                        next = r.end;
                    }
                    assert_eq!(next, n);
                }
            }
        }
        // Near-equal: 10 units over 3 threads -> 4, 3, 3.
        assert_eq!(split_range(10, 0, 3, 1), 0..4);
        assert_eq!(split_range(10, 1, 3, 1), 4..7);
        assert_eq!(split_range(10, 2, 3, 1), 7..10);
        assert_eq!(split_range(10, 2, 3, 4), 8..10);
    }
}
