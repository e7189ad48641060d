//! One HTTP/1.1 connection as a state machine: received bytes in, response bytes out.
//!
//! Every complete request in the input is answered in order into one output buffer (pipelining
//! costs one send per batch). A body that is not copied (held bytes, a stream, a file) follows
//! the output as its tail, and requests after it wait until it is sent. Request bodies are read
//! whole before the handler runs, within `Limits::max_body`. The connection decides keep-alive
//! and closing; its owner only moves bytes, as [`Connection::plan`] says.

use std::mem::MaybeUninit;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant, SystemTime};

use super::access_log::Entry;
use super::body::ChunkedDecoder;
use super::forwarded;
use super::offload::{Job, Reply, Respond};
use super::outgoing::{self, Delimit, Plan, Pulled, Source, Tail};
use super::proxy;
use super::request::{parse_head, Framing, HeaderSlots, MAX_HEADERS};
use super::response::{self, encode, encode_head, has_body, Length, CONTINUE};
use super::spool::{Spool, Spooled};
use super::{Context, Error, Request, Response};
use crate::metrics::{Counter, Counters};

/// The first read buffer of a connection; it grows only for a request that needs more.
const READ_SIZE: usize = 4096;
/// Stop answering pipelined requests once this much output waits, and flush first.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;
/// Buffers grown past this for one large request are given back once it is done.
const SHRINK_ABOVE: usize = 64 * 1024;
/// A body a handler wrote into its body buffer that is larger than this is handed to the
/// connection as it is, not copied after the head.
const MOVE_ABOVE: usize = 64 * 1024;
/// While a body is being spooled, each read has room for this much of it (less with a body
/// buffer smaller than this: see [`spool_read`]).
const SPOOL_READ: usize = 256 * 1024;

/// The room for each read while a body is spooled: large, so that a big upload takes few
/// reads and writes, but never more than the body buffer (at least one [`READ_SIZE`]).
pub(crate) fn spool_read(limits: &super::Limits) -> usize {
    limits.body_buffer.clamp(READ_SIZE, SPOOL_READ)
}

/// What the connection needs from its owner next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Send [`Connection::output`], then report with [`Connection::sent`].
    Write,
    /// Receive into [`Connection::recv_buf`], then report with [`Connection::received`].
    Read,
    /// Close the connection: everything owed has been sent.
    Close,
    /// Nothing to do until its owner hears back: the request under way is being answered
    /// elsewhere ([`Connection::take_job`], then [`Connection::finish`]), or its streamed
    /// body has nothing ready yet ([`Connection::resume`]).
    Wait,
}

/// Progress on the request at the start of the input, kept while its body arrives.
#[derive(Debug, Default)]
struct Pending {
    /// Boxed: most requests have no chunked or spooled body, and every idle connection would
    /// otherwise carry the decoder's ~100 bytes.
    body: Option<Box<BodyProgress>>,
    continue_sent: bool,
    /// Input bytes (from the request start) a Content-Length request needs in full: its head
    /// is complete and its body is awaited.
    need: usize,
}

/// A body on its way in: the chunked decoder's state, and the spool file of a body larger
/// than `Limits::body_buffer`.
#[derive(Debug)]
struct BodyProgress {
    chunked: ChunkedDecoder,
    spool: Option<Spool>,
}

impl BodyProgress {
    fn new() -> Box<BodyProgress> {
        Box::new(BodyProgress {
            chunked: ChunkedDecoder::new(),
            spool: None,
        })
    }

    /// Append `bytes` to the spool (created in `dir` if there is none yet).
    fn spool(&mut self, bytes: &[u8], ctx: &Context) -> Result<(), Error> {
        let spool = match &mut self.spool {
            Some(spool) => spool,
            None => {
                let dir = ctx.body_temp_dir.clone().unwrap_or_else(std::env::temp_dir);
                let created = Spool::create(&dir).map_err(|e| {
                    tracing::error!(
                        "cannot create a temporary file for a request body in {}: {e}",
                        dir.display()
                    );
                    Error::BodyNotStored
                })?;
                self.spool.insert(created)
            }
        };
        spool.write(bytes).map_err(|e| {
            tracing::error!("cannot write a request body to its temporary file: {e}");
            Error::BodyNotStored
        })
    }

    /// The spooled body, complete.
    fn finish(&mut self) -> Result<Option<Spooled>, Error> {
        let Some(spool) = self.spool.take() else {
            return Ok(None);
        };
        spool.finish().map(Some).map_err(|e| {
            tracing::error!("cannot map a spooled request body: {e}");
            Error::BodyNotStored
        })
    }
}

