//! Request bodies through the echo app: Content-Length, chunked, limits and
//! framing errors.

mod common;

use common::*;
use std::io::Write;
use std::thread;
use std::time::Duration;

const MIB: usize = 1024 * 1024;

fn echo_server() -> Server {
    Server::app("echo", &[])
}

/// Chunked encoding of `body` in chunks of `size` bytes (lowercase hex).
fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in body.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

const CHUNKED_HEAD: &[u8] =
    b"POST /chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";

fn assert_echo(resp: &Response, expected: &[u8]) {
    assert_eq!(resp.status_line, "HTTP/1.1 200 OK");
    assert_eq!(
        resp.body.len(),
        expected.len(),
        "echoed body length (status {})",
        resp.status
    );
    assert!(
        resp.body == expected,
        "echoed body differs from the sent one"
    );
    check_common_headers(resp, false);
}

#[test]
fn content_length_bodies_of_various_sizes() {
    let server = echo_server();
    let mut c = connect(server.addr());
    for (i, len) in [0, 1, 5, 1000, 100 * 1024, 900 * 1024]
        .into_iter()
        .enumerate()
    {
        let body = pattern(len, i as u64 + 1);
        let resp = c.post("/sized", &body);
        assert_echo(&resp, &body);
        assert_eq!(resp.content_length(), len);
    }
}

#[test]
fn body_of_exactly_one_mib_is_accepted() {
    let server = echo_server();
    let mut c = connect(server.addr());
    let body = pattern(MIB, 42);
    let resp = c.post("/limit", &body);
    assert_echo(&resp, &body);
    // Keep-alive continues after a maximal body.
    let resp = c.post("/small", b"small");
    assert_echo(&resp, b"small");
}

