//! The listening sockets, owned by the master for the server's whole life, one group per
//! address listened on:
//!
//! - a TCP address gets a reuseport group with one socket per worker slot (socket i serves
//!   slot i), so every core has its own accept queue;
//! - a Unix socket, and a passed socket without SO_REUSEPORT, is one socket *shared* by
//!   every worker (SO_REUSEPORT does not spread Unix connections);
//! - a passed TCP socket with SO_REUSEPORT (`fd://N`, or systemd's `ReusePort=yes`) becomes
//!   slot 0 of a reuseport group, and the other slots' sockets are opened beside it.
//!
//! Workers borrow their slot's sockets (a duplicate descriptor, or the inherited copy in a
//! worker process), so a worker that exits, drains or is replaced never closes a socket with
//! connections queued in it. A per-slot group grows a socket when a slot is added and loses
//! one only from the top, after new connections have been steered away from it
//! ([`super::steer`]) and its queue has run dry. A binary upgrade hands every socket to the
//! new master through the environment ([`Sockets::export`], [`Inherited::take`]); systemd's
//! socket activation passes them the same way through `LISTEN_FDS`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use super::steer;
use crate::config::{Bind, Host};
use crate::worker::Listener;

/// The environment variable that passes listening sockets to a new master on upgrade: one
/// record per group, `;`-separated: `ORIGIN,SHARED,HEX(BIND),REQUESTED,HEX(NAME)=fd,fd,...`.
pub const INHERIT_ENV: &str = "RINGCORN_LISTENERS";

/// A bind that failed, with the address as the operator wrote it.
#[derive(Debug)]
pub struct BindError {
    pub bind: String,
    pub source: io::Error,
}

impl BindError {
    fn new(bind: &Bind, source: io::Error) -> BindError {
        BindError {
            bind: bind.to_string(),
            source,
        }
    }
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot listen on {}: {}", self.bind, self.source)
    }
}

impl std::error::Error for BindError {}

/// How the listening sockets are set up; accepted connections inherit the TCP options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// `--backlog`: pending connections the kernel queues per socket.
    pub backlog: u32,
    /// `--tcp-notsent-lowat`: bytes a connection may have queued in the kernel beyond what
    /// the peer's window admits (0: the kernel's `net.ipv4.tcp_notsent_lowat`). Without it
    /// a slow reader holds megabytes of kernel memory, and the send that queues them takes
    /// the worker's time (see BENCHMARKS.md, the slow-read attack).
    pub notsent_lowat: u32,
}

/// What a socket listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "http://{addr}"),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Where a group's sockets came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Opened by this server (or by the master it was upgraded from).
    Bound,
    /// `fd://N`: inherited from the parent.
    Passed,
    /// Socket activation.
    Systemd,
}

impl Origin {
    fn code(self) -> char {
        match self {
            Origin::Bound => 'b',
            Origin::Passed => 'p',
            Origin::Systemd => 's',
        }
    }

    fn from_code(c: &str) -> Option<Origin> {
        match c {
            "b" => Some(Origin::Bound),
            "p" => Some(Origin::Passed),
            "s" => Some(Origin::Systemd),
            _ => None,
        }
    }
}

/// A Unix socket file this server created, removed when its socket closes (unless it was
/// handed to a new master), and only if the path still names that same file.
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
    remove: bool,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if !self.remove {
            return;
        }
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!("cannot remove {}: {e}", self.path.display());
                }
            }
            _ => {}
        }
    }
}

/// One address listened on.
struct Group {
    /// As configured: a reload that asks for the same keeps the same sockets.
    bind: Bind,
    /// TCP: the address as resolved from `bind` (port 0 stays 0).
    requested: Option<SocketAddr>,
    endpoint: Endpoint,
    origin: Origin,
    /// systemd's `FileDescriptorName`.
    name: Option<String>,
    /// One socket for every slot (else socket i serves slot i).
    shared: bool,
    /// IPv6: the sockets accept IPv6 only (a passed dual-stack socket's siblings copy it).
    v6only: bool,
    slots: Vec<OwnedFd>,
    /// The live slots a steering program is attached for (none: the kernel's hash).
    steered: Option<Vec<usize>>,
    file: Option<SocketFile>,
}

impl Group {
    /// The startup line's address: `http://…`, `unix:…`, `fd://3 (http://…)`.
    fn shown(&self) -> String {
        let first = self.slots.first().map_or(-1, AsRawFd::as_raw_fd);
        match (self.origin, &self.name) {
            (Origin::Bound, _) => self.endpoint.to_string(),
            (Origin::Systemd, Some(name)) => {
                format!("fd://{first} ({}, systemd socket `{name}`)", self.endpoint)
            }
            (_, _) => format!("fd://{first} ({})", self.endpoint),
        }
    }
}

/// Every listening socket of the server.
pub struct Sockets {
    groups: Vec<Group>,
    /// Slots that have sockets (every per-slot group has this many).
    count: usize,
    tuning: Tuning,
    /// Unix socket files are given to this uid and gid (`--user`, `--group`).
    owner: Option<(u32, u32)>,
}

