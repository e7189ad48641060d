//! systemd integration: socket activation (`LISTEN_PID`/`LISTEN_FDS`/`LISTEN_FDNAMES`, through
//! `systemd-socket-activate` and by hand) and the notify protocol (`NOTIFY_SOCKET`: READY=1,
//! RELOADING=1, MAINPID= on a binary upgrade, STOPPING=1, and WATCHDOG=1 pings that stop while
//! a worker is stuck).
//!
//! The tests that need `systemd-socket-activate` (Debian package `systemd`) skip with a notice
//! when it is missing, unless `RINGCORN_REQUIRE_TOOLS=1` is set (CI), where they fail.

mod common;

use common::*;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(10);
const ACTIVATE: &str = "systemd-socket-activate";

// ---------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------

/// The path of `name` on PATH, if it is there.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `systemd-socket-activate`, or None (with a notice) when it is missing; with
/// `RINGCORN_REQUIRE_TOOLS=1` a missing tool is a failure.
fn socket_activate(test: &str) -> Option<PathBuf> {
    if let Some(p) = on_path(ACTIVATE) {
        return Some(p);
    }
    if std::env::var_os("RINGCORN_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!(
            "{test}: `{ACTIVATE}` is not on PATH and RINGCORN_REQUIRE_TOOLS=1: install the \
             Debian package `systemd` (apt-get install systemd)"
        );
    }
    eprintln!(
        "NOTICE: {test} skipped: `{ACTIVATE}` is not on PATH (install the Debian package \
         `systemd`; set RINGCORN_REQUIRE_TOOLS=1 to make this a failure)"
    );
    None
}

/// A command with a clean environment for the systemd variables too: nothing of the test
/// runner's own `LISTEN_*`, `NOTIFY_SOCKET` or `WATCHDOG_*` leaks into the server.
fn clean(mut cmd: Command) -> Command {
    for var in [
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

// ---------------------------------------------------------------------------
// Sockets
// ---------------------------------------------------------------------------

/// A port that was free a moment ago (bound on 127.0.0.1:0, then closed).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Number of sockets in state LISTEN (0A) on local port `port`, from /proc/net/tcp{,6}.
fn listening_on(port: u16) -> usize {
    let mut n = 0;
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 {
                continue;
            }
            let local_port = f[1]
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && f[3] == "0A" {
                n += 1;
            }
        }
    }
    n
}

/// What a hand-made socket for fd 3 should be.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// A listening TCP socket, with or without SO_REUSEPORT.
    Listening { reuseport: bool },
    /// A TCP socket bound but never listening.
    BoundOnly,
    /// A bound UDP socket.
    Udp,
}

/// A socket on 127.0.0.1:0 made with libc, and its address.
fn make_socket(kind: Kind) -> (OwnedFd, SocketAddr) {
    let ty = if kind == Kind::Udp {
        libc::SOCK_DGRAM
    } else {
        libc::SOCK_STREAM
    };
    // SAFETY: plain socket syscalls on a descriptor owned (as OwnedFd) right after creation;
    // sockaddr_in is plain data, fully initialised; getsockname writes at most `len` bytes.
    unsafe {
        let fd = libc::socket(libc::AF_INET, ty | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let owned = OwnedFd::from_raw_fd(fd);
        if let Kind::Listening { reuseport: true } = kind {
            let one: libc::c_int = 1;
            let rc = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEPORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            assert_eq!(rc, 0, "SO_REUSEPORT: {}", io::Error::last_os_error());
        }
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = 0;
        sa.sin_addr = libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let rc = libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), len);
        assert_eq!(rc, 0, "bind: {}", io::Error::last_os_error());
        if let Kind::Listening { .. } = kind {
            assert_eq!(
                libc::listen(fd, 128),
                0,
                "listen: {}",
                io::Error::last_os_error()
            );
        }
        let mut got: libc::sockaddr_in = std::mem::zeroed();
        let mut got_len = len;
        let rc = libc::getsockname(
            fd,
            (&mut got as *mut libc::sockaddr_in).cast(),
            &mut got_len,
        );
        assert_eq!(rc, 0, "getsockname: {}", io::Error::last_os_error());
        let port = u16::from_be(got.sin_port);
        (owned, SocketAddr::from(([127, 0, 0, 1], port)))
    }
}

