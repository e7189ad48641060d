#!/usr/bin/env python3
"""naive_reuseport.py: the baseline of scripts/lifecycle.sh, a server that loses connections
when it replaces its workers. Python 3, standard library only; not for serving anything.

What it reproduces. N worker processes each open ITS OWN listening socket with SO_REUSEPORT on
the same port; the kernel spreads incoming connections over the sockets of the group and queues
each one, until it is accepted, in the accept queue of the socket it picked. On SIGHUP the
master replaces each worker in turn the way servers without master-owned sockets do: it starts
a new worker, which opens a new socket, waits until that one listens, then tells the old worker
to stop; the old worker closes its listening socket and exits. Closing a listening socket
resets every connection still waiting in its accept queue: the kernel completed their
handshake (the client believes it is connected and has usually sent its request by then), but
no process will ever accept them, and the client gets ECONNRESET. That is the loss ringcorn's
design avoids: its master owns the listening sockets for the whole life of the server and
hands them to every new worker, so no socket, and no accept queue, ever closes during a
reload, an upgrade or a worker replacement. (Linux 5.14+ can migrate such connections to
another socket of the group, `sysctl net.ipv4.tcp_migrate_req=1`; it is off by default.)

When it closes a socket with connections in its accept queue, a worker says how many on
stderr (`dropped N queued connection(s)`, read from TCP_INFO just before the close).

Everything else is done as well as it can be, so that the accept-queue loss is the only one:
a stopping worker stops accepting, then answers the next request on each of its keep-alive
connections with `Connection: close` and closes it once that answer is written (the client
reconnects, to one of the other sockets), and exits when none is left, or after
--drain-timeout seconds.

HTTP: a minimal keep-alive HTTP/1.1 server; every request (any method or path; a body
announced by Content-Length is read and ignored; pipelined requests answered in order) gets
`200 text/plain Hello, World!`. HTTP/1.0 and `Connection: close` close after the answer.

Usage:
    naive_reuseport.py [--workers N] [--bind HOST:PORT] [--backlog N] [--drain-timeout S]

Port 0 picks a free port: the master binds a socket (SO_REUSEPORT, never listening, so it
never gets connections) to learn the port and keep it reserved; every worker's socket binds to
it. Once every worker listens it prints `Listening at: http://HOST:PORT` on stderr.
Signals to the master: HUP replaces the workers one at a time as described; TERM or INT stops
the workers (the same drain) and exits 0. A worker that dies otherwise is replaced.
"""

import argparse
import os
import select
import selectors
import signal
import socket
import struct
import sys
import time

BODY = b"Hello, World!"
RESPONSE_HEAD = b"HTTP/1.1 200 OK\r\nServer: naive-reuseport\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
KEEP = RESPONSE_HEAD + b"\r\n" + BODY
CLOSE = RESPONSE_HEAD + b"Connection: close\r\n\r\n" + BODY
MAX_HEAD = 32768
READY_TIMEOUT = 10.0
# struct tcp_info: 8 one-byte fields, then u32 rto, ato, snd_mss, rcv_mss, unacked. For a
# listening socket Linux reports its accept queue's current length in tcpi_unacked.
TCPI_UNACKED_OFFSET = 24


