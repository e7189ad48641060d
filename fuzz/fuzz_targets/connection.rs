//! Fuzz the sans-IO HTTP/1.1 connection (`ringcorn::http::Connection`): arbitrary bytes, split
//! into reads at arbitrary points, driven the way the worker drives a socket.
//!
//! # Input layout
//!
//! ```text
//! byte 0  cfg   bits 0-1  limits: 0 default, 1 small, 2 tiny, 3 custom (6 bytes follow);
//!                         small, tiny and custom spool bodies past a body buffer smaller
//!                         than their largest body (the path of `--body-buffer-size`)
//!               bit  2    the handler panics on the path `/panic` (the 500 path)
//!               bit  3    drain() (graceful shutdown) before read number D (1 byte follows)
//!               bit  4    time_out() before read number T, if a request is under way (1 byte)
//!               bits 5-6  reads: 0 sizes (count n, then n bytes: size-1, cycled),
//!                         1 byte by byte, 2 as much as fits, 3 fixed size (1 byte: size-1)
//!               bit  7    the drain happens between process() and the send (output pending)
//! byte 1  send  bit  7    park() before each read (as the worker parks an idle connection)
//!               bit  6    each request is handed over as a job and answered from it (the
//!                         path of `--threads`, here on the same thread)
//!               bits 0-5  0: each send takes all the output; k: at most k bytes per send
//! [6 bytes custom limits] [D] [T] [split parameters] then the bytes the client sends
//! ```
//!
//! # What is checked (a panic here is a finding)
//!
//! - ringcorn does not panic (the handler's own panics are caught by ringcorn: fine);
//! - memory stays bounded after every step (`buffered_bytes`, see [`Bounds`]): by the limits,
//!   and in proportion to the bytes received; an idle keep-alive connection gives large buffers
//!   back;
//! - the output is a sequence of well-formed HTTP/1.1 responses, every byte of it
//!   ([`parse_responses`]), one per handler call, each echoing what the handler saw, in order;
//! - `Connection: close` ends the output and then `want()` is `Close`; `Close` is wanted only
//!   after such a response (or a drain); HTTP/1.0 and `Connection:` keep-alive rules hold;
//! - after drain() at most one more response comes, and it says `Connection: close`;
//!   time_out() answers 408 and closes;
//! - when no drain/time-out is involved, the same bytes in one piece give the same responses
//!   and the same handler calls (interim `100 Continue` responses aside, which depend on timing).
//!   One difference is policy, not a bug: when the input is invalid, which refusal it gets may
//!   depend on where reads cut it (the first problem to arrive is the one reported, as in
//!   nginx), so a final refusal may differ in its status, or be given in one run while the other
//!   still waits for bytes; the handler calls and every response before it must be the same.
//!
//! A check can be switched off while its bug is known and unfixed, to keep fuzzing for others:
//! `RINGCORN_FUZZ_SKIP=split-limits,proportional cargo fuzz run connection` (names: `split`,
//! `split-limits`, `continue-http10`, `proportional`; see `Check`).
//! `RINGCORN_FUZZ_SHOW=1 cargo fuzz run connection FILE` prints what the connection sent.

#![no_main]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Once, OnceLock};

use libfuzzer_sys::fuzz_target;
use ringcorn::http::{Connection, Context, Defer, Limits, Want};
use ringcorn::{Request, Response};

// Constants of src/http/conn.rs and src/http/response.rs the bounds are derived from (private
// there; keep in step).
/// `READ_SIZE`: the first read buffer, and the slack in the input buffer's cap.
const READ_SIZE: usize = 4096;
/// While a body is spooled (it is longer than `body_buffer`), the input has room for one read
/// of this size past what it holds (`conn.rs`'s `spool_read`); 0 when nothing can be spooled.
fn spool_read(limits: &Limits) -> usize {
    if limits.body_buffer >= limits.max_body {
        return 0;
    }
    limits.body_buffer.clamp(READ_SIZE, 256 * 1024)
}
/// `OUTPUT_HIGH_WATER`: process() stops answering once this much output waits.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;
/// `SHRINK_ABOVE`: buffers grown past this are given back once their request is done.
const SHRINK_ABOVE: usize = 64 * 1024;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
const PANIC_MESSAGE: &str = "fuzz: the handler panics on /panic";
/// The handler answers `/big` with this many bytes: small requests, big responses, so a
/// pipeline reaches the output high-water mark.
const BIG_REPLY: usize = 32 * 1024;

