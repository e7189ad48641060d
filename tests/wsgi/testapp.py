"""WSGI apps the tests in tests/wsgi.rs serve (plain PEP 3333, no framework)."""
import json
import os
import sys
import wsgiref.validate

closed = {"count": 0}


class Tracked:
    """An iterable whose close() is counted (PEP 3333: the server always calls it)."""

    def __init__(self, parts, fail_at=None):
        self.parts = parts
        self.fail_at = fail_at

    def __iter__(self):
        for i, part in enumerate(self.parts):
            if i == self.fail_at:
                raise RuntimeError("the iterable fails mid-body")
            yield part

    def close(self):
        closed["count"] += 1


def plain(environ):
    """The environ's str, int and bool values (what the tests check)."""
    out = {}
    for key, value in environ.items():
        if isinstance(value, (str, int, bool, tuple)):
            out[key] = value
    out["wsgi.input"] = type(environ["wsgi.input"]).__name__
    return out


def application(environ, start_response):
    path = environ["PATH_INFO"]
    method = environ["REQUEST_METHOD"]
    if path.startswith("/environ"):
        body = json.dumps(plain(environ)).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/input":
        stream = environ["wsgi.input"]
        how = environ["QUERY_STRING"]
        if how == "lines":
            lines = stream.readlines()
            out = b"%d lines, first %r" % (len(lines), lines[0] if lines else b"")
        elif how == "iter":
            out = b"%d lines by iteration" % sum(1 for _ in stream)
        elif how == "readline":
            first = stream.readline()
            rest = stream.read()
            out = b"%d+%d" % (len(first), len(rest))
        else:
            data = b""
            while True:
                piece = stream.read(65536)
                if not piece:
                    break
                data += piece
            out = b"%d %s" % (len(data), "ok".encode() if data == pattern(len(data)) else b"differs")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [out]
    if path == "/stream":
        n = int(environ["QUERY_STRING"] or "10")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked([b"part %d\n" % i for i in range(n)])
    if path == "/stream-sized":
        parts = [b"0123456789"] * 100
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "1000")])
        return Tracked(parts)
    if path == "/stream-fails":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked([b"first\n", b"second\n", b"third\n"], fail_at=2)
    if path == "/closed":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d" % closed["count"]]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written, ")
        return [b"then returned"]
    if path == "/late-start":
        def gen():
            start_response("202 Accepted", [("X-Late", "yes")])
            yield b""
            yield b"late"
        return gen()
    if path == "/exc-info":
        try:
            raise ValueError("a handled error")
        except ValueError:
            start_response("200 OK", [("X-First", "1")])
            start_response("503 Service Unavailable", [("X-Second", "1")], sys.exc_info())
        return [b"replaced"]
    if path == "/twice":
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b"never"]
    if path == "/file":
        # The app's own source, from QUERY_STRING's offset (Django's FileResponse sends this way).
        f = open(__file__, "rb")
        f.seek(int(environ["QUERY_STRING"] or "0"))
        headers = [("Content-Type", "text/x-python")]
        if environ.get("HTTP_X_WITH_LENGTH"):
            headers.append(("Content-Length", str(os.path.getsize(__file__) - f.tell())))
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f, 4096)
    if path == "/file-like":
        import io
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"not a real file, read in blocks"), 4)
    if path == "/raise":
        raise RuntimeError("the view raises")
    if path == "/env":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [os.environ.get("RINGCORN_TEST_ENV", "unset").encode()]
    if path == "/pid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d" % os.getpid()]
    if path == "/bad-header":
        start_response("200 OK", [("X-Bad", "a\r\nInjected: yes")])
        return [b"never"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such path: " + path.encode("latin-1")]


def pattern(n):
    return bytes((i * 7 + 3) % 251 for i in range(n))


validated = wsgiref.validate.validator(application)