/// A connection's buffers and protocol state.
#[derive(Debug, Default)]
pub struct Connection {
    /// Received bytes live in `input[start..filled]`; the rest is room for the next read.
    input: Vec<u8>,
    start: usize,
    filled: usize,
    /// Encoded responses; `output[sent..]` is still to be sent.
    output: Vec<u8>,
    sent: usize,
    /// A body sent after the output (held bytes, a stream, a file); boxed: most connections
    /// never have one, and idle ones must stay small.
    tail: Option<Box<Tail>>,
    pending: Pending,
    /// After the output is flushed, close (error, `Connection: close`, HTTP/1.0, draining).
    close_after_flush: bool,
    /// The server is shutting down: answer what was asked, then close.
    draining: bool,
    /// `--proxy-protocol`: the PROXY header still expected before the first request.
    proxy: Option<proxy::Version>,
    /// A request was handed over to be answered elsewhere; the ones after it wait.
    awaiting: bool,
    /// ... and this is it, until the owner takes it.
    job: Option<Box<Job>>,
}

impl Connection {
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for the next read. Never empty while reading is wanted: a full buffer doubles, up
    /// to what the limits allow (a request beyond them has already been refused). It grows with
    /// what arrives, never with what a request declares: a `Content-Length` sent without its
    /// body must not make the server allocate the body, so memory stays within twice what the
    /// client actually sent.
    pub fn recv_buf(&mut self, ctx: &Context) -> &mut [u8] {
        if self.start == self.filled {
            self.start = 0;
            self.filled = 0;
            if self.input.len() > SHRINK_ABOVE {
                self.input = Vec::new();
            }
        }
        if self.input.is_empty() {
            self.input = vec![0; READ_SIZE];
        }
        let free = self.input.len() - self.filled;
        if free < READ_SIZE / 4 && self.start > 0 {
            self.input.copy_within(self.start..self.filled, 0);
            self.filled -= self.start;
            self.start = 0;
        }
        let spool_read = spool_read(&ctx.limits);
        if self.spooling() && self.input.len() - self.filled < spool_read {
            // A body going to its spool file: room for one large read; the buffer does not
            // grow past this (the input holds only the head and what the read brings).
            self.input.resize(self.filled + spool_read, 0);
        } else if self.filled == self.input.len() {
            let limits = &ctx.limits;
            let in_memory = limits.max_body.min(limits.body_buffer);
            let cap = 2 * limits.max_head + in_memory + 4 * READ_SIZE;
            let len = (self.input.len() * 2).min(cap).max(self.input.len());
            self.input.resize(len, 0);
        }
        &mut self.input[self.filled..]
    }

    /// `n` bytes were received into the start of [`Self::recv_buf`].
    pub fn received(&mut self, n: usize) {
        assert!(
            self.filled + n <= self.input.len(),
            "received more than the buffer holds"
        );
        self.filled += n;
    }

    /// Copy `bytes` in as if a socket read had delivered them; returns how many fit (call again
    /// with the rest after processing). For tests, benchmarks and fuzzing.
    pub fn receive(&mut self, bytes: &[u8], ctx: &Context) -> usize {
        let buf = self.recv_buf(ctx);
        let n = buf.len().min(bytes.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        self.received(n);
        n
    }

    /// Answer every complete request buffered, in order, into the output (until the output
    /// reaches its high-water mark: then flush and call again). Returns how many requests were
    /// answered or refused. A request `responder` leaves unanswered stops the loop: it waits
    /// as a job ([`Self::take_job`]), and the ones after it wait for its [`Self::finish`].
    pub fn process<R: Respond>(&mut self, responder: &mut R, ctx: &mut Context) -> usize {
        if let Some(version) = self.proxy {
            if !self.take_proxy_header(version, ctx) {
                return 0;
            }
        }
        let mut answered = 0;
        while !self.close_after_flush
            && self.start < self.filled
            && self.output.len() < OUTPUT_HIGH_WATER
            && self.tail.is_none()
            && !self.awaiting
        {
            match self.next_request(responder, ctx) {
                Some(used) => {
                    self.start += used;
                    self.pending = Pending::default();
                    answered += 1;
                }
                None => break,
            }
        }
        answered
    }

    /// Bytes to send next, as one buffer (empty once only a file region is left: see
    /// [`Self::plan`], which the worker follows).
    pub fn output(&self) -> &[u8] {
        if self.tail.is_none() {
            return &self.output[self.sent..];
        }
        match self.plan() {
            Plan::Bytes(bytes) | Plan::Vectored(bytes, _) | Plan::File { head: bytes, .. } => bytes,
            Plan::Idle => &[],
        }
    }

    /// How the bytes owed go out next: one buffer, two in one vectored send, or a file region.
    pub fn plan(&self) -> Plan<'_> {
        let first = &self.output[self.sent..];
        match &self.tail {
            Some(tail) => tail.plan(first),
            None if first.is_empty() => Plan::Idle,
            None => Plan::Bytes(first),
        }
    }

    /// `n` bytes of [`Self::plan`] were sent (of a vectored plan: counted across both).
    pub fn sent(&mut self, n: usize) {
        if self.tail.is_none() {
            assert!(
                self.sent + n <= self.output.len(),
                "sent more than the output holds"
            );
            self.sent += n;
            if self.sent == self.output.len() {
                self.output.clear();
                self.sent = 0;
                if self.output.capacity() > SHRINK_ABOVE {
                    self.output = Vec::new();
                }
            }
            return;
        }
        self.sent_with_tail(n);
    }

