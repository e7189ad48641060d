//! `--threads N`: a worker's handler threads, for handlers that block. The worker's ring hands
//! each request over as a [`Job`]; a thread answers it with its own handler (built for it by
//! the app) and hands the [`Reply`] back, then pumps a streamed body into its feed as the
//! connection drains it. Replies come back through one queue; the first one into an empty
//! queue writes the pool's eventfd, on which the ring keeps a read armed, so a busy ring
//! takes many replies per wakeup and no syscall is made per reply.
//!
//! The threads share the worker's CPU (each worker stays on its core); they sleep while there
//! is nothing to answer.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::Wake;
use crate::http::{Job, Reply};
use crate::master::now_ms;
use crate::{App, WorkerInfo};

/// Which connection a job belongs to: its slot, and the serial that tells it from a later
/// connection in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub key: usize,
    pub serial: u64,
}

/// What a thread hands back.
#[derive(Debug)]
pub enum Done {
    /// The answer to the connection's job.
    Reply(Box<Reply>),
    /// The connection's streamed body, which it found empty, has bytes (or its end) now.
    Fed,
}

pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    jobs: Mutex<VecDeque<(Ticket, Box<Job>)>>,
    job_ready: Condvar,
    done: Mutex<Vec<(Ticket, Done)>>,
    /// Signalled when the first reply goes into an empty `done`.
    eventfd: Wake,
    stop: AtomicBool,
    /// When each thread's current job (or pull of a stream) began, by [`now_ms`]; 0: idle.
    busy_since: Box<[AtomicU64]>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held (handlers run outside them).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn hand_back(&self, ticket: Ticket, done: Done) {
        let first = {
            let mut queue = lock(&self.done);
            queue.push((ticket, done));
            queue.len() == 1
        };
        if first {
            self.eventfd.signal();
        }
    }
}

impl Pool {
    /// Start `threads` threads for worker `worker`, each with a handler of `app`'s, pinned to
    /// the worker's CPU when it is pinned.
    pub fn start<A: App + Clone>(threads: usize, app: &A, worker: WorkerInfo) -> io::Result<Pool> {
        let eventfd = Wake::new()?;
        let shared = Arc::new(Shared {
            jobs: Mutex::new(VecDeque::new()),
            job_ready: Condvar::new(),
            done: Mutex::new(Vec::new()),
            eventfd,
            stop: AtomicBool::new(false),
            busy_since: (0..threads).map(|_| AtomicU64::new(0)).collect(),
        });
        for i in 0..threads {
            let shared = shared.clone();
            let app = app.clone();
            std::thread::Builder::new()
                .name(format!("ringcorn-w{}-t{i}", worker.index))
                .spawn(move || serve(&shared, i, &app, worker))?;
        }
        Ok(Pool { shared })
    }

    /// Hand `job` to the next free thread.
    pub fn submit(&self, ticket: Ticket, job: Box<Job>) {
        lock(&self.shared.jobs).push_back((ticket, job));
        self.shared.job_ready.notify_one();
    }

    /// Move what the threads have handed back into `into`.
    pub fn take_done(&self, into: &mut Vec<(Ticket, Done)>) {
        into.append(&mut lock(&self.shared.done));
    }

    /// The eventfd that says something was handed back.
    pub fn eventfd(&self) -> RawFd {
        self.shared.eventfd.raw_fd()
    }

    /// When the longest-running job under way began (by [`now_ms`]), if any is.
    pub fn busy_since(&self) -> Option<u64> {
        self.shared
            .busy_since
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .filter(|&ms| ms != 0)
            .min()
    }
}

impl Drop for Pool {
    /// The threads end once they are done with what they are doing; they are not waited
    /// for (a handler stuck forever must not keep the worker from ending).
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Taken so that no thread is between its check of `stop` and its wait.
        drop(lock(&self.shared.jobs));
        self.shared.job_ready.notify_all();
    }
}

/// Thread `i`: answer jobs until the pool is dropped.
fn serve<A: App>(shared: &Shared, i: usize, app: &A, worker: WorkerInfo) {
    if let Some(cpu) = worker.cpu {
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    }
    let mut handler = app.handler(worker);
    let busy = &shared.busy_since[i];
    loop {
        let (ticket, job) = {
            let mut jobs = lock(&shared.jobs);
            loop {
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(next) = jobs.pop_front() {
                    break next;
                }
                jobs = shared
                    .job_ready
                    .wait(jobs)
                    .unwrap_or_else(|e| e.into_inner());
            }
        };
        busy.store(now_ms().max(1), Ordering::Relaxed);
        let (reply, pump) = (*job).answer(&mut handler);
        shared.hand_back(ticket, Done::Reply(Box::new(reply)));
        if let Some(pump) = pump {
            pump.run(
                || shared.hand_back(ticket, Done::Fed),
                |pulling| {
                    let since = if pulling { now_ms().max(1) } else { 0 };
                    busy.store(since, Ordering::Relaxed);
                },
            );
        }
        busy.store(0, Ordering::Relaxed);
    }
}
