//! The `Range` header (RFC 9110 §14): which part of a file of a known size to send.
//!
//! One range is answered with 206 and that range. Several ranges are answered with 200 and the
//! whole file, which RFC 9110 §14.2 allows ("a server MAY ignore the Range header field"):
//! `multipart/byteranges` would need a body of interleaved headers and file pieces, which one
//! zero-copy file range cannot carry. A header that does not parse, or names another unit, is
//! ignored (200, the whole file), as §14.2 requires for an unknown unit. A range whose last
//! position comes before its first is invalid by §14.1.1's grammar and is ignored the same way.

/// What to send of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ranged {
    /// The whole file, 200.
    Full,
    /// `len` bytes from `start` (`len` ≥ 1, within the file), 206.
    Partial { start: u64, len: u64 },
    /// No requested range overlaps the file: 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Evaluates the value of a `Range` header against a file of `size` bytes.
///
/// An empty file is always sent whole (200, empty), as nginx does: no range of it can be
/// satisfied, and a 416 for a resource that exists but is empty helps no client.
pub(crate) fn evaluate(value: &[u8], size: u64) -> Ranged {
    if size == 0 {
        return Ranged::Full;
    }
    let Some(eq) = value.iter().position(|&b| b == b'=') else {
        return Ranged::Full;
    };
    let (unit, set) = (&value[..eq], &value[eq + 1..]);
    if !unit.eq_ignore_ascii_case(b"bytes") {
        return Ranged::Full;
    }
    let mut specs = 0usize;
    let mut satisfiable: Option<(u64, u64)> = None;
    for spec in set.split(|&b| b == b',') {
        let spec = trim_ows(spec);
        if spec.is_empty() {
            // RFC 9110 §5.6.1: empty list elements are allowed and do not count.
            continue;
        }
        let Some(parsed) = parse_spec(spec) else {
            return Ranged::Full;
        };
        specs += 1;
        if let Some(range) = resolve(parsed, size) {
            satisfiable.get_or_insert(range);
        }
    }
    match (specs, satisfiable) {
        (0, _) => Ranged::Full,
        (_, None) => Ranged::Unsatisfiable,
        (1, Some((start, len))) => Ranged::Partial { start, len },
        (_, Some(_)) => Ranged::Full,
    }
}

