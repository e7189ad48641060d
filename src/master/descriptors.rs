//! The process's descriptor table, grown once at startup to hold every connection the workers
//! may open.
//!
//! The kernel grows a process's table as it fills (past 64, 128, 256, ... descriptors), and a
//! process whose table is shared by several threads waits for an RCU grace period each time
//! (`expand_files` → `synchronize_rcu`). With thread workers the table is shared, and the
//! ring does an accept inside `io_uring_enter`: the worker whose accept grows the table stalls
//! with every connection it serves, for as long as the grace period takes (measured: 0.3–2 s
//! during the slow-read attack's ramp, a fresh request unanswered meanwhile). Grown here,
//! before any worker thread starts, the table never has to grow under load; tables never
//! shrink. It costs the kernel 8 bytes per slot, none of the process's own memory.

use std::fs::File;
use std::os::fd::AsRawFd;

/// Largest table reserved, whatever the limits say (8 MiB of kernel memory).
const MOST: usize = 1 << 20;

/// Grow the table to hold `wanted` descriptors, within RLIMIT_NOFILE. Best effort: a failure
/// only leaves the kernel to grow it later.
pub fn reserve(wanted: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let allowed = usize::try_from(limit.rlim_cur).unwrap_or(MOST);
    let slots = wanted.min(allowed).min(MOST);
    if slots <= 64 {
        return;
    }
    let Ok(null) = File::open("/dev/null") else {
        return;
    };
    // The lowest free descriptor at or above `slots - 1`: the table grows to hold it.
    // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor we hold; the duplicate, if any, is ours
    // and closed at once.
    let high = unsafe {
        libc::fcntl(
            null.as_raw_fd(),
            libc::F_DUPFD_CLOEXEC,
            (slots - 1) as libc::c_int,
        )
    };
    if high >= 0 {
        // SAFETY: closes the duplicate made above, which nothing else knows of.
        unsafe { libc::close(high) };
    } else {
        tracing::debug!(
            "could not reserve {slots} descriptor slots: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    /// The table's size, from /proc/self/status.
    fn table_size() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("FDSize")
    }

    #[test]
    fn the_table_grows_and_the_descriptor_used_for_it_is_closed() {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into a live local.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        if limit.rlim_cur < 5000 {
            eprintln!(
                "RLIMIT_NOFILE {} is below the test's 5000: skipped",
                limit.rlim_cur
            );
            return;
        }
        super::reserve(5000);
        assert!(table_size() >= 5000, "FDSize {}", table_size());
        // Nothing else in this test process comes near descriptor 4999.
        assert!(!std::path::Path::new("/proc/self/fd/4999").exists());
    }
}
