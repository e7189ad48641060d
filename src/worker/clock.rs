//! The worker's clock: moments on the monotonic clock in 8 bytes (a `std::time::Instant` takes
//! 16), so the deadlines every connection carries keep an idle connection small.

use std::ops::{Add, Sub};
use std::time::Duration;

/// Nanoseconds on `CLOCK_MONOTONIC` (about 584 years of range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Moment(u64);

impl Moment {
    pub fn now() -> Moment {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec into a live local (CLOCK_MONOTONIC cannot
        // fail on Linux; it is a vDSO call).
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        Moment(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }

    /// The time from `earlier` to this moment (zero if `earlier` is later).
    pub fn since(self, earlier: Moment) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Moment {
    type Output = Moment;
    fn add(self, d: Duration) -> Moment {
        Moment(self.0.saturating_add(nanos(d)))
    }
}

impl Sub<Duration> for Moment {
    type Output = Moment;
    fn sub(self, d: Duration) -> Moment {
        Moment(self.0.saturating_sub(nanos(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_add_subtract_and_order_like_instants() {
        let a = Moment::now();
        let b = a + Duration::from_millis(1500);
        assert!(b > a);
        assert_eq!(b.since(a), Duration::from_millis(1500));
        assert_eq!(a.since(b), Duration::ZERO);
        assert_eq!(b - Duration::from_millis(1500), a);
        assert!(Moment::now() >= a);
        assert_eq!(a + Duration::MAX, Moment(u64::MAX));
    }
}
