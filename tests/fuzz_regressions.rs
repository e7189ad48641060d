//! Inputs found by fuzzing the sans-IO connection (`fuzz/`, target `connection`), minimised,
//! each asserting the correct behaviour; and a few inputs from the fuzz corpus that reach deep
//! states (pipelined + chunked + split + 100-continue + output high-water), with the exact
//! expected output.
//!
//! Driven as the worker drives a socket: flush output before receiving, stop once the
//! connection wants to close. The `Server`/`Date` block is removed from outputs.

mod common;

use ringcorn::http::{Connection, Context, Limits, Want};
use ringcorn::{Request, Response};

/// Echo the body with the path in `X-Path`; `/big` is answered with 32 KiB (as in the fuzz
/// target: small requests, big responses).
fn echo(req: &Request<'_>, res: &mut Response<'_>) {
    res.header("X-Path", req.path());
    if req.path() == "/big" {
        res.body(vec![b'x'; 32 * 1024]);
    } else {
        res.body(req.body());
    }
}

/// Feed `pieces`, one read each; return what was sent (Date block removed) and want() at the end.
fn run(limits: Limits, pieces: &[&[u8]]) -> (String, Want) {
    common::drive_sans_io(limits, echo, pieces)
}

/// `bytes` in reads of `sizes`, cycled.
fn cycled<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut reads = Vec::new();
    let mut rest = bytes;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at(size.min(rest.len()));
        reads.push(a);
        rest = b;
    }
    reads
}

/// `bytes` split at `at` into two reads.
fn split(bytes: &[u8], at: usize) -> [&[u8]; 2] {
    let (a, b) = bytes.split_at(at);
    [a, b]
}

