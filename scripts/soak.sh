#!/usr/bin/env bash
# Soak: the release exporter against the simulator (a separate process) with many digests and short
# intervals, scraped by wrk the whole time, with the exporter's RSS sampled every second.
#
#   scripts/soak.sh                      # 10 minutes, 10 000 digests
#   SOAK_MINUTES=3 scripts/soak.sh
#
# Knobs: SOAK_MINUTES (default 10), SOAK_DIGESTS (default 10000), SOAK_RPS (default 300),
# SOAK_CONCURRENCY (default 16), SOAK_INTERVAL (default 60s), SOAK_ACTIVE_INTERVAL (default 30s),
# SOAK_WRK_CONNECTIONS (per wrk, default 1), SOAK_SCRAPE_DELAY_MS (pause between one connection's
# scrapes, default 50; 0 = flat out, which on 2 cores starves polling), SOAK_OUT (directory for the CSV and logs, default
# target/soak/<UTC time>).
#
# Prints first/last/max RSS and the RSS when the first full polling round ended (the exporter
# turned ready). Single samples swing by tens of percent with the scrape buffers alive at that
# second, so the verdict compares medians over SOAK_WINDOW seconds (default 30): "flat" when the
# median of the last window is within 10% of the median of the window right after the first full
# round, "growing" (exit 1) when above. Everything runs on loopback and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

minutes=${SOAK_MINUTES:-10}
digests=${SOAK_DIGESTS:-10000}
rps=${SOAK_RPS:-300}
concurrency=${SOAK_CONCURRENCY:-16}
interval=${SOAK_INTERVAL:-60s}
active=${SOAK_ACTIVE_INTERVAL:-30s}
conns=${SOAK_WRK_CONNECTIONS:-1}
scrape_delay=${SOAK_SCRAPE_DELAY_MS:-50}
window=${SOAK_WINDOW:-30}
out=${SOAK_OUT:-$root/target/soak/$(date -u +%Y%m%dT%H%M%SZ)}
duration=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 }')

if ! command -v wrk >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk
fi

echo "building the release exporter and the simulator example" >&2
cargo build --release --locked --bin sas-image-scan-exporter --example simulator >&2

mkdir -p "$out"
csv=$out/rss.csv
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The simulator, in its own process.
target/release/examples/simulator --digests "$digests" --port 0 \
  --targets-out "$out/targets.yml" >"$out/simulator.out" 2>"$out/simulator.err" &
sim_pid=$!
pids+=("$sim_pid")
for _ in $(seq 100); do
  grep -q '^access_key_secret=' "$out/simulator.out" 2>/dev/null && break
  sleep 0.1
done
url=$(sed -n 's/^url=//p' "$out/simulator.out")
key_id=$(sed -n 's/^access_key_id=//p' "$out/simulator.out")
key_secret=$(sed -n 's/^access_key_secret=//p' "$out/simulator.out")
[ -n "$url" ] || { echo "the simulator did not start:" >&2; cat "$out/simulator.err" >&2; exit 2; }

cat >"$out/config.yml" <<YAML
sas:
  endpoint: $url
  timeout: 10s
credentials:
  access_key_id: $key_id
  access_key_secret: $key_secret
polling:
  interval: $interval
  active_interval: $active
  requests_per_second: $rps
  concurrency: $concurrency
targets:
YAML
cat "$out/targets.yml" >>"$out/config.yml"
chmod 600 "$out/config.yml"

port=$(free_port)
base=http://127.0.0.1:$port
target/release/sas-image-scan-exporter --config.file "$out/config.yml" \
  --web.listen-address "127.0.0.1:$port" --log.level warn >"$out/exporter.log" 2>&1 &
exp_pid=$!
pids+=("$exp_pid")
started=$(date +%s.%N)

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

for _ in $(seq 100); do
  curl -fs -o /dev/null "$base/-/healthy" && break
  sleep 0.1
done
curl -fs -o /dev/null "$base/-/healthy" || { echo "the exporter did not start:" >&2; cat "$out/exporter.log" >&2; exit 2; }

echo "soak: $digests digests, ${minutes} min, interval $interval / $active, $rps req/s, concurrency $concurrency, scrapes every ${scrape_delay} ms on $conns+$conns connections; output in $out" >&2
# Scrapes for the whole run, the way Prometheus asks (gzip) and plain, each connection pausing
# SOAK_SCRAPE_DELAY_MS between scrapes.
printf 'function delay()\n  return %d\nend\n' "$scrape_delay" >"$out/pace.lua"
wrk -t1 -c"$conns" -d"${duration}s" -s "$out/pace.lua" -H 'Accept-Encoding: gzip' --latency \
  "$base/metrics" >"$out/wrk-gzip.txt" 2>&1 &
