//! loadgen: an open-loop, fixed-rate HTTP/1.1 load generator that measures latency without
//! coordinated omission.
//!
//! Request k (k = 0, 1, 2...) is scheduled at `start + k / rate` and belongs to connection
//! `k mod C`, whatever happened before: a connection with requests still unanswered queues the
//! new one behind them (pipelining), so a stalled server cannot slow the offered load down.
//! Each request's latency runs from its *scheduled* time to the last byte of its response, so
//! the time a request waited to be sent, because of the server or of this process, counts.
//!
//! One thread (pin it with taskset), non-blocking sockets and epoll. Within `--spin-us` of
//! the next send (default 1000 µs) it busy-polls epoll; longer waits use `epoll_pwait2` with
//! nanosecond timeouts and the thread's timer slack set to 1 ns. How late requests were
//! queued behind their schedule is printed on stderr.
//!
//! Connections may end under it (a server draining for a reload answers with
//! `Connection: close`): a new one is made at once and the requests never written on the old
//! one move to it; those written and not answered are errors, counted by kind (see `--help`),
//! never retried. Used by scripts/lifecycle.sh to count what a server loses while it reloads,
//! upgrades or replaces workers.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use ringcorn_peers::{die, loopback_addr};
use socket2::{Domain, Protocol, Socket, Type};

/// Open-loop fixed-rate HTTP/1.1 load generator: R requests/s spread over C keep-alive
/// connections, latency from each request's scheduled send time (no coordinated omission).
/// Prints one line of JSON on stdout:
/// {"rate","connections","max_in_flight","duration_s","sent","completed","errors",
/// "connect_errors","resets","read_errors","write_errors","timeouts","non_2xx","reconnects",
/// "achieved_rps","p50_us","p90_us","p99_us","p999_us","max_us"}.
/// `sent` counts the requests scheduled in the measured window; `completed` those answered
/// with a 2xx status; every other one is an error of exactly one kind, so
/// sent = completed + errors and errors = connect_errors + resets + read_errors +
/// write_errors + timeouts + non_2xx:
/// `connect_errors` were waiting for a connection that could not be made (refused, or not
/// established within --timeout; a connection tries again at once after a first failure, then
/// every 100 ms, and the requests due meanwhile wait for that attempt); `resets` were written
/// (in part or whole) on a connection that then failed with ECONNRESET or EPIPE, or were
/// waiting for a connection reset as soon as it was established; `read_errors` were written
/// on a connection that then reached EOF, failed reading, sent a malformed response, or
/// answered an earlier request with `Connection: close`; `write_errors` failed on another
/// write error; `timeouts` had no answer within --timeout of their scheduled time (that
/// connection is then closed and every request written on it counts here) or were unanswered
/// --timeout after the end; `non_2xx` got another status.
/// A response with `Connection: close` (or an HTTP/1.0 response without keep-alive), or a
/// server close with nothing written unanswered, is followed at once by a new connection:
/// requests never written on the old one move to the new one, counted in `reconnects` (a
/// connection established again, not an error). Percentiles are over the completed requests.
#[derive(Parser)]
#[command(name = "loadgen", version)]
struct Cli {
    /// Target, `http://127.0.0.1:PORT/PATH` (loopback addresses only).
    #[arg(long)]
    url: String,
    /// Requests per second, all connections together.
    #[arg(long)]
    rate: f64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds.
    #[arg(long)]
    duration: f64,
    /// Seconds of load before the measured window (sent at the same rate, not recorded).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Seconds a request may stay unanswered from its scheduled time (then it is a timeout and
    /// its connection is closed), the connect timeout, and how long to wait after the end for
    /// the last responses.
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
    /// Busy-poll (epoll with a zero timeout) instead of sleeping whenever the next send is due
    /// within this many microseconds; at rates of 1000/s and more the default keeps the load
    /// CPU busy polling. That takes this process's own wake-up delays (tens of microseconds
    /// in a VM) out of the latencies, both before a send and when a response arrives. Give it
    /// a CPU of its own; 0 always sleeps (nanosecond timeouts), for a shared CPU.
    #[arg(long, default_value_t = 1000)]
    spin_us: u64,
    /// Requests written and not yet answered per connection, at most; a request due beyond
    /// that waits in this process (its latency still counts from its scheduled time) until an
    /// answer makes room. 0: no limit, requests are pipelined behind unanswered ones. 1 is
    /// how browsers and most HTTP/1.1 clients use a connection: then a `Connection: close`
    /// answer can never leave a request written behind it unanswered.
    #[arg(long, default_value_t = 0)]
    max_in_flight: usize,
}

