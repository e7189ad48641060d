//! The built-in apps: hello, json, echo, bytes; standard response headers; HEAD.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn date_parser_accepts_imf_fixdate_only() {
    // Self-check of the helper the other tests rely on.
    assert_eq!(
        parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert!(parse_imf_fixdate("Fri, 20 Nov 2026 10:00:00 GMT").is_some());
    assert_eq!(parse_imf_fixdate("Sat, 20 Nov 2026 10:00:00 GMT"), None);
    assert_eq!(parse_imf_fixdate("Fri, 20 Nov 2026 10:00:00 UTC"), None);
    assert_eq!(parse_imf_fixdate("Fri, 20-Nov-2026 10:00:00 GMT"), None);
    assert_eq!(parse_imf_fixdate("Friday, 20-Nov-26 10:00:00 GMT"), None);
    assert_eq!(parse_imf_fixdate("Fri Nov 20 10:00:00 2026"), None);
}

#[test]
fn hello_get_has_body_and_standard_headers() {
    let server = Server::app("hello", &[]);
    let mut c = connect(server.addr());
    let resp = c.get("/");
    assert_hello(&resp);
    check_common_headers(&resp, false);
    assert_eq!(resp.header("Content-Length"), Some("13"));
    assert!(!resp.closes(), "HTTP/1.1 keep-alive by default: {resp:?}");
    server.expect_log("Using app: hello", Duration::from_secs(5));
}

#[test]
fn hello_is_the_default_app() {
    let server = Server::spawn(&["--bind", "127.0.0.1:0", "--workers", "1"]);
    let mut c = connect(server.addr());
    let resp = c.get("/");
    assert_hello(&resp);
    check_common_headers(&resp, false);
    server.expect_log("Using app: hello", Duration::from_secs(5));
}

#[test]
fn hello_answers_any_method_and_path() {
    let server = Server::app("hello", &[]);
    let mut c = connect(server.addr());
    for path in ["/", "/a/b/c", "/x?y=1&z=2", "/%20weird"] {
        let resp = c.get(path);
        assert_hello(&resp);
        check_common_headers(&resp, false);
    }
    // A POST with a body: the body must be consumed, and the connection reused.
    let resp = c.post("/submit", b"some=form&data=1");
    assert_hello(&resp);
    for method in ["PUT", "DELETE", "OPTIONS", "PATCH"] {
        c.send(
            format!("{method} /thing HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc")
                .as_bytes(),
        );
        let resp = c.read_response();
        assert_hello(&resp);
        check_common_headers(&resp, false);
    }
    let resp = c.get("/after");
    assert_hello(&resp);
}

#[test]
fn json_app_body_and_content_type() {
    let server = Server::app("json", &[]);
    let mut c = connect(server.addr());
    for path in ["/", "/json", "/anything?q=1"] {
        let resp = c.get(path);
        assert_eq!(resp.status_line, "HTTP/1.1 200 OK");
        assert_eq!(resp.header("Content-Type"), Some("application/json"));
        assert_eq!(resp.body_str(), JSON_BODY);
        assert_eq!(resp.header("Content-Length"), Some("27"));
        check_common_headers(&resp, false);
    }
    server.expect_log("Using app: json", Duration::from_secs(5));
}

#[test]
fn echo_app_returns_body_and_content_type() {
    let server = Server::app("echo", &[]);
    let mut c = connect(server.addr());

    c.send(
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/x-custom; charset=utf-8\r\nContent-Length: 11\r\n\r\nhello world",
    );
    let resp = c.read_response();
    assert_eq!(resp.status_line, "HTTP/1.1 200 OK");
    assert_eq!(resp.body, b"hello world");
    assert_eq!(
        resp.header("Content-Type"),
        Some("text/x-custom; charset=utf-8")
    );
    check_common_headers(&resp, false);

    // Without Content-Type: application/octet-stream.
    let resp = c.post("/", b"\x00\x01\x02\xff");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"\x00\x01\x02\xff");
    assert_eq!(
        resp.header("Content-Type"),
        Some("application/octet-stream")
    );
    check_common_headers(&resp, false);

    // Any method; no body gives an empty body with Content-Length: 0.
    let resp = c.get("/nothing");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"");
    assert_eq!(resp.header("Content-Length"), Some("0"));
    check_common_headers(&resp, false);

    c.send(b"PUT /x HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
    let resp = c.read_response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"{}");
    assert_eq!(resp.header("Content-Type"), Some("application/json"));
    server.expect_log("Using app: echo", Duration::from_secs(5));
}

#[test]
fn head_hello_has_length_but_no_body() {
    let server = Server::app("hello", &[]);
    let mut c = connect(server.addr());
    // HEAD then GET on the same connection: if the server sent body bytes
    // for HEAD, the GET response would not parse.
    c.send(head_req("/").as_bytes());
    let head = c.read_head_response();
    assert_eq!(head.status_line, "HTTP/1.1 200 OK");
    assert_eq!(head.header("Content-Length"), Some("13"));
    assert_eq!(head.header("Content-Type"), Some("text/plain"));
    check_common_headers(&head, true);

    let resp = c.get("/");
    assert_hello(&resp);

    // And pipelined: HEAD, GET, HEAD in one write.
    let mut batch = head_req("/a");
    batch.push_str(&get_req("/b"));
    batch.push_str(&head_req("/c"));
    c.send(batch.as_bytes());
    let r1 = c.read_head_response();
    let r2 = c.read_response();
    let r3 = c.read_head_response();
    assert_eq!(r1.header("Content-Length"), Some("13"));
    assert_hello(&r2);
    assert_eq!(r3.header("Content-Length"), Some("13"));
    assert_eq!(r3.status, 200);

    // Nothing else may follow.
    let resp = c.get("/last");
    assert_hello(&resp);
}

#[test]
fn head_json_has_length_but_no_body() {
    let server = Server::app("json", &[]);
    let mut c = connect(server.addr());
    c.send(head_req("/").as_bytes());
    let head = c.read_head_response();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some("27"));
    assert_eq!(head.header("Content-Type"), Some("application/json"));
    check_common_headers(&head, true);
    let resp = c.get("/");
    assert_eq!(resp.body_str(), JSON_BODY);
}

#[test]
fn bytes_app_sizes_the_body_from_the_path() {
    let server = Server::app("bytes", &[]);
    let mut c = connect(server.addr());
    for n in [0usize, 13, 4096, 65_536, 1_048_576] {
        let resp = c.get(&format!("/{n}"));
        assert_eq!(resp.status, 200, "GET /{n}");
        assert_eq!(resp.body.len(), n, "GET /{n}");
        assert!(resp.body.iter().all(|&b| b == b'x'), "GET /{n}");
        assert_eq!(
            resp.header("content-type"),
            Some("application/octet-stream")
        );
    }
    for bad in ["/", "/abc", "/-1", "/16777217", "/?x"] {
        assert_eq!(c.get(bad).status, 404, "GET {bad}");
    }
}
