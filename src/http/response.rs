//! Responses: the [`Response`] a handler fills, and its encoding into the connection's output.
//!
//! A handler writes status, headers and body into reusable per-worker buffers; after it returns,
//! [`encode`] frames the response (status line, `Server`/`Date`, the handler's headers,
//! `Content-Length` or chunked, `Connection`) straight into the connection's output buffer.
//! Framing headers are the server's business alone, so a handler cannot produce a mis-framed
//! response.
//!
//! A body need not be copied: [`Response::body_from`] hands over bytes the handler already has
//! (shared or owned), [`Response::stream`] a body produced as the socket drains, and
//! [`Response::file`] a file the kernel sends itself (see [`super::outgoing`]).

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use super::is_token;
use super::outgoing::{Chunks, Pull, Source};

/// What a handler writes. Borrowed from the worker; cleared before each request.
#[derive(Debug)]
pub struct Response<'a> {
    status: u16,
    headers: &'a mut Vec<u8>,
    body: &'a mut Vec<u8>,
    /// A body that is not in `body`: held bytes, a stream or a file.
    source: Option<Source>,
    close: bool,
}

impl<'a> Response<'a> {
    pub(crate) fn new(headers: &'a mut Vec<u8>, body: &'a mut Vec<u8>) -> Self {
        headers.clear();
        body.clear();
        Response {
            status: 200,
            headers,
            body,
            source: None,
            close: false,
        }
    }

    /// Set the status code (default 200).
    ///
    /// # Panics
    /// Outside 200..=999: informational responses are the server's to send. A panic in a
    /// handler is caught and answered with 500.
    pub fn status(&mut self, code: u16) -> &mut Self {
        assert!(
            (200..=999).contains(&code),
            "status {code} is not a final 3-digit status"
        );
        self.status = code;
        self
    }

