//! `--health-path` and `--drain-delay`: the server answers the health path itself, before
//! the app; on TERM with a drain delay it keeps serving, the health path answering 503, so
//! that a balancer polling it stops sending before the listeners close: no request fails.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn the_health_path_is_answered_before_the_app() {
    let server = Server::app("echo", &["--health-path", "/healthz"]);
    let mut c = connect(server.addr());
    let resp = c.post("/healthz", b"not echoed");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body_str(), "ok\n");
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    let resp = c.post("/healthz/x", b"echoed");
    assert_eq!(resp.body_str(), "echoed", "only the exact path");
    let resp = c.post("/other", b"echoed");
    assert_eq!(resp.body_str(), "echoed");
}

#[test]
fn without_the_option_the_app_answers_every_path() {
    let server = Server::app("echo", &[]);
    let resp = connect(server.addr()).post("/healthz", b"mine");
    assert_eq!(resp.body_str(), "mine");
}

/// A balancer: polls the health path on fresh connections every 50 ms and says when it
/// first answered 503.
fn poll_health(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<(Instant, u16)>> {
    thread::spawn(move || {
        let mut seen = Vec::new();
        let start = Instant::now();
        while !stop.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(30) {
            match fresh_get(addr, "/healthz", IO_TIMEOUT) {
                Ok(resp) => seen.push((Instant::now(), resp.status)),
                Err(_) => seen.push((Instant::now(), 0)),
            }
            if seen.last().is_some_and(|&(_, s)| s != 200) {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        seen
    })
}

#[test]
fn a_drain_delay_lets_the_balancer_stop_sending_first() {
    for class in ["thread", "process"] {
        let mut server = Server::spawn(&[
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--worker-class",
            class,
            "--health-path",
            "/healthz",
            "--drain-delay",
            "2",
            "hello",
        ]);
        let addr = server.addr();
        let load = Load::start(addr, 3, "/", HELLO_BODY, Duration::from_secs(30));
        let stop = Arc::new(AtomicBool::new(false));
        let poller = poll_health(addr, Arc::clone(&stop));
        thread::sleep(Duration::from_millis(500));
        let termed = Instant::now();
        server.signal(libc::SIGTERM);
        let seen = poller.join().expect("poller");
        let &(at, status) = seen.last().expect("polled");
        assert_eq!(status, 503, "{class}: the health path turns 503: {seen:?}");
        assert!(
            seen[..seen.len() - 1].iter().all(|&(_, s)| s == 200),
            "{class}: 200 until then: {seen:?}"
        );
        assert!(
            at.duration_since(termed) < Duration::from_millis(1000),
            "{class}: 503 soon after TERM ({:?})",
            at.duration_since(termed)
        );
        // The balancer stops sending now; everything it sent was answered.
        let report = load.stop();
        report.assert_clean(50, &server.log());
        // The listeners stay open for the rest of the delay: a straggler is still served.
        assert_hello(&fresh_get(addr, "/", IO_TIMEOUT).expect("served during the delay"));
        assert!(
            termed.elapsed() < Duration::from_millis(1800),
            "{class}: the check above ran inside the delay"
        );
        let status = server.expect_exit(Duration::from_secs(20));
        assert!(status.success(), "{class}: {status}\n{}", server.log());
        assert!(
            termed.elapsed() >= Duration::from_secs(2),
            "{class}: the listeners closed only after the delay ({:?})",
            termed.elapsed()
        );
        server.assert_log_count("Stop announced: the health path answers 503", 1);
        stop.store(true, Ordering::SeqCst);
    }
}