const PROG: &str = "loadgen";
/// The largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Read buffer per connection.
const READ_BUF: usize = 64 * 1024;
/// The longest run accepted, warm-up included (bounds the schedule and the histogram).
const MAX_SECONDS: f64 = 3600.0;

/// How often connections are checked for requests left unanswered longer than --timeout and
/// for connects that take longer than that.
const CHECK_EVERY: Duration = Duration::from_millis(10);
/// How long a connection waits after a second failed connect in a row before it tries again
/// (after a first one it tries again at once).
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// Why requests failed: each failed request is counted under exactly one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Connect,
    Reset,
    Read,
    Write,
    Timeout,
    Non2xx,
}

impl Kind {
    /// A failed read (EOF and protocol errors included): a reset, or a read error.
    fn of_read(e: &io::Error) -> Kind {
        if is_reset(e) {
            Kind::Reset
        } else {
            Kind::Read
        }
    }

    /// A failed write: a reset, or a write error.
    fn of_write(e: &io::Error) -> Kind {
        if is_reset(e) {
            Kind::Reset
        } else {
            Kind::Write
        }
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ECONNRESET | libc::EPIPE))
        || matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        )
}

/// One keep-alive connection.
struct Conn {
    stream: Option<TcpStream>,
    /// A non-blocking connect under way (requests queue, nothing is written), and until when.
    connecting: bool,
    connect_deadline: Instant,
    /// Requests written or waiting to be written, oldest first: scheduled time, and whether it
    /// is in the measured window. The last `unwritten()` of them have had no byte written.
    pending: VecDeque<(Instant, bool)>,
    /// How many of the last pending requests are held back, not yet in `out`
    /// (--max-in-flight).
    held: usize,
    /// Bytes to write (whole requests, each `request.len()` long), and how many of them have
    /// been written.
    out: Vec<u8>,
    written: usize,
    /// The read buffer (all initialised) and how much of it holds unparsed bytes.
    input: Vec<u8>,
    filled: usize,
    /// While reading a response body: the bytes of it still to come, whether the response's
    /// status was 2xx, and whether the server closes the connection after it.
    body_left: usize,
    in_body: bool,
    status_ok: bool,
    closing: bool,
    /// After a failed connect: when the connection may try again, and how many connects in a
    /// row have failed.
    retry_at: Option<Instant>,
    failures: u32,
}

impl Conn {
    /// How many of the pending requests (the last ones) have had no byte written.
    fn unwritten(&self, request_len: usize) -> usize {
        self.held + (self.out.len() - self.written) / request_len
    }

    /// Move held requests into `out` while --max-in-flight allows (0: no limit).
    fn release(&mut self, request: &[u8], max_in_flight: usize) {
        while self.held > 0
            && (max_in_flight == 0 || self.pending.len() - self.held < max_in_flight)
        {
            self.out.extend_from_slice(request);
            self.held -= 1;
        }
    }
}

struct Stats {
    sent: u64,
    completed: u64,
    connect_errors: u64,
    resets: u64,
    read_errors: u64,
    write_errors: u64,
    timeouts: u64,
    non_2xx: u64,
    reconnects: u64,
    histogram: Histogram<u64>,
    /// How late each measured request was queued for sending, behind its schedule.
    send_lag: Histogram<u64>,
}

impl Stats {
    fn fail(&mut self, measured: bool, kind: Kind) {
        if !measured {
            return;
        }
        let counter = match kind {
            Kind::Connect => &mut self.connect_errors,
            Kind::Reset => &mut self.resets,
            Kind::Read => &mut self.read_errors,
            Kind::Write => &mut self.write_errors,
            Kind::Timeout => &mut self.timeouts,
            Kind::Non2xx => &mut self.non_2xx,
        };
        *counter += 1;
    }

