# pairgate for users with an image registry: build in the Rust image, run on Debian slim.
# Without a registry (this repository's compose fleet), scripts/images builds FROM-scratch images
# instead. Build: docker build -t pairgate .   Run: docker run pairgate run --config /cfg.toml
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p pairgate -p pairgate-mock \
    && install -D target/release/pairgate target/release/pairgate-mock /out/

FROM debian:bookworm-slim
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/pairgate /out/pairgate-mock /usr/local/bin/
USER 65534:65534
EXPOSE 8080 9901
ENTRYPOINT ["/usr/local/bin/pairgate"]
CMD ["--help"]
