//! Request heads: parsing a buffered head with httparse, checking its framing headers, and the
//! borrowed [`Request`] view that handlers receive.

use std::mem::MaybeUninit;

use super::{is_token_byte, ConnInfo, Error, Limits, Scheme, TlsInfo, NO_CONN};

/// Headers a request may carry; `Limits::max_header_count` may only lower this.
pub(crate) const MAX_HEADERS: usize = 256;

/// One request, borrowed from the connection's input buffer: nothing is copied or allocated.
#[derive(Debug)]
pub struct Request<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) version: u8,
    pub(crate) headers: &'a [httparse::Header<'a>],
    pub(crate) body: &'a [u8],
    /// The spool file of a body larger than `--body-buffer-size`.
    pub(crate) body_file: Option<&'a std::fs::File>,
    pub(crate) conn: &'a ConnInfo,
}

impl<'a> Request<'a> {
    /// The method, as sent (`GET`, `POST`, ...).
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The request target without its query: `/users/7` for `/users/7?x=1`. For an
    /// absolute-form target, its path alone: `/x` for `http://host/x?y` (and `/` for
    /// `http://host`); its authority is in `Host`, which must match it. `*` for `OPTIONS *`.
    /// As sent: never percent-decoded or normalised.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The query after `?`, if the target had one (possibly empty).
    pub fn query(&self) -> Option<&'a str> {
        self.query
    }

    /// The minor HTTP version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The first header with this name (compared case-insensitively), as raw bytes.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Every header in the order received, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        self.headers.iter().map(|h| (h.name, h.value))
    }

    /// The whole request body (chunked bodies arrive here decoded); empty when there is none.
    /// A body larger than `--body-buffer-size` was written to a temporary file as it arrived,
    /// and is mapped into memory here: its pages are read in only as they are touched (see
    /// [`Self::body_file`] to read it as a stream, or send it on without a copy).
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The temporary file holding the body, when it was larger than `--body-buffer-size`
    /// (`None` for a body in memory). It holds exactly the body, from offset 0; it has no name
    /// and is gone once its last descriptor is closed, so a handler may send it on
    /// (`Response::file(file.try_clone()?)`) or keep a clone past the request.
    pub fn body_file(&self) -> Option<&'a std::fs::File> {
        self.body_file
    }

    /// The client's address: the TCP peer (or the address a trusted proxy reported). `None`
    /// over a Unix socket.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.conn.peer
    }

    /// The server's address the request arrived on. `None` over a Unix socket.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.conn.local
    }

    /// `http` (or `https` over TLS).
    pub fn scheme(&self) -> Scheme {
        self.conn.scheme
    }

    /// What the TLS handshake settled (version, cipher, SNI, ALPN, the client's certificate):
    /// `None` over plain HTTP.
    pub fn tls(&self) -> Option<&'a TlsInfo> {
        self.conn.tls.as_deref()
    }
}

/// How the body of a request is delimited (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `Content-Length: n` (no framing header means a length of 0 for requests).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed head: the request (without its body yet) and what the connection needs to know.
#[derive(Debug)]
pub(crate) struct Head<'a> {
    pub request: Request<'a>,
    /// Bytes of the head including the blank line that ends it.
    pub len: usize,
    pub framing: Framing,
    /// Whether the client allows the connection to stay open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// The method is HEAD: the response carries no body.
    pub is_head: bool,
}

/// Storage for the header array, reused from one parse to the next without initialisation.
pub(crate) type HeaderSlots<'a> = [MaybeUninit<httparse::Header<'a>>; MAX_HEADERS];

