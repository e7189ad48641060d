//! SIGTTIN adds a worker, SIGTTOU retires the highest one (new connections are steered away
//! from its socket first, then it drains once its queue has been empty a while), never below
//! one worker; no request fails while the count changes.

mod common;

use common::*;
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);
/// TTOU: about 2 s of an empty queue, then the drain.
const RETIRE: Duration = Duration::from_secs(8);

#[test]
fn ttin_adds_a_worker_and_ttou_retires_it() {
    let mut server = Server::spawn(&["--bind", "127.0.0.1:0", "--workers", "2", "hello"]);
    assert!(server.wait_log_count("Booting worker ", 2, WAIT));

    server.signal(libc::SIGTTIN);
    server.expect_log("SIGTTIN: 3 workers", WAIT);
    server.expect_log("Booting worker 2 ", WAIT);
    for _ in 0..10 {
        assert_hello(&fresh_get(server.addr(), "/", IO_TIMEOUT).expect("GET / after TTIN"));
    }

    server.signal(libc::SIGTTOU);
    server.expect_log(
        "SIGTTOU: 2 workers (worker 2 retires once its queue is empty)",
        WAIT,
    );
    let asked = Instant::now();
    server.expect_log("worker 2: slot retired, draining", RETIRE);
    eprintln!("slot 2 retired {:?} after TTOU", asked.elapsed());
    let ttou = server.log().find("SIGTTOU: 2 workers").expect("TTOU line");
    let retired = server
        .log()
        .find("worker 2: slot retired")
        .expect("retire line");
    assert!(ttou < retired, "{}", server.log());
    for _ in 0..10 {
        assert_hello(&fresh_get(server.addr(), "/", IO_TIMEOUT).expect("GET / after TTOU"));
    }
    server.assert_log_count("Booting worker 2 ", 1);
    assert!(!server.log().contains("ERROR"), "{}", server.log());
}

#[test]
fn ttou_at_one_worker_is_ignored() {
    let mut server = Server::app("hello", &[]);
    let mut keep = connect(server.addr());
    assert_hello(&keep.get("/"));
    server.signal(libc::SIGTTOU);
    server.expect_log("SIGTTOU ignored: already at one worker", WAIT);
    // Past the retire delay: nothing retires, everything still answers.
    thread::sleep(Duration::from_millis(2500));
    server.assert_log_count("slot retired", 0);
    server.assert_log_count("SIGTTOU: ", 0);
    assert_hello(&keep.get("/"));
    for _ in 0..5 {
        assert_hello(&fresh_get(server.addr(), "/", IO_TIMEOUT).expect("GET /"));
    }
}

#[test]
fn no_request_fails_while_ttin_and_ttou_resize() {
    let mut server = Server::spawn(&["--bind", "127.0.0.1:0", "--workers", "2", "hello"]);
    let load = Load::start(server.addr(), 3, "/", HELLO_BODY, Duration::from_secs(20));
    thread::sleep(Duration::from_millis(200));
    // Up to 4, down to 2 (the retirements overlap the next growth), then down to 1 and wait
    // for the retirements under load.
    let steps = [
        libc::SIGTTIN,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGTTOU,
        libc::SIGTTOU,
    ];
    let mut ttin = 0;
    let mut ttou = 0;
    for sig in steps {
        server.signal(sig);
        if sig == libc::SIGTTIN {
            ttin += 1;
            assert!(
                server.wait_log_count("SIGTTIN: ", ttin, WAIT),
                "{}",
                server.log()
            );
        } else {
            ttou += 1;
            assert!(
                server.wait_log_count("SIGTTOU: ", ttou, WAIT),
                "{}",
                server.log()
            );
        }
        thread::sleep(Duration::from_millis(400));
    }
    server.expect_log("SIGTTOU: 1 workers", WAIT);
    // Slots 1..=3 all retire eventually (1 is the last to go: it was retired last).
    assert!(
        server.wait_log_count("slot retired, draining", 1, RETIRE),
        "{}",
        server.log()
    );
    server.expect_log("worker 1: slot retired, draining", RETIRE);
    thread::sleep(Duration::from_millis(300));
    let report = load.stop();
    eprintln!("{report:?}");
    report.assert_clean(200, &server.log());
    assert!(!server.log().contains("ERROR"), "{}", server.log());
    for _ in 0..10 {
        assert_hello(&fresh_get(server.addr(), "/", IO_TIMEOUT).expect("GET / at one worker"));
    }
}

#[test]
fn worker_processes_follow_ttin_and_ttou() {
    let mut server = Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--worker-class",
        "process",
        "--workers",
        "2",
        "sleep",
    ]);
    let master = server.pid();
    assert!(
        wait_until(WAIT, || child_pids(master).len() == 2),
        "2 children: {:?}",
        child_pids(master)
    );
    let before = child_pids(master);

    server.signal(libc::SIGTTIN);
    server.expect_log("SIGTTIN: 3 workers", WAIT);
    assert!(
        wait_until(WAIT, || child_pids(master).len() == 3),
        "3 children after TTIN: {:?}\n{}",
        child_pids(master),
        server.log()
    );
    let third = server.worker_pid(2).expect("worker 2 booted with a pid");
    assert!(child_pids(master).contains(&third));
    // The new worker serves (bounded number of fresh connections).
    let mut reached = false;
    for _ in 0..60 {
        let resp = fresh_get(server.addr(), "/", IO_TIMEOUT).expect("GET /");
        assert_eq!(resp.status, 200, "{resp:?}");
        if body_pid(&resp) == third {
            reached = true;
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert!(
        reached,
        "worker 2 ({third}) never answered\n{}",
        server.log()
    );

    server.signal(libc::SIGTTOU);
    server.expect_log(
        "SIGTTOU: 2 workers (worker 2 retires once its queue is empty)",
        WAIT,
    );
    server.expect_log(
        &format!("worker 2 (pid {third}): slot retired, draining"),
        RETIRE,
    );
    assert!(
        wait_until(WAIT, || child_pids(master) == before),
        "back to the first two children {before:?}: {:?}\n{}",
        child_pids(master),
        server.log()
    );
    assert!(!pid_alive(third));
    for _ in 0..10 {
        let resp = fresh_get(server.addr(), "/", IO_TIMEOUT).expect("GET /");
        assert!(before.contains(&body_pid(&resp)), "{resp:?}");
    }
}
