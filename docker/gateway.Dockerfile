# syntax=docker/dockerfile:1.7
# The `gateway` image. Build from the repository root:
#   docker build -f docker/gateway.Dockerfile -t gateway:dev .
# Not built in CI (no Docker on the CI machines); scripts/e2e-kind.sh builds it.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target between builds; the binary is copied out of
# the cached target directory because cache mounts do not persist into the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p gateway --bin gateway \
    && install -D -m 0755 target/release/gateway /out/gateway

# glibc + libgcc only (TLS is rustls); "nonroot" is UID/GID 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/gateway /usr/local/bin/gateway
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/gateway"]
EXPOSE 8317
