"""Fuzzing the classic protocol against a real server (issue 8): thousands of
random paths, segments, headers and bodies from a fixed seed.  Every answer
must be a 4xx or a 2xx/3xx, never a 5xx nor a dropped connection, and the
server must still serve a normal classic loop afterwards."""
from __future__ import annotations

import collections
import gzip
import http.client
import json
import random
import time
import zlib
from typing import Any, Callable
from urllib.parse import quote, urlencode

import requests

SEED = 20_261_125
REQUESTS = 3_000
BOARDS = ["1", "2", "3", "42"]  # jobix values that exist: claims and reports do things


# ---------------------------------------------------------------- segments

def huge_int(rng: random.Random) -> str:
    return rng.choice([str(2**63 - 1), str(2**63), str(2**64), str(-(2**63) - 1),
                       "9" * rng.randint(20, 40), "9" * rng.randint(1000, 5000),
                       "1" + "0" * 4300, str(10**19)])


def segment(rng: random.Random) -> str:
    """One path segment (or a query value), hostile more often than not."""
    kind = rng.randrange(14)
    if kind < 3:
        return str(rng.choice([0, 1, 2, 3, 4, 5, 10, 1000, 9_999, 10_000, 10_001]))
    if kind == 3:
        return huge_int(rng)
    if kind == 4:
        return str(-rng.randint(1, 10**6))
    if kind == 5:
        return rng.choice(["1.5", "0.0", "-0.5", "1e308", "1e309", "-1e309", "nan", "NaN",
                           "inf", "-inf", "Infinity", "1e-320", "0x10", "1_000", "+3",
                           " 2 ", "٣", "１２", "²"])
    if kind == 6:
        return rng.choice(["é", "日本語", "💥", "\u202e1", "\x00", "\x7f", "ß",
                           "<script>alert(1)</script>", "' OR 1=1 --", "%", "%zz", "..",
                           ".", "~", "a/b", "\\", "\t", "\n1"])
    if kind == 7:
        return ""
    if kind == 8:
        return rng.choice(["1", "x", "é", "0/"]) * rng.randint(200, 3000)
    if kind == 9:
        return str(rng.random() * 10 ** rng.randint(-5, 30))
    if kind == 10:
        return rng.choice(["true", "false", "null", "[]", "{}", "None"])
    if kind == 11:
        return "".join(chr(rng.randint(0x20, 0x2FFF)) for _ in range(rng.randint(1, 30)))
    return str(rng.randint(-3, 12))


def jobix_header(rng: random.Random) -> str | bytes | None:
    kind = rng.randrange(10)
    if kind < 5:
        return rng.choice(BOARDS)
    if kind == 5:
        return None
    if kind == 6:
        return huge_int(rng)[:8000]
    if kind == 7:
        return rng.choice(["", " ", "abc", "1.0", "-1", "0x2a", "1e3", "１", "٣", " 42 "])
    if kind == 8:
        return rng.choice(["é", "日本", "💥"]).encode() * rng.randint(1, 10)  # raw UTF-8
    return str(rng.randint(-(2**63), 2**63 - 1))


# ------------------------------------------------------------------ bodies

