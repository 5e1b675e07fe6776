#!/usr/bin/env bash
# The mini benchmark: render the procedural mini set (10 classes x 40 objects x 50 views, 64 px), train and
# evaluate every method of `3die methods` with the `mini` preset and the same seed, then merge the rows into
# manifests/leaderboards/mini.csv with its figures and the dataset manifest (docs/mini.md).
#
# Every stage resumes: run the script again after an interruption and it finishes the work. Methods run
# PARALLEL at a time (default 2, one thread each, which keeps 2 cores busier than one run with 2 threads).
#
#   scripts/mini_benchmark.sh                    # everything, about 1 hour 50 minutes on 2 CPU cores
#   METHODS="sie vicreg" scripts/mini_benchmark.sh
#
# The other variables (OUT, CLASSES, PER_CLASS, VIEWS, SIZE, PRESET) size a smaller version of the same
# pipeline, as the tests do; it then needs BOARD, a leaderboard CSV of its own. A method that fails does not
# stop the others: the rows of those that finished are merged, then the script exits 1 naming it.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-.venv/bin}
PARALLEL=${PARALLEL:-2}
case "$PARALLEL" in
    '' | *[!0-9]* | 0) echo "Error: PARALLEL=$PARALLEL: give the number of methods to run at once, 1 or more" >&2; exit 2 ;;
esac
SIZING="${OUT-}${CLASSES-}${PER_CLASS-}${VIEWS-}${SIZE-}${PRESET-}"
if [ -n "$SIZING" ] && [ -z "${BOARD-}" ]; then  # the committed leaderboard holds the mini benchmark only
    echo "Error: OUT, CLASSES, PER_CLASS, VIEWS, SIZE or PRESET set: give BOARD, a leaderboard CSV of its own" >&2
    exit 2
fi
OUT=${OUT:-out/mini}
BOARD=${BOARD:-manifests/leaderboards/mini.csv}
CLASSES=${CLASSES:-airplane,bench,bookshelf,bottle,car,chair,guitar,lamp,mug,table}
PER_CLASS=${PER_CLASS:-40}
VIEWS=${VIEWS:-50}
SIZE=${SIZE:-64}
PRESET=${PRESET:-mini}
METHODS=${METHODS:-$("$BIN/python" -c 'import sie_models; print(" ".join(sie_models.list_methods()))')}
DATA="$OUT/mini$SIZE.h5"

"$BIN/3die" render --out "$OUT/data" --classes "$CLASSES" --per-class "$PER_CLASS" --views "$VIEWS" \
    --size "$SIZE" --quality fast --workers 2
"$BIN/3die" check "$OUT/data" --workers 2 > "$OUT/check.txt" || { cat "$OUT/check.txt"; exit 1; }
if [ ! -f "$DATA" ] || [ -e "$DATA.partial" ]; then  # packed once; an interrupted pack is finished
    "$BIN/3die" pack "$OUT/data" --out "$DATA" --size "$SIZE" --raw
fi

mkdir -p "$OUT/rows"
rm -f "$OUT/failed.txt"
export BIN OUT PRESET DATA
# shellcheck disable=SC2016
printf '%s\n' $METHODS | xargs -P "$PARALLEL" -I{} env OMP_NUM_THREADS=1 bash -c \
    '"$BIN/3die" benchmark --method {} --preset "$PRESET" --data "$DATA" --out "$OUT" \
        --leaderboard "$OUT/rows/{}.csv" --no-progress > "$OUT/{}.log" 2>&1 \
        && tail -n 4 "$OUT/{}.log" || { echo "{} failed: see $OUT/{}.log"; echo {} >> "$OUT/failed.txt"; }'

mkdir -p "$(dirname "$BOARD")"
rows=("$OUT"/rows/*.csv)
if [ -e "${rows[0]}" ]; then
    "$BIN/3die" leaderboard "${rows[@]}" --out "$BOARD" --plot "${BOARD%.csv}"
    cp "$OUT/data/manifest.json" "${BOARD%.csv}/dataset_manifest.json"
    cp "$OUT/data/objects.csv" "${BOARD%.csv}/dataset_objects.csv"
fi
if [ -s "$OUT/failed.txt" ]; then
    echo "Error: $(sort "$OUT/failed.txt" | tr '\n' ' ')failed (logs: $OUT/METHOD.log); rerun the script to retry them" >&2
    exit 1
fi
