//! The handler end to end through the sans-IO connection (no socket): a request's bytes in,
//! the response's bytes out, file regions read from the descriptor the plan names, as the
//! worker would send them.

use std::os::fd::RawFd;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::http::{Connection, Context, Limits, Plan, Want};

/// 2015-10-21T07:28:00Z: every file's mtime, so validators are known in advance.
const T: u64 = 1_445_412_480;
const T_DATE: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
const BEFORE: &str = "Wed, 21 Oct 2015 07:27:59 GMT";
const HELLO: &[u8] = b"Hello, static!\n";
const SECRET: &str = "TOP-SECRET-4f1c";

struct Site {
    dir: PathBuf,
    handler: FilesHandler,
    data: Vec<u8>,
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write(path: &std::path::Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write");
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("reopen");
    f.set_modified(UNIX_EPOCH + Duration::from_secs(T))
        .expect("set mtime");
}

fn site() -> Site {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ringcorn-serve-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("root");
    for d in ["sub", "bare", "deep/er"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
    write(&root.join("hello.txt"), HELLO);
    write(&root.join("data.bin"), &data);
    write(&root.join("empty.txt"), b"");
    write(&root.join("a b.html"), b"<p>space</p>");
    write(&root.join("sub/index.html"), b"<h1>sub</h1>");
    write(&root.join("bare/x.txt"), b"x");
    write(&root.join("deep/er/index.html"), b"deeper");
    write(&dir.join("secret.txt"), SECRET.as_bytes());
    symlink("hello.txt", root.join("in-link")).expect("symlink");
    symlink("../secret.txt", root.join("out-link")).expect("symlink");
    symlink(dir.join("secret.txt"), root.join("abs-link")).expect("symlink");
    symlink("..", root.join("up")).expect("symlink");
    let fifo =
        std::ffi::CString::new(root.join("fifo").as_os_str().as_encoded_bytes()).expect("no NUL");
    // SAFETY: `fifo` is a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let files = Files::new(&root).expect("root opens");
    let handler = files.handler(WorkerInfo {
        index: 0,
        cpu: None,
    });
    Site { dir, handler, data }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Everything on the wire, to look for what must never be there.
    raw: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn pread(fd: RawFd, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let off = libc::off_t::try_from(offset).expect("offset fits");
    // SAFETY: `buf` has room for `len` bytes; `fd` is open while the plan borrows it.
    let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), len, off) };
    buf.truncate(usize::try_from(n).expect("pread failed"));
    buf
}

impl Site {
    fn raw(&mut self, request: &str) -> Resp {
        let mut ctx = Context::new(Limits::default());
        let mut conn = Connection::new();
        assert_eq!(conn.receive(request.as_bytes(), &ctx), request.len());
        conn.process(&mut self.handler, &mut ctx);
        let mut out = Vec::new();
        for _ in 0..100_000 {
            let n = match conn.plan() {
                Plan::Idle => break,
                Plan::Bytes(b) => {
                    out.extend_from_slice(b);
                    b.len()
                }
                Plan::Vectored(a, b) => {
                    out.extend_from_slice(a);
                    out.extend_from_slice(b);
                    a.len() + b.len()
                }
                Plan::File { head, .. } if !head.is_empty() => {
                    out.extend_from_slice(head);
                    head.len()
                }
                Plan::File {
                    fd, offset, len, ..
                } => {
                    let chunk = pread(fd, offset, len.min(65_536) as usize);
                    out.extend_from_slice(&chunk);
                    chunk.len()
                }
            };
            assert!(n > 0, "an empty plan");
            conn.sent(n);
        }
        assert_ne!(conn.want(), Want::Write, "the response never ended");
        parse(out, request.starts_with("HEAD "))
    }

    fn get(&mut self, path: &str, extra: &str) -> Resp {
        self.raw(&format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n"
        ))
    }
}

fn parse(raw: Vec<u8>, head: bool) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let text = std::str::from_utf8(&raw[..end]).expect("ASCII head");
    let mut lines = text.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line[9..12].parse().expect("status code");
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").expect("a header line");
            (n.to_string(), v.to_string())
        })
        .collect();
    let body = raw[end + 4..].to_vec();
    let resp = Resp {
        status,
        headers,
        body,
        raw: raw.clone(),
    };
    if head || status == 304 {
        assert!(resp.body.is_empty(), "{resp:?}");
    } else {
        let len: usize = resp
            .header("Content-Length")
            .expect("Content-Length")
            .parse()
            .expect("a number");
        assert_eq!(len, resp.body.len(), "{resp:?}");
    }
    resp
}

