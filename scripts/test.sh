#!/usr/bin/env bash
# Runs every test of the workspace, including the process-level ones (real binary over loopback UDP) and the
# interop tests with real SIP clients. Installs the clients first when one is missing and we are root:
# SIPp (Debian package sip-tester), sipsak (sipsak), baresip (baresip-core) and Kamailio (kamailio, the
# authenticating registrar the registrant registers to).
set -euo pipefail
cd "$(dirname "$0")/.."

# program:package for each client the tests run.
missing=()
for pair in sipp:sip-tester sipsak:sipsak baresip:baresip-core kamailio:kamailio; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = "0" ]; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    else
        echo "missing SIP clients: run 'sudo apt-get update && sudo apt-get install -y ${missing[*]}'" \
            "(the interop tests fail without them)" >&2
    fi
fi

# glommio needs locked memory for io_uring (>= 512 KiB per executor); each test spawns its own server.
if [ "$(ulimit -l)" != "unlimited" ] && [ "$(ulimit -l)" -lt 4096 ]; then
    ulimit -l 4096 2>/dev/null || ulimit -l unlimited 2>/dev/null || \
        echo "warning: ulimit -l is $(ulimit -l) KiB; raise it if corereg refuses to start" >&2
fi

exec cargo test --workspace "$@"
