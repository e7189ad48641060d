//! The access log's lines (`--access-logfile`, `--access-logformat`), rendered sans-IO into a
//! per-worker buffer that the worker writes out in whole lines, never one syscall per
//! request.
//!
//! Formats are Gunicorn's: `%(NAME)s` atoms (`h l u t r m U q H s B b f a T M D L p`,
//! `{header}i` for a request header, `{header}o` for a response header) between literal
//! text, and the presets `common`, `combined` (Gunicorn's default) and `json` (one object
//! per line). Over TLS, `tls_version`, `tls_cipher` and `tls_sni` (nginx's `$ssl_protocol`,
//! `$ssl_cipher`, `$ssl_server_name`; `-` over plain HTTP), and a `tls` object in JSON. Whatever a client sends cannot break a line: in text formats bytes outside
//! printable ASCII, `"` and `\` are written `\xHH`; in JSON strings are escaped as JSON, and
//! bytes that are not UTF-8 are written `\\xHH`.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Request, TlsInfo};

/// Gunicorn's default, which is Apache's "combined".
pub const COMBINED: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;
/// Apache's "common" log format.
pub const COMMON: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s"#;

/// One piece of a text format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Literal(Vec<u8>),
    /// `h`: the client address.
    Host,
    /// `l`, `u`: always `-` (no identd, no authenticated user).
    Dash,
    /// `t`: `[01/Dec/2026:12:00:00 +0000]`.
    Time,
    /// `r`: `GET /path?q HTTP/1.1`.
    RequestLine,
    /// `m`.
    Method,
    /// `U`: the path without the query.
    Path,
    /// `q`: the query (empty when there is none).
    Query,
    /// `H`: `HTTP/1.1`.
    Protocol,
    /// `s`.
    Status,
    /// `B`: body bytes sent; `b`: the same, `-` for none.
    Bytes,
    BytesOrDash,
    /// `f`, `a`: the Referer and User-Agent headers.
    RequestHeader(String),
    ResponseHeader(String),
    /// `T` seconds, `M` milliseconds, `D` microseconds, `L` decimal seconds.
    Seconds,
    Millis,
    Micros,
    DecimalSeconds,
    /// `p`: `<PID>`.
    Pid,
    /// `tls_version`, `tls_cipher`, `tls_sni`: what the TLS handshake settled.
    TlsVersion,
    TlsCipher,
    TlsSni,
}

/// A parsed `--access-logformat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format(Kind);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Text(Vec<Atom>),
    Json,
}

impl Format {
    /// A preset name (`common`, `combined`, `json`) or a format with `%(NAME)s` atoms.
    pub fn parse(spec: &str) -> Result<Format, String> {
        match spec {
            "json" => return Ok(Format(Kind::Json)),
            "combined" => return Format::parse(COMBINED),
            "common" => return Format::parse(COMMON),
            _ => {}
        }
        let mut atoms = Vec::new();
        let mut literal = Vec::new();
        let bytes = spec.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && bytes.get(i + 1) == Some(&b'(') {
                let close = spec[i + 2..]
                    .find(")s")
                    .ok_or_else(|| format!("`{}`: `%(` without its `)s`", &spec[i..]))?;
                let name = &spec[i + 2..i + 2 + close];
                if !literal.is_empty() {
                    atoms.push(Atom::Literal(std::mem::take(&mut literal)));
                }
                atoms.push(atom(name)?);
                i += 2 + close + 2;
            } else {
                literal.push(bytes[i]);
                i += 1;
            }
        }
        if !literal.is_empty() {
            atoms.push(Atom::Literal(literal));
        }
        Ok(Format(Kind::Text(atoms)))
    }
}

