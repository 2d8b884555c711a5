#!/usr/bin/env python3
"""Prints the Debian mirror this machine's apt uses (the first `deb` source of the main archive),
so scripts/images debootstraps from the same place instead of a hard-coded host."""

import glob
import sys


def sources():
    paths = glob.glob("/etc/apt/sources.list") + sorted(glob.glob("/etc/apt/sources.list.d/*"))
    for path in paths:
        if path.endswith(".list"):
            for line in open(path, encoding="utf-8"):
                words = line.split("#", 1)[0].split()
                if len(words) >= 3 and words[0] == "deb":
                    uri = next(w for w in words[1:] if not w.startswith("["))
                    yield uri
        elif path.endswith(".sources"):
            for stanza in open(path, encoding="utf-8").read().split("\n\n"):
                fields = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    key, value = line.split(":", 1)
                    fields[key.strip()] = value.strip()
                if "deb" in fields.get("Types", "").split() and "URIs" in fields:
                    for uri in fields["URIs"].split():
                        yield uri


def main():
    for uri in sources():
        # The main archive, not debian-security or a third-party repository.
        if uri.rstrip("/").endswith("/debian"):
            print(uri)
            return 0
    print("apt-mirror: no Debian archive in /etc/apt sources", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
