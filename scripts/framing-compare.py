#!/usr/bin/env python3
"""Run the HTTP/1.1 framing cases of tests/framing-cases.json through pairgate, nginx and HAProxy.

Each proxy forwards to its own recording upstream: a strict little HTTP/1.1 server on 127.0.0.1
that logs every complete request it receives (method, target, headers, body length, and whether
the framing was clean: at most one Content-Length, or exactly `Transfer-Encoding: chunked`, never
both) and answers `200 ok` with keep-alive. For every case the raw request is sent to each proxy
over a fresh connection; the table shows the status codes the client saw and what reached the
upstream, so "pairgate is at least as strict" can be shown rather than claimed.

    scripts/framing-compare.py [--pairgate PATH] [--no-install] [--markdown] [--strict]

Python 3.11 standard library only. Needs root (or existing binaries) for `apt-get install nginx
haproxy`; pass --no-install to skip that, and a missing proxy becomes an "n/a" column. Exit code 0
unless the script itself failed; with --strict, 1 when pairgate is less strict than nginx or
HAProxy on any case or disagrees with the table's expectations. Ports are chosen by binding
127.0.0.1:0 and closing the socket, so another process could take one in between (a tiny race,
acceptable for a report script).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PROBE_PATH = "/__framing_compare_probe"  # pairgate's health probes; the upstream ignores them
STATUS_RE = re.compile(rb"HTTP/1\.[01] (\d{3})")
TOKEN_RE = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
REQUEST_LINE_RE = re.compile(rb"^([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([\x21-\x7e]+) HTTP/1\.([01])$")
CHUNK_SIZE_RE = re.compile(rb"^([0-9A-Fa-f]{1,16})(;[\x09\x20-\x7e\x80-\xff]*)?$")
MAX_HEAD = 64 * 1024


# --------------------------------------------------------------------------------------------
# The recording upstream


class Garbled(Exception):
    """The bytes cannot be parsed as HTTP/1.1; the upstream records it and closes."""


@dataclass
class Seen:
    """One thing the upstream saw: a complete request, garbage, or an unfinished request."""

    kind: str  # "request" | "garbled" | "partial"
    method: str = ""
    target: str = ""
    version: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body_len: int = 0
    clean: bool = True
    unclean_why: list[str] = field(default_factory=list)
    detail: str = ""


def _need(buf: bytes, start: int) -> int:
    """Index of the CRLF ending the line at `start`, raising Garbled on a bare LF or CR."""
    end = buf.find(b"\r\n", start)
    scan = buf[start:] if end < 0 else buf[start:end]
    if b"\n" in scan:
        raise Garbled("bare LF")
    if b"\r" in (scan if end >= 0 else scan[:-1]):
        raise Garbled("bare CR")
    return end


def parse_request(buf: bytes) -> tuple[Seen, int] | None:
    """Parses one request from the start of `buf`: (request, bytes consumed), or None when more
    bytes are needed. Raises Garbled when the bytes are not strict HTTP/1.1."""
    pos = 0
    lines: list[bytes] = []
    while True:
        end = _need(buf, pos)
        if end < 0:
            if len(buf) > MAX_HEAD:
                raise Garbled("head too long")
            return None
        line = buf[pos:end]
        pos = end + 2
        if not line:
            if not lines:
                raise Garbled("empty request line")
            break
        lines.append(line)
    m = REQUEST_LINE_RE.match(lines[0])
    if not m:
        raise Garbled(f"bad request line {lines[0][:80]!r}")
    method, target, minor = m.group(1).decode(), m.group(2).decode("latin-1"), m.group(3).decode()
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise Garbled("obs-fold")
        name, sep, value = line.partition(b":")
        if not sep or not TOKEN_RE.match(name):
            raise Garbled(f"bad header name {name[:40]!r}")
        value = value.strip(b" \t")
        if any(c < 0x20 and c != 0x09 or c == 0x7F for c in value):
            raise Garbled(f"control character in {name.decode()!r}")
        headers.append((name.decode().lower(), value.decode("latin-1")))
    seen = Seen("request", method, target, f"1.{minor}", headers)

    cls = [v for n, v in headers if n == "content-length"]
    tes = [v for n, v in headers if n == "transfer-encoding"]
    why = seen.unclean_why
    if len(cls) > 1:
        why.append("duplicate Content-Length")
    if cls and tes:
        why.append("Content-Length with Transfer-Encoding")
    if len(tes) > 1:
        why.append("duplicate Transfer-Encoding")
    if tes and minor == "0":
        why.append("Transfer-Encoding on HTTP/1.0")
    codings = [c.strip().lower() for v in tes for c in v.split(",")]
    if tes and codings != ["chunked"]:
        why.append(f"Transfer-Encoding {', '.join(tes)!r}")
    length_values = [p.strip() for v in cls for p in v.split(",")]
    if any("," in v for v in cls):
        why.append("Content-Length list")
    seen.clean = not why

    if tes:
        if codings[-1] != "chunked":
            raise Garbled("request body length unknown (Transfer-Encoding not ending in chunked)")
        body_len, pos = _parse_chunked(buf, pos)
        if body_len is None:
            return None
        seen.body_len = body_len
        return seen, pos
    if cls:
        if not all(re.fullmatch(r"[0-9]{1,15}", v) for v in length_values):
            raise Garbled(f"bad Content-Length {cls!r}")
        if len(set(int(v) for v in length_values)) != 1:
            raise Garbled(f"conflicting Content-Length {cls!r}")
        n = int(length_values[0])
        if len(buf) - pos < n:
            return None
        seen.body_len = n
        return seen, pos + n
    return seen, pos


def _parse_chunked(buf: bytes, pos: int) -> tuple[int | None, int]:
    total = 0
    while True:
        end = _need(buf, pos)
        if end < 0:
            return None, pos
        m = CHUNK_SIZE_RE.match(buf[pos:end])
        if not m:
            raise Garbled(f"bad chunk size line {buf[pos:end][:40]!r}")
        size = int(m.group(1), 16)
        pos = end + 2
        if size == 0:
            break
        if len(buf) < pos + size + 2:
            return None, pos
        if buf[pos + size : pos + size + 2] != b"\r\n":
            raise Garbled("chunk data not followed by CRLF")
        total += size
        pos += size + 2
    while True:  # trailer section
        end = _need(buf, pos)
        if end < 0:
            return None, pos
        line = buf[pos:end]
        pos = end + 2
        if not line:
            return total, pos
        name, sep, _ = line.partition(b":")
        if not sep or not TOKEN_RE.match(name):
            raise Garbled("bad trailer field")


class Recorder:
    """What one upstream saw, split into epochs: reset() starts a new one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.epoch = 0
        self.log: list[tuple[int, Seen]] = []
        self.pending: dict[int, tuple[int, int]] = {}  # connection id -> (epoch, buffered bytes)

    def reset(self) -> None:
        with self.lock:
            self.epoch += 1
            self.log.clear()

    def add(self, epoch: int, seen: Seen) -> None:
        with self.lock:
            self.log.append((epoch, seen))

    def snapshot(self) -> list[Seen]:
        """Everything seen this epoch, plus unfinished requests that started in it."""
        with self.lock:
            out = [s for e, s in self.log if e == self.epoch]
            for e, n in self.pending.values():
                if e == self.epoch and n:
                    out.append(Seen("partial", detail=f"{n} bytes of an unfinished request"))
            return out


