//! The `Server` and `Date` header lines, rendered once per second per worker and copied into
//! every response.

use std::time::{SystemTime, UNIX_EPOCH};

const PREFIX: &[u8] = b"Server: ringcorn\r\nDate: ";
/// An IMF-fixdate is always 29 bytes: `Fri, 20 Nov 2026 10:00:00 GMT`.
const DATE_LEN: usize = 29;
const LEN: usize = PREFIX.len() + DATE_LEN + 2;

/// The cached header block; [`DateCache::refresh`] re-renders it when the second changes.
#[derive(Debug, Clone)]
pub struct DateCache {
    second: u64,
    block: [u8; LEN],
}

impl DateCache {
    pub fn new() -> Self {
        let mut cache = DateCache {
            second: u64::MAX,
            block: [0; LEN],
        };
        cache.refresh(SystemTime::now());
        cache
    }

    /// Re-render if `now` is in a different second than the cached block.
    pub fn refresh(&mut self, now: SystemTime) {
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second == self.second {
            return;
        }
        self.second = second;
        let date = httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(second));
        debug_assert_eq!(date.len(), DATE_LEN);
        self.block[..PREFIX.len()].copy_from_slice(PREFIX);
        self.block[PREFIX.len()..PREFIX.len() + DATE_LEN]
            .copy_from_slice(&date.as_bytes()[..DATE_LEN]);
        self.block[LEN - 2..].copy_from_slice(b"\r\n");
    }

    /// `Server: ringcorn\r\nDate: <IMF-fixdate>\r\n`.
    pub fn header_block(&self) -> &[u8] {
        &self.block
    }
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn renders_imf_fixdate() {
        let mut cache = DateCache::new();
        // 2026-11-20 10:00:00 UTC
        cache.refresh(UNIX_EPOCH + Duration::from_secs(1_795_168_800));
        assert_eq!(
            cache.header_block(),
            b"Server: ringcorn\r\nDate: Fri, 20 Nov 2026 10:00:00 GMT\r\n"
        );
        cache.refresh(UNIX_EPOCH + Duration::from_millis(1_795_168_800_999));
        assert!(cache.header_block().ends_with(b"10:00:00 GMT\r\n"));
        cache.refresh(UNIX_EPOCH + Duration::from_secs(1_795_168_801));
        assert!(cache.header_block().ends_with(b"10:00:01 GMT\r\n"));
    }
}
