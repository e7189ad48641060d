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

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use ringcorn_peers::{die, loopback_addr};

/// Open-loop fixed-rate HTTP/1.1 load generator: R requests/s spread over C keep-alive
/// connections, latency from each request's scheduled send time (no coordinated omission).
/// Prints one line of JSON on stdout:
/// {"rate","connections","duration_s","sent","completed","errors","achieved_rps",
/// "p50_us","p90_us","p99_us","p999_us","max_us"}.
/// `sent` counts the requests scheduled in the measured window; `completed` those answered
/// `HTTP/1.1 200`; `errors` the others (another status, a broken connection, no answer within
/// --timeout after the end). Percentiles are over the completed requests.
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
    /// Seconds to wait after the end for the last responses (unanswered ones are errors),
    /// and the connect timeout.
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
    /// Busy-poll (epoll with a zero timeout) instead of sleeping whenever the next send is due
    /// within this many microseconds; at rates of 1000/s and more the default keeps the load
    /// CPU busy polling. That takes this process's own wake-up delays (tens of microseconds
    /// in a VM) out of the latencies, both before a send and when a response arrives. Give it
    /// a CPU of its own; 0 always sleeps (nanosecond timeouts), for a shared CPU.
    #[arg(long, default_value_t = 1000)]
    spin_us: u64,
}

const PROG: &str = "loadgen";
/// The largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Read buffer per connection.
const READ_BUF: usize = 64 * 1024;
/// The longest run accepted, warm-up included (bounds the schedule and the histogram).
const MAX_SECONDS: f64 = 3600.0;

/// One keep-alive connection.
struct Conn {
    stream: Option<TcpStream>,
    /// Requests written or waiting to be written, oldest first: scheduled time, and whether it
    /// is in the measured window.
    pending: VecDeque<(Instant, bool)>,
    /// Bytes to write, and how many of them have been written.
    out: Vec<u8>,
    written: usize,
    /// The read buffer (all initialised) and how much of it holds unparsed bytes.
    input: Vec<u8>,
    filled: usize,
    /// While reading a response body: the bytes of it still to come, and whether the
    /// response's status was 200.
    body_left: usize,
    in_body: bool,
    status_ok: bool,
    /// When a broken connection may try to connect again.
    retry_at: Option<Instant>,
}

struct Stats {
    sent: u64,
    completed: u64,
    errors: u64,
    histogram: Histogram<u64>,
    /// How late each measured request was queued for sending, behind its schedule.
    send_lag: Histogram<u64>,
}

impl Stats {
    fn fail(&mut self, measured: bool) {
        if measured {
            self.errors += 1;
        }
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

fn run(cli: &Cli, addr: SocketAddr, request: &[u8]) -> io::Result<Stats> {
    set_timer_slack();
    let epoll = Epoll::new()?;
    let timeout = Duration::from_secs_f64(cli.timeout);
    let mut conns = Vec::with_capacity(cli.connections);
    for token in 0..cli.connections {
        let stream = connect(addr, timeout, &epoll, token)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot connect to {addr}: {e}")))?;
        conns.push(Conn {
            stream: Some(stream),
            pending: VecDeque::new(),
            out: Vec::with_capacity(request.len() * 4),
            written: 0,
            input: vec![0; READ_BUF],
            filled: 0,
            body_left: 0,
            in_body: false,
            status_ok: false,
            retry_at: None,
        });
    }

    let mut stats = Stats {
        sent: 0,
        completed: 0,
        errors: 0,
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
            if conn.stream.is_none() && !reconnect(conn, addr, timeout, &epoll, token, now) {
                stats.fail(measured);
                continue;
            }
            conn.pending.push_back((at, measured));
            conn.out.extend_from_slice(request);
            if flush(conn).is_err() {
                broken(conn, &mut stats, &epoll, now);
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
            if event.events & (libc::EPOLLOUT as u32) != 0 && flush(conn).is_err() {
                broken(conn, &mut stats, &epoll, now);
                continue;
            }
            if event.events & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0
                && read_responses(conn, &mut stats, now).is_err()
            {
                broken(conn, &mut stats, &epoll, now);
            }
        }
    }
    // Whatever is still unanswered after the drain timeout is an error.
    for conn in &conns {
        for &(_, measured) in &conn.pending {
            stats.fail(measured);
        }
    }
    Ok(stats)
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

/// Read what has arrived and complete every whole response in it.
fn read_responses(conn: &mut Conn, stats: &mut Stats, now: Instant) -> io::Result<()> {
    loop {
        let Some(stream) = conn.stream.as_mut() else {
            return Ok(());
        };
        if conn.filled == conn.input.len() {
            // A response head longer than the buffer (bodies are never kept).
            conn.input.resize(conn.input.len() * 2, 0);
        }
        let n = match stream.read(&mut conn.input[conn.filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        conn.filled += n;
        let consumed = parse_responses(conn, stats, now)?;
        conn.input.copy_within(consumed..conn.filled, 0);
        conn.filled -= consumed;
    }
}

/// Complete the responses at the start of `conn.input`; returns the bytes consumed.
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
                stats.fail(measured);
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
        for h in res.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok());
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(io::Error::other("chunked responses are not supported"));
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
        conn.status_ok = res.version == Some(1) && status == 200;
        conn.in_body = true;
        conn.body_left = length;
        pos += head_len;
    }
}

/// A connection failed: its unanswered requests are errors; it reconnects on next use.
fn broken(conn: &mut Conn, stats: &mut Stats, epoll: &Epoll, now: Instant) {
    if let Some(stream) = conn.stream.take() {
        let _ = epoll.delete(stream.as_raw_fd());
    }
    for (_, measured) in conn.pending.drain(..) {
        stats.fail(measured);
    }
    conn.out.clear();
    conn.written = 0;
    conn.filled = 0;
    conn.in_body = false;
    conn.body_left = 0;
    conn.retry_at = Some(now + Duration::from_millis(100));
}

/// Connect a broken connection again, at most every 100 ms; true if it is usable now.
fn reconnect(
    conn: &mut Conn,
    addr: SocketAddr,
    timeout: Duration,
    epoll: &Epoll,
    token: usize,
    now: Instant,
) -> bool {
    if conn.retry_at.is_some_and(|t| now < t) {
        return false;
    }
    match connect(addr, timeout.min(Duration::from_millis(200)), epoll, token) {
        Ok(stream) => {
            conn.stream = Some(stream);
            conn.retry_at = None;
            true
        }
        Err(_) => {
            conn.retry_at = Some(now + Duration::from_millis(100));
            false
        }
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
    let fields: [(&str, serde_json::Value); 12] = [
        ("rate", n(cli.rate)),
        ("connections", cli.connections.into()),
        ("duration_s", n(cli.duration)),
        ("sent", stats.sent.into()),
        ("completed", stats.completed.into()),
        ("errors", stats.errors.into()),
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
