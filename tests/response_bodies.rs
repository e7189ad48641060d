//! Response bodies that are not copied into the connection's output: held bytes
//! (`Response::body_from`), streams (`stream`, `stream_sized`) and file regions (`file_range`).
//!
//! The first half drives the sans-IO `Connection` with custom handlers and checks what it plans
//! and sends, step by step: HEAD and bodiless statuses never pull a stream; a slow reader keeps
//! the output within `STREAM_BUFFER` (64 KiB) however the stream is cut; chunked framing is
//! exact; sized streams that lie, and streams that panic, close the connection after what was
//! sent; pipelined requests behind such a body are answered in order; held bytes go in one
//! vectored send from where they are (16 KiB and up).
//!
//! The second half runs the `bytes` app over sockets, on the backend the test runner asks for
//! (`RINGCORN_BACKEND`, passed on as `--backend`): every way of producing a body at the sizes
//! around the thresholds, pipelined, HEAD of a stream, 200 slow readers (the server's memory
//! stays bounded and it keeps serving), and an HTTP/1.0 stream delimited by the close.

mod common;

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Cursor, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{connect_with_rcvbuf, Server};
use ringcorn::http::{Connection, Context, Plan, Want};
use ringcorn::{Handler, Request, Response};

/// The most of a stream the connection's output holds (`outgoing::STREAM_BUFFER`).
const STREAM_BUFFER: usize = 64 * 1024;
/// Chunk framing on top of it: size line, CRLF after the data, the last chunk.
const FRAMING_SLACK: usize = 32;
/// Held bytes below this are copied after the head (`outgoing::COPY_BELOW`).
const COPY_BELOW: usize = 16 * 1024;
/// The longest body any test reads.
const MAX_BODY: usize = 32 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Reading responses (from a socket or from what a sans-IO connection sent)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body: HEAD, 1xx, 204, 304.
    None,
    Length(usize),
    Chunked,
    /// Neither header: the body runs to the end of the stream.
    UntilClose,
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    framing: Framing,
    body: Vec<u8>,
    /// Sizes of the chunks of a chunked body, the last (0) included.
    chunks: Vec<usize>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    fn closes(&self) -> bool {
        self.header("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// Summary for assertion messages (never the body itself).
    fn brief(&self) -> String {
        format!(
            "{} {:?} framing {:?}, {} body bytes, {} chunks",
            self.status,
            self.headers,
            self.framing,
            self.body.len(),
            self.chunks.len()
        )
    }
}

/// One line ending in CRLF, without it.
fn read_line<R: BufRead>(r: &mut R) -> Result<String, String> {
    let mut line = Vec::new();
    let n = r
        .take(16 * 1024)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("reading a line: {e}"))?;
    if n == 0 {
        return Err("end of stream before a line".into());
    }
    if !line.ends_with(b"\r\n") {
        return Err(format!(
            "line not ended by CRLF: {:?}",
            String::from_utf8_lossy(&line)
        ));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|e| format!("line is not UTF-8: {e}"))
}

/// Read one response. `head`: it answers a HEAD request (no body whatever the headers say).
/// Framing is checked strictly: at most one of Content-Length and Transfer-Encoding, which can
/// only be `chunked`; chunk sizes in hex without extensions; data followed by CRLF; the last
/// chunk followed by an empty trailer.
fn read_resp<R: BufRead>(r: &mut R, head: bool) -> Result<Resp, String> {
    let status_line = read_line(r)?;
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if version != "HTTP/1.1" || code.len() != 3 {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| format!("bad status {status_line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut resp = Resp {
        status,
        headers,
        framing: Framing::None,
        body: Vec::new(),
        chunks: Vec::new(),
    };
    let (cl, te) = (
        resp.count("Content-Length"),
        resp.count("Transfer-Encoding"),
    );
    if cl + te > 1 {
        return Err(format!("conflicting framing headers: {}", resp.brief()));
    }
    if let Some(te) = resp.header("Transfer-Encoding") {
        if te != "chunked" {
            return Err(format!("Transfer-Encoding {te:?}"));
        }
    }
    let bodiless = head || status < 200 || status == 204 || status == 304;
    if bodiless {
        return Ok(resp);
    }
    if te == 1 {
        resp.framing = Framing::Chunked;
        loop {
            let line = read_line(r)?;
            if line.is_empty() || !line.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "bad chunk size line {line:?} after {} body bytes",
                    resp.body.len()
                ));
            }
            let size = usize::from_str_radix(&line, 16).map_err(|e| format!("{line:?}: {e}"))?;
            resp.chunks.push(size);
            if size == 0 {
                let trailer = read_line(r)?;
                if !trailer.is_empty() {
                    return Err(format!("unexpected trailer {trailer:?}"));
                }
                break;
            }
            if resp.body.len() + size > MAX_BODY {
                return Err("chunked body beyond any test's".into());
            }
            let at = resp.body.len();
            resp.body.resize(at + size, 0);
            r.read_exact(&mut resp.body[at..])
                .map_err(|e| format!("reading a {size}-byte chunk: {e}"))?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)
                .map_err(|e| format!("reading the CRLF after a chunk: {e}"))?;
            if &crlf != b"\r\n" {
                return Err(format!("chunk data not followed by CRLF but {crlf:?}"));
            }
        }
    } else if let Some(v) = resp.header("Content-Length") {
        let n: usize = v.parse().map_err(|_| format!("Content-Length {v:?}"))?;
        if n > MAX_BODY {
            return Err(format!("Content-Length {n} beyond any test's"));
        }
        resp.framing = Framing::Length(n);
        resp.body = vec![0; n];
        r.read_exact(&mut resp.body)
            .map_err(|e| format!("reading a {n}-byte body: {e}"))?;
    } else {
        resp.framing = Framing::UntilClose;
        r.take(MAX_BODY as u64 + 1)
            .read_to_end(&mut resp.body)
            .map_err(|e| format!("reading a body to the end: {e}"))?;
    }
    Ok(resp)
}