fn atom(name: &str) -> Result<Atom, String> {
    if let Some(header) = name.strip_prefix('{') {
        let (header, kind) = header
            .split_once('}')
            .ok_or_else(|| format!("`%({name})s`: `{{` without `}}`"))?;
        if header.is_empty() || !header.bytes().all(super::is_token_byte) {
            return Err(format!("`%({name})s`: `{header}` is not a header name"));
        }
        return match kind {
            "i" => Ok(Atom::RequestHeader(header.to_ascii_lowercase())),
            "o" => Ok(Atom::ResponseHeader(header.to_ascii_lowercase())),
            _ => Err(format!(
                "`%({name})s`: expected `{{header}}i` (request) or `{{header}}o` (response)"
            )),
        };
    }
    Ok(match name {
        "h" => Atom::Host,
        "l" | "u" => Atom::Dash,
        "t" => Atom::Time,
        "r" => Atom::RequestLine,
        "m" => Atom::Method,
        "U" => Atom::Path,
        "q" => Atom::Query,
        "H" => Atom::Protocol,
        "s" => Atom::Status,
        "B" => Atom::Bytes,
        "b" => Atom::BytesOrDash,
        "f" => Atom::RequestHeader("referer".into()),
        "a" => Atom::RequestHeader("user-agent".into()),
        "T" => Atom::Seconds,
        "M" => Atom::Millis,
        "D" => Atom::Micros,
        "L" => Atom::DecimalSeconds,
        "p" => Atom::Pid,
        "tls_version" => Atom::TlsVersion,
        "tls_cipher" => Atom::TlsCipher,
        "tls_sni" => Atom::TlsSni,
        other => {
            return Err(format!(
                "unknown atom `%({other})s` (known: h l u t r m U q H s B b f a T M D L p, \
                 tls_version, tls_cipher, tls_sni, {{header}}i, {{header}}o; or a preset: \
                 common, combined, json)"
            ))
        }
    })
}

/// What one answered (or refused) request leaves in the log.
pub struct Entry<'r, 'a> {
    /// `None` for a request refused before its head could be read (400, 408, 413, 431 ...).
    pub request: Option<&'r Request<'a>>,
    pub peer: Option<SocketAddr>,
    pub status: u16,
    /// Body bytes sent (none for HEAD, 204, 304).
    pub body_len: usize,
    /// The response's header lines as the handler set them (`Name: value\r\n` ...).
    pub response_headers: &'r [u8],
    pub duration: Duration,
    /// The connection's TLS, if it has any.
    pub tls: Option<&'r TlsInfo>,
}

/// A worker's access log: the format and the lines not yet written out.
#[derive(Debug)]
pub struct AccessLog {
    format: Format,
    buf: Vec<u8>,
    pid: String,
    /// `[dd/Mon/yyyy:HH:MM:SS +0000]` for `second`.
    second: u64,
    clf: [u8; 28],
}

impl AccessLog {
    pub fn new(format: Format) -> AccessLog {
        AccessLog {
            format,
            buf: Vec::with_capacity(64 * 1024),
            pid: std::process::id().to_string(),
            second: u64::MAX,
            clf: [b' '; 28],
        }
    }

    /// The lines rendered and not yet taken.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Take the pending lines (to write them out); the buffer keeps its capacity.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Render one line for `entry` at `now`.
    pub fn record(&mut self, entry: &Entry<'_, '_>, now: SystemTime) {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.second {
            self.second = secs;
            self.clf = clf_time(secs);
        }
        let mut out = std::mem::take(&mut self.buf);
        match &self.format.0 {
            Kind::Text(atoms) => {
                for a in atoms {
                    self.text_atom(&mut out, a, entry);
                }
            }
            Kind::Json => self.json(&mut out, entry, secs),
        }
        out.push(b'\n');
        self.buf = out;
    }

