//! Which crypto provider for rustls: aws-lc-rs or ring, measured on the server's side of the
//! work that matters here, in memory (no sockets, one thread):
//!
//! - a full TLS 1.3 handshake with an ECDSA P-256 certificate and X25519 (what OpenSSL 3.0
//!   clients offer): the server's CPU time per handshake;
//! - a resumed TLS 1.3 handshake (a ticket from the first);
//! - AES-128-GCM: encrypting 16 KiB records (a large response), and a 150-byte one (a small
//!   response), server side.
//!
//! Only the server's calls are timed; the client's work is done between them. Run:
//!
//! ```sh
//! cargo run --release --manifest-path benches/peers/Cargo.toml --bin tls-providers [ROUNDS]
//! ```

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ConnectionCommon, ServerConfig, ServerConnection};

fn configs(provider: CryptoProvider) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let cert = made.cert.der().clone();
    let key = PrivateKeyDer::try_from(made.key_pair.serialize_der()).expect("key");
    // X25519 only, on both sides: the group OpenSSL 3.0 clients pick.
    let mut provider = provider;
    provider
        .kx_groups
        .retain(|g| g.name() == rustls::NamedGroup::X25519);
    let provider = Arc::new(provider);
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server");
    server.send_tls13_tickets = 1;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("root");
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// Move what `from` has to send into `to` (a client's or a server's side alike).
fn pass<A, B>(from: &mut ConnectionCommon<A>, to: &mut ConnectionCommon<B>) {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire).expect("write");
    }
    let mut rest = &wire[..];
    while !rest.is_empty() {
        feed(to, &mut rest);
    }
}

/// Give `input` to one side and let it process what arrived.
fn feed<D>(to: &mut ConnectionCommon<D>, input: &mut &[u8]) {
    to.read_tls(input).expect("read");
    to.process_new_packets().expect("tls ok");
}

/// One handshake (and one small request and answer); returns the server's time.
fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> (Duration, bool) {
    let name = ServerName::try_from("localhost").expect("name");
    let mut c = ClientConnection::new(client.clone(), name).expect("client");
    let mut spent = Duration::ZERO;
    let t = Instant::now();
    let mut s = ServerConnection::new(server.clone()).expect("server");
    spent += t.elapsed();
    c.writer()
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .expect("request");
    for _ in 0..8 {
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).expect("write");
        }
        let t = Instant::now();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            feed(&mut s, &mut rest);
        }
        let mut buf = [0u8; 64];
        if let Ok(n) = s.reader().read(&mut buf) {
            if n > 0 {
                s.writer()
                    .write_all(b"HTTP/1.1 200 OK\r\n\r\n")
                    .expect("answer");
            }
        }
        let mut back = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut back).expect("write");
        }
        spent += t.elapsed();
        let mut rest = &back[..];
        while !rest.is_empty() {
            feed(&mut c, &mut rest);
        }
        let mut got = Vec::new();
        let _ = c.reader().read_to_end(&mut got);
        if !got.is_empty() {
            break;
        }
    }
    let resumed = s.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    (spent, resumed)
}

/// The cipher suite the two negotiate.
fn suite(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> Option<rustls::CipherSuite> {
    let name = ServerName::try_from("localhost").expect("name");
    let mut c = ClientConnection::new(client.clone(), name).expect("client");
    let mut s = ServerConnection::new(server.clone()).expect("server");
    for _ in 0..4 {
        pass(&mut c, &mut s);
        pass(&mut s, &mut c);
    }
    s.negotiated_cipher_suite().map(|c| c.suite())
}

/// Server time to encrypt `total` bytes of application data in records of `record` bytes.
fn encrypt(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
    record: usize,
    total: usize,
) -> Duration {
    let name = ServerName::try_from("localhost").expect("name");
    let mut c = ClientConnection::new(client.clone(), name).expect("client");
    let mut s = ServerConnection::new(server.clone()).expect("server");
    for _ in 0..4 {
        pass(&mut c, &mut s);
        pass(&mut s, &mut c);
    }
    let plain = vec![b'x'; record];
    let mut out = Vec::with_capacity(record + 64);
    let t = Instant::now();
    let mut done = 0;
    while done < total {
        s.writer().write_all(&plain).expect("plain");
        while s.wants_write() {
            out.clear();
            s.write_tls(&mut out).expect("write");
        }
        done += record;
    }
    t.elapsed()
}

type MakeProvider = fn() -> CryptoProvider;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let providers: [(&str, MakeProvider); 2] = [
        ("aws-lc-rs", rustls::crypto::aws_lc_rs::default_provider),
        ("ring", rustls::crypto::ring::default_provider),
    ];
    println!("provider   full µs  resumed µs  16 KiB records MB/s  150 B records µs each");
    for round in 0..rounds {
        for (name, make) in providers {
            let (server, client) = configs(make());
            let n = 300;
            let mut full = Duration::ZERO;
            for _ in 0..n {
                full += handshake(&server, &client).0;
            }
            // The client's session cache now holds tickets: these resume.
            let mut resumed = Duration::ZERO;
            let mut count = 0;
            for _ in 0..n {
                let (t, was) = handshake(&server, &client);
                if was {
                    resumed += t;
                    count += 1;
                }
            }
            if round == 0 {
                println!("{name}: {:?}", suite(&server, &client));
            }
            let big = encrypt(&server, &client, 16 * 1024, 64 << 20);
            let small = encrypt(&server, &client, 150, 150 * 20_000);
            println!(
                "{name:<10} {:>7.1}  {:>10.1}  {:>19.0}  {:>21.2}   (round {round}, {count} resumed)",
                full.as_secs_f64() * 1e6 / n as f64,
                resumed.as_secs_f64() * 1e6 / count.max(1) as f64,
                (64 << 20) as f64 / big.as_secs_f64() / 1e6,
                small.as_secs_f64() * 1e6 / 20_000.0,
            );
        }
    }
}
