//! `static`: the files under a root directory, answered the way nginx's static module answers
//! them.
//!
//! - GET and HEAD only (anything else: 405 with `Allow: GET, HEAD`).
//! - The path is percent-decoded and checked ([`path`]), then opened beneath the root with
//!   `openat2(RESOLVE_BENEATH)` ([`open`]): nothing outside the root is ever opened, whatever
//!   the path or the symlinks under the root say.
//! - A directory without its trailing slash is redirected (301) to it with one; with it, its
//!   `index.html` is served if there is one, and otherwise 404: directories are never listed.
//!   Anything that is not a regular file or a directory (FIFO, socket, device) is 404.
//! - `EACCES` is 403; a name that leads nowhere (missing, not a directory, a symlink that
//!   leaves the root) is 404; any other error is 500, logged.
//! - Headers: `Content-Type` by extension (`mime_guess`; `; charset=utf-8` for `text/*`,
//!   `application/octet-stream` when unknown), `Last-Modified`, nginx's `ETag`,
//!   `Accept-Ranges: bytes`. Conditionals and ranges: [`conditional`], [`range`].
//! - The body is sent zero-copy by the server ([`Response::file_range`]); a HEAD gets the same
//!   headers and `Content-Length` without it. `Range` is honoured for GET only (RFC 9110
//!   §14.2: range handling is defined for GET alone), so a HEAD describes the whole file.
//!
//! Each request opens its file afresh (no cache of descriptors or metadata): the open and the
//! `fstat` are synchronous system calls on the worker's thread.

mod conditional;
mod open;
mod path;
mod range;
#[cfg(test)]
mod serve_tests;

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use conditional::{Outcome, Validators};
use open::Resolver;
use path::PathError;
use range::Ranged;

use crate::{App, Handler, Request, Response, WorkerInfo};

/// The name of the file served for a directory.
const INDEX: &str = "index.html";

/// The `static` app: files under `root`.
#[derive(Debug, Clone)]
pub struct Files {
    root: Arc<Root>,
}

#[derive(Debug)]
struct Root {
    /// The root directory, `O_PATH`.
    fd: OwnedFd,
    /// As given, for log lines.
    path: PathBuf,
    resolver: Resolver,
}

impl Files {
    /// Opens the root directory (`O_PATH | O_DIRECTORY | O_CLOEXEC`); the error says why when
    /// it is not a directory this process can search.
    pub fn new(root: &Path) -> Result<Files, String> {
        let fd = open::open_root(root)?;
        let resolver = open::probe(fd.as_fd());
        if resolver == Resolver::Walk {
            tracing::info!(
                "static: openat2 is not available (Linux < 5.6 or a seccomp filter): \
                 every symlink under {} is refused",
                root.display()
            );
        }
        Ok(Files {
            root: Arc::new(Root {
                fd,
                path: root.to_path_buf(),
                resolver,
            }),
        })
    }
}

impl App for Files {
    type Handler = FilesHandler;

    fn handler(&self, _worker: WorkerInfo) -> FilesHandler {
        FilesHandler {
            root: Arc::clone(&self.root),
            rel: Vec::new(),
            cpath: Vec::new(),
            etag: String::new(),
            text: String::new(),
        }
    }
}

/// One worker's handler of [`Files`]: the shared root, and scratch buffers reused from one
/// request to the next.
#[derive(Debug)]
pub struct FilesHandler {
    root: Arc<Root>,
    /// The decoded path relative to the root.
    rel: Vec<u8>,
    /// Its NUL-terminated copy for the open.
    cpath: Vec<u8>,
    etag: String,
    /// Last-Modified, Location, Content-Type, Content-Range.
    text: String,
}

