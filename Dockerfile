# syntax=docker/dockerfile:1
#
# Container image for sas-image-scan-exporter: the Rust binary (dynamically linked against glibc)
# on distroless, running as the non-root user 65532 with no shell, package manager or other tools.
#
#   docker build -t sas-image-scan-exporter:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse --short=12 HEAD)" .
#   docker run --rm -p 9847:9847 sas-image-scan-exporter:0.1.0 --demo
#   docker run --rm -p 9847:9847 -e ALIBABA_CLOUD_ACCESS_KEY_ID -e ALIBABA_CLOUD_ACCESS_KEY_SECRET \
#     -v "$PWD/my-config.yml:/etc/sas-image-scan-exporter/sas-image-scan-exporter.yml:ro" \
#     sas-image-scan-exporter:0.1.0
#
# Kubernetes manifests: deploy/kubernetes/. Lint: scripts/lint-deploy.sh (hadolint, checkov).

# Keep in step with the toolchain the project is tested with (stable). The builder and the
# runtime are both Debian 12 (bookworm), so the binary finds the glibc it was linked against.
ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /build

# Dependencies first, in their own layer: it is rebuilt only when a Cargo.toml or Cargo.lock
# changes, not on every source change. Stub targets stand in for the real ones (one per target
# Cargo.toml declares by name: the [[bench]] `exporter`), and an empty library for the workspace's
# simulator crate, which the default `demo` feature builds in.
COPY Cargo.toml Cargo.lock ./
COPY crates/sas-simulator/Cargo.toml crates/sas-simulator/
RUN mkdir -p src benches crates/sas-simulator/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs crates/sas-simulator/src/lib.rs \
 && echo 'fn main() {}' > benches/exporter.rs \
 && cargo build --release --locked \
 && rm -rf src benches crates/sas-simulator/src \
      target/release/.fingerprint/sas-image-scan-exporter-* \
      target/release/.fingerprint/sas-simulator-*

# The real build. The stubs' fingerprints are gone, so cargo rebuilds the crate whatever the
# copied files' timestamps. There is no .git in the build context, so the revision comes in as a
# build argument (build.rs reads SAS_GIT_REVISION) for --version and sas_exporter_build_info.
COPY build.rs ./
COPY benches ./benches
COPY crates ./crates
COPY src ./src
ARG REVISION=unknown
RUN SAS_GIT_REVISION="${REVISION}" cargo build --release --locked \
 && install -D -m 0555 target/release/sas-image-scan-exporter /out/sas-image-scan-exporter

# glibc, libgcc and CA certificates; no shell. reqwest uses rustls with its own bundled web PKI
# roots, so the CA bundle is not even needed. `nonroot` is uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://example.com/sas-image-scan-exporter
LABEL org.opencontainers.image.title="sas-image-scan-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Alibaba Cloud Security Center container image scan tasks" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

COPY --from=builder /out/sas-image-scan-exporter /usr/local/bin/sas-image-scan-exporter

# Numeric, so Kubernetes can check runAsNonRoot without a passwd lookup.
USER 65532:65532
# The default config path is relative (sas-image-scan-exporter.yml): mount the config here or
# pass --config.file.
WORKDIR /etc/sas-image-scan-exporter
EXPOSE 9847

# No HEALTHCHECK: there is no shell or HTTP client in the image to run one; orchestrators probe
# GET /-/healthy and /-/ready over HTTP (see deploy/kubernetes/base/deployment.yaml).
# checkov:skip=CKV_DOCKER_2: no shell or HTTP client in the distroless image; Kubernetes probes /-/healthy and /-/ready
ENTRYPOINT ["/usr/local/bin/sas-image-scan-exporter"]
