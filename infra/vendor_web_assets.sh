#!/usr/bin/env bash
# Re-fetch the assets of the API docs (/docs: Swagger UI, /redoc: ReDoc) and the dashboard's
# charting library (uPlot) into serving/static/vendor/, so they load from the platform itself
# and work offline.
#
# Each package comes from its npm release tarball (`npm pack`, which checks the registry's
# integrity hash); only the files the pages load and the licenses are copied, and
# serving/static/vendor/README.md is rewritten with the versions. To move to another release:
#   SWAGGER_UI_VERSION=5.x.y REDOC_VERSION=2.x.y UPLOT_VERSION=1.x.y bash infra/vendor_web_assets.sh
# then run tests/unit/test_serving_docs.py and the dashboard's browser tests, and commit
# serving/static/vendor/.
set -euo pipefail

SWAGGER_UI_VERSION="${SWAGGER_UI_VERSION:-5.36.0}"
REDOC_VERSION="${REDOC_VERSION:-2.5.4}"
UPLOT_VERSION="${UPLOT_VERSION:-1.6.32}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/serving/static/vendor"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# vendor <package> <version> <file in the package>...: the files (and any webpack-extracted
# *.LICENSE.txt beside them) into $DEST/<package>/, replacing what was there.
vendor() {
    local package="$1" version="$2" file
    shift 2
    (cd "$WORK" && npm pack --silent "$package@$version" >/dev/null)
    mkdir -p "$WORK/$package"
    tar -xzf "$WORK/$package-$version.tgz" -C "$WORK/$package" --strip-components=1
    rm -rf "${DEST:?}/$package"
    mkdir -p "$DEST/$package"
    for file in "$@"; do
        cp "$WORK/$package/$file" "$DEST/$package/"
        if [[ -f "$WORK/$package/$file.LICENSE.txt" ]]; then
            cp "$WORK/$package/$file.LICENSE.txt" "$DEST/$package/"
        fi
    done
    INTEGRITY["$package"]="$(npm view "$package@$version" dist.integrity)"
}

# files_of <package>: the vendored files, comma-separated.
files_of() {
    (cd "$DEST/$1" && ls | paste -sd ',' | sed 's/,/, /g')
}

declare -A INTEGRITY
vendor swagger-ui-dist "$SWAGGER_UI_VERSION" \
    swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE
vendor redoc "$REDOC_VERSION" bundles/redoc.standalone.js LICENSE
vendor uplot "$UPLOT_VERSION" dist/uPlot.iife.min.js dist/uPlot.min.css LICENSE

cat >"$DEST/README.md" <<EOF
# Vendored assets of the API docs and the dashboard

Served under \`/static/vendor/\` by \`serving/routes/docs.py\`, so \`/docs\`, \`/redoc\` and the
dashboard (\`/\`, its charts drawn with uPlot) load nothing from another host. Copied unmodified
from the npm release tarballs:

| package | version | npm integrity | files | license |
|---|---|---|---|---|
| [swagger-ui-dist](https://www.npmjs.com/package/swagger-ui-dist) | $SWAGGER_UI_VERSION | \`${INTEGRITY[swagger-ui-dist]}\` | $(files_of swagger-ui-dist) | Apache-2.0 (LICENSE, NOTICE) |
| [redoc](https://www.npmjs.com/package/redoc) | $REDOC_VERSION | \`${INTEGRITY[redoc]}\` | $(files_of redoc) | MIT (LICENSE) |
| [uplot](https://www.npmjs.com/package/uplot) | $UPLOT_VERSION | \`${INTEGRITY[uplot]}\` | $(files_of uplot) | MIT (LICENSE) |

\`*.LICENSE.txt\` hold the licenses of the code bundled into each script. Refresh (another
version: set \`SWAGGER_UI_VERSION\` / \`REDOC_VERSION\` / \`UPLOT_VERSION\`) with
\`bash infra/vendor_web_assets.sh\`;
do not edit these files by hand.
EOF
echo "vendored swagger-ui-dist $SWAGGER_UI_VERSION, redoc $REDOC_VERSION and uplot $UPLOT_VERSION into $DEST"
