//! `--error-logfile FILE`: the server's own log goes to a file (appended to, created if
//! missing) instead of stderr; SIGUSR1 reopens it at its path after logrotate renamed it (the
//! master at once, worker processes at their next heartbeat); every line is written whole,
//! so lines from the master and the worker processes never tear or interleave, and none is
//! lost across a reopen.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// A server whose log goes to a file: its stdout and stderr go to files of their own (so
/// nothing it writes can block it, and the test can check that stderr stays empty).
struct LogServer {
    child: Child,
    log: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    addr: SocketAddr,
}

/// The file's text, empty when it does not exist (yet).
fn read(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The port of the first `Listening at: http://127.0.0.1:PORT` line of `text`.
fn listening(text: &str) -> Option<SocketAddr> {
    text.lines().find_map(|l| {
        let rest = &l[l.find("Listening at: http://")? + "Listening at: http://".len()..];
        rest.trim().parse().ok()
    })
}

impl LogServer {
    /// Spawns `ringcorn ARGS --error-logfile LOG` (stdout and stderr in files next to
    /// `log`) and waits for the `Listening at:` line in the log file.
    fn spawn(args: &[&str], log: &Path) -> LogServer {
        let dir = log.parent().expect("the log is in a directory");
        let stdout = dir.join("stdout.txt");
        let stderr = dir.join("stderr.txt");
        let mut all: Vec<&str> = args.to_vec();
        let log_arg = log.to_string_lossy().into_owned();
        all.extend_from_slice(&["--error-logfile", &log_arg]);
        let mut cmd = cli_command(&all);
        cmd.stdout(Stdio::from(File::create(&stdout).expect("stdout file")))
            .stderr(Stdio::from(File::create(&stderr).expect("stderr file")));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", binary_path()));
        let mut server = LogServer {
            child,
            log: log.to_path_buf(),
            stdout,
            stderr,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(addr) = listening(&read(log)) {
                assert_ne!(addr.port(), 0, "port 0 announced\n{}", read(log));
                server.addr = addr;
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "server {all:?} exited with {status} before listening\n--- log ---\n{}\
                     --- stderr ---\n{}",
                    read(log),
                    read(&server.stderr)
                );
            }
            assert!(
                Instant::now() < deadline,
                "no `Listening at:` line in {} within {START_TIMEOUT:?}\n--- log ---\n{}\
                 --- stderr ---\n{}",
                log.display(),
                read(log),
                read(&server.stderr)
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&mut self, sig: libc::c_int) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "cannot signal: the server exited with {status}\n{}",
                self.log()
            );
        }
        kill_pid(self.pid(), sig).expect("kill");
    }

    /// Waits (bounded) for the process to exit; panics with the log otherwise.
    fn expect_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within {timeout:?}\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log file as it is now.
    fn log(&self) -> String {
        read(&self.log)
    }

    fn stderr(&self) -> String {
        read(&self.stderr)
    }

    fn stdout(&self) -> String {
        read(&self.stdout)
    }
}

impl Drop for LogServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) until the file at `path` has a line containing `needle`.
#[track_caller]
fn expect_line(path: &Path, needle: &str, timeout: Duration) {
    assert!(
        wait_until(timeout, || read(path).lines().any(|l| l.contains(needle))),
        "no line containing {needle:?} in {} within {timeout:?}\n--- it holds ---\n{}",
        path.display(),
        read(path)
    );
}

fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// How one `GET /` went wrong.
#[derive(Debug)]
enum Failure {
    /// No answer within the read timeout: the connection was never served.
    Stalled(String),
    /// Anything else: connect, send or read error, wrong answer.
    Other(String),
}

/// One `GET /` on a fresh connection with `Connection: close`, waiting at most `wait` for
/// the answer.
fn get_close(addr: SocketAddr, wait: Duration) -> Result<(), Failure> {
    let other = |what: &str, e: std::io::Error| Failure::Other(format!("{what}: {e}"));
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| other("connect", e))?;
    s.set_read_timeout(Some(wait))
        .map_err(|e| other("timeout", e))?;
    s.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| other("timeout", e))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| other("send", e))?;
    let mut answer = Vec::new();
    if let Err(e) = s.read_to_end(&mut answer) {
        return Err(
            if answer.is_empty()
                && matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            {
                Failure::Stalled(format!("no answer within {wait:?}"))
            } else {
                other("read", e)
            },
        );
    }
    let answer = String::from_utf8_lossy(&answer);
    if answer.starts_with("HTTP/1.1 200 ") && answer.ends_with(HELLO_BODY) {
        Ok(())
    } else {
        Err(Failure::Other(format!("unexpected answer {answer:?}")))
    }
}

