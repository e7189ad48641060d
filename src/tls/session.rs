//! One TLS connection, sans-IO, between the socket and the HTTP connection: ciphertext the
//! worker received goes in, and its plaintext into the [`Connection`]'s input; the
//! connection's output (bytes, held bodies, file regions) is encrypted into ciphertext for
//! the worker to send. The HTTP core does not know TLS is there.
//!
//! Memory stays bounded: at most one read of ciphertext is held, and the connection's output
//! is encrypted only once the ciphertext before it is sent, [`ENCRYPT_MAX`] at a time (a file
//! body is read in pieces that size), so a slow reader holds at most about that much. An
//! idle (parked) session gives its buffers back.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::{ProtocolVersion, ServerConfig, ServerConnection};

use crate::http::{proxy, Connection, Context, Plan, TlsInfo, Want};
use crate::metrics::Counter;

/// Room for one read of ciphertext: a whole TLS record (16 KiB of plaintext, its header and
/// the cipher's overhead).
pub const RECV_SIZE: usize = 16 * 1024 + 512;
/// Plaintext encrypted per send, at most.
pub const ENCRYPT_MAX: usize = 64 * 1024;
/// The most plaintext one record carries (rustls's default fragment size).
const RECORD_PLAINTEXT: usize = 16 * 1024;
/// What a record adds to its plaintext, at most: the header, TLS 1.2's explicit nonce, the
/// tag, TLS 1.3's content type.
const RECORD_OVERHEAD: usize = 32;
/// A buffer grown past this is freed, not kept, once it is empty.
const SHRINK_ABOVE: usize = 2 * ENCRYPT_MAX;

/// The answer to plain HTTP sent to a TLS port, in plaintext (as nginx answers it).
const PLAIN_HTTP: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 58\r\nConnection: close\r\n\r\n\
This port speaks HTTPS: plain HTTP was sent to a TLS port.\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing received yet.
    Fresh,
    Handshaking,
    Open,
    /// Send what is queued (an alert, close_notify, the plain-HTTP answer), then close.
    Closing,
}

/// A TLS session over one connection.
pub struct Session {
    tls: ServerConnection,
    /// Ciphertext received and not yet taken by rustls: `input[start..filled]`.
    input: Vec<u8>,
    start: usize,
    filled: usize,
    /// Ciphertext to send: `output[sent..]`.
    output: Vec<u8>,
    sent: usize,
    state: State,
    /// The client sent close_notify: nothing more will come.
    peer_closed: bool,
    /// rustls holds decrypted plaintext the HTTP connection had no room for.
    plaintext_left: bool,
    /// `--proxy-protocol`: the PROXY header still expected, before the handshake.
    proxy: Option<proxy::Version>,
}

impl Session {
    pub fn new(config: &Arc<ServerConfig>) -> Result<Session, rustls::Error> {
        Ok(Session {
            tls: ServerConnection::new(config.clone())?,
            input: Vec::new(),
            start: 0,
            filled: 0,
            output: Vec::new(),
            sent: 0,
            state: State::Fresh,
            peer_closed: false,
            plaintext_left: false,
            proxy: None,
        })
    }

    /// The connection begins with a PROXY protocol header, in plaintext, before the handshake.
    pub fn expect_proxy_header(&mut self, version: proxy::Version) {
        self.proxy = Some(version);
    }

    /// Room for the next read of ciphertext (never empty: a read is only asked for once the
    /// last one was taken).
    pub fn recv_buf(&mut self) -> &mut [u8] {
        if self.start == self.filled {
            self.start = 0;
            self.filled = 0;
        }
        if self.input.len() < self.filled + RECV_SIZE {
            if self.start > 0 {
                self.input.copy_within(self.start..self.filled, 0);
                self.filled -= self.start;
                self.start = 0;
            }
            self.input.resize(self.filled + RECV_SIZE, 0);
        }
        &mut self.input[self.filled..]
    }

    /// `n` bytes of ciphertext arrived in [`Self::recv_buf`]: decrypt what can be, into
    /// `http`'s input. Handshake replies, alerts and the like are queued for sending.
    pub fn received(&mut self, n: usize, http: &mut Connection, ctx: &mut Context) {
        assert!(
            self.filled + n <= self.input.len(),
            "received more than the buffer holds"
        );
        self.filled += n;
        self.take_input(http, ctx);
    }

