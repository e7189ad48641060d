//! The board: one cache line per worker in memory shared with the master (an anonymous
//! `MAP_SHARED` mapping, so forked worker processes write the same pages the master reads).
//!
//! A worker writes only its own line, and only off the request path: its heartbeat on each
//! tick of its loop, its count of answered requests, and the flag asking to be replaced once
//! it has served `--max-requests`. The master only reads (and resets a line before reuse),
//! except to raise a worker's flags asking it to reopen its log files (SIGUSR1) or telling it
//! a stop is announced (`--drain-delay`), both rare, so no cache line is written by two
//! cores while a worker serves. With `--metrics` the worker also copies its counters into the
//! line on each tick (cache lines of their own, read by the master when scraped).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::metrics::{Counters, LINE_VALUES};

/// One worker's line.
#[repr(C, align(64))]
pub struct Line {
    /// Milliseconds on the monotonic clock when the worker's loop last turned.
    beat_ms: AtomicU64,
    /// Requests answered (or refused) so far.
    served: AtomicU64,
    /// The worker has served its `--max-requests` and asks to be replaced.
    retire: AtomicBool,
    /// Set by the master: the worker process reopens its log files at its next beat.
    reopen_logs: AtomicBool,
    /// Set by the master: a stop is announced (`--drain-delay`); the health path says 503.
    stopping: AtomicBool,
    /// The worker's counters as of its last tick (`--metrics`), on cache lines of their own.
    counters: Counts,
}

#[repr(C, align(64))]
struct Counts([AtomicU64; LINE_VALUES]);

/// The shared lines, unmapped when the master and every worker thread have let go of it.
pub struct Board {
    lines: *mut Line,
    len: usize,
}

// SAFETY: the mapping is only accessed through atomics in `Line`, and it stays mapped until
// the last `Arc<Board>` is dropped.
unsafe impl Send for Board {}
// SAFETY: as above: every access is atomic.
unsafe impl Sync for Board {}

impl Board {
    /// A board with room for `len` workers at once.
    pub fn new(len: usize) -> io::Result<Arc<Board>> {
        let bytes = len * std::mem::size_of::<Line>();
        // SAFETY: an anonymous shared mapping of fresh, zeroed pages; no address is requested.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Arc::new(Board {
            lines: ptr.cast(),
            len,
        }))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    fn line(&self, i: usize) -> &Line {
        assert!(i < self.len, "board line {i} out of range");
        // SAFETY: `i` is in range of the mapping, which is zero-initialised (a valid `Line`:
        // atomics of zero) and mapped for as long as `self` lives.
        unsafe { &*self.lines.add(i) }
    }

    /// Make line `i` fresh for a new worker: beating now, nothing served.
    pub fn reset(&self, i: usize) {
        let line = self.line(i);
        line.beat_ms.store(now_ms(), Ordering::Relaxed);
        line.served.store(0, Ordering::Relaxed);
        line.retire.store(false, Ordering::Relaxed);
        line.reopen_logs.store(false, Ordering::Relaxed);
        line.stopping.store(false, Ordering::Relaxed);
        Counters::default().publish(&line.counters.0);
    }

    /// Worker `i`'s counters as of its last publication.
    pub fn counters(&self, i: usize) -> Counters {
        Counters::read(&self.line(i).counters.0)
    }

    /// Tell worker `i` that a stop is announced (its health path answers 503).
    pub fn announce_stop(&self, i: usize) {
        self.line(i).stopping.store(true, Ordering::Relaxed);
    }

    /// Ask worker `i` (a process: threads share the master's log) to reopen its log files.
    pub fn ask_reopen_logs(&self, i: usize) {
        self.line(i).reopen_logs.store(true, Ordering::Relaxed);
    }

    /// How long ago worker `i`'s loop last turned, in milliseconds.
    pub fn beat_age_ms(&self, i: usize) -> u64 {
        now_ms().saturating_sub(self.line(i).beat_ms.load(Ordering::Relaxed))
    }

    pub fn served(&self, i: usize) -> u64 {
        self.line(i).served.load(Ordering::Relaxed)
    }

    pub fn wants_retire(&self, i: usize) -> bool {
        self.line(i).retire.load(Ordering::Relaxed)
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; no reference into it outlives `self`.
        unsafe { libc::munmap(self.lines.cast(), self.len * std::mem::size_of::<Line>()) };
    }
}

