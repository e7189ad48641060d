//! Criterion benches of the sans-IO HTTP layer, no sockets: request-head parsing, response
//! encoding, the Date cache, and whole requests through `Connection` (parse → handler → encode).
//! Run: `cargo bench --bench http`.

use std::time::{Duration, SystemTime};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringcorn::http::internals::{encode_response, parse_head_len};
use ringcorn::http::{Connection, Context, DateCache, Limits, Want};
use ringcorn::{Request, Response};

fn hello(_req: &Request<'_>, res: &mut Response<'_>) {
    res.header("Content-Type", "text/plain")
        .body(b"Hello, World!");
}

fn echo(req: &Request<'_>, res: &mut Response<'_>) {
    res.body(req.body());
}

/// Push `input` through a connection: receive, process, drain the output; returns bytes out.
fn push_through(
    conn: &mut Connection,
    ctx: &mut Context,
    handler: &mut impl ringcorn::Handler,
    input: &[u8],
) -> usize {
    let mut rest = input;
    let mut out = 0;
    while !rest.is_empty() {
        let n = conn.receive(rest, ctx);
        rest = &rest[n..];
        loop {
            conn.process(handler, ctx);
            if conn.want() != Want::Write {
                break;
            }
            let len = conn.output().len();
            out += len;
            conn.sent(len);
        }
    }
    out
}

const WRK: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

const BROWSER: &[u8] = b"GET /wp-content/uploads/2010/03/hello-kitty-darth-vader-pink.jpg HTTP/1.1\r\n\
Host: www.kittyhell.com\r\n\
User-Agent: Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10.6; ja-JP-mac; rv:1.9.2.3) Gecko/20100401 Firefox/3.6.3 Pathtraq/0.9\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: ja,en-us;q=0.7,en;q=0.3\r\n\
Accept-Encoding: gzip,deflate\r\n\
Accept-Charset: Shift_JIS,utf-8;q=0.7,*;q=0.7\r\n\
Keep-Alive: 115\r\n\
Connection: keep-alive\r\n\
Cookie: wp_ozh_wsa_visits=2; wp_ozh_wsa_visit_lasttime=xxxxxxxxxx; __utma=xxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.x; __utmz=xxxxxxxxx.xxxxxxxxxx.x.x.utmccn=(referral)|utmcsr=reader.livedoor.com|utmcct=/reader/|utmcmd=referral\r\n\r\n";

fn requests(c: &mut Criterion) {
    let mut group = c.benchmark_group("connection");
    let pipelined_16 = WRK.repeat(16);
    let mut chunked =
        b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..16 {
        chunked.extend_from_slice(b"100\r\n");
        chunked.extend_from_slice(&[b'x'; 256]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let cases: [(&str, &[u8], u64, bool); 4] = [
        ("wrk_get", WRK, 1, false),
        ("wrk_get_pipelined_16", &pipelined_16, 16, false),
        ("browser_get", BROWSER, 1, false),
        ("chunked_post_4k", &chunked, 1, true),
    ];
    for (name, input, n, is_echo) in cases {
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::from_parameter(name), input, |b, input| {
            let mut ctx = Context::default();
            let mut conn = Connection::new();
            if is_echo {
                b.iter(|| push_through(&mut conn, &mut ctx, &mut echo, input));
            } else {
                b.iter(|| push_through(&mut conn, &mut ctx, &mut hello, input));
            }
        });
    }
    group.finish();
}

/// A request with 100 header fields (the default limit).
fn hundred_headers() -> Vec<u8> {
    let mut req = b"GET /api/items?page=2 HTTP/1.1\r\nHost: example.com\r\n".to_vec();
    for i in 0..99 {
        req.extend_from_slice(format!("X-Header-{i:02}: value-{i:02}-abcdefghij\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    let limits = Limits::default();
    let hundred = hundred_headers();
    for (name, input) in [
        ("small", WRK),
        ("browser", BROWSER),
        ("100_headers", &hundred[..]),
    ] {
        assert_eq!(
            parse_head_len(input, &limits),
            Some(input.len()),
            "{name} must parse"
        );
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), input, |b, input| {
            b.iter(|| parse_head_len(black_box(input), &limits))
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let date = DateCache::new();
    let mut out = Vec::with_capacity(4096);
    c.bench_function("encode/hello", |b| {
        b.iter(|| {
            out.clear();
            encode_response(
                &mut out,
                200,
                b"Content-Type: text/plain\r\n",
                black_box(b"Hello, World!"),
                date.header_block(),
            );
            out.len()
        })
    });
}

fn date(c: &mut Criterion) {
    let mut group = c.benchmark_group("date");
    let now = SystemTime::now();
    let mut cache = DateCache::new();
    cache.refresh(now);
    group.bench_function("same_second", |b| b.iter(|| cache.refresh(black_box(now))));
    let mut second = 0u64;
    group.bench_function("new_second", |b| {
        b.iter(|| {
            second += 1;
            cache.refresh(black_box(now + Duration::from_secs(second)))
        })
    });
    group.finish();
}

criterion_group!(benches, parse, encode, date, requests);
criterion_main!(benches);
