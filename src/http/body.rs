//! Chunked request bodies (RFC 9112 §7.1), decoded in place and incrementally.
//!
//! The decoder works on the body region of the connection's input buffer: chunk data is moved
//! down over the chunk-size lines it follows, so the decoded body ends up contiguous at the start
//! of the region and no second buffer is needed. It keeps its position between reads, so bytes
//! are looked at once however the body is split. It is stricter than httparse's
//! `parse_chunk_size`: a size needs at least one hex digit, and every line ends in CRLF.

use super::{is_token_byte, Error, Limits};

/// At most this many hex digits in a chunk size (16 fill a u64).
const MAX_SIZE_DIGITS: u8 = 16;

/// Fields a trailer section must not carry (RFC 9110 §6.5.1), lower case: their meaning is
/// needed before the content is read, so a recipient that acted on the header section (a
/// proxy in front, or the application) and one that looked at the trailers would disagree.
/// A trailer with one of these names is refused (400), not dropped.
///
/// - message framing: `content-length`, `transfer-encoding`, `trailer`;
/// - connection control: `connection`, `keep-alive`, `proxy-connection`, `te`, `upgrade`;
/// - routing: `host`;
/// - request modifiers: controls (`cache-control`, `expect`, `max-forwards`, `pragma`,
///   `range`) and conditionals (`if-match`, `if-none-match`, `if-modified-since`,
///   `if-unmodified-since`, `if-range`);
/// - authentication and session: `authorization`, `proxy-authorization`, `cookie`;
/// - content format: `content-encoding`, `content-type`, `content-range`.
pub(crate) const FORBIDDEN_TRAILERS: [&str; 25] = [
    "content-length",
    "transfer-encoding",
    "trailer",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "host",
    "cache-control",
    "expect",
    "max-forwards",
    "pragma",
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "authorization",
    "proxy-authorization",
    "cookie",
    "content-encoding",
    "content-type",
    "content-range",
];

/// The longest name in [`FORBIDDEN_TRAILERS`]: a longer trailer name is none of them.
const MAX_FORBIDDEN_NAME: usize = {
    let mut max = 0;
    let mut i = 0;
    while i < FORBIDDEN_TRAILERS.len() {
        if FORBIDDEN_TRAILERS[i].len() > max {
            max = FORBIDDEN_TRAILERS[i].len();
        }
        i += 1;
    }
    max
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size,
    /// After the size: optional whitespace, then `;ext` or CR.
    AfterSize,
    /// Inside chunk extensions, up to CR.
    Extension,
    /// Expecting the LF that ends the size line.
    SizeLf,
    /// Copying chunk data; `remaining` bytes are left.
    Data,
    /// Expecting the CR, then the LF, after chunk data.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final blank line).
    TrailerStart,
    /// Inside a trailer field's name, up to its colon.
    TrailerName,
    /// Inside a trailer field's value, up to CR.
    TrailerValue,
    TrailerLf,
    /// Expecting the LF of the final blank line.
    FinalLf,
    Done,
}

/// Decoding progress of one chunked body.
#[derive(Debug, Clone)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// Encoded bytes consumed from the start of the region.
    read: usize,
    /// Decoded bytes, stored at the start of the region.
    written: usize,
    /// Decoded bytes the owner took out of the region before these (spooled).
    taken: u64,
    /// Size of the chunk being read, then bytes left to copy.
    remaining: u64,
    digits: u8,
    /// Extension and trailer bytes seen so far (all chunks together).
    extension_bytes: usize,
    trailer_bytes: usize,
    line_bytes: usize,
    /// The trailer name being read, in lower case, as far as it could be a forbidden one;
    /// `name_len` goes past the buffer (and stays there) once it cannot.
    name: [u8; MAX_FORBIDDEN_NAME],
    name_len: usize,
}

