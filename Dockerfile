# syntax=docker/dockerfile:1
#
# Two images from one build, so each holds one binary:
#
#   docker build --target sidecar  -t ghcr.io/aiflags/aiflags-sidecar:0.1.0 .
#   docker build --target operator -t ghcr.io/aiflags/aiflags-operator:0.1.0 .
#
# The sidecar image is what every node pulls for every injected pod, so it
# carries nothing but the proxy; the operator image carries the controller
# and the webhook. Both run as the distroless `nonroot` user (65532) on a
# read-only root filesystem; the chart's default image references are these
# two names with the chart's appVersion as the tag.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# Only the two production binaries: dev tools, tests and fuzz targets in the
# workspace are not built. The sidecar, on every pod's request path, gets the
# `production` profile (fat LTO, one codegen unit); the operator `release`.
# --locked builds exactly what Cargo.lock says.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile production --locked --bin aiflags-sidecar \
    && cargo build --release --locked --bin aiflags-operator \
    && mkdir -p /out \
    && cp target/release/aiflags-operator target/production/aiflags-sidecar /out/

# glibc and libgcc from the same Debian release as the build stage; no shell.
FROM gcr.io/distroless/cc-debian12:nonroot AS sidecar
COPY --from=build /out/aiflags-sidecar /usr/local/bin/aiflags-sidecar
USER 65532:65532
EXPOSE 15090
ENTRYPOINT ["/usr/local/bin/aiflags-sidecar"]

FROM gcr.io/distroless/cc-debian12:nonroot AS operator
COPY --from=build /out/aiflags-operator /usr/local/bin/aiflags-operator
USER 65532:65532
EXPOSE 8080 9443
ENTRYPOINT ["/usr/local/bin/aiflags-operator"]
CMD ["run"]