def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 5)
    if kind == 0:
        return rng.randint(-(2**70), 2**70)
    if kind == 1:
        return rng.random() * 10 ** rng.randint(-10, 300)
    if kind == 2:
        return segment(rng)
    if kind == 3:
        return rng.choice([None, True, False])
    if kind == 4:
        return "x" * rng.randint(0, 100)
    if kind < 7:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {segment(rng)[:50]: random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def job_spec(rng: random.Random) -> Any:
    kind = rng.randrange(12)
    if kind < 6:
        return {"jobstage": rng.choice([0, 0, 0, 2, 4]), "jobcmd": random_json(rng)}
    return rng.choice([
        {"jobstage": rng.choice([-1, 1.5, "0", True, None, 2**63, 2**64, 10_001, [0], {}])},
        {"jobcmd": 1},
        {},
        [],
        "0",
        7,
        None,
        {"jobstage": 0, "jobcmd": "x" * rng.choice([1 << 20, 2 << 20])},  # over MAX_PAYLOAD_KB
    ])


def job_id(rng: random.Random) -> str:
    return rng.choice([str(rng.randint(0, 300)), str(rng.randint(0, 300)), segment(rng)[:100],
                       huge_int(rng)[:60]])


def deep(rng: random.Random) -> bytes:
    n = rng.choice([1_000, 10_000, 100_000])
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    inner = (opener * n + "1" + closer * n) if rng.random() < 0.5 else opener * n
    return inner.encode()


def encode(rng: random.Random, raw: bytes) -> tuple[bytes, dict[str, str]]:
    """Compressed as the classic protocol allows (zlib, gzip) or not, with
    the headers the old workers send (or others)."""
    kind = rng.randrange(4)
    headers: dict[str, str] = {}
    if rng.random() < 0.5:
        headers["Content-Type"] = rng.choice([
            "application/json", "text/plain", "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=xyz", "application/octet-stream", "é/ü"])
    if rng.random() < 0.3:
        headers["Content-Encoding"] = rng.choice(["gzip", "deflate", "br", "identity", "x"])
    if kind == 0:
        return zlib.compress(raw), headers
    if kind == 1:
        return gzip.compress(raw), headers
    if kind == 2:
        return raw, headers
    body = zlib.compress(raw) if rng.random() < 0.5 else gzip.compress(raw)
    return body[: rng.randint(0, max(0, len(body) - 1))], headers  # cut short


def set_body(rng: random.Random) -> tuple[bytes, dict[str, str]]:
    kind = rng.randrange(10)
    if kind < 4:
        data: Any = {job_id(rng): job_spec(rng) for _ in range(rng.randint(1, 30))}
    elif kind == 4:
        data = rng.choice([[], [1, 2], "jobs", 3, None, True, {"1": 1}])
    elif kind == 5:
        return encode(rng, deep(rng))
    elif kind == 6:
        return rng.randbytes(rng.randint(0, 5000)), {}
    elif kind == 7:
        return (rng.choice([b"\x78\x9c", b"\x1f\x8b\x08\x00", b"\x78\xda"])
                + rng.randbytes(rng.randint(0, 3000))), {}
    elif kind == 8:
        return encode(rng, rng.choice([
            b'{"1": {"jobstage": 0, "jobcmd": "\xff\xfe"}}',
            b'{"1": {"jobstage": 0, "jobcmd": NaN}}',
            b'{"1": {"jobstage": 0, "jobcmd": "\\ud800"}}', b"", b"{", b'{"1": }',
            b'{"1": {"jobstage": 0, "jobcmd": 1' + b"0" * 5000 + b"}}",
            b'{"1": {"jobstage": 0}, "1": {"jobstage": 2}}', b'\xef\xbb\xbf{"5": {"jobstage": 0}}',
        ]))
    else:
        return encode(rng, json.dumps({job_id(rng): {"jobstage": 0, "jobcmd": random_json(rng)}
                                       for _ in range(rng.randint(1, 5))}).encode())
    return encode(rng, json.dumps(data).encode())


def update_body(rng: random.Random) -> tuple[bytes, dict[str, str]]:
    kind = rng.randrange(8)
    if kind == 0:
        return b"", {}
    if kind < 3:
        data: Any = {}
        if rng.random() < 0.7:
            data["filename"] = rng.choice([
                segment(rng), segment(rng), None, 3, [], "out.dat", "\ud800x", "a\x00b",
                "\x00", "é" * rng.randint(1, 5000), "<b>x</b>", "../../etc/passwd"])
        if rng.random() < 0.7:
            data["jobcmd"] = random_json(rng)
        return encode(rng, json.dumps(data).encode())
    if kind == 3:
        return encode(rng, json.dumps(rng.choice([[], "x", 1, None])).encode())
    if kind == 4:
        return encode(rng, deep(rng))
    if kind == 5:
        return rng.randbytes(rng.randint(1, 2000)), {}
    return set_body(rng)


# ------------------------------------------------------------------ routes

def many(rng: random.Random) -> str:
    n = rng.choice([1, 2, 3, 5, 50, 2000])
    return "/".join(segment(rng) if rng.random() < 0.3 else rng.choice(["0", "30", "0.5", "1"])
                    for _ in range(n))


def stage(rng: random.Random) -> str:
    """Mostly a stage the boards have (so the request gets past its checks)."""
    return str(rng.randint(0, 5)) if rng.random() < 0.6 else segment(rng)


def job(rng: random.Random) -> str:
    """Mostly the id of a job that exists."""
    return str(rng.randint(0, 220)) if rng.random() < 0.6 else segment(rng)


ROUTES: list[tuple[str, Callable[[random.Random], str]]] = [
    ("GET", lambda r: "/"),
    ("GET", lambda r: "/init"),
    ("GET", lambda r: f"/init/{many(r)}"),
    ("POST", lambda r: "/set"),
    ("GET", lambda r: "/get"),
    ("GET", lambda r: "/get/rows"),
    ("GET", lambda r: f"/get/{stage(r)}"),
    ("GET", lambda r: f"/get/{stage(r)}/{stage(r)}"),
    ("GET", lambda r: f"/update_job/{job(r)}/{stage(r)}"),
    ("POST", lambda r: f"/update_job/{job(r)}/{stage(r)}"),
    ("POST", lambda r: f"/update_job/{job(r)}/{stage(r)}"),
    ("GET", lambda r: "/check_stages"),
    ("GET", lambda r: f"/check_stages/{stage(r)}/{stage(r)}"),
    ("GET", lambda r: "/lifetime"),
    ("GET", lambda r: f"/lifetime/{stage(r)}"),
    ("GET", lambda r: f"/lifetime/{stage(r)}/{segment(r)}"),
]


def quote_path(rng: random.Random, path: str) -> str:
    """Percent-encode the path as a client would; now and then leave a
    stray ``%`` or an extra slash in it."""
    out = quote(path, safe="/")
    if rng.random() < 0.05:
        out = out.replace("/", "//", 1)
    if rng.random() < 0.03:
        out += rng.choice(["%", "%zz", "%00", "%ff", "/"])
    return out


def query(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return ""
    params = {}
    for name in rng.sample(["jobix", "page", "stage", "x"], rng.randint(1, 3)):
        valid = name == "jobix" and rng.random() < 0.5
        params[name] = rng.choice(BOARDS) if valid else segment(rng)
    return "?" + urlencode(params)


def make_request(rng: random.Random, origin: str) -> tuple[str, str, bytes | None, list]:
    """A method, a path with its query, a body (or None) and header lines
    (a list: a header may come twice)."""
    method, path_of = rng.choice(ROUTES)
    if rng.random() < 0.05:
        method = rng.choice(["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "POST", "GET"])
    path = quote_path(rng, path_of(rng)) + query(rng)
    headers: list[tuple[str, Any]] = []
    jobix = jobix_header(rng)
    if jobix is not None:
        headers.append(("jobix", jobix))
        if rng.random() < 0.03:  # twice, the same or another
            headers.append(("jobix", rng.choice([jobix, jobix_header(rng) or "7"])))
    if rng.random() < 0.25:
        headers.append(("Accept", rng.choice(["text/html", "text/html,application/xhtml+xml",
                                              "*/*", "application/json"])))
    if rng.random() < 0.1:
        headers.append(("Origin", rng.choice([origin, "http://evil.example", "null", "é", ""])))
    if rng.random() < 0.05:
        headers.append(("Authorization", rng.choice([
            b"Basic " + "é:ü".encode(), "Bearer \xe9", "Basic !!!", "Basic " + "QQ==" * 1000])))
    if rng.random() < 0.02:
        headers.append(("Host", rng.choice(["evil.example", "", "é", "127.0.0.1:1", "[::1"])))
    if rng.random() < 0.02:
        headers.append(("Cookie", rng.choice(["a=b", "=", ";;", "é=ü", "x" * 5000])))
    body = None
    if method in ("POST", "PUT", "PATCH"):
        body, extra = set_body(rng) if path.startswith("/set") else update_body(rng)
        headers += extra.items()
        if rng.random() < 0.05:
            headers.append(("Expect", "100-continue"))
    return method, path, body, headers


# ------------------------------------------------------------------- client

REQUEST_LINE_MAX = 8192  # eventlet answers 414 to a longer one and closes at once


class Raw:
    """http.client on one keep-alive connection: it sends our bytes as they
    are (requests would tidy headers and paths up)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def send(self, method: str, path: str, body: bytes | None, headers: list,
             chunked: bool = False) -> tuple[int, bytes]:
        try:
            self.conn.putrequest(method, path, skip_host=any(k == "Host" for k, _ in headers),
                                 skip_accept_encoding=True)
            for name, value in headers:
                self.conn.putheader(name, value.encode() if isinstance(value, str) else value)
            if body is not None:
                if chunked:
                    self.conn.putheader("Transfer-Encoding", "chunked")
                else:
                    self.conn.putheader("Content-Length", str(len(body)))
            self.conn.endheaders()
            if body is not None:
                self.conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
                               if chunked and body else b"0\r\n\r\n" if chunked else body)
            resp = self.conn.getresponse()
            data = resp.read()
            # eventlet closes the connection after answering an "Expect:
            # 100-continue" request without reading its body (the client may
            # or may not have sent it), mostly without saying so: start afresh
            if resp.will_close or any(k == "Expect" for k, _ in headers):
                self.reconnect()
            return resp.status, data
        except (BrokenPipeError, ConnectionResetError):
            # the server answered before taking the whole request (a 414, or
            # a refusal of an "Expect: 100-continue" request) and closed:
            # its answer may still be there to read
            status = self._early_answer(method)
            self.reconnect()
            if status is None:
                raise
            return status, b""
        except (http.client.HTTPException, OSError):
            self.reconnect()
            raise

    def _early_answer(self, method: str) -> int | None:
        if self.conn.sock is None:
            return None
        resp = http.client.HTTPResponse(self.conn.sock, method=method)
        try:
            resp.begin()
            resp.read()
            return resp.status
        except (http.client.HTTPException, OSError):
            return None
        finally:
            resp.close()

    def close(self) -> None:
        self.conn.close()

    def reconnect(self) -> None:
        self.conn.close()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)


def prepare(url: str) -> None:
    """Boards with stages and jobs, so that claims and reports find work."""
    for jobix in BOARDS:
        h = {"jobix": jobix}
        requests.get(f"{url}/init/0/0.02/0/30/0", headers=h, timeout=30).raise_for_status()
        jobs = {str(i): {"jobstage": 0, "jobcmd": {"n": i}} for i in range(200)}
        requests.post(f"{url}/set", data=zlib.compress(json.dumps(jobs).encode()), headers=h,
                      timeout=30).raise_for_status()


def test_classic_fuzz_gets_no_server_errors(live_server_both):
    server = live_server_both
    url = server.url
    prepare(url)
    rng = random.Random(SEED)
    raw = Raw(server.port)
    statuses: collections.Counter[int | str] = collections.Counter()
    bad: list[str] = []
    dropped: list[str] = []
    slowest = (0.0, "")
    t_start = time.monotonic()
    try:
        for i in range(REQUESTS):
            method, path, body, headers = make_request(rng, url)
            shown = (f"#{i} {method} {path[:200]} headers="
                     f"{[(k, v[:60]) for k, v in headers]} body={(body or b'')[:80]!r}")
            t0 = time.monotonic()
            try:
                status, data = raw.send(method, path, body, headers, rng.random() < 0.1)
            except (http.client.HTTPException, OSError) as exc:
                if len(method) + len(path) + 10 > REQUEST_LINE_MAX and body:
                    statuses["414, closed before the body"] += 1
                else:  # a request the server could parse, left unanswered
                    dropped.append(f"{shown}: {exc!r}")
                    if server.proc.poll() is not None or len(dropped) > 20:
                        break
                continue
            took = time.monotonic() - t0
            if took > slowest[0]:
                slowest = (took, shown)
            statuses[status] += 1
            if status >= 500:
                bad.append(f"{shown} -> {status} {data[:300]!r}")
    finally:
        raw.close()
    elapsed = time.monotonic() - t_start
    print(f"\nclassic fuzz: {REQUESTS} requests in {elapsed:.1f} s, statuses "
          f"{dict(sorted(statuses.items(), key=str))}, dropped {len(dropped)}, 5xx {len(bad)}, "
          f"slowest {slowest[0]:.2f} s ({slowest[1][:160]})")
    log = server.log.read_text(errors="replace") if server.log else ""
    assert not bad, "\n".join(bad[:20]) + "\n--- server log tail ---\n" + log[-6000:]
    assert not dropped, "\n".join(dropped[:20]) + "\n--- server log tail ---\n" + log[-6000:]
    assert "Traceback" not in log, log[-6000:]
    assert sum(statuses.values()) >= 2_000
    assert slowest[0] < 10, slowest

    # still healthy: the greeting, and a whole classic loop on a fresh list
    assert server.proc.poll() is None
    h = {"jobix": "9090"}
    assert requests.get(url + "/", timeout=5).status_code == 200
    requests.get(f"{url}/init/0/30/0", headers=h, timeout=5).raise_for_status()
    requests.post(f"{url}/set", headers=h, timeout=5, data=zlib.compress(
        json.dumps({"1": {"jobstage": 0, "jobcmd": ["ok"]}}).encode())).raise_for_status()
    got = requests.get(f"{url}/get/0", headers=h, timeout=5).json()
    assert got == {"jobid": 1, "jobcmd": ["ok"], "jobstage": 0, "jobix": 9090}
    requests.get(f"{url}/update_job/1/2", headers=h, timeout=5).raise_for_status()
    assert requests.get(f"{url}/get/0", headers=h, timeout=5).json() == "nada"
    page = requests.get(url + "/", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower()


def test_a_chunked_report_is_refused_not_applied_without_its_body(live_server):
    """eventlet hands a chunked body (no Content-Length) to the app as empty:
    the report must be refused, not applied without its file name."""
    h = {"jobix": "4"}
    url = live_server.url
    requests.get(f"{url}/init/0/30/0", headers=h, timeout=10).raise_for_status()
    requests.post(f"{url}/set", headers=h, timeout=10, data=zlib.compress(
        json.dumps({"1": {"jobstage": 0, "jobcmd": "a"}}).encode())).raise_for_status()
    report = zlib.compress(json.dumps({"filename": "out.dat"}).encode())
    r = requests.post(f"{url}/update_job/1/2", headers=h, timeout=10,
                      data=iter([report[:5], report[5:]]))  # an iterator: sent chunked
    assert r.status_code == 411, r.text
    assert requests.get(f"{url}/get/0", headers=h, timeout=10).json()["jobid"] == 1  # untouched