pids+=("$!")
wrk -t1 -c"$conns" -d"${duration}s" -s "$out/pace.lua" --latency \
  "$base/metrics" >"$out/wrk-plain.txt" 2>&1 &
pids+=("$!")

echo "elapsed_s,rss_kib,ready" >"$csv"
ready_at=""
ready_rss=""
end=$(awk -v s="$started" -v d="$duration" 'BEGIN { printf "%.3f", s + d }')
while :; do
  now=$(date +%s.%N)
  awk -v n="$now" -v e="$end" 'BEGIN { exit !(n >= e) }' && break
  kill -0 "$exp_pid" 2>/dev/null || { echo "the exporter died:" >&2; tail -20 "$out/exporter.log" >&2; exit 2; }
  rss=$(rss_kib "$exp_pid")
  elapsed=$(awk -v n="$now" -v s="$started" 'BEGIN { printf "%.1f", n - s }')
  ready=0
  if [ -z "$ready_at" ]; then
    if curl -fs -o /dev/null "$base/-/ready"; then
      ready=1
      ready_at=$elapsed
      ready_rss=$rss
      echo "first full polling round done after ${elapsed}s, RSS ${rss} KiB" >&2
    fi
  else
    ready=1
  fi
  echo "$elapsed,$rss,$ready" >>"$csv"
  sleep 1
done

# What the exporter counted, before it stops.
curl -fs "$base/metrics" >"$out/final-metrics.txt" || true
kill "$exp_pid" 2>/dev/null || true
wait "$exp_pid" 2>/dev/null || true
sleep 0.5
kill "$sim_pid" 2>/dev/null || true
wait "$sim_pid" 2>/dev/null || true
for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
trap - EXIT

echo
echo "=== wrk (gzip)"; grep -E 'Requests/sec|Latency|requests in|Non-2xx|Socket errors|99%' "$out/wrk-gzip.txt" || cat "$out/wrk-gzip.txt"
echo "=== wrk (plain)"; grep -E 'Requests/sec|Latency|requests in|Non-2xx|Socket errors|99%' "$out/wrk-plain.txt" || cat "$out/wrk-plain.txt"
echo "=== exporter counters"
grep -E '^sas_exporter_api_request(s|_errors)_total' "$out/final-metrics.txt" || true
echo "=== simulator"; cat "$out/simulator.err"
if [ -s "$out/exporter.log" ]; then
  echo "=== exporter log: $(wc -l <"$out/exporter.log") lines (warn and above); first 5:"
  head -5 "$out/exporter.log"
fi

first=$(awk -F, 'NR == 2 { print $2 }' "$csv")
last=$(awk -F, 'END { print $2 }' "$csv")
max=$(awk -F, 'NR > 1 && $2 > m { m = $2 } END { print m }' "$csv")
samples=$(( $(wc -l <"$csv") - 1 ))
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR ? a[int((NR + 1) / 2)] : "") }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f%%", (a - b) / b * 100 }'; }
echo "=== RSS ($samples samples, $csv)"
echo "first ${first} KiB, after the first full round ${ready_rss:-?} KiB (at ${ready_at:-?}s), last ${last} KiB, max ${max} KiB"
if [ -z "$ready_rss" ]; then
  echo "verdict: unknown (the first polling round never finished)"
  exit 1
fi
# Single samples swing with the scrape buffers in use at that second, so the verdict compares
# medians: the first $window s after the first full round against the last $window s.
ref_med=$(awk -F, -v r="$ready_at" -v w="$window" 'NR > 1 && $1 >= r && $1 < r + w { print $2 }' "$csv" | median)
ref_max=$(awk -F, -v r="$ready_at" -v w="$window" 'NR > 1 && $1 >= r && $1 < r + w { print $2 }' "$csv" | sort -n | tail -1)
last_med=$(tail -n "$window" "$csv" | cut -d, -f2 | median)
last_max=$(tail -n "$window" "$csv" | cut -d, -f2 | sort -n | tail -1)
echo "single samples: last vs. after the first full round $(pct "$last" "$ready_rss")"
echo "median of the first ${window}s after the first full round ${ref_med} KiB (max ${ref_max}), of the last ${window}s ${last_med} KiB (max ${last_max}): $(pct "$last_med" "$ref_med")"
verdict=$(awk -v l="$last_med" -v r="$ref_med" 'BEGIN { d = (l - r) / r; print (d <= 0.10 ? (d >= -0.10 ? "flat" : "shrinking") : "growing") }')
echo "verdict: $verdict"
[ "$verdict" != growing ]