/// One group handed over by the previous master or by systemd.
struct Passed {
    bind: Bind,
    requested: Option<SocketAddr>,
    endpoint: Endpoint,
    origin: Origin,
    name: Option<String>,
    shared: bool,
    fds: Vec<OwnedFd>,
}

/// Sockets handed over at startup: by the previous master ([`INHERIT_ENV`]) or by systemd
/// (`LISTEN_FDS`).
#[derive(Default)]
pub struct Inherited {
    groups: Vec<Passed>,
    /// The sockets came from the previous master of a binary upgrade (USR2).
    upgrade: bool,
}

impl Inherited {
    /// Take the sockets passed to this process, and unset the variables that passed them so
    /// that no child inherits the claim: the previous master's (an upgrade) or, failing
    /// those, systemd's. Every descriptor must be a listening stream socket.
    pub fn take() -> io::Result<Inherited> {
        if let Some(value) = std::env::var_os(INHERIT_ENV) {
            std::env::remove_var(INHERIT_ENV);
            let groups = parse_export(&value.to_string_lossy())
                .map_err(|why| invalid(format!("{INHERIT_ENV}: {why}")))?;
            // Systemd's variables were for the first master.
            for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
                std::env::remove_var(var);
            }
            return Ok(Inherited {
                groups,
                upgrade: true,
            });
        }
        let passed = sd_notify::listen_fds_with_names();
        for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(var);
        }
        let mut groups = Vec::new();
        for (fd, name) in passed.map_err(|e| invalid(format!("socket activation: {e}")))? {
            let (socket, endpoint) = adopt(fd).map_err(|e| {
                invalid(format!("socket activation: descriptor {fd} ({name}): {e}"))
            })?;
            let shared = !per_slot(&socket, &endpoint);
            groups.push(Passed {
                bind: Bind::Fd(fd),
                requested: None,
                endpoint,
                origin: Origin::Systemd,
                name: Some(name),
                shared,
                fds: vec![OwnedFd::from(socket)],
            });
        }
        Ok(Inherited {
            groups,
            upgrade: false,
        })
    }

    /// This master is the new one of a binary upgrade: the old one still runs beside it.
    pub fn upgrade(&self) -> bool {
        self.upgrade
    }

    /// How many slots the previous master had (the most sockets of any per-slot group).
    pub fn slots(&self) -> usize {
        self.groups
            .iter()
            .filter(|g| !g.shared)
            .map(|g| g.fds.len())
            .max()
            .unwrap_or(0)
    }

    /// With socket activation, the binds to serve instead of the configured ones: one
    /// `fd://N` per socket systemd passed (also after an upgrade).
    pub fn activated(&self) -> Option<Vec<Bind>> {
        let binds: Vec<Bind> = self
            .groups
            .iter()
            .filter(|g| g.origin == Origin::Systemd)
            .map(|g| g.bind.clone())
            .collect();
        (!binds.is_empty()).then_some(binds)
    }

    /// The group for `bind` (resolved to `addr`, for TCP), if one was passed.
    fn claim(&mut self, bind: &Bind, addr: Option<SocketAddr>) -> Option<Passed> {
        let i = self
            .groups
            .iter()
            .position(|g| g.bind == *bind && (addr.is_none() || g.requested == addr))?;
        Some(self.groups.remove(i))
    }
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why)
}

