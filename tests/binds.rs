//! `--bind` in every form Gunicorn takes, over real sockets: a name binds every address it
//! resolves to, `tcp://` and bare hosts, Unix sockets (shared by every worker; stale files
//! replaced, live ones refused, removed on exit), `fd://N`, and one clear line with exit 1
//! for a bind that cannot work (on reload, the old sockets stay).

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    assert_hello, cli_command, connect, replace_file, run_cli, run_command, Server, TempDir,
    HELLO_BODY,
};

/// One request over a Unix socket; the raw response.
fn unix_get(path: &Path, target: &str) -> String {
    let mut s = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {path:?}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// A server whose only binds are Unix sockets or passed descriptors (no `http://` line to
/// wait for): waits for `needle` in its log.
fn spawn_waiting(args: &[&str], needle: &str) -> Server {
    let server = Server::spawn_command(cli_command(args), 0);
    server.expect_log(needle, Duration::from_secs(20));
    server
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The run exited 1 with exactly one ERROR line, and it contains every part of `want`.
#[track_caller]
fn assert_refused(args: &[&str], want: &[&str]) {
    let out = run_cli(args);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}\n{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "one error line for {args:?}\n{err}");
    for w in want {
        assert!(
            errors[0].contains(w),
            "{args:?}: wants {w:?} in {:?}",
            errors[0]
        );
    }
}

#[test]
fn a_name_binds_every_address_it_resolves_to() {
    let wanted: BTreeSet<std::net::IpAddr> = ("localhost", 0)
        .to_socket_addrs()
        .expect("localhost resolves")
        .map(|a| a.ip())
        .collect();
    let server = Server::spawn_command(
        cli_command(&["--workers", "2", "--bind", "localhost:0", "hello"]),
        wanted.len(),
    );
    let bound: BTreeSet<std::net::IpAddr> = server.addrs().iter().map(|a| a.ip()).collect();
    assert_eq!(
        bound,
        wanted,
        "every address of localhost\n{}",
        server.log()
    );
    for &addr in server.addrs() {
        assert_hello(&connect(addr).get("/"));
    }
}

#[test]
fn tcp_prefix_and_bare_hosts() {
    let server = Server::spawn_command(
        cli_command(&["--bind", "tcp://127.0.0.1:0", "--workers", "1", "hello"]),
        1,
    );
    assert_hello(&connect(server.addr()).get("/"));
    // A host alone means port 8000 (checked without binding it).
    for (given, printed) in [
        ("127.0.0.1", "127.0.0.1:8000"),
        ("localhost", "localhost:8000"),
        ("[::1]", "[::1]:8000"),
        ("tcp://[::1]:9", "[::1]:9"),
        (":8001", "0.0.0.0:8001"),
    ] {
        let out = run_cli(&["--bind", given, "--print-config"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.contains(&format!("bind = [\"{printed}\"]")),
            "{given}: {text}"
        );
    }
}

#[test]
fn ipv6_literal_in_brackets() {
    if !common::ipv6_available() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let server = Server::spawn(&["--bind", "[::1]:0", "--workers", "1", "hello"]);
    assert!(server.addr().is_ipv6());
    assert_hello(&connect(server.addr()).get("/"));
}

#[test]
fn unix_socket_is_served_by_curl_and_removed_on_exit() {
    let dir = TempDir::new("unix");
    let path = dir.join("s.sock");
    let bind = format!("unix:{}", path.display());
    let mut server = spawn_waiting(
        &["--workers", "2", "--bind", &bind, "hello"],
        &format!("Listening at: {bind}"),
    );
    let meta = std::fs::symlink_metadata(&path).expect("socket file");
    assert!(meta.file_type().is_socket());
    let raw = unix_get(&path, "/");
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert!(raw.ends_with(HELLO_BODY), "{raw}");
    if Path::new("/usr/bin/curl").exists() {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "--unix-socket"])
            .arg(&path)
            .arg("http://localhost/")
            .output()
            .expect("curl runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout), HELLO_BODY, "{out:?}");
    }
    server.signal(libc::SIGTERM);
    assert!(server.expect_exit(Duration::from_secs(20)).success());
    assert!(!path.exists(), "the socket file is removed on exit");
}

#[test]
fn one_unix_socket_is_shared_by_every_worker() {
    let dir = TempDir::new("unix-shared");
    let path = dir.join("s.sock");
    let bind = format!("unix:{}", path.display());
    let server = spawn_waiting(
        &[
            "--worker-class",
            "process",
            "--workers",
            "2",
            "--bind",
            &bind,
            "sleep",
        ],
        &format!("Listening at: {bind}"),
    );
    assert!(server.wait_log_count("Booting worker", 4, Duration::from_secs(20)));
    let pid_of = |raw: &str| {
        raw.rsplit("pid ")
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    // New connections take turns between the workers.
    let mut turns: std::collections::BTreeMap<String, usize> = Default::default();
    for _ in 0..40 {
        let raw = unix_get(&path, "/0");
        assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
        *turns.entry(pid_of(&raw)).or_default() += 1;
    }
    assert_eq!(turns.len(), 2, "both workers accept: {turns:?}");
    assert!(turns.values().all(|&n| n >= 10), "taking turns: {turns:?}");
    // One worker is held by a slow request: at most the one connection its armed accept
    // takes waits for it; the others are answered by the free worker meanwhile.
    let held_path = path.clone();
    let held = std::thread::spawn(move || unix_get(&held_path, "/3000"));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let quick: Vec<_> = (0..10)
        .map(|_| {
            let p = path.clone();
            std::thread::spawn(move || (unix_get(&p, "/0"), started.elapsed()))
        })
        .collect();
    let answers: Vec<(String, Duration)> = quick
        .into_iter()
        .map(|h| h.join().expect("request"))
        .collect();
    let slow = held.join().expect("slow request");
    assert!(slow.starts_with("HTTP/1.1 200"), "{slow}");
    let slow_pid = pid_of(&slow);
    let prompt: Vec<&(String, Duration)> = answers
        .iter()
        .filter(|(_, t)| *t < Duration::from_millis(2000))
        .collect();
    assert!(prompt.len() >= 9, "prompt answers: {answers:?}");
    for (raw, _) in &prompt {
        assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
        assert_ne!(pid_of(raw), slow_pid, "answered by the free worker");
    }
}

#[test]
fn a_stale_unix_socket_is_replaced_and_a_live_one_refused() {
    let dir = TempDir::new("unix-stale");
    let path = dir.join("s.sock");
    // A dead server's file: bound, then closed without unlinking.
    drop(UnixListener::bind(&path).expect("bind"));
    assert!(path.exists());
    let bind = format!("unix:{}", path.display());
    let server = spawn_waiting(
        &["--workers", "1", "--bind", &bind, "hello"],
        &format!("Listening at: {bind}"),
    );
    assert!(
        server.log().contains("Removed the stale socket"),
        "{}",
        server.log()
    );
    assert!(unix_get(&path, "/").ends_with(HELLO_BODY));
    // A second server on the live socket is refused, and the first serves on.
    assert_refused(
        &["--workers", "1", "--bind", &bind, "hello"],
        &[&bind, "another server is answering"],
    );
    assert!(unix_get(&path, "/").ends_with(HELLO_BODY));
}

#[test]
fn what_is_not_a_socket_is_left_alone() {
    let dir = TempDir::new("unix-file");
    let path = dir.join("data.txt");
    std::fs::write(&path, b"keep me").expect("write");
    let bind = format!("unix:{}", path.display());
    assert_refused(&["--bind", &bind, "hello"], &[&bind, "not a socket"]);
    assert_eq!(std::fs::read(&path).expect("still there"), b"keep me");
}

#[test]
fn unix_socket_mode_follows_the_umask() {
    let dir = TempDir::new("unix-umask");
    let path = dir.join("s.sock");
    let bind = format!("unix:{}", path.display());
    let _server = spawn_waiting(
        &["--umask", "027", "--workers", "1", "--bind", &bind, "hello"],
        &format!("Listening at: {bind}"),
    );
    let mode = std::fs::metadata(&path)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o750, "{mode:o}");
}

/// Spawn the server with `listener` passed as descriptor `fd` (`fd://N`).
fn spawn_with_fd(listener: &impl AsRawFd, fd: i32, extra: &[&str]) -> Server {
    let bind = format!("fd://{fd}");
    let mut args = vec!["--bind", bind.as_str()];
    args.extend_from_slice(extra);
    let mut cmd = cli_command(&args);
    let source = listener.as_raw_fd();
    // SAFETY: between fork and exec only dup2 and fcntl run, both async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(source, fd) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // dup2 leaves the copy without close-on-exec, so the server inherits it.
            Ok(())
        });
    }
    let server = Server::spawn_command(cmd, 0);
    server.expect_log(
        &format!("Listening at: fd://{fd} ("),
        Duration::from_secs(20),
    );
    server
}

