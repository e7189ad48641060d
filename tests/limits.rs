//! Size and count limits, each at a small value set by its flag and at its default, right at
//! the boundary: a request exactly at a limit is served, one byte (or one field) more is
//! refused with the limit's status and a close. Also `Expect: 100-continue`, the per-worker
//! connection limit (back-pressure through the kernel backlog, without a busy loop) and the
//! command-line validation of the new flags.

mod common;

use common::*;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

fn probe(server: &Server, echo: bool) -> Probe {
    Probe {
        addr: server.addr(),
        echo,
    }
}

const OK: Expect<'static> = Expect::Accept(HELLO_BODY.as_bytes());

/// A GET whose request line (without its CRLF) is exactly `len` bytes.
fn request_line_of(len: usize) -> Vec<u8> {
    // "GET " + target + " HTTP/1.1"
    let target = format!("/{}", "a".repeat(len - 4 - 9 - 1));
    let req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(req.find("\r\n"), Some(len));
    req.into_bytes()
}

/// A GET with one extra header line `X-A: vvv...` of exactly `len` bytes (name, ": ", value).
fn field_of(len: usize) -> Vec<u8> {
    format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-A: {}\r\n\r\n",
        "v".repeat(len - 5)
    )
    .into_bytes()
}

/// A GET with exactly `n` header fields (Host and n - 1 others).
fn fields(n: usize) -> Vec<u8> {
    let mut req = String::from("GET / HTTP/1.1\r\nHost: localhost\r\n");
    for i in 1..n {
        req.push_str(&format!("X-F{i}: v\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// A GET whose whole head, up to and including the blank line, is exactly `total` bytes, in
/// lines of at most ~1000 bytes (under the line and count limits).
fn head_of(total: usize) -> Vec<u8> {
    let mut req = String::from("GET / HTTP/1.1\r\nHost: localhost\r\n");
    let rest = total - req.len() - 2;
    let lines = rest.div_ceil(1000);
    for i in 0..lines {
        // Spread `rest` evenly; each line is "X-P0000: " + value + CRLF (11 bytes + value).
        let len = rest / lines + usize::from(i < rest % lines);
        req.push_str(&format!("X-P{i:04}: {}\r\n", "p".repeat(len - 11)));
    }
    req.push_str("\r\n");
    assert_eq!(req.len(), total);
    req.into_bytes()
}

#[test]
fn request_line_limit() {
    let small = Server::app("hello", &["--limit-request-line", "100"]);
    // The same limit from the environment.
    let from_env = Server::spawn_env(
        &["--bind", "127.0.0.1:0", "--workers", "1", "hello"],
        &[("RINGCORN_LIMIT_REQUEST_LINE", "100")],
    );
    let default = Server::app("hello", &[]);
    // An unfinished line already over the limit is refused without waiting for its end.
    let unfinished = format!("GET /{}", "a".repeat(200)).into_bytes();
    for (name, server) in [("flag", &small), ("environment", &from_env)] {
        probe(server, false).run_table(
            &format!("request line, limit 100 from the {name}"),
            &[
                ("100 bytes", request_line_of(100), OK),
                ("101 bytes", request_line_of(101), Expect::Refuse(414)),
                (
                    "unfinished, 205 bytes",
                    unfinished.clone(),
                    Expect::Refuse(414),
                ),
            ],
        );
    }
    probe(&default, false).run_table(
        "request line, default limit 8192",
        &[
            ("8192 bytes", request_line_of(8192), OK),
            ("8193 bytes", request_line_of(8193), Expect::Refuse(414)),
        ],
    );
}

#[test]
fn header_field_size_limit() {
    let small = Server::app("hello", &["--limit-request-field-size", "200"]);
    let default = Server::app("hello", &[]);
    let unfinished = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-A: {}",
        "v".repeat(300)
    );
    probe(&small, false).run_table(
        "field size, limit 200",
        &[
            ("200 bytes", field_of(200), OK),
            ("201 bytes", field_of(201), Expect::Refuse(431)),
            (
                "unfinished, 305 bytes",
                unfinished.into_bytes(),
                Expect::Refuse(431),
            ),
        ],
    );
    probe(&default, false).run_table(
        "field size, default limit 8192",
        &[
            ("8192 bytes", field_of(8192), OK),
            ("8193 bytes", field_of(8193), Expect::Refuse(431)),
        ],
    );
}

#[test]
fn header_field_count_limit() {
    let small = Server::app("hello", &["--limit-request-fields", "10"]);
    let default = Server::app("hello", &[]);
    probe(&small, false).run_table(
        "field count, limit 10",
        &[
            ("10 fields", fields(10), OK),
            ("11 fields", fields(11), Expect::Refuse(431)),
        ],
    );
    probe(&default, false).run_table(
        "field count, default limit 100",
        &[
            ("100 fields", fields(100), OK),
            ("101 fields", fields(101), Expect::Refuse(431)),
        ],
    );
}

#[test]
fn request_head_limit() {
    let small = Server::app("hello", &["--limit-request-head", "1024"]);
    let default = Server::app("hello", &[]);
    probe(&small, false).run_table(
        "head size, limit 1024",
        &[
            ("1024 bytes", head_of(1024), OK),
            ("1025 bytes", head_of(1025), Expect::Refuse(431)),
        ],
    );
    probe(&default, false).run_table(
        "head size, default limit 32768",
        &[
            ("32768 bytes", head_of(32768), OK),
            ("32769 bytes", head_of(32769), Expect::Refuse(431)),
        ],
    );
}

/// `body` in chunks of `size` bytes, with the last chunk (unless `open`).
fn chunked(body: &[u8], size: usize, open: bool) -> Vec<u8> {
    let mut out =
        b"POST /chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in body.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    if !open {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    out
}

/// Sends only the head of a POST declaring `len` bytes and expects a 413 and a close, with
/// not one byte of the body sent.
fn expect_413_from_the_head(server: &Server, len: usize) {
    let mut c = connect(server.addr());
    c.set_read_timeout(Duration::from_secs(2));
    c.send(
        format!("POST /big HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\n\r\n")
            .as_bytes(),
    );
    let resp = c
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("no 413 for Content-Length {len} before the body: {e:?}"));
    check_refusal(&resp, 413).unwrap_or_else(|e| panic!("Content-Length {len}: {e}"));
    c.expect_closed();
}

#[test]
fn body_size_limit() {
    let server = Server::app("echo", &["--max-body-size", "1000"]);
    let body = pattern(1001, 11);
    probe(&server, true).run_table(
        "body size, limit 1000",
        &[
            (
                "Content-Length 1000",
                post_req("/", &body[..1000]),
                Expect::Accept(&body[..1000]),
            ),
            (
                "chunked, 1000 bytes in 10 chunks",
                chunked(&body[..1000], 100, false),
                Expect::Accept(&body[..1000]),
            ),
            // The last chunk never comes: the 413 must not wait for it.
            (
                "chunked, 1001 bytes, unfinished",
                chunked(&body, 100, true),
                Expect::Refuse(413),
            ),
        ],
    );
    expect_413_from_the_head(&server, 1001);

    // At the default (1 MiB; Content-Length at the boundary is in bodies.rs).
    let default = Server::app("echo", &[]);
    let body = pattern(MIB + 1, 12);
    probe(&default, true).run_table(
        "body size, default limit 1 MiB",
        &[
            (
                "chunked, exactly 1 MiB",
                chunked(&body[..MIB], 64 * 1024, false),
                Expect::Accept(&body[..MIB]),
            ),
            (
                "chunked, 1 MiB + 1, unfinished",
                chunked(&body, 64 * 1024, true),
                Expect::Refuse(413),
            ),
        ],
    );
    expect_413_from_the_head(&default, 10 * MIB);
}

#[test]
fn expect_100_continue() {
    let server = Server::app("echo", &["--max-body-size", "1000"]);
    let p = probe(&server, true);

    // Acceptable: 100 Continue, then (after the body) 200, and the connection stays usable.
    let mut c = connect(server.addr());
    c.set_read_timeout(Duration::from_secs(2));
    c.send(
        b"POST /expect HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n",
    );
    let interim = c
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("no 100 Continue before the body: {e:?}"));
    assert_eq!(interim.status_line, status_line(100), "{interim:?}");
    assert!(interim.headers.is_empty(), "{interim:?}");
    let body = pattern(1000, 13);
    c.send(&body);
    let resp = c.read_response();
    assert_eq!(resp.status_line, "HTTP/1.1 200 OK", "{resp:?}");
    assert!(resp.body == body, "echoed body differs");
    p.follow_up(&mut c).unwrap_or_else(|e| panic!("{e}"));

    // Too large: the final 413 at once, no 100, and a close.
    let mut c = connect(server.addr());
    c.set_read_timeout(Duration::from_secs(2));
    c.send(
        b"POST /expect HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 1001\r\n\r\n",
    );
    let resp = c
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("no answer to a too-large Expect request: {e:?}"));
    check_refusal(&resp, 413).unwrap_or_else(|e| panic!("{e}"));
    c.expect_closed();

    // Any other expectation: 417 and a close.
    p.run_table(
        "Expect",
        &[
            (
                "Expect: something-else",
                b"POST / HTTP/1.1\r\nHost: localhost\r\nExpect: something-else\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
                Expect::Refuse(417),
            ),
            (
                "Expect: something-else on a GET",
                b"GET / HTTP/1.1\r\nHost: localhost\r\nExpect: something-else\r\n\r\n".to_vec(),
                Expect::Refuse(417),
            ),
        ],
    );
}

