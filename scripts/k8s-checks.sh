#!/usr/bin/env bash
# Offline checks of the Helm chart, manifests/ and the LingmaInstance CRD.
#
# Expects a Python venv at $VENV with tests/k8s/requirements.txt installed (.ci/run does it);
# without VENV it uses the python3 on PATH. Nothing contacts a cluster: see tests/k8s/check.py.
#   scripts/k8s-checks.sh            check
#   scripts/k8s-checks.sh --write    regenerate manifests/ from the chart, then check
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${VENV:-}" ]; then
  export PATH="$VENV/bin:$PATH"
fi
# checkov phones home for its guidelines unless told not to.
export BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
exec python3 tests/k8s/check.py "$@"