    fn text_atom(&self, out: &mut Vec<u8>, atom: &Atom, e: &Entry<'_, '_>) {
        let req = e.request;
        match atom {
            Atom::Literal(bytes) => out.extend_from_slice(bytes),
            Atom::Host => match e.peer {
                Some(p) => out.extend_from_slice(p.ip().to_string().as_bytes()),
                None => out.push(b'-'),
            },
            Atom::Dash => out.push(b'-'),
            Atom::Time => out.extend_from_slice(&self.clf),
            Atom::RequestLine => match req {
                Some(r) => {
                    escape_text(out, r.method().as_bytes());
                    out.push(b' ');
                    escape_text(out, r.path().as_bytes());
                    if let Some(q) = r.query() {
                        out.push(b'?');
                        escape_text(out, q.as_bytes());
                    }
                    out.extend_from_slice(protocol(r).as_bytes());
                }
                None => out.push(b'-'),
            },
            Atom::Method => text_or_dash(out, req.map(|r| r.method().as_bytes())),
            Atom::Path => text_or_dash(out, req.map(|r| r.path().as_bytes())),
            Atom::Query => escape_text(out, req.and_then(|r| r.query()).unwrap_or("").as_bytes()),
            Atom::Protocol => text_or_dash(out, req.map(|r| protocol(r).trim_start().as_bytes())),
            Atom::Status => out.extend_from_slice(itoa::Buffer::new().format(e.status).as_bytes()),
            Atom::Bytes => out.extend_from_slice(itoa::Buffer::new().format(e.body_len).as_bytes()),
            Atom::BytesOrDash if e.body_len == 0 => out.push(b'-'),
            Atom::BytesOrDash => {
                out.extend_from_slice(itoa::Buffer::new().format(e.body_len).as_bytes())
            }
            Atom::RequestHeader(name) => text_or_dash(out, req.and_then(|r| r.header(name))),
            Atom::ResponseHeader(name) => {
                text_or_dash(out, response_header(e.response_headers, name))
            }
            Atom::Seconds => {
                out.extend_from_slice(itoa::Buffer::new().format(e.duration.as_secs()).as_bytes())
            }
            Atom::Millis => out.extend_from_slice(
                itoa::Buffer::new()
                    .format(e.duration.as_millis())
                    .as_bytes(),
            ),
            Atom::Micros => out.extend_from_slice(
                itoa::Buffer::new()
                    .format(e.duration.as_micros())
                    .as_bytes(),
            ),
            Atom::DecimalSeconds => {
                out.extend_from_slice(format!("{:.6}", e.duration.as_secs_f64()).as_bytes())
            }
            Atom::Pid => {
                out.push(b'<');
                out.extend_from_slice(self.pid.as_bytes());
                out.push(b'>');
            }
            Atom::TlsVersion => text_or_dash(out, e.tls.map(|t| t.version.as_bytes())),
            Atom::TlsCipher => text_or_dash(out, e.tls.map(|t| t.cipher.as_bytes())),
            Atom::TlsSni => text_or_dash(
                out,
                e.tls
                    .and_then(|t| t.server_name.as_deref())
                    .map(str::as_bytes),
            ),
        }
    }

