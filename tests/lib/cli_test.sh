# Shared helpers of the scripts that test netrun through its CLI (tests/e2e/cli_test.sh,
# tests/data/data_e2e.sh, and with Python workers tests/e2e_py/py_test.sh,
# tests/faults/fault_matrix.sh, tests/soak/soak_test.sh). Source it; it creates $WORK (a temporary directory removed at exit), changes into it and sets
# failures=0. Every run is the leader of a session of its own, so that afterwards "nothing
# of that session is alive" means the run left no process behind, workers included.

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK" || exit 1
failures=0

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# /dev/shm entries, minus names other programs on a shared machine are known to make.
shm_list() { ls -A /dev/shm 2>/dev/null | grep -Ev '^(torch_|__KMP_REGISTERED_LIB|sem\.mp-|psm_|vader_segment\.|sm_segment\.)' | sort; }

# Processes still in session $1 (pid, state, command), zombies excluded.
session_left() { ps -o pid=,stat=,args= -s "$1" 2>/dev/null | awk '$2 !~ /^Z/'; }

# Netrun-worker children of PID (the workers of that run only; never matched by name
# machine-wide).
workers_of() { ps --ppid "$1" -o pid=,comm= 2>/dev/null | awk '$2 ~ /^netrun-worker/ { print $1 }'; }

# run EXPECTED_STATUS CMD...: runs CMD (EXPECTED_STATUS "any": the caller checks $run_status) as the leader of a new session, keeps stdout/stderr
# in $WORK/out, $WORK/err and its wall time, start to exit, in run_ms; then checks the exit
# status, that nothing of the session is left and that /dev/shm has no new entry. CMD reads
# run's standard input (`run 0 netrun upgrade - < FILE`).
run() {
  local want=$1; shift
  local before; before=$(shm_list)
  local t0; t0=$(date +%s%N)
  setsid -w "$@" <&0 >"$WORK/out" 2>"$WORK/err" &
  local sid=$!
  wait "$sid"
  local got=$?
  run_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  run_status=$got
  [ "$want" = any ] || [ "$got" = "$want" ] ||
    fail "'$*' exited $got, expected $want; stderr: $(tail -c 3000 "$WORK/err")"
  check_clean "$sid" "$before" "$*"
}

check_clean() { # SID SHM_BEFORE WHAT
  # a sanitizer report (core or worker: both write to this stderr) fails the case even when
  # the exit status was the expected 1
  ! grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$WORK/err" ||
    fail "'$3': sanitizer report: $(grep -A20 -E 'Sanitizer|runtime error:' "$WORK/err" | head -c 3000)"
  local left; left=$(session_left "$1")
  [ -z "$left" ] || fail "'$3' left processes behind: $left"
  local new; new=$(comm -13 <(echo "$2") <(shm_list))
  [ -z "$new" ] || fail "'$3' left new /dev/shm entries: $new"
}

expect_err() { grep -qF -- "$1" "$WORK/err" || fail "stderr lacks '$1': $(tail -c 3000 "$WORK/err")"; }
expect_out() { grep -qF -- "$1" "$WORK/out" || fail "stdout lacks '$1': $(tail -c 3000 "$WORK/out")"; }
reject_err() { ! grep -qF -- "$1" "$WORK/err" || fail "stderr has '$1': $(tail -c 3000 "$WORK/err")"; }
