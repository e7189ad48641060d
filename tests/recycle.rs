//! `--max-requests`: a worker that has answered that many requests asks for a replacement;
//! the master starts one on the same slot and drains the old worker once the new one accepts,
//! so clients see no failure (keep-alive connections get `Connection: close` and reconnect).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

/// Sequential GET / requests on keep-alive connections (reconnecting on `Connection: close`,
/// every fifth on a fresh connection), paced so that the master gets to replace workers,
/// until `min` requests were answered and `enough` holds, or 400 requests / 15 s at most.
/// Returns requests answered per body, and the failures.
fn requests(
    addr: std::net::SocketAddr,
    min: usize,
    enough: impl Fn(&BTreeMap<String, usize>) -> bool,
) -> (BTreeMap<String, usize>, Vec<String>, usize) {
    let mut bodies = BTreeMap::new();
    let mut failures = Vec::new();
    let mut reconnects = 0;
    let mut conn: Option<Conn> = None;
    let start = Instant::now();
    let mut n = 0;
    while n < 400 && start.elapsed() < Duration::from_secs(15) {
        if n >= min && enough(&bodies) {
            break;
        }
        n += 1;
        let fresh = n % 5 == 0;
        let mut temp = None;
        let slot = if fresh { &mut temp } else { &mut conn };
        let result = (|| -> Result<Response, String> {
            let c = match slot {
                Some(c) => c,
                None => slot.insert(try_connect(addr).map_err(|e| format!("connect: {e}"))?),
            };
            c.try_send(get_req("/").as_bytes())
                .map_err(|e| format!("send: {e}"))?;
            c.try_read_response(false)
                .map_err(|e| format!("read: {e:?}"))
        })();
        match result {
            Ok(resp) if resp.status == 200 => {
                *bodies.entry(resp.body_str()).or_insert(0) += 1;
                if resp.closes() && !fresh {
                    conn = None;
                    reconnects += 1;
                }
            }
            Ok(resp) => failures.push(format!("request {n}: {resp:?}")),
            Err(e) => {
                failures.push(format!(
                    "request {n} ({}): {e}",
                    if fresh { "fresh" } else { "keep-alive" }
                ));
                if !fresh {
                    conn = None;
                }
            }
        }
        thread::sleep(Duration::from_millis(5));
    }
    (bodies, failures, reconnects)
}

#[test]
fn worker_processes_are_replaced_after_max_requests() {
    let server = Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--worker-class",
        "process",
        "--max-requests",
        "20",
        "--workers",
        "1",
        "sleep",
    ]);
    let first = server.worker_pid(0).expect("worker pid");
    let (bodies, failures, reconnects) = requests(server.addr(), 60, |b| b.len() >= 3);
    eprintln!("answers per worker: {bodies:?}, {reconnects} reconnects");
    assert!(
        failures.is_empty(),
        "requests failed while workers were replaced:\n  {}\n--- stderr ---\n{}",
        failures.join("\n  "),
        server.log()
    );
    assert!(
        bodies.len() >= 3,
        "at least 3 worker processes answered: {bodies:?}\n{}",
        server.log()
    );
    // Every answer came from a booted worker process.
    let booted: Vec<u32> = server.booted_pids().into_iter().map(|(_, p)| p).collect();
    for body in bodies.keys() {
        let pid = number_after(body, "pid ").expect("pid body");
        assert!(booted.contains(&pid), "{pid} is not a worker: {booted:?}");
    }
    server.expect_log(
        "worker 0: served 20 requests (--max-requests); asking for a replacement",
        Duration::from_secs(1),
    );
    server.expect_log(
        &format!("worker 0 (pid {first}) served 20 requests (--max-requests); replacing it"),
        Duration::from_secs(1),
    );
    assert!(
        server.count_log_lines("replacing it") >= 2,
        "{}",
        server.log()
    );
    // Replaced workers drained and exited cleanly: no death is reported.
    server.assert_log_count(" exited with code", 0);
    server.assert_log_count("was sent", 0);
    assert!(
        wait_until(Duration::from_secs(5), || child_pids(server.pid()).len()
            == 1),
        "one worker process left: {:?}",
        child_pids(server.pid())
    );
}

#[test]
fn worker_threads_are_replaced_after_max_requests() {
    let server = Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--max-requests",
        "20",
        "--workers",
        "1",
        "hello",
    ]);
    let boots = || server.count_log_lines("Booting worker 0 ");
    let (bodies, failures, reconnects) = requests(server.addr(), 60, |_| boots() >= 3);
    eprintln!("answers: {bodies:?}, {reconnects} reconnects");
    assert!(
        failures.is_empty(),
        "requests failed while workers were replaced:\n  {}\n--- stderr ---\n{}",
        failures.join("\n  "),
        server.log()
    );
    assert_eq!(bodies.keys().collect::<Vec<_>>(), vec![HELLO_BODY]);
    server.expect_log(
        "worker 0: served 20 requests (--max-requests); asking for a replacement",
        Duration::from_secs(1),
    );
    server.expect_log(
        "worker 0 served 20 requests (--max-requests); replacing it",
        Duration::from_secs(1),
    );
    assert!(boots() >= 3, "replaced at least twice\n{}", server.log());
}

#[test]
fn jitter_spreads_the_limit() {
    // --max-requests 10 with jitter 10: each worker retires after 10..=20 requests.
    let server = Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--worker-class",
        "process",
        "--max-requests",
        "10",
        "--max-requests-jitter",
        "10",
        "--workers",
        "1",
        "sleep",
    ]);
    let (_, failures, _) = requests(server.addr(), 60, |b| b.len() >= 3);
    assert!(failures.is_empty(), "{failures:?}\n{}", server.log());
    let lines = server.log_lines("(--max-requests); asking for a replacement");
    assert!(lines.len() >= 2, "{}", server.log());
    for l in &lines {
        let n = number_after(l, "served ").expect("count");
        assert!((10..=20).contains(&n), "limit with jitter is 10..=20: {l}");
    }
}

/// One client, one connection at a time: every arrival is the only one in the queue. A
/// worker drained as it is replaced may have taken the kernel's wakeup for a connection as
/// its accept was cancelled; its last sweep of the queue serves it, so nothing waits for a
/// next arrival that may never come.
#[test]
fn a_lone_client_never_waits_on_a_replaced_worker() {
    for class in ["thread", "process"] {
        let server = Server::spawn(&[
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--worker-class",
            class,
            "--max-requests",
            "10",
            "hello",
        ]);
        let start = Instant::now();
        let mut answered = 0;
        while start.elapsed() < Duration::from_secs(3) {
            match fresh_get(server.addr(), "/", Duration::from_secs(3)) {
                Ok(resp) => {
                    assert_hello(&resp);
                    answered += 1;
                }
                Err(e) => panic!(
                    "{class}: request {answered} got no answer: {e}\n{}",
                    server.log()
                ),
            }
        }
        let replaced = server.count_log_lines("(--max-requests); replacing it");
        assert!(
            replaced >= 10,
            "{class}: {replaced} replacements\n{}",
            server.log()
        );
        assert!(answered >= 100, "{class}: {answered} answered");
    }
}
