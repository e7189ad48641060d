//! hyper-peer: ringcorn's apps served by hyper 1.x (HTTP/1.1 only), thread per core.
//!
//! One pinned thread per worker, each running a current-thread tokio runtime with its own
//! SO_REUSEPORT listener and accept loop. hyper parses requests, keeps connections alive and
//! answers pipelined requests (`pipeline_flush(true)`: responses to the requests of one read
//! are flushed together). hyper adds the `Date` header itself (cached per second); we add
//! `Server`, `Content-Type` and `Content-Length`.

use std::convert::Infallible;
use std::io;
use std::net::TcpListener;

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, SERVER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ringcorn_peers::{bytes_block, bytes_len, json_body, serve, App, ServerArgs, HELLO};

/// ringcorn's apps (hello, json, bytes) on hyper 1.x, one pinned current-thread tokio runtime
/// per worker. Prints `listening on 127.0.0.1:PORT` on stderr when ready; runs until killed.
#[derive(Parser)]
#[command(name = "hyper-peer", version)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
    /// The app to serve.
    #[arg(long, value_enum, default_value = "hello")]
    app: App,
}

fn main() {
    let cli = Cli::parse();
    let app = cli.app;
    if app == App::Bytes {
        // Fill the 16 MiB block now, not on the first request.
        bytes_block();
    }
    serve("hyper-peer", &cli.server, move |_, listener| {
        worker(listener, app)
    })
}

fn worker(listener: TcpListener, app: App) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    listener.set_nonblocking(true)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut builder = http1::Builder::new();
        builder.keep_alive(true).pipeline_flush(true);
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                // Out of descriptors or a connection reset before accept: pause, keep serving.
                Err(e) => {
                    eprintln!("hyper-peer: accept: {e}");
                    // No timer driver on this runtime (none is needed when serving): block
                    // the thread briefly instead; this only happens when something is wrong.
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
            };
            // Inherited from the listener already; set again so it never depends on that.
            let _ = stream.set_nodelay(true);
            let conn = builder.serve_connection(
                TokioIo::new(stream),
                service_fn(move |req| async move { Ok::<_, Infallible>(respond(app, &req)) }),
            );
            tokio::spawn(async move {
                // A client that goes away mid-request is not an error worth reporting.
                let _ = conn.await;
            });
        }
    })
}

const SERVER_NAME: HeaderValue = HeaderValue::from_static("hyper");
const TEXT: HeaderValue = HeaderValue::from_static("text/plain");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const OCTETS: HeaderValue = HeaderValue::from_static("application/octet-stream");

fn respond(app: App, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match app {
        App::Hello => (StatusCode::OK, TEXT, Bytes::from_static(HELLO)),
        App::Json => {
            let mut body = Vec::with_capacity(32);
            json_body(&mut body);
            (StatusCode::OK, JSON, Bytes::from(body))
        }
        App::Bytes => match bytes_len(req.uri().path().as_bytes()) {
            Some(n) if req.method() == Method::GET || req.method() == Method::HEAD => (
                StatusCode::OK,
                OCTETS,
                Bytes::from_static(&bytes_block()[..n]),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                TEXT,
                Bytes::from_static(b"Not Found"),
            ),
        },
    };
    let len = HeaderValue::from(body.len());
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(SERVER, SERVER_NAME);
    headers.insert(CONTENT_TYPE, content_type);
    headers.insert(CONTENT_LENGTH, len);
    res
}
