#!/usr/bin/env bash
# Memory per live object: starts the server (built-in counter), gives N new
# objects one increment each, and prints how the process's memory grew per
# object: RSS, PSS, and the private and shared parts of the wasm memory
# images and of anonymous memory (from /proc/PID/smaps), just after and again
# once the objects' databases were closed for being idle. Bounded: N objects
# (default 1000), one request each.
#   scripts/bench-memory.sh [N] [extra server flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
n="${1:-1000}"
shift || true
# Idle actors release what they hold after this long, a couple of hundred
# per second at most; the second figures are taken once all have.
close_after=2
idle_wait=$((close_after * 2 + n / 150))
cargo build --locked --release --quiet
dir="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
target/release/go-go-objects --addr "127.0.0.1:$port" --storage "$dir/storage" \
  --max-live-objects "$((n + 100))" --idle-timeout 0 --idle-release "${close_after}s" \
  --log-level warn "$@" > "$dir/out" 2>&1 &
pid=$!
for _ in $(seq 1 200); do grep -q listening "$dir/out" && break; sleep 0.05; done
python3 - "$pid" "$port" "$n" "$idle_wait" <<'PY'
import collections, http.client, re, sys
pid, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
idle_wait = float(sys.argv[4])

def memory():
    totals = collections.Counter()
    name = None
    for line in open(f"/proc/{pid}/smaps"):
        m = re.match(r"^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$", line)
        if m:
            name = "image" if "wasm-memory-image" in m.group(1) else "anon" if m.group(1) in ("", "[heap]") else "other"
            continue
        key, _, value = line.partition(":")
        if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
            kib = int(value.split()[0])
            totals[key] += kib
            totals[(name, "private" if key.startswith("Private") else key)] += kib
    return totals

client = http.client.HTTPConnection("127.0.0.1", port)
def increment(name):
    client.request("POST", f"/rpc/COUNTER/{name}/increment", body="[1]",
                   headers={"content-type": "application/json"})
    response = client.getresponse()
    response.read()
    assert response.status == 200, response.status

increment("warm-up")
before = memory()
for i in range(n):
    increment(f"object-{i}")
def report(title, after):
    per = lambda key: (after[key] - before[key]) / n
    print(f"{n} new live objects, {title}, KiB per object:")
    print(f"  RSS {per('Rss'):.0f}, PSS {per('Pss'):.0f}")
    print(f"  wasm memory images: RSS {per(('image', 'Rss')):.0f}, private {per(('image', 'private')):.0f}")
    print(f"  anonymous memory: RSS {per(('anon', 'Rss')):.0f}")

report("just after their increment", memory())
import time
time.sleep(idle_wait)
report(f"after {idle_wait:.0f} s idle (released)", memory())
PY