    /// Feed what is held (ciphertext, and plaintext rustls decrypted that `http` had no room
    /// for) to `http`. Returns whether any plaintext moved.
    pub fn take_input(&mut self, http: &mut Connection, ctx: &mut Context) -> bool {
        if let Some(version) = self.proxy {
            match proxy::parse(&self.input[self.start..self.filled], version) {
                proxy::Parsed::Incomplete => return false,
                proxy::Parsed::Invalid(why) => {
                    tracing::debug!("PROXY header refused: {why}; closing");
                    ctx.counters.add(Counter::ProxyMalformed, 1);
                    self.state = State::Closing;
                    self.start = self.filled;
                    return false;
                }
                proxy::Parsed::Done { len, source, .. } => {
                    self.start += len;
                    self.proxy = None;
                    if let Some(source) = source {
                        ctx.conn.peer = Some(source);
                        ctx.conn_changed = true;
                    }
                }
            }
        }
        if self.state == State::Fresh && self.start < self.filled {
            if self.input[self.start].is_ascii_uppercase() {
                // `GET /…`: a TLS record starts with its content type (22 for a handshake).
                ctx.counters.add(Counter::TlsFailures, 1);
                self.output.extend_from_slice(PLAIN_HTTP);
                self.state = State::Closing;
                self.start = self.filled;
                return false;
            }
            self.state = State::Handshaking;
        }
        let mut moved = false;
        while matches!(self.state, State::Handshaking | State::Open) {
            let (progress, full) = self.plaintext_to(http, ctx);
            moved |= progress;
            self.plaintext_left = full;
            if full || self.start == self.filled {
                break;
            }
            let mut rd = &self.input[self.start..self.filled];
            match self.tls.read_tls(&mut rd) {
                Ok(0) | Err(_) => break, // its plaintext buffer is full: drained above first
                Ok(k) => self.start += k,
            }
            match self.tls.process_new_packets() {
                Ok(_) => {
                    if self.state == State::Handshaking && !self.tls.is_handshaking() {
                        self.state = State::Open;
                        ctx.counters.add(Counter::TlsHandshakes, 1);
                        ctx.conn.tls = Some(Arc::new(self.settled()));
                        ctx.conn_changed = true;
                    }
                }
                Err(e) => {
                    if self.state == State::Handshaking {
                        ctx.counters.add(Counter::TlsFailures, 1);
                    }
                    tracing::debug!("TLS: {e}; closing");
                    self.state = State::Closing;
                    self.start = self.filled;
                }
            }
        }
        if self.start == self.filled {
            self.start = 0;
            self.filled = 0;
            if self.input.len() > SHRINK_ABOVE {
                self.input = Vec::new();
            }
        }
        self.queue();
        moved
    }

