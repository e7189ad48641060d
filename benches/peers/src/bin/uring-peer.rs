//! uring-peer: ringcorn's apps on tokio-uring with a minimal HTTP/1.1 loop, thread per core.
//!
//! One pinned thread per worker runs a tokio-uring runtime with its own SO_REUSEPORT listener.
//! Each connection is a task: read, parse every complete request in the buffer with httparse,
//! append all their responses to one buffer, write it, read again. Keep-alive and pipelining
//! as ringcorn; request bodies with Content-Length are read and discarded. This is what
//! ringcorn's own io-uring engine is measured against: the same work on a general runtime.

use std::io;
use std::net::TcpListener;

use clap::Parser;
use ringcorn_peers::{
    bytes_block, bytes_len, push_response, serve, App, Connection, DateCache, ServerArgs, HELLO,
};
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::TcpStream;

/// ringcorn's apps (hello, json, bytes) on tokio-uring, one pinned runtime per worker, with a
/// minimal httparse HTTP/1.1 loop. Prints `listening on 127.0.0.1:PORT` on stderr when ready;
/// runs until killed.
#[derive(Parser)]
#[command(name = "uring-peer", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
    /// The app to serve.
    #[arg(long, value_enum, default_value = "hello")]
    app: App,
}

/// The most a request head may take (then 431 and close).
const MAX_HEAD: usize = 64 * 1024;
/// The largest request body read and discarded (then 413 and close).
const MAX_BODY: usize = 1024 * 1024;
/// Read buffer size per connection (grows for large heads or bodies).
const READ_BUF: usize = 4096;

fn main() {
    let cli = Cli::parse();
    let app = cli.app;
    if app == App::Bytes {
        // Fill the 16 MiB block now, not on the first request.
        bytes_block();
    }
    serve("uring-peer", &cli.server, move |_, listener| {
        worker(listener, app)
    })
}