    fn errors(&self) -> u64 {
        self.connect_errors
            + self.resets
            + self.read_errors
            + self.write_errors
            + self.timeouts
            + self.non_2xx
    }
}

fn main() {
    let cli = Cli::parse();
    if !(cli.rate > 0.0 && cli.rate.is_finite()) {
        die(PROG, "--rate must be a positive number");
    }
    if cli.connections == 0 || cli.connections > 100_000 {
        die(PROG, "--connections must be between 1 and 100000");
    }
    for (name, v) in [("--duration", cli.duration), ("--warmup", cli.warmup)] {
        if !(0.0..=MAX_SECONDS).contains(&v) {
            die(
                PROG,
                format!("{name} must be between 0 and {MAX_SECONDS} seconds"),
            );
        }
    }
    if cli.duration <= 0.0 {
        die(PROG, "--duration must be positive");
    }
    if cli.spin_us > 1_000_000 {
        die(PROG, "--spin-us must be at most 1000000");
    }
    if !(cli.timeout > 0.0 && cli.timeout <= 600.0) {
        die(PROG, "--timeout must be between 0 and 600 seconds");
    }
    let (addr, path) = parse_url(&cli.url).unwrap_or_else(|e| die(PROG, e));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
    match run(&cli, addr, &request) {
        Ok(stats) => print_json(&cli, &stats),
        Err(e) => die(PROG, e),
    }
}

/// `http://HOST:PORT/PATH` → the address and the path (`/` if none).
fn parse_url(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// URLs"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "{url:?}: the path has spaces or control characters"
        ));
    }
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    Ok((loopback_addr(&hostport)?, path.to_string()))
}

/// A blocking connect, for the connections opened before the load starts.
fn connect(
    addr: SocketAddr,
    timeout: Duration,
    epoll: &Epoll,
    token: usize,
) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    epoll.add(stream.as_raw_fd(), token)?;
    Ok(stream)
}

/// Start a non-blocking connect; true if it completed at once.
fn connect_nonblocking(
    addr: SocketAddr,
    epoll: &Epoll,
    token: usize,
) -> io::Result<(TcpStream, bool)> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    let done = match socket.connect(&addr.into()) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => false,
        Err(e) => return Err(e),
    };
    let stream = TcpStream::from(socket);
    epoll.add(stream.as_raw_fd(), token)?;
    Ok((stream, done))
}

/// What the event loop needs to know to manage connections.
struct Ctx<'a> {
    addr: SocketAddr,
    timeout: Duration,
    epoll: &'a Epoll,
    request: &'a [u8],
    max_in_flight: usize,
}

