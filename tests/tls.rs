//! TLS termination, end to end: a rustls client (and curl and `openssl s_client` where they
//! are installed) against the real server. The certificates are made here by rcgen.
//!
//! Covered: TLS 1.3 and 1.2, ALPN, SNI choosing among certificates, resumption across
//! workers, `https` as the scheme and what the handshake settled (`Request::tls`, the access
//! log's TLS atoms), large and streamed bodies and files over TLS, client certificates (from
//! rustls, curl and `openssl s_client`, seen by the handler), a mix of plain and TLS
//! addresses, plain HTTP to a TLS port, garbage, a handshake sent byte by byte, a stalled
//! handshake, clients that stop reading, certificate errors at start, and certificates
//! reloaded on HUP.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{run_cli, Server, TempDir, IO_TIMEOUT};
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A certificate and its key, written as PEM files.
struct Cert {
    der: CertificateDer<'static>,
    certfile: PathBuf,
    keyfile: PathBuf,
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Cert {
    /// A self-signed certificate for `names`, valid now.
    fn new(dir: &Path, tag: &str, names: &[&str]) -> Cert {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("names");
        Cert::from_params(dir, tag, params, None)
    }

    fn from_params(
        dir: &Path,
        tag: &str,
        params: rcgen::CertificateParams,
        issuer: Option<&Cert>,
    ) -> Cert {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = match issuer {
            None => params.self_signed(&key).expect("self-signed"),
            Some(ca) => params.signed_by(&key, &ca.cert, &ca.key).expect("signed"),
        };
        let certfile = dir.join(format!("{tag}.crt"));
        let keyfile = dir.join(format!("{tag}.key"));
        std::fs::write(&certfile, cert.pem()).expect("write cert");
        std::fs::write(&keyfile, key.serialize_pem()).expect("write key");
        Cert {
            der: cert.der().clone(),
            certfile,
            keyfile,
            cert,
            key,
        }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--certfile".into(),
            self.certfile.display().to_string(),
            "--keyfile".into(),
            self.keyfile.display().to_string(),
        ]
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// A client trusting `roots`, offering `http/1.1`, speaking only `version` (or both).
fn client(
    roots: &[&Cert],
    version: Option<&'static rustls::SupportedProtocolVersion>,
) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.der.clone()).expect("root");
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match version {
        Some(v) => vec![v],
        None => vec![&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions)
        .expect("versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn connect(addr: SocketAddr, config: &Arc<ClientConfig>, name: &str) -> Tls {
    let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    tcp.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let name = ServerName::try_from(name.to_string()).expect("name");
    let conn = ClientConnection::new(config.clone(), name).expect("client");
    StreamOwned::new(conn, tcp)
}

/// One response: status, head (lowercase names), body (by Content-Length or chunked).
struct Reply {
    status: u16,
    body: Vec<u8>,
}

fn read_reply(s: &mut impl Read) -> std::io::Result<Reply> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
        assert!(head.len() < 64 * 1024, "response head too long");
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head[9..12].parse().expect("status");
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.strip_prefix(&format!("{name}: "))
                .map(|v| v.trim().to_string())
        })
    };
    let mut body = Vec::new();
    if let Some(n) = header("content-length") {
        body.resize(n.parse().expect("length"), 0);
        s.read_exact(&mut body)?;
    } else if header("transfer-encoding").as_deref() == Some("chunked") {
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                s.read_exact(&mut byte)?;
                line.push(byte[0]);
            }
            let size = usize::from_str_radix(String::from_utf8_lossy(&line).trim(), 16)
                .expect("chunk size");
            let mut chunk = vec![0; size + 2];
            s.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    Ok(Reply { status, body })
}

fn get(s: &mut Tls, path: &str) -> Reply {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .expect("send");
    read_reply(s).expect("reply")
}

