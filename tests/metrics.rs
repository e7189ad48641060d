//! `--metrics ADDR`: the master serves `/metrics` (Prometheus text format 0.0.4) on a
//! listener of its own. Each test drives real requests and reads the counters back: responses
//! by class, refusals by status, PROXY refusals, deadlines, bytes, the duration histogram,
//! accept pauses, restarts (carried past a worker's death and `--max-requests`), and the
//! exposition passes `promtool check metrics`.
//!
//! The promtool test needs `promtool` (Debian's `prometheus` package; `.ci/run` extracts just
//! promtool from it): on PATH or named by `RINGCORN_PROMTOOL`. It skips with a notice when
//! missing, unless `RINGCORN_REQUIRE_TOOLS=1` (CI), where it fails.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Counters are published on each worker tick (250 ms): wait at most this for a figure.
const SETTLE: Duration = Duration::from_secs(10);

/// The metrics address from the `Metrics at: http://ADDR/metrics` line.
fn metrics_addr(server: &Server) -> SocketAddr {
    server.expect_log("Metrics at: ", Duration::from_secs(5));
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("Metrics at: "))
        .expect("metrics line");
    let url = line.split("Metrics at: http://").nth(1).expect("http url");
    url.trim_end_matches("/metrics")
        .parse()
        .unwrap_or_else(|e| panic!("bad metrics address in {line:?}: {e}"))
}

/// One raw exchange on a fresh connection, read until the server closes it.
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(request).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn scrape_text(addr: SocketAddr) -> String {
    let text = raw(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: prometheus\r\nAccept: text/plain\r\n\r\n",
    );
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{text}"
    );
    let (_, body) = text.split_once("\r\n\r\n").expect("head and body");
    body.to_string()
}

