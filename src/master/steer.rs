//! Steering new connections inside a reuseport group: a classic-BPF program that picks the
//! socket for each incoming SYN among the sockets of live slots only, so the socket of a slot
//! being retired, or whose worker is being replaced, receives no new connections while its
//! queue is served or waits.
//!
//! The kernel indexes a group's sockets in the order they started listening and, when one
//! closes, moves the last into its place; the master opens slot sockets in slot order and
//! closes only the highest, so index i is slot i. The program hashes the client's address and
//! port (loaded through the network-header offset: in a reuseport program the packet data
//! starts after the TCP header), takes it modulo the number of live slots and maps that to a
//! slot with a chain of comparisons.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use libc::{sock_filter, sock_fprog};

const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
const SO_DETACH_REUSEPORT_BPF: libc::c_int = 68;

/// Multiplier of Knuth's multiplicative hash: spreads sequential client ports.
const GOLDEN: u32 = 0x9E37_79B1;

fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

/// The most live slots a program can map (two instructions each, within BPF_MAXINSNS).
pub const MAX_LIVE: usize = 2000;

/// The program: `h = ((last word of source address ^ source port) * GOLDEN >> 16) % n`, then
/// socket `live[h]`.
fn program(addr: SocketAddr, live: &[usize]) -> Vec<sock_filter> {
    use libc::{
        BPF_ABS, BPF_ALU, BPF_H, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_MISC, BPF_MOD, BPF_MUL,
        BPF_RET, BPF_RSH, BPF_TAX, BPF_W, BPF_X, BPF_XOR, SKF_NET_OFF,
    };
    // IPv4 without options: source address at 12, TCP source port at 20. IPv6: the source
    // address ends at 24 and the TCP header follows the 40-byte header (SYNs carry no
    // extension headers in practice; a packet that does still gets a socket, just hashed on
    // other bytes).
    let (addr_word, port) = match addr {
        SocketAddr::V4(_) => (12, 20),
        SocketAddr::V6(_) => (20, 40),
    };
    let net = |off: i32| (SKF_NET_OFF + off) as u32;
    let mut code = vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, net(addr_word)),
        stmt(BPF_MISC | BPF_TAX, 0),
        stmt(BPF_LD | BPF_H | BPF_ABS, net(port)),
        stmt(BPF_ALU | BPF_XOR | BPF_X, 0),
        stmt(BPF_ALU | BPF_MUL | BPF_K, GOLDEN),
        stmt(BPF_ALU | BPF_RSH | BPF_K, 16),
        stmt(BPF_ALU | BPF_MOD | BPF_K, live.len() as u32),
    ];
    let (last, rest) = live.split_last().expect("at least one live slot");
    for (h, &slot) in rest.iter().enumerate() {
        // if A == h return slot (else skip the return)
        code.push(sock_filter {
            code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: h as u32,
        });
        code.push(stmt(BPF_RET | BPF_K, slot as u32));
    }
    code.push(stmt(BPF_RET | BPF_K, *last as u32));
    code
}

/// Send new connections of `socket`'s group only to the sockets at the indices in `live`
/// (not empty, at most [`MAX_LIVE`]).
pub fn attach(socket: BorrowedFd<'_>, addr: SocketAddr, live: &[usize]) -> io::Result<()> {
    if live.is_empty() || live.len() > MAX_LIVE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "steering needs 1 to MAX_LIVE live slots",
        ));
    }
    let mut code = program(addr, live);
    let prog = sock_fprog {
        len: code.len() as u16,
        filter: code.as_mut_ptr(),
    };
    // SAFETY: the kernel copies the program from `code`, which is live for the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&prog as *const sock_fprog).cast(),
            std::mem::size_of::<sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Give the group back to the kernel's own hash over all its sockets.
pub fn detach(socket: BorrowedFd<'_>) -> io::Result<()> {
    let zero: libc::c_int = 0;
    // SAFETY: reads one int from a live local.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_DETACH_REUSEPORT_BPF,
            (&zero as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    // ENOENT: no program was attached.
    if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT) {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
