//! Requests answered on another thread (`--threads`): the connection hands a request over as
//! an owned [`Job`] and takes its [`Reply`] back later. A connection has one job out at a time,
//! so pipelined requests are answered in the order they came.
//!
//! A streamed body stays on the thread that produces it and crosses over through a bounded
//! [`Feed`]: that thread pulls only while the feed has room, and the connection takes from it
//! as its socket drains, so a slow reader holds a bounded amount of memory however long the
//! stream is. Everything here is plain data and a lock: the worker's pool moves the jobs.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::outgoing::{Pull, Source};
use super::request::Request;
use super::response::{has_body, reason, Response};
use super::spool::Mapped;
use super::ConnInfo;
use crate::Handler;

/// Bytes of a streamed body a feed holds at most, waiting for the connection to take them.
const FEED_MAX: usize = 64 * 1024;

/// Who answers a connection's requests: a [`Handler`] at once, or someone else later.
pub trait Respond {
    /// Answer `req` into `res` now (true), or leave it to be answered elsewhere (false): the
    /// connection then keeps it as a [`Job`] for its owner to take
    /// ([`super::Connection::take_job`]).
    fn respond(&mut self, req: &Request<'_>, res: &mut Response<'_>) -> bool;
}

impl<H: Handler> Respond for H {
    #[inline]
    fn respond(&mut self, req: &Request<'_>, res: &mut Response<'_>) -> bool {
        self.call(req, res);
        true
    }
}

/// Answers nothing itself: every request becomes a [`Job`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Defer;

impl Respond for Defer {
    fn respond(&mut self, _req: &Request<'_>, _res: &mut Response<'_>) -> bool {
        false
    }
}

/// Where a piece of the request head lies in [`Job::text`].
type Span = (u32, u32);

/// A request, owned, to be answered on another thread.
#[derive(Debug)]
pub struct Job {
    /// Method, path, query, header names and values, back to back.
    text: Vec<u8>,
    method: Span,
    path: Span,
    query: Option<Span>,
    version: u8,
    headers: Vec<(Span, Span)>,
    body: JobBody,
    conn: ConnInfo,
    pub(crate) is_head: bool,
    pub(crate) keep_alive: bool,
    /// When it was handed over (the access log's request time counts from here).
    pub(crate) started: Instant,
}

#[derive(Debug)]
enum JobBody {
    InMemory(Vec<u8>),
    /// A body spooled to a temporary file: its own descriptor of the file, mapped again.
    Spooled {
        file: File,
        map: Mapped,
    },
}

fn put(text: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let start = text.len() as u32;
    text.extend_from_slice(bytes);
    (start, text.len() as u32)
}

impl Job {
    /// An owned copy of `req` (a spooled body is shared, not copied). Fails only when the
    /// spool file cannot be opened or mapped again.
    pub(crate) fn new(req: &Request<'_>, is_head: bool, keep_alive: bool) -> io::Result<Job> {
        let names: usize = req
            .headers
            .iter()
            .map(|h| h.name.len() + h.value.len())
            .sum();
        let mut text = Vec::with_capacity(req.method.len() + req.path.len() + names + 64);
        let method = put(&mut text, req.method.as_bytes());
        let path = put(&mut text, req.path.as_bytes());
        let query = req.query.map(|q| put(&mut text, q.as_bytes()));
        let headers = req
            .headers
            .iter()
            .map(|h| (put(&mut text, h.name.as_bytes()), put(&mut text, h.value)))
            .collect();
        let body = match req.body_file {
            Some(file) => {
                let file = file.try_clone()?;
                let map = Mapped::new(&file, req.body.len() as u64)?;
                JobBody::Spooled { file, map }
            }
            None => JobBody::InMemory(req.body.to_vec()),
        };
        Ok(Job {
            text,
            method,
            path,
            query,
            version: req.version,
            headers,
            body,
            conn: req.conn.clone(),
            is_head,
            keep_alive,
            started: Instant::now(),
        })
    }