fn serve(certs: &[&Cert], extra: &[&str], app: &str) -> Server {
    let mut args: Vec<String> = vec![
        "--bind".into(),
        "127.0.0.1:0".into(),
        "--workers".into(),
        "1".into(),
    ];
    for c in certs {
        args.extend(c.args());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(app.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::spawn(&args)
}

/// The server with `args` (and `--bind 127.0.0.1:0 hello`) exits 1, its error saying each of
/// `needles`.
fn refused(args: &[&str], needles: &[&str]) {
    let mut all = args.to_vec();
    all.extend(["--bind", "127.0.0.1:0", "hello"]);
    let out = run_cli(&all);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{args:?}: want {needle:?}: {err}");
    }
}

#[test]
fn serves_https_over_tls13_and_tls12_with_alpn_and_keep_alive() {
    let dir = TempDir::new("tls-basic");
    let cert = Cert::new(dir.path(), "a", &["localhost"]);
    let server = serve(&[&cert], &[], "hello");
    assert!(
        server.log().contains("Listening at: https://"),
        "{}",
        server.log()
    );
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut s = connect(server.addr(), &client(&[&cert], Some(version)), "localhost");
        for _ in 0..3 {
            let r = get(&mut s, "/");
            assert_eq!(r.status, 200);
            assert_eq!(r.body, b"Hello, World!");
        }
        assert_eq!(s.conn.protocol_version(), Some(version.version));
        assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    }
}

#[test]
fn requests_know_they_came_over_https_and_what_the_handshake_settled() {
    let dir = TempDir::new("tls-scheme");
    let cert = Cert::new(dir.path(), "a", &["localhost"]);
    let server = serve(&[&cert], &[], "conninfo");
    for (version, name) in [
        (&rustls::version::TLS13, "TLSv1.3"),
        (&rustls::version::TLS12, "TLSv1.2"),
    ] {
        let mut s = connect(server.addr(), &client(&[&cert], Some(version)), "localhost");
        let r = get(&mut s, "/");
        let body = String::from_utf8_lossy(&r.body);
        let suite = s
            .conn
            .negotiated_cipher_suite()
            .and_then(|c| c.suite().as_str())
            .expect("suite");
        for line in [
            "scheme=https".to_string(),
            format!("tls={name}"),
            format!("cipher={suite}"),
            "sni=localhost".into(),
            "alpn=http/1.1".into(),
            "client=-".into(),
        ] {
            assert!(body.lines().any(|l| l == line), "want {line}:\n{body}");
        }
    }
}

#[test]
fn sni_chooses_the_certificate_and_the_first_answers_the_rest() {
    let dir = TempDir::new("tls-sni");
    let a = Cert::new(dir.path(), "a", &["a.test"]);
    let b = Cert::new(dir.path(), "b", &["*.b.test"]);
    let server = serve(&[&a, &b], &[], "hello");
    let config = client(&[&a, &b], None);
    for (name, want) in [("a.test", &a), ("www.b.test", &b)] {
        let mut s = connect(server.addr(), &config, name);
        assert_eq!(get(&mut s, "/").status, 200);
        let presented = s.conn.peer_certificates().expect("certificates");
        assert_eq!(presented[0], want.der, "for {name}");
    }
    // A name neither covers gets the first certificate, which the client then refuses.
    let mut s = connect(server.addr(), &config, "other.test");
    let err = s
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .and_then(|_| s.flush());
    let read = read_reply(&mut s);
    assert!(
        err.is_err() || read.is_err(),
        "other.test must not verify against a.test's certificate"
    );
}

#[test]
fn sessions_resume_on_whichever_worker_thread_or_process() {
    let dir = TempDir::new("tls-resume");
    let cert = Cert::new(dir.path(), "a", &["localhost"]);
    for class in ["thread", "process"] {
        let mut args = cert.args();
        args.extend(
            [
                "--bind",
                "127.0.0.1:0",
                "--workers",
                "2",
                "--worker-class",
                class,
                "hello",
            ]
            .map(String::from),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Server::spawn(&args);
        resumes_everywhere(&server, &cert, class);
    }
}

fn resumes_everywhere(server: &Server, cert: &Cert, class: &str) {
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        // The client keeps its session cache across connections.
        let config = client(&[cert], Some(version));
        let mut resumed = 0;
        for i in 0..8 {
            let mut s = connect(server.addr(), &config, "localhost");
            assert_eq!(get(&mut s, "/").status, 200);
            if i > 0 && s.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                resumed += 1;
            }
        }
        // Eight connections land on both workers; every one after the first resumes.
        assert_eq!(resumed, 7, "{class} workers, {version:?}");
    }
}

