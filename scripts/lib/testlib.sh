# What the end-to-end scripts share, sourced from the repository root:
#
#   cd "$(dirname "$0")/.."
#   TEST_NAME=e2e
#   . scripts/lib/testlib.sh
#   test_init [LAB-PREFIX]          root check, a work dir $work, the cleanup trap; with a prefix,
#                                   MASQ_LAB / MASQ_LAB_DIR default to it for scripts/lab
#   use_masq MASQ [MASQADM]         $masq and $masqadm: absolute paths of the binaries under test
#   need_tools TOOL...              stops, naming the first one missing
#   at_exit 'COMMAND'               more cleanup, run first by the trap (the last registered first)
#
#   lab_up                          scripts/lab up; the trap runs scripts/lab down
#   on HOST CMD...  D CMD...  C CMD...    CMD in a lab host (D: director, C: client) via `scripts/lab exec`
#   on_bg HOST CMD...               the same in the background; $! is CMD's own pid (scripts/lab and
#                                   `ip netns exec` both exec), so it can be signalled and waited for
#
#   masq_start [OPTIONS] NAME RUN-OPTIONS...    `masq run RUN-OPTIONS...` under `timeout`, in the lab's
#                                   director, with $work/NAME.log, $work/NAME.pid and the control socket
#                                   $work/NAME.sock; returns once that socket answers (see below)
#       --ns NETNS                  in this network namespace instead (scripts with their own topology)
#       --socket PATH|@NAME         this control socket instead of $work/NAME.sock
#       --default-socket            no --control-socket and no $MASQ_CONTROL_SOCKET: masq's default
#       --timeout SECONDS           the `timeout` around it (default 600)
#       --may-fail                  return 1 when it does not come up, instead of stopping the script
#   masq_pid NAME                   the daemon's pid (its pid file), for signals
#   masq_stop NAME [SECONDS]        SIGTERM, up to SECONDS (default 10) to exit, else SIGKILL and
#                                   status 1 (the trap stops every daemon still running)
#                                   The trap also removes the default state files (/dev/shm/
#                                   masq-net<INODE>[-<COOKIE>]-q<QUEUES>.table) of every network
#                                   namespace a masq ran in: a lab's tables die with the lab.
#
#   ok / bad / check / finish       result lines and the closing count every runner reads
#   wait_for_log FILE PATTERN TENTHS    for checks that are about what the log says
#
# Sourcing it sets `-uo pipefail` but not `-e`: a failing command inside a check must give that
# check's FAIL line and let the run go on to the others; setup steps stop the run with `die`.
# MASQ_E2E_KEEP=1 keeps $work (logs, captures, rules, pid files) after the run.
set -uo pipefail

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
die() { echo "${TEST_NAME:-test}: $*" >&2; exit 1; }
check() { # NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then ok "$1"; else bad "$1"; diff <(echo "$2") <(echo "$3") | sed 's/^/     /'; fi
}
# Waits up to TENTHS tenths of a second for PATTERN (grep -E) in FILE.
wait_for_log() { # FILE PATTERN TENTHS
    local i
    for ((i = 0; i < $3; i++)); do grep -qE -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
# The closing line every runner reads, and the exit status.
finish() {
    echo "${TEST_NAME:-test}: $passed passed, $failed failed"
    [ "$failed" = 0 ]
}

# ---------------------------------------------------------------- preamble and cleanup

LAB=$PWD/scripts/lab
lab_is_up=0
exit_hooks=()

test_init() { # [LAB-PREFIX]
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces, iptables, NFQUEUE)"
    if [ -n "${1:-}" ]; then
        export MASQ_LAB=${MASQ_LAB:-$1}
        export MASQ_LAB_DIR=${MASQ_LAB_DIR:-/tmp/$MASQ_LAB}
    fi
    work=$(mktemp -d "/tmp/masq-${TEST_NAME:-test}.XXXXXX") || die "cannot make a work directory in /tmp"
    trap test_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

at_exit() { exit_hooks+=("$1"); }

# Runs at exit, whatever stopped the script: the script's own hooks, every masq still running, the
# lab, the work dir. Nothing here may stop half-way, so no errexit.
test_cleanup() {
    set +e
    local i
    for ((i = ${#exit_hooks[@]} - 1; i >= 0; i--)); do eval "${exit_hooks[$i]}"; done
    masq_stop_all
    masq_remove_state_files
    if [ "$lab_is_up" = 1 ]; then "$LAB" down >/dev/null 2>&1; fi
    if [ "${MASQ_E2E_KEEP:-0}" = 1 ]; then echo "${TEST_NAME:-test}: kept $work" >&2; else rm -rf "$work"; fi
}

use_masq() { # MASQ [MASQADM]
    masq=$(realpath -e "$1" 2>/dev/null) && [ -x "$masq" ] || die "$1: no masq binary there (swift build)"
    if [ $# -ge 2 ]; then
        masqadm=$(realpath -e "$2" 2>/dev/null) && [ -x "$masqadm" ] || die "$2: no masqadm binary there (swift build)"
    fi
    return 0
}

need_tools() { # TOOL...
    local tool
    for tool in "$@"; do command -v "$tool" >/dev/null || die "$tool is not installed"; done
}

# ---------------------------------------------------------------- the lab (scripts/lab)

lab_up() {
    lab_is_up=1  # from here on: `lab up` tears down a half-built lab itself, `lab down` is harmless
    "$LAB" up >"$work/lab.log" 2>&1 || { cat "$work/lab.log" >&2; die "scripts/lab up failed"; }
}
on() { "$LAB" exec "$@"; }
D() { "$LAB" exec director "$@"; }
C() { "$LAB" exec client "$@"; }
on_bg() { "$LAB" exec "$@" & }

# ---------------------------------------------------------------- processes

# SIGTERM to the first PID, up to TENTHS tenths of a second for every PID to be gone, then SIGKILL
# and status 1 (a process that needed it did not stop as asked).
stop_process() { # TENTHS PID [PID...]
    local tenths=$1 i p alive
    shift
    kill -TERM "$1" 2>/dev/null
    for ((i = 0; i < tenths; i++)); do
        alive=0
        for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && return 0
        sleep 0.1
    done
    kill -KILL "$@" 2>/dev/null
    echo "${TEST_NAME:-test}: pid $1 was still running $((tenths / 10)) s after SIGTERM: killed" >&2
    return 1
}

# ---------------------------------------------------------------- masq run

declare -A masq_job=()
declare -A masq_netns=()  # the inodes of the network namespaces a masq ran in

# Ready means: the process lives, its pid file is written and `masq flows` gets an answer on its
# control socket. masq binds the queues, installs its iptables rules and binds the socket before it
# writes the pid file, and answers only once it serves (Sources/MasqDaemon/Daemon.swift, runDaemon),
# so a ready daemon is queueing and answering, whatever its log says.
masq_start() { # [--ns NETNS] [--socket S | --default-socket] [--timeout SECONDS] [--may-fail] NAME RUN-OPTIONS...
    local ns='' sock='' default_socket=0 limit=600 may_fail=0
    while :; do
        case ${1:-} in
        --ns) ns=$2; shift 2 ;;
        --socket) sock=$2; shift 2 ;;
        --default-socket) default_socket=1; shift ;;
        --timeout) limit=$2; shift 2 ;;
        --may-fail) may_fail=1; shift ;;
        *) break ;;
        esac
    done
    local name=$1
    shift
    local log=$work/$name.log pidfile=$work/$name.pid
    local where=("$LAB" exec director)
    [ -z "$ns" ] || where=(ip netns exec "$ns")
    local serve=(--control-socket "${sock:-$work/$name.sock}") ask=(--socket "${sock:-$work/$name.sock}") env=()
    if [ "$default_socket" = 1 ]; then serve=() ask=() env=(env -u MASQ_CONTROL_SOCKET); fi

    masq_stop "$name"
    rm -f "$pidfile"
    : >"$log"
    "${where[@]}" "${env[@]}" timeout "$limit" "$masq" run "$@" "${serve[@]}" --pid-file "$pidfile" >>"$log" 2>&1 &
    local job=$!
    disown "$job"  # a case may kill it on purpose: bash need not report that
    masq_job[$name]=$job

    local deadline=$((SECONDS + 15)) why="did not answer on its control socket within 15 s"
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! kill -0 "$job" 2>/dev/null; then why="exited at start"; break; fi
        if [ -s "$pidfile" ] && "${where[@]}" "${env[@]}" timeout 3 "$masq" flows "${ask[@]}" >/dev/null 2>&1 \
            && kill -0 "$job" 2>/dev/null; then
            local inode
            inode=$("${where[@]}" stat -Lc %i /proc/self/ns/net 2>/dev/null) && masq_netns[$inode]=1
            return 0
        fi
        sleep 0.1
    done
    masq_stop "$name"
    { echo "${TEST_NAME:-test}: masq run ($name) $why; its log:"; tail -20 "$log" | sed 's/^/    /'; } >&2
    [ "$may_fail" = 1 ] || die "masq run ($name) $why"
    return 1
}

masq_pid() { cat "$work/$1.pid" 2>/dev/null; } # NAME

masq_stop() { # NAME [SECONDS]
    local job=${masq_job[$1]:-}
    [ -n "$job" ] || return 0
    local pid
    pid=$(masq_pid "$1") || pid=
    # The daemon itself when its pid file says who it is, else `timeout`, which passes SIGTERM on.
    local status=0
    stop_process $((${2:-10} * 10)) "${pid:-$job}" "$job" || status=1
    unset "masq_job[$1]"
    rm -f "$work/$1.pid"  # masq removes it when it exits; not when it was killed
    return $status
}

# masq's default state files of the namespaces it ran in (the inode first in the name, then the
# namespace's cookie where the kernel has one: Sources/MasqDaemon/StateFile.swift).
masq_remove_state_files() {
    local inode
    for inode in "${!masq_netns[@]}"; do
        rm -f /dev/shm/masq-net"$inode"-q*.table /dev/shm/masq-net"$inode"-*-q*.table
    done
}

masq_stop_all() {
    local name
    for name in "${!masq_job[@]}"; do masq_stop "$name" || true; done
}