/// Parse the head at the start of `buf`.
/// `Ok(None)`: the head is not complete yet and within limits (read more).
pub(crate) fn parse_head<'a>(
    buf: &'a [u8],
    slots: &'a mut HeaderSlots<'a>,
    limits: &Limits,
) -> Result<Option<Head<'a>>, Error> {
    let max_headers = limits.max_header_count.min(MAX_HEADERS);
    let mut req = httparse::Request::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut slots[..max_headers],
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            check_partial(buf, limits)?;
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Error::HeadersTooLarge),
        Err(httparse::Error::Version) => {
            return match version_error(buf) {
                Some(error) => Err(error),
                // `HTTP/2` with its line not ended yet: the full token decides (505 or 400).
                None => check_partial(buf, limits).map(|()| None),
            };
        }
        Err(_) => return Err(Error::BadRequest),
    };

    // httparse filled every field on Complete; the fallbacks are unreachable.
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("");
    let version = req.version.unwrap_or(1);
    let headers = req.headers;
    if !crlf_line_endings(buf, len, headers) {
        return Err(Error::BadRequest);
    }
    check_complete_lines(buf, len, headers, limits)?;
    // Origin-form (`/path?query`) is nearly every request: one pass over its bytes. The other
    // forms go through `parse_other_target`, off the hot path.
    let origin_form = target.as_bytes().first() == Some(&b'/') && method != "CONNECT";
    let (path, query, other) = if origin_form {
        let (path, query) = split_origin_form(target).ok_or(Error::BadRequest)?;
        (path, query, None)
    } else {
        let other = parse_other_target(method, target)?;
        (other.path, other.query, Some(other))
    };

    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut seen_te = false;
    let mut hosts = 0usize;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    for h in headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                // Duplicates are refused even when equal: the strict reading of RFC 9112 §6.3.
                return Err(Error::BadRequest);
            }
            content_length = Some(parse_content_length(h.value)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if seen_te || version == 0 {
                return Err(Error::BadRequest);
            }
            seen_te = true;
            chunked = parse_transfer_encoding(h.value)?;
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            if !valid_host(h.value) {
                return Err(Error::BadRequest);
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    conn_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    conn_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") && version == 1 {
            // An HTTP/1.0 client cannot expect 100 Continue: the expectation is ignored
            // (RFC 9110 §10.1.1).
            if h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(Error::ExpectationFailed);
            }
        }
    }
    if version == 1 && hosts != 1 || hosts > 1 {
        return Err(Error::BadRequest);
    }
    if let Some(other) = other {
        check_other_target(&other, headers)?;
    }
    let framing = match (chunked, content_length) {
        (true, Some(_)) => return Err(Error::BadRequest),
        (true, None) => Framing::Chunked,
        (false, n) => Framing::Length(n.unwrap_or(0)),
    };
    if let Framing::Length(n) = framing {
        if n > limits.max_body as u64 {
            return Err(Error::PayloadTooLarge);
        }
    }
    let keep_alive = !conn_close && (version == 1 || conn_keep_alive);
    Ok(Some(Head {
        request: Request {
            method,
            path,
            query,
            version,
            headers,
            body: &[],
            body_file: None,
            conn: &NO_CONN,
        },
        len,
        framing,
        keep_alive,
        expect_continue,
        is_head: method == "HEAD",
    }))
}

/// The request-target, split (RFC 9112 §3.2).
struct Target<'a> {
    /// What [`Request::path`] returns: the path of origin-form and absolute-form (`/` when the
    /// absolute-form's path is empty), `*` for asterisk-form, `host:port` for authority-form
    /// (which no handler sees: CONNECT is refused).
    path: &'a str,
    query: Option<&'a str>,
    /// The authority of an absolute-form target (to be compared with Host).
    authority: Option<&'a str>,
    /// A CONNECT request (authority-form).
    tunnel: bool,
}

/// Which bytes may appear in a request-target's path and query (the authority of the other
/// forms is checked by [`split_host_port`]).
///
/// Allowed: RFC 3986's characters (unreserved, sub-delimiters, `: @ / ? %`, and `[ ]`, which
/// it keeps for IPv6 hosts), and `{ } | ^` and backquote, which its grammar excludes but
/// browsers send unencoded (the WHATWG URL Standard leaves all of these as they are in a
/// query) and which change nothing about how a request is routed. Refused: every control
/// byte, space, DEL, every byte of 0x80 and above (a target is ASCII; RFC 9112 §3.2 has no
/// room for anything else), and five printable bytes: `"`, `<`, `>` (browsers always
/// percent-encode them), `#` (a fragment is never part of a target), and `\` (browsers turn
/// it into `/` in a path; where it arrives raw, some servers and proxies read it as `/` and
/// others do not: two parties could route the request differently).
static TARGET_BYTE: [u8; 256] = {
    let mut table = [0; 256];
    let mut b = b'!';
    while b <= b'~' {
        table[b as usize] = match b {
            b'"' | b'#' | b'<' | b'>' | b'\\' => 0,
            b'?' | b'%' => ALLOWED,
            _ => ALLOWED | PLAIN,
        };
        b += 1;
    }
    table
};
/// [`TARGET_BYTE`] bit: the byte may appear in a path or a query.
const ALLOWED: u8 = 2;
/// [`TARGET_BYTE`] bit: the byte may appear in a path as it is: not the `?` that ends the
/// path, nor the `%` that begins an escape.
const PLAIN: u8 = 1;

