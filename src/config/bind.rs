//! `--bind` values, every form Gunicorn takes: `HOST:PORT` (a name binds every address it
//! resolves to), `HOST` alone (port 8000), `[V6]:PORT`, an optional `tcp://` prefix,
//! `unix:PATH` and `fd://N`. Parsing only checks the syntax; names are resolved and sockets
//! opened by the master ([`crate::master`]), so that a reload resolves again.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::str::FromStr;

/// The port of a bind given as a host alone (Gunicorn's default).
pub const DEFAULT_PORT: u16 = 8000;

/// One `--bind` value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Bind {
    /// A TCP address: a literal IP or a name to resolve.
    Tcp { host: Host, port: u16 },
    /// A Unix stream socket at this path, shared by every worker.
    Unix(PathBuf),
    /// A listening socket inherited from the parent on this descriptor.
    Fd(RawFd),
}

/// The host part of a TCP bind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Bind {
    /// A literal address (what embedders and tests pass).
    pub fn addr(addr: SocketAddr) -> Bind {
        Bind::Tcp {
            host: Host::Ip(addr.ip()),
            port: addr.port(),
        }
    }

    /// The TCP addresses this bind stands for: the literal one, or every address the name
    /// resolves to (deduplicated, in the resolver's order). Errors say why in words.
    pub fn resolve(&self) -> Result<Vec<SocketAddr>, String> {
        let Bind::Tcp { host, port } = self else {
            return Ok(Vec::new());
        };
        match host {
            Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, *port)]),
            Host::Name(name) => {
                let found = (name.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|e| format!("the name `{name}` does not resolve ({e})"))?;
                let mut addrs: Vec<SocketAddr> = Vec::new();
                for a in found {
                    if !addrs.contains(&a) {
                        addrs.push(a);
                    }
                }
                if addrs.is_empty() {
                    return Err(format!("the name `{name}` resolves to no address"));
                }
                Ok(addrs)
            }
        }
    }
}

impl fmt::Display for Bind {
    /// The canonical form, which parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bind::Tcp {
                host: Host::Ip(ip),
                port,
            } => SocketAddr::new(*ip, *port).fmt(f),
            Bind::Tcp {
                host: Host::Name(name),
                port,
            } => write!(f, "{name}:{port}"),
            Bind::Unix(path) => write!(f, "unix:{}", path.display()),
            Bind::Fd(fd) => write!(f, "fd://{fd}"),
        }
    }
}

impl FromStr for Bind {
    type Err = String;

    fn from_str(s: &str) -> Result<Bind, String> {
        if let Some(path) = s
            .strip_prefix("unix://")
            .or_else(|| s.strip_prefix("unix:"))
        {
            if path.is_empty() {
                return Err("`unix:` needs a path, e.g. unix:/run/ringcorn.sock".into());
            }
            if path.contains('\0') {
                return Err("a socket path cannot contain NUL".into());
            }
            // sun_path holds 108 bytes with the terminating NUL.
            if path.len() > 107 {
                return Err(format!(
                    "the socket path is {} bytes; Unix sockets take at most 107",
                    path.len()
                ));
            }
            return Ok(Bind::Unix(PathBuf::from(path)));
        }
        if let Some(fd) = s.strip_prefix("fd://") {
            return match fd.parse::<RawFd>() {
                Ok(fd) if fd >= 0 => Ok(Bind::Fd(fd)),
                _ => Err(format!("`{fd}` is not a descriptor number (e.g. fd://3)")),
            };
        }
        let rest = s.strip_prefix("tcp://").unwrap_or(s);
        if rest.is_empty() {
            return Err("empty address (expected HOST:PORT, unix:PATH or fd://N)".into());
        }
        // `[v6]:port` or `[v6]`.
        if let Some(inner) = rest.strip_prefix('[') {
            let (ip, after) = inner
                .split_once(']')
                .ok_or_else(|| format!("`{s}`: `[` without a closing `]`"))?;
            let ip: std::net::Ipv6Addr = ip
                .parse()
                .map_err(|_| format!("`{ip}` is not an IPv6 address"))?;
            let port = match after {
                "" => DEFAULT_PORT,
                p => parse_port(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("`{s}`: expected `:PORT` after `]`"))?,
                )?,
            };
            return Ok(Bind::Tcp {
                host: Host::Ip(IpAddr::V6(ip)),
                port,
            });
        }
        // A bare IPv6 address (`::1`) has colons but no port.
        if let Ok(ip) = rest.parse::<IpAddr>() {
            return Ok(Bind::Tcp {
                host: Host::Ip(ip),
                port: DEFAULT_PORT,
            });
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, parse_port(port)?),
            None => (rest, DEFAULT_PORT),
        };
        if host.contains(':') {
            return Err(format!(
                "`{s}`: an IPv6 address with a port is written in brackets, e.g. [::1]:8000"
            ));
        }
        let host = if host.is_empty() {
            // `:8000`, as Gunicorn: every IPv4 interface.
            Host::Ip(IpAddr::from([0, 0, 0, 0]))
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            Host::Ip(ip)
        } else {
            check_name(host)?;
            Host::Name(host.to_string())
        };
        Ok(Bind::Tcp { host, port })
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .map_err(|_| format!("`{p}` is not a port (0 to 65535)"))
}

