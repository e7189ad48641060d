//! Request paths to file paths under the root: percent-decoding, and the checks that keep a
//! decoded path a plain walk down from the root (no `.` or `..` segment, no encoded slash, no
//! NUL, no backslash). What the kernel refuses on top of this (symlinks that leave the root)
//! is in [`super::open`].

/// Why a request path names no file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathError {
    /// A `%` not followed by two hex digits: 400. (The request parser already refuses these in
    /// a path; this is the app's own check, for requests built without it.)
    BadRequest,
    /// A target that is not origin-form, or a path that decodes to something no file under the
    /// root may be named: 404, the answer that says nothing about what exists.
    NotFound,
}

/// Decodes the request path `raw` (as sent, not decoded: [`crate::Request::path`]) into the
/// path of a file relative to the root, in `out` (cleared first): its segments decoded and
/// joined by `/`, with no leading or trailing `/`, empty for the root itself. Empty segments
/// (`//`) are dropped, as nginx's `merge_slashes` does, so `//etc/passwd` is `etc/passwd`
/// under the root and never an absolute path.
///
/// Returns whether `raw` ends with `/` (it names a directory).
///
/// Refused with [`PathError::NotFound`]: a target not starting with `/` (`*`), a segment that
/// decodes to `.` or `..` (`%2e%2e` too), a decoded `/` (`%2f`: nginx takes it as part of a
/// name, which no file on Linux can have; refusing it is the safe reading), a decoded NUL or
/// backslash (`%5c`: Windows' separator, refused so that no one copying the tree elsewhere
/// gets a path that climbs).
pub(crate) fn decode(raw: &str, out: &mut Vec<u8>) -> Result<bool, PathError> {
    out.clear();
    let rest = raw.strip_prefix('/').ok_or(PathError::NotFound)?;
    for segment in rest.split('/') {
        if segment.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        let start = out.len();
        decode_segment(segment.as_bytes(), out)?;
        let decoded = &out[start..];
        if decoded == b"." || decoded == b".." {
            return Err(PathError::NotFound);
        }
    }
    Ok(raw.ends_with('/'))
}