#[test]
fn the_log_goes_to_the_file_and_not_to_stderr() {
    let dir = TempDir::new("elog-file");
    let log = dir.join("error.log");
    let mut server = LogServer::spawn(&["--bind", "127.0.0.1:0", "--workers", "1", "hello"], &log);
    let text = server.log();
    assert!(text.contains("Starting ringcorn"), "{text}");
    assert!(
        text.contains(&format!("Listening at: http://{}", server.addr)),
        "{text}"
    );
    let mut c = connect(server.addr);
    assert_hello(&c.get("/"));
    drop(c);
    server.signal(libc::SIGTERM);
    let status = server.expect_exit(WAIT);
    assert!(status.success(), "exit: {status}\n{}", server.log());
    expect_line(&log, "Shutdown complete", Duration::from_secs(1));
    assert_eq!(
        server.stderr(),
        "",
        "nothing goes to stderr with --error-logfile\n--- log ---\n{}",
        server.log()
    );
    assert_eq!(server.stdout(), "", "nothing goes to stdout either");
    for line in server.log().lines() {
        check_line(line).unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    }
}

#[test]
fn an_existing_log_is_appended_to() {
    let dir = TempDir::new("elog-append");
    let log = dir.join("error.log");
    std::fs::write(&log, "an older line\n").expect("write");
    let mut server = LogServer::spawn(&["--bind", "127.0.0.1:0", "--workers", "1", "hello"], &log);
    server.signal(libc::SIGTERM);
    server.expect_exit(WAIT);
    let text = server.log();
    assert!(
        text.starts_with("an older line\n") && text.contains("Starting ringcorn"),
        "the file is appended to, not truncated:\n{text}"
    );
}

#[test]
fn sigusr1_reopens_the_log_at_its_path() {
    let dir = TempDir::new("elog-reopen");
    let log = dir.join("error.log");
    let rotated = dir.join("error.log.1");
    let mut server = LogServer::spawn(&["--bind", "127.0.0.1:0", "--workers", "1", "hello"], &log);
    std::fs::rename(&log, &rotated).expect("rotate");
    server.signal(libc::SIGUSR1);
    expect_line(&log, "SIGUSR1: log files reopened", WAIT);
    let old = read(&rotated);
    assert!(
        !old.contains("SIGUSR1: log files reopened"),
        "the reopen is logged in the new file only:\n{old}"
    );
    assert!(old.contains("Starting ringcorn"), "{old}");
    assert!(old.contains("Listening at: http://"), "{old}");
    // The server still serves and its later lines go to the new file.
    let mut c = connect(server.addr);
    assert_hello(&c.get("/"));
    drop(c);
    server.signal(libc::SIGTERM);
    let status = server.expect_exit(WAIT);
    assert!(status.success(), "exit: {status}\n{}", server.log());
    let new = server.log();
    assert!(new.contains("Shutdown complete"), "{new}");
    assert!(!new.contains("Starting ringcorn"), "{new}");
    let old_after = read(&rotated);
    assert_eq!(old_after, old, "nothing more went to the rotated file");
    assert_eq!(server.stderr(), "", "nothing went to stderr");
}

#[test]
fn umask_applies_to_the_log_file() {
    let dir = TempDir::new("elog-umask");
    let log = dir.join("error.log");
    let mut server = LogServer::spawn(
        &[
            "--umask",
            "007",
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "1",
            "hello",
        ],
        &log,
    );
    let mode = std::fs::metadata(&log).expect("log").permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "log file mode {:o}", mode & 0o7777);
    server.signal(libc::SIGTERM);
    server.expect_exit(WAIT);
}

#[test]
fn a_log_that_cannot_be_opened_is_an_error() {
    let dir = TempDir::new("elog-missing");
    let path = dir.join("no-such-dir").join("x.log");
    let path_arg = path.to_string_lossy().into_owned();
    let out = run_cli(&[
        "--bind",
        "127.0.0.1:0",
        "--error-logfile",
        &path_arg,
        "hello",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{}\n{stderr}", out.status);
    assert!(
        stderr.contains(&format!("cannot open the error log {path_arg}")),
        "{stderr}"
    );
    assert!(!stderr.contains("Listening at:"), "{stderr}");
    assert!(!path.exists());
}

// ---------------------------------------------------------------------------
// Lines under load and rotation
// ---------------------------------------------------------------------------

const LEVELS: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];

/// Whether `s` starts with `YYYY-MM-DDTHH:MM:SS`.
fn starts_with_timestamp(s: &[u8]) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd";
    s.len() >= SHAPE.len()
        && SHAPE.iter().zip(s).all(|(&want, &got)| match want {
            b'd' => got.is_ascii_digit(),
            other => got == other,
        })
}

