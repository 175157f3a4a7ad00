#!/usr/bin/env bash
# Restart/replay determinism and the soak, through the netrun CLI: soak_test.sh CASE
#   replay  trains tests/soak/replay_net.prototxt (a replicated Python data layer, a
#           checker of the batch sequence, a learnable Python parameter) undisturbed, then
#           with workers SIGKILLed (a) from inside at pseudo-random call numbers for a few
#           seeds and (b) from outside by a loop that kills a random netrun-worker child of
#           the run; each disturbed run (--py-restarts large) must end with a .caffemodel
#           byte-identical to the undisturbed one.
#   soak    `netrun test` on a chain of cheap Python layers (replicated data layer emitting
#           its batch index, checker, identities) for SOAK_CALLS Python-layer calls (default
#           1000000, as bench/soak/run) while a
#           loop SIGKILLs a random worker every SOAK_KILL_MS ms (default 300); asserts that
#           the checker saw every batch once in order, that the core's VmRSS and fd count are
#           flat (first sample after warm-up vs. last), no /dev/shm entry and no process left.
#           With SOAK_TSV=1 it also prints bench/run rows on stdout; SOAK_KEEP_LOG=PATH keeps
#           netrun's stderr there.
# After every run: no process of its session left, no new /dev/shm entry (as tests/e2e_py).
set -u
: "${NETRUN:?}" "${NR_SOURCE_DIR:?}"
HERE="$NR_SOURCE_DIR/tests/soak"
# $WORK (the current directory), fail, check_clean, shm_list, session_left, workers_of
# shellcheck source=../lib/cli_test.sh
. "$NR_SOURCE_DIR/tests/lib/cli_test.sh"
cp "$HERE/soak_layers.py" .
log() { echo "soak: $*" >&2; }

