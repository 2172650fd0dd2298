# bash completion for masqadm (ipvsadm's command line), masqadm-save and masqadm-restore.
# Installed as share/bash-completion/completions/masqadm; masqadm-save and masqadm-restore are links
# to it, so bash-completion loads it for each of the three names.

_masqadm() {
    local cur prev
    COMPREPLY=()
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    # masqadm's option table (Sources/MasqRules/Popt.swift, ipvsadm 1.31's), without what masq
    # refuses: -f, -g, -i, -x, -y, -o, --pe, --sctp-service, --tun-*, and -6 (which only follows -f).
    # Addresses are IPv4 or IPv6 ([2001:2::1]:80); -M of an IPv6 service is a prefix length.
    local commands="-A --add-service -E --edit-service -D --delete-service -C --clear -R --restore
        -S --save -a --add-server -e --edit-server -d --delete-server -L -l --list -Z --zero --set
        --start-daemon --stop-daemon -h --help -v --version"
    local options="-t --tcp-service -u --udp-service -s --scheduler -p --persistent -M --netmask
        -b --sched-flags -r --real-server -m --masquerading -w --weight -c --connection --timeout
        --daemon --stats --rate -X --exact --thresholds --persistent-conn --nosort --sort
        -n --numeric --syncid --sync-maxlen --mcast-interface --mcast-group --mcast-port --mcast-ttl
        --socket"
    case "$prev" in
        -s|--scheduler)
            COMPREPLY=($(compgen -W "rr wrr lc wlc sed nq sh dh mh" -- "$cur")); return ;;
        -b|--sched-flags)
            COMPREPLY=($(compgen -W "sh-fallback sh-port mh-fallback mh-port" -- "$cur")); return ;;
        --start-daemon|--stop-daemon)
            COMPREPLY=($(compgen -W "master backup" -- "$cur")); return ;;
        --mcast-interface)
            COMPREPLY=($(compgen -W "$(ls /sys/class/net 2>/dev/null)" -- "$cur")); return ;;
        --socket)
            COMPREPLY=($(compgen -f -- "$cur")); return ;;
        -t|--tcp-service|-u|--udp-service|-r|--real-server|-w|--weight|-p|--persistent|-M|--netmask|\
        --syncid|--sync-maxlen|--mcast-group|--mcast-port|--mcast-ttl)
            return ;;  # a value of the admin's own
    esac
    # The first word is a command; options after it.
    local i command=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            -A|--add-service|-E|--edit-service|-D|--delete-service|-C|--clear|-R|--restore|-S|--save|\
            -a|--add-server|-e|--edit-server|-d|--delete-server|-L|-l|--list|-Z|--zero|--set|\
            --start-daemon|--stop-daemon|-h|--help|-v|--version) command=${COMP_WORDS[i]} ;;
        esac
    done
    if [ -z "$command" ]; then
        COMPREPLY=($(compgen -W "$commands" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$options" -- "$cur"))
    fi
}

_masqadm_save() {
    COMPREPLY=()
    [ "$COMP_CWORD" = 1 ] && COMPREPLY=($(compgen -W "-n" -- "${COMP_WORDS[COMP_CWORD]}"))
}

complete -F _masqadm masqadm
complete -F _masqadm_save masqadm-save
# masqadm-restore reads standard input only: no words to complete.
complete -W "" masqadm-restore
