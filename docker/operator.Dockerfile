# syntax=docker/dockerfile:1
# cachepair-operator: the Kubernetes operator for CachePair, in a distroless image.
# Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t REGISTRY/operator:TAG .

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
    mkdir -p operator/src/bin \
    && echo 'fn main() {}' > operator/src/main.rs \
    && echo 'fn main() {}' > operator/src/bin/crdgen.rs \
    && touch operator/src/lib.rs \
    && cargo build --release --locked -p operator --bin cachepair-operator

# The crate itself. Touching its sources makes them newer than the stubs' build, whatever
# timestamps COPY gave them.
COPY operator/src operator/src
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    find operator/src -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p operator --bin cachepair-operator \
    && install -D -m 0755 target/release/cachepair-operator /out/cachepair-operator

# glibc and libgcc, CA certificates, no shell; runs as nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="cachepair-operator" \
      org.opencontainers.image.description="Kubernetes operator for CachePair: a replicated pair of cache-node pods" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/cachepair/cachepair" \
      org.opencontainers.image.url="https://github.com/cachepair/cachepair" \
      org.opencontainers.image.vendor="CachePair" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/cachepair-operator /usr/local/bin/cachepair-operator
USER 65532:65532
# /metrics, /healthz, /readyz (--listen).
EXPOSE 8080/tcp
ENTRYPOINT ["/usr/local/bin/cachepair-operator"]
