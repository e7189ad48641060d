//! `--worker-class process`: one forked process per worker, children of the master; a worker
//! that dies is reaped, logged Gunicorn-style and replaced on the same socket (so connections
//! waiting in its queue are served by the replacement); one that dies right after starting
//! backs off while the others serve on.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);

fn process_server(workers: &str, app: &str) -> Server {
    Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--worker-class",
        "process",
        "--workers",
        workers,
        app,
    ])
}

/// Waits until `n` workers were booted (their `with pid:` lines) and returns the latest pid
/// of each slot 0..n.
#[track_caller]
fn worker_pids(server: &Server, n: usize) -> Vec<u32> {
    assert!(
        server.wait_log_count(" with pid: ", n, WAIT),
        "expected {n} `Booting worker N with pid: P` lines\n{}",
        server.log()
    );
    (0..n)
        .map(|slot| {
            server
                .worker_pid(slot)
                .unwrap_or_else(|| panic!("no pid for worker {slot}\n{}", server.log()))
        })
        .collect()
}

#[track_caller]
fn expect_children(server: &Server, want: &[u32]) {
    let want: Vec<u32> = {
        let mut w = want.to_vec();
        w.sort_unstable();
        w
    };
    let ok = wait_until(WAIT, || child_pids(server.pid()) == want);
    assert!(
        ok,
        "children of the master {}: {:?}, expected {want:?}\n{}",
        server.pid(),
        child_pids(server.pid()),
        server.log()
    );
}

#[test]
fn workers_are_child_processes_and_serve() {
    let server = process_server("2", "sleep");
    server.expect_log("Worker class: process", WAIT);
    let pids = worker_pids(&server, 2);
    assert_ne!(pids[0], pids[1], "{}", server.log());
    assert!(
        !pids.contains(&server.pid()),
        "workers are not the master\n{}",
        server.log()
    );
    expect_children(&server, &pids);
    for slot in 0..2 {
        server.expect_log(&format!("Booting worker {slot} on CPU"), WAIT);
    }
    // The master forks its workers, so it stays single-threaded.
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .expect("master's /proc status");
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .map(str::trim);
    assert_eq!(threads, Some("1"), "the master has more than one thread");

    // Every answer comes from one of the two worker processes; with 40 connections hashed
    // over two sockets both answer (the chance that one gets none is 2^-39).
    let mut seen = BTreeSet::new();
    for _ in 0..40 {
        let resp = fresh_get(server.addr(), "/", IO_TIMEOUT).expect("GET / answered");
        assert_eq!(resp.status, 200, "{resp:?}");
        let pid = body_pid(&resp);
        assert!(
            pids.contains(&pid),
            "answered by pid {pid}, not a worker {pids:?}"
        );
        seen.insert(pid);
    }
    assert_eq!(seen.len(), 2, "both workers answer: {seen:?}");
}

#[test]
fn sigkilled_worker_is_logged_and_replaced() {
    let server = process_server("2", "sleep");
    let pids = worker_pids(&server, 2);
    expect_children(&server, &pids);
    // Past the one-second minimum lifetime, so this is a plain death, not a failed start.
    thread::sleep(Duration::from_millis(1200));
    kill_pid(pids[0], libc::SIGKILL).expect("kill worker 0");

    server.expect_log(
        &format!(
            "worker 0 (pid {}) was sent SIGKILL! Perhaps out of memory?",
            pids[0]
        ),
        WAIT,
    );
    assert!(
        server.wait_log_count("Booting worker 0 with pid: ", 2, WAIT),
        "worker 0 replaced\n{}",
        server.log()
    );
    let new = server.worker_pid(0).expect("new pid");
    assert_ne!(new, pids[0], "{}", server.log());
    expect_children(&server, &[new, pids[1]]);
    assert_eq!(
        server.count_log_lines("failed to start"),
        0,
        "a worker that lived a second is no failed start\n{}",
        server.log()
    );

    // Requests succeed, answered by the surviving worker or the replacement, never the dead
    // one; the replacement gets connections once the master has seen it accepting.
    let seen = pids_answering(&server, new, 10);
    assert!(
        seen.iter().all(|p| *p == new || *p == pids[1]),
        "answers from {seen:?}, expected only {new} and {}",
        pids[1]
    );
}

/// GET / on fresh connections (every one must get a 200), at least `min` of them, until
/// `want` has answered one (bounded: 3 s); returns every pid that answered.
#[track_caller]
fn pids_answering(server: &Server, want: u32, min: usize) -> BTreeSet<u32> {
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut n = 0;
    while n < min || (!seen.contains(&want) && Instant::now() < deadline) {
        let resp = fresh_get(server.addr(), "/", IO_TIMEOUT).expect("GET / answered");
        assert_eq!(resp.status, 200, "{resp:?}");
        seen.insert(body_pid(&resp));
        n += 1;
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        seen.contains(&want),
        "worker {want} never answered in {n} requests (answers from {seen:?})\n{}",
        server.log()
    );
    seen
}

