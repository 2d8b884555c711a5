#!/usr/bin/env bash
# Side-by-side comparison of nginx, HAProxy and pairgate on one multi-tenant workload
# (benches/README.md, "Comparison"). Installs nginx, haproxy and wrk with apt-get if missing,
# builds pairgate (release) into $CARGO_TARGET_DIR (default target/), then runs
# benches/compare.py with the arguments given here, e.g.
#   benches/compare.sh                        # 1k, 10k and 100k tenants, 3 repetitions (~12 min)
#   benches/compare.sh --tenants 1000 --reps 5
# Only loopback traffic; every run is bounded (--duration <= 30 s).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 benches/compare.py "$@"
