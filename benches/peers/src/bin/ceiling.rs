//! ceiling: the thinnest io_uring HTTP responder, the kernel-bound ceiling for ringcorn.
//!
//! No HTTP parsing at all: each worker (a pinned thread with its own ring and SO_REUSEPORT
//! listener) keeps one multishot accept armed, and per connection alternates recv → send →
//! recv. A recv is only scanned for `\r\n\r\n` request terminators (found with memchr's SIMD
//! search, with a small state machine carrying a terminator split across two reads); each one
//! is answered with the same fixed `Hello, World!` response, all of one read's answers in one
//! send. The response carries realistic `Server`, `Date` (re-rendered once per second),
//! `Content-Type` and `Content-Length` headers.
//!
//! The ring is set up with SINGLE_ISSUER | DEFER_TASKRUN (kernel 6.1+), falling back to
//! COOP_TASKRUN, then to no flags on older kernels.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};

use clap::Parser;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use memchr::memmem;
use ringcorn_peers::{serve, DateCache, ServerArgs, HELLO};

/// The io_uring ceiling: multishot accept, recv, send; counts `\r\n\r\n` and answers each with
/// a fixed 13-byte `Hello, World!` response. Prints `listening on 127.0.0.1:PORT` on stderr
/// when ready; runs until killed.
#[derive(Parser)]
#[command(name = "ceiling", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
}

/// Submission queue size (completion queue: twice that, the kernel's default).
const RING_ENTRIES: u32 = 4096;
/// Receive buffer per connection; the bytes are only scanned, never kept.
const RECV_BUF: usize = 16 * 1024;

// user_data: the operation in the top byte, the connection's slot in the low 32 bits.
const OP_ACCEPT: u64 = 1 << 56;
const OP_RECV: u64 = 2 << 56;
const OP_SEND: u64 = 3 << 56;
const OP_CLOSE: u64 = 4 << 56;
const OP_MASK: u64 = 0xff << 56;

fn main() {
    let cli = Cli::parse();
    serve("ceiling", &cli.server, |_, listener| {
        Worker::new(listener)?.run()
    })
}

/// One connection. At most one operation (a recv or a send) is in flight for it at a time, and
/// that operation's buffer belongs to this struct's heap allocations, which never move or
/// shrink while it is in flight.
struct Conn {
    fd: RawFd,
    /// How much of `\r\n\r\n` the bytes received so far end with (0..=3).
    state: u8,
    recv: Box<[u8]>,
    /// The responses being sent, and how much of them has gone out.
    out: Vec<u8>,
    sent: usize,
}

struct Worker {
    ring: IoUring,
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<u32>,
    date: DateCache,
    response: Vec<u8>,
    finder: memmem::Finder<'static>,
    /// Completions copied out of the queue, so that handling them may push submissions.
    batch: Vec<(u64, i32, u32)>,
}

fn new_ring() -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(RING_ENTRIES)
        .or_else(|_| IoUring::builder().setup_coop_taskrun().build(RING_ENTRIES))
        .or_else(|_| IoUring::new(RING_ENTRIES))
}

impl Worker {
    fn new(listener: TcpListener) -> io::Result<Worker> {
        let mut worker = Worker {
            ring: new_ring()?,
            listener,
            conns: Vec::new(),
            free: Vec::new(),
            date: DateCache::new("ceiling"),
            response: Vec::new(),
            finder: memmem::Finder::new(b"\r\n\r\n"),
            batch: Vec::with_capacity(RING_ENTRIES as usize * 2),
        };
        worker.render_response();
        Ok(worker)
    }

    fn render_response(&mut self) {
        self.response.clear();
        self.response.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        self.response.extend_from_slice(self.date.lines());
        self.response
            .extend_from_slice(b"Content-Type: text/plain\r\nContent-Length: 13\r\n\r\n");
        self.response.extend_from_slice(HELLO);
    }

