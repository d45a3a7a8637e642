# Gauntlet worker and CLI. Build: docker build -t gauntlet .
# The binaries are pure Go (the SQLite driver of the embedded dev server is
# modernc.org/sqlite), so they build with CGO_ENABLED=0 and need no libc of
# a particular version at run time.

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
ENV GOTOOLCHAIN=local CGO_ENABLED=0
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN go build -trimpath -ldflags "-s -w -X github.com/gauntlet-ml/gauntlet/internal/cli.Version=${VERSION}" -o /out/bin/gauntlet ./starter \
 && go build -trimpath -ldflags "-s -w -X github.com/gauntlet-ml/gauntlet/internal/cli.Version=${VERSION}" -o /out/bin/worker ./worker

# Debian slim rather than distroless: compose healthchecks call curl, and
# run: steps may need a shell.
FROM debian:12.8-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 gauntlet \
 && useradd --system --uid 10001 --gid gauntlet --home-dir /var/lib/gauntlet --create-home gauntlet
WORKDIR /app
COPY --from=build /out/bin/ /app/bin/
COPY pipelines/ /app/pipelines/
ENV PATH=/app/bin:$PATH \
    GAUNTLET_PIPELINES=/app/pipelines
USER 10001:10001
# 9464: the worker's --metrics-addr; 8080: model servers and the router.
EXPOSE 9464 8080
VOLUME ["/var/lib/gauntlet"]
ENTRYPOINT ["/app/bin/worker"]
CMD ["--metrics-addr", ":9464", "--state-dir", "/var/lib/gauntlet"]
