//! The WSGI bridge (feature `wsgi`): `ringcorn module:callable` serves the plain PEP 3333 apps
//! of tests/wsgi/testapp.py. The environ, wsgi.input in memory and spooled, iterables sent
//! whole and streamed (close() always called, a failing one cut short), write(), a late and a
//! repeated start_response, exc_info, exceptions (500, traceback in the log, the worker lives
//! on), wsgi.file_wrapper (a real file sent sized with sendfile; a file-like one iterated),
//! wsgiref's validator over every kind of request, apps that cannot be loaded (exit 1 with
//! the traceback), --env, --root-path, process workers.
#![cfg(feature = "wsgi")]

mod common;

use common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn app_dir() -> String {
    format!("{}/tests/wsgi", env!("CARGO_MANIFEST_DIR"))
}

fn serve(extra: &[&str], app: &str) -> Server {
    let dir = app_dir();
    let mut args = vec!["--bind", "127.0.0.1:0", "--workers", "1", "--chdir", &dir];
    args.extend_from_slice(extra);
    args.push(app);
    Server::spawn(&args)
}

/// The bytes testapp.py's `pattern(n)` makes.
fn py_pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + 3) % 251) as u8).collect()
}

fn environ(c: &mut Conn, request: &str) -> serde_json::Value {
    c.send(request.as_bytes());
    let resp = c.read_any_response();
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    serde_json::from_slice(&resp.body).expect("the environ as JSON")
}

#[test]
fn the_environ_is_pep_3333s() {
    let server = serve(&["--root-path", "/mount", "--threads", "2"], "testapp");
    let mut c = connect(server.addr());
    let env = environ(
        &mut c,
        "POST /mount/environ%20x/%C3%A9?a=1&b=%20 HTTP/1.1\r\nHost: example.org:8080\r\n\
         Content-Type: text/plain\r\nContent-Length: 3\r\nX-Two: one\r\nX-Two: two\r\n\
         X_Sneaky: dropped\r\n\r\nabc",
    );
    let s = |k: &str| {
        env[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k} in {env}"))
            .to_string()
    };
    assert_eq!(s("REQUEST_METHOD"), "POST");
    assert_eq!(s("SCRIPT_NAME"), "/mount");
    // Percent-decoded, then each byte one code point (latin-1), as PEP 3333 says.
    assert_eq!(s("PATH_INFO"), "/environ x/\u{c3}\u{a9}");
    assert_eq!(s("QUERY_STRING"), "a=1&b=%20");
    assert_eq!(s("CONTENT_TYPE"), "text/plain");
    assert_eq!(s("CONTENT_LENGTH"), "3");
    assert_eq!(s("SERVER_NAME"), "example.org");
    assert_eq!(s("SERVER_PORT"), "8080");
    assert_eq!(s("SERVER_PROTOCOL"), "HTTP/1.1");
    assert_eq!(s("REMOTE_ADDR"), "127.0.0.1");
    assert!(s("REMOTE_PORT").parse::<u16>().is_ok());
    assert_eq!(s("HTTP_X_TWO"), "one,two");
    assert_eq!(s("HTTP_HOST"), "example.org:8080");
    assert!(
        env.get("HTTP_X_SNEAKY").is_none(),
        "a header with `_` is dropped"
    );
    assert!(env.get("HTTP_CONTENT_TYPE").is_none());
    assert_eq!(env["wsgi.version"], serde_json::json!([1, 0]));
    assert_eq!(s("wsgi.url_scheme"), "http");
    assert_eq!(env["wsgi.multithread"], true);
    assert_eq!(env["wsgi.multiprocess"], false);
    assert_eq!(env["wsgi.run_once"], false);
    assert_eq!(env["wsgi.input_terminated"], true);
    assert_eq!(s("wsgi.input"), "BytesIO");
    // A chunked body: CONTENT_LENGTH is the decoded length.
    let env = environ(
        &mut c,
        "PUT /environ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
         2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n",
    );
    assert_eq!(env["CONTENT_LENGTH"], "5");
    assert_eq!(env["SCRIPT_NAME"], "/mount");
    assert_eq!(env["PATH_INFO"], "/environ");
}

