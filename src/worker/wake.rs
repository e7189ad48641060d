//! The master's line to a worker: an eventfd the worker keeps a read armed on in its ring.
//! Writing to it asks the worker to drain (graceful shutdown). It is the only cross-thread
//! traffic a worker sees, and it is off the request path.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Debug)]
pub struct Wake {
    fd: OwnedFd,
}

impl Wake {
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd has no pointer arguments; a non-negative result is a new descriptor
        // that we own from here on.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        Ok(Wake {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Ask the worker to drain. Safe to call any number of times, from any thread.
    pub fn drain(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own open eventfd. A failure (the
        // counter cannot overflow at these rates) leaves the worker to the graceful timeout.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}
