//! The listening sockets, owned by the master for the server's whole life: for each bind
//! address a reuseport group with one socket per worker slot. Workers borrow their slot's
//! sockets (a duplicate descriptor, or the inherited copy in a worker process), so a worker
//! that exits, drains or is replaced never closes a socket with connections queued in it.
//!
//! The group of an address grows a socket when a slot is added and loses one only from the
//! top, after new connections have been steered away from it ([`super::steer`]) and its queue
//! has run dry. A binary upgrade hands every socket, in slot order, to the new master through
//! the environment ([`Sockets::export`], [`Sockets::bind`] with inherited ones).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use super::steer;

/// The environment variable that passes listening sockets to a new master on upgrade:
/// `REQUESTED@ACTUAL=fd,fd,...` per address, separated by `;`.
pub const INHERIT_ENV: &str = "RINGCORN_LISTENERS";

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

/// One bind address: its reuseport group, socket i serving slot i.
struct Group {
    /// As configured (port 0 stays 0, so a reload that asks again keeps the same socket).
    requested: SocketAddr,
    /// With the real port.
    addr: SocketAddr,
    slots: Vec<OwnedFd>,
    /// The live slots a steering program is attached for (none: the kernel's hash).
    steered: Option<Vec<usize>>,
}

/// Every listening socket of the server.
pub struct Sockets {
    groups: Vec<Group>,
    backlog: u32,
}

/// Sockets handed over by the previous master, parsed from [`INHERIT_ENV`].
#[derive(Default)]
pub struct Inherited {
    groups: Vec<(SocketAddr, SocketAddr, Vec<OwnedFd>)>,
}

impl Inherited {
    /// Take the sockets named by [`INHERIT_ENV`], if it is set (and unset it, so that no
    /// child inherits the claim). Every descriptor must be a listening socket bound to the
    /// address it is named with.
    pub fn from_env() -> io::Result<Inherited> {
        let Some(value) = std::env::var_os(INHERIT_ENV) else {
            return Ok(Inherited::default());
        };
        std::env::remove_var(INHERIT_ENV);
        let value = value.to_string_lossy().into_owned();
        let bad = |why: String| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{INHERIT_ENV}: {why}"))
        };
        let mut groups = Vec::new();
        for part in value.split(';').filter(|p| !p.is_empty()) {
            let (addrs, fds) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("`{part}` has no `=`")))?;
            let (requested, actual) = addrs
                .split_once('@')
                .ok_or_else(|| bad(format!("`{addrs}` has no `@`")))?;
            let parse = |s: &str| {
                s.parse::<SocketAddr>()
                    .map_err(|_| bad(format!("`{s}` is not an address")))
            };
            let (requested, actual) = (parse(requested)?, parse(actual)?);
            let mut owned = Vec::new();
            for fd in fds.split(',') {
                let fd: RawFd = fd
                    .parse()
                    .map_err(|_| bad(format!("`{fd}` is not a descriptor")))?;
                owned.push(adopt(fd, actual).map_err(|e| bad(format!("descriptor {fd}: {e}")))?);
            }
            groups.push((requested, actual, owned));
        }
        Ok(Inherited { groups })
    }

    /// How many slots the previous master had (the most sockets of any address).
    pub fn slots(&self) -> usize {
        self.groups.iter().map(|g| g.2.len()).max().unwrap_or(0)
    }
}

/// Check that `fd` is a listening TCP socket bound to `addr`, and own it.
fn adopt(fd: RawFd, addr: SocketAddr) -> io::Result<OwnedFd> {
    // SAFETY: fcntl on a descriptor number only queries it; a closed one gives EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and was passed to this process to own.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    let listening = socket.is_listener()?;
    let local = socket.local_addr()?.as_socket();
    if !listening || local != Some(addr) {
        // Not ours to close: give the descriptor back untouched.
        let _ = socket.into_raw_fd();
        return Err(io::Error::other(format!(
            "not a socket listening on {addr} (found {local:?}, listening: {listening})"
        )));
    }
    // Ours now: close it on exec again (the upgrade cleared the flag to pass it).
    let owned = OwnedFd::from(socket);
    set_cloexec(owned.as_raw_fd(), true)?;
    Ok(owned)
}

