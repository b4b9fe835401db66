//! The bounded pool of workers that runs the heavy calls: `eth_call`, `eth_estimateGas`,
//! `eth_createAccessList` and `debug_trace*` ([`is_heavy`]).
//!
//! - A fixed number of threads (`--rpc-call-workers`, default: cores − 1, at least 1), each with
//!   its own read connection to the database, so a long call never holds a connection or a lock
//!   that sealing, import or the light RPC methods need.
//! - A bounded queue in front (`--rpc-call-queue`); when it is full the call is refused at once
//!   with a -32005 error naming both flags, never queued without bound.
//! - Each call has a [`Budget`]: `--rpc-call-timeout` from the moment its request arrived (time
//!   in the queue counts, and the heavy calls of one batch share one limit), enforced inside revm
//!   by [`crate::execution::budget::Meter`].
//! - On Linux the worker threads run at a lower scheduling priority (nice 10, `setpriority` on
//!   the thread id), so the sealer's and the server's threads win the CPU when it is contended.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use super::error::{RpcError, RpcResult};
use crate::execution::budget::Budget;
use crate::storage::ReadPool;

/// The nice value of the worker threads (0 is normal, 19 the lowest priority).
pub const WORKER_NICE: i32 = 10;

/// Limits of the heavy calls (`--rpc-call-*`, `--rpc-trace-*`).
#[derive(Debug, Clone)]
pub struct CallLimits {
    /// Wall-clock limit of one call (`--rpc-call-timeout`); `None`: no limit.
    pub timeout: Option<Duration>,
    /// Worker threads (`--rpc-call-workers`).
    pub workers: usize,
    /// Calls that may wait for a worker (`--rpc-call-queue`).
    pub queue: usize,
    /// Most EVM steps of one trace request (`--rpc-trace-max-steps`); `None`: no limit.
    pub trace_max_steps: Option<u64>,
    /// Most bytes a tracer may record for one request, as estimated per step and frame
    /// (`--rpc-trace-max-bytes`); `None`: no limit.
    pub trace_max_bytes: Option<u64>,
}

impl CallLimits {
    /// Default worker count: one fewer than the cores, at least one, so a sealer keeps a core.
    pub fn default_workers() -> usize {
        std::thread::available_parallelism().map(|n| n.get().saturating_sub(1)).unwrap_or(1).max(1)
    }
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            timeout: Some(Duration::from_secs(5)),
            workers: Self::default_workers(),
            queue: 16,
            trace_max_steps: Some(10_000_000),
            trace_max_bytes: Some(128 << 20),
        }
    }
}

/// Whether `method` runs on the call workers.
pub fn is_heavy(method: &str) -> bool {
    matches!(
        method,
        "eth_call"
            | "eth_estimateGas"
            | "eth_createAccessList"
            | "ots_traceTransaction"
            | "ots_getInternalOperations"
            | "ots_getTransactionError"
            | "ots_getContractCreator"
    ) || method.starts_with("debug_trace")
}

/// What a heavy call gets from its worker: the worker's own read connection and its budget.
pub struct Work<'a> {
    /// The worker's read connection to the database.
    pub reads: &'a ReadPool,
    /// The call's limits, its clock started when the call was accepted.
    pub budget: Budget,
    /// The trace limits to apply when the call traces.
    pub limits: &'a CallLimits,
}

type Job = Box<dyn FnOnce(&Work<'_>) + Send>;

/// A job with the budget it was accepted with (its clock runs from then).
struct Queued {
    budget: Budget,
    job: Job,
}

/// The pool. Dropping it lets the workers finish their calls and exit.
pub struct CallPool {
    sender: Sender<Queued>,
    limits: Arc<CallLimits>,
}

impl CallPool {
    /// Starts `limits.workers` threads, each with one of the connections of `reads` (open it
    /// with as many connections as workers).
    pub fn start(reads: ReadPool, limits: CallLimits) -> std::io::Result<Self> {
        let limits = Arc::new(CallLimits { workers: limits.workers.max(1), ..limits });
        let (sender, receiver) = bounded::<Queued>(limits.queue);
        for i in 0..limits.workers {
            let (receiver, reads, limits) = (receiver.clone(), reads.clone(), limits.clone());
            std::thread::Builder::new()
                .name(format!("rpc-call-{i}"))
                .spawn(move || worker(receiver, reads, limits))?;
        }
        Ok(Self { sender, limits })
    }

    /// The limits the pool runs with.
    pub fn limits(&self) -> &CallLimits {
        &self.limits
    }

    /// Runs `f` on a worker and waits for its answer; refuses at once when every worker is busy
    /// and the queue is full. The time limit counts from `arrived`, when the request arrived (the
    /// heavy calls of one batch share it, so one request holds a worker for one limit at most).
    pub fn run<T: Send + 'static>(
        &self,
        arrived: std::time::Instant,
        f: impl FnOnce(&Work<'_>) -> RpcResult<T> + Send + 'static,
    ) -> RpcResult<T> {
        let budget = Budget::starting_at(arrived, self.limits.timeout, "--rpc-call-timeout");
        let (answer, result) = bounded::<RpcResult<T>>(1);
        let job: Job = Box::new(move |work| {
            let outcome = match work.budget.expired() {
                // It waited in the queue for its whole time limit: answered without running.
                Some(expired) => {
                    Err(RpcError::limit_exceeded(format!("{expired}, waiting for a call worker")))
                }
                None => f(work),
            };
            let _ = answer.send(outcome);
        });
        match self.sender.try_send(Queued { budget, job }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(RpcError::limit_exceeded(format!(
                    "the node is busy: all {} call workers are running and {} calls are waiting \
                     (--rpc-call-workers, --rpc-call-queue); eth_call, eth_estimateGas, \
                     eth_createAccessList and debug_trace* are refused until one finishes, retry later",
                    self.limits.workers, self.limits.queue
                )))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(RpcError::internal("the call workers have stopped"));
            }
        }
        result.recv().unwrap_or_else(|_| Err(RpcError::internal("the call's worker failed")))
    }
}

