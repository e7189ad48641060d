//! Pipelining: several requests in one write are answered in order; a request
//! split into single bytes is still parsed.

mod common;

use common::*;
use std::io::Write;
use std::thread;
use std::time::Duration;

#[test]
fn sixteen_requests_in_one_write_answered_in_order() {
    let server = Server::app("echo", &[]);
    let mut c = connect(server.addr());
    let mut batch = Vec::new();
    for i in 1..=16 {
        batch.extend_from_slice(&post_req(&format!("/{i}"), i.to_string().as_bytes()));
    }
    c.send(&batch);
    for i in 1..=16 {
        let resp = c.read_response();
        assert_eq!(resp.status, 200, "response {i}: {resp:?}");
        assert_eq!(resp.body_str(), i.to_string(), "response {i} out of order");
        check_common_headers(&resp, false);
    }
    // The connection is still usable.
    let resp = c.post("/after", b"after");
    assert_eq!(resp.body, b"after");
}

#[test]
fn pipelined_head_get_mix_in_order() {
    let server = Server::app("hello", &[]);
    let mut c = connect(server.addr());
    let mut batch = String::new();
    for i in 0..10 {
        if i % 3 == 0 {
            batch.push_str(&head_req(&format!("/{i}")));
        } else {
            batch.push_str(&get_req(&format!("/{i}")));
        }
    }
    c.send(batch.as_bytes());
    for i in 0..10 {
        if i % 3 == 0 {
            let resp = c.read_head_response();
            assert_eq!(resp.status, 200, "response {i}");
            assert_eq!(resp.header("Content-Length"), Some("13"));
        } else {
            assert_hello(&c.read_response());
        }
    }
    assert_hello(&c.get("/last"));
}

#[test]
fn request_split_byte_by_byte() {
    let server = Server::app("echo", &[]);
    let mut c = connect(server.addr());
    c.set_nodelay();
    let req = b"POST /split HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nbyte by byte";
    c.send_bytewise(req, Duration::from_millis(2));
    let resp = c.read_response();
    assert_eq!(resp.status_line, "HTTP/1.1 200 OK");
    assert_eq!(resp.body, b"byte by byte");
    assert_eq!(resp.header("Content-Type"), Some("text/plain"));
    check_common_headers(&resp, false);

    // A GET split byte by byte, then a normal one on the same connection.
    c.send_bytewise(get_req("/g").as_bytes(), Duration::from_millis(1));
    let resp = c.read_response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"");
    let resp = c.post("/x", b"xyz");
    assert_eq!(resp.body, b"xyz");
}

#[test]
fn pipelined_requests_split_at_odd_points() {
    let server = Server::app("echo", &[]);
    let mut c = connect(server.addr());
    c.set_nodelay();
    let mut all = Vec::new();
    for i in 0..5 {
        all.extend_from_slice(&post_req("/p", format!("body-{i}").as_bytes()));
    }
    // Writes that cut through request lines, headers and bodies.
    for chunk in all.chunks(37) {
        c.send(chunk);
        thread::sleep(Duration::from_millis(5));
    }
    for i in 0..5 {
        let resp = c.read_response();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body_str(), format!("body-{i}"));
    }
}

#[test]
fn thousand_pipelined_gets() {
    let server = Server::app("hello", &[]);
    let mut c = connect(server.addr());
    let mut batch = String::new();
    for i in 0..1000 {
        batch.push_str(&get_req(&format!("/{i}")));
    }
    // Write from a separate thread so neither side can block the other.
    let mut writer = c.clone_stream();
    let w = thread::spawn(move || writer.write_all(batch.as_bytes()));
    for i in 0..1000 {
        let resp = c.read_response();
        assert_eq!(resp.status, 200, "response {i}: {resp:?}");
        assert_eq!(resp.body_str(), HELLO_BODY, "response {i}");
    }
    w.join().expect("writer thread").expect("writing the batch");
    assert_hello(&c.get("/after"));
}

#[test]
fn pipelined_connection_close_stops_processing() {
    let server = Server::app("echo", &[]);
    let mut c = connect(server.addr());
    let mut batch = post_req("/1", b"one");
    batch.extend_from_slice(
        b"POST /2 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 3\r\n\r\ntwo",
    );
    batch.extend_from_slice(&post_req("/3", b"three"));
    c.send(&batch);
    let r1 = c.read_response();
    assert_eq!(r1.body, b"one");
    assert!(!r1.closes());
    let r2 = c.read_response();
    assert_eq!(r2.body, b"two");
    assert!(r2.closes(), "{r2:?}");
    // The third request is not answered: the server closes.
    c.expect_closed();
}

#[test]
fn pipelined_good_then_garbage() {
    let server = Server::app("hello", &[]);
    let mut c = connect(server.addr());
    let mut batch = get_req("/ok");
    batch.push_str("GARBAGE\r\n\r\n");
    batch.push_str(&get_req("/never"));
    c.send(batch.as_bytes());
    assert_hello(&c.read_response());
    let resp = c.read_response();
    assert_error_close(&resp, 400);
    assert_eq!(resp.status_line, "HTTP/1.1 400 Bad Request");
    c.expect_closed();
}
