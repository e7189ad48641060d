//! `--forwarded-allow-ips`: from a trusted peer (a proxy), the client's address and scheme
//! come from `Forwarded` (RFC 7239) or, without it, `X-Forwarded-For` / `X-Forwarded-Proto`.
//! From anyone else those headers are ignored, and they are never believed by default.
//!
//! The client is the rightmost address in the chain that is not itself a trusted proxy (each
//! proxy appends the address it was connected from; only the entries trusted proxies added
//! can be believed). Addresses carry no port there: the peer's port is 0. A chain with an
//! entry that is not an address (`unknown`, an obfuscated name, garbage) is not believed.

use std::net::{IpAddr, SocketAddr};

use super::{ConnInfo, Request, Scheme};
use crate::config::Cidrs;

/// Replace `conn`'s peer and scheme with what the request's forwarding headers say, if its
/// peer is trusted.
pub fn apply(request: &Request<'_>, trusted: &Cidrs, conn: &mut ConnInfo) {
    // A Unix peer is local: the socket's permissions say who may connect.
    if conn.peer.is_some_and(|p| !trusted.contains(p.ip())) {
        return;
    }
    let (client, proto) = match request.header("forwarded") {
        Some(value) => from_forwarded(value, trusted),
        None => (
            request
                .header("x-forwarded-for")
                .and_then(|v| rightmost_untrusted(v.split(|&b| b == b','), trusted)),
            request.header("x-forwarded-proto").and_then(last_token),
        ),
    };
    if let Some(ip) = client {
        conn.peer = Some(SocketAddr::new(ip, 0));
    }
    match proto.as_deref() {
        Some(p) if p.eq_ignore_ascii_case(b"https") => conn.scheme = Scheme::Https,
        Some(p) if p.eq_ignore_ascii_case(b"http") => conn.scheme = Scheme::Http,
        _ => {}
    }
}

/// `Forwarded: for=192.0.2.60;proto=https, for="[2001:db8::1]:4711"`: the client from the
/// `for=` parameters, the scheme from the last element's `proto=`.
fn from_forwarded(value: &[u8], trusted: &Cidrs) -> (Option<IpAddr>, Option<Vec<u8>>) {
    let elements: Vec<&[u8]> = value.split(|&b| b == b',').collect();
    let fors = elements.iter().map(|e| param(e, b"for").unwrap_or(b""));
    let client = rightmost_untrusted(fors, trusted);
    let proto = elements
        .last()
        .and_then(|e| param(e, b"proto"))
        .map(|p| p.to_vec());
    (client, proto)
}

/// The value of `name=` in one `Forwarded` element (quotes removed).
fn param<'v>(element: &'v [u8], name: &[u8]) -> Option<&'v [u8]> {
    element.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (k, v) = pair.split_at(eq);
        k.trim_ascii().eq_ignore_ascii_case(name).then(|| {
            let v = v[1..].trim_ascii();
            v.strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v)
        })
    })
}

/// Walk the chain from the right past trusted proxies; the first other address is the
/// client (all trusted: the leftmost). Any entry that is not an address: none.
fn rightmost_untrusted<'a>(
    entries: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted: &Cidrs,
) -> Option<IpAddr> {
    let mut last = None;
    for entry in entries.rev() {
        let ip = address(entry.trim_ascii())?;
        if !trusted.contains(ip) {
            return Some(ip);
        }
        last = Some(ip);
    }
    last
}

/// `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`.
fn address(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// The last comma-separated token of a header (`https` of `http, https`).
fn last_token(value: &[u8]) -> Option<Vec<u8>> {
    value
        .rsplit(|&b| b == b',')
        .next()
        .map(|t| t.trim_ascii().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Connection, Context, Response};

    /// What `apply` makes of `headers` from `peer` trusting `trusted`.
    fn seen(peer: &str, trusted: &str, headers: &str) -> ConnInfo {
        let trusted: Cidrs = trusted.parse().expect("cidrs");
        let peer: SocketAddr = peer.parse().expect("peer");
        let mut ctx = Context::default();
        let mut conn = Connection::new();
        let raw = format!("GET / HTTP/1.1\r\nHost: h\r\n{headers}\r\n");
        conn.receive(raw.as_bytes(), &ctx);
        let out = std::rc::Rc::new(std::cell::Cell::new(ConnInfo::default()));
        let sink = out.clone();
        let mut handler = move |req: &Request<'_>, _res: &mut Response<'_>| {
            let mut info = ConnInfo {
                peer: Some(peer),
                ..ConnInfo::default()
            };
            apply(req, &trusted, &mut info);
            sink.set(info);
        };
        conn.process(&mut handler, &mut ctx);
        out.take()
    }

    fn peer(info: &ConnInfo) -> String {
        info.peer.map(|p| p.to_string()).unwrap_or_default()
    }

    #[test]
    fn trusted_proxies_are_believed_and_others_are_not() {
        let h = "X-Forwarded-For: 203.0.113.9, 10.0.0.2\r\nX-Forwarded-Proto: https\r\n";
        let info = seen("10.0.0.1:5000", "10.0.0.0/8", h);
        assert_eq!(peer(&info), "203.0.113.9:0");
        assert_eq!(info.scheme, Scheme::Https);
        let info = seen("192.0.2.1:5000", "10.0.0.0/8", h);
        assert_eq!(
            peer(&info),
            "192.0.2.1:5000",
            "an untrusted peer's headers are ignored"
        );
        assert_eq!(info.scheme, Scheme::Http);
    }

    #[test]
    fn a_spoofed_left_entry_does_not_win() {
        // The client sent its own X-Forwarded-For; the trusted proxy appended the real one.
        let info = seen(
            "10.0.0.1:1",
            "10.0.0.0/8",
            "X-Forwarded-For: 6.6.6.6, 198.51.100.7\r\n",
        );
        assert_eq!(peer(&info), "198.51.100.7:0");
    }

    #[test]
    fn forwarded_is_preferred_and_parsed() {
        let info = seen(
            "127.0.0.1:1",
            "127.0.0.1",
            "Forwarded: for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\";proto=https\r\nX-Forwarded-For: 9.9.9.9\r\n",
        );
        assert_eq!(peer(&info), "[2001:db8:cafe::17]:0");
        assert_eq!(info.scheme, Scheme::Https);
    }

    #[test]
    fn garbage_is_not_believed() {
        for h in [
            "X-Forwarded-For: unknown\r\n",
            "X-Forwarded-For: 1.2.3.4, nonsense\r\n",
            "Forwarded: for=_hidden\r\n",
        ] {
            let info = seen("10.0.0.1:1", "10.0.0.0/8", h);
            assert_eq!(peer(&info), "10.0.0.1:1", "{h}");
        }
        let info = seen("10.0.0.1:1", "10.0.0.0/8", "X-Forwarded-Proto: gopher\r\n");
        assert_eq!(info.scheme, Scheme::Http);
    }
}
