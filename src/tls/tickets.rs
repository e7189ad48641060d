//! Session ticket keys every worker derives alike, so that a ticket one worker issued resumes
//! on any other, process workers included, through key rotations and reloads.
//!
//! rustls's own ticketer makes its keys at random in each process as it rotates them: forked
//! workers would share the first key only. Here one secret, made once at startup (before any
//! fork) and kept across reloads, gives the key of each period by HKDF-SHA256; a ticket is
//! `period (8 bytes) | nonce (12) | AES-256-GCM(state)` and opens in its period or the next.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

/// How long one key issues tickets; a ticket is accepted for up to twice this.
const PERIOD_SECS: u64 = 6 * 60 * 60;
const PERIOD_BYTES: usize = 8;

/// Ticket keys derived from one secret.
pub struct SharedTickets {
    secret: [u8; 32],
    random: SystemRandom,
}

impl std::fmt::Debug for SharedTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedTickets")
    }
}

impl SharedTickets {
    /// A fresh secret.
    pub fn new() -> Result<SharedTickets, String> {
        let random = SystemRandom::new();
        let mut secret = [0u8; 32];
        random
            .fill(&mut secret)
            .map_err(|_| "TLS: no randomness for the session ticket keys".to_string())?;
        Ok(SharedTickets { secret, random })
    }

    fn key(&self, period: u64) -> Option<LessSafeKey> {
        let prk = Salt::new(HKDF_SHA256, b"ringcorn session tickets").extract(&self.secret);
        let info = period.to_be_bytes();
        let info = [&info[..]];
        let okm = prk.expand(&info, &AES_256_GCM).ok()?;
        Some(LessSafeKey::new(UnboundKey::from(okm)))
    }

    fn period_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / PERIOD_SECS)
    }

    fn seal(&self, period: u64, plain: &[u8]) -> Option<Vec<u8>> {
        let key = self.key(period)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(PERIOD_BYTES + NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(&period.to_be_bytes());
        out.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(period.to_be_bytes()),
            &mut sealed,
        )
        .ok()?;
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn open(&self, now: u64, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < PERIOD_BYTES + NONCE_LEN {
            return None;
        }
        let (period, rest) = ticket.split_at(PERIOD_BYTES);
        let period = u64::from_be_bytes(period.try_into().ok()?);
        if period != now && period.checked_add(1) != Some(now) {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = self
            .key(period)?
            .open_in_place(nonce, Aad::from(period.to_be_bytes()), &mut buf)
            .ok()?
            .len();
        buf.truncate(plain);
        Some(buf)
    }
}

impl ProducesTickets for SharedTickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        PERIOD_SECS as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal(Self::period_now(), plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open(Self::period_now(), cipher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_open_in_their_period_and_the_next_only() {
        let keys = SharedTickets::new().expect("keys");
        let ticket = keys.seal(100, b"session state").expect("sealed");
        assert_eq!(
            keys.open(100, &ticket).as_deref(),
            Some(&b"session state"[..])
        );
        assert_eq!(
            keys.open(101, &ticket).as_deref(),
            Some(&b"session state"[..])
        );
        assert_eq!(keys.open(102, &ticket), None, "expired");
        assert_eq!(keys.open(99, &ticket), None, "from the future");
        let mut forged = ticket.clone();
        forged[3] ^= 1; // another period: another key
        assert_eq!(keys.open(100, &forged), None);
        let mut tampered = ticket.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(keys.open(100, &tampered), None);
        assert_eq!(keys.open(100, &ticket[..10]), None);
        let other = SharedTickets::new().expect("keys");
        assert_eq!(other.open(100, &ticket), None, "another server's secret");
    }
}
