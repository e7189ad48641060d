//! Deadlines against slow and stalled clients: a head or a body that trickles in gets 408 and a
//! close within its deadline however steadily it trickles; an idle connection is closed silently;
//! a client that stops reading is dropped after the send deadline; and hundreds of slowloris
//! connections do not slow down anyone else. Deadlines are 1 s (checked on a 250 ms tick), so
//! each is asserted to fire after about 1 s and well before 4 s.

mod common;

use common::*;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A 1 s deadline cannot fire earlier than this after its start (clock slack only).
const EARLIEST: Duration = Duration::from_millis(950);
/// Nor later than this (1 s + the 250 ms tick, with plenty of room for a loaded machine).
const LATEST: Duration = Duration::from_secs(4);

/// Sends `bytes` one at a time, 200 ms apart, watching for an answer between bytes. Returns
/// how long after the first byte the server answered or closed, or panics after `LATEST`.
fn trickle_until_answered(c: &mut Conn, bytes: &[u8]) -> Duration {
    let start = Instant::now();
    for (i, b) in bytes.iter().enumerate() {
        if start.elapsed() > LATEST {
            break;
        }
        // A failed write means the server has already closed; the answer is read below.
        if c.try_send(std::slice::from_ref(b)).is_err() {
            return start.elapsed();
        }
        if c.wait_readable(Duration::from_millis(200)) != Readable::Nothing {
            return start.elapsed();
        }
        assert!(i + 1 < bytes.len(), "test bug: ran out of bytes to trickle");
    }
    panic!(
        "no answer within {LATEST:?} while trickling one byte every 200 ms ({:?} elapsed)",
        start.elapsed()
    );
}

fn assert_408_and_close(c: &mut Conn, took: Duration, what: &str) {
    let resp = c
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("{what}: expected a 408 after {took:?}, got {e:?}"));
    check_refusal(&resp, 408).unwrap_or_else(|e| panic!("{what}: {e}"));
    c.expect_closed();
    eprintln!("{what}: 408 after {took:?}");
    assert!(
        (EARLIEST..LATEST).contains(&took),
        "{what}: the 408 came {took:?} after the first byte (deadline 1 s)"
    );
}

#[test]
fn slowloris_head_gets_408_within_the_header_timeout() {
    let server = Server::app("hello", &["--header-timeout", "1"]);
    let mut c = connect(server.addr());
    c.set_nodelay();
    // A head that would take 16 s to finish at this pace: it never does.
    let head = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: {}",
        "s".repeat(40)
    );
    let took = trickle_until_answered(&mut c, head.as_bytes());
    assert_408_and_close(&mut c, took, "trickled head");
    let mut c2 = connect(server.addr());
    assert_hello(&c2.get("/"));
}

#[test]
fn trickling_body_gets_408_within_the_body_timeout() {
    let server = Server::app("echo", &["--body-timeout", "1"]);
    let cases: [(&str, &[u8], String); 2] = [
        (
            "Content-Length body",
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n",
            "b".repeat(100),
        ),
        (
            "chunked body",
            b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
            format!("64\r\n{}", "b".repeat(100)),
        ),
    ];
    for (name, head, body) in cases {
        let mut c = connect(server.addr());
        c.set_nodelay();
        // The whole head at once: only the body deadline runs.
        c.send(head);
        let took = trickle_until_answered(&mut c, body.as_bytes());
        assert_408_and_close(&mut c, took, name);
    }
    let mut c = connect(server.addr());
    assert_eq!(c.post("/", b"fine").body, b"fine");
}

#[test]
fn idle_connections_are_closed_silently() {
    // (keepalive.rs checks the close after a request; here the timing and the silence are
    // asserted, and a connection that never sent a byte is covered too.)
    let server = Server::app("hello", &["--keep-alive", "1"]);
    let mut never_sent = connect(server.addr());
    let opened = Instant::now();
    let mut after_request = connect(server.addr());
    assert_hello(&after_request.get("/"));
    let answered = Instant::now();
    for (name, c, since) in [
        ("never sent a byte", &mut never_sent, opened),
        ("idle after a request", &mut after_request, answered),
    ] {
        let r = c.wait_readable(LATEST.saturating_sub(since.elapsed()));
        let took = since.elapsed();
        eprintln!("{name}: {r:?} after {took:?}");
        // EOF: an orderly close with no bytes before it (not a 408, not a reset).
        assert_eq!(r, Readable::Eof, "{name}: after {took:?}");
        assert!(
            (EARLIEST..LATEST).contains(&took),
            "{name}: closed after {took:?} (keep-alive 1 s)"
        );
    }
    let mut c = connect(server.addr());
    assert_hello(&c.get("/"));
}

