//! Validators and conditional requests (RFC 9110 §8.8, §13): the file's `ETag` and
//! `Last-Modified`, and what `If-Match`, `If-Unmodified-Since`, `If-None-Match`,
//! `If-Modified-Since` and `If-Range` make of them.
//!
//! The ETag is nginx's: `"<mtime seconds, hex>-<size, hex>"`, a strong validator. It changes
//! when the file is rewritten in a new second or changes size; like nginx's, it misses a
//! rewrite of the same size within the same second.

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The latest time an IMF-fixdate can show (9999-12-31T23:59:59Z); httpdate refuses later
/// ones, and earlier than the epoch.
const LAST_HTTP_DATE: u64 = 253_402_300_799;

/// What the conditionals compare against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validators {
    /// Modification time, whole seconds since the epoch, clamped to what an HTTP-date can show
    /// (a file dated before 1970 is shown as of 1970).
    pub mtime: u64,
    pub size: u64,
}

impl Validators {
    /// From `st_mtime` (seconds, possibly negative) and `st_size`.
    pub fn new(mtime: i64, size: u64) -> Validators {
        Validators {
            mtime: u64::try_from(mtime).unwrap_or(0).min(LAST_HTTP_DATE),
            size,
        }
    }

    /// Writes the ETag, quotes included, into `out` (cleared first).
    pub fn etag(&self, out: &mut String) {
        out.clear();
        // Writing into a String cannot fail.
        let _ = write!(out, "\"{:x}-{:x}\"", self.mtime, self.size);
    }

    /// Writes the `Last-Modified` value (IMF-fixdate) into `out` (cleared first).
    pub fn last_modified(&self, out: &mut String) {
        out.clear();
        let time = UNIX_EPOCH + Duration::from_secs(self.mtime);
        // `mtime` is within httpdate's range (see `new`), so this does not panic.
        let _ = write!(out, "{}", httpdate::HttpDate::from(time));
    }
}

/// The outcome of the preconditions (RFC 9110 §13.2.2), for a GET or HEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answer the request (a `Range` is then subject to [`range_applies`]).
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    PreconditionFailed,
}

/// Evaluates the preconditions among `headers` (name, value), in RFC 9110 §13.2.2's order:
/// `If-Match`, else `If-Unmodified-Since`; then `If-None-Match`, else `If-Modified-Since`.
/// List headers may come on several lines (they form one list). A date that does not parse is
/// ignored, as §13.1.3 and §13.1.4 require; so is an `If-Modified-Since` when `If-None-Match`
/// is present (§13.1.3). `etag` is [`Validators::etag`]'s.
pub(crate) fn evaluate<'h>(
    headers: impl Iterator<Item = (&'h str, &'h [u8])>,
    v: &Validators,
    etag: &str,
) -> Outcome {
    let mut if_match: Option<bool> = None;
    let mut if_unmodified_since: Option<&[u8]> = None;
    let mut if_none_match: Option<bool> = None;
    let mut if_modified_since: Option<&[u8]> = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("if-match") {
            let hit = list_matches(value, etag, Comparison::Strong);
            if_match = Some(if_match.unwrap_or(false) || hit);
        } else if name.eq_ignore_ascii_case("if-none-match") {
            let hit = list_matches(value, etag, Comparison::Weak);
            if_none_match = Some(if_none_match.unwrap_or(false) || hit);
        } else if name.eq_ignore_ascii_case("if-unmodified-since") {
            if_unmodified_since.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("if-modified-since") {
            if_modified_since.get_or_insert(value);
        }
    }
    match if_match {
        Some(false) => return Outcome::PreconditionFailed,
        Some(true) => {}
        None => {
            if let Some(date) = if_unmodified_since.and_then(parse_date) {
                if v.mtime > date {
                    return Outcome::PreconditionFailed;
                }
            }
        }
    }
    match if_none_match {
        Some(true) => Outcome::NotModified,
        Some(false) => Outcome::Proceed,
        None => match if_modified_since.and_then(parse_date) {
            Some(date) if v.mtime <= date => Outcome::NotModified,
            _ => Outcome::Proceed,
        },
    }
}

/// Whether a `Range` may be honoured given the request's `If-Range` value (RFC 9110 §13.1.5):
/// an entity-tag must match the current one by strong comparison (a weak one never does); a
/// date must equal `Last-Modified` exactly. Anything else (no match, a value that parses as
/// neither) sends the whole file.
pub(crate) fn range_applies(if_range: &[u8], v: &Validators, etag: &str) -> bool {
    let value = if_range.trim_ascii();
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return match parse_entity_tag(value) {
            Some((tag, rest)) if rest.trim_ascii().is_empty() => {
                !tag.weak && tag.opaque == etag.as_bytes()
            }
            _ => false,
        };
    }
    parse_date(value) == Some(v.mtime)
}

/// An HTTP-date (IMF-fixdate, or the obsolete RFC 850 and asctime forms) in seconds since the
/// epoch.
pub(crate) fn parse_date(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    let time = httpdate::parse_http_date(text.trim()).ok()?;
    time.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    /// Both tags strong and equal (If-Match, If-Range).
    Strong,
    /// Opaque tags equal, weak or not (If-None-Match).
    Weak,
}

