//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a trusted proxy sends before
//! anything else on a connection, saying whom the connection is really from. Sans-IO like the
//! rest of `http`: [`parse`] looks at the bytes received so far and says whether they hold a
//! complete header, could still become one, or cannot.
//!
//! Spec: <https://www.haproxy.org/download/3.0/doc/proxy-protocol.txt>. What it leaves open, and
//! where this parser is stricter, is decided as follows.
//!
//! # Version 1 (text)
//!
//! - `PROXY TCP4 <src> <dst> <sport> <dport>\r\n` (or `TCP6`), at most [`MAX_V1_LEN`] = 107 bytes
//!   with the CRLF (the spec's limit). Fields are separated by exactly one space, and the line
//!   ends in CRLF: a bare CR or LF is invalid.
//! - Both addresses are literals of the protocol's family: a dotted quad for `TCP4`, an IPv6
//!   literal for `TCP6` (groups of 1–4 hex digits, one `::`, an IPv4 tail as in `::ffff:1.2.3.4`;
//!   no zone, no brackets). An IPv4-mapped address stays an IPv6 one.
//! - Leading zeros are refused in IPv4 octets (`01.2.3.4`, which `inet_aton` reads as octal) and
//!   in ports (`080`), so that every reader of a header agrees on what it says; a lone `0` is
//!   fine. Ports are decimal, 0–65535, without a sign. Zeros leading an IPv6 group (`0db8`) are
//!   ordinary hex and accepted.
//! - `PROXY UNKNOWN`, alone or followed by a space and any bytes but CR and LF, up to the CRLF:
//!   the rest is ignored (as the spec says) and there are no addresses: use the real peer.
//!
//! # Version 2 (binary)
//!
//! - The 12-byte signature, version 2, command LOCAL or PROXY, one of the spec's seven
//!   family/protocol bytes (any other is invalid, even with LOCAL), a big-endian length.
//! - The whole header is capped at [`MAX_V2_LEN`] = 16 + 536 bytes: room for the largest address
//!   block (216 bytes, AF_UNIX) and 320 bytes of TLVs; 536 is IPv4's default MSS, so a sender's
//!   first segment can always carry a header this size. A longer one is invalid as soon as its
//!   length field arrives.
//! - LOCAL (a proxy's own health check), and PROXY with AF_UNSPEC: no addresses (use the real
//!   peer); the address block and TLVs are discarded unread, as the spec says.
//! - PROXY over TCP (AF_INET or AF_INET6 with STREAM): the address block must be at least its
//!   family's 12 or 36 bytes. The TLVs after it are skipped, but must fill the rest exactly (each
//!   a type byte, a 2-byte length, that many bytes); their content (CRC32C included) is unchecked.
//! - PROXY with DGRAM (UDP, or a Unix datagram socket): invalid. This is a TCP server; a header
//!   describing a datagram flow comes from a misconfigured sender.
//! - PROXY from a Unix stream socket: invalid. Its client has no [`SocketAddr`], and using the
//!   real peer instead would attribute every request to the proxy.
//!
//! # Incremental use
//!
//! No state is kept: call [`parse`] on everything received so far after each read. It answers
//! [`Parsed::Incomplete`] only while the bytes could still begin a valid header (and are shorter
//! than the cap), and [`Parsed::Invalid`] as soon as they cannot, so a plain `GET / HTTP/1.1`
//! sent to a PROXY-only listener is refused on its first byte. Once some bytes are `Invalid`,
//! more bytes never make them valid, and a `Done` stays the same `Done` whatever follows it.
//! The one imprecision: a partial IPv6 literal is checked for its syntax but not for every way
//! it could fail to complete, so such a field may be refused only when it ends.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest v1 header, CRLF included (the spec's limit).
pub const MAX_V1_LEN: usize = 107;
/// The longest v2 header accepted: 16 fixed bytes and 536 of addresses and TLVs.
pub const MAX_V2_LEN: usize = V2_FIXED_LEN + 536;
/// The most bytes [`parse`] needs to decide, whichever the version.
pub const MAX_LEN: usize = MAX_V2_LEN;

/// The v2 signature: it cannot begin a v1 header, nor an HTTP request.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The signature, the version/command byte, the family/protocol byte and the 2-byte length.
const V2_FIXED_LEN: usize = 16;
/// The longest IPv6 literal: six 4-digit groups and a 15-character IPv4 tail.
const MAX_IPV6_TEXT: usize = 45;

/// The versions a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
    /// Either, told apart by the first byte (`P` or CR).
    Auto,
}

/// What the bytes received so far hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The start of a header: read more (never more than [`MAX_LEN`] bytes in all).
    Incomplete,
    /// A complete header; the bytes after its `len` belong to HTTP.
    Done {
        len: usize,
        /// The client, as the proxy saw it. `None`: use the connection's real peer (v1
        /// `UNKNOWN`, v2 LOCAL or AF_UNSPEC).
        source: Option<SocketAddr>,
        /// The address the client connected to, at the proxy; `None` whenever `source` is.
        destination: Option<SocketAddr>,
    },
    /// Not a valid header (the reason is for the log): close the connection.
    Invalid(&'static str),
}

/// Parse the PROXY header at the start of `buf`.
#[must_use]
pub fn parse(buf: &[u8], accept: Version) -> Parsed {
    let parsed = match (accept, buf.first()) {
        (_, None) => Err(Stop::Incomplete),
        (Version::V1, _) | (Version::Auto, Some(b'P')) => parse_v1(buf),
        (Version::V2, _) | (Version::Auto, Some(b'\r')) => parse_v2(buf),
        (Version::Auto, Some(_)) => Err(Stop::Invalid("not a PROXY header")),
    };
    match parsed {
        Ok(done) => done,
        Err(Stop::Incomplete) => Parsed::Incomplete,
        Err(Stop::Invalid(why)) => Parsed::Invalid(why),
    }
}

/// Why parsing stopped short of a header.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Incomplete,
    Invalid(&'static str),
}

type Step<T> = Result<T, Stop>;