/// A host name is letters, digits, `-`, `_` and dots (what a resolver could look up).
fn check_name(name: &str) -> Result<(), String> {
    if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("`{name}` is not an IPv4 address"));
    }
    let ok = name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a host name or address (expected HOST:PORT, [V6]:PORT, \
             unix:PATH or fd://N)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Bind {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn every_form_parses_and_prints_back() {
        for (given, canonical) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("tcp://127.0.0.1:8080", "127.0.0.1:8080"),
            ("localhost:9000", "localhost:9000"),
            ("localhost", "localhost:8000"),
            ("0.0.0.0", "0.0.0.0:8000"),
            (":8001", "0.0.0.0:8001"),
            ("[::1]:80", "[::1]:80"),
            ("[::1]", "[::1]:8000"),
            ("::1", "[::1]:8000"),
            ("tcp://[::]:0", "[::]:0"),
            ("unix:/run/ringcorn.sock", "unix:/run/ringcorn.sock"),
            ("unix:///tmp/a.sock", "unix:/tmp/a.sock"),
            ("unix:rel.sock", "unix:rel.sock"),
            ("fd://3", "fd://3"),
        ] {
            let bind = parse(given);
            assert_eq!(bind.to_string(), canonical, "{given}");
            assert_eq!(parse(canonical), bind, "{canonical} round-trips");
        }
    }

    #[test]
    fn bad_forms_say_why() {
        for (given, why) in [
            ("", "empty"),
            ("tcp://", "empty"),
            ("unix:", "needs a path"),
            ("fd://x", "descriptor"),
            ("fd://-1", "descriptor"),
            ("127.0.0.1:99999", "port"),
            ("host:port", "port"),
            ("[::1", "closing"),
            ("[::1]x", "`:PORT`"),
            ("[zz]:80", "IPv6"),
            ("::1:80:", "port"),
            ("fe80::1:80x", "port"),
            ("a b:80", "not a host name"),
            ("1::2::3:80", "brackets"),
            ("300.1.1.1:80", "not an IPv4 address"),
        ] {
            let err = given.parse::<Bind>().expect_err(given);
            assert!(err.contains(why), "{given}: {err}");
        }
        let long = format!("unix:/{}", "x".repeat(120));
        assert!(long.parse::<Bind>().expect_err("long").contains("107"));
    }

    #[test]
    fn literal_addresses_resolve_to_themselves_and_names_to_all_theirs() {
        let addr: SocketAddr = "127.0.0.1:5".parse().expect("addr");
        assert_eq!(Bind::addr(addr).resolve(), Ok(vec![addr]));
        let local = parse("localhost:7").resolve().expect("localhost resolves");
        assert!(
            local.contains(&"127.0.0.1:7".parse().expect("addr")),
            "{local:?}"
        );
        let err = parse("no-such-host.invalid:80")
            .resolve()
            .expect_err("nxdomain");
        assert!(err.contains("does not resolve"), "{err}");
        assert_eq!(Bind::Unix("/x".into()).resolve(), Ok(Vec::new()));
    }
}