# killer PID MS [MAX]: every ~MS ms (random 0.5..1.5 x MS) SIGKILLs one random worker child
# of PID (any: one still starting, or being set up again after a restart, too) and appends
# its pid to $WORK/kills; also samples PID's VmRSS (kB) and fd count into $WORK/samples
# ("seconds rss fds"). Ends when PID is gone. It kills again only once the run has logged
# the restart of the previous kill (at most one death outstanding), and after MAX kills (if
# given) it only samples: on a loaded machine a worker's start can take longer than MS, and
# a killer that outpaces the restarts starves the run instead of testing it.
killer() {
  local pid=$1 ms=$2 max=${3:-0} t0=$SECONDS
  : > "$WORK/kills"; : > "$WORK/samples"
  while kill -0 "$pid" 2>/dev/null; do
    local d=$(( ms / 2 + RANDOM % (ms + 1) ))
    sleep "$(printf '%d.%03d' $((d / 1000)) $((d % 1000)))"
    local rss fds
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || break
    fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
    [ -n "$rss" ] && echo "$((SECONDS - t0)) $rss $fds" >> "$WORK/samples"
    [ "$ms" -gt 0 ] || continue
    [ "$max" = 0 ] || [ "$(wc -l < "$WORK/kills")" -lt "$max" ] || continue
    [ "$(grep -c 'restarting Python worker' "$WORK/err")" -ge "$(wc -l < "$WORK/kills")" ] || continue
    local ws; mapfile -t ws < <(workers_of "$pid")
    [ "${#ws[@]}" -gt 0 ] || continue
    local v=${ws[RANDOM % ${#ws[@]}]}
    kill -KILL "$v" 2>/dev/null && echo "$v" >> "$WORK/kills"
  done
}

# run WANT KILL_MS[/MAX] CMD...: CMD as the leader of a new session (stdout/stderr in
# out/err); with KILL_MS > 0 the killer runs beside it (KILL_MS = 0: samples only; MAX: at
# most that many kills).
run() {
  local want=$1 ms=${2%/*} max=0
  case $2 in */*) max=${2#*/} ;; esac
  shift 2
  local before; before=$(shm_list)
  setsid "$@" >"$WORK/out" 2>"$WORK/err" &
  local pid=$!
  local kp=""
  if [ "$ms" != "-" ]; then killer "$pid" "$ms" "$max" & kp=$!; fi
  wait "$pid"; local got=$?
  [ -n "$kp" ] && wait "$kp"
  [ "$got" = "$want" ] || fail "'$*' exited $got, expected $want; stderr: $(tail -c 3000 "$WORK/err")"
  sleep 0.2
  check_clean "$pid" "$before" "$*"
}

restarts_in_err() { grep -c 'restarting Python worker' "$WORK/err"; }

case_replay() {
  local iters=${REPLAY_ITERS:-300}
  sed "s/@ITERS@/$iters/" "$HERE/replay_solver.prototxt" > solver.prototxt
  sed -e "s|@KILL@|seed=@SEED@,p=0.02,done=$WORK/done,arm=$WORK/arm|" \
      -e "s|@STATE@|$WORK/state|" "$HERE/replay_net.prototxt" > net.tmpl
  local model=snap/r_iter_$iters.caffemodel
  # undisturbed (kills not armed), per seed since the seed is in the prototxt
  for seed in 1 2 3; do
    sed "s|@SEED@|$seed|g" net.tmpl > net.prototxt
    rm -rf snap state done* arm; mkdir snap
    run 0 - "$NETRUN" --py-workers 2 train --solver solver.prototxt
    cp "$model" straight$seed.caffemodel
    # Caffe's Solve() ends with one more forward (the final loss line): iters + 1 batches
    [ "$(cat state)" = "$iters" ] || fail "undisturbed: the last batch seen is $(cat state), not $iters"
    # kills from inside the layers, at call numbers drawn from the seed
    rm -rf snap state done*; mkdir snap; touch arm
    run 0 - "$NETRUN" --py-workers 2 --py-restarts 1000 train --solver solver.prototxt
    local k; k=$(cat done* 2>/dev/null | grep -c '^k')
    local r; r=$(restarts_in_err)
    log "replay seed $seed: $k kills from inside, $r restarts"
    # (restarts can be fewer than kills: a data replica prefetching past the last batch may
    # die while the run ends, with no restart needed)
    [ "$k" -ge 1 ] && [ "$r" -ge 1 ] || fail "seed $seed: $k kills, $r restarts"
    [ "$(cat state)" = "$iters" ] || fail "seed $seed: the last batch seen is $(cat state)"
    cmp -s "straight$seed.caffemodel" "$model" ||
      fail "seed $seed: training through $k worker kills gave other weights than an undisturbed run"
  done
  # a worker that dies while its layers are set up again after a restart (twice in a row):
  # each death is one more restart, the weights still the undisturbed ones (seed 3's)
  sed "s|@SEED@|3|g" net.tmpl | sed "s|,arm=|,setups=$WORK/setups,setupkill=2,arm=|" > net.prototxt
  rm -rf snap state done* setups* arm; mkdir snap
  run 0 - "$NETRUN" --py-workers 2 train --solver solver.prototxt
  cp "$model" straight_s.caffemodel
  rm -rf snap state done* setups*; mkdir snap; touch arm
  run 0 - "$NETRUN" --py-workers 2 --py-restarts 1000 train --solver solver.prototxt
  grep -q 'while its layers were set up again' "$WORK/err" ||
    fail "no restart while set up again: $(grep -c restarting "$WORK/err") restarts"
  log "replay, deaths while set up again: $(grep -c 'while its layers were set up again' "$WORK/err") of $(restarts_in_err) restarts"
  cmp -s straight_s.caffemodel "$model" ||
    fail "training through deaths while set up again gave other weights than an undisturbed run"
  # with too few restarts: one clear error, not a hang (no --py-timeout), nothing left
  rm -rf snap state done* setups*; mkdir snap; touch arm
  run 1 - "$NETRUN" --py-workers 2 --py-restarts 2 train --solver solver.prototxt
  grep -q 'setting layers up again after a restart: .*soak_layers\.[A-Za-z]*\.setup' "$WORK/err" ||
    fail "restarts exhausted while set up again: $(tail -c 2000 "$WORK/err")"
  # kills from outside: a random worker child of the run every ~100 ms (one starting or
  # being set up again included), at most REPLAY_OUTSIDE_KILLS (80), through a longer run
  # (its own undisturbed reference). SOAK_OUTSIDE=0 leaves it out.
  [ "${SOAK_OUTSIDE:-1}" = 1 ] || return 0
  iters=${REPLAY_OUTSIDE_ITERS:-1500}
  model=snap/r_iter_$iters.caffemodel
  sed "s/@ITERS@/$iters/" "$HERE/replay_solver.prototxt" > solver.prototxt
  sed "s|@SEED@|1|g" net.tmpl > net.prototxt
  rm -rf snap state done* arm; mkdir snap
  run 0 - "$NETRUN" --py-workers 2 train --solver solver.prototxt
  cp "$model" straight.caffemodel
  rm -rf snap state; mkdir snap
  # (a kill every ~REPLAY_KILL_MS ms: longer than a worker's restart, or a run whose every
  # new worker dies before it is set up never ends; sanitizer builds start workers in
  # 200-300 ms and set 1000)
  run 0 "${REPLAY_KILL_MS:-100}/${REPLAY_OUTSIDE_KILLS:-80}" "$NETRUN" --py-workers 2 --py-restarts 100000 train --solver solver.prototxt
  local k; k=$(wc -l < kills)
  local r; r=$(restarts_in_err)
  log "replay, outside kills: $k SIGKILLs sent, $r restarts, $iters iterations"
  [ "$r" -ge 1 ] || fail "outside kills: no restart happened ($k kills sent)"
  [ "$(cat state)" = "$iters" ] || fail "outside kills: the last batch seen is $(cat state)"
  cmp -s straight.caffemodel "$model" ||
    fail "training through $r restarts (outside kills) gave other weights than an undisturbed run"
}

case_soak() {
  local calls=${SOAK_CALLS:-1000000} ms=${SOAK_KILL_MS:-300} nid=4
  # calls per iteration: data + check + identities
  local iters=$(( (calls + nid + 1) / (nid + 2) ))
  { sed "s|@STATE@|$WORK/state|" "$HERE/soak_net.prototxt"
    for i in $(seq 1 $nid); do
      echo "layer { name: \"id$i\" type: \"Python\" bottom: \"x$((i - 1))\" top: \"x$i\""
      echo "  python_param { module: \"soak_layers\" layer: \"Ident\" } }"
    done; } > soak.prototxt
  rm -f state
  local t0; t0=$(date +%s.%N)
  run 0 "$ms" "$NETRUN" --py-workers 2 --py-restarts 1000000000 test --model soak.prototxt --iterations "$iters"
  local t1; t1=$(date +%s.%N)
  local secs; secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  local k; k=$(wc -l < kills)
  local r; r=$(restarts_in_err)
  [ -n "${SOAK_KEEP_LOG:-}" ] && cp "$WORK/err" "$SOAK_KEEP_LOG"
  # `netrun test` makes exactly $iters forwards: batches 0 .. iters-1
  local lost; lost=$(grep -c 'lost or duplicated batch' "$WORK/err")
  [ "$(cat state 2>/dev/null)" = $((iters - 1)) ] ||
    fail "the checker's last batch is $(cat state 2>/dev/null), expected $((iters - 1))"
  local n; n=$(wc -l < samples)
  # the first sample after warm-up (a quarter of the samples in) against the largest one
  # after it (not the last: that one may be taken while netrun exits and closes its fds)
  local rss0 fd0 rss1 fd1
  read -r rss0 fd0 rss1 fd1 < <(awk -v w=$(( n / 4 + 1 )) 'NR == w { r0 = $2; f0 = $3 }
    NR >= w { if ($2 > r1) r1 = $2; if ($3 > f1) f1 = $3 } END { print r0, f0, r1, f1 }' samples)
  log "soak: $((iters * (nid + 2))) Python-layer calls ($iters iterations) in $secs s, $k SIGKILLs sent, $r restarts; core VmRSS $rss0 -> at most $rss1 kB, fds $fd0 -> at most $fd1 ($n samples)"
  [ "$r" -ge 1 ] || fail "no restart happened ($k kills sent)"
  # flat: at most 4 MB + 5 % more RSS, at most 2 more fds (a worker being restarted)
  [ "$rss1" -le $(( rss0 + 4096 + rss0 / 20 )) ] || fail "core RSS grew: $rss0 -> $rss1 kB"
  [ "$fd1" -le $(( fd0 + 2 )) ] || fail "core fds grew: $fd0 -> $fd1"
  if [ "${SOAK_TSV:-0}" = 1 ]; then
    local cps; cps=$(awk -v c=$((iters * (nid + 2))) -v s="$secs" 'BEGIN { printf "%.0f", c / s }')
    printf 'soak\tPython-layer calls through kills\tcalls/s\thigher\t%s\t\t\t\t\t\t%d calls, %d SIGKILLs, %d restarts, %s s\n' "$cps" $((iters * (nid + 2))) "$k" "$r" "$secs"
    printf 'soak\t  core VmRSS growth\tkB\tlower\t%d\t\t\t\t\t\t%d -> at most %d kB\n' $((rss1 - rss0)) "$rss0" "$rss1"
    printf 'soak\t  core fd growth\tfds\tlower\t%d\t\t\t\t\t\t%d -> at most %d\n' $((fd1 - fd0)) "$fd0" "$fd1"
    if [ "$lost" = 0 ] && [ "$(cat state 2>/dev/null)" = $((iters - 1)) ]; then
      printf 'soak\t  lost or duplicated batches\tbatches\tlower\t0\t\t\t\t\t\t%d batches checked in order\n' "$iters"
    else
      printf 'soak\t  lost or duplicated batches\tbatches\tlower\tFAILED: %s\n' "$(grep -o 'batch [0-9]* after batch [0-9]*' "$WORK/err" | head -n 1)"
    fi
  fi
}

case ${1:-} in
  replay) case_replay ;;
  soak) case_soak ;;
  *) echo "usage: soak_test.sh replay|soak" >&2; exit 2 ;;
esac
[ "$failures" = 0 ] || { echo "soak_test.sh $1: $failures failure(s)" >&2; exit 1; }
echo "soak_test.sh $1: ok" >&2
