//! The command line: exit codes, messages, help/version, env settings, bind
//! failures and startup logs.

mod common;

use common::*;
use std::net::TcpListener;
use std::process::Output;
use std::time::Duration;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

#[test]
fn workers_not_a_number_exits_2() {
    let out = run_cli(&["--bind", "127.0.0.1:0", "--workers", "two"]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("--workers"), "stderr names the flag: {err}");
    assert!(err.contains("two"), "stderr names the value: {err}");
}

#[test]
fn workers_zero_exits_2() {
    let out = run_cli(&["--bind", "127.0.0.1:0", "--workers", "0"]);
    assert_code(&out, 2);
    let out = run_cli(&["--bind", "127.0.0.1:0", "-w", "0"]);
    assert_code(&out, 2);
}

#[test]
fn workers_from_env_is_validated() {
    let out = run_cli_env(&["--bind", "127.0.0.1:0"], &[("RINGCORN_WORKERS", "two")]);
    assert_code(&out, 2);
}

#[test]
fn bad_bind_syntax_exits_2() {
    for bad in [
        "127.0.0.1:notaport",
        "300.1.1.1:80",
        "[::1:80",
        "unix:",
        "fd://x",
        "no such host",
    ] {
        let out = run_cli(&["--bind", bad]);
        assert_code(&out, 2);
    }
    let out = run_cli(&["-b", "1.2.3.4:99999"]);
    assert_code(&out, 2);
}

#[test]
fn bad_cpus_exits_2() {
    for bad in ["x", "1-", "3-1", ",", "a-b"] {
        let out = run_cli(&["--bind", "127.0.0.1:0", "--cpus", bad]);
        assert_code(&out, 2);
    }
}

#[test]
fn bad_numbers_and_levels_exit_2() {
    for args in [
        ["--keep-alive", "abc"],
        ["--graceful-timeout", "soon"],
        ["--backlog", "many"],
        ["--log-level", "loud"],
    ] {
        let mut all = vec!["--bind", "127.0.0.1:0"];
        all.extend_from_slice(&args);
        let out = run_cli(&all);
        assert_code(&out, 2);
    }
}

#[test]
fn unknown_app_exits_2_and_lists_apps() {
    // Not a Python module name either (a build with the WSGI bridge imports one: a missing
    // module is then the import's error, exit 1, as tests/wsgi.rs checks).
    let out = run_cli(&["--bind", "127.0.0.1:0", "no-such-app"]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("no-such-app"), "stderr names the app: {err}");
    for app in ["hello", "json", "echo"] {
        assert!(err.contains(app), "stderr lists {app}: {err}");
    }
}

#[test]
fn unknown_flag_exits_2() {
    let out = run_cli(&["--bind", "127.0.0.1:0", "--no-such-flag"]);
    assert_code(&out, 2);
}

#[test]
fn help_exits_0() {
    for flag in ["--help", "-h"] {
        let out = run_cli(&[flag]);
        assert_code(&out, 0);
        let text = stdout(&out) + &stderr(&out);
        for opt in ["--workers", "--bind", "--keep-alive", "--graceful-timeout"] {
            assert!(text.contains(opt), "{flag} output mentions {opt}: {text}");
        }
    }
}

#[test]
fn version_exits_0_and_prints_version() {
    for flag in ["--version", "-V"] {
        let out = run_cli(&[flag]);
        assert_code(&out, 0);
        let text = stdout(&out) + &stderr(&out);
        assert!(
            text.contains(env!("CARGO_PKG_VERSION")),
            "{flag} prints {}: {text}",
            env!("CARGO_PKG_VERSION")
        );
    }
}

#[test]
fn bind_in_use_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("local_addr").to_string();
    let out = run_cli(&["--bind", &addr, "--workers", "1"]);
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains(&addr), "stderr names {addr}: {err}");
    assert!(
        err.to_lowercase().contains("in use"),
        "stderr gives the OS reason: {err}"
    );
    drop(taken);
}