/// `buf` after `lit`, or Incomplete while `buf` is a strict prefix of it.
fn literal<'a>(buf: &'a [u8], lit: &[u8], why: &'static str) -> Step<&'a [u8]> {
    if let Some(rest) = buf.strip_prefix(lit) {
        Ok(rest)
    } else if lit.starts_with(buf) {
        Err(Stop::Incomplete)
    } else {
        Err(Stop::Invalid(why))
    }
}

// ---------------------------------------------------------------------------------------------
// Version 1

/// The address family of a v1 `TCP4` or `TCP6` header.
#[derive(Debug, Clone, Copy)]
enum Family {
    V4,
    V6,
}

impl Family {
    /// Whether `text` can begin an address of this family.
    fn prefix_ok(self, text: &[u8]) -> bool {
        match self {
            Family::V4 => ipv4_prefix(text),
            Family::V6 => ipv6_prefix(text),
        }
    }

    /// The complete address `text`, if it is one of this family.
    fn addr(self, text: &[u8]) -> Option<IpAddr> {
        // The prefix check first: it holds std's parser to the same (strict) syntax.
        if !self.prefix_ok(text) {
            return None;
        }
        let text = std::str::from_utf8(text).ok()?;
        match self {
            Family::V4 => text.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
            Family::V6 => text.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        }
    }
}

/// The v1 protocols, each with what follows it.
const V1_PROTOCOLS: [(&[u8], Option<Family>); 3] = [
    (b"TCP4 ", Some(Family::V4)),
    (b"TCP6 ", Some(Family::V6)),
    (b"UNKNOWN", None),
];

const BAD_SOURCE: &str = "PROXY v1: bad source address";
const BAD_DESTINATION: &str = "PROXY v1: bad destination address";
const BAD_SOURCE_PORT: &str = "PROXY v1: bad source port";
const BAD_DESTINATION_PORT: &str = "PROXY v1: bad destination port";

fn parse_v1(buf: &[u8]) -> Step<Parsed> {
    let line = &buf[..buf.len().min(MAX_V1_LEN)];
    match v1_line(line) {
        Err(Stop::Incomplete) if buf.len() >= MAX_V1_LEN => {
            Err(Stop::Invalid("PROXY v1 header longer than 107 bytes"))
        }
        parsed => parsed,
    }
}

/// Parse a v1 header within `line`, the input's first 107 bytes at most.
fn v1_line(line: &[u8]) -> Step<Parsed> {
    let rest = literal(line, b"PROXY ", "not a PROXY v1 header")?;
    let (family, rest) = v1_protocol(rest)?;
    let Some(family) = family else {
        let after = v1_unknown(rest)?;
        return Ok(v1_done(line, after, None));
    };
    let addr_ok = |t: &[u8]| family.prefix_ok(t);
    let addr = |t: &[u8]| family.addr(t);
    let (src, rest) = v1_field(rest, b' ', addr_ok, addr, BAD_SOURCE)?;
    let (dst, rest) = v1_field(rest, b' ', addr_ok, addr, BAD_DESTINATION)?;
    let (sport, rest) = v1_field(rest, b' ', port_prefix, port, BAD_SOURCE_PORT)?;
    let (dport, rest) = v1_field(rest, b'\r', port_prefix, port, BAD_DESTINATION_PORT)?;
    let after = crlf(rest)?;
    let addrs = (SocketAddr::new(src, sport), SocketAddr::new(dst, dport));
    Ok(v1_done(line, after, Some(addrs)))
}

fn v1_done(line: &[u8], after: &[u8], addrs: Option<(SocketAddr, SocketAddr)>) -> Parsed {
    Parsed::Done {
        len: line.len() - after.len(),
        source: addrs.map(|a| a.0),
        destination: addrs.map(|a| a.1),
    }
}

/// The protocol after `PROXY ` (its address family; `None` for `UNKNOWN`), and what follows it.
fn v1_protocol(rest: &[u8]) -> Step<(Option<Family>, &[u8])> {
    for (name, family) in V1_PROTOCOLS {
        if let Some(after) = rest.strip_prefix(name) {
            return Ok((family, after));
        }
    }
    if V1_PROTOCOLS.iter().any(|(name, _)| name.starts_with(rest)) {
        Err(Stop::Incomplete)
    } else {
        Err(Stop::Invalid(
            "PROXY v1: protocol not TCP4, TCP6 or UNKNOWN",
        ))
    }
}

/// The rest of an `UNKNOWN` header: CRLF at once, or a space and anything up to CRLF.
fn v1_unknown(rest: &[u8]) -> Step<&[u8]> {
    match rest.first() {
        None => Err(Stop::Incomplete),
        Some(b'\r') => crlf(rest),
        Some(b' ') => match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            Some(end) => crlf(&rest[end..]),
            None => Err(Stop::Incomplete),
        },
        Some(_) => Err(Stop::Invalid(
            "PROXY v1: protocol not TCP4, TCP6 or UNKNOWN",
        )),
    }
}

/// The next field, ended by `sep` (a space, or the CR of the CRLF), parsed by `full`, and what
/// follows `sep`. While the field has no end yet, it must pass `prefix_ok`, which holds for
/// every prefix of a field `full` accepts.
fn v1_field<'a, T>(
    rest: &'a [u8],
    sep: u8,
    prefix_ok: impl Fn(&[u8]) -> bool,
    full: impl Fn(&[u8]) -> Option<T>,
    why: &'static str,
) -> Step<(T, &'a [u8])> {
    let Some(end) = rest.iter().position(|&b| matches!(b, b' ' | b'\r' | b'\n')) else {
        return Err(if prefix_ok(rest) {
            Stop::Incomplete
        } else {
            Stop::Invalid(why)
        });
    };
    let found = rest[end];
    if end == 0 {
        Err(Stop::Invalid(
            "PROXY v1: empty field (fields take one space between them)",
        ))
    } else if found == sep {
        let value = full(&rest[..end]).ok_or(Stop::Invalid(why))?;
        // For the CR, `crlf` wants it back.
        let skip = usize::from(sep == b' ');
        Ok((value, &rest[end + skip..]))
    } else if found == b'\n' {
        Err(Stop::Invalid("PROXY v1: line does not end in CRLF"))
    } else if sep == b' ' {
        Err(Stop::Invalid("PROXY v1: header ends before its last field"))
    } else {
        Err(Stop::Invalid("PROXY v1: more fields than TCP4/TCP6 take"))
    }
}