/// A worker's handle on its own line.
#[derive(Clone)]
pub struct Pulse {
    board: Arc<Board>,
    index: usize,
    /// The master's process, woken when the worker asks for a replacement.
    master: libc::pid_t,
}

impl Pulse {
    /// Line `index` of `board`, for a worker of the calling (master) process.
    pub fn new(board: Arc<Board>, index: usize) -> Pulse {
        let master = std::process::id() as libc::pid_t;
        Pulse {
            board,
            index,
            master,
        }
    }

    /// The loop is turning (and, if the master asked, the log files are reopened). With
    /// `--threads`, a handler under way since `busy_since` (by [`now_ms`]) holds the beat
    /// back to then: a handler stuck on its thread is a stuck worker to `--timeout`.
    pub fn beat(&self, busy_since: Option<u64>) {
        let line = self.board.line(self.index);
        let now = now_ms();
        line.beat_ms
            .store(busy_since.map_or(now, |b| b.min(now)), Ordering::Relaxed);
        if line.reopen_logs.load(Ordering::Relaxed)
            && line.reopen_logs.swap(false, Ordering::Relaxed)
        {
            if let Err(e) = crate::log::reopen() {
                tracing::error!("worker (pid {}): {e}", std::process::id());
            }
        }
    }

    /// The master has announced a stop (`--drain-delay`).
    pub fn stopping(&self) -> bool {
        self.board.line(self.index).stopping.load(Ordering::Relaxed)
    }

    /// Publish how many requests have been answered.
    pub fn served(&self, n: u64) {
        self.board
            .line(self.index)
            .served
            .store(n, Ordering::Relaxed);
    }

    /// Publish the worker's counters (`--metrics`).
    pub fn publish(&self, counters: &Counters) {
        counters.publish(&self.board.line(self.index).counters.0);
    }

    /// Ask the master for a replacement.
    pub fn retire(&self) {
        self.board
            .line(self.index)
            .retire
            .store(true, Ordering::Relaxed);
        // Wake the master now rather than at its next round: SIGCHLD is one of the signals
        // it waits for (and ignored by any other process).
        // SAFETY: kill sends a signal to a pid and touches no memory.
        unsafe { libc::kill(self.master, libc::SIGCHLD) };
    }
}

/// Milliseconds on the monotonic clock (the same in every process).
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into a live local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_what_its_pulse_wrote() {
        let board = Board::new(4).expect("mmap");
        board.reset(2);
        let pulse = Pulse::new(board.clone(), 2);
        pulse.served(7);
        pulse.retire();
        assert_eq!(board.served(2), 7);
        assert!(board.wants_retire(2));
        assert!(!board.wants_retire(1));
        board.reset(2);
        assert_eq!(board.served(2), 0);
        assert!(board.beat_age_ms(2) < 1000);
        let mut counters = Counters::default();
        counters.add(crate::metrics::Counter::Accepted, 9);
        pulse.publish(&counters);
        assert_eq!(board.counters(2), counters);
        board.reset(2);
        assert_eq!(board.counters(2), Counters::default());
    }

    #[test]
    fn a_forked_child_writes_what_the_parent_reads() {
        let board = Board::new(1).expect("mmap");
        board.reset(0);
        // SAFETY: the child only stores to the shared line and exits at once.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            Pulse::new(board.clone(), 0).served(42);
            // SAFETY: _exit ends the child without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        assert!(pid > 0, "fork failed");
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(board.served(0), 42);
    }
}
