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
    let mut cmd = command_at(std::path::Path::new(binary()), args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
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
        .filter(|a| {
            matches!(**a, "--bind" | "-b" | "--tls-bind")
                || a.starts_with("--bind=")
                || a.starts_with("--tls-bind=")
        })
        .count();
    n.max(1)
}

/// Parses the address of a `Listening at: http://ADDR` (or `https://ADDR`) line.
fn parse_listening(line: &str) -> Option<SocketAddr> {
    let (idx, prefix) = match line.find("Listening at: http://") {
        Some(i) => (i, "Listening at: http://"),
        None => (
            line.find("Listening at: https://")?,
            "Listening at: https://",
        ),
    };
    let rest = &line[idx + prefix.len()..];
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
        Server::spawn_command(base_command(args, envs), expected_binds(args))
    }

    /// Spawns a prepared command (see [`cli_command`]) and waits for `expected` listening
    /// addresses.
    pub fn spawn_command(mut cmd: Command, want: usize) -> Server {
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
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
    /// Panics, showing the log, unless `needle` appears on exactly `n` log lines.
    #[track_caller]
    pub fn assert_log_count(&self, needle: &str, n: usize) {
        assert_eq!(
            self.count_log_lines(needle),
            n,
            "`{needle}` lines\n{}",
            self.log()
        );
    }

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

    /// Reads one response whose body may be chunked (de-chunked here) or sized.
    pub fn read_any_response(&mut self) -> Response {
        read_message(&mut self.reader, false)
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

// ---------------------------------------------------------------------------
// Hostile-input helpers (framing, syntax, limits, deadlines)
// ---------------------------------------------------------------------------

/// The status line ringcorn sends for `code` (RFC 9110 reason phrases).
pub fn status_line(code: u16) -> String {
    let reason = match code {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => panic!("no reason phrase known for {code}"),
    };
    format!("HTTP/1.1 {code} {reason}")
}

/// What the server must do with one raw-bytes case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect<'a> {
    /// Exactly this error status, `Connection: close`, then the server closes.
    Refuse(u16),
    /// `200 OK` with exactly this body, and the connection stays usable.
    Accept(&'a [u8]),
}

/// A server to throw raw bytes at, and how to prove a connection is still in sync.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub addr: SocketAddr,
    /// The server runs the echo app (else hello): the follow-up request is a POST whose body
    /// must come back exactly, so leftovers of a previous request would show.
    pub echo: bool,
}

/// Checks one error response without panicking: exact status line, `Connection: close`,
/// `Content-Type: text/plain`, a body of its `Content-Length`, no `Transfer-Encoding`.
pub fn check_refusal(resp: &Response, code: u16) -> Result<(), String> {
    let want = status_line(code);
    if resp.status_line != want {
        return Err(format!("expected {want:?}, got {resp:?}"));
    }
    if !resp.closes() {
        return Err(format!("expected Connection: close in {resp:?}"));
    }
    if resp.header("Content-Type") != Some("text/plain") {
        return Err(format!("expected Content-Type: text/plain in {resp:?}"));
    }
    if resp.header_count("Content-Length") != 1 || resp.header("Transfer-Encoding").is_some() {
        return Err(format!("bad framing headers in {resp:?}"));
    }
    Ok(())
}

impl Probe {
    /// Sends `bytes` on a fresh connection and checks `expect`, returning what went wrong.
    pub fn check(&self, bytes: &[u8], expect: Expect<'_>) -> Result<(), String> {
        let mut c = connect(self.addr);
        let sent = c.try_send(bytes);
        match expect {
            Expect::Refuse(code) => {
                // A write error is possible when the server refused early; the response must
                // still be readable.
                let resp = c
                    .try_read_response(false)
                    .map_err(|e| format!("no response (write: {sent:?}): {e:?}"))?;
                check_refusal(&resp, code)?;
                c.try_expect_closed()
            }
            Expect::Accept(body) => {
                sent.map_err(|e| format!("write failed: {e}"))?;
                let resp = c
                    .try_read_response(false)
                    .map_err(|e| format!("no response: {e:?}"))?;
                if resp.status_line != "HTTP/1.1 200 OK" || resp.body != body {
                    return Err(format!(
                        "expected 200 with body {:?}, got {resp:?}",
                        String::from_utf8_lossy(body)
                    ));
                }
                if resp.closes() {
                    return Err(format!("the 200 closes the connection: {resp:?}"));
                }
                self.follow_up(&mut c)
            }
        }
    }

    /// One more request on `c` must be answered exactly.
    pub fn follow_up(&self, c: &mut Conn) -> Result<(), String> {
        let (req, want): (Vec<u8>, &[u8]) = if self.echo {
            (post_req("/follow-up", b"follow-up"), b"follow-up")
        } else {
            (get_req("/follow-up").into_bytes(), HELLO_BODY.as_bytes())
        };
        c.try_send(&req)
            .map_err(|e| format!("follow-up write failed: {e}"))?;
        let resp = c
            .try_read_response(false)
            .map_err(|e| format!("no response to the follow-up request: {e:?}"))?;
        if resp.status_line != "HTTP/1.1 200 OK" || resp.body != want {
            return Err(format!("follow-up request got {resp:?}"));
        }
        Ok(())
    }

    /// Runs every case on its own connection, then panics listing every failed case (by
    /// name, with its bytes) if any failed. Also checks that a fresh connection is served.
    pub fn run_table(&self, table: &str, cases: &[(&str, Vec<u8>, Expect<'_>)]) {
        assert!(!cases.is_empty(), "table {table} has no cases");
        let mut failures = Vec::new();
        for (name, bytes, expect) in cases {
            if let Err(e) = self.check(bytes, *expect) {
                let shown: String = String::from_utf8_lossy(bytes).chars().take(300).collect();
                failures.push(format!(
                    "  [{name}] expect {expect:?}\n    sent {shown:?}\n    {e}"
                ));
            }
        }
        let mut c = connect(self.addr);
        if let Err(e) = self.follow_up(&mut c) {
            failures.push(format!("  [fresh connection after the table] {e}"));
        }
        assert!(
            failures.is_empty(),
            "{table}: {} of {} case(s) failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }
}

/// How a socket stands after waiting for it to become readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readable {
    /// At least one byte can be read.
    Data,
    /// Orderly end of stream.
    Eof,
    /// ECONNRESET or similar.
    Reset,
    /// Nothing within the wait.
    Nothing,
}

impl Conn {
    /// `expect_closed` that reports instead of panicking.
    pub fn try_expect_closed(&mut self) -> Result<(), String> {
        let buffered = self.reader.buffer();
        if !buffered.is_empty() {
            return Err(format!(
                "expected close but {} unread byte(s) are buffered: {:?}",
                buffered.len(),
                String::from_utf8_lossy(buffered)
            ));
        }
        let mut buf = [0u8; 4096];
        loop {
            match self.reader.get_mut().read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    return Err(format!(
                        "expected close but got {n} byte(s): {:?}",
                        String::from_utf8_lossy(&buf[..n])
                    ))
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_reset(e.kind()) => return Ok(()),
                Err(e) if is_timeout(e.kind()) => {
                    return Err(
                        "the server did not close the connection within the read timeout".into(),
                    )
                }
                Err(e) => return Err(format!("unexpected error while expecting close: {e}")),
            }
        }
    }

    /// Waits at most `wait` for the socket to become readable, consuming nothing (the
    /// buffered reader's own bytes count as data). Restores the read timeout afterwards.
    pub fn wait_readable(&mut self, wait: Duration) -> Readable {
        if !self.reader.buffer().is_empty() {
            return Readable::Data;
        }
        let wait = wait.max(Duration::from_millis(1));
        self.set_read_timeout(wait);
        let mut b = [0u8; 1];
        let deadline = Instant::now() + wait;
        let r = loop {
            match self.stream().peek(&mut b) {
                Ok(0) => break Readable::Eof,
                Ok(_) => break Readable::Data,
                Err(e) if e.kind() == ErrorKind::Interrupted && Instant::now() < deadline => {}
                Err(e) if is_reset(e.kind()) => break Readable::Reset,
                Err(e) if is_timeout(e.kind()) || e.kind() == ErrorKind::Interrupted => {
                    break Readable::Nothing
                }
                Err(e) => panic!("peek on {} failed: {e}", self.addr),
            }
        };
        self.set_read_timeout(IO_TIMEOUT);
        r
    }

    /// Asserts that for `wait` the server neither sends anything nor closes.
    pub fn expect_silence(&mut self, wait: Duration) {
        let r = self.wait_readable(wait);
        assert_eq!(
            r,
            Readable::Nothing,
            "expected the connection to stay open and silent for {wait:?}"
        );
    }
}

/// Connects to `addr` (IPv4) from a socket whose SO_RCVBUF is set to `rcvbuf` bytes before
/// `connect`, so the advertised window stays small (std cannot set it). `IO_TIMEOUT` applies.
pub fn connect_with_rcvbuf(addr: SocketAddr, rcvbuf: libc::c_int) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        panic!("connect_with_rcvbuf: IPv4 only, got {addr}")
    };
    // SAFETY: plain socket syscalls on a descriptor this function owns until it is handed to
    // TcpStream (which then closes it); sockaddr_in is plain data, fully initialised.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&rcvbuf as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(
            rc,
            0,
            "setsockopt(SO_RCVBUF): {}",
            io::Error::last_os_error()
        );
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = v4.port().to_be();
        sa.sin_addr = libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        };
        let rc = libc::connect(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect to {addr}: {}", io::Error::last_os_error());
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set_read_timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set_write_timeout");
        stream
    }
}

