#!/usr/bin/env bash
# The project's test command (the README's, and what CI runs): installs the
# pinned NVRTC into .nvrtc/ once, then runs every test. Extra arguments go to
# `cargo test` (e.g. `scripts/test.sh --test devices`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
cargo test --locked "$@"
