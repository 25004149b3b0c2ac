#!/usr/bin/env bash
# GPU proof of issue 25 on ONE GPU: `snakemake byo` runs an upstream record's own train_gpt.py,
# unchanged, at a reduced budget (config/byo-gpu-smoke-*.yaml), then `pgolf validate` checks the
# record folder it assembles. Needs the record folders under records/track_10min_16mb/ (copied
# from the challenge's repository or the corpus) and, on a machine without network, WHEELS=DIR
# holding snakemake, brotli, python-minifier and sentencepiece 0.2.1 wheels.
#
#   WHEELS=.whl bash bench/byo_frontier_gpu.sh 1.0611     # or 549, or preflight
#
# Prints the wall times and, side by side, the size lines of the log and of check.json.
set -uo pipefail
cd "$(dirname "$0")/.."
which=${1:-1.0611}
out=${BYO_BENCH_OUT:-bench/logs/byo}
mkdir -p "$out"
if [ -n "${WHEELS:-}" ]; then
    [ -x /tmp/site/bin/snakemake ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD/src PATH=/tmp/site/bin:$PATH
    # The `pgolf` command without `pip install -e .` (no build tools needed).
    printf '#!/usr/bin/env python3\nimport sys\nfrom pgolf.cli import main\nsys.exit(main())\n' > /tmp/site/bin/pgolf
    chmod +x /tmp/site/bin/pgolf
else
    export PYTHONPATH=$PWD/src
fi
echo "== $(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1), $(date -u +%FT%TZ), torch $(python3 -c 'import torch; print(torch.__version__)')"

elapsed() { python3 -c "import time; print(f'{time.time() - $1:.1f}')"; }

if [ "$which" = preflight ]; then
    # The plain preset on a machine without FA3 and lrzip: stops before any job, one line each.
    t0=$(date +%s.%N)
    # (the preset's docs path points at the challenge's docs: the embedded corpus stands in)
    printf 'data:\n  docs:\n    path: data/corpus/embedded.jsonl.xz\n' > /tmp/byo_docs.yaml
    timeout 120 snakemake -n --cores all byo --configfile config/byo-1.0611.yaml /tmp/byo_docs.yaml > "$out/preflight_1.0611.log" 2>&1
    echo "preflight (rc $?, $(elapsed "$t0") s):"
    grep -E "^preflight: FAIL|^config error" "$out/preflight_1.0611.log"
    exit 0
fi

case "$which" in
    1.0611) configs="config/byo-1.0611.yaml config/byo-gpu-smoke-1.0611.yaml" ;;
    549) configs="config/byo-549.yaml config/byo-gpu-smoke-549.yaml" ;;
    *) echo "usage: $0 1.0611|549|preflight" >&2; exit 2 ;;
esac
t0=$(date +%s.%N)
# EXTRA_CONFIGS: more overlays after the smoke one (e.g. a shorter training cap).
# Each line stamped with the wall clock, so a run cut off by the device's 10-minute limit still
# says where its time went.
snakemake --cores all byo --configfile $configs ${EXTRA_CONFIGS:-} 2>&1 \
    | python3 -u -c 'import sys, time; [print(time.strftime("%H:%M:%S"), line, end="", flush=True) for line in sys.stdin]' \
    > "$out/snakemake_$which.log"
rc=${PIPESTATUS[0]}
echo "snakemake byo $which: rc $rc, $(elapsed "$t0") s"
[ $rc -eq 0 ] || { tail -n 40 "$out/snakemake_$which.log"; }
for check in results/byo/*/seed*/check.json; do
    [ -f "$check" ] || continue
    seed_dir=$(dirname "$check")
    echo "-- $seed_dir"
    grep -E "^(Code size|Serialized model|Total submission size|stopping_early|byo: attention_fallback)" "$seed_dir/train.log"
    python3 - "$check" "$seed_dir/run.json" <<'PY'
import json, sys
c, r = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
s, m = c["size"], c["metrics"]
print(f"check.json: code {s['code_bytes']} ({s['code_size_convention']}: {s['code_size_how']}) + model {s['model_bytes']} = {s['total_bytes']} bytes")
print(f"{m['final_label']} val_bpb {m['final_val_bpb']}; train {c['times']['train']['seconds']} s, eval {c['times']['eval']['seconds']} s; wall {r['wallclock_s']} s; fallback {r['attention_fallback']}")
PY
done
for rec in results/records/*/*/; do
    [ -f "$rec/submission.json" ] || continue
    v="$out/validate_$(basename "$rec").txt"
    pgolf validate "$rec" > "$v" 2>&1
    echo "pgolf validate $rec: rc $?"
    tail -n 5 "$v"
done
