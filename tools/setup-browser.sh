#!/usr/bin/env bash
# Installs what the dashboard's browser test (crates/telemetry-server/tests/it/dashboard.rs) uses:
#   - Debian's `chromium` at /usr/bin/chromium and `fonts-dejavu-core`, through apt-get (as root;
#     skipped when present);
#   - tools/browser/node_modules: npm `playwright-core` (pinned in browser/package.json and
#     package-lock.json), through `npm ci`. Playwright's own browser downloads are never used.
# Idempotent: a step is skipped when what it installs is there and matches its pins already.
#
# Then: TELEMETRY_TEST_BROWSER=1 cargo test -p telemetry-server --test it dashboard
# (`cargo xtask test` runs this script and sets the variable itself).
set -euo pipefail

tools="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
browser="$tools/browser"
chromium=/usr/bin/chromium

# Chromium, and a font for the page's text (a fresh Debian may have none, and Chromium does
# not depend on one).
if [[ -x "$chromium" ]] && dpkg-query -W -f='${Status}' fonts-dejavu-core 2>/dev/null | grep -q "ok installed"; then
    echo "setup-browser: $chromium is installed"
else
    if [[ "$(id -u)" != 0 ]]; then
        echo "setup-browser: $chromium or fonts-dejavu-core is missing; run this script as root, or: sudo apt-get install -y chromium fonts-dejavu-core" >&2
        exit 1
    fi
    echo "setup-browser: installing Debian's chromium"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi

for command in node npm; do
    if ! command -v "$command" >/dev/null; then
        echo "setup-browser: \`$command\` is not installed" >&2
        exit 1
    fi
done

# playwright-core. The stamp holds the lock file node_modules was installed from.
lock="$browser/package-lock.json"
stamp="$browser/node_modules/.rtc-telemetry-package-lock.json"
if [[ -d "$browser/node_modules/playwright-core" ]] && cmp -s "$lock" "$stamp"; then
    echo "setup-browser: $browser/node_modules is up to date"
else
    echo "setup-browser: installing playwright-core into $browser/node_modules"
    # The package's install step downloads nothing, but say so for every version.
    (cd "$browser" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    cp "$lock" "$stamp"
fi

"$chromium" --version 2>/dev/null
(cd "$browser" && node -e 'import("playwright-core").then(() => {})')
echo "setup-browser: ready (chromium: $chromium, script: $browser/dashboard.mjs)"
