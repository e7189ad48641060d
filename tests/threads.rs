//! `--threads N`: handlers run on threads of their worker's own while its loop keeps serving.
//! A handler that sleeps does not hold up the worker's other connections; pipelined requests
//! are answered in order; bodies of every kind (copied, held, file, stream) cross over, a
//! stream through a bounded feed (a slow reader holds little memory); a panic is a 500; a
//! graceful stop waits for handlers under way; `--timeout` sees a handler stuck forever.

mod common;

use common::*;
use ringcorn::{Config, Request, Response, WorkerInfo};
use std::io::Write;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);

// The contract's documented style; stays valid if Config is `#[non_exhaustive]`.
#[allow(clippy::field_reassign_with_default)]
fn config(threads: usize) -> Config {
    let mut config = Config::default();
    config.workers = 1;
    config.threads = threads;
    config.binds = vec!["127.0.0.1:0".parse().expect("socket address")];
    config.limits.max_body = 64 << 20;
    config.limits.body_buffer = 64 * 1024;
    config
}

/// A file of `len` pattern bytes, for `/file`.
fn temp_file(len: usize) -> (tempfile_path::Path, Vec<u8>) {
    let bytes = pattern(len, 7);
    let path = tempfile_path::Path::new("threads-file");
    std::fs::write(&path.0, &bytes).expect("write the file");
    (path, bytes)
}

mod tempfile_path {
    /// A file under the system's temporary directory, removed when dropped.
    pub struct Path(pub std::path::PathBuf);

    impl Path {
        pub fn new(stem: &str) -> Path {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let name = format!("ringcorn-{stem}-{}-{n}", std::process::id());
            Path(std::env::temp_dir().join(name))
        }
    }

