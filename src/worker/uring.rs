//! The io_uring driver: setup with the fastest flags the kernel accepts, each [`Sqe`] as its
//! opcode, a submission push that never drops an entry, and the probe `--backend auto` runs
//! once to learn whether the workers can have a ring at all.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{opcode, squeue, types, IoUring};

use super::driver::{Cqe, Driver, Sqe};

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

/// A worker's ring.
pub struct Uring {
    ring: IoUring,
    /// The message headers of vectored sends queued since the last submission. The kernel
    /// copies a message header when it takes the entry (IORING_FEAT_SUBMIT_STABLE, Linux
    /// 5.5), so each must live until then; boxed, so that they never move, and reused.
    #[allow(clippy::vec_box)] // boxed: the kernel holds their addresses while the Vec grows
    messages: Vec<Box<Message>>,
    queued_messages: usize,
}

/// A vectored send's message header and its two buffers.
struct Message {
    header: libc::msghdr,
    iov: [libc::iovec; 2],
}

impl Uring {
    /// Create the ring on the calling thread (SINGLE_ISSUER ties it to this thread).
    pub fn create() -> io::Result<(Uring, Mode)> {
        let (ring, mode) = build(ENTRIES)?;
        if !ring.params().is_feature_submit_stable() {
            return Err(io::Error::other(
                "this kernel's io_uring does not copy submissions when it takes them \
                 (IORING_FEAT_SUBMIT_STABLE, Linux 5.5)",
            ));
        }
        let ring = Uring {
            ring,
            messages: Vec::new(),
            queued_messages: 0,
        };
        Ok((ring, mode))
    }

    /// A message header for a vectored send of two buffers, valid until the next submission.
    fn message(&mut self, bufs: [(*const u8, u32); 2]) -> *const libc::msghdr {
        if self.queued_messages == self.messages.len() {
            // SAFETY: msghdr and iovec are plain C structs for which all-zero is valid.
            self.messages.push(Box::new(unsafe { std::mem::zeroed() }));
        }
        let m = &mut self.messages[self.queued_messages];
        self.queued_messages += 1;
        for (iov, (ptr, len)) in m.iov.iter_mut().zip(bufs) {
            iov.iov_base = ptr.cast_mut().cast();
            iov.iov_len = len as usize;
        }
        m.header.msg_iov = m.iov.as_mut_ptr();
        m.header.msg_iovlen = 2;
        &m.header
    }
}

fn build(entries: u32) -> io::Result<(IoUring, Mode)> {
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
        builder.setup_cqsize(entries * 4);
        match flags(&mut builder).build(entries) {
            Ok(ring) => return Ok((ring, mode)),
            // EINVAL: this kernel does not know a flag; try fewer. Anything else (EPERM from
            // `kernel.io_uring_disabled`, ENOSYS from seccomp, ENOMEM) will not get better.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no ring setup succeeded")))
}

/// Why the workers cannot have io_uring here.
#[derive(Debug)]
pub struct Unavailable {
    pub cause: io::Error,
    /// What is missing, in words, with the remedy.
    pub why: String,
}

/// Can a worker have what it needs from io_uring: a ring, the opcodes it submits, and
/// multishot accept (Linux 5.19)? Tried for real, on a small ring and a listening socket of
/// its own on 127.0.0.1 (the probe's accept is cancelled before anything could connect).
pub fn probe() -> Result<Mode, Unavailable> {
    let (mut ring, mode) = build(8).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::EPERM) => "io_uring_setup is not permitted (EPERM): the kernel has \
                 `kernel.io_uring_disabled` set, or a seccomp profile (Docker's and \
                 containerd's defaults) blocks it. Allow it with `sysctl \
                 kernel.io_uring_disabled=0`, or a seccomp profile that allows io_uring_setup, \
                 io_uring_enter and io_uring_register"
                .to_string(),
            Some(libc::ENOSYS) => "the kernel (or the sandbox: Podman, gVisor) has no \
                 io_uring (ENOSYS): it needs Linux 5.19 or later built with CONFIG_IO_URING"
                .to_string(),
            _ => format!("io_uring_setup failed: {e}"),
        };
        Unavailable { cause: e, why }
    })?;
    let mut probe = io_uring::Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        return Err(Unavailable {
            why: format!("cannot ask the ring which opcodes it has: {e}"),
            cause: e,
        });
    }
    let needed = [
        (opcode::Accept::CODE, "ACCEPT"),
        (opcode::Recv::CODE, "RECV"),
        (opcode::Send::CODE, "SEND"),
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::Read::CODE, "READ"),
        (opcode::Timeout::CODE, "TIMEOUT"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        (opcode::PollAdd::CODE, "POLL_ADD"),
    ];
    for (code, name) in needed {
        if !probe.is_supported(code) {
            return Err(Unavailable {
                cause: io::Error::from_raw_os_error(libc::EINVAL),
                why: format!("this kernel's io_uring lacks the {name} opcode (Linux 5.19 or later has every one the worker uses)"),
            });
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Unavailable {
        why: format!("cannot open a socket to probe multishot accept: {e}"),
        cause: e,
    })?;
    let accept = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
        .build()
        .user_data(1);
    let cancel = opcode::AsyncCancel::new(1).build().user_data(2);
    let failed = |e: io::Error| Unavailable {
        why: format!("io_uring_enter failed: {e}"),
        cause: e,
    };
    // SAFETY: neither entry points at memory; the listener outlives the ring's use of it
    // (both completions are waited for below).
    unsafe {
        push_entry(&mut ring, &accept).map_err(failed)?;
        push_entry(&mut ring, &cancel).map_err(failed)?;
    }
    let mut accept_result = None;
    let mut seen = 0;
    while seen < 2 {
        ring.submit_and_wait(1).map_err(failed)?;
        for cqe in ring.completion() {
            seen += 1;
            if cqe.user_data() == 1 {
                accept_result = Some(cqe.result());
            }
        }
    }
    match accept_result {
        Some(r) if r == -libc::EINVAL => Err(Unavailable {
            cause: io::Error::from_raw_os_error(libc::EINVAL),
            why: "this kernel's io_uring has no multishot accept (Linux 5.19 or later)".into(),
        }),
        _ => Ok(mode),
    }
}

