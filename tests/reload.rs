//! SIGHUP: the master re-reads the command line and the `-c` file, starts new workers on every
//! slot and drains the old ones once their replacements accept, on the same sockets, so no
//! request fails and connections waiting in a queue are served. An invalid configuration is
//! refused and the old one serves on; worker count and bind list follow the file.

mod common;

use common::*;
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);

/// A server whose settings all come from `dir/ringcorn.toml` (the command line would win over
/// the file, so it names nothing else).
fn file_server(dir: &TempDir, toml: &str) -> Server {
    let file = dir.join("ringcorn.toml");
    replace_file(&file, toml.as_bytes(), 0o644);
    Server::spawn(&["-c", &file.to_string_lossy()])
}

fn rewrite(dir: &TempDir, toml: &str) {
    replace_file(&dir.join("ringcorn.toml"), toml.as_bytes(), 0o644);
}

/// HUP, then wait for the reload's `Using app:` line (the n-th one: startup counts as 1).
#[track_caller]
fn hup_and_wait(server: &mut Server, n: usize) {
    server.signal(libc::SIGHUP);
    assert!(
        server.wait_log_count("Using app:", n, WAIT),
        "reload {n} did not complete\n{}",
        server.log()
    );
}

/// GET / on fresh connections until `pred` holds for a 200 (bounded); every try must be a 200.
#[track_caller]
fn until_answer(
    server: &Server,
    addr: std::net::SocketAddr,
    what: &str,
    pred: impl Fn(&Response) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let resp = fresh_get(addr, "/", IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("GET / on {addr}: {e}\n{}", server.log()));
        assert_eq!(resp.status, 200, "{resp:?}");
        if pred(&resp) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: last answer {resp:?}\n{}",
            server.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn hup_under_load(extra: &[&str]) {
    let mut args = vec!["--bind", "127.0.0.1:0", "--workers", "2"];
    args.extend_from_slice(extra);
    args.push("hello");
    let mut server = Server::spawn(&args);
    let load = Load::start(server.addr(), 4, "/", HELLO_BODY, Duration::from_secs(15));
    thread::sleep(Duration::from_millis(300));
    let mut sent = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        server.signal(libc::SIGHUP);
        sent += 1;
        // One HUP at a time (two pending at once would merge into one).
        assert!(
            server.wait_log_count("SIGHUP: reloading the configuration", sent, WAIT),
            "HUP {sent} not taken\n{}",
            server.log()
        );
        thread::sleep(Duration::from_millis(300));
    }
    // Let the last reload settle under load too.
    assert!(
        server.wait_log_count("Using app:", 1 + sent, WAIT),
        "{sent} reloads did not all complete\n{}",
        server.log()
    );
    thread::sleep(Duration::from_millis(500));
    let report = load.stop();
    eprintln!("{sent} HUPs: {report:?}");
    report.assert_clean(100, &server.log());
    server.assert_log_count("SIGHUP: reloading the configuration", sent);
    assert!(
        server.count_log_lines("Listening at:") > sent,
        "{}",
        server.log()
    );
    server.assert_log_count("reload refused", 0);
    assert!(
        !server.log().contains("ERROR"),
        "no error during reloads\n{}",
        server.log()
    );
    // Still serving on the same address after the last reload.
    assert_hello(&connect(server.addr()).get("/"));
}

#[test]
fn hup_under_load_fails_no_request() {
    hup_under_load(&[]);
}

#[test]
fn hup_under_load_fails_no_request_with_worker_processes() {
    hup_under_load(&["--worker-class", "process"]);
}