/// The responses in `wire`, in order; `heads[i]`: the i-th answers a HEAD. All of `wire` must
/// be used.
fn parse_all(wire: &[u8], heads: &[bool]) -> Vec<Resp> {
    let mut cur = Cursor::new(wire);
    let resps: Vec<Resp> = heads
        .iter()
        .enumerate()
        .map(|(i, &head)| {
            read_resp(&mut cur, head).unwrap_or_else(|e| {
                panic!(
                    "response {i}: {e}\n--- wire (first 2000 bytes) ---\n{}",
                    show(wire)
                )
            })
        })
        .collect();
    let used = cur.position() as usize;
    assert_eq!(
        used,
        wire.len(),
        "{} bytes follow the {} expected responses: {:?}",
        wire.len() - used,
        heads.len(),
        String::from_utf8_lossy(&wire[used..wire.len().min(used + 300)])
    );
    resps
}

fn show(wire: &[u8]) -> String {
    String::from_utf8_lossy(&wire[..wire.len().min(2000)]).into_owned()
}

/// The head of the first response in `wire` and the bytes after it.
fn split_head(wire: &[u8]) -> (String, &[u8]) {
    let end = wire
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in {:?}", show(wire)))
        + 4;
    (
        String::from_utf8_lossy(&wire[..end]).into_owned(),
        &wire[end..],
    )
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
}

fn head(path: &str) -> String {
    format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n")
}

/// `n` bytes that differ from their neighbours, so that a misplaced slice shows.
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(31))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Driving a sans-IO connection the way the worker does

/// A connection, its context and handler, and everything it has sent so far.
struct Sans<H: Handler> {
    conn: Connection,
    ctx: Context,
    handler: H,
    wire: Vec<u8>,
    /// Plans seen, one letter each: B(ytes), V(ectored), F(ile).
    plans: String,
}

impl<H: Handler> Sans<H> {
    fn new(handler: H) -> Self {
        Sans {
            conn: Connection::new(),
            ctx: Context::default(),
            handler,
            wire: Vec::new(),
            plans: String::new(),
        }
    }

    /// Receive all of `bytes` and answer what is complete.
    fn feed(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = self.conn.receive(rest, &self.ctx);
            assert!(n > 0, "no room to receive");
            rest = &rest[n..];
            self.conn.process(&mut self.handler, &mut self.ctx);
        }
    }

    /// Send at most `max` bytes of what the plan says (a file region read with pread, as
    /// sendfile would send it) and report them with `sent`. Returns how many.
    fn step(&mut self, max: usize) -> usize {
        let n = match self.conn.plan() {
            Plan::Idle => 0,
            Plan::Bytes(b) => {
                self.plans.push('B');
                let n = b.len().min(max);
                self.wire.extend_from_slice(&b[..n]);
                n
            }
            Plan::Vectored(a, b) => {
                self.plans.push('V');
                assert!(
                    !a.is_empty() && !b.is_empty(),
                    "a vectored plan with an empty part"
                );
                let na = a.len().min(max);
                let nb = b.len().min(max - na);
                self.wire.extend_from_slice(&a[..na]);
                self.wire.extend_from_slice(&b[..nb]);
                na + nb
            }
            Plan::File { head, .. } if !head.is_empty() => {
                // The head before a file goes first (the worker sends it with MSG_MORE).
                self.plans.push('B');
                let n = head.len().min(max);
                self.wire.extend_from_slice(&head[..n]);
                n
            }
            Plan::File {
                fd, offset, len, ..
            } => {
                self.plans.push('F');
                let want = usize::try_from(len).unwrap().min(max);
                let mut buf = vec![0u8; want];
                // SAFETY: pread into a buffer of `want` bytes we own, from a descriptor the
                // connection holds open.
                let got = unsafe {
                    libc::pread(fd, buf.as_mut_ptr().cast(), want, offset as libc::off_t)
                };
                assert!(got >= 0, "pread: {}", io::Error::last_os_error());
                if got == 0 {
                    self.conn.file_ended_early();
                    return 0;
                }
                self.wire.extend_from_slice(&buf[..got as usize]);
                got as usize
            }
        };
        if n > 0 {
            self.conn.sent(n);
        }
        n
    }

    /// Send until the connection wants to read (with nothing left to answer) or to close,
    /// `max` bytes per send; after each flush, answer pipelined requests still buffered, as
    /// the worker does. `check` sees the connection before each send.
    fn run_with(&mut self, max: usize, mut check: impl FnMut(&Connection, usize)) -> Want {
        let mut sends = 0usize;
        loop {
            match self.conn.want() {
                Want::Write => {
                    check(&self.conn, self.wire.len());
                    let before = self.plans.len();
                    let n = self.step(max);
                    let file_ended = self.plans.ends_with('F') && self.conn.want() != Want::Write;
                    assert!(
                        n > 0 || file_ended,
                        "Write is wanted but the plan sends nothing (plans so far {:?})",
                        &self.plans[before.saturating_sub(10)..]
                    );
                    sends += 1;
                    assert!(sends < 100_000_000, "the connection never finishes");
                }
                Want::Read => {
                    if self.conn.process(&mut self.handler, &mut self.ctx) == 0
                        && self.conn.want() == Want::Read
                    {
                        return Want::Read;
                    }
                }
                Want::Close => return Want::Close,
                Want::Wait => panic!("waiting, with the handler inline"),
            }
        }
    }

    fn run(&mut self, max: usize) -> Want {
        self.run_with(max, |_, _| {})
    }
}

/// An iterator of `pieces` pieces of `size` bytes of `x`, counting every call of `next` in
/// `pulls`.
fn counted(pulls: Rc<Cell<usize>>, pieces: usize, size: usize) -> impl Iterator<Item = Vec<u8>> {
    let mut made = 0;
    std::iter::from_fn(move || {
        pulls.set(pulls.get() + 1);
        if made == pieces {
            return None;
        }
        made += 1;
        Some(vec![b'x'; size])
    })
}

