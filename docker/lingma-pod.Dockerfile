# syntax=docker/dockerfile:1.7
# The `lingma-pod` image: the sidecar, which bootstraps (init container `sidecar bootstrap`),
# starts and supervises Lingma, plus the headless Chromium its auto-login drives. Build from
# the repository root:
#   docker build -f docker/lingma-pod.Dockerfile -t lingma-pod:dev .
# Not built in CI (no Docker on the CI machines); scripts/e2e-kind.sh builds it.
#
# Lingma itself is downloaded at pod start (LingmaInstance spec.lingma.source marketplace or
# vsix) into the work-directory volume. For source `image`, extend this image:
#   FROM lingma-pod:dev
#   COPY --chown=65532:65532 lingma /opt/lingma/lingma
#   ENV LINGMA_BIN=/opt/lingma/lingma

# Base images are pinned by tag and digest (the digest is what is pulled; the tag says what
# it is). Bump both together: docker buildx imagetools inspect <image:tag>.
FROM rust:1.95-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082 AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sidecar --bin sidecar \
    && install -D -m 0755 target/release/sidecar /out/sidecar

# Debian slim rather than distroless: Lingma is a dynamically linked native program and the
# auto-login needs Chromium and its chromedriver from the same Debian release.
FROM debian:bookworm-slim@sha256:7b140f374b289a7c2befc338f42ebe6441b7ea838a042bbd5acbfca6ec875818
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates chromium chromium-driver tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 nonroot \
    && useradd --uid 65532 --gid 65532 --home-dir /data --no-create-home --shell /usr/sbin/nologin nonroot \
    && install -d -o 65532 -g 65532 /data /data/lingma
COPY --from=build /out/sidecar /usr/local/bin/sidecar
ENV CHROME=/usr/bin/chromium \
    CHROMEDRIVER=/usr/bin/chromedriver \
    LINGMA_WORK_DIR=/data/lingma \
    SIDECAR_HOST=0.0.0.0 \
    SIDECAR_PORT=8318 \
    HOME=/data
USER 65532:65532
EXPOSE 8318
# tini reaps the Lingma and browser processes the sidecar starts.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/sidecar"]