#[test]
fn wsgi_input_reads_bodies_in_memory_and_spooled() {
    let server = serve(
        &["--body-buffer-size", "65536", "--max-body-size", "50000000"],
        "testapp",
    );
    let mut c = connect(server.addr());
    for len in [0, 1, 60_000, 3_000_000] {
        let resp = c.post("/input", &py_pattern(len));
        assert_eq!(resp.body_str(), format!("{len} ok"), "{len} bytes");
    }
    let text = b"line one\nline two\nthree";
    assert_eq!(
        c.post("/input?lines", text).body_str(),
        "3 lines, first b'line one\\n'"
    );
    assert_eq!(
        c.post("/input?iter", text).body_str(),
        "3 lines by iteration"
    );
    assert_eq!(c.post("/input?readline", text).body_str(), "9+14");
    let mut big = b"first line\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 200_000));
    assert_eq!(c.post("/input?readline", &big).body_str(), "11+200000");
}

#[test]
fn iterables_are_sent_whole_or_streamed_and_always_closed() {
    let server = serve(&["--threads", "1"], "testapp");
    let mut c = connect(server.addr());
    let before: usize = c.get("/closed").body_str().parse().expect("a count");
    c.send(get_req("/stream?200").as_bytes());
    let resp = c.read_any_response();
    assert_eq!(resp.header("Transfer-Encoding"), Some("chunked"));
    let want: String = (0..200).map(|i| format!("part {i}\n")).collect();
    assert_eq!(resp.body_str(), want);
    let resp = c.get("/stream-sized");
    assert_eq!(resp.header("Content-Length"), Some("1000"));
    assert_eq!(resp.body_str(), "0123456789".repeat(100));
    // HEAD of a stream: the iterable is never iterated, but closed.
    c.send(head_req("/stream?5").as_bytes());
    let head = c.read_head_response();
    assert_eq!(head.status, 200);
    // A stream that fails mid-body is cut short: the connection closes after what was sent.
    let mut f = connect(server.addr());
    f.send(get_req("/stream-fails").as_bytes());
    assert!(
        f.try_read_response(false).is_err(),
        "an incomplete chunked body, then the close"
    );
    let after: usize = c.get("/closed").body_str().parse().expect("a count");
    assert_eq!(
        after - before,
        4,
        "close() called for each of the 4 iterables"
    );
    server.expect_log("the iterable fails mid-body", WAIT);
}

#[test]
fn write_late_start_response_and_exc_info() {
    let server = serve(&[], "testapp");
    let mut c = connect(server.addr());
    assert_eq!(c.get("/write").body_str(), "written, then returned");
    c.send(get_req("/late-start").as_bytes());
    let resp = c.read_any_response();
    assert_eq!((resp.status, resp.header("X-Late")), (202, Some("yes")));
    assert_eq!(resp.body_str(), "late");
    let resp = c.get("/exc-info");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("X-Second"), Some("1"));
    assert_eq!(resp.header("X-First"), None);
    let mut c = connect(server.addr());
    assert_eq!(c.get("/twice").status, 500);
    let mut c = connect(server.addr());
    assert_eq!(c.get("/bad-header").status, 500);
    server.expect_log("start_response was already called", WAIT);
}

#[test]
fn an_exception_is_a_500_with_the_traceback_logged_and_the_worker_serves_on() {
    let server = serve(&[], "testapp");
    for _ in 0..3 {
        let mut c = connect(server.addr());
        let resp = c.get("/raise");
        assert_eq!(resp.status, 500);
    }
    server.expect_log("RuntimeError: the view raises", WAIT);
    server.expect_log("Traceback (most recent call last):", WAIT);
    let mut c = connect(server.addr());
    assert_eq!(c.get("/closed").status, 200, "the worker serves on");
    assert!(
        !server.log().contains("could not start"),
        "{}",
        server.log()
    );
}

