//! `--user`, `--group` and `--umask`: the sockets are bound as root, then the server (thread
//! workers) or each worker process (`--worker-class process`) drops to the named user and
//! group; Unix socket files are given to them; an unknown name is an error before anything is
//! bound; `--umask` sets the mode of the files the server creates.
//!
//! The dropping tests need root (they use Debian's `nobody` and `nogroup`); without it they
//! print a notice and pass, unless `RINGCORN_REQUIRE_ROOT=1`.

mod common;

use common::*;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Whether this test can run: true as root; otherwise a notice (or a panic when the
/// environment demands root).
fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("RINGCORN_REQUIRE_ROOT").as_deref() != Ok("1"),
        "{test} needs root (RINGCORN_REQUIRE_ROOT=1)"
    );
    eprintln!("skipping {test}: it needs root to drop privileges");
    false
}

/// The numeric id (third field) of `name` in the `getent DB` database.
fn getent_id(db: &str, name: &str) -> u32 {
    let out = Command::new("getent")
        .args([db, name])
        .output()
        .unwrap_or_else(|e| panic!("cannot run getent {db} {name}: {e}"));
    assert!(
        out.status.success(),
        "getent {db} {name} failed ({}): is there a `{name}` entry?",
        out.status
    );
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    line.trim()
        .split(':')
        .nth(2)
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("no id in `getent {db} {name}` output {line:?}"))
}

/// nobody's uid and nogroup's gid.
fn nobody() -> (u32, u32) {
    (getent_id("passwd", "nobody"), getent_id("group", "nogroup"))
}

/// The whitespace-separated numbers after `key` (`Uid:`, `Gid:`, `Groups:`) in
/// /proc/PID/status (or /proc/PID/task/TID/status).
fn status_ids(status_path: &str, key: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(status_path)
        .unwrap_or_else(|e| panic!("cannot read {status_path}: {e}"));
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} line in {status_path}:\n{status}"));
    line[key.len()..]
        .split_whitespace()
        .map(|n| n.parse().unwrap_or_else(|_| panic!("bad id in {line:?}")))
        .collect()
}

/// Asserts that every thread of `pid` runs with real, effective, saved and filesystem ids
/// `uid`/`gid`, and that `gid` is among its supplementary groups but root's group is not.
#[track_caller]
fn assert_runs_as(pid: u32, uid: u32, gid: u32, log: &str) {
    let tasks: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|e| panic!("cannot list the threads of {pid}: {e}"))
        .filter_map(|e| Some(e.ok()?.file_name().to_str()?.to_string()))
        .collect();
    assert!(!tasks.is_empty(), "no threads listed for {pid}");
    for tid in &tasks {
        let path = format!("/proc/{pid}/task/{tid}/status");
        assert_eq!(
            status_ids(&path, "Uid:"),
            vec![uid; 4],
            "Uid of thread {tid} of {pid}\n{log}"
        );
        assert_eq!(
            status_ids(&path, "Gid:"),
            vec![gid; 4],
            "Gid of thread {tid} of {pid}\n{log}"
        );
        let groups = status_ids(&path, "Groups:");
        assert!(
            groups.contains(&gid) && !groups.contains(&0),
            "supplementary groups of thread {tid} of {pid}: {groups:?} (want {gid}, not 0)\n{log}"
        );
    }
}

/// `GET /` over the Unix socket at `path`, with `Connection: close`; the whole answer.
fn unix_get(path: &Path) -> String {
    let mut s = UnixStream::connect(path)
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", path.display()));
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
    s.set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("send over the Unix socket");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .unwrap_or_else(|e| panic!("read over {}: {e}", path.display()));
    String::from_utf8_lossy(&answer).into_owned()
}

#[track_caller]
fn assert_unix_hello(path: &Path, log: &str) {
    let answer = unix_get(path);
    assert!(
        answer.starts_with("HTTP/1.1 200 ") && answer.ends_with(HELLO_BODY),
        "GET / over {}: {answer:?}\n{log}",
        path.display()
    );
}

