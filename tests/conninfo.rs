//! What a request knows of its connection: `Request::peer_addr()`, `local_addr()` and
//! `scheme()`, seen through the built-in `conninfo` app over TCP (a specific and a wildcard
//! bind, IPv6, both worker classes) and over a Unix socket.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{cli_command, Server, TempDir, IO_TIMEOUT};

/// GET / on a fresh connection to `addr`: (the client's own address, the body).
fn ask(addr: SocketAddr) -> (SocketAddr, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let me = s.local_addr().expect("local");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (me, body)
}

#[test]
fn peer_and_local_addresses_over_tcp() {
    for class in ["thread", "process"] {
        let server = Server::spawn(&[
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--worker-class",
            class,
            "conninfo",
        ]);
        for _ in 0..4 {
            let (me, body) = ask(server.addr());
            assert_eq!(
                body,
                format!("peer={me}\nlocal={}\nscheme=http\n", server.addr()),
                "{class}"
            );
        }
    }
}

#[test]
fn a_wildcard_bind_reports_the_address_the_connection_reached() {
    let server = Server::spawn(&["--bind", "0.0.0.0:0", "--workers", "1", "conninfo"]);
    let port = server.addr().port();
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let (me, body) = ask(target);
    assert_eq!(body, format!("peer={me}\nlocal={target}\nscheme=http\n"));
}

#[test]
fn ipv6_peers_are_reported() {
    if !common::ipv6_available() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let server = Server::spawn(&["--bind", "[::1]:0", "--workers", "1", "conninfo"]);
    let (me, body) = ask(server.addr());
    assert!(me.is_ipv6());
    assert_eq!(
        body,
        format!("peer={me}\nlocal={}\nscheme=http\n", server.addr())
    );
}

#[test]
fn a_unix_socket_has_no_addresses() {
    let dir = TempDir::new("conninfo-unix");
    let path = dir.join("s.sock");
    let bind = format!("unix:{}", path.display());
    let server = Server::spawn_command(cli_command(&["--bind", &bind, "conninfo"]), 0);
    server.expect_log(&format!("Listening at: {bind}"), Duration::from_secs(20));
    let mut s = std::os::unix::net::UnixStream::connect(&path).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    assert!(
        out.ends_with("\r\n\r\npeer=-\nlocal=-\nscheme=http\n"),
        "{out}"
    );
}

/// GET / with `headers` on a fresh connection; the body.
fn ask_with(addr: SocketAddr, headers: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()
}

#[test]
fn forwarded_headers_only_from_trusted_peers() {
    let headers = "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n";
    let trusting = Server::app("conninfo", &["--forwarded-allow-ips", "127.0.0.1"]);
    let body = ask_with(trusting.addr(), headers);
    assert!(
        body.starts_with("peer=203.0.113.9:0\n") && body.ends_with("scheme=https\n"),
        "{body}"
    );
    let forwarded = ask_with(
        trusting.addr(),
        "Forwarded: for=\"[2001:db8::9]:1\";proto=https\r\n",
    );
    assert!(
        forwarded.starts_with("peer=[2001:db8::9]:0\n"),
        "{forwarded}"
    );
    // Not trusted by default, nor from a peer outside the list.
    for args in [&[][..], &["--forwarded-allow-ips", "10.0.0.0/8"][..]] {
        let server = Server::app("conninfo", args);
        let body = ask_with(server.addr(), headers);
        assert!(body.starts_with("peer=127.0.0.1:"), "{args:?}: {body}");
        assert!(body.ends_with("scheme=http\n"), "{args:?}: {body}");
    }
}