#[test]
fn queued_connections_survive_a_reload() {
    let mut server = Server::app("sleep", &[]);
    // Block the only worker thread.
    let mut blocker = connect(server.addr());
    blocker.send(get_req("/1500").as_bytes());
    let blocked = Instant::now();
    thread::sleep(Duration::from_millis(200));
    // Five connections wait in the queue of the only socket.
    let mut queued: Vec<Conn> = (0..5)
        .map(|_| {
            let mut c = connect(server.addr());
            c.send(get_req("/").as_bytes());
            c
        })
        .collect();
    thread::sleep(Duration::from_millis(100));
    server.signal(libc::SIGHUP);
    server.expect_log("SIGHUP: reloading the configuration", WAIT);

    let mut failures = Vec::new();
    for (i, c) in queued.iter_mut().enumerate() {
        match c.try_read_response(false) {
            Ok(resp) if resp.status == 200 && body_pid(&resp) == server.pid() => {}
            other => failures.push(format!("queued connection {i}: {other:?}")),
        }
    }
    eprintln!(
        "queued requests answered {:?} after the blocking one was sent",
        blocked.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{}\n--- stderr ---\n{}",
        failures.join("\n"),
        server.log()
    );
    // The blocked request completes too (its worker drains after it).
    let resp = blocker.read_response();
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        server.wait_log_count("Booting worker 0", 2, WAIT),
        "{}",
        server.log()
    );
}

#[test]
fn hup_applies_a_changed_config_file() {
    let dir = TempDir::new("reload-app");
    let mut server = file_server(
        &dir,
        "bind = [\"127.0.0.1:0\"]\nworkers = 1\napp = \"hello\"\n",
    );
    assert_hello(&connect(server.addr()).get("/"));
    rewrite(
        &dir,
        "bind = [\"127.0.0.1:0\"]\nworkers = 1\napp = \"json\"\n",
    );
    hup_and_wait(&mut server, 2);
    server.expect_log("Using app: json", WAIT);
    until_answer(&server, server.addr(), "the json app answers", |r| {
        r.body_str() == JSON_BODY
    });
    // Once the old worker drained, only the new app answers.
    thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let resp = fresh_get(server.addr(), "/", IO_TIMEOUT).expect("GET /");
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(resp.body_str(), JSON_BODY, "{resp:?}");
        assert_eq!(resp.header("Content-Type"), Some("application/json"));
    }
    assert_eq!(server.addrs().len(), 1);
    assert_eq!(
        server.announced().last(),
        Some(&server.addr()),
        "same port after the reload"
    );
}

#[test]
fn invalid_config_file_on_hup_is_refused_and_old_workers_serve() {
    let dir = TempDir::new("reload-invalid");
    let mut server = file_server(
        &dir,
        "bind = [\"127.0.0.1:0\"]\nworkers = 1\napp = \"hello\"\n",
    );
    let mut keep = connect(server.addr());
    assert_hello(&keep.get("/"));
    rewrite(
        &dir,
        "bind = [\"127.0.0.1:0\"]\nworkers = \"many\"\napp = \"json\"\n",
    );
    server.signal(libc::SIGHUP);
    server.expect_log("reload refused, the old configuration stays:", WAIT);
    let line = &server.log_lines("reload refused")[0];
    assert!(line.contains("workers"), "names the key: {line}");
    thread::sleep(Duration::from_millis(200));
    // The old worker serves on, on its connections and on new ones.
    assert_hello(&keep.get("/"));
    for _ in 0..5 {
        let resp = fresh_get(server.addr(), "/", IO_TIMEOUT).expect("GET /");
        assert_hello(&resp);
    }
    server.assert_log_count("Booting worker", 1);
    server.assert_log_count("Listening at:", 1);
    server.assert_log_count("Using app:", 1);

    // Once fixed, the next HUP applies it.
    rewrite(
        &dir,
        "bind = [\"127.0.0.1:0\"]\nworkers = 1\napp = \"json\"\n",
    );
    hup_and_wait(&mut server, 2);
    until_answer(&server, server.addr(), "the fixed file applies", |r| {
        r.body_str() == JSON_BODY
    });
}

