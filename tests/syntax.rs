//! Request syntax: line endings, whitespace, control bytes, header names, the request line,
//! Host, versions, and the binary openings of other protocols (HTTP/2, TLS). Each refusal is an
//! exact status plus a close; each legal variant is answered and leaves the connection usable.
//! Policies and their reasons: docs/http-rules.md.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn hello() -> (Server, Probe) {
    let server = Server::app("hello", &[]);
    let probe = Probe {
        addr: server.addr(),
        echo: false,
    };
    (server, probe)
}

/// `GET / HTTP/1.1`, `Host: localhost`, then `lines` (each without its CRLF), then the blank line.
fn get_with(lines: &[&[u8]]) -> Vec<u8> {
    let mut out = b"GET / HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for l in lines {
        out.extend_from_slice(l);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// `line` as the request line, then Host and the blank line.
fn request_line(line: &str) -> Vec<u8> {
    format!("{line}\r\nHost: localhost\r\n\r\n").into_bytes()
}

const BAD: Expect<'static> = Expect::Refuse(400);
const OK: Expect<'static> = Expect::Accept(HELLO_BODY.as_bytes());

#[test]
fn obs_fold_and_misplaced_whitespace_are_refused() {
    let (_server, probe) = hello();
    probe.run_table(
        "whitespace in the head",
        &[
            ("obs-fold with SP", get_with(&[b"X-A: a", b" b"]), BAD),
            ("obs-fold with HTAB", get_with(&[b"X-A: a", b"\tb"]), BAD),
            (
                "SP before the first header",
                b"GET / HTTP/1.1\r\n Host: localhost\r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "HTAB before the first header",
                b"GET / HTTP/1.1\r\n\tHost: localhost\r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "SP before the colon of Host",
                b"GET / HTTP/1.1\r\nHost : localhost\r\n\r\n".to_vec(),
                BAD,
            ),
            ("SP before the colon", get_with(&[b"X-A : b"]), BAD),
            ("HTAB before the colon", get_with(&[b"X-A\t: b"]), BAD),
            // Controls: OWS after the colon and at the end of the value is fine, and so is none.
            ("no OWS", get_with(&[b"X-A:b"]), OK),
            ("OWS around the value", get_with(&[b"X-A: \t b \t"]), OK),
        ],
    );
}

#[test]
fn bare_cr_is_refused() {
    let (_server, probe) = hello();
    probe.run_table(
        "bare CR",
        &[
            ("in the target", request_line("GET /a\rb HTTP/1.1"), BAD),
            (
                "ends the request line",
                b"GET / HTTP/1.1\rHost: localhost\r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "before the CRLF of the request line",
                request_line("GET / HTTP/1.1\r"),
                BAD,
            ),
            ("in a header name", get_with(&[b"X-\rA: b"]), BAD),
            ("in a header value", get_with(&[b"X-A: b\rc"]), BAD),
            ("before the CRLF of a header", get_with(&[b"X-A: b\r"]), BAD),
            (
                "ends a header line",
                b"GET / HTTP/1.1\r\nX-A: b\rHost: localhost\r\n\r\n".to_vec(),
                BAD,
            ),
        ],
    );
}

#[test]
fn control_bytes_in_header_values_are_refused() {
    let (_server, probe) = hello();
    probe.run_table(
        "control bytes in a value",
        &[
            ("NUL", get_with(&[b"X-A: a\x00b"]), BAD),
            ("BEL", get_with(&[b"X-A: a\x07b"]), BAD),
            ("DEL", get_with(&[b"X-A: a\x7fb"]), BAD),
            ("ESC", get_with(&[b"X-A: a\x1bb"]), BAD),
            ("VT", get_with(&[b"X-A: a\x0bb"]), BAD),
            ("FF", get_with(&[b"X-A: a\x0cb"]), BAD),
            ("US", get_with(&[b"X-A: a\x1fb"]), BAD),
            ("NUL at the end", get_with(&[b"X-A: ab\x00"]), BAD),
            (
                "NUL in Host",
                b"GET / HTTP/1.1\r\nHost: local\x00host\r\n\r\n".to_vec(),
                BAD,
            ),
            // Control: HTAB inside a value is allowed.
            ("HTAB", get_with(&[b"X-A: a\tb"]), OK),
        ],
    );
}

#[test]
fn invalid_header_name_characters_are_refused() {
    let (_server, probe) = hello();
    let mut cases: Vec<(&str, Vec<u8>, Expect<'_>)> = Vec::new();
    // Every delimiter RFC 9110 §5.6.2 excludes from a token (SP is in errors.rs).
    let delimiters: [(&str, &[u8]); 16] = [
        ("(", b"X(A: b"),
        (")", b"X)A: b"),
        ("\"", b"X\"A: b"),
        ("/", b"X/A: b"),
        ("@", b"X@A: b"),
        ("[", b"X[A: b"),
        ("]", b"X]A: b"),
        ("{", b"X{A: b"),
        ("}", b"X}A: b"),
        ("?", b"X?A: b"),
        ("=", b"X=A: b"),
        (",", b"X,A: b"),
        (";", b"X;A: b"),
        ("<", b"X<A: b"),
        (">", b"X>A: b"),
        ("\\", b"X\\A: b"),
    ];
    for (name, line) in delimiters {
        cases.push((name, get_with(&[line]), BAD));
    }
    cases.push(("non-ASCII (UTF-8 é)", get_with(&[b"X-\xc3\xa9: b"]), BAD));
    cases.push(("NUL", get_with(&[b"X-\x00A: b"]), BAD));
    cases.push(("DEL", get_with(&[b"X-\x7fA: b"]), BAD));
    cases.push(("empty name", get_with(&[b": b"]), BAD));
    // Control: every tchar is allowed.
    cases.push((
        "all tchars",
        get_with(&[b"!#$%&'*+-.^_`|~0123456789AZaz: ok"]),
        OK,
    ));
    probe.run_table("header names", &cases);
}

#[test]
fn request_line_needs_single_spaces() {
    let (_server, probe) = hello();
    probe.run_table(
        "request-line whitespace",
        &[
            (
                "two SP after the method",
                request_line("GET  / HTTP/1.1"),
                BAD,
            ),
            (
                "two SP after the target",
                request_line("GET /  HTTP/1.1"),
                BAD,
            ),
            (
                "HTAB after the method",
                request_line("GET\t/ HTTP/1.1"),
                BAD,
            ),
            (
                "HTAB after the target",
                request_line("GET /\tHTTP/1.1"),
                BAD,
            ),
            ("leading SP", request_line(" GET / HTTP/1.1"), BAD),
            ("trailing SP", request_line("GET / HTTP/1.1 "), BAD),
            ("trailing HTAB", request_line("GET / HTTP/1.1\t"), BAD),
        ],
    );
}

#[test]
fn host_must_be_single_and_without_spaces() {
    // (A missing Host in HTTP/1.1 is in errors.rs.)
    let (_server, probe) = hello();
    probe.run_table(
        "Host",
        &[
            (
                "two identical Host lines",
                b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "two differing Host lines",
                b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: evil\r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "two Host lines, names in other cases",
                b"GET / HTTP/1.1\r\nhost: localhost\r\nHOST: localhost\r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "space inside the Host value",
                b"GET / HTTP/1.1\r\nHost: local host\r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "Host value with a port",
                b"GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n".to_vec(),
                OK,
            ),
        ],
    );
}

#[test]
fn bare_lf_is_refused() {
    let (_server, probe) = hello();
    probe.run_table(
        "bare LF",
        &[
            (
                "pure LF request",
                b"GET / HTTP/1.1\nHost: localhost\n\n".to_vec(),
                BAD,
            ),
            (
                "pure LF HTTP/1.0 request",
                b"GET / HTTP/1.0\n\n".to_vec(),
                BAD,
            ),
            (
                "LF after the request line",
                b"GET / HTTP/1.1\nHost: localhost\r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "LF after a header line",
                b"GET / HTTP/1.1\r\nHost: localhost\nX-A: b\r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "LF as the final blank line",
                b"GET / HTTP/1.1\r\nHost: localhost\r\n\n".to_vec(),
                BAD,
            ),
            (
                "leading bare LF",
                b"\nGET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "leading CRLF then bare LF",
                b"\r\n\nGET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
                BAD,
            ),
        ],
    );
}

#[test]
fn leading_crlf_before_a_request_is_ignored() {
    let (_server, probe) = hello();
    let get = get_req("/");
    probe.run_table(
        "leading CRLF",
        &[
            ("one leading CRLF", format!("\r\n{get}").into_bytes(), OK),
            (
                "two leading CRLFs",
                format!("\r\n\r\n{get}").into_bytes(),
                OK,
            ),
        ],
    );
    // Between pipelined requests too: two responses, and the connection stays open.
    let mut c = connect(probe.addr);
    c.send(format!("{get}\r\n{get}").as_bytes());
    assert_hello(&c.read_response());
    assert_hello(&c.read_response());
    c.expect_silence(Duration::from_millis(300));
    assert_hello(&c.get("/"));
}

#[test]
fn http2_and_http3_versions_get_505() {
    let (_server, probe) = hello();
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // What an HTTP/2 client with prior knowledge sends first: the preface and SETTINGS.
    let mut preface_settings = preface.clone();
    preface_settings.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    probe.run_table(
        "HTTP versions",
        &[
            (
                "HTTP/2.0",
                request_line("GET / HTTP/2.0"),
                Expect::Refuse(505),
            ),
            (
                "HTTP/3.0",
                request_line("GET / HTTP/3.0"),
                Expect::Refuse(505),
            ),
            ("HTTP/2 preface", preface, Expect::Refuse(505)),
            (
                "HTTP/2 preface + SETTINGS",
                preface_settings,
                Expect::Refuse(505),
            ),
        ],
    );
}

#[test]
fn tls_client_hello_is_refused_at_once() {
    let (_server, probe) = hello();
    // A TLS record header (handshake, TLS 1.0 record version, length 0x200), the ClientHello
    // header (type 1, length 0x1fc, version 3.3) and 32 bytes of "random".
    let mut client_hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    client_hello.extend_from_slice(&pattern(32, 0x7115));
    let mut c = connect(probe.addr);
    // The client keeps its side open and sends nothing more: the answer must not wait for
    // more bytes (a TLS client waits for the ServerHello forever).
    let wait = Duration::from_secs(2);
    c.set_read_timeout(wait);
    let start = Instant::now();
    c.send(&client_hello);
    let resp = c.try_read_response(false).unwrap_or_else(|e| {
        panic!(
            "no response to a ClientHello within {wait:?} while the client keeps its side open: {e:?}"
        )
    });
    let took = start.elapsed();
    check_refusal(&resp, 400).unwrap_or_else(|e| panic!("{e}"));
    assert!(took < wait, "answered after {took:?}");
    c.expect_closed();
    // The server still serves.
    let mut c2 = connect(probe.addr);
    probe.follow_up(&mut c2).unwrap_or_else(|e| panic!("{e}"));
}