    /// What the finished handshake settled.
    fn settled(&self) -> TlsInfo {
        let version = match self.tls.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "-",
        };
        let cipher = self
            .tls
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("-");
        TlsInfo {
            version,
            cipher,
            server_name: self.tls.server_name().map(Box::from),
            alpn: self
                .tls
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into()),
            client_certs: self
                .tls
                .peer_certificates()
                .unwrap_or_default()
                .iter()
                .map(|c| Box::from(c.as_ref()))
                .collect(),
        }
    }

    /// Move decrypted plaintext into `http`. Returns (whether any moved, whether `http` had
    /// no room for all of it).
    fn plaintext_to(&mut self, http: &mut Connection, ctx: &Context) -> (bool, bool) {
        let mut moved = false;
        loop {
            let buf = http.recv_buf(ctx);
            if buf.is_empty() {
                return (moved, true);
            }
            match self.tls.reader().read(buf) {
                Ok(0) => {
                    self.peer_closed = true;
                    return (moved, false);
                }
                Ok(k) => {
                    http.received(k);
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (moved, false),
                Err(_) => {
                    // Closed without close_notify: what was received is all there is.
                    self.peer_closed = true;
                    return (moved, false);
                }
            }
        }
    }

    /// Ciphertext is waiting to be sent.
    pub fn has_output(&self) -> bool {
        self.sent < self.output.len()
    }

    /// The ciphertext to send next.
    pub fn output(&self) -> &[u8] {
        &self.output[self.sent..]
    }

    /// `n` bytes of [`Self::output`] were sent.
    pub fn sent(&mut self, n: usize) {
        assert!(
            self.sent + n <= self.output.len(),
            "sent more than the output holds"
        );
        self.sent += n;
        if self.sent == self.output.len() {
            self.output.clear();
            self.sent = 0;
            if self.output.capacity() > SHRINK_ABOVE {
                self.output = Vec::new();
            }
        }
    }

    /// Encrypt what `http` owes into about [`ENCRYPT_MAX`] of ciphertext (a file region is
    /// read into `scratch` first) and tell `http` it was sent.
    pub fn encrypt(&mut self, http: &mut Connection, scratch: &mut Vec<u8>) {
        if self.state != State::Open {
            return;
        }
        loop {
            // No write takes more plaintext than the output has room for, so only the last
            // records' overhead can pass ENCRYPT_MAX, however small the pieces.
            let budget = ENCRYPT_MAX.saturating_sub(self.output.len());
            if budget == 0 {
                break;
            }
            let n = match http.plan() {
                Plan::Idle => break,
                Plan::Bytes(bytes) => self.write(&bytes[..bytes.len().min(budget)]),
                Plan::Vectored(first, second) => {
                    let mut n = self.write(&first[..first.len().min(budget)]);
                    let budget = ENCRYPT_MAX.saturating_sub(self.output.len());
                    if n == first.len() && budget > 0 {
                        n += self.write(&second[..second.len().min(budget)]);
                    }
                    n
                }
                Plan::File { head, .. } if !head.is_empty() => {
                    self.write(&head[..head.len().min(budget)])
                }
                Plan::File {
                    fd, offset, len, ..
                } => {
                    let want = usize::try_from(len).unwrap_or(usize::MAX).min(budget);
                    if scratch.len() < want {
                        scratch.resize(want, 0);
                    }
                    let off = i64::try_from(offset).unwrap_or(i64::MAX);
                    // SAFETY: pread writes at most `want` bytes into `scratch`, which holds at
                    // least that many; `fd` is the file the response holds open.
                    let got = unsafe { libc::pread(fd, scratch.as_mut_ptr().cast(), want, off) };
                    if got <= 0 {
                        // It shrank (0) or cannot be read: the response cannot be completed.
                        http.file_ended_early();
                        break;
                    }
                    self.write(&scratch[..got as usize])
                }
            };
            if n == 0 {
                break;
            }
            http.sent(n);
        }
        self.queue();
    }

    /// Encrypt plaintext; returns how much rustls took.
    fn write(&mut self, plain: &[u8]) -> usize {
        // Room for its records, exactly: the output grows to what it holds, never doubling
        // past it (a slow reader's output stays near ENCRYPT_MAX, not twice that).
        let records = plain.len().div_ceil(RECORD_PLAINTEXT).max(1);
        self.output
            .reserve_exact(plain.len() + records * RECORD_OVERHEAD);
        let n = self.tls.writer().write(plain).unwrap_or(0);
        self.queue();
        n
    }

    /// Move the records rustls has ready into the output.
    fn queue(&mut self) {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.output) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Closing: queue close_notify once. Returns whether it queued anything to send.
    pub fn close_notify(&mut self) -> bool {
        if self.state == State::Open {
            self.tls.send_close_notify();
            self.queue();
        }
        self.state = State::Closing;
        self.has_output()
    }

    /// What the connection needs next, TLS and HTTP together.
    pub fn want(&self, http: &Connection) -> Want {
        if self.has_output() {
            return Want::Write;
        }
        match self.state {
            State::Closing => Want::Close,
            State::Fresh | State::Handshaking if self.peer_closed => Want::Close,
            State::Fresh | State::Handshaking => Want::Read,
            State::Open => match http.want() {
                Want::Read if self.peer_closed && !self.holds_input() => Want::Close,
                want => want,
            },
        }
    }

    /// Input is held that `http` had no room for (so none should be read before it takes it).
    pub fn holds_input(&self) -> bool {
        self.plaintext_left
    }

    /// The handshake is not finished (the request deadline applies).
    pub fn handshaking(&self) -> bool {
        matches!(self.state, State::Fresh | State::Handshaking)
    }

    /// Give the buffers back while idle; returns whether it did.
    pub fn park(&mut self) -> bool {
        if self.start < self.filled || self.has_output() {
            return false;
        }
        self.input = Vec::new();
        self.start = 0;
        self.filled = 0;
        self.output = Vec::new();
        self.sent = 0;
        true
    }

    /// Bytes of memory this session's own buffers hold.
    pub fn buffered_bytes(&self) -> usize {
        self.input.capacity() + self.output.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Limits, Request, Response};
    use rustls::pki_types::{PrivateKeyDer, ServerName};
    use rustls::ClientConnection;

    fn configs() -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        let cert = made.cert.der().clone();
        let key = PrivateKeyDer::try_from(made.key_pair.serialize_der()).expect("key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .expect("server config");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).expect("root");
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    fn body_of_path(req: &Request<'_>, res: &mut Response<'_>) {
        // `/N` answers N bytes.
        let n: usize = req.path()[1..].parse().unwrap_or(0);
        res.body(vec![b'x'; n]);
    }

    /// Client and server joined in memory, `cut` bytes at a time each way; the server side
    /// is what the worker does: receive into the session, process, encrypt, send.
    fn exchange(requests: &[u8], cut: usize) -> (Vec<u8>, usize) {
        let (server_config, client_config) = configs();
        let mut session = Session::new(&server_config).expect("session");
        let mut http = Connection::new();
        let mut ctx = Context::new(Limits::default());
        let mut scratch = Vec::new();
        let name = ServerName::try_from("localhost").expect("name");
        let mut client = ClientConnection::new(client_config, name).expect("client");
        client.writer().write_all(requests).expect("queue");
        let mut plain = Vec::new();
        let mut most_held = 0;
        for _ in 0..100_000 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).expect("client out");
            }
            let mut rest = &wire[..];
            while !rest.is_empty() {
                let buf = session.recv_buf();
                let k = buf.len().min(rest.len()).min(cut);
                buf[..k].copy_from_slice(&rest[..k]);
                rest = &rest[k..];
                session.received(k, &mut http, &mut ctx);
                http.process(&mut body_of_path, &mut ctx);
            }
            let mut moved = !wire.is_empty();
            while session.want(&http) == Want::Write {
                if !session.has_output() {
                    session.encrypt(&mut http, &mut scratch);
                }
                most_held = most_held.max(session.buffered_bytes());
                let out = session.output().to_vec();
                for piece in out.chunks(cut) {
                    let mut rest = piece;
                    while !rest.is_empty() {
                        client.read_tls(&mut rest).expect("client in");
                        client.process_new_packets().expect("client ok");
                        let _ = client.reader().read_to_end(&mut plain);
                    }
                }
                session.sent(out.len());
                moved = true;
                http.process(&mut body_of_path, &mut ctx);
            }
            let _ = client.reader().read_to_end(&mut plain);
            if !moved {
                break;
            }
        }
        (plain, most_held)
    }

    #[test]
    fn requests_are_answered_through_tls_in_any_split() {
        let requests = b"GET /5 HTTP/1.1\r\nHost: h\r\n\r\nGET /3 HTTP/1.1\r\nHost: h\r\n\r\n";
        for cut in [1, 7, 100, 1 << 20] {
            let (plain, _) = exchange(requests, cut);
            let text = String::from_utf8_lossy(&plain);
            assert_eq!(
                text.matches("HTTP/1.1 200 OK").count(),
                2,
                "cut {cut}: {text}"
            );
            assert!(
                text.contains("\r\n\r\nxxxxxHTTP/1.1 200"),
                "cut {cut}: {text}"
            );
            assert!(text.ends_with("\r\n\r\nxxx"), "cut {cut}: {text}");
        }
    }

    #[test]
    fn a_large_body_is_encrypted_a_bounded_piece_at_a_time() {
        let (plain, most_held) = exchange(b"GET /3000000 HTTP/1.1\r\nHost: h\r\n\r\n", 1 << 20);
        let body_at = plain
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("head")
            + 4;
        assert_eq!(plain.len() - body_at, 3_000_000);
        assert!(
            most_held <= ENCRYPT_MAX + 1024 + 2 * RECV_SIZE,
            "held {most_held}"
        );
    }

    #[test]
    fn plain_http_gets_a_plaintext_400_and_garbage_a_close() {
        let (server_config, _) = configs();
        let mut ctx = Context::new(Limits::default());
        let mut http = Connection::new();
        let mut session = Session::new(&server_config).expect("session");
        let get = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        session.recv_buf()[..get.len()].copy_from_slice(get);
        session.received(get.len(), &mut http, &mut ctx);
        assert!(session
            .output()
            .starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
        let n = session.output().len();
        session.sent(n);
        assert_eq!(session.want(&http), Want::Close);
        assert_eq!(ctx.counters.get(Counter::TlsFailures), 1);

        let mut session = Session::new(&server_config).expect("session");
        let junk = [0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5];
        session.recv_buf()[..junk.len()].copy_from_slice(&junk);
        session.received(junk.len(), &mut http, &mut ctx);
        // An alert, then the close.
        while session.want(&http) == Want::Write {
            let n = session.output().len();
            session.sent(n);
        }
        assert_eq!(session.want(&http), Want::Close);
        assert_eq!(ctx.counters.get(Counter::TlsFailures), 2);
        assert!(!http.mid_request(), "nothing reached HTTP");
    }
}