/// The records of [`Sockets::export`], with their descriptors adopted.
fn parse_export(value: &str) -> Result<Vec<Passed>, String> {
    let mut groups = Vec::new();
    for part in value.split(';').filter(|p| !p.is_empty()) {
        let (head, fds) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` has no `=`"))?;
        let fields: Vec<&str> = head.split(',').collect();
        let [origin, shared, bind, requested, name] = fields[..] else {
            return Err(format!("`{head}` does not have five fields"));
        };
        let origin = Origin::from_code(origin).ok_or_else(|| format!("origin `{origin}`"))?;
        let bind: Bind = unhex(bind)?.parse()?;
        let requested = match requested {
            "-" => None,
            r => Some(
                r.parse::<SocketAddr>()
                    .map_err(|_| format!("`{r}` is not an address"))?,
            ),
        };
        let name = match unhex(name)? {
            n if n.is_empty() => None,
            n => Some(n),
        };
        let mut owned = Vec::new();
        let mut endpoint = None;
        for fd in fds.split(',') {
            let fd: RawFd = fd
                .parse()
                .map_err(|_| format!("`{fd}` is not a descriptor"))?;
            let (socket, found) = adopt(fd).map_err(|e| format!("descriptor {fd}: {e}"))?;
            if endpoint.as_ref().is_some_and(|e| *e != found) {
                return Err(format!(
                    "descriptor {fd} listens on {found}, not {endpoint:?}"
                ));
            }
            endpoint = Some(found);
            owned.push(OwnedFd::from(socket));
        }
        let endpoint = endpoint.ok_or_else(|| format!("`{part}` names no descriptor"))?;
        groups.push(Passed {
            bind,
            requested,
            endpoint,
            origin,
            name,
            shared: shared == "1",
            fds: owned,
        });
    }
    Ok(groups)
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Result<String, String> {
    if s.len() % 2 != 0 {
        return Err(format!("`{s}` is not hex"));
    }
    let bytes: Result<Vec<u8>, _> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16))
        .collect();
    let bytes = bytes.map_err(|_| format!("`{s}` is not hex"))?;
    String::from_utf8(bytes).map_err(|_| format!("`{s}` is not UTF-8"))
}

/// Check that `fd` is open and a listening stream socket (TCP or Unix), and own it (close
/// on exec again: an upgrade or systemd cleared the flag to pass it).
fn adopt(fd: RawFd) -> io::Result<(Socket, Endpoint)> {
    // SAFETY: fcntl on a descriptor number only queries it; a closed one gives EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::other("not an open descriptor"));
    }
    // SAFETY: the descriptor is open (checked above) and was passed to this process to own.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    let checked = (|| {
        let local = socket.local_addr()?;
        let endpoint = if let Some(addr) = local.as_socket() {
            Endpoint::Tcp(addr)
        } else if let Some(path) = local.as_pathname() {
            Endpoint::Unix(path.to_path_buf())
        } else {
            return Err(io::Error::other(
                "not a TCP or Unix socket with a path (abstract and other families are not served)",
            ));
        };
        if socket.r#type()? != Type::STREAM {
            return Err(io::Error::other(format!(
                "{endpoint} is not a stream socket"
            )));
        }
        if !socket.is_listener()? {
            return Err(io::Error::other(format!("{endpoint} is not listening")));
        }
        Ok(endpoint)
    })();
    match checked {
        Ok(endpoint) => {
            set_cloexec(socket.as_raw_fd(), true)?;
            Ok((socket, endpoint))
        }
        Err(e) => {
            // Not ours to close: give the descriptor back untouched.
            let _ = socket.into_raw_fd();
            Err(e)
        }
    }
}

/// A passed TCP socket with SO_REUSEPORT can have per-slot sockets opened beside it.
fn per_slot(socket: &Socket, endpoint: &Endpoint) -> bool {
    matches!(endpoint, Endpoint::Tcp(_)) && socket.reuse_port().unwrap_or(false)
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

/// Where a rebind's group comes from.
enum Source {
    Kept(usize),
    New(Box<Group>),
}

impl Sockets {
    /// Open `slots` sockets on each address of `binds` (one shared socket for a Unix one),
    /// taking over inherited ones first. Unix socket files are given to `owner`.
    pub fn bind(
        binds: &[Bind],
        slots: usize,
        tuning: Tuning,
        owner: Option<(u32, u32)>,
        inherited: &mut Inherited,
    ) -> Result<Sockets, BindError> {
        let mut sockets = Sockets {
            groups: Vec::new(),
            count: slots,
            tuning,
            owner,
        };
        sockets.rebind(binds, slots, tuning, inherited, true)?;
        // systemd's SO_REUSEPORT sockets get their siblings now.
        for g in sockets
            .groups
            .iter_mut()
            .filter(|g| g.origin == Origin::Systemd)
        {
            fill_passed(g, slots, tuning)?;
        }
        Ok(sockets)
    }

    /// Make the groups match `binds` (a reload): an address still asked for keeps its group
    /// and sockets; a new address gets `slots` sockets. `fd://N` is taken only at startup.
    /// Returns the groups of addresses no longer asked for, for the caller to close once no
    /// worker needs them. On error nothing changes.
    pub fn rebind(
        &mut self,
        binds: &[Bind],
        slots: usize,
        tuning: Tuning,
        inherited: &mut Inherited,
        startup: bool,
    ) -> Result<Sockets, BindError> {
        let before = std::mem::replace(&mut self.tuning, tuning);
        match self.rebind_groups(binds, slots, inherited, startup) {
            Ok(dropped) => {
                self.retune(before);
                Ok(dropped)
            }
            Err(e) => {
                self.tuning = before;
                Err(e)
            }
        }
    }

    /// Kept and passed sockets take the current tuning (new ones were opened with it): the
    /// send low-water mark on every TCP socket, the backlog on the ones this server bound.
    fn retune(&self, before: Tuning) {
        for g in &self.groups {
            let Endpoint::Tcp(_) = g.endpoint else {
                continue;
            };
            for fd in &g.slots {
                let mut set = set_notsent_lowat(fd.as_fd(), self.tuning.notsent_lowat);
                if set.is_ok() && g.origin == Origin::Bound && before.backlog != self.tuning.backlog
                {
                    // listen() on a listening socket only sets its backlog.
                    // SAFETY: listen on a borrowed descriptor; no memory is involved.
                    let rc = unsafe {
                        libc::listen(fd.as_raw_fd(), listen_backlog(self.tuning.backlog))
                    };
                    if rc < 0 {
                        set = Err(io::Error::last_os_error());
                    }
                }
                if let Err(e) = set {
                    tracing::warn!("{}: cannot set the socket options: {e}", g.shown());
                    break;
                }
            }
        }
    }

    fn rebind_groups(
        &mut self,
        binds: &[Bind],
        slots: usize,
        inherited: &mut Inherited,
        startup: bool,
    ) -> Result<Sockets, BindError> {
        let mut sources: Vec<Source> = Vec::new();
        let mut claimed: Vec<usize> = Vec::new();
        let mut keep = |sources: &mut Vec<Source>, i: usize| {
            if !claimed.contains(&i) {
                claimed.push(i);
                sources.push(Source::Kept(i));
            }
        };
        for bind in binds {
            match bind {
                Bind::Tcp { host, .. } => {
                    let addrs = bind
                        .resolve()
                        .map_err(|why| BindError::new(bind, io::Error::other(why)))?;
                    let mut skipped = Vec::new();
                    let mut bound = 0;
                    for addr in &addrs {
                        let kept = self.groups.iter().position(|g| {
                            (g.bind == *bind && g.requested == Some(*addr))
                                || (addr.port() != 0 && g.endpoint == Endpoint::Tcp(*addr))
                        });
                        if let Some(i) = kept {
                            keep(&mut sources, i);
                            bound += 1;
                            continue;
                        }
                        if let Some(p) = inherited.claim(bind, Some(*addr)) {
                            sources.push(Source::New(Box::new(adopt_group(p))));
                            bound += 1;
                            continue;
                        }
                        match self.open_tcp_group(bind, *addr, slots) {
                            Ok(g) => {
                                sources.push(Source::New(Box::new(g)));
                                bound += 1;
                            }
                            // A name that also resolves to a family this host cannot bind
                            // (IPv6 disabled): the other addresses serve.
                            Err(e) if matches!(host, Host::Name(_)) && unbindable(&e) => {
                                skipped.push(e)
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    if bound == 0 && !skipped.is_empty() {
                        return Err(skipped.remove(0));
                    }
                    for e in skipped {
                        tracing::warn!("{e}; the other addresses of {bind} serve");
                    }
                }
                Bind::Unix(path) => {
                    if let Some(i) = self.groups.iter().position(|g| g.bind == *bind) {
                        keep(&mut sources, i);
                    } else if let Some(p) = inherited.claim(bind, None) {
                        sources.push(Source::New(Box::new(adopt_group(p))));
                    } else {
                        let g = self
                            .open_unix_group(bind, path)
                            .map_err(|e| BindError::new(bind, e))?;
                        sources.push(Source::New(Box::new(g)));
                    }
                }
                Bind::Fd(fd) => {
                    if let Some(i) = self.groups.iter().position(|g| g.bind == *bind) {
                        keep(&mut sources, i);
                    } else if let Some(p) = inherited.claim(bind, None) {
                        sources.push(Source::New(Box::new(adopt_group(p))));
                    } else if !startup {
                        return Err(BindError::new(
                            bind,
                            io::Error::other(
                                "an inherited socket can only be taken at startup (this one \
                                 was not passed to the server, or a reload dropped it)",
                            ),
                        ));
                    } else {
                        let g = self
                            .adopt_passed(bind, *fd, slots)
                            .map_err(|e| BindError::new(bind, e))?;
                        sources.push(Source::New(Box::new(g)));
                    }
                }
            }
        }
        let mut old: Vec<Option<Group>> = std::mem::take(&mut self.groups)
            .into_iter()
            .map(Some)
            .collect();
        for source in sources {
            match source {
                Source::Kept(i) => self.groups.extend(old[i].take()),
                Source::New(g) => self.groups.push(*g),
            }
        }
        self.count = self.count.max(slots);
        Ok(Sockets {
            groups: old.into_iter().flatten().collect(),
            count: 0,
            tuning: self.tuning,
            owner: None,
        })
    }

    /// `fd://N`: a listening socket this process inherited.
    fn adopt_passed(&self, bind: &Bind, fd: RawFd, slots: usize) -> io::Result<Group> {
        let (socket, endpoint) = adopt(fd)?;
        let shared = !per_slot(&socket, &endpoint);
        let v6only = socket.only_v6().unwrap_or(true);
        let mut g = Group {
            bind: bind.clone(),
            requested: None,
            endpoint,
            origin: Origin::Passed,
            name: None,
            shared,
            v6only,
            slots: vec![OwnedFd::from(socket)],
            steered: None,
            file: None,
        };
        fill_passed(&mut g, slots, self.tuning).map_err(|e| e.source)?;
        Ok(g)
    }

    fn open_tcp_group(
        &self,
        bind: &Bind,
        requested: SocketAddr,
        slots: usize,
    ) -> Result<Group, BindError> {
        let named = |mut e: BindError| {
            if let Bind::Tcp {
                host: Host::Name(_),
                ..
            } = bind
            {
                e.bind = format!("{bind} ({requested})");
            }
            e
        };
        let addr = probe(requested).map_err(named)?;
        let mut g = Group {
            bind: bind.clone(),
            requested: Some(requested),
            endpoint: Endpoint::Tcp(addr),
            origin: Origin::Bound,
            name: None,
            shared: false,
            v6only: true,
            slots: Vec::new(),
            steered: None,
            file: None,
        };
        while g.slots.len() < slots {
            g.slots
                .push(open_tcp(addr, self.tuning, true).map_err(named)?);
        }
        Ok(g)
    }

    fn open_unix_group(&self, bind: &Bind, path: &Path) -> io::Result<Group> {
        let socket = open_unix(path, self.tuning.backlog, self.owner)?;
        Ok(Group {
            bind: bind.clone(),
            requested: None,
            endpoint: Endpoint::Unix(path.to_path_buf()),
            origin: Origin::Bound,
            name: None,
            shared: true,
            v6only: true,
            slots: vec![socket],
            steered: None,
            file: socket_file(path, true),
        })
    }

    /// The TCP addresses served, with real ports.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.groups
            .iter()
            .filter_map(|g| match g.endpoint {
                Endpoint::Tcp(addr) => Some(addr),
                Endpoint::Unix(_) => None,
            })
            .collect()
    }

    /// What each group listens on, as the startup lines show it.
    pub fn shown(&self) -> Vec<String> {
        self.groups.iter().map(Group::shown).collect()
    }

    /// [`Self::shown`], with `https://` for the addresses that speak TLS (`tls`).
    pub fn shown_tls(&self, tls: impl Fn(&Bind) -> bool) -> Vec<String> {
        self.groups
            .iter()
            .map(|g| match tls(&g.bind) {
                true => g.shown().replacen("http://", "https://", 1),
                false => g.shown(),
            })
            .collect()
    }

    /// How many slots have sockets.
    pub fn slots(&self) -> usize {
        self.count
    }

    /// Open sockets so that every address has `slots`. The new sockets get no connections
    /// until [`Self::steer`] counts them live: the group is steered to `live` first.
    pub fn grow(&mut self, slots: usize, live: &[usize]) -> Result<(), BindError> {
        for g in self.groups.iter_mut().filter(|g| !g.shared) {
            if g.slots.len() >= slots {
                continue;
            }
            let Endpoint::Tcp(addr) = g.endpoint else {
                continue;
            };
            let fail = |source| BindError {
                bind: g.bind.to_string(),
                source,
            };
            if !live.is_empty() && g.steered.as_deref() != Some(live) {
                if let Some(first) = g.slots.first() {
                    steer::attach(first.as_fd(), addr, live).map_err(fail)?;
                    g.steered = Some(live.to_vec());
                }
            }
            while g.slots.len() < slots {
                let socket = open_tcp(addr, self.tuning, g.v6only)?;
                g.slots.push(socket);
            }
        }
        self.count = self.count.max(slots);
        Ok(())
    }

    /// Give every listening socket this server opened to `uid`/`gid` before the whole
    /// process drops to them (thread workers): sockets it opens later, as that user, can
    /// then join the same reuseport groups (the kernel requires the same owner). Passed
    /// sockets stay as they are: they are their parent's.
    pub fn give_to(&self, uid: u32, gid: u32) -> io::Result<()> {
        for g in self.groups.iter().filter(|g| g.origin == Origin::Bound) {
            for fd in &g.slots {
                std::os::unix::fs::fchown(fd, Some(uid), Some(gid))?;
            }
        }
        Ok(())
    }

    /// Close the sockets of the highest slot (its connections were steered away and its
    /// queue has been empty).
    pub fn close_top(&mut self) {
        let Some(top) = self.count.checked_sub(1) else {
            return;
        };
        for g in self.groups.iter_mut().filter(|g| !g.shared) {
            g.slots.truncate(top);
        }
        self.count = top;
    }

    /// Close every socket (a final stop: new connections are refused from now on; an
    /// upgrade's new master keeps its own copies open). Socket files go with them, unless
    /// [`Self::hand_over_files`] gave them to a new master.
    pub fn close_all(&mut self) {
        self.groups.clear();
    }

    /// The socket files are the new master's now: leave them in place on exit.
    pub fn hand_over_files(&mut self) {
        for f in self.groups.iter_mut().filter_map(|g| g.file.as_mut()) {
            f.remove = false;
        }
    }

    /// The socket files inherited from the previous master are this one's now (it has
    /// handed over): remove them on exit.
    pub fn own_files(&mut self) {
        for f in self.groups.iter_mut().filter_map(|g| g.file.as_mut()) {
            f.remove = true;
        }
    }

    /// A worker's borrowed copies of slot `slot`'s sockets, one per address; `tls` says
    /// which addresses speak TLS.
    pub fn for_slot(&self, slot: usize, tls: impl Fn(&Bind) -> bool) -> io::Result<Vec<Listener>> {
        self.groups
            .iter()
            .filter_map(|g| {
                let fd = if g.shared {
                    g.slots.first()
                } else {
                    g.slots.get(slot)
                };
                fd.map(|fd| (fd, g.shared, tls(&g.bind)))
            })
            .map(|(fd, shared, tls)| {
                Ok(Listener {
                    tls,
                    fd: fd.try_clone()?,
                    shared,
                })
            })
            .collect()
    }

    /// Send new connections only to the sockets of the `live` slots (sorted; all of them, or
    /// none: the kernel's own hash over the whole group). Shared sockets need no steering.
    pub fn steer(&mut self, live: &[usize]) -> io::Result<()> {
        for g in self.groups.iter_mut().filter(|g| !g.shared) {
            let (Some(first), Endpoint::Tcp(addr)) = (g.slots.first(), &g.endpoint) else {
                continue;
            };
            let all =
                live.is_empty() || live.len() >= g.slots.len() || live.len() > steer::MAX_LIVE;
            if all {
                if g.steered.take().is_some() {
                    steer::detach(first.as_fd())?;
                }
            } else if g.steered.as_deref() != Some(live) {
                steer::attach(first.as_fd(), *addr, live)?;
                g.steered = Some(live.to_vec());
            }
        }
        Ok(())
    }

    /// Connections waiting in slot `slot`'s own accept queues, all addresses together
    /// (shared sockets belong to no slot: every worker takes from them).
    pub fn queued(&self, slot: usize) -> usize {
        self.groups
            .iter()
            .filter(|g| !g.shared)
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
                format!(
                    "{},{},{},{},{}={}",
                    g.origin.code(),
                    u8::from(g.shared),
                    hex(&g.bind.to_string()),
                    g.requested
                        .map_or_else(|| "-".to_string(), |a| a.to_string()),
                    hex(g.name.as_deref().unwrap_or("")),
                    fds.join(",")
                )
            })
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// A group handed over at startup, as it was. A socket file from the previous master stays
/// its to remove until this one has taken over ([`Sockets::own_files`]); systemd's are
/// systemd's.
fn adopt_group(p: Passed) -> Group {
    let file = match (&p.endpoint, p.origin) {
        (Endpoint::Unix(path), Origin::Bound) => socket_file(path, false),
        _ => None,
    };
    Group {
        bind: p.bind,
        requested: p.requested,
        endpoint: p.endpoint,
        origin: p.origin,
        name: p.name,
        shared: p.shared,
        v6only: p
            .fds
            .first()
            .is_none_or(|fd| SockRef::from(fd).only_v6().unwrap_or(true)),
        slots: p.fds,
        // The previous master may have left a program attached: the first `steer`
        // replaces or removes it.
        steered: Some(Vec::new()),
        file,
    }
}

/// A bind error that means "this host cannot have that address", not "something is wrong".
fn unbindable(e: &BindError) -> bool {
    matches!(
        e.source.raw_os_error(),
        Some(libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT)
    )
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

/// Say why a bind failed in the operator's words.
fn explain(addr: SocketAddr, e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::EACCES) if addr.port() < 1024 => io::Error::new(
            e.kind(),
            format!("{e}: ports below 1024 need root or CAP_NET_BIND_SERVICE"),
        ),
        Some(libc::EADDRNOTAVAIL) => io::Error::new(
            e.kind(),
            format!(
                "{e}: no interface of this host has the address {}",
                addr.ip()
            ),
        ),
        _ => e,
    }
}

/// Find the real address for a bind (port 0 becomes a free port) and check it is free.
///
/// A socket bound without SO_REUSEPORT probes the address first: that makes an address already
/// held by another server fail here with "Address already in use", even when that server also
/// used SO_REUSEPORT (which would otherwise let us join its group and split its traffic).
fn probe(addr: SocketAddr) -> Result<SocketAddr, BindError> {
    let fail = |source| BindError {
        bind: addr.to_string(),
        source: explain(addr, source),
    };
    let probe = new_tcp_socket(addr, true).map_err(fail)?;
    probe.bind(&addr.into()).map_err(fail)?;
    probe
        .local_addr()
        .map_err(fail)?
        .as_socket()
        .ok_or_else(|| fail(io::Error::other("bound to a non-IP address")))
}

/// A passed SO_REUSEPORT socket's siblings, one per slot. Where the kernel will not let
/// them join (the passed socket belongs to another user: systemd creates its sockets as
/// root), every worker shares the passed socket instead, and the log says how to get
/// per-core sockets.
fn fill_passed(g: &mut Group, slots: usize, tuning: Tuning) -> Result<(), BindError> {
    let Endpoint::Tcp(addr) = g.endpoint else {
        return Ok(());
    };
    if g.shared {
        return Ok(());
    }
    while g.slots.len() < slots {
        match open_tcp(addr, tuning, g.v6only) {
            Ok(socket) => g.slots.push(socket),
            Err(e) if e.source.kind() == io::ErrorKind::AddrInUse && g.slots.len() == 1 => {
                tracing::warn!(
                    "{}: cannot open per-worker sockets beside it ({}): it belongs to another \
                     user. Every worker shares it instead; for per-core sockets start ringcorn \
                     as root with --user (the sockets are bound before privileges drop)",
                    g.shown(),
                    e.source
                );
                g.shared = true;
                return Ok(());
            }
            Err(mut e) => {
                e.bind = g.shown();
                return Err(e);
            }
        }
    }
    Ok(())
}

/// One listening SO_REUSEPORT socket on `addr` (already probed).
fn open_tcp(addr: SocketAddr, tuning: Tuning, v6only: bool) -> Result<OwnedFd, BindError> {
    let fail = |source| BindError {
        bind: addr.to_string(),
        source: explain(addr, source),
    };
    let socket = new_tcp_socket(addr, v6only).map_err(fail)?;
    socket.set_reuse_port(true).map_err(fail)?;
    // Accepted sockets inherit TCP_NODELAY: responses go out as soon as they are sent.
    socket.set_nodelay(true).map_err(fail)?;
    set_notsent_lowat(socket.as_fd(), tuning.notsent_lowat).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    socket
        .listen(listen_backlog(tuning.backlog))
        .map_err(fail)?;
    Ok(OwnedFd::from(socket))
}

/// TCP_NOTSENT_LOWAT on a TCP socket (a listener's is inherited by what it accepts, and a
/// change applies to connections accepted after it). socket2 does not wrap it.
fn set_notsent_lowat(socket: BorrowedFd<'_>, bytes: u32) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live local c_int; the
    // descriptor is borrowed for the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn listen_backlog(backlog: u32) -> i32 {
    i32::try_from(backlog).unwrap_or(i32::MAX)
}

/// A TCP socket for `addr` with SO_REUSEADDR (and IPV6_V6ONLY as asked), not yet bound: the
/// server's own, and what `--check` binds to find out whether an address can be had.
pub(crate) fn new_tcp_socket(addr: SocketAddr, v6only: bool) -> io::Result<Socket> {
    let domain = Domain::for_address(addr);
    let socket = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if domain == Domain::IPV6 {
        // `[::]:80` and `0.0.0.0:80` may both be bound, as separate addresses.
        socket.set_only_v6(v6only)?;
    }
    Ok(socket)
}

/// A listening Unix socket at `path`: a stale file from a dead server is replaced; one that
/// another server answers on is "in use"; anything else at the path is left alone.
fn open_unix(path: &Path, backlog: u32, owner: Option<(u32, u32)>) -> io::Result<OwnedFd> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("the directory {} does not exist", dir.display()),
        ));
    }
    let addr = SockAddr::unix(path)?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            let client = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None)?;
            client.set_nonblocking(true)?;
            match client.connect(&addr) {
                Ok(()) => return Err(in_use()),
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Err(in_use()),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot remove the stale socket: {e}"))
                    })?;
                    tracing::info!(
                        "Removed the stale socket {} (nobody answered on it)",
                        path.display()
                    );
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("a socket exists there and cannot be checked: {e}"),
                    ))
                }
            }
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket (left alone)",
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None)?;
    socket.bind(&addr)?;
    socket.listen(listen_backlog(backlog))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot give the socket to uid {uid} gid {gid}: {e}"),
            )
        })?;
    }
    Ok(OwnedFd::from(socket))
}