/// The body is complete: `body` decoded bytes at the region start, `consumed` encoded bytes used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decoded {
    pub body: usize,
    pub consumed: usize,
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size,
            read: 0,
            written: 0,
            taken: 0,
            remaining: 0,
            digits: 0,
            extension_bytes: 0,
            trailer_bytes: 0,
            line_bytes: 0,
            name: [0; MAX_FORBIDDEN_NAME],
            name_len: 0,
        }
    }

    /// Bytes of the region that hold nothing useful any more (consumed framing between the
    /// decoded body and the unread rest). The owner may close the gap with [`Self::compact`].
    pub fn gap(&self) -> usize {
        self.read - self.written
    }

    /// Move the unread rest of `region` (bytes `read..filled`) down to `written`, so encoded
    /// framing does not accumulate in the buffer. Returns how many bytes were freed.
    pub fn compact(&mut self, region: &mut [u8], filled: usize) -> usize {
        let gap = self.gap();
        region.copy_within(self.read..filled, self.written);
        self.read = self.written;
        gap
    }

    /// Decoded bytes at the start of the region (not counting those already taken).
    pub fn decoded(&self) -> usize {
        self.written
    }

    /// The owner has stored the decoded bytes at the start of `region` elsewhere: move the
    /// unread rest (bytes `read..filled`) down to the start. Returns how many bytes were freed.
    pub fn take_decoded(&mut self, region: &mut [u8], filled: usize) -> usize {
        let freed = self.read;
        region.copy_within(self.read..filled, 0);
        self.taken += self.written as u64;
        self.written = 0;
        self.read = 0;
        freed
    }

    /// Decode what `region` (the bytes after the head, as far as received) holds.
    /// `Ok(None)`: more bytes are needed.
    pub fn decode(&mut self, region: &mut [u8], limits: &Limits) -> Result<Option<Decoded>, Error> {
        while self.read < region.len() {
            if self.state == State::Data {
                let available = region.len() - self.read;
                let n = usize::try_from(self.remaining).map_or(available, |r| r.min(available));
                region.copy_within(self.read..self.read + n, self.written);
                self.read += n;
                self.written += n;
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let byte = region[self.read];
            self.read += 1;
            self.step(byte, limits)?;
            if self.state == State::Done {
                return Ok(Some(Decoded {
                    body: self.written,
                    consumed: self.read,
                }));
            }
        }
        Ok(None)
    }

    /// One framing byte.
    fn step(&mut self, b: u8, limits: &Limits) -> Result<(), Error> {
        self.state = match self.state {
            State::Size => match hex_value(b) {
                Some(v) => {
                    self.digits += 1;
                    if self.digits > MAX_SIZE_DIGITS {
                        return Err(Error::BadRequest);
                    }
                    self.remaining = (self.remaining << 4) | u64::from(v);
                    State::Size
                }
                None if self.digits == 0 => return Err(Error::BadRequest),
                None => {
                    self.check_body_size(limits)?;
                    self.after_size(b)?
                }
            },
            State::AfterSize => self.after_size(b)?,
            State::Extension => {
                self.extension_bytes += 1;
                if self.extension_bytes > limits.max_chunk_extensions {
                    return Err(Error::BadRequest);
                }
                match b {
                    b'\r' => State::SizeLf,
                    b'\t' | b' '..=b'~' | 0x80..=0xff => State::Extension,
                    _ => return Err(Error::BadRequest),
                }
            }
            State::SizeLf => {
                expect(b, b'\n')?;
                self.digits = 0;
                if self.remaining == 0 {
                    State::TrailerStart
                } else {
                    State::Data
                }
            }
            State::DataCr => {
                expect(b, b'\r')?;
                State::DataLf
            }
            State::DataLf => {
                expect(b, b'\n')?;
                State::Size
            }
            State::TrailerStart => match b {
                b'\r' => State::FinalLf,
                _ => {
                    // A space or tab here would be obs-fold: not a token byte, so refused.
                    self.line_bytes = 0;
                    self.count_trailer_byte(limits)?;
                    if !is_token_byte(b) {
                        return Err(Error::BadRequest);
                    }
                    self.name_len = 0;
                    self.push_name_byte(b);
                    State::TrailerName
                }
            },
            State::TrailerName => {
                self.count_trailer_byte(limits)?;
                match b {
                    b':' if self.forbidden_name() => return Err(Error::BadRequest),
                    b':' => State::TrailerValue,
                    _ if is_token_byte(b) => {
                        self.push_name_byte(b);
                        State::TrailerName
                    }
                    _ => return Err(Error::BadRequest),
                }
            }
            State::TrailerValue => match b {
                // A line is counted without its CRLF, as header lines are.
                b'\r' => State::TrailerLf,
                b'\t' | b' '..=b'~' | 0x80..=0xff => {
                    self.count_trailer_byte(limits)?;
                    State::TrailerValue
                }
                _ => return Err(Error::BadRequest),
            },
            State::TrailerLf => {
                expect(b, b'\n')?;
                State::TrailerStart
            }
            State::FinalLf => {
                expect(b, b'\n')?;
                State::Done
            }
            State::Data | State::Done => unreachable!("handled by decode"),
        };
        Ok(())
    }

    fn after_size(&mut self, b: u8) -> Result<State, Error> {
        Ok(match b {
            b' ' | b'\t' => State::AfterSize,
            b';' => State::Extension,
            b'\r' => State::SizeLf,
            _ => return Err(Error::BadRequest),
        })
    }

    /// Trailer fields are checked (`name: value`, like header fields, and none of
    /// [`FORBIDDEN_TRAILERS`]) and counted against the head limits, then dropped: they are
    /// never merged into the request's headers.
    fn count_trailer_byte(&mut self, limits: &Limits) -> Result<(), Error> {
        self.trailer_bytes += 1;
        self.line_bytes += 1;
        if self.trailer_bytes > limits.max_head || self.line_bytes > limits.max_header_line {
            return Err(Error::HeadersTooLarge);
        }
        Ok(())
    }

    fn push_name_byte(&mut self, b: u8) {
        if let Some(slot) = self.name.get_mut(self.name_len) {
            *slot = b.to_ascii_lowercase();
        }
        self.name_len = self.name_len.saturating_add(1);
    }

    /// The trailer name just read is one of [`FORBIDDEN_TRAILERS`].
    fn forbidden_name(&self) -> bool {
        self.name
            .get(..self.name_len)
            .is_some_and(|name| FORBIDDEN_TRAILERS.iter().any(|f| f.as_bytes() == name))
    }

    fn check_body_size(&self, limits: &Limits) -> Result<(), Error> {
        let total = (self.written as u64)
            .saturating_add(self.taken)
            .saturating_add(self.remaining);
        if total > limits.max_body as u64 {
            Err(Error::PayloadTooLarge)
        } else {
            Ok(())
        }
    }
}