/// How many leading bytes of `bytes` have the `bit` of [`TARGET_BYTE`]: eight bytes at a
/// time while they all have it (the AND of their classes keeps it: no branch per byte), then
/// one by one.
#[inline(always)]
fn leading_with(bytes: &[u8], bit: u8) -> usize {
    let class = |b: u8| TARGET_BYTE[usize::from(b)];
    let mut i = 0;
    while let Some(word) = bytes.get(i..i + 8) {
        if word.iter().fold(bit, |acc, &b| acc & class(b)) == 0 {
            break;
        }
        i += 8;
    }
    while bytes.get(i).is_some_and(|&b| class(b) & bit != 0) {
        i += 1;
    }
    i
}

/// Origin-form (`/path?query`), or the path and query of absolute-form: every byte checked
/// against [`TARGET_BYTE`] and the first `?` found, in one pass. A `%` in the path must begin
/// an escape (two hex digits follow), as nginx also requires; in the query it need not (a
/// hand-written `?off=50%` is common, and nginx lets it through too).
#[inline(always)]
fn split_origin_form(target: &str) -> Option<(&str, Option<&str>)> {
    let bytes = target.as_bytes();
    let mut end = leading_with(bytes, PLAIN);
    while bytes.get(end) == Some(&b'%') {
        let escape = bytes.get(end + 1..end + 3)?;
        if !escape.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        end += 3;
        end += leading_with(&bytes[end..], PLAIN);
    }
    let (path, query) = match bytes.get(end) {
        None => (target, None),
        Some(b'?') => {
            let query = &bytes[end + 1..];
            if leading_with(query, ALLOWED) != query.len() {
                return None;
            }
            (&target[..end], Some(&target[end + 1..]))
        }
        Some(_) => return None,
    };
    Some((path, query))
}

/// The request-target forms other than origin-form, each only with its method (RFC 9112
/// §3.2): authority-form (`host:port`) for CONNECT and for nothing else; asterisk-form (`*`)
/// only for OPTIONS; absolute-form (`http://host/path?query`) for any method but CONNECT.
#[cold]
fn parse_other_target<'a>(method: &str, target: &'a str) -> Result<Target<'a>, Error> {
    if method == "CONNECT" {
        // RFC 9110 §9.3.6: a CONNECT with an empty or invalid port MUST be refused.
        let (host, port) = split_host_port(target).ok_or(Error::BadRequest)?;
        let port_ok = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && (1..=65535).contains(&port.parse::<u32>().unwrap_or(0));
        if host.is_empty() || !port_ok {
            return Err(Error::BadRequest);
        }
        return Ok(Target {
            path: target,
            query: None,
            authority: None,
            tunnel: true,
        });
    }
    if target == "*" {
        return if method == "OPTIONS" {
            Ok(Target {
                path: target,
                query: None,
                authority: None,
                tunnel: false,
            })
        } else {
            Err(Error::BadRequest)
        };
    }
    // Absolute-form: only the schemes this server answers for. Another scheme is a request
    // for a proxy, which this is not.
    let colon = memchr(b':', target.as_bytes()).ok_or(Error::BadRequest)?;
    let scheme = &target[..colon];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(Error::BadRequest);
    }
    let rest = target[colon + 1..]
        .strip_prefix("//")
        .ok_or(Error::BadRequest)?;
    let end = rest
        .bytes()
        .position(|b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let (authority, path_query) = rest.split_at(end);
    // RFC 9110 §4.2.1: an http(s) URI with an empty host is invalid and MUST be rejected;
    // §4.2.4: userinfo (`user@`) SHOULD be treated as an error.
    let (host, port) = split_host_port(authority).ok_or(Error::BadRequest)?;
    if host.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::BadRequest);
    }
    let mut split = match path_query.as_bytes().first() {
        None => Target {
            path: "/",
            query: None,
            authority: None,
            tunnel: false,
        },
        Some(_) => {
            let (path, query) = split_origin_form(path_query).ok_or(Error::BadRequest)?;
            Target {
                // `http://host?q`: the path is empty, and stands for `/`.
                path: if path.is_empty() { "/" } else { path },
                query,
                authority: None,
                tunnel: false,
            }
        }
    };
    split.authority = Some(authority);
    Ok(split)
}

