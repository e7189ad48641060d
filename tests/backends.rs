//! `--backend auto|io_uring|epoll`: where io_uring is blocked the way containers block it (a
//! seccomp filter installed before exec makes `io_uring_setup` fail with EPERM, as Docker's
//! and containerd's default profiles and the `kernel.io_uring_disabled` sysctl do, or with
//! ENOSYS, as Podman's and gVisor's do), `auto` comes up on epoll, says why in one line, and
//! serves the same requests. The startup lines say which backend each worker runs.
//! (The whole suite runs on each backend: see scripts/test-runner.sh.)

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// Keep-alive, pipelined and a body, on one connection; then a fresh connection.
fn serves_the_usual_requests(server: &Server) {
    let mut c = connect(server.addr());
    let resp = c.get("/");
    assert_eq!(
        (resp.status, resp.body_str().as_str()),
        (200, ""),
        "{}",
        server.log()
    );
    c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read_response().status, 200);
    assert_eq!(c.read_response().status, 200);
    assert_eq!(c.post("/p", b"hello").body_str(), "hello");
    let mut s = TcpStream::connect(server.addr()).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
        .expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(
        out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("abc"),
        "{out}"
    );
}

fn blocked(errno: i32, extra: &[&str]) -> Server {
    let mut args = vec!["--bind", "127.0.0.1:0", "--workers", "2"];
    args.extend_from_slice(extra);
    args.push("echo");
    let mut cmd = cli_command(&args);
    // The suite may run on either backend: this test decides its own.
    cmd.env_remove("RINGCORN_BACKEND");
    block_io_uring(&mut cmd, errno);
    Server::spawn_command(cmd, 1)
}

#[track_caller]
fn falls_back(errno: i32, name: &str) {
    for class in ["thread", "process"] {
        let server = blocked(errno, &["--worker-class", class]);
        let log = server.log();
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("io_uring is unavailable, serving with epoll instead"))
            .collect();
        assert_eq!(warnings.len(), 1, "one line says why:\n{log}");
        assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
        assert!(
            warnings[0].contains(name),
            "the cause ({name}): {}",
            warnings[0]
        );
        for remedy in ["kernel.io_uring_disabled", "seccomp"] {
            if errno == libc::EPERM {
                assert!(
                    warnings[0].contains(remedy),
                    "names {remedy}: {}",
                    warnings[0]
                );
            }
        }
        assert!(
            server.wait_log_count("(epoll)", 2, Duration::from_secs(5)),
            "both workers on epoll:\n{}",
            server.log()
        );
        serves_the_usual_requests(&server);
    }
}

#[test]
fn auto_serves_on_epoll_where_seccomp_says_eperm() {
    falls_back(libc::EPERM, "EPERM");
}

#[test]
fn auto_serves_on_epoll_where_seccomp_says_enosys() {
    falls_back(libc::ENOSYS, "ENOSYS");
}

#[test]
fn epoll_asked_for_is_used_and_io_uring_where_it_works() {
    let mut cmd = cli_command(&[
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--backend",
        "epoll",
        "echo",
    ]);
    cmd.env_remove("RINGCORN_BACKEND");
    let server = Server::spawn_command(cmd, 1);
    assert!(
        server.log().contains("Booting worker 0"),
        "{}",
        server.log()
    );
    assert!(server.log().contains("(epoll)"), "{}", server.log());
    assert!(
        !server.log().contains("io_uring is unavailable"),
        "{}",
        server.log()
    );
    serves_the_usual_requests(&server);

    let mut cmd = cli_command(&[
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--backend",
        "auto",
        "echo",
    ]);
    cmd.env_remove("RINGCORN_BACKEND");
    let server = Server::spawn_command(cmd, 1);
    let log = server.log();
    // This machine may itself lack io_uring: then auto says so and uses epoll.
    assert!(
        log.contains("(io_uring ") || log.contains("serving with epoll instead"),
        "{log}"
    );
}

#[test]
fn a_bad_backend_is_a_usage_error() {
    let out = run_cli(&["--backend", "kqueue", "hello"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("io_uring") && stderr.contains("epoll"),
        "{stderr}"
    );
}
