//! Malformed requests: 400, 505, 431, each followed by a close, and the
//! server keeps serving afterwards.

mod common;

use common::*;

/// A fresh connection still gets a normal answer.
fn assert_still_serving(server: &Server) {
    let mut c = connect(server.addr());
    assert_hello(&c.get("/still-alive"));
}

#[test]
fn garbage_request_gets_400_and_close() {
    let server = Server::app("hello", &[]);
    let mut c = connect(server.addr());
    c.send(b"GARBAGE\r\n\r\n");
    let resp = c.read_response();
    assert_eq!(resp.status_line, "HTTP/1.1 400 Bad Request");
    assert_error_close(&resp, 400);
    c.expect_closed();
    assert_still_serving(&server);
}

#[test]
fn various_malformed_requests_get_400() {
    let server = Server::app("hello", &[]);
    let cases: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: localhost\r\nNo colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Name: x\r\n\r\n",
        b"GET\r\nHost: localhost\r\n\r\n",
        b"\x01\x02\x03\x04 / HTTP/1.1\r\n\r\n",
    ];
    for (i, req) in cases.iter().enumerate() {
        let mut c = connect(server.addr());
        c.send(req);
        let resp = c.read_response();
        assert_eq!(
            resp.status,
            400,
            "case {i} {:?}: {resp:?}",
            String::from_utf8_lossy(req)
        );
        assert_error_close(&resp, 400);
        c.expect_closed();
    }
    assert_still_serving(&server);
}

#[test]
fn missing_host_in_http11_gets_400() {
    let server = Server::app("hello", &[]);
    let mut c = connect(server.addr());
    c.send(b"GET / HTTP/1.1\r\nUser-Agent: test\r\n\r\n");
    let resp = c.read_response();
    assert_eq!(resp.status_line, "HTTP/1.1 400 Bad Request");
    assert_error_close(&resp, 400);
    c.expect_closed();
    assert_still_serving(&server);
}

#[test]
fn missing_host_in_http10_is_fine() {
    let server = Server::app("hello", &[]);
    let mut c = connect(server.addr());
    c.send(b"GET / HTTP/1.0\r\nUser-Agent: test\r\n\r\n");
    let resp = c.read_response();
    assert_hello(&resp);
}

#[test]
fn http2_version_gets_505() {
    let server = Server::app("hello", &[]);
    let mut c = connect(server.addr());
    c.send(b"GET / HTTP/2.0\r\nHost: localhost\r\n\r\n");
    let resp = c.read_response();
    assert_eq!(resp.status, 505, "{resp:?}");
    assert!(resp.status_line.starts_with("HTTP/1.1 505 "), "{resp:?}");
    check_common_headers(&resp, false);
    assert_still_serving(&server);
}

#[test]
fn oversized_request_head_gets_431() {
    let server = Server::app("hello", &[]);
    let mut c = connect(server.addr());
    let big = "a".repeat(40 * 1024);
    c.send(format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let resp = c.read_response();
    assert_error_close(&resp, 431);
    c.expect_closed();
    assert_still_serving(&server);
}

#[test]
fn oversized_head_without_end_gets_431() {
    // About 42 KiB of headers (30 lines of 1.4 KiB: few and short enough not
    // to hit any per-line or per-count limit) and no blank line yet: the
    // server must not wait for the end of a head that is already over 32 KiB.
    let server = Server::app("hello", &[]);
    let mut c = connect(server.addr());
    let mut req = String::from("GET / HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..30 {
        req.push_str(&format!("X-H{i}: {}\r\n", "v".repeat(1400)));
    }
    c.send(req.as_bytes());
    let resp = c.read_response();
    assert_error_close(&resp, 431);
    c.expect_closed();
    assert_still_serving(&server);
}

#[test]
fn large_but_legal_head_is_served() {
    let server = Server::app("hello", &[]);
    let mut c = connect(server.addr());
    // About 24 KiB in 20 lines of 1.2 KiB (the contract only bounds the whole
    // head at 32 KiB; single lines stay short).
    let mut req = String::from("GET / HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..20 {
        req.push_str(&format!("X-Big-{i}: {}\r\n", "b".repeat(1200)));
    }
    req.push_str("\r\n");
    c.send(req.as_bytes());
    let resp = c.read_response();
    assert_hello(&resp);
    assert!(!resp.closes());
    // The connection keeps working.
    assert_hello(&c.get("/"));
}

#[test]
fn server_survives_many_errors() {
    let server = Server::app("echo", &[]);
    for i in 0..20 {
        let mut c = connect(server.addr());
        if i % 2 == 0 {
            c.send(b"GARBAGE\r\n\r\n");
        } else {
            c.send(b"GET / HTTP/1.1\r\n\r\n");
        }
        let resp = c.read_response();
        assert_error_close(&resp, 400);
        c.expect_closed();
    }
    // A client that disconnects mid-request must not disturb others either.
    {
        let mut c = connect(server.addr());
        c.send(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nabc");
    }
    let mut c = connect(server.addr());
    let resp = c.post("/", b"fine");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"fine");
}
