//! Response bodies that are not copied into the connection's output: bytes the handler hands
//! over (sent from where they are), streams (pulled as the socket drains, so a slow reader
//! holds a bounded amount of memory), and file regions (sent by the kernel with sendfile).
//!
//! The connection keeps such a body as its output's [`Tail`]: everything in the output goes
//! first, then the tail. [`Plan`] says how the next bytes leave: one buffer, two buffers in
//! one vectored send (the head, then held bytes), or a file region.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A stream is pulled until the output holds this much (head and chunk framing included).
pub(crate) const STREAM_BUFFER: usize = 64 * 1024;
/// Held bytes up to this size are copied after the head (one plain send): below it, the copy
/// costs less than a vectored send's extra work (measured: see BENCHMARKS.md, sizes).
pub(crate) const COPY_BELOW: usize = 16 * 1024;

/// Empty chunks in a row that one pull takes before it gives up on a stream.
const EMPTY_CHUNKS_MAX: usize = 1024;

/// A body produced as the socket drains.
pub(crate) trait Pull {
    /// Append at most `max` bytes to `out`. False once the source has nothing more (it may
    /// have appended its last bytes in the same call).
    fn pull(&mut self, out: &mut Vec<u8>, max: usize) -> bool;

    /// Whether a pull now gives bytes or the end. False: nothing yet, and the source tells
    /// the connection's owner when it has some (a stream fed from another thread); sources
    /// that produce on demand are always ready.
    fn ready(&mut self) -> bool {
        true
    }

    /// After a pull returned false: the source failed rather than ended, so the body is
    /// incomplete.
    fn failed(&self) -> bool {
        false
    }
}

/// A [`Pull`] over an iterator of byte chunks; a chunk larger than the room is sent in parts.
pub(crate) struct Chunks<I: Iterator> {
    iter: I,
    current: Option<I::Item>,
    at: usize,
}

impl<I: Iterator> Chunks<I> {
    pub(crate) fn new(iter: I) -> Self {
        Chunks {
            iter,
            current: None,
            at: 0,
        }
    }
}

impl<I> Pull for Chunks<I>
where
    I: Iterator,
    I::Item: AsRef<[u8]>,
{
    fn pull(&mut self, out: &mut Vec<u8>, max: usize) -> bool {
        let mut room = max;
        // An iterator of nothing but empty chunks must not hold the worker forever: after this
        // many in a row, this pull ends (with nothing: the connection then gives up on it).
        let mut empty = 0;
        loop {
            if self.current.is_none() {
                match self.iter.next() {
                    Some(next) => {
                        self.at = 0;
                        self.current = Some(next);
                    }
                    None => return false,
                }
            }
            let Some(current) = &self.current else {
                return false;
            };
            let chunk = current.as_ref();
            if chunk.is_empty() {
                empty += 1;
                if empty == EMPTY_CHUNKS_MAX && room == max {
                    return true;
                }
            } else {
                empty = 0;
            }
            let rest = &chunk[self.at..];
            let n = rest.len().min(room);
            out.extend_from_slice(&rest[..n]);
            self.at += n;
            room -= n;
            if self.at == chunk.len() {
                self.current = None;
            }
            if room == 0 {
                return true;
            }
        }
    }
}

/// Where a body that is not copied comes from.
pub(crate) enum Source {
    /// Bytes the handler handed over, shared or owned.
    Held(Box<dyn AsRef<[u8]>>),
    /// Pulled as the socket drains; its length when the handler said it.
    Stream(Box<dyn Pull>, Option<u64>),
    /// A region of a file (owned, or shared: `Arc<File>`, `&'static File`).
    File {
        file: Box<dyn AsFd>,
        offset: u64,
        len: u64,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Held(b) => write!(f, "Held({} bytes)", (**b).as_ref().len()),
            Source::Stream(_, len) => write!(f, "Stream({len:?})"),
            Source::File { offset, len, .. } => write!(f, "File({offset}+{len})"),
        }
    }
}

