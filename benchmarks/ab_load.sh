#!/bin/sh
# Alternating A/B of two commits under load (issue 17): this checkout ("new") against REF in a worktree
# ("base"), N pairs of one 12-call level each (the calls start over SPREAD s; 1: a burst), every run recorded
# for benchmarks/answer_waits.py.
#
#   sh benchmarks/ab_load.sh REF [PAIRS=3] [CLIENTS=12] [OUT=build/ab] [SPREAD=15]
#
# Needs the two-turn calls (.venv/bin/python benchmarks/two_turn_clips.py build/two-turn). Prints each run's
# level line and the shared models' waits; OUT/{new,base}-I/ hold the recordings (the first session of each
# is the latency phase's single call; a level re-run "once more" leaves twice the calls). ~2.5-5 min a run.
# 12 calls on 2 cores are noisy: 6 pairs have shown a "4 of 6" effect that 3 more erased; compare >= 9 pairs.
set -e
REF=${1:?usage: sh benchmarks/ab_load.sh REF [PAIRS] [CLIENTS] [OUT] [SPREAD]}
PAIRS=${2:-3}; CLIENTS=${3:-12}; OUT=$(realpath -m "${4:-build/ab}"); SPREAD=${5:-15}
HERE=$(pwd); PY=$HERE/.venv/bin/python; CLIPS=$HERE/build/two-turn
WT=$(mktemp -d /tmp/fullduplex-ab-XXXXXX)
git worktree add -f --detach "$WT" "$REF" >/dev/null
trap 'git -C "$HERE" worktree remove --force "$WT"' EXIT
mkdir -p "$OUT"
i=1
while [ "$i" -le "$PAIRS" ]; do
  for v in new base; do
    root=$HERE; [ "$v" = base ] && root=$WT
    echo "== $v run $i"
    rm -rf "$OUT/$v-$i"
    (cd "$root" && timeout 900 "$PY" benchmarks/server_load.py --agents duplex --clients "$CLIENTS" --repeat 1 --tail 7 \
      --spread "$SPREAD" --clip "$CLIPS/a.wav,$CLIPS/b.wav,$CLIPS/c.wav" --record "$OUT/$v-$i" 2>&1 \
      | grep -E "^ +[0-9]+ +[0-9]+/|llm context|tts (urgent|other)|event loop") || true
  done
  i=$((i + 1))
done
