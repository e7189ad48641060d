//! The WSGI environ of a request (PEP 3333): CGI variables, `HTTP_*` headers, and the `wsgi.*`
//! keys. Byte strings from the wire become native strings decoded as latin-1, as PEP 3333 says.

use std::os::fd::IntoRawFd;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::respond::{ErrorStream, FileWrapper};
use crate::{Request, Scheme};

/// What the environ says of the server rather than of the request.
pub(crate) struct Flags<'a> {
    /// `--root-path`: SCRIPT_NAME, without a trailing slash.
    pub root_path: &'a str,
    pub multiprocess: bool,
    pub multithread: bool,
}

/// Bytes as a native string: each byte its own code point (latin-1).
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// `%XX` escapes decoded (a `%` not followed by two hex digits stays as it is).
fn percent_decode(raw: &str) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// SERVER_NAME and SERVER_PORT: from the Host header, else the address the request came to.
fn server_name_port(req: &Request<'_>) -> (String, String) {
    let default_port = match req.scheme() {
        Scheme::Https => "443",
        Scheme::Http => "80",
    };
    if let Some(host) = req.header("host").filter(|h| !h.is_empty()) {
        let host = latin1(host);
        // `[v6]:port`, `name:port`, or either without a port.
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) if !port.contains(']') && !port.is_empty() => {
                (name.to_string(), port.to_string())
            }
            _ => (host.clone(), default_port.to_string()),
        };
        return (name, port);
    }
    match req.local_addr() {
        Some(addr) => (addr.ip().to_string(), addr.port().to_string()),
        None => ("localhost".to_string(), default_port.to_string()),
    }
}

/// The environ of `req`, with its body as `wsgi.input`.
pub(crate) fn build<'py>(
    py: Python<'py>,
    req: &Request<'_>,
    flags: &Flags<'_>,
) -> PyResult<Bound<'py, PyDict>> {
    let env = PyDict::new(py);
    env.set_item("REQUEST_METHOD", req.method())?;
    let path = percent_decode(req.path());
    let root = flags.root_path.as_bytes();
    let (script, info) = if !root.is_empty()
        && path.starts_with(root)
        && matches!(path.get(root.len()), None | Some(b'/'))
    {
        (flags.root_path, &path[root.len()..])
    } else {
        (flags.root_path, &path[..])
    };
    env.set_item("SCRIPT_NAME", script)?;
    env.set_item("PATH_INFO", latin1(info))?;
    env.set_item("QUERY_STRING", req.query().unwrap_or(""))?;
    env.set_item(
        "RAW_URI",
        match req.query() {
            Some(q) => format!("{}?{q}", req.path()),
            None => req.path().to_string(),
        },
    )?;
    let protocol = if req.version() == 0 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    };
    env.set_item("SERVER_PROTOCOL", protocol)?;
    env.set_item(
        "SERVER_SOFTWARE",
        concat!("ringcorn/", env!("CARGO_PKG_VERSION")),
    )?;
    let (name, port) = server_name_port(req);
    env.set_item("SERVER_NAME", name)?;
    env.set_item("SERVER_PORT", port)?;
    if let Some(peer) = req.peer_addr() {
        env.set_item("REMOTE_ADDR", peer.ip().to_string())?;
        env.set_item("REMOTE_PORT", peer.port().to_string())?;
    }
    let body = req.body();
    let mut joined: Vec<(String, String)> = Vec::new();
    for (name, value) in req.headers() {
        // A header with `_` in its name could pose as another once dashes become
        // underscores: dropped, as Gunicorn does.
        if name.contains('_') {
            continue;
        }
        let key = if name.eq_ignore_ascii_case("content-type") {
            "CONTENT_TYPE".to_string()
        } else if name.eq_ignore_ascii_case("content-length") {
            continue;
        } else {
            let mut key = String::with_capacity(5 + name.len());
            key.push_str("HTTP_");
            key.extend(name.chars().map(|c| match c {
                '-' => '_',
                c => c.to_ascii_uppercase(),
            }));
            key
        };
        let value = latin1(value);
        match joined.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => {
                v.push(',');
                v.push_str(&value);
            }
            None => joined.push((key, value)),
        }
    }
    for (key, value) in joined {
        env.set_item(key, value)?;
    }
    // The body as it was decoded (chunked included): its length is what can be read.
    if !body.is_empty() || req.header("content-length").is_some() {
        env.set_item("CONTENT_LENGTH", body.len().to_string())?;
    }
    env.set_item("wsgi.version", (1, 0))?;
    env.set_item("wsgi.url_scheme", req.scheme().as_str())?;
    env.set_item("wsgi.input", input(py, req)?)?;
    env.set_item("wsgi.errors", Bound::new(py, ErrorStream::default())?)?;
    env.set_item("wsgi.multithread", flags.multithread)?;
    env.set_item("wsgi.multiprocess", flags.multiprocess)?;
    env.set_item("wsgi.run_once", false)?;
    env.set_item("wsgi.input_terminated", true)?;
    env.set_item("wsgi.file_wrapper", py.get_type::<FileWrapper>())?;
    Ok(env)
}

/// `wsgi.input`: the body as a binary file. A spooled body is read from its own descriptor of
/// the spool file (so a large upload is streamed from the page cache, not copied); a small
/// one from a copy in memory.
fn input<'py>(py: Python<'py>, req: &Request<'_>) -> PyResult<Bound<'py, PyAny>> {
    let io = py.import("io")?;
    if let Some(file) = req.body_file() {
        let dup = file
            .try_clone()
            .map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))?;
        let fd = dup.into_raw_fd();
        // io.open owns the descriptor from here (closefd=True). The descriptor shares its
        // offset with the spool's, which writing left at the end: read from the start.
        let input = io.call_method1("open", (fd, "rb"))?;
        input.call_method1("seek", (0,))?;
        return Ok(input);
    }
    io.call_method1("BytesIO", (PyBytes::new(py, req.body()),))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_decoded_and_stray_percents_kept() {
        assert_eq!(percent_decode("/a%20b/%2F%zz%4"), b"/a b//%zz%4");
        assert_eq!(latin1(&[b'a', 0xe9]), "a\u{e9}");
    }
}