    /// Add a header line.
    ///
    /// `Connection: close` asks the server to close after this response.
    ///
    /// # Panics
    /// If the name is not an HTTP token, the value holds CR, LF or NUL (header injection), or the
    /// header is one the server manages (`Content-Length`, `Transfer-Encoding`, `Date`, or a
    /// `Connection` value other than `close`).
    pub fn header(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        let value = value.as_ref();
        assert!(is_token(name), "invalid header name {name:?}");
        assert!(
            !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0),
            "header {name} has CR, LF or NUL in its value"
        );
        if name.eq_ignore_ascii_case("connection") {
            assert!(
                value.trim_ascii().eq_ignore_ascii_case(b"close"),
                "only `Connection: close` may be set by a handler"
            );
            self.close = true;
            return self;
        }
        assert!(
            !["content-length", "transfer-encoding", "date"]
                .iter()
                .any(|m| name.eq_ignore_ascii_case(m)),
            "{name} is set by the server"
        );
        self.headers.extend_from_slice(name.as_bytes());
        self.headers.extend_from_slice(b": ");
        self.headers.extend_from_slice(value);
        self.headers.extend_from_slice(b"\r\n");
        self
    }

    /// Replace the body with a copy of `bytes` (for small bodies; see [`Self::body_from`]).
    pub fn body(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        self.source = None;
        self.body.clear();
        self.body.extend_from_slice(bytes.as_ref());
        self
    }

    /// The body buffer, to write into (`std::io::Write` works on it). A large body written
    /// here is handed to the connection without a copy.
    pub fn body_mut(&mut self) -> &mut Vec<u8> {
        self.source = None;
        self.body
    }

    /// Send `bytes` as the body without copying them: shared bytes (`Arc<[u8]>`,
    /// `bytes::Bytes`, `&'static [u8]`) or an owned buffer (`Vec<u8>`, `String`). The
    /// connection keeps them until they are sent, and sends the head and them together in one
    /// vectored send (a body under 16 KiB is copied after the head instead: cheaper).
    pub fn body_from<B: AsRef<[u8]> + 'static>(&mut self, bytes: B) -> &mut Self {
        self.body.clear();
        self.source = Some(Source::Held(Box::new(bytes)));
        self
    }

    /// Send a body produced as the socket drains: the chunks are pulled only when there is
    /// room, so the connection holds at most 64 KiB of it (plus the chunk being sent), however
    /// slowly the client reads. Sent chunked (to an HTTP/1.0 client: until the connection
    /// closes). HEAD and 304 responses never pull it. A panic while pulling closes the
    /// connection (the response is cut short; it cannot be answered with 500 any more).
    pub fn stream<I>(&mut self, chunks: I) -> &mut Self
    where
        I: IntoIterator,
        I::IntoIter: 'static,
        I::Item: AsRef<[u8]>,
    {
        self.set_stream(None, chunks)
    }

    /// [`Self::stream`] a body of exactly `len` bytes, sent with `Content-Length`. A stream
    /// that ends short of `len`, or goes on past it, is a handler bug: it is logged and the
    /// connection closes after what was sent (the client sees an incomplete response).
    pub fn stream_sized<I>(&mut self, len: u64, chunks: I) -> &mut Self
    where
        I: IntoIterator,
        I::IntoIter: 'static,
        I::Item: AsRef<[u8]>,
    {
        self.set_stream(Some(len), chunks)
    }

    fn set_stream<I>(&mut self, len: Option<u64>, chunks: I) -> &mut Self
    where
        I: IntoIterator,
        I::IntoIter: 'static,
        I::Item: AsRef<[u8]>,
    {
        self.body.clear();
        let source = Chunks::new(chunks.into_iter());
        self.source = Some(Source::Stream(Box::new(source), len));
        self
    }

    /// Stream a body from `source` (of `len` bytes, if known), which may give less than it is
    /// asked for each pull (the WSGI bridge gives one item of the app's iterable a pull).
    #[cfg_attr(not(feature = "wsgi"), allow(dead_code))]
    pub(crate) fn stream_from(&mut self, len: Option<u64>, source: Box<dyn Pull>) -> &mut Self {
        self.body.clear();
        self.source = Some(Source::Stream(source, len));
        self
    }

    /// Send the whole of `file` as the body, zero-copy: the kernel sends it from the page
    /// cache (sendfile), never through user memory. Its length is taken now; a file that
    /// shrinks while being sent ends the response early (the connection closes).
    pub fn file(&mut self, file: File) -> io::Result<&mut Self> {
        let len = file.metadata()?.len();
        Ok(self.file_range(file, 0, len))
    }

    /// Send `len` bytes of `file` from `offset` as the body, zero-copy (see [`Self::file`]).
    /// The file may be owned (`File`, closed once sent) or shared (`Arc<File>`, `&'static
    /// File`). The handler sets the status (206) and `Content-Range` of a partial response.
    pub fn file_range<F: AsFd + 'static>(&mut self, file: F, offset: u64, len: u64) -> &mut Self {
        self.body.clear();
        let file = Box::new(file);
        self.source = Some(Source::File { file, offset, len });
        self
    }

    pub(crate) fn status_code(&self) -> u16 {
        self.status
    }

    pub(crate) fn wants_close(&self) -> bool {
        self.close
    }

    /// The body that is not in the body buffer, if the handler gave one.
    pub(crate) fn take_source(&mut self) -> Option<Source> {
        self.source.take()
    }
}

/// How a response's body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Length {
    /// `Content-Length: n`.
    Known(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body ends when the connection closes (HTTP/1.0 streams).
    UntilClose,
}

/// How a response is framed on the wire, decided by the connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Framing {
    /// The request was HEAD: send the headers of the body but not the body.
    pub head: bool,
    /// The connection closes after this response.
    pub close: bool,
    /// An HTTP/1.0 client asked for keep-alive and gets it: say so.
    pub keep_alive_10: bool,
}

