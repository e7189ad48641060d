//! Shared code of the benchmark peers: command-line pieces, CPU pinning, SO_REUSEPORT
//! listeners, the apps' response bodies and a Date header rendered once per second.
//!
//! Every server peer does the same work per request as ringcorn: it parses the request, then
//! answers with `Server`, `Date`, `Content-Type` and `Content-Length` headers and the body,
//! keeps the connection alive and answers pipelined requests in order.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, Socket, Type};

/// The listen backlog of every peer (the same as ringcorn's default).
pub const BACKLOG: i32 = 2048;

/// The largest body the `bytes` app serves (`GET /N`, N ≤ 16 MiB), as ringcorn's `bytes`.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

/// `hello`'s body.
pub const HELLO: &[u8] = b"Hello, World!";

/// Print `<prog>: error: <message>` to stderr and exit with status 1.
pub fn die(prog: &str, message: impl std::fmt::Display) -> ! {
    eprintln!("{prog}: error: {message}");
    std::process::exit(1)
}

/// Which response the server peers give (the same three as ringcorn's built-in apps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum App {
    /// 200 text/plain `Hello, World!` to any request.
    Hello,
    /// 200 application/json `{"message":"Hello, World!"}`, serialised per request.
    Json,
    /// `GET /N`: 200 application/octet-stream with exactly N bytes (N ≤ 16 MiB), else 404.
    Bytes,
}

/// The common options of the server peers.
#[derive(Clone, Debug, clap::Args)]
pub struct ServerArgs {
    /// TCP port to listen on, on 127.0.0.1 (0 picks a free port, printed on stderr).
    #[arg(long)]
    pub port: u16,
    /// Number of worker threads, each with its own SO_REUSEPORT listener.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// CPUs to pin the workers to, e.g. `0`, `0,1` or `0-3`; worker i gets the (i mod len)-th.
    #[arg(long, default_value = "0", value_parser = parse_cpus)]
    pub cpus: Cpus,
}

/// A parsed `--cpus` list.
#[derive(Clone, Debug)]
pub struct Cpus(pub Vec<usize>);

/// Parse a CPU list: comma-separated CPU numbers and inclusive ranges (`0,2-3`).
pub fn parse_cpus(s: &str) -> Result<Cpus, String> {
    let mut cpus = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let num = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("bad CPU number {t:?} in {s:?}"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("bad CPU range {part:?} in {s:?}"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(num(part)?),
        }
    }
    if cpus.is_empty() {
        return Err("empty CPU list".into());
    }
    Ok(Cpus(cpus))
}

/// Pin the calling thread to `cpu`.
pub fn pin(cpu: usize) -> io::Result<()> {
    if core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "cannot pin a thread to CPU {cpu}"
        )))
    }
}

fn new_socket() -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    Ok(socket)
}

/// Open `workers` listening sockets on 127.0.0.1:`port`, each with SO_REUSEPORT (the kernel
/// spreads connections over them), TCP_NODELAY (inherited by accepted sockets) and a 2048
/// backlog; blocking (io_uring peers accept through the ring; tokio switches it itself).
///
/// The port is first probed with a socket bound *without* SO_REUSEPORT, so a port held by any
/// other server fails with "Address already in use" (with SO_REUSEPORT alone we would silently
/// join another SO_REUSEPORT server's group and split its traffic); a port still in use after
/// 2 s is an error. Port 0 becomes a free port, the same for every worker.
pub fn reuseport_listeners(port: u16, workers: usize) -> io::Result<Vec<TcpListener>> {
    let mut addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    let context = |e: io::Error, a: SocketAddr| io::Error::new(e.kind(), format!("{a}: {e}"));
    // A server killed just before may hold its port a few milliseconds more (an io_uring
    // server's ring, with its listener, is torn down asynchronously): retry for up to 2 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let probe = new_socket()?;
        match probe.bind(&addr.into()) {
            Ok(()) => {
                if let Some(bound) = probe.local_addr()?.as_socket() {
                    addr = bound;
                }
                break;
            }
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline =>
            {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(context(e, addr)),
        }
    }
    (0..workers.max(1))
        .map(|_| {
            let socket = new_socket()?;
            socket.set_reuse_port(true)?;
            socket.set_nodelay(true)?;
            socket.bind(&addr.into()).map_err(|e| context(e, addr))?;
            socket.listen(BACKLOG)?;
            Ok(socket.into())
        })
        .collect()
}