#[test]
fn client_that_stops_reading_is_dropped_after_the_send_timeout() {
    let server = Server::app("echo", &["--send-timeout", "1"]);
    // A small receive buffer (set before connect, so the window stays small) and no reads:
    // the server's responses (echoes of 512 KiB requests, pipelined without end) fill our
    // buffer and its send buffer, then its send makes no progress.
    let stream = connect_with_rcvbuf(server.addr(), 4096);
    stream
        .set_write_timeout(Some(Duration::from_millis(250)))
        .expect("set_write_timeout");
    let req = post_req("/big", &pattern(512 * 1024, 21));
    // The observable: once the server drops the connection it closes its socket while our
    // unread request bytes sit in its receive buffer, so its kernel answers with RST and our
    // (blocked or next) write fails with ECONNRESET or EPIPE. Reads are not used: they would
    // drain our window and let the server make progress, and what a read returns after an RST
    // (queued data first or the error) is less certain than the write error.
    let start = Instant::now();
    let mut last_progress = start;
    let mut sent = 0usize;
    let mut offset = 0usize;
    let mut checked_others = false;
    let dropped = loop {
        assert!(
            start.elapsed() < Duration::from_secs(12),
            "still connected after {:?}: {sent} bytes sent, last progress {:?} ago",
            start.elapsed(),
            last_progress.elapsed()
        );
        match (&stream).write(&req[offset..]) {
            Ok(0) => panic!("write returned 0"),
            Ok(n) => {
                sent += n;
                offset = (offset + n) % req.len();
                last_progress = Instant::now();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                // Stalled. Meanwhile the server keeps serving others (once).
                if !checked_others {
                    let mut other = connect(server.addr());
                    assert_eq!(other.post("/other", b"other").body, b"other");
                    checked_others = true;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::BrokenPipe
                        | ErrorKind::ConnectionAborted
                ) =>
            {
                break Instant::now();
            }
            Err(e) => panic!("unexpected write error after {sent} bytes: {e}"),
        }
    };
    let since_start = dropped - start;
    let since_progress = dropped - last_progress;
    eprintln!(
        "dropped {since_start:?} after the start, {since_progress:?} after our last write \
         progress, {sent} bytes sent"
    );
    assert!(
        checked_others,
        "our writes never stalled: the server never stalled either"
    );
    assert!(
        since_start >= EARLIEST,
        "dropped {since_start:?} after the start: before any send could have stalled 1 s"
    );
    assert!(
        since_progress < LATEST,
        "dropped {since_progress:?} after the connection stalled (send timeout 1 s)"
    );
    let mut other = connect(server.addr());
    assert_eq!(other.post("/after", b"after").body, b"after");
}

/// Holds 500 slowloris connections (a partial head, then one more byte a second) open on a
/// server with `workers` workers and `--header-timeout 10`, while a normal client does 20
/// requests on a fresh connection: all answered, in under 2 s altogether.
fn slowloris_crowd_does_not_block_others(workers: &str) {
    const CROWD: usize = 500;
    raise_nofile_limit(4 * CROWD as u64 + 1024);
    let server = Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--workers",
        workers,
        "--header-timeout",
        "10",
        "hello",
    ]);
    let addr = server.addr();
    let mut crowd: Vec<Conn> = (0..CROWD).map(|_| connect(addr)).collect();
    for c in &mut crowd {
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-a: ");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let trickler = thread::spawn(move || {
        let mut failed = 0usize;
        let deadline = Instant::now() + Duration::from_secs(8);
        while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
            for c in &mut crowd {
                if c.try_send(b"a").is_err() {
                    failed += 1;
                }
            }
            // One byte a second, stopping promptly when asked.
            for _ in 0..20 {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        (crowd, failed)
    });
    // Let the crowd trickle for a while before the normal client comes.
    thread::sleep(Duration::from_millis(1100));

    let start = Instant::now();
    let mut c = connect(addr);
    for i in 0..20 {
        let resp = c.get(&format!("/normal/{i}"));
        assert_hello(&resp);
    }
    let took = start.elapsed();
    eprintln!("{workers} worker(s): 20 requests next to {CROWD} slowloris took {took:?}");

    stop.store(true, Ordering::SeqCst);
    let (crowd, failed) = trickler.join().expect("trickler thread");
    assert!(
        took < Duration::from_secs(2),
        "20 requests took {took:?} next to {CROWD} slowloris connections ({workers} worker(s))"
    );
    // The crowd was held open all along: no write failed, nothing was answered or closed.
    assert_eq!(failed, 0, "writes to slowloris connections failed");
    let mut not_silent = 0;
    for c in &crowd {
        c.stream().set_nonblocking(true).expect("set_nonblocking");
        let mut b = [0u8; 1];
        match c.stream().peek(&mut b) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            _ => not_silent += 1,
        }
    }
    assert_eq!(
        not_silent, 0,
        "slowloris connections answered or closed early"
    );
    // Release the crowd; the server still serves.
    drop(crowd);
    assert_hello(&c.get("/after"));
}

#[test]
fn slowloris_crowd_one_worker() {
    slowloris_crowd_does_not_block_others("1");
}

#[test]
fn slowloris_crowd_two_workers() {
    slowloris_crowd_does_not_block_others("2");
}
