//! Calling a WSGI app and turning what it answers into a [`Response`]: `start_response` (with
//! `exc_info`), the `write()` callable, and the iterable (sent whole when it is a list or a
//! tuple, else streamed one item a pull, `close()` called either way). Headers the server
//! manages are the server's: `Content-Length` only sizes a streamed body, `Transfer-Encoding`
//! and other hop-by-hop headers are dropped, `Connection: close` closes after the response.

use pyo3::exceptions::{PyAssertionError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use super::environ;
use crate::http::{is_token, Pull};
use crate::{Request, Response};

/// What `start_response` was given.
#[pyclass]
#[derive(Default)]
pub(crate) struct StartResponse {
    status: Option<u16>,
    headers: Vec<(String, String)>,
    /// Bytes given to the `write()` callable, sent before the iterable's.
    written: Vec<u8>,
    /// The response has left (the streamed part of a body is being sent): too late for
    /// `start_response(..., exc_info)` to change it.
    sent: bool,
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__(
        slf: Bound<'_, Self>,
        status: &str,
        headers: Vec<(String, String)>,
        exc_info: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Writer>> {
        let py = slf.py();
        {
            let me = slf.borrow();
            let exc_info = exc_info.filter(|info| !info.is_none());
            match exc_info {
                // PEP 3333: once the headers are out, re-raise the app's exception.
                Some(info) if me.sent => return Err(PyErr::from_value(info.get_item(1)?)),
                // Before that, exc_info lets the app replace what it said.
                Some(_) => {}
                None if me.status.is_some() => {
                    return Err(PyAssertionError::new_err(
                        "start_response was already called (without exc_info)",
                    ));
                }
                None => {}
            }
        }
        let code = status
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| {
                (200..=999).contains(c) && status.as_bytes().get(3).is_none_or(|&b| b == b' ')
            })
            .ok_or_else(|| PyValueError::new_err(format!("invalid status {status:?}")))?;
        for (name, value) in &headers {
            if !is_token(name) {
                return Err(PyValueError::new_err(format!(
                    "invalid header name {name:?}"
                )));
            }
            if value
                .chars()
                .any(|c| matches!(c, '\r' | '\n' | '\0') || c as u32 > 0xff)
            {
                return Err(PyValueError::new_err(format!(
                    "header {name} has a value that cannot be sent: {value:?}"
                )));
            }
        }
        let mut me = slf.borrow_mut();
        me.status = Some(code);
        me.headers = headers;
        drop(me);
        Py::new(
            py,
            Writer {
                start: slf.unbind(),
            },
        )
    }
}

/// The `write()` callable `start_response` returns.
#[pyclass]
pub(crate) struct Writer {
    start: Py<StartResponse>,
}

#[pymethods]
impl Writer {
    fn __call__(&self, py: Python<'_>, data: &[u8]) {
        self.start.borrow_mut(py).written.extend_from_slice(data);
    }
}

/// `wsgi.errors`: lines go to the error log.
#[pyclass]
#[derive(Default)]
pub(crate) struct ErrorStream {
    line: String,
}

#[pymethods]
impl ErrorStream {
    fn write(&mut self, text: &str) -> usize {
        self.line.push_str(text);
        while let Some(end) = self.line.find('\n') {
            tracing::error!(target: "wsgi", "{}", &self.line[..end]);
            self.line.drain(..=end);
        }
        text.len()
    }

    fn writelines(&mut self, lines: Vec<String>) {
        for line in lines {
            self.write(&line);
        }
    }

    fn flush(&mut self) {
        if !self.line.is_empty() {
            tracing::error!(target: "wsgi", "{}", self.line);
            self.line.clear();
        }
    }
}

/// The traceback of `err`, as Python prints it.
pub(crate) fn traceback(py: Python<'_>, err: &PyErr) -> String {
    let formatted = py.import("traceback").and_then(|tb| {
        let lines = tb.call_method1(
            "format_exception",
            (err.get_type(py), err.value(py), err.traceback(py)),
        )?;
        let lines: Vec<String> = lines.extract()?;
        Ok(lines.concat())
    });
    formatted
        .unwrap_or_else(|_| err.to_string())
        .trim_end()
        .to_string()
}

/// The bytes of one item of the app's iterable (it must be `bytes`).
fn item_bytes(item: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    match item.cast::<PyBytes>() {
        Ok(bytes) => Ok(bytes.as_bytes().to_vec()),
        Err(_) => Err(PyValueError::new_err(format!(
            "a WSGI app's iterable must give bytes, not {}",
            item.get_type().name()?
        ))),
    }
}

/// Call `close()` on the app's iterable, if it has one (PEP 3333: always, once).
fn close(py: Python<'_>, result: &Bound<'_, PyAny>, req_path: &str) {
    if let Ok(true) = result.hasattr("close") {
        if let Err(e) = result.call_method0("close") {
            tracing::error!(
                "WSGI iterable's close() for {req_path} raised:\n{}",
                traceback(py, &e)
            );
        }
    }
}

/// Answer `req` with `app`, into `res`. An exception before the response has left is a 500
/// with its traceback in the error log.
pub(crate) fn call(
    py: Python<'_>,
    app: &Py<PyAny>,
    req: &Request<'_>,
    flags: &environ::Flags<'_>,
    res: &mut Response<'_>,
) {
    match respond(py, app, req, flags, res) {
        Ok(()) => {}
        Err(e) => {
            tracing::error!(
                "the WSGI app raised for {} {}:\n{}",
                req.method(),
                req.path(),
                traceback(py, &e)
            );
            res.status(500)
                .header("Content-Type", "text/plain")
                .body("Internal Server Error\n");
        }
    }
}

fn respond(
    py: Python<'_>,
    app: &Py<PyAny>,
    req: &Request<'_>,
    flags: &environ::Flags<'_>,
    res: &mut Response<'_>,
) -> PyResult<()> {
    let env = environ::build(py, req, flags)?;
    let start = Bound::new(py, StartResponse::default())?;
    let result = app.bind(py).call1((env, start.clone()))?;
    // wsgi.file_wrapper over a real file: sent by the kernel from its descriptor.
    let file = match result.cast::<FileWrapper>() {
        Ok(wrapper) => wrapper.borrow().region(py)?,
        Err(_) => None,
    };
    // A list or tuple is the whole body (Django answers a one-item list).
    let whole = result.cast::<PyList>().is_ok() || result.cast::<PyTuple>().is_ok();
    let mut body = Vec::new();
    let mut rest = None;
    let gathered: PyResult<()> = (|| {
        if file.is_some() {
            return Ok(());
        }
        let mut iter = result.try_iter()?;
        if whole {
            for item in iter {
                body.extend_from_slice(&item_bytes(&item?)?);
            }
            return Ok(());
        }
        // Until the first non-empty item: start_response may be called that late.
        while let Some(item) = iter.next() {
            let bytes = item_bytes(&item?)?;
            if !bytes.is_empty() {
                body = bytes;
                rest = Some(iter.unbind());
                return Ok(());
            }
        }
        Ok(())
    })();
    if let Err(e) = gathered {
        close(py, &result, req.path());
        return Err(e);
    }
    let mut me = start.borrow_mut();
    let Some(status) = me.status else {
        drop(me);
        close(py, &result, req.path());
        return Err(PyAssertionError::new_err(
            "the WSGI app returned without calling start_response",
        ));
    };
    me.sent = true;
    res.status(status);
    let mut length = None;
    for (name, value) in &me.headers {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "content-length" => length = value.trim().parse::<u64>().ok(),
            "connection" if value.trim().eq_ignore_ascii_case("close") => {
                res.header("Connection", "close");
            }
            "connection" | "keep-alive" | "transfer-encoding" | "te" | "trailer" | "upgrade"
            | "proxy-connection" | "date" => {}
            _ => {
                let bytes: Vec<u8> = value.chars().map(|c| c as u32 as u8).collect();
                res.header(name, bytes);
            }
        }
    }
    let mut head = std::mem::take(&mut me.written);
    drop(me);
    if let Some((file, offset, available)) = file {
        close(py, &result, req.path());
        if !head.is_empty() {
            // write() bytes before a file: rare; sent as one body, copied.
            let mut whole = head;
            let mut taken = std::io::Read::take(&file, length.unwrap_or(available).min(available));
            std::io::Seek::seek(&mut &file, std::io::SeekFrom::Start(offset))
                .and_then(|_| std::io::Read::read_to_end(&mut taken, &mut whole))
                .map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))?;
            res.body_mut().extend_from_slice(&whole);
            return Ok(());
        }
        let len = length.unwrap_or(available).min(available);
        res.file_range(file, offset, len);
        return Ok(());
    }
    match rest {
        None => {
            close(py, &result, req.path());
            head.extend_from_slice(&body);
            res.body_mut().extend_from_slice(&head);
        }
        Some(iter) => {
            head.extend_from_slice(&body);
            let source = Iterable {
                first: head,
                iter,
                result: Some(result.unbind()),
                path: req.path().to_string(),
                failed: false,
            };
            res.stream_from(length, Box::new(source));
        }
    }
    Ok(())
}