fn run(cli: &Cli, addr: SocketAddr, request: &[u8]) -> io::Result<Stats> {
    set_timer_slack();
    let epoll = Epoll::new()?;
    let timeout = Duration::from_secs_f64(cli.timeout);
    let ctx = Ctx {
        addr,
        timeout,
        epoll: &epoll,
        request,
        max_in_flight: cli.max_in_flight,
    };
    let mut conns = Vec::with_capacity(cli.connections);
    let created = Instant::now();
    for token in 0..cli.connections {
        let stream = connect(addr, timeout, &epoll, token)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot connect to {addr}: {e}")))?;
        conns.push(Conn {
            stream: Some(stream),
            connecting: false,
            connect_deadline: created,
            pending: VecDeque::new(),
            held: 0,
            out: Vec::with_capacity(request.len() * 4),
            written: 0,
            input: vec![0; READ_BUF],
            filled: 0,
            body_left: 0,
            in_body: false,
            status_ok: false,
            closing: false,
            retry_at: None,
            failures: 0,
        });
    }

    let mut stats = Stats {
        sent: 0,
        completed: 0,
        connect_errors: 0,
        resets: 0,
        read_errors: 0,
        write_errors: 0,
        timeouts: 0,
        non_2xx: 0,
        reconnects: 0,
        // Nanoseconds, 1 ns to an hour and a bit, 3 significant digits.
        histogram: Histogram::new_with_bounds(1, 4_000_000_000_000, 3)
            .map_err(|e| io::Error::other(e.to_string()))?,
        send_lag: Histogram::new_with_bounds(1, 4_000_000_000_000, 3)
            .map_err(|e| io::Error::other(e.to_string()))?,
    };
    let interval_ns = 1e9 / cli.rate;
    let warmup_n = (cli.warmup * cli.rate).round() as u64;
    let total_n = warmup_n + (cli.duration * cli.rate).round() as u64;
    let start = Instant::now() + Duration::from_millis(10);
    let end = start + Duration::from_secs_f64(cli.warmup + cli.duration);
    let drain_deadline = end + timeout;
    let scheduled = |k: u64| start + Duration::from_nanos((k as f64 * interval_ns) as u64);
    let spin = Duration::from_micros(cli.spin_us);
    let mut next = 0u64;
    let mut next_check = start + CHECK_EVERY;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];

    loop {
        let now = Instant::now();
        // Queue every request that is due, on its connection, and send.
        while next < total_n {
            let at = scheduled(next);
            if at > now {
                break;
            }
            let measured = next >= warmup_n;
            if measured {
                stats.sent += 1;
                let lag = now.saturating_duration_since(at).as_nanos();
                stats
                    .send_lag
                    .saturating_record(lag.clamp(1, u64::MAX as u128) as u64);
            }
            let token = (next % cli.connections as u64) as usize;
            next += 1;
            let conn = &mut conns[token];
            conn.pending.push_back((at, measured));
            conn.held += 1;
            if conn.stream.is_none() {
                // Waiting to connect again: the request waits with it (see check_deadlines).
                if conn.retry_at.is_none_or(|t| now >= t) {
                    reconnect(conn, &ctx, &mut stats, token, now);
                }
                continue;
            }
            if conn.connecting {
                continue;
            }
            conn.release(request, cli.max_in_flight);
            if let Err(e) = flush(conn) {
                end_conn(conn, &ctx, &mut stats, token, now, Kind::of_write(&e));
            }
        }
        if now >= next_check {
            next_check = now + CHECK_EVERY;
            for (token, conn) in conns.iter_mut().enumerate() {
                check_deadlines(conn, &ctx, &mut stats, token, now);
            }
        }
        if next >= total_n && (now >= drain_deadline || conns.iter().all(|c| c.pending.is_empty()))
        {
            break;
        }
        let wait = if next < total_n {
            // Within --spin-us of the next send: poll without sleeping.
            scheduled(next)
                .saturating_duration_since(now)
                .saturating_sub(spin)
        } else {
            drain_deadline.saturating_duration_since(now)
        };
        let wait = wait.min(next_check.saturating_duration_since(now));
        let n = epoll.wait(&mut events, wait)?;
        if n == 0 {
            continue;
        }
        let now = Instant::now();
        for event in &events[..n] {
            let token = event.u64 as usize;
            let conn = &mut conns[token];
            if conn.stream.is_none() {
                continue;
            }
            if conn.connecting {
                // Connected, or failed: EPOLLOUT or EPOLLERR/EPOLLHUP.
                connect_progress(conn, &ctx, &mut stats, token, now);
                continue;
            }
            if event.events & (libc::EPOLLOUT as u32) != 0 {
                if let Err(e) = flush(conn) {
                    end_conn(conn, &ctx, &mut stats, token, now, Kind::of_write(&e));
                    continue;
                }
            }
            if event.events & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
                match read_responses(conn, &mut stats, now) {
                    // The server answered with `Connection: close`: whatever was written
                    // after that request is lost (a read error), the rest moves on.
                    Ok(true) => end_conn(conn, &ctx, &mut stats, token, now, Kind::Read),
                    Ok(false) => {
                        // Answers make room for held requests (--max-in-flight).
                        if conn.held > 0 {
                            conn.release(request, cli.max_in_flight);
                            if let Err(e) = flush(conn) {
                                end_conn(conn, &ctx, &mut stats, token, now, Kind::of_write(&e));
                            }
                        }
                    }
                    Err(e) => end_conn(conn, &ctx, &mut stats, token, now, Kind::of_read(&e)),
                }
            }
        }
    }
    // Whatever is still unanswered after the drain timeout is an error.
    for conn in &conns {
        let kind = if conn.connecting || conn.stream.is_none() {
            Kind::Connect
        } else {
            Kind::Timeout
        };
        for &(_, measured) in &conn.pending {
            stats.fail(measured, kind);
        }
    }
    Ok(stats)
}

