//! Graceful shutdown: SIGTERM/SIGINT, draining in-flight requests, the
//! graceful timeout, refusing new connections, and the second SIGINT.

mod common;

use common::*;
use std::io::{ErrorKind, Read};
use std::thread;
use std::time::{Duration, Instant};

/// Generous bound for a shutdown that should be prompt (graceful timeout is 30 s).
const PROMPT: Duration = Duration::from_secs(10);

/// A POST whose Content-Length promises 10 bytes, with only 5 sent.
const PARTIAL: &[u8] =
    b"POST /inflight HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n12345";

#[track_caller]
fn assert_shutdown_logs(server: &Server) {
    let log = server.log();
    let down = log
        .find("Shutting down")
        .unwrap_or_else(|| panic!("no `Shutting down` in log\n{log}"));
    let done = log
        .find("Shutdown complete")
        .unwrap_or_else(|| panic!("no `Shutdown complete` in log\n{log}"));
    assert!(down < done, "`Shutting down` comes first\n{log}");
}

#[track_caller]
fn assert_code(status: std::process::ExitStatus, code: i32, server: &Server) {
    assert_eq!(
        status.code(),
        Some(code),
        "exit status {status}\n--- stderr ---\n{}",
        server.log()
    );
}

/// Reads until the server closes (EOF or reset), ignoring any bytes; panics
/// if the connection is still open when the read timeout expires.
fn drain_until_closed(c: &Conn) {
    let mut s = c.clone_stream();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return
            }
            Err(e) => panic!("connection not closed: {e}"),
        }
        assert!(Instant::now() < deadline, "connection not closed in time");
    }
}

#[test]
fn sigterm_with_idle_keepalive_connection_exits_0() {
    let mut server = Server::spawn(&["--bind", "127.0.0.1:0", "--workers", "2"]);
    let mut c = connect(server.addr());
    assert_hello(&c.get("/"));
    let mut c2 = connect(server.addr());
    assert_hello(&c2.get("/"));
    server.signal(libc::SIGTERM);
    let status = server.expect_exit(PROMPT);
    assert_code(status, 0, &server);
    c.expect_closed();
    c2.expect_closed();
    assert_shutdown_logs(&server);
}

#[test]
fn sigint_without_connections_exits_0() {
    let mut server = Server::app("hello", &[]);
    server.signal(libc::SIGINT);
    let status = server.expect_exit(PROMPT);
    assert_code(status, 0, &server);
    assert_shutdown_logs(&server);
}

#[test]
fn sigterm_lets_in_flight_request_finish() {
    let mut server = Server::app("echo", &[]);
    let mut c = connect(server.addr());
    c.set_nodelay();
    c.send(PARTIAL);
    thread::sleep(Duration::from_millis(200));
    server.signal(libc::SIGTERM);
    server.expect_log("Shutting down", Duration::from_secs(5));
    thread::sleep(Duration::from_millis(300));
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "server exited with a request in flight\n{}",
        server.log()
    );
    c.send(b"67890");
    let resp = c.read_response();
    assert_eq!(resp.status_line, "HTTP/1.1 200 OK", "{resp:?}");
    assert_eq!(resp.body, b"1234567890");
    assert!(
        resp.closes(),
        "response during shutdown carries Connection: close: {resp:?}"
    );
    check_common_headers(&resp, false);
    c.expect_closed();
    let status = server.expect_exit(PROMPT);
    assert_code(status, 0, &server);
    assert_shutdown_logs(&server);
}

#[test]
fn idle_connection_closed_while_draining() {
    let mut server = Server::app("echo", &[]);
    let mut idle = connect(server.addr());
    assert_eq!(idle.post("/", b"idle").body, b"idle");
    let mut busy = connect(server.addr());
    busy.send(PARTIAL);
    thread::sleep(Duration::from_millis(200));
    server.signal(libc::SIGTERM);
    // The idle keep-alive connection is closed without waiting for the busy one.
    idle.set_read_timeout(Duration::from_secs(4));
    idle.expect_closed();
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "server exited with a request in flight\n{}",
        server.log()
    );
    busy.send(b"67890");
    let resp = busy.read_response();
    assert_eq!(resp.body, b"1234567890");
    assert!(resp.closes(), "{resp:?}");
    let status = server.expect_exit(PROMPT);
    assert_code(status, 0, &server);
}

