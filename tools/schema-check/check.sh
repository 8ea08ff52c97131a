#!/usr/bin/env bash
# Validates rendered manifests against the published Kubernetes, Istio and Gateway API schemas.
#   tools/schema-check/check.sh manifests [more dirs or files]
# Installs the pinned npm packages (npm ci, from package-lock.json) when they are
# missing or older than the lockfile. Needs node (>= 18) and npm: fails if absent.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "schema-check: $tool is not installed (Debian: apt-get install nodejs npm)" >&2; exit 3; }
done
stamp="$here/node_modules/.package-lock.json"
if [ ! -f "$stamp" ] || [ "$here/package-lock.json" -nt "$stamp" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
exec node "$here/check.mjs" "$@"
