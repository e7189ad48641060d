#!/usr/bin/env python3
"""Write the seed corpus of the `tls` fuzz target to fuzz/seeds/tls/.

Each seed is the target's two header bytes (see fuzz_targets/tls.rs) and then either what a
client sends raw (mode 0: real ClientHellos made here by Python's ssl module, cut short,
garbage, a PROXY header first) or the plaintext a real client sends once its handshake is
done (mode 1: HTTP requests). Run from anywhere: python3 fuzz/make_tls_seeds.py
"""
import os
import ssl

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "seeds", "tls")
# Indexes into the target's CUTS table.
ALL, ONE, SEVEN, K1, RECORD = 0, 1, 5, 10, 12
PROXY_V1 = b"PROXY TCP4 192.0.2.1 192.0.2.2 1111 443\r\n"


def header(real_client=False, proxy=False, park=False, tls12=False, read=ALL, send=ALL,
           write=ALL):
    cfg = (1 if real_client else 0) | (2 if proxy else 0) | (4 if park else 0)
    cfg |= (8 if tls12 else 0) | (read << 4)
    return bytes([cfg, send | (write << 4)])


def client_hello(version, server_name="localhost"):
    """The first flight of a Python (OpenSSL) client: a real ClientHello."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = version
    ctx.maximum_version = version
    ctx.set_alpn_protocols(["http/1.1"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def main():
    os.makedirs(OUT, exist_ok=True)
    hello13 = client_hello(ssl.TLSVersion.TLSv1_3)
    hello12 = client_hello(ssl.TLSVersion.TLSv1_2)
    get = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    seeds = {
        "raw_hello13": header() + hello13,
        "raw_hello12_bytewise": header(read=ONE) + hello12,
        "raw_hello13_truncated": header() + hello13[: len(hello13) // 2],
        "raw_hello13_twice": header(read=SEVEN) + hello13 + hello13,
        "raw_hello_then_garbage": header() + hello13 + b"\x17\x03\x03\x00\x10" + b"\x00" * 16,
        "raw_plain_http": header() + get,
        "raw_garbage": header() + bytes([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]),
        "raw_proxy_hello": header(proxy=True, read=K1) + PROXY_V1 + hello13,
        "client_get": header(real_client=True) + get,
        "client_get_tls12_park": header(real_client=True, tls12=True, park=True) + get,
        "client_pipelined_cut": header(real_client=True, read=SEVEN, send=K1, write=SEVEN)
        + get * 3,
        "client_large_body": header(real_client=True, send=RECORD) + b"GET /300000 HTTP/1.1\r\nHost: h\r\n\r\n",
        "client_file_stream": header(real_client=True, read=RECORD, send=K1)
        + b"GET /file/100000 HTTP/1.1\r\nHost: h\r\n\r\nGET /stream/70000 HTTP/1.1\r\nHost: h\r\n\r\n",
        "client_post_echo": header(real_client=True, write=SEVEN)
        + b"POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        "client_bad_request": header(real_client=True) + b"NOT HTTP\r\n\r\n",
        "client_proxy_close": header(real_client=True, proxy=True)
        + b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    }
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"{len(seeds)} seeds in {OUT}")


if __name__ == "__main__":
    main()
