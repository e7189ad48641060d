//! The request-target, trailer and empty-line rules (docs/http-rules.md) through the sans-IO
//! connection: what a handler sees of each target form (`Request::path`, `query`, `Host`), and
//! that each new refusal is the same however the bytes are split into reads. The same rules
//! over real sockets: tests/syntax.rs (targets, empty lines) and tests/framing.rs (trailers).

use std::cell::RefCell;

mod common;

use ringcorn::http::{Limits, Want};
use ringcorn::{Request, Response};

/// What the handler saw of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    host: Option<String>,
}

thread_local! {
    static SEEN: RefCell<Vec<Seen>> = const { RefCell::new(Vec::new()) };
}

fn record(req: &Request<'_>, res: &mut Response<'_>) {
    SEEN.with(|s| {
        s.borrow_mut().push(Seen {
            method: req.method().to_string(),
            path: req.path().to_string(),
            query: req.query().map(str::to_string),
            host: req
                .header("host")
                .map(|h| String::from_utf8_lossy(h).into_owned()),
        })
    });
    res.header("X-Path", req.path()).body(req.body());
}

/// Feed `pieces`, one read each, as the worker does; return what was sent (Date block
/// removed), want() at the end, and what the handler saw.
fn run(limits: Limits, pieces: &[&[u8]]) -> (String, Want, Vec<Seen>) {
    SEEN.with(|s| s.borrow_mut().clear());
    let (out, want) = common::drive_sans_io(limits, record, pieces);
    (out, want, SEEN.with(|s| s.borrow().clone()))
}

fn seen(method: &str, path: &str, query: Option<&str>, host: Option<&str>) -> Seen {
    Seen {
        method: method.into(),
        path: path.into(),
        query: query.map(Into::into),
        host: host.map(Into::into),
    }
}

fn ok(path: &str) -> String {
    format!("HTTP/1.1 200 OK\r\nX-Path: {path}\r\nContent-Length: 0\r\n\r\n")
}

fn refused(code: u16, reason: &str) -> String {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{reason}",
        reason.len()
    )
}

/// `path()` of absolute-form is the path part alone (`/` when empty), `query()` its query;
/// the authority is in `Host`, which must match it. `OPTIONS *` is seen as `*`.
#[test]
fn what_handlers_see_of_each_target_form() {
    let cases: [(&[u8], Seen); 9] = [
        (
            b"GET /caf%C3%A9/%2fx%41 HTTP/1.1\r\nHost: localhost\r\n\r\n",
            seen("GET", "/caf%C3%A9/%2fx%41", None, Some("localhost")),
        ),
        (
            // A query's `%` need not begin an escape (nginx passes it too).
            b"GET /p%20q?off=50%&x=%zz HTTP/1.1\r\nHost: localhost\r\n\r\n",
            seen("GET", "/p%20q", Some("off=50%&x=%zz"), Some("localhost")),
        ),
        (
            b"GET /a/b?x=1?y HTTP/1.1\r\nHost: localhost\r\n\r\n",
            seen("GET", "/a/b", Some("x=1?y"), Some("localhost")),
        ),
        (
            b"GET http://localhost/x?y HTTP/1.1\r\nHost: localhost\r\n\r\n",
            seen("GET", "/x", Some("y"), Some("localhost")),
        ),
        (
            b"GET HTTPS://LocalHost:8443/x/ HTTP/1.1\r\nHost: localhost:8443\r\n\r\n",
            seen("GET", "/x/", None, Some("localhost:8443")),
        ),
        (
            b"GET http://localhost HTTP/1.1\r\nHost: localhost\r\n\r\n",
            seen("GET", "/", None, Some("localhost")),
        ),
        (
            b"GET http://localhost?y HTTP/1.1\r\nHost: localhost\r\n\r\n",
            seen("GET", "/", Some("y"), Some("localhost")),
        ),
        (
            b"GET http://localhost/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            seen("GET", "/x", None, None),
        ),
        (
            b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n",
            seen("OPTIONS", "*", None, Some("localhost")),
        ),
    ];
    for (input, want) in cases {
        let (out, end, calls) = run(Limits::default(), &[input]);
        let shown = String::from_utf8_lossy(input);
        assert_eq!(calls, vec![want.clone()], "{shown}");
        assert!(
            out.starts_with(&format!("HTTP/1.1 200 OK\r\nX-Path: {}\r\n", want.path)),
            "{shown}: {out}"
        );
        assert_eq!(end, Want::Read, "{shown}");
    }
}

