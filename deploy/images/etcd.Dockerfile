# etcd from Debian's packages, on the debootstrap base (scripts/images).
FROM pairgate/debian-base
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server etcd-client \
    && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["/usr/bin/etcd"]