#[test]
fn serves_a_file_with_its_validators() {
    let mut s = site();
    let r = s.get("/hello.txt", "");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, HELLO);
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("Last-Modified"), Some(T_DATE));
    assert_eq!(r.header("ETag"), Some("\"56273e80-f\""));
    assert_eq!(r.header("Accept-Ranges"), Some("bytes"));
    let r = s.get("/data.bin", "");
    assert_eq!(r.body, s.data);
    assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
    let r = s.get("/a%20b.html", "");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"<p>space</p>"[..]));
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    // A symlink that stays inside the root is followed (where openat2 exists).
    if s.handler.root.resolver == Resolver::Openat2 {
        assert_eq!(s.get("/in-link", "").body, HELLO);
    }
    // Queries and merged slashes.
    assert_eq!(s.get("/hello.txt?v=1", "").body, HELLO);
    assert_eq!(s.get("//hello.txt", "").body, HELLO);
}

#[test]
fn head_has_the_headers_and_length_without_the_body() {
    let mut s = site();
    let r = s.raw("HEAD /data.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("1000"));
    assert!(r.body.is_empty());
    // Range is for GET only: a HEAD describes the whole file.
    let r = s.raw("HEAD /data.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("1000"));
}

#[test]
fn other_methods_are_405() {
    let mut s = site();
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let r = s.raw(&format!(
            "{method} /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        ));
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("Allow"), Some("GET, HEAD"));
    }
}

#[test]
fn nothing_outside_the_root() {
    let mut s = site();
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2e/secret.txt",
        "/.%2e/secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/sub%2f..%2f..%2fsecret.txt",
        "/out-link",
        "/abs-link",
        "/up/secret.txt",
        "/hello.txt%00.html",
        "/%5c..%5csecret.txt",
        "//..//secret.txt",
        "/./hello.txt",
        "/fifo",
        "/missing",
        "/hello.txt/",
        "/hello.txt/x",
    ] {
        let r = s.get(path, "");
        assert_eq!(r.status, 404, "{path}: {r:?}");
        let raw = String::from_utf8_lossy(&r.raw);
        assert!(!raw.contains(SECRET), "{path} leaked the secret: {raw}");
    }
    // What the request parser refuses never gets here: a raw backslash, a bad escape.
    assert_eq!(s.get("/..\\secret.txt", "").status, 400);
    assert_eq!(s.get("/%zz", "").status, 400);
    // Not origin-form.
    let r = s.raw("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 405);
}

#[test]
fn directories() {
    let mut s = site();
    let r = s.get("/sub", "");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/sub/"));
    let r = s.get("/deep/er?x=1&y=2", "");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/deep/er/?x=1&y=2"));
    // The redirect is built from the decoded path: never `//host`.
    let r = s.get("//sub", "");
    assert_eq!(r.header("Location"), Some("/sub/"));
    let r = s.get("/sub/", "");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"<h1>sub</h1>"[..]));
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(s.get("/deep/er/", "").body, b"deeper");
    // No index, no listing.
    let r = s.get("/bare/", "");
    assert_eq!(r.status, 404);
    assert!(!String::from_utf8_lossy(&r.body).contains("x.txt"));
    assert_eq!(s.get("/", "").status, 404);
}

