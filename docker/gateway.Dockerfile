# syntax=docker/dockerfile:1.7
# The `gateway` image. Build from the repository root:
#   docker build -f docker/gateway.Dockerfile -t gateway:dev .
# Not built in CI (no Docker on the CI machines); scripts/e2e-kind.sh builds it.

# Base images are pinned by tag and digest (the digest is what is pulled; the tag says what
# it is). Bump both together: docker buildx imagetools inspect <image:tag>.
FROM rust:1.95-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082 AS build
WORKDIR /src
# make: the gateway's allocator (jemalloc, crate tikv-jemalloc-sys) is built from C source.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
COPY . .
# Cache mounts keep the registry and target between builds; the binary is copied out of
# the cached target directory because cache mounts do not persist into the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p gateway --bin gateway \
    && install -D -m 0755 target/release/gateway /out/gateway

# glibc + libgcc only (TLS is rustls); "nonroot" is UID/GID 65532.
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
COPY --from=build /out/gateway /usr/local/bin/gateway
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/gateway"]
EXPOSE 8317
