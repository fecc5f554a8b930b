# syntax=docker/dockerfile:1.7
# The single-host image: `lingma-local host` with the gateway and the sidecar beside it. One
# container runs what the original single-process Python gateway ran, from the same `.env`:
# the gateway on HOST:PORT and one sidecar per Lingma process (LINGMA_INSTANCE_COUNT or one
# per account), each Lingma with its own work directory under /data/lingma.
#
# Build from the repository root (compose.yaml does this):
#   docker build -f docker/single-host.Dockerfile -t lingma-single-host:dev .
# Not built in CI (no Docker on the CI machines, nor on the machine this was written on):
# it follows docker/lingma-pod.Dockerfile, which scripts/e2e-kind.sh builds.
#
# Lingma itself is downloaded at the first start (LINGMA_SOURCE_TYPE marketplace or vsix) into
# the /data volume and reused afterwards. To bake it in instead, extend this image:
#   FROM lingma-single-host:dev
#   COPY --chown=65532:65532 Lingma LingmaLocal /opt/lingma/bin/
#   ENV LINGMA_SOURCE_TYPE=image

# Base images are pinned by tag and digest (the digest is what is pulled; the tag says what
# it is). Bump both together: docker buildx imagetools inspect <image:tag>.
FROM rust:1.95-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082 AS build
WORKDIR /src
# make: the gateway's allocator (jemalloc, crate tikv-jemalloc-sys) is built from C source.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p local-stack --bin lingma-local \
        -p sidecar --bin sidecar \
        -p gateway --bin gateway \
    && install -D -m 0755 target/release/lingma-local /out/lingma-local \
    && install -D -m 0755 target/release/sidecar /out/sidecar \
    && install -D -m 0755 target/release/gateway /out/gateway

# Debian slim: Lingma is a dynamically linked native program, and the auto-login drives
# Chromium through chromedriver from the same Debian release (versions always match).
FROM debian:bookworm-slim@sha256:7b140f374b289a7c2befc338f42ebe6441b7ea838a042bbd5acbfca6ec875818
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates chromium chromium-driver tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 nonroot \
    && useradd --uid 65532 --gid 65532 --home-dir /data --no-create-home --shell /usr/sbin/nologin nonroot \
    && install -d -o 65532 -g 65532 /data /data/lingma
# lingma-local starts the sidecar and gateway binaries that sit beside it.
COPY --from=build /out/lingma-local /out/sidecar /out/gateway /usr/local/bin/
# HOME is in the volume: Lingma and Chromium write there, and it must be writable by 65532.
ENV CHROME=/usr/bin/chromium \
    CHROMEDRIVER=/usr/bin/chromedriver \
    HOME=/data \
    HOST=0.0.0.0 \
    PORT=8317 \
    LINGMA_WORK_DIR=/data/lingma
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8317
# tini forwards SIGTERM to lingma-local (which stops the gateway, then drains the sidecars)
# and reaps the Lingma and browser processes.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/lingma-local", "host"]