    impl Drop for Path {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// The test app: `/sleep/MS`, `/n/K` (answers K), `/panic`, `/stream/N` (N chunks of 1000
/// pattern bytes, produced slowly now and then), `/sized/N` (the same with Content-Length),
/// `/shared/N` (N bytes held by an `Rc`), `/file` (the file at `file`), `/upload` (the body's
/// length and whether it was spooled).
fn app(file: Arc<std::path::PathBuf>) -> impl Fn(WorkerInfo) -> Box<dyn ringcorn::Handler> {
    move |_worker| {
        let file = file.clone();
        Box::new(move |req: &Request<'_>, res: &mut Response<'_>| {
            let path = req.path();
            let arg = |prefix: &str| {
                path.strip_prefix(prefix)
                    .and_then(|n| n.parse::<usize>().ok())
            };
            if let Some(ms) = arg("/sleep/") {
                thread::sleep(Duration::from_millis(ms as u64));
                res.body(format!("slept {ms}"));
            } else if let Some(k) = arg("/n/") {
                res.body(format!("{k}"));
            } else if path == "/panic" {
                panic!("a handler panic the test asked for");
            } else if let Some(n) = arg("/stream/") {
                res.stream(slow_chunks(n));
            } else if let Some(n) = arg("/sized/") {
                res.stream_sized(n as u64 * 1000, slow_chunks(n));
            } else if let Some(n) = arg("/shared/") {
                res.body_from(std::rc::Rc::<[u8]>::from(pattern(n, 3)));
            } else if path == "/file" {
                match std::fs::File::open(&*file) {
                    Ok(f) => {
                        if let Err(e) = res.file(f) {
                            res.status(500).body(e.to_string());
                        }
                    }
                    Err(e) => {
                        res.status(500).body(e.to_string());
                    }
                }
            } else if path == "/upload" {
                let spooled = req.body_file().is_some();
                let ok = req.body() == pattern(req.body().len(), 5).as_slice();
                res.body(format!("{} {spooled} {ok}", req.body().len()));
            } else {
                res.status(404).body("no such path");
            }
        }) as Box<dyn ringcorn::Handler>
    }
}

/// Chunk i of a test stream: 1000 bytes of pattern i.
fn chunk(i: usize) -> Vec<u8> {
    pattern(1000, i as u64)
}

/// `n` chunks, a 1 ms pause before every 50th (so the connection finds the feed empty).
fn slow_chunks(n: usize) -> impl Iterator<Item = Vec<u8>> {
    (0..n).map(|i| {
        if i % 50 == 49 {
            thread::sleep(Duration::from_millis(1));
        }
        chunk(i)
    })
}

fn expected_stream(n: usize) -> Vec<u8> {
    (0..n).flat_map(chunk).collect()
}

fn start(threads: usize) -> (ringcorn::Running, tempfile_path::Path, Vec<u8>) {
    let (file, bytes) = temp_file(3 << 20);
    let running = ringcorn::Server::start(config(threads), app(Arc::new(file.0.clone())))
        .expect("start the server");
    (running, file, bytes)
}

/// One connection waits on a 300 ms handler; another asks for 20 answers meanwhile. Returns
/// whether all 20 came before the slow one.
fn others_served_while_one_sleeps(addr: std::net::SocketAddr) -> bool {
    let mut slow = connect(addr);
    slow.send(get_req("/sleep/300").as_bytes());
    thread::sleep(Duration::from_millis(30));
    let slow_reader = thread::spawn(move || {
        let resp = slow.read_response();
        assert_eq!(resp.body_str(), "slept 300");
        Instant::now()
    });
    let mut fast = connect(addr);
    for k in 0..20 {
        let resp = fast.get(&format!("/n/{k}"));
        assert_eq!(resp.body_str(), k.to_string());
    }
    let fast_done = Instant::now();
    let slow_done = slow_reader.join().expect("the slow request");
    fast_done < slow_done
}

#[test]
fn a_slow_handler_does_not_hold_up_its_workers_other_connections() {
    let (running, _file, _) = start(4);
    assert!(
        others_served_while_one_sleeps(running.addrs()[0]),
        "with --threads, the fast connection is answered while the slow handler sleeps"
    );
    running.shutdown();

    // What the check tells apart: without threads, the one worker sleeps with its handler.
    let (running, _file, _) = start(0);
    assert!(
        !others_served_while_one_sleeps(running.addrs()[0]),
        "without --threads, the fast connection waits for the slow handler"
    );
    running.shutdown();
}

/// One response from `r`: its head as text, and its body (de-chunked).
fn read_one<R: std::io::BufRead>(r: &mut R, head_only: bool) -> (String, Vec<u8>) {
    let resp = read_message(r, head_only);
    let mut head = resp.status_line.clone() + "\r\n";
    for (name, value) in &resp.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    (head, resp.body)
}

#[test]
fn pipelined_requests_of_every_body_kind_are_answered_in_order() {
    let (running, _file, file_bytes) = start(4);
    let addr = running.addrs()[0];
    let requests = [
        ("GET", "/sleep/100"),
        ("GET", "/n/1"),
        ("GET", "/stream/300"),
        ("GET", "/sleep/20"),
        ("GET", "/shared/100000"),
        ("HEAD", "/stream/300"),
        ("GET", "/file"),
        ("GET", "/sized/200"),
        ("GET", "/n/2"),
    ];
    let mut wire = String::new();
    for (method, path) in requests {
        wire.push_str(&format!("{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    let stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    (&stream).write_all(wire.as_bytes()).expect("send");
    let mut r = std::io::BufReader::new(&stream);
    let expect: [Vec<u8>; 9] = [
        b"slept 100".to_vec(),
        b"1".to_vec(),
        expected_stream(300),
        b"slept 20".to_vec(),
        pattern(100_000, 3),
        Vec::new(),
        file_bytes,
        expected_stream(200),
        b"2".to_vec(),
    ];
    for ((method, path), want) in requests.iter().zip(expect) {
        let (head, body) = read_one(&mut r, *method == "HEAD");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {head}");
        assert!(
            body == want,
            "{method} {path}: {} bytes, not the {} expected",
            body.len(),
            want.len()
        );
        if *method == "HEAD" {
            assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
        }
    }
    running.shutdown();
}

#[test]
fn uploads_in_memory_and_spooled_reach_the_handler_threads() {
    let (running, _file, _) = start(2);
    let mut c = connect(running.addrs()[0]);
    for len in [0, 10, 60_000, 3_000_000] {
        let resp = c.post("/upload", &pattern(len, 5));
        let spooled = len > 64 * 1024;
        assert_eq!(resp.body_str(), format!("{len} {spooled} true"));
    }
    running.shutdown();
}

#[test]
fn a_panic_on_a_handler_thread_is_a_500_and_the_threads_serve_on() {
    let (running, _file, _) = start(2);
    let addr = running.addrs()[0];
    for _ in 0..3 {
        let mut c = connect(addr);
        let resp = c.get("/panic");
        assert_error_close(&resp, 500);
    }
    let mut c = connect(addr);
    assert_eq!(c.get("/n/7").body_str(), "7");
    running.shutdown();
}

#[test]
fn slow_readers_of_streams_hold_bounded_memory() {
    let server = Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--threads",
        "4",
        "bytes",
    ]);
    let addr = server.addr();
    let path = "/16777216?body=stream";
    // Warm up: one stream read whole, so the allocator has its arenas.
    let warm = std::net::TcpStream::connect(addr).expect("connect");
    (&warm).write_all(get_req(path).as_bytes()).expect("send");
    let (_, body) = read_one(&mut std::io::BufReader::new(&warm), false);
    assert_eq!(body.len(), 16 << 20);
    let before = vm_rss(server.pid());
    // 8 clients ask for 16 MiB streams and read nothing: 4 are pumped, 4 wait for a thread.
    let mut readers: Vec<std::net::TcpStream> = (0..8)
        .map(|_| {
            let s = std::net::TcpStream::connect(addr).expect("connect");
            (&s).write_all(get_req(path).as_bytes()).expect("send");
            s
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let grown = vm_rss(server.pid()).saturating_sub(before);
    eprintln!(
        "8 stalled readers of 16 MiB streams: RSS +{} KiB",
        grown / 1024
    );
    assert!(
        grown < 6 << 20,
        "8 stalled stream readers grew the server by {grown} bytes"
    );
    // Each is then read to its end, whole.
    for s in &mut readers {
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut r = std::io::BufReader::new(&*s);
        let (head, body) = read_one(&mut r, false);
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert_eq!(body.len(), 16 << 20);
        assert!(body.iter().all(|&b| b == b'x'), "the stream's bytes");
    }
}

#[test]
fn graceful_stop_waits_for_handlers_under_way() {
    let mut server = Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--threads",
        "2",
        "sleep",
    ]);
    let mut c = connect(server.addr());
    c.send(get_req("/700").as_bytes());
    thread::sleep(Duration::from_millis(200));
    server.signal(libc::SIGTERM);
    let resp = c.read_response();
    assert_eq!(resp.status, 200, "{}", server.log());
    assert!(
        resp.closes(),
        "answered with Connection: close while stopping"
    );
    let status = server.expect_exit(WAIT);
    assert!(status.success(), "exit status {status:?}\n{}", server.log());
}

#[test]
fn timeout_sees_a_handler_stuck_on_its_thread() {
    let server = Server::spawn(&[
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--threads",
        "2",
        "--worker-class",
        "process",
        "--timeout",
        "1",
        "sleep",
    ]);
    assert!(server.wait_log_count(" with pid: ", 1, WAIT));
    let pid = server.worker_pid(0).expect("worker pid");
    let mut stuck = connect(server.addr());
    stuck.send(get_req("/30000").as_bytes());
    // The worker's loop turns meanwhile: its other thread answers.
    let mut other = connect(server.addr());
    assert_eq!(other.get("/").status, 200);
    server.expect_log(&format!("WORKER TIMEOUT (worker 0, pid {pid})"), WAIT);
    assert!(
        wait_until(WAIT, || !pid_alive(pid)),
        "the stuck worker {pid} is killed"
    );
    assert!(
        server.wait_log_count("Booting worker 0 with pid: ", 2, WAIT),
        "a replacement boots\n{}",
        server.log()
    );
}

#[test]
fn threads_is_checked_and_read_from_the_config_file() {
    let out = run_cli(&["--bind", "127.0.0.1:0", "--threads", "5000", "hello"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--threads"), "{err}");
    let out = run_cli(&["--threads", "3", "--print-config", "hello"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("threads = 3"), "{text}");
}