def accept_queue_length(sock):
    """Connections waiting in a listening socket's accept queue (-1 if unknown)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        return struct.unpack_from("I", info, TCPI_UNACKED_OFFSET)[0]
    except (OSError, AttributeError, struct.error):
        return -1


def log(msg):
    sys.stderr.write(f"naive_reuseport[{os.getpid()}]: {msg}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- worker

class Conn:
    __slots__ = ("sock", "inbuf", "out", "body_left", "close_after")

    def __init__(self, sock):
        self.sock = sock
        self.inbuf = b""
        self.out = b""
        self.body_left = 0
        self.close_after = False


def worker(host, port, backlog, drain_timeout, ready_fd):
    """Open this worker's own SO_REUSEPORT socket, say ready, serve until SIGTERM, drain."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for s in (signal.SIGHUP, signal.SIGINT, signal.SIGCHLD):
        signal.signal(s, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master stops us with TERM
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stopping = False

    def on_term(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host, port))
    listener.listen(backlog)
    listener.setblocking(False)
    os.write(ready_fd, b"R")
    os.close(ready_fd)

    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    sel.register(wake_r, selectors.EVENT_READ, "wake")
    conns = {}
    drain_deadline = None

    def close(c):
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        conns.pop(c.sock.fileno(), None)
        c.sock.close()

    def send(c):
        """Write what is queued; True if the connection is still open."""
        while c.out:
            try:
                n = c.sock.send(c.out)
            except BlockingIOError:
                sel.modify(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
                return True
            except OSError:
                close(c)
                return False
            c.out = c.out[n:]
        if c.close_after:
            close(c)
            return False
        sel.modify(c.sock, selectors.EVENT_READ, c)
        return True

    def serve(c, data):
        c.inbuf += data
        while c.inbuf and not c.close_after:
            if c.body_left:
                take = min(c.body_left, len(c.inbuf))
                c.body_left -= take
                c.inbuf = c.inbuf[take:]
                continue
            end = c.inbuf.find(b"\r\n\r\n")
            if end < 0:
                if len(c.inbuf) > MAX_HEAD:
                    close(c)
                    return
                break
            head = c.inbuf[:end].decode("latin-1")
            c.inbuf = c.inbuf[end + 4:]
            lines = head.split("\r\n")
            http10 = lines[0].endswith("HTTP/1.0")
            close_asked = http10
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                value = value.strip().lower()
                if name == "content-length" and value.isdigit():
                    c.body_left = int(value)
                elif name == "connection":
                    tokens = [t.strip() for t in value.split(",")]
                    if "close" in tokens:
                        close_asked = True
                    elif "keep-alive" in tokens and http10:
                        close_asked = False
            if stopping or close_asked:
                c.out += CLOSE
                c.close_after = True
            else:
                c.out += KEEP
        send(c)

    while True:
        if stopping and drain_deadline is None:
            # The naive part: this worker's socket, and the connections the kernel has queued
            # in it, go away with it. Each queued connection is reset.
            queued = accept_queue_length(listener)
            sel.unregister(listener)
            listener.close()
            if queued > 0:
                log(f"closed its listening socket: dropped {queued} queued connection(s)")
            drain_deadline = time.monotonic() + drain_timeout
        if drain_deadline is not None:
            if not conns or time.monotonic() >= drain_deadline:
                break
        timeout = None if drain_deadline is None else max(0.0, drain_deadline - time.monotonic())
        for key, mask in sel.select(timeout):
            if key.data == "wake":
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            elif key.data is None:
                if stopping:
                    continue
                while True:
                    try:
                        s, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:  # EMFILE and the like: try again later
                        log(f"accept: {e}")
                        break
                    s.setblocking(False)
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    c = Conn(s)
                    conns[s.fileno()] = c
                    sel.register(s, selectors.EVENT_READ, c)
            else:
                c = key.data
                if c.sock.fileno() < 0:
                    continue
                if mask & selectors.EVENT_WRITE:
                    if not send(c):
                        continue
                if mask & selectors.EVENT_READ:
                    try:
                        data = c.sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        close(c)
                        continue
                    if not data:
                        close(c)
                        continue
                    serve(c, data)
    if conns:
        log(f"drain timeout: closing {len(conns)} connection(s) still open")
    for c in list(conns.values()):
        close(c)
    os._exit(0)


# ---------------------------------------------------------------- master

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bind", default="127.0.0.1:8000", help="HOST:PORT, IPv4; port 0 picks one")
    ap.add_argument("--backlog", type=int, default=2048)
    ap.add_argument("--drain-timeout", type=float, default=2.0,
                    help="seconds a stopping worker gets to close its connections (2)")
    args = ap.parse_args()
    if args.workers < 1:
        ap.error("--workers must be at least 1")
    host, _, port_s = args.bind.rpartition(":")
    if not host or not port_s.isdigit():
        ap.error(f"--bind: expected HOST:PORT, got {args.bind!r}")

    # Signals are taken with sigtimedwait in the loop below; workers unblock them.
    signals = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)

    # Reserve the port (bound, never listening: the kernel gives it no connections).
    reserve = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        reserve.bind((host, int(port_s)))
    except OSError as e:
        log(f"cannot bind {args.bind}: {e}")
        sys.exit(1)
    port = reserve.getsockname()[1]

    def spawn():
        """Fork a worker and wait until its socket listens; its pid."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            reserve.close()
            try:
                worker(host, port, args.backlog, args.drain_timeout, w)
            except BaseException as e:  # noqa: BLE001 - a worker never returns to main()
                log(f"worker failed: {e!r}")
            os._exit(1)
        os.close(w)
        ready, _, _ = select.select([r], [], [], READY_TIMEOUT)
        ok = bool(ready) and os.read(r, 1) == b"R"
        os.close(r)
        if not ok:
            log(f"worker {pid} did not start listening within {READY_TIMEOUT} s")
        return pid

    slots = [spawn() for _ in range(args.workers)]
    stopping_pids = set()  # old workers told to stop, not yet reaped
    sys.stderr.write(f"Listening at: http://{host}:{port}\n")
    sys.stderr.flush()

    def reap():
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            stopping_pids.discard(pid)
            if pid in slots:  # died on its own: replace it
                i = slots.index(pid)
                log(f"worker {pid} exited; replacing it")
                slots[i] = spawn()

    def stop_all():
        for pid in slots + list(stopping_pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + args.drain_timeout + 1.0
        for pid in slots + list(stopping_pids):
            while time.monotonic() < deadline:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                time.sleep(0.02)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
        sys.exit(0)

    while True:
        info = signal.sigtimedwait(signals, 1.0)
        if info is None:
            reap()
            continue
        if info.si_signo == signal.SIGCHLD:
            reap()
        elif info.si_signo == signal.SIGHUP:
            for i, old in enumerate(slots):
                slots[i] = spawn()  # a new worker, with a new socket of its own ...
                stopping_pids.add(old)
                try:
                    os.kill(old, signal.SIGTERM)  # ... and the old one closes its socket
                except ProcessLookupError:
                    pass
            reap()
        else:  # TERM, INT
            stop_all()


if __name__ == "__main__":
    main()