#[test]
fn graceful_timeout_bounds_a_stuck_request() {
    let mut server = Server::app("echo", &["--graceful-timeout", "1"]);
    let c = {
        let mut c = connect(server.addr());
        c.send(PARTIAL);
        c
    };
    thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.expect_exit(Duration::from_secs(8));
    let took = start.elapsed();
    assert_code(status, 0, &server);
    assert!(
        took >= Duration::from_millis(500),
        "server should give the in-flight request the graceful timeout, exited after {took:?}"
    );
    eprintln!("exited {took:?} after SIGTERM with --graceful-timeout 1");
    drain_until_closed(&c);
    server.expect_log("Shutting down", Duration::from_secs(1));
}

#[test]
fn new_connections_refused_after_sigterm() {
    let mut server = Server::app("echo", &[]);
    let addr = server.addr();
    // Keep the server draining with a stuck request.
    let mut busy = connect(addr);
    busy.send(PARTIAL);
    thread::sleep(Duration::from_millis(200));
    server.signal(libc::SIGTERM);
    server.expect_log("Shutting down", Duration::from_secs(5));
    thread::sleep(Duration::from_millis(300));
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "{}",
        server.log()
    );

    match try_connect(addr) {
        Err(e) => eprintln!("connect after SIGTERM refused: {e}"),
        Ok(mut c) => {
            c.set_read_timeout(Duration::from_secs(3));
            let _ = c.try_send(get_req("/").as_bytes());
            match c.try_read_response(false) {
                Err(ReadError::Closed) | Err(ReadError::Reset) => {
                    eprintln!("connect after SIGTERM accepted and closed")
                }
                Err(ReadError::TimedOut) => panic!(
                    "connection after SIGTERM was neither refused nor closed (no answer in 3 s)"
                ),
                Err(ReadError::Other(e)) => panic!("unexpected reply after SIGTERM: {e}"),
                Ok(resp) => assert_ne!(
                    resp.status, 200,
                    "a new connection was served after SIGTERM: {resp:?}"
                ),
            }
        }
    }

    // The in-flight request still completes, then the server exits.
    busy.send(b"67890");
    let resp = busy.read_response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"1234567890");
    assert!(resp.closes(), "{resp:?}");
    let status = server.expect_exit(PROMPT);
    assert_code(status, 0, &server);
    assert_shutdown_logs(&server);
}

#[test]
fn second_sigint_exits_130_at_once() {
    let mut server = Server::app("echo", &["--graceful-timeout", "60"]);
    let mut busy = connect(server.addr());
    busy.send(PARTIAL);
    thread::sleep(Duration::from_millis(200));
    server.signal(libc::SIGINT);
    server.expect_log("Shutting down", Duration::from_secs(5));
    thread::sleep(Duration::from_millis(200));
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "server exited with a request in flight\n{}",
        server.log()
    );
    server.signal(libc::SIGINT);
    let status = server.expect_exit(Duration::from_secs(5));
    assert_code(status, 130, &server);
    drain_until_closed(&busy);
}

#[test]
fn sigterm_closes_parked_idle_connections_promptly() {
    let mut server = Server::spawn(&["--bind", "127.0.0.1:0", "--workers", "1"]);
    let mut conns: Vec<Conn> = (0..20).map(|_| connect(server.addr())).collect();
    for c in &mut conns {
        assert_hello(&c.get("/"));
    }
    // Idle past the parking threshold (1 s): every connection waits on a poll, not a receive.
    thread::sleep(Duration::from_millis(1600));
    server.signal(libc::SIGTERM);
    let status = server.expect_exit(PROMPT);
    assert_code(status, 0, &server);
    for c in &mut conns {
        c.expect_closed();
    }
}
