#!/usr/bin/env bash
# The real preset on one 8-GPU node with a validation split of the real size (issue 15), for a
# machine that reaches no hub: the embedded corpus is tokenized with the preset's tokenizer
# settings, its validation tokens are tiled to the sp1024 split's 62,021,632 targets
# (tools/tile_val.py: eval cost depends on the window count, not the text), and snakemake runs the
# whole preset on that data for one seed, detached, logging to results/x8/run.log.
#
#   bash bench/x8_record.sh            # prepare the data, start the run detached, return
#   bash bench/x8_record.sh --status   # the run's last lines and the stage timings so far
#
# What to read afterwards: results/logs/train/*/seed1337.log (ms/step at 8 GPUs, steps in 600 s,
# outside_timed_window), results/benchmarks/*/ (each stage's wall time, compile included),
# results/export/*/seed1337/size.json (the gate), and the audit verdicts in the eval JSONs.
set -euo pipefail
cd "$(dirname "$0")/.."
out=results/x8
if [ "${1:-}" = "--status" ]; then
    tail -n 20 "$out/run.log"
    for f in results/benchmarks/*/*/seed*.tsv; do [ -f "$f" ] && printf '%s\t%s\n' "$f" "$(tail -n 1 "$f" | cut -f1)"; done
    exit 0
fi
mkdir -p "$out"
preset=config/fineweb-8xh100.yaml
printf 'seeds: [1337]\ndata:\n  source: docs\n' > "$out/docs.yaml"
snakemake --cores all --configfile "$preset" "$out/docs.yaml" --until data_docs
src=$(dirname "$(ls -t results/data/*/manifest.json | head -n 1)")
python tools/tile_val.py "$src" "$out/fullval"
cat > "$out/fullval.yaml" <<YAML
# Only the data source and the seed differ from $preset.
seeds: [1337]
data:
  source: local
  local:
    path: $PWD/$out/fullval
    tokenizer: $PWD/$out/fullval/tokenizer.model
YAML
setsid nohup snakemake --cores all --configfile "$preset" "$out/fullval.yaml" >"$out/run.log" 2>&1 </dev/null &
echo "started (pid $!): bash bench/x8_record.sh --status"
