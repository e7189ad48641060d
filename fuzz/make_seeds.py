#!/usr/bin/env python3
"""Write the seed corpus of the `connection` fuzz target to fuzz/seeds/connection/.

Each seed is the target's header (see fuzz_targets/connection.rs) followed by the bytes a client
sends. Run from anywhere: python3 fuzz/make_seeds.py
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "seeds", "connection")

DEFAULT, SMALL, TINY, CUSTOM = 0, 1, 2, 3


def header(limits=DEFAULT, panics=False, drain=None, drain_mid_flush=False, time_out=None,
           sizes=None, bytewise=False, fixed=None, send=0, park=False, custom=b""):
    cfg = limits
    if panics:
        cfg |= 4
    if drain is not None:
        cfg |= 8
    if time_out is not None:
        cfg |= 16
    if bytewise:
        mode = 1
    elif fixed is not None:
        mode = 3
    elif sizes is None:
        mode = 2
    else:
        mode = 0
    cfg |= mode << 5
    if drain_mid_flush:
        cfg |= 0x80
    assert send < 0x80
    out = bytes([cfg, send | (0x80 if park else 0)])
    if limits == CUSTOM:
        assert len(custom) == 6
        out += custom
    if drain is not None:
        out += bytes([drain])
    if time_out is not None:
        out += bytes([time_out])
    if mode == 0:
        out += bytes([len(sizes)]) + bytes(s - 1 for s in sizes)
    elif mode == 3:
        out += bytes([fixed - 1])
    return out


GET = b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: seed\r\n\r\n"
HEAD = b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n"
POST = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"4\r\nWiki\r\n5;name=val\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n")
CONTINUE = b"PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"
CONTINUE_CHUNKED = (b"PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
HTTP10_KA = b"GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
HTTP10 = b"POST /ten HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi"
CLOSE = b"GET /bye HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
PANIC = b"GET /panic HTTP/1.1\r\nHost: h\r\n\r\n"

SEEDS = {
    "get": header() + GET,
    "pipelined": header(sizes=[3, 7, 1, 20]) + GET + HEAD + GET + CLOSE,
    "post_bytewise": header(bytewise=True) + POST + GET,
    "chunked_split": header(sizes=[5, 1, 9]) + CHUNKED + GET,
    "continue": header(sizes=[len(CONTINUE) - 3, 3]) + CONTINUE + GET,
    "continue_chunked": header(sizes=[70, 2, 2]) + CONTINUE_CHUNKED,
    "http10": header(fixed=4) + HTTP10_KA + HTTP10_KA + HTTP10,
    "panic": header(panics=True, sizes=[11]) + GET + PANIC + GET,
    "small_limits_long_line": header(limits=SMALL) + b"GET /" + b"a" * 80 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
    "small_limits_body": header(limits=SMALL, sizes=[40]) + b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 300\r\n\r\n",
    "tiny_chunked": header(limits=TINY, bytewise=True) + b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n123456789\r\n0\r\n\r\n",
    "custom_limits": header(limits=CUSTOM, custom=bytes([8, 8, 8, 4, 4, 8]), sizes=[17]) + GET + CHUNKED,
    "drain_mid_flush": header(drain=1, drain_mid_flush=True, sizes=[len(GET), 200]) + GET + GET + GET,
    "drain_idle": header(drain=1, sizes=[len(GET)]) + GET + GET,
    "time_out": header(time_out=1, sizes=[10]) + GET,
    "garbage_after_valid": header() + GET + b"GARBAGE\r\n\r\n" + GET,
    "bare_lf": header() + b"GET / HTTP/1.1\nHost: h\n\n",
    "te_and_cl": header() + b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "tls_hello": header() + bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]),
    "h2_preface": header() + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "leading_crlf": header(sizes=[1]) + b"\r\n\r\n" + GET + b"\r\n" + POST,
    "expect_other": header() + b"POST / HTTP/1.1\r\nHost: h\r\nExpect: nope\r\nContent-Length: 1\r\n\r\nx",
    "partial_sends": header(send=7, sizes=[50]) + GET + POST + CHUNKED + HEAD,
    "park": header(park=True, sizes=[len(GET), 5, 200]) + GET + POST + GET + GET,
    "big_pipeline": header(sizes=[200]) + b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n" * 6 + HEAD + GET,
    "mix": header(panics=True, sizes=[2, 31, 5, 64, 1]) + GET + CHUNKED + POST + HTTP10_KA
    + CONTINUE + HEAD + CHUNKED + CLOSE,
    # Request-target forms (RFC 9112 §3.2): absolute-form (its authority must be Host),
    # asterisk-form, authority-form (CONNECT: 501), and bytes outside the URI grammar.
    "targets": header(sizes=[9, 40]) + b"GET http://h/x?y HTTP/1.1\r\nHost: h\r\n\r\n"
    + b"GET HTTPS://H?q HTTP/1.1\r\nHost: h\r\n\r\n"
    + b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"
    + b"GET /a[]|{}^`?q[]={x}%zz HTTP/1.1\r\nHost: h\r\n\r\n"
    + b"GET http://h:80/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + GET,
    "target_bad_byte": header(bytewise=True) + GET + b"GET /caf\xc3\xa9#x HTTP/1.1\r\nHost: h\r\n\r\n",
    "target_other_host": header() + GET + b"GET http://evil/ HTTP/1.1\r\nHost: h\r\n\r\n",
    "connect": header(sizes=[20]) + GET + b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
    "asterisk_get": header() + b"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
    # Trailers: allowed ones are dropped; framing, routing, authentication ones are refused.
    "trailer_forbidden": header(sizes=[60, 3]) + CHUNKED
    + b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"1\r\na\r\n0\r\nServer-Timing: x\r\nContent-Length: 5\r\n\r\n" + GET,
    # Empty lines: any number, counted towards the head (small limits: 256 bytes).
    "empty_lines": header(limits=SMALL, sizes=[7, 1]) + b"\r\n" * 40 + GET + b"\r\n" * 60 + GET
    + b"\r\n" * 130 + GET,
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {OUT}")


if __name__ == "__main__":
    main()
