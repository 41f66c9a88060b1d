#!/usr/bin/env bash
# Runs every test of the workspace, including the process-level ones (real binary over loopback UDP) and the
# SIPp interop scenarios. Installs SIPp (Debian package sip-tester) first when it is missing and we are root.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v sipp >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ]; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y sip-tester
    else
        echo "sipp is missing: run 'sudo apt-get update && sudo apt-get install -y sip-tester' (the SIPp tests fail without it)" >&2
    fi
fi

# glommio needs locked memory for io_uring (>= 512 KiB per executor); each test spawns its own server.
if [ "$(ulimit -l)" != "unlimited" ] && [ "$(ulimit -l)" -lt 4096 ]; then
    ulimit -l 4096 2>/dev/null || ulimit -l unlimited 2>/dev/null || \
        echo "warning: ulimit -l is $(ulimit -l) KiB; raise it if corereg refuses to start" >&2
fi

exec cargo test --workspace "$@"
