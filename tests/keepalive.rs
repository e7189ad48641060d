//! Persistent connections: HTTP/1.1 default keep-alive, HTTP/1.0 opt-in,
//! `Connection: close`, and the idle keep-alive timeout.

mod common;

use common::*;
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn hundred_requests_on_one_connection() {
    let server = Server::app("echo", &[]);
    let mut c = connect(server.addr());
    for i in 0..100 {
        let body = format!("request number {i}");
        let resp = c.post(&format!("/r/{i}"), body.as_bytes());
        assert_eq!(resp.status, 200, "request {i}: {resp:?}");
        assert_eq!(resp.body_str(), body, "request {i}");
        assert!(!resp.closes(), "request {i}: {resp:?}");
    }
}

#[test]
fn http10_without_keepalive_closes() {
    let server = Server::app("hello", &[]);
    let mut c = connect(server.addr());
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let resp = c.read_response();
    assert_hello(&resp);
    check_common_headers(&resp, false);
    assert!(
        resp.closes(),
        "server closes after this response, so it says Connection: close: {resp:?}"
    );
    c.expect_closed();
}

#[test]
fn http10_with_host_and_no_keepalive_closes() {
    let server = Server::app("json", &[]);
    let mut c = connect(server.addr());
    c.send(b"GET /x HTTP/1.0\r\nHost: localhost\r\nUser-Agent: t\r\n\r\n");
    let resp = c.read_response();
    assert_eq!(resp.status_line, "HTTP/1.1 200 OK");
    assert_eq!(resp.body_str(), JSON_BODY);
    assert!(resp.closes(), "{resp:?}");
    c.expect_closed();
}

#[test]
fn http10_keepalive_is_honoured() {
    let server = Server::app("hello", &[]);
    let mut c = connect(server.addr());
    for i in 0..3 {
        c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let resp = c.read_response();
        assert_hello(&resp);
        check_common_headers(&resp, false);
        assert!(
            resp.keeps_alive(),
            "request {i}: expected Connection: keep-alive in {resp:?}"
        );
        assert!(!resp.closes(), "request {i}: {resp:?}");
    }
    // Case-insensitive token.
    c.send(b"GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n");
    let resp = c.read_response();
    assert_hello(&resp);
    assert!(resp.keeps_alive(), "{resp:?}");
    // Then an HTTP/1.0 request without it ends the connection.
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let resp = c.read_response();
    assert_hello(&resp);
    assert!(resp.closes(), "{resp:?}");
    c.expect_closed();
}

#[test]
fn http11_connection_close_is_honoured() {
    let server = Server::app("hello", &[]);
    let mut c = connect(server.addr());
    let resp = c.get("/");
    assert_hello(&resp);
    assert!(!resp.closes());
    c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let resp = c.read_response();
    assert_hello(&resp);
    check_common_headers(&resp, false);
    assert!(resp.closes(), "expected Connection: close in {resp:?}");
    c.expect_closed();
}

#[test]
fn http11_connection_close_with_body() {
    let server = Server::app("echo", &[]);
    let mut c = connect(server.addr());
    c.send(
        b"POST / HTTP/1.1\r\nHost: localhost\r\nConnection: Close\r\nContent-Length: 4\r\n\r\nbye!",
    );
    let resp = c.read_response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"bye!");
    assert!(resp.closes(), "{resp:?}");
    c.expect_closed();
}

#[test]
fn idle_keepalive_connection_is_closed_after_timeout() {
    let server = Server::app("hello", &["--keep-alive", "1"]);
    let mut c = connect(server.addr());
    let resp = c.get("/");
    assert_hello(&resp);
    assert!(!resp.closes());
    // Stay idle: the server must close within ~1 s (allow up to 4 s).
    let start = Instant::now();
    c.set_read_timeout(Duration::from_secs(4));
    c.expect_closed();
    eprintln!("idle connection closed after {:?}", start.elapsed());
    // The server itself keeps serving.
    let mut c2 = connect(server.addr());
    assert_hello(&c2.get("/"));
}

#[test]
fn active_keepalive_connection_is_not_closed() {
    // Keep-alive 2 s; requests every 500 ms for ~3.5 s in total: the idle
    // timer must restart on each request.
    let server = Server::app("hello", &["--keep-alive", "2"]);
    let mut c = connect(server.addr());
    for i in 0..7 {
        let resp = c.get(&format!("/tick/{i}"));
        assert_hello(&resp);
        assert!(!resp.closes(), "request {i}: {resp:?}");
        thread::sleep(Duration::from_millis(500));
    }
    assert_hello(&c.get("/done"));
}

/// A keep-alive connection idle past a second is parked (its buffers freed, a readiness poll
/// armed instead of a receive): it must serve its next requests exactly as before, and a parked
/// connection must still be closed at the keep-alive deadline.
#[test]
fn parked_idle_connection_serves_again_and_still_times_out() {
    let server = Server::app("echo", &["--keep-alive", "4"]);
    let mut c = connect(server.addr());
    assert_eq!(c.get("/").status, 200);
    thread::sleep(Duration::from_millis(1600));
    // Parked by now: a pipelined pair and a body must come through intact.
    c.send(b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: t\r\n\r\n");
    let first = c.read_response();
    assert_eq!((first.status, first.body.as_slice()), (200, &b"hello"[..]));
    assert_eq!(c.read_response().status, 200);
    // Parked again, then closed silently at the keep-alive deadline (4 s idle).
    let start = Instant::now();
    c.expect_closed();
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "closed after {:?}",
        start.elapsed()
    );
}
