#!/usr/bin/env python3
"""Cost of a minted account credential on the request path, and its refresh rate.

Runs one pairgate binary twice over, against the same plain mock upstream (`pairgate-mock`,
which ignores credentials), interleaved and repeated:

- `static`: the account injects a fixed `Authorization` header (`headers = {...}`);
- `minted`: the account has `auth = { type = "azure-video-indexer", ... }`; the token comes from
  the mock's Azure fakes (Entra ID + ARM) and is sent as `accessToken=` (the Video Indexer
  default, a query rewrite per request), the client's own `accessToken` removed.

Prints requests per second per repetition, the medians and their ratio (minted / static), then
runs the minted gateway for `--refresh-seconds` with tokens that live `--token-lifetime`
seconds and prints the ARM fetches (`pairgate_token_refreshes_total`) it made.

    benches/credentials.py --pairgate target/release/pairgate --mock target/release/pairgate-mock
"""

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"not ready: {url}")


def config(kind, upstream, azure, listen, admin):
    if kind == "static":
        auth = 'headers = { "authorization" = "Bearer static-token-of-the-same-length-as-a-jwt" }'
    else:
        auth = (
            'auth = { type = "azure-video-indexer", credential = "client-secret", '
            'tenant_id = "demo-tenant", client_id = "pairgate-demo", client_secret = "demo-secret", '
            'resource_id = "/subscriptions/demo/resourceGroups/demo/providers/Microsoft.VideoIndexer/accounts/up" }'
        )
    return f"""
[listen]
http = "127.0.0.1:{listen}"
[admin]
listen = "127.0.0.1:{admin}"
[runtime]
worker_threads = 1
[health]
interval = "5s"
timeout = "1s"
[azure]
arm_endpoint = "{azure}"
login_endpoint = "{azure}"
imds_endpoint = "{azure}"
api_endpoint = "{azure}"
[[region]]
name = "eastus"
pair = "westus"
[[region]]
name = "westus"
pair = "eastus"
[[account]]
name = "up"
region = "eastus"
url = "{upstream}"
path_prefix = "/eastus/Accounts/up"
{auth}
[[tenant]]
name = "t"
hosts = ["t.example.com"]
primary = "up"
"""


def start_gateway(binary, text, tmp, name, cpu):
    path = os.path.join(tmp, f"{name}.toml")
    with open(path, "w") as f:
        f.write(text)
    cmd = [binary, "run", "--config", path]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu)] + cmd
    env = dict(os.environ, RUST_LOG="warn")
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wrk(port, seconds, connections, cpu):
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
           "-H", "Host: t.example.com",
           f"http://127.0.0.1:{port}/Videos?pageSize=1&accessToken=client-stale-token"]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu)] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, int(errors.group(1)) if errors else 0


def metric(admin, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=2) as r:
        text = r.read().decode()
    return [l for l in text.splitlines() if l.startswith(name)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairgate", default="target/release/pairgate")
    ap.add_argument("--mock", default="target/release/pairgate-mock")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--refresh-seconds", type=int, default=60)
    ap.add_argument("--token-lifetime", type=int, default=10)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed (apt-get install -y wrk)")
    tmp = tempfile.mkdtemp(prefix="pairgate-cred-bench-")
    mock = subprocess.Popen(
        ([ "taskset", "-c", "1"] if shutil.which("taskset") else []) +
        [args.mock, "--azure", "up:eastus"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lines = {}
    while len(lines) < 2:
        line = mock.stdout.readline().split()
        lines[line[0]] = line[2]
    upstream, azure = lines["up"], lines["azure"]
    gateways = {}
    try:
        results = {"static": [], "minted": []}
        for rep in range(args.reps):
            for kind in ("static", "minted") if rep % 2 == 0 else ("minted", "static"):
                port, admin = free_port(), free_port()
                gw = start_gateway(args.pairgate, config(kind, upstream, azure, port, admin), tmp, kind, 0)
                wait_ready(f"http://127.0.0.1:{admin}/readyz")
                wrk(port, 1, args.connections, 1)  # warm up
                rps, errors = wrk(port, args.seconds, args.connections, 1)
                gw.terminate()
                gw.wait()
                results[kind].append(rps)
                print(f"rep {rep} {kind:6} {rps:10.0f} req/s  non-2xx {errors}", flush=True)
                if errors:
                    raise SystemExit(f"{kind}: {errors} failed requests")
        s, m = statistics.median(results["static"]), statistics.median(results["minted"])
        print(f"median static {s:.0f} req/s, minted {m:.0f} req/s, minted/static {m / s:.3f}")

        # Refreshes over a run with short tokens, under load.
        mock.stdin.write(f"azure-lifetime {args.token_lifetime}\n")
        mock.stdin.flush()
        mock.stdout.readline()
        port, admin = free_port(), free_port()
        gw = start_gateway(args.pairgate, config("minted", upstream, azure, port, admin), tmp, "refresh", 0)
        wait_ready(f"http://127.0.0.1:{admin}/readyz")
        before = metric(admin, "pairgate_token_refreshes_total")
        rps, errors = wrk(port, args.refresh_seconds, 8, 1)
        after = metric(admin, "pairgate_token_refreshes_total")
        gw.terminate()
        gw.wait()
        print(f"{args.refresh_seconds} s with {args.token_lifetime} s tokens under load "
              f"({rps:.0f} req/s, non-2xx {errors}):")
        print("  before: " + "; ".join(before))
        print("  after:  " + "; ".join(after))
    finally:
        for gw in gateways.values():
            gw.kill()
        mock.stdin.close()
        mock.terminate()
        mock.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