    /// [`Self::sent`] when a tail follows the output.
    #[inline(never)]
    fn sent_with_tail(&mut self, n: usize) {
        let in_output = (self.output.len() - self.sent).min(n);
        self.sent += in_output;
        if in_output < n {
            let tail = self.tail.as_mut().expect("sent more than the output holds");
            if tail.sent(n - in_output) {
                self.tail = None;
            }
        }
        if self.sent == self.output.len() {
            self.output.clear();
            self.sent = 0;
            if self.output.capacity() > SHRINK_ABOVE {
                self.output = Vec::new();
            }
            if self.tail.as_ref().is_some_and(|t| t.is_stream()) {
                self.pull();
            }
        }
    }

    /// The file region being sent ended before its length (the file shrank): the response
    /// cannot be completed; the connection closes.
    pub fn file_ended_early(&mut self) {
        tracing::debug!("a file shrank while it was being sent; closing its connection");
        self.tail = None;
        self.output.clear();
        self.sent = 0;
        self.close_after_flush = true;
    }

    /// Pull the stream in the tail into the output.
    fn pull(&mut self) {
        let Some(tail) = &mut self.tail else {
            return;
        };
        match tail.pull(&mut self.output) {
            Pulled::More => {}
            Pulled::Done => {
                if tail.delimit() == Delimit::Close {
                    self.close_after_flush = true;
                }
                self.tail = None;
            }
            Pulled::Broken => {
                self.tail = None;
                self.close_after_flush = true;
            }
            Pulled::Wait => {}
        }
    }

    /// The request handed over as a job, once (see [`Self::process`]).
    pub fn take_job(&mut self) -> Option<Box<Job>> {
        self.job.take()
    }

    /// Encode the reply to the job this connection handed over; the requests after it can be
    /// answered again. Returns how many were answered (1).
    pub fn finish(&mut self, reply: Reply, ctx: &mut Context) -> usize {
        self.awaiting = false;
        let Reply {
            job,
            status,
            close,
            mut headers,
            mut body,
            handed,
        } = reply;
        let called = Called {
            status,
            close: close || !job.keep_alive || self.draining,
            source: handed.map(|h| h.into_source()),
        };
        let started = ctx.access_log.as_ref().map(|_| job.started);
        let scratch = Scratch {
            headers: &mut headers,
            body: &mut body,
            date: &ctx.date,
            log: &mut ctx.access_log,
            counters: &mut ctx.counters,
        };
        let (out, tail) = (&mut self.output, &mut self.tail);
        let close = job.with_request(|req| {
            encode_answer(req, job.is_head, called, started, out, tail, scratch)
        });
        self.answered(close);
        1
    }

    /// The streamed body that was waiting has bytes (or its end): take them.
    pub fn resume(&mut self) {
        if self.sent == self.output.len() && self.tail.as_ref().is_some_and(|t| t.is_stream()) {
            self.pull();
        }
    }

    /// What to do next.
    pub fn want(&self) -> Want {
        if self.sent < self.output.len() {
            return Want::Write;
        }
        match &self.tail {
            // A stream's pull leaves the output empty only when it has nothing yet.
            Some(tail) if tail.is_stream() => Want::Wait,
            Some(_) => Want::Write,
            None if self.awaiting => Want::Wait,
            None if self.close_after_flush => Want::Close,
            None => Want::Read,
        }
    }

    /// Part of a request has been received and not yet answered.
    pub fn mid_request(&self) -> bool {
        self.start < self.filled
    }

    /// The request under way has a complete head and is waiting for (the rest of) its body.
    pub fn awaiting_body(&self) -> bool {
        self.pending.need > 0 || self.pending.body.is_some()
    }

    /// The body under way is being written to a temporary file.
    fn spooling(&self) -> bool {
        self.pending
            .body
            .as_ref()
            .is_some_and(|b| b.spool.is_some())
    }

    /// Give the buffers back while the connection is idle (nothing received or owed), so an
    /// idle keep-alive connection holds no buffer memory; the next read allocates again.
    /// Returns whether it was idle (and so released them).
    pub fn park(&mut self) -> bool {
        if self.mid_request() || self.want() != Want::Read {
            return false;
        }
        self.input = Vec::new();
        self.start = 0;
        self.filled = 0;
        self.output = Vec::new();
        self.sent = 0;
        true
    }

    /// Bytes of memory the connection's buffers hold (allocated, used or not).
    pub fn buffered_bytes(&self) -> usize {
        self.input.capacity() + self.output.capacity()
    }

    /// Graceful shutdown: finish the request under way (its response says `Connection: close`),
    /// then close. An idle connection wants to close at once.
    pub fn drain(&mut self) {
        self.draining = true;
        if !self.mid_request() {
            self.close_after_flush = true;
        }
    }

    /// Graceful shutdown, leaving idle connections open: every request from now on is
    /// answered with `Connection: close`, so a client that sends on this connection gets its
    /// answer rather than a reset; the worker decides when an idle one is closed.
    pub fn answer_with_close(&mut self) {
        self.draining = true;
    }

