#!/usr/bin/env bash
# Installs what the end-to-end test with a real Janus (crates/telemetry-server/tests/it/janus_e2e.rs)
# uses, through apt-get (as root; skipped when present):
#   - Debian's `janus` (the server, with its sample event handler and the VideoRoom and EchoTest
#     plugins) and `janus-demos` (its stock demo pages and janus.js);
#   - `iproute2` and `util-linux` (`ip`, `unshare`): the test runs Janus, the pages and Chromium in a
#     network namespace of its own (reference/janus-events.md, "ICE on loopback").
# Chromium and playwright-core come from tools/setup-browser.sh, LiveKit's webhook receivers from
# tools/setup-conformance.sh.
#
# Then: TELEMETRY_TEST_JANUS=1 cargo test -p telemetry-server --test it janus_e2e -- --nocapture
# (as root; `cargo xtask test` runs this script and sets the variable itself).
set -euo pipefail

missing=()
for package in janus janus-demos iproute2 util-linux; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$package")
    fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "setup-janus: janus, janus-demos, iproute2 and util-linux are installed"
else
    if [[ "$(id -u)" != 0 ]]; then
        echo "setup-janus: ${missing[*]} missing; run this script as root, or: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    echo "setup-janus: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v janus >/dev/null
test -f /usr/share/janus/demos/echotest.html
test -f /usr/share/janus/demos/videoroomtest.html
echo "setup-janus: ready ($(janus --version 2>/dev/null | head -n 1))"