#[test]
fn large_streamed_and_file_bodies_arrive_whole_over_tls() {
    let dir = TempDir::new("tls-bodies");
    let cert = Cert::new(dir.path(), "a", &["localhost"]);
    // Handlers on the worker's thread, and on handler threads (`--threads`): a stream then
    // crosses from its thread through the feed, a file by its own descriptor.
    for extra in [&[][..], &["--threads", "2"]] {
        let server = serve(&[&cert], extra, "bytes");
        let mut s = connect(server.addr(), &client(&[&cert], None), "localhost");
        for path in [
            "/13",
            "/1048576",
            "/3000000?body=stream",
            "/200000?body=vec",
            "/70000?body=shared",
            "/5000000",
        ] {
            let r = get(&mut s, path);
            assert_eq!(r.status, 200, "{path} {extra:?}");
            let n: usize = path[1..]
                .split('?')
                .next()
                .unwrap_or("0")
                .parse()
                .expect("size");
            assert_eq!(r.body.len(), n, "{path} {extra:?}");
            assert!(r.body.iter().all(|&b| b == b'x'), "{path} {extra:?}");
        }
    }
    let root = dir.path().join("root");
    std::fs::create_dir(&root).expect("root");
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("big.bin"), &content).expect("file");
    let root_arg = root.display().to_string();
    let server = serve(&[&cert], &["--root", &root_arg], "static");
    let mut s = connect(server.addr(), &client(&[&cert], None), "localhost");
    let r = get(&mut s, "/big.bin");
    assert_eq!(r.status, 200);
    assert!(r.body == content, "the file arrives as it is");
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=1000-1999\r\n\r\n")
        .expect("send");
    let r = read_reply(&mut s).expect("reply");
    assert_eq!(r.status, 206);
    assert!(r.body == content[1000..2000]);
}

#[test]
fn plain_http_on_a_tls_port_gets_a_plaintext_400() {
    let dir = TempDir::new("tls-plain");
    let cert = Cert::new(dir.path(), "a", &["localhost"]);
    let server = serve(&[&cert], &[], "hello");
    let mut tcp = TcpStream::connect(server.addr()).expect("connect");
    tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut all = Vec::new();
    tcp.read_to_end(&mut all).expect("closed after the answer");
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert!(text.contains("plain HTTP was sent to a TLS port"), "{text}");
    // The server is fine.
    let mut s = connect(server.addr(), &client(&[&cert], None), "localhost");
    assert_eq!(get(&mut s, "/").status, 200);
}

#[test]
fn garbage_a_truncated_hello_and_a_stall_are_cut_and_nothing_else_waits() {
    let dir = TempDir::new("tls-garbage");
    let cert = Cert::new(dir.path(), "a", &["localhost"]);
    let server = serve(&[&cert], &["--header-timeout", "1"], "hello");
    let config = client(&[&cert], None);
    // Garbage that looks like a handshake record.
    let mut junk = TcpStream::connect(server.addr()).expect("connect");
    junk.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    junk.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5, 0xff, 0xff])
        .expect("send");
    let mut buf = Vec::new();
    let _ = junk.read_to_end(&mut buf); // an alert, then the close
    assert!(buf.len() < 64, "at most an alert came back: {buf:?}");
    // The first bytes of a real ClientHello, then nothing: cut by the header deadline.
    let mut hello = Vec::new();
    let mut c = ClientConnection::new(
        config.clone(),
        ServerName::try_from("localhost").expect("n"),
    )
    .expect("c");
    c.write_tls(&mut hello).expect("hello");
    let mut stalled = TcpStream::connect(server.addr()).expect("connect");
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stalled.write_all(&hello[..hello.len() / 2]).expect("send");
    // Meanwhile others are served at once.
    let started = Instant::now();
    let mut s = connect(server.addr(), &config, "localhost");
    assert_eq!(get(&mut s, "/").status, 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    let mut buf = [0u8; 64];
    let n = match stalled.read(&mut buf) {
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => 0,
        Err(e) => panic!("the stalled handshake was not cut: {e}"),
    };
    assert_eq!(n, 0, "closed without a word");
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(4),
        "cut after {waited:?} (--header-timeout 1)"
    );
}