fn in_use() -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrInUse,
        "address in use: another server is answering on this socket",
    )
}

/// The file at `path` as it is now, to remove on exit (`remove`) if it is still that file.
/// One listening socket of the master's own (`--metrics`): the first address a TCP bind
/// resolves to (SO_REUSEPORT, so the new master of an upgrade binds it beside the old one),
/// or a Unix socket, removed when dropped.
pub struct Single {
    pub fd: OwnedFd,
    /// As the startup line shows it.
    pub shown: String,
    _file: Option<SocketFile>,
}

/// Open a [`Single`] socket on `bind`, non-blocking. `take_over`: a Unix path that a live
/// server answers on (the old master of an upgrade) is replaced rather than refused: the
/// new socket is bound beside it and renamed over it.
pub fn listen_single(
    bind: &Bind,
    owner: Option<(u32, u32)>,
    take_over: bool,
) -> Result<Single, BindError> {
    const BACKLOG: u32 = 64;
    let fail = |e| BindError::new(bind, e);
    let (fd, shown, file) = match bind {
        Bind::Tcp { .. } => {
            let addrs = bind.resolve().map_err(|why| fail(io::Error::other(why)))?;
            let addr = *addrs
                .first()
                .ok_or_else(|| fail(io::Error::other("the name resolves to no address")))?;
            // Metrics pages are small: the kernel's default send buffering is fine.
            let tuning = Tuning {
                backlog: BACKLOG,
                notsent_lowat: 0,
            };
            let fd = open_tcp(addr, tuning, true)?;
            let bound = SockRef::from(&fd)
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .unwrap_or(addr);
            (fd, format!("http://{bound}"), None)
        }
        Bind::Unix(path) => {
            let fd = match open_unix(path, BACKLOG, owner) {
                Err(e) if take_over && e.kind() == io::ErrorKind::AddrInUse => {
                    let beside = path.with_extension(format!("new{}", std::process::id()));
                    let fd = open_unix(&beside, BACKLOG, owner).map_err(fail)?;
                    std::fs::rename(&beside, path).map_err(|e| {
                        let _ = std::fs::remove_file(&beside);
                        fail(e)
                    })?;
                    fd
                }
                other => other.map_err(fail)?,
            };
            (fd, bind.to_string(), socket_file(path, true))
        }
        Bind::Fd(_) => {
            return Err(fail(io::Error::other(
                "an inherited descriptor cannot serve metrics",
            )))
        }
    };
    // SAFETY: fcntl sets a flag on a descriptor we hold; no memory is involved.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    Ok(Single {
        fd,
        shown,
        _file: file,
    })
}