/// Appends one percent-decoded segment to `out`.
fn decode_segment(segment: &[u8], out: &mut Vec<u8>) -> Result<(), PathError> {
    let mut i = 0;
    while let Some(&b) = segment.get(i) {
        let byte = if b == b'%' {
            let hi = segment.get(i + 1).and_then(|&c| hex(c));
            let lo = segment.get(i + 2).and_then(|&c| hex(c));
            match (hi, lo) {
                (Some(hi), Some(lo)) => {
                    i += 3;
                    hi << 4 | lo
                }
                _ => return Err(PathError::BadRequest),
            }
        } else {
            i += 1;
            b
        };
        if matches!(byte, b'/' | b'\\' | 0) {
            return Err(PathError::NotFound);
        }
        out.push(byte);
    }
    Ok(())
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Writes into `out` (cleared first) the `Location` of the directory `rel` (as [`decode`] made
/// it): `/`, `rel` percent-encoded, `/`, and `?query` when the request had one. Built from the
/// decoded path, so it never starts with `//` (which a browser would read as another host).
pub(crate) fn directory_location(rel: &[u8], query: Option<&str>, out: &mut String) {
    out.clear();
    out.push('/');
    for &b in rel {
        if is_plain_path_byte(b) {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    if !rel.is_empty() {
        out.push('/');
    }
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
}

/// Bytes a path may carry unencoded (RFC 3986 `pchar` and `/`, without `%`).
fn is_plain_path_byte(b: u8) -> bool {
    crate::http::is_unreserved_or_sub_delim(b) || matches!(b, b':' | b'@' | b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> (String, bool) {
        let mut out = Vec::new();
        let dir = decode(raw, &mut out).unwrap_or_else(|e| panic!("{raw:?}: {e:?}"));
        (String::from_utf8_lossy(&out).into_owned(), dir)
    }

    fn err(raw: &str) -> PathError {
        let mut out = Vec::new();
        match decode(raw, &mut out) {
            Ok(dir) => panic!("{raw:?} was accepted as {:?} (dir {dir})", out),
            Err(e) => e,
        }
    }

    #[test]
    fn plain_paths() {
        assert_eq!(ok("/"), (String::new(), true));
        assert_eq!(ok("/a.txt"), ("a.txt".into(), false));
        assert_eq!(ok("/dir/"), ("dir".into(), true));
        assert_eq!(ok("/dir/sub/f.html"), ("dir/sub/f.html".into(), false));
        // Dots inside names are names.
        assert_eq!(ok("/.hidden"), (".hidden".into(), false));
        assert_eq!(ok("/a..b/...c"), ("a..b/...c".into(), false));
        assert_eq!(ok("/..a"), ("..a".into(), false));
    }

    #[test]
    fn merges_slashes_and_never_yields_an_absolute_path() {
        assert_eq!(ok("//etc/passwd"), ("etc/passwd".into(), false));
        assert_eq!(ok("///a//b///"), ("a/b".into(), true));
        assert_eq!(ok("//"), (String::new(), true));
        assert_eq!(ok("/%2e%2e%2e"), ("...".into(), false));
    }

    #[test]
    fn decodes_escapes() {
        assert_eq!(ok("/a%20b"), ("a b".into(), false));
        assert_eq!(ok("/%41%62c"), ("Abc".into(), false));
        assert_eq!(ok("/caf%C3%A9"), ("café".into(), false));
        let mut out = Vec::new();
        assert_eq!(decode("/%ff", &mut out), Ok(false));
        assert_eq!(out, [0xff]);
        // `+` is not a space in a path.
        assert_eq!(ok("/a+b"), ("a+b".into(), false));
    }

    #[test]
    fn refuses_dot_segments_raw_and_encoded() {
        for raw in [
            "/..",
            "/../",
            "/../etc/passwd",
            "/a/../b",
            "/a/..",
            "/.",
            "/./a",
            "/a/./",
            "/%2e%2e",
            "/%2E%2e/",
            "/%2e%2E/etc/passwd",
            "/.%2e/x",
            "/%2e./x",
            "/%2e",
            "/a/%2E/b",
        ] {
            assert_eq!(err(raw), PathError::NotFound, "{raw}");
        }
    }

    #[test]
    fn refuses_encoded_slash_nul_and_backslash() {
        for raw in [
            "/a%2fb",
            "/a%2Fb",
            "/..%2f..%2fetc%2fpasswd",
            "/%2f",
            "/%2fetc/passwd",
            "/a%00",
            "/a%00.html",
            "/..\\..\\x",
            "/a\\b",
            "/..%5c..%5cx",
            "/%5C",
        ] {
            assert_eq!(err(raw), PathError::NotFound, "{raw}");
        }
    }

    #[test]
    fn refuses_other_target_forms() {
        for raw in ["*", "", "a/b", "example.com:80"] {
            assert_eq!(err(raw), PathError::NotFound, "{raw}");
        }
    }

    #[test]
    fn invalid_escapes_are_bad_requests() {
        for raw in ["/%", "/a%2", "/%zz", "/%g0", "/a%2/b", "/%%41"] {
            assert_eq!(err(raw), PathError::BadRequest, "{raw}");
        }
    }

    #[test]
    fn location_of_a_directory() {
        let mut loc = String::new();
        directory_location(b"dir", None, &mut loc);
        assert_eq!(loc, "/dir/");
        directory_location(b"a/b c", Some("x=1&y"), &mut loc);
        assert_eq!(loc, "/a/b%20c/?x=1&y");
        directory_location(b"", Some(""), &mut loc);
        assert_eq!(loc, "/?");
        directory_location("caf\u{e9}/%?#".as_bytes(), None, &mut loc);
        assert_eq!(loc, "/caf%C3%A9/%25%3F%23/");
        // What `//evil.example/x` decodes to redirects within this host.
        let mut rel = Vec::new();
        assert_eq!(decode("//evil.example", &mut rel), Ok(false));
        directory_location(&rel, None, &mut loc);
        assert_eq!(loc, "/evil.example/");
    }

    #[test]
    fn decode_then_locate_round_trips() {
        let mut rel = Vec::new();
        let mut loc = String::new();
        let mut again = Vec::new();
        for raw in ["/a", "/a%20b/c", "/caf%C3%A9", "/x%3Fy", "/%25", "/a;b=c@d"] {
            decode(raw, &mut rel).expect("valid");
            directory_location(&rel, None, &mut loc);
            assert_eq!(decode(&loc, &mut again), Ok(true), "{loc}");
            assert_eq!(again, rel, "{raw} -> {loc}");
        }
    }
}