/// Whether `ts` is a whole RFC 3339 UTC timestamp: `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
fn is_timestamp(ts: &str) -> bool {
    let b = ts.as_bytes();
    if !starts_with_timestamp(b) || !ts.ends_with('Z') {
        return false;
    }
    let fraction = &ts[19..ts.len() - 1];
    fraction.is_empty()
        || (fraction.len() >= 2
            && fraction.starts_with('.')
            && fraction[1..].bytes().all(|c| c.is_ascii_digit()))
}

/// Checks one log line: `TIMESTAMP LEVEL message`, with no second timestamp in it (which
/// would be two lines run together or one torn line).
fn check_line(line: &str) -> Result<(), String> {
    if line.is_empty() {
        return Err("empty line".into());
    }
    let (ts, rest) = line
        .split_once(' ')
        .ok_or_else(|| format!("no space in {line:?}"))?;
    if !is_timestamp(ts) {
        return Err(format!("no timestamp at the start of {line:?}"));
    }
    let rest = rest.trim_start_matches(' ');
    let (level, message) = rest
        .split_once(' ')
        .ok_or_else(|| format!("no level and message in {line:?}"))?;
    if !LEVELS.contains(&level) {
        return Err(format!("no level in {line:?}"));
    }
    if message.trim().is_empty() {
        return Err(format!("no message in {line:?}"));
    }
    let bytes = line.as_bytes();
    if (1..bytes.len()).any(|i| starts_with_timestamp(&bytes[i..])) {
        return Err(format!("a second timestamp inside {line:?}"));
    }
    if line.contains('\0') || line.contains('\r') {
        return Err(format!("stray control bytes in {line:?}"));
    }
    Ok(())
}

#[test]
fn the_line_matcher_tells_whole_lines_from_torn_ones() {
    let good = "2026-12-01T11:33:27.261556Z  INFO Booting worker 0 with pid: 12";
    assert_eq!(check_line(good), Ok(()));
    assert_eq!(
        check_line("2026-12-01T11:33:27.261556Z ERROR worker 1: oops"),
        Ok(())
    );
    for bad in [
        "",
        "Booting worker 0 with pid: 12",
        "2026-12-01T11:33:27.261556  INFO no Z",
        "2026-12-01T11:33:27.261556Z  NOTE unknown level",
        "2026-12-01T11:33:27.261556Z  INFO",
        "2026-12-01T11:33:27.261556Z  INFO Booting wor2026-12-01T11:33:27.261600Z  INFO x",
        "ker 0 with pid: 12",
    ] {
        assert!(check_line(bad).is_err(), "{bad:?} must not pass");
    }
}

/// `slot` of a master line `Booting worker N with pid: P`.
fn master_boot(line: &str) -> Option<usize> {
    let rest = &line[line.find("Booting worker ")? + "Booting worker ".len()..];
    let (slot, _) = rest.split_once(" with pid: ")?;
    slot.parse().ok()
}

/// `slot` of a worker line `Booting worker N on CPU C (...)` or `Booting worker N unpinned`.
fn worker_boot(line: &str) -> Option<usize> {
    let rest = &line[line.find("Booting worker ")? + "Booting worker ".len()..];
    let (slot, tail) = rest.split_once(' ')?;
    (tail.starts_with("on CPU ") || tail.starts_with("unpinned")).then_some(())?;
    slot.parse().ok()
}