fn crlf(rest: &[u8]) -> Step<&[u8]> {
    literal(rest, b"\r\n", "PROXY v1: line does not end in CRLF")
}

/// The value of `digits` if they are a decimal number in `0..=max`, without sign or leading
/// zeros.
fn decimal(digits: &[u8], max: u32) -> Option<u32> {
    if digits.is_empty() || digits.len() > 1 && digits[0] == b'0' {
        return None;
    }
    let mut value: u32 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        // No overflow: value <= max <= 65535 before this step.
        value = value * 10 + u32::from(d - b'0');
        if value > max {
            return None;
        }
    }
    Some(value)
}

/// Whether `digits` can begin a decimal number in `0..=max` (every such prefix is one).
fn decimal_prefix(digits: &[u8], max: u32) -> bool {
    digits.is_empty() || decimal(digits, max).is_some()
}

fn port_prefix(digits: &[u8]) -> bool {
    decimal_prefix(digits, u32::from(u16::MAX))
}

fn port(digits: &[u8]) -> Option<u16> {
    decimal(digits, u32::from(u16::MAX)).and_then(|p| u16::try_from(p).ok())
}

/// Whether `text` can begin a dotted quad (four octets 0–255, no leading zeros).
fn ipv4_prefix(text: &[u8]) -> bool {
    let mut octets = text.split(|&b| b == b'.').peekable();
    let mut count = 0;
    while let Some(octet) = octets.next() {
        count += 1;
        // Only the octet still being written may be empty.
        let last = octets.peek().is_none();
        if count > 4 || octet.is_empty() && !last || !decimal_prefix(octet, 255) {
            return false;
        }
    }
    true
}

/// Whether `text` may begin an IPv6 literal: necessary conditions of std's syntax, each of
/// which stays false once false (hex groups of 4 digits at most, one `::`, at most 8 groups,
/// an IPv4 tail taking two, nothing after the tail).
fn ipv6_prefix(text: &[u8]) -> bool {
    if text.len() > MAX_IPV6_TEXT {
        return false;
    }
    // From the first dot on, the last group is an IPv4 tail (after a colon).
    let (hex, tail) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => match text[..dot].iter().rposition(|&b| b == b':') {
            Some(colon) => (&text[..=colon], Some(&text[colon + 1..])),
            None => return false,
        },
        None => (text, None),
    };
    if tail.is_some_and(|t| !ipv4_prefix(t)) || tail.is_some() && hex == b":" {
        return false;
    }
    // A lone leading colon can only be the start of `::`.
    if hex.starts_with(b":") && !hex.starts_with(b"::") && hex.len() > 1 {
        return false;
    }
    let compressed = hex.windows(2).filter(|w| *w == b"::").count();
    if compressed > 1 {
        return false;
    }
    let mut groups = 0;
    for group in hex.split(|&b| b == b':').filter(|g| !g.is_empty()) {
        if group.len() > 4 || !group.iter().all(u8::is_ascii_hexdigit) {
            return false;
        }
        groups += 1;
    }
    // Groups still to come: the tail's two, or one after a colon that is not part of `::`.
    let pending = if tail.is_some() {
        2
    } else if hex.ends_with(b":") && !hex.ends_with(b"::") {
        1
    } else {
        0
    };
    let max = if compressed == 1 { 7 } else { 8 };
    groups + pending <= max
}

// ---------------------------------------------------------------------------------------------
// Version 2

#[derive(Debug, Clone, Copy)]
enum Command {
    Local,
    Proxy,
}

/// What the address block holds, as far as this parser is concerned.
#[derive(Debug, Clone, Copy)]
enum Block {
    /// Discarded unread: LOCAL, or AF_UNSPEC.
    Ignored,
    Inet4,
    Inet6,
}

impl Block {
    fn min_len(self) -> usize {
        match self {
            Block::Ignored => 0,
            Block::Inet4 => 2 * 4 + 2 * 2,
            Block::Inet6 => 2 * 16 + 2 * 2,
        }
    }
}

fn parse_v2(buf: &[u8]) -> Step<Parsed> {
    let sig = &buf[..buf.len().min(V2_SIGNATURE.len())];
    if sig != &V2_SIGNATURE[..sig.len()] {
        return Err(Stop::Invalid("not a PROXY v2 header"));
    }
    let Some(&ver_cmd) = buf.get(12) else {
        return Err(Stop::Incomplete);
    };
    let command = v2_command(ver_cmd)?;
    let Some(&fam) = buf.get(13) else {
        return Err(Stop::Incomplete);
    };
    let block = v2_block(command, fam)?;
    let Some(&[hi, lo]) = buf.get(14..V2_FIXED_LEN) else {
        return Err(Stop::Incomplete);
    };
    let len = V2_FIXED_LEN + usize::from(u16::from_be_bytes([hi, lo]));
    if len > MAX_V2_LEN {
        return Err(Stop::Invalid("PROXY v2 header longer than 552 bytes"));
    }
    if len - V2_FIXED_LEN < block.min_len() {
        return Err(Stop::Invalid("PROXY v2: address block too short"));
    }
    let Some(body) = buf.get(V2_FIXED_LEN..len) else {
        return Err(Stop::Incomplete);
    };
    let addrs = match block {
        Block::Ignored => None,
        Block::Inet4 => Some(v2_inet::<4>(body)?),
        Block::Inet6 => Some(v2_inet::<16>(body)?),
    };
    Ok(Parsed::Done {
        len,
        source: addrs.map(|a| a.0),
        destination: addrs.map(|a| a.1),
    })
}

fn v2_command(ver_cmd: u8) -> Step<Command> {
    if ver_cmd >> 4 != 2 {
        return Err(Stop::Invalid("PROXY v2: version is not 2"));
    }
    match ver_cmd & 0x0f {
        0 => Ok(Command::Local),
        1 => Ok(Command::Proxy),
        _ => Err(Stop::Invalid("PROXY v2: command not LOCAL or PROXY")),
    }
}

