//! The epoll driver, for where io_uring is blocked (container seccomp profiles, the
//! `kernel.io_uring_disabled` sysctl, kernels without it). Each operation is done as a
//! non-blocking system call: at once when it is queued, and again whenever epoll says its
//! descriptor became ready, until it no longer returns EAGAIN; then its completion is reported
//! exactly as the ring would report it. Raw epoll rather than mio or polling: the driver needs
//! edge-triggered registration once per descriptor and nothing else (no waker, no timer
//! wheel), and it sits on the hot path.
//!
//! Descriptors are registered edge-triggered, for reading and writing, the first time an
//! operation waits on them, and stay registered until closed. Trying every operation at once
//! makes edge triggering safe: an edge lost while no operation waited is made up for by the
//! attempt when the next one is queued, and an edge after an EAGAIN always arrives. A
//! spurious wake-up (a descriptor number reused within one batch of events) only retries a
//! non-blocking call.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::clock::Moment;
use super::driver::{Cqe, Driver, Sqe, MORE};

/// Events taken from the kernel per wait.
const EVENTS: usize = 256;

/// One descriptor, indexed by its number: the operation waiting on it (without its
/// descriptor, which is the index), and whether it is in the epoll set. 24 bytes: the table
/// holds one per open descriptor, idle connections included.
#[derive(Debug, Clone, Copy)]
struct Slot {
    user_data: u64,
    /// The operation's buffer (Recv, Send, Read).
    buf: *mut u8,
    /// Its length, or a Poll's events.
    len: u32,
    waiting: Wait,
    registered: bool,
    /// A listening socket: its registration is removed explicitly (see [`Epoll::unregister`]).
    listener: bool,
}

impl Default for Slot {
    fn default() -> Slot {
        Slot {
            user_data: 0,
            buf: std::ptr::null_mut(),
            len: 0,
            waiting: Wait::Nothing,
            registered: false,
            listener: false,
        }
    }
}

/// The kind of operation waiting on a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Wait {
    Nothing,
    AcceptMany,
    AcceptOne,
    Recv,
    Send,
    /// A vectored send: its second buffer is in `Epoll::second`.
    SendV,
    Read,
    Poll,
}

impl Slot {
    /// Keep `op` (tagged `user_data`) waiting here.
    fn hold(&mut self, op: Sqe, user_data: u64) {
        let none = std::ptr::null_mut();
        let (waiting, buf, len) = match op {
            Sqe::Accept {
                multishot: true, ..
            } => (Wait::AcceptMany, none, 0),
            Sqe::Accept { .. } => (Wait::AcceptOne, none, 0),
            Sqe::Recv { buf, len, .. } => (Wait::Recv, buf, len),
            Sqe::Send { buf, len, .. } => (Wait::Send, buf.cast_mut(), len),
            Sqe::SendV {
                first, first_len, ..
            } => (Wait::SendV, first.cast_mut(), first_len),
            Sqe::Read { buf, len, .. } => (Wait::Read, buf, len),
            Sqe::Poll { events, .. } => (Wait::Poll, none, events),
            Sqe::Timeout { .. } | Sqe::Cancel { .. } => (Wait::Nothing, none, 0),
        };
        self.waiting = waiting;
        self.user_data = user_data;
        self.buf = buf;
        self.len = len;
    }

    /// The operation waiting here, on `fd` (a vectored send's second buffer is `second`).
    fn op(&self, fd: RawFd, second: (*const u8, u32)) -> Option<Sqe> {
        let (buf, len) = (self.buf, self.len);
        Some(match self.waiting {
            Wait::Nothing => return None,
            Wait::AcceptMany => Sqe::Accept {
                fd,
                multishot: true,
            },
            Wait::AcceptOne => Sqe::Accept {
                fd,
                multishot: false,
            },
            Wait::Recv => Sqe::Recv { fd, buf, len },
            Wait::Send => Sqe::Send {
                fd,
                buf: buf.cast_const(),
                len,
            },
            Wait::SendV => Sqe::SendV {
                fd,
                first: buf.cast_const(),
                first_len: len,
                second: second.0,
                second_len: second.1,
            },
            Wait::Read => Sqe::Read { fd, buf, len },
            Wait::Poll => Sqe::Poll { fd, events: len },
        })
    }
}