/// Bind the listeners, start one pinned thread per worker running `worker(index, listener)`,
/// print `listening on 127.0.0.1:PORT` on stderr once every worker has pinned itself, and
/// wait. A worker that returns an error, or fails to pin, ends the process with status 1.
pub fn serve<F>(prog: &'static str, args: &ServerArgs, worker: F) -> !
where
    F: Fn(usize, TcpListener) -> io::Result<()> + Send + Sync + Clone + 'static,
{
    if args.workers == 0 {
        die(prog, "--workers must be at least 1");
    }
    let listeners = reuseport_listeners(args.port, args.workers)
        .unwrap_or_else(|e| die(prog, format!("cannot listen: {e}")));
    let addr = listeners[0].local_addr().unwrap_or_else(|e| die(prog, e));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let mut handles = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let cpu = args.cpus.0[i % args.cpus.0.len()];
        let worker = worker.clone();
        let ready = ready_tx.clone();
        let handle = thread::Builder::new()
            .name(format!("{prog}-{i}"))
            .spawn(move || {
                if let Err(e) = pin(cpu) {
                    let _ = ready.send(Err(e.to_string()));
                    return;
                }
                let _ = ready.send(Ok(()));
                drop(ready);
                if let Err(e) = worker(i, listener) {
                    die(prog, format!("worker {i}: {e}"));
                }
            })
            .unwrap_or_else(|e| die(prog, format!("cannot start a worker thread: {e}")));
        handles.push(handle);
    }
    drop(ready_tx);
    for _ in 0..args.workers {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => die(prog, e),
            Err(_) => die(prog, "a worker thread ended before it started"),
        }
    }
    eprintln!("listening on {addr}");
    for handle in handles {
        let _ = handle.join();
    }
    die(prog, "every worker stopped")
}

/// The `json` app's message, serialised per request like ringcorn's.
#[derive(serde::Serialize)]
struct Message {
    message: &'static str,
}

/// Append `{"message":"Hello, World!"}` to `out`, serialised now.
pub fn json_body(out: &mut Vec<u8>) {
    let message = Message {
        message: "Hello, World!",
    };
    // Serialising a struct of one string into a Vec cannot fail.
    serde_json::to_writer(out, &message).expect("serialising into a Vec");
}

/// The length N of a `bytes` request path `/N` (decimal digits, N ≤ 16 MiB); None otherwise.
pub fn bytes_len(path: &[u8]) -> Option<usize> {
    let digits = path.strip_prefix(b"/")?;
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
    (n <= MAX_BYTES).then_some(n)
}

/// A static block of `MAX_BYTES` bytes that `bytes` bodies are sliced from.
pub fn bytes_block() -> &'static [u8] {
    static BLOCK: std::sync::OnceLock<Box<[u8]>> = std::sync::OnceLock::new();
    BLOCK.get_or_init(|| {
        (0..MAX_BYTES)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>()
            .into_boxed_slice()
    })
}

/// The cached `Server: <name>\r\nDate: <IMF-fixdate>\r\n` lines of one worker, rendered again
/// only when the second changes (as ringcorn renders its Date once per second per worker).
pub struct DateCache {
    second: u64,
    prefix_len: usize,
    lines: Vec<u8>,
}

impl DateCache {
    /// For the server name `server`.
    pub fn new(server: &str) -> Self {
        let mut lines = Vec::with_capacity(64);
        lines.extend_from_slice(b"Server: ");
        lines.extend_from_slice(server.as_bytes());
        lines.extend_from_slice(b"\r\nDate: ");
        let mut cache = DateCache {
            second: u64::MAX,
            prefix_len: lines.len(),
            lines,
        };
        cache.refresh();
        cache
    }

    /// Re-render the Date if the clock has moved to another second; true if it did.
    pub fn refresh(&mut self) -> bool {
        let now = SystemTime::now();
        let second = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        if second == self.second {
            return false;
        }
        self.second = second;
        self.lines.truncate(self.prefix_len);
        self.lines
            .extend_from_slice(httpdate::fmt_http_date(now).as_bytes());
        self.lines.extend_from_slice(b"\r\n");
        true
    }