/// Set or clear close-on-exec on a descriptor.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    let flags = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: fcntl sets the descriptor flags of an open descriptor; no memory is involved.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Sockets {
    /// Open `slots` sockets on each address of `binds`, taking over inherited ones first.
    pub fn bind(
        binds: &[SocketAddr],
        slots: usize,
        backlog: u32,
        inherited: &mut Inherited,
    ) -> Result<Sockets, BindError> {
        let mut sockets = Sockets {
            groups: Vec::new(),
            backlog,
        };
        sockets.rebind(binds, slots, inherited)?;
        Ok(sockets)
    }

    /// Make the groups match `binds` (a reload): an address still asked for keeps its group
    /// and sockets (matched by the address as asked, or by its real one); a new address gets
    /// `slots` sockets. Returns the groups of addresses no longer asked for, for the caller to
    /// close once no worker needs them. On error nothing changes.
    pub fn rebind(
        &mut self,
        binds: &[SocketAddr],
        slots: usize,
        inherited: &mut Inherited,
    ) -> Result<Sockets, BindError> {
        enum Source {
            Kept(usize),
            Inherited(usize),
            New(Group),
        }
        let mut sources = Vec::with_capacity(binds.len());
        for &requested in binds {
            let kept = self
                .groups
                .iter()
                .position(|g| g.requested == requested || g.addr == requested);
            let passed = inherited
                .groups
                .iter()
                .position(|(r, a, _)| *r == requested || *a == requested);
            sources.push(match (kept, passed) {
                (Some(i), _) => Source::Kept(i),
                (None, Some(i)) => Source::Inherited(i),
                (None, None) => {
                    let addr = resolve(requested)?;
                    let mut g = Group {
                        requested,
                        addr,
                        slots: Vec::new(),
                        steered: None,
                    };
                    while g.slots.len() < slots {
                        g.slots.push(open(addr, self.backlog)?);
                    }
                    Source::New(g)
                }
            });
        }
        let mut old: Vec<Option<Group>> = std::mem::take(&mut self.groups)
            .into_iter()
            .map(Some)
            .collect();
        let mut passed: Vec<Option<(SocketAddr, SocketAddr, Vec<OwnedFd>)>> =
            std::mem::take(&mut inherited.groups)
                .into_iter()
                .map(Some)
                .collect();
        for source in sources {
            let group = match source {
                Source::Kept(i) => old[i].take(),
                Source::Inherited(i) => passed[i].take().map(|(requested, addr, slots)| Group {
                    requested,
                    addr,
                    slots,
                    // The previous master may have left a program attached: the first
                    // `steer` replaces or removes it.
                    steered: Some(Vec::new()),
                }),
                Source::New(g) => Some(g),
            };
            self.groups.extend(group);
        }
        inherited.groups = passed.into_iter().flatten().collect();
        Ok(Sockets {
            groups: old.into_iter().flatten().collect(),
            backlog: self.backlog,
        })
    }

    /// The addresses served, with real ports.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.groups.iter().map(|g| g.addr).collect()
    }

    /// How many slots have sockets.
    pub fn slots(&self) -> usize {
        self.groups.iter().map(|g| g.slots.len()).max().unwrap_or(0)
    }

    /// Open sockets so that every address has `slots`. The new sockets get no connections
    /// until [`Self::steer`] counts them live: the group is steered to `live` first.
    pub fn grow(&mut self, slots: usize, live: &[usize]) -> Result<(), BindError> {
        for g in &mut self.groups {
            if g.slots.len() >= slots {
                continue;
            }
            if !live.is_empty() && g.steered.as_deref() != Some(live) {
                if let Some(first) = g.slots.first() {
                    steer::attach(first.as_fd(), g.addr, live).map_err(|source| BindError {
                        addr: g.addr,
                        source,
                    })?;
                    g.steered = Some(live.to_vec());
                }
            }
            while g.slots.len() < slots {
                let socket = open(g.addr, self.backlog)?;
                g.slots.push(socket);
            }
        }
        Ok(())
    }

    /// Close the sockets of the highest slot (its connections were steered away and its
    /// queue has been empty).
    pub fn close_top(&mut self) {
        for g in &mut self.groups {
            g.slots.pop();
        }
    }

    /// Close every socket (a final stop: new connections are refused from now on; an
    /// upgrade's new master keeps its own copies open).
    pub fn close_all(&mut self) {
        self.groups.clear();
    }

    /// A worker's borrowed copies of slot `slot`'s sockets, one per address.
    pub fn for_slot(&self, slot: usize) -> io::Result<Vec<OwnedFd>> {
        self.groups
            .iter()
            .filter_map(|g| g.slots.get(slot))
            .map(|fd| fd.try_clone())
            .collect()
    }

    /// Send new connections only to the sockets of the `live` slots (sorted; all of them, or
    /// none: the kernel's own hash over the whole group).
    pub fn steer(&mut self, live: &[usize]) -> io::Result<()> {
        for g in &mut self.groups {
            let Some(first) = g.slots.first() else {
                continue;
            };
            let all =
                live.is_empty() || live.len() >= g.slots.len() || live.len() > steer::MAX_LIVE;
            if all {
                if g.steered.take().is_some() {
                    steer::detach(first.as_fd())?;
                }
            } else if g.steered.as_deref() != Some(live) {
                steer::attach(first.as_fd(), g.addr, live)?;
                g.steered = Some(live.to_vec());
            }
        }
        Ok(())
    }

    /// Connections waiting in slot `slot`'s accept queues, all addresses together.
    pub fn queued(&self, slot: usize) -> usize {
        self.groups
            .iter()
            .filter_map(|g| g.slots.get(slot))
            .map(|fd| accept_queue(fd.as_raw_fd()))
            .sum()
    }

    /// Every descriptor (a forked worker closes those that are not its own; an upgrade
    /// passes them all).
    pub fn raw_fds(&self) -> Vec<RawFd> {
        self.groups
            .iter()
            .flat_map(|g| g.slots.iter().map(AsRawFd::as_raw_fd))
            .collect()
    }

    /// The value of [`INHERIT_ENV`] that hands these sockets to a new master.
    pub fn export(&self) -> String {
        self.groups
            .iter()
            .map(|g| {
                let fds: Vec<String> = g.slots.iter().map(|f| f.as_raw_fd().to_string()).collect();
                format!("{}@{}={}", g.requested, g.addr, fds.join(","))
            })
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// Length of a listening socket's accept queue (TCP_INFO's `tcpi_unacked` on a listener).
fn accept_queue(fd: RawFd) -> usize {
    // SAFETY: tcp_info is plain old data; zeroed is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return 0;
    }
    info.tcpi_unacked as usize
}

