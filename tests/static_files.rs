//! The `static` app (`ringcorn static --root DIR`) over real sockets: what it serves, what it
//! refuses (nothing outside the root, whatever the path or the symlinks say), HEAD, ranges,
//! conditionals, directories, and a file that shrinks while it is being sent.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{symlink, MetadataExt};
use std::time::{Duration, Instant};

/// What the file outside the root holds; no response may ever contain it.
const SECRET: &str = "TOP-SECRET-d41d8cd98f00";
const HELLO: &[u8] = b"Hello, static world!\n";
const INDEX: &[u8] = b"<!doctype html><h1>sub index</h1>\n";
/// The big file: 1 MiB of every byte value.
const BIG: usize = 1024 * 1024;

/// A root directory with its files, and the server serving it.
///
/// ```text
/// TMP/secret.txt                 SECRET (outside the root)
/// TMP/root/hello.txt             HELLO
/// TMP/root/big.bin               1 MiB pattern
/// TMP/root/empty.txt             (empty)
/// TMP/root/sub/index.html        INDEX
/// TMP/root/bare/x.txt            a directory without index.html
/// TMP/root/in-link -> hello.txt  a symlink that stays inside
/// TMP/root/out-link -> ../secret.txt
/// TMP/root/abs-link -> TMP/secret.txt
/// ```
struct Site {
    server: Server,
    tmp: TempDir,
    big: Vec<u8>,
}

impl Site {
    fn new() -> Site {
        let tmp = TempDir::new("static");
        let root = tmp.join("root");
        for dir in ["sub", "bare"] {
            std::fs::create_dir_all(root.join(dir)).expect("mkdir");
        }
        let big = pattern(BIG, 7);
        let write = |name: &str, bytes: &[u8]| {
            std::fs::write(root.join(name), bytes).unwrap_or_else(|e| panic!("write {name}: {e}"))
        };
        write("hello.txt", HELLO);
        write("big.bin", &big);
        write("empty.txt", b"");
        write("sub/index.html", INDEX);
        write("bare/x.txt", b"x\n");
        std::fs::write(tmp.join("secret.txt"), SECRET).expect("write secret");
        symlink("hello.txt", root.join("in-link")).expect("symlink");
        symlink("../secret.txt", root.join("out-link")).expect("symlink");
        symlink(tmp.join("secret.txt"), root.join("abs-link")).expect("symlink");
        let root_arg = tmp.arg("root");
        let server = Server::spawn(&[
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "1",
            "static",
            "--root",
            &root_arg,
        ]);
        Site { server, tmp, big }
    }

    fn root(&self) -> std::path::PathBuf {
        self.tmp.join("root")
    }

    fn conn(&self) -> Conn {
        connect(self.server.addr())
    }