/// Every sample of a scrape, by its full name with labels (`name{a="b"}`).
fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    scrape_text(addr)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("name and value");
            (name.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

fn value(samples: &HashMap<String, f64>, name: &str) -> f64 {
    *samples
        .get(name)
        .unwrap_or_else(|| panic!("no sample {name} in {samples:#?}"))
}

/// Scrape until `ok` holds (counters arrive on the workers' ticks); the last scrape.
#[track_caller]
fn scrape_until(
    addr: SocketAddr,
    what: &str,
    ok: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let samples = scrape(addr);
        if ok(&samples) {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed {what}: {samples:#?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn responses_refusals_bytes_and_durations_are_counted_per_worker() {
    let server = Server::app(
        "hello",
        &["--metrics", "127.0.0.1:0", "--limit-request-line", "64"],
    );
    let addr = server.addr();
    let metrics = metrics_addr(&server);
    let mut c = connect(addr);
    for _ in 0..3 {
        assert_eq!(c.get("/").status, 200);
    }
    let refusals: [(&[u8], u16); 4] = [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", 413),
    ];
    for (request, status) in refusals {
        let answer = raw(addr, request);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{status}: {answer}"
        );
    }
    let s = scrape_until(metrics, "3 answered and 4 refused", |s| {
        s.get("ringcorn_requests_total{worker=\"0\",class=\"2xx\"}") == Some(&3.0)
            && s.get("ringcorn_requests_total{worker=\"0\",class=\"4xx\"}") == Some(&3.0)
            && s.get("ringcorn_requests_total{worker=\"0\",class=\"5xx\"}") == Some(&1.0)
    });
    for status in ["400", "505", "414", "413"] {
        let name = format!("ringcorn_requests_refused_total{{worker=\"0\",status=\"{status}\"}}");
        assert_eq!(value(&s, &name), 1.0, "{name}");
    }
    for status in ["408", "431", "417", "501"] {
        let name = format!("ringcorn_requests_refused_total{{worker=\"0\",status=\"{status}\"}}");
        assert_eq!(value(&s, &name), 0.0, "{name}");
    }
    assert_eq!(
        value(&s, "ringcorn_connections_accepted_total{worker=\"0\"}"),
        5.0
    );
    // The keep-alive connection is still open; the refused ones were closed.
    assert_eq!(value(&s, "ringcorn_connections_open{worker=\"0\"}"), 1.0);
    assert!(value(&s, "ringcorn_received_bytes_total{worker=\"0\"}") >= 3.0 * 30.0);
    assert!(value(&s, "ringcorn_sent_bytes_total{worker=\"0\"}") >= 3.0 * 100.0);
    // Every answer and refusal was timed; the histogram is cumulative up to +Inf.
    let count = value(&s, "ringcorn_request_duration_seconds_count{worker=\"0\"}");
    assert_eq!(count, 7.0);
    assert_eq!(
        value(
            &s,
            "ringcorn_request_duration_seconds_bucket{worker=\"0\",le=\"+Inf\"}"
        ),
        count
    );
    let mut last = 0.0;
    for le in ["0.0001", "0.001", "0.01", "0.1", "1", "10"] {
        let b = value(
            &s,
            &format!("ringcorn_request_duration_seconds_bucket{{worker=\"0\",le=\"{le}\"}}"),
        );
        assert!(b >= last, "buckets are cumulative: le={le} {b} < {last}");
        last = b;
    }
    let sum = value(&s, "ringcorn_request_duration_seconds_sum{worker=\"0\"}");
    assert!(sum > 0.0 && sum < 7.0, "duration sum {sum}");
    assert_eq!(value(&s, "ringcorn_workers"), 1.0);
    assert_eq!(value(&s, "ringcorn_workers_target"), 1.0);
    assert!(value(&s, "ringcorn_uptime_seconds") > 0.0);
    let age = value(&s, "ringcorn_worker_heartbeat_age_seconds{worker=\"0\"}");
    assert!((0.0..5.0).contains(&age), "heartbeat age {age}");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(
            &s,
            &format!("ringcorn_build_info{{version=\"{version}\",worker_class=\"thread\"}}")
        ),
        1.0
    );
}

#[test]
fn deadlines_close_connections_and_are_counted_by_kind() {
    let server = Server::app(
        "hello",
        &[
            "--metrics",
            "127.0.0.1:0",
            "--header-timeout",
            "1",
            "--keep-alive",
            "1",
        ],
    );
    let addr = server.addr();
    let metrics = metrics_addr(&server);
    // A head that never ends: 408, closed by the header deadline.
    let answer = raw(addr, b"GET / HTTP/1.1\r\nHost: x\r\n");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    // An idle keep-alive connection: closed by the keep-alive deadline.
    let mut c = connect(addr);
    assert_eq!(c.get("/").status, 200);
    c.expect_closed();
    let s = scrape_until(metrics, "both deadlines", |s| {
        s.get("ringcorn_connections_closed_by_deadline_total{worker=\"0\",deadline=\"header\"}")
            == Some(&1.0)
            && s.get(
                "ringcorn_connections_closed_by_deadline_total{worker=\"0\",deadline=\"keep_alive\"}",
            ) == Some(&1.0)
    });
    assert_eq!(
        value(
            &s,
            "ringcorn_requests_refused_total{worker=\"0\",status=\"408\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "ringcorn_connections_closed_by_deadline_total{worker=\"0\",deadline=\"body\"}"
        ),
        0.0
    );
    assert_eq!(value(&s, "ringcorn_connections_open{worker=\"0\"}"), 0.0);
}

#[test]
fn proxy_header_refusals_are_counted_by_reason() {
    let trusted = Server::app(
        "hello",
        &[
            "--metrics",
            "127.0.0.1:0",
            "--proxy-protocol",
            "v1",
            "--header-timeout",
            "1",
        ],
    );
    let metrics = metrics_addr(&trusted);
    assert_eq!(
        raw(trusted.addr(), b"PROXY NONSENSE\r\nGET / HTTP/1.1\r\n\r\n"),
        ""
    );
    assert_eq!(
        raw(trusted.addr(), b"PROXY TCP4 1.2.3.4"),
        "",
        "stalls: timeout"
    );
    let ok = raw(
        trusted.addr(),
        b"PROXY TCP4 1.2.3.4 127.0.0.1 5 80\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(ok.starts_with("HTTP/1.1 200 "), "{ok}");
    let s = scrape_until(metrics, "malformed and timed-out headers", |s| {
        s.get("ringcorn_proxy_refused_total{worker=\"0\",reason=\"malformed\"}") == Some(&1.0)
            && s.get("ringcorn_proxy_refused_total{worker=\"0\",reason=\"timeout\"}") == Some(&1.0)
    });
    assert_eq!(
        value(
            &s,
            "ringcorn_proxy_refused_total{worker=\"0\",reason=\"untrusted\"}"
        ),
        0.0
    );
    assert_eq!(
        value(&s, "ringcorn_requests_total{worker=\"0\",class=\"2xx\"}"),
        1.0
    );

    let untrusted = Server::app(
        "hello",
        &[
            "--metrics",
            "127.0.0.1:0",
            "--proxy-protocol",
            "v1",
            "--proxy-allow-from",
            "10.0.0.0/8",
        ],
    );
    let metrics = metrics_addr(&untrusted);
    assert_eq!(
        raw(untrusted.addr(), b"PROXY TCP4 1.2.3.4 127.0.0.1 5 80\r\n"),
        ""
    );
    scrape_until(metrics, "an untrusted peer", |s| {
        s.get("ringcorn_proxy_refused_total{worker=\"0\",reason=\"untrusted\"}") == Some(&1.0)
    });
}

#[test]
fn a_worker_at_its_connection_cap_counts_an_accept_pause() {
    let server = Server::app(
        "hello",
        &["--metrics", "127.0.0.1:0", "--max-connections", "2"],
    );
    let metrics = metrics_addr(&server);
    let mut held: Vec<Conn> = (0..2).map(|_| connect(server.addr())).collect();
    for c in &mut held {
        assert_eq!(c.get("/").status, 200);
    }
    scrape_until(metrics, "a pause at --max-connections", |s| {
        s.get("ringcorn_accept_pauses_total{worker=\"0\",reason=\"max_connections\"}")
            .is_some_and(|&v| v >= 1.0)
    });
}

#[test]
fn counts_survive_a_killed_worker_process_and_restarts_are_counted() {
    let server = Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--worker-class",
        "process",
        "--metrics",
        "127.0.0.1:0",
        "hello",
    ]);
    let metrics = metrics_addr(&server);
    for _ in 0..2 {
        assert_eq!(
            fresh_get(server.addr(), "/", IO_TIMEOUT).map(|r| r.status),
            Ok(200)
        );
    }
    scrape_until(metrics, "2 answered", |s| {
        s.get("ringcorn_requests_total{worker=\"0\",class=\"2xx\"}") == Some(&2.0)
    });
    assert!(server.wait_log_count(" with pid: ", 1, Duration::from_secs(5)));
    let pid = server.worker_pid(0).expect("worker pid");
    // SAFETY: kill sends a signal to the test's own grandchild.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    scrape_until(metrics, "the restart", |s| {
        s.get("ringcorn_worker_restarts_total{worker=\"0\",reason=\"died\"}") == Some(&1.0)
            && s.get("ringcorn_workers") == Some(&1.0)
    });
    assert!(wait_until(Duration::from_secs(10), || {
        fresh_get(server.addr(), "/", IO_TIMEOUT).is_ok_and(|r| r.status == 200)
    }));
    // The dead worker's 2 stay counted beside the new worker's 1: the counter never drops.
    let s = scrape_until(metrics, "3 answered in all", |s| {
        s.get("ringcorn_requests_total{worker=\"0\",class=\"2xx\"}") == Some(&3.0)
    });
    assert_eq!(
        value(
            &s,
            "ringcorn_build_info{version=\"0.1.0\",worker_class=\"process\"}"
        ),
        1.0
    );
}

