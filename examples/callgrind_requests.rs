//! Pushes a fixed number of requests through the sans-IO connection (parse → `hello` handler →
//! encode), for counting instructions per request with callgrind, which is deterministic on a
//! noisy machine:
//!
//!     cargo build --release --example callgrind_requests
//!     valgrind --tool=callgrind target/release/examples/callgrind_requests 100000 [pipelined]
//!
//! Instructions per request = (Ir at N − Ir at 0) ÷ N. `pipelined` sends 16 requests per read,
//! as `wrk` with a 16-deep pipeline does; otherwise one request per read.

use ringcorn::http::{Connection, Context, Want};
use ringcorn::{Request, Response};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

fn hello(_req: &Request<'_>, res: &mut Response<'_>) {
    res.header("Content-Type", "text/plain")
        .body(b"Hello, World!");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(Ok(requests)) = args.next().map(|a| a.parse::<usize>()) else {
        eprintln!("usage: callgrind_requests N [pipelined]");
        std::process::exit(2);
    };
    let depth = if args.next().as_deref() == Some("pipelined") {
        16
    } else {
        1
    };
    let read = REQUEST.repeat(depth);
    let mut ctx = Context::default();
    let mut conn = Connection::new();
    let mut handler = hello;
    let mut answered = 0;
    while answered < requests {
        let batch = depth.min(requests - answered);
        let bytes = &read[..batch * REQUEST.len()];
        assert_eq!(conn.receive(bytes, &ctx), bytes.len());
        answered += conn.process(&mut handler, &mut ctx);
        assert_eq!(conn.want(), Want::Write);
        let n = conn.output().len();
        conn.sent(n);
    }
    assert_eq!(answered, requests);
}
