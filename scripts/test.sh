#!/usr/bin/env bash
# The one test command (README, .ci/run): formatting, lints, every Rust test, the Python
# suite that drives the real gateway with the official openai package, and the offline
# Kubernetes checks. Needs: the Rust toolchain, python3; promtool, chromium and
# redis-server for the tests that use them (.ci/run installs them from Debian's packages).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lingma-gateway/target}"
export VENV="${VENV:-$HOME/.cache/lingma-gateway/venv}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The fault suite's soak runs 2 minutes here (scripts/soak.sh runs the 30-minute one).
export SOAK_SECS="${SOAK_SECS:-120}"

step() { printf '\n==> %s\n' "$*"; }

# Two venvs: the Kubernetes checkers (checkov, kubernetes-validate) pin versions that clash
# with the test suite's pytest.
venv() { # dir requirements
  [ -x "$1/bin/python" ] || python3 -m venv "$1"
  "$1/bin/pip" install --quiet --disable-pip-version-check -r "$2"
}
K8S_VENV="${K8S_VENV:-$HOME/.cache/lingma-gateway/venv-k8s}"
step "python venvs ($VENV, $K8S_VENV)"
[ -f tests/python/requirements.txt ] && venv "$VENV" tests/python/requirements.txt
[ -f tests/k8s/requirements.txt ] && venv "$K8S_VENV" tests/k8s/requirements.txt

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo build (binaries used by the integration tests)"
cargo build --workspace --bins --locked

step "cargo test"
cargo test --workspace --locked

if [ -x scripts/k8s-checks.sh ]; then
  step "offline Kubernetes checks (chart, manifests, CRD)"
  VENV="$K8S_VENV" scripts/k8s-checks.sh
fi

if [ -d tests/python ]; then
  step "python suite (official openai package against the real binaries)"
  "$VENV/bin/python" -m pytest tests/python -q -p no:cacheprovider
fi