fn worker(listener: TcpListener, app: App) -> io::Result<()> {
    tokio_uring::start(async move {
        let listener = tokio_uring::net::TcpListener::from_std(listener);
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio_uring::spawn(connection(stream, app));
                }
                // Out of descriptors or a connection reset before accept: pause, keep serving.
                Err(e) => {
                    eprintln!("uring-peer: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    })
}

thread_local! {
    /// This worker's `Server`/`Date` lines, re-rendered when the second changes.
    static DATE: std::cell::RefCell<DateCache> = std::cell::RefCell::new(DateCache::new("tokio-uring"));
}

async fn connection(stream: TcpStream, app: App) {
    let mut input: Vec<u8> = Vec::with_capacity(READ_BUF);
    let mut out: Vec<u8> = Vec::with_capacity(READ_BUF);
    loop {
        if input.len() == input.capacity() {
            input.reserve(input.len().max(READ_BUF));
        }
        let filled = input.len();
        let (res, slice) = stream.read(input.slice(filled..)).await;
        input = slice.into_inner();
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (consumed, close) = DATE.with(|date| {
            let mut date = date.borrow_mut();
            date.refresh();
            answer_all(&input, app, date.lines(), &mut out)
        });
        input.drain(..consumed);
        if !out.is_empty() {
            let (res, buf) = stream.write_all(out).await;
            out = buf;
            out.clear();
            if res.is_err() {
                return;
            }
        }
        if close {
            return;
        }
    }
}

/// Answer every complete request at the start of `input`, appending the responses to `out`.
/// Returns how many bytes of `input` were consumed and whether the connection must close.
fn answer_all(input: &[u8], app: App, server_date: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
    let mut pos = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(&input[pos..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if input.len() - pos > MAX_HEAD {
                    error(
                        out,
                        b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
                        server_date,
                    );
                    return (input.len(), true);
                }
                return (pos, false);
            }
            Err(httparse::Error::TooManyHeaders) => {
                error(
                    out,
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
                    server_date,
                );
                return (input.len(), true);
            }
            Err(_) => {
                error(out, b"HTTP/1.1 400 Bad Request\r\n", server_date);
                return (input.len(), true);
            }
        };
        let http10 = req.version == Some(0);
        let mut body_len = 0usize;
        let mut close = http10;
        let mut keep_alive_10 = false;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                match std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                {
                    Some(n) => body_len = n,
                    None => {
                        error(out, b"HTTP/1.1 400 Bad Request\r\n", server_date);
                        return (input.len(), true);
                    }
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                error(out, b"HTTP/1.1 501 Not Implemented\r\n", server_date);
                return (input.len(), true);
            } else if h.name.eq_ignore_ascii_case("connection") {
                if has_token(h.value, b"close") {
                    close = true;
                } else if http10 && has_token(h.value, b"keep-alive") {
                    close = false;
                    keep_alive_10 = true;
                }
            }
        }
        if body_len > MAX_BODY {
            error(out, b"HTTP/1.1 413 Content Too Large\r\n", server_date);
            return (input.len(), true);
        }
        if input.len() - pos < head_len + body_len {
            return (pos, false); // The body is still coming.
        }
        let head = req.method == Some("HEAD");
        let connection = if close {
            Connection::Close
        } else if keep_alive_10 {
            Connection::KeepAlive10
        } else {
            Connection::KeepAlive
        };
        let path = req.path.unwrap_or("/").as_bytes();
        respond(app, req.method, path, server_date, head, connection, out);
        pos += head_len + body_len;
        if close {
            return (input.len(), true);
        }
    }
}

fn respond(
    app: App,
    method: Option<&str>,
    path: &[u8],
    server_date: &[u8],
    head: bool,
    connection: Connection,
    out: &mut Vec<u8>,
) {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\n";
    match app {
        App::Hello => push_response(out, OK, server_date, b"text/plain", HELLO, head, connection),
        App::Json => {
            let mut body = [0u8; 64];
            let mut cursor = io::Cursor::new(&mut body[..]);
            let len = match serde_json::to_writer(&mut cursor, &Message::HELLO) {
                Ok(()) => cursor.position() as usize,
                Err(_) => 0,
            };
            push_response(
                out,
                OK,
                server_date,
                b"application/json",
                &body[..len],
                head,
                connection,
            );
        }
        App::Bytes => match bytes_len(path) {
            Some(n) if matches!(method, Some("GET") | Some("HEAD")) => push_response(
                out,
                OK,
                server_date,
                b"application/octet-stream",
                &bytes_block()[..n],
                head,
                connection,
            ),
            _ => push_response(
                out,
                b"HTTP/1.1 404 Not Found\r\n",
                server_date,
                b"text/plain",
                b"Not Found",
                head,
                connection,
            ),
        },
    }
}

/// The `json` body, serialised per request (into a stack buffer: no allocation).
#[derive(serde::Serialize)]
struct Message {
    message: &'static str,
}

impl Message {
    const HELLO: Message = Message {
        message: "Hello, World!",
    };
}

/// An error response that closes the connection.
fn error(out: &mut Vec<u8>, status_line: &[u8], server_date: &[u8]) {
    push_response(
        out,
        status_line,
        server_date,
        b"text/plain",
        b"",
        false,
        Connection::Close,
    );
}

/// Whether the comma-separated header value contains `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (usize, bool, String) {
        let mut out = Vec::new();
        let (n, close) = answer_all(input, App::Hello, b"D\r\n", &mut out);
        (n, close, String::from_utf8(out).unwrap())
    }

    #[test]
    fn pipelined_and_partial() {
        let one = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut two = one.to_vec();
        two.extend_from_slice(one);
        two.extend_from_slice(b"GET / HT");
        let (n, close, out) = run(&two);
        assert_eq!(n, 2 * one.len());
        assert!(!close);
        assert_eq!(out.matches("HTTP/1.1 200 OK\r\n").count(), 2);
        assert!(out.contains("Content-Length: 13\r\n\r\nHello, World!"));
    }

    #[test]
    fn body_and_close() {
        let (n, close, out) = run(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab");
        assert_eq!((n, close, out.as_str()), (0, false, ""));
        let req = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
        let (n, close, out) = run(req);
        assert_eq!(n, req.len());
        assert!(close);
        assert!(out.contains("Connection: close\r\n"));
    }

    #[test]
    fn bad_request() {
        let (_, close, out) = run(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n");
        assert!(close);
        assert!(out.starts_with("HTTP/1.1 400"));
    }
}
