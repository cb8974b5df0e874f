#!/bin/bash
# Wall time of each notebook in one profile, two notebooks at a time with one thread each (this machine has 2 cores).
#   bash benchmarks/notebook_times.sh cpu            # -> outputs/times-cpu/times.txt and the executed copies
# The lanes share one (fresh) output folder, as ./course.sh run does, so 06 and 07 read 05's best w and the trilemma rows.
set -u
PROFILE=${1:-cpu}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/outputs/times-$PROFILE}
# A fresh folder every time: a checkpoint left by an earlier run would load instead of training (03's
# denoisers, 01's VAE and GAN, the students' models), and the times would leave those trainings out.
if [ -e "$OUT" ]; then
  [ -f "$OUT/times.txt" ] || { echo "refusing to empty $OUT: not a notebook_times output folder" >&2; exit 2; }
  rm -rf "$OUT"
fi
mkdir -p "$OUT/nb"
: > "$OUT/times.txt"
lane() {
  for nb in "$@"; do
    t0=$(date +%s.%N)
    COURSE_PROFILE=$PROFILE PYTHONHASHSEED=0 OMP_NUM_THREADS=1 COURSE_OUTPUT=$OUT \
      "$ROOT/.venv/bin/jupyter" nbconvert --to notebook --execute --output-dir "$OUT/nb" "$ROOT/notebooks/$nb.ipynb" \
      > "$OUT/$nb.log" 2>&1
    rc=$?
    echo "$nb rc=$rc $(echo "$(date +%s.%N) - $t0" | bc) s" >> "$OUT/times.txt"
  done
}
lane 04_time_conditioning 00_setup 01_vae_recap 02_forward_process &
lane 05_class_conditioning_cfg 03_unet_denoiser 06_ddim 07_latent_diffusion &
wait
sort "$OUT/times.txt"
