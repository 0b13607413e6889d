# A minimal image: the static binary on distroless. Traffic mirroring
# sends VXLAN on UDP 4789; the load balancer's health check uses TCP 4789;
# the admin server (/healthz, /metrics, /report) listens on 4790.
# Raise net.core.rmem_max on the host (see deploy/99-shadowtap.conf).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /shadowtap ./cmd/shadowtap

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /shadowtap /shadowtap
EXPOSE 4789/udp 4789/tcp 4790/tcp
ENTRYPOINT ["/shadowtap"]