    /// Answer a request that took too long to arrive with 408, and close after it (a PROXY
    /// header that did not arrive in time: close without a word).
    pub fn time_out(&mut self, ctx: &mut Context) {
        if self.proxy.is_some() {
            ctx.counters.add(Counter::ProxyTimeout, 1);
            self.close_after_flush = true;
            return;
        }
        self.refuse(408, ctx);
    }

    /// The connection must begin with a PROXY protocol header (`--proxy-protocol`): its
    /// source address replaces the peer's ([`Context::conn`], `conn_changed`); a missing or
    /// malformed header closes the connection.
    pub fn expect_proxy_header(&mut self, version: proxy::Version) {
        self.proxy = Some(version);
    }

    /// Consume the PROXY header if it has arrived. False: wait for more, or close.
    fn take_proxy_header(&mut self, version: proxy::Version, ctx: &mut Context) -> bool {
        match proxy::parse(&self.input[self.start..self.filled], version) {
            proxy::Parsed::Incomplete => false,
            proxy::Parsed::Invalid(why) => {
                tracing::debug!("PROXY header refused: {why}; closing");
                ctx.counters.add(Counter::ProxyMalformed, 1);
                self.close_after_flush = true;
                self.start = self.filled;
                false
            }
            proxy::Parsed::Done { len, source, .. } => {
                self.start += len;
                self.proxy = None;
                if let Some(source) = source {
                    ctx.conn.peer = Some(source);
                    ctx.conn_changed = true;
                }
                true
            }
        }
    }