fuzz_target!(|data: &[u8]| {
    install_panic_hook();
    let Some(plan) = Plan::decode(data) else {
        return;
    };
    let mut ctx = Context::new(plan.limits.clone());
    let split = drive(&plan, &plan.pieces, &plan.events, &mut ctx);
    if std::env::var_os("RINGCORN_FUZZ_SHOW").is_some() {
        eprintln!(
            "limits {:?}, {} reads, events {:?}, want {:?} at the end\n{}",
            plan.limits,
            plan.pieces.len(),
            plan.events,
            split.want,
            String::from_utf8_lossy(&split.out)
        );
    }
    check_run(&plan, &split, "split");
    if plan.events.drain.is_none() && plan.events.time_out.is_none() && !skipped(Check::Split) {
        // The same bytes as fast as they fit, through the same Context (same Date, and its
        // scratch buffers reused as by a worker's next connection).
        let whole = drive(&plan, &[plan.data], &Events::default(), &mut ctx);
        check_run(&plan, &whole, "whole");
        compare_runs(&plan, &split, &whole);
    }
});

/// The split run and the whole run must give the same final responses and handler calls, and
/// want the same at the end (known differences may be tolerated through `RINGCORN_FUZZ_SKIP`).
fn compare_runs(plan: &Plan<'_>, split: &Run, whole: &Run) {
    let finals = |r: &Run| -> Vec<Vec<u8>> {
        let parsed = parse_responses(&r.out, &r.calls).expect("checked above");
        parsed
            .iter()
            .filter(|p| p.status >= 200)
            .map(|p| p.raw.to_vec())
            .collect()
    };
    let (a, b) = (finals(split), finals(whole));
    // Policy (see the module doc): a final refusal of invalid input may differ in its status.
    let refusal = |r: &[u8]| !r.starts_with(b"HTTP/1.1 200 ") && !r.starts_with(b"HTTP/1.1 500 ");
    // ... or be answered in one run while the other waits for more bytes.
    let refused_or_waits = |x: &[Vec<u8>], y: &[Vec<u8>], y_want: Want| {
        x.len() == y.len() + 1 && x[..y.len()] == *y && refusal(&x[y.len()]) && y_want == Want::Read
    };
    let tolerated_refusal = split.calls == whole.calls
        && ((!a.is_empty()
            && a.len() == b.len()
            && a[..a.len() - 1] == b[..b.len() - 1]
            && refusal(&a[a.len() - 1])
            && refusal(&b[b.len() - 1]))
            || refused_or_waits(&a, &b, whole.want)
            || refused_or_waits(&b, &a, split.want));
    // With `split-limits` skipped, a split run may stop early with 414/431.
    let early_limit = |r: &[u8]| r.starts_with(b"HTTP/1.1 414 ") || r.starts_with(b"HTTP/1.1 431 ");
    let tolerated_limit = skipped(Check::SplitLimits)
        && !a.is_empty()
        && a.len() <= b.len()
        && a[..a.len() - 1] == b[..a.len() - 1]
        && early_limit(&a[a.len() - 1])
        && whole.calls.starts_with(&split.calls);
    let same = (a == b && split.calls == whole.calls && split.want == whole.want)
        || tolerated_refusal
        || tolerated_limit;
    if !same {
        fail(
            plan,
            &format!(
                "split-dependent answer: split into {} reads gave {} responses {:?}, {} \
                 handler calls, want {:?}; in one piece {} responses {:?}, {} calls, want \
                 {:?}\n--- split output:\n{}\n--- whole output:\n{}",
                plan.pieces.len(),
                a.len(),
                statuses(&a),
                split.calls.len(),
                split.want,
                b.len(),
                statuses(&b),
                whole.calls.len(),
                whole.want,
                show(&split.out),
                show(&whole.out),
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Input decoding

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Event {
    /// Before this read (0-based).
    read: usize,
    /// Between process() and the send, while output is pending (drain only).
    mid_flush: bool,
}

#[derive(Debug, Default, Clone)]
struct Events {
    drain: Option<Event>,
    time_out: Option<usize>,
}

struct Plan<'a> {
    limits: Limits,
    /// park() before each read.
    park: bool,
    /// Requests are answered as jobs.
    as_jobs: bool,
    panics: bool,
    events: Events,
    /// At most this many bytes per send (0: all).
    send_size: usize,
    pieces: Vec<&'a [u8]>,
    data: &'a [u8],
}

impl<'a> Plan<'a> {
    fn decode(input: &'a [u8]) -> Option<Self> {
        let mut r = Reader(input);
        let cfg = r.byte()?;
        let send = r.byte()?;
        let send_size = usize::from(send & 0x3f);
        let limits = match cfg & 3 {
            0 => Limits::default(),
            1 => Limits {
                max_request_line: 64,
                max_header_line: 64,
                max_head: 256,
                max_header_count: 8,
                max_body: 256,
                body_buffer: 64,
                max_chunk_extensions: 32,
            },
            2 => Limits {
                max_request_line: 24,
                max_header_line: 16,
                max_head: 48,
                max_header_count: 2,
                max_body: 8,
                body_buffer: 2,
                max_chunk_extensions: 4,
            },
            _ => {
                let b = r.take(6)?;
                Limits {
                    max_request_line: 16 + usize::from(b[0]) * 8,
                    max_header_line: 8 + usize::from(b[1]) * 8,
                    max_head: 32 + usize::from(b[2]) * 16,
                    max_header_count: usize::from(b[3] % 32),
                    max_body: usize::from(b[4]) * 16,
                    body_buffer: usize::from(b[4]) * 8,
                    max_chunk_extensions: usize::from(b[5]),
                }
            }
        };
        let mut events = Events::default();
        if cfg & 8 != 0 {
            events.drain = Some(Event {
                read: usize::from(r.byte()?),
                mid_flush: cfg & 0x80 != 0,
            });
        }
        if cfg & 16 != 0 {
            events.time_out = Some(usize::from(r.byte()?));
        }
        let mode = (cfg >> 5) & 3;
        let sizes: Vec<usize> = match mode {
            0 => {
                let n = usize::from(r.byte()?);
                r.take(n)?.iter().map(|&b| usize::from(b) + 1).collect()
            }
            1 => vec![1],
            2 => Vec::new(),
            _ => vec![usize::from(r.byte()?) + 1],
        };
        let data = r.0;
        let mut pieces = Vec::new();
        if sizes.is_empty() {
            pieces.push(data);
        } else {
            let mut rest = data;
            for &size in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (piece, tail) = rest.split_at(size.min(rest.len()));
                pieces.push(piece);
                rest = tail;
            }
        }
        Some(Plan {
            limits,
            park: send & 0x80 != 0,
            as_jobs: send & 0x40 != 0,
            panics: cfg & 4 != 0,
            events,
            send_size,
            pieces,
            data,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
}

// ---------------------------------------------------------------------------------------------
// Memory bounds

/// What the connection may hold, derived from the limits and src/http/conn.rs.
///
/// - Input: `recv_buf` grows the buffer (doubling, or to what the request at its start needs)
///   up to `cap = 2 * max_head + max_body + 4 * READ_SIZE` and never past it, or keeps its first
///   `READ_SIZE`. Growing goes through `Vec::resize`, whose amortised growth may allocate up to
///   twice the length asked for (capacity = max(2 * old capacity, new length), and it only
///   reallocates when the old capacity is short of the new length): capacity < 2 * cap.
/// - Output: process() answers requests only while less than `OUTPUT_HIGH_WATER` waits, so the
///   output holds less than that plus one response (or plus one `100 Continue`: a 100 is
///   followed by its final response only in a later process(), after a flush). The biggest
///   response is the echo of a `max_body` body (or the `/big` reply) with headers bounded by the
///   request line (the handler echoes the path). Capacity < 2 * that, for the same amortised
///   growth.
/// - Idle (want Read, nothing buffered, after `recv_buf` as the worker calls it to arm the next
///   receive): an input longer than `SHRINK_ABOVE` is given back (at most 2 * SHRINK_ABOVE of
///   capacity kept), an output of capacity > `SHRINK_ABOVE` is given back once sent.
struct Bounds {
    /// Longest the pending output may be (bytes, not capacity).
    output_len: usize,
    /// Most buffered_bytes() at any time.
    total: usize,
    /// Most buffered_bytes() while idle between requests.
    idle: usize,
}

impl Bounds {
    /// Memory in proportion to the traffic: the input buffer holds what was received, or is
    /// sized for the request at its start (its start + head + declared body <= received +
    /// max_head + max_body), or doubles when full (2 * received); the output's capacity follows
    /// the longest output (+ the slack encode() reserves). Each at most doubled by `Vec`'s
    /// amortised growth.
    fn proportional(limits: &Limits, received: usize, peak_output: usize) -> usize {
        let input =
            (2 * received + limits.max_head + limits.max_body + spool_read(limits)).max(READ_SIZE);
        2 * input + 2 * (peak_output + 256)
    }

    fn new(limits: &Limits) -> Self {
        let in_memory = limits.max_body.min(limits.body_buffer);
        let input_len =
            (2 * limits.max_head + in_memory + 4 * READ_SIZE + spool_read(limits)).max(READ_SIZE);
        // Status line (`HTTP/1.1 NNN ` + reason + CRLF) < 64, Server + Date block 55,
        // `X-Path: ` + path + CRLF, `Content-Type: text/plain` 26, `Content-Length: ` + 20
        // digits + CRLF 38, `Connection: keep-alive` 24, blank line 2: < 256 + path.
        let response = 256 + limits.max_request_line + limits.max_body.max(BIG_REPLY);
        let output_len = OUTPUT_HIGH_WATER + response.max(CONTINUE.len());
        Bounds {
            output_len,
            total: 2 * input_len + 2 * output_len,
            idle: 2 * SHRINK_ABOVE + SHRINK_ABOVE,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The handler

/// What the handler saw in one call.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    method: String,
    path: String,
    version: u8,
    body: Vec<u8>,
    expect: bool,
    /// Connection rules: close unless kept alive (`close` token, or HTTP/1.0 without
    /// `keep-alive`).
    close: bool,
    panicked: bool,
}

thread_local! {
    /// Set while the handler runs: a panic then is the handler's, which ringcorn must catch.
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
}

/// libfuzzer-sys aborts on every panic, caught or not. Let the handler's panics unwind to
/// ringcorn's catch_unwind (quietly); any other panic is still a crash.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_HANDLER.with(|h| h.replace(false)) {
                return;
            }
            previous(info);
        }));
    });
}