    fn run(mut self) -> io::Result<()> {
        self.arm_accept()?;
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // The completion queue is full: drain it below, then submit again.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => return Err(e),
            }
            if self.date.refresh() {
                self.render_response();
            }
            self.batch.clear();
            self.batch.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for i in 0..self.batch.len() {
                let (user_data, result, flags) = self.batch[i];
                let slot = (user_data & !OP_MASK) as u32;
                match user_data & OP_MASK {
                    OP_ACCEPT => self.on_accept(result, flags)?,
                    OP_RECV => self.on_recv(slot, result)?,
                    OP_SEND => self.on_send(slot, result)?,
                    _ => {} // OP_CLOSE: nothing to do.
                }
            }
        }
    }

    /// Push one submission, submitting queued ones first if the queue is full.
    ///
    /// # Safety
    /// Every buffer the entry points to must stay valid and unmoved until its completion.
    unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the caller guarantees the entry's buffers outlive the operation.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn arm_accept(&mut self) -> io::Result<()> {
        let entry = opcode::AcceptMulti::new(types::Fd(self.listener.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(OP_ACCEPT);
        // SAFETY: a multishot accept references no memory of ours, only the listener's
        // descriptor, which `self.listener` keeps open for the worker's whole life.
        unsafe { self.push(&entry) }
    }

    fn on_accept(&mut self, result: i32, flags: u32) -> io::Result<()> {
        if !cqueue::more(flags) {
            self.arm_accept()?;
        }
        if result < 0 {
            // EMFILE, ECONNABORTED...: the listener stays armed; nothing else to do.
            return Ok(());
        }
        let conn = Conn {
            fd: result,
            state: 0,
            recv: vec![0; RECV_BUF].into_boxed_slice(),
            out: Vec::with_capacity(1024),
            sent: 0,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.conns[slot as usize] = Some(conn);
                slot
            }
            None => {
                self.conns.push(Some(conn));
                (self.conns.len() - 1) as u32
            }
        };
        self.recv(slot)
    }

    fn recv(&mut self, slot: u32) -> io::Result<()> {
        let conn = self.conns[slot as usize].as_mut().expect("live slot");
        let entry = opcode::Recv::new(
            types::Fd(conn.fd),
            conn.recv.as_mut_ptr(),
            conn.recv.len() as u32,
        )
        .build()
        .user_data(OP_RECV | u64::from(slot));
        // SAFETY: `conn.recv` is a boxed slice owned by the connection in this slot; the slot
        // is only freed (and the box dropped) after this recv's completion has come back,
        // since a connection has one operation in flight at a time. Moving the `Conn` inside
        // `self.conns` does not move the boxed bytes.
        unsafe { self.push(&entry) }
    }

    fn send(&mut self, slot: u32) -> io::Result<()> {
        let conn = self.conns[slot as usize].as_mut().expect("live slot");
        let rest = &conn.out[conn.sent..];
        let entry = opcode::Send::new(types::Fd(conn.fd), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(OP_SEND | u64::from(slot));
        // SAFETY: `conn.out` is not touched (so not reallocated) until this send's completion
        // comes back, and the connection's slot is not freed before then (one operation in
        // flight per connection); its heap buffer does not move with the `Conn`.
        unsafe { self.push(&entry) }
    }

    fn close(&mut self, slot: u32) -> io::Result<()> {
        let conn = self.conns[slot as usize].take().expect("live slot");
        self.free.push(slot);
        let entry = opcode::Close::new(types::Fd(conn.fd))
            .build()
            .user_data(OP_CLOSE);
        // SAFETY: a close references no memory; no other operation on this descriptor is in
        // flight (its last recv or send has completed), and nothing uses the fd afterwards.
        unsafe { self.push(&entry) }
    }

    fn on_recv(&mut self, slot: u32, result: i32) -> io::Result<()> {
        if result == -libc::EINTR || result == -libc::EAGAIN {
            return self.recv(slot);
        }
        if result <= 0 {
            return self.close(slot); // EOF or an error (ECONNRESET...).
        }
        let conn = self.conns[slot as usize].as_mut().expect("live slot");
        let requests =
            count_terminators(&self.finder, &mut conn.state, &conn.recv[..result as usize]);
        if requests == 0 {
            return self.recv(slot);
        }
        conn.out.clear();
        conn.sent = 0;
        for _ in 0..requests {
            conn.out.extend_from_slice(&self.response);
        }
        self.send(slot)
    }

    fn on_send(&mut self, slot: u32, result: i32) -> io::Result<()> {
        if result == -libc::EINTR || result == -libc::EAGAIN {
            return self.send(slot);
        }
        if result <= 0 {
            return self.close(slot);
        }
        let conn = self.conns[slot as usize].as_mut().expect("live slot");
        conn.sent += result as usize;
        if conn.sent < conn.out.len() {
            self.send(slot) // A short send: the rest.
        } else {
            self.recv(slot)
        }
    }
}

/// Count the `\r\n\r\n` terminators in `data`, given that the bytes before it ended with the
/// first `*state` bytes of one; updates `*state` for the next read.
fn count_terminators(finder: &memmem::Finder<'_>, state: &mut u8, data: &[u8]) -> usize {
    let mut count = 0;
    let mut i = 0;
    // Finish (or abandon) a terminator begun in the previous read, byte by byte.
    while *state != 0 {
        let Some(&b) = data.get(i) else {
            return count;
        };
        i += 1;
        *state = step(*state, b);
        if *state == 4 {
            count += 1;
            *state = 0;
        }
    }
    // No partial match pending: the SIMD search finds whole terminators.
    while let Some(at) = finder.find(&data[i..]) {
        count += 1;
        i += at + 4;
    }
    // What the rest ends with: at most its last 3 bytes matter.
    for &b in &data[i.max(data.len().saturating_sub(3))..] {
        *state = step(*state, b);
    }
    count
}

/// The matcher for `\r\n\r\n`: after `state` matched bytes, read `b`; 4 means a whole match.
fn step(state: u8, b: u8) -> u8 {
    match (state, b) {
        (0 | 2, b'\r') => state + 1,
        (1 | 3, b'\n') => state + 1,
        (_, b'\r') => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_split(data: &[u8], cut: &[usize]) -> usize {
        let finder = memmem::Finder::new(b"\r\n\r\n");
        let mut state = 0;
        let mut count = 0;
        let mut from = 0;
        for &to in cut.iter().chain(std::iter::once(&data.len())) {
            count += count_terminators(&finder, &mut state, &data[from..to]);
            from = to;
        }
        count
    }

    #[test]
    fn every_split_of_a_pipeline() {
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let data: Vec<u8> = req.iter().chain(req).chain(req).copied().collect();
        assert_eq!(count_split(&data, &[]), 3);
        for a in 0..=data.len() {
            assert_eq!(count_split(&data, &[a]), 3, "cut at {a}");
            for b in a..=data.len() {
                assert_eq!(count_split(&data, &[a, b]), 3, "cuts at {a}, {b}");
            }
        }
        // One byte per read.
        let cuts: Vec<usize> = (1..data.len()).collect();
        assert_eq!(count_split(&data, &cuts), 3);
    }

    #[test]
    fn carriage_returns() {
        assert_eq!(count_split(b"\r\r\n\r\n", &[1]), 1);
        assert_eq!(count_split(b"\r\n\r\r\n\r\n", &[3]), 1);
        assert_eq!(count_split(b"\r\n\r\n\r\n", &[]), 1);
        assert_eq!(count_split(b"a\r\nb\r\n", &[2]), 0);
    }
}
