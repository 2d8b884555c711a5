# The statically linked `pairgate` binary alone (scripts/images builds it and the context).
FROM scratch
COPY pairgate /pairgate
COPY etc/ /etc/
ENTRYPOINT ["/pairgate"]
