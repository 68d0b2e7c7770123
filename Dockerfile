# syntax=docker/dockerfile:1

# Build a static binary on the build platform, cross-compiling for the target one.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /llmgate ./cmd/llmgate
# An empty state directory, made here because distroless has no shell to mkdir one.
RUN mkdir -p /empty-dir

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /llmgate /llmgate
# Writable by the non-root user, so a volume mounted here for the deploy store inherits that.
COPY --from=build --chown=65532:65532 /empty-dir /var/lib/llmgate
USER 65532:65532
ENV LLMGATE_STATE_PATH=/var/lib/llmgate/state.db
# 8080: OpenAI-compatible API. 8081: admin API and /metrics; admin listens on loopback by
# default, so set admin.listen: ":8081" (or LLMGATE_ADMIN_LISTEN) to reach it from outside.
EXPOSE 8080 8081
ENTRYPOINT ["/llmgate"]
CMD ["serve", "--config", "/etc/llmgate/config.yaml"]