#[test]
fn wsgiref_validator_passes_every_kind_of_request() {
    let server = serve(&["--threads", "2"], "testapp:validated");
    let mut c = connect(server.addr());
    for path in [
        "/environ",
        "/stream?3",
        "/stream-sized",
        "/write",
        "/closed",
        "/nope",
    ] {
        c.send(get_req(path).as_bytes());
        let resp = c.read_any_response();
        assert!(
            resp.status == 200 || resp.status == 404,
            "{path}: {}",
            resp.status
        );
    }
    // The validator wraps every iterable: they are all streamed here.
    c.send(&post_req("/input", &py_pattern(5000)));
    assert_eq!(c.read_any_response().body_str(), "5000 ok");
    c.send(head_req("/environ").as_bytes());
    assert_eq!(c.read_head_response().status, 200);
    assert!(
        !server.log().contains("AssertionError"),
        "wsgiref.validate found nothing\n{}",
        server.log()
    );
}

#[test]
fn apps_that_cannot_be_loaded_are_one_error_with_the_traceback() {
    let dir = app_dir();
    for (app, needle) in [
        (
            "nosuchmodule:app",
            "ModuleNotFoundError: No module named 'nosuchmodule'",
        ),
        (
            "testapp:nothere",
            "module `testapp` has no callable `nothere`",
        ),
        ("testapp:closed", "`testapp:closed` is not callable"),
        ("syntaxerror", "SyntaxError"),
        (
            "importfails",
            "ImportError: this module refuses to be imported",
        ),
    ] {
        let out = run_cli(&[
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--chdir",
            &dir,
            app,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{app}: {err}");
        assert!(err.contains(needle), "{app}: {err}");
        assert!(err.contains("cannot load the WSGI app"), "{app}: {err}");
    }
}

#[test]
fn file_wrapper_sends_real_files_with_sendfile_and_iterates_the_rest() {
    let server = serve(&["--threads", "2"], "testapp");
    let source = std::fs::read(format!("{}/testapp.py", app_dir())).expect("testapp.py");
    let mut c = connect(server.addr());
    // A real file: sized from the file (or the app's Content-Length), from its position.
    for (query, with_length) in [("", false), ("100", false), ("100", true)] {
        let mut req = format!("GET /file?{query} HTTP/1.1\r\nHost: t\r\n");
        if with_length {
            req.push_str("X-With-Length: 1\r\n");
        }
        req.push_str("\r\n");
        c.send(req.as_bytes());
        let resp = c.read_any_response();
        let from: usize = query.parse().unwrap_or(0);
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.header("Content-Length"),
            Some((source.len() - from).to_string().as_str()),
            "sent sized, not chunked"
        );
        assert!(resp.body == source[from..], "the file from {from}");
    }
    c.send(head_req("/file").as_bytes());
    let head = c.read_head_response();
    assert_eq!(
        head.header("Content-Length"),
        Some(source.len().to_string().as_str())
    );
    // A file-like object without a descriptor: iterated in its blocks, chunked.
    c.send(get_req("/file-like").as_bytes());
    let resp = c.read_any_response();
    assert_eq!(resp.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(resp.body_str(), "not a real file, read in blocks");
}

#[test]
fn check_imports_the_app() {
    let dir = app_dir();
    let out = run_cli(&[
        "--check",
        "--bind",
        "127.0.0.1:0",
        "--chdir",
        &dir,
        "nosuchmodule",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL app") && text.contains("No module named 'nosuchmodule'"),
        "{text}"
    );
    let out = run_cli(&[
        "--check",
        "--bind",
        "127.0.0.1:0",
        "--chdir",
        &dir,
        "testapp",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("OK   app"), "{text}");
}

#[test]
fn env_pythonpath_and_process_workers() {
    let dir = app_dir();
    let server = Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--worker-class",
        "process",
        "--pythonpath",
        &dir,
        "--env",
        "RINGCORN_TEST_ENV=from the command line",
        "testapp:application",
    ]);
    let mut pids = std::collections::HashSet::new();
    for _ in 0..40 {
        let mut c = connect(server.addr());
        assert_eq!(c.get("/env").body_str(), "from the command line");
        let mut c = connect(server.addr());
        pids.insert(c.get("/pid").body_str());
        if pids.len() == 2 {
            break;
        }
    }
    assert_eq!(pids.len(), 2, "both worker processes answer: {pids:?}");
    let mut c = connect(server.addr());
    let env = environ(&mut c, &get_req("/environ"));
    assert_eq!(env["wsgi.multiprocess"], true);
}
