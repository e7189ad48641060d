//! Request syntax: line endings, whitespace, control bytes, header names, the request line and
//! its target, Host, empty lines before a request, versions, and the binary openings of other
//! protocols (HTTP/2, TLS). Each refusal is an
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

/// `line` (raw bytes) as the request line, then Host and the blank line.
fn request_line_bytes(line: &[u8]) -> Vec<u8> {
    [line, b"\r\nHost: localhost\r\n\r\n"].concat()
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
fn request_target_must_fit_its_method() {
    // RFC 9112 §3.2: asterisk-form only for OPTIONS, authority-form only for CONNECT (and
    // CONNECT only with it), origin-form or absolute-form for everything else. A well-formed
    // CONNECT is 501: this is not a proxy (what handlers see: tests/http_rules.rs).
    let (_server, probe) = hello();
    let connect = |target: &str| {
        format!("CONNECT {target} HTTP/1.1\r\nHost: localhost:443\r\n\r\n").into_bytes()
    };
    probe.run_table(
        "request-target forms",
        &[
            ("OPTIONS *", request_line("OPTIONS * HTTP/1.1"), OK),
            (
                "OPTIONS origin-form",
                request_line("OPTIONS /x HTTP/1.1"),
                OK,
            ),
            ("GET *", request_line("GET * HTTP/1.1"), BAD),
            ("POST *", request_line("POST * HTTP/1.1"), BAD),
            ("OPTIONS *x", request_line("OPTIONS *x HTTP/1.1"), BAD),
            (
                "CONNECT authority-form",
                connect("localhost:443"),
                Expect::Refuse(501),
            ),
            (
                "CONNECT origin-form",
                request_line("CONNECT / HTTP/1.1"),
                BAD,
            ),
            (
                "CONNECT absolute-form",
                request_line("CONNECT http://localhost:443/ HTTP/1.1"),
                BAD,
            ),
            ("CONNECT without a port", connect("localhost"), BAD),
            ("CONNECT with an empty port", connect("localhost:"), BAD),
            ("CONNECT to port 0", connect("localhost:0"), BAD),
            ("CONNECT to port 65536", connect("localhost:65536"), BAD),
            ("CONNECT with an empty host", connect(":443"), BAD),
            ("CONNECT with userinfo", connect("u@localhost:443"), BAD),
            (
                "GET authority-form",
                request_line("GET localhost:80 HTTP/1.1"),
                BAD,
            ),
            ("GET relative path", request_line("GET a/b HTTP/1.1"), BAD),
        ],
    );
}

#[test]
fn absolute_form_must_name_this_host() {
    // RFC 9112 §3.2.2: a server must accept absolute-form. Its authority must be the Host
    // sent (two parties could route by either); only http and https; no userinfo, no empty
    // host (RFC 9110 §4.2).
    let (_server, probe) = hello();
    probe.run_table(
        "absolute-form",
        &[
            (
                "path and query",
                request_line("GET http://localhost/x?y HTTP/1.1"),
                OK,
            ),
            (
                "https",
                request_line("GET https://localhost/x HTTP/1.1"),
                OK,
            ),
            (
                "scheme and host in upper case",
                request_line("GET HTTP://LOCALHOST/x HTTP/1.1"),
                OK,
            ),
            (
                "empty path",
                request_line("GET http://localhost HTTP/1.1"),
                OK,
            ),
            (
                "empty path, then a query",
                request_line("GET http://localhost?y HTTP/1.1"),
                OK,
            ),
            (
                "HTTP/1.0 without Host",
                b"GET http://localhost/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec(),
                OK,
            ),
            (
                "ftp scheme",
                request_line("GET ftp://localhost/ HTTP/1.1"),
                BAD,
            ),
            (
                "one slash",
                request_line("GET http:/localhost/ HTTP/1.1"),
                BAD,
            ),
            ("empty host", request_line("GET http:///x HTTP/1.1"), BAD),
            (
                "userinfo",
                request_line("GET http://u@localhost/ HTTP/1.1"),
                BAD,
            ),
            (
                "bad port",
                request_line("GET http://localhost:8a/ HTTP/1.1"),
                BAD,
            ),
            (
                "host differs from Host",
                request_line("GET http://evil/ HTTP/1.1"),
                BAD,
            ),
            (
                "port differs from Host",
                request_line("GET http://localhost:80/ HTTP/1.1"),
                BAD,
            ),
            (
                "HTTP/1.1 without Host",
                b"GET http://localhost/ HTTP/1.1\r\n\r\n".to_vec(),
                BAD,
            ),
        ],
    );
}

#[test]
fn request_target_bytes_outside_the_uri_grammar_are_refused() {
    let (_server, probe) = hello();
    let line = |target: &[u8]| request_line_bytes(&[b"GET ", target, b" HTTP/1.1"].concat());
    probe.run_table(
        "request-target bytes",
        &[
            ("UTF-8 in the path", line(b"/caf\xc3\xa9"), BAD),
            ("UTF-8 in the query", line(b"/?q=caf\xc3\xa9"), BAD),
            ("0xff in the path", line(b"/\xff"), BAD),
            ("NUL in the path", line(b"/a\x00b"), BAD),
            ("SOH in the path", line(b"/a\x01b"), BAD),
            ("ESC in the path", line(b"/a\x1bb"), BAD),
            ("DEL in the path", line(b"/a\x7fb"), BAD),
            ("DEL in the query", line(b"/?a\x7fb"), BAD),
            ("SP in the path", line(b"/a b"), BAD),
            ("\" in the path", line(b"/a\"b"), BAD),
            ("< > in the query", line(b"/?q=<x>"), BAD),
            ("# in the path", line(b"/a#b"), BAD),
            ("# in the query", line(b"/?q#f"), BAD),
            ("backslash in the path", line(b"/a\\b"), BAD),
            ("backslash in the query", line(b"/?a\\b"), BAD),
            // Controls: what browsers send unencoded although RFC 3986 excludes it, and
            // percent-encoding (passed on as sent, never decoded): whole escapes in the path,
            // anything in the query (as nginx).
            ("[ ] | { } ^ ` tolerated", line(b"/a[]|{}^`?q[]={x}|^`"), OK),
            ("percent-encoding", line(b"/a%20b?c=%2F"), OK),
            ("malformed escape in the path", line(b"/a%zz"), BAD),
            ("escape cut short in the path", line(b"/a%4"), BAD),
            ("escape cut short by the query", line(b"/a%4?x"), BAD),
            ("% of no escape in the query", line(b"/?a=%zz&off=50%"), OK),
            (
                "every other printable byte",
                line(b"/aZ09-._~!$&'()*+,;=:@/%41?/?%"),
                OK,
            ),
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
            // uri-host [":" port] (RFC 9112 §3.2, RFC 3986): an IP literal, an IPv4 address or
            // a reg-name, a port of digits; empty and `..` refused, as nginx does too.
            (
                "Host [::1]",
                b"GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n".to_vec(),
                OK,
            ),
            (
                "Host [::1]:80",
                b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n".to_vec(),
                OK,
            ),
            (
                "Host h:",
                b"GET / HTTP/1.1\r\nHost: h:\r\n\r\n".to_vec(),
                OK,
            ),
            (
                "Host a%41",
                b"GET / HTTP/1.1\r\nHost: a%41\r\n\r\n".to_vec(),
                OK,
            ),
            (
                "Host _x",
                b"GET / HTTP/1.1\r\nHost: _x\r\n\r\n".to_vec(),
                OK,
            ),
            (
                "Host a,b;c",
                b"GET / HTTP/1.1\r\nHost: a,b;c\r\n\r\n".to_vec(),
                OK,
            ),
            (
                "Host h:99999",
                b"GET / HTTP/1.1\r\nHost: h:99999\r\n\r\n".to_vec(),
                OK,
            ),
            (
                "Host a/b",
                b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "Host a:b",
                b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "Host a@b",
                b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "Host (empty)",
                b"GET / HTTP/1.1\r\nHost: \r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "Host a..b",
                b"GET / HTTP/1.1\r\nHost: a..b\r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "Host a\\b",
                b"GET / HTTP/1.1\r\nHost: a\\b\r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "Host a?b",
                b"GET / HTTP/1.1\r\nHost: a?b\r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "Host a#b",
                b"GET / HTTP/1.1\r\nHost: a#b\r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "Host [::1",
                b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "Host h:80:90",
                b"GET / HTTP/1.1\r\nHost: h:80:90\r\n\r\n".to_vec(),
                BAD,
            ),
            (
                "Host café (UTF-8)",
                b"GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n".to_vec(),
                BAD,
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
    // Any number of empty lines (RFC 9112 §2.2: at least one SHOULD be ignored); how many is
    // bounded by the head limit and the header deadline (next test).
    let (_server, probe) = hello();
    let get = get_req("/");
    let crlfs = |n: usize| format!("{}{get}", "\r\n".repeat(n)).into_bytes();
    probe.run_table(
        "leading CRLF",
        &[
            ("one leading CRLF", crlfs(1), OK),
            ("two leading CRLFs", crlfs(2), OK),
            ("100 leading CRLFs", crlfs(100), OK),
            ("5000 leading CRLFs (10,000 bytes)", crlfs(5000), OK),
        ],
    );
    // Between pipelined requests too: every response, and the connection stays open.
    for between in ["\r\n", "\r\n\r\n\r\n"] {
        let mut c = connect(probe.addr);
        c.send(format!("{get}{between}{get}").as_bytes());
        assert_hello(&c.read_response());
        assert_hello(&c.read_response());
        c.expect_silence(Duration::from_millis(300));
        assert_hello(&c.get("/"));
    }
}

#[test]
fn empty_lines_count_towards_the_head_limit_and_deadline() {
    // Empty lines are the start of the next head: they count towards --limit-request-head
    // and start the --header-timeout clock, so they cannot hold a connection or its memory.
    let get = get_req("/");
    assert_eq!(get.len(), 35);
    let server = Server::app(
        "hello",
        &["--limit-request-head", "1035", "--header-timeout", "1"],
    );
    let probe = Probe {
        addr: server.addr(),
        echo: false,
    };
    let crlfs = |n: usize| format!("{}{get}", "\r\n".repeat(n)).into_bytes();
    probe.run_table(
        "empty lines and the head limit",
        &[
            ("head of exactly the limit", crlfs(500), OK),
            ("one CRLF more", crlfs(501), Expect::Refuse(431)),
            (
                "empty lines alone past the limit",
                "\r\n".repeat(600).into_bytes(),
                Expect::Refuse(431),
            ),
        ],
    );
    // Empty lines and then nothing: 408 within the header deadline, as for any unfinished
    // head, whether they open the connection or follow a request.
    for (what, first) in [("alone", String::new()), ("after a request", get.clone())] {
        let mut c = connect(server.addr());
        let start = Instant::now();
        c.send(format!("{first}\r\n").as_bytes());
        if !first.is_empty() {
            assert_hello(&c.read_response());
        }
        let resp = c.read_response();
        check_refusal(&resp, 408).unwrap_or_else(|e| panic!("{what}: {e}"));
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
            "{what}: 408 after {took:?}"
        );
        c.expect_closed();
    }
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
