//! What the worker asks of its I/O driver, and the two drivers that do it: io_uring
//! ([`super::uring`]) and epoll ([`super::epoll`]), for where io_uring is blocked.
//!
//! The worker's logic (accepting, the connection table, deadlines, parking, drain, the
//! connection cap, EMFILE back-off) is written once against completions, as the ring gives
//! them: the worker queues [`Sqe`]s, each tagged with its `user_data`, and later handles one
//! completion per operation (`user_data`, result as `-errno` or a count, flags). The ring does
//! the operations in the kernel; the epoll driver does each as a non-blocking system call, at
//! once or when epoll says the descriptor is ready, and reports the same completion.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::types::Timespec;

/// An operation. Every pointer must stay valid, and its memory unmoved, until the
/// operation's final completion has been handled (the worker guarantees this: a connection
/// has one operation in flight, and its buffers live in the connection).
#[derive(Debug, Clone, Copy)]
pub enum Sqe {
    /// Accept connections on a listener: until cancelled (`multishot`, each completion but the
    /// last flagged "more"), or one.
    Accept { fd: RawFd, multishot: bool },
    /// Receive into `buf[..len]`.
    Recv { fd: RawFd, buf: *mut u8, len: u32 },
    /// Send `buf[..len]` (never raising SIGPIPE).
    Send { fd: RawFd, buf: *const u8, len: u32 },
    /// Send `first[..first_len]` then `second[..second_len]` in one vectored send (never
    /// raising SIGPIPE).
    SendV {
        fd: RawFd,
        first: *const u8,
        first_len: u32,
        second: *const u8,
        second_len: u32,
    },
    /// Read `buf[..len]` from a descriptor that is not a socket (the master's eventfd).
    Read { fd: RawFd, buf: *mut u8, len: u32 },
    /// Complete after `after` (with `-ETIME`). The ring reads `ts`, which must live as long.
    Timeout {
        ts: *const Timespec,
        after: Duration,
    },
    /// Cancel the operation tagged `target`, pending on `fd`; it completes with `-ECANCELED`
    /// if it was still pending. The cancellation's own completion carries nothing.
    Cancel { target: u64, fd: RawFd },
    /// Complete once `fd` has any of the poll `events` (the result is the events it has).
    Poll { fd: RawFd, events: u32 },
}

/// A completion: `user_data`, result, flags.
pub type Cqe = (u64, i32, u32);

/// A multishot operation will complete again (io_uring's `IORING_CQE_F_MORE`).
pub const MORE: u32 = 1 << 1;

/// A way of doing the worker's I/O.
pub trait Driver {
    /// Queue `op`, tagged `user_data`.
    ///
    /// # Safety
    /// Every pointer in `op` must stay valid and unmoved until the operation's final
    /// completion has been returned by [`Self::complete`].
    unsafe fn push(&mut self, op: Sqe, user_data: u64) -> io::Result<()>;

    /// Start what is queued and wait until at least one completion is ready (or a signal
    /// interrupts the wait).
    fn submit_and_wait(&mut self) -> io::Result<()>;

    /// Move up to `out.len()` ready completions into `out`; returns how many.
    fn complete(&mut self, out: &mut [Cqe]) -> usize;

    /// The worker is about to close `fd` (no operation of its is pending).
    fn forget(&mut self, fd: RawFd);
}

/// The driver a worker runs, decided once by the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    IoUring,
    Epoll,
}

impl std::fmt::Display for Chosen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Chosen::IoUring => "io_uring",
            Chosen::Epoll => "epoll",
        })
    }
}
