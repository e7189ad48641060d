//! Framing and request smuggling: every way a client can make two parties disagree on where a
//! request body ends (Content-Length against Transfer-Encoding, duplicated or malformed
//! lengths, loose chunk sizes, trailers that try to set framing or routing fields) must be
//! refused with the exact status of the policy (docs/http-rules.md) and a close, or, when
//! legal, leave the connection in sync: a follow-up request on it is answered exactly.

mod common;

use common::*;
use std::time::Duration;

/// The chunked encoding of `hello`, used as the body of most cases.
const HELLO_CHUNKED: &str = "5\r\nhello\r\n0\r\n\r\n";

fn echo() -> (Server, Probe) {
    let server = Server::app("echo", &[]);
    let probe = Probe {
        addr: server.addr(),
        echo: true,
    };
    (server, probe)
}

/// `POST /framing HTTP/1.1` with Host, then `headers` (each line without its CRLF), then `body`.
fn post(headers: &[&str], body: &str) -> Vec<u8> {
    let mut out = String::from("POST /framing HTTP/1.1\r\nHost: localhost\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// A POST with `Content-Length: value` and the 5-byte body `hello`.
fn cl(value: &str) -> Vec<u8> {
    post(&[&format!("Content-Length: {value}")], "hello")
}

/// A POST with `Transfer-Encoding: value` and `hello` chunked.
fn te(value: &str) -> Vec<u8> {
    post(&[&format!("Transfer-Encoding: {value}")], HELLO_CHUNKED)
}

/// A chunked POST whose body (after the head) is exactly `body`.
fn chunked(body: &str) -> Vec<u8> {
    post(&["Transfer-Encoding: chunked"], body)
}

const OK_HELLO: Expect<'static> = Expect::Accept(b"hello");
const BAD: Expect<'static> = Expect::Refuse(400);

#[test]
fn content_length_must_be_plain_digits() {
    let (_server, probe) = echo();
    probe.run_table(
        "Content-Length syntax",
        &[
            ("empty", cl(""), BAD),
            ("only whitespace", cl("   "), BAD),
            ("plus sign", cl("+5"), BAD),
            ("minus sign", cl("-5"), BAD),
            ("hex 0x5", cl("0x5"), BAD),
            ("underscore 5_0", cl("5_0"), BAD),
            ("space between digits", cl("5 5"), BAD),
            ("tab between digits", cl("5\t5"), BAD),
            ("comma list 5,5", cl("5,5"), BAD),
            ("comma list 5, 5", cl("5, 5"), BAD),
            ("decimal 5.0", cl("5.0"), BAD),
            ("u64::MAX + 1", cl("18446744073709551616"), BAD),
            ("30 digits", cl("999999999999999999999999999999"), BAD),
            // All digits and within u64: a legal length, but over the body limit.
            ("u64::MAX", cl("18446744073709551615"), Expect::Refuse(413)),
            // Controls: 1*DIGIT with leading zeros, and optional whitespace around the value.
            ("leading zeros", cl("0005"), OK_HELLO),
            ("OWS around the value", cl(" \t5 \t"), OK_HELLO),
        ],
    );
}

#[test]
fn duplicate_content_length_is_refused() {
    let (_server, probe) = echo();
    probe.run_table(
        "duplicate Content-Length",
        &[
            (
                "identical values",
                post(&["Content-Length: 5", "Content-Length: 5"], "hello"),
                BAD,
            ),
            (
                "differing values",
                post(&["Content-Length: 5", "Content-Length: 6"], "hello!"),
                BAD,
            ),
            (
                "differing values, 0 first",
                post(&["Content-Length: 0", "Content-Length: 5"], "hello"),
                BAD,
            ),
            (
                "identical values, names in other cases",
                post(&["content-length: 5", "CONTENT-LENGTH: 5"], "hello"),
                BAD,
            ),
            (
                "identical values, apart",
                post(
                    &["Content-Length: 5", "X-Between: 1", "Content-Length: 5"],
                    "hello",
                ),
                BAD,
            ),
        ],
    );
}

#[test]
fn content_length_with_transfer_encoding_is_refused() {
    // (Content-Length first, then chunked, is in bodies.rs.)
    let (_server, probe) = echo();
    probe.run_table(
        "Content-Length + Transfer-Encoding",
        &[
            (
                "TE chunked before CL",
                post(
                    &["Transfer-Encoding: chunked", "Content-Length: 5"],
                    HELLO_CHUNKED,
                ),
                BAD,
            ),
            (
                "CL 0 with TE chunked",
                post(
                    &["Content-Length: 0", "Transfer-Encoding: chunked"],
                    HELLO_CHUNKED,
                ),
                BAD,
            ),
            (
                "CL with TE identity",
                post(
                    &["Content-Length: 5", "Transfer-Encoding: identity"],
                    "hello",
                ),
                BAD,
            ),
        ],
    );
}

#[test]
fn transfer_encoding_must_end_in_chunked() {
    let (_server, probe) = echo();
    probe.run_table(
        "Transfer-Encoding",
        &[
            ("final coding gzip", te("gzip"), BAD),
            ("final coding gzip after chunked", te("chunked, gzip"), BAD),
            ("identity", te("identity"), BAD),
            ("unknown coding xchunked", te("xchunked"), BAD),
            ("empty value", te(""), BAD),
            ("chunked twice in one line", te("chunked, chunked"), BAD),
            ("leading comma", te(", chunked"), BAD),
            ("trailing comma", te("chunked,"), BAD),
            ("control byte SOH", te("chun\x01ked"), BAD),
            ("control byte DEL", te("chunked\x7f"), BAD),
            (
                "space before the colon",
                post(&["Transfer-Encoding : chunked"], HELLO_CHUNKED),
                BAD,
            ),
            (
                "two TE lines, both chunked",
                post(
                    &["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
                    HELLO_CHUNKED,
                ),
                BAD,
            ),
            (
                "two TE lines, gzip then chunked",
                post(
                    &["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"],
                    HELLO_CHUNKED,
                ),
                BAD,
            ),
            (
                "TE in HTTP/1.0",
                format!(
                    "POST /framing HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{HELLO_CHUNKED}"
                )
                .into_bytes(),
                BAD,
            ),
            // A coding we do not implement before the final chunked: 501.
            ("gzip, chunked", te("gzip, chunked"), Expect::Refuse(501)),
            ("foo, chunked", te("foo, chunked"), Expect::Refuse(501)),
            // Controls: codings are case-insensitive, OWS around the value is not part of it.
            ("CHUNKED", te("CHUNKED"), OK_HELLO),
            ("OWS around chunked", te("  chunked \t"), OK_HELLO),
        ],
    );
}

#[test]
fn chunk_size_line_is_strict() {
    let (_server, probe) = echo();
    probe.run_table(
        "chunk-size line",
        &[
            ("empty size line", chunked("\r\nhello\r\n0\r\n\r\n"), BAD),
            ("extension only", chunked(";a=b\r\nhello\r\n0\r\n\r\n"), BAD),
            ("0x prefix", chunked("0x5\r\nhello\r\n0\r\n\r\n"), BAD),
            ("plus sign", chunked("+5\r\nhello\r\n0\r\n\r\n"), BAD),
            ("minus sign", chunked("-5\r\nhello\r\n0\r\n\r\n"), BAD),
            ("leading space", chunked(" 5\r\nhello\r\n0\r\n\r\n"), BAD),
            ("not hex", chunked("5g\r\nhello\r\n0\r\n\r\n"), BAD),
            (
                "17 hex digits, value 5",
                chunked("00000000000000005\r\nhello\r\n0\r\n\r\n"),
                BAD,
            ),
            (
                "17 hex digits, overflows u64",
                chunked("10000000000000000\r\nhello\r\n0\r\n\r\n"),
                BAD,
            ),
            (
                "bare LF after the size",
                chunked("5\nhello\r\n0\r\n\r\n"),
                BAD,
            ),
            (
                "bare CR after the size",
                chunked("5\rhello\r\n0\r\n\r\n"),
                BAD,
            ),
            (
                "no CRLF after the data",
                chunked("5\r\nhelloXX\r\n0\r\n\r\n"),
                BAD,
            ),
            (
                "data longer than the size",
                chunked("3\r\nhello\r\n0\r\n\r\n"),
                BAD,
            ),
            (
                "bare LF after the data",
                chunked("5\r\nhello\n0\r\n\r\n"),
                BAD,
            ),
            (
                "bare LF ends the trailer section",
                chunked("5\r\nhello\r\n0\r\n\n"),
                BAD,
            ),
            // 16 hex digits is legal syntax; this size is over the body limit.
            (
                "16 hex digits, huge",
                chunked("ffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
                Expect::Refuse(413),
            ),
            // Control: 16 hex digits with leading zeros.
            (
                "16 hex digits, value 5",
                chunked("0000000000000005\r\nhello\r\n0\r\n\r\n"),
                OK_HELLO,
            ),
        ],
    );
}

#[test]
fn chunk_extensions_are_capped_at_16_kib_per_body() {
    let (_server, probe) = echo();
    let ext = "x".repeat(1000);
    // 12 one-byte chunks, each with a 1 KB extension: 12 KB in total, under the cap.
    let mut under = String::new();
    for i in 0..12 {
        under.push_str(&format!("1;e{i}={ext}\r\n{}\r\n", i % 10));
    }
    under.push_str("0\r\n\r\n");
    // 20 such chunks: 20 KB of extensions in total, though each line is short.
    let mut over_total = String::new();
    for i in 0..20 {
        over_total.push_str(&format!("1;e{i}={ext}\r\n{}\r\n", i % 10));
    }
    over_total.push_str("0\r\n\r\n");
    // One 17 KiB extension on one chunk.
    let over_one = format!("5;e={}\r\nhello\r\n0\r\n\r\n", "y".repeat(17 * 1024));
    // The last chunk's extension counts as well.
    let over_last = format!("5\r\nhello\r\n0;e={}\r\n\r\n", "z".repeat(17 * 1024));
    probe.run_table(
        "chunk extensions",
        &[
            (
                "12 KB of extensions",
                chunked(&under),
                Expect::Accept(b"012345678901"),
            ),
            (
                "20 KB of extensions over 20 chunks",
                chunked(&over_total),
                BAD,
            ),
            ("17 KiB extension on one chunk", chunked(&over_one), BAD),
            (
                "17 KiB extension on the last chunk",
                chunked(&over_last),
                BAD,
            ),
        ],
    );
}

/// Every field RFC 9110 §6.5.1 keeps out of trailers, as the server lists it (src/http/body.rs
/// `FORBIDDEN_TRAILERS`), with a value of its kind.
const FORBIDDEN_TRAILERS: [&str; 25] = [
    "Content-Length: 999",
    "Transfer-Encoding: chunked",
    "Trailer: X-T",
    "Connection: close",
    "Keep-Alive: timeout=5",
    "Proxy-Connection: close",
    "TE: trailers",
    "Upgrade: h2c",
    "Host: evil",
    "Cache-Control: no-cache",
    "Expect: 100-continue",
    "Max-Forwards: 0",
    "Pragma: no-cache",
    "Range: bytes=0-1",
    "If-Match: *",
    "If-None-Match: *",
    "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT",
    "If-Unmodified-Since: Sat, 01 Jan 2000 00:00:00 GMT",
    "If-Range: x",
    "Authorization: Basic eDp5",
    "Proxy-Authorization: Basic eDp5",
    "Cookie: a=b",
    "Content-Encoding: gzip",
    "Content-Type: text/evil",
    "Content-Range: bytes 0-1/2",
];

#[test]
fn forbidden_trailer_fields_are_refused() {
    // Fields that framing, routing, authentication or the request's meaning depend on cannot
    // come after the content: a front end that acted on the header section and one that
    // looked at the trailers would disagree. Refused, not dropped.
    let (_server, probe) = echo();
    let with_trailer = |t: &str| chunked(&format!("5\r\nhello\r\n0\r\n{t}\r\n\r\n"));
    let mut cases: Vec<(String, Vec<u8>, Expect<'_>)> = FORBIDDEN_TRAILERS
        .iter()
        .map(|t| (t.to_string(), with_trailer(t), BAD))
        .collect();
    for (name, bytes, expect) in [
        (
            "names in lower case",
            with_trailer("content-length: 0"),
            BAD,
        ),
        ("names in upper case", with_trailer("HOST: evil"), BAD),
        (
            "after an allowed trailer",
            with_trailer("X-T: 1\r\nHost: evil"),
            BAD,
        ),
        // Controls: other fields, also those that only look like a forbidden one, are dropped.
        ("X-T", with_trailer("X-T: 1"), OK_HELLO),
        (
            "Content-Length-X",
            with_trailer("Content-Length-X: 1"),
            OK_HELLO,
        ),
        (
            "X-Content-Length",
            with_trailer("X-Content-Length: 1"),
            OK_HELLO,
        ),
        ("Hosts", with_trailer("Hosts: x"), OK_HELLO),
        (
            "Server-Timing",
            with_trailer("Server-Timing: db;dur=5"),
            OK_HELLO,
        ),
        ("Digest", with_trailer("Digest: sha-256=abc"), OK_HELLO),
    ] {
        cases.push((name.to_string(), bytes, expect));
    }
    let table: Vec<(&str, Vec<u8>, Expect<'_>)> = cases
        .iter()
        .map(|(n, b, e)| (n.as_str(), b.clone(), *e))
        .collect();
    probe.run_table("forbidden trailers", &table);
}

#[test]
fn other_trailers_are_checked_and_discarded() {
    let (_server, probe) = echo();
    let with_trailer = |t: &str| chunked(&format!("5\r\nhello\r\n0\r\n{t}\r\n\r\n"));
    probe.run_table(
        "trailers",
        &[
            ("one trailer", with_trailer("X-T: 1"), OK_HELLO),
            (
                "three trailers",
                with_trailer("X-A: 1\r\nX-B: 2\r\nServer-Timing: x"),
                OK_HELLO,
            ),
            // Trailers are parsed like header lines, so malformed ones are refused.
            ("trailer without a colon", with_trailer("no colon"), BAD),
            ("trailer with NUL", with_trailer("X-T: a\0b"), BAD),
            (
                "trailer continued by obs-fold",
                with_trailer("X-T: a\r\n b"),
                BAD,
            ),
        ],
    );

    // Trailers with a pipelined request in the same write: the trailers are not taken for
    // the next request, the echo keeps the request's Content-Type, the follow-up is answered
    // exactly, and nothing else comes.
    let mut c = connect(probe.addr);
    let mut batch = post(
        &["Content-Type: text/plain", "Transfer-Encoding: chunked"],
        "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Content-Type: text/evil\r\n\
         X-Content-Length: 999\r\nX-Host: evil\r\n\r\n",
    );
    batch.extend_from_slice(&post_req("/second", b"second"));
    c.send(&batch);
    let first = c.read_response();
    assert_eq!(first.status_line, "HTTP/1.1 200 OK", "{first:?}");
    assert_eq!(first.body, b"hello world", "{first:?}");
    assert_eq!(
        first.header("Content-Type"),
        Some("text/plain"),
        "{first:?}"
    );
    assert!(
        !first.closes(),
        "a trailer closed the connection: {first:?}"
    );
    let second = c.read_response();
    assert_eq!(second.status_line, "HTTP/1.1 200 OK", "{second:?}");
    assert_eq!(second.body, b"second", "{second:?}");
    c.expect_silence(Duration::from_millis(300));
    probe.follow_up(&mut c).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn valid_request_then_garbage_in_the_same_write() {
    // (A GET followed by garbage is in pipelining.rs; these put the garbage right after a body.)
    let (_server, probe) = echo();
    let cases: [(&str, Vec<u8>); 3] = [
        ("after a Content-Length body", {
            let mut v = post_req("/ok", b"hello");
            v.extend_from_slice(b"GARBAGE\r\n\r\n");
            v
        }),
        ("after a chunked body", {
            let mut v = chunked(HELLO_CHUNKED);
            v.extend_from_slice(b"\x16\x03\x01 garbage\r\n\r\n");
            v
        }),
        // The body is longer than its Content-Length: the excess is the next "request".
        (
            "excess body bytes",
            cl("5").into_iter().chain(*b"XYZ\r\n\r\n").collect(),
        ),
    ];
    for (name, bytes) in cases {
        // `cl("5")` carries the body `hello` too.
        let mut c = connect(probe.addr);
        c.send(&bytes);
        let first = c.read_response();
        assert_eq!(first.status_line, "HTTP/1.1 200 OK", "[{name}] {first:?}");
        assert_eq!(first.body, b"hello", "[{name}] {first:?}");
        let second = c.read_response();
        check_refusal(&second, 400).unwrap_or_else(|e| panic!("[{name}] {e}"));
        c.try_expect_closed()
            .unwrap_or_else(|e| panic!("[{name}] {e}"));
    }
}

#[test]
fn get_with_a_body_then_a_pipelined_get() {
    let (_server, probe) = echo();
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let cases: [(&str, &str); 2] = [
        ("plain body", "hello"),
        ("body that looks like a request", smuggled),
    ];
    for (name, body) in cases {
        let mut c = connect(probe.addr);
        let batch = format!(
            "GET /first HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}\
             GET /second HTTP/1.1\r\nHost: localhost\r\n\r\n",
            body.len()
        );
        c.send(batch.as_bytes());
        let first = c.read_response();
        assert_eq!(first.status_line, "HTTP/1.1 200 OK", "[{name}] {first:?}");
        assert_eq!(first.body, body.as_bytes(), "[{name}] {first:?}");
        let second = c.read_response();
        assert_eq!(second.status_line, "HTTP/1.1 200 OK", "[{name}] {second:?}");
        assert_eq!(second.body, b"", "[{name}] {second:?}");
        // Exactly two responses, and the connection is still open and in sync.
        c.expect_silence(Duration::from_millis(300));
        probe
            .follow_up(&mut c)
            .unwrap_or_else(|e| panic!("[{name}] {e}"));
    }
}
