#!/usr/bin/env bash
# A new user's first minutes on a one-GPU machine (issue 16), timed, with a table last:
#   1. `pip install -e .` keeps the torch that is already installed (2.11 on the lent H200);
#   2. the plain real preset stops in the first minute, with one line saying how to run on one GPU;
#   3. the smoke overlay gives a complete, valid record (bench/gpu_smoke_record.sh).
# WHEELS=DIR installs from a wheel folder with no network (pip --no-index --find-links DIR).
#
#   WHEELS=.whl bash bench/one_gpu_machine.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${PGOLF_CHECK_OUT:-results/one_gpu_machine}
mkdir -p "$out"
torch_version() { python3 -c "import torch; print(torch.__version__)"; }

before=$(torch_version)
t0=$(date +%s.%N)
if [ -n "${WHEELS:-}" ]; then
    # --no-build-isolation: an isolated build would fetch setuptools, and there is no network here.
    python3 -m pip install -q --no-index --find-links "$WHEELS" --no-build-isolation -e . 2>&1 | tail -n 3
else
    python3 -m pip install -q -e . 2>&1 | tail -n 3
fi
install_rc=${PIPESTATUS[0]}
install_s=$(python3 -c "import time; print(f'{time.time() - $t0:.0f}')")
after=$(torch_version)

t0=$(date +%s.%N)
timeout 120 snakemake --cores all --configfile config/fineweb-8xh100.yaml > "$out/real_preset.log" 2>&1
preset_rc=$?
preset_s=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
preset_line=$(grep -m1 '^preflight: ' "$out/real_preset.log" || tail -n 1 "$out/real_preset.log")

t0=$(date +%s.%N)
PGOLF_SMOKE_OUT="$out/smoke" bash bench/gpu_smoke_record.sh > "$out/smoke.log" 2>&1
smoke_rc=$?
smoke_s=$(python3 -c "import time; print(f'{time.time() - $t0:.0f}')")

echo "== one GPU: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1), $(date -u +%F) =="
printf '%-44s %s\n' "pip install -e . (rc $install_rc, ${install_s}s)" "torch $before -> $after"
printf '%-44s %s\n' "real preset (rc $preset_rc, ${preset_s}s)" "$preset_line"
printf '%-44s %s\n' "smoke record (rc $smoke_rc, ${smoke_s}s)" "$(grep -m1 '^wall time' "$out/smoke.log")"
grep -E "^(  \S+ +(ok|fail|warn|info)|final_|ok|record:)" "$out/smoke.log" | sed 's/^/    /' | head -n 20