impl Handler for FilesHandler {
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        let get = match req.method() {
            "GET" => true,
            "HEAD" => false,
            _ => {
                res.header("Allow", "GET, HEAD");
                return error(res, 405);
            }
        };
        let dir = match path::decode(req.path(), &mut self.rel) {
            Ok(dir) => dir,
            Err(PathError::BadRequest) => return error(res, 400),
            Err(PathError::NotFound) => return error(res, 404),
        };
        let (file, meta) = match self.open(req) {
            Ok(opened) => opened,
            Err(status) => return error(res, status),
        };
        if meta.is_dir() {
            if !dir {
                path::directory_location(&self.rel, req.query(), &mut self.text);
                res.status(301).header("Location", &self.text);
                return error_body(res, 301);
            }
            if !self.rel.is_empty() {
                self.rel.push(b'/');
            }
            self.rel.extend_from_slice(INDEX.as_bytes());
            return match self.open(req) {
                Ok((file, meta)) if meta.is_file() => self.send(req, res, get, file, &meta),
                Ok(_) => error(res, 404),
                Err(status) => error(res, status),
            };
        }
        if dir {
            // `/file/`: a file is not a directory (the kernel's ENOTDIR, nginx's 404).
            return error(res, 404);
        }
        self.send(req, res, get, file, &meta)
    }
}

impl FilesHandler {
    /// Opens `self.rel` beneath the root and stats it: a regular file (`O_NONBLOCK` cleared)
    /// or a directory, or the status to answer with (404 for any other type of file).
    fn open(&mut self, req: &Request<'_>) -> Result<(File, std::fs::Metadata), u16> {
        let root = &self.root;
        let fd = root.fd.as_fd();
        let file =
            open::open_beneath(fd, root.resolver, &self.rel, &mut self.cpath).map_err(|e| {
                let status = open::status_of(&e);
                if status == 500 {
                    tracing::warn!(
                        "static: cannot open {:?} under {}: {e}",
                        req.path(),
                        root.path.display()
                    );
                }
                status
            })?;
        let meta = file.metadata().map_err(|e| {
            tracing::warn!("static: cannot fstat {:?}: {e}", req.path());
            500u16
        })?;
        if meta.is_dir() {
            return Ok((file, meta));
        }
        if !meta.is_file() {
            return Err(404);
        }
        open::clear_nonblock(&file).map_err(|e| {
            tracing::warn!("static: cannot clear O_NONBLOCK on {:?}: {e}", req.path());
            500u16
        })?;
        Ok((file, meta))
    }

    /// Answers with the regular file `file` (named by `self.rel`): conditionals, range,
    /// headers, body.
    fn send(
        &mut self,
        req: &Request<'_>,
        res: &mut Response<'_>,
        get: bool,
        file: File,
        meta: &std::fs::Metadata,
    ) {
        let v = Validators::new(meta.mtime(), meta.len());
        v.etag(&mut self.etag);
        match conditional::evaluate(req.headers(), &v, &self.etag) {
            Outcome::Proceed => {}
            Outcome::NotModified => {
                v.last_modified(&mut self.text);
                res.status(304)
                    .header("ETag", &self.etag)
                    .header("Last-Modified", &self.text);
                return;
            }
            Outcome::PreconditionFailed => return error(res, 412),
        }
        let ranged = if get {
            self.ranged(req, &v)
        } else {
            Ranged::Full
        };
        if ranged == Ranged::Unsatisfiable {
            self.text.clear();
            self.text.push_str("bytes */");
            self.text.push_str(itoa::Buffer::new().format(v.size));
            res.status(416).header("Content-Range", &self.text);
            return error_body(res, 416);
        }
        content_type(&self.rel, &mut self.text);
        res.header("Content-Type", &self.text);
        v.last_modified(&mut self.text);
        res.header("Last-Modified", &self.text)
            .header("ETag", &self.etag)
            .header("Accept-Ranges", "bytes");
        match ranged {
            Ranged::Partial { start, len } => {
                self.text.clear();
                let mut n = itoa::Buffer::new();
                self.text.push_str("bytes ");
                self.text.push_str(n.format(start));
                self.text.push('-');
                self.text.push_str(n.format(start + (len - 1)));
                self.text.push('/');
                self.text.push_str(n.format(v.size));
                res.status(206)
                    .header("Content-Range", &self.text)
                    .file_range(file, start, len);
            }
            // An empty file needs no file body (its empty buffer body says Content-Length: 0).
            Ranged::Full | Ranged::Unsatisfiable if v.size == 0 => {}
            Ranged::Full | Ranged::Unsatisfiable => {
                res.file_range(file, 0, v.size);
            }
        }
    }

