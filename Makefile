# shadowtap build and release.
#   make build     a binary for this machine
#   make release   static linux/amd64 and linux/arm64 binaries, with
#                  version information and SHA256SUMS, in $(DIST)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
DIST    ?= dist
LDFLAGS := -s -w -X main.version=$(VERSION)
GO      ?= go

.PHONY: build release test clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o shadowtap ./cmd/shadowtap

release:
	mkdir -p $(DIST)
	for arch in amd64 arm64; do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
			-o $(DIST)/shadowtap-linux-$$arch ./cmd/shadowtap || exit 1; \
	done
	cd $(DIST) && sha256sum shadowtap-linux-amd64 shadowtap-linux-arm64 > SHA256SUMS
	@echo "release $(VERSION) in $(DIST):" && cat $(DIST)/SHA256SUMS

test:
	$(GO) test ./...

clean:
	rm -rf shadowtap $(DIST)