#[test]
fn an_inherited_listener_is_served_as_fd_n() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = spawn_with_fd(&listener, 97, &["--workers", "2", "hello"]);
    assert!(
        server
            .log()
            .contains(&format!("Listening at: fd://97 (http://{addr})")),
        "{}",
        server.log()
    );
    drop(listener);
    for _ in 0..10 {
        assert_hello(&connect(addr).get("/"));
    }
}

#[test]
fn a_descriptor_that_is_not_a_listener_is_refused() {
    // Not open at all.
    assert_refused(
        &["--bind", "fd://250", "hello"],
        &["fd://250", "not an open descriptor"],
    );
    // Open, but a connected socket, not a listener.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("c");
    let fd = 99;
    let mut cmd = cli_command(&["--bind", "fd://99", "hello"]);
    let source = client.as_raw_fd();
    // SAFETY: between fork and exec only dup2 runs, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(source, fd) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run_command(cmd, &["--bind", "fd://99"]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot listen on fd://99") && err.contains("not listening"),
        "{err}"
    );
}

#[test]
fn binds_that_cannot_work_say_why_in_one_line() {
    assert_refused(
        &["--bind", "no-such-host.invalid:0", "hello"],
        &["no-such-host.invalid:0", "does not resolve"],
    );
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    assert_refused(&["--bind", &addr, "hello"], &[&addr, "in use"]);
    assert_refused(
        &["--bind", "unix:/nonexistent-ringcorn-dir/s.sock", "hello"],
        &["unix:/nonexistent-ringcorn-dir/s.sock", "does not exist"],
    );
    assert_refused(
        &["--bind", "192.0.2.1:0", "hello"],
        &["192.0.2.1:0", "no interface of this host has the address"],
    );
}