/// The oldest request of a connection unanswered for longer than --timeout: the connection is
/// closed, the requests written on it are timeouts. A connect taking longer: its requests are
/// connect errors.
fn check_deadlines(conn: &mut Conn, ctx: &Ctx, stats: &mut Stats, token: usize, now: Instant) {
    if conn.stream.is_none() {
        // Requests are waiting for a connection: try again once the pause is over.
        if !conn.pending.is_empty() && conn.retry_at.is_none_or(|t| now >= t) {
            reconnect(conn, ctx, stats, token, now);
        }
        return;
    }
    if conn.connecting {
        if now >= conn.connect_deadline {
            connect_failed(conn, ctx, stats, Kind::Connect);
        }
        return;
    }
    if let Some(&(at, _)) = conn.pending.front() {
        if now.saturating_duration_since(at) > ctx.timeout {
            end_conn(conn, ctx, stats, token, now, Kind::Timeout);
        }
    }
}

/// A non-blocking connect reported progress: connected (flush what is queued), or failed.
fn connect_progress(conn: &mut Conn, ctx: &Ctx, stats: &mut Stats, token: usize, now: Instant) {
    let Some(stream) = conn.stream.as_ref() else {
        return;
    };
    match stream.take_error() {
        Ok(None) => {}
        Ok(Some(e)) | Err(e) => return connect_failed(conn, ctx, stats, Kind::of_read(&e)),
    }
    match stream.peer_addr() {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => return, // not yet
        Err(e) => return connect_failed(conn, ctx, stats, Kind::of_read(&e)),
    }
    conn.connecting = false;
    conn.failures = 0;
    stats.reconnects += 1;
    conn.release(ctx.request, ctx.max_in_flight);
    if let Err(e) = flush(conn) {
        end_conn(conn, ctx, stats, token, now, Kind::of_write(&e));
    }
}

/// A connect failed (refused, or reset by the server as soon as it was established: `kind`
/// Connect or Reset) or took too long: the requests waiting for it (none of them written)
/// fail. The next request tries again: at once after a first failure, else once 100 ms have
/// passed (requests due meanwhile wait for that attempt).
fn connect_failed(conn: &mut Conn, ctx: &Ctx, stats: &mut Stats, kind: Kind) {
    drop_stream(conn, ctx);
    for (_, measured) in conn.pending.drain(..) {
        stats.fail(measured, kind);
    }
    conn.held = 0;
    conn.out.clear();
    conn.written = 0;
    conn.failures += 1;
    let pause = if conn.failures > 1 {
        RETRY_AFTER
    } else {
        Duration::ZERO
    };
    conn.retry_at = Some(Instant::now() + pause);
}

fn drop_stream(conn: &mut Conn, ctx: &Ctx) {
    if let Some(stream) = conn.stream.take() {
        let _ = ctx.epoll.delete(stream.as_raw_fd());
    }
    conn.connecting = false;
    conn.filled = 0;
    conn.in_body = false;
    conn.body_left = 0;
    conn.closing = false;
}

/// Start a new connection for `conn` (whose stream is gone); requests queued on it are
/// written once it is established.
fn reconnect(conn: &mut Conn, ctx: &Ctx, stats: &mut Stats, token: usize, now: Instant) {
    debug_assert!(conn.stream.is_none());
    conn.retry_at = None;
    match connect_nonblocking(ctx.addr, ctx.epoll, token) {
        Ok((stream, done)) => {
            conn.stream = Some(stream);
            conn.connecting = true;
            conn.connect_deadline = now + ctx.timeout;
            if done {
                connect_progress(conn, ctx, stats, token, now);
            }
        }
        Err(e) => connect_failed(conn, ctx, stats, Kind::of_read(&e)),
    }
}

/// The connection ended (the server closed it, said `Connection: close`, it failed, or its
/// oldest request timed out). The requests written on it and not answered fail as `kind`;
/// those never written go to a new connection, made at once.
fn end_conn(conn: &mut Conn, ctx: &Ctx, stats: &mut Stats, token: usize, now: Instant, kind: Kind) {
    let unwritten = conn.unwritten(ctx.request.len());
    let lost = conn.pending.len() - unwritten;
    for (_, measured) in conn.pending.drain(..lost) {
        stats.fail(measured, kind);
    }
    conn.out.clear();
    conn.written = 0;
    conn.held = unwritten;
    drop_stream(conn, ctx);
    reconnect(conn, ctx, stats, token, now);
}