/// `wsgi.file_wrapper`: a file-like object as the response. Over a real file (one with
/// `fileno()`), the body is sent with sendfile from a descriptor of its own, from the file's
/// position; otherwise it is iterated in `blksize` blocks, as PEP 3333 allows.
#[pyclass]
pub(crate) struct FileWrapper {
    filelike: Py<PyAny>,
    blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = 8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let block = self
            .filelike
            .bind(py)
            .call_method1("read", (self.blksize,))?;
        Ok((block.len()? > 0).then(|| block.unbind()))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr("close")? {
            filelike.call_method0("close")?;
        }
        Ok(())
    }
}

impl FileWrapper {
    /// A descriptor of the file, its position, and the bytes from there to its end; `None`
    /// when it is not a real file (no `fileno()`, or not a regular file).
    fn region(&self, py: Python<'_>) -> PyResult<Option<(std::fs::File, u64, u64)>> {
        use std::os::fd::{BorrowedFd, RawFd};
        let filelike = self.filelike.bind(py);
        let Ok(fd) = filelike
            .call_method0("fileno")
            .and_then(|n| n.extract::<RawFd>())
        else {
            return Ok(None);
        };
        let offset: u64 = filelike.call_method0("tell")?.extract()?;
        // SAFETY: `fd` is the file object's open descriptor, alive while we hold the object
        // (this call); it is only duplicated here.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let file = match borrowed.try_clone_to_owned() {
            Ok(owned) => std::fs::File::from(owned),
            Err(_) => return Ok(None),
        };
        let meta = match file.metadata() {
            Ok(meta) if meta.is_file() => meta,
            _ => return Ok(None),
        };
        Ok(Some((file, offset, meta.len().saturating_sub(offset))))
    }
}