fn ok(path: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nX-Path: {path}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn ok_close(path: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nX-Path: {path}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn refused(code: u16, reason: &str) -> String {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{reason}",
        reason.len()
    )
}

/// The fuzz target's "small" limits.
fn small() -> Limits {
    Limits {
        max_request_line: 64,
        max_header_line: 64,
        max_head: 256,
        max_header_count: 8,
        max_body: 256,
        body_buffer: 64,
        max_chunk_extensions: 32,
    }
}

/// The fuzz target's "tiny" limits.
fn tiny() -> Limits {
    Limits {
        max_request_line: 24,
        max_header_line: 16,
        max_head: 48,
        max_header_count: 2,
        max_body: 8,
        body_buffer: 2,
        max_chunk_extensions: 4,
    }
}

// ---------------------------------------------------------------------------------------------
// Findings

/// Finding 1 (fuzz input `\x01\x00\x01\x0aG o HTTP/0.1`: small limits, reads of 11 + 1 bytes).
/// A version token cut by a read boundary (`HTTP/0.` then `1`) was classified on the partial
/// token: 400, where the whole token gets 505.
#[test]
fn version_token_cut_by_a_read_is_still_505() {
    let input: &[u8] = b"G o HTTP/0.1\r\n\r\n";
    let expected = (refused(505, "HTTP Version Not Supported"), Want::Close);
    assert_eq!(run(small(), &[input]), expected);
    for at in 1..input.len() {
        assert_eq!(run(small(), &split(input, at)), expected, "split at {at}");
    }
    // The minimised input, without a line end: whatever the answer (505, or waiting for the
    // end of the line), it is the same in one read or two.
    let input: &[u8] = b"G o HTTP/0.1";
    assert_eq!(run(small(), &split(input, 11)), run(small(), &[input]));
}

/// Finding 5 (fuzz input `0 0 0 `, default limits, byte by byte; first seen as
/// `GET /tneT HTP/1.0 `), in the fix of finding 1: a request line whose version token is
/// already complete and wrong (`0`, then a space) waited for more bytes when it arrived in one
/// read (the token after the *last* space, empty, "could still become HTTP/x.y"), and got 400
/// when it arrived byte by byte. It is garbage either way: 400 + close at once.
#[test]
fn bad_version_followed_by_a_space_is_400_however_split() {
    let expected = (refused(400, "Bad Request"), Want::Close);
    for input in [&b"0 0 0 "[..], b"GET /tneT HTP/1.0 "] {
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let what = String::from_utf8_lossy(input);
        assert_eq!(run(Limits::default(), &[input]), expected, "{what:?} whole");
        assert_eq!(
            run(Limits::default(), &bytes),
            expected,
            "{what:?} byte by byte"
        );
    }
}

/// Finding 1, as the spec states it: `HTTP/2.0` (and the HTTP/2 preface) get 505 + close,
/// wherever the reads split the version.
#[test]
fn http2_version_gets_505_however_split() {
    let expected = (refused(505, "HTTP Version Not Supported"), Want::Close);
    for input in [
        &b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        for at in 1..input.len() {
            assert_eq!(
                run(Limits::default(), &split(input, at)),
                expected,
                "{:?} split at {at}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

/// Finding 2 (fuzz input: default limits, reads of 69 + 1 + 2 bytes). An HTTP/1.0 request
/// with `Expect: 100-continue` got `100 Continue`; RFC 9110 §10.1.1: a server that receives
/// 100-continue in an HTTP/1.0 request MUST ignore it.
#[test]
fn no_100_continue_to_http10() {
    let input: &[u8] =
        b"PUT /u HTTP/1.0\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n \nU";
    let (out, want) = run(
        Limits::default(),
        &[&input[..69], &input[69..70], &input[70..]],
    );
    assert_eq!(out, ok_close("/u", " \nU"));
    assert_eq!(want, Want::Close);
}

/// Finding 3 (fuzz input: tiny limits, reads of 5, 1, 9, 5, 1, 9, 5, 1, 9, 1 bytes). A field
/// line of exactly `max_header_line` (name + ": " + value = 16 bytes) is accepted when the head
/// arrives whole, but refused with 431 when a read ends between its CR and the end of the head:
/// the partial-head check counted the CR (and any whitespace around the value).
#[test]
fn field_line_at_the_limit_is_accepted_however_split() {
    let input: &[u8] = b"POS /c HTTP/1.1\r\nHost: h\r\nTransH1.nt: seed\r\n\r\n";
    let reads = cycled(input, &[5, 1, 9]);
    assert_eq!(run(tiny(), &reads), (ok("/c", ""), Want::Read));
    for at in 1..input.len() {
        assert_eq!(
            run(tiny(), &split(input, at)),
            (ok("/c", ""), Want::Read),
            "split at {at}"
        );
    }
}

/// Finding 3, the request line: a request line of exactly `max_request_line` bytes is
/// accepted whatever the reads (the partial check counted its CR: 414).
#[test]
fn request_line_at_the_limit_is_accepted_however_split() {
    let input: &[u8] = b"GET /abcdefghijklm HTTP/1.1\r\nHost: h\r\n\r\n";
    let limits = Limits {
        max_request_line: "GET /abcdefghijklm HTTP/1.1".len(),
        ..Limits::default()
    };
    for at in 1..input.len() {
        assert_eq!(
            run(limits.clone(), &split(input, at)),
            (ok("/abcdefghijklm", ""), Want::Read),
            "split at {at}"
        );
    }
}

/// Finding 3, whitespace around a field value: whether it counts towards `max_header_line`
/// (the spec says name + ": " + value; counting the raw line is stricter), the answer must not
/// depend on the reads. With the limit at the raw line's length, it passes either way.
#[test]
fn whitespace_around_a_value_same_answer_however_split() {
    let input: &[u8] = b"GET / HTTP/1.1\r\nHost: h\r\nX-Abcdefgh:  1234 \t \r\n\r\n";
    let raw = Limits {
        max_header_line: "X-Abcdefgh:  1234 \t ".len(),
        ..Limits::default()
    };
    let field = Limits {
        max_header_line: "X-Abcdefgh: 1234".len(),
        ..Limits::default()
    };
    assert_eq!(run(raw.clone(), &[input]), (ok("/", ""), Want::Read));
    let whole = run(field.clone(), &[input]);
    for at in 1..input.len() {
        assert_eq!(
            run(raw.clone(), &split(input, at)),
            (ok("/", ""), Want::Read),
            "split at {at}"
        );
        assert_eq!(
            run(field.clone(), &split(input, at)),
            whole,
            "split at {at}"
        );
    }
}

/// Found by the property test `requests_exactly_at_the_limits_pass_any_split` (limits at the
/// stream's largest line): a trailer field line of exactly `max_header_line` bytes is refused
/// with 431; the chunked decoder counts the line's CR too.
#[test]
fn trailer_line_at_the_limit_is_accepted() {
    let input: &[u8] = b"POST /t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
        3\r\nabc\r\n0\r\nX-Long-Trailer: 0123456789ab\r\n\r\n";
    let limits = Limits {
        max_header_line: "X-Long-Trailer: 0123456789ab".len(),
        ..Limits::default()
    };
    assert_eq!(run(limits, &[input]), (ok("/t", "abc"), Want::Read));
}

/// Finding 4 (fuzz input `E / HTTP/1.1\r\nHost:\r\nContent-Length: 5\r\n\r\nlo`: small
/// limits, byte by byte: 16 KiB held after 44 bytes received). While a Content-Length body is
/// awaited, every `recv_buf` doubled the input buffer (up to `2 * max_head + max_body + 16 KiB`,
/// ~1.1 MB with the default limits, 2 MiB of capacity): a 10-byte body trickled one byte per
/// read made the connection hold 2 MiB. The buffer should hold the request, not grow per read.
#[test]
fn trickled_body_does_not_grow_the_buffer() {
    let mut ctx = Context::default();
    let mut conn = Connection::new();
    let mut handler = echo;
    let head: &[u8] = b"POST /t HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n";
    assert_eq!(conn.receive(head, &ctx), head.len());
    conn.process(&mut handler, &mut ctx);
    for i in 0..10 {
        assert_eq!(conn.want(), Want::Read);
        assert_eq!(conn.receive(b"x", &ctx), 1);
        conn.process(&mut handler, &mut ctx);
        // The whole request (60 bytes) fits the first 4 KiB read buffer; the response is small.
        assert!(
            conn.buffered_bytes() <= 8 * 1024,
            "{} bytes held after {} body bytes of 10",
            conn.buffered_bytes(),
            i + 1
        );
    }
    assert_eq!(conn.want(), Want::Write);
    let date = std::str::from_utf8(ctx.date.header_block()).expect("ascii");
    let out = String::from_utf8_lossy(conn.output()).replace(date, "");
    assert_eq!(out, ok("/t", "xxxxxxxxxx"));
}

/// Finding 4 as the fuzzer saw it (small limits): never more than a few KiB for a 44-byte
/// request, however it is split.
#[test]
fn trickled_body_small_limits() {
    let input: &[u8] = b"E / HTTP/1.1\r\nHost:\r\nContent-Length: 5\r\n\r\nlo";
    let mut ctx = Context::new(small());
    let mut conn = Connection::new();
    let mut handler = echo;
    for (i, byte) in input.chunks(1).enumerate() {
        assert_eq!(conn.receive(byte, &ctx), 1);
        conn.process(&mut handler, &mut ctx);
        assert!(
            conn.buffered_bytes() <= 8 * 1024,
            "{} bytes held after {} bytes received",
            conn.buffered_bytes(),
            i + 1
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Deep states from the corpus (these pass; they pin the exact behaviour)

/// Pipelined: chunked with extensions and trailers (dropped, not merged), 100-continue
/// split right after the head, HTTP/1.0 keep-alive, HEAD, close with a request after it;
/// reads of 2, 31, 5, 64 and 1 bytes, cycled, as in the corpus.
#[test]
fn pipelined_chunked_continue_split() {
    let input: &[u8] = b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n\
        POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
        4\r\nWiki\r\n5;name=val\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Content-Length: 999\r\nX-Host: evil\r\n\r\n\
        GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
        PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc\
        HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n\
        GET /bye HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n\
        GET /never HTTP/1.1\r\nHost: h\r\n\r\n";
    // One read ends right after the PUT's head: its body is not there yet.
    let put = b"Content-Length: 3\r\n\r\n";
    let head_end = input
        .windows(put.len())
        .position(|w| w == put)
        .expect("PUT")
        + put.len();
    let mut reads = cycled(&input[..head_end], &[2, 31, 5, 64, 1]);
    reads.extend(cycled(&input[head_end..], &[2, 31, 5, 64, 1]));
    let expected = [
        ok("/a", ""),
        ok("/c", "Wikipedia in\r\n\r\nchunks."),
        "HTTP/1.1 200 OK\r\nX-Path: /ten\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
            .to_string(),
        // The 100 goes out while the body is still on its way (the read ends at the head).
        "HTTP/1.1 100 Continue\r\n\r\n".to_string(),
        ok("/u", "abc"),
        "HTTP/1.1 200 OK\r\nX-Path: /h\r\nContent-Length: 0\r\n\r\n".to_string(),
        ok_close("/bye", ""),
    ]
    .concat();
    assert_eq!(
        run(Limits::default(), &reads),
        (expected.clone(), Want::Close)
    );
    // In one read the body is there with the head: no 100, the rest identical.
    assert_eq!(
        run(Limits::default(), &[input]),
        (
            expected.replace("HTTP/1.1 100 Continue\r\n\r\n", ""),
            Want::Close
        )
    );
}

/// Chunked body split byte by byte under small limits: extensions up to the limit are fine,
/// then a body over `max_body` is refused as soon as a chunk size passes it (413), with the
/// first request answered.
#[test]
fn chunked_byte_by_byte_then_too_large() {
    let input: &[u8] = b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
        1;a=b\r\nx\r\n2;c\r\nyz\r\n0\r\n\r\n\
        POST /d HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
        1ff\r\n0123456789";
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    let expected = ok("/c", "xyz") + &refused(413, "Content Too Large");
    assert_eq!(run(small(), &bytes), (expected.clone(), Want::Close));
    assert_eq!(run(small(), &[input]), (expected, Want::Close));
}

/// Six pipelined `/big` requests in one read: 192 KiB of responses, answered in batches at the
/// output high-water mark (64 KiB) and all in order; then a garbage line gets 400 and close.
#[test]
fn pipelined_big_responses_past_the_high_water_mark() {
    let mut input = b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n".repeat(6);
    input.extend_from_slice(b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\nGARBAGE\r\n\r\n");
    let big = "x".repeat(32 * 1024);
    let expected = ok("/big", &big).repeat(6)
        + "HTTP/1.1 200 OK\r\nX-Path: /h\r\nContent-Length: 0\r\n\r\n"
        + &refused(400, "Bad Request");
    for reads in [vec![input.as_slice()], input.chunks(200).collect()] {
        assert_eq!(
            run(Limits::default(), &reads),
            (expected.clone(), Want::Close)
        );
    }
}

/// A GET with a Content-Length body, then leading CRLFs, then a pipelined GET: exactly two
/// responses (the body is not taken for a request), however split.
#[test]
fn get_with_body_then_crlf_then_get() {
    let input: &[u8] =
        b"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nGET /\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    let expected = (ok("/a", "GET /") + &ok("/b", ""), Want::Read);
    for at in 1..input.len() {
        assert_eq!(
            run(Limits::default(), &split(input, at)),
            expected,
            "split at {at}"
        );
    }
}

/// `fuzz/run.sh` (README, Fuzzing) starts from these directories on a fresh clone: the seeds
/// and the minimised corpus are committed, not left to a run to create.
#[test]
fn fuzz_seeds_and_minimised_corpus_are_in_the_tree() {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for dir in ["seeds/connection", "corpus-min/connection"] {
        let path = fuzz.join(dir);
        let files = std::fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .filter(|e| e.as_ref().is_ok_and(|e| e.path().is_file()))
            .count();
        assert!(files > 0, "{} is empty", path.display());
    }
}
