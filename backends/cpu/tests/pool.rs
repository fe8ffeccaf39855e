//! Thread pool tests: each index exactly once, panics propagate, rapid reuse, Drop joins.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_cpu::pool::{physical_cores, split_range, ThreadPool};

/// Runs `f` on a helper thread and fails (instead of hanging the suite) if it takes too long.
fn with_timeout(secs: u64, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => h.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The closure panicked: surface its message.
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("timed out after {secs}s (deadlock?)"),
    }
}

#[test]
fn run_calls_each_index_once_on_distinct_threads() {
    with_timeout(60, || {
        for n in [0usize, 1, 2, 3, 4, 7] {
            let pool = ThreadPool::new(n);
            let nth = n.max(1);
            assert_eq!(pool.n_threads(), nth);
            let counts: Vec<AtomicUsize> = (0..nth).map(|_| AtomicUsize::new(0)).collect();
            let ids = Mutex::new(Vec::new());
            let caller = std::thread::current().id();
            pool.run(|ith, n| {
                assert_eq!(n, nth);
                counts[ith].fetch_add(1, Ordering::SeqCst);
                ids.lock().unwrap().push((ith, std::thread::current().id()));
            });
            assert!(counts.iter().all(|c| c.load(Ordering::SeqCst) == 1));
            let mut ids = ids.into_inner().unwrap();
            ids.sort_by_key(|p| p.0);
            assert_eq!(ids[0].1, caller, "the caller runs ith = 0");
            let mut threads: Vec<_> = ids.iter().map(|p| format!("{:?}", p.1)).collect();
            threads.sort();
            threads.dedup();
            assert_eq!(threads.len(), nth, "each ith on its own thread");
        }
    });
}

#[test]
fn many_rapid_calls() {
    with_timeout(120, || {
        for nth in [2usize, 3] {
            let pool = ThreadPool::new(nth);
            let total = AtomicUsize::new(0);
            for _ in 0..10_000 {
                pool.run(|ith, _| {
                    total.fetch_add(ith + 1, Ordering::Relaxed);
                });
            }
            assert_eq!(total.load(Ordering::SeqCst), 10_000 * nth * (nth + 1) / 2);
        }
    });
}

#[test]
fn panic_in_a_worker_or_the_caller_propagates_and_pool_survives() {
    with_timeout(60, || {
        let pool = ThreadPool::new(3);
        for bad in [0usize, 1, 2] {
            let done = AtomicUsize::new(0);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.run(|ith, _| {
                    if ith == bad {
                        panic!("boom {ith}");
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                })
            }));
            let payload = r.expect_err("panic must propagate");
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default();
            assert_eq!(msg, format!("boom {bad}"));
            // The other threads still ran to completion before `run` returned.
            assert_eq!(done.load(Ordering::SeqCst), 2);
        }
        let total = AtomicUsize::new(0);
        pool.run(|_, _| {
            total.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(total.load(Ordering::SeqCst), 3);
    });
}

#[test]
fn nested_and_concurrent_runs_do_not_deadlock() {
    with_timeout(60, || {
        let pool = Arc::new(ThreadPool::new(2));
        let total = AtomicUsize::new(0);
        pool.run(|_, _| {
            pool.run(|_, _| {
                total.fetch_add(1, Ordering::SeqCst);
            });
        });
        assert_eq!(total.load(Ordering::SeqCst), 4);

        let handles: Vec<_> = (0..3)
            .map(|_| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    let n = AtomicUsize::new(0);
                    for _ in 0..500 {
                        pool.run(|_, _| {
                            n.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                    n.load(Ordering::SeqCst)
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 1000);
        }
    });
}

static EXITED: AtomicUsize = AtomicUsize::new(0);

struct ExitProbe;
impl Drop for ExitProbe {
    fn drop(&mut self) {
        EXITED.fetch_add(1, Ordering::SeqCst);
    }
}

thread_local! {
    static PROBE: std::cell::RefCell<Option<ExitProbe>> = const { std::cell::RefCell::new(None) };
}

#[test]
fn drop_joins_the_workers() {
    with_timeout(60, || {
        let pool = ThreadPool::new(4);
        pool.run(|ith, _| {
            if ith != 0 {
                PROBE.with(|p| *p.borrow_mut() = Some(ExitProbe));
            }
        });
        assert_eq!(EXITED.load(Ordering::SeqCst), 0);
        // Let the workers go to sleep on the condvar first, so Drop must wake them.
        std::thread::sleep(Duration::from_millis(50));
        drop(pool);
        // Thread-local destructors run as each worker exits, which join waits for.
        assert_eq!(EXITED.load(Ordering::SeqCst), 3);
    });
}

#[test]
fn physical_cores_is_sane() {
    let n = physical_cores();
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(n >= 1 && n <= logical, "{n} physical, {logical} logical");
}

#[test]
fn split_range_partitions() {
    assert_eq!(split_range(896, 0, 2, 4), 0..448);
    assert_eq!(split_range(896, 1, 2, 4), 448..896);
    assert_eq!(split_range(10, 1, 3, 4), 4..8);
    assert_eq!(split_range(3, 2, 4, 1), 2..3);
    assert_eq!(split_range(3, 3, 4, 1), 3..3);
}
