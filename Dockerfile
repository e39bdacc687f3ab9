# syntax=docker/dockerfile:1
#
# mlops-alert-router container image: built in the official Rust image, run as
# the binary alone on distroless (glibc, CA certificates, user nonroot = 65532,
# the uid the Kubernetes Deployment runs as).
#
#   docker build -t registry.example.com/mlops/mlops-alert-router:0.1.0 .
#
# Not buildable on the project's development machine (no Docker engine there);
# scripts/check-deploy.sh lints this file with hadolint instead.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src
# .dockerignore limits the context to what cargo needs (an allowlist).
COPY . .
# rusqlite's bundled SQLite and ring compile C with the image's gcc.
# The cache mounts keep the registry and target/ between builds; the binary is
# copied out of target/ in the same step because a cache mount is not layered.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin mlops-alert-router \
 && install -D -m 0755 target/release/mlops-alert-router /out/mlops-alert-router

# Same Debian release as the builder, so the glibc the binary links against is there.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/mlops-alert-router /mlops-alert-router
# Numeric, so the kubelet can verify runAsNonRoot from the image alone.
USER 65532:65532
EXPOSE 9095
ENTRYPOINT ["/mlops-alert-router"]
CMD ["serve","--config","/etc/mlops-alert-router/config.yaml"]
