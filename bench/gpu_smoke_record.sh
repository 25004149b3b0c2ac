#!/usr/bin/env bash
# One-GPU smoke record (config/gpu-smoke.yaml over the real preset): the real code path at a small
# shape on the embedded corpus (data.source: docs, nothing downloaded), timed, then validated and
# sized. Run from the repository root on a one-GPU machine where snakemake and pgolf are installed
# (e.g. pip install --no-index --find-links WHEELS -e .). Target: under 5 minutes of wall time.
#
#   bash bench/gpu_smoke_record.sh
#
# Prints the wall time and the record path; with $PGOLF_SMOKE_OUT set, copies the record and every log there.
set -euo pipefail
cd "$(dirname "$0")/.."
configs=(config/fineweb-8xh100.yaml config/gpu-smoke.yaml)

nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpus', torch.cuda.device_count())"
pgolf doctor "${configs[@]}"   # the workflow's own preflight, as a table; stops here when it fails

start=$(date +%s.%N)
snakemake --cores all --configfile "${configs[@]}"
end=$(date +%s.%N)

record=$(ls -d results/records/track_non_record_16mb/*_GPUSmoke_NotARecord | sort | tail -n 1)
pgolf size "$record"
pgolf validate "$record"
python3 - "$start" "$end" <<'PY'
import glob, sys
print(f"wall time: {float(sys.argv[2]) - float(sys.argv[1]):.1f} s (snakemake, from the data stage to the record)")
for path in sorted(glob.glob("results/benchmarks/**/*.tsv", recursive=True)):
    with open(path) as f:
        rows = f.read().split("\n")
    print(f"  {path}: {rows[1].split()[0]} s" if len(rows) > 1 and rows[1] else f"  {path}: empty")
PY
echo "record: $record"
if [ -n "${PGOLF_SMOKE_OUT:-}" ]; then
    mkdir -p "$PGOLF_SMOKE_OUT"
    cp -r "$record" "$PGOLF_SMOKE_OUT/record"
    cp -r results/logs results/benchmarks "$PGOLF_SMOKE_OUT/"
fi