#[test]
fn max_connections_waits_in_the_backlog_without_spinning() {
    let server = Server::app("hello", &["--max-connections", "10"]);
    let addr = server.addr();
    let mut served: Vec<Conn> = (0..10).map(|_| connect(addr)).collect();
    for c in &mut served {
        assert_hello(&c.get("/first"));
    }
    // Five more: the kernel completes their handshakes (backlog), the worker does not
    // accept them, so their requests get no answer. They are not refused or reset either.
    let mut waiting: Vec<Conn> = (0..5).map(|_| connect(addr)).collect();
    for c in &mut waiting {
        c.send(get_req("/waiting").as_bytes());
    }
    let cpu_before = process_cpu_time(server.pid());
    let start = Instant::now();
    for (i, c) in waiting.iter_mut().enumerate() {
        let wait = Duration::from_millis(1000).saturating_sub(start.elapsed());
        let r = c.wait_readable(wait.max(Duration::from_millis(10)));
        assert_eq!(r, Readable::Nothing, "waiting connection {i} at the limit");
    }
    let cpu = process_cpu_time(server.pid()) - cpu_before;
    let spent = start.elapsed();
    // A worker polling accept in a loop burns a whole CPU second in that second.
    assert!(
        cpu < Duration::from_millis(300),
        "the server used {cpu:?} of CPU in {spent:?} at its connection limit (busy loop?)"
    );
    // The accepted connections are still served while at the limit.
    for c in &mut served {
        assert_hello(&c.get("/at-limit"));
    }
    // Close five of them: the five waiting ones are accepted and answered.
    served.truncate(5);
    let closed = Instant::now();
    for (i, c) in waiting.iter_mut().enumerate() {
        c.set_read_timeout(Duration::from_secs(3));
        let resp = c.try_read_response(false).unwrap_or_else(|e| {
            panic!("waiting connection {i} not answered after the close: {e:?}")
        });
        assert_hello(&resp);
    }
    assert!(
        closed.elapsed() < Duration::from_secs(3),
        "{:?}",
        closed.elapsed()
    );
    for c in &mut served {
        assert_hello(&c.get("/after"));
    }
}