/// One worker: takes calls until the pool is dropped.
fn worker(receiver: Receiver<Queued>, reads: ReadPool, limits: Arc<CallLimits>) {
    lower_priority();
    while let Ok(Queued { budget, job }) = receiver.recv() {
        let work = Work { reads: &reads, budget, limits: &limits };
        // A panic is contained here: the caller gets an internal error (its answer channel is
        // dropped) and the worker goes on.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&work))).is_err() {
            tracing::error!("an RPC call panicked on its worker; the worker goes on");
        }
    }
}

/// Lowers the calling thread's scheduling priority to [`WORKER_NICE`] (Linux: per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take no pointers; on Linux PRIO_PROCESS with a thread id
        // changes that thread's nice value only.
        let rc = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, WORKER_NICE)
        };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the call worker's priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::storage::Store;

    fn pool(workers: usize, queue: usize, timeout: Option<Duration>) -> (CallPool, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Some(128)).unwrap();
        let reads = ReadPool::open(store.path(), workers).unwrap();
        let limits = CallLimits { workers, queue, timeout, ..CallLimits::default() };
        (CallPool::start(reads, limits).unwrap(), dir)
    }

    /// Occupies one place of the pool until the returned sender is dropped or sent to.
    fn occupy(
        pool: &Arc<CallPool>,
    ) -> (crossbeam_channel::Sender<()>, std::thread::JoinHandle<RpcResult<()>>) {
        let (release, wait) = bounded::<()>(0);
        let pool = pool.clone();
        let handle = std::thread::spawn(move || {
            pool.run(Instant::now(), move |_| {
                let _ = wait.recv();
                Ok(())
            })
        });
        (release, handle)
    }

    #[test]
    fn a_full_queue_refuses_at_once_and_frees_up() {
        let (pool, _dir) = pool(1, 2, None);
        let pool = Arc::new(pool);
        // One call running and two waiting: the worker and the queue are full.
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(occupy(&pool));
            std::thread::sleep(Duration::from_millis(50));
        }
        let started = Instant::now();
        let e = pool.run(Instant::now(), |_| Ok(())).unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(500), "refused at once");
        assert_eq!(e.code, -32005);
        assert!(e.message.contains("all 1 call workers are running and 2 calls are waiting"), "{e:?}");
        assert!(e.message.contains("--rpc-call-queue"), "{e:?}");
        for (release, handle) in held {
            drop(release);
            handle.join().unwrap().unwrap();
        }
        // Free again: a call runs.
        assert_eq!(pool.run(Instant::now(), |_| Ok(7)).unwrap(), 7);
    }

    #[test]
    fn a_call_that_waited_past_its_limit_is_answered_without_running() {
        let (pool, _dir) = pool(1, 1, Some(Duration::from_millis(100)));
        let pool = Arc::new(pool);
        let (release, handle) = occupy(&pool);
        std::thread::sleep(Duration::from_millis(50));
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waiter = {
            let (pool, ran) = (pool.clone(), ran.clone());
            std::thread::spawn(move || {
                pool.run(Instant::now(), move |_| {
                    ran.store(true, std::sync::atomic::Ordering::SeqCst);
                    Ok(())
                })
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        drop(release);
        let _ = handle.join().unwrap();
        let e = waiter.join().unwrap().unwrap_err();
        assert!(e.message.starts_with("execution aborted (timeout = 100ms)"), "{e:?}");
        assert!(e.message.contains("waiting for a call worker"), "{e:?}");
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst), "the call ran after its limit");
    }

    #[test]
    fn a_panicking_call_leaves_the_worker_alive() {
        let (pool, _dir) = pool(1, 1, None);
        let e = pool.run(Instant::now(), |_| -> RpcResult<()> { panic!("boom") }).unwrap_err();
        assert_eq!(e.code, -32603, "{e:?}");
        assert_eq!(pool.run(Instant::now(), |_| Ok(1)).unwrap(), 1);
    }
}
