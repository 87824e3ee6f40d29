#!/usr/bin/env bash
# handoffd with the shipped config (examples/handoffd.toml) and two HTTP workers.
# It makes a few requests to show which worker served each (with python3, which
# every machine here has; curl works the same), prints the
# metrics, then keeps serving on http://127.0.0.1:8080/ until Ctrl-C
# (with --once it stops there).
set -euo pipefail
cd "$(dirname "$0")/.."
once=${1:-}
cargo build -q --workspace --examples
get() { python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode(), end="")' "$1"; }
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 0' INT TERM

target/debug/handoffd --config examples/handoffd.toml &
pids+=($!)
for _ in $(seq 100); do [ -S /tmp/handoff-http.sock ] && break; sleep 0.05; done
target/debug/examples/http_worker /tmp/handoff-http.sock &
pids+=($!)
target/debug/examples/http_worker /tmp/handoff-http.sock &
pids+=($!)
for _ in $(seq 100); do
  get http://127.0.0.1:9090/metrics 2>/dev/null | grep -q 'handoffd_workers{pool="http"} 2' && break
  sleep 0.05
done

for path in / /hello /again /bye; do
  printf 'GET http://127.0.0.1:8080%-7s -> %s' "$path" "$(get "http://127.0.0.1:8080$path")"
  echo
done
echo
get http://127.0.0.1:9090/metrics | grep -v '^#'
if [ "$once" = "--once" ]; then
  exit 0
fi
echo
echo "serving: curl http://127.0.0.1:8080/ (metrics: curl http://127.0.0.1:9090/metrics); Ctrl-C stops"
wait