/// The exit code of the binary run with `args` and `envs`; `None` when it was still running
/// (serving) after 3 s, then it is killed. A usage error exits at once.
fn exit_code(args: &[&str], envs: &[(&str, &str)]) -> Option<i32> {
    let mut cmd = cli_command(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn ringcorn");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_limit_and_timeout_flags_exit_2() {
    let flags = [
        "--limit-request-line",
        "--limit-request-field-size",
        "--limit-request-fields",
        "--limit-request-head",
        "--max-body-size",
        "--max-connections",
        "--header-timeout",
        "--body-timeout",
        "--send-timeout",
        "--keep-alive",
    ];
    let mut failures = Vec::new();
    let mut check = |args: Vec<&str>, envs: &[(&str, &str)]| {
        let code = exit_code(&args, envs);
        if code != Some(2) {
            failures.push(format!("{args:?} {envs:?}: {code:?}"));
        }
    };
    for flag in flags {
        for value in ["0", "abc", "-1", ""] {
            check(
                vec!["--bind", "127.0.0.1:0", "--workers", "1", flag, value],
                &[],
            );
        }
    }
    // More than 256 fields cannot be configured.
    check(
        vec![
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--limit-request-fields",
            "257",
        ],
        &[],
    );
    // The environment is validated the same way.
    check(
        vec!["--bind", "127.0.0.1:0", "--workers", "1"],
        &[("RINGCORN_MAX_BODY_SIZE", "lots")],
    );
    check(
        vec!["--bind", "127.0.0.1:0", "--workers", "1"],
        &[("RINGCORN_LIMIT_REQUEST_FIELDS", "0")],
    );
    assert!(
        failures.is_empty(),
        "expected exit 2 (None: it started serving):\n{}",
        failures.join("\n")
    );
    // 256 fields is allowed: the server starts.
    let server = Server::app("hello", &["--limit-request-fields", "256"]);
    assert_hello(&connect(server.addr()).get("/"));
}
