#!/usr/bin/env python3
"""A/B of pairgate binaries under the comparison's workload, interleaved in one setup.

Runs each binary (and `haproxy`, if named) in turn against one upstream nginx, with the same
pinning, wrk script and CPU accounting as compare.py, and prints req/s and user/kernel CPU
microseconds per request per run and their medians. Use it to tell whether a change to the hot
path moved anything: single runs drift by +-10% on a shared machine, interleaved medians less.

    python3 benches/ab.py --bins /tmp/before,/tmp/after,haproxy --reps 4

`--modes none,api-key,jwt` runs each pairgate binary (`PATH@MODE`: that mode only, e.g.
`/tmp/before@none` for a build without client authentication) once per client-authentication mode (every
tenant with an API key, or with a JWT issuer; wrk sends each tenant's key or token), interleaved
in the same run, so the cost of each kind reads against `none`. JWT runs need the
`bench-tokens` binary next to the pairgate binary's target dir or on PATH
(`cargo build --release -p pairgate-benches --bin bench-tokens`).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as c  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bins", required=True,
                    help="comma-separated pairgate binaries; 'haproxy' runs HAProxy instead")
    ap.add_argument("--tenants", type=int, default=1000)
    ap.add_argument("--accounts", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8, help="seconds per measured run (<= 30)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--modes", default="none",
                    help="comma-separated client-auth modes for pairgate: none, api-key, jwt")
    a = ap.parse_args()
    if not 1 <= a.duration <= 30:
        sys.exit("--duration must be 1..30 s")
    a.warmup = 2
    modes = a.modes.split(",")
    runs = []
    for spec in a.bins.split(","):
        # `PATH@MODE` runs that binary in one mode only (a build without client auth: `@none`).
        b, _, only = spec.partition("@")
        for m in (["none"] if b == "haproxy" else [only] if only else modes):
            runs.append((b, m))
    modes = sorted({m for _, m in runs})
    label = {r: r[0] if r[1] == "none" else f"{r[0]} [{r[1]}]" for r in runs}
    results = {label[r]: [] for r in runs}
    with tempfile.TemporaryDirectory(prefix="pairgate-ab-") as d:
        if "jwt" in modes:
            tokens = shutil.which("bench-tokens") or os.path.join(
                os.path.dirname(os.path.abspath(runs[-1][0])), "bench-tokens")
            subprocess.run([tokens, d, str(a.tenants)], check=True)
        upstream = c.start_upstream(d, a.accounts)
        try:
            scripts = {m: c.wrk_script(d, a.tenants, None if m == "none" else (m, d))
                       for m in modes}
            for _ in range(a.reps):
                for (b, m) in runs:
                    kind = "haproxy" if b == "haproxy" else "pairgate"
                    auth = None if m == "none" else (m, d)
                    w, user, system, _mem = c.measure(kind, d, a.tenants, a.accounts, b,
                                                      scripts[m], a, auth)
                    b = label[(b, m)]
                    n = max(w["requests"], 1)
                    row = (w["rps"], user * 1e6 / n, system * 1e6 / n,
                           w["non2xx"] + w["socket_errors"])
                    results[b].append(row)
                    print(f"{b:40s} {row[0]:8.0f} req/s  user {row[1]:5.2f} µs  "
                          f"kernel {row[2]:5.2f} µs  errors {row[3]}", flush=True)
        finally:
            c.stop(upstream)
    print("medians:")
    for b, rows in results.items():
        print(f"{b:40s} {statistics.median(r[0] for r in rows):8.0f} req/s  "
              f"user {statistics.median(r[1] for r in rows):5.2f} µs  "
              f"kernel {statistics.median(r[2] for r in rows):5.2f} µs")


if __name__ == "__main__":
    main()
