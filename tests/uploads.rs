//! Request bodies larger than memory: past `--body-buffer-size` a body is spooled to a
//! temporary file as it arrives, so the `echo` app streams a 1 GB upload back with the
//! server's memory bounded; framing, `Expect: 100-continue`, limits and the body deadline work
//! as they do for bodies held in memory.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::Server;

const MIB: usize = 1024 * 1024;

/// Block `k` of an upload: 1 MiB of a fixed pattern with `k` in its first 8 bytes, so a block
/// out of place or repeated is caught.
fn block(k: u64, pattern: &[u8]) -> Vec<u8> {
    let mut b = pattern.to_vec();
    b[..8].copy_from_slice(&k.to_le_bytes());
    b
}

fn pattern() -> Vec<u8> {
    (0..MIB as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// The server's peak resident memory (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

fn spool_dir() -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("uploads");
    std::fs::create_dir_all(&dir).expect("spool dir");
    dir.to_string_lossy().into_owned()
}

fn echo_server(extra: &[&str]) -> Server {
    echo_server_limited("2000000000", extra)
}

fn echo_server_limited(max_body: &str, extra: &[&str]) -> Server {
    let dir = spool_dir();
    let mut args = vec!["--max-body-size", max_body, "--body-temp-dir", dir.as_str()];
    args.extend_from_slice(extra);
    Server::app("echo", &args)
}

/// Read one response head; returns it and the bytes of the body read with it.
fn read_head(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = stream.read(&mut chunk).expect("read head");
        assert!(n > 0, "closed before a response head");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return (String::from_utf8_lossy(&buf).into_owned(), rest);
        }
        assert!(buf.len() < 64 * 1024, "head too long");
    }
}

/// Upload `blocks` MiB (as Content-Length, or chunked in 1 MiB chunks) and check the echo,
/// block by block, without holding either in memory.
fn round_trip(server: &Server, blocks: u64, chunked: bool) {
    let pattern = pattern();
    let mut stream = TcpStream::connect(server.addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let total = blocks * MIB as u64;
    let head = if chunked {
        "POST /up HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-test\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
    } else {
        format!("POST /up HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-test\r\nContent-Length: {total}\r\n\r\n")
    };
    let mut writer = stream.try_clone().expect("clone");
    let sent_pattern = pattern.clone();
    let sender = thread::spawn(move || {
        writer.write_all(head.as_bytes()).expect("send head");
        for k in 0..blocks {
            if chunked {
                writer
                    .write_all(format!("{:x}\r\n", MIB).as_bytes())
                    .expect("size");
            }
            writer.write_all(&block(k, &sent_pattern)).expect("send");
            if chunked {
                writer.write_all(b"\r\n").expect("crlf");
            }
        }
        if chunked {
            writer.write_all(b"0\r\n\r\n").expect("last chunk");
        }
    });
    let (head, mut body) = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("Content-Length: {total}\r\n")),
        "{head}"
    );
    assert!(
        head.contains("Content-Type: application/x-test\r\n"),
        "{head}"
    );
    let mut k = 0u64;
    let mut chunk = vec![0u8; MIB];
    while k < blocks {
        while body.len() < MIB {
            let n = stream.read(&mut chunk).expect("read body");
            assert!(n > 0, "closed after {k} MiB of {blocks}");
            body.extend_from_slice(&chunk[..n]);
        }
        let rest = body.split_off(MIB);
        assert!(body == block(k, &pattern), "block {k} differs");
        body = rest;
        k += 1;
    }
    assert!(body.is_empty(), "{} bytes past the body", body.len());
    sender.join().expect("sender");
}

#[test]
fn a_gigabyte_upload_is_echoed_with_bounded_memory() {
    let server = echo_server(&[]);
    let started = Instant::now();
    round_trip(&server, 1024, false);
    let peak = peak_rss(server.pid());
    eprintln!(
        "1 GiB echoed in {:?}; server peak RSS {} KiB",
        started.elapsed(),
        peak / 1024
    );
    // Held in memory it would need the whole gigabyte (twice, with the response).
    assert!(peak < 64 * MIB as u64, "peak RSS {} KiB", peak / 1024);
}

#[test]
fn a_chunked_upload_past_the_buffer_is_spooled_with_bounded_memory() {
    let server = echo_server(&["--body-buffer-size", "65536"]);
    round_trip(&server, 200, true);
    let peak = peak_rss(server.pid());
    assert!(peak < 48 * MIB as u64, "peak RSS {} KiB", peak / 1024);
}

#[test]
fn spooled_bodies_keep_expect_continue_limits_and_pipelining() {
    let server = echo_server_limited("100000", &["--body-buffer-size", "4096"]);
    let mut c = common::connect(server.addr());
    c.set_read_timeout(Duration::from_secs(10));
    // 100-continue first, then the body; the next request on the connection is answered.
    let body = common::pattern(50_000, 7);
    c.send(b"PUT /a HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 50000\r\n\r\n");
    let interim = c.read_response();
    assert_eq!(interim.status, 100);
    let mut rest = body.clone();
    rest.extend_from_slice(b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n");
    c.send(&rest);
    let first = c.read_response();
    assert_eq!(first.status, 200);
    assert!(first.body == body, "spooled body differs");
    let second = c.read_response();
    assert_eq!(second.status, 200);
    assert!(second.body.is_empty());
    // Over the limit: refused before it is read, whatever the buffer.
    let mut c = common::connect(server.addr());
    c.send(b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 100001\r\n\r\n");
    common::assert_error_close(&c.read_response(), 413);
}

#[test]
fn a_stalled_spooled_body_meets_the_body_deadline() {
    let server = echo_server(&["--body-buffer-size", "4096", "--body-timeout", "1"]);
    let mut c = common::connect(server.addr());
    c.set_read_timeout(Duration::from_secs(10));
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    c.send(&[b'x'; 20_000]);
    let started = Instant::now();
    let resp = c.read_response();
    common::assert_error_close(&resp, 408);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_missing_temp_dir_is_a_500_not_a_hang() {
    let server = Server::app(
        "echo",
        &[
            "--body-buffer-size",
            "4096",
            "--body-temp-dir",
            "/nonexistent-ringcorn-dir",
        ],
    );
    let mut c = common::connect(server.addr());
    c.set_read_timeout(Duration::from_secs(10));
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10000\r\n\r\n");
    c.send(&[b'x'; 10_000]);
    common::assert_error_close(&c.read_response(), 500);
    assert!(server.wait_log_count("cannot create a temporary file", 1, Duration::from_secs(5)));
}
