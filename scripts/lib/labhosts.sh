# What scripts/lab (one director) and scripts/lab-pair (a director pair) share: the environment
# check, packages, the real servers' files and daemons (nginx, UDP echo, iperf3), killing only the
# lab's own processes, `down` and `status`. Sourced; the script defines first:
#   prefix, labdir       namespace prefix and state dir
#   hosts=(...)          every host (namespace $prefix-HOST) the lab makes
#   webs=(web1 web2)     the real servers
#   PY                   python3
#   ns() say() die()     namespace name of a host, progress line, error exit
#   nginx_extra          (optional) more nginx `location` lines for every real server
#   extra_tools=(...)    (optional) CMD:PACKAGE pairs need_packages installs as well
# MASQ_LAB_SLOW_RATE=RATE (an nginx rate: 160k, 1m) gives every real server /slow.bin: /big.bin paced
# at RATE by nginx's limit_rate, a download still in flight when a test acts (a lab whose nginx_extra
# has its own /slow.bin, as scripts/lab-pair's, keeps that one).

check_env() {
    [ "$(id -u)" = 0 ] || die "must run as root (network namespaces need CAP_SYS_ADMIN)"
    [[ $prefix =~ ^[A-Za-z0-9_.-]+$ ]] || die "MASQ_LAB='$prefix': use letters, digits, '.', '_', '-' only"
    [ "${#prefix}" -le 40 ] || die "MASQ_LAB='$prefix' is too long"
    case $labdir in /*) ;; *) die "MASQ_LAB_DIR must be an absolute path" ;; esac
    [ "$labdir" != / ] || die "MASQ_LAB_DIR must not be /"
    command -v ip >/dev/null || die "'ip' not found (iproute2)"
    ip netns list >/dev/null 2>&1 || die "'ip netns' does not work here: $(ip netns list 2>&1 | head -1)"
}

# ---------------------------------------------------------------- packages

need_packages() {
    local missing=() p
    command -v nginx >/dev/null || missing+=(nginx)
    command -v ip >/dev/null && ip -V 2>/dev/null | grep -q iproute2 || missing+=(iproute2)
    command -v ss >/dev/null || missing+=(iproute2)
    command -v curl >/dev/null || missing+=(curl)
    command -v iperf3 >/dev/null || missing+=(iperf3)
    command -v ethtool >/dev/null || missing+=(ethtool)
    command -v ping >/dev/null || missing+=(iputils-ping)
    command -v iptables >/dev/null || missing+=(iptables)
    command -v setsid >/dev/null || missing+=(util-linux)
    for p in ${extra_tools[@]+"${extra_tools[@]}"}; do command -v "${p%%:*}" >/dev/null || missing+=("${p#*:}"); done
    [ -x "$PY" ] || missing+=(python3)
    [ ${#missing[@]} = 0 ] && return 0
    # shellcheck disable=SC2207
    missing=($(printf '%s\n' "${missing[@]}" | sort -u))
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The packages' own services must not start on the host (nginx's would take port 80 there).
    local prc=/usr/sbin/policy-rc.d made=0
    if [ ! -e $prc ]; then printf '#!/bin/sh\nexit 101\n' >$prc && chmod +x $prc && made=1; fi
    local err; err=$(mktemp)
    apt-get update -qq >/dev/null 2>&1
    if ! apt-get install -y -qq "${missing[@]}" >/dev/null 2>"$err"; then
        [ $made = 1 ] && rm -f $prc
        cat "$err" >&2; rm -f "$err"; die "apt-get install ${missing[*]} failed"
    fi
    rm -f "$err"
    if [ $made = 1 ]; then rm -f $prc; fi
    for p in nginx iperf3 curl ethtool; do command -v $p >/dev/null || die "$p still missing after install"; done
}

# ---------------------------------------------------------------- processes

# Kills PID (TERM, then KILL) only if it is one of the lab's: it lives in one of the lab's
# namespaces, or its command line names the lab dir (what every process we start carries).
ours() {
    local pid=$1 h nsino
    [ -d /proc/$pid ] || return 1
    tr '\0' ' ' </proc/$pid/cmdline 2>/dev/null | grep -qF "$labdir/" && return 0
    local pidns; pidns=$(stat -L -c %i /proc/$pid/ns/net 2>/dev/null) || return 1
    for h in "${hosts[@]}"; do
        nsino=$(stat -L -c %i "/run/netns/$(ns "$h")" 2>/dev/null) || continue
        [ "$pidns" = "$nsino" ] && return 0
    done
    return 1
}

kill_pids() { # PID... : TERM, wait up to 3 s, then KILL whatever is left
    local pids=() p i
    for p in "$@"; do [[ $p =~ ^[0-9]+$ ]] && ours "$p" && pids+=("$p"); done
    [ ${#pids[@]} = 0 ] && return 0
    kill -TERM "${pids[@]}" 2>/dev/null
    for i in $(seq 30); do
        local alive=0
        for p in "${pids[@]}"; do [ -d /proc/$p ] && alive=1; done
        [ $alive = 0 ] && return 0
        sleep 0.1
    done
    for p in "${pids[@]}"; do [ -d /proc/$p ] && kill -KILL "$p" 2>/dev/null; done
    sleep 0.1
    return 0
}

# ---------------------------------------------------------------- down

lab_down() {
    local h f pids
    if [ -d "$labdir/run" ]; then
        for f in "$labdir"/run/*.pid; do
            [ -f "$f" ] || continue
            kill_pids "$(head -c 32 "$f" | tr -dc 0-9)"
            rm -f "$f"
        done
    fi
    for h in "${hosts[@]}"; do
        [ -e "/run/netns/$(ns "$h")" ] || continue
        # Anything still inside a lab namespace (nginx workers, stray test clients) was started by us.
        pids=$(ip netns pids "$(ns "$h")" 2>/dev/null | tr '\n' ' ')
        # shellcheck disable=SC2086
        [ -n "$pids" ] && kill_pids $pids
        ip netns del "$(ns "$h")" 2>/dev/null
    done
    # Remove only what `lab up` made, and only from a dir it marked as its own.
    if [ -f "$labdir/.masq-lab" ]; then
        rm -rf "$labdir/run" "$labdir/log" "$labdir/conf" "$labdir/tmp" "$labdir/www"
        rm -f "$labdir/.masq-lab"
        rmdir "$labdir" 2>/dev/null
    fi
    return 0
}

# ---------------------------------------------------------------- up

lab_exists() {
    local h
    for h in "${hosts[@]}"; do [ -e "/run/netns/$(ns "$h")" ] && return 0; done
    [ -f "$labdir/.masq-lab" ]
}

nsx() { local h=$1; shift; ip netns exec "$(ns "$h")" "$@"; }

sysctl_ns() { # HOST key=value...
    local h=$1 kv; shift
    for kv in "$@"; do
        nsx "$h" sysctl -qw "$kv" >/dev/null || die "sysctl $kv failed in $(ns "$h")"
    done
}

write_files() {
    mkdir -p "$labdir"/{run,log,conf,tmp,www/web1,www/web2} || die "cannot create $labdir"
    chmod 755 "$labdir" "$labdir/www" "$labdir"/www/web1 "$labdir"/www/web2
    touch "$labdir/.masq-lab"
    local w
    for w in "${webs[@]}"; do
        echo "<h1>This is $w page.</h1>" >"$labdir/www/$w/index.html"
    done
    # One shared /big.bin with fixed content (SHA-256 counter stream): the same bytes every run.
    local big=${MASQ_LAB_BIG_BYTES:-4194304}
    "$PY" - "$labdir/www/big.bin" "$big" <<'PY' || die "cannot write big.bin"
import hashlib, sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "wb") as f:
    i, left = 0, n
    while left > 0:
        block = b"".join(hashlib.sha256(b"masq-lab-%d" % (i + k)).digest() for k in range(2048))
        f.write(block[:left]); left -= len(block[:left]); i += 2048
PY
    chmod 644 "$labdir"/www/big.bin "$labdir"/www/*/index.html
    # Small sendfile chunks: limit_rate then paces the file evenly (about 0.1 s apart), not in 1 s bursts.
    local slow=
    if [ -n "${MASQ_LAB_SLOW_RATE:-}" ] && [[ ${nginx_extra:-} != *"/slow.bin"* ]]; then
        [[ $MASQ_LAB_SLOW_RATE =~ ^[0-9]+[kKmM]?$ ]] || die "MASQ_LAB_SLOW_RATE must be an nginx rate (160k, 1m, 200000)"
        slow="location = /slow.bin { alias $labdir/www/big.bin; limit_rate $MASQ_LAB_SLOW_RATE; sendfile_max_chunk 16k; }"
    fi
    # IPv6 beside IPv4 (nginx's [::] listen is IPv6 only, so the IPv4 one stays as it was), unless the
    # kernel has no IPv6 at all: nginx would not start.
    local listen6=
    [ -d /proc/sys/net/ipv6 ] && listen6='listen [::]:80 default_server;'
    for w in "${webs[@]}"; do
        mkdir -p "$labdir/tmp/$w"
        cat >"$labdir/conf/nginx-$w.conf" <<EOF
# written by scripts/lab; runs in namespace $(ns "$w")
user root;
worker_processes 1;
daemon on;
pid $labdir/run/nginx-$w.pid;
error_log $labdir/log/nginx-$w.error.log warn;
events { worker_connections 1024; }
http {
    types { text/html html; application/octet-stream bin; text/plain txt; }
    default_type application/octet-stream;
    log_format lab '\$remote_addr \$remote_port [\$time_local] "\$request" \$status \$body_bytes_sent';
    access_log $labdir/log/nginx-$w.access.log lab;
    client_body_temp_path $labdir/tmp/$w/client_body;
    proxy_temp_path $labdir/tmp/$w/proxy;
    fastcgi_temp_path $labdir/tmp/$w/fastcgi;
    uwsgi_temp_path $labdir/tmp/$w/uwsgi;
    scgi_temp_path $labdir/tmp/$w/scgi;
    sendfile on;
    keepalive_timeout 65;
    server {
        listen 80 default_server;${listen6:+
        $listen6}
        server_name _;
        root $labdir/www/$w;
        index index.html;
        location = /big.bin { root $labdir/www; }
        # Uploads for tests: nginx reads and discards the body, then answers.
        location = /upload { client_max_body_size 64m; return 200 "$w received\\n"; }${nginx_extra:+
        $nginx_extra}${slow:+
        $slow}
    }
}
EOF
    done
}

