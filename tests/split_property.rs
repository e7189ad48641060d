//! Property: however a valid pipelined byte stream is split into reads, the connection answers
//! it the same way, byte for byte: one response per request, in order, each echoing its body.
//!
//! Streams hold 1–20 requests of random kinds: GET/HEAD with random paths, queries and headers
//! (some with a Content-Length body), POST with a Content-Length body, POST with a chunked body
//! (random chunk sizes, hex case, leading zeros, extensions, trailers that must be ignored),
//! HTTP/1.0 keep-alive, `Expect: 100-continue`, leading CRLFs; the last request may close.
//! Each stream is fed (a) in one piece, (b) split at random points, (c) byte by byte (short
//! streams), through the sans-IO `Connection` as the worker drives it, and (d) split, with every
//! request handed over as a job and answered from it, as `--threads` does.
//!
//! Cases: 128 by default, from a fixed seed so CI is deterministic. Explore more with e.g.
//! `PROPTEST_CASES=2000 PROPTEST_RNG_SEED=7 cargo test --release --test split_property`.

use std::cell::RefCell;
use std::rc::Rc;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed};
use ringcorn::http::{Connection, Context, Defer, Limits, Want};
use ringcorn::{Request, Response};

const CASES: u32 = 128;
const SEED: u64 = 0x5EED_F0A1_1571;
/// Byte-by-byte feeding re-parses the head on every byte; keep it to short streams.
const BYTEWISE_MAX: usize = 16 * 1024;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

// ---------------------------------------------------------------------------------------------
// The requests

#[derive(Debug, Clone)]
struct Chunk {
    data: Vec<u8>,
    /// Hex digits in upper case.
    upper: bool,
    /// Leading zeros of the size (16 digits at most in all).
    zeros: usize,
    /// `;ext...` after the size, with optional whitespace before it.
    ext: String,
}

#[derive(Debug, Clone)]
enum Body {
    /// No framing header.
    None,
    Length(Vec<u8>),
    Chunked {
        chunks: Vec<Chunk>,
        /// Zeros of the last chunk (1..=3) and its extension.
        last_zeros: usize,
        last_ext: String,
        /// Trailer lines, complete with their CRLF: parsed, then discarded.
        trailers: Vec<String>,
    },
}

impl Body {
    fn decoded(&self) -> Vec<u8> {
        match self {
            Body::None => Vec::new(),
            Body::Length(b) => b.clone(),
            Body::Chunked { chunks, .. } => chunks.iter().flat_map(|c| c.data.clone()).collect(),
        }
    }
}

#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    path: String,
    query: Option<String>,
    http10: bool,
    /// Extra header fields (name, value, OWS before, OWS after); Host goes at `host_at`.
    headers: Vec<(String, String, &'static str, &'static str)>,
    host: Option<String>,
    host_at: Index,
    /// `Connection:` value sent, if any (`keep-alive` in some case, or `close`).
    connection: Option<String>,
    expect: bool,
    body: Body,
    /// CRLFs before the request line (ignored by the server).
    leading_crlf: usize,
}