#[test]
fn a_handshake_sent_byte_by_byte_completes() {
    let dir = TempDir::new("tls-bytewise");
    let cert = Cert::new(dir.path(), "a", &["localhost"]);
    let server = serve(&[&cert], &[], "hello");
    let config = client(&[&cert], None);
    let mut tcp = TcpStream::connect(server.addr()).expect("connect");
    tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    tcp.set_nodelay(true).expect("nodelay");
    let mut c =
        ClientConnection::new(config, ServerName::try_from("localhost").expect("n")).expect("c");
    c.writer()
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("queue");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut plain = Vec::new();
    while !plain.ends_with(b"Hello, World!") {
        assert!(
            Instant::now() < deadline,
            "no answer: {}",
            String::from_utf8_lossy(&plain)
        );
        let mut out = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut out).expect("tls");
        }
        for b in &out {
            tcp.write_all(std::slice::from_ref(b)).expect("one byte");
        }
        if c.wants_read() {
            let mut buf = [0u8; 4096];
            let n = tcp.read(&mut buf).expect("read");
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&plain));
            c.read_tls(&mut &buf[..n]).expect("tls in");
            c.process_new_packets().expect("tls ok");
            let _ = c.reader().read_to_end(&mut plain);
        }
    }
    assert!(plain.starts_with(b"HTTP/1.1 200 OK\r\n"));
}

/// The subject of the client certificates [`client_ca`] makes.
const CLIENT_SUBJECT: &str = "CN=client.test";

/// A CA (for `--ca-certs`) and a client certificate it signed, `CN=client.test`.
fn client_ca(dir: &Path) -> (Cert, Cert) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let ca = Cert::from_params(dir, "ca", ca_params, None);
    let mut leaf = rcgen::CertificateParams::new(vec!["client.test".to_string()]).expect("leaf");
    leaf.distinguished_name = rcgen::DistinguishedName::new();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "client.test");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = Cert::from_params(dir, "client", leaf, Some(&ca));
    (ca, client_cert)
}

#[test]
fn client_certificates_optional_and_required() {
    let dir = TempDir::new("tls-client-certs");
    let server_cert = Cert::new(dir.path(), "server", &["localhost"]);
    let (ca, client_cert) = client_ca(dir.path());
    let with_cert = {
        let mut store = RootCertStore::empty();
        store.add(server_cert.der.clone()).expect("root");
        let key = PrivateKeyDer::try_from(client_cert.key.serialize_der()).expect("key");
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(store)
            .with_client_auth_cert(vec![client_cert.der.clone()], key)
            .expect("client auth");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    };
    let without = client(&[&server_cert], None);
    let ca_file = ca.certfile.display().to_string();
    for (reqs, anonymous_ok) in [("optional", true), ("required", false)] {
        let server = serve(
            &[&server_cert],
            &["--ca-certs", &ca_file, "--cert-reqs", reqs],
            "conninfo",
        );
        // The handler sees the certificate the client showed.
        let mut s = connect(server.addr(), &with_cert, "localhost");
        let r = get(&mut s, "/");
        assert_eq!(r.status, 200, "{reqs}, with a certificate");
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            body.lines()
                .any(|l| l == format!("client={CLIENT_SUBJECT}")),
            "{reqs}: {body}"
        );
        let mut s = connect(server.addr(), &without, "localhost");
        let answered = s
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .and_then(|_| read_reply(&mut s))
            .ok()
            .filter(|r| r.status == 200);
        assert_eq!(
            answered.is_some(),
            anonymous_ok,
            "{reqs}, without a certificate"
        );
        if let Some(r) = answered {
            assert!(String::from_utf8_lossy(&r.body).contains("client=-\n"));
        }
    }
    // Gunicorn's numbers are accepted; asking for client certificates needs the roots.
    let (c, k) = (
        server_cert.certfile.display().to_string(),
        server_cert.keyfile.display().to_string(),
    );
    refused(
        &["--certfile", &c, "--keyfile", &k, "--cert-reqs", "2"],
        &["needs --ca-certs"],
    );
}

