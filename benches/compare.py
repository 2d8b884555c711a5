#!/usr/bin/env python3
"""Side-by-side comparison: the same multi-tenant workload through nginx, HAProxy and pairgate.

Run it through benches/compare.sh (see benches/README.md). Python 3 standard library only.

Setup, for each tenant count:
- upstream: one nginx process (`worker_processes 1`) listening on 2 x ACCOUNTS ports, one per
  account (east{p} in eastus, west{p} in westus), answering every path with a small JSON body
  and `x-mock-account` / `x-mock-region`, like pairgate-mock but cheap enough not to be the
  bottleneck. The same upstream for every proxy.
- tenants t0..tN-1, `Host: t{i}.bench.local`, tenant i served by pair i % ACCOUNTS, with a
  primary and a backup/secondary: nginx `upstream t{i} { server E; server W backup; }` selected
  by a `map $host`; HAProxy one backend per tenant (`server s1 E ... server s2 W ... backup`)
  selected by `map_str` on the Host; pairgate primary/secondary accounts.
- one proxy worker pinned to CPU 0 (`taskset -c 0`: nginx `worker_processes 1`, HAProxy
  `nbthread 1`, pairgate `worker_threads = 1`); wrk (1 thread, closed loop, a Lua script
  rotating the Host over all tenants) and the upstream pinned to CPU 1.
- repetitions interleaved (direct, nginx, haproxy, pairgate, direct, nginx, ...), each proxy
  started fresh for each run; medians reported. `direct` is wrk straight to one upstream port:
  the no-proxy baseline.
- per run: req/s and latency (wrk), non-2xx and socket errors, proxy CPU time per request
  (/proc/PID/stat utime+stime delta over the measured run / requests; nginx master and worker
  summed) and RSS (VmRSS, VmHWM; summed over nginx's processes).

Health checks differ and are left at each proxy's usual setting: nginx open source has passive
checks only (max_fails/fail_timeout); HAProxy `check inter 2s`, done once per account by a
`be_health` backend whose servers every tenant backend `track`s (a `check` on every tenant's
server lines would be 2 x TENANTS probes every 2 s: 100k/s at 100k tenants); pairgate its
default (one prober per account, every 2 s).
"""

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PROXY_PORT = 18080
ADMIN_PORT = 18081
UPSTREAM_BASE = 18100
TOKEN = "compare-token"


def log(*a):
    print("compare:", *a, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=False, capture_output=True, text=True, **kw)