type Log = Rc<RefCell<Vec<Call>>>;

/// Echo the body, with the path in `X-Path` (`/big`: answer [`BIG_REPLY`] bytes instead); panic
/// on `/panic` (after starting a response, which must not leak into the 500) when `panics`.
fn echo(log: Log, panics: bool) -> impl FnMut(&Request<'_>, &mut Response<'_>) + 'static {
    move |req: &Request<'_>, res: &mut Response<'_>| {
        IN_HANDLER.with(|h| h.set(true));
        let mut close = false;
        let mut keep_alive = false;
        for (name, value) in req.headers() {
            if name.eq_ignore_ascii_case("connection") {
                for token in value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
        }
        log.borrow_mut().push(Call {
            method: req.method().to_string(),
            path: req.path().to_string(),
            version: req.version(),
            body: req.body().to_vec(),
            expect: req.header("expect").is_some(),
            close: close || (req.version() == 0 && !keep_alive),
            panicked: true,
        });
        res.header("X-Path", req.path());
        if panics && req.path() == "/panic" {
            res.header("X-Partial", "1").body(b"partial");
            panic!("{PANIC_MESSAGE}");
        }
        if req.path() == "/big" {
            res.body_mut().resize(BIG_REPLY, b'x');
        } else {
            res.body(req.body());
        }
        if let Some(call) = log.borrow_mut().last_mut() {
            call.panicked = false;
        }
        IN_HANDLER.with(|h| h.set(false));
    }
}