    /// Call `f` with the request this job carries.
    pub fn with_request<T>(&self, f: impl FnOnce(&Request<'_>) -> T) -> T {
        let bytes = |(a, b): Span| &self.text[a as usize..b as usize];
        // Every piece was a `&str` when it was copied.
        let text = |span: Span| std::str::from_utf8(bytes(span)).unwrap_or_default();
        let headers: Vec<httparse::Header<'_>> = self
            .headers
            .iter()
            .map(|&(name, value)| httparse::Header {
                name: text(name),
                value: bytes(value),
            })
            .collect();
        let (body, body_file) = match &self.body {
            JobBody::InMemory(body) => (&body[..], None),
            JobBody::Spooled { file, map } => (map.bytes(), Some(file)),
        };
        let req = Request {
            method: text(self.method),
            path: text(self.path),
            query: self.query.map(text),
            version: self.version,
            headers: &headers,
            body,
            body_file,
            conn: &self.conn,
        };
        f(&req)
    }

    /// Answer the job with `handler`, here: the reply for the connection, and the pump of a
    /// streamed body (to be run on this thread once the reply is handed back). A panic is a
    /// 500 that closes the connection, as it is on the worker's thread.
    pub fn answer<H: Handler>(self, handler: &mut H) -> (Reply, Option<Pump>) {
        let mut headers = Vec::new();
        let mut body = Vec::new();
        let mut res = Response::new(&mut headers, &mut body);
        let called =
            self.with_request(|req| catch_unwind(AssertUnwindSafe(|| handler.call(req, &mut res))));
        let (status, close, source) = match called {
            Ok(()) => (res.status_code(), res.wants_close(), res.take_source()),
            Err(_) => {
                self.with_request(|req| {
                    tracing::error!(
                        method = req.method(),
                        path = req.path(),
                        "handler panicked: answered 500 and closed the connection"
                    )
                });
                return (Reply::failed(self), None);
            }
        };
        drop(res);
        let sends_body = has_body(status) && !self.is_head;
        let (handed, pump) = match source {
            None => (None, None),
            Some(Source::Held(held)) => {
                // The bytes may be shared with the handler's thread only: they are copied.
                body.clear();
                body.extend_from_slice((*held).as_ref());
                (None, None)
            }
            Some(Source::File { file, offset, len }) => match file.as_fd().try_clone_to_owned() {
                Ok(fd) => (Some(Handed::File { fd, offset, len }), None),
                Err(e) => {
                    tracing::error!("cannot hand a file body over to the worker: {e}");
                    return (Reply::failed(self), None);
                }
            },
            Some(Source::Stream(stream, len)) => {
                let feed = Arc::new(Feed::default());
                let reader = FeedReader(feed.clone());
                // HEAD and bodiless statuses never produce the body: the stream is dropped
                // unread here.
                let pump = sends_body.then(|| Pump { stream, feed });
                (Some(Handed::Stream { len, reader }), pump)
            }
        };
        let reply = Reply {
            job: self,
            status,
            close,
            headers,
            body,
            handed,
        };
        (reply, pump)
    }
}

/// A job's answer: what the handler wrote, for the connection to encode.
#[derive(Debug)]
pub struct Reply {
    pub(crate) job: Job,
    pub(crate) status: u16,
    /// The handler asked to close after it.
    pub(crate) close: bool,
    pub(crate) headers: Vec<u8>,
    pub(crate) body: Vec<u8>,
    /// A body that is not in `body`.
    pub(crate) handed: Option<Handed>,
}

impl Reply {
    /// The 500 of a handler that panicked (or a body that could not be handed over).
    fn failed(job: Job) -> Reply {
        Reply {
            job,
            status: 500,
            close: true,
            headers: b"Content-Type: text/plain\r\n".to_vec(),
            body: reason(500).as_bytes().to_vec(),
            handed: None,
        }
    }
}

/// A body handed over from the handler's thread.
#[derive(Debug)]
pub(crate) enum Handed {
    /// A region of a file, by its own descriptor.
    File { fd: OwnedFd, offset: u64, len: u64 },
    /// A stream, its length if the handler said it, fed by the handler's thread.
    Stream {
        len: Option<u64>,
        reader: FeedReader,
    },
}

impl Handed {
    pub(crate) fn into_source(self) -> Source {
        match self {
            Handed::File { fd, offset, len } => Source::File {
                file: Box::new(fd),
                offset,
                len,
            },
            Handed::Stream { len, reader } => Source::Stream(Box::new(reader), len),
        }
    }
}

/// A streamed body on its way from the thread that pulls it to the connection that sends it.
#[derive(Debug, Default)]
pub struct Feed {
    state: Mutex<FeedState>,
    /// The pump waits here for room.
    room: Condvar,
}

#[derive(Debug, Default)]
struct FeedState {
    bytes: Vec<u8>,
    /// The stream has given its last bytes.
    ended: bool,
    /// ... because it failed (panicked, or gave only empty chunks).
    failed: bool,
    /// The connection is gone: nobody will take more.
    reader_gone: bool,
    /// The connection found the feed empty and waits to be told it is not.
    reader_waiting: bool,
}

impl Feed {
    fn lock(&self) -> MutexGuard<'_, FeedState> {
        // A panic never happens while the lock is held (pulls run outside it).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The connection's end of a [`Feed`]: a stream that is sometimes not ready.
#[derive(Debug)]
pub(crate) struct FeedReader(Arc<Feed>);

impl Pull for FeedReader {
    fn pull(&mut self, out: &mut Vec<u8>, max: usize) -> bool {
        let mut state = self.0.lock();
        let n = max.min(state.bytes.len());
        out.extend_from_slice(&state.bytes[..n]);
        state.bytes.drain(..n);
        if n > 0 {
            self.0.room.notify_one();
        }
        !(state.ended && state.bytes.is_empty())
    }