impl Req {
    fn closes(&self) -> bool {
        match &self.connection {
            Some(c) if c.eq_ignore_ascii_case("close") => true,
            Some(_) => false,
            None => self.http10,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        self.encode_head(out);
        self.encode_body(out);
    }

    fn target(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    fn encode_head(&self, out: &mut Vec<u8>) {
        for _ in 0..self.leading_crlf {
            out.extend_from_slice(b"\r\n");
        }
        let target = self.target();
        let version = if self.http10 { "1.0" } else { "1.1" };
        out.extend_from_slice(format!("{} {target} HTTP/{version}\r\n", self.method).as_bytes());
        let mut lines: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v, before, after)| format!("{n}:{before}{v}{after}\r\n"))
            .collect();
        if let Some(host) = &self.host {
            let at = self.host_at.index(lines.len() + 1);
            lines.insert(at, format!("Host: {host}\r\n"));
        }
        if let Some(c) = &self.connection {
            lines.push(format!("Connection: {c}\r\n"));
        }
        if self.expect {
            lines.push("Expect: 100-continue\r\n".into());
        }
        match &self.body {
            Body::None => {}
            Body::Length(b) => lines.push(format!("Content-Length: {}\r\n", b.len())),
            Body::Chunked { .. } => lines.push("Transfer-Encoding: chunked\r\n".into()),
        }
        for line in lines {
            out.extend_from_slice(line.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        match &self.body {
            Body::None => {}
            Body::Length(b) => out.extend_from_slice(b),
            Body::Chunked {
                chunks,
                last_zeros,
                last_ext,
                trailers,
            } => {
                for c in chunks {
                    let hex = if c.upper {
                        format!("{:X}", c.data.len())
                    } else {
                        format!("{:x}", c.data.len())
                    };
                    let zeros = c.zeros.min(16 - hex.len());
                    out.extend_from_slice(
                        format!("{}{hex}{}\r\n", "0".repeat(zeros), c.ext).as_bytes(),
                    );
                    out.extend_from_slice(&c.data);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(
                    format!("{}{last_ext}\r\n", "0".repeat(*last_zeros)).as_bytes(),
                );
                for t in trailers {
                    out.extend_from_slice(t.as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// What the echo handler must see.
    fn seen(&self) -> Seen {
        let mut headers: Vec<(String, Vec<u8>)> = self
            .headers
            .iter()
            .map(|(n, v, _, _)| (n.clone(), v.as_bytes().to_vec()))
            .collect();
        if let Some(host) = &self.host {
            let at = self.host_at.index(headers.len() + 1);
            headers.insert(at, ("Host".into(), host.as_bytes().to_vec()));
        }
        if let Some(c) = &self.connection {
            headers.push(("Connection".into(), c.as_bytes().to_vec()));
        }
        if self.expect {
            headers.push(("Expect".into(), b"100-continue".to_vec()));
        }
        match &self.body {
            Body::None => {}
            Body::Length(b) => {
                headers.push(("Content-Length".into(), b.len().to_string().into_bytes()))
            }
            Body::Chunked { .. } => headers.push(("Transfer-Encoding".into(), b"chunked".to_vec())),
        }
        Seen {
            method: self.method.to_string(),
            path: self.path.clone(),
            query: self.query.clone(),
            version: if self.http10 { 0 } else { 1 },
            headers,
            body: self.body.decoded(),
        }
    }

    /// The exact response the echo handler gets, `date` being the Server/Date block.
    fn response(&self, date: &[u8], close: bool) -> Vec<u8> {
        let body = reply_body(&self.path, &self.body.decoded());
        let mut r = b"HTTP/1.1 200 OK\r\n".to_vec();
        r.extend_from_slice(date);
        r.extend_from_slice(format!("X-Path: {}\r\n", self.path).as_bytes());
        r.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        if close {
            r.extend_from_slice(b"Connection: close\r\n");
        } else if self.http10 {
            r.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        r.extend_from_slice(b"\r\n");
        if self.method != "HEAD" {
            r.extend_from_slice(&body);
        }
        r
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..max),
        // Now and then a bigger one, spanning several reads.
        1 => (any::<u8>(), 2000..8000usize).prop_map(|(b, n)| vec![b; n]),
    ]
}

fn ows() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", " ", " ", "  ", "\t", " \t"])
}

fn header() -> impl Strategy<Value = (String, String, &'static str, &'static str)> {
    (
        "X-[A-Za-z0-9-]{1,12}",
        // Visible characters, with spaces and tabs inside only.
        "[!-~]([ \t!-~]{0,30}[!-~])?",
        ows(),
        ows(),
    )
}

fn extension() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-z]{1,6}".prop_map(|n| format!(";{n}")),
            ("[a-z]{1,6}", "[a-zA-Z0-9]{1,8}").prop_map(|(n, v)| format!(";{n}={v}")),
            ("[a-z]{1,6}", "[a-z ]{0,8}").prop_map(|(n, v)| format!(";{n}=\"{v}\"")),
        ],
        0..3,
    )
    .prop_flat_map(|exts| {
        let ext = exts.concat();
        prop::sample::select(vec!["", " ", "\t"]).prop_map(move |ws| {
            if ext.is_empty() {
                String::new()
            } else {
                format!("{ws}{ext}")
            }
        })
    })
}

fn chunked() -> impl Strategy<Value = Body> {
    let chunk = (
        prop_oneof![
            4 => prop::collection::vec(any::<u8>(), 1..64),
            1 => (any::<u8>(), 1..5000usize).prop_map(|(b, n)| vec![b; n]),
        ],
        any::<bool>(),
        prop_oneof![3 => Just(0usize), 1 => 1..14usize],
        extension(),
    )
        .prop_map(|(data, upper, zeros, ext)| Chunk {
            data,
            upper,
            zeros,
            ext,
        });
    let trailer = prop_oneof![
        ("X-T[a-z]{0,6}", "[!-~]{1,60}").prop_map(|(n, v)| format!("{n}: {v}\r\n")),
        // Trailers named like framing and routing fields must change nothing (the fields
        // themselves are refused: tests/framing.rs `forbidden_trailer_fields_are_refused`).
        Just("X-Content-Length: 999\r\n".to_string()),
        Just("Hosts: evil\r\n".to_string()),
        Just("Transfer-Encodings: gzip\r\n".to_string()),
    ];
    (
        prop::collection::vec(chunk, 0..6),
        1..=3usize,
        extension(),
        prop::collection::vec(trailer, 0..3),
    )
        .prop_map(|(chunks, last_zeros, last_ext, trailers)| Body::Chunked {
            chunks,
            last_zeros,
            last_ext,
            trailers,
        })
}

/// Path segments of unreserved bytes and whole escapes (a `%` in the path must begin one);
/// the query may hold a lone `%`.
fn path() -> impl Strategy<Value = String> {
    "(/([a-zA-Z0-9._~-]|%[0-9A-Fa-f]{2}){0,10}){1,4}"
}

fn query() -> impl Strategy<Value = Option<String>> {
    prop::option::of("[a-zA-Z0-9=&%._-]{0,16}")
}

/// A valid Host: dot-separated labels (no empty one: `..` is refused), an optional port.
fn host() -> impl Strategy<Value = String> {
    "[a-z0-9-]{1,8}(\\.[a-z0-9-]{1,8}){0,2}(:[0-9]{1,5})?"
}

/// A keep-alive request of any kind.
fn request() -> impl Strategy<Value = Req> {
    let common = (
        path(),
        query(),
        prop::collection::vec(header(), 0..6),
        host(),
        any::<Index>(),
        0..3usize,
        prop::option::of(prop::sample::select(vec![
            "keep-alive".to_string(),
            "Keep-Alive".to_string(),
        ])),
    );
    let kind = prop_oneof![
        3 => // GET/HEAD, now and then with a Content-Length body (a pipelined GET follows it).
        (
            prop::sample::select(vec!["GET", "HEAD"]),
            prop_oneof![3 => Just(None), 1 => bytes(100).prop_map(Some)],
        )
            .prop_map(|(m, b)| (m, false, false, b.map_or(Body::None, Body::Length))),
        3 => (any::<bool>(), bytes(300)).prop_map(|(e, b)| ("POST", false, e, Body::Length(b))),
        3 => (any::<bool>(), chunked()).prop_map(|(e, b)| ("POST", false, e, b)),
        // HTTP/1.0 keep-alive (no chunked in 1.0; Host optional).
        2 => (prop::sample::select(vec!["GET", "HEAD", "POST"]), bytes(200))
            .prop_map(|(m, b)| (m, true, false, Body::Length(b))),
        // Bulk bodies, spanning many reads and growing the input buffer.
        1 => (any::<u8>(), 20_000..40_000usize)
            .prop_map(|(b, n)| ("PUT", false, false, Body::Length(vec![b; n]))),
        // Big responses to small requests (see reply_body).
        3 => Just(("GET", false, false, Body::None)),
    ];
    (common, kind, any::<bool>(), 5_000..30_000usize).prop_map(
        |(
            (path, query, headers, host, host_at, leading_crlf, conn),
            (method, http10, expect, body),
            host10,
            big,
        )| {
            let path = if method == "GET" && !http10 && matches!(body, Body::None) && big % 2 == 0 {
                format!("/big/{big}")
            } else {
                path
            };
            Req {
                method,
                path,
                query,
                http10,
                headers,
                host: (!http10 || host10).then_some(host),
                host_at,
                connection: if http10 {
                    Some(conn.unwrap_or_else(|| "keep-alive".into()))
                } else {
                    conn
                },
                expect,
                body,
                leading_crlf,
            }
        },
    )
}

/// 1–20 requests; the last one may close the connection (`Connection: close`, or HTTP/1.0
/// without keep-alive).
fn stream() -> impl Strategy<Value = Vec<Req>> {
    (
        prop::collection::vec(request(), 1..=20),
        prop_oneof![2 => Just(0u8), 1 => Just(1), 1 => Just(2)],
    )
        .prop_map(|(mut reqs, last)| {
            if let Some(r) = reqs.last_mut() {
                match last {
                    1 => r.connection = Some("close".into()),
                    2 if r.http10 => r.connection = None,
                    _ => {}
                }
            }
            reqs
        })
}

// ---------------------------------------------------------------------------------------------
// Driving

/// The handler's reply: the request body, except for `/big/N`, answered with N bytes (small
/// requests, big responses: a pipeline of them passes the output high-water mark of 64 KiB,
/// where the connection stops answering until its output is sent).
fn reply_body(path: &str, body: &[u8]) -> Vec<u8> {
    match path
        .strip_prefix("/big/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(n) => vec![b'x'; n],
        None => body.to_vec(),
    }
}

/// A request as the handler saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    version: u8,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// Feed `pieces` (one read each, or several where a read does not fit) the way the worker does:
/// flush output before receiving, stop once the connection wants to close. With `as_jobs`,
/// each request is handed over as a job and answered from it (as `--threads` does, here on
/// the same thread). Returns everything sent, what the handler saw, and want() at the end.
fn feed<'a>(
    ctx: &mut Context,
    pieces: impl IntoIterator<Item = &'a [u8]>,
    as_jobs: bool,
) -> (Vec<u8>, Vec<Seen>, Want) {
    let log: Rc<RefCell<Vec<Seen>>> = Rc::default();
    let seen = log.clone();
    let body_buffer = ctx.limits.body_buffer;
    let mut handler = move |req: &Request<'_>, res: &mut Response<'_>| {
        // A declared length past the body buffer is always spooled (a chunked body only when
        // it grows past it while more is awaited, which depends on the reads), and what is
        // spooled is exactly the body.
        let declared = req
            .header("content-length")
            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok());
        if declared.is_some_and(|n| n > body_buffer) {
            let file = req.body_file().expect("a body past the buffer is spooled");
            let len = file.metadata().expect("spool metadata").len();
            assert_eq!(len, req.body().len() as u64, "spool file length");
        }
        seen.borrow_mut().push(Seen {
            method: req.method().to_string(),
            path: req.path().to_string(),
            query: req.query().map(str::to_string),
            version: req.version(),
            headers: req
                .headers()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect(),
            body: req.body().to_vec(),
        });
        res.header("X-Path", req.path())
            .body(reply_body(req.path(), req.body()));
    };
    let mut conn = Connection::new();
    let mut out = Vec::new();
    'reads: for piece in pieces {
        let mut rest = piece;
        while !rest.is_empty() {
            if conn.want() == Want::Close {
                break 'reads;
            }
            assert_eq!(conn.want(), Want::Read, "output left unsent");
            let n = conn.receive(rest, ctx);
            assert!(n > 0, "want() is Read but there is no room to receive");
            rest = &rest[n..];
            loop {
                if as_jobs {
                    conn.process(&mut Defer, ctx);
                    if let Some(job) = conn.take_job() {
                        assert_eq!(conn.want(), Want::Wait, "a job is out");
                        let (reply, pump) = (*job).answer(&mut handler);
                        assert!(pump.is_none(), "no streams here");
                        conn.finish(reply, ctx);
                    }
                } else {
                    conn.process(&mut handler, ctx);
                }
                if conn.want() != Want::Write {
                    break;
                }
                out.extend_from_slice(conn.output());
                let n = conn.output().len();
                conn.sent(n);
            }
        }
    }
    let want = conn.want();
    let seen = log.borrow().clone();
    (out, seen, want)
}