/// Write as much of the connection's queued requests as the socket takes.
fn flush(conn: &mut Conn) -> io::Result<()> {
    let Some(stream) = conn.stream.as_mut() else {
        return Ok(());
    };
    while conn.written < conn.out.len() {
        match stream.write(&conn.out[conn.written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    conn.out.clear();
    conn.written = 0;
    Ok(())
}

/// Read what has arrived and complete every whole response in it. Ok(true): a response said
/// the server closes the connection (nothing after it is read).
fn read_responses(conn: &mut Conn, stats: &mut Stats, now: Instant) -> io::Result<bool> {
    loop {
        let Some(stream) = conn.stream.as_mut() else {
            return Ok(false);
        };
        if conn.filled == conn.input.len() {
            // A response head longer than the buffer (bodies are never kept).
            conn.input.resize(conn.input.len() * 2, 0);
        }
        let n = match stream.read(&mut conn.input[conn.filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        conn.filled += n;
        let consumed = parse_responses(conn, stats, now)?;
        if conn.closing {
            return Ok(true);
        }
        conn.input.copy_within(consumed..conn.filled, 0);
        conn.filled -= consumed;
    }
}

/// Complete the responses at the start of `conn.input`; returns the bytes consumed. Stops
/// after a response that closes the connection (`conn.closing`).
fn parse_responses(conn: &mut Conn, stats: &mut Stats, now: Instant) -> io::Result<usize> {
    let mut pos = 0;
    loop {
        if conn.in_body {
            let take = conn.body_left.min(conn.filled - pos);
            conn.body_left -= take;
            pos += take;
            if conn.body_left > 0 {
                return Ok(pos);
            }
            conn.in_body = false;
            let Some((at, measured)) = conn.pending.pop_front() else {
                return Err(io::Error::other("a response to no request"));
            };
            if conn.status_ok {
                if measured {
                    stats.completed += 1;
                    let ns = now.saturating_duration_since(at).as_nanos();
                    stats
                        .histogram
                        .saturating_record(ns.clamp(1, u64::MAX as u128) as u64);
                }
            } else {
                stats.fail(measured, Kind::Non2xx);
            }
            if conn.closing {
                return Ok(pos);
            }
            continue;
        }
        if pos == conn.filled {
            return Ok(pos);
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut res = httparse::Response::new(&mut headers);
        let head_len = match res.parse(&conn.input[pos..conn.filled]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if conn.filled - pos <= MAX_HEAD => return Ok(pos),
            Ok(httparse::Status::Partial) => {
                return Err(io::Error::other("response head too long"))
            }
            Err(e) => return Err(io::Error::other(format!("bad response: {e}"))),
        };
        let status = res.code.unwrap_or(0);
        let mut length = None;
        let (mut close, mut keep_alive) = (false, false);
        for h in res.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok());
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(io::Error::other("chunked responses are not supported"));
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
        }
        let length = match (status, length) {
            (100..=199 | 204 | 304, _) => 0,
            (_, Some(n)) => n,
            (_, None) => return Err(io::Error::other("a response without Content-Length")),
        };
        if (100..200).contains(&status) {
            pos += head_len; // An interim response: the real one follows.
            continue;
        }
        conn.status_ok = (200..300).contains(&status);
        conn.closing = close || (res.version == Some(0) && !keep_alive);
        conn.in_body = true;
        conn.body_left = length;
        pos += head_len;
    }
}

fn print_json(cli: &Cli, stats: &Stats) {
    let h = &stats.histogram;
    let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0; // microseconds, 0.1 µs
    let (p50, p90, p99, p999, max) = if stats.completed == 0 {
        (0.0, 0.0, 0.0, 0.0, 0.0)
    } else {
        (
            us(h.value_at_quantile(0.50)),
            us(h.value_at_quantile(0.90)),
            us(h.value_at_quantile(0.99)),
            us(h.value_at_quantile(0.999)),
            us(h.max()),
        )
    };
    // Keys in the documented order; serde_json renders each number.
    let n = |x: f64| -> serde_json::Value {
        if x.fract() == 0.0 && x.abs() < 1e15 {
            (x as i64).into()
        } else {
            x.into()
        }
    };
    let fields: [(&str, serde_json::Value); 20] = [
        ("rate", n(cli.rate)),
        ("connections", cli.connections.into()),
        ("max_in_flight", cli.max_in_flight.into()),
        ("duration_s", n(cli.duration)),
        ("sent", stats.sent.into()),
        ("completed", stats.completed.into()),
        ("errors", stats.errors().into()),
        ("connect_errors", stats.connect_errors.into()),
        ("resets", stats.resets.into()),
        ("read_errors", stats.read_errors.into()),
        ("write_errors", stats.write_errors.into()),
        ("timeouts", stats.timeouts.into()),
        ("non_2xx", stats.non_2xx.into()),
        ("reconnects", stats.reconnects.into()),
        (
            "achieved_rps",
            n(((stats.completed as f64 / cli.duration) * 10.0).round() / 10.0),
        ),
        ("p50_us", n(p50)),
        ("p90_us", n(p90)),
        ("p99_us", n(p99)),
        ("p999_us", n(p999)),
        ("max_us", n(max)),
    ];
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    let line = format!("{{{}}}", body.join(","));
    println!("{line}");
    let lag = &stats.send_lag;
    if !lag.is_empty() {
        eprintln!(
            "loadgen: requests queued behind schedule by p50 {} us, p99 {} us, max {} us \
             (this process's own delay, included in the latencies)",
            us(lag.value_at_quantile(0.5)),
            us(lag.value_at_quantile(0.99)),
            us(lag.max())
        );
    }
}

/// Ask for nanosecond timer slack, so that waits end when asked (the default slack is 50 µs).
fn set_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// An epoll instance (edge-triggered, read and write interest on every connection).
struct Epoll {
    fd: std::os::fd::OwnedFd,
    /// Whether epoll_pwait2 (Linux 5.11+) is available; otherwise millisecond epoll_wait.
    pwait2: std::cell::Cell<bool>,
}

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes a flag and returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
        Ok(Epoll {
            fd,
            pwait2: std::cell::Cell::new(true),
        })
    }

    fn add(&self, fd: i32, token: usize) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token as u64,
        };
        // SAFETY: both descriptors are open and `event` is a valid epoll_event.
        let r =
            unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn delete(&self, fd: i32) -> io::Result<()> {
        // SAFETY: EPOLL_CTL_DEL ignores the event pointer (null is allowed since Linux 2.6.9).
        let r = unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait up to `timeout` for events; returns how many were written to `events`.
    fn wait(&self, events: &mut [libc::epoll_event], timeout: Duration) -> io::Result<usize> {
        let max = events.len().min(i32::MAX as usize) as i32;
        loop {
            let n = if self.pwait2.get() {
                let ts = libc::timespec {
                    tv_sec: timeout.as_secs() as libc::time_t,
                    tv_nsec: timeout.subsec_nanos() as libc::c_long,
                };
                // SAFETY: `events` has room for `max` entries, `ts` is a valid timespec, and a
                // null sigmask means the signal mask is left alone.
                unsafe {
                    libc::syscall(
                        libc::SYS_epoll_pwait2,
                        self.fd.as_raw_fd(),
                        events.as_mut_ptr(),
                        max,
                        &ts as *const libc::timespec,
                        std::ptr::null::<libc::sigset_t>(),
                        0usize,
                    ) as i32
                }
            } else {
                let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
                // SAFETY: `events` has room for `max` entries.
                unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, ms) }
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => return Ok(0),
                Some(libc::ENOSYS) if self.pwait2.get() => self.pwait2.set(false),
                _ => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let (a, p) = parse_url("http://127.0.0.1:8080/x?y=1").unwrap();
        assert_eq!(
            (a.to_string().as_str(), p.as_str()),
            ("127.0.0.1:8080", "/x?y=1")
        );
        let (a, p) = parse_url("http://localhost:9").unwrap();
        assert_eq!((a.port(), p.as_str()), (9, "/"));
        assert!(parse_url("http://10.1.2.3:80/").is_err());
        assert!(parse_url("https://127.0.0.1:80/").is_err());
    }
}
