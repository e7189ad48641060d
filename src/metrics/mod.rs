//! What a worker counts, and how the counts reach Prometheus.
//!
//! Each worker keeps its [`Counters`] as plain integers in its own memory (the sans-IO HTTP
//! core and the ring loop add to them: no atomics, no shared cache line on the request path).
//! On each tick of its loop the worker copies them into its own line of the master's board
//! ([`Counters::publish`]); the master only reads the board, adds what exited workers had
//! counted ([`Counters::absorb`]), and renders the Prometheus text format ([`text`]) when
//! `/metrics` is scraped.

pub mod text;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One count kept per worker. The order is the layout of a published line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// Responses by status class (the server's refusals included).
    Responses1xx,
    Responses2xx,
    Responses3xx,
    Responses4xx,
    Responses5xx,
    /// Requests the server refused itself, by status.
    Refused400,
    Refused408,
    Refused413,
    Refused414,
    Refused417,
    Refused431,
    Refused501,
    Refused505,
    /// Connections closed for their PROXY protocol header: from a peer not in
    /// `--proxy-allow-from`, malformed, or not arrived within the header deadline.
    ProxyUntrusted,
    ProxyMalformed,
    ProxyTimeout,
    /// Connections accepted.
    Accepted,
    /// TLS handshakes completed, and connections that failed before completing one (a bad or
    /// refused handshake, plain HTTP sent to a TLS port).
    TlsHandshakes,
    TlsFailures,
    /// Connections closed because a deadline passed: the request head's, the body's, a send's,
    /// or the keep-alive wait.
    DeadlineHeader,
    DeadlineBody,
    DeadlineSend,
    DeadlineKeepAlive,
    /// Bytes received from and sent to clients.
    BytesIn,
    BytesOut,
    /// Times accepting paused: out of descriptors, out of memory, at `--max-connections`.
    PausedDescriptors,
    PausedMemory,
    PausedFull,
    /// Connections open now (a gauge: set when published, not carried past the worker).
    Open,
}

/// How many [`Counter`]s there are.
pub const COUNTERS: usize = Counter::Open as usize + 1;

/// Upper bounds (seconds) of the request duration histogram's buckets; a last bucket holds
/// the rest (`+Inf`).
pub const BUCKET_BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// The bounds in nanoseconds, for the comparison on the request path.
const BOUND_NANOS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];
pub const BUCKETS: usize = BUCKET_BOUNDS.len() + 1;

/// Values in a published line: the counters, the buckets, the duration sum (ns) and count.
pub const LINE_VALUES: usize = COUNTERS + BUCKETS + 2;

impl Counter {
    /// The class counter of a response status.
    #[inline]
    pub fn response(status: u16) -> Counter {
        match status {
            0..=199 => Counter::Responses1xx,
            200..=299 => Counter::Responses2xx,
            300..=399 => Counter::Responses3xx,
            400..=499 => Counter::Responses4xx,
            _ => Counter::Responses5xx,
        }
    }

    /// The counter of a refusal by the server itself.
    pub fn refused(status: u16) -> Option<Counter> {
        Some(match status {
            400 => Counter::Refused400,
            408 => Counter::Refused408,
            413 => Counter::Refused413,
            414 => Counter::Refused414,
            417 => Counter::Refused417,
            431 => Counter::Refused431,
            501 => Counter::Refused501,
            505 => Counter::Refused505,
            _ => return None,
        })
    }

    /// A gauge: what it says now, not a running total.
    pub fn is_gauge(self) -> bool {
        self == Counter::Open
    }
}

/// One worker's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    values: [u64; COUNTERS],
    /// Requests whose duration fell in each bucket (not cumulative).
    buckets: [u64; BUCKETS],
    duration_ns: u64,
    timed: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            values: [0; COUNTERS],
            buckets: [0; BUCKETS],
            duration_ns: 0,
            timed: 0,
        }
    }
}

impl Counters {
    #[inline]
    pub fn add(&mut self, counter: Counter, n: u64) {
        self.values[counter as usize] = self.values[counter as usize].wrapping_add(n);
    }