/// The server with `args`, waiting for `tcp` `Listening at: http://` lines (Unix binds are
/// announced as `unix:PATH`, which `Server` does not count).
fn spawn(args: &[&str], tcp: usize) -> Server {
    Server::spawn_command(cli_command(args), tcp)
}

#[test]
fn thread_workers_serve_as_the_user_after_binding() {
    if !root_or_skip("thread_workers_serve_as_the_user_after_binding") {
        return;
    }
    let (uid, gid) = nobody();
    // Root's directory: only root could create the socket there, so it was bound first.
    let dir = TempDir::new("priv-thread");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let meta = std::fs::metadata(dir.path()).expect("dir");
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "the test dir is root's");
    let sock = dir.join("s.sock");
    let bind = format!("unix:{}", sock.display());
    let mut server = spawn(
        &[
            "--user",
            "nobody",
            "--group",
            "nogroup",
            "--workers",
            "2",
            "--bind",
            "127.0.0.1:0",
            "--bind",
            &bind,
            "hello",
        ],
        1,
    );
    server.expect_log(&format!("Listening at: {bind}"), WAIT);
    server.expect_log(
        &format!("Serving as user nobody, group nogroup (uid {uid}, gid {gid})"),
        WAIT,
    );
    let meta = std::fs::symlink_metadata(&sock).expect("the socket file exists");
    assert!(
        std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()),
        "{} is a socket",
        sock.display()
    );
    assert_eq!(
        (meta.uid(), meta.gid()),
        (uid, gid),
        "the socket file is given to nobody:nogroup\n{}",
        server.log()
    );
    // The whole process (every worker thread) dropped: no thread is left as root.
    assert_runs_as(server.pid(), uid, gid, &server.log());
    assert!(
        child_pids(server.pid()).is_empty(),
        "thread workers fork nothing"
    );
    let mut c = connect(server.addr());
    assert_hello(&c.get("/"));
    assert_unix_hello(&sock, &server.log());

    server.signal(libc::SIGTERM);
    let status = server.expect_exit(WAIT);
    assert!(status.success(), "exit: {status}\n{}", server.log());
    server.expect_log("Shutdown complete", Duration::from_secs(1));
}

#[test]
fn worker_processes_drop_while_the_master_stays_root() {
    if !root_or_skip("worker_processes_drop_while_the_master_stays_root") {
        return;
    }
    let (uid, gid) = nobody();
    let dir = TempDir::new("priv-process");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let sock = dir.join("p.sock");
    let bind = format!("unix:{}", sock.display());
    let mut server = spawn(
        &[
            "--worker-class",
            "process",
            "--workers",
            "2",
            "--user",
            "nobody",
            "--group",
            "nogroup",
            "--bind",
            "127.0.0.1:0",
            "--bind",
            &bind,
            "sleep",
        ],
        1,
    );
    assert!(
        server.wait_log_count(" with pid: ", 2, WAIT),
        "two workers booted\n{}",
        server.log()
    );
    let workers: Vec<u32> = (0..2)
        .map(|slot| {
            server
                .worker_pid(slot)
                .unwrap_or_else(|| panic!("no pid for worker {slot}\n{}", server.log()))
        })
        .collect();
    let mut want = workers.clone();
    want.sort_unstable();
    assert!(
        wait_until(WAIT, || child_pids(server.pid()) == want),
        "children of the master {}: {:?}, expected {want:?}\n{}",
        server.pid(),
        child_pids(server.pid()),
        server.log()
    );
    // The master keeps root (to fork more workers and bind on reload); the workers do not.
    let master = format!("/proc/{}/status", server.pid());
    assert_eq!(status_ids(&master, "Uid:"), vec![0; 4], "master's Uid");
    assert_eq!(status_ids(&master, "Gid:"), vec![0; 4], "master's Gid");
    for &pid in &workers {
        assert_runs_as(pid, uid, gid, &server.log());
    }
    let meta = std::fs::symlink_metadata(&sock).expect("the socket file exists");
    assert_eq!(
        (meta.uid(), meta.gid()),
        (uid, gid),
        "the socket file is given to nobody:nogroup\n{}",
        server.log()
    );
    // Requests are answered, by the dropped workers.
    for _ in 0..20 {
        let mut c = connect(server.addr());
        let resp = c.get("/");
        assert_eq!(resp.status, 200, "{resp:?}\n{}", server.log());
        let pid = body_pid(&resp);
        assert!(
            workers.contains(&pid),
            "answered by {pid}, not a worker {workers:?}"
        );
    }
    let answer = unix_get(&sock);
    assert!(
        answer.starts_with("HTTP/1.1 200 "),
        "GET / over {}: {answer:?}\n{}",
        sock.display(),
        server.log()
    );
    let pid = number_after(&answer, "pid ").expect("pid body over the Unix socket");
    assert!(workers.contains(&pid), "{pid} not in {workers:?}");

    server.signal(libc::SIGTERM);
    let status = server.expect_exit(WAIT);
    assert!(status.success(), "exit: {status}\n{}", server.log());
    server.expect_log("Shutdown complete", Duration::from_secs(1));
    assert!(
        !sock.exists(),
        "the master (root) removed the socket file at exit\n{}",
        server.log()
    );
}

