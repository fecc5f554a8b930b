# syntax=docker/dockerfile:1.7
# The `operator` image. Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t operator:dev .
# Not built in CI (no Docker on the CI machines); scripts/e2e-kind.sh builds it.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target between builds; the binary is copied out of
# the cached target directory because cache mounts do not persist into the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p operator --bin operator \
    && install -D -m 0755 target/release/operator /out/operator

# glibc + libgcc only (TLS is rustls); "nonroot" is UID/GID 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/operator /usr/local/bin/operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/operator"]
CMD ["run"]
EXPOSE 8080
