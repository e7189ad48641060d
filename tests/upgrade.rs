//! SIGUSR2, the binary upgrade: the master renames its pidfile to `FILE.oldbin`, fork+execs
//! the binary at the path it was started from with the same arguments and hands it every
//! listening socket; once the new master serves (and wrote `FILE`), the old one drains and
//! exits 0. A new binary that fails leaves the old master serving with its pidfile restored.
//!
//! Every test runs a copy of the binary from a temp dir (so it can be replaced), and kills
//! whatever master the upgrade left behind through a [`MasterGuard`], also on failure.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// A POST whose Content-Length promises 10 bytes, with only 5 sent.
const PARTIAL: &[u8] =
    b"POST /inflight HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n12345";

/// Held while this test binary writes an executable or starts a process: a child forked by
/// one test thread inherits (until it execs) the descriptor another thread is writing a copy
/// of the binary through, and exec'ing that copy meanwhile fails with ETXTBSY.
static EXEC_LOCK: Mutex<()> = Mutex::new(());

fn exec_lock() -> MutexGuard<'static, ()> {
    EXEC_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

struct Setup {
    /// Removed (with the copy) when the test ends.
    _dir: TempDir,
    exe: PathBuf,
    pidfile: PathBuf,
    oldbin: PathBuf,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let dir = TempDir::new(tag);
        let exe = dir.join("ringcorn");
        let _lock = exec_lock();
        std::fs::copy(binary_path(), &exe)
            .unwrap_or_else(|e| panic!("copy the binary to {}: {e}", exe.display()));
        let pidfile = dir.join("ringcorn.pid");
        let oldbin = dir.join("ringcorn.pid.oldbin");
        Setup {
            _dir: dir,
            exe,
            pidfile,
            oldbin,
        }
    }

    /// Starts the copy with `--pid FILE`; waits until FILE names it.
    fn spawn(&self, extra: &[&str]) -> Server {
        let pid = self.pidfile.to_string_lossy().into_owned();
        let mut args = vec!["--bind", "127.0.0.1:0", "--workers", "2", "--pid", &pid];
        args.extend_from_slice(extra);
        args.push("hello");
        let server = {
            let _lock = exec_lock();
            Server::spawn_command(command_at(&self.exe, &args), 1)
        };
        let me = server.pid();
        assert!(
            wait_until(WAIT, || read_pidfile(&self.pidfile) == Some(me)),
            "{} holds {:?}, expected {me}\n{}",
            self.pidfile.display(),
            std::fs::read_to_string(&self.pidfile),
            server.log()
        );
        server
    }

    fn guard(&self, server: &Server) -> MasterGuard {
        MasterGuard::new(&self.pidfile, &self.exe, server.pid())
    }

    /// Replaces the copy by a shell script (a rename, as a package manager would).
    fn replace_with_script(&self, body: &str) {
        let _lock = exec_lock();
        replace_file(&self.exe, format!("#!/bin/sh\n{body}\n").as_bytes(), 0o755);
    }

    fn restore_binary(&self) {
        let real = std::fs::read(binary_path()).expect("read the binary");
        let _lock = exec_lock();
        replace_file(&self.exe, &real, 0o755);
    }
}

/// The pid of the new master announced by `SIGUSR2: upgrading: started PATH (pid P)` number
/// `n` (1-based); checks the path is the one the server was started from.
#[track_caller]
fn started_pid(server: &Server, exe: &Path, n: usize) -> u32 {
    assert!(
        server.wait_log_count("SIGUSR2: upgrading: started ", n, WAIT),
        "no upgrade started\n{}",
        server.log()
    );
    let line = server.log_lines("SIGUSR2: upgrading: started ")[n - 1].clone();
    let real = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
    assert!(
        line.contains(&*exe.to_string_lossy()) || line.contains(&*real.to_string_lossy()),
        "upgrades from the path it was started from ({}): {line}",
        exe.display()
    );
    assert!(
        line.contains("this master serves until it is ready"),
        "{line}"
    );
    number_after(&line, "(pid ").unwrap_or_else(|| panic!("no pid in {line}"))
}