#[test]
fn max_requests_replacements_are_counted_and_the_totals_carry_on() {
    let server = Server::app(
        "hello",
        &["--metrics", "127.0.0.1:0", "--max-requests", "3"],
    );
    let metrics = metrics_addr(&server);
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered < 9 && Instant::now() < deadline {
        if fresh_get(server.addr(), "/", IO_TIMEOUT).is_ok_and(|r| r.status == 200) {
            answered += 1;
        }
    }
    assert_eq!(answered, 9, "{}", server.log());
    // Each worker serves on until its replacement accepts, so 9 requests see at least one
    // replacement; the totals count every worker's requests.
    scrape_until(metrics, "9 answered across replacements", |s| {
        s.get("ringcorn_requests_total{worker=\"0\",class=\"2xx\"}") == Some(&9.0)
            && s.get("ringcorn_worker_restarts_total{worker=\"0\",reason=\"max_requests\"}")
                .is_some_and(|&v| v >= 1.0)
    });
}

#[test]
fn the_metrics_listener_answers_only_get_and_head_on_metrics() {
    let server = Server::app("hello", &["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server);
    let head = raw(metrics, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    let other = raw(metrics, b"GET / HTTP/1.1\r\n\r\n");
    assert!(other.starts_with("HTTP/1.1 404 "), "{other}");
    let post = raw(
        metrics,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(
        post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET, HEAD"),
        "{post}"
    );
    // The app's port does not serve metrics.
    let app = raw(
        server.addr(),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(!app.contains("ringcorn_requests_total"), "{app}");
}

#[test]
fn a_stalled_scraper_does_not_hold_up_the_next() {
    let server = Server::app("hello", &["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server);
    let mut stalled = TcpStream::connect(metrics).expect("connect");
    stalled.write_all(b"GET /metr").expect("send part");
    let started = Instant::now();
    let samples = scrape(metrics);
    assert!(samples.contains_key("ringcorn_workers"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a scrape waited behind a stalled one: {:?}",
        started.elapsed()
    );
    // And the master still takes its signals.
    assert_eq!(
        fresh_get(server.addr(), "/", IO_TIMEOUT).map(|r| r.status),
        Ok(200)
    );
}

#[test]
fn metrics_on_a_unix_socket() {
    let dir = TempDir::new("metrics");
    let path = dir.path().join("metrics.sock");
    let bind = format!("unix:{}", path.display());
    let server = Server::app("hello", &["--metrics", &bind]);
    server.expect_log(
        &format!("Metrics at: {bind}/metrics"),
        Duration::from_secs(5),
    );
    let mut s = std::os::unix::net::UnixStream::connect(&path).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.contains("\nringcorn_workers 1\n"), "{out}");
    drop(server);
}

#[test]
fn an_inherited_descriptor_is_refused_for_metrics() {
    let out = run_cli(&["--metrics", "fd://3", "hello"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not fd://N"),
        "{out:?}"
    );
}

/// `promtool`: `RINGCORN_PROMTOOL`, else on PATH.
fn promtool() -> Option<String> {
    if let Some(p) = std::env::var_os("RINGCORN_PROMTOOL") {
        return Some(p.to_string_lossy().into_owned());
    }
    Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())
        .map(|_| "promtool".to_string())
}

#[test]
fn promtool_accepts_the_exposition() {
    let Some(promtool) = promtool() else {
        let required = std::env::var_os("RINGCORN_REQUIRE_TOOLS").is_some_and(|v| v == "1");
        assert!(
            !required,
            "RINGCORN_REQUIRE_TOOLS=1 but promtool is missing (Debian's prometheus package; set \
             RINGCORN_PROMTOOL to its path)"
        );
        eprintln!(
            "NOTICE: promtool check skipped: promtool not found (apt-get install prometheus)"
        );
        return;
    };
    // Two workers, traffic of every kind, so that every family has samples.
    let server = Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--metrics",
        "127.0.0.1:0",
        "hello",
    ]);
    let metrics = metrics_addr(&server);
    for _ in 0..4 {
        let _ = fresh_get(server.addr(), "/", IO_TIMEOUT);
    }
    raw(server.addr(), b"GARBAGE\r\n\r\n");
    let text = {
        scrape_until(metrics, "the requests", |s| {
            s.get("ringcorn_requests_total{worker=\"0\",class=\"2xx\"}")
                .unwrap_or(&0.0)
                + s.get("ringcorn_requests_total{worker=\"1\",class=\"2xx\"}")
                    .unwrap_or(&0.0)
                == 4.0
        });
        scrape_text(metrics)
    };
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {promtool}: {e}"));
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = check.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