/// Raises this process's RLIMIT_NOFILE soft limit to at least `want` (capped by the hard
/// limit); returns the soft limit now in force. Children spawned later inherit it.
pub fn raise_nofile_limit(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit on a plain struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        assert_eq!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim),
            0,
            "getrlimit: {}",
            io::Error::last_os_error()
        );
        let target = (want as libc::rlim_t).min(lim.rlim_max);
        if lim.rlim_cur < target {
            lim.rlim_cur = target;
            assert_eq!(
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim),
                0,
                "setrlimit: {}",
                io::Error::last_os_error()
            );
        }
        lim.rlim_cur as u64
    }
}

/// The resident memory of process `pid`, in bytes (VmRSS, from /proc/PID/status).
pub fn vm_rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS kB in /proc/PID/status");
    kb * 1024
}

/// CPU time (user + system, all threads) the process `pid` has used so far, from
/// /proc/PID/stat.
pub fn process_cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
    // The command name (field 2) may hold spaces: count fields after its closing ')'.
    let rest = &stat[stat.rfind(')').expect("comm in /proc/PID/stat") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    assert!(hz > 0, "sysconf(_SC_CLK_TCK) = {hz}");
    Duration::from_secs_f64(ticks as f64 / hz as f64)
}

// ---------------------------------------------------------------------------
// Master-level helpers: processes, temp dirs, a bounded client load, upgrades
// ---------------------------------------------------------------------------

