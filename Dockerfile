# syntax=docker/dockerfile:1
#
# pgtenant image: a cgo build (pg_query is C) on Debian 12, run on distroless
# base-debian12 (glibc, CA certificates, tzdata; no shell, no package manager)
# as a numeric non-root user. The root filesystem can be mounted read-only:
# the only writable path pgtenant needs is the audit spool
# (/var/lib/pgtenant/spool), which Kubernetes mounts as an emptyDir.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#                --build-arg COMMIT=$(git rev-parse HEAD) -t pgtenant .
#
# See docs/deploy.md.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Dependencies first, so that source changes reuse the module layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN --mount=type=cache,target=/root/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    VERSION="${VERSION}" COMMIT="${COMMIT}" scripts/build.sh /out/pgtenant \
 && /out/pgtenant version \
 && mkdir -p /out/spool

FROM gcr.io/distroless/base-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="pgtenant" \
      org.opencontainers.image.description="PostgreSQL wire-protocol proxy that enforces multi-tenancy (JWT, RLS, statement policy, hash-chained audit)" \
      org.opencontainers.image.source="https://github.com/pgtenant/pgtenant" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/pgtenant /usr/local/bin/pgtenant
COPY --from=build --chown=65532:65532 /out/spool /var/lib/pgtenant/spool
# 65532 is distroless' "nonroot"; numeric so that runAsNonRoot can verify it.
USER 65532:65532
# 6432: PostgreSQL clients; 9187: admin HTTP (/metrics /healthz /readyz /isolation-proof).
EXPOSE 6432 9187
ENTRYPOINT ["/usr/local/bin/pgtenant"]
CMD ["serve", "--config", "/etc/pgtenant/config.yaml"]
