#!/usr/bin/env bash
# Installs what crates/telemetry-test-support's `postgres` module runs: PostgreSQL's own binaries
# (`initdb`, `postgres`, `createdb`, `psql`), from Debian's `postgresql` through apt-get (as root;
# skipped when an `initdb` is found under /usr/lib/postgresql/*/bin).
# Idempotent. It starts no server: each test process starts its own, private ones.
#
# Then: cargo test -p telemetry-test-support (`cargo xtask test` runs this script first).
# Binaries elsewhere: TELEMETRY_TEST_PG_BINDIR=/path/to/bin cargo test ...
set -euo pipefail

found() {
    local initdb
    for initdb in /usr/lib/postgresql/*/bin/initdb; do
        if [[ -x "$initdb" ]]; then
            echo "$initdb"
        fi
    done
}

if [[ -n "${TELEMETRY_TEST_PG_BINDIR:-}" ]]; then
    if [[ -x "$TELEMETRY_TEST_PG_BINDIR/initdb" ]]; then
        echo "setup-postgres: using TELEMETRY_TEST_PG_BINDIR=$TELEMETRY_TEST_PG_BINDIR"
        "$TELEMETRY_TEST_PG_BINDIR/postgres" --version
        exit 0
    fi
    echo "setup-postgres: TELEMETRY_TEST_PG_BINDIR=$TELEMETRY_TEST_PG_BINDIR has no \`initdb\`" >&2
    exit 1
fi

if [[ -z "$(found)" ]]; then
    if [[ "$(id -u)" != 0 ]]; then
        echo "setup-postgres: no \`initdb\` under /usr/lib/postgresql/*/bin; run this script as root, or: sudo apt-get install -y postgresql" >&2
        exit 1
    fi
    echo "setup-postgres: installing Debian's postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    if [[ -z "$(found)" ]]; then
        echo "setup-postgres: \`postgresql\` is installed but no \`initdb\` is under /usr/lib/postgresql/*/bin" >&2
        exit 1
    fi
fi

# The tests use the highest version (as telemetry-test-support picks it).
initdb="$(found | sort -V | tail -n 1)"
bindir="$(dirname "$initdb")"
for binary in postgres createdb psql; do
    if [[ ! -x "$bindir/$binary" ]]; then
        echo "setup-postgres: $bindir has no \`$binary\`; reinstall: apt-get install --reinstall postgresql" >&2
        exit 1
    fi
done
if [[ "$(id -u)" == 0 ]] && ! id -u postgres >/dev/null 2>&1; then
    echo "setup-postgres: running as root needs the \`postgres\` system user to run the servers as (Debian's postgresql-common creates it)" >&2
    exit 1
fi
echo "setup-postgres: ready ($("$bindir/postgres" --version), in $bindir)"
