# syntax=docker/dockerfile:1
#
# mlops-alert-router container image: built in the official Rust image, run as
# the binary alone on distroless (glibc, CA certificates, user nonroot = 65532,
# the uid the Kubernetes Deployment runs as). The router's outbound HTTPS
# clients trust those system CA certificates (/etc/ssl/certs) plus the file
# set as `tls.ca_file`, if any (see deploy/README.md for mounting one).
#
#   docker build -t registry.example.com/mlops/mlops-alert-router:0.1.0 .
#
# Not buildable on the project's development machine (no Docker engine there);
# scripts/check-deploy.sh lints this file with hadolint instead.

# Bases pinned by digest (the tag is for the reader): a rebuild gets the bytes
# that were reviewed. To move on, `docker buildx imagetools inspect <image:tag>`
# and replace the digest (the index digest, so every platform resolves).
# scripts/check-deploy.sh fails on a FROM without @sha256.
FROM rust:1.95-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082 AS builder
WORKDIR /src
# No debuginfo in the shipped binary: Cargo.toml's release profile keeps it for
# profiling on developer machines; the image does not need it (size, and no
# symbols to help an attacker read a core dump).
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo
# jemalloc, the router's allocator (tikv-jemalloc-sys), is configured and
# built with make, which the slim image lacks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make=4.3-4.1 \
 && rm -rf /var/lib/apt/lists/*
# .dockerignore limits the context to what cargo needs (an allowlist).
COPY . .
# rusqlite's bundled SQLite, ring and jemalloc compile C with the image's gcc.
# The cache mounts keep the registry and target/ between builds; the binary is
# copied out of target/ in the same step because a cache mount is not layered.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin mlops-alert-router \
 && install -D -m 0755 target/release/mlops-alert-router /out/mlops-alert-router

# Same Debian release as the builder, so the glibc the binary links against is there.
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
COPY --from=builder /out/mlops-alert-router /mlops-alert-router
# Numeric, so the kubelet can verify runAsNonRoot from the image alone.
USER 65532:65532
EXPOSE 9095
ENTRYPOINT ["/mlops-alert-router"]
CMD ["serve","--config","/etc/mlops-alert-router/config.yaml"]
