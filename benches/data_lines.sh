#!/usr/bin/env bash
# Distinct data cache lines one REGISTER reads, by region: the read-only data (.rodata: tables, constants,
# literals), .data, the stack and the heap. A REGISTER that starts with cold caches (a shard that slept
# between datagrams) fetches each of them again; the fewer, the less a busy host's neighbours cost it.
#
# Traces every memory access of examples/refresh_loop under valgrind's lackey tool and counts, for each
# handle_one call after the first USERS (the second-device REGISTERs), the distinct 64-byte lines read.
# Prints lines per REGISTER by region, then the .rodata lines most REGISTERs read, each with the
# function that first read it (addr2line): what to look at next.
#
#   benches/data_lines.sh [USERS]      (default 2000; ~1 minute)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
USERS="${1:-2000}"
cd "$ROOT"
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }
cargo build -q --release --example refresh_loop
B=target/release/examples/refresh_loop
ENTRY=$(nm "$B" | awk '/refresh_loop10handle_one/ {print $1}')
RET=$(objdump -d --no-show-raw-insn "$B" | grep -E "call.*<_ZN12refresh_loop10handle_one" -A1 | tail -1 | awk '{print $1}' | tr -d :)
# valgrind loads the (position-independent) binary at this base.
BASE=0x108000
valgrind --tool=lackey --trace-mem=yes "$B" "$USERS" 1 second-device 2>&1 >/dev/null |
  python3 -c '
import collections, re, subprocess, sys
binary, entry, ret, base, skip = sys.argv[1], int(sys.argv[2], 16), int(sys.argv[3], 16), int(sys.argv[4], 16), int(sys.argv[5])
entry += base; ret += base
sections = {}
for l in subprocess.run(["readelf", "-S", "-W", binary], capture_output=True, text=True).stdout.splitlines():
    m = re.search(r"\]\s+(\.rodata|\.data\.rel\.ro|\.data|\.bss)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", l)
    if m: sections[m.group(1)] = (int(m.group(2), 16) + base, int(m.group(2), 16) + int(m.group(3), 16) + base)
def region(a):
    for name, (s, e) in sections.items():
        if s <= a < e: return name
    if 0x1ff0000000 <= a < 0x2000000000: return "stack"  # where valgrind puts the main stack
    return "heap"
inside = False; n = 0; lines = set(); first = {}; last_i = 0
per_region = collections.Counter(); rodata = collections.Counter()
for line in sys.stdin:
    kind = line[:2].strip()
    if kind == "I":
        last_i = int(line.split()[1].split(",")[0], 16)
        if last_i == entry and not inside:
            inside = True; lines = set()
        elif last_i == ret and inside:
            inside = False; n += 1
            if n > skip:
                for l in lines:
                    r = region(l * 64); per_region[r] += 1
                    if r == ".rodata": rodata[l] += 1
        continue
    if not inside or kind not in ("L", "M"): continue
    addr, size = line.split()[1].split(",")
    a = int(addr, 16)
    for l in range(a // 64, (a + int(size) - 1) // 64 + 1):
        lines.add(l); first.setdefault(l, last_i)
count = n - skip
print(f"{count} REGISTERs; data lines read per REGISTER:")
for r, c in sorted(per_region.items()): print(f"  {r:14s} {c / count:6.1f}")
hot = sorted(l for l, c in rodata.items() if c >= count / 2)
print(f".rodata lines read by most REGISTERs ({len(hot)}), with the function that first read each:")
addrs = [hex(first[l] - base) for l in hot]
out = subprocess.run(["addr2line", "-f", "-C", "-e", binary] + addrs, capture_output=True, text=True).stdout.splitlines()
for i, l in enumerate(hot):
    fn = out[2 * i][:100] if 2 * i < len(out) else "?"
    print(f"  {l * 64 - base:#8x}  {fn}")
' "$B" "$ENTRY" "$RET" "$BASE" "$USERS"