    /// Handle the request at `start`. `Some(bytes used)` once it is answered (or refused),
    /// `None` when more input is needed.
    fn next_request<R: Respond>(&mut self, responder: &mut R, ctx: &mut Context) -> Option<usize> {
        let buf = &mut self.input[self.start..self.filled];
        let mut slots: HeaderSlots<'_> = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let head = match parse_head(buf, &mut slots, &ctx.limits) {
            Ok(Some(head)) => head,
            Ok(None) => return None,
            Err(e) => return Some(self.fail(e, ctx)),
        };
        let head_len = head.len;
        let expect_continue = head.expect_continue;
        // A chunked or spooled body is taken in after a first parse; the head is then parsed
        // again (into these slots) to borrow it next to the body.
        let mut reparse_slots: HeaderSlots<'_> = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        // A Content-Length body spooled as it arrived: its head is parsed again from the input
        // once `buf` is no longer used (these slots are tied to that second borrow only).
        let mut spooled_slots: HeaderSlots<'_> = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        // A body larger than `body_buffer`, spooled; the request borrows its mapping.
        let spooled: Option<Spooled>;
        let (mut head, used) = match head.framing {
            Framing::Length(n) if n > ctx.limits.body_buffer as u64 => {
                match self.spool_length(head_len, n, expect_continue, ctx) {
                    Err(e) => return Some(self.fail(e, ctx)),
                    Ok(None) => return None,
                    Ok(Some(body)) => spooled = Some(body),
                }
                let head_bytes = &self.input[self.start..self.start + head_len];
                let Ok(Some(mut head)) = parse_head(head_bytes, &mut spooled_slots, &ctx.limits)
                else {
                    unreachable!("a head that parsed once parses again");
                };
                if let Some(body) = &spooled {
                    head.request.body = body.map.bytes();
                    head.request.body_file = Some(&body.file);
                }
                // The body left the input as it arrived: only the head is consumed here.
                (head, head_len)
            }
            Framing::Length(n) => {
                // parse_head refused lengths over max_body, so this fits in usize.
                let total = head_len + n as usize;
                if buf.len() < total {
                    self.pending.need = total;
                    self.send_continue(expect_continue);
                    return None;
                }
                let mut head = head;
                head.request.body = &buf[head_len..total];
                (head, total)
            }
            Framing::Chunked => {
                let (head_bytes, region) = buf.split_at_mut(head_len);
                let progress = self.pending.body.get_or_insert_with(BodyProgress::new);
                let decoder = &mut progress.chunked;
                let done = match decoder.decode(region, &ctx.limits) {
                    Err(e) => return Some(self.fail(e, ctx)),
                    Ok(None) => {
                        let region_len = region.len();
                        let decoded = decoder.decoded();
                        if progress.spool.is_some() || decoded > ctx.limits.body_buffer {
                            // Past the in-memory limit: what is decoded goes to the spool.
                            if let Err(e) = progress.spool(&region[..decoded], ctx) {
                                return Some(self.fail(e, ctx));
                            }
                            self.filled -= progress.chunked.take_decoded(region, region_len);
                        } else if decoder.gap() >= READ_SIZE {
                            self.filled -= decoder.compact(region, region_len);
                        }
                        self.send_continue(expect_continue);
                        return None;
                    }
                    Ok(Some(done)) => done,
                };
                if progress.spool.is_some() {
                    let finished = progress
                        .spool(&region[..done.body], ctx)
                        .and_then(|()| progress.finish());
                    match finished {
                        Ok(body) => spooled = body,
                        Err(e) => return Some(self.fail(e, ctx)),
                    }
                } else {
                    spooled = None;
                }
                let Ok(Some(mut head)) = parse_head(head_bytes, &mut reparse_slots, &ctx.limits)
                else {
                    unreachable!("a head that parsed once parses again");
                };
                head.request.body = &region[..done.body];
                if let Some(body) = &spooled {
                    head.request.body = body.map.bytes();
                    head.request.body_file = Some(&body.file);
                }
                (head, head_len + done.consumed)
            }
        };
        // The request borrows the connection's addresses from the context; the handler's
        // scratch buffers are borrowed beside them.
        let Context {
            conn,
            forwarded_allow,
            res_headers,
            res_body,
            date,
            access_log,
            counters,
            ..
        } = ctx;
        let forwarded_info;
        head.request.conn = conn;
        if let Some(trusted) = forwarded_allow {
            let mut info = conn.clone();
            forwarded::apply(&head.request, trusted, &mut info);
            forwarded_info = info;
            head.request.conn = &forwarded_info;
        }
        let scratch = Scratch {
            headers: res_headers,
            body: res_body,
            date,
            log: access_log,
            counters,
        };
        let answered = answer(
            responder,
            &head.request,
            head.is_head,
            head.keep_alive,
            self.draining,
            &mut self.output,
            &mut self.tail,
            scratch,
        );
        match answered {
            Ok(close) => self.answered(close),
            Err(job) => {
                self.job = Some(job);
                self.awaiting = true;
            }
        }
        Some(used)
    }

    /// After a response is encoded: close after it if it says so, and pull the first part of
    /// a streamed body, which goes with the head.
    fn answered(&mut self, close: bool) {
        self.close_after_flush |= close;
        if self.tail.as_ref().is_some_and(|t| t.is_stream()) {
            self.pull();
        }
    }

    /// Take in what has arrived of a Content-Length body of `len` bytes that is too large to
    /// hold in memory: it is appended to the spool, and the input keeps only the head (and
    /// whatever follows the body). `Some` once the body is complete.
    fn spool_length(
        &mut self,
        head_len: usize,
        len: u64,
        expect_continue: bool,
        ctx: &Context,
    ) -> Result<Option<Spooled>, Error> {
        let progress = self.pending.body.get_or_insert_with(BodyProgress::new);
        let body_start = self.start + head_len;
        let written = progress.spool.as_ref().map_or(0, Spool::len);
        let owed = usize::try_from(len - written).unwrap_or(usize::MAX);
        let take = (self.filled - body_start).min(owed);
        progress.spool(&self.input[body_start..body_start + take], ctx)?;
        self.input
            .copy_within(body_start + take..self.filled, body_start);
        self.filled -= take;
        if take < owed {
            self.send_continue(expect_continue);
            return Ok(None);
        }
        progress.finish()
    }

    fn send_continue(&mut self, expected: bool) {
        if expected && !self.pending.continue_sent {
            self.pending.continue_sent = true;
            self.output.extend_from_slice(CONTINUE);
        }
    }

    /// Refuse the request with the error's status and close after it; all buffered input is
    /// dropped (its framing is unknown). Returns the bytes consumed.
    fn fail(&mut self, error: Error, ctx: &mut Context) -> usize {
        self.refuse(error.status(), ctx);
        self.filled - self.start
    }

    fn refuse(&mut self, status: u16, ctx: &mut Context) {
        let body = response::reason(status);
        let headers = b"Content-Type: text/plain\r\n";
        let framing = response::Framing {
            head: false,
            close: true,
            keep_alive_10: false,
        };
        encode(
            &mut self.output,
            status,
            headers,
            body.as_bytes(),
            framing,
            ctx.date.header_block(),
        );
        self.close_after_flush = true;
        ctx.counters.add(Counter::response(status), 1);
        if let Some(refused) = Counter::refused(status) {
            ctx.counters.add(refused, 1);
        }
        if let Some(log) = &mut ctx.access_log {
            let entry = Entry {
                request: None,
                peer: ctx.conn.peer,
                status,
                body_len: body.len(),
                response_headers: headers,
                duration: Duration::ZERO,
                tls: ctx.conn.tls.as_deref(),
            };
            log.record(&entry, SystemTime::now());
        }
    }
}

/// What `answer` borrows from the [`Context`] beside the request.
struct Scratch<'c> {
    headers: &'c mut Vec<u8>,
    body: &'c mut Vec<u8>,
    date: &'c super::DateCache,
    log: &'c mut Option<super::access_log::AccessLog>,
    counters: &'c mut Counters,
}

/// What a handler answered: its status, whether the connection closes after it, and a body
/// that is not in the body buffer.
struct Called {
    status: u16,
    close: bool,
    source: Option<Source>,
}

