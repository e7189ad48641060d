//! `--timeout`: a worker whose loop has not turned for that long is reported; a worker process
//! is killed (SIGABRT, then SIGKILL) and replaced; a worker thread cannot be killed, so it is
//! reported again every timeout period while the other workers serve on. `--timeout 0` turns
//! the check off.

mod common;

use common::*;
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn stuck_worker_process_is_killed_and_replaced() {
    let server = Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--worker-class",
        "process",
        "--timeout",
        "1",
        "--workers",
        "1",
        "sleep",
    ]);
    assert!(server.wait_log_count(" with pid: ", 1, WAIT));
    let pid = server.worker_pid(0).expect("worker pid");

    let mut stuck = connect(server.addr());
    stuck.send(get_req("/10000").as_bytes());
    let sent = Instant::now();
    thread::sleep(Duration::from_millis(100));
    // Three more requests wait in the queue of the stuck worker's socket.
    let mut queued: Vec<Conn> = (0..3)
        .map(|_| {
            let mut c = connect(server.addr());
            c.send(get_req("/").as_bytes());
            c
        })
        .collect();
    server.expect_log(&format!("WORKER TIMEOUT (worker 0, pid {pid})"), WAIT);
    eprintln!("timeout reported {:?} after the request", sent.elapsed());

    // Killed (SIGABRT, or SIGKILL a second later) and replaced.
    server.expect_log(&format!("worker 0 (pid {pid}) was sent SIG"), WAIT);
    let line = &server.log_lines(&format!("worker 0 (pid {pid}) was sent SIG"))[0];
    assert!(
        line.contains("SIGABRT") || line.contains("SIGKILL"),
        "killed by SIGABRT or SIGKILL: {line}"
    );
    assert!(
        wait_until(WAIT, || !pid_alive(pid)),
        "the stuck worker {pid} is gone"
    );
    assert!(
        server.wait_log_count("Booting worker 0 with pid: ", 2, WAIT),
        "a replacement boots\n{}",
        server.log()
    );
    let new = server.worker_pid(0).expect("replacement pid");
    assert_ne!(new, pid);

    // The stuck request's connection died with its worker: no 200 for it.
    match stuck.try_read_response(false) {
        Err(ReadError::Closed) | Err(ReadError::Reset) => {}
        other => panic!("the killed worker's connection should be closed, got {other:?}"),
    }

    // The queued requests are answered by the replacement.
    for (i, c) in queued.iter_mut().enumerate() {
        match c.try_read_response(false) {
            Ok(resp) if resp.status == 200 => {
                assert_eq!(
                    body_pid(&resp),
                    new,
                    "queued request {i} answered by the replacement"
                )
            }
            other => panic!(
                "queued request {i} lost with the stuck worker: {other:?}\n{}",
                server.log()
            ),
        }
    }

    // A new request is answered by the replacement.
    let mut answered = None;
    assert!(
        wait_until(WAIT, || {
            let resp = fresh_get(server.addr(), "/", IO_TIMEOUT).expect("GET / answered");
            assert_eq!(resp.status, 200, "{resp:?}");
            answered = Some(body_pid(&resp));
            answered == Some(new)
        }),
        "the replacement {new} answers (last answer from {answered:?})\n{}",
        server.log()
    );
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "all of this happened before the 10 s sleep would have ended"
    );
}

#[test]
fn stuck_worker_thread_is_reported_again_while_others_serve() {
    let server = Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--timeout",
        "1",
        "--workers",
        "2",
        "sleep",
    ]);
    let mut stuck = connect(server.addr());
    stuck.send(get_req("/4000").as_bytes());
    let sent = Instant::now();
    thread::sleep(Duration::from_millis(200));

    // The other worker answers new connections; those hashed to the stuck worker's socket
    // wait (short read timeout, then given up). Twelve tries: at least one reaches the free
    // worker unless the hash sends all twelve to one socket (2^-12).
    let mut answered = 0;
    let mut waited = 0;
    for _ in 0..12 {
        match fresh_get(server.addr(), "/", Duration::from_millis(300)) {
            Ok(resp) => {
                assert_eq!(resp.status, 200, "{resp:?}");
                assert_eq!(
                    body_pid(&resp),
                    server.pid(),
                    "threads answer with the master's pid"
                );
                answered += 1;
            }
            Err(e) => {
                assert!(e.contains("TimedOut"), "a queued request only waits: {e}");
                waited += 1;
            }
        }
        if sent.elapsed() > Duration::from_millis(3000) {
            break;
        }
    }
    eprintln!("while one worker was stuck: {answered} answered, {waited} waited");
    assert!(
        answered >= 1,
        "no request answered while one of two workers was stuck\n{}",
        server.log()
    );

    // Reported at least twice (at about 1 s and 2 s of the 4 s sleep), with the master's pid.
    assert!(
        server.wait_log_count("WORKER TIMEOUT (worker ", 2, WAIT),
        "a stuck thread is reported again every timeout\n{}",
        server.log()
    );
    let lines = server.log_lines("WORKER TIMEOUT (worker ");
    let pid = format!(", pid {})", server.pid());
    let repeat = format!(", pid {}): stuck for", server.pid());
    assert!(
        lines
            .iter()
            .all(|l| l.contains(&pid) || l.contains(&repeat)),
        "reported with the master's pid: {lines:?}"
    );
    assert!(
        lines[1..].iter().any(|l| l.contains("cannot be killed")),
        "the repeat says a thread cannot be killed: {lines:?}"
    );

    // The stuck request still completes: a thread is never killed.
    stuck.set_read_timeout(Duration::from_secs(8));
    let resp = stuck.read_response();
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        sent.elapsed() >= Duration::from_millis(3900),
        "answered only after its sleep"
    );
    assert_eq!(
        server.count_log_lines("Booting worker"),
        2,
        "no worker was replaced\n{}",
        server.log()
    );
    server.assert_log_count("was sent", 0);
}

#[test]
fn timeout_zero_never_reports_a_slow_worker() {
    let server = Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--worker-class",
        "process",
        "--timeout",
        "0",
        "--workers",
        "1",
        "sleep",
    ]);
    assert!(server.wait_log_count(" with pid: ", 1, WAIT));
    let pid = server.worker_pid(0).expect("worker pid");
    let mut c = connect(server.addr());
    let sent = Instant::now();
    let resp = c.get("/2500");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        body_pid(&resp),
        pid,
        "the same worker answers after its sleep"
    );
    assert!(sent.elapsed() >= Duration::from_millis(2400));
    // One more supervision period for a late report.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        server.count_log_lines("WORKER TIMEOUT"),
        0,
        "--timeout 0 reported a worker\n{}",
        server.log()
    );
    server.assert_log_count(" with pid: ", 1);
    assert!(pid_alive(pid));
}
