# Shared by the end-to-end scripts (sourced): result lines, the closing count, and small waits.
# Set TEST_NAME before sourcing; every script ends with `finish`.
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
