//! Shared helpers for the black-box integration tests: a supervised server
//! process, a raw HTTP/1.1 client and a CLI runner. Everything is bounded:
//! every socket has read/write timeouts and every wait has a deadline.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Read/write timeout of every client socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `Server::spawn` waits for the `Listening at:` lines.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `run_cli` lets the process run before killing it.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest response head the client accepts.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Largest response body the client accepts (the biggest echo is 1 MiB).
const MAX_RESPONSE_BODY: usize = 16 * 1024 * 1024;

const POLL: Duration = Duration::from_millis(20);

pub const HELLO_BODY: &str = "Hello, World!";
pub const JSON_BODY: &str = r#"{"message":"Hello, World!"}"#;

// ---------------------------------------------------------------------------
// Server process
// ---------------------------------------------------------------------------

/// A running `ringcorn` binary. The child is killed on drop.
pub struct Server {
    child: Child,
    addrs: Vec<SocketAddr>,
    log: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    stderr_done: Arc<AtomicBool>,
    readers: Vec<JoinHandle<()>>,
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_ringcorn")
}

/// A command for the binary with a clean environment: no inherited
/// `RINGCORN_*` settings, no colours, no `RUST_LOG`.
fn base_command(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RINGCORN_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd.env("NO_COLOR", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Removes ANSI escape sequences (colours) from a log line.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c2 in chars.by_ref() {
                    if c2.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Number of addresses the server is expected to announce for these args.
fn expected_binds(args: &[&str]) -> usize {
    let n = args
        .iter()
        .filter(|a| **a == "--bind" || **a == "-b" || a.starts_with("--bind="))
        .count();
    n.max(1)
}

/// Parses the address of a `Listening at: http://ADDR` line.
fn parse_listening(line: &str) -> Option<SocketAddr> {
    let idx = line.find("Listening at: http://")?;
    let rest = &line[idx + "Listening at: http://".len()..];
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    let addr = addr.trim_end_matches(['.', ':']);
    match addr.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(e) => panic!("cannot parse address in log line {line:?}: {e}"),
    }
}

impl Server {
    /// Spawns the binary with `args` (callers pass `--bind 127.0.0.1:0` or
    /// `[::1]:0`) and waits until every `Listening at:` line appeared.
    pub fn spawn(args: &[&str]) -> Server {
        Server::spawn_env(args, &[])
    }

    /// `spawn` with extra environment variables.
    pub fn spawn_env(args: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut cmd = base_command(args, envs);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", binary()));
        let stderr = child.stderr.take().expect("child stderr is piped");
        let stdout = child.stdout.take().expect("child stdout is piped");

        let log = Arc::new(Mutex::new(String::new()));
        let stdout_log = Arc::new(Mutex::new(String::new()));
        let stderr_done = Arc::new(AtomicBool::new(false));

        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let log2 = Arc::clone(&log);
        let done2 = Arc::clone(&stderr_done);
        let err_reader = thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = strip_ansi(String::from_utf8_lossy(&buf).trim_end());
                        {
                            let mut l = log2.lock().expect("log lock");
                            l.push_str(&line);
                            l.push('\n');
                        }
                        let _ = tx.send(line);
                    }
                }
            }
            done2.store(true, Ordering::SeqCst);
        });
        let out2 = Arc::clone(&stdout_log);
        let out_reader = thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => out2
                        .lock()
                        .expect("stdout lock")
                        .push_str(&String::from_utf8_lossy(&buf)),
                }
            }
        });

        let mut server = Server {
            child,
            addrs: Vec::new(),
            log,
            stdout: stdout_log,
            stderr_done,
            readers: vec![err_reader, out_reader],
        };

        let want = expected_binds(args);
        let deadline = Instant::now() + START_TIMEOUT;
        while server.addrs.len() < want {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(addr) = parse_listening(&line) {
                        assert_ne!(addr.port(), 0, "server announced port 0: {line:?}");
                        server.addrs.push(addr);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    // stderr closed: the process is exiting; the check below reports it.
                    thread::sleep(POLL);
                }
            }
            if server.addrs.len() >= want {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                // Give the reader a moment to collect the last lines.
                server.wait_stderr_eof(Duration::from_secs(2));
                panic!(
                    "server {args:?} exited with {status} before listening\n--- stderr ---\n{}--- stdout ---\n{}",
                    server.log(),
                    server.stdout()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "server {args:?} did not print {want} `Listening at:` line(s) within {START_TIMEOUT:?}\n--- stderr ---\n{}--- stdout ---\n{}",
                    server.log(),
                    server.stdout()
                );
            }
        }
        server
    }

    /// Spawns `ringcorn` with one worker on 127.0.0.1:0 serving `app`, plus `extra` flags.
    pub fn app(app: &str, extra: &[&str]) -> Server {
        let mut args = vec!["--bind", "127.0.0.1:0", "--workers", "1"];
        args.extend_from_slice(extra);
        args.push(app);
        Server::spawn(&args)
    }

    /// The first announced address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// All announced addresses, in announcement order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` to the server process. Panics if the process was already reaped.
    pub fn signal(&mut self, sig: libc::c_int) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "cannot signal: server already exited with {status}\n{}",
                self.log()
            );
        }
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on our own, not yet reaped child.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {sig}) failed: {}",
            io::Error::last_os_error()
        );
    }

    /// Polls for the process exit for at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.wait_stderr_eof(Duration::from_secs(2));
                    return Some(status);
                }
                Ok(None) => {}
                Err(e) => panic!("try_wait failed: {e}"),
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL);
        }
    }

    /// Like `wait_exit` but panics (with the log) when the process did not exit.
    pub fn expect_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.wait_exit(timeout) {
            Some(s) => s,
            None => panic!(
                "server did not exit within {timeout:?}\n--- stderr ---\n{}",
                self.log()
            ),
        }
    }

    fn wait_stderr_eof(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr_done.load(Ordering::SeqCst) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the server wrote to stderr so far (ANSI codes removed).
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Everything the server wrote to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("stdout lock").clone()
    }

    /// Number of stderr lines containing `needle`.
    pub fn count_log_lines(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Waits (bounded) until at least `n` stderr lines contain `needle`.
    pub fn wait_log_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.count_log_lines(needle) >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(POLL);
        }
    }

    /// Waits (bounded) until a stderr line contains `needle`; panics with the log otherwise.
    pub fn expect_log(&self, needle: &str, timeout: Duration) {
        assert!(
            self.wait_log_count(needle, 1, timeout),
            "log line containing {needle:?} did not appear within {timeout:?}\n--- stderr ---\n{}",
            self.log()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for h in self.readers.drain(..) {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------
// CLI runner
// ---------------------------------------------------------------------------

/// Runs the binary to completion (at most `CLI_TIMEOUT`, then kill and panic).
pub fn run_cli(args: &[&str]) -> Output {
    run_cli_env(args, &[])
}

/// `run_cli` with extra environment variables.
pub fn run_cli_env(args: &[&str], envs: &[(&str, &str)]) -> Output {
    run_command(base_command(args, envs), args)
}

/// The binary with `args`, for a test that configures the command further before
/// [`run_command`] runs it.
pub fn cli_command(args: &[&str]) -> Command {
    base_command(args, &[])
}

/// Runs a prepared command to completion, like [`run_cli`].
pub fn run_command(mut cmd: Command, args: &[&str]) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", binary()));
    let mut out = child.stdout.take().expect("stdout piped");
    let mut err = child.stderr.take().expect("stderr piped");
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_t.join().unwrap_or_default();
            panic!(
                "`ringcorn {args:?}` did not exit within {CLI_TIMEOUT:?}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        thread::sleep(POLL);
    };
    let stdout = out_t.join().expect("stdout reader");
    let stderr = err_t.join().expect("stderr reader");
    Output {
        status,
        stdout,
        stderr,
    }
}

// ---------------------------------------------------------------------------
// Raw HTTP client
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Number of occurrences of header `name`.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parsed `Content-Length` (panics when absent or malformed).
    pub fn content_length(&self) -> usize {
        let v = self
            .header("Content-Length")
            .unwrap_or_else(|| panic!("response has no Content-Length: {self:?}"));
        v.parse()
            .unwrap_or_else(|_| panic!("bad Content-Length {v:?}"))
    }

    /// True when the response carries `Connection: close`.
    pub fn closes(&self) -> bool {
        self.header("Connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }

    /// True when the response carries `Connection: keep-alive`.
    pub fn keeps_alive(&self) -> bool {
        self.header("Connection").is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("keep-alive"))
        })
    }
}

