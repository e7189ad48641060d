//! holdconns: open N keep-alive connections, make one request on each, then hold them idle.
//!
//! Used to measure a server's memory per idle keep-alive connection: read its RSS, run
//! `holdconns --count 10000`, wait for `holding 10000` on stdout, read its RSS again.
//!
//! Connections are opened in batches (connect a batch, send its requests, read its responses),
//! so the server's accept backlog (2048) is never overrun; a connection refused or reset is
//! retried a few times with a short pause. `holding N` is printed only once every one of the N
//! connections has had its response read in full.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clap::Parser;
use ringcorn_peers::{die, loopback_addr, raise_nofile_limit};

/// Open N keep-alive connections to a server, make one request (GET /) on each and read its
/// response, print `holding N` on stdout, then keep them all open and idle until killed or
/// --hold-secs pass. Raises its own RLIMIT_NOFILE soft limit to the hard limit.
#[derive(Parser)]
#[command(name = "holdconns", version)]
struct Cli {
    /// The server, `127.0.0.1:PORT` (loopback addresses only).
    #[arg(long)]
    addr: String,
    /// How many connections to open and hold.
    #[arg(long)]
    count: usize,
    /// Seconds to hold the connections after `holding N` (then exit 0).
    #[arg(long, default_value_t = 3600)]
    hold_secs: u64,
    /// Connections opened (and answered) per batch; at most 2048, the server's backlog.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Seconds allowed for each connect and each response.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

const PROG: &str = "holdconns";
/// Attempts per connection (connect + request + response) before giving up.
const ATTEMPTS: u32 = 5;

fn main() {
    let cli = Cli::parse();
    let addr = loopback_addr(&cli.addr).unwrap_or_else(|e| die(PROG, e));
    if cli.count == 0 {
        die(PROG, "--count must be at least 1");
    }
    if cli.batch == 0 || cli.batch > 2048 {
        die(PROG, "--batch must be between 1 and 2048");
    }
    if cli.timeout == 0 || cli.timeout > 600 {
        die(PROG, "--timeout must be between 1 and 600 seconds");
    }
    let limit = raise_nofile_limit().unwrap_or_else(|e| die(PROG, format!("RLIMIT_NOFILE: {e}")));
    // stdin/stdout/stderr and a few more.
    if (cli.count as u64).saturating_add(16) > limit {
        die(
            PROG,
            format!(
                "--count {} needs more descriptors than RLIMIT_NOFILE allows ({limit}); raise the hard limit (ulimit -Hn)",
                cli.count
            ),
        );
    }
    let timeout = Duration::from_secs(cli.timeout);
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
    let started = Instant::now();
    let mut held: Vec<TcpStream> = Vec::with_capacity(cli.count);
    while held.len() < cli.count {
        let n = cli.batch.min(cli.count - held.len());
        let batch = open_batch(addr, n, &request, timeout)
            .unwrap_or_else(|e| die(PROG, format!("after {} connections: {e}", held.len())));
        held.extend(batch);
    }
    eprintln!(
        "holdconns: {} connections answered in {:.2} s",
        held.len(),
        started.elapsed().as_secs_f64()
    );
    println!("holding {}", held.len());
    let _ = io::stdout().flush();
    std::thread::sleep(Duration::from_secs(cli.hold_secs));
    drop(held);
}

/// Open `n` connections, send each the request, then read each response; a connection that
/// fails in any step is retried (up to `ATTEMPTS` times in all).
fn open_batch(
    addr: SocketAddr,
    n: usize,
    request: &[u8],
    timeout: Duration,
) -> io::Result<Vec<TcpStream>> {
    let mut done = Vec::with_capacity(n);
    let mut want = n;
    for attempt in 1..=ATTEMPTS {
        let mut streams = Vec::with_capacity(want);
        let mut last_error = None;
        for _ in 0..want {
            match connect_and_send(addr, request, timeout) {
                Ok(s) => streams.push(s),
                Err(e) => last_error = Some(e),
            }
        }
        for mut stream in streams {
            match read_response(&mut stream) {
                Ok(()) => done.push(stream),
                Err(e) => last_error = Some(e),
            }
        }
        want = n - done.len();
        if want == 0 {
            return Ok(done);
        }
        let e = last_error.expect("a failure was recorded");
        if attempt == ATTEMPTS || !retryable(&e) {
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(50 * u64::from(attempt)));
    }
    unreachable!("the last attempt returns")
}

fn connect_and_send(addr: SocketAddr, request: &[u8], timeout: Duration) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| io::Error::new(e.kind(), format!("connect to {addr}: {e}")))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request)?;
    Ok(stream)
}

fn retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::TimedOut
            | io::ErrorKind::WouldBlock
    )
}

/// Read one whole response (head, then a Content-Length body); it must be `HTTP/1.1 200`.
fn read_response(stream: &mut TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if buf.len() >= 64 * 1024 {
                return Err(io::Error::other("response head too long"));
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut res = httparse::Response::new(&mut headers);
        let head_len = match res.parse(&buf[..filled]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => continue,
            Err(e) => return Err(io::Error::other(format!("bad response: {e}"))),
        };
        if res.version != Some(1) || res.code != Some(200) {
            return Err(io::Error::other(format!(
                "the server answered {:?}, not HTTP/1.1 200",
                res.code
            )));
        }
        let length = res
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or_else(|| io::Error::other("a response without Content-Length"))?;
        let mut left = length.saturating_sub(filled - head_len);
        while left > 0 {
            let n = match stream.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            left = left.saturating_sub(n);
        }
        return Ok(());
    }
}