#[test]
fn ranges() {
    let mut s = site();
    let d = s.data.clone();
    let r = s.get("/data.bin", "Range: bytes=10-19\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &d[10..20]);
    assert_eq!(r.header("Content-Range"), Some("bytes 10-19/1000"));
    let r = s.get("/data.bin", "Range: bytes=-5\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &d[995..]);
    assert_eq!(r.header("Content-Range"), Some("bytes 995-999/1000"));
    let r = s.get("/data.bin", "Range: bytes=990-\r\n");
    assert_eq!(r.body, &d[990..]);
    assert_eq!(r.header("Content-Range"), Some("bytes 990-999/1000"));
    let r = s.get("/data.bin", "Range: bytes=999-5000\r\n");
    assert_eq!((r.status, r.body.as_slice()), (206, &d[999..]));
    let r = s.get("/data.bin", "Range: bytes=1000-\r\n");
    assert_eq!(r.status, 416);
    assert_eq!(r.header("Content-Range"), Some("bytes */1000"));
    // Several ranges, a bad header, another unit, two Range lines: the whole file.
    for extra in [
        "Range: bytes=0-1,5-6\r\n",
        "Range: bytes=5-2\r\n",
        "Range: pages=1-2\r\n",
        "Range: bytes=0-1\r\nRange: bytes=2-3\r\n",
    ] {
        let r = s.get("/data.bin", extra);
        assert_eq!((r.status, r.body.len()), (200, 1000), "{extra}");
    }
    // An empty file ignores ranges.
    let r = s.get("/empty.txt", "Range: bytes=0-10\r\n");
    assert_eq!((r.status, r.body.len()), (200, 0));
}

#[test]
fn conditionals() {
    let mut s = site();
    let etag = "\"56273e80-3e8\"";
    let r = s.get("/data.bin", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(r.status, 304);
    assert_eq!(r.header("ETag"), Some(etag));
    assert_eq!(r.header("Last-Modified"), Some(T_DATE));
    assert!(r.header("Content-Length").is_none());
    let r = s.get("/data.bin", "If-None-Match: \"x\", W/\"56273e80-3e8\"\r\n");
    assert_eq!(r.status, 304);
    let r = s.get("/data.bin", "If-None-Match: *\r\n");
    assert_eq!(r.status, 304);
    let r = s.get("/data.bin", "If-None-Match: \"other\"\r\n");
    assert_eq!(r.status, 200);
    let r = s.get("/data.bin", &format!("If-Modified-Since: {T_DATE}\r\n"));
    assert_eq!(r.status, 304);
    let r = s.get("/data.bin", &format!("If-Modified-Since: {BEFORE}\r\n"));
    assert_eq!(r.status, 200);
    let r = s.raw(&format!(
        "HEAD /data.bin HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n"
    ));
    assert_eq!(r.status, 304);
    // If-Range decides whether the range applies.
    let r = s.get(
        "/data.bin",
        &format!("Range: bytes=0-3\r\nIf-Range: {etag}\r\n"),
    );
    assert_eq!((r.status, r.body.len()), (206, 4));
    let r = s.get(
        "/data.bin",
        &format!("Range: bytes=0-3\r\nIf-Range: {T_DATE}\r\n"),
    );
    assert_eq!((r.status, r.body.len()), (206, 4));
    let r = s.get("/data.bin", "Range: bytes=0-3\r\nIf-Range: \"stale\"\r\n");
    assert_eq!((r.status, r.body.len()), (200, 1000));
    let r = s.get(
        "/data.bin",
        &format!("Range: bytes=0-3\r\nIf-Range: {BEFORE}\r\n"),
    );
    assert_eq!((r.status, r.body.len()), (200, 1000));
    // If-Match, If-Unmodified-Since.
    let r = s.get("/data.bin", "If-Match: \"stale\"\r\n");
    assert_eq!(r.status, 412);
    let r = s.get("/data.bin", &format!("If-Match: {etag}\r\n"));
    assert_eq!(r.status, 200);
    let r = s.get("/data.bin", &format!("If-Unmodified-Since: {BEFORE}\r\n"));
    assert_eq!(r.status, 412);
}

#[test]
fn the_walk_fallback_serves_files_and_refuses_every_symlink() {
    let mut s = site();
    let fd = s.handler.root.fd.try_clone().expect("dup");
    let walk = Files {
        root: Arc::new(Root {
            fd,
            path: s.dir.join("root"),
            resolver: Resolver::Walk,
        }),
    };
    s.handler = walk.handler(WorkerInfo {
        index: 0,
        cpu: None,
    });
    assert_eq!(s.get("/hello.txt", "").body, HELLO);
    assert_eq!(s.get("/sub/", "").body, b"<h1>sub</h1>");
    assert_eq!(s.get("/deep/er/", "").body, b"deeper");
    assert_eq!(s.get("/sub", "").status, 301);
    for path in [
        "/in-link",
        "/out-link",
        "/abs-link",
        "/up/secret.txt",
        "/fifo",
    ] {
        let r = s.get(path, "");
        assert_eq!(r.status, 404, "{path}: {r:?}");
        assert!(!String::from_utf8_lossy(&r.raw).contains(SECRET));
    }
}