#[test]
fn hup_with_fewer_workers_retires_a_slot() {
    let dir = TempDir::new("reload-shrink");
    let mut server = file_server(
        &dir,
        "bind = [\"127.0.0.1:0\"]\nworkers = 2\napp = \"hello\"\n",
    );
    assert!(server.wait_log_count("Booting worker 1", 1, WAIT));
    rewrite(
        &dir,
        "bind = [\"127.0.0.1:0\"]\nworkers = 1\napp = \"hello\"\n",
    );
    let load = Load::start(server.addr(), 2, "/", HELLO_BODY, Duration::from_secs(15));
    hup_and_wait(&mut server, 2);
    server.expect_log("worker 1: slot retired, draining", Duration::from_secs(8));
    thread::sleep(Duration::from_millis(300));
    let report = load.stop();
    report.assert_clean(20, &server.log());
    // Only slot 0 was restarted; slot 1 got no new worker.
    server.assert_log_count("Booting worker 0", 2);
    server.assert_log_count("Booting worker 1", 1);
    for _ in 0..10 {
        assert_hello(&fresh_get(server.addr(), "/", IO_TIMEOUT).expect("GET /"));
    }
}

#[test]
fn hup_with_a_changed_bind_list_opens_and_closes_addresses() {
    let dir = TempDir::new("reload-bind");
    let mut server = file_server(
        &dir,
        "bind = [\"127.0.0.1:0\"]\nworkers = 1\napp = \"hello\"\n",
    );
    let first = server.addr();
    rewrite(
        &dir,
        "bind = [\"127.0.0.1:0\", \"127.0.0.2:0\"]\nworkers = 1\napp = \"hello\"\n",
    );
    hup_and_wait(&mut server, 2);
    let second = *server
        .announced()
        .iter()
        .find(|a| a.ip().to_string() == "127.0.0.2")
        .unwrap_or_else(|| panic!("no `Listening at: http://127.0.0.2:...`\n{}", server.log()));
    assert_ne!(second.port(), 0);
    assert!(
        server.announced().iter().filter(|a| **a == first).count() >= 2,
        "the kept address is announced again\n{}",
        server.log()
    );
    until_answer(&server, second, "the new address answers", |r| {
        r.body_str() == HELLO_BODY
    });
    assert_hello(&fresh_get(first, "/", IO_TIMEOUT).expect("the kept address still answers"));

    // Dropping the first address: announced as gone, and it stops accepting.
    rewrite(
        &dir,
        "bind = [\"127.0.0.2:0\"]\nworkers = 1\napp = \"hello\"\n",
    );
    hup_and_wait(&mut server, 3);
    server.expect_log(&format!("No longer listening at: http://{first}"), WAIT);
    assert_hello(&fresh_get(second, "/", IO_TIMEOUT).expect("the kept address still answers"));
    let refused = wait_until(WAIT, || std::net::TcpStream::connect(first).is_err());
    assert!(
        refused,
        "{first} still accepts connections after it was dropped\n{}",
        server.log()
    );
    assert_hello(&fresh_get(second, "/", IO_TIMEOUT).expect("answers after the drop"));
}

#[test]
fn hup_with_an_address_that_cannot_be_bound_is_refused() {
    let dir = TempDir::new("reload-bind-busy");
    let mut server = file_server(
        &dir,
        "bind = [\"127.0.0.1:0\"]\nworkers = 1\napp = \"hello\"\n",
    );
    // A port this test holds (without SO_REUSEPORT): the server cannot join it.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a busy port");
    let taken = busy.local_addr().expect("local addr");
    rewrite(
        &dir,
        &format!("bind = [\"127.0.0.1:0\", \"{taken}\"]\nworkers = 1\napp = \"json\"\n"),
    );
    server.signal(libc::SIGHUP);
    server.expect_log("reload refused, the old configuration stays:", WAIT);
    let line = &server.log_lines("reload refused")[0];
    assert!(
        line.contains(&taken.to_string()),
        "names the address: {line}"
    );
    thread::sleep(Duration::from_millis(200));
    // Nothing changed: the old app on the old address, no new worker, no new address.
    for _ in 0..5 {
        assert_hello(&fresh_get(server.addr(), "/", IO_TIMEOUT).expect("old config serves"));
    }
    server.assert_log_count("Booting worker", 1);
    server.assert_log_count("Listening at:", 1);
    drop(busy);
}