#[test]
fn second_bind_in_use_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("local_addr").to_string();
    let out = run_cli(&["--bind", "127.0.0.1:0", "--bind", &addr, "--workers", "1"]);
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains(&addr), "stderr names {addr}: {err}");
    assert!(err.to_lowercase().contains("in use"), "{err}");
    drop(taken);
}

#[test]
fn startup_logs() {
    let server = Server::spawn(&["--bind", "127.0.0.1:0", "--workers", "1", "echo"]);
    let addr = server.addr();
    let log = server.log();
    assert!(
        log.contains(&format!("Starting ringcorn {}", env!("CARGO_PKG_VERSION"))),
        "{log}"
    );
    assert!(
        log.contains(&format!("Listening at: http://127.0.0.1:{}", addr.port())),
        "{log}"
    );
    server.expect_log("Using app: echo", Duration::from_secs(5));
    server.expect_log("Booting worker", Duration::from_secs(5));
    let mut c = connect(addr);
    assert_eq!(c.post("/", b"up").body, b"up");
}

#[test]
fn settings_from_environment() {
    let server = Server::spawn_env(
        &[],
        &[
            ("RINGCORN_BIND", "127.0.0.1:0"),
            ("RINGCORN_WORKERS", "2"),
            ("RINGCORN_KEEP_ALIVE", "1"),
        ],
    );
    assert!(
        server.wait_log_count("Booting worker", 2, Duration::from_secs(10)),
        "{}",
        server.log()
    );
    std::thread::sleep(Duration::from_millis(200));
    server.assert_log_count("Booting worker", 2);
    let mut c = connect(server.addr());
    assert_hello(&c.get("/"));
    // RINGCORN_KEEP_ALIVE=1: the idle connection is closed soon.
    c.set_read_timeout(Duration::from_secs(4));
    c.expect_closed();
}

#[test]
fn command_line_overrides_environment() {
    let server = Server::spawn_env(
        &["--bind", "127.0.0.1:0", "--workers", "1"],
        &[("RINGCORN_WORKERS", "3")],
    );
    assert!(server.wait_log_count("Booting worker", 1, Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(200));
    server.assert_log_count("Booting worker", 1);
}

/// io_uring asked for (`--backend io_uring`) and refused the way a container's seccomp
/// profile refuses it: `io_uring_setup` fails with ENOSYS in the child only. The server must
/// say so in one clear line with the remedy, and exit 1 rather than hang or panic.
#[test]
fn io_uring_asked_for_but_blocked_is_one_clear_line_and_exit_1() {
    // (`auto` would fall back to epoll: tests/backends.rs.)
    let mut cmd = cli_command(&[
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--backend",
        "io_uring",
    ]);
    block_io_uring(&mut cmd, libc::ENOSYS);
    let out = run_command(cmd, &["(io_uring blocked by seccomp)"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("io_uring is unavailable"))
        .collect();
    assert_eq!(lines.len(), 1, "exactly one line explains it:\n{stderr}");
    for remedy in ["kernel.io_uring_disabled", "seccomp"] {
        assert!(
            lines[0].contains(remedy),
            "the line names `{remedy}`: {}",
            lines[0]
        );
    }
    assert!(
        !stderr.contains("Listening at"),
        "nothing listens:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "no panic:\n{stderr}");
}

/// A CPU this process may not run on is a usage error naming it, not a silently unpinned
/// worker.
#[test]
fn unavailable_cpu_exits_2_and_names_it() {
    let out = run_cli(&["--bind", "127.0.0.1:0", "--cpus", "0,4095"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains("--cpus") && stderr.contains("4095"),
        "stderr:\n{stderr}"
    );
}

/// Without the WSGI bridge, an APP that reads as `module:callable` is refused with how to
/// build one that serves it.
#[cfg(not(feature = "wsgi"))]
#[test]
fn a_wsgi_app_without_the_bridge_says_how_to_build_it() {
    let out = run_cli(&["--bind", "127.0.0.1:0", "myproject.wsgi:application"]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("--features wsgi"), "{err}");
    assert!(
        err.contains("hello"),
        "the built-in apps are listed too: {err}"
    );
}
