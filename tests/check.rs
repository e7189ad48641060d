//! `ringcorn --check`: the preflight prints one line per check (`OK`, `WARN` or `FAIL`, what
//! it found, the fix) or one JSON document with `--format json`, exits 0 without a FAIL and
//! 1 with one, and never serves. io_uring is blocked the way containers block it (a seccomp
//! filter making `io_uring_setup` fail with EPERM) to see the io_uring and backend lines
//! follow `--backend`.

mod common;

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Output;

use common::*;

/// Every check a TCP-only configuration gets, in the report's order.
const NAMES: [&str; 10] = [
    "app",
    "io_uring",
    "backend",
    "nofile",
    "memlock",
    "somaxconn",
    "tcp_migrate_req",
    "tcp_max_syn_backlog",
    "cpus",
    "bind",
];

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The report lines of check `name`: (status, the rest of the line).
fn lines_of(out: &Output, name: &str) -> Vec<(String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let status = words.next()?;
            (words.next()? == name).then(|| (status.to_string(), l.to_string()))
        })
        .collect()
}

/// The one report line of check `name`.
#[track_caller]
fn line_of(out: &Output, name: &str) -> (String, String) {
    let lines = lines_of(out, name);
    assert_eq!(lines.len(), 1, "one `{name}` line\n{}", text(out));
    lines[0].clone()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
}

/// Nothing was started: no worker booted, nothing listened.
#[track_caller]
fn assert_served_nothing(out: &Output) {
    let all = text(out);
    assert!(
        !all.contains("Booting worker") && !all.contains("Listening at"),
        "{all}"
    );
}

#[test]
fn a_free_port_passes_with_a_line_per_check() {
    let out = run_cli(&[
        "--check",
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "1",
        "hello",
    ]);
    assert_exit(&out, 0);
    assert_served_nothing(&out);
    for name in NAMES {
        let (status, line) = line_of(&out, name);
        assert!(status == "OK" || status == "WARN", "{line}\n{}", text(&out));
        if status == "WARN" {
            assert!(line.contains("; fix: "), "a warning says the fix: {line}");
        }
    }
    let (_, bind) = line_of(&out, "bind");
    assert!(bind.contains("127.0.0.1:0 can be bound"), "{bind}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.contains("0 FAIL"),
        "a summary ends the report: {stdout}"
    );
}

#[test]
fn json_is_one_document_with_every_check() {
    let out = run_cli(&[
        "--check",
        "--format",
        "json",
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "1",
        "hello",
    ]);
    assert_exit(&out, 0);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e})\n{}", text(&out)));
    assert_eq!(doc["ok"], serde_json::Value::Bool(true), "{doc}");
    let checks = doc["checks"].as_array().expect("a checks array");
    for check in checks {
        let status = check["status"].as_str().expect("status");
        assert!(["ok", "warn", "fail"].contains(&status), "{check}");
        assert!(
            check["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{check}"
        );
        assert!(
            check["fix"].is_null() || check["fix"].is_string(),
            "{check}"
        );
        assert!(status != "warn" || check["fix"].is_string(), "{check}");
    }
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, NAMES, "{doc}");
}

#[test]
fn a_port_in_use_fails() {
    // std's listener has SO_REUSEADDR but not SO_REUSEPORT.
    let held = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = held.local_addr().expect("addr").to_string();
    let out = run_cli(&["--check", "--bind", &addr, "--workers", "1", "hello"]);
    assert_exit(&out, 1);
    let (status, line) = line_of(&out, "bind");
    assert_eq!(status, "FAIL", "{line}");
    assert!(
        line.contains(&addr) && line.contains("address in use"),
        "{line}"
    );
    assert!(
        line.contains("fix: ") && line.contains("ss -ltnp"),
        "{line}"
    );

    let out = run_cli(&[
        "--check",
        "--format",
        "json",
        "--bind",
        &addr,
        "--workers",
        "1",
        "hello",
    ]);
    assert_exit(&out, 1);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["ok"], serde_json::Value::Bool(false), "{doc}");
    drop(held);
}

/// `--check` with io_uring_setup failing with EPERM, as Docker's seccomp profile makes it.
fn check_without_io_uring(backend: &str) -> Output {
    let args = [
        "--check",
        "--backend",
        backend,
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "1",
        "hello",
    ];
    let mut cmd = cli_command(&args);
    block_io_uring(&mut cmd, libc::EPERM);
    run_command(cmd, &args)
}