    pub fn set(&mut self, gauge: Counter, value: u64) {
        self.values[gauge as usize] = value;
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize]
    }

    /// `n` requests took `took` each, from their first byte to their response queued.
    #[inline]
    pub fn observe(&mut self, took: Duration, n: u64) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUND_NANOS
            .iter()
            .position(|&bound| ns <= bound)
            .unwrap_or(BUCKETS - 1);
        self.buckets[bucket] += n;
        self.duration_ns = self.duration_ns.wrapping_add(ns.saturating_mul(n));
        self.timed += n;
    }

    /// Requests in each bucket (not cumulative), the total duration, and how many were timed.
    pub fn histogram(&self) -> (&[u64; BUCKETS], Duration, u64) {
        (
            &self.buckets,
            Duration::from_nanos(self.duration_ns),
            self.timed,
        )
    }

    /// Copy every value into a board line (each store its own relaxed atomic: a reader may
    /// see one value fresher than another, never a torn one).
    pub fn publish(&self, line: &[AtomicU64; LINE_VALUES]) {
        for (slot, v) in line.iter().zip(self.flat()) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    /// What a board line holds.
    pub fn read(line: &[AtomicU64; LINE_VALUES]) -> Counters {
        let mut flat = [0; LINE_VALUES];
        for (v, slot) in flat.iter_mut().zip(line) {
            *v = slot.load(Ordering::Relaxed);
        }
        let mut c = Counters::default();
        c.values.copy_from_slice(&flat[..COUNTERS]);
        c.buckets
            .copy_from_slice(&flat[COUNTERS..COUNTERS + BUCKETS]);
        c.duration_ns = flat[COUNTERS + BUCKETS];
        c.timed = flat[COUNTERS + BUCKETS + 1];
        c
    }

    /// Add `other`'s counts to these: gauges too when `gauges` (workers serving side by side),
    /// not when `other` is a worker that has exited.
    pub fn absorb(&mut self, other: &Counters, gauges: bool) {
        for (i, (v, o)) in self.values.iter_mut().zip(other.values).enumerate() {
            if gauges || i != Counter::Open as usize {
                *v = v.wrapping_add(o);
            }
        }
        for (b, o) in self.buckets.iter_mut().zip(other.buckets) {
            *b = b.wrapping_add(o);
        }
        self.duration_ns = self.duration_ns.wrapping_add(other.duration_ns);
        self.timed = self.timed.wrapping_add(other.timed);
    }

    fn flat(&self) -> impl Iterator<Item = u64> + '_ {
        self.values
            .iter()
            .chain(&self.buckets)
            .copied()
            .chain([self.duration_ns, self.timed])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_in_seconds_and_nanoseconds_agree() {
        for (s, ns) in BUCKET_BOUNDS.iter().zip(BOUND_NANOS) {
            assert_eq!((s * 1e9).round() as u64, ns);
        }
        assert!(BOUND_NANOS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn observations_land_in_their_bucket() {
        let mut c = Counters::default();
        c.observe(Duration::from_micros(100), 1); // on the bound: that bucket
        c.observe(Duration::from_micros(101), 2);
        c.observe(Duration::from_secs(11), 1); // past the last bound: +Inf
        let (buckets, sum, n) = c.histogram();
        assert_eq!(buckets[0], 1);
        assert_eq!(buckets[1], 2);
        assert_eq!(buckets[BUCKETS - 1], 1);
        assert_eq!(n, 4);
        assert_eq!(
            sum,
            Duration::from_micros(100 + 2 * 101) + Duration::from_secs(11)
        );
    }

    #[test]
    fn a_line_reads_back_what_was_published_and_exited_workers_leave_no_gauge() {
        let line: [AtomicU64; LINE_VALUES] = std::array::from_fn(|_| AtomicU64::new(0));
        let mut c = Counters::default();
        c.add(Counter::Responses2xx, 5);
        c.add(Counter::Refused431, 1);
        c.set(Counter::Open, 3);
        c.observe(Duration::from_millis(3), 5);
        c.publish(&line);
        let back = Counters::read(&line);
        assert_eq!(back, c);
        let mut total = Counters::default();
        total.absorb(&back, false);
        total.absorb(&back, false);
        assert_eq!(total.get(Counter::Responses2xx), 10);
        assert_eq!(total.get(Counter::Open), 0);
        assert_eq!(total.histogram().2, 10);
        total.absorb(&back, true);
        assert_eq!(total.get(Counter::Open), 3);
    }

    #[test]
    fn statuses_map_to_their_class_and_refusal() {
        assert_eq!(Counter::response(101), Counter::Responses1xx);
        assert_eq!(Counter::response(204), Counter::Responses2xx);
        assert_eq!(Counter::response(304), Counter::Responses3xx);
        assert_eq!(Counter::response(431), Counter::Responses4xx);
        assert_eq!(Counter::response(599), Counter::Responses5xx);
        assert_eq!(Counter::refused(408), Some(Counter::Refused408));
        assert_eq!(Counter::refused(404), None);
    }
}
