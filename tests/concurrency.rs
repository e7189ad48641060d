//! Several workers, many concurrent keep-alive connections, worker boot
//! logs, CPU lists, and IPv4 + IPv6 binds in one server.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Waits for exactly `n` `Booting worker` lines.
fn assert_workers_booted(server: &Server, n: usize) {
    assert!(
        server.wait_log_count("Booting worker", n, Duration::from_secs(10)),
        "expected {n} `Booting worker` lines\n{}",
        server.log()
    );
    // No extra workers show up a moment later.
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        server.count_log_lines("Booting worker"),
        n,
        "expected exactly {n} workers\n{}",
        server.log()
    );
}

/// `threads` client threads, each holding `conns` connections open at the
/// same time and doing `rounds` echo requests on each. Returns the number of
/// correct responses.
fn load(addr: SocketAddr, threads: usize, conns: usize, rounds: usize) -> usize {
    let opened = Arc::new(AtomicUsize::new(0));
    let total = threads * conns;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let opened = Arc::clone(&opened);
            thread::spawn(move || {
                let mut cs: Vec<Conn> = (0..conns).map(|_| connect(addr)).collect();
                // Make sure all connections of all threads are open at once
                // (bounded: proceed after 10 s regardless).
                opened.fetch_add(conns, Ordering::SeqCst);
                let deadline = Instant::now() + Duration::from_secs(10);
                while opened.load(Ordering::SeqCst) < total && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(5));
                }
                let mut ok = 0;
                for r in 0..rounds {
                    // Send on every connection first, then read every answer,
                    // so all requests are in flight together.
                    for (i, c) in cs.iter_mut().enumerate() {
                        c.send(&post_req("/load", format!("t{t}-c{i}-r{r}").as_bytes()));
                    }
                    for (i, c) in cs.iter_mut().enumerate() {
                        let resp = c.read_response();
                        assert_eq!(resp.status, 200, "t{t} c{i} r{r}: {resp:?}");
                        assert_eq!(resp.body_str(), format!("t{t}-c{i}-r{r}"));
                        assert!(!resp.closes(), "t{t} c{i} r{r}: {resp:?}");
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("client thread panicked"))
        .sum()
}

#[test]
fn two_workers_serve_200_concurrent_connections() {
    let server = Server::spawn(&["--bind", "127.0.0.1:0", "--workers", "2", "echo"]);
    assert_workers_booted(&server, 2);
    assert_eq!(load(server.addr(), 8, 25, 5), 8 * 25 * 5);
    // Still fine afterwards.
    let mut c = connect(server.addr());
    assert_eq!(c.post("/", b"x").body, b"x");
}

#[test]
fn four_workers_serve_200_concurrent_connections() {
    let server = Server::spawn(&["--bind", "127.0.0.1:0", "-w", "4", "echo"]);
    assert_workers_booted(&server, 4);
    assert_eq!(load(server.addr(), 4, 50, 4), 4 * 50 * 4);
}

#[test]
fn default_workers_match_allowed_cpus() {
    let cpus = allowed_cpus();
    let server = Server::spawn(&["--bind", "127.0.0.1:0"]);
    assert_workers_booted(&server, cpus.len());
    let mut c = connect(server.addr());
    assert_hello(&c.get("/"));
}

#[test]
fn workers_auto_matches_allowed_cpus() {
    let cpus = allowed_cpus();
    let server = Server::spawn(&["--bind", "127.0.0.1:0", "--workers", "auto", "json"]);
    assert_workers_booted(&server, cpus.len());
    let mut c = connect(server.addr());
    assert_eq!(c.get("/").body_str(), JSON_BODY);
}

#[test]
fn cpus_list_sets_worker_count_and_pinning() {
    let cpu = allowed_cpus()[0];
    let list = cpu.to_string();
    let server = Server::spawn(&["--bind", "127.0.0.1:0", "--cpus", &list]);
    assert_workers_booted(&server, 1);
    let line = server
        .log()
        .lines()
        .find(|l| l.contains("Booting worker"))
        .expect("boot line")
        .to_string();
    assert!(
        line.contains(&format!("on CPU {cpu}")),
        "worker should be pinned to CPU {cpu}: {line:?}"
    );
    let mut c = connect(server.addr());
    assert_hello(&c.get("/"));
}

#[test]
fn more_workers_than_cpus_in_list_wrap_around() {
    let cpu = allowed_cpus()[0];
    let list = cpu.to_string();
    let server = Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "3",
        "--cpus",
        &list,
        "echo",
    ]);
    assert_workers_booted(&server, 3);
    let log = server.log();
    for line in log.lines().filter(|l| l.contains("Booting worker")) {
        assert!(line.contains(&format!("on CPU {cpu}")), "{line:?}");
    }
    assert_eq!(load(server.addr(), 3, 10, 3), 3 * 10 * 3);
}

#[test]
fn ipv4_and_ipv6_binds_in_one_server() {
    if !ipv6_available() {
        eprintln!("skipping: [::1] cannot be bound on this machine");
        return;
    }
    let server = Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--bind",
        "[::1]:0",
        "--workers",
        "2",
        "echo",
    ]);
    assert_eq!(server.addrs().len(), 2, "{}", server.log());
    let v4 = *server
        .addrs()
        .iter()
        .find(|a| a.is_ipv4())
        .expect("an IPv4 address is announced");
    let v6 = *server
        .addrs()
        .iter()
        .find(|a| a.is_ipv6())
        .expect("an IPv6 address is announced");
    assert_eq!(v4.ip().to_string(), "127.0.0.1");
    assert_eq!(v6.ip().to_string(), "::1");
    assert!(
        server
            .log()
            .contains(&format!("Listening at: http://[::1]:{}", v6.port())),
        "IPv6 is printed in brackets\n{}",
        server.log()
    );
    for addr in [v4, v6] {
        let mut c = connect(addr);
        for i in 0..5 {
            let body = format!("{addr} #{i}");
            let resp = c.post("/", body.as_bytes());
            assert_eq!(resp.status, 200);
            assert_eq!(resp.body_str(), body);
        }
    }
    assert_eq!(load(v4, 2, 20, 2), 2 * 20 * 2);
    assert_eq!(load(v6, 2, 20, 2), 2 * 20 * 2);
}

#[test]
fn ipv6_only_bind() {
    if !ipv6_available() {
        eprintln!("skipping: [::1] cannot be bound on this machine");
        return;
    }
    let server = Server::spawn(&["--bind", "[::1]:0", "--workers", "1"]);
    let addr = server.addr();
    assert!(addr.is_ipv6(), "{addr}");
    let mut c = connect(addr);
    assert_hello(&c.get("/"));
}
