//! Address lists such as `--proxy-allow-from 127.0.0.1,::1,10.0.0.0/8` (or `*` for any):
//! addresses and CIDR blocks, IPv4 and IPv6. An IPv4-mapped IPv6 peer (`::ffff:10.1.2.3`)
//! matches the IPv4 entries.

use std::net::IpAddr;
use std::str::FromStr;

/// A parsed address list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidrs {
    any: bool,
    blocks: Vec<(IpAddr, u8)>,
}

impl Cidrs {
    /// Whether `ip` is in the list.
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.any {
            return true;
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.blocks.iter().any(|&(net, bits)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), bits),
            _ => false,
        })
    }
}

/// The first `bits` bits of `a` and `b` are equal.
fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    if a[..full] != b[..full] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

impl FromStr for Cidrs {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidrs, String> {
        let mut list = Cidrs {
            any: false,
            blocks: Vec::new(),
        };
        for part in s.split(',').map(str::trim) {
            if part == "*" {
                list.any = true;
                continue;
            }
            let (addr, bits) = match part.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (part, None),
            };
            let ip: IpAddr = addr.parse().map_err(|_| {
                format!("`{part}` is not an address or CIDR block (e.g. 10.0.0.0/8)")
            })?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(b) => match b.parse::<u8>() {
                    Ok(n) if n <= max => n,
                    _ => return Err(format!("`{part}`: the prefix length must be 0 to {max}")),
                },
            };
            list.blocks.push((ip, bits));
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn addresses_and_blocks() {
        let list: Cidrs = "127.0.0.1, ::1,10.0.0.0/8,192.168.1.128/25,2001:db8::/32"
            .parse()
            .expect("parses");
        for yes in [
            "127.0.0.1",
            "::1",
            "10.200.3.4",
            "192.168.1.200",
            "2001:db8::7",
            "::ffff:10.0.0.1",
        ] {
            assert!(list.contains(ip(yes)), "{yes}");
        }
        for no in [
            "127.0.0.2",
            "11.0.0.1",
            "192.168.1.127",
            "2001:db9::1",
            "::2",
        ] {
            assert!(!list.contains(ip(no)), "{no}");
        }
        assert!("*".parse::<Cidrs>().expect("any").contains(ip("8.8.8.8")));
        assert!("0.0.0.0/0"
            .parse::<Cidrs>()
            .expect("all v4")
            .contains(ip("8.8.8.8")));
    }

    #[test]
    fn bad_lists_say_why() {
        for (s, why) in [
            ("10.0.0.0/33", "0 to 32"),
            ("nope", "not an address"),
            ("::/129", "0 to 128"),
            ("", "not an address"),
        ] {
            let err = s.parse::<Cidrs>().expect_err(s);
            assert!(err.contains(why), "{s}: {err}");
        }
    }
}
