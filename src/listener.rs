//! Listening sockets: one SO_REUSEPORT socket per worker per bind address, so the kernel spreads
//! connections across workers with no shared accept queue.

use std::io;
use std::net::SocketAddr;
use std::os::fd::FromRawFd;
use std::os::fd::{IntoRawFd, OwnedFd};

use socket2::{Domain, Protocol, Socket, Type};

/// A bind that failed, with the address it was for.
#[derive(Debug)]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot listen on {}: {}", self.addr, self.source)
    }
}

impl std::error::Error for BindError {}

/// Find the real address for each bind (port 0 becomes a free port) and check it is free.
///
/// A socket bound without SO_REUSEPORT probes the address first: that makes an address already
/// held by another server fail here with "Address already in use", even when that server also
/// used SO_REUSEPORT (which would otherwise let us join its group and split its traffic).
pub fn resolve(binds: &[SocketAddr]) -> Result<Vec<SocketAddr>, BindError> {
    binds
        .iter()
        .map(|&addr| {
            let fail = |source| BindError { addr, source };
            let probe = new_socket(addr).map_err(fail)?;
            probe.bind(&addr.into()).map_err(fail)?;
            probe
                .local_addr()
                .map_err(fail)?
                .as_socket()
                .ok_or_else(|| fail(io::Error::other("bound to a non-IP address")))
        })
        .collect()
}

/// One listening socket per address in `addrs` (already resolved), for one worker.
pub fn open(addrs: &[SocketAddr], backlog: u32) -> Result<Vec<OwnedFd>, BindError> {
    addrs
        .iter()
        .map(|&addr| {
            let fail = |source| BindError { addr, source };
            let socket = new_socket(addr).map_err(fail)?;
            socket.set_reuse_port(true).map_err(fail)?;
            // Accepted sockets inherit TCP_NODELAY: responses go out as soon as they are sent.
            socket.set_nodelay(true).map_err(fail)?;
            socket.bind(&addr.into()).map_err(fail)?;
            let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
            socket.listen(backlog).map_err(fail)?;
            // SAFETY: into_raw_fd hands over sole ownership of a valid open descriptor.
            Ok(unsafe { OwnedFd::from_raw_fd(socket.into_raw_fd()) })
        })
        .collect()
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    let domain = Domain::for_address(addr);
    let socket = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if domain == Domain::IPV6 {
        // `[::]:80` and `0.0.0.0:80` may both be bound, as separate addresses.
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_resolves_and_every_worker_binds_it() {
        let addrs = resolve(&["127.0.0.1:0".parse().expect("addr")]).expect("resolves");
        assert_ne!(addrs[0].port(), 0);
        let a = open(&addrs, 16).expect("first worker");
        let b = open(&addrs, 16).expect("second worker");
        assert_eq!((a.len(), b.len()), (1, 1));
    }

    #[test]
    fn an_address_in_use_is_refused_with_its_name() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let err = resolve(&[addr]).expect_err("in use");
        assert_eq!(err.source.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains(&addr.to_string()));
    }

    #[test]
    fn a_reuseport_group_of_another_server_is_refused() {
        let addrs = resolve(&["127.0.0.1:0".parse().expect("addr")]).expect("resolves");
        let _other = open(&addrs, 16).expect("other server");
        assert!(resolve(&addrs).is_err());
    }
}