# The UDP echo server: answers each datagram with "NAME: <payload>" from :5353, on IPv4 (0.0.0.0) and
# IPv6 ([::], IPV6_V6ONLY so the IPv4 socket keeps IPv4 as it was). The pid file is written once both
# are bound. A kernel without IPv6 gets the IPv4 socket alone.
# argv: NAME PIDFILE (the pid file path carries the lab dir, which is how `down` knows it is ours).
ECHO_PY='
import os, select, socket, sys
name, pidfile = sys.argv[1].encode(), sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5353))
socks = [s]
if os.path.isdir("/proc/sys/net/ipv6"):
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s6.bind(("::", 5353))
    socks.append(s6)
with open(pidfile + ".tmp", "w") as f:
    f.write("%d\n" % os.getpid())
os.rename(pidfile + ".tmp", pidfile)
while True:
    for sock in select.select(socks, [], [])[0]:
        try:
            data, peer = sock.recvfrom(65535)
            sock.sendto(name + b": " + data, peer)
        except OSError as e:
            print("echo: %s" % e, file=sys.stderr, flush=True)
'

wait_for() { # DESCRIPTION TRIES(0.1s) CMD...
    local what=$1 n=$2 i; shift 2
    for ((i = 0; i < n; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    die "$what did not come up"
}

page_ok() { [ "$(nsx "$1" timeout 2 curl -s --max-time 1 http://127.0.0.1/)" = "<h1>This is $1 page.</h1>" ]; }
# grep reads all of ss's output (not -q): under pipefail an early exit would fail ss with SIGPIPE.
udp_bound() { nsx "$1" ss -Hlun 'sport = :5353' | grep 5353 >/dev/null; }
tcp_bound() { nsx "$1" ss -Hltn "sport = :$2" | grep ":$2" >/dev/null; }

start_servers() {
    local w
    for w in "${webs[@]}"; do
        local conf=$labdir/conf/nginx-$w.conf
        nsx "$w" nginx -t -q -e "$labdir/log/nginx-$w.error.log" -p "$labdir/" -c "$conf" \
            </dev/null >>"$labdir/log/nginx-$w.error.log" 2>&1 \
            || { cat "$labdir/log/nginx-$w.error.log" >&2; die "nginx config for $w is bad"; }
        nsx "$w" nginx -e "$labdir/log/nginx-$w.error.log" -p "$labdir/" -c "$conf" \
            </dev/null >>"$labdir/log/nginx-$w.error.log" 2>&1 \
            || { cat "$labdir/log/nginx-$w.error.log" >&2; die "nginx did not start in $(ns "$w")"; }

        nsx "$w" setsid nohup "$PY" -u -c "$ECHO_PY" "$w" "$labdir/run/udp-echo-$w.pid" \
            </dev/null >>"$labdir/log/udp-echo-$w.log" 2>&1 &

        nsx "$w" iperf3 -s -D -p 5201 -I "$labdir/run/iperf3-$w.pid" --logfile "$labdir/log/iperf3-$w.log" \
            </dev/null >>"$labdir/log/iperf3-$w.log" 2>&1 \
            || { cat "$labdir/log/iperf3-$w.log" >&2; die "iperf3 did not start in $(ns "$w")"; }
    done
    for w in "${webs[@]}"; do
        wait_for "nginx in $(ns "$w")" 50 page_ok "$w"
        wait_for "udp echo in $(ns "$w")" 50 test -s "$labdir/run/udp-echo-$w.pid"
        wait_for "udp echo in $(ns "$w")" 50 udp_bound "$w"
        wait_for "iperf3 in $(ns "$w")" 50 tcp_bound "$w" 5201
    done
}

# The inside LAN's MTU: the director's d1 and the switch (its ports and bridge); web links stay 1500.

no_offload() { # HOST IFACE
    nsx "$1" ethtool -K "$2" tx off rx off gso off gro off tso off >/dev/null 2>&1 \
        || [ "$2" = br0 ] || say "warning: ethtool -K $2 in $(ns "$1") failed"
}


# ---------------------------------------------------------------- status

lab_status() {
    local h any=0 f
    for h in "${hosts[@]}"; do
        [ -e "/run/netns/$(ns "$h")" ] || continue
        any=1
        echo "$(ns "$h"):"
        ip -n "$(ns "$h")" -br addr show | sed 's/^/    /'
        ip -n "$(ns "$h")" route show | sed 's/^/    route: /'
        ip -n "$(ns "$h")" -6 route show 2>/dev/null | grep -v '^fe80::/64 ' | sed 's/^/    route6: /'
    done
    [ $any = 1 ] || { echo "lab '$prefix' is down"; return 0; }
    if [ -d "$labdir/run" ]; then
        for f in "$labdir"/run/*.pid; do
            [ -f "$f" ] || continue
            local pid; pid=$(head -c 32 "$f" | tr -dc 0-9)
            if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then st=running; else st=dead; fi
            printf '    %-22s pid %-8s %s\n' "$(basename "$f" .pid)" "$pid" "$st"
        done
    fi
}
