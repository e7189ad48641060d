//! Responses: the [`Response`] a handler fills, and its encoding into the connection's output.
//!
//! A handler writes status, headers and body into reusable per-worker buffers; after it returns,
//! [`encode`] frames the response (status line, `Server`/`Date`, the handler's headers,
//! `Content-Length`, `Connection`) straight into the connection's output buffer. Framing headers
//! are the server's business alone, so a handler cannot produce a mis-framed response.

/// What a handler writes. Borrowed from the worker; cleared before each request.
#[derive(Debug)]
pub struct Response<'a> {
    status: u16,
    headers: &'a mut Vec<u8>,
    body: &'a mut Vec<u8>,
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

    /// Replace the body.
    pub fn body(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        self.body.clear();
        self.body.extend_from_slice(bytes.as_ref());
        self
    }

    /// The body buffer, to write into (`std::io::Write` works on it).
    pub fn body_mut(&mut self) -> &mut Vec<u8> {
        self.body
    }

    pub(crate) fn status_code(&self) -> u16 {
        self.status
    }

    pub(crate) fn wants_close(&self) -> bool {
        self.close
    }
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

/// Append one response to `out`. `server_date` is the cached `Server: …\r\nDate: …\r\n` block.
pub(crate) fn encode(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[u8],
    body: &[u8],
    framing: Framing,
    server_date: &[u8],
) {
    let has_body = !(status == 204 || status == 304 || status < 200);
    let send_body = has_body && !framing.head;
    out.reserve(64 + server_date.len() + headers.len() + if send_body { body.len() } else { 0 });
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status_line(status).as_bytes());
    out.extend_from_slice(server_date);
    out.extend_from_slice(headers);
    if has_body {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if framing.close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if framing.keep_alive_10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if send_body {
        out.extend_from_slice(body);
    }
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
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
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

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(super::is_token_byte)
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