/// Call the responder and encode its response; a body that is not copied into the output
/// becomes its `tail`. Returns whether the connection closes after it, or, when the responder
/// left the request to be answered elsewhere, the request as a job.
#[allow(clippy::too_many_arguments)]
fn answer<R: Respond>(
    responder: &mut R,
    request: &Request<'_>,
    is_head: bool,
    keep_alive: bool,
    draining: bool,
    out: &mut Vec<u8>,
    tail: &mut Option<Box<Tail>>,
    scratch: Scratch<'_>,
) -> Result<bool, Box<Job>> {
    let started = scratch.log.as_ref().map(|_| Instant::now());
    let mut res = Response::new(&mut *scratch.headers, &mut *scratch.body);
    let called = catch_unwind(AssertUnwindSafe(|| responder.respond(request, &mut res)));
    let failed = match called {
        Ok(true) => None,
        Ok(false) => match Job::new(request, is_head, keep_alive) {
            Ok(job) => return Err(Box::new(job)),
            Err(e) => Some(format!("cannot hand the request over: {e}")),
        },
        Err(_) => Some("handler panicked".to_string()),
    };
    let called = match failed {
        None => {
            let called = Called {
                status: res.status_code(),
                close: !keep_alive || draining || res.wants_close(),
                source: res.take_source(),
            };
            drop(res);
            called
        }
        Some(why) => {
            tracing::error!(
                method = request.method(),
                path = request.path(),
                "{why}: answered 500 and closed the connection"
            );
            drop(res);
            scratch.headers.clear();
            scratch.body.clear();
            scratch
                .headers
                .extend_from_slice(b"Content-Type: text/plain\r\n");
            scratch
                .body
                .extend_from_slice(response::reason(500).as_bytes());
            Called {
                status: 500,
                close: true,
                source: None,
            }
        }
    };
    Ok(encode_answer(
        request, is_head, called, started, out, tail, scratch,
    ))
}

/// Encode what a handler answered to `request` (see [`answer`]); with `started`, log it.
/// Returns whether the connection closes after it.
fn encode_answer(
    request: &Request<'_>,
    is_head: bool,
    called: Called,
    started: Option<Instant>,
    out: &mut Vec<u8>,
    tail: &mut Option<Box<Tail>>,
    scratch: Scratch<'_>,
) -> bool {
    let Scratch {
        headers,
        body,
        date,
        log,
        counters,
    } = scratch;
    let Called {
        status,
        close,
        source,
    } = called;
    let sends_body = has_body(status) && !is_head;
    let framing = response::Framing {
        head: is_head,
        close,
        keep_alive_10: request.version() == 0,
    };
    let (close, body_len) = if source.is_none() && body.len() <= MOVE_ABOVE {
        // The common case: a small body in the body buffer, copied after the head.
        encode(out, status, headers, body, framing, date.header_block());
        (close, if sends_body { body.len() as u64 } else { 0 })
    } else {
        let date = date.header_block();
        encode_large(out, tail, status, headers, body, source, framing, date)
    };
    counters.add(Counter::response(status), 1);
    if let (Some(log), Some(started)) = (log, started) {
        let body_len = usize::try_from(body_len).unwrap_or(usize::MAX);
        let entry = Entry {
            request: Some(request),
            peer: request.peer_addr(),
            status,
            body_len,
            response_headers: headers,
            duration: started.elapsed(),
            tls: request.tls(),
        };
        log.record(&entry, SystemTime::now());
    }
    close
}

