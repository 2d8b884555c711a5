# The statically linked `pairgate-mock` binary alone (scripts/images builds it and the context).
FROM scratch
COPY pairgate-mock /pairgate-mock
COPY etc/ /etc/
ENTRYPOINT ["/pairgate-mock"]