impl Source {
    /// The body's length, if known before it is produced.
    pub(crate) fn len(&self) -> Option<u64> {
        match self {
            Source::Held(b) => Some((**b).as_ref().len() as u64),
            Source::Stream(_, len) => *len,
            Source::File { len, .. } => Some(*len),
        }
    }
}

/// How a stream of unknown length is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delimit {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// An HTTP/1.0 client: the body ends when the connection closes.
    Close,
    /// `Content-Length` was sent: exactly this many bytes follow.
    Length,
}

/// A body still to be sent after the connection's output.
#[derive(Debug)]
pub(crate) struct Tail {
    source: Source,
    /// Bytes still owed (`Delimit::Length`), or bytes sent so far of a held body.
    remaining: u64,
    at: usize,
    delimit: Delimit,
}

/// How the next bytes go out.
#[derive(Debug)]
pub enum Plan<'a> {
    /// Nothing is owed.
    Idle,
    /// Send these bytes.
    Bytes(&'a [u8]),
    /// Send both, in order, in one vectored send.
    Vectored(&'a [u8], &'a [u8]),
    /// Send `head` (the output before a file body), then `len` bytes of the file `fd` from
    /// `offset` (sendfile); `head` may be empty.
    File {
        head: &'a [u8],
        fd: RawFd,
        offset: u64,
        len: u64,
    },
}

/// What happened when a stream was pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pulled {
    /// More will come.
    More,
    /// The body is complete (its last chunk, if chunked, is in the output).
    Done,
    /// The body cannot be completed (the source failed or fell short of its length): the
    /// connection must close once the output is sent.
    Broken,
    /// Nothing yet: the source tells the connection's owner when it has more.
    Wait,
}

impl Tail {
    /// A tail for `source` once the head is in the output. Held and file bodies are always
    /// sized; a stream of unknown length is delimited by `delimit`.
    pub(crate) fn new(source: Source, delimit: Delimit) -> Tail {
        let remaining = source.len().unwrap_or(0);
        Tail {
            source,
            remaining,
            at: 0,
            delimit,
        }
    }

    pub(crate) fn is_stream(&self) -> bool {
        matches!(self.source, Source::Stream(..))
    }

    /// The plan for this tail when the output before it holds `first` (possibly empty).
    pub(crate) fn plan<'a>(&'a self, first: &'a [u8]) -> Plan<'a> {
        match &self.source {
            Source::Held(bytes) => {
                let rest = &(**bytes).as_ref()[self.at..];
                match (first.is_empty(), rest.is_empty()) {
                    (true, _) => Plan::Bytes(rest),
                    (false, true) => Plan::Bytes(first),
                    (false, false) => Plan::Vectored(first, rest),
                }
            }
            Source::File { file, offset, .. } => Plan::File {
                head: first,
                fd: file.as_fd().as_raw_fd(),
                offset: *offset,
                len: self.remaining,
            },
            Source::Stream(..) => Plan::Bytes(first),
        }
    }

    /// `n` bytes of the tail itself were sent. True once it is all sent (streams: never; they
    /// end when pulled dry).
    pub(crate) fn sent(&mut self, n: usize) -> bool {
        match &mut self.source {
            Source::Held(bytes) => {
                self.at += n;
                self.at >= (**bytes).as_ref().len()
            }
            Source::File { offset, .. } => {
                *offset += n as u64;
                self.remaining -= (n as u64).min(self.remaining);
                self.remaining == 0
            }
            Source::Stream(..) => false,
        }
    }