/// The family/protocol byte: high nibble AF_UNSPEC, AF_INET, AF_INET6 or AF_UNIX; low nibble
/// UNSPEC, STREAM or DGRAM; only the spec's seven combinations exist.
fn v2_block(command: Command, fam: u8) -> Step<Block> {
    if !matches!(fam, 0x00 | 0x11 | 0x12 | 0x21 | 0x22 | 0x31 | 0x32) {
        return Err(Stop::Invalid(
            "PROXY v2: unknown address family or protocol",
        ));
    }
    match (command, fam) {
        (Command::Local, _) | (Command::Proxy, 0x00) => Ok(Block::Ignored),
        (Command::Proxy, 0x11) => Ok(Block::Inet4),
        (Command::Proxy, 0x21) => Ok(Block::Inet6),
        (Command::Proxy, 0x31) => Err(Stop::Invalid("PROXY v2: Unix-socket clients unsupported")),
        (Command::Proxy, _) => Err(Stop::Invalid("PROXY v2: datagram (UDP) flows unsupported")),
    }
}

/// The source and destination of an AF_INET (`N` = 4) or AF_INET6 (`N` = 16) block: two
/// addresses then two ports, big-endian, then TLVs to the end of `body`.
fn v2_inet<const N: usize>(body: &[u8]) -> Step<(SocketAddr, SocketAddr)>
where
    IpAddr: From<[u8; N]>,
{
    // The caller checked the block's length: `short` is for form's sake.
    let short = Stop::Invalid("PROXY v2: address block too short");
    let mut rest = body;
    let src = IpAddr::from(take::<N>(&mut rest).ok_or(short)?);
    let dst = IpAddr::from(take::<N>(&mut rest).ok_or(short)?);
    let ports = take::<4>(&mut rest).ok_or(short)?;
    skip_tlvs(rest)?;
    let [s0, s1, d0, d1] = ports;
    Ok((
        SocketAddr::new(src, u16::from_be_bytes([s0, s1])),
        SocketAddr::new(dst, u16::from_be_bytes([d0, d1])),
    ))
}

/// The first `N` bytes of `bytes`, which then start after them.
fn take<const N: usize>(bytes: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = bytes.split_first_chunk::<N>()?;
    *bytes = rest;
    Some(*head)
}