/// What the other target forms ask of the headers, once they have been checked.
#[cold]
fn check_other_target(target: &Target<'_>, headers: &[httparse::Header<'_>]) -> Result<(), Error> {
    // Absolute-form: RFC 9112 §3.2.2 has the server use the target's authority, not Host, and
    // the client send both the same. Where they differ, two parties could route the request
    // differently (a front end by Host, the application by the target): refused, so the Host
    // an application reads is always the authority the request was sent to. (Host is single
    // by now; HTTP/1.0 may leave it out.)
    if let Some(authority) = target.authority {
        let host = headers.iter().find(|h| h.name.eq_ignore_ascii_case("host"));
        if host.is_some_and(|h| !h.value.eq_ignore_ascii_case(authority.as_bytes())) {
            return Err(Error::BadRequest);
        }
    }
    // A well-formed CONNECT asks for a tunnel, which a handler cannot give (it answers with a
    // framed response, and a 2xx to CONNECT must not be framed: RFC 9110 §9.3.6). This is not
    // a proxy: 501, as for any method it does not implement (§9.1).
    if target.tunnel {
        return Err(Error::NotImplemented);
    }
    Ok(())
}

/// `host[:port]` of an authority without userinfo: `None` when its bytes are not those of
/// RFC 3986's `IP-literal`, `IPv4address` or `reg-name` (unreserved, sub-delimiters and
/// percent-encoding), followed by an optional `:port`. The port is returned as it is (empty
/// without a colon); its digits are the caller's to check.
fn split_host_port(authority: &str) -> Option<(&str, &str)> {
    let bytes = authority.as_bytes();
    let host_end = if bytes.first() == Some(&b'[') {
        // An IPv6 (or IPvFuture) literal: hex digits, dots, colons and the IPvFuture bytes.
        let close = memchr(b']', bytes)?;
        let inside = &bytes[1..close];
        if inside.is_empty() || !inside.iter().all(|&b| is_reg_name_byte(b) || b == b':') {
            return None;
        }
        close + 1
    } else {
        let end = memchr(b':', bytes).unwrap_or(bytes.len());
        if !bytes[..end].iter().all(|&b| is_reg_name_byte(b)) {
            return None;
        }
        end
    };
    let (host, rest) = authority.split_at(host_end);
    match rest.strip_prefix(':') {
        Some(port) => Some((host, port)),
        None if rest.is_empty() => Some((host, "")),
        None => None,
    }
}

/// RFC 3986 `reg-name` bytes: unreserved, sub-delimiters, and `%` of percent-encoding.
#[inline]
fn is_reg_name_byte(b: u8) -> bool {
    REG_NAME[usize::from(b)]
}

static REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = super::is_unreserved_or_sub_delim(c) || c == b'%';
        b += 1;
    }
    table
};

/// A `Host` value a server may accept (RFC 9112 §3.2: any other is answered 400): `uri-host
/// [":" port]` with a host that is not empty (an http URI's host never is, RFC 9110 §4.2.1)
/// and a port of digits, and, as nginx also refuses, no `..` (hosts end up in file paths).
/// A name or IPv4 address is checked in one pass over a class table (this runs for every
/// request); an IP literal (`[...]`) takes the general path.
#[inline]
fn valid_host(value: &[u8]) -> bool {
    if value.first() == Some(&b'[') {
        return std::str::from_utf8(value).is_ok_and(|v| {
            split_host_port(v).is_some_and(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        });
    }
    let mut after_dot = false;
    for (i, &b) in value.iter().enumerate() {
        match HOST_BYTE[usize::from(b)] {
            HOST_NAME => after_dot = false,
            HOST_DOT if !after_dot => after_dot = true,
            HOST_COLON if i > 0 => return value[i + 1..].iter().all(u8::is_ascii_digit),
            _ => return false,
        }
    }
    !value.is_empty()
}

/// [`HOST_BYTE`] classes: a reg-name byte other than `.`, a `.`, the `:` before the port.
const HOST_NAME: u8 = 1;
const HOST_DOT: u8 = 2;
const HOST_COLON: u8 = 3;

static HOST_BYTE: [u8; 256] = {
    let mut table = [0; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            b'.' => HOST_DOT,
            b':' => HOST_COLON,
            _ if REG_NAME[b] => HOST_NAME,
            _ => 0,
        };
        b += 1;
    }
    table
};