/// The binary started as systemd would: `fd` becomes descriptor 3 (close-on-exec cleared)
/// and `LISTEN_PID` is the pid of the process that execs the server (the shell's `$$`).
fn activated_by_hand(fd: RawFd, name: &str, args: &[&str]) -> Command {
    let script = format!("LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES={name} exec \"$0\" \"$@\"");
    let mut sh_args = vec!["-c", script.as_str(), binary_path()];
    sh_args.extend_from_slice(args);
    let mut cmd = clean(command_at(Path::new("/bin/sh"), &sh_args));
    // SAFETY: the closure runs between fork and exec and only calls dup2 and fcntl, which are
    // async-signal-safe, on a descriptor open in the child.
    unsafe {
        cmd.pre_exec(move || {
            if fd != 3 && libc::dup2(fd, 3) < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Starts `systemd-socket-activate ARGS... -- ringcorn SERVER_ARGS...` listening on what
/// `listen` gives for each attempt (a fresh port), retrying when it cannot bind; returns the
/// process (not yet exec'd into the server: that happens on the first connection) and the
/// address it listens on.
fn spawn_activate<T>(
    tool: &Path,
    mut listen: impl FnMut() -> (String, T),
    fdname: &str,
    server_args: &[&str],
) -> (Server, T) {
    let mut failures = Vec::new();
    for _ in 0..5 {
        let (addr, extra) = listen();
        let fd_flag = format!("--fdname={fdname}");
        let mut args = vec!["-l", addr.as_str(), fd_flag.as_str(), binary_path()];
        args.extend_from_slice(server_args);
        let mut server = Server::spawn_command(clean(command_at(tool, &args)), 0);
        let listening = format!("Listening on {addr} as 3.");
        let up = wait_until(WAIT, || {
            server.count_log_lines(&listening) > 0 || server.has_exited()
        });
        if up && server.count_log_lines(&listening) > 0 {
            return (server, extra);
        }
        failures.push(format!("{addr}: {}", server.log()));
        if !server.has_exited() {
            panic!(
                "{ACTIVATE} did not say `{listening}` within {WAIT:?}\n{}",
                server.log()
            );
        }
    }
    panic!(
        "{ACTIVATE} could not listen in 5 attempts:\n{}",
        failures.join("\n")
    );
}

/// One raw `GET /` on a Unix stream: returns the status line and the body.
fn unix_get(stream: &mut UnixStream) -> (String, String) {
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write the request");
    let mut buf = Vec::new();
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                let status = head.lines().next().unwrap_or_default().to_string();
                return (status, body);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no full response within {IO_TIMEOUT:?}: {:?}",
            String::from_utf8_lossy(&buf)
        );
        let n = stream.read(&mut chunk).unwrap_or_else(|e| {
            panic!(
                "read from the Unix socket: {e}; got {:?}",
                String::from_utf8_lossy(&buf)
            )
        });
        assert!(
            n > 0,
            "EOF before a full response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

// ---------------------------------------------------------------------------
// The notify socket
// ---------------------------------------------------------------------------

/// One datagram on the notify socket.
#[derive(Clone, Debug)]
struct Msg {
    /// When the kernel queued it (SO_TIMESTAMPNS), else when it was read.
    at: SystemTime,
    /// The sender's pid (SO_PASSCRED).
    pid: Option<i32>,
    text: String,
}

impl Msg {
    /// The `KEY=VALUE` lines, in order (panics on a line without `=` or a missing final
    /// newline: the protocol is newline-separated assignments).
    fn fields(&self) -> Vec<(String, String)> {
        assert!(
            self.text.ends_with('\n'),
            "datagram does not end in a newline: {:?}",
            self.text
        );
        self.text
            .lines()
            .map(|l| {
                let (k, v) = l
                    .split_once('=')
                    .unwrap_or_else(|| panic!("line {l:?} of {:?} has no `=`", self.text));
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn keys(&self) -> Vec<String> {
        self.fields().into_iter().map(|(k, _)| k).collect()
    }

    fn get(&self, key: &str) -> Option<String> {
        self.fields()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Only STATUS= lines, or only WATCHDOG=1: the chatter the order checks skip.
    fn chatter(&self) -> bool {
        self.text
            .lines()
            .all(|l| l.starts_with("STATUS=") || l == "WATCHDOG=1")
    }

    fn is_ping(&self) -> bool {
        self.text == "WATCHDOG=1\n"
    }
}

/// A bound `NOTIFY_SOCKET` and a thread recording every datagram (with the sender's pid and
/// the kernel's arrival time).
struct Notify {
    path: PathBuf,
    msgs: Arc<Mutex<Vec<Msg>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

fn set_int_opt(fd: RawFd, opt: libc::c_int) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int from a live local.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt({opt}) on the notify socket: {}",
        io::Error::last_os_error()
    );
}

/// One datagram with its credentials and timestamp (EAGAIN after the read timeout).
fn recv_msg(fd: RawFd) -> io::Result<Msg> {
    let mut buf = [0u8; 4096];
    // u64s: aligned for cmsghdr.
    let mut control = [0u64; 64];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is valid and every pointer set below points to a
    // live local buffer of the stated size; the CMSG_* macros walk only within `control`
    // (bounded by msg_controllen, which recvmsg sets), and the payloads are read unaligned.
    unsafe {
        let mut hdr: libc::msghdr = std::mem::zeroed();
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = control.as_mut_ptr().cast();
        hdr.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(fd, &mut hdr, 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut pid = None;
        let mut at = None;
        let mut c = libc::CMSG_FIRSTHDR(&hdr);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_CREDENTIALS {
                let cred: libc::ucred = std::ptr::read_unaligned(data.cast());
                pid = Some(cred.pid);
            } else if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec = std::ptr::read_unaligned(data.cast());
                at = Some(UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
            }
            c = libc::CMSG_NXTHDR(&hdr, c);
        }
        Ok(Msg {
            at: at.unwrap_or_else(SystemTime::now),
            pid,
            text: String::from_utf8_lossy(&buf[..n as usize]).into_owned(),
        })
    }
}

impl Notify {
    fn new(dir: &TempDir) -> Notify {
        let path = dir.join("notify.sock");
        let sock =
            UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        set_int_opt(sock.as_raw_fd(), libc::SO_PASSCRED);
        set_int_opt(sock.as_raw_fd(), libc::SO_TIMESTAMPNS);
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (msgs2, stop2) = (Arc::clone(&msgs), Arc::clone(&stop));
        let reader = thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match recv_msg(sock.as_raw_fd()) {
                    Ok(m) => msgs2.lock().expect("msgs lock").push(m),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => panic!("recvmsg on the notify socket: {e}"),
                }
            }
        });
        Notify {
            path,
            msgs,
            stop,
            reader: Some(reader),
        }
    }

    fn env(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    fn all(&self) -> Vec<Msg> {
        self.msgs.lock().expect("msgs lock").clone()
    }

    /// Every datagram so far, one per line, for failure messages and the report.
    fn dump(&self) -> String {
        self.all()
            .iter()
            .map(|m| format!("  pid {:?}: {:?}", m.pid, m.text))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The first datagram after index `*cursor` that is not chatter (STATUS=, WATCHDOG=1),
    /// waiting at most `timeout`; advances the cursor past it.
    #[track_caller]
    fn next_event(&self, cursor: &mut usize, timeout: Duration, what: &str, log: &str) -> Msg {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let msgs = self.msgs.lock().expect("msgs lock");
                while *cursor < msgs.len() {
                    let m = msgs[*cursor].clone();
                    *cursor += 1;
                    if !m.chatter() {
                        return m;
                    }
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "no {what} datagram within {timeout:?}; received:\n{}\n--- stderr ---\n{log}",
                    self.dump()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// WATCHDOG=1 pings that arrived in `[from, to]`.
    fn pings_between(&self, from: SystemTime, to: SystemTime) -> Vec<SystemTime> {
        self.all()
            .into_iter()
            .filter(|m| m.is_ping() && m.at >= from && m.at <= to)
            .map(|m| m.at)
            .collect()
    }
}

impl Drop for Notify {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

/// CLOCK_MONOTONIC now, in µs (systemd's MONOTONIC_USEC clock).
fn monotonic_usec() -> u64 {
    // SAFETY: clock_gettime fills a local timespec.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime: {}", io::Error::last_os_error());
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// `N workers serving, M requests answered` → (N, M).
fn parse_status(s: &str) -> Option<(u64, u64)> {
    let (n, rest) = s.split_once(" workers serving, ")?;
    let m = rest.strip_suffix(" requests answered")?;
    Some((n.parse().ok()?, m.parse().ok()?))
}

/// Whether `pid` exited (reaped here: this process must be its parent or subreaper), with
/// its status, within `timeout`.
fn reap(pid: u32, timeout: Duration) -> Option<libc::c_int> {
    let p = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: a non-blocking wait for one named child.
        let rc = unsafe { libc::waitpid(p, &mut status, libc::WNOHANG) };
        if rc == p {
            return Some(status);
        }
        assert!(
            rc == 0,
            "waitpid({pid}): {} (is it this process's child?)",
            io::Error::last_os_error()
        );
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn log_excerpt(log: &str, needles: &[&str]) -> String {
    log.lines()
        .filter(|l| needles.iter().any(|n| l.contains(n)))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------
// Socket activation
// ---------------------------------------------------------------------------

#[test]
fn activation_over_tcp_serves_on_the_passed_socket() {
    let Some(tool) = socket_activate("activation_over_tcp_serves_on_the_passed_socket") else {
        return;
    };
    let (mut server, port) = spawn_activate(
        &tool,
        || {
            let p = free_port();
            (format!("127.0.0.1:{p}"), p)
        },
        "web",
        &["--workers", "2", "--bind", "127.0.0.1:1", "hello"],
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // systemd-socket-activate execs the server on the first connection.
    let first = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to the socket");
    let shown = format!("Listening at: fd://3 (http://127.0.0.1:{port}, systemd socket `web`)");
    server.expect_log(&shown, START_TIMEOUT);
    server.assert_log_count(
        "Socket activation: serving the 1 socket(s) systemd passed (--bind is not used)",
        1,
    );
    server.assert_log_count("Listening at:", 1);
    // `--bind 127.0.0.1:1` is not used: neither listened on nor tried.
    server.assert_log_count("127.0.0.1:1)", 0);
    server.assert_log_count("cannot listen", 0);
    server.assert_log_count("ERROR", 0);

    // The connection that woke the server, and fresh ones.
    let mut c = Conn::from_stream(first, addr);
    assert_hello(&c.get("/"));
    assert_hello(&c.get("/again"));
    for _ in 0..10 {
        assert_hello(&connect(addr).get("/"));
    }
    // Without SO_REUSEPORT the two workers share the one passed socket.
    assert_eq!(
        listening_on(port),
        1,
        "one LISTEN socket on port {port} (systemd's, shared by both workers)\n{}",
        server.log()
    );

    server.signal(libc::SIGTERM);
    let status = server.expect_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.log());
    eprintln!(
        "{}",
        log_excerpt(&server.log(), &["Socket activation", "Listening"])
    );
}

#[test]
fn activation_over_unix_serves_curl() {
    let Some(tool) = socket_activate("activation_over_unix_serves_curl") else {
        return;
    };
    let (mut server, (path, _dir)) = spawn_activate(
        &tool,
        || {
            let dir = TempDir::new("systemd-unix");
            let path = dir.join("s.sock");
            (path.to_string_lossy().into_owned(), (path, dir))
        },
        "api",
        &["--workers", "2", "--bind", "127.0.0.1:1", "hello"],
    );
    let mut first = UnixStream::connect(&path).expect("connect to the Unix socket");
    let shown = format!(
        "Listening at: fd://3 (unix:{}, systemd socket `api`)",
        path.display()
    );
    server.expect_log(&shown, START_TIMEOUT);
    server.assert_log_count("Listening at:", 1);

    let (status, body) = unix_get(&mut first);
    assert_eq!(status, "HTTP/1.1 200 OK", "{body:?}");
    assert_eq!(body, HELLO_BODY);
    for _ in 0..5 {
        let mut s = UnixStream::connect(&path).expect("connect");
        let (status, body) = unix_get(&mut s);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, HELLO_BODY);
    }
    match on_path("curl") {
        Some(curl) => {
            let out = Command::new(curl)
                .args(["-sS", "--connect-timeout", "5", "-m", "10", "-i"])
                .arg("--unix-socket")
                .arg(&path)
                .arg("http://x/")
                .stdin(std::process::Stdio::null())
                .output()
                .expect("run curl");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "curl: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
            assert!(text.ends_with(&format!("\r\n\r\n{HELLO_BODY}")), "{text:?}");
        }
        None => eprintln!("NOTICE: curl is not on PATH: the curl part is skipped"),
    }

    server.signal(libc::SIGTERM);
    let status = server.expect_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.log());
    // systemd owns the socket file: the server leaves it in place.
    let meta = std::fs::symlink_metadata(&path)
        .unwrap_or_else(|e| panic!("{} was removed: {e}\n{}", path.display(), server.log()));
    assert!(
        std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()),
        "{}",
        path.display()
    );
    // ...and nobody answers on it any more.
    let err = UnixStream::connect(&path).expect_err("nobody listens after the exit");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    eprintln!(
        "{}",
        log_excerpt(&server.log(), &["Socket activation", "Listening"])
    );
}

/// Passes a listening socket made here at fd 3, as systemd would, to `--workers 2 hello`, and
/// checks how many LISTEN sockets the port has and that 20 fresh connections are answered.
fn check_passed_socket(reuseport: bool, want: usize) {
    let (fd, addr) = make_socket(Kind::Listening { reuseport });
    let cmd = activated_by_hand(fd.as_raw_fd(), "http", &["--workers", "2", "hello"]);
    let mut server = Server::spawn_command(cmd, 0);
    // The server has its own copy now.
    drop(fd);
    server.expect_log(
        &format!(
            "Listening at: fd://3 (http://127.0.0.1:{}, systemd socket `http`)",
            addr.port()
        ),
        START_TIMEOUT,
    );
    server.assert_log_count(
        "Socket activation: serving the 1 socket(s) systemd passed (--bind is not used)",
        1,
    );
    // The default --bind is not used either.
    server.assert_log_count("Listening at:", 1);
    eprintln!(
        "reuseport={reuseport}: {} LISTEN socket(s) on port {}\n{}",
        listening_on(addr.port()),
        addr.port(),
        log_excerpt(&server.log(), &["Socket activation", "Listening"])
    );
    assert_eq!(
        listening_on(addr.port()),
        want,
        "SO_REUSEPORT={reuseport}, --workers 2: LISTEN sockets on {addr} (with SO_REUSEPORT \
         every worker but the first needs a socket of its own beside the passed one)\n{}",
        server.log()
    );
    for i in 0..20 {
        let resp = fresh_get(addr, "/", IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("request {i} (reuseport={reuseport}): {e}"));
        assert_hello(&resp);
    }
    server.signal(libc::SIGTERM);
    let status = server.expect_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.log());
}

#[test]
fn activation_with_reuseport_opens_per_worker_sockets() {
    check_passed_socket(true, 2);
}

#[test]
fn activation_without_reuseport_shares_the_passed_socket() {
    check_passed_socket(false, 1);
}

#[test]
fn activation_refuses_a_socket_that_is_not_listening() {
    for (kind, why) in [
        (Kind::BoundOnly, "is not listening"),
        (Kind::Udp, "is not a stream socket"),
    ] {
        let (fd, addr) = make_socket(kind);
        let cmd = activated_by_hand(fd.as_raw_fd(), "http", &["--workers", "1", "hello"]);
        let out = run_command(cmd, &["(activated by hand)", "--workers", "1", "hello"]);
        drop(fd);
        let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            out.status.code(),
            Some(1),
            "{kind:?}: {}\n{stderr}",
            out.status
        );
        assert!(
            stderr.contains("socket activation: descriptor 3"),
            "{kind:?}: the error names descriptor 3\n{stderr}"
        );
        assert!(
            stderr.contains(why) && stderr.contains(&addr.port().to_string()),
            "{kind:?}: the error says {why:?} about {addr}\n{stderr}"
        );
        assert!(!stderr.contains("Listening at:"), "{kind:?}\n{stderr}");
        eprintln!("{kind:?}: {}", log_excerpt(&stderr, &["socket activation"]));
    }
}

// ---------------------------------------------------------------------------
// The notify protocol
// ---------------------------------------------------------------------------

#[test]
fn notify_messages_in_order_across_start_reload_upgrade_stop() {
    // The new master is the old one's child: once the old one exits it is reparented to
    // this process, which can then see its exit status.
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(
        rc,
        0,
        "PR_SET_CHILD_SUBREAPER: {}",
        io::Error::last_os_error()
    );

    let dir = TempDir::new("systemd-notify");
    let notify = Notify::new(&dir);
    let pidfile = dir.join("p.pid");
    let pid_arg = pidfile.to_string_lossy().into_owned();
    let args = [
        "--workers",
        "1",
        "--bind",
        "127.0.0.1:0",
        "--pid",
        pid_arg.as_str(),
        "hello",
    ];
    let mut cmd = clean(cli_command(&args));
    cmd.env("NOTIFY_SOCKET", notify.env());
    let mut server = Server::spawn_command(cmd, 1);
    let mut guard = MasterGuard::new(&pidfile, Path::new(binary_path()), server.pid());
    let old = server.pid() as i32;
    let addr = server.addr();
    let mut cursor = 0;

    // Start.
    let ready = notify.next_event(&mut cursor, WAIT, "READY=1", &server.log());
    assert_eq!(ready.keys(), ["READY", "STATUS"], "{ready:?}");
    assert_eq!(ready.get("READY").as_deref(), Some("1"));
    assert_eq!(ready.pid, Some(old), "READY=1 comes from the master");
    let (n, _) = parse_status(&ready.get("STATUS").unwrap_or_default())
        .unwrap_or_else(|| panic!("READY's STATUS: {ready:?}"));
    assert_eq!(n, 1, "{ready:?}");
    for _ in 0..3 {
        assert_hello(&connect(addr).get("/"));
    }

    // Reload.
    server.signal(libc::SIGHUP);
    let sent_at = monotonic_usec();
    let reloading = notify.next_event(&mut cursor, WAIT, "RELOADING=1", &server.log());
    assert_eq!(
        reloading.keys(),
        ["RELOADING", "MONOTONIC_USEC", "STATUS"],
        "{reloading:?}"
    );
    assert_eq!(reloading.get("RELOADING").as_deref(), Some("1"));
    assert_eq!(reloading.get("STATUS").as_deref(), Some("reloading"));
    assert_eq!(reloading.pid, Some(old));
    let usec_text = reloading.get("MONOTONIC_USEC").unwrap_or_default();
    assert!(
        !usec_text.is_empty() && usec_text.bytes().all(|b| b.is_ascii_digit()),
        "MONOTONIC_USEC={usec_text:?}"
    );
    let usec: u64 = usec_text.parse().expect("MONOTONIC_USEC digits");
    let now = monotonic_usec();
    assert!(
        usec + 1_000_000 >= sent_at && usec <= now + 1_000_000,
        "MONOTONIC_USEC={usec} is not between the HUP ({sent_at}) and now ({now}) on \
         CLOCK_MONOTONIC"
    );
    let ready = notify.next_event(&mut cursor, WAIT, "READY=1 after the reload", &server.log());
    assert_eq!(ready.keys(), ["READY", "STATUS"], "{ready:?}");
    assert_eq!(ready.pid, Some(old));
    assert_hello(&connect(addr).get("/"));

    // Upgrade.
    server.signal(libc::SIGUSR2);
    let mainpid = notify.next_event(&mut cursor, WAIT, "MAINPID=", &server.log());
    assert_eq!(mainpid.keys(), ["MAINPID", "STATUS"], "{mainpid:?}");
    assert_eq!(mainpid.pid, Some(old), "the old master says MAINPID=");
    let new: u32 = mainpid
        .get("MAINPID")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("MAINPID is not a pid: {mainpid:?}"));
    guard.watch(new);
    assert_ne!(new, old as u32, "{mainpid:?}");
    assert_eq!(
        mainpid.get("STATUS"),
        Some(format!("upgraded: the new master is pid {new}")),
        "{mainpid:?}"
    );
    assert!(pid_alive(new), "the new master {new} runs");
    server.expect_log(&format!("the new master (pid {new}) is serving"), WAIT);
    assert!(
        wait_until(WAIT, || read_pidfile(&pidfile) == Some(new)),
        "the pidfile names the new master: {:?}",
        std::fs::read_to_string(&pidfile)
    );
    let status = server.expect_exit(WAIT);
    assert_eq!(
        status.code(),
        Some(0),
        "old master: {status}\n{}",
        server.log()
    );
    assert_hello(&connect(addr).get("/"));
    // Give the new master time to say anything it (wrongly) might, e.g. a READY=1 of its own.
    thread::sleep(Duration::from_millis(1500));

    // Stop.
    kill_pid(new, libc::SIGTERM).expect("TERM the new master");
    let stopping = notify.next_event(&mut cursor, WAIT, "STOPPING=1", &server.log());
    assert_eq!(stopping.keys(), ["STOPPING", "STATUS"], "{stopping:?}");
    assert_eq!(
        stopping.get("STATUS").as_deref(),
        Some("stopping: SIGTERM received")
    );
    assert_eq!(
        stopping.pid,
        Some(new as i32),
        "STOPPING=1 comes from the new master"
    );
    let wstatus = reap(new, WAIT).unwrap_or_else(|| {
        panic!(
            "the new master {new} did not exit within {WAIT:?}\n{}",
            server.log()
        )
    });
    assert!(
        libc::WIFEXITED(wstatus) && libc::WEXITSTATUS(wstatus) == 0,
        "the new master exits 0 (wait status {wstatus:#x})\n{}",
        server.log()
    );
    thread::sleep(Duration::from_millis(300));

    // Nothing else but chatter, in all: no STOPPING=1 from the old master, no READY=1 from
    // the new one; and not a word from the old master after MAINPID=.
    let all = notify.all();
    let events: Vec<&Msg> = all.iter().filter(|m| !m.chatter()).collect();
    let firsts: Vec<String> = events
        .iter()
        .map(|m| m.keys().first().cloned().unwrap_or_default())
        .collect();
    assert_eq!(
        firsts,
        ["READY", "RELOADING", "READY", "MAINPID", "STOPPING"],
        "received:\n{}",
        notify.dump()
    );
    let handed = all
        .iter()
        .position(|m| m.text.starts_with("MAINPID="))
        .expect("MAINPID");
    assert!(
        all[handed + 1..].iter().all(|m| m.pid == Some(new as i32)),
        "after MAINPID= only the new master speaks:\n{}",
        notify.dump()
    );
    assert!(
        all[..=handed].iter().all(|m| m.pid == Some(old)),
        "before MAINPID= only the old master speaks:\n{}",
        notify.dump()
    );
    let statuses: Vec<(u64, u64)> = all
        .iter()
        .filter_map(|m| m.get("STATUS"))
        .filter_map(|s| parse_status(&s))
        .collect();
    assert!(
        statuses.iter().any(|&(n, _)| n >= 1),
        "a STATUS=N workers serving, M requests answered with N >= 1:\n{}",
        notify.dump()
    );
    eprintln!("datagrams:\n{}", notify.dump());
    eprintln!(
        "{}",
        log_excerpt(
            &server.log(),
            &[
                "SIGHUP",
                "SIGUSR2",
                "new master",
                "Shutting down",
                "Shutdown"
            ]
        )
    );
}

#[test]
fn watchdog_pings_only_while_workers_beat() {
    let dir = TempDir::new("systemd-watchdog");
    let notify = Notify::new(&dir);
    // Fresh means within --timeout: 1 s here, so a 5 s stall stops the pings.
    let args = [
        "--workers",
        "1",
        "--timeout",
        "1",
        "--bind",
        "127.0.0.1:0",
        "sleep",
    ];
    let mut cmd = clean(cli_command(&args));
    cmd.env("NOTIFY_SOCKET", notify.env())
        .env("WATCHDOG_USEC", "2000000");
    let mut server = Server::spawn_command(cmd, 1);
    let addr = server.addr();
    let mut cursor = 0;
    let ready = notify.next_event(&mut cursor, WAIT, "READY=1", &server.log());
    assert_eq!(ready.keys(), ["READY", "STATUS"], "{ready:?}");

    // Healthy: a ping about every second.
    let from = SystemTime::now();
    thread::sleep(Duration::from_millis(3000));
    let healthy = notify.pings_between(from, SystemTime::now());
    assert!(
        healthy.len() >= 2,
        "at least 2 pings in 3 s while healthy, got {}:\n{}",
        healthy.len(),
        notify.dump()
    );

    // Stuck: the only worker sleeps 5 s inside a request.
    let start = SystemTime::now();
    let request = thread::spawn(move || {
        let mut c = connect(addr);
        c.set_read_timeout(Duration::from_secs(20));
        let resp = c.get("/5000");
        (resp, SystemTime::now())
    });
    let (resp, end) = request.join().expect("the request thread");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        body_pid(&resp),
        server.pid(),
        "thread workers: the master's pid"
    );
    let took = end.duration_since(start).unwrap_or_default();
    assert!(
        took >= Duration::from_millis(4900),
        "GET /5000 took {took:?}"
    );
    let stalled = notify.pings_between(
        start + Duration::from_millis(1600),
        start + Duration::from_millis(4400),
    );
    assert!(
        stalled.is_empty(),
        "no ping while the worker is stuck (1.6 s .. 4.4 s into the request), got {:?}:\n{}",
        stalled
            .iter()
            .map(|t| t.duration_since(start).unwrap_or_default())
            .collect::<Vec<_>>(),
        notify.dump()
    );

    // Healthy again.
    thread::sleep(Duration::from_millis(3000));
    let after = notify.pings_between(end, SystemTime::now());
    assert!(
        !after.is_empty(),
        "pings resume within 3 s after the response:\n{}",
        notify.dump()
    );
    let offsets: Vec<String> = notify
        .all()
        .iter()
        .filter(|m| m.is_ping())
        .map(|m| match m.at.duration_since(start) {
            Ok(d) => format!("+{:.2}", d.as_secs_f64()),
            Err(e) => format!("-{:.2}", e.duration().as_secs_f64()),
        })
        .collect();
    eprintln!(
        "pings (s from the start of GET /5000; the response came at +{:.2}): {}",
        took.as_secs_f64(),
        offsets.join(" ")
    );
    server.signal(libc::SIGTERM);
    let status = server.expect_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.log());
}
