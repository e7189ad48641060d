//! Fuzz the sans-IO TLS session (`ringcorn::tls::Session`) with the HTTP connection behind it,
//! driven the way the worker drives a socket: ciphertext in at arbitrary cuts, the output
//! sent at arbitrary cuts, idle sessions parked. The server's configuration is the real one
//! (`Tls::load`: certificate resolver, ALPN, shared ticket keys).
//!
//! # Input layout
//!
//! ```text
//! byte 0  cfg   bit  0    0: the bytes are what the client sends, raw (garbage, broken or
//!                         split handshakes); 1: a real rustls client handshakes first, and
//!                         the bytes are its plaintext (HTTP requests), encrypted
//!               bit  1    --proxy-protocol v1: the session expects a PROXY header first (the
//!                         client sends a valid one in mode 1; in mode 0 the bytes hold it)
//!               bit  2    park() whenever the session is idle before a read
//!               bit  3    the client speaks TLS 1.2 only (mode 1)
//!               bits 4-7  read size: CUTS[n] bytes of ciphertext per read
//! byte 1  send  bits 0-3  CUTS[n] bytes of output taken per send
//!               bits 4-7  plaintext written to the client per write: CUTS[n] (mode 1)
//! then the bytes
//! ```
//!
//! # What is checked (a panic here is a finding)
//!
//! - ringcorn does not panic (the handler's own panics are caught by ringcorn: fine);
//! - the session's own buffers stay bounded after every step ([`BOUND`]);
//! - the drive ends: at most [`IDLE_STEPS`] steps in a row move no bytes;
//! - mode 1: what the server sends is valid TLS to a real client (it never reports an
//!   error), and what it decrypts is HTTP/1.1 responses (it begins with `HTTP/1.1 `).

#![no_main]

use std::fs::File;
use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use ringcorn::http::{Connection, Context, Limits, Want};
use ringcorn::tls::{Session, Settings, Tls};
use ringcorn::{Request, Response};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

// Constants of src/tls/session.rs the bound is derived from (private there; keep in step).
/// `RECV_SIZE`: room for one read of ciphertext.
const RECV_SIZE: usize = 16 * 1024 + 512;
/// `ENCRYPT_MAX`: plaintext encrypted per send, at most.
const ENCRYPT_MAX: usize = 64 * 1024;
/// The session's own buffers (ciphertext in and out), at most: the input holds what rustls
/// has not taken plus one read; the output one batch of records (ENCRYPT_MAX of ciphertext
/// and the overhead of the last write's records), grown exactly to what it holds.
const BOUND: usize = 2 * RECV_SIZE + ENCRYPT_MAX + 1024;
/// Steps in a row that move no bytes before the drive is called stuck (a step that moves
/// none passes the turn: process, then send or read).
const IDLE_STEPS: usize = 1000;
/// The largest body the handler makes: several batches of ENCRYPT_MAX.
const BODY_MAX: usize = 256 * 1024;
const CUTS: [usize; 16] = [
    1 << 30,
    1,
    2,
    3,
    5,
    7,
    13,
    64,
    100,
    517,
    1024,
    4096,
    16 * 1024 + 5,
    16 * 1024 + 517,
    65_536,
    1 << 20,
];
const PROXY_V1: &[u8] = b"PROXY TCP4 192.0.2.1 192.0.2.2 1111 443\r\n";

struct Configs {
    server: Tls,
    client13: Arc<ClientConfig>,
    client12: Arc<ClientConfig>,
    file: File,
}

/// The server's configuration, loaded from a certificate made once; clients trusting it.
fn configs() -> &'static Configs {
    static CONFIGS: OnceLock<Configs> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ringcorn-fuzz-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let made =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        let (certfile, keyfile) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&certfile, made.cert.pem()).expect("write cert");
        std::fs::write(&keyfile, made.key_pair.serialize_pem()).expect("write key");
        let settings = Settings {
            certfiles: vec![certfile],
            keyfiles: vec![keyfile],
            ..Settings::default()
        };
        let server = Tls::load(&settings, None).expect("load");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(made.cert.der().clone()).expect("root");
        let client = |version: &'static rustls::SupportedProtocolVersion| {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut c = ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[version])
                .expect("versions")
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(c)
        };
        let mut file = File::from(tempfile_in(&dir));
        file.write_all(&vec![b'f'; BODY_MAX]).expect("file");
        Configs {
            server,
            client13: client(&rustls::version::TLS13),
            client12: client(&rustls::version::TLS12),
            file,
        }
    })
}

fn tempfile_in(dir: &std::path::Path) -> std::os::fd::OwnedFd {
    let path = dir.join("body");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("body file");
    let _ = std::fs::remove_file(&path);
    f.into()
}

/// `/N` answers N bytes, `/file/N` the first N bytes of a file, `/stream/N` N bytes pulled
/// in pieces (each at most [`BODY_MAX`]); anything else echoes the body.
fn handler(req: &Request<'_>, res: &mut Response<'_>) {
    let path = req.path();
    let n = |s: &str| s.parse::<usize>().ok();
    if let Some(k) = path.strip_prefix("/file/").and_then(n) {
        res.file_range(&configs().file, 0, k.min(BODY_MAX) as u64);
    } else if let Some(k) = path.strip_prefix("/stream/").and_then(n) {
        let k = k.min(BODY_MAX);
        res.stream((0..k.div_ceil(4096)).map(move |i| {
            let len = (k - i * 4096).min(4096);
            vec![b's'; len]
        }));
    } else if let Some(k) = path.strip_prefix('/').and_then(n) {
        res.body(vec![b'x'; k.min(BODY_MAX)]);
    } else {
        res.body(req.body());
    }
}