    /// The `Server` and `Date` lines, each ending in CRLF.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }
}

/// How a response ends its connection, if at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    /// HTTP/1.1 keep-alive: no `Connection` header.
    KeepAlive,
    /// An HTTP/1.0 client asked for keep-alive and gets it: `Connection: keep-alive`.
    KeepAlive10,
    /// The connection closes after this response: `Connection: close`.
    Close,
}

/// Append one response to `out`: status line, the cached `Server`/`Date` lines,
/// `Content-Type`, `Content-Length`, `Connection` when needed, and the body unless `head`.
pub fn push_response(
    out: &mut Vec<u8>,
    status_line: &[u8],
    server_date: &[u8],
    content_type: &[u8],
    body: &[u8],
    head: bool,
    connection: Connection,
) {
    out.reserve(96 + server_date.len() + if head { 0 } else { body.len() });
    out.extend_from_slice(status_line);
    out.extend_from_slice(server_date);
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(content_type);
    out.extend_from_slice(b"\r\nContent-Length: ");
    push_decimal(out, body.len());
    out.extend_from_slice(match connection {
        Connection::KeepAlive => b"\r\n\r\n".as_slice(),
        Connection::KeepAlive10 => b"\r\nConnection: keep-alive\r\n\r\n",
        Connection::Close => b"\r\nConnection: close\r\n\r\n",
    });
    if !head {
        out.extend_from_slice(body);
    }
}

/// Append the decimal digits of `n` to `out` (no fmt machinery).
pub fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Raise this process's RLIMIT_NOFILE soft limit to its hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit read above, with the soft limit raised to the hard one.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// Parse `host:port` or `http://host:port/path` targets: the host must be a loopback IPv4
/// address or `localhost` (the peers only ever send traffic to this machine).
pub fn loopback_addr(hostport: &str) -> Result<SocketAddr, String> {
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or_else(|| format!("{hostport:?}: expected HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{hostport:?}: bad port {port:?}"))?;
    let ip: Ipv4Addr = if host == "localhost" {
        Ipv4Addr::LOCALHOST
    } else {
        host.parse()
            .map_err(|_| format!("{hostport:?}: the host must be an IPv4 loopback address"))?
    };
    if !ip.is_loopback() {
        return Err(format!(
            "{hostport:?}: only loopback addresses (127.0.0.0/8) are allowed"
        ));
    }
    if port == 0 {
        return Err(format!("{hostport:?}: port 0"));
    }
    Ok(SocketAddr::V4(SocketAddrV4::new(ip, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("0").unwrap().0, vec![0]);
        assert_eq!(parse_cpus("0,2-4").unwrap().0, vec![0, 2, 3, 4]);
        assert!(parse_cpus("3-1").is_err());
        assert!(parse_cpus("x").is_err());
    }

    #[test]
    fn bytes_paths() {
        assert_eq!(bytes_len(b"/13"), Some(13));
        assert_eq!(bytes_len(b"/0"), Some(0));
        assert_eq!(bytes_len(b"/16777216"), Some(MAX_BYTES));
        assert_eq!(bytes_len(b"/16777217"), None);
        assert_eq!(bytes_len(b"/"), None);
        assert_eq!(bytes_len(b"/1x"), None);
        assert_eq!(bytes_len(b"13"), None);
    }

    #[test]
    fn decimal() {
        for n in [0, 7, 10, 13, 65536, usize::MAX] {
            let mut v = Vec::new();
            push_decimal(&mut v, n);
            assert_eq!(v, n.to_string().into_bytes());
        }
    }

    #[test]
    fn date_lines() {
        let d = DateCache::new("x");
        let s = std::str::from_utf8(d.lines()).unwrap();
        assert!(s.starts_with("Server: x\r\nDate: "));
        assert!(s.ends_with(" GMT\r\n"));
        assert_eq!(
            s.len(),
            "Server: x\r\nDate: Fri, 20 Nov 2026 10:00:00 GMT\r\n".len()
        );
    }

    #[test]
    fn loopback_only() {
        assert!(loopback_addr("127.0.0.1:80").is_ok());
        assert!(loopback_addr("localhost:80").is_ok());
        assert!(loopback_addr("10.0.0.1:80").is_err());
        assert!(loopback_addr("127.0.0.1").is_err());
    }
}
