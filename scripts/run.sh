#!/usr/bin/env bash
# The README's run command: on a fresh Debian machine with the Rust toolchain, installs the
# build dependencies (scripts/build-deps.sh), then runs the release binary with the arguments
# given (`scripts/run.sh serve`, `scripts/run.sh models install`, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/build-deps.sh
ensure_build_deps
exec cargo run --quiet --release -- "${@:-serve}"