pub struct Epoll {
    epfd: OwnedFd,
    slots: Vec<Slot>,
    /// Completions ready to hand to the worker.
    ready: VecDeque<Cqe>,
    /// Pending timeouts: when, and their `user_data`.
    timers: Vec<(Moment, u64)>,
    events: Vec<libc::epoll_event>,
    /// The second buffers of the vectored sends waiting, by descriptor (kept out of the
    /// slots, which every descriptor has).
    second: std::collections::HashMap<RawFd, (*const u8, u32)>,
}

impl Epoll {
    pub fn create() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new descriptor.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll {
            // SAFETY: `fd` was just returned by epoll_create1 and is owned by nobody else.
            epfd: unsafe { OwnedFd::from_raw_fd(fd) },
            // Room for every descriptor the process may open, reserved up front: growing would
            // copy the table, and the copies' pages would stay resident. Reserved pages that
            // are never written cost nothing.
            slots: Vec::with_capacity(descriptor_limit()),
            ready: VecDeque::with_capacity(EVENTS),
            timers: Vec::new(),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS],
            second: std::collections::HashMap::new(),
        })
    }

    fn slot(&mut self, fd: RawFd) -> &mut Slot {
        let i = fd as usize;
        if i >= self.slots.len() {
            // Only the slots up to the highest descriptor are written (the Vec's spare
            // capacity stays untouched, so it costs no resident memory).
            self.slots.resize(i + 1, Slot::default());
        }
        &mut self.slots[i]
    }

    /// Wait for `fd` to become ready for `op`.
    fn wait_on(&mut self, fd: RawFd, op: Sqe, user_data: u64) -> io::Result<()> {
        let epfd = self.epfd.as_raw_fd();
        if let Sqe::SendV {
            second, second_len, ..
        } = op
        {
            self.second.insert(fd, (second, second_len));
        }
        let slot = self.slot(fd);
        slot.hold(op, user_data);
        if slot.registered {
            return Ok(());
        }
        let events = if matches!(op, Sqe::Accept { .. }) {
            // A listener shared by every worker wakes one of them per connection.
            self.slot(fd).listener = true;
            libc::EPOLLIN | libc::EPOLLEXCLUSIVE | libc::EPOLLET
        } else {
            libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET
        };
        let mut event = libc::epoll_event {
            events: events as u32,
            u64: fd as u64,
        };
        // SAFETY: epoll_ctl reads one live epoll_event.
        if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut event) } < 0 {
            let e = io::Error::last_os_error();
            self.slot(fd).waiting = Wait::Nothing;
            return Err(e);
        }
        self.slot(fd).registered = true;
        Ok(())
    }

    /// Take a listener out of the epoll set. Closing our descriptor does not: its socket stays
    /// open in the master and the other workers, and the registration lives as long as the
    /// socket. Left there, an accept that was cancelled (draining, paused) would still take
    /// the exclusive wake-ups meant for the workers that accept.
    fn unregister(&mut self, fd: RawFd) {
        let epfd = self.epfd.as_raw_fd();
        let slot = self.slot(fd);
        if !slot.registered {
            return;
        }
        // SAFETY: epoll_ctl DEL takes no event pointer (ignored since 2.6.9).
        if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) } == 0 {
            self.slot(fd).registered = false;
        }
    }

    /// Try `op` now: `Some(completion result)` when it is done, `None` when it would block.
    /// A multishot accept reports each connection itself and is done only on an error.
    fn attempt(&mut self, op: Sqe, user_data: u64) -> Option<i32> {
        match op {
            Sqe::Accept { fd, multishot } => loop {
                // SAFETY: accept4 on a listener the worker holds, asking for no address.
                let conn = unsafe {
                    libc::accept4(
                        fd,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_CLOEXEC,
                    )
                };
                if conn < 0 {
                    return would_block(errno());
                }
                if !multishot {
                    return Some(conn);
                }
                self.ready.push_back((user_data, conn, MORE));
            },
            Sqe::Recv { fd, buf, len } => {
                // SAFETY: the worker guarantees `buf[..len]` is live, writable and unmoved
                // until this operation completes.
                let n = unsafe { libc::recv(fd, buf.cast(), len as usize, libc::MSG_DONTWAIT) };
                result(n)
            }
            Sqe::Send { fd, buf, len } => {
                // SAFETY: the worker guarantees `buf[..len]` is live and unmoved until this
                // operation completes.
                let n = unsafe {
                    libc::send(
                        fd,
                        buf.cast(),
                        len as usize,
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                result(n)
            }
            Sqe::SendV {
                fd,
                first,
                first_len,
                second,
                second_len,
            } => {
                let mut iov = [
                    libc::iovec {
                        iov_base: first.cast_mut().cast(),
                        iov_len: first_len as usize,
                    },
                    libc::iovec {
                        iov_base: second.cast_mut().cast(),
                        iov_len: second_len as usize,
                    },
                ];
                // SAFETY: msghdr is a plain C struct for which all-zero is valid.
                let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
                msg.msg_iov = iov.as_mut_ptr();
                msg.msg_iovlen = 2;
                // SAFETY: the header and iovecs are live locals; the worker guarantees both
                // buffers are live and unmoved until this operation completes.
                let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
                result(n)
            }
            Sqe::Read { fd, buf, len } => {
                // Only once it is readable: the eventfd is blocking.
                match poll_now(fd, libc::POLLIN) {
                    n if n <= 0 => None,
                    // SAFETY: the worker guarantees `buf[..len]` is live and writable until
                    // this operation completes.
                    _ => result(unsafe { libc::read(fd, buf.cast(), len as usize) }),
                }
            }
            Sqe::Poll { fd, events } => match poll_now(fd, events as i16) {
                0 => None,
                n => Some(n),
            },
            Sqe::Timeout { .. } | Sqe::Cancel { .. } => None,
        }
    }

    /// Retry what waits on `fd` (epoll said it is ready).
    fn ready_fd(&mut self, fd: RawFd) {
        let Some(slot) = self.slots.get(fd as usize) else {
            return;
        };
        let second = match slot.waiting {
            Wait::SendV => self
                .second
                .get(&fd)
                .copied()
                .unwrap_or((std::ptr::null(), 0)),
            _ => (std::ptr::null(), 0),
        };
        let (Some(op), user_data) = (slot.op(fd, second), slot.user_data) else {
            return;
        };
        if let Some(res) = self.attempt(op, user_data) {
            if self.slots[fd as usize].waiting == Wait::SendV {
                self.second.remove(&fd);
            }
            self.slots[fd as usize].waiting = Wait::Nothing;
            self.ready.push_back((user_data, res, 0));
        }
    }

    fn fire_timers(&mut self, now: Moment) {
        let mut i = 0;
        while i < self.timers.len() {
            if self.timers[i].0 <= now {
                let (_, user_data) = self.timers.swap_remove(i);
                self.ready.push_back((user_data, -libc::ETIME, 0));
            } else {
                i += 1;
            }
        }
    }
}

impl Driver for Epoll {
    unsafe fn push(&mut self, op: Sqe, user_data: u64) -> io::Result<()> {
        match op {
            Sqe::Timeout { after, .. } => {
                self.timers.push((Moment::now() + after, user_data));
                Ok(())
            }
            Sqe::Cancel { target, fd } => {
                if let Some(slot) = self.slots.get_mut(fd as usize) {
                    if slot.waiting != Wait::Nothing && slot.user_data == target {
                        slot.waiting = Wait::Nothing;
                        let listener = slot.listener;
                        self.ready.push_back((target, -libc::ECANCELED, 0));
                        if listener {
                            self.unregister(fd);
                        }
                    }
                }
                Ok(())
            }
            Sqe::Accept {
                fd,
                multishot: false,
            } => {
                // A listener every worker shares: take turns, as the ring's single accepts do.
                // The kernel wakes the first exclusive waiter in the socket's queue; leaving
                // it and joining again puts this worker at the back. No attempt now (it
                // would take the next connection out of turn): joining reports a listener
                // that is already readable, so no connection is missed.
                self.unregister(fd);
                self.wait_on(fd, op, user_data)
            }
            Sqe::Accept { fd, .. }
            | Sqe::Recv { fd, .. }
            | Sqe::Send { fd, .. }
            | Sqe::SendV { fd, .. }
            | Sqe::Read { fd, .. }
            | Sqe::Poll { fd, .. } => match self.attempt(op, user_data) {
                Some(res) => {
                    self.ready.push_back((user_data, res, 0));
                    Ok(())
                }
                None => self.wait_on(fd, op, user_data),
            },
        }
    }

    fn submit_and_wait(&mut self) -> io::Result<()> {
        let timeout = if !self.ready.is_empty() {
            0
        } else {
            let now = Moment::now();
            match self.timers.iter().map(|t| t.0).min() {
                None => -1,
                Some(at) => millis_until(at.since(now)),
            }
        };
        // SAFETY: epoll_wait writes at most `events.len()` entries into the live buffer.
        let n = unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                timeout,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::EINTR) {
                Ok(())
            } else {
                Err(e)
            };
        }
        for i in 0..n as usize {
            let fd = self.events[i].u64 as RawFd;
            self.ready_fd(fd);
        }
        if !self.timers.is_empty() {
            self.fire_timers(Moment::now());
        }
        Ok(())
    }

    fn complete(&mut self, out: &mut [Cqe]) -> usize {
        let n = out.len().min(self.ready.len());
        for (slot, cqe) in out.iter_mut().zip(self.ready.drain(..n)) {
            *slot = cqe;
        }
        n
    }

    fn forget(&mut self, fd: RawFd) {
        // Closing a connection's descriptor removes it from the epoll set (nobody else holds
        // its socket); a listener's socket outlives our descriptor.
        if self.slots.get(fd as usize).is_some_and(|s| s.listener) {
            self.unregister(fd);
        }
        if let Some(slot) = self.slots.get_mut(fd as usize) {
            if slot.waiting == Wait::SendV {
                self.second.remove(&fd);
            }
            *slot = Slot::default();
        }
    }
}