fn expect(got: u8, want: u8) -> Result<(), Error> {
    if got == want {
        Ok(())
    } else {
        Err(Error::BadRequest)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(encoded: &[u8]) -> Result<Option<(Vec<u8>, usize)>, Error> {
        let mut region = encoded.to_vec();
        let mut dec = ChunkedDecoder::new();
        Ok(dec
            .decode(&mut region, &Limits::default())?
            .map(|d| (region[..d.body].to_vec(), d.consumed)))
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let enc = b"4\r\nWiki\r\n5;name=val\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (body, used) = decode_all(enc).expect("valid").expect("complete");
        assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(&enc[used..], b"NEXT");
    }

    #[test]
    fn every_split_gives_the_same_body() {
        let enc = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
        for split in 0..=enc.len() {
            let mut region = enc[..split].to_vec();
            let mut dec = ChunkedDecoder::new();
            let first = dec.decode(&mut region, &Limits::default()).expect("valid");
            let done = match first {
                Some(d) => d,
                None => {
                    region.extend_from_slice(&enc[split..]);
                    dec.decode(&mut region, &Limits::default())
                        .expect("valid")
                        .expect("complete")
                }
            };
            assert_eq!(
                &region[..done.body],
                b"abc0123456789abcdef",
                "split {split}"
            );
            assert_eq!(done.consumed, enc.len());
        }
    }

    #[test]
    fn compaction_keeps_the_body() {
        let enc = b"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n";
        let mut region = enc[..12].to_vec();
        let mut dec = ChunkedDecoder::new();
        assert_eq!(dec.decode(&mut region, &Limits::default()), Ok(None));
        let freed = dec.compact(&mut region, 12);
        region.truncate(12 - freed);
        region.extend_from_slice(&enc[12..]);
        let done = dec
            .decode(&mut region, &Limits::default())
            .expect("valid")
            .expect("complete");
        assert_eq!(&region[..done.body], b"abc");
        assert_eq!(done.consumed, region.len());
    }

    #[test]
    fn rejects_bad_framing() {
        for bad in [
            &b"\r\nabc\r\n0\r\n\r\n"[..], // no digit
            b";ext\r\nabc\r\n0\r\n\r\n",  // extension only
            b"0x3\r\nabc\r\n0\r\n\r\n",
            b"+3\r\nabc\r\n0\r\n\r\n",
            b" 3\r\nabc\r\n0\r\n\r\n",
            b"00000000000000001\r\na\r\n0\r\n\r\n", // 17 digits
            b"3\r\nabcX\r\n0\r\n\r\n",              // no CRLF after data
            b"3\nabc\r\n0\r\n\r\n",                 // bare LF
            b"0\r\nX: 1\r\n folded\r\n\r\n",
            b"0\r\nno colon\r\n\r\n",
            b"0\r\nBad Name: 1\r\n\r\n",
            b"0\r\n: empty name\r\n\r\n",
            b"0\r\nX: a\x00b\r\n\r\n",
        ] {
            assert_eq!(
                decode_all(bad),
                Err(Error::BadRequest),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn refuses_forbidden_trailer_fields() {
        for name in FORBIDDEN_TRAILERS {
            let upper = name.to_ascii_uppercase();
            for name in [name, upper.as_str()] {
                let enc = format!("1\r\na\r\n0\r\nX-Ok: 1\r\n{name}: x\r\n\r\n");
                assert_eq!(decode_all(enc.as_bytes()), Err(Error::BadRequest), "{name}");
                // Split anywhere (a read ending inside the name), the same refusal.
                for cut in 1..enc.len() {
                    let mut region = enc.as_bytes()[..cut].to_vec();
                    let mut dec = ChunkedDecoder::new();
                    let limits = Limits::default();
                    let first = dec.decode(&mut region, &limits);
                    let result = match first {
                        Ok(None) => {
                            let freed = dec.compact(&mut region, cut);
                            region.truncate(cut - freed);
                            region.extend_from_slice(&enc.as_bytes()[cut..]);
                            dec.decode(&mut region, &limits)
                        }
                        other => other,
                    };
                    assert_eq!(result, Err(Error::BadRequest), "{name} cut at {cut}");
                }
            }
        }
        // Names that merely start or end like a forbidden one, or are longer, are dropped.
        for name in [
            "Content-Length-X",
            "X-Content-Length",
            "Hosts",
            "Tex",
            "If-Unmodified-Since-X",
            "X-Very-Long-Trailer-Field-Name",
        ] {
            let enc = format!("1\r\na\r\n0\r\n{name}: x\r\n\r\n");
            let (body, used) = decode_all(enc.as_bytes()).expect(name).expect(name);
            assert_eq!((body.as_slice(), used), (&b"a"[..], enc.len()), "{name}");
        }
    }

    #[test]
    fn forbidden_trailer_list_is_lower_case_tokens() {
        for name in FORBIDDEN_TRAILERS {
            assert!(name.len() <= MAX_FORBIDDEN_NAME, "{name}");
            assert!(
                name.bytes()
                    .all(|b| is_token_byte(b) && !b.is_ascii_uppercase()),
                "{name}"
            );
        }
    }

    #[test]
    fn enforces_body_and_extension_limits() {
        let limits = Limits::default();
        let too_big = format!("{:x}\r\n", limits.max_body + 1);
        assert_eq!(decode_all(too_big.as_bytes()), Err(Error::PayloadTooLarge));
        let long_ext = format!(
            "1;{}\r\na\r\n0\r\n\r\n",
            "e".repeat(limits.max_chunk_extensions + 1)
        );
        assert_eq!(decode_all(long_ext.as_bytes()), Err(Error::BadRequest));
    }
}