struct Plan<'a> {
    real_client: bool,
    proxy: bool,
    park: bool,
    tls12: bool,
    read_cut: usize,
    send_cut: usize,
    write_cut: usize,
    bytes: &'a [u8],
}

impl<'a> Plan<'a> {
    fn decode(data: &'a [u8]) -> Option<Plan<'a>> {
        let (&cfg, rest) = data.split_first()?;
        let (&send, bytes) = rest.split_first()?;
        Some(Plan {
            real_client: cfg & 1 != 0,
            proxy: cfg & 2 != 0,
            park: cfg & 4 != 0,
            tls12: cfg & 8 != 0,
            read_cut: CUTS[usize::from(cfg >> 4)],
            send_cut: CUTS[usize::from(send & 15)],
            write_cut: CUTS[usize::from(send >> 4)],
            bytes,
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(plan) = Plan::decode(data) else {
        return;
    };
    let configs = configs();
    let mut session = Session::new(&configs.server.config).expect("session");
    if plan.proxy {
        session.expect_proxy_header(ringcorn::http::proxy::Version::V1);
    }
    let mut http = Connection::new();
    let mut ctx = Context::new(Limits::default());
    let mut scratch = Vec::new();
    // Mode 1: a real client; its ciphertext is what the server receives.
    let mut client = plan.real_client.then(|| {
        let config = if plan.tls12 {
            &configs.client12
        } else {
            &configs.client13
        };
        let name = ServerName::try_from("localhost").expect("name");
        ClientConnection::new(config.clone(), name).expect("client")
    });
    let mut wire: Vec<u8> = Vec::new();
    let mut wire_at = 0;
    let mut plaintext_left = plan.bytes;
    if plan.real_client && plan.proxy {
        wire.extend_from_slice(PROXY_V1);
    } else if !plan.real_client {
        wire.extend_from_slice(plan.bytes);
    }
    let mut decrypted = Vec::new();
    let mut sent_total = 0;
    let mut idle = 0;
    let mut moved_before = 0;
    loop {
        let moved = wire_at + sent_total;
        idle = if moved == moved_before { idle + 1 } else { 0 };
        moved_before = moved;
        assert!(idle < IDLE_STEPS, "the drive does not end");
        assert!(
            session.buffered_bytes() <= BOUND,
            "the session holds {} bytes (bound {BOUND})",
            session.buffered_bytes()
        );
        match session.want(&http) {
            Want::Close => break,
            Want::Wait => panic!("waiting, with every handler inline"),
            Want::Write => {
                if !session.has_output() {
                    session.encrypt(&mut http, &mut scratch);
                    if !session.has_output() {
                        // Nothing could be encrypted (a file that ended early): the worker
                        // closes the connection.
                        break;
                    }
                }
                let out = session.output();
                let n = out.len().min(plan.send_cut);
                if let Some(c) = client.as_mut() {
                    deliver(c, &out[..n], &mut decrypted);
                }
                session.sent(n);
                sent_total += n;
                if !session.has_output() && http.want() != Want::Write {
                    http.process(&mut handler, &mut ctx);
                }
            }
            Want::Read if session.holds_input() => {
                if !session.take_input(&mut http, &mut ctx) {
                    // No room still: the request is beyond the limits (the worker closes).
                    break;
                }
                http.process(&mut handler, &mut ctx);
            }
            Want::Read => {
                if let Some(c) = client.as_mut() {
                    // The client's handshake flight, then its plaintext once it may send it.
                    if !c.is_handshaking() && !plaintext_left.is_empty() {
                        let k = plaintext_left.len().min(plan.write_cut);
                        c.writer().write_all(&plaintext_left[..k]).expect("client write");
                        plaintext_left = &plaintext_left[k..];
                    }
                    while c.wants_write() {
                        c.write_tls(&mut wire).expect("client out");
                    }
                }
                if wire_at == wire.len() {
                    break;
                }
                if plan.park {
                    session.park();
                }
                let buf = session.recv_buf();
                assert!(!buf.is_empty(), "an empty receive buffer");
                let k = buf.len().min(plan.read_cut).min(wire.len() - wire_at);
                buf[..k].copy_from_slice(&wire[wire_at..wire_at + k]);
                wire_at += k;
                session.received(k, &mut http, &mut ctx);
                http.process(&mut handler, &mut ctx);
            }
        }
    }
    if plan.real_client && !decrypted.is_empty() {
        assert!(
            decrypted.starts_with(b"HTTP/1.1 "),
            "decrypted output is not HTTP: {:?}",
            String::from_utf8_lossy(&decrypted[..decrypted.len().min(64)])
        );
    }
});

/// Give the client `bytes` of ciphertext; it must find them valid.
fn deliver(client: &mut ClientConnection, mut bytes: &[u8], decrypted: &mut Vec<u8>) {
    while !bytes.is_empty() {
        client.read_tls(&mut bytes).expect("client in");
        if let Err(e) = client.process_new_packets() {
            panic!("the client refused what the server sent: {e}");
        }
        let mut buf = [0u8; 16 * 1024];
        loop {
            match client.reader().read(&mut buf) {
                Ok(0) | Err(_) => break,
                // Only the first bytes are checked; keep memory flat.
                Ok(n) if decrypted.len() < 64 => decrypted.extend_from_slice(&buf[..n]),
                Ok(_) => {}
            }
        }
    }
}