/// Whether a response with this status carries a body at all (1xx, 204 and 304 do not).
pub(crate) fn has_body(status: u16) -> bool {
    !(status == 204 || status == 304 || status < 200)
}

/// Append one response to `out`. `server_date` is the cached `Server: …\r\nDate: …\r\n` block.
pub(crate) fn encode(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[u8],
    body: &[u8],
    framing: Framing,
    server_date: &[u8],
) {
    let send_body = has_body(status) && !framing.head;
    out.reserve(64 + server_date.len() + headers.len() + if send_body { body.len() } else { 0 });
    encode_head(
        out,
        status,
        headers,
        Length::Known(body.len() as u64),
        framing,
        server_date,
    );
    if send_body {
        out.extend_from_slice(body);
    }
}

/// Append a response's head to `out`; its body (if any) follows it.
#[inline(always)]
pub(crate) fn encode_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[u8],
    length: Length,
    framing: Framing,
    server_date: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status_line(status).as_bytes());
    out.extend_from_slice(server_date);
    out.extend_from_slice(headers);
    if has_body(status) {
        match length {
            Length::Known(n) => {
                out.extend_from_slice(b"Content-Length: ");
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Length::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            Length::UntilClose => {}
        }
    }
    if framing.close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if framing.keep_alive_10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// `100 Continue`, sent before reading a body the client holds back for it.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The status code, reason phrase and CRLF that follow `HTTP/1.1 `.
fn status_line(status: u16) -> std::borrow::Cow<'static, str> {
    match status {
        200 => "200 OK\r\n".into(),
        _ => format!("{status} {}\r\n", reason(status)).into(),
    }
}

/// The reason phrase of a status (empty for codes without a registered one).
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SD: &[u8] = b"Server: ringcorn\r\nDate: Fri, 20 Nov 2026 00:00:00 GMT\r\n";

    fn framing(head: bool, close: bool, keep_alive_10: bool) -> Framing {
        Framing {
            head,
            close,
            keep_alive_10,
        }
    }

    #[test]
    fn encodes_a_plain_response() {
        let mut out = Vec::new();
        encode(
            &mut out,
            200,
            b"Content-Type: text/plain\r\n",
            b"hi",
            framing(false, false, false),
            SD,
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nServer: ringcorn\r\nDate: Fri, 20 Nov 2026 00:00:00 GMT\r\n\
              Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        );
    }

    #[test]
    fn head_and_bodiless_statuses() {
        let mut out = Vec::new();
        encode(&mut out, 200, b"", b"hello", framing(true, true, false), SD);
        let text = String::from_utf8(out).expect("ascii");
        assert!(
            text.ends_with("Content-Length: 5\r\nConnection: close\r\n\r\n"),
            "{text}"
        );
        let mut out = Vec::new();
        encode(
            &mut out,
            204,
            b"",
            b"ignored",
            framing(false, false, true),
            SD,
        );
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 204 No Content\r\n"));
        assert!(
            !text.contains("Content-Length") && text.ends_with("Connection: keep-alive\r\n\r\n"),
            "{text}"
        );
    }

    #[test]
    fn unknown_status_has_empty_reason() {
        assert_eq!(status_line(299), "299 \r\n");
    }

    #[test]
    fn builder_rejects_injection_and_managed_headers() {
        let (mut h, mut b) = (Vec::new(), Vec::new());
        let mut res = Response::new(&mut h, &mut b);
        res.header("X-Ok", "1").header("Connection", "close");
        assert!(res.wants_close());
        for (name, value) in [
            ("X-Bad", "a\r\nInjected: 1"),
            ("Bad Name", "v"),
            ("Content-Length", "3"),
            ("Connection", "upgrade"),
        ] {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let (mut h, mut b) = (Vec::new(), Vec::new());
                Response::new(&mut h, &mut b).header(name, value);
            }));
            assert!(result.is_err(), "{name}: {value} was accepted");
        }
        assert_eq!(h, b"X-Ok: 1\r\n");
    }
}