#[test]
fn tls_bind_serves_plain_and_tls_side_by_side() {
    let dir = TempDir::new("tls-mixed");
    let cert = Cert::new(dir.path(), "a", &["localhost"]);
    let mut args = cert.args();
    args.extend(
        [
            "--bind",
            "127.0.0.1:0",
            "--tls-bind",
            "127.0.0.2:0",
            "--workers",
            "1",
            "hello",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::spawn(&args);
    assert_eq!(server.addrs().len(), 2);
    let log = server.log();
    let plain = server
        .addrs()
        .iter()
        .copied()
        .find(|a| log.contains(&format!("Listening at: http://{a}")))
        .expect("plain");
    let tls = server
        .addrs()
        .iter()
        .copied()
        .find(|a| log.contains(&format!("Listening at: https://{a}")))
        .expect("tls");
    let mut c = common::connect(plain);
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read_response().status, 200);
    let mut s = connect(tls, &client(&[&cert], None), "localhost");
    assert_eq!(get(&mut s, "/").status, 200);
}

/// Each broken setup exits 1 with one error naming the file.
#[test]
fn certificate_problems_are_one_clear_error_naming_the_file() {
    let dir = TempDir::new("tls-errors");
    let good = Cert::new(dir.path(), "good", &["localhost"]);
    let other = Cert::new(dir.path(), "other", &["localhost"]);
    let mut old = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("p");
    old.not_before = rcgen::date_time_ymd(2001, 1, 1);
    old.not_after = rcgen::date_time_ymd(2002, 1, 1);
    let expired = Cert::from_params(dir.path(), "expired", old, None);
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello\n").expect("write");
    let missing = dir.path().join("missing.pem");
    let p = |p: &Path| p.display().to_string();
    let cases: Vec<(Vec<String>, String, &str)> = vec![
        (
            vec![p(&missing), p(&good.keyfile)],
            p(&missing),
            "cannot read",
        ),
        (
            vec![p(&not_pem), p(&good.keyfile)],
            p(&not_pem),
            "no certificate",
        ),
        (
            vec![p(&good.certfile), p(&not_pem)],
            p(&not_pem),
            "no private key",
        ),
        (
            vec![p(&good.certfile), p(&other.keyfile)],
            p(&other.keyfile),
            "does not match",
        ),
        (
            vec![p(&expired.certfile), p(&expired.keyfile)],
            p(&expired.certfile),
            "expired",
        ),
    ];
    for (files, named, what) in cases {
        refused(
            &["--certfile", &files[0], "--keyfile", &files[1]],
            &[&named, what],
        );
    }
    let (c, k) = (p(&good.certfile), p(&good.keyfile));
    refused(&["--certfile", &c], &["needs its --keyfile"]);
    refused(&["--tls-bind", "127.0.0.1:0"], &["needs --certfile"]);
    refused(
        &[
            "--certfile",
            &c,
            "--keyfile",
            &k,
            "--tls-bind",
            "127.0.0.1:0",
        ],
        &["both"],
    );
}

/// HUP loads the new certificate for new connections; a broken one leaves the old in place.
#[test]
fn hup_reloads_certificates_and_keeps_them_when_the_new_ones_are_broken() {
    let dir = TempDir::new("tls-reload");
    let first = Cert::new(dir.path(), "first", &["localhost"]);
    let second = Cert::new(dir.path(), "second", &["localhost"]);
    let live_cert = dir.path().join("live.crt");
    let live_key = dir.path().join("live.key");
    std::fs::copy(&first.certfile, &live_cert).expect("copy");
    std::fs::copy(&first.keyfile, &live_key).expect("copy");
    let (lc, lk) = (
        live_cert.display().to_string(),
        live_key.display().to_string(),
    );
    let mut server = Server::spawn(&[
        "--certfile",
        &lc,
        "--keyfile",
        &lk,
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "1",
        "hello",
    ]);
    // No resumption: a resumed session (its ticket outlives the reload) shows the certificate
    // it began with.
    let mut fresh = (*client(&[&first, &second], None)).clone();
    fresh.resumption = rustls::client::Resumption::disabled();
    let both = Arc::new(fresh);
    let presented = |server: &Server| {
        let mut s = connect(server.addr(), &both, "localhost");
        assert_eq!(get(&mut s, "/").status, 200);
        s.conn.peer_certificates().expect("certs")[0].clone()
    };
    assert_eq!(presented(&server), first.der);
    // A connection made before the reload keeps its session.
    let mut before = connect(server.addr(), &both, "localhost");
    assert_eq!(get(&mut before, "/").status, 200);
    std::fs::copy(&second.certfile, &live_cert).expect("copy");
    std::fs::copy(&second.keyfile, &live_key).expect("copy");
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while presented(&server) != second.der {
        assert!(
            Instant::now() < deadline,
            "the new certificate never served\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = get(&mut before, "/");
    assert_eq!(
        r.status, 200,
        "the old connection is answered (then closed by its draining worker)"
    );
    // A broken key: the reload is refused, the second certificate stays.
    std::fs::write(&live_key, "broken\n").expect("write");
    server.signal(libc::SIGHUP);
    server.expect_log("reload refused", Duration::from_secs(10));
    assert!(
        server.log().contains(&lk),
        "the log names the file\n{}",
        server.log()
    );
    assert_eq!(presented(&server), second.der);
}

/// curl and `openssl s_client` (resumption with -sess_out/-sess_in), where installed.
#[test]
fn real_clients_curl_and_openssl() {
    let have = |tool: &str| {
        std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok()
            || std::process::Command::new(tool)
                .arg("version")
                .output()
                .is_ok()
    };
    let missing: Vec<&str> = ["curl", "openssl"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !missing.is_empty() {
        let required = std::env::var_os("RINGCORN_REQUIRE_TOOLS").is_some_and(|v| v == "1");
        assert!(
            !required,
            "RINGCORN_REQUIRE_TOOLS=1 but {missing:?} missing"
        );
        eprintln!("NOTICE: skipped: {missing:?} not installed (apt-get install -y curl openssl)");
        return;
    }
    let dir = TempDir::new("tls-real");
    let cert = Cert::new(dir.path(), "a", &["localhost"]);
    let server = serve(&[&cert], &[], "hello");
    let port = server.addr().port();
    let ca = cert.certfile.display().to_string();
    for version in ["--tlsv1.3", "--tlsv1.2"] {
        let mut args = vec!["-sS", "--max-time", "5", "--cacert", &ca, version];
        if version == "--tlsv1.2" {
            args.extend(["--tls-max", "1.2"]);
        }
        let url = format!("https://localhost:{port}/");
        args.extend(["--resolve", "", &url]);
        let resolve = format!("localhost:{port}:127.0.0.1");
        let pos = args.iter().position(|a| a.is_empty()).expect("slot");
        args[pos] = &resolve;
        let out = std::process::Command::new("curl")
            .args(&args)
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello, World!");
    }
    for (flag, version) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let sess = dir
            .path()
            .join(format!("sess{flag}.pem"))
            .display()
            .to_string();
        let first = s_client(port, &ca, &[flag, "-sess_out", &sess]);
        assert!(first.contains("Verify return code: 0 (ok)"), "{first}");
        assert!(first.contains("ALPN protocol: http/1.1"), "{first}");
        assert!(first.contains(&format!("New, {version}")), "{first}");
        assert!(first.contains("Hello, World!"), "{first}");
        let second = s_client(port, &ca, &[flag, "-sess_in", &sess]);
        assert!(
            second.contains(&format!("Reused, {version}")),
            "resumed:\n{second}"
        );
        assert!(second.contains("Hello, World!"), "{second}");
    }

    // Client certificates, from both tools, reach the handler; without one, no answer.
    let (client_ca_cert, client_cert) = client_ca(dir.path());
    let required = serve(
        &[&cert],
        &[
            "--ca-certs",
            &client_ca_cert.certfile.display().to_string(),
            "--cert-reqs",
            "required",
        ],
        "conninfo",
    );
    let port = required.addr().port();
    let (c, k) = (
        client_cert.certfile.display().to_string(),
        client_cert.keyfile.display().to_string(),
    );
    let want = format!("client={CLIENT_SUBJECT}\n");
    let shown = s_client(port, &ca, &["-tls1_3", "-cert", &c, "-key", &k]);
    assert!(
        shown.contains(&want),
        "openssl with a certificate:\n{shown}"
    );
    let anonymous = s_client(port, &ca, &["-tls1_3"]);
    assert!(
        !anonymous.contains("scheme=https"),
        "answered without a client certificate:\n{anonymous}"
    );
    let url = format!("https://localhost:{port}/");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let curl = |extra: &[&str]| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            "5",
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
        ]);
        cmd.args(extra).arg(&url);
        cmd.output().expect("curl")
    };
    let out = curl(&["--cert", &c, "--key", &k]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&want),
        "curl with a certificate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !curl(&[]).status.success(),
        "curl without a certificate was answered"
    );
}

