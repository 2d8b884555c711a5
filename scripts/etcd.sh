#!/usr/bin/env bash
# etcd for pairgate's fleet-mode tests (crates/cluster).
#
#   scripts/etcd.sh install   install etcd if it is missing (Debian/Ubuntu: apt-get install
#                             etcd-server, as root), then print its version
#   scripts/etcd.sh version   print the version of the etcd the tests will use
#
# The tests find etcd through PAIRGATE_ETCD_BIN, else on PATH; without it they fail with
# "etcd not found: run scripts/etcd.sh install".
set -euo pipefail

etcd_bin() {
    if [[ -n "${PAIRGATE_ETCD_BIN:-}" ]]; then
        if [[ -x "$PAIRGATE_ETCD_BIN" ]]; then echo "$PAIRGATE_ETCD_BIN"; fi
    else
        command -v etcd || true
    fi
}

print_version() {
    local bin
    bin="$(etcd_bin)"
    if [[ -z "$bin" ]]; then
        echo "etcd not found (PAIRGATE_ETCD_BIN or PATH)" >&2
        return 1
    fi
    echo "etcd: $bin"
    "$bin" --version | head -n 1
}

install() {
    if [[ -n "$(etcd_bin)" ]]; then
        print_version
        return
    fi
    if ! command -v apt-get >/dev/null; then
        echo "etcd is missing and this is not a Debian-like system: install etcd 3.4 or newer" >&2
        echo "(https://github.com/etcd-io/etcd/releases) and put it on PATH or in PAIRGATE_ETCD_BIN" >&2
        exit 1
    fi
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if command -v sudo >/dev/null; then
            sudo=(sudo)
        else
            echo "etcd is missing: run as root (or with sudo): apt-get install -y etcd-server" >&2
            exit 1
        fi
    fi
    echo "installing etcd-server with apt-get" >&2
    "${sudo[@]}" apt-get update -qq
    # The package enables an etcd service; the tests start their own etcd and do not need it.
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq etcd-server >&2
    print_version
}

case "${1:-}" in
    install) install ;;
    version) print_version ;;
    *)
        echo "usage: $0 install|version" >&2
        exit 64
        ;;
esac
