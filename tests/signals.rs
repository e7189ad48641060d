//! The master's other signals and files: SIGQUIT stops at once (exit 0) without waiting for
//! requests under way and leaves no worker process behind; `--pid FILE` is written once the
//! server listens and removed when it exits.

mod common;

use common::*;
use std::thread;
use std::time::{Duration, Instant};

/// A POST whose Content-Length promises 10 bytes, with only 5 sent.
const PARTIAL: &[u8] =
    b"POST /inflight HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n12345";

#[track_caller]
fn quit_exits_at_once(server: &mut Server) {
    let mut stuck = connect(server.addr());
    stuck.send(PARTIAL);
    thread::sleep(Duration::from_millis(200));
    let sent = Instant::now();
    server.signal(libc::SIGQUIT);
    // Not expect_exit: its 2 s must be the exit itself.
    let status = server.wait_exit(Duration::from_secs(2)).unwrap_or_else(|| {
        panic!(
            "no exit within 2 s of SIGQUIT with a request stuck mid-body\n{}",
            server.log()
        )
    });
    eprintln!("exited {:?} after SIGQUIT", sent.elapsed());
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.log());
    server.expect_log(
        "Shutting down at once: SIGQUIT received",
        Duration::from_secs(1),
    );
    assert!(
        !server.log().contains("finishing requests under way"),
        "QUIT is no graceful stop\n{}",
        server.log()
    );
    // The stuck request's connection is gone, unanswered.
    stuck.set_read_timeout(Duration::from_secs(2));
    match stuck.try_read_response(false) {
        Err(ReadError::Closed) | Err(ReadError::Reset) => {}
        other => panic!("expected the connection closed, got {other:?}"),
    }
}

#[test]
fn sigquit_with_a_request_stuck_mid_body_exits_0_at_once() {
    let mut server = Server::app("echo", &["--graceful-timeout", "30"]);
    quit_exits_at_once(&mut server);
}

#[test]
fn sigquit_leaves_no_worker_process_behind() {
    let mut server = Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--worker-class",
        "process",
        "--workers",
        "2",
        "--graceful-timeout",
        "30",
        "echo",
    ]);
    assert!(server.wait_log_count(" with pid: ", 2, Duration::from_secs(5)));
    let workers: Vec<u32> = server.booted_pids().into_iter().map(|(_, p)| p).collect();
    assert!(
        wait_until(Duration::from_secs(5), || child_pids(server.pid()).len()
            == 2),
        "{:?}",
        child_pids(server.pid())
    );
    assert!(workers.iter().all(|&p| pid_alive(p)));
    quit_exits_at_once(&mut server);
    assert!(
        wait_until(Duration::from_secs(2), || workers
            .iter()
            .all(|&p| !pid_alive(p))),
        "worker processes left after SIGQUIT: {:?}",
        workers
            .iter()
            .filter(|&&p| pid_alive(p))
            .map(|&p| (p, proc_stat(p), proc_cmdline(p)))
            .collect::<Vec<_>>()
    );
}

#[test]
fn pidfile_is_written_once_listening_and_removed_on_exit() {
    let dir = TempDir::new("pidfile");
    let file = dir.join("ringcorn.pid");
    let arg = dir.arg("ringcorn.pid");
    let mut server = Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--pid",
        &arg,
        "hello",
    ]);
    let me = server.pid();
    assert!(
        wait_until(Duration::from_secs(5), || read_pidfile(&file).is_some()),
        "pidfile not written\n{}",
        server.log()
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("read pidfile"),
        format!("{me}\n"),
        "the pidfile holds the master's pid"
    );
    // Written once listening: the server already answers.
    assert_hello(&connect(server.addr()).get("/"));
    assert!(!dir.join("ringcorn.pid.tmp").exists(), "no temporary left");

    server.signal(libc::SIGTERM);
    let status = server.expect_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(!file.exists(), "pidfile removed on exit");
    server.expect_log("Shutdown complete", Duration::from_secs(1));
}

#[test]
fn pidfile_is_removed_after_sigquit_and_sigint() {
    for sig in [libc::SIGQUIT, libc::SIGINT] {
        let dir = TempDir::new("pidfile-sig");
        let file = dir.join("ringcorn.pid");
        let arg = dir.arg("ringcorn.pid");
        let mut server = Server::spawn(&[
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--pid",
            &arg,
            "hello",
        ]);
        let me = server.pid();
        assert!(wait_until(Duration::from_secs(5), || read_pidfile(&file) == Some(me)));
        server.signal(sig);
        let status = server.expect_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "signal {sig}: {}", server.log());
        assert!(!file.exists(), "pidfile removed on exit after signal {sig}");
    }
}

#[test]
fn unwritable_pidfile_exits_1() {
    let dir = TempDir::new("pidfile-bad");
    let arg = dir.arg("no-such-dir/ringcorn.pid");
    let out = run_cli(&[
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--pid",
        &arg,
        "hello",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write the pidfile"), "{stderr}");
}