/// Split `out` into final responses, checking every interim `100 Continue` directly precedes
/// the response to a request that sent `Expect: 100-continue`. `expected` gives the responses'
/// exact bytes (the check is that `out` is them, in order, with interim responses between).
fn check_output(out: &[u8], reqs: &[Req], expected: &[Vec<u8>]) -> Result<(), TestCaseError> {
    let mut rest = out;
    for (i, (req, want)) in reqs.iter().zip(expected).enumerate() {
        if let Some(tail) = rest.strip_prefix(CONTINUE) {
            prop_assert!(
                req.expect,
                "100 Continue before response {i}, to a request without Expect"
            );
            rest = tail;
        }
        prop_assert!(
            rest.starts_with(want),
            "response {i} differs:\nexpected {:?}\ngot      {:?}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(&rest[..rest.len().min(want.len() + 200)])
        );
        rest = &rest[want.len()..];
    }
    prop_assert!(
        rest.is_empty(),
        "bytes after the last response: {:?}",
        String::from_utf8_lossy(rest)
    );
    Ok(())
}

/// The output without interim responses (they depend on when the body arrives).
fn finals(out: &[u8], expected: &[Vec<u8>]) -> Vec<u8> {
    let mut rest = out;
    let mut kept = Vec::new();
    for want in expected {
        if let Some(tail) = rest.strip_prefix(CONTINUE) {
            rest = tail;
        }
        let n = want.len().min(rest.len());
        kept.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
    kept.extend_from_slice(rest);
    kept
}

/// The smallest limits the stream fits, each exactly at its largest value in the stream:
/// a request line or field line of exactly `max_request_line` / `max_header_line` bytes (as the
/// spec measures them: the line without CRLF; a field line as name + ": " + value, or its raw
/// length where whitespace around the value makes that longer) is accepted.
fn tight_limits(reqs: &[Req]) -> Limits {
    let mut l = Limits {
        max_request_line: 0,
        max_header_line: 0,
        max_head: 0,
        max_header_count: 0,
        max_body: 0,
        // Bodies in memory here; the spooled test below sets it low.
        body_buffer: usize::MAX,
        max_chunk_extensions: 0,
    };
    for r in reqs {
        let line = r.method.len() + 1 + r.target().len() + 1 + "HTTP/1.1".len();
        l.max_request_line = l.max_request_line.max(line);
        let seen = r.seen();
        for (name, value) in &seen.headers {
            l.max_header_line = l.max_header_line.max(name.len() + 2 + value.len());
        }
        // Whitespace around a value: whether it counts is the server's choice (the spec
        // measures name + ": " + value); the raw line is the most it may count.
        for (name, value, before, after) in &r.headers {
            let raw = name.len() + 1 + before.len() + value.len() + after.len();
            l.max_header_line = l.max_header_line.max(raw);
        }
        l.max_header_count = l.max_header_count.max(seen.headers.len());
        let mut head = Vec::new();
        r.encode_head(&mut head);
        l.max_head = l.max_head.max(head.len());
        l.max_body = l.max_body.max(seen.body.len());
        if let Body::Chunked {
            chunks,
            last_ext,
            trailers,
            ..
        } = &r.body
        {
            // Extension bytes: `;name=value...` (whitespace before the first `;` aside).
            let ext: usize = chunks
                .iter()
                .map(|c| c.ext.trim_start().len())
                .sum::<usize>()
                + last_ext.trim_start().len();
            l.max_chunk_extensions = l.max_chunk_extensions.max(ext);
            // Trailer field lines count as field lines, all of them as a head.
            for t in trailers {
                l.max_header_line = l.max_header_line.max(t.trim_end().len());
            }
            let block: usize = trailers.iter().map(String::len).sum::<usize>() + 2;
            l.max_head = l.max_head.max(block);
        }
    }
    l
}

fn config() -> Config {
    let env = Config::default(); // PROPTEST_CASES, PROPTEST_RNG_SEED, ... from the environment
    Config {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            env.cases
        } else {
            CASES
        },
        rng_seed: if std::env::var_os("PROPTEST_RNG_SEED").is_some() {
            env.rng_seed
        } else {
            RngSeed::Fixed(SEED)
        },
        failure_persistence: None,
        ..env
    }
}