/// Every line of the head ends in CRLF. httparse also accepts a bare LF; we refuse it (RFC
/// 9112 §2.2 allows either), because a proxy in front that splits lines differently is how
/// requests get smuggled. httparse's slices say where each line starts, so only the two bytes
/// before each header name and the final blank line are looked at, not the whole head.
fn crlf_line_endings(buf: &[u8], len: usize, headers: &[httparse::Header<'_>]) -> bool {
    let crlf_before = |offset: usize| offset >= 2 && &buf[offset - 2..offset] == b"\r\n";
    let base = buf.as_ptr() as usize;
    let leading = buf.len() - skip_leading_newlines(buf).len();
    leading % 2 == 0
        && buf[..leading].chunks(2).all(|pair| pair == b"\r\n")
        && headers
            .iter()
            .all(|h| crlf_before(h.name.as_ptr() as usize - base))
        && len >= 4
        && &buf[len - 4..len] == b"\r\n\r\n"
}

/// The limits, in the order both checks below apply them: request line (414), then the head's
/// size (431), then each header line (431). A line is counted without its CRLF, so a head is
/// measured the same whether it arrived whole or in pieces: a valid request is never refused
/// because of where a read happened to cut it.
///
/// A complete head (its CRLFs already checked): httparse's slices say where each line starts,
/// so the lengths come from those offsets, without scanning the head again.
fn check_complete_lines(
    buf: &[u8],
    len: usize,
    headers: &[httparse::Header<'_>],
    limits: &Limits,
) -> Result<(), Error> {
    let lead = buf.len() - skip_leading_newlines(buf).len();
    let base = buf.as_ptr() as usize;
    let starts = || headers.iter().map(|h| h.name.as_ptr() as usize - base);
    // Where the blank line ending the head starts: the end (+ CRLF) of the last line.
    let blank = len - 2;
    let request_line_end = starts().next().unwrap_or(blank) - 2;
    if request_line_end - lead > limits.max_request_line {
        return Err(Error::UriTooLong);
    }
    if len > limits.max_head {
        return Err(Error::HeadersTooLarge);
    }
    let next_starts = starts().skip(1).chain(std::iter::once(blank));
    if starts()
        .zip(next_starts)
        .any(|(start, next)| next - 2 - start > limits.max_header_line)
    {
        return Err(Error::HeadersTooLarge);
    }
    Ok(())
}

/// An incomplete head is refused as soon as it can no longer fit the limits.
fn check_partial(buf: &[u8], limits: &Limits) -> Result<(), Error> {
    let line_len = |line: &[u8]| line.strip_suffix(b"\r").unwrap_or(line).len();
    let mut lines = skip_leading_newlines(buf).split(|&b| b == b'\n');
    if lines
        .next()
        .is_some_and(|first| line_len(first) > limits.max_request_line)
    {
        return Err(Error::UriTooLong);
    }
    if buf.len() > limits.max_head {
        return Err(Error::HeadersTooLarge);
    }
    if lines.any(|line| line_len(line) > limits.max_header_line) {
        return Err(Error::HeadersTooLarge);
    }
    Ok(())
}

fn skip_leading_newlines(buf: &[u8]) -> &[u8] {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    &buf[start..]
}

/// httparse reports any bad version token the same way: a well-formed `HTTP/x.y` that is not
/// 1.x gets 505, anything else is plain garbage (400). httparse fails on `HTTP/2` before the
/// line has ended; while the token could still become `HTTP/x.y`, `None` asks to read on, so
/// the answer does not depend on where a read cut the line.
fn version_error(buf: &[u8]) -> Option<Error> {
    let buf = skip_leading_newlines(buf);
    let (line, ended) = match memchr(b'\n', buf) {
        Some(end) => (&buf[..end], true),
        None => (buf, false),
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // method SP target SP version: a fourth field (even an empty one, after a trailing space)
    // is malformed whatever follows.
    let mut fields = line.split(|&b| b == b' ');
    let token = fields.nth(2).unwrap_or(b"");
    if fields.next().is_some() {
        return Some(Error::BadRequest);
    }
    let well_formed = |t: &[u8]| {
        matches!(t, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit())
    };
    if well_formed(token) && token[5] != b'1' && ended {
        return Some(Error::VersionNotSupported);
    }
    // Could the token, read on, still become a well-formed version?
    let mut template = *b"HTTP/0.0";
    let prefix = token.len() <= template.len()
        && token.iter().enumerate().all(|(i, &b)| {
            if i == 5 || i == 7 {
                template[i] = b;
                b.is_ascii_digit()
            } else {
                template[i] == b
            }
        });
    if !ended && prefix {
        None
    } else {
        Some(Error::BadRequest)
    }
}

/// `Content-Length` is 1*DIGIT and nothing else: no sign, spaces inside, hex or lists.
fn parse_content_length(value: &[u8]) -> Result<u64, Error> {
    if value.is_empty() {
        return Err(Error::BadRequest);
    }
    value.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return Err(Error::BadRequest);
        }
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(Error::BadRequest)
    })
}