#[test]
fn usr2_hands_over_to_a_new_master_without_failures() {
    let s = Setup::new("upgrade");
    let mut server = s.spawn(&[]);
    let mut guard = s.guard(&server);
    let old = server.pid();
    let addr = server.addr();

    let load = Load::start(addr, 3, "/", HELLO_BODY, Duration::from_secs(30));
    // A request under way on the old master keeps it draining (FILE.oldbin in place) until
    // it completes.
    let mut inflight = connect(addr);
    inflight.send(PARTIAL);
    thread::sleep(Duration::from_millis(300));

    server.signal(libc::SIGUSR2);
    let new = started_pid(&server, &s.exe, 1);
    guard.watch(new);
    assert_ne!(new, old);
    server.expect_log(
        &format!("the new master (pid {new}) is serving; this one drains and exits"),
        WAIT,
    );
    // The new master wrote FILE; the old one's pid is in FILE.oldbin while it drains.
    assert_eq!(
        read_pidfile(&s.pidfile),
        Some(new),
        "FILE names the new master"
    );
    assert_eq!(
        read_pidfile(&s.oldbin),
        Some(old),
        "FILE.oldbin names the old master while it drains"
    );
    assert!(pid_alive(new));
    assert!(
        server.wait_log_count("Listening at: http://", 2, WAIT),
        "the new master announces its own startup on the same stderr\n{}",
        server.log()
    );
    assert_eq!(
        server.announced().last(),
        Some(&addr),
        "the new master listens on the same address and port"
    );
    thread::sleep(Duration::from_millis(300));
    assert!(
        !server.has_exited(),
        "the old master waits for its request under way\n{}",
        server.log()
    );

    // The request under way completes on the old master, which then exits 0.
    inflight.send(b"67890");
    let resp = inflight.read_response();
    assert_hello(&resp);
    assert!(resp.closes(), "{resp:?}");
    let status = server.expect_exit(WAIT);
    assert_eq!(
        status.code(),
        Some(0),
        "old master: {status}\n{}",
        server.log()
    );
    assert!(
        !s.oldbin.exists(),
        "the old master removed FILE.oldbin on exit"
    );
    assert_eq!(
        read_pidfile(&s.pidfile),
        Some(new),
        "FILE stays the new master's"
    );

    // The new master serves on alone, on the same port, and no request failed throughout.
    thread::sleep(Duration::from_millis(300));
    let report = load.stop();
    eprintln!("{report:?}");
    report.assert_clean(100, &server.log());
    for _ in 0..10 {
        assert_hello(&fresh_get(addr, "/", IO_TIMEOUT).expect("the new master answers"));
    }

    // TERM the new master through FILE: it exits and removes FILE.
    kill_pid(read_pidfile(&s.pidfile).expect("FILE"), libc::SIGTERM).expect("TERM new master");
    assert!(
        wait_until(WAIT, || !pid_alive(new)),
        "the new master exits on TERM\n{}",
        server.log()
    );
    assert!(
        wait_until(WAIT, || !s.pidfile.exists()),
        "the new master removes FILE on exit"
    );
}

#[test]
fn usr2_with_worker_processes_hands_over_without_failures() {
    let s = Setup::new("upgrade-process");
    let mut server = s.spawn(&["--worker-class", "process"]);
    let mut guard = s.guard(&server);
    let old = server.pid();
    let addr = server.addr();
    assert!(wait_until(WAIT, || child_pids(old).len() == 2));
    let old_workers = child_pids(old);

    let load = Load::start(addr, 3, "/", HELLO_BODY, Duration::from_secs(30));
    thread::sleep(Duration::from_millis(300));
    server.signal(libc::SIGUSR2);
    let new = started_pid(&server, &s.exe, 1);
    guard.watch(new);
    server.expect_log(
        &format!("the new master (pid {new}) is serving; this one drains and exits"),
        WAIT,
    );
    let status = server.expect_exit(WAIT);
    assert_eq!(
        status.code(),
        Some(0),
        "old master: {status}\n{}",
        server.log()
    );
    assert!(
        wait_until(WAIT, || old_workers.iter().all(|&p| !pid_alive(p))),
        "the old master's workers exited with it"
    );
    assert!(
        wait_until(WAIT, || child_pids(new).len() == 2),
        "the new master runs its own 2 worker processes: {:?}",
        child_pids(new)
    );
    thread::sleep(Duration::from_millis(300));
    let report = load.stop();
    eprintln!("{report:?}");
    report.assert_clean(100, &server.log());
    assert_eq!(read_pidfile(&s.pidfile), Some(new));
    assert!(!s.oldbin.exists());
    assert_hello(&fresh_get(addr, "/", IO_TIMEOUT).expect("the new master answers"));
}

#[test]
fn failed_upgrade_restores_the_pidfile_and_serves_on() {
    let s = Setup::new("upgrade-fail");
    let mut server = s.spawn(&[]);
    let mut guard = s.guard(&server);
    let old = server.pid();
    let mut keep = connect(server.addr());
    assert_hello(&keep.get("/"));

    s.replace_with_script("exit 1");
    server.signal(libc::SIGUSR2);
    let new = started_pid(&server, &s.exe, 1);
    guard.watch(new);
    server.expect_log(
        &format!("upgrade failed, serving on: the new master (pid {new}) exited with code 1"),
        WAIT,
    );
    assert_eq!(
        read_pidfile(&s.pidfile),
        Some(old),
        "FILE is back with the old pid"
    );
    assert!(!s.oldbin.exists(), "FILE.oldbin was renamed back");
    assert!(!server.has_exited());
    assert_hello(&keep.get("/"));
    for _ in 0..5 {
        assert_hello(&fresh_get(server.addr(), "/", IO_TIMEOUT).expect("old master serves on"));
    }

    // With the real binary back in place, the next USR2 upgrades.
    s.restore_binary();
    server.signal(libc::SIGUSR2);
    let second = started_pid(&server, &s.exe, 2);
    guard.watch(second);
    server.expect_log(
        &format!("the new master (pid {second}) is serving; this one drains and exits"),
        WAIT,
    );
    let status = server.expect_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert_eq!(read_pidfile(&s.pidfile), Some(second));
    assert_hello(&fresh_get(server.addr(), "/", IO_TIMEOUT).expect("the new master answers"));
}