/// Polls `cond` every 20 ms for at most `timeout`; true once it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

/// A fresh, empty directory under the system temp dir, removed with its contents on drop.
pub struct TempDir {
    path: std::path::PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "ringcorn-test-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.path.join(name)
    }

    /// The path as a `&str` argument (temp paths are UTF-8 here).
    pub fn arg(&self, name: &str) -> String {
        self.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Writes `contents` to `path` through a temporary sibling and a rename, so the server never
/// reads a half-written file (and a running executable can be replaced).
pub fn replace_file(path: &std::path::Path, contents: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, contents).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path)
        .unwrap_or_else(|e| panic!("rename {} -> {}: {e}", tmp.display(), path.display()));
}

/// State letter and parent pid of `pid`, from /proc/PID/stat (None: no such process).
pub fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` is a live process (exists and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// Live (not zombie) processes whose parent is `pid`, sorted, found by scanning /proc.
pub fn child_pids(pid: u32) -> Vec<u32> {
    let mut kids: Vec<u32> = std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            proc_stat(p).is_some_and(|(state, ppid)| ppid == pid && state != 'Z' && state != 'X')
        })
        .collect();
    kids.sort_unstable();
    kids
}

/// The command line of `pid` (arguments split at NUL), empty when it is gone.
pub fn proc_cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// kill(2) on any pid.
pub fn kill_pid(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let p = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: plain kill(2); callers only name processes this test started (or their workers).
    if unsafe { libc::kill(p, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The pid in a pidfile, if it exists and holds one.
pub fn read_pidfile(path: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A command for the program at `program` (the binary, a copy of it, or a stand-in) with a
/// clean environment: no inherited `RINGCORN_*` settings, no colours, no `RUST_LOG`.
pub fn command_at(program: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (key, _) in std::env::vars_os() {
        // The test runner's choice of backend (scripts/test-runner.sh runs every test binary
        // once per backend) reaches the server; nothing else of the caller's does.
        if key.to_string_lossy().starts_with("RINGCORN_") && key != "RINGCORN_BACKEND" {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd.env("NO_COLOR", "1");
    cmd.stdin(Stdio::null());
    cmd
}

/// The path of the binary under test.
pub fn binary_path() -> &'static str {
    binary()
}

/// The number after `key` (e.g. `"pid "`, `"pid: "`) in `line`.
pub fn number_after(line: &str, key: &str) -> Option<u32> {
    let at = line.find(key)? + key.len();
    line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// The pid in a `sleep` app body (`pid P\n`).
pub fn body_pid(resp: &Response) -> u32 {
    number_after(&resp.body_str(), "pid ").unwrap_or_else(|| panic!("no `pid P` body in {resp:?}"))
}

impl Server {
    /// `(slot, pid)` of every `Booting worker N with pid: P` line so far, in order.
    pub fn booted_pids(&self) -> Vec<(usize, u32)> {
        self.log()
            .lines()
            .filter_map(|l| {
                let rest = &l[l.find("Booting worker ")? + "Booting worker ".len()..];
                let (slot, tail) = rest.split_once(" with pid: ")?;
                Some((slot.parse().ok()?, number_after(tail, "")?))
            })
            .collect()
    }

    /// The latest pid booted on `slot` (process workers).
    pub fn worker_pid(&self, slot: usize) -> Option<u32> {
        self.booted_pids()
            .into_iter()
            .rev()
            .find(|(s, _)| *s == slot)
            .map(|(_, p)| p)
    }

    /// Lines of the log containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// Addresses of every `Listening at:` line so far, in order (repeats included).
    pub fn announced(&self) -> Vec<SocketAddr> {
        self.log().lines().filter_map(parse_listening).collect()
    }

    /// Whether the process has exited (without waiting).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

/// One GET on a fresh connection with a read timeout of `wait`; every way it can fail is an
/// `Err` describing it.
pub fn fresh_get(addr: SocketAddr, path: &str, wait: Duration) -> Result<Response, String> {
    let mut c = try_connect(addr).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(wait);
    c.try_send(get_req(path).as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    c.try_read_response(false)
        .map_err(|e| format!("read: {e:?}"))
}

/// What a [`Load`] saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Requests answered with 200 and the expected body.
    pub ok: u64,
    /// Requests that failed in any way (connect, send, read, status, body).
    pub failures: u64,
    /// The first few failures, with when (since the load started) and what.
    pub samples: Vec<String>,
    /// Keep-alive connections the server closed with `Connection: close` (not errors).
    pub reconnects: u64,
}

impl LoadReport {
    fn merge(&mut self, other: LoadReport) {
        self.ok += other.ok;
        self.failures += other.failures;
        self.reconnects += other.reconnects;
        for s in other.samples {
            if self.samples.len() < 20 {
                self.samples.push(s);
            }
        }
    }

    /// Asserts that no request failed and at least `min_ok` succeeded.
    #[track_caller]
    pub fn assert_clean(&self, min_ok: u64, log: &str) {
        assert!(
            self.failures == 0 && self.ok >= min_ok,
            "load: {} ok, {} failed (want 0 failures and at least {min_ok} ok), {} reconnects\n\
             failures:\n  {}\n--- stderr ---\n{log}",
            self.ok,
            self.failures,
            self.reconnects,
            self.samples.join("\n  ")
        );
    }
}

/// A bounded client load: `threads` threads each send `GET path` in a loop, on keep-alive
/// connection (reconnecting when a response says `Connection: close`) with every fourth
/// request on a fresh connection of its own, and count every failure. Each thread stops on
/// [`Load::stop`] or after `max` at the latest.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<LoadReport>>,
}

impl Load {
    /// Starts the load; `body_prefix` is what every 200's body must start with.
    pub fn start(
        addr: SocketAddr,
        threads: usize,
        path: &str,
        body_prefix: &str,
        max: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let threads = (0..threads)
            .map(|t| {
                let stop = Arc::clone(&stop);
                let path = path.to_string();
                let prefix = body_prefix.to_string();
                thread::spawn(move || load_thread(t, addr, &path, &prefix, &stop, started, max))
            })
            .collect();
        Load { stop, threads }
    }

    /// Stops every thread and adds up what they saw.
    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        let mut report = LoadReport::default();
        for t in self.threads {
            report.merge(t.join().expect("load thread panicked"));
        }
        report
    }
}

fn load_thread(
    id: usize,
    addr: SocketAddr,
    path: &str,
    prefix: &str,
    stop: &AtomicBool,
    started: Instant,
    max: Duration,
) -> LoadReport {
    let mut report = LoadReport::default();
    let mut conn: Option<Conn> = None;
    let req = get_req(path);
    let mut i: u64 = 0;
    while !stop.load(Ordering::SeqCst) && started.elapsed() < max {
        i += 1;
        let fresh = i % 4 == 0;
        // The keep-alive connection lives on across the fresh ones.
        let mut temp: Option<Conn> = None;
        let result = (|| -> Result<Response, String> {
            let slot = if fresh { &mut temp } else { &mut conn };
            let c = match slot {
                Some(c) => c,
                None => slot.insert(try_connect(addr).map_err(|e| format!("connect: {e}"))?),
            };
            c.try_send(req.as_bytes())
                .map_err(|e| format!("send: {e}"))?;
            c.try_read_response(false)
                .map_err(|e| format!("read: {e:?}"))
        })();
        drop(temp);
        match result {
            Ok(resp) if resp.status == 200 && resp.body_str().starts_with(prefix) => {
                report.ok += 1;
                if resp.closes() && !fresh {
                    conn = None;
                    report.reconnects += 1;
                }
            }
            other => {
                if !fresh {
                    conn = None;
                }
                report.failures += 1;
                if report.samples.len() < 10 {
                    let what = match other {
                        Ok(resp) => format!("unexpected response {resp:?}"),
                        Err(e) => e,
                    };
                    report.samples.push(format!(
                        "[thread {id}, request {i}, {}, at {:?}] {what}",
                        if fresh { "fresh" } else { "keep-alive" },
                        started.elapsed()
                    ));
                }
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
    report
}

/// Kills, on drop, the masters a binary upgrade may have left running: those named by a
/// pidfile and its `.oldbin`, and any pid added with [`MasterGuard::watch`], except the
/// server the test spawned itself (its own `Server` handles it). A pid is only signalled if
/// it is alive and `program` is on its command line, so a recycled pid is never hit.
/// Declare it after the `Server`, so that it drops first (the new master holds the
/// server's stderr open).
pub struct MasterGuard {
    pidfile: std::path::PathBuf,
    exclude: u32,
    /// The program's path as given and as resolved (an upgrade execs the resolved one).
    program: Vec<String>,
    extra: Vec<u32>,
}

impl MasterGuard {
    pub fn new(pidfile: &std::path::Path, program: &std::path::Path, exclude: u32) -> MasterGuard {
        let mut names = vec![program.to_string_lossy().into_owned()];
        if let Ok(real) = std::fs::canonicalize(program) {
            names.push(real.to_string_lossy().into_owned());
        }
        MasterGuard {
            pidfile: pidfile.to_path_buf(),
            exclude,
            program: names,
            extra: Vec::new(),
        }
    }

    /// Also kill `pid` at the end (e.g. a new master whose pidfile was never written).
    pub fn watch(&mut self, pid: u32) {
        if !self.extra.contains(&pid) {
            self.extra.push(pid);
        }
    }

    fn ours(&self, pid: u32) -> bool {
        pid != self.exclude
            && pid_alive(pid)
            && proc_cmdline(pid).iter().any(|a| self.program.contains(a))
    }

    /// The pids that would be killed now.
    pub fn candidates(&self) -> Vec<u32> {
        let mut oldbin = self.pidfile.as_os_str().to_owned();
        oldbin.push(".oldbin");
        let mut pids: Vec<u32> = [
            read_pidfile(&self.pidfile),
            read_pidfile(std::path::Path::new(&oldbin)),
        ]
        .into_iter()
        .flatten()
        .chain(self.extra.iter().copied())
        .collect();
        pids.sort_unstable();
        pids.dedup();
        pids.retain(|&p| self.ours(p));
        pids
    }
}

impl Drop for MasterGuard {
    fn drop(&mut self) {
        let pids = self.candidates();
        for &p in &pids {
            let _ = kill_pid(p, libc::SIGTERM);
        }
        if !wait_until(Duration::from_secs(5), || {
            pids.iter().all(|&p| !pid_alive(p))
        }) {
            for &p in &pids {
                if self.ours(p) {
                    let _ = kill_pid(p, libc::SIGKILL);
                }
            }
            wait_until(Duration::from_secs(2), || {
                pids.iter().all(|&p| !pid_alive(p))
            });
        }
    }
}

// ---------------------------------------------------------------------------
// The sans-IO connection, driven without a socket
// ---------------------------------------------------------------------------

/// Feed `pieces` to a fresh sans-IO connection, one read each, as the worker drives a
/// socket: flush the output before receiving again, stop once it wants to close. Returns
/// what it sent, with the `Server`/`Date` block removed, and `want()` at the end.
pub fn drive_sans_io<H: ringcorn::Handler>(
    limits: ringcorn::http::Limits,
    mut handler: H,
    pieces: &[&[u8]],
) -> (String, ringcorn::http::Want) {
    use ringcorn::http::{Connection, Context, Want};
    let mut ctx = Context::new(limits);
    let mut conn = Connection::new();
    let mut out = Vec::new();
    'reads: for piece in pieces {
        let mut rest = *piece;
        while !rest.is_empty() {
            if conn.want() == Want::Close {
                break 'reads;
            }
            assert_eq!(conn.want(), Want::Read);
            let n = conn.receive(rest, &ctx);
            assert!(n > 0, "no room to receive while reading is wanted");
            rest = &rest[n..];
            loop {
                conn.process(&mut handler, &mut ctx);
                if conn.want() != Want::Write {
                    break;
                }
                out.extend_from_slice(conn.output());
                let n = conn.output().len();
                conn.sent(n);
            }
        }
    }
    let date = std::str::from_utf8(ctx.date.header_block()).expect("ascii");
    (String::from_utf8_lossy(&out).replace(date, ""), conn.want())
}

/// Make `io_uring_setup` fail with `errno` in the child before it runs the server, the way a
/// container's seccomp profile does (Docker and containerd: EPERM; Podman and gVisor:
/// ENOSYS); every other system call is allowed.
pub fn block_io_uring(cmd: &mut Command, errno: i32) {
    use std::os::unix::process::CommandExt;
    let nr = libc::SYS_io_uring_setup as u32;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl with a
    // filter that lives on its stack for the duration of the call (async-signal-safe).
    unsafe {
        cmd.pre_exec(move || {
            let mut filter = [
                // A = seccomp_data.nr
                libc::sock_filter {
                    code: 0x20,
                    jt: 0,
                    jf: 0,
                    k: 0,
                },
                // if A == io_uring_setup then next else skip one
                libc::sock_filter {
                    code: 0x15,
                    jt: 0,
                    jf: 1,
                    k: nr,
                },
                // return ERRNO(errno)
                libc::sock_filter {
                    code: 0x06,
                    jt: 0,
                    jf: 0,
                    k: libc::SECCOMP_RET_ERRNO | errno as u32,
                },
                // return ALLOW
                libc::sock_filter {
                    code: 0x06,
                    jt: 0,
                    jf: 0,
                    k: libc::SECCOMP_RET_ALLOW,
                },
            ];
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_mut_ptr(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Read one response from `r`: its head, and its body de-chunked or by Content-Length (none
/// with `head_only`). Panics on anything else, naming what it read.
pub fn read_message<R: BufRead>(r: &mut R, head_only: bool) -> Response {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("a head line");
        assert!(!line.is_empty(), "end of stream in a head: {lines:?}");
        if line == "\r\n" {
            break;
        }
        lines.push(line.trim_end().to_string());
    }
    let status_line = lines.first().cloned().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {status_line:?}"));
    let headers: Vec<(String, String)> = lines[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut resp = Response {
        status,
        status_line,
        headers,
        body: Vec::new(),
    };
    if head_only {
        return resp;
    }
    if resp
        .header("Transfer-Encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).expect("a chunk size");
            let n = usize::from_str_radix(size.trim(), 16)
                .unwrap_or_else(|_| panic!("a hex chunk size, not {size:?}"));
            let mut data = vec![0; n + 2];
            r.read_exact(&mut data).expect("a chunk and its CRLF");
            if n == 0 {
                break;
            }
            resp.body.extend_from_slice(&data[..n]);
        }
    } else if let Some(n) = resp.header("Content-Length").and_then(|v| v.parse().ok()) {
        resp.body.resize(n, 0);
        r.read_exact(&mut resp.body).expect("the body");
    }
    resp
}