/// Encode a response whose body is not copied after the head (held bytes, a stream, a file,
/// or a large body buffer handed over): its head into `out`, its body into `tail`. Returns
/// whether the connection closes after it, and the body's length for the access log (0 when
/// unknown or not sent).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn encode_large(
    out: &mut Vec<u8>,
    tail: &mut Option<Box<Tail>>,
    status: u16,
    headers: &[u8],
    body: &mut Vec<u8>,
    source: Option<Source>,
    mut framing: response::Framing,
    server_date: &[u8],
) -> (bool, u64) {
    let sends_body = has_body(status) && !framing.head;
    let source = match source {
        None => Source::Held(Box::new(std::mem::take(body))),
        Some(Source::Held(held)) if sends_body && (*held).as_ref().len() < outgoing::COPY_BELOW => {
            // Small enough to copy after the head (once: straight from where it is).
            let held = (*held).as_ref();
            encode(out, status, headers, held, framing, server_date);
            return (framing.close, held.len() as u64);
        }
        Some(source) => source,
    };
    let length = match source.len() {
        Some(n) => Length::Known(n),
        // An HTTP/1.0 client cannot be sent chunks: the body ends with the connection.
        None if framing.keep_alive_10 && sends_body => {
            framing.close = true;
            Length::UntilClose
        }
        None => Length::Chunked,
    };
    encode_head(out, status, headers, length, framing, server_date);
    let (delimit, len) = match length {
        Length::Known(n) => (Delimit::Length, n),
        Length::Chunked => (Delimit::Chunked, 0),
        Length::UntilClose => (Delimit::Close, 0),
    };
    // An empty body needs no tail; a stream said to be empty is still pulled, to check it is.
    if !sends_body || (length == Length::Known(0) && !matches!(source, Source::Stream(..))) {
        return (framing.close, 0);
    }
    *tail = Some(Box::new(Tail::new(source, delimit)));
    (framing.close, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Limits;

    /// Echoes the body; panics on /panic.
    fn echo(req: &Request<'_>, res: &mut Response<'_>) {
        assert!(req.path() != "/panic", "asked to panic");
        res.header("X-Path", req.path()).body(req.body());
    }

    /// Feed `chunks` one read each; return everything the connection sent and whether it
    /// wants to close at the end.
    fn run(chunks: &[&[u8]]) -> (String, Want) {
        let mut ctx = Context::default();
        let mut conn = Connection::new();
        let mut handler = echo;
        let mut sent = Vec::new();
        for chunk in chunks {
            let mut rest = *chunk;
            while !rest.is_empty() {
                assert_eq!(conn.want(), Want::Read);
                let n = conn.receive(rest, &ctx);
                rest = &rest[n..];
                loop {
                    conn.process(&mut handler, &mut ctx);
                    if conn.want() != Want::Write {
                        break;
                    }
                    sent.extend_from_slice(conn.output());
                    let n = conn.output().len();
                    conn.sent(n);
                }
                if conn.want() == Want::Close {
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&sent).replace(
            std::str::from_utf8(ctx.date.header_block()).expect("ascii"),
            "",
        );
        (text, conn.want())
    }

    fn ok(path: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nX-Path: {path}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn answers_pipelined_requests_in_order() {
        let (out, want) =
            run(&[b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"]);
        assert_eq!(out, ok("/a", "") + &ok("/b", ""));
        assert_eq!(want, Want::Read);
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let stream: &[u8] = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloPOST /y HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1;e=1\r\nc\r\n0\r\nT: 1\r\n\r\nGET /z HTTP/1.1\r\nHost: h\r\n\r\n";
        let whole = run(&[stream]);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(&bytes), whole);
        assert_eq!(
            whole.0,
            ok("/x", "hello") + &ok("/y", "abc") + &ok("/z", "")
        );
    }

    #[test]
    fn http10_and_connection_close() {
        let (out, want) = run(&[b"GET / HTTP/1.0\r\n\r\nGET /ignored HTTP/1.0\r\n\r\n"]);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nX-Path: /\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(want, Want::Close);
        let (out, want) = run(&[b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"]);
        assert!(out.ends_with("Connection: keep-alive\r\n\r\n"), "{out}");
        assert_eq!(want, Want::Read);
    }

    #[test]
    fn bad_request_after_a_good_one_closes() {
        let (out, want) = run(&[
            b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGARBAGE\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
        ]);
        assert!(out.starts_with(&ok("/a", "")), "{out}");
        assert!(
            out[ok("/a", "").len()..].starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{out}"
        );
        assert!(out.contains("Connection: close"), "{out}");
        assert_eq!(want, Want::Close);
    }

    #[test]
    fn handler_panic_is_500_and_close() {
        let (out, want) =
            run(&[b"GET /panic HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"]);
        assert!(
            out.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
            "{out}"
        );
        assert!(!out.contains("/b"), "{out}");
        assert_eq!(want, Want::Close);
    }

    #[test]
    fn expect_continue_then_body() {
        let (out, _) = run(&[
            b"PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            b"abc",
        ]);
        assert_eq!(
            out,
            format!("HTTP/1.1 100 Continue\r\n\r\n{}", ok("/u", "abc"))
        );
    }

    #[test]
    fn large_body_grows_then_shrinks_the_buffer() {
        let body = "x".repeat(900 * 1024);
        let req = format!(
            "POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (out, want) = run(&[req.as_bytes()]);
        assert_eq!(out, ok("/big", &body));
        assert_eq!(want, Want::Read);
        let mut conn = Connection::new();
        let ctx = Context::default();
        assert_eq!(conn.recv_buf(&ctx).len(), READ_SIZE);
    }

    #[test]
    fn declared_body_over_the_limit_is_refused_before_reading() {
        let (out, want) = run(&[b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2000000\r\n\r\n"]);
        assert!(
            out.starts_with("HTTP/1.1 413 Content Too Large\r\n"),
            "{out}"
        );
        assert_eq!(want, Want::Close);
    }

    #[test]
    fn chunked_body_with_many_tiny_chunks_stays_bounded() {
        let mut req = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..100_000 {
            req.extend_from_slice(b"1\r\nx\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        let reads: Vec<&[u8]> = req.chunks(READ_SIZE).collect();
        let (out, _) = run(&reads);
        assert_eq!(out, ok("/", &"x".repeat(100_000)));
    }

    #[test]
    fn park_releases_the_buffers_of_an_idle_connection_only() {
        let mut ctx = Context::default();
        let mut conn = Connection::new();
        conn.receive(b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /next", &ctx);
        conn.process(&mut echo, &mut ctx);
        assert!(!conn.park(), "output owed");
        let n = conn.output().len();
        conn.sent(n);
        assert!(!conn.park(), "a request is under way");
        conn.receive(b" HTTP/1.1\r\nHost: h\r\n\r\n", &ctx);
        conn.process(&mut echo, &mut ctx);
        let n = conn.output().len();
        conn.sent(n);
        assert!(conn.buffered_bytes() > 0);
        assert!(conn.park());
        assert_eq!(conn.buffered_bytes(), 0);
        // It works as before afterwards.
        conn.receive(b"GET /again HTTP/1.1\r\nHost: h\r\n\r\n", &ctx);
        conn.process(&mut echo, &mut ctx);
        assert!(String::from_utf8_lossy(conn.output()).contains("X-Path: /again"));
    }

    /// Records the body and whether it came spooled.
    fn spool_echo(req: &Request<'_>, res: &mut Response<'_>) {
        let spooled = if req.body_file().is_some() { "1" } else { "0" };
        res.header("X-Spooled", spooled).body(req.body());
    }

    fn spooled_run(limits: Limits, stream: &[u8], read: usize) -> String {
        let mut ctx = Context::new(limits);
        let mut conn = Connection::new();
        let mut sent = Vec::new();
        let mut max_input = 0;
        for chunk in stream.chunks(read) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let n = conn.receive(rest, &ctx);
                rest = &rest[n..];
                max_input = max_input.max(conn.buffered_bytes());
                while {
                    conn.process(&mut spool_echo, &mut ctx);
                    conn.want() == Want::Write
                } {
                    sent.extend_from_slice(conn.output());
                    let n = conn.output().len();
                    conn.sent(n);
                }
            }
        }
        assert!(max_input < 600 * 1024, "input grew to {max_input}");
        String::from_utf8_lossy(&sent).replace(
            std::str::from_utf8(ctx.date.header_block()).expect("ascii"),
            "",
        )
    }

    #[test]
    fn bodies_past_the_buffer_are_spooled_and_seen_whole() {
        let limits = Limits {
            max_body: 64 << 20,
            body_buffer: 4096,
            ..Limits::default()
        };
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut stream = format!(
            "PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        stream.extend_from_slice(&body);
        stream.extend_from_slice(
            b"POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        for part in body.chunks(70_000) {
            stream.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            stream.extend_from_slice(part);
            stream.extend_from_slice(b"\r\n");
        }
        stream.extend_from_slice(
            b"0\r\n\r\nPOST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
        );
        let expect = |path: &str, spooled: u8, body: &[u8]| {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nX-Spooled: {spooled}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(body);
            let _ = path;
            String::from_utf8_lossy(&r).into_owned()
        };
        let want = expect("/a", 1, &body) + &expect("/b", 1, &body) + &expect("/c", 0, b"abc");
        for read in [stream.len(), 65_536, 4_096, 1_000] {
            assert!(
                spooled_run(limits.clone(), &stream, read) == want,
                "read size {read}"
            );
        }
    }

    #[test]
    fn a_spool_that_cannot_be_made_is_a_500() {
        let mut ctx = Context::new(Limits {
            body_buffer: 8,
            ..Limits::default()
        });
        ctx.body_temp_dir = Some("/nonexistent-ringcorn-dir".into());
        let mut conn = Connection::new();
        conn.receive(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 20\r\n\r\n0123456789",
            &ctx,
        );
        conn.process(&mut spool_echo, &mut ctx);
        let out = String::from_utf8_lossy(conn.output()).into_owned();
        assert!(out.starts_with("HTTP/1.1 500 "), "{out}");
        let n = conn.output().len();
        conn.sent(n);
        assert_eq!(conn.want(), Want::Close);
    }

    #[test]
    fn a_declared_body_over_the_limit_is_refused_even_when_spooling() {
        let mut ctx = Context::new(Limits {
            max_body: 100,
            body_buffer: 8,
            ..Limits::default()
        });
        let mut conn = Connection::new();
        conn.receive(
            b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 101\r\n\r\n",
            &ctx,
        );
        conn.process(&mut spool_echo, &mut ctx);
        assert!(String::from_utf8_lossy(conn.output()).starts_with("HTTP/1.1 413 "));
    }

    #[test]
    fn drain_closes_idle_and_finishes_a_request_under_way() {
        let mut idle = Connection::new();
        idle.drain();
        assert_eq!(idle.want(), Want::Close);

        let mut ctx = Context::default();
        let mut conn = Connection::new();
        conn.receive(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\na",
            &ctx,
        );
        conn.process(&mut echo, &mut ctx);
        assert_eq!(conn.want(), Want::Read);
        conn.drain();
        assert_eq!(conn.want(), Want::Read);
        conn.receive(b"b", &ctx);
        conn.process(&mut echo, &mut ctx);
        let text = String::from_utf8_lossy(conn.output()).into_owned();
        assert!(text.contains("Connection: close\r\n\r\nab"), "{text}");
        let n = conn.output().len();
        conn.sent(n);
        assert_eq!(conn.want(), Want::Close);
    }
}