#[test]
fn post_without_length_has_empty_body() {
    let server = echo_server();
    let mut c = connect(server.addr());
    c.send(b"POST / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let resp = c.read_response();
    assert_echo(&resp, b"");
    let resp = c.post("/", b"next");
    assert_echo(&resp, b"next");
}

#[test]
fn body_sent_in_pieces() {
    let server = echo_server();
    let mut c = connect(server.addr());
    c.set_nodelay();
    let body = pattern(64 * 1024, 7);
    let req = post_req("/pieces", &body);
    let head_len = req.len() - body.len();
    // Head alone, then the body in uneven pieces with pauses.
    c.send(&req[..head_len]);
    thread::sleep(Duration::from_millis(50));
    let mut rest = &req[head_len..];
    for size in [1, 10, 1000, 7, 20_000] {
        let (now, later) = rest.split_at(size);
        c.send(now);
        thread::sleep(Duration::from_millis(20));
        rest = later;
    }
    c.send(rest);
    assert_echo(&c.read_response(), &body);

    // Head split in the middle of the blank line, with the body.
    let req = post_req("/split", b"0123456789");
    let cut = req.len() - 10 - 2;
    c.send(&req[..cut]);
    thread::sleep(Duration::from_millis(50));
    c.send(&req[cut..]);
    assert_echo(&c.read_response(), b"0123456789");
}

#[test]
fn chunked_body_is_decoded() {
    let server = echo_server();
    let mut c = connect(server.addr());

    let mut req = CHUNKED_HEAD.to_vec();
    req.extend_from_slice(b"5\r\nhello\r\n6\r\n world\r\n1\r\n!\r\n0\r\n\r\n");
    c.send(&req);
    let resp = c.read_response();
    assert_echo(&resp, b"hello world!");
    assert_eq!(resp.header("Content-Length"), Some("12"));

    // Upper-case hex and leading zeros.
    let mut req = CHUNKED_HEAD.to_vec();
    req.extend_from_slice(b"A\r\n0123456789\r\n00b\r\nabcdefghijk\r\n000\r\n\r\n");
    c.send(&req);
    assert_echo(&c.read_response(), b"0123456789abcdefghijk");

    // Empty chunked body.
    let mut req = CHUNKED_HEAD.to_vec();
    req.extend_from_slice(b"0\r\n\r\n");
    c.send(&req);
    assert_echo(&c.read_response(), b"");
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let server = echo_server();
    let mut c = connect(server.addr());
    let mut req = CHUNKED_HEAD.to_vec();
    req.extend_from_slice(
        b"4;name=value\r\nWiki\r\n5;a=b;flag\r\npedia\r\n0;last=1\r\nX-Trailer: yes\r\nX-Other: also\r\n\r\n",
    );
    c.send(&req);
    assert_echo(&c.read_response(), b"Wikipedia");
    // The connection stays in sync after trailers.
    assert_echo(&c.post("/after", b"after"), b"after");
}

#[test]
fn chunked_split_across_writes() {
    let server = echo_server();
    let mut c = connect(server.addr());
    c.set_nodelay();
    let mut req = CHUNKED_HEAD.to_vec();
    req.extend_from_slice(b"3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n");
    c.send_bytewise(&req, Duration::from_millis(1));
    assert_echo(&c.read_response(), b"abc0123456789abcdef");

    // A bigger body, written in pieces that cut through size lines and data.
    let body = pattern(200 * 1024, 3);
    let mut req = CHUNKED_HEAD.to_vec();
    req.extend_from_slice(&chunked(&body, 4093));
    for piece in req.chunks(7919) {
        c.send(piece);
        thread::sleep(Duration::from_millis(1));
    }
    assert_echo(&c.read_response(), &body);
}

#[test]
fn chunked_followed_by_pipelined_request() {
    let server = echo_server();
    let mut c = connect(server.addr());
    let mut req = CHUNKED_HEAD.to_vec();
    req.extend_from_slice(&chunked(b"first body", 3));
    req.extend_from_slice(&post_req("/second", b"second body"));
    req.extend_from_slice(
        b"POST /third HTTP/1.1\r\nHost: localhost\r\ntransfer-encoding: Chunked\r\n\r\n",
    );
    req.extend_from_slice(&chunked(b"third body", 4));
    c.send(&req);
    assert_echo(&c.read_response(), b"first body");
    assert_echo(&c.read_response(), b"second body");
    assert_echo(&c.read_response(), b"third body");
}

#[test]
fn content_length_over_limit_gets_413_and_close() {
    let server = echo_server();
    let mut c = connect(server.addr());
    c.send(b"POST /big HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000000\r\n\r\n");
    c.send(&pattern(1000, 9));
    let resp = c.read_response();
    assert_error_close(&resp, 413);
    c.expect_closed();
    // Still serving.
    let mut c2 = connect(server.addr());
    assert_echo(&c2.post("/", b"ok"), b"ok");
}

#[test]
fn content_length_one_byte_over_limit_gets_413() {
    let server = echo_server();
    let mut c = connect(server.addr());
    c.send(
        format!(
            "POST /big HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            MIB + 1
        )
        .as_bytes(),
    );
    let resp = c.read_response();
    assert_error_close(&resp, 413);
    c.expect_closed();
}

#[test]
fn chunked_over_limit_gets_413_and_close() {
    let server = echo_server();
    let mut c = connect(server.addr());
    c.send(CHUNKED_HEAD);
    // Stream 1.25 MiB of chunks from a thread; the server may stop reading
    // and close at any point, so write errors are expected and ignored.
    let mut writer = c.clone_stream();
    let w = thread::spawn(move || {
        let chunk = chunked(&pattern(16 * 1024, 5), 16 * 1024);
        // `chunked` ends with the terminal chunk; strip it to keep streaming.
        let one = &chunk[..chunk.len() - 5];
        for _ in 0..80 {
            if writer.write_all(one).is_err() {
                return;
            }
        }
        let _ = writer.write_all(b"0\r\n\r\n");
    });
    let resp = c.read_response();
    assert_error_close(&resp, 413);
    c.expect_closed();
    w.join().expect("writer thread");
}

#[test]
fn content_length_and_transfer_encoding_gets_400() {
    let server = echo_server();
    let mut c = connect(server.addr());
    c.send(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    let resp = c.read_response();
    assert_error_close(&resp, 400);
    assert_eq!(resp.status_line, "HTTP/1.1 400 Bad Request");
    c.expect_closed();
}

#[test]
fn unsupported_transfer_encoding_is_rejected() {
    let server = echo_server();
    let mut c = connect(server.addr());
    c.send(b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\nxxxx");
    let resp = c.read_response();
    assert!(
        resp.status == 501 || resp.status == 400,
        "expected 501 or 400, got {resp:?}"
    );
    assert_error_close(&resp, resp.status);
    c.expect_closed();
}

#[test]
fn invalid_content_length_gets_400() {
    let server = echo_server();
    for bad in ["abc", "-1", "5x", "1 2"] {
        let mut c = connect(server.addr());
        c.send(
            format!("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: {bad}\r\n\r\nhello")
                .as_bytes(),
        );
        let resp = c.read_response();
        assert_error_close(&resp, 400);
        c.expect_closed();
    }
}

#[test]
fn invalid_chunk_size_gets_400() {
    let server = echo_server();
    let mut c = connect(server.addr());
    let mut req = CHUNKED_HEAD.to_vec();
    req.extend_from_slice(b"zz\r\nhello\r\n0\r\n\r\n");
    c.send(&req);
    let resp = c.read_response();
    assert_error_close(&resp, 400);
    c.expect_closed();
}