def ensure_packages(skip):
    missing = [p for p, b in (("nginx", "nginx"), ("haproxy", "haproxy"), ("wrk", "wrk"))
               if shutil.which(b) is None and not os.path.exists(f"/usr/sbin/{b}")]
    if not missing:
        return
    if skip:
        sys.exit(f"missing: {' '.join(missing)} (drop --skip-install to install them)")
    log("installing", *missing)
    subprocess.run(["apt-get", "update", "-q"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def binary(name):
    return shutil.which(name) or f"/usr/sbin/{name}"


def build_pairgate(target_dir):
    log("building pairgate (release)")
    subprocess.run(["cargo", "build", "--release", "-p", "pairgate"], cwd=ROOT, check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": target_dir})
    return os.path.join(target_dir, "release", "pairgate")


def east(p):
    return UPSTREAM_BASE + 2 * p


def west(p):
    return UPSTREAM_BASE + 2 * p + 1


# ---------------------------------------------------------------- configs

def upstream_conf(d, accounts):
    servers = []
    for p in range(accounts):
        for port, name, region in ((east(p), f"east{p}", "eastus"), (west(p), f"west{p}", "westus")):
            servers.append(f"""
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        keepalive_requests 1000000;
        location / {{
            default_type application/json;
            add_header x-mock-account {name};
            add_header x-mock-region {region};
            return 200 '{{"account":"{name}","region":"{region}"}}';
        }}
    }}""")
    return f"""
worker_processes 1;
daemon off;
master_process off;
pid {d}/upstream.pid;
error_log {d}/upstream-error.log warn;
worker_rlimit_nofile 19500;
events {{ worker_connections 19000; multi_accept on; }}
http {{
    access_log off;
    keepalive_timeout 120s;
{''.join(servers)}
}}
"""


def nginx_conf(d, tenants, accounts):
    ups = []
    for i in range(tenants):
        p = i % accounts
        ups.append(f"upstream t{i} {{ server 127.0.0.1:{east(p)}; server 127.0.0.1:{west(p)} backup; "
                   f"keepalive 2; keepalive_timeout 10s; }}\n")
    with open(f"{d}/upstreams.conf", "w") as f:
        f.writelines(ups)
    with open(f"{d}/hosts.map", "w") as f:
        f.writelines(f"t{i}.bench.local t{i};\n" for i in range(tenants))
    return f"""
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
worker_rlimit_nofile 19500;
events {{ worker_connections 9000; multi_accept on; }}
http {{
    access_log off;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    map_hash_max_size 262144;
    map_hash_bucket_size 128;
    variables_hash_max_size 2048;
    map $host $tenant_upstream {{
        default "";
        include {d}/hosts.map;
    }}
    include {d}/upstreams.conf;
    server {{
        listen 127.0.0.1:{PROXY_PORT} reuseport backlog=4096;
        location / {{
            if ($tenant_upstream = "") {{ return 404; }}
            proxy_pass http://$tenant_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_next_upstream error timeout http_502 http_503 http_504;
        }}
    }}
}}
"""


def haproxy_conf(d, tenants, accounts):
    with open(f"{d}/hosts.map", "w") as f:
        f.writelines(f"t{i}.bench.local be_t{i}\n" for i in range(tenants))
    out = [f"""
global
    nbthread 1
    maxconn 9000
    tune.bufsize 16384
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 120s
    option http-keep-alive
    option forwardfor
    http-reuse safe
frontend fe
    bind 127.0.0.1:{PROXY_PORT}
    use_backend %[req.hdr(host),lower,map_str({d}/hosts.map)]
    default_backend be_none
backend be_none
    http-request return status 404
backend be_health
"""]
    for p in range(accounts):
        out.append(f"    server east{p} 127.0.0.1:{east(p)} check inter 2s\n")
        out.append(f"    server west{p} 127.0.0.1:{west(p)} check inter 2s\n")
    for i in range(tenants):
        p = i % accounts
        out.append(
            f"backend be_t{i}\n"
            f"    server s1 127.0.0.1:{east(p)} track be_health/east{p}\n"
            f"    server s2 127.0.0.1:{west(p)} track be_health/west{p} backup\n")
    return "".join(out)


def bench_key(i):
    """Tenant t{i}'s API key in client-authentication runs (the wrk script builds the same)."""
    return f"bench-key-{i:06d}-7c1e9a3b5d"


def pairgate_conf(tenants, accounts, auth=None):
    """`auth`: None, or ("api-key" | "jwt", directory holding jwks.json for "jwt")."""
    out = [f"""[listen]
http = "127.0.0.1:{PROXY_PORT}"

[admin]
listen = "127.0.0.1:{ADMIN_PORT}"

[runtime]
worker_threads = 1

[[region]]
name = "eastus"
pair = "westus"

[[region]]
name = "westus"
pair = "eastus"
"""]
    for p in range(accounts):
        out.append(f'\n[[account]]\nname = "east{p}"\nregion = "eastus"\nurl = "http://127.0.0.1:{east(p)}"\n')
        out.append(f'\n[[account]]\nname = "west{p}"\nregion = "westus"\nurl = "http://127.0.0.1:{west(p)}"\n')
    if auth and auth[0] == "jwt":
        out.append(f'\n[[jwt_issuer]]\nname = "idp"\nissuer = "https://idp.bench.local/"\n'
                   f'audiences = ["pairgate"]\njwks_file = "{auth[1]}/jwks.json"\n')
    for i in range(tenants):
        p = i % accounts
        extra = ""
        if auth and auth[0] == "api-key":
            digest = hashlib.sha256(bench_key(i).encode()).hexdigest()
            extra = f'client_auth = {{ api_keys = ["sha256:{digest}"] }}\n'
        elif auth and auth[0] == "jwt":
            extra = 'client_auth = { jwt_issuers = ["idp"] }\n'
        out.append(f'\n[[tenant]]\nname = "t{i}"\nhosts = ["t{i}.bench.local"]\nprimary = "east{p}"\nsecondary = "west{p}"\n{extra}')
    return "".join(out)


def wrk_script(d, tenants, auth=None):
    """`auth` as for `pairgate_conf`: each request carries its tenant's key or token."""
    mode = auth[0] if auth else "none"
    path = f"{d}/rotate-{tenants}-{mode}.lua"
    if mode == "api-key":
        credential = 'h["x-api-key"] = string.format("bench-key-%06d-7c1e9a3b5d", i)'
        setup = ""
    elif mode == "jwt":
        credential = 'h["Authorization"] = "Bearer " .. tokens[i + 1]'
        setup = f"""local tokens = {{}}
for line in io.lines("{auth[1]}/tokens.txt") do tokens[#tokens + 1] = line end
"""
    else:
        credential = ""
        setup = ""
    with open(path, "w") as f:
        f.write(f"""-- Rotates the Host over all {tenants} tenants, one request each in turn.
local n = {tenants}
local reqs = {{}}
{setup}for i = 0, n - 1 do
  local h = {{["Host"] = "t" .. i .. ".bench.local"}}
  {credential}
  reqs[i] = wrk.format("GET", "/bench", h)
end
local k = math.random(0, n - 1)
request = function()
  k = (k + 1) % n
  return reqs[k]
end
""")
    return path


# ---------------------------------------------------------------- processes

def wait_port(port, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_ready(url, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def pids_of(root):
    """root and its direct children (nginx master and workers)."""
    pids = [root]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == root:
                    pids.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return pids


CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """(user, system) CPU seconds of `pids`."""
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return user / CLK, system / CLK


def mem_kib(pids, key):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_proxy(kind, d, tenants, accounts, pairgate_bin, auth=None):
    """Starts `kind` pinned to CPU 0; returns the process (None for direct) and data port."""
    if kind == "direct":
        return None, east(0)
    if kind == "nginx":
        conf = f"{d}/nginx.conf"
        with open(conf, "w") as f:
            f.write(nginx_conf(d, tenants, accounts))
        cmd = ["taskset", "-c", "0", binary("nginx"), "-p", d, "-c", conf]
        env = os.environ
    elif kind == "haproxy":
        conf = f"{d}/haproxy.cfg"
        with open(conf, "w") as f:
            f.write(haproxy_conf(d, tenants, accounts))
        cmd = ["taskset", "-c", "0", binary("haproxy"), "-db", "-f", conf]
        env = os.environ
    else:
        conf = f"{d}/pairgate.toml"
        with open(conf, "w") as f:
            f.write(pairgate_conf(tenants, accounts, auth))
        cmd = ["taskset", "-c", "0", pairgate_bin, "run", "--config", conf]
        env = {**os.environ, "PAIRGATE_ADMIN_TOKEN": TOKEN,
               "RUST_LOG": "warn,pairgate::access=off"}
    logf = open(f"{d}/{kind}.log", "w")
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
    ok = wait_port(PROXY_PORT)
    if ok and kind == "pairgate":
        ok = wait_ready(f"http://127.0.0.1:{ADMIN_PORT}/readyz")
    if ok and kind == "haproxy":
        time.sleep(0.5)  # first health checks
    if not ok or proc.poll() is not None:
        stop(proc)
        with open(f"{d}/{kind}.log") as f:
            sys.exit(f"{kind} did not start:\n{f.read()[-3000:]}")
    return proc, PROXY_PORT


def parse_us(v, unit):
    return float(v) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]


def start_upstream(d, accounts):
    """The shared upstream: one nginx process on CPU 1 with a port per account."""
    with open(f"{d}/upstream.conf", "w") as f:
        f.write(upstream_conf(d, accounts))
    upstream = subprocess.Popen(["taskset", "-c", "1", binary("nginx"), "-p", d, "-c",
                                 f"{d}/upstream.conf"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT)
    if not wait_port(east(accounts - 1) + 1, 10):
        stop(upstream)
        sys.exit("upstream nginx did not start")
    return upstream


def measure(kind, d, tenants, accounts, pairgate_bin, script, a, auth=None):
    """One run of `kind`, started fresh: an unmeasured warm-up, then the measured wrk run.
    Returns the wrk result, the proxy's user and kernel CPU seconds over the measured run, and
    its (VmRSS, VmHWM) in KiB afterwards (None for `direct`)."""
    proc, port = start_proxy(kind, d, tenants, accounts, pairgate_bin, auth)
    try:
        run_wrk(port, script, a.warmup, a.connections)
        # After the warm-up: nginx forks its worker only once the config is loaded, which at
        # 100k tenants is after the port is bound.
        pids = pids_of(proc.pid) if proc else []
        user0, sys0 = cpu_seconds(pids)
        w = run_wrk(port, script, a.duration, a.connections)
        user1, sys1 = cpu_seconds(pids)
        pids = pids_of(proc.pid) if proc else []
        mem = (mem_kib(pids, "VmRSS"), mem_kib(pids, "VmHWM")) if proc else (None, None)
        return w, user1 - user0, sys1 - sys0, mem
    finally:
        stop(proc)


def run_wrk(port, script, seconds, connections):
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
           "-s", script, f"http://127.0.0.1:{port}/bench"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    r = {"raw": out}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    r["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m.group(1)) if m else 0.0
    for q in ("50", "90", "99"):
        m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        r[f"p{q}_us"] = parse_us(m.group(1), m.group(2)) if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    return r


def machine_facts(pairgate_bin):
    def first(cmd):
        r = sh(cmd)
        return (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr).strip() else "?"
    model = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "rustc": first("rustc --version"),
        "nginx": first(f"{binary('nginx')} -v"),
        "haproxy": first(f"{binary('haproxy')} -v"),
        "wrk": first("wrk -v"),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tenants", default="1000,10000,100000",
                    help="comma-separated tenant counts (default 1000,10000,100000)")
    ap.add_argument("--accounts", type=int, default=4, help="account pairs (default 4)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured run (<= 30)")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured warm-up per run")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    ap.add_argument("--proxies", default="direct,nginx,haproxy,pairgate")
    ap.add_argument("--out", default="/tmp/pairgate-compare", help="output directory")
    ap.add_argument("--pairgate-bin", help="pairgate binary (default: build it)")
    ap.add_argument("--skip-install", action="store_true", help="do not apt-get install")
    ap.add_argument("--profile", metavar="PROXY",
                    help="instead of comparing: run PROXY (pairgate, nginx, haproxy) at the first "
                         "--tenants count under wrk and record it with `perf record -e cpu-clock "
                         "--call-graph dwarf`; writes perf.data and a report to --out")
    a = ap.parse_args()
    if not 1 <= a.duration <= 30:
        sys.exit("--duration must be 1..30 s")
    ensure_packages(a.skip_install)
    target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    pairgate_bin = a.pairgate_bin or build_pairgate(target_dir)
    # Every process here lives within the hard limit (20000 on the README's machine): nginx
    # worker_connections and HAProxy maxconn are sized for it.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.makedirs(a.out, exist_ok=True)
    facts = machine_facts(pairgate_bin)
    log("machine", json.dumps(facts))
    proxies = a.proxies.split(",")
    sizes = [int(t) for t in a.tenants.split(",")]
    if a.profile:
        return profile(a, sizes[0], pairgate_bin)
    results = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="pairgate-compare-") as d:
        upstream = start_upstream(d, a.accounts)
        try:
            for n in sizes:
                script = wrk_script(d, n)
                for rep in range(a.reps):
                    for kind in proxies:
                        w, user, system, (rss, hwm) = measure(
                            kind, d, n, a.accounts, pairgate_bin, script, a)
                        proxied = kind != "direct" and w["requests"]
                        row = {
                            "tenants": n, "rep": rep, "proxy": kind,
                            "rps": w["rps"], "requests": w["requests"],
                            "p50_us": w["p50_us"], "p90_us": w["p90_us"], "p99_us": w["p99_us"],
                            "non2xx": w["non2xx"], "socket_errors": w["socket_errors"],
                            "cpu_s": user + system,
                            "cpu_us_per_req": (user + system) * 1e6 / w["requests"] if proxied else None,
                            "sys_us_per_req": system * 1e6 / w["requests"] if proxied else None,
                            "rss_kib": rss,
                            "hwm_kib": hwm,
                        }
                        if not w["requests"]:
                            log("wrk output:", w["raw"])
                        results.append(row)
                        log(f"{n} tenants rep {rep + 1}/{a.reps} {kind:9s} {row['rps']:9.0f} req/s "
                            f"p99 {row['p99_us']} us cpu/req {row['cpu_us_per_req']} (sys {row['sys_us_per_req']}) "
                            f"rss {row['rss_kib']} KiB errors {row['non2xx'] + row['socket_errors']}")
        finally:
            stop(upstream)
    summary = summarize(results, sizes, proxies)
    out = {"machine": facts, "settings": vars(a), "runs": results, "summary": summary,
           "seconds": time.time() - started}
    with open(f"{a.out}/compare.json", "w") as f:
        json.dump(out, f, indent=2)
    md = markdown(summary, facts, a)
    with open(f"{a.out}/compare.md", "w") as f:
        f.write(md)
    print(md)
    log(f"done in {time.time() - started:.0f} s; {a.out}/compare.json, {a.out}/compare.md")


def profile(a, tenants, pairgate_bin):
    """perf profile of one proxy under the comparison's load."""
    if shutil.which("perf") is None:
        sys.exit("perf not found (apt-get install linux-perf)")
    with tempfile.TemporaryDirectory(prefix="pairgate-profile-") as d:
        upstream = start_upstream(d, a.accounts)
        proc = None
        try:
            script = wrk_script(d, tenants)
            proc, port = start_proxy(a.profile, d, tenants, a.accounts, pairgate_bin)
            run_wrk(port, script, a.warmup, a.connections)
            data = f"{a.out}/perf-{a.profile}.data"
            pids = ",".join(str(p) for p in pids_of(proc.pid))
            perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "1999", "-g",
                                     "--call-graph", "dwarf,16384", "-o", data, "-p", pids],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            w = run_wrk(port, script, a.duration, a.connections)
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=60)
            log(f"{a.profile}: {w['rps']:.0f} req/s under perf")
        finally:
            stop(proc)
            stop(upstream)
    for name, extra in (("flat", ["--no-children"]), ("children", ["--children"])):
        rep = sh(f"perf report -i {data} --stdio --percent-limit 0.7 --sort symbol "
                 f"{' '.join(extra)} -g none 2>/dev/null")
        with open(f"{a.out}/perf-{a.profile}-{name}.txt", "w") as f:
            f.write(rep.stdout)
    log(f"wrote {a.out}/perf-{a.profile}-flat.txt and -children.txt ({data})")


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(results, sizes, proxies):
    s = []
    for n in sizes:
        base = {}
        for kind in proxies:
            rows = [r for r in results if r["tenants"] == n and r["proxy"] == kind]
            base[kind] = {
                "tenants": n, "proxy": kind, "runs": len(rows),
                "rps": med([r["rps"] for r in rows]),
                "rps_all": [round(r["rps"]) for r in rows],
                "p50_us": med([r["p50_us"] for r in rows]),
                "p99_us": med([r["p99_us"] for r in rows]),
                "cpu_us_per_req": med([r["cpu_us_per_req"] for r in rows]),
                "sys_us_per_req": med([r.get("sys_us_per_req") for r in rows]),
                "rss_kib": med([r["rss_kib"] for r in rows]),
                "hwm_kib": med([r["hwm_kib"] for r in rows]),
                "errors": sum(r["non2xx"] + r["socket_errors"] for r in rows),
            }
        for kind in proxies:
            row = base[kind]
            # Ratios per repetition would pair runs minutes apart just the same; medians it is.
            for ref in ("direct", "nginx"):
                if ref in base and base[ref]["rps"]:
                    row[f"vs_{ref}"] = row["rps"] / base[ref]["rps"]
            if "haproxy" in base and base["haproxy"]["rps"]:
                row["vs_haproxy"] = row["rps"] / base["haproxy"]["rps"]
            s.append(row)
    return s


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def markdown(summary, facts, a):
    lines = [
        f"Machine: {facts['nproc']} CPUs ({facts['cpu']}), kernel {facts['kernel']}, "
        f"{facts['rustc']}, {facts['nginx']}, {facts['haproxy'].split(' - ')[0]}, {facts['wrk'].split(' [')[0]}; "
        f"load average at start {' '.join(facts['loadavg_at_start'])}.",
        f"Settings: {a.accounts} account pairs, wrk -t1 -c{a.connections} closed loop, "
        f"{a.duration} s per run after {a.warmup} s warm-up, {a.reps} interleaved repetitions, medians.",
        "",
        "| tenants | proxy | req/s (median) | runs | × direct | × nginx | × haproxy | p50 | p99 | CPU µs/req (kernel) | RSS MiB (HWM) | errors |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary:
        rss = "—" if r["rss_kib"] is None else f"{r['rss_kib'] / 1024:.1f} ({r['hwm_kib'] / 1024:.1f})"
        lines.append(
            f"| {r['tenants']:,} | {r['proxy']} | {fmt(r['rps'], ',.0f')} | {'/'.join(str(x) for x in r['rps_all'])} | "
            f"{fmt(r.get('vs_direct'), '.2f')} | {fmt(r.get('vs_nginx'), '.2f')} | {fmt(r.get('vs_haproxy'), '.2f')} | "
            f"{fmt(r['p50_us'], '.0f')} µs | {fmt(r['p99_us'], '.0f')} µs | {fmt(r['cpu_us_per_req'], '.1f')} ({fmt(r.get('sys_us_per_req'), '.1f')}) | {rss} | {r['errors']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
