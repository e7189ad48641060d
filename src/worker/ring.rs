//! The worker's io_uring: setup with the fastest flags the kernel accepts, the `user_data`
//! tokens that route completions, and a submission push that never drops an entry.

use std::io;

use io_uring::{squeue, IoUring};

/// Submission queue entries; the completion queue gets four times as many (a multishot accept
/// and the connections' operations can complete in bursts).
const ENTRIES: u32 = 4096;

/// How the ring was set up, for the startup log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN: completions are processed only when the
    /// worker asks, with no inter-processor interrupts (Linux 6.1+).
    DeferTaskrun,
    /// COOP_TASKRUN only (Linux 5.19+).
    CoopTaskrun,
    /// No setup flags.
    Plain,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::DeferTaskrun => "single_issuer+defer_taskrun",
            Mode::CoopTaskrun => "coop_taskrun",
            Mode::Plain => "plain",
        })
    }
}

/// Adds one mode's setup flags to a ring builder.
type SetupFlags = fn(&mut io_uring::Builder) -> &mut io_uring::Builder;

/// Create the ring on the calling thread (SINGLE_ISSUER ties it to this thread).
pub fn create() -> io::Result<(IoUring, Mode)> {
    let cq = ENTRIES * 4;
    let attempts: [(Mode, SetupFlags); 3] = [
        (Mode::DeferTaskrun, |b| {
            b.setup_single_issuer()
                .setup_defer_taskrun()
                .setup_coop_taskrun()
        }),
        (Mode::CoopTaskrun, |b| b.setup_coop_taskrun()),
        (Mode::Plain, |b| b),
    ];
    let mut last = None;
    for (mode, flags) in attempts {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(cq);
        match flags(&mut builder).build(ENTRIES) {
            Ok(ring) => return Ok((ring, mode)),
            // EINVAL: this kernel does not know a flag; try fewer. Anything else (EPERM from
            // `kernel.io_uring_disabled`, ENOSYS from seccomp, ENOMEM) will not get better.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no ring setup succeeded")))
}

/// What an operation was for; the low byte of its `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Multishot accept; the index is the listener's.
    Accept = 1,
    /// Receive; the index is the connection's slot.
    Recv = 2,
    /// Send; the index is the connection's slot.
    Send = 3,
    /// The periodic tick (deadlines, Date header).
    Tick = 4,
    /// Read of the worker's eventfd: a message from the master.
    Wake = 5,
    /// Timer after which paused accepts are armed again.
    AcceptRetry = 6,
    /// Cancellation requests: their own completions carry nothing to act on.
    Cancel = 7,
    /// Readiness poll of a parked (idle, bufferless) connection; the index is its slot.
    Poll = 8,
}

/// `user_data` for an operation on an object (listener or connection slot).
pub fn token(op: Op, index: usize) -> u64 {
    ((index as u64) << 8) | op as u64
}

/// The operation and index a completion belongs to.
pub fn untoken(user_data: u64) -> Option<(Op, usize)> {
    let op = match user_data & 0xff {
        1 => Op::Accept,
        2 => Op::Recv,
        3 => Op::Send,
        4 => Op::Tick,
        5 => Op::Wake,
        6 => Op::AcceptRetry,
        7 => Op::Cancel,
        8 => Op::Poll,
        _ => return None,
    };
    Some((op, (user_data >> 8) as usize))
}

/// Queue `entry`, submitting what is queued whenever the submission queue is full.
///
/// # Safety
/// Every buffer, timespec or other pointer in `entry` must stay valid and unmoved until the
/// operation's final completion has been reaped.
pub unsafe fn push(ring: &mut IoUring, entry: &squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: the caller guarantees the entry's pointers outlive the operation.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        match ring.submit() {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for op in [
            Op::Accept,
            Op::Recv,
            Op::Send,
            Op::Tick,
            Op::Wake,
            Op::AcceptRetry,
            Op::Cancel,
            Op::Poll,
        ] {
            for index in [0, 1, 65_535, 1 << 40] {
                assert_eq!(untoken(token(op, index)), Some((op, index)));
            }
        }
        assert_eq!(untoken(0), None);
    }
}