    /// `GET path` with extra header lines (each ending in CRLF), on a fresh connection.
    fn get(&self, path: &str, extra: &str) -> Response {
        let mut c = self.conn();
        c.send(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n").as_bytes());
        c.read_response()
    }

    /// The ETag nginx would give `name`: `"<mtime hex>-<size hex>"`.
    fn etag(&self, name: &str) -> String {
        let meta = std::fs::metadata(self.root().join(name)).expect("stat");
        format!("\"{:x}-{:x}\"", meta.mtime(), meta.size())
    }

    /// Whether the server resolves with openat2 (symlinks inside the root followed) rather
    /// than its fallback, which refuses every symlink.
    fn follows_inner_symlinks(&self) -> bool {
        !self.server.log().contains("openat2 is not available")
    }
}

/// A 404 that does not give away the secret.
#[track_caller]
fn assert_not_found(resp: &Response, what: &str) {
    assert_eq!(resp.status, 404, "{what}: {resp:?}");
    assert!(
        !resp.body_str().contains(SECRET),
        "{what} leaked the secret: {resp:?}"
    );
    assert!(
        !resp.body_str().contains("root:"),
        "{what} looks like /etc/passwd: {resp:?}"
    );
    check_common_headers(resp, false);
}

// ---------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------

#[test]
fn serves_a_file_with_type_validators_and_length() {
    let site = Site::new();
    let resp = site.get("/hello.txt", "");
    assert_eq!(resp.status_line, "HTTP/1.1 200 OK", "{resp:?}");
    assert_eq!(resp.body, HELLO);
    check_common_headers(&resp, false);
    assert_eq!(
        resp.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        resp.header("Content-Length"),
        Some(HELLO.len().to_string().as_str())
    );
    assert_eq!(resp.header("Accept-Ranges"), Some("bytes"));
    assert_eq!(
        resp.header("ETag"),
        Some(site.etag("hello.txt").as_str()),
        "{resp:?}"
    );
    let mtime = std::fs::metadata(site.root().join("hello.txt"))
        .expect("stat")
        .mtime();
    let lm = resp.header("Last-Modified").expect("Last-Modified");
    assert_eq!(parse_imf_fixdate(lm), Some(mtime), "{lm}");
    assert!(!resp.closes(), "keep-alive: {resp:?}");
}

#[test]
fn big_file_is_byte_exact_and_the_connection_stays_in_sync() {
    let site = Site::new();
    let mut c = site.conn();
    for _ in 0..2 {
        let resp = c.get("/big.bin");
        assert_eq!(resp.status, 200, "{:?}", resp.status_line);
        assert_eq!(
            resp.header("Content-Type"),
            Some("application/octet-stream")
        );
        assert_eq!(resp.content_length(), BIG);
        assert!(resp.body == site.big, "the 1 MiB body differs");
    }
    let resp = c.get("/hello.txt");
    assert_eq!(resp.body, HELLO);
}

#[test]
fn pipelined_files_come_back_in_order() {
    let site = Site::new();
    let mut c = site.conn();
    let mut batch = Vec::new();
    for path in ["/hello.txt", "/big.bin", "/sub/", "/hello.txt"] {
        batch.extend_from_slice(get_req(path).as_bytes());
    }
    c.send(&batch);
    assert_eq!(c.read_response().body, HELLO);
    assert!(c.read_response().body == site.big);
    assert_eq!(c.read_response().body, INDEX);
    assert_eq!(c.read_response().body, HELLO);
}

#[test]
fn empty_file_is_200_with_length_0_even_with_a_range() {
    let site = Site::new();
    for extra in ["", "Range: bytes=0-10\r\n", "Range: bytes=-1\r\n"] {
        let resp = site.get("/empty.txt", extra);
        assert_eq!(resp.status, 200, "{extra}: {resp:?}");
        assert_eq!(resp.header("Content-Length"), Some("0"));
        assert!(resp.body.is_empty());
        assert!(resp.header("Content-Range").is_none(), "{resp:?}");
    }
}

#[test]
fn head_has_the_length_and_no_body() {
    let site = Site::new();
    let mut c = site.conn();
    c.send(head_req("/big.bin").as_bytes());
    let resp = c.read_head_response();
    assert_eq!(resp.status, 200, "{resp:?}");
    check_common_headers(&resp, true);
    assert_eq!(resp.content_length(), BIG);
    assert_eq!(resp.header("ETag"), Some(site.etag("big.bin").as_str()));
    // Had any body byte been sent, this response would not parse.
    let resp = c.get("/hello.txt");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body, HELLO);
}