#[test]
fn queue_of_a_killed_worker_is_served_by_its_replacement() {
    let server = process_server("1", "sleep");
    let pid = worker_pids(&server, 1)[0];
    expect_children(&server, &[pid]);
    thread::sleep(Duration::from_millis(1200));

    kill_pid(pid, libc::SIGSTOP).expect("SIGSTOP the worker");
    assert!(
        wait_until(WAIT, || proc_stat(pid).is_some_and(|(s, _)| s == 'T')),
        "worker {pid} stopped: {:?}",
        proc_stat(pid)
    );
    // Ten connections queue in the backlog of the only socket, each with a request.
    let mut conns: Vec<Conn> = (0..10)
        .map(|_| {
            let mut c = connect(server.addr());
            c.send(get_req("/").as_bytes());
            c
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    for c in &mut conns {
        assert_eq!(
            c.wait_readable(Duration::ZERO),
            Readable::Nothing,
            "a stopped worker answered"
        );
    }
    kill_pid(pid, libc::SIGKILL).expect("SIGKILL the stopped worker");
    server.expect_log(
        &format!("worker 0 (pid {pid}) was sent SIGKILL! Perhaps out of memory?"),
        WAIT,
    );

    let mut failures = Vec::new();
    let mut answered_by = BTreeSet::new();
    for (i, c) in conns.iter_mut().enumerate() {
        match c.try_read_response(false) {
            Ok(resp) if resp.status == 200 => {
                answered_by.insert(body_pid(&resp));
            }
            Ok(resp) => failures.push(format!("connection {i}: {resp:?}")),
            Err(e) => failures.push(format!("connection {i}: {e:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "queued requests lost when the worker was killed:\n  {}\n--- stderr ---\n{}",
        failures.join("\n  "),
        server.log()
    );
    let new = server.worker_pid(0).expect("replacement pid");
    assert_ne!(new, pid);
    assert_eq!(
        answered_by,
        BTreeSet::from([new]),
        "every queued request answered by the replacement {new}"
    );
}

#[test]
fn worker_dying_at_once_backs_off_while_others_serve() {
    let server = process_server("2", "sleep");
    let pids = worker_pids(&server, 2);
    // Kill worker 1 well within a second of its start (Server::spawn returns once listening).
    kill_pid(pids[1], libc::SIGKILL).expect("kill worker 1");
    let killed_at = Instant::now();
    server.expect_log(
        "worker 1 failed to start 1 time(s) in a row; retrying in",
        WAIT,
    );
    let line = &server.log_lines("worker 1 failed to start 1 time(s)")[0];
    assert!(
        line.contains("retrying in 1s"),
        "first backoff is 1 s: {line}"
    );
    assert!(
        server.log_lines(&format!("worker 1 (pid {})", pids[1]))[0].contains("SIGKILL"),
        "{}",
        server.log()
    );

    // Meanwhile worker 0 serves every new connection (steered away from the empty slot).
    thread::sleep(Duration::from_millis(100));
    let mut during = 0;
    while killed_at.elapsed() < Duration::from_millis(700) && during < 20 {
        let resp = fresh_get(server.addr(), "/", IO_TIMEOUT).expect("served during the backoff");
        assert_eq!(resp.status, 200, "{resp:?}");
        if server.count_log_lines("Booting worker 1 with pid: ") == 1 {
            assert_eq!(
                body_pid(&resp),
                pids[0],
                "answered by worker 0 while slot 1 backs off"
            );
        }
        during += 1;
    }
    assert!(during > 0);

    // Slot 1 comes back after the backoff.
    assert!(
        server.wait_log_count("Booting worker 1 with pid: ", 2, WAIT),
        "worker 1 restarted after its backoff\n{}",
        server.log()
    );
    let new = server.worker_pid(1).expect("new worker 1");
    assert_ne!(new, pids[1]);
    expect_children(&server, &[pids[0], new]);
    // And it serves again: some fresh connection reaches it.
    let seen = pids_answering(&server, new, 1);
    assert!(
        !seen.contains(&pids[1]),
        "the killed worker answered: {seen:?}"
    );
    assert!(
        !server.log().contains("no worker can start"),
        "{}",
        server.log()
    );
}

#[test]
fn workers_die_with_a_killed_master() {
    let mut server = process_server("2", "sleep");
    let pids = worker_pids(&server, 2);
    expect_children(&server, &pids);
    server.signal(libc::SIGKILL);
    let status = server.expect_exit(WAIT);
    assert_eq!(status.code(), None, "killed: {status}");
    assert!(
        wait_until(WAIT, || pids.iter().all(|&p| !pid_alive(p))),
        "worker processes outlived their master: {:?}",
        pids.iter().map(|&p| (p, proc_stat(p))).collect::<Vec<_>>()
    );
}

/// The only worker killed right after it started: the slot backs off and is retried, as the
/// log line says. Only a slot that keeps failing is "no worker can start".
#[test]
fn only_worker_dying_at_once_is_retried() {
    let mut server = process_server("1", "sleep");
    let pid = worker_pids(&server, 1)[0];
    kill_pid(pid, libc::SIGKILL).expect("kill the only worker");
    server.expect_log(
        "worker 0 failed to start 1 time(s) in a row; retrying in 1s",
        WAIT,
    );
    let deadline = Instant::now() + WAIT;
    let (restarted, exited) = loop {
        let restarted = server.count_log_lines("Booting worker 0 with pid: ") >= 2;
        let exited = server.wait_exit(Duration::ZERO);
        if restarted || exited.is_some() || Instant::now() >= deadline {
            break (restarted, exited);
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert!(
        restarted && exited.is_none(),
        "after `retrying in 1s` the server {} (exit status {exited:?})\n{}",
        if restarted {
            "restarted the worker"
        } else {
            "never retried"
        },
        server.log()
    );
    let new = server.worker_pid(0).expect("new pid");
    let resp = fresh_get(server.addr(), "/", IO_TIMEOUT).expect("served after the retry");
    assert_eq!(body_pid(&resp), new);
}
