#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for a bounded time and prints executions and findings.
# Not part of the normal test run.
#
#   scripts/fuzz.sh                    # every target, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh parse_response signer
#
# Knobs: FUZZ_SECONDS (per target, default 60), FUZZ_TIMEOUT (seconds one input may take before
# it counts as a hang, default 10), FUZZ_RSS_MB (memory limit, default 2048).
# cargo-fuzz needs nightly-only compiler flags; on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks
# them. New corpus entries go to fuzz/corpus/<target>, findings to fuzz/artifacts/<target>
# (both ignored by git); fuzz/seeds/<target> holds the checked-in starting inputs.
# Exits 1 if any target crashed, leaked, hung or panicked.
set -uo pipefail
cd "$(dirname "$0")/../fuzz" || exit 2

secs=${FUZZ_SECONDS:-60}
hang=${FUZZ_TIMEOUT:-10}
rss=${FUZZ_RSS_MB:-2048}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked || exit 2
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

echo "building ${targets[*]}" >&2
for t in "${targets[@]}"; do
  cargo fuzz build "$t" || exit 2
done

summary=()
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  dirs=("corpus/$t")
  [ -d "seeds/$t" ] && dirs+=("seeds/$t")
  before=$(find "artifacts/$t" -type f | wc -l)
  log="artifacts/$t/last-run.log"
  echo "=== $t: ${secs}s" >&2
  cargo fuzz run "$t" "${dirs[@]}" -- \
    -max_total_time="$secs" -timeout="$hang" -rss_limit_mb="$rss" \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  peak=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  corpus=$(find "corpus/$t" -type f | wc -l)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  findings=$(( $(find "artifacts/$t" -type f ! -name last-run.log | wc -l) - before ))
  [ "$findings" -lt 0 ] && findings=0
  if [ $rc -ne 0 ]; then
    failed=1
    [ "$findings" -eq 0 ] && findings=1
    echo "--- $t FAILED (exit $rc); the end of its log:" >&2
    tail -60 "$log" >&2
    find "artifacts/$t" -type f -newer "$log" ! -name last-run.log -printf '  finding: %p\n' >&2 || true
  fi
  summary+=("$(printf '%-16s %6ss %12s execs %9s execs/s  cov %6s  corpus %6s  peak %5s MB  findings %s' \
    "$t" "$secs" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$corpus" "${peak:-?}" "$findings")")
done

echo
echo "fuzz summary ($(date -u +%Y-%m-%dT%H:%M:%SZ), rustc $(rustc --version | cut -d' ' -f2)):"
printf '%s\n' "${summary[@]}"
exit $failed