#[test]
fn post_and_other_methods_are_405_with_allow() {
    let site = Site::new();
    let mut c = site.conn();
    let resp = c.post("/hello.txt", b"data");
    assert_eq!(resp.status, 405, "{resp:?}");
    assert_eq!(resp.header("Allow"), Some("GET, HEAD"));
    check_common_headers(&resp, false);
    for method in ["PUT", "DELETE", "PATCH"] {
        c.send(
            format!("{method} /hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
        let resp = c.read_response();
        assert_eq!(resp.status, 405, "{method}: {resp:?}");
        assert_eq!(resp.header("Allow"), Some("GET, HEAD"));
    }
    // The file is untouched, and the connection still works.
    assert_eq!(c.get("/hello.txt").body, HELLO);
}

// ---------------------------------------------------------------------------
// Nothing outside the root
// ---------------------------------------------------------------------------

#[test]
fn raw_dotdot_is_404() {
    let site = Site::new();
    for path in [
        "/../secret.txt",
        "/../../../../etc/passwd",
        "/sub/../../secret.txt",
        "/sub/../hello.txt",
        "/./hello.txt",
    ] {
        assert_not_found(&site.get(path, ""), path);
    }
}

#[test]
fn encoded_dotdot_is_404() {
    let site = Site::new();
    for path in [
        "/%2e%2e/secret.txt",
        "/%2E%2e/secret.txt",
        "/%2e%2E/%2e%2e/etc/passwd",
        "/.%2e/secret.txt",
        "/%2e./secret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/%2e/hello.txt",
    ] {
        assert_not_found(&site.get(path, ""), path);
    }
}

#[test]
fn encoded_slash_is_404() {
    let site = Site::new();
    // `sub/index.html` exists; `sub%2findex.html` names no file.
    for path in [
        "/sub%2findex.html",
        "/sub%2Findex.html",
        "/%2e%2e%2fsecret.txt",
        "/..%2fsecret.txt",
        "/%2fetc/passwd",
    ] {
        assert_not_found(&site.get(path, ""), path);
    }
}

#[test]
fn encoded_nul_is_404() {
    let site = Site::new();
    for path in ["/hello.txt%00", "/hello.txt%00.html", "/%00", "/sub/%00/x"] {
        assert_not_found(&site.get(path, ""), path);
    }
}

#[test]
fn backslashes_never_climb() {
    let site = Site::new();
    // A raw backslash is refused by the request parser itself (400, then close), before any
    // app sees it.
    let mut c = site.conn();
    c.send(get_req("/..\\secret.txt").as_bytes());
    let resp = c.read_response();
    assert_eq!(resp.status, 400, "{resp:?}");
    assert!(!resp.body_str().contains(SECRET));
    assert!(resp.closes(), "{resp:?}");
    c.expect_closed();
    // Encoded, it reaches the app, which refuses it.
    for path in [
        "/..%5csecret.txt",
        "/%5c..%5c..%5csecret.txt",
        "/sub%5cindex.html",
    ] {
        assert_not_found(&site.get(path, ""), path);
    }
}

#[test]
fn absolute_paths_stay_under_the_root() {
    let site = Site::new();
    for path in ["//etc/passwd", "///etc/passwd", "//..//secret.txt"] {
        assert_not_found(&site.get(path, ""), path);
    }
    // Absolute-form: the path part is served from the root like any other.
    let resp = site.get("http://localhost//etc/passwd", "");
    assert_not_found(&resp, "absolute-form //etc/passwd");
    let resp = site.get("http://localhost/hello.txt", "");
    assert_eq!(resp.body, HELLO, "{resp:?}");
    // `//hello.txt` is `hello.txt` under the root (slashes merge, as in nginx).
    assert_eq!(site.get("//hello.txt", "").body, HELLO);
}

#[test]
fn asterisk_form_is_not_a_file() {
    let site = Site::new();
    let mut c = site.conn();
    c.send(b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let resp = c.read_response();
    // OPTIONS is not GET or HEAD: 405 comes first; either way no file.
    assert_eq!(resp.status, 405, "{resp:?}");
}

#[test]
fn symlink_out_of_the_root_is_404() {
    let site = Site::new();
    for path in ["/out-link", "/abs-link"] {
        assert_not_found(&site.get(path, ""), path);
        let mut c = site.conn();
        c.send(head_req(path).as_bytes());
        let resp = c.read_head_response();
        assert_eq!(resp.status, 404, "HEAD {path}: {resp:?}");
    }
}

#[test]
fn symlink_inside_the_root_is_followed() {
    let site = Site::new();
    let resp = site.get("/in-link", "");
    if site.follows_inner_symlinks() {
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(resp.body, HELLO);
    } else {
        // Without openat2 every symlink is refused.
        assert_not_found(&resp, "/in-link without openat2");
    }
}

#[test]
fn a_fifo_under_the_root_is_404_and_blocks_nothing() {
    let site = Site::new();
    let fifo = std::ffi::CString::new(site.root().join("fifo").to_string_lossy().into_owned())
        .expect("no NUL");
    // SAFETY: `fifo` is a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let started = Instant::now();
    assert_not_found(&site.get("/fifo", ""), "/fifo");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(site.get("/hello.txt", "").body, HELLO);
}

#[test]
fn unreadable_file_is_403() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!("running as root: permissions are not enforced; skipping");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let site = Site::new();
    let path = site.root().join("locked.txt");
    std::fs::write(&path, b"locked").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let resp = site.get("/locked.txt", "");
    assert_eq!(resp.status, 403, "{resp:?}");
    assert!(!resp.body_str().contains("locked\n"));
}

// ---------------------------------------------------------------------------
// Directories
// ---------------------------------------------------------------------------

#[test]
fn directory_without_slash_redirects() {
    let site = Site::new();
    let resp = site.get("/sub", "");
    assert_eq!(resp.status, 301, "{resp:?}");
    assert_eq!(resp.header("Location"), Some("/sub/"));
    check_common_headers(&resp, false);
    let resp = site.get("/sub?a=1&b=2", "");
    assert_eq!(resp.status, 301, "{resp:?}");
    assert_eq!(resp.header("Location"), Some("/sub/?a=1&b=2"));
    // Never a `//host` Location, whatever the request's slashes.
    let resp = site.get("//sub", "");
    assert_eq!(resp.header("Location"), Some("/sub/"), "{resp:?}");
    let resp = site.get("/bare", "");
    assert_eq!(resp.status, 301, "{resp:?}");
    assert_eq!(resp.header("Location"), Some("/bare/"));
}

#[test]
fn directory_with_slash_serves_its_index() {
    let site = Site::new();
    let resp = site.get("/sub/", "");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body, INDEX);
    assert_eq!(
        resp.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        resp.header("ETag"),
        Some(site.etag("sub/index.html").as_str())
    );
    assert_eq!(site.get("/sub/index.html", "").body, INDEX);
}

#[test]
fn directory_without_index_is_404_not_a_listing() {
    let site = Site::new();
    for path in ["/bare/", "/"] {
        let resp = site.get(path, "");
        assert_not_found(&resp, path);
        for name in ["x.txt", "hello.txt", "sub"] {
            assert!(
                !resp.body_str().contains(name),
                "{path} lists {name}: {resp:?}"
            );
        }
    }
    // A file is not a directory.
    assert_not_found(&site.get("/hello.txt/", ""), "/hello.txt/");
}

// ---------------------------------------------------------------------------
// Ranges
// ---------------------------------------------------------------------------

#[test]
fn range_is_206_with_exact_bytes() {
    let site = Site::new();
    let resp = site.get("/big.bin", "Range: bytes=100-199\r\n");
    assert_eq!(resp.status_line, "HTTP/1.1 206 Partial Content", "{resp:?}");
    check_common_headers(&resp, false);
    assert_eq!(
        resp.header("Content-Range"),
        Some(format!("bytes 100-199/{BIG}").as_str())
    );
    assert_eq!(resp.header("Content-Length"), Some("100"));
    assert_eq!(resp.body, &site.big[100..200]);
    // Past the end is clamped to it.
    let resp = site.get(
        "/big.bin",
        &format!("Range: bytes={}-99999999\r\n", BIG - 3),
    );
    assert_eq!(resp.status, 206, "{resp:?}");
    assert_eq!(resp.body, &site.big[BIG - 3..]);
}

#[test]
fn suffix_range() {
    let site = Site::new();
    let resp = site.get("/big.bin", "Range: bytes=-500\r\n");
    assert_eq!(resp.status, 206, "{resp:?}");
    assert_eq!(
        resp.header("Content-Range"),
        Some(format!("bytes {}-{}/{BIG}", BIG - 500, BIG - 1).as_str())
    );
    assert_eq!(resp.body, &site.big[BIG - 500..]);
}

#[test]
fn open_ended_range() {
    let site = Site::new();
    let start = BIG - 4096 - 17;
    let resp = site.get("/big.bin", &format!("Range: bytes={start}-\r\n"));
    assert_eq!(resp.status, 206, "{resp:?}");
    assert_eq!(
        resp.header("Content-Range"),
        Some(format!("bytes {start}-{}/{BIG}", BIG - 1).as_str())
    );
    assert_eq!(resp.body, &site.big[start..]);
}

#[test]
fn unsatisfiable_range_is_416() {
    let site = Site::new();
    let mut c = site.conn();
    for range in [format!("bytes={BIG}-"), "bytes=-0".to_string()] {
        c.send(
            format!("GET /big.bin HTTP/1.1\r\nHost: localhost\r\nRange: {range}\r\n\r\n")
                .as_bytes(),
        );
        let resp = c.read_response();
        assert_eq!(resp.status, 416, "{range}: {resp:?}");
        assert_eq!(
            resp.header("Content-Range"),
            Some(format!("bytes */{BIG}").as_str())
        );
        check_common_headers(&resp, false);
    }
    assert_eq!(c.get("/hello.txt").body, HELLO);
}

#[test]
fn invalid_or_multiple_ranges_get_the_whole_file() {
    let site = Site::new();
    for range in ["bytes=5-2", "bytes=abc", "pages=0-1", "bytes=0-1,10-20"] {
        let resp = site.get("/hello.txt", &format!("Range: {range}\r\n"));
        assert_eq!(resp.status, 200, "{range}: {resp:?}");
        assert_eq!(resp.body, HELLO);
    }
}

// ---------------------------------------------------------------------------
// Conditionals
// ---------------------------------------------------------------------------

#[test]
fn if_none_match_is_304() {
    let site = Site::new();
    let first = site.get("/hello.txt", "");
    let etag = first.header("ETag").expect("ETag").to_string();
    let mut c = site.conn();
    for value in [etag.clone(), format!("\"nope\", W/{etag}"), "*".to_string()] {
        c.send(
            format!("GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: {value}\r\n\r\n")
                .as_bytes(),
        );
        let resp = c.read_response();
        assert_eq!(
            resp.status_line, "HTTP/1.1 304 Not Modified",
            "{value}: {resp:?}"
        );
        assert_eq!(resp.header("ETag"), Some(etag.as_str()));
        assert_eq!(resp.header("Last-Modified"), first.header("Last-Modified"));
        assert!(resp.body.is_empty());
    }
    // Nothing of a body was sent: the connection is in sync.
    assert_eq!(c.get("/hello.txt").body, HELLO);
    let resp = site.get("/hello.txt", "If-None-Match: \"other\"\r\n");
    assert_eq!(resp.status, 200, "{resp:?}");
}

#[test]
fn if_modified_since_is_304() {
    let site = Site::new();
    let first = site.get("/hello.txt", "");
    let lm = first
        .header("Last-Modified")
        .expect("Last-Modified")
        .to_string();
    let resp = site.get("/hello.txt", &format!("If-Modified-Since: {lm}\r\n"));
    assert_eq!(resp.status, 304, "{resp:?}");
    assert!(resp.body.is_empty());
    assert_eq!(resp.header("ETag"), first.header("ETag"));
    let resp = site.get(
        "/hello.txt",
        "If-Modified-Since: Thu, 01 Jan 1970 00:00:01 GMT\r\n",
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body, HELLO);
    // If-None-Match, when present, decides alone.
    let resp = site.get(
        "/hello.txt",
        &format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {lm}\r\n"),
    );
    assert_eq!(resp.status, 200, "{resp:?}");
}

#[test]
fn if_range_mismatch_sends_the_whole_file() {
    let site = Site::new();
    let etag = site.etag("big.bin");
    let resp = site.get(
        "/big.bin",
        &format!("Range: bytes=0-9\r\nIf-Range: {etag}\r\n"),
    );
    assert_eq!(resp.status, 206, "{resp:?}");
    assert_eq!(resp.body, &site.big[..10]);
    let resp = site.get("/big.bin", "Range: bytes=0-9\r\nIf-Range: \"stale\"\r\n");
    assert_eq!(resp.status, 200, "{:?}", resp.status_line);
    assert!(resp.body == site.big, "the whole file");
    assert!(resp.header("Content-Range").is_none());
    // A weak tag never matches If-Range.
    let resp = site.get(
        "/big.bin",
        &format!("Range: bytes=0-9\r\nIf-Range: W/{etag}\r\n"),
    );
    assert_eq!(resp.status, 200, "{:?}", resp.status_line);
}

// ---------------------------------------------------------------------------
// A file that shrinks while it is sent
// ---------------------------------------------------------------------------

#[test]
fn file_truncated_while_sending_ends_the_connection() {
    let site = Site::new();
    // Large enough that the socket buffers cannot hold it all while the client holds back.
    let size = 32 * 1024 * 1024;
    let path = site.root().join("huge.bin");
    let content = pattern(size, 11);
    std::fs::write(&path, &content).expect("write huge");

    let mut stream = connect_with_rcvbuf(site.server.addr(), 4096);
    stream
        .write_all(get_req("/huge.bin").as_bytes())
        .expect("send");
    // Read the head and a first part of the body slowly.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    let head_end = loop {
        assert!(Instant::now() < deadline, "no response head");
        let n = stream.read(&mut buf).expect("read head");
        assert!(n > 0, "closed before the head");
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        head.contains(&format!("Content-Length: {size}\r\n")),
        "{head}"
    );
    while got.len() - head_end < 64 * 1024 {
        let n = stream.read(&mut buf).expect("read body");
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(1));
    }
    let before = got.len() - head_end;
    assert_eq!(&got[head_end..], &content[..before], "the first bytes");

    // Shrink the file under the server's feet, then read on until the connection ends.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open huge")
        .set_len(0)
        .expect("truncate");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut body = before;
    let ended = loop {
        if Instant::now() > deadline {
            break false;
        }
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => body += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                break true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break false
            }
            Err(e) => panic!("reading the rest: {e}"),
        }
    };
    assert!(
        ended,
        "the connection neither ended nor progressed after {body} body bytes of {size}"
    );
    assert!(
        body < size,
        "all {size} bytes arrived although the file was truncated after {before}"
    );

    // The server is fine: a new connection is served.
    let resp = site.get("/hello.txt", "");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body, HELLO);
    let resp = site.get("/huge.bin", "");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("Content-Length"), Some("0"));
}