fn socket_file(path: &Path, remove: bool) -> Option<SocketFile> {
    let m = std::fs::symlink_metadata(path).ok()?;
    Some(SocketFile {
        path: path.to_path_buf(),
        dev: m.dev(),
        ino: m.ino(),
        remove,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::{TcpListener, TcpStream};

    fn local() -> Vec<Bind> {
        vec!["127.0.0.1:0".parse().expect("addr")]
    }

    fn bind(binds: &[Bind], slots: usize, backlog: u32) -> Result<Sockets, BindError> {
        let tuning = Tuning {
            backlog,
            notsent_lowat: 0,
        };
        Sockets::bind(binds, slots, tuning, None, &mut Inherited::default())
    }

    #[test]
    fn port_zero_resolves_once_and_every_slot_binds_it() {
        let s = bind(&local(), 3, 16).expect("binds");
        assert_ne!(s.addrs()[0].port(), 0);
        assert_eq!(s.slots(), 3);
        assert_eq!(s.for_slot(2, |_| false).expect("dup").len(), 1);
        assert!(s.for_slot(3, |_| false).expect("none").is_empty());
    }

    #[test]
    fn an_address_in_use_is_refused_with_its_name() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let err = bind(&[Bind::addr(addr)], 1, 16).err().expect("in use");
        assert_eq!(err.source.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains(&addr.to_string()));
    }

    #[test]
    fn a_reuseport_group_of_another_server_is_refused() {
        let other = bind(&local(), 1, 16).expect("other");
        let taken: Vec<Bind> = other.addrs().into_iter().map(Bind::addr).collect();
        assert!(bind(&taken, 1, 16).is_err());
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
        let mut s = bind(&local(), 4, 512).expect("binds");
        s.steer(&[0, 2, 3]).expect("attach");
        let counts = spread(&s, 120);
        assert_eq!(counts.get(&1), None, "slot 1 got connections: {counts:?}");
        assert_eq!(counts.values().sum::<usize>(), 120, "{counts:?}");
        assert!(counts.values().all(|&c| c >= 20), "uneven: {counts:?}");
    }

    #[test]
    fn unsteered_groups_use_every_slot() {
        let mut s = bind(&local(), 3, 512).expect("binds");
        s.steer(&[0, 1]).expect("attach");
        s.steer(&[0, 1, 2]).expect("detach");
        let counts = spread(&s, 90);
        assert_eq!(counts.len(), 3, "{counts:?}");
    }

    #[test]
    fn grown_sockets_get_no_connections_until_live() {
        let mut s = bind(&local(), 2, 512).expect("binds");
        s.grow(3, &[0, 1]).expect("grows");
        let counts = spread(&s, 60);
        assert_eq!(counts.get(&2), None, "{counts:?}");
        s.steer(&[0, 1, 2]).expect("all live");
        assert_eq!(spread(&s, 60).len(), 3);
    }

    #[test]
    fn rebind_keeps_asked_addresses_and_returns_the_rest() {
        let mut s = bind(&local(), 2, 16).expect("binds");
        let first = s.addrs()[0];
        let other: Bind = "127.0.0.2:0".parse().expect("addr");
        let removed = s
            .rebind(
                &[other.clone(), "127.0.0.1:0".parse().expect("addr")],
                2,
                tuning(16, 0),
                &mut Inherited::default(),
                false,
            )
            .expect("rebinds");
        assert_eq!(removed.addrs(), Vec::<SocketAddr>::new());
        assert_eq!(s.addrs()[1], first, "port 0 keeps its socket");
        let removed = s
            .rebind(&[other], 2, tuning(16, 0), &mut Inherited::default(), false)
            .expect("rebinds");
        assert_eq!(removed.addrs(), vec![first]);
    }

    fn tuning(backlog: u32, notsent_lowat: u32) -> Tuning {
        Tuning {
            backlog,
            notsent_lowat,
        }
    }

    fn notsent_lowat(fd: BorrowedFd<'_>) -> i32 {
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into the live local `value`.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "getsockopt: {}", io::Error::last_os_error());
        value
    }

    /// The low-water mark is set on the listener, reaches the connections it accepts, and a
    /// reload's new value applies to kept sockets and to new ones.
    #[test]
    fn notsent_lowat_reaches_accepted_connections_and_follows_reloads() {
        let binds = local();
        let mut s = Sockets::bind(
            &binds,
            1,
            tuning(16, 16384),
            None,
            &mut Inherited::default(),
        )
        .expect("binds");
        let accept_one = |s: &Sockets| {
            let fd = s.groups[0].slots[0].try_clone().expect("dup");
            let listener = std::net::TcpListener::from(fd);
            let _client = std::net::TcpStream::connect(s.addrs()[0]).expect("connects");
            let (conn, _) = listener.accept().expect("accepts");
            notsent_lowat(conn.as_fd())
        };
        assert_eq!(notsent_lowat(s.groups[0].slots[0].as_fd()), 16384);
        assert_eq!(accept_one(&s), 16384, "inherited from the listener");
        s.rebind(
            &binds,
            1,
            tuning(16, 4096),
            &mut Inherited::default(),
            false,
        )
        .expect("rebinds");
        assert_eq!(
            accept_one(&s),
            4096,
            "a kept socket takes the reload's value"
        );
        s.grow(2, &[]).expect("grows");
        assert_eq!(
            notsent_lowat(s.groups[0].slots[1].as_fd()),
            4096,
            "a new slot's too"
        );
    }
}
