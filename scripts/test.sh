#!/usr/bin/env bash
# The one test command (README, .ci/run): formatting, lints, every Rust test, the Python
# suite that drives the real gateway with the official openai package, and the offline
# Kubernetes checks. Needs: the Rust toolchain, python3; promtool and chromium for the
# tests that use them (.ci/run installs both from Debian's packages).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lingma-gateway/target}"
export VENV="${VENV:-$HOME/.cache/lingma-gateway/venv}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The fault suite's soak runs 2 minutes here (scripts/soak.sh runs the 30-minute one).
export SOAK_SECS="${SOAK_SECS:-120}"

step() { printf '\n==> %s\n' "$*"; }

step "python venv ($VENV)"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
reqs=()
for f in tests/python/requirements.txt tests/k8s/requirements.txt; do
  [ -f "$f" ] && reqs+=(-r "$f")
done
if [ ${#reqs[@]} -gt 0 ]; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${reqs[@]}"
fi

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
  scripts/k8s-checks.sh
fi

if [ -d tests/python ]; then
  step "python suite (official openai package against the real binaries)"
  "$VENV/bin/python" -m pytest tests/python -q -p no:cacheprovider
fi