/// One range-spec as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-last` (`last` absent: to the end).
    Int { first: u64, last: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

fn parse_spec(spec: &[u8]) -> Option<Spec> {
    let dash = spec.iter().position(|&b| b == b'-')?;
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    if first.is_empty() {
        return Some(Spec::Suffix(digits(last)?));
    }
    let first = digits(first)?;
    let last = if last.is_empty() {
        None
    } else {
        Some(digits(last)?)
    };
    if last.is_some_and(|last| last < first) {
        return None;
    }
    Some(Spec::Int { first, last })
}

/// One or more ASCII digits; a number beyond `u64` saturates (it is past any file's end).
fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// The `(start, len)` a spec selects of a non-empty file, if any.
fn resolve(spec: Spec, size: u64) -> Option<(u64, u64)> {
    match spec {
        Spec::Int { first, last } => {
            if first >= size {
                return None;
            }
            let last = last.map_or(size - 1, |l| l.min(size - 1));
            Some((first, last - first + 1))
        }
        Spec::Suffix(0) => None,
        Spec::Suffix(n) => {
            let len = n.min(size);
            Some((size - len, len))
        }
    }
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t');
    let end = s.iter().rposition(|&b| b != b' ' && b != b'\t');
    match (start, end) {
        (Some(start), Some(end)) => &s[start..=end],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(v: &str, size: u64) -> Ranged {
        evaluate(v.as_bytes(), size)
    }

    fn part(start: u64, len: u64) -> Ranged {
        Ranged::Partial { start, len }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(eval("bytes=0-0", 10), part(0, 1));
        assert_eq!(eval("bytes=0-9", 10), part(0, 10));
        assert_eq!(eval("bytes=2-5", 10), part(2, 4));
        assert_eq!(eval("bytes=9-9", 10), part(9, 1));
        // The last position is clamped to the end.
        assert_eq!(eval("bytes=5-100", 10), part(5, 5));
        assert_eq!(eval("bytes=5-99999999999999999999999", 10), part(5, 5));
        // Open-ended.
        assert_eq!(eval("bytes=3-", 10), part(3, 7));
        assert_eq!(eval("bytes=0-", 10), part(0, 10));
        // Suffix.
        assert_eq!(eval("bytes=-3", 10), part(7, 3));
        assert_eq!(eval("bytes=-10", 10), part(0, 10));
        assert_eq!(eval("bytes=-100", 10), part(0, 10));
        assert_eq!(eval("bytes=-99999999999999999999999", 10), part(0, 10));
    }

    #[test]
    fn unit_is_case_insensitive_and_ows_around_commas_is_allowed() {
        assert_eq!(eval("Bytes=1-2", 10), part(1, 2));
        assert_eq!(eval("BYTES=1-2", 10), part(1, 2));
        assert_eq!(eval("bytes= 1-2 ", 10), part(1, 2));
        assert_eq!(eval("bytes=,1-2,", 10), part(1, 2));
        assert_eq!(eval("bytes=\t1-2", 10), part(1, 2));
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(eval("bytes=10-", 10), Ranged::Unsatisfiable);
        assert_eq!(eval("bytes=10-20", 10), Ranged::Unsatisfiable);
        assert_eq!(
            eval("bytes=99999999999999999999999-", 10),
            Ranged::Unsatisfiable
        );
        assert_eq!(eval("bytes=-0", 10), Ranged::Unsatisfiable);
        assert_eq!(eval("bytes=10-11, 20-", 10), Ranged::Unsatisfiable);
    }

    #[test]
    fn several_ranges_get_the_whole_file() {
        assert_eq!(eval("bytes=0-1,3-4", 10), Ranged::Full);
        assert_eq!(eval("bytes=0-1, -2", 10), Ranged::Full);
        // One satisfiable among several: still the whole file.
        assert_eq!(eval("bytes=0-1,50-60", 10), Ranged::Full);
    }

    #[test]
    fn invalid_headers_are_ignored() {
        for v in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "bytes=-",
            "bytes=a-b",
            "bytes=1",
            "bytes=1-2-3",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=0x1-2",
            "bytes=5-2",
            "bytes=1 -2",
            "bytes =1-2",
            "bytes=1-2,x",
            "bytes=1-2,5-2",
            "items=0-1",
            "=0-1",
            "bytes=١-٢",
        ] {
            assert_eq!(eval(v, 10), Ranged::Full, "{v:?}");
        }
    }

    #[test]
    fn empty_file_is_always_whole() {
        for v in ["bytes=0-0", "bytes=0-", "bytes=-1", "bytes=5-", "bytes=-0"] {
            assert_eq!(eval(v, 0), Ranged::Full, "{v:?}");
        }
    }

    #[test]
    fn huge_files() {
        let size = u64::MAX;
        assert_eq!(eval("bytes=0-", size), part(0, u64::MAX));
        assert_eq!(
            eval("bytes=18446744073709551614-", size),
            part(u64::MAX - 1, 1)
        );
        assert_eq!(eval("bytes=-1", size), part(u64::MAX - 1, 1));
    }

    #[test]
    fn any_bytes_never_panic_and_stay_in_bounds() {
        let alphabet = b"bytes=-,0123456789 \tB";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 16) as usize;
            let v: Vec<u8> = (0..len)
                .map(|i| alphabet[((seed >> (i * 4)) % alphabet.len() as u64) as usize])
                .collect();
            let size = seed % 20;
            if let Ranged::Partial { start, len } = evaluate(&v, size) {
                assert!(len >= 1 && start + len <= size, "{v:?} on {size}");
            }
        }
    }
}
