//! `bytes`: `GET /N` answers exactly N bytes of `x` (N ≤ 16 MiB), for response-size benchmarks.
//!
//! Nothing is built per request. Bodies under 64 KiB come from a static block (copied after
//! the head, or sent beside it); larger ones are a region of an in-memory file (memfd) holding
//! 16 MiB of `x`, which the kernel sends itself (sendfile), as a static file server would. The
//! file is made once per process, the first time it is needed; where memfd is unavailable the
//! bytes are held in memory instead, and sent from there without a copy.
//!
//! `?body=` picks another way of producing the same bytes, to measure and test each:
//! - `copy`: written into the body buffer (`Response::body_mut`), as a handler building its
//!   body would;
//! - `vec`: a `Vec` allocated per request, handed over (`Response::body_from`);
//! - `shared`: a slice of one shared 16 MiB buffer (`Response::body_from`);
//! - `stream`: pulled 16 KiB at a time as the socket drains, chunked (`Response::stream`);
//! - `sized`: the same with `Content-Length` (`Response::stream_sized`).

use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::sync::OnceLock;

use crate::{Request, Response};

/// Largest body the app will produce.
const MAX: usize = 16 * 1024 * 1024;
/// Bodies shorter than this come from [`BLOCK`].
const SMALL: usize = 64 * 1024;
static BLOCK: [u8; SMALL] = [b'x'; SMALL];

/// Where the large bodies come from.
enum Large {
    File(File),
    Memory(&'static [u8]),
}

fn large() -> &'static Large {
    static LARGE: OnceLock<Large> = OnceLock::new();
    LARGE.get_or_init(|| match memfd() {
        Ok(file) => Large::File(file),
        Err(e) => {
            tracing::warn!("bytes app: no memfd ({e}); large bodies are held in memory");
            Large::Memory(Box::leak(vec![b'x'; MAX].into_boxed_slice()))
        }
    })
}

/// An in-memory file of [`MAX`] bytes of `x`.
fn memfd() -> std::io::Result<File> {
    // SAFETY: memfd_create reads a NUL-terminated name; a non-negative result is a new
    // descriptor owned by nobody else.
    let fd = unsafe { libc::memfd_create(c"ringcorn-bytes".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create.
    let mut file = unsafe { File::from_raw_fd(fd) };
    for _ in 0..MAX / SMALL {
        file.write_all(&BLOCK)?;
    }
    Ok(file)
}

/// One shared buffer of [`MAX`] bytes of `x` (made the first time `?body=shared` asks).
fn shared() -> &'static [u8] {
    static SHARED: OnceLock<&'static [u8]> = OnceLock::new();
    SHARED.get_or_init(|| Box::leak(vec![b'x'; MAX].into_boxed_slice()))
}

/// The parts a streamed body of `n` bytes is pulled in.
fn parts(n: usize) -> impl Iterator<Item = &'static [u8]> {
    const PART: usize = 16 * 1024;
    (0..n.div_ceil(PART)).map(move |i| &BLOCK[..PART.min(n - i * PART)])
}

pub fn handle(req: &Request<'_>, res: &mut Response<'_>) {
    let how = req.query().and_then(|q| q.strip_prefix("body="));
    match req.path().strip_prefix('/').map(str::parse::<usize>) {
        Some(Ok(n)) if n <= MAX && how.is_some() => {
            if matches!(how, Some("copy" | "vec" | "shared" | "stream" | "sized")) {
                res.header("Content-Type", "application/octet-stream");
            }
            match how {
                Some("copy") => res.body_mut().resize(n, b'x'),
                Some("vec") => {
                    res.body_from(vec![b'x'; n]);
                }
                Some("shared") => {
                    res.body_from(&shared()[..n]);
                }
                Some("stream") => {
                    res.stream(parts(n));
                }
                Some("sized") => {
                    res.stream_sized(n as u64, parts(n));
                }
                _ => {
                    res.status(400)
                        .header("Content-Type", "text/plain")
                        .body("?body= takes copy, vec, shared, stream or sized\n");
                }
            }
        }
        Some(Ok(n)) if n <= MAX => {
            res.header("Content-Type", "application/octet-stream");
            if n < SMALL {
                res.body_from(&BLOCK[..n]);
            } else {
                match large() {
                    Large::File(file) => res.file_range(file, 0, n as u64),
                    Large::Memory(bytes) => res.body_from(&bytes[..n]),
                };
            }
        }
        _ => {
            res.status(404)
                .header("Content-Type", "text/plain")
                .body(format!("ask for GET /N with N at most {MAX}\n"));
        }
    }
}
