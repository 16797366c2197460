#!/usr/bin/env bash
# Build versitygw (Apache-2.0 S3 server) once into <project>/.cache/versitygw/bin.
#
# Tests and local mode use it as the S3-compatible store; it is built from source with the Go
# toolchain because no prebuilt binary may be downloaded. The binary and a version stamp live in
# .cache/versitygw/bin, so a rerun is instant; Go's module and build caches live in the user's
# cache directory, so another clone of the project (a worktree, CI) builds in seconds.
set -euo pipefail

VERSION="${VERSITYGW_VERSION:-v1.8.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="$ROOT/.cache/versitygw"
GO_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/lambda-platform/go"
BIN="$CACHE/bin/versitygw"
STAMP="$CACHE/bin/.version"

if [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$VERSION" ]]; then
    echo "$BIN"
    exit 0
fi

GO="$(command -v go || true)"
if [[ -z "$GO" && -x /usr/local/go/bin/go ]]; then
    GO=/usr/local/go/bin/go
fi
if [[ -z "$GO" ]]; then
    echo "build_versitygw: the Go toolchain (go) is not installed; install Go >= 1.22 to build versitygw" >&2
    exit 1
fi

mkdir -p "$CACHE/bin"
echo "build_versitygw: building versitygw $VERSION with $("$GO" version) (about 1.5 min, once)" >&2
GOBIN="$CACHE/bin" GOPATH="$GO_CACHE/gopath" GOMODCACHE="$GO_CACHE/gopath/pkg/mod" \
    GOCACHE="$GO_CACHE/build" GOFLAGS="-modcacherw" \
    "$GO" install "github.com/versity/versitygw/cmd/versitygw@$VERSION" >&2
echo "$VERSION" > "$STAMP"
echo "$BIN"
