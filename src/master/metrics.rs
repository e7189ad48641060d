//! `--metrics`: the master's own listener, answering `GET /metrics` with the Prometheus text
//! format. It is served in the master's single thread, polled beside its signals, never by
//! the workers: a scrape costs the request path nothing. Every socket is non-blocking; a
//! scraper gets [`SCRAPE_TIMEOUT`] to send its request and read the answer, at most
//! [`MAX_SCRAPES`] are served at once, and each connection closes after its answer.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::sockets::{listen_single, BindError, Single};
use crate::config::Bind;

/// Scrapes served at once; more wait in the listener's backlog.
const MAX_SCRAPES: usize = 16;
/// A scraper that has not sent its request and read the answer by then is cut off.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most a scrape's request may hold (request line and headers).
const MAX_REQUEST: usize = 8 * 1024;
/// The exposition format's media type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The listener and the scrapes under way.
pub struct Endpoint {
    bind: Bind,
    listener: Single,
    scrapes: Vec<Scrape>,
}

struct Scrape {
    fd: OwnedFd,
    input: Vec<u8>,
    /// The answer, once the request is in; `output[sent..]` is still to go.
    output: Option<Vec<u8>>,
    sent: usize,
    deadline: Instant,
}

impl Endpoint {
    /// Listen on `bind` (see [`listen_single`] for `take_over`).
    pub fn open(
        bind: &Bind,
        owner: Option<(u32, u32)>,
        take_over: bool,
    ) -> Result<Endpoint, BindError> {
        Ok(Endpoint {
            bind: bind.clone(),
            listener: listen_single(bind, owner, take_over)?,
            scrapes: Vec::new(),
        })
    }

    /// The address asked for.
    pub fn bind(&self) -> &Bind {
        &self.bind
    }

    /// Where the metrics are, as the startup line shows it.
    pub fn shown(&self) -> String {
        format!("{}/metrics", self.listener.shown)
    }

    /// What to poll for: the listener while there is room, each scrape's next step.
    pub fn poll_fds(&self, fds: &mut Vec<libc::pollfd>) {
        if self.scrapes.len() < MAX_SCRAPES {
            fds.push(pollfd(&self.listener.fd, libc::POLLIN));
        }
        for s in &self.scrapes {
            let events = if s.output.is_some() {
                libc::POLLOUT
            } else {
                libc::POLLIN
            };
            fds.push(pollfd(&s.fd, events));
        }
    }

    /// Make whatever progress the sockets allow without blocking: accept, read requests,
    /// answer them (`render` builds the metrics text), send, close what is done or late.
    pub fn serve(&mut self, render: &mut dyn FnMut() -> String) {
        let now = Instant::now();
        while self.scrapes.len() < MAX_SCRAPES {
            // SAFETY: accept4 on our non-blocking listener, asking for no address.
            let fd = unsafe {
                libc::accept4(
                    self.listener.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                )
            };
            if fd < 0 {
                break;
            }
            self.scrapes.push(Scrape {
                // SAFETY: a successful accept returns a new descriptor that only we hold.
                fd: unsafe { OwnedFd::from_raw_fd(fd) },
                input: Vec::new(),
                output: None,
                sent: 0,
                deadline: now + SCRAPE_TIMEOUT,
            });
        }
        self.scrapes
            .retain_mut(|s| now < s.deadline && s.progress(render));
    }
}

impl Scrape {
    /// Read, answer, send as far as the socket allows; false once the scrape is over.
    fn progress(&mut self, render: &mut dyn FnMut() -> String) -> bool {
        if self.output.is_none() {
            let mut buf = [0u8; 2048];
            loop {
                // SAFETY: reads into a live local buffer of its length; the socket is
                // non-blocking.
                let n = unsafe {
                    libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                };
                match n {
                    0 => return false,
                    n if n < 0 => {
                        return io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
                    }
                    n => self.input.extend_from_slice(&buf[..n as usize]),
                }
                if let Some(answer) = answer(&self.input, render) {
                    self.output = Some(answer);
                    break;
                }
            }
        }
        let Some(out) = &self.output else {
            return true;
        };
        while self.sent < out.len() {
            let rest = &out[self.sent..];
            // SAFETY: sends from a live slice; the socket is non-blocking.
            let n = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                return io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock;
            }
            self.sent += n as usize;
        }
        false
    }
}

/// The answer to the request in `input`, once it is complete (or cannot be).
fn answer(input: &[u8], render: &mut dyn FnMut() -> String) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(input) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) if input.len() <= MAX_REQUEST => return None,
        Ok(httparse::Status::Partial) => {
            return Some(response(431, "text/plain", b"request too large\n", false))
        }
        Err(_) => return Some(response(400, "text/plain", b"bad request\n", false)),
    }
    let head = req.method == Some("HEAD");
    if !(head || req.method == Some("GET")) {
        return Some(response(
            405,
            "text/plain",
            b"only GET and HEAD are served here\n",
            false,
        ));
    }
    let path = req.path.unwrap_or("");
    let path = path.split('?').next().unwrap_or(path);
    if path != "/metrics" {
        return Some(response(
            404,
            "text/plain",
            b"the metrics are at /metrics\n",
            head,
        ));
    }
    Some(response(200, CONTENT_TYPE, render().as_bytes(), head))
}

fn response(status: u16, content_type: &str, body: &[u8], head: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    let allow = if status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body);
    }
    out
}

fn pollfd(fd: &OwnedFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(request: &[u8]) -> Option<String> {
        answer(request, &mut || "metric 1\n".to_string())
            .map(|a| String::from_utf8(a).expect("ascii"))
    }

    #[test]
    fn answers_get_and_head_on_metrics_only() {
        let get = ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("complete");
        assert!(get.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(get.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(get.ends_with("\r\n\r\nmetric 1\n"));
        let head = ask(b"HEAD /metrics?x=1 HTTP/1.1\r\n\r\n").expect("complete");
        assert!(head.contains("Content-Length: 9\r\n") && head.ends_with("\r\n\r\n"));
        assert!(ask(b"GET / HTTP/1.1\r\n\r\n")
            .expect("complete")
            .starts_with("HTTP/1.1 404"));
        let post = ask(b"POST /metrics HTTP/1.1\r\n\r\n").expect("complete");
        assert!(post.starts_with("HTTP/1.1 405") && post.contains("Allow: GET, HEAD\r\n"));
        assert!(ask(b"\x16\x03\x01garbage\r\n\r\n")
            .expect("refused")
            .starts_with("HTTP/1.1 400"));
    }

    #[test]
    fn waits_for_the_whole_head_within_the_limit() {
        assert_eq!(ask(b"GET /metrics HTTP/1.1\r\nHost"), None);
        let mut long = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_REQUEST + 1, b'a');
        assert!(ask(&long).expect("refused").starts_with("HTTP/1.1 431"));
    }
}
