//! Sans-IO HTTP/1.1: bytes in, bytes out, no sockets.
//!
//! A [`Connection`] owns a connection's input and output buffers. Its owner (the worker's ring
//! loop, or a test, bench or fuzzer) receives bytes into [`Connection::recv_buf`], calls
//! [`Connection::process`] to answer every complete request through a [`Handler`], sends
//! [`Connection::output`], and follows [`Connection::want`] for what to do next.
//!
//! [`Handler`]: crate::Handler

pub mod access_log;
mod body;
mod conn;
mod date;
mod forwarded;
mod offload;
mod outgoing;
pub mod proxy;
mod request;
mod response;
mod spool;

pub use conn::{Connection, Want};
pub use date::DateCache;
pub use offload::{Defer, Job, Pump, Reply, Respond};
pub use outgoing::Plan;
#[cfg(feature = "wsgi")]
pub(crate) use outgoing::Pull;
pub use request::Request;
pub(crate) use response::reason;
pub use response::Response;

/// Size limits on requests; each has a conventional status when exceeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (414 beyond).
    pub max_request_line: usize,
    /// Longest header field line (431 beyond).
    pub max_header_line: usize,
    /// Largest request head, request line and headers together (431 beyond).
    pub max_head: usize,
    /// Most header fields (431 beyond); at most 256.
    pub max_header_count: usize,
    /// Largest request body, decoded (413 beyond, answered before reading it when declared).
    pub max_body: usize,
    /// A body larger than this is written to a temporary file as it arrives, not held in
    /// memory (`--body-buffer-size`).
    pub body_buffer: usize,
    /// Most chunk-extension bytes in one chunked body (400 beyond).
    pub max_chunk_extensions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_header_line: 8 * 1024,
            max_head: 32 * 1024,
            max_header_count: 100,
            max_body: 1024 * 1024,
            body_buffer: 1024 * 1024,
            max_chunk_extensions: 16 * 1024,
        }
    }
}

/// Pieces of the HTTP layer exposed for benchmarks and fuzzing only: not a stable API.
#[doc(hidden)]
pub mod internals {
    use std::mem::MaybeUninit;

    use super::request::{parse_head, HeaderSlots, MAX_HEADERS};
    use super::response::{encode, Framing};
    use super::Limits;

    /// The PROXY protocol parser.
    pub mod proxy {
        pub use crate::http::proxy::*;
    }

    /// Parse the request head at the start of `buf`: its length when complete and valid.
    pub fn parse_head_len(buf: &[u8], limits: &Limits) -> Option<usize> {
        let mut slots: HeaderSlots<'_> = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        parse_head(buf, &mut slots, limits)
            .ok()
            .flatten()
            .map(|h| h.len)
    }

    /// Encode a keep-alive response as the connection does.
    pub fn encode_response(
        out: &mut Vec<u8>,
        status: u16,
        headers: &[u8],
        body: &[u8],
        server_date: &[u8],
    ) {
        let framing = Framing {
            head: false,
            close: false,
            keep_alive_10: false,
        };
        encode(out, status, headers, body, framing, server_date);
    }
}

/// A `tchar` (RFC 9110 §5.6.2): the bytes of methods, header names and codings.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A token: header names (of responses, and those a WSGI app gives).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// RFC 3986 `unreserved` and `sub-delims` bytes: the bytes every URI component may carry as
/// they are.
pub(crate) const fn is_unreserved_or_sub_delim(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

/// A request the server refuses, with the status it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Error {
    BadRequest,
    PayloadTooLarge,
    UriTooLong,
    ExpectationFailed,
    HeadersTooLarge,
    NotImplemented,
    VersionNotSupported,
    /// The body could not be written to its temporary file (logged where it happened).
    BodyNotStored,
}

impl Error {
    pub(crate) fn status(self) -> u16 {
        match self {
            Error::BadRequest => 400,
            Error::PayloadTooLarge => 413,
            Error::UriTooLong => 414,
            Error::ExpectationFailed => 417,
            Error::HeadersTooLarge => 431,
            Error::NotImplemented => 501,
            Error::VersionNotSupported => 505,
            Error::BodyNotStored => 500,
        }
    }
}

/// What a request knows of its connection (set by the connection's owner before
/// [`Connection::process`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnInfo {
    /// The client: the TCP peer, or the address a trusted proxy reported. `None` over a Unix
    /// socket.
    pub peer: Option<std::net::SocketAddr>,
    /// The server's address the connection arrived on. `None` over a Unix socket.
    pub local: Option<std::net::SocketAddr>,
    pub scheme: Scheme,
    /// What the TLS handshake settled, once it has (`None` over plain HTTP).
    pub tls: Option<std::sync::Arc<TlsInfo>>,
}

/// What a TLS connection's handshake settled: what the access log can show and a handler can
/// ask for ([`Request::tls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: &'static str,
    /// The IANA name of the cipher suite: `TLS13_AES_128_GCM_SHA256`, ...
    pub cipher: &'static str,
    /// The name the client asked for (SNI), if it sent one.
    pub server_name: Option<Box<str>>,
    /// The protocol ALPN chose (`http/1.1`), if the client offered any.
    pub alpn: Option<Box<str>>,
    /// The client's certificate chain (DER, its own certificate first), verified against
    /// `--ca-certs`; empty when it sent none.
    pub client_certs: Vec<Box<[u8]>>,
}

/// What a request knows before its owner says (tests, benches).
pub(crate) static NO_CONN: ConnInfo = ConnInfo {
    peer: None,
    local: None,
    scheme: Scheme::Http,
    tls: None,
};

/// The URL scheme requests arrive with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Per-worker state shared by all its connections: limits, the Date cache, and the scratch
/// buffers a handler writes its response into (reused, so the hot path does not allocate).
#[derive(Debug, Default)]
pub struct Context {
    pub limits: Limits,
    pub date: DateCache,
    /// The connection being processed.
    pub conn: ConnInfo,
    /// `--access-logfile`: lines are rendered here, written out by the worker.
    pub access_log: Option<access_log::AccessLog>,
    /// A PROXY header replaced `conn.peer`, or a TLS handshake set `conn.tls`: the owner keeps
    /// the new [`ConnInfo`] for the connection.
    pub conn_changed: bool,
    /// `--forwarded-allow-ips`: peers whose forwarding headers are believed.
    pub forwarded_allow: Option<crate::config::Cidrs>,
    /// What the worker counts for its metrics (responses, refusals ...), kept here by the
    /// connection as it answers.
    pub counters: crate::metrics::Counters,
    /// `--body-temp-dir`: where bodies larger than `Limits::body_buffer` are written (the
    /// system's temporary directory when `None`).
    pub body_temp_dir: Option<std::path::PathBuf>,
    res_headers: Vec<u8>,
    res_body: Vec<u8>,
}

impl Context {
    pub fn new(limits: Limits) -> Self {
        Context {
            limits,
            ..Context::default()
        }
    }
}