#[test]
fn blocked_io_uring_warns_under_auto_and_the_backend_is_epoll() {
    let out = check_without_io_uring("auto");
    assert_exit(&out, 0);
    let (status, line) = line_of(&out, "io_uring");
    assert_eq!(status, "WARN", "{line}");
    assert!(
        line.contains("EPERM") && line.contains("kernel.io_uring_disabled"),
        "{line}"
    );
    let (status, line) = line_of(&out, "backend");
    assert_eq!(status, "OK", "{line}");
    assert!(line.contains("epoll"), "{line}");
    assert_eq!(line_of(&out, "memlock").0, "OK");
}

#[test]
fn blocked_io_uring_fails_when_asked_for() {
    let out = check_without_io_uring("io_uring");
    assert_exit(&out, 1);
    let (status, line) = line_of(&out, "io_uring");
    assert_eq!(status, "FAIL", "{line}");
    assert!(line.contains("EPERM"), "{line}");
    assert_eq!(line_of(&out, "backend").0, "FAIL");
    assert_served_nothing(&out);
}

#[test]
fn more_workers_than_cpus_warn() {
    // More workers than any test machine has CPUs (1024 is the most --workers takes).
    let out = run_cli(&[
        "--check",
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "1024",
        "--max-connections",
        "1",
        "hello",
    ]);
    assert_exit(&out, 0);
    let (status, line) = line_of(&out, "cpus");
    assert_eq!(status, "WARN", "{line}");
    assert!(
        line.contains("1024 workers") && line.contains("--workers "),
        "{line}"
    );
}

#[test]
fn a_cpu_not_available_fails_rather_than_exit_2() {
    let out = run_cli(&[
        "--check",
        "--bind",
        "127.0.0.1:0",
        "--cpus",
        "4095",
        "hello",
    ]);
    assert_exit(&out, 1);
    let (status, line) = line_of(&out, "cpus");
    assert_eq!(status, "FAIL", "{line}");
    assert!(line.contains("CPU 4095 is not available"), "{line}");
}

#[test]
fn an_unknown_app_fails() {
    // Not a Python module name either (a build with the WSGI bridge would try to import one).
    let out = run_cli(&["--check", "--bind", "127.0.0.1:0", "no-such-app"]);
    assert_exit(&out, 1);
    let (status, line) = line_of(&out, "app");
    assert_eq!(status, "FAIL", "{line}");
    assert!(
        line.contains("no-such-app") && line.contains("hello"),
        "{line}"
    );
}

#[test]
fn unix_sockets_need_a_writable_directory_and_no_other_file() {
    let dir = TempDir::new("check-unix");
    let fresh = format!("unix:{}", dir.arg("fresh.sock"));
    let missing = format!("unix:{}", dir.arg("no/such/dir.sock"));
    let plain = dir.join("plain");
    std::fs::write(&plain, b"not a socket").expect("write");
    let occupied = format!("unix:{}", plain.display());
    let out = run_cli(&[
        "--check", "--bind", &fresh, "--bind", &missing, "--bind", &occupied, "hello",
    ]);
    assert_exit(&out, 1);
    let binds = lines_of(&out, "bind");
    assert_eq!(binds.len(), 3, "{}", text(&out));
    assert_eq!(binds[0].0, "OK", "{}", binds[0].1);
    assert!(binds[0].1.contains("will be created"), "{}", binds[0].1);
    assert_eq!(binds[1].0, "FAIL", "{}", binds[1].1);
    assert!(binds[1].1.contains("does not exist"), "{}", binds[1].1);
    assert_eq!(binds[2].0, "FAIL", "{}", binds[2].1);
    assert!(binds[2].1.contains("not a socket"), "{}", binds[2].1);
    assert!(
        std::fs::read(&plain).is_ok_and(|b| b == b"not a socket"),
        "left alone"
    );
    assert!(!dir.join("fresh.sock").exists(), "nothing was created");
}

#[test]
fn fd_binds_must_be_listening_sockets() {
    const FD: i32 = 97;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let source = listener.as_raw_fd();
    let args = [
        "--check",
        "--bind",
        "fd://97",
        "--bind",
        "fd://98",
        "--workers",
        "1",
        "hello",
    ];
    let mut cmd = cli_command(&args);
    // SAFETY: between fork and exec only dup2 runs, which is async-signal-safe; the copy it
    // makes has no close-on-exec, so the child inherits it.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(source, FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run_command(cmd, &args);
    assert_exit(&out, 1);
    let binds = lines_of(&out, "bind");
    assert_eq!(binds.len(), 2, "{}", text(&out));
    assert_eq!(binds[0].0, "OK", "{}", binds[0].1);
    assert!(
        binds[0].1.contains(&format!("listening on {addr}")),
        "{}",
        binds[0].1
    );
    assert_eq!(binds[1].0, "FAIL", "{}", binds[1].1);
    assert!(binds[1].1.contains("not open"), "{}", binds[1].1);
}
