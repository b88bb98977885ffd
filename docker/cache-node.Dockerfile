# syntax=docker/dockerfile:1
# cache-node: the memcached-compatible server with pair replication, in a distroless image.
# Build from the repository root:
#   docker build -f docker/cache-node.Dockerfile -t REGISTRY/cache-node:TAG .

FROM rust:1.95-bookworm AS builder
WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when a manifest or Cargo.lock
# changes. Cargo loads the whole workspace, so every member's manifest must be here (the
# manifest tests check that this list matches the workspace); only the built crate needs sources,
# stubbed for now.
COPY Cargo.toml Cargo.lock ./
COPY cache-node/Cargo.toml cache-node/
COPY operator/Cargo.toml operator/
COPY kubectl-cachepair/Cargo.toml kubectl-cachepair/
COPY tests/e2e/Cargo.toml tests/e2e/
COPY tests/loadgen/Cargo.toml tests/loadgen/
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    mkdir -p cache-node/src \
    && echo 'fn main() {}' > cache-node/src/main.rs \
    && touch cache-node/src/lib.rs \
    && cargo build --release --locked -p cache-node --bin cache-node

# The crate itself. Touching its sources makes them newer than the stubs' build, whatever
# timestamps COPY gave them.
COPY cache-node/src cache-node/src
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    find cache-node/src -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p cache-node --bin cache-node \
    && install -D -m 0755 target/release/cache-node /out/cache-node

# glibc and libgcc, CA certificates, no shell; runs as nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="cache-node" \
      org.opencontainers.image.description="memcached-compatible cache server with built-in pair replication" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/cachepair/cachepair" \
      org.opencontainers.image.url="https://github.com/cachepair/cachepair" \
      org.opencontainers.image.vendor="CachePair" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/cache-node /usr/local/bin/cache-node
USER 65532:65532
# memcached clients, replication between the pair, admin HTTP (/metrics, /healthz, /readyz).
EXPOSE 11211/tcp 11212/tcp 9150/tcp
ENTRYPOINT ["/usr/local/bin/cache-node"]
# Without arguments from the operator: memcached's defaults plus the admin listener.
CMD ["--admin-listen", "0.0.0.0:9150"]