#[test]
fn lines_are_neither_lost_nor_torn_across_rotations_under_load() {
    const ROTATIONS: usize = 5;
    let dir = TempDir::new("elog-load");
    let log = dir.join("error.log");
    let mut server = LogServer::spawn(
        &[
            "--bind",
            "127.0.0.1:0",
            "--worker-class",
            "process",
            "--workers",
            "2",
            "--max-requests",
            "20",
            "hello",
        ],
        &log,
    );
    let addr = server.addr;

    // Short requests on fresh connections for at most 4 s, so that workers are replaced
    // again and again while the log is rotated. A request with no answer within 3 s has
    // stalled (a connection left in a queue as a worker was replaced): that fails the test.
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|t| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let started = Instant::now();
                let mut report = (0u64, Vec::new(), Vec::new());
                while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(4) {
                    let at = started.elapsed();
                    match get_close(addr, Duration::from_secs(3)) {
                        Ok(()) => report.0 += 1,
                        Err(Failure::Stalled(e)) => {
                            report.1.push(format!("[thread {t} at {at:?}] {e}"));
                        }
                        Err(Failure::Other(e)) => {
                            report.2.push(format!("[thread {t} at {at:?}] {e}"));
                        }
                    }
                }
                report
            })
        })
        .collect();

    thread::sleep(Duration::from_millis(300));
    let mut rotated = Vec::new();
    for k in 1..=ROTATIONS {
        let to = dir.join(&format!("error.log.{k}"));
        std::fs::rename(&log, &to).unwrap_or_else(|e| panic!("rotate to {}: {e}", to.display()));
        rotated.push(to);
        server.signal(libc::SIGUSR1);
        expect_line(&log, "SIGUSR1: log files reopened", WAIT);
        thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut stalls, mut failures) = (0, Vec::new(), Vec::new());
    for l in loaders {
        let (o, s, f) = l.join().expect("load thread");
        ok += o;
        stalls.extend(s);
        failures.extend(f);
    }

    server.signal(libc::SIGTERM);
    let status = server.expect_exit(Duration::from_secs(20));
    assert!(status.success(), "exit: {status}\n{}", server.log());
    expect_line(&log, "Shutdown complete", Duration::from_secs(1));

    let mut files = rotated.clone();
    files.push(log.clone());
    let texts: Vec<(PathBuf, String)> = files.iter().map(|p| (p.clone(), read(p))).collect();
    let everything = || {
        texts
            .iter()
            .map(|(p, t)| format!("--- {} ---\n{t}", p.display()))
            .collect::<String>()
    };

    let mut master_boots: BTreeMap<usize, usize> = BTreeMap::new();
    let mut worker_boots: BTreeMap<usize, usize> = BTreeMap::new();
    let mut files_with_worker_boots = 0;
    for (path, text) in &texts {
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends in a partial line",
            path.display()
        );
        let mut here = 0;
        for line in text.lines() {
            if let Err(e) = check_line(line) {
                panic!("{}: {e}\n{}", path.display(), everything());
            }
            if let Some(slot) = master_boot(line) {
                *master_boots.entry(slot).or_insert(0) += 1;
            }
            if let Some(slot) = worker_boot(line) {
                *worker_boots.entry(slot).or_insert(0) += 1;
                here += 1;
            }
        }
        if here > 0 && rotated.contains(path) {
            files_with_worker_boots += 1;
        }
    }
    let booted: usize = master_boots.values().sum();
    let started: usize = worker_boots.values().sum();
    eprintln!(
        "{ok} requests answered, {} stalled {:?}, failed {failures:?}; master booted \
         {booted} workers {master_boots:?}, workers logged {started} boots {worker_boots:?}; \
         {files_with_worker_boots} rotated files hold worker boots; lines per file: {:?}",
        stalls.len(),
        &stalls[..stalls.len().min(5)],
        texts
            .iter()
            .map(|(_, t)| t.lines().count())
            .collect::<Vec<_>>()
    );

    assert!(
        stalls.is_empty() && failures.is_empty(),
        "stalled: {stalls:?}\nfailed: {failures:?}"
    );

    // Every rotation was logged once, in the file that was new then.
    assert_eq!(
        count(&texts[0].1, "SIGUSR1: log files reopened"),
        0,
        "{}",
        everything()
    );
    for (path, text) in &texts[1..] {
        assert_eq!(
            count(text, "SIGUSR1: log files reopened"),
            1,
            "one reopen logged in {}\n{}",
            path.display(),
            everything()
        );
    }
    assert_eq!(
        count(&texts[0].1, "Starting ringcorn"),
        1,
        "{}",
        everything()
    );
    assert_eq!(
        master_boots,
        worker_boots,
        "every worker the master booted logged its own boot (per slot)\n{}",
        everything()
    );
    assert!(
        booted >= 10,
        "workers were replaced often enough ({booted} boots, {ok} requests)\n{}",
        everything()
    );
    assert!(
        files_with_worker_boots >= 3,
        "worker lines went to {files_with_worker_boots} rotated files (want 3 or more)\n{}",
        everything()
    );
    assert!(
        failures.is_empty(),
        "requests failed while workers were replaced:\n  {}",
        failures.join("\n  ")
    );
    assert!(ok >= 100, "{ok} requests answered");
    assert_eq!(server.stderr(), "", "nothing went to stderr");
}