/// Empty items of an iterable one pull skips at most.
const EMPTY_ITEMS_MAX: usize = 1024;

/// The next item of `iter`, as bytes; `None` at its end.
fn next_item(iter: &Bound<'_, pyo3::types::PyIterator>) -> PyResult<Option<Vec<u8>>> {
    match iter.clone().next() {
        None => Ok(None),
        Some(item) => item_bytes(&item?).map(Some),
    }
}

/// The rest of an app's iterable, pulled on the handler thread as the connection drains.
struct Iterable {
    /// What came before (write() bytes and the first item), sent first.
    first: Vec<u8>,
    iter: Py<pyo3::types::PyIterator>,
    /// The iterable itself, to `close()` once (on drop: ended, failed or abandoned).
    result: Option<Py<PyAny>>,
    path: String,
    failed: bool,
}

impl Pull for Iterable {
    /// One item a pull (a generator's items go out as they come); an item larger than `max`
    /// is kept and given in parts.
    fn pull(&mut self, out: &mut Vec<u8>, max: usize) -> bool {
        // Empty items are skipped, up to this many in a row (then the pull gives nothing,
        // which ends the response as broken: an endless run of them must not hold a thread).
        let mut empty = 0;
        while self.first.is_empty() && empty < EMPTY_ITEMS_MAX {
            let next =
                Python::attach(|py| next_item(self.iter.bind(py)).map_err(|e| traceback(py, &e)));
            match next {
                Ok(Some(bytes)) => {
                    empty += usize::from(bytes.is_empty());
                    self.first = bytes;
                }
                Ok(None) => return false,
                Err(tb) => {
                    tracing::error!(
                        "the WSGI app's iterable raised for {} (the response is cut short):\n{tb}",
                        self.path
                    );
                    self.failed = true;
                    return false;
                }
            }
        }
        let n = self.first.len().min(max);
        out.extend_from_slice(&self.first[..n]);
        self.first.drain(..n);
        true
    }

    fn failed(&self) -> bool {
        self.failed
    }
}

impl Drop for Iterable {
    fn drop(&mut self) {
        if let Some(result) = self.result.take() {
            Python::attach(|py| close(py, result.bind(py), &self.path));
        }
    }
}
