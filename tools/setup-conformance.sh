#!/usr/bin/env bash
# Installs the independent webhook receivers that crates/telemetry-core/tests/conformance.rs
# checks our signatures against:
#   - tools/.venv: PyPI `livekit-api` and `standardwebhooks` (pinned in conformance/requirements.txt);
#   - tools/conformance/node_modules: npm `livekit-server-sdk` (pinned in conformance/package.json
#     and package-lock.json), through `npm ci`.
# Idempotent: a step is skipped when what it installs matches its pins already. Needs python3
# (with venv), node and npm, and the PyPI and npm registries.
#
# Then: TELEMETRY_TEST_CONFORMANCE=1 cargo test -p telemetry-core --test conformance
# (`cargo xtask test` runs this script and sets the variables itself).
set -euo pipefail

tools="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$tools/.venv"
conformance="$tools/conformance"

for command in python3 node npm; do
    if ! command -v "$command" >/dev/null; then
        echo "setup-conformance: \`$command\` is not installed" >&2
        exit 1
    fi
done

# Python receivers. The stamp holds the requirements the venv was built from.
requirements="$conformance/requirements.txt"
stamp="$venv/.rtc-telemetry-requirements"
if [[ -x "$venv/bin/python" ]] && cmp -s "$requirements" "$stamp"; then
    echo "setup-conformance: $venv is up to date"
else
    echo "setup-conformance: installing the Python receivers into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$stamp"
fi

# Node receiver. The stamp holds the lock file node_modules was installed from.
lock="$conformance/package-lock.json"
stamp="$conformance/node_modules/.rtc-telemetry-package-lock.json"
if [[ -d "$conformance/node_modules/livekit-server-sdk" ]] && cmp -s "$lock" "$stamp"; then
    echo "setup-conformance: $conformance/node_modules is up to date"
else
    echo "setup-conformance: installing the Node receiver into $conformance/node_modules"
    (cd "$conformance" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$lock" "$stamp"
fi

"$venv/bin/python" -c 'import livekit.api, standardwebhooks, grpc'
(cd "$conformance" && node -e 'import("livekit-server-sdk").then(() => {})')
echo "setup-conformance: ready (python: $venv/bin/python, scripts: $conformance)"