/// `openssl s_client` to 127.0.0.1:`port` (SNI `localhost`, ALPN `http/1.1`, trusting `ca`)
/// with `extra` arguments: sends one `GET /` and returns what it printed.
fn s_client(port: u16, ca: &str, extra: &[&str]) -> String {
    let mut cmd = std::process::Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-servername",
        "localhost",
        "-CAfile",
        ca,
        "-alpn",
        "http/1.1",
    ]);
    cmd.args(extra);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("openssl");
    let mut stdin = child.stdin.take().expect("stdin");
    // The server may already have closed (a refused handshake): a failed write is fine.
    let _ = stdin.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    std::thread::sleep(Duration::from_millis(500));
    drop(stdin);
    let out = child.wait_with_output().expect("output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `--proxy-protocol` with TLS: the PROXY header comes first, in plaintext, then the handshake.
#[test]
fn a_proxy_header_before_the_handshake_gives_the_client_address() {
    let dir = TempDir::new("tls-proxy");
    let cert = Cert::new(dir.path(), "a", &["localhost"]);
    let server = serve(&[&cert], &["--proxy-protocol", "v1"], "conninfo");
    let mut tcp = TcpStream::connect_timeout(&server.addr(), IO_TIMEOUT).expect("connect");
    tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    tcp.write_all(b"PROXY TCP4 192.0.2.7 198.51.100.1 4321 443\r\n")
        .expect("header");
    let name = ServerName::try_from("localhost").expect("name");
    let conn = ClientConnection::new(client(&[&cert], None), name).expect("client");
    let mut s = StreamOwned::new(conn, tcp);
    let r = get(&mut s, "/");
    let body = String::from_utf8_lossy(&r.body);
    assert!(body.contains("peer=192.0.2.7:4321"), "{body}");
    assert!(body.contains("scheme=https"), "{body}");
    // Without the header the connection is closed before any handshake.
    let mut bare = connect(server.addr(), &client(&[&cert], None), "localhost");
    let failed = bare
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .and_then(|_| read_reply(&mut bare));
    assert!(failed.is_err(), "served without its PROXY header");
}

/// The access log shows each request's TLS version, cipher and SNI name (`-` for plain HTTP).
#[test]
fn the_access_log_shows_the_tls_version_cipher_and_name() {
    let dir = TempDir::new("tls-access-log");
    let cert = Cert::new(dir.path(), "a", &["localhost"]);
    let log = dir.path().join("access.log");
    let mut args = cert.args();
    args.extend(
        [
            "--bind",
            "127.0.0.1:0",
            "--tls-bind",
            "127.0.0.2:0",
            "--workers",
            "1",
            "--access-logfile",
            &log.display().to_string(),
            "--access-logformat",
            "%(U)s %(tls_version)s %(tls_cipher)s %(tls_sni)s",
            "hello",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::spawn(&args);
    let listening = server.log();
    let find = |scheme: &str| {
        server
            .addrs()
            .iter()
            .copied()
            .find(|a| listening.contains(&format!("Listening at: {scheme}://{a}")))
            .expect(scheme)
    };
    let mut s = connect(find("https"), &client(&[&cert], None), "localhost");
    assert_eq!(get(&mut s, "/over-tls").status, 200);
    let suite = s
        .conn
        .negotiated_cipher_suite()
        .and_then(|c| c.suite().as_str())
        .expect("suite");
    let mut c = common::connect(find("http"));
    c.send(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.read_response().status, 200);
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        common::wait_until(Duration::from_secs(10), || read().lines().count() >= 2),
        "{}",
        read()
    );
    let text = read();
    assert!(
        text.lines()
            .any(|l| l == format!("/over-tls TLSv1.3 {suite} localhost")),
        "{text}"
    );
    assert!(text.lines().any(|l| l == "/plain - - -"), "{text}");
}

/// TLS clients that ask for 16 MiB and read none of it: the server holds a bounded piece of
/// each response (it encrypts only what the socket takes), keeps serving others, and cuts
/// them after `--send-timeout`.
#[test]
fn tls_clients_that_stop_reading_hold_bounded_memory_and_are_cut() {
    const STALLED: usize = 16;
    const SIZE: usize = 16 * 1024 * 1024;
    let dir = TempDir::new("tls-stalled");
    let cert = Cert::new(dir.path(), "a", &["localhost"]);
    let server = serve(&[&cert], &["--send-timeout", "2"], "bytes");
    let config = client(&[&cert], None);
    let request = format!("GET /{SIZE} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    // Warm up (the app's memfd, the worker's buffers, the allocator), then measure.
    let mut warm = connect(server.addr(), &config, "localhost");
    assert_eq!(get(&mut warm, &format!("/{SIZE}")).body.len(), SIZE);
    drop(warm);
    std::thread::sleep(Duration::from_millis(200));
    let before = common::vm_rss(server.pid());
    let name = ServerName::try_from("localhost").expect("name");
    let stalled: Vec<Tls> = (0..STALLED)
        .map(|_| {
            let tcp = common::connect_with_rcvbuf(server.addr(), 4096);
            let conn = ClientConnection::new(config.clone(), name.clone()).expect("client");
            let mut s = StreamOwned::new(conn, tcp);
            // Writing drives the handshake first; then nothing is read.
            s.write_all(request.as_bytes()).expect("request");
            s
        })
        .collect();
    // Meanwhile another client is answered.
    let mut other = connect(server.addr(), &config, "localhost");
    assert_eq!(get(&mut other, "/13").body.len(), 13);
    // Their sockets are full by now; the send timeout is still a second away.
    std::thread::sleep(Duration::from_millis(800));
    let after = common::vm_rss(server.pid());
    let growth = after.saturating_sub(before);
    let limit = STALLED * 256 * 1024 + 8 * 1024 * 1024;
    eprintln!(
        "{STALLED} stalled TLS readers: VmRSS +{} KiB (limit +{} KiB)",
        growth / 1024,
        limit / 1024
    );
    assert!(
        growth < limit,
        "{STALLED} stalled TLS readers of {SIZE} bytes grew the server by {growth} bytes (limit {limit})"
    );
    // Past the send timeout, each is cut: what reaches it is far short of the response.
    std::thread::sleep(Duration::from_secs(3));
    for (i, s) in stalled.into_iter().enumerate() {
        let mut tcp = s.sock;
        let mut got = 0usize;
        let mut buf = vec![0u8; 256 * 1024];
        let cut = loop {
            match tcp.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    got += n;
                    if got > SIZE {
                        break false;
                    }
                }
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
                Err(e) => panic!("stalled reader {i}: {e} after {got} bytes"),
            }
        };
        assert!(cut, "stalled reader {i} was sent the whole response");
    }
    assert_eq!(get(&mut other, "/13").body.len(), 13);
}
