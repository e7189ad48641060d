//! `--access-logfile` and `--access-logformat`: Gunicorn's atoms and the presets, lines that
//! hostile headers cannot break, refused requests logged too, SIGUSR1 reopening under load
//! with no line lost or torn, and a log that cannot be written never stalling a worker.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::thread;
use std::time::Duration;

use common::*;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Send raw bytes on a fresh connection; the raw answer.
fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(bytes).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Wait until `path` holds at least `n` lines.
#[track_caller]
fn wait_lines(path: &Path, n: usize) -> String {
    assert!(
        wait_until(Duration::from_secs(10), || read(path).lines().count() >= n),
        "{} has {} lines, wanted {n}:\n{}",
        path.display(),
        read(path).lines().count(),
        read(path)
    );
    read(path)
}

#[test]
fn combined_by_default_with_refused_requests_too() {
    let dir = TempDir::new("access-combined");
    let log = dir.join("access.log");
    let log_arg = log.to_string_lossy().into_owned();
    let server = Server::app("hello", &["--access-logfile", &log_arg]);
    let addr = server.addr();
    let answer = raw(
        addr,
        b"GET /p?q=1 HTTP/1.1\r\nHost: h\r\nReferer: http://r/\r\nUser-Agent: ua \"x\" \xff\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let refused = raw(addr, b"NOT A REQUEST\r\n\r\n");
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    let text = wait_lines(&log, 2);
    let lines: Vec<&str> = text.lines().collect();
    let ok = lines
        .iter()
        .find(|l| l.contains("\"GET /p?q=1 HTTP/1.1\""))
        .expect("the GET");
    assert!(ok.starts_with("127.0.0.1 - - ["), "{ok}");
    assert!(
        ok.ends_with(
            "+0000] \"GET /p?q=1 HTTP/1.1\" 200 13 \"http://r/\" \"ua \\x22x\\x22 \\xff\""
        ),
        "{ok}"
    );
    let bad = lines.iter().find(|l| l.contains(" 400 ")).expect("the 400");
    assert!(
        bad.contains("\"-\" 400 "),
        "a refused request has no request line: {bad}"
    );
}

#[test]
fn json_lines_stay_valid_whatever_the_headers() {
    let dir = TempDir::new("access-json");
    let log = dir.join("access.log");
    let log_arg = log.to_string_lossy().into_owned();
    let server = Server::app(
        "hello",
        &["--access-logfile", &log_arg, "--access-logformat", "json"],
    );
    let answer = raw(
        server.addr(),
        b"GET /x HTTP/1.1\r\nHost: h\r\nUser-Agent: a\"b\\c\td\xc3\xa9\xfe\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let text = wait_lines(&log, 1);
    let v: serde_json::Value = serde_json::from_str(text.lines().next().expect("a line"))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(v["user_agent"], "a\"b\\c\td\u{e9}\\xfe");
    assert_eq!(v["path"], "/x");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes"], 13);
    assert_eq!(v["remote"], "127.0.0.1");
    assert!(v["duration_us"].is_u64(), "{v}");
}

#[test]
fn custom_atoms_and_bad_formats() {
    let dir = TempDir::new("access-atoms");
    let log = dir.join("access.log");
    let log_arg = log.to_string_lossy().into_owned();
    let server = Server::app(
        "hello",
        &[
            "--access-logfile",
            &log_arg,
            "--access-logformat",
            "%(m)s %(U)s %(q)s %(H)s %(s)s %(B)s %({host}i)s %({content-type}o)s %(p)s",
        ],
    );
    let pid = server.pid();
    let answer = raw(
        server.addr(),
        b"GET /a?b=c HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let text = wait_lines(&log, 1);
    assert_eq!(
        text,
        format!("GET /a b=c HTTP/1.1 200 13 example text/plain <{pid}>\n")
    );
    let out = run_cli(&["--access-logformat", "%(nope)s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown atom"));
}

#[test]
fn reopened_under_load_no_line_lost_or_torn() {
    let dir = TempDir::new("access-rotate");
    let log = dir.join("access.log");
    let log_arg = log.to_string_lossy().into_owned();
    let mut server = Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--worker-class",
        "process",
        "--access-logfile",
        &log_arg,
        "--access-logformat",
        "json",
        "hello",
    ]);
    let load = Load::start(server.addr(), 4, "/", HELLO_BODY, Duration::from_secs(30));
    let mut files = Vec::new();
    for k in 1..=4 {
        thread::sleep(Duration::from_millis(400));
        let to = dir.join(&format!("access.log.{k}"));
        std::fs::rename(&log, &to).expect("rotate");
        files.push(to);
        server.signal(libc::SIGUSR1);
    }
    thread::sleep(Duration::from_millis(400));
    let report = load.stop();
    report.assert_clean(200, &server.log());
    server.signal(libc::SIGTERM);
    assert!(server.expect_exit(Duration::from_secs(20)).success());
    files.push(log.clone());
    let mut logged = 0u64;
    let mut with_lines = 0;
    for f in &files {
        let text = read(f);
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends mid-line",
            f.display()
        );
        let mut here = 0;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: torn or broken line ({e}): {line:?}", f.display()));
            assert_eq!(v["path"], "/", "{line}");
            logged += 1;
            here += 1;
        }
        if here > 0 {
            with_lines += 1;
        }
    }
    assert_eq!(
        logged,
        report.ok,
        "every answered request has its line ({} files)",
        files.len()
    );
    assert!(with_lines >= 3, "lines went to {with_lines} of the files");
}

#[test]
fn a_log_that_cannot_be_written_is_reported_and_never_stalls() {
    if !Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full");
        return;
    }
    let server = Server::app("hello", &["--access-logfile", "/dev/full"]);
    for _ in 0..50 {
        assert_hello(&fresh_get(server.addr(), "/", IO_TIMEOUT).expect("answered"));
    }
    thread::sleep(Duration::from_millis(300));
    for _ in 0..50 {
        assert_hello(&fresh_get(server.addr(), "/", IO_TIMEOUT).expect("answered"));
    }
    server.expect_log("cannot write the access log", Duration::from_secs(5));
    let reports = server.count_log_lines("cannot write the access log");
    assert!(
        (1..=2).contains(&reports),
        "rate-limited: {reports} reports\n{}",
        server.log()
    );
}

#[test]
fn a_dash_writes_to_stdout() {
    let server = Server::app("hello", &["--access-logfile", "-"]);
    assert_hello(&fresh_get(server.addr(), "/out", IO_TIMEOUT).expect("answered"));
    assert!(
        wait_until(Duration::from_secs(10), || server
            .stdout()
            .contains("\"GET /out HTTP/1.1\" 200 13")),
        "stdout: {:?}\nstderr: {}",
        server.stdout(),
        server.log()
    );
    assert!(!server.log().contains("GET /out"), "not on stderr");
}