class UpstreamHandler(socketserver.BaseRequestHandler):
    server: "RecordingUpstream"

    def handle(self) -> None:
        rec = self.server.recorder
        conn: socket.socket = self.request
        conn.settimeout(30)
        key = id(self)
        buf = b""
        started = rec.epoch
        try:
            while True:
                try:
                    data = conn.recv(65536)
                except (TimeoutError, OSError):
                    data = b""
                if not data:
                    if buf:
                        rec.add(started, Seen("partial", detail=f"connection closed after {len(buf)} bytes of an unfinished request"))
                    return
                if not buf:
                    started = rec.epoch
                buf += data
                with rec.lock:
                    rec.pending[key] = (started, len(buf))
                while buf:
                    try:
                        parsed = parse_request(buf)
                    except Garbled as e:
                        rec.add(started, Seen("garbled", detail=f"{e}: {buf[:120]!r}"))
                        buf = b""
                        return
                    if parsed is None:
                        break
                    seen, used = parsed
                    buf = buf[used:]
                    if seen.target != PROBE_PATH:
                        rec.add(started, seen)
                    started = rec.epoch
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok")
                with rec.lock:
                    rec.pending[key] = (started, len(buf))
        except OSError:
            pass
        finally:
            with rec.lock:
                rec.pending.pop(key, None)


