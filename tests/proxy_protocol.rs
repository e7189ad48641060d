//! `--proxy-protocol` and `--proxy-allow-from`: the PROXY header (v1 or v2) before HTTP sets
//! the request's peer (seen through the `conninfo` app and the access log), also when it
//! arrives a byte at a time; a v2 LOCAL header keeps the real peer; a missing, malformed,
//! stalled or untrusted header closes the connection without an answer.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Send `parts` (pausing between them) on a fresh connection and read until it closes.
fn exchange(addr: std::net::SocketAddr, parts: &[&[u8]], pause: Duration) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.set_nodelay(true).expect("nodelay");
    for p in parts {
        if s.write_all(p).is_err() {
            break;
        }
        thread::sleep(pause);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

fn v2_ipv6() -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    h.push(0x21); // AF_INET6, STREAM
    h.extend_from_slice(&36u16.to_be_bytes());
    let src: std::net::Ipv6Addr = "2001:db8::5".parse().expect("ip");
    let dst: std::net::Ipv6Addr = "2001:db8::1".parse().expect("ip");
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(&443u16.to_be_bytes());
    h.extend_from_slice(&80u16.to_be_bytes());
    h
}

#[test]
fn v1_header_sets_the_peer_even_a_byte_at_a_time() {
    let server = Server::app("conninfo", &["--proxy-protocol", "v1"]);
    let header: &[u8] = b"PROXY TCP4 192.0.2.9 10.0.0.1 5555 80\r\n";
    let whole = exchange(server.addr(), &[header, GET], Duration::ZERO);
    assert!(whole.contains("\r\n\r\npeer=192.0.2.9:5555\n"), "{whole}");
    let bytes: Vec<&[u8]> = header.chunks(1).chain([GET]).collect();
    let split = exchange(server.addr(), &bytes, Duration::from_millis(2));
    assert!(split.contains("peer=192.0.2.9:5555\n"), "{split}");
}

#[test]
fn v2_header_and_local_command() {
    let server = Server::app("conninfo", &["--proxy-protocol", "auto"]);
    let header = v2_ipv6();
    let answer = exchange(server.addr(), &[&header, GET], Duration::ZERO);
    assert!(answer.contains("peer=[2001:db8::5]:443\n"), "{answer}");
    // LOCAL (a health check from the proxy itself): the real peer.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    let mut s = TcpStream::connect(server.addr()).expect("connect");
    let me = s.local_addr().expect("addr");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.write_all(&local).expect("send");
    s.write_all(GET).expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.contains(&format!("peer={me}\n")), "{out}");
}

#[test]
fn a_missing_malformed_or_untrusted_header_closes_without_an_answer() {
    let server = Server::app("conninfo", &["--proxy-protocol", "v1"]);
    assert_eq!(
        exchange(server.addr(), &[GET], Duration::ZERO),
        "",
        "missing"
    );
    assert_eq!(
        exchange(
            server.addr(),
            &[b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", GET],
            Duration::ZERO
        ),
        "",
        "malformed"
    );
    assert_eq!(
        exchange(server.addr(), &[&v2_ipv6(), GET], Duration::ZERO),
        "",
        "v2 on a v1 port"
    );
    let picky = Server::app(
        "conninfo",
        &["--proxy-protocol", "v1", "--proxy-allow-from", "10.0.0.0/8"],
    );
    assert_eq!(
        exchange(
            picky.addr(),
            &[b"PROXY TCP4 192.0.2.9 10.0.0.1 5555 80\r\n", GET],
            Duration::ZERO
        ),
        "",
        "127.0.0.1 is not allowed to send one"
    );
}

#[test]
fn a_stalled_header_is_cut_at_the_header_deadline() {
    let server = Server::app(
        "conninfo",
        &["--proxy-protocol", "v1", "--header-timeout", "1"],
    );
    let mut s = TcpStream::connect(server.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"PROXY TCP4 192.0").expect("send");
    let start = Instant::now();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "closed by the deadline ({:?})",
        start.elapsed()
    );
}

#[test]
fn the_access_log_shows_the_proxied_client() {
    let dir = TempDir::new("proxy-log");
    let log = dir.join("access.log");
    let log_arg = log.to_string_lossy().into_owned();
    let server = Server::app(
        "hello",
        &["--proxy-protocol", "v1", "--access-logfile", &log_arg],
    );
    let answer = exchange(
        server.addr(),
        &[b"PROXY TCP4 198.51.100.4 10.0.0.1 4000 80\r\n", GET],
        Duration::ZERO,
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .starts_with("198.51.100.4 - - [")),
        "{:?}",
        std::fs::read_to_string(&log)
    );
}