#[test]
fn second_usr2_while_upgrading_is_ignored() {
    let s = Setup::new("upgrade-twice");
    let mut server = s.spawn(&[]);
    let mut guard = s.guard(&server);
    let old = server.pid();

    s.replace_with_script("sleep 3");
    server.signal(libc::SIGUSR2);
    let new = started_pid(&server, &s.exe, 1);
    guard.watch(new);
    // Under way: FILE is FILE.oldbin, the old master serves.
    assert_eq!(read_pidfile(&s.oldbin), Some(old));
    assert!(!s.pidfile.exists());
    assert_hello(&fresh_get(server.addr(), "/", IO_TIMEOUT).expect("serves while upgrading"));

    server.signal(libc::SIGUSR2);
    server.expect_log("SIGUSR2 ignored: an upgrade is already under way", WAIT);
    server.assert_log_count("SIGUSR2: upgrading: started", 1);
    assert_hello(&fresh_get(server.addr(), "/", IO_TIMEOUT).expect("serves while upgrading"));

    // The stand-in exits 0 without ever being ready: the upgrade fails, FILE comes back.
    server.expect_log(
        &format!("upgrade failed, serving on: the new master (pid {new}) exited with code 0"),
        WAIT,
    );
    assert_eq!(read_pidfile(&s.pidfile), Some(old));
    assert!(!s.oldbin.exists());
    assert_hello(&fresh_get(server.addr(), "/", IO_TIMEOUT).expect("serves after"));
    assert!(!server.has_exited());
}

/// A new master that closes its ready pipe but has not exited yet: the upgrade fails at
/// once ("closed its ready pipe"), and once the process does exit it must still be reaped,
/// not left a zombie child of the old master for the rest of its life.
#[test]
fn a_failed_new_master_is_reaped() {
    let s = Setup::new("upgrade-reap");
    let mut server = s.spawn(&[]);
    let mut guard = s.guard(&server);
    // bash: dash cannot name a descriptor above 9.
    let lock = exec_lock();
    replace_file(
        &s.exe,
        b"#!/bin/bash\nexec {RINGCORN_UPGRADE_FD}>&-\nsleep 1\nexit 1\n",
        0o755,
    );
    drop(lock);
    server.signal(libc::SIGUSR2);
    let new = started_pid(&server, &s.exe, 1);
    guard.watch(new);
    server.expect_log(
        &format!(
            "upgrade failed, serving on: the new master (pid {new}) closed its ready pipe without \
             being ready"
        ),
        WAIT,
    );
    assert_eq!(read_pidfile(&s.pidfile), Some(server.pid()));
    // It exits a second later; give the master two more.
    thread::sleep(Duration::from_millis(1000));
    let reaped = wait_until(Duration::from_secs(2), || proc_stat(new).is_none());
    assert!(
        reaped,
        "the failed new master {new} was never reaped: /proc/{new}/stat says {:?} (state, ppid; \
         the old master is {})\n{}",
        proc_stat(new),
        server.pid(),
        server.log()
    );
    assert_hello(&fresh_get(server.addr(), "/", IO_TIMEOUT).expect("serves on"));
}

/// A Unix socket goes to the new master with the others: the old master leaves its file in
/// place when it exits, the new one serves on it and removes it when it stops.
#[test]
fn usr2_hands_a_unix_socket_over_and_the_new_master_removes_it() {
    use std::io::{Read, Write};
    let s = Setup::new("upgrade-unix");
    let path = s.pidfile.with_file_name("s.sock");
    let bind = format!("unix:{}", path.display());
    let mut server = s.spawn(&["--bind", &bind]);
    server.expect_log(&format!("Listening at: {bind}"), WAIT);
    let mut guard = s.guard(&server);
    let get = || {
        let mut c = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        c.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("send");
        let mut out = String::new();
        c.read_to_string(&mut out).expect("read");
        out
    };
    assert!(get().ends_with(HELLO_BODY));
    server.signal(libc::SIGUSR2);
    let new = started_pid(&server, &s.exe, 1);
    guard.watch(new);
    let status = server.expect_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        path.exists(),
        "the old master leaves the new one's socket file"
    );
    for _ in 0..5 {
        assert!(
            get().ends_with(HELLO_BODY),
            "the new master serves the Unix socket"
        );
    }
    kill_pid(new, libc::SIGTERM).expect("TERM new master");
    assert!(wait_until(WAIT, || !pid_alive(new)), "{}", server.log());
    assert!(
        wait_until(WAIT, || !path.exists()),
        "the new master removes the socket file on exit"
    );
}