/// Only `chunked` is implemented. A final coding other than chunked leaves the length unknown:
/// 400 (RFC 9112 §6.3). Another coding before chunked (`gzip, chunked`) is well framed but not
/// something we decode: 501 (§6.1). Returns whether the body is chunked (true on success).
fn parse_transfer_encoding(value: &[u8]) -> Result<bool, Error> {
    let codings = || value.split(|&b| b == b',').map(<[u8]>::trim_ascii);
    if !codings().all(is_token) {
        return Err(Error::BadRequest);
    }
    let chunked = |c: &[u8]| c.eq_ignore_ascii_case(b"chunked");
    let count = codings().count();
    match codings().filter(|c| chunked(c)).count() {
        1 if codings().next_back().is_some_and(chunked) => {
            if count == 1 {
                Ok(true)
            } else {
                Err(Error::NotImplemented)
            }
        }
        _ => Err(Error::BadRequest),
    }
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().copied().all(is_token_byte)
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Option<(Framing, bool, usize)>, Error> {
        let mut slots: HeaderSlots<'_> = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        parse_head(bytes, &mut slots, &Limits::default())
            .map(|h| h.map(|h| (h.framing, h.keep_alive, h.len)))
    }

    #[test]
    fn simple_get() {
        let req = b"GET /a/b?x=1&y HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n";
        let mut slots: HeaderSlots<'_> = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let head = parse_head(req, &mut slots, &Limits::default())
            .expect("valid")
            .expect("complete");
        assert_eq!(head.request.method(), "GET");
        assert_eq!(head.request.path(), "/a/b");
        assert_eq!(head.request.query(), Some("x=1&y"));
        assert_eq!(head.request.version(), 1);
        assert_eq!(head.request.header("x-a"), Some(&b"1"[..]));
        assert_eq!(head.len, req.len());
        assert_eq!(head.framing, Framing::Length(0));
        assert!(head.keep_alive);
        assert!(!head.is_head);
    }

    /// `(path, query)` of `METHOD target HTTP/1.1` with `Host: h`.
    fn target(method: &str, target: &str) -> Result<(String, Option<String>), Error> {
        let req = format!("{method} {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut slots: HeaderSlots<'_> = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        parse_head(req.as_bytes(), &mut slots, &Limits::default()).map(|h| {
            let h = h.expect("complete");
            (
                h.request.path().to_string(),
                h.request.query().map(str::to_string),
            )
        })
    }

    #[test]
    fn request_target_forms() {
        let ok = |p: &str, q: Option<&str>| Ok((p.to_string(), q.map(str::to_string)));
        assert_eq!(target("GET", "/a/b?x=1?y=/z"), ok("/a/b", Some("x=1?y=/z")));
        assert_eq!(target("GET", "/?"), ok("/", Some("")));
        assert_eq!(target("OPTIONS", "*"), ok("*", None));
        assert_eq!(target("OPTIONS", "/x"), ok("/x", None));
        assert_eq!(target("GET", "http://h/x?y"), ok("/x", Some("y")));
        assert_eq!(target("GET", "HTTPS://H/x"), ok("/x", None));
        assert_eq!(target("GET", "http://h"), ok("/", None));
        assert_eq!(target("GET", "http://h?y"), ok("/", Some("y")));
        assert_eq!(target("POST", "http://h/"), ok("/", None));
        // A well-formed CONNECT: not implemented (this is not a proxy).
        for good in ["h:443", "[::1]:8080", "1.2.3.4:1", "h:65535"] {
            assert_eq!(
                target("CONNECT", good),
                Err(Error::NotImplemented),
                "{good}"
            );
        }
        // Tolerated outside RFC 3986's grammar: what browsers send unencoded.
        assert_eq!(
            target("GET", "/a[]|{}^`?q[]={x}|^`"),
            ok("/a[]|{}^`", Some("q[]={x}|^`"))
        );
        for (method, bad) in [
            ("GET", "*"),
            ("POST", "*"),
            ("OPTIONS", "*x"),
            ("OPTIONS", "**"),
            ("CONNECT", "/"),
            ("CONNECT", "*"),
            ("CONNECT", "http://h:443/"),
            ("CONNECT", "h"),
            ("CONNECT", "h:"),
            ("CONNECT", ":443"),
            ("CONNECT", "h:0"),
            ("CONNECT", "h:65536"),
            ("CONNECT", "h:44a"),
            ("CONNECT", "u@h:443"),
            ("CONNECT", "h:443/"),
            ("GET", "h:80"),
            ("GET", "a/b"),
            ("GET", "ftp://h/"),
            ("GET", "http:/h/"),
            ("GET", "http:h/"),
            ("GET", "http:///x"),
            ("GET", "http://:80/x"),
            ("GET", "http://u@h/"),
            ("GET", "http://h:8a/"),
            ("GET", "http://h\"/"),
            ("GET", "http://h/\""),
            ("GET", "/caf\u{e9}"),
            ("GET", "/a\"b"),
            ("GET", "/a<b"),
            ("GET", "/a>b"),
            ("GET", "/a#b"),
            ("GET", "/a\\b"),
            ("GET", "/?q=<x>"),
            ("GET", "/?q=\u{e9}"),
            ("GET", "/?q#f"),
        ] {
            assert_eq!(
                target(method, bad),
                Err(Error::BadRequest),
                "{method} {bad}"
            );
        }
    }

    #[test]
    fn absolute_form_authority_must_match_host() {
        let f = |r: &[u8]| parse(r).map(|h| h.is_some());
        assert_eq!(
            f(b"GET http://h:80/ HTTP/1.1\r\nHost: H:80\r\n\r\n"),
            Ok(true)
        );
        for bad in [
            &b"GET http://h/ HTTP/1.1\r\nHost: evil\r\n\r\n"[..],
            b"GET http://h:80/ HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET http://h/ HTTP/1.1\r\n\r\n",
            b"GET http://h/ HTTP/1.0\r\nHost: evil\r\n\r\n",
        ] {
            assert_eq!(
                f(bad),
                Err(Error::BadRequest),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // HTTP/1.0 needs no Host: the target's authority stands alone.
        assert_eq!(f(b"GET http://h/ HTTP/1.0\r\n\r\n"), Ok(true));
    }

    #[test]
    fn every_target_byte_class() {
        for (prefix, in_query) in [(&b"/a"[..], false), (&b"/?a"[..], true)] {
            for b in 0..=255u8 {
                check_target_byte(prefix, b, in_query);
            }
        }
    }

    /// `prefix` then `b` as the last byte of a target: allowed or refused as the grammar says
    /// (a `%` that ends the path begins no escape; in the query it may stand alone).
    fn check_target_byte(prefix: &[u8], b: u8, in_query: bool) {
        let mut t = prefix.to_vec();
        t.push(b);
        let req = [b"GET ", &t[..], b" HTTP/1.1\r\nHost: h\r\n\r\n"].concat();
        let allowed =
            (b'!'..=b'~').contains(&b) && !b"\"#<>\\".contains(&b) && (in_query || b != b'%');
        let mut slots: HeaderSlots<'_> = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let got = parse_head(&req, &mut slots, &Limits::default()).map(|h| h.is_some());
        if allowed {
            assert_eq!(got, Ok(true), "byte {b:#04x}");
        } else {
            // A space ends the target early (then the version is wrong); CR and LF end
            // the line: all refused one way or another.
            assert!(got.is_err(), "byte {b:#04x}: {got:?}");
        }
    }

    #[test]
    fn partial_head_asks_for_more() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: h\r\n"), Ok(None));
        assert_eq!(parse(b"GE"), Ok(None));
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |r: &[u8]| parse(r).expect("valid").expect("complete").1;
        assert!(ka(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n"
        ));
    }

    #[test]
    fn framing() {
        let f = |r: &[u8]| parse(r).map(|h| h.map(|h| h.0));
        assert_eq!(
            f(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n"),
            Ok(Some(Framing::Length(12)))
        );
        assert_eq!(
            f(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(Some(Framing::Chunked))
        );
        for bad in [
            &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,chunked\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(f(bad), Err(Error::BadRequest), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            f(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Err(Error::BadRequest)
        );
        assert_eq!(
            f(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Err(Error::NotImplemented)
        );
        assert_eq!(
            f(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2000000\r\n\r\n"),
            Err(Error::PayloadTooLarge)
        );
    }

    #[test]
    fn host_and_version() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Err(Error::BadRequest));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(Error::BadRequest)
        );
        assert_eq!(
            parse(b"GET / HTTP/2.0\r\n\r\n"),
            Err(Error::VersionNotSupported)
        );
        assert_eq!(
            parse(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Err(Error::VersionNotSupported)
        );
        assert_eq!(parse(b"GET / FOO\r\n\r\n"), Err(Error::BadRequest));
        assert_eq!(parse(b"GARBAGE\r\n\r\n"), Err(Error::BadRequest));
    }

    #[test]
    fn expect_is_ignored_in_http10() {
        let mut slots: HeaderSlots<'_> = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let req = b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
        let head = parse_head(req, &mut slots, &Limits::default())
            .expect("valid")
            .expect("complete");
        assert!(!head.expect_continue);
        assert!(parse(b"GET / HTTP/1.0\r\nExpect: something\r\n\r\n")
            .expect("valid")
            .is_some());
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: h\r\nExpect: something\r\n\r\n"),
            Err(Error::ExpectationFailed)
        );
    }

    #[test]
    fn line_endings_must_be_crlf() {
        assert!(parse(b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
            .expect("valid")
            .is_some());
        for bad in [
            &b"GET / HTTP/1.1\nHost: h\n\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\n\r\n",
            b"GET / HTTP/1.1\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n\n",
            b"GET / HTTP/1.0\n\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\nB: 2\r\n\r\n",
            b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert_eq!(
                parse(bad),
                Err(Error::BadRequest),
                "{}",
                String::from_utf8_lossy(bad).escape_debug()
            );
        }
    }

    #[test]
    fn limits() {
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(9000));
        assert_eq!(parse(long_line.as_bytes()), Err(Error::UriTooLong));
        let long_partial = format!("GET /{}", "a".repeat(9000));
        assert_eq!(parse(long_partial.as_bytes()), Err(Error::UriTooLong));
        let big_header = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            "a".repeat(9000)
        );
        assert_eq!(parse(big_header.as_bytes()), Err(Error::HeadersTooLarge));
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n");
        assert_eq!(parse(many.as_bytes()), Err(Error::HeadersTooLarge));
    }

    /// Limits count a line without its CRLF, whether the head is complete or still arriving:
    /// a head exactly at the limits is accepted under every split.
    #[test]
    fn limits_do_not_depend_on_where_reads_cut() {
        let limits = Limits {
            max_request_line: 24,
            max_header_line: 10,
            ..Limits::default()
        };
        // Request line of exactly 24 bytes, header lines of exactly 10 ("Host: h" is 7).
        let head = b"GET /aaaaaaaaaa HTTP/1.1\r\nHost: hhhh\r\nX:    vvvv\r\n\r\n";
        assert_eq!(b"GET /aaaaaaaaaa HTTP/1.1".len(), 24);
        for cut in 1..head.len() {
            let mut slots: HeaderSlots<'_> = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            let partial = parse_head(&head[..cut], &mut slots, &limits).map(|h| h.is_some());
            assert_eq!(partial, Ok(false), "cut at {cut}");
        }
        let mut slots: HeaderSlots<'_> = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        assert!(parse_head(head, &mut slots, &limits)
            .expect("valid")
            .is_some());
        // One byte more on a header line is refused, whole or cut just after it.
        let over = b"GET / HTTP/1.1\r\nHost: hhhhh\r\n\r\n";
        for cut in [over.len() - 2, over.len()] {
            let mut slots: HeaderSlots<'_> = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            assert_eq!(
                parse_head(&over[..cut], &mut slots, &limits).map(|h| h.is_some()),
                Err(Error::HeadersTooLarge),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn version_errors_wait_for_the_end_of_the_line() {
        for cut in [
            "GET / H",
            "GET / HTTP/2",
            "GET / HTTP/2.",
            "GET / HTTP/2.0",
            "GET / HTTP/2.0\r",
        ] {
            assert_eq!(parse(cut.as_bytes()), Ok(None), "{cut:?}");
        }
        assert_eq!(
            parse(b"GET / HTTP/2.0\r\n"),
            Err(Error::VersionNotSupported)
        );
        assert_eq!(parse(b"GET / HTTP/2.0x"), Err(Error::BadRequest));
        assert_eq!(parse(b"GET / HTTP/x"), Err(Error::BadRequest));
        assert_eq!(parse(b"GET / HTP/1.0 "), Err(Error::BadRequest));
        assert_eq!(parse(b"0 0 0 "), Err(Error::BadRequest));
    }
}