// ---------------------------------------------------------------------------------------------
// Driving

/// One connection's life.
struct Run {
    /// Everything sent.
    out: Vec<u8>,
    calls: Vec<Call>,
    /// want() at the end.
    want: Want,
    /// Final responses encoded (sent or pending) when drain() was called, and whether a request
    /// was under way then.
    drained: Option<(usize, bool)>,
    /// time_out() was called; output length then.
    timed_out: Option<usize>,
}

/// The worker's loop: flush output before receiving; after each receive, process and send
/// until nothing more is answered; stop once the connection wants to close.
fn drive(plan: &Plan<'_>, pieces: &[&[u8]], events: &Events, ctx: &mut Context) -> Run {
    let bounds = Bounds::new(&ctx.limits);
    let limits = ctx.limits.clone();
    let log: Log = Rc::default();
    let mut handler = echo(log.clone(), plan.panics);
    let mut conn = Connection::new();
    let mut run = Run {
        out: Vec::new(),
        calls: Vec::new(),
        want: conn.want(),
        drained: None,
        timed_out: None,
    };
    if conn.want() != Want::Read {
        fail(plan, "a new connection does not want to read");
    }
    // Bytes received so far, and the longest output seen: for the proportional bound.
    let received = Cell::new(0usize);
    let peak_output = Cell::new(0usize);
    let check = |conn: &Connection, what: &str| {
        peak_output.set(peak_output.get().max(conn.output().len()));
        let proportional = Bounds::proportional(&limits, received.get(), peak_output.get());
        if conn.buffered_bytes() > proportional && !skipped(Check::Proportional) {
            fail(
                plan,
                &format!(
                    "{what}: buffered_bytes {} after {} bytes received (longest output {}): \
                     more than the {proportional} they can need",
                    conn.buffered_bytes(),
                    received.get(),
                    peak_output.get()
                ),
            );
        }
        if conn.output().len() > bounds.output_len {
            fail(
                plan,
                &format!(
                    "{what}: {} bytes of output pending, bound {}",
                    conn.output().len(),
                    bounds.output_len
                ),
            );
        }
        if conn.buffered_bytes() > bounds.total {
            fail(
                plan,
                &format!(
                    "{what}: buffered_bytes {} over the bound {} for {:?}",
                    conn.buffered_bytes(),
                    bounds.total,
                    limits
                ),
            );
        }
    };
    let drain = |conn: &mut Connection, run: &mut Run| {
        // The output holds whole responses (sent or pending) for the calls so far.
        let mut all = run.out.clone();
        all.extend_from_slice(conn.output());
        let finals = match parse_responses(&all, &log.borrow()) {
            Ok(r) => r.iter().filter(|p| p.status >= 200).count(),
            Err(e) => fail(plan, &format!("malformed output before drain(): {e}")),
        };
        run.drained = Some((finals, conn.mid_request()));
        conn.drain();
    };
    let flush = |conn: &mut Connection, run: &mut Run| {
        while conn.want() == Want::Write {
            let out = conn.output();
            let n = if plan.send_size == 0 {
                out.len()
            } else {
                out.len().min(plan.send_size)
            };
            run.out.extend_from_slice(&out[..n]);
            conn.sent(n);
            check(conn, "after sent()");
        }
    };
    'reads: for (i, piece) in pieces.iter().enumerate() {
        if conn.want() == Want::Close {
            break;
        }
        if let Some(ev) = events.drain {
            if ev.read == i && !ev.mid_flush && run.drained.is_none() {
                drain(&mut conn, &mut run);
                if conn.want() == Want::Close {
                    break;
                }
            }
        }
        if plan.park {
            // The worker parks a connection idle for a while: no buffers held until it speaks.
            let idle = !conn.mid_request() && conn.want() == Want::Read;
            let before = conn.buffered_bytes();
            let parked = conn.park();
            if parked != idle {
                fail(plan, &format!("park() returned {parked}, idle {idle}"));
            }
            let after = conn.buffered_bytes();
            if (parked && after != 0) || (!parked && after != before) {
                fail(
                    plan,
                    &format!("park() returned {parked}: {before} -> {after} bytes held"),
                );
            }
        }
        if events.time_out == Some(i) && conn.mid_request() && conn.want() == Want::Read {
            // What the worker's tick does to a request that is too slow to arrive.
            run.timed_out = Some(run.out.len());
            conn.time_out(ctx);
            check(&conn, "after time_out()");
            flush(&mut conn, &mut run);
            break;
        }
        let mut rest: &[u8] = piece;
        while !rest.is_empty() {
            match conn.want() {
                Want::Close => break 'reads,
                Want::Write => fail(plan, "output left unsent before a receive"),
                Want::Wait => fail(plan, "waiting, with every handler inline"),
                Want::Read => {}
            }
            let n = conn.receive(rest, ctx);
            received.set(received.get() + n);
            if n == 0 {
                fail(plan, "want() is Read but recv_buf() has no room");
            }
            rest = &rest[n..];
            check(&conn, "after receive()");
            loop {
                if plan.as_jobs {
                    conn.process(&mut Defer, ctx);
                    if let Some(job) = conn.take_job() {
                        if conn.want() != Want::Wait {
                            fail(plan, "a job is out but the connection does not wait");
                        }
                        let (reply, pump) = (*job).answer(&mut handler);
                        if pump.is_some() {
                            fail(plan, "a pump for a handler without streams");
                        }
                        conn.finish(reply, ctx);
                    }
                } else {
                    conn.process(&mut handler, ctx);
                }
                IN_HANDLER.with(|h| h.set(false));
                check(&conn, "after process()");
                if let Some(ev) = events.drain {
                    if ev.mid_flush && i >= ev.read && run.drained.is_none() {
                        drain(&mut conn, &mut run);
                    }
                }
                if conn.want() != Want::Write {
                    break;
                }
                flush(&mut conn, &mut run);
            }
            if conn.want() == Want::Read && !conn.mid_request() {
                // The worker arms the next receive now: recv_buf() gives big buffers back.
                let _ = conn.recv_buf(ctx);
                if conn.buffered_bytes() > bounds.idle {
                    fail(
                        plan,
                        &format!(
                            "idle keep-alive connection holds {} bytes (bound {})",
                            conn.buffered_bytes(),
                            bounds.idle
                        ),
                    );
                }
            }
        }
    }
    run.want = conn.want();
    run.calls = log.borrow().clone();
    run
}