/// Queue `entry`, submitting what is queued whenever the submission queue is full.
///
/// # Safety
/// Every buffer, timespec or other pointer in `entry` must stay valid and unmoved until the
/// operation's final completion has been reaped.
unsafe fn push_entry(ring: &mut IoUring, entry: &squeue::Entry) -> io::Result<()> {
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

impl Driver for Uring {
    #[inline]
    unsafe fn push(&mut self, op: Sqe, user_data: u64) -> io::Result<()> {
        let entry = match op {
            // A multishot accept stays first in the socket's wait queue, and the kernel wakes
            // the first waiter for each connection: on a shared socket one worker would take
            // them all. A single accept, armed again after each, queues behind the others.
            Sqe::Accept {
                fd,
                multishot: true,
            } => opcode::AcceptMulti::new(types::Fd(fd))
                .flags(libc::SOCK_CLOEXEC)
                .build(),
            Sqe::Accept {
                fd,
                multishot: false,
            } => opcode::Accept::new(types::Fd(fd), std::ptr::null_mut(), std::ptr::null_mut())
                .flags(libc::SOCK_CLOEXEC)
                .build(),
            Sqe::Recv { fd, buf, len } => opcode::Recv::new(types::Fd(fd), buf, len).build(),
            Sqe::Send { fd, buf, len } => opcode::Send::new(types::Fd(fd), buf, len)
                .flags(libc::MSG_NOSIGNAL)
                .build(),
            Sqe::SendV {
                fd,
                first,
                first_len,
                second,
                second_len,
            } => {
                let msg = self.message([(first, first_len), (second, second_len)]);
                opcode::SendMsg::new(types::Fd(fd), msg)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
            }
            Sqe::Read { fd, buf, len } => opcode::Read::new(types::Fd(fd), buf, len).build(),
            Sqe::Timeout { ts, .. } => opcode::Timeout::new(ts).build(),
            Sqe::Cancel { target, .. } => opcode::AsyncCancel::new(target).build(),
            Sqe::Poll { fd, events } => opcode::PollAdd::new(types::Fd(fd), events).build(),
        };
        // SAFETY: the caller guarantees every pointer in `op` outlives the operation.
        unsafe { push_entry(&mut self.ring, &entry.user_data(user_data)) }
    }

    #[inline]
    fn submit_and_wait(&mut self) -> io::Result<()> {
        match self.ring.submit_and_wait(1) {
            Ok(_) => {
                // Every queued entry has been taken, message headers included.
                self.queued_messages = 0;
                Ok(())
            }
            // EINTR: a signal; EBUSY: completions must be reaped first (the caller does).
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    #[inline]
    fn complete(&mut self, out: &mut [Cqe]) -> usize {
        let mut n = 0;
        // The ring's flags are the driver's: MORE is IORING_CQE_F_MORE.
        for cqe in self.ring.completion().take(out.len()) {
            out[n] = (cqe.user_data(), cqe.result(), cqe.flags());
            n += 1;
        }
        n
    }

    #[inline]
    fn forget(&mut self, _fd: RawFd) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_agrees_with_a_worker_ring() {
        // Where a worker ring can be had, the probe says so, and the other way round.
        match (probe(), Uring::create()) {
            (Ok(_), Ok(_)) => {}
            (Err(u), Err(_)) => assert!(!u.why.is_empty()),
            (Ok(_), Err(e)) => panic!("probe passed but a worker ring failed: {e}"),
            (Err(u), Ok(_)) => eprintln!("probe refused a kernel with a ring: {}", u.why),
        }
    }
}