/// Find the real address for a bind (port 0 becomes a free port) and check it is free.
///
/// A socket bound without SO_REUSEPORT probes the address first: that makes an address already
/// held by another server fail here with "Address already in use", even when that server also
/// used SO_REUSEPORT (which would otherwise let us join its group and split its traffic).
fn resolve(addr: SocketAddr) -> Result<SocketAddr, BindError> {
    let fail = |source| BindError { addr, source };
    let probe = new_socket(addr).map_err(fail)?;
    probe.bind(&addr.into()).map_err(fail)?;
    probe
        .local_addr()
        .map_err(fail)?
        .as_socket()
        .ok_or_else(|| fail(io::Error::other("bound to a non-IP address")))
}

/// One listening SO_REUSEPORT socket on `addr` (already resolved).
fn open(addr: SocketAddr, backlog: u32) -> Result<OwnedFd, BindError> {
    let fail = |source| BindError { addr, source };
    let socket = new_socket(addr).map_err(fail)?;
    socket.set_reuse_port(true).map_err(fail)?;
    // Accepted sockets inherit TCP_NODELAY: responses go out as soon as they are sent.
    socket.set_nodelay(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    socket.listen(backlog).map_err(fail)?;
    Ok(OwnedFd::from(socket))
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
    use std::collections::HashMap;
    use std::net::{TcpListener, TcpStream};

    fn local() -> Vec<SocketAddr> {
        vec!["127.0.0.1:0".parse().expect("addr")]
    }

    #[test]
    fn port_zero_resolves_once_and_every_slot_binds_it() {
        let s = Sockets::bind(&local(), 3, 16, &mut Inherited::default()).expect("binds");
        assert_ne!(s.addrs()[0].port(), 0);
        assert_eq!(s.slots(), 3);
        assert_eq!(s.for_slot(2).expect("dup").len(), 1);
        assert!(s.for_slot(3).expect("none").is_empty());
    }

    #[test]
    fn an_address_in_use_is_refused_with_its_name() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let err = Sockets::bind(&[addr], 1, 16, &mut Inherited::default())
            .err()
            .expect("in use");
        assert_eq!(err.source.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains(&addr.to_string()));
    }

    #[test]
    fn a_reuseport_group_of_another_server_is_refused() {
        let other = Sockets::bind(&local(), 1, 16, &mut Inherited::default()).expect("other");
        let taken = other.addrs();
        assert!(Sockets::bind(&taken, 1, 16, &mut Inherited::default()).is_err());
    }

    /// Which slot each of `n` new connections lands in.
    fn spread(s: &Sockets, n: usize) -> HashMap<usize, usize> {
        let addr = s.addrs()[0];
        let clients: Vec<TcpStream> = (0..n)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        let mut counts = HashMap::new();
        for slot in 0..s.slots() {
            let q = s.queued(slot);
            if q > 0 {
                counts.insert(slot, q);
            }
        }
        drop(clients);
        counts
    }

    #[test]
    fn steering_keeps_new_connections_off_retired_slots() {
        let mut s = Sockets::bind(&local(), 4, 512, &mut Inherited::default()).expect("binds");
        s.steer(&[0, 2, 3]).expect("attach");
        let counts = spread(&s, 120);
        assert_eq!(counts.get(&1), None, "slot 1 got connections: {counts:?}");
        assert_eq!(counts.values().sum::<usize>(), 120, "{counts:?}");
        assert!(counts.values().all(|&c| c >= 20), "uneven: {counts:?}");
    }

    #[test]
    fn unsteered_groups_use_every_slot() {
        let mut s = Sockets::bind(&local(), 3, 512, &mut Inherited::default()).expect("binds");
        s.steer(&[0, 1]).expect("attach");
        s.steer(&[0, 1, 2]).expect("detach");
        let counts = spread(&s, 90);
        assert_eq!(counts.len(), 3, "{counts:?}");
    }

    #[test]
    fn grown_sockets_get_no_connections_until_live() {
        let mut s = Sockets::bind(&local(), 2, 512, &mut Inherited::default()).expect("binds");
        s.grow(3, &[0, 1]).expect("grows");
        let counts = spread(&s, 60);
        assert_eq!(counts.get(&2), None, "{counts:?}");
        s.steer(&[0, 1, 2]).expect("all live");
        assert_eq!(spread(&s, 60).len(), 3);
    }

    #[test]
    fn rebind_keeps_asked_addresses_and_returns_the_rest() {
        let mut s = Sockets::bind(&local(), 2, 16, &mut Inherited::default()).expect("binds");
        let first = s.addrs()[0];
        let other: SocketAddr = "127.0.0.2:0".parse().expect("addr");
        let removed = s
            .rebind(
                &[other, "127.0.0.1:0".parse().expect("addr")],
                2,
                &mut Inherited::default(),
            )
            .expect("rebinds");
        assert_eq!(removed.addrs(), Vec::<SocketAddr>::new());
        assert_eq!(s.addrs()[1], first, "port 0 keeps its socket");
        let removed = s
            .rebind(&[other], 2, &mut Inherited::default())
            .expect("rebinds");
        assert_eq!(removed.addrs(), vec![first]);
    }
}