/// Feed `reqs` whole, split at `splits`, and byte by byte (if short) through connections with
/// `limits`; check every run gives exactly the expected responses and handler calls.
fn check_stream(reqs: &[Req], splits: &[Index], limits: Limits) -> Result<(), TestCaseError> {
    let mut stream = Vec::new();
    for r in reqs {
        r.encode(&mut stream);
    }
    let mut points: Vec<usize> = splits.iter().map(|i| i.index(stream.len() + 1)).collect();
    points.push(0);
    points.push(stream.len());
    points.sort_unstable();
    points.dedup();
    let pieces: Vec<&[u8]> = points.windows(2).map(|w| &stream[w[0]..w[1]]).collect();

    // One Context for every run: the same Date (its cache is only re-rendered by
    // refresh(), which the worker's tick calls), scratch buffers reused as on a worker.
    let mut ctx = Context::new(limits);
    let date = ctx.date.header_block().to_vec();
    let last = reqs.len() - 1;
    let expected: Vec<Vec<u8>> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| r.response(&date, i == last && r.closes()))
        .collect();
    let seen: Vec<Seen> = reqs.iter().map(Req::seen).collect();
    let want = if reqs[last].closes() {
        Want::Close
    } else {
        Want::Read
    };

    let whole = feed(&mut ctx, [stream.as_slice()], false);
    let split = feed(&mut ctx, pieces.iter().copied(), false);
    let jobs = feed(&mut ctx, pieces.iter().copied(), true);
    let runs = if stream.len() <= BYTEWISE_MAX {
        vec![
            ("whole", whole),
            ("split", split),
            ("split, answered as jobs", jobs),
            ("byte by byte", feed(&mut ctx, stream.chunks(1), false)),
        ]
    } else {
        vec![
            ("whole", whole),
            ("split", split),
            ("split, answered as jobs", jobs),
        ]
    };
    for (name, (out, handler_saw, end)) in &runs {
        check_output(out, reqs, &expected)
            .map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
        prop_assert_eq!(handler_saw, &seen, "{}: what the handler saw", name);
        prop_assert_eq!(*end, want, "{}: want() at the end", name);
    }
    // Byte-identical, interim 100 Continue responses aside (sent only while a body is
    // still expected, so they depend on the reads); without Expect, identical outright.
    let reference = finals(&runs[0].1 .0, &expected);
    for (name, (out, _, _)) in &runs[1..] {
        prop_assert!(
            finals(out, &expected) == reference,
            "{} differs from whole",
            name
        );
        if !reqs.iter().any(|r| r.expect) {
            prop_assert!(*out == runs[0].1 .0, "{} is not byte-identical", name);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Default limits, far above anything generated.
    #[test]
    fn any_split_gives_the_same_responses(
        reqs in stream(),
        splits in prop::collection::vec(any::<Index>(), 0..40),
    ) {
        check_stream(&reqs, &splits, Limits::default())?;
    }

    /// Limits exactly at the stream's largest line, head, field count, body and extensions:
    /// a request that fits them is answered, whatever the reads.
    #[test]
    fn requests_exactly_at_the_limits_pass_any_split(
        reqs in stream(),
        splits in prop::collection::vec(any::<Index>(), 0..40),
    ) {
        let limits = tight_limits(&reqs);
        check_stream(&reqs, &splits, limits)?;
    }

    /// Every body longer than a few bytes is spooled to a temporary file as it arrives (the
    /// path of bodies larger than `--body-buffer-size`), Content-Length and chunked alike:
    /// the handler sees the same bodies, whatever the reads.
    #[test]
    fn spooled_bodies_pass_any_split(
        reqs in stream(),
        splits in prop::collection::vec(any::<Index>(), 0..40),
        buffer in 0usize..8,
    ) {
        let limits = Limits { body_buffer: buffer, ..tight_limits(&reqs) };
        check_stream(&reqs, &splits, limits)?;
    }
}
