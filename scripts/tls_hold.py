#!/usr/bin/env python3
"""Hold COUNT idle TLS keep-alive connections to 127.0.0.1:PORT for bench.sh's TLS section:
each completes its handshake and one `GET /`, then stays open, idle, for --hold-secs. Prints
`holding N` once they are all set up (N may fall short if some failed), then sleeps."""
import argparse
import resource
import socket
import ssl
import sys
import time

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--count", type=int, required=True)
ap.add_argument("--hold-secs", type=float, default=300)
args = ap.parse_args()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # the run's own throwaway certificate
held, pending = [], []
deadline = time.time() + 120
request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
while (len(held) + len(pending) < args.count or pending) and time.time() < deadline:
    # At most 200 handshakes in flight at once.
    while len(pending) < 200 and len(held) + len(pending) < args.count:
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", args.port))
        except BlockingIOError:
            pass
        except OSError as e:
            print(f"connect failed: {e}", file=sys.stderr)
            break
        pending.append(ctx.wrap_socket(s, server_hostname="localhost", do_handshake_on_connect=False))
    still = []
    for t in pending:
        try:
            t.do_handshake()
            t.send(request)
            held.append(t)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            still.append(t)
        except OSError as e:
            print(f"handshake failed: {e}", file=sys.stderr)
            t.close()
    pending = still
    time.sleep(0.001)
print(f"holding {len(held)}", flush=True)
time.sleep(args.hold_secs)