/// An in-memory file holding `bytes`.
fn memfd(bytes: &[u8]) -> std::fs::File {
    use std::os::fd::FromRawFd;
    // SAFETY: memfd_create with a NUL-terminated name; the new descriptor is owned by the File.
    let fd = unsafe { libc::memfd_create(c"response-bodies".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
    // SAFETY: `fd` was just created and is owned by nobody else.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(bytes).expect("write memfd");
    file
}

// ---------------------------------------------------------------------------------------------
// 1. HEAD and bodiless statuses never pull a body

#[test]
fn head_and_bodiless_statuses_never_produce_the_body() {
    let pulls = Rc::new(Cell::new(0));
    let p = Rc::clone(&pulls);
    let file = Rc::new(memfd(&pattern(10_000, 1)));
    let handler = move |req: &Request<'_>, res: &mut Response<'_>| match req.path() {
        "/stream" => {
            res.stream(counted(Rc::clone(&p), 100, 1000));
        }
        "/sized" => {
            res.stream_sized(5000, counted(Rc::clone(&p), 5, 1000));
        }
        "/file" => {
            // A shared file (the handler keeps it): sent by the kernel, here never.
            let f = Rc::clone(&file);
            res.file_range(RcFile(f), 10, 1234);
        }
        "/held" => {
            res.body_from(vec![b'y'; 100_000]);
        }
        "/held-small" => {
            res.body_from(&b"small held body"[..]);
        }
        "/304-stream" => {
            res.status(304).stream(counted(Rc::clone(&p), 100, 1000));
        }
        "/204-stream" => {
            res.status(204).stream(counted(Rc::clone(&p), 100, 1000));
        }
        "/304-sized" => {
            res.status(304)
                .stream_sized(3000, counted(Rc::clone(&p), 3, 1000));
        }
        "/304-file" => {
            let f = Rc::clone(&file);
            res.status(304).file_range(RcFile(f), 0, 10_000);
        }
        _ => {
            res.body("after");
        }
    };
    let mut s = Sans::new(handler);
    // Each bodiless response is followed by a GET: no body byte may come between them.
    let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
        // (method, path, Content-Length, Transfer-Encoding)
        ("HEAD", "/stream", None, Some("chunked")),
        ("HEAD", "/sized", Some("5000"), None),
        ("HEAD", "/file", Some("1234"), None),
        ("HEAD", "/held", Some("100000"), None),
        ("HEAD", "/held-small", Some("15"), None),
        ("GET", "/304-stream", None, None),
        ("GET", "/204-stream", None, None),
        ("GET", "/304-sized", None, None),
        ("GET", "/304-file", None, None),
        ("HEAD", "/304-stream", None, None),
    ];
    let mut input = String::new();
    let mut heads = Vec::new();
    for (method, path, ..) in cases {
        input += &format!("{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        input += &get("/after");
        heads.extend([*method == "HEAD", false]);
    }
    s.feed(input.as_bytes());
    assert_eq!(s.run(usize::MAX), Want::Read, "keep-alive throughout");
    assert_eq!(pulls.get(), 0, "a body that is not sent was pulled");
    assert!(
        !s.plans.contains('F'),
        "a file region was planned for a response without a body: {}",
        s.plans
    );
    let resps = parse_all(&s.wire, &heads);
    for (i, (method, path, cl, te)) in cases.iter().enumerate() {
        let r = &resps[2 * i];
        let what = format!("{method} {path}: {}", r.brief());
        assert_eq!(r.header("Content-Length"), *cl, "{what}");
        assert_eq!(r.header("Transfer-Encoding"), *te, "{what}");
        assert!(!r.closes(), "{what}");
        let after = &resps[2 * i + 1];
        assert_eq!(
            (after.status, after.body.as_slice()),
            (200, &b"after"[..]),
            "the GET after {method} {path}: {}",
            after.brief()
        );
    }
}

/// A shared file for `file_range` (`Rc<File>` is not `AsFd` itself).
struct RcFile(Rc<std::fs::File>);

impl std::os::fd::AsFd for RcFile {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

// ---------------------------------------------------------------------------------------------
// 2. A slow reader holds a bounded amount of a stream

/// Stream 8 MiB, cut as `pieces` × `size`, to a reader that takes 1000 bytes per send; at every
/// step the output is within the stream buffer and no more has been pulled than was sent plus
/// the buffer (and the piece being copied).
fn slow_reader(pieces: usize, size: usize, sized: bool) {
    let total = pieces * size;
    let pulls = Rc::new(Cell::new(0));
    let p = Rc::clone(&pulls);
    let handler = move |_: &Request<'_>, res: &mut Response<'_>| {
        if sized {
            res.stream_sized(total as u64, counted(Rc::clone(&p), pieces, size));
        } else {
            res.stream(counted(Rc::clone(&p), pieces, size));
        }
    };
    let mut s = Sans::new(handler);
    s.feed(get("/").as_bytes());
    let first_fill = pulls.get();
    assert!(
        first_fill >= 1 && (first_fill - 1) * size <= STREAM_BUFFER,
        "{first_fill} pieces of {size} pulled before anything was sent"
    );
    let mut last_pulls = 0;
    let mut max_output = 0;
    let mut max_buffered = 0;
    let want = s.run_with(1000, |conn, sent| {
        let out = conn.output().len();
        let planned = match conn.plan() {
            Plan::Bytes(b) => b.len(),
            Plan::Vectored(a, b) => a.len() + b.len(),
            Plan::File { .. } => panic!("a stream planned as a file"),
            Plan::Idle => 0,
        };
        max_output = max_output.max(out).max(planned);
        max_buffered = max_buffered.max(conn.buffered_bytes());
        assert!(
            out <= STREAM_BUFFER + FRAMING_SLACK && planned <= STREAM_BUFFER + FRAMING_SLACK,
            "output {out} (plan {planned}) after {sent} bytes sent"
        );
        let n = pulls.get();
        assert!(n >= last_pulls, "pull count went down");
        last_pulls = n;
        // Every pull but the last (the one that finds the end) yielded a piece; all but the
        // one being copied are in what was sent or in the output.
        let produced = n.min(pieces) * size;
        assert!(
            produced <= sent + out + size,
            "{produced} bytes pulled with {sent} sent and {out} in the output"
        );
        assert!(
            produced <= sent + STREAM_BUFFER + size,
            "{produced} bytes pulled with only {sent} sent"
        );
    });
    assert_eq!(want, Want::Read, "keep-alive after a complete stream");
    assert_eq!(
        pulls.get(),
        pieces + 1,
        "every piece pulled once, then the end"
    );
    let resp = &parse_all(&s.wire, &[false])[0];
    assert_eq!(resp.status, 200);
    if sized {
        assert_eq!(resp.framing, Framing::Length(total), "{}", resp.brief());
    } else {
        assert_eq!(resp.framing, Framing::Chunked, "{}", resp.brief());
        assert!(
            resp.chunks.iter().all(|&c| c <= STREAM_BUFFER),
            "a chunk over the stream buffer"
        );
    }
    assert_eq!(resp.body.len(), total);
    assert!(
        resp.body.iter().all(|&b| b == b'x'),
        "body bytes are not all x"
    );
    // The output buffer itself stays within a small multiple of the stream buffer.
    assert!(
        max_buffered <= 3 * STREAM_BUFFER,
        "the connection's buffers reached {max_buffered} bytes"
    );
    eprintln!(
        "slow reader {pieces}x{size} sized={sized}: max output {max_output}, max buffered \
         {max_buffered}, {} sends",
        s.plans.len()
    );
}

#[test]
fn a_slow_reader_holds_a_bounded_stream_in_small_pieces() {
    slow_reader(8 * 1024, 1024, false);
}

#[test]
fn a_slow_reader_holds_a_bounded_stream_in_one_big_piece() {
    slow_reader(1, 8 * 1024 * 1024, false);
}

#[test]
fn a_slow_reader_holds_a_bounded_sized_stream() {
    slow_reader(8 * 1024, 1024, true);
    slow_reader(1, 8 * 1024 * 1024, true);
}

// ---------------------------------------------------------------------------------------------
// 3. Chunked framing; HTTP/1.0 streams end with the connection

fn framing_handler() -> impl Handler {
    |req: &Request<'_>, res: &mut Response<'_>| match req.path() {
        "/stream" => {
            let big: Vec<u8> = pattern(70_000, 3);
            let parts: Vec<Vec<u8>> = vec![
                b"a".to_vec(),
                Vec::new(),
                b"bc".to_vec(),
                big,
                Vec::new(),
                b"e".to_vec(),
            ];
            res.stream(parts);
        }
        "/empty-stream" => {
            res.stream(Vec::<Vec<u8>>::new());
        }
        _ => {
            res.body("next");
        }
    }
}

fn framing_expected() -> Vec<u8> {
    let mut v = b"abc".to_vec();
    v.extend_from_slice(&pattern(70_000, 3));
    v.push(b'e');
    v
}

#[test]
fn chunked_framing_is_exact() {
    for max in [usize::MAX, 1000, 1] {
        let mut s = Sans::new(framing_handler());
        let input = get("/stream") + &get("/empty-stream") + &get("/next");
        s.feed(input.as_bytes());
        assert_eq!(s.run(max), Want::Read, "keep-alive (sends of {max})");
        let resps = parse_all(&s.wire, &[false, false, false]);
        let r = &resps[0];
        assert_eq!(r.framing, Framing::Chunked, "{}", r.brief());
        assert_eq!(r.header("Content-Length"), None);
        assert!(
            r.body == framing_expected(),
            "decoded body differs (sends of {max})"
        );
        assert_eq!(r.chunks.last(), Some(&0));
        assert!(
            r.chunks[..r.chunks.len() - 1].iter().all(|&c| c > 0),
            "an empty chunk before the last: {:?}",
            r.chunks
        );
        // The stream's bytes end with the last chunk, directly followed by the next head.
        let (_, rest) = split_head(&s.wire);
        let end = rest
            .windows(9)
            .position(|w| w == b"HTTP/1.1 ")
            .expect("the next response");
        assert!(
            rest[..end].ends_with(b"\r\n0\r\n\r\n"),
            "the stream does not end with the last chunk: {:?}",
            String::from_utf8_lossy(&rest[end.saturating_sub(20)..end])
        );
        let e = &resps[1];
        assert_eq!(e.framing, Framing::Chunked, "{}", e.brief());
        assert_eq!((e.body.len(), e.chunks.as_slice()), (0, &[0][..]));
        assert_eq!(resps[2].body, b"next");
    }
}

#[test]
fn an_http10_stream_is_raw_and_closes() {
    for keep_alive in [false, true] {
        let connection = if keep_alive {
            "Connection: keep-alive\r\n"
        } else {
            ""
        };
        let mut s = Sans::new(framing_handler());
        let input = format!("GET /stream HTTP/1.0\r\n{connection}\r\n") + &get("/next");
        s.feed(input.as_bytes());
        assert_eq!(s.run(4096), Want::Close, "keep-alive asked: {keep_alive}");
        let (head, body) = split_head(&s.wire);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(!lower.contains("transfer-encoding"), "{head}");
        assert!(!lower.contains("content-length"), "{head}");
        assert!(
            lower.contains("connection: close\r\n") && !lower.contains("keep-alive"),
            "an HTTP/1.0 stream must say it closes: {head}"
        );
        assert!(
            body == framing_expected().as_slice(),
            "the raw body, and nothing after it (the pipelined GET is not answered): {} bytes",
            body.len()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Sized streams that fall short or run long

fn sized_handler() -> impl Handler {
    |req: &Request<'_>, res: &mut Response<'_>| {
        let pieces = |sizes: &[usize]| -> Vec<Vec<u8>> {
            sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| pattern(n, i as u8 + 1))
                .collect()
        };
        match req.path() {
            "/short" => {
                res.stream_sized(10_000, pieces(&[3000, 3000]));
            }
            "/long" => {
                res.stream_sized(5000, pieces(&[3000, 3000, 3000]));
            }
            // The extra byte comes in a piece of its own, after exactly `len`.
            "/long-after" => {
                res.stream_sized(5000, pieces(&[5000, 1]));
            }
            "/long-big" => {
                res.stream_sized(200_000, pieces(&[150_000, 150_000]));
            }
            "/short-big" => {
                res.stream_sized(300_000, pieces(&[100_000, 100_000]));
            }
            "/exact" => {
                res.stream_sized(9000, pieces(&[3000, 3000, 3000]));
            }
            "/exact-trailing-empty" => {
                res.stream_sized(5000, pieces(&[5000, 0, 0]));
            }
            "/exact-big" => {
                res.stream_sized(300_000, pieces(&[100_000, 200_000]));
            }
            _ => {
                res.body("next");
            }
        }
    }
}

/// What `sized_handler` streams for `sizes`.
fn sized_bytes(sizes: &[usize]) -> Vec<u8> {
    sizes
        .iter()
        .enumerate()
        .flat_map(|(i, &n)| pattern(n, i as u8 + 1))
        .collect()
}

#[test]
fn sized_streams_short_long_and_exact() {
    // (path, declared, pieces, exact)
    let cases: &[(&str, usize, &[usize], bool)] = &[
        ("/short", 10_000, &[3000, 3000], false),
        ("/long", 5000, &[3000, 3000, 3000], false),
        ("/long-after", 5000, &[5000, 1], false),
        ("/long-big", 200_000, &[150_000, 150_000], false),
        ("/short-big", 300_000, &[100_000, 100_000], false),
        ("/exact", 9000, &[3000, 3000, 3000], true),
        ("/exact-trailing-empty", 5000, &[5000, 0, 0], true),
        ("/exact-big", 300_000, &[100_000, 200_000], true),
    ];
    for &(path, len, sizes, exact) in cases {
        for max in [usize::MAX, 1500] {
            let mut s = Sans::new(sized_handler());
            s.feed((get(path) + &get("/next")).as_bytes());
            let want = s.run(max);
            let (head, body) = split_head(&s.wire);
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {head}");
            assert!(
                head.contains(&format!("\r\nContent-Length: {len}\r\n")),
                "{path}: {head}"
            );
            let all = sized_bytes(sizes);
            if exact {
                assert_eq!(
                    want,
                    Want::Read,
                    "{path}: an exact stream keeps the connection"
                );
                let resps = parse_all(&s.wire, &[false, false]);
                assert!(resps[0].body == all, "{path}: body differs");
                assert_eq!(resps[1].body, b"next", "{path}: the pipelined request");
            } else {
                assert_eq!(
                    want,
                    Want::Close,
                    "{path}: a lying stream closes (sends of {max})"
                );
                let sent = all.len().min(len);
                assert_eq!(
                    body.len(),
                    sent,
                    "{path}: body bytes sent before closing (declared {len}, stream has {})",
                    all.len()
                );
                assert!(body == &all[..sent], "{path}: the bytes sent differ");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. A stream that panics

#[test]
fn a_panicking_stream_closes_after_what_was_sent() {
    // (panics at piece, piece size): in the first pull (with the head) and in a later one.
    for (at, size) in [(3usize, 1000usize), (100, 1024)] {
        let handler = move |req: &Request<'_>, res: &mut Response<'_>| {
            if req.path() == "/boom" {
                let mut i = 0;
                res.stream(std::iter::from_fn(move || {
                    i += 1;
                    assert!(i <= at, "this stream fails on purpose");
                    Some(vec![b'x'; size])
                }));
            } else {
                res.body("next");
            }
        };
        let mut s = Sans::new(handler);
        s.feed((get("/boom") + &get("/next")).as_bytes());
        assert_eq!(s.run(10_000), Want::Close, "panic at piece {at}");
        let (head, rest) = split_head(&s.wire);
        assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
        // Decode the chunks there are: all the pieces before the panic, no last chunk.
        let mut cur = Cursor::new(rest);
        let mut body = Vec::new();
        while (cur.position() as usize) < rest.len() {
            let line = read_line(&mut cur).expect("a chunk size line");
            let n = usize::from_str_radix(&line, 16).expect("hex chunk size");
            assert!(
                n > 0,
                "a last chunk after a panic: the body would look complete"
            );
            let at = body.len();
            body.resize(at + n, 0);
            cur.read_exact(&mut body[at..]).expect("chunk data");
            let mut crlf = [0; 2];
            cur.read_exact(&mut crlf).expect("CRLF after the chunk");
            assert_eq!(&crlf, b"\r\n");
        }
        assert_eq!(
            body.len(),
            at * size,
            "the pieces before the panic are all sent"
        );
        assert!(body.iter().all(|&b| b == b'x'));
        assert!(
            !String::from_utf8_lossy(&s.wire).contains("next"),
            "the pipelined request after the panic was answered"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Pipelining past a held body

#[test]
fn pipelined_requests_around_a_held_body_come_out_in_order() {
    let big = pattern(200 * 1024, 7);
    let expected = big.clone();
    let handler = move |req: &Request<'_>, res: &mut Response<'_>| match req.path() {
        "/a" => {
            res.body("first");
        }
        "/big" => {
            res.body_from(big.clone());
        }
        "/c" => {
            res.body("third");
        }
        _ => {
            res.status(404).body("?");
        }
    };
    for max in [usize::MAX, 7000, 65_536] {
        let mut s = Sans::new(handler.clone());
        s.feed((get("/a") + &get("/big") + &get("/c")).as_bytes());
        assert_eq!(s.run(max), Want::Read);
        assert!(
            s.plans.contains('V'),
            "the held body went out in a vectored send: {}",
            s.plans
        );
        let resps = parse_all(&s.wire, &[false, false, false]);
        assert_eq!(resps[0].body, b"first");
        assert_eq!(resps[1].framing, Framing::Length(expected.len()));
        assert!(
            resps[1].body == expected,
            "the 200 KiB body (sends of {max})"
        );
        assert_eq!(resps[2].body, b"third");
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Held bytes: copied below 16 KiB, sent from where they are above

#[test]
fn held_bytes_are_copied_small_and_sent_in_place_large() {
    for n in [COPY_BELOW - 1, COPY_BELOW, 64 * 1024 + 1, 1024 * 1024] {
        // (kind, bytes): an owned Vec, a shared Arc, a static slice, a String.
        let vec = pattern(n, 9);
        let arc: Arc<[u8]> = Arc::from(pattern(n, 10));
        let stat: &'static [u8] = Box::leak(pattern(n, 11).into_boxed_slice());
        let string = "s".repeat(n);
        let kinds: Vec<(&str, Vec<u8>)> = vec![
            ("vec", vec.clone()),
            ("arc", arc.to_vec()),
            ("static", stat.to_vec()),
            ("string", string.clone().into_bytes()),
        ];
        for (kind, bytes) in kinds {
            let (vec, arc, string) = (vec.clone(), Arc::clone(&arc), string.clone());
            let mut once = Some((vec, arc, string));
            let string_ptr = Rc::new(Cell::new(0usize)); // where the handler's bytes are
            let sp = Rc::clone(&string_ptr);
            let handler = move |req: &Request<'_>, res: &mut Response<'_>| {
                if req.path() == "/next" {
                    res.body("next");
                    return;
                }
                let (vec, arc, string) = once.take().expect("called once");
                // Where the bytes are as the handler hands them over.
                match kind {
                    "vec" => {
                        sp.set(vec.as_ptr() as usize);
                        res.body_from(vec)
                    }
                    "arc" => {
                        sp.set(arc.as_ptr() as usize);
                        res.body_from(arc)
                    }
                    "static" => {
                        sp.set(stat.as_ptr() as usize);
                        res.body_from(stat)
                    }
                    _ => {
                        sp.set(string.as_ptr() as usize);
                        res.body_from(string)
                    }
                };
            };
            let mut s = Sans::new(handler);
            s.feed((get("/held") + &get("/next")).as_bytes());
            let ptr = string_ptr.get();
            match s.conn.plan() {
                Plan::Bytes(b) if n < COPY_BELOW => {
                    // The head, the body copied after it, then the pipelined response.
                    let (head, rest) = split_head(b);
                    assert!(head.contains(&format!("Content-Length: {n}\r\n")), "{head}");
                    assert!(
                        rest.len() > n
                            && rest[..n] == bytes[..]
                            && rest[n..].starts_with(b"HTTP/1.1 200"),
                        "{kind} {n}: the body is not copied after the head"
                    );
                }
                Plan::Vectored(h, b) if n >= COPY_BELOW => {
                    let (head, rest) = split_head(h);
                    assert!(
                        rest.is_empty(),
                        "{kind} {n}: the head part holds body bytes"
                    );
                    assert!(head.contains(&format!("Content-Length: {n}\r\n")), "{head}");
                    assert!(
                        b == bytes.as_slice(),
                        "{kind} {n}: the second part is not the body"
                    );
                    assert_eq!(
                        b.as_ptr() as usize,
                        ptr,
                        "{kind} {n}: the body is sent from the handler's bytes, not a copy"
                    );
                }
                other => panic!("{kind} {n}: plan {}", plan_name(&other)),
            }
            assert_eq!(s.run(usize::MAX), Want::Read);
            let resps = parse_all(&s.wire, &[false, false]);
            assert!(resps[0].body == bytes, "{kind} {n}: bytes differ");
            assert_eq!(resps[1].body, b"next");
        }
    }
}

fn plan_name(plan: &Plan<'_>) -> String {
    match plan {
        Plan::Idle => "Idle".into(),
        Plan::Bytes(b) => format!("Bytes({})", b.len()),
        Plan::Vectored(a, b) => format!("Vectored({}, {})", a.len(), b.len()),
        Plan::File {
            head,
            fd,
            offset,
            len,
        } => format!("File(head {}, fd {fd}, {offset}+{len})", head.len()),
    }
}

#[test]
fn a_file_region_is_planned_after_the_head_and_advances() {
    let content = pattern(300_000, 5);
    let file = Rc::new(memfd(&content));
    let f = Rc::clone(&file);
    let handler = move |req: &Request<'_>, res: &mut Response<'_>| match req.path() {
        "/region" => {
            res.file_range(RcFile(Rc::clone(&f)), 100, 200_000);
        }
        // Beyond the end of the file: the region ends early and the connection closes.
        "/past-end" => {
            res.file_range(RcFile(Rc::clone(&f)), 250_000, 100_000);
        }
        _ => {
            res.body("next");
        }
    };
    let mut s = Sans::new(handler.clone());
    s.feed((get("/region") + &get("/next")).as_bytes());
    // The head first, in the same plan as the file (the worker sends it with MSG_MORE).
    let Plan::File {
        head: h,
        offset: 100,
        len: 200_000,
        ..
    } = s.conn.plan()
    else {
        panic!("the head first: {}", plan_name(&s.conn.plan()));
    };
    let (head, rest) = split_head(h);
    assert!(
        rest.is_empty() && head.contains("Content-Length: 200000\r\n"),
        "{head}"
    );
    let n = h.len();
    s.wire.extend_from_slice(h);
    s.conn.sent(n);
    match s.conn.plan() {
        Plan::File { offset, len, .. } => assert_eq!((offset, len), (100, 200_000)),
        other => panic!("a file region next: {}", plan_name(&other)),
    }
    assert!(
        s.conn.output().is_empty(),
        "output while a file region is next"
    );
    assert_eq!(s.step(5000), 5000);
    match s.conn.plan() {
        Plan::File { offset, len, .. } => assert_eq!((offset, len), (5100, 195_000)),
        other => panic!("the rest of the region: {}", plan_name(&other)),
    }
    assert_eq!(s.run(64 * 1024), Want::Read);
    let resps = parse_all(&s.wire, &[false, false]);
    assert!(resps[0].body == content[100..200_100], "the region's bytes");
    assert_eq!(resps[1].body, b"next");

    let mut s = Sans::new(handler);
    s.feed((get("/past-end") + &get("/next")).as_bytes());
    assert_eq!(
        s.run(usize::MAX),
        Want::Close,
        "a region past the end closes"
    );
    let (head, body) = split_head(&s.wire);
    assert!(head.contains("Content-Length: 100000\r\n"), "{head}");
    assert!(
        body == &content[250_000..],
        "what the file had: {} bytes",
        body.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Over sockets: the `bytes` app on the backend the runner asks for

/// The backend this run of the binary is for (scripts/test-runner.sh sets it). The test
/// helpers clear every `RINGCORN_*` variable from the server's environment, so it is passed on
/// as a flag.
fn backend() -> String {
    std::env::var("RINGCORN_BACKEND").unwrap_or_else(|_| "auto".into())
}

fn bytes_server() -> Server {
    let backend = backend();
    let server = Server::app("bytes", &["--backend", &backend]);
    let log = server.log();
    let booted: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Booting worker"))
        .collect();
    if backend == "epoll" || backend == "io_uring" {
        assert!(
            booted.iter().all(|l| l.contains(&backend)),
            "the workers do not run on {backend}: {booted:?}"
        );
    }
    server
}

fn client(addr: SocketAddr) -> BufReader<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    BufReader::with_capacity(64 * 1024, s)
}

fn path_for(kind: &str, n: usize) -> String {
    if kind == "plain" {
        format!("/{n}")
    } else {
        format!("/{n}?body={kind}")
    }
}

#[track_caller]
fn check_x(resp: &Resp, kind: &str, n: usize) {
    let what = format!("{kind} {n}: {}", resp.brief());
    assert_eq!(resp.status, 200, "{what}");
    assert_eq!(resp.body.len(), n, "{what}");
    assert!(resp.body.iter().all(|&b| b == b'x'), "{what}: not all x");
    assert_eq!(
        resp.header("Content-Type"),
        Some("application/octet-stream"),
        "{what}"
    );
    if kind == "stream" {
        assert_eq!(resp.framing, Framing::Chunked, "{what}");
    } else {
        assert_eq!(resp.framing, Framing::Length(n), "{what}");
    }
    assert!(!resp.closes(), "{what}");
}

const KINDS: [&str; 6] = ["plain", "copy", "vec", "shared", "stream", "sized"];
const SIZES: [usize; 8] = [
    0,
    1,
    16383,
    16384,
    65535,
    65536,
    1024 * 1024,
    4 * 1024 * 1024 + 7,
];

#[test]
fn every_kind_of_body_at_every_size() {
    let _serial = heavy();
    let server = bytes_server();
    let mut c = client(server.addr());
    for kind in KINDS {
        for n in SIZES {
            c.get_mut()
                .write_all(get(&path_for(kind, n)).as_bytes())
                .expect("send");
            let resp = read_resp(&mut c, false).unwrap_or_else(|e| panic!("{kind} {n}: {e}"));
            check_x(&resp, kind, n);
        }
    }
    // Ten pipelined, mixed, sent in one write, answered in order (distinct sizes show order).
    let mix: [(&str, usize); 10] = [
        ("stream", 1),
        ("plain", 65536),
        ("vec", 16383),
        ("shared", 4 * 1024 * 1024 + 7),
        ("copy", 0),
        ("sized", 16384),
        ("stream", 100_000),
        ("plain", 65535),
        ("copy", 1024 * 1024),
        ("sized", 7),
    ];
    let mut batch = String::new();
    for (kind, n) in mix {
        batch += &get(&path_for(kind, n));
    }
    c.get_mut().write_all(batch.as_bytes()).expect("send");
    for (i, (kind, n)) in mix.into_iter().enumerate() {
        let resp = read_resp(&mut c, false).unwrap_or_else(|e| panic!("pipelined {i}: {e}"));
        check_x(&resp, kind, n);
    }
    // Nothing more: the next byte is the answer to a next request.
    c.get_mut().write_all(get("/3").as_bytes()).unwrap();
    let resp = read_resp(&mut c, false).expect("after the batch");
    check_x(&resp, "plain", 3);
}

#[test]
fn head_of_a_stream_is_chunked_without_a_body() {
    let server = bytes_server();
    let mut c = client(server.addr());
    for path in ["/1048576?body=stream", "/1048576?body=sized", "/1048576"] {
        let req = head(path) + &get("/13");
        c.get_mut().write_all(req.as_bytes()).expect("send");
        let h = read_resp(&mut c, true).unwrap_or_else(|e| panic!("HEAD {path}: {e}"));
        assert_eq!(h.status, 200);
        if path.ends_with("stream") {
            assert_eq!(
                h.header("Transfer-Encoding"),
                Some("chunked"),
                "{}",
                h.brief()
            );
            assert_eq!(h.header("Content-Length"), None, "{}", h.brief());
        } else {
            assert_eq!(h.header("Content-Length"), Some("1048576"), "{}", h.brief());
        }
        // No body came after the head: the next bytes are the GET's response.
        let g = read_resp(&mut c, false).unwrap_or_else(|e| panic!("GET after HEAD {path}: {e}"));
        check_x(&g, "plain", 13);
    }
}

#[test]
fn an_http10_stream_ends_with_the_connection() {
    let server = bytes_server();
    let mut c = client(server.addr());
    c.get_mut()
        .write_all(b"GET /100000?body=stream HTTP/1.0\r\n\r\n")
        .expect("send");
    let mut all = Vec::new();
    c.read_to_end(&mut all).expect("read to EOF");
    let (head, body) = split_head(&all);
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(!lower.contains("transfer-encoding"), "{head}");
    assert!(!lower.contains("content-length"), "{head}");
    assert!(lower.contains("connection: close\r\n"), "{head}");
    assert_eq!(body.len(), 100_000, "raw body, then EOF");
    assert!(body.iter().all(|&b| b == b'x'));
}

// ---------------------------------------------------------------------------------------------
// 10. Slow readers

/// Wait until process `pid` uses (almost) no CPU for 300 ms; false if it does not within
/// `timeout`.
fn wait_idle(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut last = common::process_cpu_time(pid);
    let mut quiet = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = common::process_cpu_time(pid);
        // One clock tick (10 ms) of noise is allowed.
        quiet = if now - last <= Duration::from_millis(10) {
            quiet + 1
        } else {
            0
        };
        last = now;
        if quiet == 3 {
            return true;
        }
    }
    false
}

/// Bytes waiting unread in a socket's receive buffer.
fn unread(s: &TcpStream) -> libc::c_int {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, on a socket we own.
    let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD: {}", io::Error::last_os_error());
    n
}

/// The tests that move many bytes or hold many connections run one at a time, so that the
/// timings of one (a fresh client answered within 2 s) are not another's load on a small machine.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

const SLOW: usize = 200;
const SLOW_SIZE: usize = 4 * 1024 * 1024;

/// 200 connections ask for 4 MiB each and read nothing: the server goes idle (no spinning on
/// full sockets), its memory grows by at most its stream buffer per connection (plus slack),
/// it answers a fresh client meanwhile, and a slow connection read in full later gets every
/// byte. A server that buffered the rest of each body would grow by about 200 MiB.
fn slow_readers(query: &str) {
    let _serial = heavy();
    common::raise_nofile_limit(4096);
    let server = bytes_server();
    let addr = server.addr();
    let path = format!("/{SLOW_SIZE}{query}");
    // Warm up: whatever the app allocates once (the shared buffer, the memfd), the worker's
    // buffers, the allocator's arenas.
    {
        let mut c = client(addr);
        for _ in 0..2 {
            c.get_mut().write_all(get(&path).as_bytes()).unwrap();
            let r = read_resp(&mut c, false).expect("warm-up");
            assert_eq!(r.body.len(), SLOW_SIZE);
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = common::vm_rss(server.pid());
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let s = connect_with_rcvbuf(addr, 4096);
            (&s).write_all(get(&path).as_bytes()).expect("send");
            s
        })
        .collect();
    // Every slow reader has its response under way (bytes wait in its receive buffer). On
    // loopback the server's kernel takes about 3 MiB of each body into the socket's send
    // buffer first (its send buffer grows to tcp_wmem's maximum), which keeps the worker busy
    // for a moment; the server then has about 1 MiB of each body left to hold or not.
    let started = Instant::now();
    let answered = common::wait_until(Duration::from_secs(15), || {
        slow.iter().all(|s| unread(s) > 0)
    });
    assert!(
        answered,
        "{} of {SLOW} slow readers got no response bytes",
        slow.iter().filter(|s| unread(s) == 0).count()
    );
    let first_bytes = started.elapsed();
    // Then the server goes idle: nobody reads, so there is nothing to do (a worker that spins
    // on a full socket never does).
    let idle = wait_idle(server.pid(), Duration::from_secs(15));
    assert!(
        idle,
        "the server kept using CPU with {SLOW} clients that read nothing"
    );
    let busy = started.elapsed();
    // Nobody reads for a second.
    let cpu_before = common::process_cpu_time(server.pid());
    std::thread::sleep(Duration::from_millis(1000));
    let cpu = common::process_cpu_time(server.pid()) - cpu_before;
    assert!(
        cpu < Duration::from_millis(300),
        "the server used {cpu:?} of CPU in a second where its {SLOW} clients read nothing"
    );
    eprintln!(
        "slow readers {path}: all had bytes after {first_bytes:?}, server idle after {busy:?}"
    );
    let after = common::vm_rss(server.pid());
    let growth = after.saturating_sub(before);
    let limit = SLOW * 64 * 1024 + 8 * 1024 * 1024;
    eprintln!(
        "slow readers {path}: VmRSS {} -> {} KiB (+{} KiB; limit +{} KiB)",
        before / 1024,
        after / 1024,
        growth / 1024,
        limit / 1024
    );
    assert!(
        growth < limit,
        "{SLOW} slow readers of {path} grew the server by {growth} bytes (limit {limit})"
    );
    // The server keeps serving.
    let started = Instant::now();
    let fresh = common::fresh_get(addr, "/13", Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("a fresh GET /13 with {SLOW} slow readers: {e}"));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "GET /13 took {took:?}");
    assert_eq!(
        (fresh.status, fresh.body.as_slice()),
        (200, &b"xxxxxxxxxxxxx"[..])
    );
    // One slow reader reads everything now.
    let one = slow.swap_remove(SLOW / 2);
    one.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    let mut r = BufReader::with_capacity(64 * 1024, one);
    let resp = read_resp(&mut r, false).unwrap_or_else(|e| panic!("the slow reader: {e}"));
    let kind = match query {
        "" => "plain",
        q => q.trim_start_matches("?body="),
    };
    check_x(&resp, kind, SLOW_SIZE);
    eprintln!("read one slow connection in {:?}", started.elapsed());
    drop(slow);
    drop(r);
}

#[test]
fn slow_readers_of_streams_stay_bounded() {
    slow_readers("?body=stream");
}

#[test]
fn slow_readers_of_files_stay_bounded() {
    slow_readers("");
}

#[test]
fn slow_readers_of_shared_bytes_stay_bounded() {
    slow_readers("?body=shared");
}
