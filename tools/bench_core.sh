#!/usr/bin/env bash
# Core throughput, both sides in one run (developer tool, never run by CI): the Rust bench
# (`benches/core_throughput.rs`, which also writes the shared corpus to target/bench-corpus/),
# then the reference Python functions on the same corpus (`tools/bench_reference.py`), which
# prints the side-by-side table. Results are recorded in docs/benchmarks.md.
#
# Usage: tools/bench_core.sh --vilasr-repo PATH --vilavt-repo PATH [--python PY] [--runs N]
#   --python  interpreter with pillow==12.3.0, numpy, torch, rouge_score, math-verify
#             (default: /tmp/benchvenv/bin/python, or $BENCH_PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."

py="${BENCH_PYTHON:-/tmp/benchvenv/bin/python}"
vilasr="" vilavt="" runs=""
while [ $# -gt 0 ]; do
    case "$1" in
        --vilasr-repo) vilasr="$2"; shift 2 ;;
        --vilavt-repo) vilavt="$2"; shift 2 ;;
        --python) py="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ -n "$vilasr" ] && [ -n "$vilavt" ] || { echo "usage: $0 --vilasr-repo PATH --vilavt-repo PATH [--python PY] [--runs N]" >&2; exit 2; }
[ -x "$py" ] || { echo "no Python at $py (see tools/bench_reference.py for the venv setup)" >&2; exit 2; }

corpus="${CARGO_TARGET_DIR:-target}/bench-corpus"
echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/^Mem:/{print $2}') GiB; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== $(rustc --version)"
echo "== Rust (cargo bench --no-default-features --bench core_throughput)"
cargo bench --no-default-features --bench core_throughput -- --out "$corpus" ${runs:+--runs "$runs"}
# Rendering allocates one 0.6–1.1 MB observation per group; how much of that is page faults
# depends on the allocator's state, so also time it alone in a fresh process.
cargo bench --no-default-features --bench core_throughput -- --only render ${runs:+--runs "$runs"} 2>&1 | grep 'alone'
echo
echo "== reference ($py tools/bench_reference.py)"
"$py" tools/bench_reference.py --vilasr-repo "$vilasr" --vilavt-repo "$vilavt" --corpus "$corpus" ${runs:+--runs "$runs"}
