#!/usr/bin/env bash
# End to end on this machine: install into .venv, start a local collector, track events from
# separate `hamustro track` calls, flush them, and show what the collector received.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/hamustro ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q -e .
fi
export PATH="$PWD/.venv/bin:$PATH"
work=$(mktemp -d)
trap 'kill "$collector_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

export HAMUSTRO_SHARED_SECRET_KEY="demo-secret"   # the collector and the client share it
hamustro collector --port 0 --out "$work/received.jsonl" 2>"$work/collector.log" &
collector_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/collector.log" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$work/collector.log")
echo "collector: $url"

cat >"$work/config.toml" <<TOML
collector_url = "$url"
device_id = "demo-device"
client_id = "demo"
system_version = "$(uname -sr)"
product_version = "1.0.0"
flush = "off"
TOML
export HAMUSTRO_CONFIG="$work/config.toml" HAMUSTRO_SPOOL_DIR="$work/spool"

hamustro track app.start --param user=alice
hamustro track page.view --user-id 42 --params '{"page": "/home"}'
printf '%s\n' '{"event": "batch.one"}' '{"event": "batch.two", "is_testing": true}' | hamustro track --stdin
echo; echo "\$ hamustro session"; hamustro session
echo; echo "\$ hamustro status"; hamustro status
echo; echo "\$ hamustro flush"; hamustro flush
echo; echo "what the collector received ($work/received.jsonl):"
cat "$work/received.jsonl"