/// The poll events `fd` has now of `events` (0: none yet), or `-errno`; never waits.
fn poll_now(fd: RawFd, events: i16) -> i32 {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: poll reads and writes one live pollfd; a zero timeout does not wait.
    match unsafe { libc::poll(&mut p, 1, 0) } {
        n if n > 0 => i32::from(p.revents as u16),
        0 => 0,
        _ => -errno(),
    }
}

/// The process's limit on open descriptors (at most 2^20).
fn descriptor_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    usize::try_from(limit.rlim_cur).map_or(1 << 20, |n| n.min(1 << 20))
}

/// Rounded up, so that a timer due in 0.3 ms does not make a busy loop.
fn millis_until(d: Duration) -> i32 {
    d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// A failed call's completion: `None` to wait on EAGAIN, else `-errno`.
fn would_block(errno: i32) -> Option<i32> {
    (errno != libc::EAGAIN && errno != libc::EWOULDBLOCK && errno != libc::EINTR).then_some(-errno)
}

/// A call's completion result: its count, or `-errno`, or `None` to wait.
fn result(n: isize) -> Option<i32> {
    if n >= 0 {
        Some(i32::try_from(n).unwrap_or(i32::MAX))
    } else {
        would_block(errno())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_slot_stays_small() {
        // One per open descriptor, idle connections included (the 256 B budget of one).
        assert!(
            std::mem::size_of::<Slot>() <= 24,
            "{}",
            std::mem::size_of::<Slot>()
        );
    }
}