/// Runs the server with `args`, which must fail; returns its stderr. Checks that it exited
/// with 1 and bound nothing (the Unix socket in `dir` was never created).
#[track_caller]
fn expect_refused(flag: &str, value: &str, tag: &str) -> String {
    let dir = TempDir::new(tag);
    let sock = dir.join("never.sock");
    let bind = format!("unix:{}", sock.display());
    let args = [
        flag,
        value,
        "--bind",
        &bind,
        "--bind",
        "127.0.0.1:0",
        "hello",
    ];
    let out = run_cli(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?}: {}\n{stderr}",
        out.status
    );
    assert!(
        !stderr.contains("Listening at:") && !stderr.contains("Booting worker"),
        "refused before binding or starting workers:\n{stderr}"
    );
    assert!(
        !sock.exists(),
        "no socket file is created for an unknown name:\n{stderr}"
    );
    stderr
}

#[test]
fn an_unknown_user_or_group_is_refused_before_binding() {
    let stderr = expect_refused("--user", "no-such-user-ringcorn", "priv-nouser");
    assert!(
        stderr.contains("--user no-such-user-ringcorn: no such user"),
        "{stderr}"
    );
    let stderr = expect_refused("--group", "no-such-group-ringcorn", "priv-nogroup");
    assert!(
        stderr.contains("--group no-such-group-ringcorn: no such group"),
        "{stderr}"
    );
}

#[test]
fn umask_sets_the_mode_of_the_unix_socket() {
    let dir = TempDir::new("priv-umask");
    let sock = dir.join("u.sock");
    let bind = format!("unix:{}", sock.display());
    let mut server = spawn(
        &[
            "--umask",
            "007",
            "--workers",
            "1",
            "--bind",
            "127.0.0.1:0",
            "--bind",
            &bind,
            "hello",
        ],
        1,
    );
    server.expect_log(&format!("Listening at: {bind}"), WAIT);
    let mode = std::fs::symlink_metadata(&sock)
        .expect("the socket file exists")
        .mode();
    assert_eq!(
        mode & 0o777,
        0o770,
        "socket mode {:o} (want srwxrwx---)\n{}",
        mode & 0o7777,
        server.log()
    );
    assert_unix_hello(&sock, &server.log());
    server.signal(libc::SIGTERM);
    let status = server.expect_exit(WAIT);
    assert!(status.success(), "exit: {status}\n{}", server.log());
    assert!(!sock.exists(), "the socket file is removed at exit");
}