// ---------------------------------------------------------------------------------------------
// Checks

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Same responses whatever the read boundaries.
    Split,
    /// Part of `Split`: no 414/431 for a request that fits the limits when it arrives whole.
    SplitLimits,
    /// No `100 Continue` to an HTTP/1.0 request (RFC 9110 §10.1.1: MUST ignore the expectation).
    ContinueHttp10,
    /// Memory in proportion to what was received ([`Bounds::proportional`]).
    Proportional,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::Split => "split",
            Check::SplitLimits => "split-limits",
            Check::ContinueHttp10 => "continue-http10",
            Check::Proportional => "proportional",
        }
    }
}

fn skipped(check: Check) -> bool {
    static SKIP: OnceLock<String> = OnceLock::new();
    SKIP.get_or_init(|| std::env::var("RINGCORN_FUZZ_SKIP").unwrap_or_default())
        .split(',')
        .any(|s| s.trim() == check.name())
}

fn check_run(plan: &Plan<'_>, run: &Run, which: &str) {
    let responses = match parse_responses(&run.out, &run.calls) {
        Ok(r) => r,
        Err(e) => fail(
            plan,
            &format!("{which}: malformed output: {e}\n{}", show(&run.out)),
        ),
    };
    let err = |msg: String| -> ! {
        fail(
            plan,
            &format!("{which}: {msg}\n--- output:\n{}", show(&run.out)),
        )
    };
    let finals: Vec<&Parsed<'_>> = responses.iter().filter(|r| r.status >= 200).collect();
    let mapped = finals.iter().filter(|r| r.call.is_some()).count();
    if mapped != run.calls.len() {
        err(format!(
            "{} handler calls but {mapped} responses from the handler",
            run.calls.len()
        ));
    }
    let after_drain = |index: usize| run.drained.is_some_and(|(n, _)| index >= n);
    for (i, r) in finals.iter().enumerate() {
        if r.close && i + 1 != finals.len() {
            err(format!(
                "response {i} says Connection: close but more follow"
            ));
        }
        match r.call.map(|c| &run.calls[c]) {
            Some(call) => {
                let expected_close = call.close || call.panicked;
                if r.close != expected_close && !(after_drain(i) && r.close) {
                    err(format!(
                        "response {i} (status {}): Connection: close is {}, expected {} for {call:?}",
                        r.status, r.close, expected_close
                    ));
                }
                if call.panicked {
                    if r.status != 500 || !r.close {
                        err(format!(
                            "handler panic answered {} (close {})",
                            r.status, r.close
                        ));
                    }
                    let names: Vec<&[u8]> = r.headers.iter().map(|h| h.0).collect();
                    if names.iter().any(|n| n.eq_ignore_ascii_case(b"x-partial")) {
                        err("the 500 leaks headers the panicking handler set".into());
                    }
                    if call.method != "HEAD" && r.body != b"Internal Server Error" {
                        err(format!("500 body {:?}", String::from_utf8_lossy(r.body)));
                    }
                } else {
                    if r.status != 200 {
                        err(format!("echo answered {} for {call:?}", r.status));
                    }
                    if r.header(b"x-path") != Some(call.path.as_bytes()) {
                        err(format!("response {i} is not for {call:?}"));
                    }
                    let reply = if call.path == "/big" {
                        vec![b'x'; BIG_REPLY]
                    } else {
                        call.body.clone()
                    };
                    if call.method == "HEAD" {
                        if r.content_length != Some(reply.len()) || !r.body.is_empty() {
                            err(format!("HEAD response framing wrong for {call:?}"));
                        }
                    } else if r.body != reply.as_slice() {
                        err(format!("response {i} does not echo the body of {call:?}"));
                    }
                    let ka10 = r
                        .header(b"connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case(b"keep-alive"));
                    if ka10 != (call.version == 0 && !r.close) {
                        err(format!(
                            "response {i}: Connection: keep-alive is {ka10} for {call:?}"
                        ));
                    }
                }
                if r.continued && call.version == 0 && !skipped(Check::ContinueHttp10) {
                    err(format!(
                        "100 Continue sent to an HTTP/1.0 request (RFC 9110 §10.1.1) {call:?}"
                    ));
                }
                if r.continued && !call.expect {
                    err(format!(
                        "100 Continue for a request without Expect: {call:?}"
                    ));
                }
            }
            None => {
                // A refusal by ringcorn itself.
                if !r.close {
                    err(format!("refusal {} without Connection: close", r.status));
                }
                if !matches!(r.status, 400 | 408 | 413 | 414 | 417 | 431 | 501 | 505) {
                    err(format!("unexpected refusal status {}", r.status));
                }
                if r.header(b"content-type") != Some(b"text/plain") || r.body.is_empty() {
                    err(format!("refusal {} has no text/plain body", r.status));
                }
            }
        }
    }
    let last_closes = finals.last().is_some_and(|r| r.close);
    if last_closes && run.want != Want::Close {
        err(format!(
            "Connection: close sent, then want() is {:?}",
            run.want
        ));
    }
    if run.want == Want::Close && !last_closes && run.drained.is_none() {
        err("want() is Close without a Connection: close response or a drain".into());
    }
    if let Some((before, mid_request)) = run.drained {
        let after = finals.len().saturating_sub(before);
        if after > 1 {
            err(format!("{after} responses after drain()"));
        }
        if !mid_request && after > 0 {
            err("an idle connection answered a request after drain()".into());
        }
        if (!mid_request || after == 1) && run.want != Want::Close {
            err(format!("drain(): want() is {:?} at the end", run.want));
        }
    }
    if let Some(at) = run.timed_out {
        let tail: Vec<&Parsed<'_>> = responses.iter().filter(|r| r.offset >= at).collect();
        if tail.len() != 1 || tail[0].status != 408 || !tail[0].close {
            err(format!(
                "time_out() gave {:?}",
                tail.iter().map(|r| r.status).collect::<Vec<_>>()
            ));
        }
        if run.want != Want::Close {
            err("time_out(): the connection does not close".into());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A strict HTTP/1.1 response parser

struct Parsed<'a> {
    offset: usize,
    status: u16,
    headers: Vec<(&'a [u8], &'a [u8])>,
    content_length: Option<usize>,
    close: bool,
    body: &'a [u8],
    /// The whole response, bytes as sent.
    raw: &'a [u8],
    /// The handler call it answers (final responses with status 200 or 500).
    call: Option<usize>,
    /// A `100 Continue` came just before it.
    continued: bool,
}

impl Parsed<'_> {
    fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.0.eq_ignore_ascii_case(name))
            .map(|h| h.1)
    }
}