/// Check that `tlvs` is a sequence of whole TLVs (type, 2-byte length, value).
fn skip_tlvs(mut tlvs: &[u8]) -> Step<()> {
    while !tlvs.is_empty() {
        let Some((&[_kind, hi, lo], rest)) = tlvs.split_first_chunk::<3>() else {
            return Err(Stop::Invalid("PROXY v2: truncated TLV"));
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        tlvs = rest
            .get(len..)
            .ok_or(Stop::Invalid("PROXY v2: TLV runs past the header"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;
    use proptest::test_runner::{Config, RngSeed};

    const ALL: [Version; 3] = [Version::V1, Version::V2, Version::Auto];

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn done(len: usize, addrs: Option<(&str, &str)>) -> Parsed {
        Parsed::Done {
            len,
            source: addrs.map(|a| sa(a.0)),
            destination: addrs.map(|a| sa(a.1)),
        }
    }

    fn invalid(p: Parsed) -> bool {
        matches!(p, Parsed::Invalid(_))
    }

    /// A v2 header: signature, the two bytes, the length of `body`, `body`.
    fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[ver_cmd, fam]);
        h.extend_from_slice(&u16::try_from(body.len()).expect("len").to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    fn inet4_block(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut b = src.to_vec();
        b.extend_from_slice(&dst);
        b.extend_from_slice(&sport.to_be_bytes());
        b.extend_from_slice(&dport.to_be_bytes());
        b
    }

    fn inet6_block(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
        let mut b = src.octets().to_vec();
        b.extend_from_slice(&dst.octets());
        b.extend_from_slice(&sport.to_be_bytes());
        b.extend_from_slice(&dport.to_be_bytes());
        b
    }

    fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
        let mut t = vec![kind];
        t.extend_from_slice(&u16::try_from(value.len()).expect("len").to_be_bytes());
        t.extend_from_slice(value);
        t
    }

    /// `header` parses as `expected` with `accept` (and `Auto`), and so with bytes after it;
    /// every strict prefix is Incomplete; the other version refuses it from its first byte.
    fn check_header(header: &[u8], accept: Version, expected: Parsed) {
        let other = match accept {
            Version::V1 => Version::V2,
            _ => Version::V1,
        };
        for v in [accept, Version::Auto] {
            assert_eq!(
                parse(header, v),
                expected,
                "{:?}",
                String::from_utf8_lossy(header)
            );
            let mut more = header.to_vec();
            more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(parse(&more, v), expected);
            for k in 0..header.len() {
                assert_eq!(parse(&header[..k], v), Parsed::Incomplete, "prefix of {k}");
            }
        }
        for k in 1..=header.len() {
            assert!(
                invalid(parse(&header[..k], other)),
                "{other:?} took {k} bytes"
            );
        }
    }

    /// `header` is refused with every version that could read it, and the refusal is
    /// reached by its first `at` bytes already (none earlier: those are Incomplete).
    fn check_refused_at(header: &[u8], at: usize) {
        let versions: &[Version] = if header.first() == Some(&b'P') {
            &[Version::V1, Version::Auto]
        } else {
            &[Version::V2, Version::Auto]
        };
        for &v in versions {
            let show = String::from_utf8_lossy(header);
            assert!(
                invalid(parse(header, v)),
                "{v:?} {show:?}: {:?}",
                parse(header, v)
            );
            assert!(
                invalid(parse(&header[..at], v)),
                "{v:?} {show:?} not refused at {at}"
            );
            for k in 0..at {
                assert_eq!(
                    parse(&header[..k], v),
                    Parsed::Incomplete,
                    "{show:?} at {k}"
                );
            }
        }
    }

    /// Refused once whole (where it is first refused does not matter).
    fn check_refused(header: &[u8]) {
        check_refused_at(header, first_refusal(header));
    }

    fn first_refusal(header: &[u8]) -> usize {
        let v = if header.first() == Some(&b'P') {
            Version::V1
        } else {
            Version::V2
        };
        (0..=header.len())
            .find(|&k| invalid(parse(&header[..k], v)))
            .unwrap_or(header.len())
    }

    // -----------------------------------------------------------------------------------------
    // Version 1

    #[test]
    fn v1_tcp4() {
        let h = b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n";
        let want = done(h.len(), Some(("192.0.2.1:56324", "198.51.100.7:443")));
        check_header(h, Version::V1, want);
        let h = b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n";
        let want = done(h.len(), Some(("0.0.0.0:0", "255.255.255.255:65535")));
        check_header(h, Version::V1, want);
    }

    #[test]
    fn v1_tcp6() {
        let h = b"PROXY TCP6 2001:db8::1 ::1 1 80\r\n";
        check_header(
            h,
            Version::V1,
            done(h.len(), Some(("[2001:db8::1]:1", "[::1]:80"))),
        );
        let h = b"PROXY TCP6 ::ffff:192.0.2.1 FE80::A 8080 80\r\n";
        let want = done(h.len(), Some(("[::ffff:192.0.2.1]:8080", "[fe80::a]:80")));
        check_header(h, Version::V1, want);
        // The longest TCP6 header the spec lists: 104 bytes.
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let h = format!("PROXY TCP6 {full} {full} 65535 65535\r\n");
        assert_eq!(h.len(), 104);
        let a = format!("[{full}]:65535");
        check_header(h.as_bytes(), Version::V1, done(104, Some((&a, &a))));
        // Zeros leading a hex group are plain hex.
        let h = b"PROXY TCP6 0000:0db8:0000:0000:0000:0000:0000:0001 :: 1 2\r\n";
        let want = done(h.len(), Some(("[0:db8::1]:1", "[::]:2")));
        check_header(h, Version::V1, want);
    }

    #[test]
    fn v1_unknown() {
        check_header(b"PROXY UNKNOWN\r\n", Version::V1, done(15, None));
        let h = b"PROXY UNKNOWN ffff::1 1.2.3.4 whatever \x00\xff\t 99999\r\n";
        check_header(h, Version::V1, done(h.len(), None));
        // Exactly 107 bytes is fine; 108 is not.
        let mut h = b"PROXY UNKNOWN ".to_vec();
        h.resize(105, b'x');
        h.extend_from_slice(b"\r\n");
        check_header(&h, Version::V1, done(107, None));
        let mut h = b"PROXY UNKNOWN ".to_vec();
        h.resize(106, b'x');
        h.extend_from_slice(b"\r\n");
        check_refused_at(&h, 107);
    }

    #[test]
    fn v1_refused_at_the_first_bad_byte() {
        // A plain HTTP request, or anything else, on its first byte.
        check_refused_at(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1);
        check_refused_at(b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 1);
        check_refused_at(b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 7);
        check_refused_at(b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", 7);
        check_refused_at(b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", 10);
        check_refused_at(b"PROXY TCP4\r\n", 11);
        check_refused_at(b"PROXY UNKNOWNX\r\n", 14);
        check_refused_at(b"PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n", 6);
        // Double space, space before CRLF, tab, a lone CR, a bare LF.
        check_refused_at(b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", 20);
        check_refused_at(b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", 12);
        check_refused_at(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", 31);
        check_refused_at(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\t2\r\n", 29);
        check_refused_at(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", 32);
        check_refused_at(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", 32);
        check_refused_at(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 31);
        check_refused_at(b"PROXY UNKNOWN\n", 14);
        check_refused_at(b"PROXY UNKNOWN\rX", 15);
        check_refused_at(b"PROXY UNKNOWN abc\nde\r\n", 18);
        // Fields missing or extra.
        check_refused_at(b"PROXY TCP4 1.2.3.4\r\n", 19);
        check_refused_at(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 29);
        check_refused_at(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", 31);
        // Family mismatch: known at the first byte that cannot be the family's.
        check_refused_at(b"PROXY TCP4 ::1 ::1 1 2\r\n", 12);
        check_refused_at(b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", 20);
        check_refused_at(b"PROXY TCP4 2001:db8::1 1.2.3.4 1 2\r\n", 15);
        check_refused_at(b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", 13);
        check_refused_at(b"PROXY TCP6 ::1 1.2.3.4 1 2\r\n", 17);
        // Ports: 65536, a sign, leading zeros, hex, a port of nothing.
        check_refused_at(b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", 32);
        check_refused_at(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", 34);
        check_refused_at(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 100000\r\n", 35);
        check_refused_at(b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", 28);
        check_refused_at(b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", 28);
        check_refused_at(b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", 29);
        check_refused_at(b"PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n", 29);
        check_refused_at(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 0x50\r\n", 31);
        // IPv4: leading zeros, an octet over 255, too few or too many octets, empty octets.
        check_refused_at(b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", 13);
        check_refused_at(b"PROXY TCP4 1.2.3.004 5.6.7.8 1 2\r\n", 19);
        check_refused_at(b"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", 14);
        check_refused_at(b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", 17);
        check_refused_at(b"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", 19);
        check_refused_at(b"PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", 14);
        check_refused_at(b"PROXY TCP4 1.2.3. 5.6.7.8 1 2\r\n", 18);
        // IPv6: zone, brackets, two `::`, ':::', a group of 5, a lone leading colon, 9 groups,
        // an IPv4 tail with a leading zero or too many groups before it.
        check_refused_at(b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", 19);
        check_refused_at(b"PROXY TCP6 [::1] ::1 1 2\r\n", 12);
        check_refused_at(b"PROXY TCP6 1::2::3 ::1 1 2\r\n", 17);
        check_refused_at(b"PROXY TCP6 1:::2 ::1 1 2\r\n", 15);
        check_refused_at(b"PROXY TCP6 12345::1 ::1 1 2\r\n", 16);
        check_refused_at(b"PROXY TCP6 :1::2 ::1 1 2\r\n", 13);
        check_refused_at(b"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", 27);
        check_refused_at(b"PROXY TCP6 ::ffff:01.2.3.4 ::1 1 2\r\n", 21);
        check_refused_at(b"PROXY TCP6 1:2:3:4:5:6:7:1.2.3.4 ::1 1 2\r\n", 27);
        // Syntax the prefix check lets through is refused when the field ends.
        check_refused(b"PROXY TCP6 1:2:3 ::1 1 2\r\n");
        check_refused(b"PROXY TCP6 1: ::1 1 2\r\n");
    }

    #[test]
    fn v1_longer_than_107_bytes() {
        // No CRLF in the first 107 bytes: refused at the 107th, not before.
        let mut h = b"PROXY UNKNOWN ".to_vec();
        h.resize(300, b'a');
        check_refused_at(&h, 107);
        // TCP6 fields that are valid, but together too long.
        let long = "0000:0000:0000:0000:0000:ffff:255.255.255.255";
        assert_eq!(
            long.parse::<Ipv6Addr>().ok(),
            "::ffff:255.255.255.255".parse().ok()
        );
        let h = format!("PROXY TCP6 {long} {long} 65535 65535\r\n");
        check_refused_at(h.as_bytes(), 107);
        // The CRLF would end at byte 108.
        let mut h = b"PROXY UNKNOWN ".to_vec();
        h.resize(106, b'a');
        h.extend_from_slice(b"\r\n");
        check_refused_at(&h, 107);
        assert_eq!(parse(&h[..106], Version::V1), Parsed::Incomplete);
    }

    // -----------------------------------------------------------------------------------------
    // Version 2

    #[test]
    fn v2_proxy_inet4() {
        let block = inet4_block([192, 0, 2, 1], [198, 51, 100, 7], 56324, 443);
        let want = Some(("192.0.2.1:56324", "198.51.100.7:443"));
        check_header(&v2(0x21, 0x11, &block), Version::V2, done(28, want));
        // With TLVs: ALPN, an empty NOOP, an authority.
        let mut body = block.clone();
        body.extend(tlv(0x01, b"h2"));
        body.extend(tlv(0x04, b""));
        body.extend(tlv(0x02, b"example.com"));
        let h = v2(0x21, 0x11, &body);
        check_header(&h, Version::V2, done(h.len(), want));
        // A header as HAProxy sends it (from a public packet capture).
        let h =
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xac\x13\x00\x01\xac\x13\x00\x03\xa6\x52\x00\x50";
        let want = done(28, Some(("172.19.0.1:42578", "172.19.0.3:80")));
        check_header(h, Version::V2, want);
    }

    #[test]
    fn v2_proxy_inet6() {
        let (src, dst) = (
            "2001:db8::1".parse().expect("v6"),
            "::ffff:192.0.2.9".parse().expect("v6"),
        );
        let block = inet6_block(src, dst, 1, 65535);
        let want = Some(("[2001:db8::1]:1", "[::ffff:192.0.2.9]:65535"));
        check_header(&v2(0x21, 0x21, &block), Version::V2, done(52, want));
        let mut body = block;
        body.extend(tlv(0x05, &[7; 300]));
        let h = v2(0x21, 0x21, &body);
        check_header(&h, Version::V2, done(h.len(), want));
    }

    #[test]
    fn v2_local_and_unspec() {
        check_header(&v2(0x20, 0x00, b""), Version::V2, done(16, None));
        // LOCAL ignores its block, whatever the family says (and however short).
        let block = inet4_block([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
        check_header(&v2(0x20, 0x11, &block), Version::V2, done(28, None));
        check_header(&v2(0x20, 0x21, b"abc"), Version::V2, done(19, None));
        check_header(&v2(0x20, 0x12, b""), Version::V2, done(16, None));
        check_header(&v2(0x20, 0x31, &[0; 216]), Version::V2, done(232, None));
        // TLVs are not read either.
        check_header(
            &v2(0x20, 0x00, b"\x01\xff\xff"),
            Version::V2,
            done(19, None),
        );
        // PROXY with AF_UNSPEC: no addresses, block discarded.
        check_header(&v2(0x21, 0x00, b""), Version::V2, done(16, None));
        check_header(&v2(0x21, 0x00, &[0xee; 40]), Version::V2, done(56, None));
    }

    #[test]
    fn v2_length_cap() {
        let block = inet4_block([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
        let mut body = block.clone();
        body.extend(tlv(0xe0, &vec![0; 536 - 12 - 3]));
        let h = v2(0x21, 0x11, &body);
        assert_eq!(h.len(), MAX_V2_LEN);
        check_header(
            &h,
            Version::V2,
            done(MAX_V2_LEN, Some(("1.2.3.4:1", "5.6.7.8:2"))),
        );
        // One more byte: refused as soon as the length arrives.
        let mut body = block;
        body.extend(tlv(0xe0, &vec![0; 536 - 12 - 2]));
        check_refused_at(&v2(0x21, 0x11, &body), 16);
        check_refused_at(&v2(0x20, 0x00, &[0; 537]), 16);
        let mut h = v2(0x21, 0x00, b"");
        h[14..16].copy_from_slice(&[0xff, 0xff]);
        check_refused_at(&h, 16);
    }

    #[test]
    fn v2_refused() {
        let good = v2(0x21, 0x11, &inet4_block([1, 2, 3, 4], [5, 6, 7, 8], 1, 2));
        // Every signature byte.
        for i in 0..12 {
            let mut h = good.clone();
            h[i] ^= 0x40;
            check_refused_at(&h, i + 1);
        }
        // The version nibble: 1 (v1 binary does not exist), 3, 0, 15.
        for ver in [0x11, 0x31, 0x01, 0xf1] {
            let mut h = good.clone();
            h[12] = ver;
            check_refused_at(&h, 13);
        }
        // Commands other than LOCAL and PROXY.
        for cmd in 2..16 {
            let mut h = good.clone();
            h[12] = 0x20 | cmd;
            check_refused_at(&h, 13);
        }
        // Family/protocol bytes outside the spec's seven, with either command.
        for fam in [0x01, 0x02, 0x10, 0x13, 0x20, 0x23, 0x30, 0x41, 0xff] {
            for cmd in [0x20, 0x21] {
                let mut h = good.clone();
                h[12] = cmd;
                h[13] = fam;
                check_refused_at(&h, 14);
            }
        }
        // PROXY with UDP or a Unix socket.
        for fam in [0x12, 0x22, 0x31, 0x32] {
            check_refused_at(&v2(0x21, fam, &[0; 216]), 14);
        }
        // Address blocks too short for their family: refused at the length.
        check_refused_at(&v2(0x21, 0x11, &[0; 11]), 16);
        check_refused_at(&v2(0x21, 0x11, b""), 16);
        check_refused_at(&v2(0x21, 0x21, &[0; 35]), 16);
        check_refused_at(&v2(0x21, 0x21, &[0; 12]), 16);
        // TLVs that run past the header, or are cut short.
        let block = inet4_block([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
        for tail in [
            &b"\x01\x00\x03ab"[..],
            b"\x01\xff\xff",
            b"\x01",
            b"\x01\x00",
            b"\x01\x00\x00\x04",
        ] {
            let mut body = block.clone();
            body.extend_from_slice(tail);
            let h = v2(0x21, 0x11, &body);
            check_refused_at(&h, h.len());
        }
        let mut body = inet6_block(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 1, 2);
        body.extend(tlv(0x01, b"h2"));
        body.extend_from_slice(b"\x02\x00\x09short");
        let h = v2(0x21, 0x21, &body);
        check_refused_at(&h, h.len());
    }

    #[test]
    fn versions_and_auto() {
        for v in ALL {
            assert_eq!(parse(b"", v), Parsed::Incomplete);
        }
        assert_eq!(parse(b"P", Version::Auto), Parsed::Incomplete);
        assert_eq!(parse(b"\r", Version::Auto), Parsed::Incomplete);
        assert_eq!(parse(b"\r\n\r\n", Version::Auto), Parsed::Incomplete);
        for first in [b'G', b'\n', b' ', 0, 0x16, b'p'] {
            assert!(invalid(parse(&[first], Version::Auto)), "{first}");
        }
        // A TLS ClientHello on a plain PROXY listener.
        assert!(invalid(parse(b"\x16\x03\x01\x02\x00\x01", Version::Auto)));
        // `Version::V1` refuses v2 and the other way round (check_header does it for every
        // valid header); `Auto` takes both.
        assert!(invalid(parse(b"\r", Version::V1)));
        assert!(invalid(parse(b"P", Version::V2)));
        assert!(matches!(
            parse(b"PROXY UNKNOWN\r\n", Version::Auto),
            Parsed::Done { .. }
        ));
        assert!(matches!(
            parse(&v2(0x20, 0, b""), Version::Auto),
            Parsed::Done { .. }
        ));
    }

    // -----------------------------------------------------------------------------------------
    // Properties

    const CASES: u32 = 256;
    const SEED: u64 = 0x9_0C51_7EAD;

    fn config() -> Config {
        let env = Config::default(); // PROPTEST_CASES, PROPTEST_RNG_SEED from the environment
        Config {
            cases: if std::env::var_os("PROPTEST_CASES").is_some() {
                env.cases
            } else {
                CASES
            },
            rng_seed: if std::env::var_os("PROPTEST_RNG_SEED").is_some() {
                env.rng_seed
            } else {
                RngSeed::Fixed(SEED)
            },
            failure_persistence: None,
            ..env
        }
    }

    /// An IPv6 address and one of its spellings: groups of random width and case, an optional
    /// `::` over one or more zero groups, an optional IPv4 tail.
    fn ipv6_text() -> impl Strategy<Value = (Ipv6Addr, String)> {
        (
            any::<[u16; 8]>(),
            any::<bool>(),
            any::<Option<(Index, Index)>>(),
            any::<[(u8, bool); 8]>(),
            any::<u8>(),
        )
            .prop_map(|(mut g, tail, compress, styles, zeros)| {
                // Make some groups zero, so that the Display spelling compresses too.
                for (i, group) in g.iter_mut().enumerate() {
                    if zeros & (1 << i) != 0 {
                        *group = 0;
                    }
                }
                let hex_groups = if tail { 6 } else { 8 };
                let range = compress.map(|(a, b)| {
                    let start = a.index(hex_groups);
                    (start, start + 1 + b.index(hex_groups - start))
                });
                if let Some((start, end)) = range {
                    g[start..end].fill(0);
                }
                let addr = Ipv6Addr::from(g);
                let unit = |i: usize| {
                    let (width, upper) = styles[i];
                    let text = format!("{:0w$x}", g[i], w = usize::from(width % 4) + 1);
                    if upper {
                        text.to_ascii_uppercase()
                    } else {
                        text
                    }
                };
                let mut units: Vec<String> = (0..hex_groups).map(unit).collect();
                if tail {
                    let v4 = (u32::from(g[6]) << 16) | u32::from(g[7]);
                    units.push(Ipv4Addr::from(v4).to_string());
                }
                let text = match range {
                    None => units.join(":"),
                    Some((start, end)) => {
                        format!("{}::{}", units[..start].join(":"), units[end..].join(":"))
                    }
                };
                (addr, text)
            })
    }

    /// A valid header (v1 or v2), its version and what it parses to.
    fn valid_header() -> impl Strategy<Value = (Vec<u8>, Version, Parsed)> {
        let tcp4 = any::<([u8; 4], [u8; 4], u16, u16)>().prop_map(|(s, d, sp, dp)| {
            let (s, d) = (Ipv4Addr::from(s), Ipv4Addr::from(d));
            let h = format!("PROXY TCP4 {s} {d} {sp} {dp}\r\n").into_bytes();
            let (src, dst) = ((s, sp).into(), (d, dp).into());
            let len = h.len();
            (h, Version::V1, v1_expected(len, src, dst))
        });
        let tcp6 = (ipv6_text(), ipv6_text(), any::<bool>(), any::<(u16, u16)>())
            .prop_map(|((s, st), (d, dt), display, (sp, dp))| {
                let (st, dt) = if display {
                    (s.to_string(), d.to_string())
                } else {
                    (st, dt)
                };
                let h = format!("PROXY TCP6 {st} {dt} {sp} {dp}\r\n").into_bytes();
                let (src, dst) = ((s, sp).into(), (d, dp).into());
                let len = h.len();
                (h, Version::V1, v1_expected(len, src, dst))
            })
            .prop_filter("longer than 107 bytes", |h| h.0.len() <= MAX_V1_LEN);
        let unknown = proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=91))
            .prop_map(|junk| {
                let mut h = b"PROXY UNKNOWN".to_vec();
                if let Some(junk) = junk {
                    h.push(b' ');
                    h.extend(
                        junk.iter()
                            .map(|&b| if b == b'\r' || b == b'\n' { b'.' } else { b }),
                    );
                }
                h.extend_from_slice(b"\r\n");
                let len = h.len();
                (h, Version::V1, done(len, None))
            });
        let tlvs = proptest::collection::vec(
            (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)),
            0..5,
        );
        let inet = (any::<bool>(), any::<([u8; 16], [u8; 16], u16, u16)>(), tlvs).prop_map(
            |(v6, (s, d, sp, dp), tlvs)| {
                let (src, dst, mut body, fam): (SocketAddr, SocketAddr, _, _) = if v6 {
                    let (s, d) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
                    (
                        (s, sp).into(),
                        (d, dp).into(),
                        inet6_block(s, d, sp, dp),
                        0x21,
                    )
                } else {
                    let (s, d) = ([s[0], s[1], s[2], s[3]], [d[0], d[1], d[2], d[3]]);
                    let block = inet4_block(s, d, sp, dp);
                    (
                        (Ipv4Addr::from(s), sp).into(),
                        (Ipv4Addr::from(d), dp).into(),
                        block,
                        0x11,
                    )
                };
                for (kind, value) in tlvs {
                    body.extend(tlv(kind, &value));
                }
                let h = v2(0x21, fam, &body);
                let len = h.len();
                (h, Version::V2, v1_expected(len, src, dst))
            },
        );
        let ignored = (
            any::<bool>(),
            proptest::sample::select(&[0x00u8, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32][..]),
            proptest::collection::vec(any::<u8>(), 0..100),
        )
            .prop_map(|(local, fam, body)| {
                let (cmd, fam) = if local { (0x20, fam) } else { (0x21, 0x00) };
                let h = v2(cmd, fam, &body);
                let len = h.len();
                (h, Version::V2, done(len, None))
            });
        prop_oneof![tcp4, tcp6, unknown, inet, ignored]
    }

    fn v1_expected(len: usize, src: SocketAddr, dst: SocketAddr) -> Parsed {
        Parsed::Done {
            len,
            source: Some(src),
            destination: Some(dst),
        }
    }

    /// What must hold for any input: no `len` past the input; a `Done` for a prefix is the
    /// answer for the whole; an `Invalid` prefix makes the whole invalid.
    fn check_invariants(data: &[u8]) {
        for v in ALL {
            let whole = parse(data, v);
            if let Parsed::Done { len, .. } = whole {
                assert!(len <= data.len() && len > 0);
                assert_eq!(parse(&data[..len], v), whole);
            }
            for k in 0..data.len() {
                match parse(&data[..k], v) {
                    Parsed::Incomplete => {}
                    prefix @ Parsed::Done { .. } => assert_eq!(whole, prefix, "{v:?} at {k}"),
                    Parsed::Invalid(why) => assert!(invalid(whole), "{v:?} {why} at {k}"),
                }
            }
        }
    }

    /// Edits to a byte string: (position, byte, 0 replace / 1 insert / 2 delete).
    fn mutate(mut data: Vec<u8>, edits: &[(Index, u8, u8)]) -> Vec<u8> {
        for &(at, byte, op) in edits {
            if data.is_empty() {
                data.push(byte);
                continue;
            }
            let i = at.index(data.len());
            match op % 3 {
                0 => data[i] = byte,
                1 => data.insert(i, byte),
                _ => {
                    data.remove(i);
                }
            }
        }
        data
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn valid_headers_split_anywhere(
            (header, version, expected) in valid_header(),
            after in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            check_header(&header, version, expected);
            let mut more = header.clone();
            more.extend_from_slice(&after);
            for v in [version, Version::Auto] {
                prop_assert_eq!(parse(&more, v), expected);
            }
            check_invariants(&more);
        }

        #[test]
        fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            check_invariants(&data);
        }

        #[test]
        fn mutated_headers(
            (header, _, _) in valid_header(),
            edits in proptest::collection::vec((any::<Index>(), any::<u8>(), any::<u8>()), 1..4),
        ) {
            check_invariants(&mutate(header, &edits));
        }

        #[test]
        fn mutated_text(
            (header, _, _) in valid_header(),
            edits in proptest::collection::vec(
                (any::<Index>(), proptest::sample::select(&b" \r\n.:0123456789abcdefP"[..]),
                 any::<u8>()),
                1..4,
            ),
        ) {
            check_invariants(&mutate(header, &edits));
        }

        /// Every prefix of every spelling std accepts passes the IPv6 prefix check.
        #[test]
        fn ipv6_spellings((addr, text) in ipv6_text()) {
            prop_assert_eq!(text.parse::<Ipv6Addr>().ok(), Some(addr), "{}", &text);
            prop_assert_eq!(Family::V6.addr(text.as_bytes()), Some(IpAddr::V6(addr)));
            for k in 0..=text.len() {
                prop_assert!(ipv6_prefix(&text.as_bytes()[..k]), "{} at {}", &text, k);
            }
        }

        /// The prefix checks stay false once false, and hold for whatever std parses.
        #[test]
        fn address_prefix_checks(
            text in proptest::collection::vec(
                proptest::sample::select(&b"0123456789abcdefABCDEF:.:::..0001"[..]),
                0..50,
            )
        ) {
            for (check, family) in [(ipv4_prefix as fn(&[u8]) -> bool, 4), (ipv6_prefix, 6)] {
                let first_false = (0..=text.len()).find(|&k| !check(&text[..k]));
                if let Some(k) = first_false {
                    for j in k..=text.len() {
                        prop_assert!(!check(&text[..j]), "{:?}", String::from_utf8_lossy(&text));
                    }
                }
                let std_ok = std::str::from_utf8(&text).ok().is_some_and(|s| {
                    if family == 4 {
                        s.parse::<Ipv4Addr>().is_ok()
                    } else {
                        s.parse::<Ipv6Addr>().is_ok()
                    }
                });
                if std_ok {
                    prop_assert!(first_false.is_none(), "{:?}", String::from_utf8_lossy(&text));
                }
            }
        }
    }
}