/// One entity-tag: whether it is weak, and its opaque-tag with the quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EntityTag<'a> {
    weak: bool,
    opaque: &'a [u8],
}

/// Whether the list `value` (`*`, or `#entity-tag`) matches `etag`. A list that does not parse
/// matches nothing: for If-None-Match that serves the file, for If-Match it fails (412), the
/// conservative reading of each.
fn list_matches(value: &[u8], etag: &str, cmp: Comparison) -> bool {
    let mut rest = value.trim_ascii();
    if rest == b"*" {
        return true;
    }
    let mut matched = false;
    loop {
        rest = rest.trim_ascii_start();
        if let Some(after) = rest.strip_prefix(b",") {
            rest = after;
            continue;
        }
        if rest.is_empty() {
            return matched;
        }
        let Some((tag, after)) = parse_entity_tag(rest) else {
            return false;
        };
        let equal = tag.opaque == etag.as_bytes();
        matched |= match cmp {
            Comparison::Weak => equal,
            // Our own tags are strong, so only the other side's weakness matters.
            Comparison::Strong => equal && !tag.weak,
        };
        rest = after.trim_ascii_start();
        match rest.first() {
            None => return matched,
            Some(b',') => {}
            Some(_) => return false,
        }
    }
}

/// Parses one `entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE` at the start of `s`; returns it and
/// what follows.
fn parse_entity_tag(s: &[u8]) -> Option<(EntityTag<'_>, &[u8])> {
    let (weak, s) = match s.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if s.first() != Some(&b'"') {
        return None;
    }
    let close = 1 + s[1..].iter().position(|&b| b == b'"')?;
    let opaque = &s[..=close];
    // etagc = %x21 / %x23-7E / obs-text
    if !opaque[1..close].iter().all(|&b| b == 0x21 || b >= 0x23) || opaque.contains(&0x7f) {
        return None;
    }
    Some((EntityTag { weak, opaque }, &s[close + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2015-10-21T07:28:00Z, the day Marty McFly arrived.
    const T: i64 = 1_445_412_480;
    const T_DATE: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
    const BEFORE: &str = "Wed, 21 Oct 2015 07:27:59 GMT";
    const AFTER: &str = "Wed, 21 Oct 2015 07:28:01 GMT";

    fn v() -> Validators {
        Validators::new(T, 1234)
    }

    fn etag() -> String {
        let mut s = String::new();
        v().etag(&mut s);
        s
    }

    fn eval(headers: &[(&str, &str)]) -> Outcome {
        evaluate(
            headers.iter().map(|(n, v)| (*n, v.as_bytes())),
            &v(),
            &etag(),
        )
    }

    #[test]
    fn etag_and_last_modified_are_nginx_s() {
        assert_eq!(etag(), "\"56273e80-4d2\"");
        let mut lm = String::new();
        v().last_modified(&mut lm);
        assert_eq!(lm, T_DATE);
    }

    #[test]
    fn out_of_range_mtimes_are_clamped() {
        let mut s = String::new();
        let old = Validators::new(-5, 0);
        assert_eq!(old.mtime, 0);
        old.last_modified(&mut s);
        assert_eq!(s, "Thu, 01 Jan 1970 00:00:00 GMT");
        old.etag(&mut s);
        assert_eq!(s, "\"0-0\"");
        let late = Validators::new(i64::MAX, 1);
        late.last_modified(&mut s);
        assert_eq!(s, "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn no_conditions_proceed() {
        assert_eq!(eval(&[]), Outcome::Proceed);
        assert_eq!(eval(&[("Accept", "*/*")]), Outcome::Proceed);
    }

    #[test]
    fn if_none_match_uses_weak_comparison() {
        let e = etag();
        assert_eq!(eval(&[("If-None-Match", &e)]), Outcome::NotModified);
        assert_eq!(
            eval(&[("if-none-match", &format!("W/{e}"))]),
            Outcome::NotModified
        );
        assert_eq!(eval(&[("If-None-Match", "*")]), Outcome::NotModified);
        assert_eq!(eval(&[("If-None-Match", " * ")]), Outcome::NotModified);
        assert_eq!(
            eval(&[("If-None-Match", &format!("\"a\", W/\"b\",{e}"))]),
            Outcome::NotModified
        );
        assert_eq!(
            eval(&[("If-None-Match", &format!(" ,, \"a\" ,{e} , "))]),
            Outcome::NotModified
        );
        assert_eq!(
            eval(&[("If-None-Match", "\"a\""), ("If-None-Match", &e)]),
            Outcome::NotModified
        );
        assert_eq!(
            eval(&[("If-None-Match", "\"56273e80-4d3\"")]),
            Outcome::Proceed
        );
        // Unquoted, or quotes of the wrong kind: not an entity-tag.
        assert_eq!(eval(&[("If-None-Match", "56273e80-4d2")]), Outcome::Proceed);
        assert_eq!(
            eval(&[("If-None-Match", &format!("{e} junk"))]),
            Outcome::Proceed
        );
        assert_eq!(eval(&[("If-None-Match", "w/\"x\"")]), Outcome::Proceed);
        assert_eq!(
            eval(&[("If-None-Match", "\"unterminated")]),
            Outcome::Proceed
        );
    }

    #[test]
    fn if_modified_since_only_without_if_none_match() {
        assert_eq!(eval(&[("If-Modified-Since", T_DATE)]), Outcome::NotModified);
        assert_eq!(eval(&[("If-Modified-Since", AFTER)]), Outcome::NotModified);
        assert_eq!(eval(&[("If-Modified-Since", BEFORE)]), Outcome::Proceed);
        // The obsolete forms are dates too.
        assert_eq!(
            eval(&[("If-Modified-Since", "Wednesday, 21-Oct-15 07:28:00 GMT")]),
            Outcome::NotModified
        );
        assert_eq!(
            eval(&[("If-Modified-Since", "Wed Oct 21 07:28:00 2015")]),
            Outcome::NotModified
        );
        // Not a date: ignored.
        assert_eq!(
            eval(&[("If-Modified-Since", "yesterday")]),
            Outcome::Proceed
        );
        assert_eq!(eval(&[("If-Modified-Since", "")]), Outcome::Proceed);
        // If-None-Match present and not matching: the date is not looked at.
        assert_eq!(
            eval(&[("If-None-Match", "\"other\""), ("If-Modified-Since", AFTER)]),
            Outcome::Proceed
        );
        assert_eq!(
            eval(&[("If-Modified-Since", AFTER), ("If-None-Match", "\"other\"")]),
            Outcome::Proceed
        );
        let e = etag();
        assert_eq!(
            eval(&[("If-None-Match", &e), ("If-Modified-Since", BEFORE)]),
            Outcome::NotModified
        );
    }

    #[test]
    fn if_match_and_if_unmodified_since() {
        let e = etag();
        assert_eq!(eval(&[("If-Match", &e)]), Outcome::Proceed);
        assert_eq!(eval(&[("If-Match", "*")]), Outcome::Proceed);
        assert_eq!(
            eval(&[("If-Match", "\"a\", \"b\"")]),
            Outcome::PreconditionFailed
        );
        // Strong comparison: a weak tag never matches.
        assert_eq!(
            eval(&[("If-Match", &format!("W/{e}"))]),
            Outcome::PreconditionFailed
        );
        assert_eq!(
            eval(&[("If-Match", "garbage")]),
            Outcome::PreconditionFailed
        );
        assert_eq!(eval(&[("If-Unmodified-Since", T_DATE)]), Outcome::Proceed);
        assert_eq!(eval(&[("If-Unmodified-Since", AFTER)]), Outcome::Proceed);
        assert_eq!(
            eval(&[("If-Unmodified-Since", BEFORE)]),
            Outcome::PreconditionFailed
        );
        assert_eq!(eval(&[("If-Unmodified-Since", "nope")]), Outcome::Proceed);
        // If-Match present: If-Unmodified-Since is not looked at.
        assert_eq!(
            eval(&[("If-Match", &e), ("If-Unmodified-Since", BEFORE)]),
            Outcome::Proceed
        );
        // Then If-None-Match still applies.
        assert_eq!(
            eval(&[("If-Match", &e), ("If-None-Match", &e)]),
            Outcome::NotModified
        );
    }

    #[test]
    fn if_range() {
        let e = etag();
        let v = v();
        assert!(range_applies(e.as_bytes(), &v, &e));
        assert!(range_applies(format!(" {e} ").as_bytes(), &v, &e));
        assert!(!range_applies(format!("W/{e}").as_bytes(), &v, &e));
        assert!(!range_applies(b"\"other\"", &v, &e));
        assert!(!range_applies(format!("{e}, {e}").as_bytes(), &v, &e));
        assert!(range_applies(T_DATE.as_bytes(), &v, &e));
        assert!(!range_applies(AFTER.as_bytes(), &v, &e));
        assert!(!range_applies(BEFORE.as_bytes(), &v, &e));
        assert!(!range_applies(b"", &v, &e));
        assert!(!range_applies(b"garbage", &v, &e));
    }

    #[test]
    fn entity_tag_grammar() {
        assert_eq!(
            parse_entity_tag(b"\"\" rest"),
            Some((
                EntityTag {
                    weak: false,
                    opaque: b"\"\""
                },
                &b" rest"[..]
            ))
        );
        assert!(parse_entity_tag(b"W/\"x\"").is_some_and(|(t, _)| t.weak));
        assert!(parse_entity_tag(b"\"a b\"").is_none());
        assert!(parse_entity_tag(b"\"a\x7fb\"").is_none());
        assert!(parse_entity_tag("\"caf\u{e9}\"".as_bytes()).is_some());
        assert!(parse_entity_tag(b"W/x").is_none());
        assert!(parse_entity_tag(b"").is_none());
    }
}