/// Why `try_read_response` got no response.
#[derive(Debug)]
pub enum ReadError {
    /// EOF before the first byte of a response.
    Closed,
    /// ECONNRESET/ECONNABORTED before the first byte.
    Reset,
    /// Read timed out before the first byte.
    TimedOut,
    /// Anything else: partial/malformed response, unexpected error.
    Other(String),
}

/// One client connection with a persistent buffered reader, so pipelined
/// responses can be read one after another.
pub struct Conn {
    reader: BufReader<TcpStream>,
    pub addr: SocketAddr,
}

/// Connects with `IO_TIMEOUT` read/write timeouts.
pub fn connect(addr: SocketAddr) -> Conn {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr} failed: {e}"));
    Conn::from_stream(stream, addr)
}

/// Like `connect` but returns the error.
pub fn try_connect(addr: SocketAddr) -> io::Result<Conn> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    Ok(Conn::from_stream(stream, addr))
}

fn is_reset(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

fn is_timeout(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

impl Conn {
    pub fn from_stream(stream: TcpStream, addr: SocketAddr) -> Conn {
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set_read_timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set_write_timeout");
        Conn {
            reader: BufReader::with_capacity(64 * 1024, stream),
            addr,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// A second handle on the socket (e.g. for a writer thread), with the same timeouts.
    pub fn clone_stream(&self) -> TcpStream {
        self.stream().try_clone().expect("try_clone")
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.stream()
            .set_read_timeout(Some(t))
            .expect("set_read_timeout");
    }

    pub fn set_nodelay(&self) {
        self.stream().set_nodelay(true).expect("set_nodelay");
    }

    /// Writes all of `data` (panics on error).
    pub fn send(&mut self, data: &[u8]) {
        let addr = self.addr;
        self.reader
            .get_mut()
            .write_all(data)
            .unwrap_or_else(|e| panic!("write to {addr} failed: {e}"));
    }

    /// Writes all of `data`, returning the error.
    pub fn try_send(&mut self, data: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(data)
    }

    /// Writes `data` one byte per write call, sleeping `pause` between bytes.
    pub fn send_bytewise(&mut self, data: &[u8], pause: Duration) {
        for b in data {
            self.send(std::slice::from_ref(b));
            thread::sleep(pause);
        }
    }

    /// Reads one response; the body length comes from Content-Length
    /// (none for 1xx, 204, 304).
    pub fn read_response(&mut self) -> Response {
        self.try_read_response(false)
            .unwrap_or_else(|e| panic!("no response from {}: {e:?}", self.addr))
    }

    /// Reads one response to a HEAD request (never a body).
    pub fn read_head_response(&mut self) -> Response {
        self.try_read_response(true)
            .unwrap_or_else(|e| panic!("no HEAD response from {}: {e:?}", self.addr))
    }

    /// Reads one line ending in CRLF (returned without it).
    fn read_line(&mut self, total: &mut usize) -> Result<String, (ErrorKind, Vec<u8>)> {
        let mut line = Vec::new();
        loop {
            // Never read more than what is left of the head budget, so a
            // server streaming an endless line cannot keep us here.
            let budget = (MAX_RESPONSE_HEAD + 1).saturating_sub(*total + line.len());
            if budget == 0 {
                return Err((ErrorKind::InvalidData, line));
            }
            let mut limited = (&mut self.reader).take(budget as u64);
            match limited.read_until(b'\n', &mut line) {
                Ok(0) => return Err((ErrorKind::UnexpectedEof, line)),
                Ok(_) => {
                    if line.ends_with(b"\n") {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err((e.kind(), line)),
            }
        }
        *total += line.len();
        if *total > MAX_RESPONSE_HEAD {
            return Err((ErrorKind::InvalidData, line));
        }
        if !line.ends_with(b"\r\n") {
            return Err((ErrorKind::InvalidInput, line));
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).map_err(|e| (ErrorKind::InvalidData, e.into_bytes()))
    }

    pub fn try_read_response(&mut self, head: bool) -> Result<Response, ReadError> {
        let mut total = 0;
        let status_line = match self.read_line(&mut total) {
            Ok(l) => l,
            Err((kind, partial)) if partial.is_empty() => {
                return Err(if kind == ErrorKind::UnexpectedEof {
                    ReadError::Closed
                } else if is_reset(kind) {
                    ReadError::Reset
                } else if is_timeout(kind) {
                    ReadError::TimedOut
                } else {
                    ReadError::Other(format!("{kind:?} reading status line"))
                });
            }
            Err((kind, partial)) => {
                return Err(ReadError::Other(format!(
                    "{kind:?} in status line, got {:?}",
                    String::from_utf8_lossy(&partial)
                )))
            }
        };
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let code = parts.next().unwrap_or("");
        if version != "HTTP/1.1" || code.len() != 3 {
            return Err(ReadError::Other(format!(
                "malformed status line {status_line:?}"
            )));
        }
        let status: u16 = code
            .parse()
            .map_err(|_| ReadError::Other(format!("bad status code in {status_line:?}")))?;

        let mut headers = Vec::new();
        loop {
            let line = self.read_line(&mut total).map_err(|(kind, partial)| {
                ReadError::Other(format!(
                    "{kind:?} in headers after {status_line:?}, got {:?}",
                    String::from_utf8_lossy(&partial)
                ))
            })?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| ReadError::Other(format!("malformed header line {line:?}")))?;
            if name.is_empty() || name.contains([' ', '\t']) {
                return Err(ReadError::Other(format!("malformed header name {line:?}")));
            }
            headers.push((name.to_string(), value.trim().to_string()));
        }

        let mut resp = Response {
            status,
            status_line,
            headers,
            body: Vec::new(),
        };
        let bodiless = head || (100..200).contains(&status) || status == 204 || status == 304;
        if !bodiless {
            let len = match resp.header("Content-Length") {
                Some(v) => v.parse::<usize>().map_err(|_| {
                    ReadError::Other(format!("bad Content-Length {v:?} in {resp:?}"))
                })?,
                None => {
                    return Err(ReadError::Other(format!(
                        "response without Content-Length: {resp:?}"
                    )))
                }
            };
            if len > MAX_RESPONSE_BODY {
                return Err(ReadError::Other(format!(
                    "Content-Length {len} is beyond what any test expects: {resp:?}"
                )));
            }
            let mut body = vec![0u8; len];
            self.reader.read_exact(&mut body).map_err(|e| {
                ReadError::Other(format!(
                    "reading {len}-byte body of {:?}: {e}",
                    resp.status_line
                ))
            })?;
            resp.body = body;
        }
        Ok(resp)
    }

    /// Asserts the server closed the connection: a read returns EOF or a
    /// reset within the read timeout, and no further bytes arrive.
    pub fn expect_closed(&mut self) {
        let buffered = self.reader.buffer();
        assert!(
            buffered.is_empty(),
            "expected close but {} unread byte(s) are buffered: {:?}",
            buffered.len(),
            String::from_utf8_lossy(buffered)
        );
        let mut buf = [0u8; 4096];
        loop {
            match self.reader.get_mut().read(&mut buf) {
                Ok(0) => return,
                Ok(n) => panic!(
                    "expected close but got {n} byte(s): {:?}",
                    String::from_utf8_lossy(&buf[..n])
                ),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_reset(e.kind()) => return,
                Err(e) if is_timeout(e.kind()) => {
                    panic!("server did not close the connection within the read timeout")
                }
                Err(e) => panic!("unexpected error while expecting close: {e}"),
            }
        }
    }

    /// Sends `GET path` (HTTP/1.1) and reads the response.
    pub fn get(&mut self, path: &str) -> Response {
        self.send(get_req(path).as_bytes());
        self.read_response()
    }

    /// Sends `POST path` with `body` (Content-Length) and reads the response.
    pub fn post(&mut self, path: &str, body: &[u8]) -> Response {
        self.send(&post_req(path, body));
        self.read_response()
    }

    /// Half-closes the write side.
    pub fn shutdown_write(&self) {
        let _ = self.stream().shutdown(Shutdown::Write);
    }
}

/// `GET path HTTP/1.1` with a Host header.
pub fn get_req(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

/// `HEAD path HTTP/1.1` with a Host header.
pub fn head_req(path: &str) -> String {
    format!("HEAD {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

/// `POST path HTTP/1.1` with Content-Length and `body`.
pub fn post_req(path: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

/// Deterministic pseudo-random bytes (xorshift), covering all byte values
/// including CR and LF.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Response checks
// ---------------------------------------------------------------------------

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]; // 1970-01-01 was a Thursday
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = (if y >= 0 { y } else { y - 399 }) / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) strictly,
/// including the weekday, into seconds since the epoch.
pub fn parse_imf_fixdate(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 29 || &s[3..5] != ", " || b[7] != b' ' || b[11] != b' ' || b[16] != b' ' {
        return None;
    }
    if b[19] != b':' || b[22] != b':' || &s[25..] != " GMT" {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = &s[r];
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let day = num(5..7)?;
    let month = MONTHS.iter().position(|m| *m == &s[8..11])? as i64 + 1;
    let year = num(12..16)?;
    let (hh, mm, ss) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let weekday = DAYS[days.rem_euclid(7) as usize];
    if weekday != &s[0..3] {
        return None;
    }
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Asserts the headers every response must carry: `Server: ringcorn`, a
/// current IMF-fixdate `Date`, and exactly one `Content-Length` (equal to
/// the body length unless `head`).
pub fn check_common_headers(resp: &Response, head: bool) {
    assert_eq!(resp.header("Server"), Some("ringcorn"), "{resp:?}");
    assert_eq!(resp.header_count("Server"), 1, "{resp:?}");
    assert_eq!(resp.header_count("Date"), 1, "{resp:?}");
    let date = resp.header("Date").expect("Date header");
    let t =
        parse_imf_fixdate(date).unwrap_or_else(|| panic!("Date {date:?} is not an IMF-fixdate"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after epoch")
        .as_secs() as i64;
    assert!(
        (t - now).abs() <= 10,
        "Date {date:?} is {}s away from now",
        t - now
    );
    if !(resp.status == 204 || resp.status == 304 || (100..200).contains(&resp.status)) {
        assert_eq!(resp.header_count("Content-Length"), 1, "{resp:?}");
        if !head {
            assert_eq!(resp.content_length(), resp.body.len(), "{resp:?}");
        }
    }
    assert_eq!(
        resp.header("Transfer-Encoding"),
        None,
        "responses are sent with Content-Length: {resp:?}"
    );
}

/// Asserts a `200 OK` from the hello app.
pub fn assert_hello(resp: &Response) {
    assert_eq!(resp.status_line, "HTTP/1.1 200 OK", "{resp:?}");
    assert_eq!(resp.body_str(), HELLO_BODY, "{resp:?}");
    assert_eq!(resp.header("Content-Type"), Some("text/plain"), "{resp:?}");
}

/// Asserts an error response of status `code` with `Connection: close`.
pub fn assert_error_close(resp: &Response, code: u16) {
    assert_eq!(resp.status, code, "{resp:?}");
    assert!(
        resp.status_line.starts_with(&format!("HTTP/1.1 {code} ")),
        "{resp:?}"
    );
    assert!(resp.closes(), "expected Connection: close in {resp:?}");
    check_common_headers(resp, false);
}

/// The CPUs this process may run on (sched_getaffinity).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let rc = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        assert_eq!(rc, 0, "sched_getaffinity: {}", io::Error::last_os_error());
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Whether `[::1]` can be bound on this machine.
pub fn ipv6_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}