    /// Pull the next part of a stream into `out`, framed, up to [`STREAM_BUFFER`] in all.
    pub(crate) fn pull(&mut self, out: &mut Vec<u8>) -> Pulled {
        let Source::Stream(source, _) = &mut self.source else {
            return Pulled::Done;
        };
        // Room for the data, less the chunk framing (size line, CRLF, last chunk).
        let room = STREAM_BUFFER.saturating_sub(out.len() + 24);
        if room == 0 {
            return Pulled::More;
        }
        if !source.ready() {
            return Pulled::Wait;
        }
        let max = match self.delimit {
            Delimit::Length => room.min(usize::try_from(self.remaining).unwrap_or(usize::MAX)),
            _ => room,
        };
        let start = out.len();
        const SIZE_LINE: usize = 10;
        if self.delimit == Delimit::Chunked {
            out.resize(start + SIZE_LINE, 0);
        }
        // Exactly the stream buffer, so that it is kept (not given back) between pulls.
        out.reserve_exact(STREAM_BUFFER.saturating_sub(out.len()));
        let data_at = out.len();
        let pulled = catch_unwind(AssertUnwindSafe(|| {
            let more = source.pull(out, max);
            // A sized stream that has given all it owes must also be at its end. (A stream
            // fed from another thread may give less than was asked for, and owe the rest.)
            let owed_all = out.len() - data_at == max && max as u64 == self.remaining;
            if more && owed_all && self.delimit == Delimit::Length {
                let mut probe = Vec::new();
                source.pull(&mut probe, 1);
                !probe.is_empty()
            } else {
                more
            }
        }));
        let n = out.len() - data_at;
        if self.delimit == Delimit::Chunked {
            if n == 0 {
                out.truncate(start);
            } else {
                let mut line = [0u8; SIZE_LINE];
                let len = hex_line(n, &mut line);
                out.copy_within(data_at.., start + len);
                out[start..start + len].copy_from_slice(&line[..len]);
                out.truncate(start + len + n);
                out.extend_from_slice(b"\r\n");
            }
        }
        self.remaining = self.remaining.saturating_sub(n as u64);
        let pulled = match pulled {
            Ok(true) if n == 0 && max > 0 => {
                tracing::error!(
                    "a response stream gave only empty chunks; its connection is closed"
                );
                return Pulled::Broken;
            }
            other => other,
        };
        match pulled {
            Err(_) => {
                tracing::error!("a response stream panicked; its connection is closed");
                Pulled::Broken
            }
            // The source says why (where it failed, on its own thread).
            Ok(false) if source.failed() => Pulled::Broken,
            Ok(more) => match self.delimit {
                Delimit::Length if self.remaining == 0 && more => {
                    tracing::error!(
                        "a response stream produced more than its declared length; \
                         the rest was not sent and the connection is closed"
                    );
                    Pulled::Broken
                }
                Delimit::Length if self.remaining == 0 => Pulled::Done,
                Delimit::Length if !more => {
                    tracing::error!(
                        "a response stream ended {} bytes short of its declared length; \
                         the connection is closed",
                        self.remaining
                    );
                    Pulled::Broken
                }
                Delimit::Chunked if !more => {
                    out.extend_from_slice(b"0\r\n\r\n");
                    Pulled::Done
                }
                Delimit::Close if !more => Pulled::Done,
                _ => Pulled::More,
            },
        }
    }

    pub(crate) fn delimit(&self) -> Delimit {
        self.delimit
    }
}

