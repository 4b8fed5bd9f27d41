# syntax=docker/dockerfile:1

# mtai container image: a static Go binary on distroless, running as nonroot.
#
#   docker build -t mtai .
#   docker buildx build --platform linux/arm64 -t mtai:arm64 .   # Graviton/Fargate ARM64
#   docker run -p 8080:8080 -v mtai-data:/data mtai
#
# The build stage runs on the build machine's own platform and cross-compiles
# (no emulation needed for another architecture); the final stage only copies
# files, so it builds for any target platform.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src

# Module downloads are cached apart from the source, so that a code change
# does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .

ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /mtai ./cmd/mtai

# The data directory, owned by the nonroot user (65532) of the final image.
# /data and /tmp are VOLUMEs: on ECS (read-only root file system) task volumes
# mounted at these paths start as copies of them, ownership and mode included.
RUN mkdir -p /out/data && chown 65532:65532 /out/data && chmod 0750 /out/data

FROM gcr.io/distroless/static-debian12:nonroot

COPY --from=build /mtai /mtai
COPY --from=build --chown=65532:65532 /out/data /data

ENV PORT=8080 \
    MTAI_DATA_DIR=/data

USER 65532:65532
EXPOSE 8080
VOLUME ["/data", "/tmp"]

# distroless has no shell or curl: the binary GETs its own /ping.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/mtai", "healthcheck"]

ENTRYPOINT ["/mtai"]
CMD ["serve"]