/// Each new refusal, behind a valid request in the same stream: the valid one is answered,
/// then the refusal, then the connection closes; the same however the stream is split in two
/// reads, and byte by byte.
#[test]
fn new_refusals_are_the_same_however_split() {
    let get: &[u8] = b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n";
    let chunked = |trailer: &str| {
        format!(
            "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
             3\r\nabc\r\n0\r\nX-T: 1\r\n{trailer}\r\n\r\n"
        )
        .into_bytes()
    };
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "non-ASCII in the target",
            b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            refused(400, "Bad Request"),
        ),
        (
            "a malformed escape in the path",
            b"GET /a%zz HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            refused(400, "Bad Request"),
        ),
        (
            "an escape cut short at the end of the path",
            b"GET /a%4 HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            refused(400, "Bad Request"),
        ),
        (
            "an escape cut short before the query",
            b"GET /a%4?x HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            refused(400, "Bad Request"),
        ),
        (
            "# in the query",
            b"GET /?a#b HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            refused(400, "Bad Request"),
        ),
        (
            "GET *",
            b"GET * HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            refused(400, "Bad Request"),
        ),
        (
            "CONNECT",
            b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n".to_vec(),
            refused(501, "Not Implemented"),
        ),
        (
            "CONNECT origin-form",
            b"CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            refused(400, "Bad Request"),
        ),
        (
            "absolute-form for another host",
            b"GET http://evil/ HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            refused(400, "Bad Request"),
        ),
        (
            "Content-Length trailer",
            chunked("Content-Length: 3"),
            refused(400, "Bad Request"),
        ),
        (
            "Host trailer",
            chunked("host: evil"),
            refused(400, "Bad Request"),
        ),
        (
            "Authorization trailer",
            chunked("AUTHORIZATION: x"),
            refused(400, "Bad Request"),
        ),
    ];
    for (name, bad, refusal) in cases {
        let input = [get, &bad].concat();
        let expected = (ok("/first") + &refusal, Want::Close);
        let check = |reads: &[&[u8]], how: &str| {
            let (out, want, calls) = run(Limits::default(), reads);
            assert_eq!((out, want), expected, "{name}, {how}");
            assert_eq!(calls.len(), 1, "{name}, {how}: {calls:?}");
        };
        check(&[&input], "one read");
        for at in 1..input.len() {
            let (a, b) = input.split_at(at);
            check(&[a, b], &format!("split at {at}"));
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        check(&bytes, "byte by byte");
    }
}

/// Empty lines between pipelined requests are skipped however they arrive; they count towards
/// the head of the request they precede (the limit is `max_head`).
#[test]
fn empty_lines_however_split_and_within_the_head_limit() {
    let limits = Limits {
        max_head: 100,
        ..Limits::default()
    };
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
    // "GET /b HTTP/1.1\r\nHost: h\r\n\r\n" is 28 bytes: 36 CRLFs make its head 100 bytes.
    assert_eq!(get("/b").len(), 28);
    let fits = format!("{}\r\n{}{}", get("/a"), "\r\n".repeat(35), get("/b"));
    let expected = (ok("/a") + &ok("/b"), Want::Read);
    let check = |input: &str, expected: &(String, Want), how: &str| {
        let input = input.as_bytes();
        let (out, want, _) = run(limits.clone(), &[input]);
        assert_eq!(&(out, want), expected, "{how}, one read");
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let (out, want, _) = run(limits.clone(), &bytes);
        assert_eq!(&(out, want), expected, "{how}, byte by byte");
        for at in 1..input.len() {
            let (a, b) = input.split_at(at);
            let (out, want, _) = run(limits.clone(), &[a, b]);
            assert_eq!(&(out, want), expected, "{how}, split at {at}");
        }
    };
    check(&fits, &expected, "at the limit");
    let over = format!("{}\r\n\r\n{}{}", get("/a"), "\r\n".repeat(35), get("/b"));
    check(
        &over,
        &(
            ok("/a") + &refused(431, "Request Header Fields Too Large"),
            Want::Close,
        ),
        "one CRLF over",
    );
}