/// Parse `out` as a sequence of complete responses; every byte must belong to one. `calls` (the
/// handler's, in order) tell which responses answer a HEAD (no body) request: ringcorn's own
/// refusals never come from the handler and are never 200 or 500.
fn parse_responses<'a>(out: &'a [u8], calls: &[Call]) -> Result<Vec<Parsed<'a>>, String> {
    let mut responses: Vec<Parsed<'a>> = Vec::new();
    let mut pos = 0;
    let mut next_call = 0;
    let mut continued = false;
    while pos < out.len() {
        let at = |what: &str| format!("response {} at byte {pos}: {what}", responses.len());
        let s = &out[pos..];
        let head_end = find(s, b"\r\n\r\n").ok_or_else(|| at("no end of head"))? + 4;
        // Lines each ending in CRLF (a bare LF or CR is caught as a control byte below).
        let mut lines = s[..head_end - 3].split(|&b| b == b'\n');
        let status_line = lines.next().ok_or_else(|| at("no status line"))?;
        let status_line = status_line
            .strip_suffix(b"\r")
            .ok_or_else(|| at("status line without CRLF"))?;
        let rest = status_line
            .strip_prefix(b"HTTP/1.1 ")
            .ok_or_else(|| at("status line does not start with HTTP/1.1"))?;
        if rest.len() < 4 || rest[3] != b' ' || !rest[..3].iter().all(u8::is_ascii_digit) {
            return Err(at("bad status code"));
        }
        let status = rest[..3]
            .iter()
            .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
        if !(100..=999).contains(&status) {
            return Err(at("status out of range"));
        }
        let reason = &rest[4..];
        if !reason
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
        {
            return Err(at("bad reason phrase"));
        }
        let mut headers = Vec::new();
        for line in lines {
            let line = line
                .strip_suffix(b"\r")
                .ok_or_else(|| at("header line without CRLF"))?;
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .ok_or_else(|| at("header without colon"))?;
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            let value = value
                .strip_prefix(b" ")
                .ok_or_else(|| at("no SP after header colon"))?;
            if !is_token(name) {
                return Err(at("bad header name"));
            }
            if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
                || value.first().is_some_and(|b| b.is_ascii_whitespace())
                || value.last().is_some_and(|b| b.is_ascii_whitespace())
            {
                return Err(at("bad header value"));
            }
            headers.push((name, value));
        }
        let count = |name: &[u8]| {
            headers
                .iter()
                .filter(|h| h.0.eq_ignore_ascii_case(name))
                .count()
        };
        let value = |name: &[u8]| {
            headers
                .iter()
                .find(|h| h.0.eq_ignore_ascii_case(name))
                .map(|h| h.1)
        };
        if status < 200 {
            if s[..head_end] != *CONTINUE {
                return Err(at("an interim response other than a bare 100 Continue"));
            }
            if continued {
                return Err(at("two 100 Continue in a row"));
            }
            continued = true;
            pos += head_end;
            continue;
        }
        if count(b"transfer-encoding") != 0 {
            return Err(at("Transfer-Encoding in a response"));
        }
        if count(b"date") != 1 || value(b"date").is_some_and(|d| d.len() != 29) {
            return Err(at("Date missing, repeated or malformed"));
        }
        if count(b"server") != 1 {
            return Err(at("Server missing or repeated"));
        }
        if count(b"connection") > 1 {
            return Err(at("two Connection headers"));
        }
        let close = match value(b"connection") {
            None => false,
            Some(b"close") => true,
            Some(b"keep-alive") => false,
            Some(_) => return Err(at("bad Connection value")),
        };
        let content_length = match count(b"content-length") {
            0 => None,
            1 => {
                let v = value(b"content-length").unwrap_or_default();
                if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                    return Err(at("bad Content-Length"));
                }
                Some(
                    std::str::from_utf8(v)
                        .map_err(|_| at("cl"))?
                        .parse::<usize>()
                        .map_err(|_| at("cl"))?,
                )
            }
            _ => return Err(at("two Content-Length headers")),
        };
        let call = if status == 200 || status == 500 {
            let c = next_call;
            if c >= calls.len() {
                return Err(at("a 200/500 response without a handler call"));
            }
            next_call += 1;
            Some(c)
        } else {
            None
        };
        let no_body = status == 204 || status == 304;
        if no_body && content_length.is_some() && status == 204 {
            return Err(at("Content-Length in a 204"));
        }
        let length = match (no_body, content_length) {
            (true, _) => 0,
            (false, Some(n)) => n,
            (false, None) => return Err(at("no Content-Length: unframed body")),
        };
        let is_head = call.is_some_and(|c| calls[c].method == "HEAD");
        let body_len = if is_head { 0 } else { length };
        if s.len() < head_end + body_len {
            return Err(at("body shorter than Content-Length"));
        }
        let body = &s[head_end..head_end + body_len];
        responses.push(Parsed {
            offset: pos,
            status,
            headers,
            content_length,
            close,
            body,
            raw: &s[..head_end + body_len],
            call,
            continued,
        });
        continued = false;
        pos += head_end + body_len;
    }
    Ok(responses)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Reporting

fn statuses(responses: &[Vec<u8>]) -> Vec<String> {
    responses
        .iter()
        .map(|r| String::from_utf8_lossy(&r[9..12.min(r.len())]).into_owned())
        .collect()
}

fn show(bytes: &[u8]) -> String {
    const MAX: usize = 4000;
    let text = format!(
        "{:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)])
    );
    if bytes.len() > MAX {
        format!("{text} ... ({} bytes)", bytes.len())
    } else {
        text
    }
}

fn fail(plan: &Plan<'_>, msg: &str) -> ! {
    panic!(
        "{msg}\n--- limits {:?}, handler panics on /panic: {}, events {:?}, park {}, send size \
         {}, {} reads of sizes {:?}\n--- input: {}",
        plan.limits,
        plan.panics,
        plan.events,
        plan.park,
        plan.send_size,
        plan.pieces.len(),
        plan.pieces
            .iter()
            .map(|p| p.len())
            .take(64)
            .collect::<Vec<_>>(),
        show(plan.data)
    )
}