    fn json(&self, out: &mut Vec<u8>, e: &Entry<'_, '_>, secs: u64) {
        let req = e.request;
        out.extend_from_slice(b"{\"time\":\"");
        out.extend_from_slice(&rfc3339(secs));
        out.extend_from_slice(b"\",\"remote\":");
        match e.peer {
            Some(p) => json_string(out, p.ip().to_string().as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        let field = |out: &mut Vec<u8>, key: &str, value: Option<&[u8]>| {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            match value {
                Some(v) => json_string(out, v),
                None => out.extend_from_slice(b"null"),
            }
        };
        field(out, "method", req.map(|r| r.method().as_bytes()));
        field(out, "path", req.map(|r| r.path().as_bytes()));
        field(out, "query", req.and_then(|r| r.query()).map(str::as_bytes));
        field(
            out,
            "protocol",
            req.map(|r| protocol(r).trim_start().as_bytes()),
        );
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(itoa::Buffer::new().format(e.status).as_bytes());
        out.extend_from_slice(b",\"bytes\":");
        out.extend_from_slice(itoa::Buffer::new().format(e.body_len).as_bytes());
        field(out, "referer", req.and_then(|r| r.header("referer")));
        field(out, "user_agent", req.and_then(|r| r.header("user-agent")));
        out.extend_from_slice(b",\"duration_us\":");
        out.extend_from_slice(
            itoa::Buffer::new()
                .format(e.duration.as_micros())
                .as_bytes(),
        );
        out.extend_from_slice(b",\"pid\":");
        out.extend_from_slice(self.pid.as_bytes());
        out.extend_from_slice(b",\"tls\":");
        match e.tls {
            None => out.extend_from_slice(b"null"),
            Some(t) => {
                out.extend_from_slice(b"{\"version\":");
                json_string(out, t.version.as_bytes());
                out.extend_from_slice(b",\"cipher\":");
                json_string(out, t.cipher.as_bytes());
                field(out, "sni", t.server_name.as_deref().map(str::as_bytes));
                out.push(b'}');
            }
        }
        out.push(b'}');
    }
}

fn protocol(r: &Request<'_>) -> &'static str {
    match r.version() {
        0 => " HTTP/1.0",
        _ => " HTTP/1.1",
    }
}

fn text_or_dash(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(v) if !v.is_empty() => escape_text(out, v),
        _ => out.push(b'-'),
    }
}

/// The first response header named `name` (lower case) in `Name: value\r\n` lines.
fn response_header<'h>(headers: &'h [u8], name: &str) -> Option<&'h [u8]> {
    headers.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let (n, v) = line.split_at(colon);
        n.eq_ignore_ascii_case(name.as_bytes())
            .then(|| v[1..].trim_ascii())
    })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Printable ASCII as is; `"`, `\`, controls and bytes ≥ 0x7f as `\xHH` (nginx's escaping).
fn escape_text(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        }
    }
}

/// A JSON string: UTF-8 passes, `"` `\` and controls are escaped, bytes that are not UTF-8
/// become the text `\xHH` (written `\\xHH`).
fn json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    let b = c as u32 as u8;
                    out.extend_from_slice(b"\\u00");
                    out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
                }
                c => {
                    let mut tmp = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                }
            }
        }
        for &b in chunk.invalid() {
            out.extend_from_slice(&[
                b'\\',
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        }
    }
    out.push(b'"');
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's civil_from_days.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `[01/Dec/2026:12:00:00 +0000]` (UTC).
fn clf_time(secs: u64) -> [u8; 28] {
    let (y, m, d) = civil((secs / 86_400) as i64);
    let t = secs % 86_400;
    let text = format!(
        "[{d:02}/{}/{y:04}:{:02}:{:02}:{:02} +0000]",
        MONTHS[(m - 1) as usize],
        t / 3600,
        t / 60 % 60,
        t % 60
    );
    let mut out = [b' '; 28];
    let n = text.len().min(28);
    out[..n].copy_from_slice(&text.as_bytes()[..n]);
    out
}

/// `2026-12-01T12:00:00Z`.
fn rfc3339(secs: u64) -> Vec<u8> {
    let (y, m, d) = civil((secs / 86_400) as i64);
    let t = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Connection, Context};

    /// Render `format` for the request in `raw` (answered by a handler that sets a header).
    fn line(format: &str, raw: &[u8], status: u16) -> String {
        line_over(format, raw, status, None)
    }

    /// [`line`], over a connection with `tls`.
    fn line_over(format: &str, raw: &[u8], status: u16, tls: Option<TlsInfo>) -> String {
        let mut ctx = Context::new(Default::default());
        let mut conn = Connection::new();
        conn.receive(raw, &ctx);
        let log = std::rc::Rc::new(std::cell::RefCell::new(AccessLog::new(
            Format::parse(format).expect("format"),
        )));
        let sink = log.clone();
        let mut handler = move |req: &Request<'_>, res: &mut crate::Response<'_>| {
            res.status(status).header("X-Out", "yes").body("hello");
            let entry = Entry {
                request: Some(req),
                peer: Some("192.0.2.7:5555".parse().expect("addr")),
                status,
                body_len: 5,
                response_headers: b"X-Out: yes\r\n",
                duration: Duration::from_micros(1234),
                tls: tls.as_ref(),
            };
            sink.borrow_mut()
                .record(&entry, UNIX_EPOCH + Duration::from_secs(1_795_168_800));
        };
        conn.process(&mut handler, &mut ctx);
        let text = log.borrow().pending().to_vec();
        String::from_utf8(text).expect("log lines are UTF-8")
    }

    const REQ: &[u8] =
        b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nReferer: http://r/\r\nUser-Agent: curl/8\r\n\r\n";

    #[test]
    fn combined_is_gunicorns_default() {
        assert_eq!(
            line("combined", REQ, 200),
            "192.0.2.7 - - [20/Nov/2026:10:00:00 +0000] \"GET /a/b?x=1 HTTP/1.1\" 200 5 \"http://r/\" \"curl/8\"\n"
        );
        assert_eq!(
            line("common", REQ, 404),
            "192.0.2.7 - - [20/Nov/2026:10:00:00 +0000] \"GET /a/b?x=1 HTTP/1.1\" 404 5\n"
        );
    }

    #[test]
    fn every_atom() {
        assert_eq!(
            line("%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(T)s|%(M)s|%(D)s|%(L)s|%({host}i)s|%({x-out}o)s|%({nope}i)s", REQ, 201),
            "GET|/a/b|x=1|HTTP/1.1|201|5|0|1|1234|0.001234|h|yes|-\n"
        );
        assert!(line("%(p)s", REQ, 200).starts_with(&format!("<{}>", std::process::id())));
    }

    #[test]
    fn tls_atoms_show_the_handshake_and_a_dash_without_one() {
        let tls = TlsInfo {
            version: "TLSv1.3",
            cipher: "TLS13_AES_128_GCM_SHA256",
            server_name: Some("a.example".into()),
            alpn: Some("http/1.1".into()),
            client_certs: Vec::new(),
        };
        let format = "%(tls_version)s %(tls_cipher)s %(tls_sni)s";
        assert_eq!(
            line_over(format, REQ, 200, Some(tls.clone())),
            "TLSv1.3 TLS13_AES_128_GCM_SHA256 a.example\n"
        );
        assert_eq!(line(format, REQ, 200), "- - -\n");
        let json = line_over("json", REQ, 200, Some(tls));
        let v: serde_json::Value = serde_json::from_str(json.trim_end()).expect("valid JSON");
        assert_eq!(v["tls"]["version"], "TLSv1.3");
        assert_eq!(v["tls"]["cipher"], "TLS13_AES_128_GCM_SHA256");
        assert_eq!(v["tls"]["sni"], "a.example");
        let plain = line("json", REQ, 200);
        let v: serde_json::Value = serde_json::from_str(plain.trim_end()).expect("valid JSON");
        assert_eq!(v["tls"], serde_json::Value::Null);
    }

    #[test]
    fn hostile_bytes_cannot_break_the_line() {
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: a\"b\\c\x09d\xff\xfe\r\n\r\n";
        let text = line(r#""%(a)s""#, raw, 200);
        assert_eq!(text, "\"a\\x22b\\x5cc\\x09d\\xff\\xfe\"\n");
        let json = line("json", raw, 200);
        assert_eq!(json.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(json.trim_end()).expect("valid JSON");
        assert_eq!(v["user_agent"], "a\"b\\c\td\\xff\\xfe");
        assert_eq!(v["status"], 200);
        assert_eq!(v["path"], "/");
        assert_eq!(v["query"], serde_json::Value::Null);
        assert_eq!(v["time"], "2026-11-20T10:00:00Z");
        assert_eq!(v["remote"], "192.0.2.7");
        assert_eq!(v["duration_us"], 1234);
    }

    #[test]
    fn bad_formats_say_why() {
        for (spec, why) in [
            ("%(zz)s", "unknown atom"),
            ("%(h", "without its `)s`"),
            ("%({a b}i)s", "not a header name"),
            ("%({a}x)s", "expected"),
        ] {
            let err = Format::parse(spec).expect_err(spec);
            assert!(err.contains(why), "{spec}: {err}");
        }
        assert_eq!(line("plain %% text", REQ, 200), "plain %% text\n");
    }

    #[test]
    fn dates() {
        assert_eq!(&clf_time(0), b"[01/Jan/1970:00:00:00 +0000]");
        assert_eq!(&clf_time(951_782_400), b"[29/Feb/2000:00:00:00 +0000]");
        assert_eq!(rfc3339(1_795_168_800), b"2026-11-20T10:00:00Z");
    }
}
