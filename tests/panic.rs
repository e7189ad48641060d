//! The library API in-process: a panicking handler gets a 500 and a closed
//! connection while the worker keeps serving; request accessors.

mod common;

use common::{assert_error_close, check_common_headers, connect, get_req, Conn};
use ringcorn::{Config, Request, Response, Server, WorkerInfo};

// The contract's documented style; stays valid if Config is `#[non_exhaustive]`.
#[allow(clippy::field_reassign_with_default)]
fn config() -> Config {
    let mut config = Config::default();
    config.workers = 1;
    config.binds = vec!["127.0.0.1:0".parse().expect("socket address")];
    config
}

#[test]
fn handler_panic_gets_500_and_worker_survives() {
    let running = Server::start(config(), |_worker: WorkerInfo| {
        |req: &Request<'_>, res: &mut Response<'_>| {
            if req.path() == "/panic" {
                panic!("handler panic requested by the test");
            }
            res.header("Content-Type", "text/plain").body(b"ok");
        }
    })
    .expect("start");
    let addr = running.addrs()[0];

    // A keep-alive connection opened before the panic.
    let mut before = connect(addr);
    let resp = before.get("/");
    assert_eq!(resp.status_line, "HTTP/1.1 200 OK");
    assert_eq!(resp.body, b"ok");
    assert_eq!(resp.header("Content-Type"), Some("text/plain"));
    check_common_headers(&resp, false);

    let mut bad = connect(addr);
    let resp = bad.get("/panic");
    assert_eq!(resp.status_line, "HTTP/1.1 500 Internal Server Error");
    assert_error_close(&resp, 500);
    bad.expect_closed();

    // The old connection and new connections keep working (one worker: the
    // same worker that caught the panic).
    for i in 0..3 {
        let resp = before.get(&format!("/after/{i}"));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, b"ok");
    }
    let mut fresh = connect(addr);
    assert_eq!(fresh.get("/").body, b"ok");

    // Repeated panics, also with a query string (path() excludes it) and
    // pipelined behind a good request.
    for _ in 0..5 {
        let mut c = connect(addr);
        let mut batch = get_req("/fine");
        batch.push_str(&get_req("/panic?x=1"));
        batch.push_str(&get_req("/never"));
        c.send(batch.as_bytes());
        assert_eq!(c.read_response().body, b"ok");
        let resp = c.read_response();
        assert_error_close(&resp, 500);
        c.expect_closed();
    }
    assert_eq!(before.get("/").body, b"ok");
    assert_eq!(fresh.get("/").body, b"ok");

    running.shutdown();
}

#[test]
fn handler_panic_with_two_workers() {
    let mut two = config();
    two.workers = 2;
    let running = Server::start(two, |_worker: WorkerInfo| {
        |req: &Request<'_>, res: &mut Response<'_>| {
            if req.path() == "/panic" {
                panic!("handler panic requested by the test");
            }
            res.body(b"ok");
        }
    })
    .expect("start");
    let addr = running.addrs()[0];
    let mut conns: Vec<Conn> = (0..8).map(|_| connect(addr)).collect();
    for c in conns.iter_mut() {
        assert_eq!(c.get("/").body, b"ok");
    }
    for _ in 0..8 {
        let mut c = connect(addr);
        let resp = c.get("/panic");
        assert_error_close(&resp, 500);
        c.expect_closed();
    }
    for c in conns.iter_mut() {
        assert_eq!(c.get("/").body, b"ok");
    }
    running.shutdown();
}

#[test]
fn request_accessors_and_custom_responses() {
    let running = Server::start(config(), |_worker: WorkerInfo| {
        |req: &Request<'_>, res: &mut Response<'_>| {
            let mut out = format!(
                "method={} path={} query={} version={} x-test={} body={}",
                req.method(),
                req.path(),
                req.query().unwrap_or("-"),
                req.version(),
                req.header("x-TEST")
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_else(|| "-".into()),
                String::from_utf8_lossy(req.body()),
            );
            let names: Vec<String> = req.headers().map(|(n, _)| n.to_ascii_lowercase()).collect();
            out.push_str(&format!(" headers={}", names.join(",")));
            if req.path() == "/teapot" {
                res.status(418);
            }
            res.header("X-Custom", "yes");
            res.body_mut().extend_from_slice(out.as_bytes());
        }
    })
    .expect("start");
    let addr = running.addrs()[0];
    let mut c = connect(addr);

    c.send(b"POST /a/b?x=1&y=2 HTTP/1.1\r\nHost: localhost\r\nX-Test: hello\r\nContent-Length: 4\r\n\r\nbody");
    let resp = c.read_response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("X-Custom"), Some("yes"));
    check_common_headers(&resp, false);
    assert_eq!(
        resp.body_str(),
        "method=POST path=/a/b query=x=1&y=2 version=1 x-test=hello body=body headers=host,x-test,content-length"
    );

    c.send(b"GET /plain HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let resp = c.read_response();
    assert_eq!(
        resp.body_str(),
        "method=GET path=/plain query=- version=0 x-test=- body= headers=connection"
    );
    assert!(resp.keeps_alive(), "{resp:?}");

    let resp = c.get("/teapot");
    assert_eq!(resp.status, 418, "{resp:?}");
    assert!(resp.status_line.starts_with("HTTP/1.1 418 "), "{resp:?}");
    check_common_headers(&resp, false);

    running.shutdown();
}
