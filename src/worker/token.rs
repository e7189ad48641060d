//! The `user_data` tokens that route completions: the operation's kind in the low byte, the
//! object (listener or connection slot) above it.

/// What an operation was for; the low byte of its `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Multishot accept; the index is the listener's.
    Accept = 1,
    /// Receive; the index is the connection's slot.
    Recv = 2,
    /// Send; the index is the connection's slot.
    Send = 3,
    /// The periodic tick (deadlines, Date header).
    Tick = 4,
    /// Read of the worker's eventfd: a message from the master.
    Wake = 5,
    /// Timer after which paused accepts are armed again.
    AcceptRetry = 6,
    /// Cancellation requests: their own completions carry nothing to act on.
    Cancel = 7,
    /// Readiness poll of a parked (idle, bufferless) connection; the index is its slot.
    Poll = 8,
    /// Wait for room in a connection's socket to send the next part of a file.
    Writable = 9,
    /// Read of the handler threads' eventfd: replies are ready (`--threads`).
    Pool = 10,
}

/// `user_data` for an operation on an object (listener or connection slot).
pub fn token(op: Op, index: usize) -> u64 {
    ((index as u64) << 8) | op as u64
}

/// The operation and index a completion belongs to.
pub fn untoken(user_data: u64) -> Option<(Op, usize)> {
    let op = match user_data & 0xff {
        1 => Op::Accept,
        2 => Op::Recv,
        3 => Op::Send,
        4 => Op::Tick,
        5 => Op::Wake,
        6 => Op::AcceptRetry,
        7 => Op::Cancel,
        8 => Op::Poll,
        9 => Op::Writable,
        10 => Op::Pool,
        _ => return None,
    };
    Some((op, (user_data >> 8) as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for op in [
            Op::Accept,
            Op::Recv,
            Op::Send,
            Op::Tick,
            Op::Wake,
            Op::AcceptRetry,
            Op::Cancel,
            Op::Poll,
            Op::Writable,
            Op::Pool,
        ] {
            for index in [0, 1, 65_535, 1 << 40] {
                assert_eq!(untoken(token(op, index)), Some((op, index)));
            }
        }
        assert_eq!(untoken(0), None);
    }
}