    fn ready(&mut self) -> bool {
        let mut state = self.0.lock();
        let ready = state.ended || !state.bytes.is_empty();
        state.reader_waiting = !ready;
        ready
    }

    fn failed(&self) -> bool {
        self.0.lock().failed
    }
}

impl Drop for FeedReader {
    fn drop(&mut self) {
        self.0.lock().reader_gone = true;
        self.0.room.notify_one();
    }
}

/// The handler's end of a [`Feed`]: pulls the stream while the feed has room.
pub struct Pump {
    stream: Box<dyn Pull>,
    feed: Arc<Feed>,
}

impl std::fmt::Debug for Pump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pump")
    }
}

impl Pump {
    /// Pull the stream into the feed until it ends or the connection is gone, waiting
    /// whenever the feed is full. `woken` is called when the connection waits for bytes and
    /// some (or the end) have come; `busy(false)` while waiting for room, `busy(true)` while
    /// pulling (the stream's own time is the handler's, for `--timeout`).
    pub fn run(mut self, woken: impl Fn(), busy: impl Fn(bool)) {
        let mut chunk = Vec::with_capacity(FEED_MAX);
        loop {
            let room = {
                let mut state = self.feed.lock();
                if state.bytes.len() > FEED_MAX / 2 && !state.reader_gone {
                    busy(false);
                    while state.bytes.len() > FEED_MAX / 2 && !state.reader_gone {
                        state = self
                            .feed
                            .room
                            .wait(state)
                            .unwrap_or_else(|e| e.into_inner());
                    }
                    busy(true);
                }
                if state.reader_gone {
                    return;
                }
                FEED_MAX - state.bytes.len()
            };
            chunk.clear();
            let pulled = catch_unwind(AssertUnwindSafe(|| self.stream.pull(&mut chunk, room)));
            let (more, failed) = match pulled {
                // Only empty chunks for a whole pull: the stream is given up on, as it is on
                // the worker's thread.
                Ok(true) if chunk.is_empty() => {
                    tracing::error!(
                        "a response stream gave only empty chunks; its connection is closed"
                    );
                    (false, true)
                }
                Ok(more) => (more, false),
                Err(_) => {
                    tracing::error!("a response stream panicked; its connection is closed");
                    (false, true)
                }
            };
            let wake = {
                let mut state = self.feed.lock();
                state.bytes.extend_from_slice(&chunk);
                state.ended = !more;
                state.failed = failed;
                std::mem::take(&mut state.reader_waiting)
            };
            if wake {
                woken();
            }
            if !more {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::outgoing::Chunks;
    use crate::http::{ConnInfo, Scheme};

    fn request_parts() -> (Vec<httparse::Header<'static>>, ConnInfo) {
        let headers = vec![
            httparse::Header {
                name: "Host",
                value: b"h",
            },
            httparse::Header {
                name: "X-Two",
                value: b"a, b",
            },
        ];
        let conn = ConnInfo {
            peer: Some("127.0.0.1:9".parse().expect("addr")),
            local: None,
            scheme: Scheme::Https,
            tls: None,
        };
        (headers, conn)
    }

    #[test]
    fn a_job_carries_the_whole_request() {
        let (headers, conn) = request_parts();
        let req = Request {
            method: "POST",
            path: "/p",
            query: Some("q=1"),
            version: 1,
            headers: &headers,
            body: b"body",
            body_file: None,
            conn: &conn,
        };
        let job = Job::new(&req, false, true).expect("job");
        job.with_request(|r| {
            assert_eq!(
                (r.method(), r.path(), r.query()),
                ("POST", "/p", Some("q=1"))
            );
            assert_eq!(r.version(), 1);
            assert_eq!(r.header("x-two"), Some(&b"a, b"[..]));
            assert_eq!(r.headers().count(), 2);
            assert_eq!(r.body(), b"body");
            assert_eq!(r.scheme(), Scheme::Https);
            assert_eq!(r.peer_addr(), conn.peer);
        });
    }

    fn job() -> Job {
        let (headers, conn) = request_parts();
        let req = Request {
            method: "GET",
            path: "/",
            query: None,
            version: 1,
            headers: &headers,
            body: b"",
            body_file: None,
            conn: &conn,
        };
        Job::new(&req, false, true).expect("job")
    }

    #[test]
    fn a_panic_is_a_500_that_closes() {
        let mut handler = |_: &Request<'_>, _: &mut Response<'_>| panic!("boom");
        let (reply, pump) = job().answer(&mut handler);
        assert!(pump.is_none());
        assert_eq!((reply.status, reply.close), (500, true));
    }

    #[test]
    fn held_bytes_are_copied_into_the_body() {
        let mut handler = |_: &Request<'_>, res: &mut Response<'_>| {
            res.body_from(std::rc::Rc::<[u8]>::from(&b"shared"[..]));
        };
        let (reply, _) = job().answer(&mut handler);
        assert_eq!(reply.body, b"shared");
        assert!(reply.handed.is_none());
    }

    #[test]
    fn a_stream_crosses_a_bounded_feed_and_wakes_its_reader() {
        let mut handler = |_: &Request<'_>, res: &mut Response<'_>| {
            res.stream((0..100).map(|_| vec![7u8; 10_000]));
        };
        let (reply, pump) = job().answer(&mut handler);
        let Some(Handed::Stream { mut reader, len }) = reply.handed else {
            panic!("a stream")
        };
        assert_eq!(len, None);
        let pump = pump.expect("a pump");
        // The reader on a thread of its own (a pump stays where its stream was made).
        let reading = std::thread::spawn(move || {
            let mut got = 0;
            let mut out = Vec::new();
            let mut most = 0;
            loop {
                if !reader.ready() {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    continue;
                }
                most = most.max(reader.0.lock().bytes.len());
                out.clear();
                let more = reader.pull(&mut out, 8192);
                got += out.len();
                if !more {
                    return (got, most, reader.failed());
                }
            }
        });
        let wakes = std::cell::Cell::new(0);
        pump.run(|| wakes.set(wakes.get() + 1), |_| {});
        let (got, most, failed) = reading.join().expect("the reader");
        assert_eq!(got, 1_000_000);
        assert!(most <= FEED_MAX, "the feed held {most}");
        assert!(!failed);
        assert!(wakes.get() > 0, "the waiting reader was woken");
    }

    #[test]
    fn a_dropped_reader_stops_the_pump() {
        let source = Chunks::new(std::iter::repeat(vec![1u8; 4096]));
        let feed = Arc::new(Feed::default());
        let reader = FeedReader(feed.clone());
        let pump = Pump {
            stream: Box::new(source),
            feed,
        };
        let dropping = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(reader);
        });
        // Returns once the reader is gone, however endless the stream.
        pump.run(|| {}, |_| {});
        dropping.join().expect("the reader");
    }

    #[test]
    fn a_panicking_stream_fails_the_feed() {
        let iter = (0..3).map(|i| {
            assert!(i < 1, "boom");
            b"x".to_vec()
        });
        let feed = Arc::new(Feed::default());
        let mut reader = FeedReader(feed.clone());
        Pump {
            stream: Box::new(Chunks::new(iter)),
            feed,
        }
        .run(|| {}, |_| {});
        assert!(reader.ready());
        let mut out = Vec::new();
        assert!(!reader.pull(&mut out, 100));
        assert_eq!(out, b"x");
        assert!(reader.failed());
    }
}