#[test]
fn permission_denied_is_named() {
    if unsafe { libc::geteuid() } != 0 {
        // As an ordinary user a root-owned directory refuses the socket file.
        assert_refused(
            &["--bind", "unix:/ringcorn-test.sock", "hello"],
            &["unix:/ringcorn-test.sock", "ermission denied"],
        );
        return;
    }
    // As root, the same through a user that may not write the directory.
    let dir = TempDir::new("perm");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let bind = format!("unix:{}", dir.join("s.sock").display());
    let mut cmd = cli_command(&["--bind", &bind, "hello"]);
    cmd.uid(65534).gid(65534);
    let out = run_command(cmd, &["--bind", &bind]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot listen on {bind}")) && err.contains("ermission denied"),
        "{err}"
    );
}

#[test]
fn a_reload_with_a_bad_bind_keeps_the_old_sockets() {
    let dir = TempDir::new("rebind");
    let conf = dir.join("ringcorn.toml");
    replace_file(&conf, b"bind = [\"127.0.0.1:0\"]\nworkers = 1\n", 0o644);
    let conf_arg = conf.to_string_lossy().into_owned();
    let mut server = Server::spawn_command(cli_command(&["-c", &conf_arg, "hello"]), 1);
    let addr: SocketAddr = server.addr();
    replace_file(
        &conf,
        b"bind = [\"127.0.0.1:0\", \"no-such-host.invalid:80\"]\nworkers = 1\n",
        0o644,
    );
    server.signal(libc::SIGHUP);
    server.expect_log("reload refused", Duration::from_secs(10));
    assert!(
        server.log().contains("no-such-host.invalid:80")
            && server.log().contains("does not resolve"),
        "{}",
        server.log()
    );
    assert_hello(&connect(addr).get("/"));
    // Adding a Unix socket on reload works, and dropping it removes its file.
    let path = dir.join("r.sock");
    let text = format!(
        "bind = [\"127.0.0.1:0\", \"unix:{}\"]\nworkers = 1\n",
        path.display()
    );
    replace_file(&conf, text.as_bytes(), 0o644);
    server.signal(libc::SIGHUP);
    server.expect_log(
        &format!("Listening at: unix:{}", path.display()),
        Duration::from_secs(10),
    );
    assert!(unix_get(&path, "/").ends_with(HELLO_BODY));
    assert_hello(&connect(addr).get("/"));
    replace_file(&conf, b"bind = [\"127.0.0.1:0\"]\nworkers = 1\n", 0o644);
    server.signal(libc::SIGHUP);
    server.expect_log(
        &format!("No longer listening at: unix:{}", path.display()),
        Duration::from_secs(10),
    );
    assert!(
        common::wait_until(Duration::from_secs(10), || !path.exists()),
        "the dropped socket's file is removed"
    );
    assert_hello(&connect(addr).get("/"));
}