    /// What the request's `Range` (subject to `If-Range`) selects. Several `Range` lines are
    /// ambiguous and ignored, as is a `Range` whose `If-Range` does not match.
    fn ranged(&self, req: &Request<'_>, v: &Validators) -> Ranged {
        let mut ranges = req
            .headers()
            .filter(|(name, _)| name.eq_ignore_ascii_case("range"));
        let (Some((_, value)), None) = (ranges.next(), ranges.next()) else {
            return Ranged::Full;
        };
        if let Some(if_range) = req.header("if-range") {
            if !conditional::range_applies(if_range, v, &self.etag) {
                return Ranged::Full;
            }
        }
        range::evaluate(value, v.size)
    }
}

/// Writes the `Content-Type` of the file named by the last segment of `rel` into `out`.
fn content_type(rel: &[u8], out: &mut String) {
    out.clear();
    let name = rel.rsplit(|&b| b == b'/').next().unwrap_or(rel);
    let ext = match name.iter().rposition(|&b| b == b'.') {
        // A leading dot starts a hidden name, not an extension (`.profile`).
        Some(dot) if dot > 0 => std::str::from_utf8(&name[dot + 1..]).ok(),
        _ => None,
    };
    let mime = ext
        .and_then(|ext| mime_guess::from_ext(ext).first_raw())
        .unwrap_or("application/octet-stream");
    out.push_str(mime);
    if mime.starts_with("text/") {
        out.push_str("; charset=utf-8");
    }
}

/// An error (or redirect) answer: status and a one-line text body.
fn error(res: &mut Response<'_>, status: u16) {
    res.status(status);
    error_body(res, status)
}

fn error_body(res: &mut Response<'_>, status: u16) {
    let reason = crate::http::reason(status);
    res.header("Content-Type", "text/plain");
    let body = res.body_mut();
    body.clear();
    body.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    body.push(b' ');
    body.extend_from_slice(reason.as_bytes());
    body.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(name: &str) -> String {
        let mut s = String::new();
        content_type(name.as_bytes(), &mut s);
        s
    }

    #[test]
    fn content_types() {
        assert_eq!(ct("index.html"), "text/html; charset=utf-8");
        assert_eq!(ct("dir/a.txt"), "text/plain; charset=utf-8");
        assert_eq!(ct("a.CSS"), "text/css; charset=utf-8");
        assert_eq!(ct("x.png"), "image/png");
        assert_eq!(ct("data.json"), "application/json");
        assert_eq!(ct("a.tar.gz"), "application/gzip");
        assert_eq!(ct("noext"), "application/octet-stream");
        assert_eq!(ct(".profile"), "application/octet-stream");
        assert_eq!(ct("dir.d/noext"), "application/octet-stream");
        assert_eq!(ct("weird.unknownext"), "application/octet-stream");
        assert_eq!(ct("trailing."), "application/octet-stream");
        let mut s = String::new();
        content_type(b"bad.\xff", &mut s);
        assert_eq!(s, "application/octet-stream");
    }

    #[test]
    fn files_is_an_app_that_is_send_and_sync() {
        fn app<A: App + Clone>() {}
        app::<Files>();
    }

    #[test]
    fn new_refuses_what_is_not_a_directory() {
        assert!(Files::new(Path::new("/nonexistent-ringcorn-root")).is_err());
        assert!(Files::new(Path::new("/proc/self/status")).is_err());
        assert!(Files::new(&std::env::temp_dir()).is_ok());
    }
}
