#!/usr/bin/env bash
# Run a command with CPU hogs beside it: `under_load.sh N COMMAND...` starts `stress-ng --cpu N`
# (N workers that spin on the CPU), runs COMMAND, and stops the hogs afterwards whatever happens
# (COMMAND passed, failed, or the run was interrupted); exits with COMMAND's status.  N = 0 runs
# COMMAND alone.  Production machines are busy: the sandbox suites must hold on a loaded machine too
# (make test-loaded, or LOAD=N on the sandbox-suite targets).  stress-ng comes from Debian's packages
# (scripts/bootstrap.sh installs it).
set -uo pipefail
if [[ $# -lt 2 || ! $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 CPU_WORKERS COMMAND [ARGS...]" >&2
    exit 2
fi
workers=$1
shift
if [[ $workers -eq 0 ]]; then
    exec "$@"
fi
if ! command -v stress-ng >/dev/null; then
    echo "under_load: stress-ng is missing (apt-get install stress-ng, or make venv on a fresh machine)" >&2
    exit 2
fi

# LOAD_NICE=N runs the hogs at that niceness (make test: 19, beside the other chains).  Niced hogs still
# take every cycle the rest leaves, so the CPU stays saturated all along; they only stop taking cycles
# from work that runs beside them (the lab, the sandbox suites), which would otherwise just run longer.
nice_level=${LOAD_NICE:-0}
if [[ ! $nice_level =~ ^[0-9]+$ || $nice_level -gt 19 ]]; then
    echo "under_load: LOAD_NICE must be a niceness from 0 to 19 (got '$nice_level')" >&2
    exit 2
fi
# A session of its own, so the hogs are stopped as one group (the parent and its workers).  A watchdog
# stops them too should this script be killed outright (SIGKILL runs no trap); --timeout is the last net.
# A new session is also a new scheduling group where the kernel groups tasks by session (autogroup,
# /proc/sys/kernel/sched_autogroup_enabled): the CPU is shared between the groups first, and a niceness only
# counts between the tasks of one group.  The hogs' group gets their niceness too, or hogs at niceness 19 alone in
# their group would take a whole group's share from the chains beside them (measured in make test: 342 CPU-s of
# 4,996 in 43 min, while the machine had no idle cycle to give).
# shellcheck disable=SC2016  # expanded by the hogs' own shell
setsid sh -c 'echo "$1" > /proc/self/autogroup 2>/dev/null; shift; exec nice -n "$@"' sh "$nice_level" \
    "$nice_level" stress-ng --cpu "$workers" --timeout 4h --quiet 2>/dev/null &
hog=$!
started=$(date +%s)
script=$$
( trap - EXIT INT TERM; while kill -0 "$script" 2>/dev/null; do sleep 1; done; kill -TERM -- "-$hog" 2>/dev/null ) &
watchdog=$!
# shellcheck disable=SC2317  # called by the EXIT trap
stop_hogs() {
    kill "$watchdog" 2>/dev/null
    if kill -0 "$hog" 2>/dev/null; then
        kill -TERM -- "-$hog" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$hog" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$hog" 2>/dev/null
        wait "$hog" 2>/dev/null
        echo "under_load: CPU hogs stopped after $(( $(date +%s) - started )) s (stress-ng --cpu $workers, pid $hog)"
    fi
}
trap stop_hogs EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
sleep 0.5
if ! kill -0 "$hog" 2>/dev/null; then
    echo "under_load: stress-ng --cpu $workers did not start" >&2
    exit 2
fi
echo "under_load: running under CPU load: stress-ng --cpu $workers at niceness $nice_level (pid $hog) beside: $*"
# The suites' recorder notes it in the report (tests/recorder.py); the hogs' session id is given too.
FOREST_CPU_LOAD="stress-ng --cpu $workers (niceness $nice_level)" FOREST_CPU_HOGS_SESSION=$hog "$@"
status=$?
echo "under_load: the command exited $status after $(( $(date +%s) - started )) s, under stress-ng --cpu $workers"
exit $status
