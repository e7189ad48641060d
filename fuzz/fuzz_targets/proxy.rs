//! Fuzz the PROXY protocol parser (`ringcorn::http::internals::proxy::parse`): the input is the
//! bytes a peer sends first, given to each accepted version (`V1`, `V2`, `Auto`).
//!
//! # What is checked (a panic here is a finding)
//!
//! - `parse` does not panic, and a `Done` header's `len` is within the input (and not 0);
//! - the answer is the same for the whole input and for the header's own bytes (`..len`);
//! - every prefix agrees with the whole: a prefix's `Done` is the whole's answer, and a prefix
//!   that is `Invalid` makes the whole `Invalid` (more bytes never rescue a refusal);
//! - `V1` and `V2` never both accept the same bytes, and `Auto` answers as the one its first
//!   byte picks (`P` for v1, CR for v2).
//!
//! Inputs past a few KiB add nothing (a header is decided within 552 bytes), so they are cut to
//! 1 KiB to keep the prefix checks quadratic in something small.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcorn::http::internals::proxy::{parse, Parsed, Version, MAX_LEN};

const VERSIONS: [Version; 3] = [Version::V1, Version::V2, Version::Auto];
const MAX_INPUT: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(MAX_INPUT)];
    for accept in VERSIONS {
        check(data, accept);
    }
    let v1 = parse(data, Version::V1);
    let v2 = parse(data, Version::V2);
    if matches!(v1, Parsed::Done { .. }) && matches!(v2, Parsed::Done { .. }) {
        panic!("both versions accept {data:?}: {v1:?}, {v2:?}");
    }
    let auto = parse(data, Version::Auto);
    let expected = match data.first() {
        None => Parsed::Incomplete,
        Some(b'P') => v1,
        Some(b'\r') => v2,
        Some(_) => auto,
    };
    assert_eq!(
        auto, expected,
        "Auto differs from the version it picks: {data:?}"
    );
    if data.first().is_some_and(|&b| b != b'P' && b != b'\r') {
        assert!(matches!(auto, Parsed::Invalid(_)), "Auto took {data:?}");
    }
});

fn check(data: &[u8], accept: Version) {
    let whole = parse(data, accept);
    match whole {
        Parsed::Done {
            len,
            source,
            destination,
        } => {
            assert!(
                len > 0 && len <= data.len(),
                "len {len} of {} bytes",
                data.len()
            );
            assert!(len <= MAX_LEN, "len {len} over the cap");
            assert_eq!(source.is_some(), destination.is_some(), "{whole:?}");
            assert_eq!(
                parse(&data[..len], accept),
                whole,
                "{accept:?}: header alone"
            );
        }
        Parsed::Incomplete => assert!(data.len() < MAX_LEN, "undecided after {}", data.len()),
        Parsed::Invalid(why) => assert!(!why.is_empty()),
    }
    for k in 0..data.len() {
        match parse(&data[..k], accept) {
            Parsed::Incomplete => {}
            prefix @ Parsed::Done { .. } => {
                assert_eq!(
                    whole, prefix,
                    "{accept:?}: Done at {k}, then {whole:?}: {data:?}"
                )
            }
            Parsed::Invalid(why) => assert!(
                matches!(whole, Parsed::Invalid(_)),
                "{accept:?}: {why} at {k}, then {whole:?}: {data:?}"
            ),
        }
    }
}