/// `n` in hex followed by CRLF, into `line`; returns its length.
fn hex_line(n: usize, line: &mut [u8; 10]) -> usize {
    let digits = (usize::BITS - n.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, digit) in line[..digits].iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[(n >> (4 * (digits - 1 - i))) & 0xf];
    }
    line[digits] = b'\r';
    line[digits + 1] = b'\n';
    digits + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(parts: Vec<&'static str>, len: Option<u64>, delimit: Delimit) -> Tail {
        let chunks = Chunks::new(parts.into_iter());
        Tail::new(Source::Stream(Box::new(chunks), len), delimit)
    }

    fn drain(tail: &mut Tail) -> (Vec<u8>, Pulled) {
        let mut all = Vec::new();
        loop {
            let mut out = Vec::new();
            let p = tail.pull(&mut out);
            all.extend_from_slice(&out);
            if p != Pulled::More {
                return (all, p);
            }
        }
    }

    #[test]
    fn hex_lines() {
        let mut line = [0; 10];
        for (n, s) in [
            (0, "0\r\n"),
            (1, "1\r\n"),
            (255, "ff\r\n"),
            (65536, "10000\r\n"),
        ] {
            let len = hex_line(n, &mut line);
            assert_eq!(&line[..len], s.as_bytes());
        }
    }

    #[test]
    fn chunked_stream_frames_each_pull_and_ends() {
        let mut tail = stream(vec!["ab", "", "cde"], None, Delimit::Chunked);
        let (out, p) = drain(&mut tail);
        assert_eq!(p, Pulled::Done);
        assert_eq!(out, b"5\r\nabcde\r\n0\r\n\r\n");
    }

    #[test]
    fn a_big_chunk_is_sent_in_bounded_parts() {
        let big: &'static str = Box::leak("x".repeat(200_000).into_boxed_str());
        let mut tail = stream(vec![big], Some(200_000), Delimit::Length);
        let mut total = 0;
        loop {
            let mut out = Vec::new();
            let p = tail.pull(&mut out);
            assert!(out.len() <= STREAM_BUFFER);
            total += out.len();
            if p != Pulled::More {
                assert_eq!(p, Pulled::Done);
                break;
            }
        }
        assert_eq!(total, 200_000);
    }

    #[test]
    fn sized_streams_that_lie_are_broken() {
        let (out, p) = drain(&mut stream(vec!["abc"], Some(5), Delimit::Length));
        assert_eq!((out.as_slice(), p), (&b"abc"[..], Pulled::Broken));
        let (out, p) = drain(&mut stream(vec!["abc", "def"], Some(4), Delimit::Length));
        assert_eq!((out.as_slice(), p), (&b"abcd"[..], Pulled::Broken));
        let (out, p) = drain(&mut stream(vec!["ab", "cd"], Some(4), Delimit::Length));
        assert_eq!((out.as_slice(), p), (&b"abcd"[..], Pulled::Done));
    }

    /// Gives at most 3 bytes a pull, of `left`.
    struct Trickle {
        left: usize,
    }

    impl Pull for Trickle {
        fn pull(&mut self, out: &mut Vec<u8>, max: usize) -> bool {
            let n = max.min(3).min(self.left);
            out.resize(out.len() + n, b't');
            self.left -= n;
            self.left > 0
        }
    }

    #[test]
    fn a_sized_stream_that_gives_less_than_asked_is_not_cut_short() {
        let mut tail = Tail::new(
            Source::Stream(Box::new(Trickle { left: 10 }), Some(10)),
            Delimit::Length,
        );
        let (out, p) = drain(&mut tail);
        assert_eq!((out.as_slice(), p), (&b"tttttttttt"[..], Pulled::Done));
    }

    #[test]
    fn a_panicking_stream_is_broken() {
        let iter = (0..3).map(|i| {
            assert!(i < 2, "boom");
            b"x".to_vec()
        });
        let mut tail = Tail::new(
            Source::Stream(Box::new(Chunks::new(iter)), None),
            Delimit::Chunked,
        );
        let mut out = Vec::new();
        assert_eq!(tail.pull(&mut out), Pulled::Broken);
    }

    #[test]
    fn held_bytes_plan_vectored_then_alone() {
        let mut tail = Tail::new(Source::Held(Box::new(b"body".to_vec())), Delimit::Length);
        assert!(matches!(
            tail.plan(b"head"),
            Plan::Vectored(b"head", b"body")
        ));
        assert!(!tail.sent(2));
        assert!(matches!(tail.plan(b""), Plan::Bytes(b"dy")));
        assert!(tail.sent(2));
    }
}