class RecordingUpstream(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__((HOST, 0), UpstreamHandler)
        self.recorder = Recorder()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


# --------------------------------------------------------------------------------------------
# Proxies


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not accept within {within:.0f}s")


@dataclass
class Proxy:
    name: str
    version: str = "n/a"
    port: int = 0
    upstream: RecordingUpstream | None = None
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    error: str = ""

    @property
    def available(self) -> bool:
        return self.proc is not None and not self.error


def spawn(argv: list[str], log_path: Path, cwd: Path) -> subprocess.Popen:
    log = open(log_path, "wb")
    try:
        return subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()


def start_nginx(p: Proxy, binary: str, tmp: Path) -> None:
    d = tmp / "nginx"
    d.mkdir()
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / sub).mkdir()
    conf = d / "nginx.conf"
    conf.write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream up {{ server {HOST}:{p.upstream.port}; }}
    server {{
        listen {HOST}:{p.port};
        server_name solo.example.com;
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
""")
    p.log_path = d / "stderr.log"
    # -e keeps nginx from opening the packaged /var/log/nginx/error.log before it reads the config.
    p.proc = spawn([binary, "-p", str(d), "-c", str(conf), "-e", str(d / "error.log")], p.log_path, d)
    wait_port(p.port, p.proc)


def start_haproxy(p: Proxy, binary: str, tmp: Path) -> None:
    d = tmp / "haproxy"
    d.mkdir()
    cfg = d / "haproxy.cfg"
    cfg.write_text(f"""
global
    log stderr format short local0 info

defaults
    mode http
    log global
    option httplog
    timeout connect 1s
    timeout client 5s
    timeout server 5s

frontend fe
    bind {HOST}:{p.port}
    default_backend be

backend be
    server up {HOST}:{p.upstream.port}
""")
    p.log_path = d / "stderr.log"
    p.proc = spawn([binary, "-f", str(cfg), "-db"], p.log_path, d)
    wait_port(p.port, p.proc)


def start_pairgate(p: Proxy, binary: str, tmp: Path) -> None:
    d = tmp / "pairgate"
    d.mkdir()
    conf = d / "pairgate.toml"
    conf.write_text(f"""
[listen]
http = "{HOST}:{p.port}"

[admin]
listen = "{HOST}:{free_port()}"

[health]
interval = "30s"
path = "{PROBE_PATH}"

[[region]]
name = "eastus"

[[account]]
name = "east"
region = "eastus"
url = "http://{HOST}:{p.upstream.port}"

[[tenant]]
name = "solo"
hosts = ["solo.example.com"]
primary = "east"
""")
    p.log_path = d / "stderr.log"
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
    log = open(p.log_path, "wb")
    try:
        p.proc = subprocess.Popen([binary, "run", "--config", str(conf)], cwd=d, env=env, stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()
    wait_port(p.port, p.proc)


def stop(p: Proxy) -> None:
    if p.proc is not None and p.proc.poll() is None:
        p.proc.terminate()
        try:
            p.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait(timeout=5)
    if p.upstream is not None:
        p.upstream.stop()
        p.upstream = None


def tail(path: Path | None, n: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    lines = path.read_text(errors="replace").splitlines()[-n:]
    return "\n".join("    " + line for line in lines)


# --------------------------------------------------------------------------------------------
# Setup: packages and the pairgate binary


def run_quiet(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def find_tool(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/local/sbin/{name}") if os.access(p, os.X_OK)), None)


def ensure_packages(install: bool) -> None:
    missing = [n for n in ("nginx", "haproxy") if not find_tool(n)]
    if not missing or not install:
        return
    if os.geteuid() != 0:
        print(f"note: {', '.join(missing)} missing and not root; skipping apt-get", file=sys.stderr)
        return
    print(f"installing {' '.join(missing)} with apt-get ...", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", *missing]):
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900, env=env)
        if r.returncode != 0:
            print(f"note: {' '.join(argv)} failed ({r.returncode}):\n{r.stderr[-2000:]}", file=sys.stderr)
            return


def find_pairgate(explicit: str | None) -> str:
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise SystemExit(f"--pairgate {explicit}: not an executable file")
        return explicit
    dirs = [REPO / "target"]
    if os.environ.get("CARGO_TARGET_DIR"):
        dirs.insert(0, Path(os.environ["CARGO_TARGET_DIR"]))
    for d in dirs:
        for profile in ("release", "debug"):
            cand = d / profile / "pairgate"
            if os.access(cand, os.X_OK):
                return str(cand)
    print("no pairgate binary found; running cargo build --release -p pairgate (a few minutes) ...", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "-p", "pairgate"], cwd=REPO, check=True, timeout=3600)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    if not target.is_absolute():
        target = REPO / target
    return str(target / "release" / "pairgate")


def version_of(argv: list[str]) -> str:
    try:
        r = run_quiet(argv, 10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    text = (r.stdout + r.stderr).strip().splitlines()
    return text[0] if text else "unknown"


# --------------------------------------------------------------------------------------------
# Running the cases


@dataclass
class Result:
    statuses: list[int]
    seen: list[Seen]
    note: str = ""

    @property
    def requests(self) -> list[Seen]:
        return [s for s in self.seen if s.kind == "request"]

    @property
    def forwarded(self) -> int:
        """How many things reached the upstream: requests, garbage, unfinished requests."""
        return len(self.seen)

    @property
    def smuggled(self) -> bool:
        return any("smuggled" in s.target for s in self.requests)

    @property
    def unclean(self) -> bool:
        return any(s.kind != "request" or not s.clean for s in self.seen)

    @property
    def rejected(self) -> bool:
        return bool(self.statuses) and 400 <= self.statuses[0] < 500 and not self.seen


def exchange(port: int, raw: bytes, read_for: float) -> tuple[list[int], str]:
    """Sends `raw` on a fresh connection, reads until the proxy closes or `read_for` seconds."""
    note = ""
    got = b""
    with socket.create_connection((HOST, port), timeout=read_for) as s:
        try:
            s.sendall(raw)
        except OSError as e:
            note = f"send: {e.__class__.__name__}"
        deadline = time.monotonic() + read_for
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                note = note or "still open"
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                note = note or "still open"
                break
            except OSError as e:
                note = note or f"recv: {e.__class__.__name__}"
                break
            if not chunk:
                break
            got += chunk
    return [int(m.group(1)) for m in STATUS_RE.finditer(got)], note


def run_case(p: Proxy, raw: bytes, read_for: float, settle: float) -> Result:
    rec = p.upstream.recorder
    rec.reset()
    statuses, note = exchange(p.port, raw, read_for)
    time.sleep(settle)  # let the upstream finish logging what the proxy sent
    return Result(statuses, rec.snapshot(), note)


def expected_statuses(case: dict) -> list[int]:
    want = [int(case["status"])]
    if case.get("then_status") is not None:
        want.append(int(case["then_status"]))
    return want


def unsafe(case: dict, r: Result) -> list[str]:
    """Why this result forwarded something it must not have (empty when it did not)."""
    why = []
    up = case["upstream"]
    if up == "none":
        if r.forwarded:
            why.append(f"forwarded {r.forwarded} thing(s), table says none")
    elif r.forwarded > int(up["requests"]):
        why.append(f"forwarded {r.forwarded}, table allows {up['requests']}")
    for s in r.seen:
        if s.kind != "request":
            why.append(f"upstream saw {s.kind}: {s.detail}")
        elif not s.clean:
            why.append(f"unclean framing reached the upstream: {'; '.join(s.unclean_why)}")
    if r.smuggled:
        why.append("a request for /smuggled reached the upstream")
    return why


def mismatches(case: dict, r: Result) -> list[str]:
    """Where the result differs from the table (the same checks as tests/it/hardening.rs)."""
    out = []
    want = expected_statuses(case)
    if r.statuses != want:
        out.append(f"statuses {r.statuses}, want {want}")
    up = case["upstream"]
    if up == "none":
        if r.forwarded:
            out.append(f"upstream got {r.forwarded}, want none")
    else:
        reqs = r.requests
        if len(reqs) != int(up["requests"]) or r.forwarded != len(reqs):
            out.append(f"upstream got {r.forwarded}, want {up['requests']}")
        elif reqs:
            last = reqs[-1]
            if last.body_len != int(up["body_len"]) or not last.clean:
                out.append(f"upstream saw body {last.body_len} (want {up['body_len']}), clean={last.clean}")
    if r.smuggled:
        out.append("smuggled request reached the upstream")
    return out


def cell(case: dict, r: Result | None) -> str:
    if r is None:
        return "n/a"
    st = ",".join(str(s) for s in r.statuses) or "-"
    if not r.seen:
        up = "up:0"
    else:
        garbage = [s for s in r.seen if s.kind != "request"]
        up = f"up:{len(r.requests)}"
        if garbage:
            up += " " + "+".join(s.kind for s in garbage)
        elif r.requests:
            up += " clean" if not r.unclean else " unclean"
        if r.smuggled:
            up += " smuggled"
        want = case["upstream"]
        if r.requests and want != "none" and r.requests[-1].body_len != int(want["body_len"]):
            up += f" body={r.requests[-1].body_len}"
    text = f"{st} / {up}"
    if unsafe(case, r):
        text += " !"
    elif mismatches(case, r):
        text += " *"
    return text


def expected_cell(case: dict) -> str:
    st = ",".join(str(s) for s in expected_statuses(case))
    up = case["upstream"]
    return f"{st} / up:0" if up == "none" else f"{st} / up:{up['requests']} clean"


def refused_more(pg: Result, other: Result) -> bool:
    """The other proxy refused something (any 4xx/5xx answer: nginx refuses unknown transfer
    codings with 501) and let less reach the upstream than pairgate did."""
    return pg.forwarded > other.forwarded and any(s >= 400 for s in other.statuses)


def less_strict(case: dict, pg: Result, other: Result) -> bool:
    """pairgate forwarded where the other proxy refused, and the table does not back pairgate
    (when pairgate does exactly what the table says and forwards only what it allows, the other
    proxy refused a valid request: over-strict, reported separately)."""
    return refused_more(pg, other) and bool(unsafe(case, pg) or mismatches(case, pg))


def describe(s: Seen) -> str:
    """One line on what the upstream received, for --verbose."""
    if s.kind != "request":
        return f"{s.kind}: {s.detail}"
    framing = [f"{n}: {v!r}" for n, v in s.headers if n in ("content-length", "transfer-encoding") or "_" in n]
    flags = "clean" if s.clean else "UNCLEAN (" + "; ".join(s.unclean_why) + ")"
    return f"{s.method} {s.target} HTTP/{s.version} [{', '.join(framing) or 'no body headers'}] body {s.body_len}, {flags}"


def render(rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        esc = [[c.replace("|", "\\|") for c in row] for row in rows]
        out = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in esc[0]) + "|"]
        out += ["| " + " | ".join(row) + " |" for row in esc[1:]]
        return "\n".join(out)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([line(rows[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in rows[1:]])


# --------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairgate", help="pairgate binary (default target/release/pairgate, then target/debug/pairgate, else cargo build --release)")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install nginx/haproxy when missing")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--strict", action="store_true", help="exit 1 when pairgate is less strict than nginx or HAProxy anywhere, or disagrees with the table")
    ap.add_argument("--cases", default=str(REPO / "tests" / "framing-cases.json"), help="case table (default tests/framing-cases.json)")
    ap.add_argument("--only", action="append", default=[], help="run only cases whose name contains this (repeatable)")
    ap.add_argument("--read-timeout", type=float, default=3.0, help="seconds to wait for a proxy to close (default 3)")
    ap.add_argument("--verbose", action="store_true", help="explain every '!' and '*' after the table")
    ap.add_argument("--keep-temp", action="store_true", help="keep the temp dir with configs and logs")
    args = ap.parse_args()

    cases = json.loads(Path(args.cases).read_text())["cases"]
    if args.only:
        cases = [c for c in cases if any(o.lower() in c["name"].lower() for o in args.only)]
    if not cases:
        raise SystemExit("no cases selected")

    ensure_packages(not args.no_install)
    pairgate_bin = find_pairgate(args.pairgate)

    tmp = Path(tempfile.mkdtemp(prefix="framing-compare-"))
    proxies = [Proxy("pairgate"), Proxy("nginx"), Proxy("haproxy")]

    def cleanup() -> None:
        for p in proxies:
            try:
                stop(p)
            except Exception as e:  # noqa: BLE001 - cleanup must go on
                print(f"note: stopping {p.name}: {e}", file=sys.stderr)
        if args.keep_temp:
            print(f"temp dir kept: {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    try:
        binaries = {"pairgate": pairgate_bin, "nginx": find_tool("nginx"), "haproxy": find_tool("haproxy")}
        starters = {"pairgate": start_pairgate, "nginx": start_nginx, "haproxy": start_haproxy}
        for p in proxies:
            binary = binaries[p.name]
            if not binary:
                p.error = "not installed"
                continue
            p.version = {
                "pairgate": lambda: version_of([binary, "--version"]),
                "nginx": lambda: version_of([binary, "-v"]),
                "haproxy": lambda: version_of([binary, "-v"]),
            }[p.name]()
            p.upstream = RecordingUpstream()
            p.port = free_port()
            try:
                starters[p.name](p, binary, tmp)
            except Exception as e:  # noqa: BLE001 - report and carry on without this proxy
                p.error = f"failed to start: {e}"
                print(f"{p.name} {p.error}\n{tail(p.log_path)}", file=sys.stderr)
                continue
            # Warm up: one plain request must go through before the cases run (bounded).
            warm = b"GET /warmup HTTP/1.1\r\nHost: solo.example.com\r\nConnection: close\r\n\r\n"
            for _ in range(20):
                if exchange(p.port, warm, 2.0)[0][:1] == [200]:
                    break
                time.sleep(0.25)
            else:
                p.error = "warm-up request never answered 200"
                print(f"{p.name}: {p.error}\n{tail(p.log_path)}", file=sys.stderr)

        live = [p for p in proxies if p.available]
        if not any(p.name == "pairgate" for p in live):
            raise RuntimeError("pairgate is not running; nothing to compare")
        results: dict[str, list[Result | None]] = {p.name: [] for p in proxies}
        started = time.monotonic()
        for case in cases:
            raw = case["request"].encode("latin-1")
            for p in proxies:
                if not p.available:
                    results[p.name].append(None)
                    continue
                if p.proc.poll() is not None:
                    raise RuntimeError(f"{p.name} exited ({p.proc.returncode}) during the run\n{tail(p.log_path)}")
                results[p.name].append(run_case(p, raw, args.read_timeout, 0.15))
        elapsed = time.monotonic() - started

        rows = [["case", "expected", *[p.name for p in proxies]]]
        for i, case in enumerate(cases):
            rows.append([case["name"], expected_cell(case), *[cell(case, results[p.name][i]) for p in proxies]])

        out: list[str] = []
        ver = "; ".join(f"{p.name}: {p.version}" + (f" ({p.error})" if p.error else "") for p in proxies)
        out.append(("*Versions:* " if args.markdown else "versions: ") + ver)
        out.append("")
        out.append(render(rows, args.markdown))
        out.append("")
        legend = ("cell = statuses the client saw / what reached the upstream (up:N = complete requests; "
                  "clean = one Content-Length or exactly chunked, never both). "
                  "`!` forwarded something the table forbids, unclean framing, garbage or /smuggled; "
                  "`*` differs from the table's expectation in a safe way (e.g. other status).")
        out.append(legend if args.markdown else legend.replace("`", ""))

        if args.verbose:
            out.append("")
            for i, case in enumerate(cases):
                for p in proxies:
                    r = results[p.name][i]
                    if r is None:
                        continue
                    why = unsafe(case, r) or mismatches(case, r)
                    if why or r.note:
                        out.append(f"- {case['name']} / {p.name}: {'; '.join(why)}" + (f" [{r.note}]" if r.note else ""))
                        out += [f"    upstream got: {describe(s)}" for s in r.seen]

        out.append("")
        out.append("## Summary" if args.markdown else "summary:")
        for p in proxies:
            rs = [r for r in results[p.name] if r is not None]
            if not p.available:
                out.append(f"- {p.name}: not run ({p.error})")
                continue
            rej = sum(r.rejected for r in rs)
            fwd = sum(bool(r.forwarded) for r in rs)
            others = [r for r in rs if not r.rejected and not r.forwarded]
            hist: dict[str, int] = {}
            for r in others:
                key = ",".join(map(str, r.statuses)) or "no answer"
                hist[key] = hist.get(key, 0) + 1
            other = f"{len(others)} other" + (" (nothing forwarded; answered " + ", ".join(f"{k} x{v}" for k, v in sorted(hist.items())) + ")" if others else "")
            bad = [cases[i]["name"] for i, r in enumerate(results[p.name]) if r is not None and unsafe(cases[i], r)]
            off = [cases[i]["name"] for i, r in enumerate(results[p.name]) if r is not None and mismatches(cases[i], r)]
            out.append(f"- {p.name}: {rej} rejected (4xx, nothing forwarded), {fwd} forwarded, {other}; "
                       f"unsafe ('!'): {len(bad)}" + (f" [{'; '.join(bad)}]" if bad else "")
                       + f"; differs from the table: {len(off)}" + (f" [{'; '.join(off)}]" if off else ""))

        weaker: list[str] = []
        overstrict: list[str] = []
        differs: list[str] = []
        for other in proxies[1:]:
            if not other.available:
                continue
            for i, case in enumerate(cases):
                pg, ot = results["pairgate"][i], results[other.name][i]
                if less_strict(case, pg, ot):
                    weaker.append(f"{case['name']}: pairgate {cell(case, pg)} vs {other.name} {cell(case, ot)}")
                elif refused_more(pg, ot):
                    overstrict.append(f"{case['name']}: {other.name} {cell(case, ot)}, table and pairgate {cell(case, pg)}")
                if pg.statuses != ot.statuses or pg.forwarded != ot.forwarded:
                    differs.append(f"{case['name']}: pairgate {cell(case, pg)} vs {other.name} {cell(case, ot)}")
        pg_off = [cases[i]["name"] for i, r in enumerate(results["pairgate"]) if mismatches(cases[i], r)]
        out.append("")
        out.append(f"Cases where pairgate is less strict than nginx or HAProxy: {len(weaker)}")
        out += [f"- {w}" for w in weaker]
        if overstrict:
            out.append(f"Cases where nginx or HAProxy refused a request the table says to forward (not counted above): {len(overstrict)}")
            out += [f"- {o}" for o in overstrict]
        out.append(f"Cases where nginx or HAProxy behave differently from pairgate: {len(differs)}")
        out += [f"- {d}" for d in differs]
        out.append(f"Cases where pairgate disagrees with {Path(args.cases).name}: {len(pg_off)}")
        out += [f"- {cases[i]['name']}: {'; '.join(mismatches(cases[i], r))}"
                for i, r in enumerate(results["pairgate"]) if mismatches(cases[i], r)]
        out.append(f"({len(cases)} cases x {len(live)} proxies in {elapsed:.1f}s)")
        print("\n".join(out))
        return 1 if args.strict and (weaker or pg_off) else 0
    finally:
        cleanup()
        atexit.unregister(cleanup)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001
        print(f"framing-compare: error: {e}", file=sys.stderr)
        sys.exit(2)
