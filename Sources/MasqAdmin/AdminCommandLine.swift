import MasqControl
import MasqCore
import MasqRules

/// A command line (or an operation) ipvsadm would refuse, with what it prints on stderr and its exit
/// status. The three shapes ipvsadm 1.31 has:
///
/// - `fail(2, …)`: the message and a newline, exit 2. Every value and consistency check:
///   "illegal virtual server address[:port] specified", "illegal weight specified",
///   "invalid timeout value `X' specified", "You need to supply the 'O' option for the 'C' command",
///   "Illegal 'O' option with the 'C' command", "The option 'O' conflicts with the 'P' option in the
///   'C' command", "options conflicts in the list command", "--set option requires 3 timeout
///   values", "unexpected argument X", "multiple 'O' options specified", "invalid option `X'" (a
///   second command: `set_command`'s "multiple commands specified" cannot happen in 1.31, because
///   only the first option is read as a command)... masq's own refusals (NAT only, SCTP, …) also
///   exit 2.
/// - `tryhelp_exit(argv[0], -1)`: only "Try `PROG -h' or 'PROG --help' for more information.", exit
///   255. When the first option is not a command (`masqadm -n -L`, `masqadm foo`, an unknown first
///   option) and for `-R` inside a restore.
/// - a popt error after the first option: "WORD: unknown option" / "WORD: missing argument", exit 255
///   (`process_options` returns -1 from `main`).
///
/// Operations that fail in IPVS print libipvs's `ipvs_strerror` words and exit 255 ("Service already
/// exists", "No such service", … — `operationFailed`); `-L -t` of a missing service exits 1
/// (`list_service`).
public struct AdminError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The line(s) before the "Try" line, without the final newline; nil when there are none.
    public var message: String?
    public var exitCode: Int32
    /// Whether ipvsadm adds "Try `PROG -h' or 'PROG --help' for more information.".
    public var tryHelp: Bool

    public init(message: String?, exitCode: Int32, tryHelp: Bool = false) {
        self.message = message
        self.exitCode = exitCode
        self.tryHelp = tryHelp
    }

    /// ipvsadm's `fail(2, msg)`.
    public static func fail(_ message: String) -> AdminError { AdminError(message: message, exitCode: 2) }

    /// ipvsadm's `tryhelp_exit(argv[0], -1)`.
    public static let tryHelpExit = AdminError(message: nil, exitCode: 255, tryHelp: true)

    /// An IPVS operation that failed: libipvs's words (`ipvs_strerror`), exit 255 as ipvsadm's
    /// `process_options` returns -1 ("Service already exists", "No such service", "Service not
    /// defined", "Destination already exists", "No such destination", "Scheduler or persistence engine
    /// not found").
    public static func operationFailed(_ message: String) -> AdminError { AdminError(message: message, exitCode: 255) }

    /// Exactly what ipvsadm writes to stderr.
    public func standardError(program: String = "masqadm") -> String {
        var out = message.map { $0 + "\n" } ?? ""
        if tryHelp { out += "Try `\(program) -h' or '\(program) --help' for more information.\n" }
        return out
    }

    public var description: String { standardError() }

    /// ipvsadm's words and exit status for a refused command line: masq's own refusals name the word
    /// at fault, as ipvsadm names none of them.
    public init(_ error: IPVSCommandError) {
        switch error.kind {
        case .invalid: self = .fail(error.message)
        case .unsupported: self = .fail("\(error.message) (at '\(error.token)')")
        case .notACommand: self = .tryHelpExit
        case .popt: self.init(message: "\(error.token): \(error.message)", exitCode: 255)
        case .noSuchService(let listing): self.init(message: error.message, exitCode: listing ? 1 : 255)
        case .noSuchScheduler: self.init(message: error.message, exitCode: 255)
        }
    }
}

public enum AdminCommandLine {
    /// Parses a command line (without argv[0]) with ipvsadm's own parser (`IPVSAdmCommandLine`, which
    /// the rules file and the daemon use too), and words its refusals as ipvsadm does.
    ///
    /// - Parameters:
    ///   - readingStdin: true for a line read by `-R` (ipvsadm refuses `-R` there).
    ///   - resolver: host and port names on the command line (`web1:http`), from /etc/hosts and
    ///     /etc/services only, never DNS.
    public static func parse(_ arguments: [String], readingStdin: Bool = false,
                             resolver: NameResolver = NameResolver()) throws(AdminError) -> IPVSAdmCommand {
        do {
            return try IPVSAdmCommandLine.parse(arguments, readingStdin: readingStdin, names: { resolver })
        } catch {
            throw AdminError(error)
        }
    }

    /// Splits what `-R` reads into command lines as ipvsadm's `config_stream_read` does: one line per
    /// command, words separated by blanks, tabs or carriage returns, the word `ipvsadm` dropped
    /// anywhere, empty lines skipped. `#` is not special (in 1.31 the comment test never fires, so a
    /// `#` word reaches the parser, which refuses it), so the lines here are the lines ipvsadm runs.
    public static func restoreArguments(_ input: String) -> [[String]] {
        TextLine.lines(input, comment: nil).map { $0.words.filter { $0 != "ipvsadm" } }.filter { !$0.isEmpty }
    }

    /// What `masqadm -v` prints: ipvsadm's `version()` line unchanged first (scripts parse it for the
    /// ipvsadm and IPVS versions whose syntax and layouts masqadm follows), then which masq this is.
    public static let versionText = "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n"
        + "masqadm (masq \(masqVersion))\n"

    /// What `masqadm -h` prints to stdout (exit 0): ipvsadm 1.31's `usage_exit` text for what masq
    /// supports, NAT only.
    public static func help(program: String = "masqadm") -> String {
        let p = program
        let schedulers = Schedulers.all.map { $0.name }.joined(separator: "|")
        return """
            \(p): ipvsadm v1.31's command line and output for masq, the userspace IPVS NAT director \
            (IPVS v1.2.1 layouts)
            Usage:
              \(p) -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags]
              \(p) -D virtual-service
              \(p) -C
              \(p) -R
              \(p) -S [-n]
              \(p) -a|e virtual-service -r server-address -m [options]
              \(p) -d virtual-service -r server-address
              \(p) -L|l [virtual-service] [options]
              \(p) -Z [virtual-service]
              \(p) --set tcp tcpfin udp
              \(p) --start-daemon {master|backup} [daemon-options]
              \(p) --stop-daemon {master|backup}
              \(p) -h

            Commands:
            Either long or short options are allowed.
              --add-service     -A        add virtual service with options
              --edit-service    -E        edit virtual service with options
              --delete-service  -D        delete virtual service
              --clear           -C        clear the whole table
              --restore         -R        restore rules from stdin
              --save            -S        save rules to stdout
              --add-server      -a        add real server with options
              --edit-server     -e        edit real server with options
              --delete-server   -d        delete real server
              --list            -L|-l     list the table
              --zero            -Z        zero counters in a service or all services
              --set tcp tcpfin udp        set connection timeout values
              --start-daemon              start connection sync daemon
              --stop-daemon               stop connection sync daemon
              --help            -h        display this help message
              --version         -v        display ipvsadm's version line and masq's version

            virtual-service:
              --tcp-service|-t  service-address   service-address is host[:port]
              --udp-service|-u  service-address   service-address is host[:port]
                                                  (IPv6: [address]:port, or the bare address)
              --fwmark-service|-f fwmark          fwmark is an integer greater than zero

            Options:
              --ipv6         -6                   fwmark entry uses IPv6
              --scheduler    -s scheduler         one of \(schedulers),
                                                  the default scheduler is \(Schedulers.defaultName).
              --persistent   -p [timeout]         persistent service
              --netmask      -M netmask           persistent granularity mask
                                                  (an IPv6 service: a prefix length, 1-128)
              --real-server  -r server-address    server-address is host (and port)
              --masquerading -m                   masquerading (NAT), required: masq forwards in NAT mode only
              --weight       -w weight            capacity of real server
              --u-threshold  -x uthreshold        upper threshold of connections
              --l-threshold  -y lthreshold        lower threshold of connections
              --connection   -c                   output of current IPVS connections
              --timeout                           output of timeout (tcp tcpfin udp)
              --stats                             output of statistics information
              --rate                              output of rate information
              --exact                             expand numbers (display exact values)
              --thresholds                        output of thresholds information
              --persistent-conn                   output of persistent connection info
              --nosort                            disable sorting output of service/server entries
              --sort                              does nothing, for backwards compatibility
              --ops          -o                   one-packet scheduling
              --numeric      -n                   numeric output of addresses and ports
              --sched-flags  -b flags             scheduler flags (comma-separated)
              --daemon                            output of daemon information
            Daemon Options:
              --syncid sid                        syncid for connection sync (default=0: no filtering)
              --sync-maxlen length                Max sync message length (default=1472)
              --mcast-interface interface         multicast interface for connection sync (default=eth0)
              --mcast-group address               IPv4 multicast group (default=224.0.0.81)
              --mcast-port port                   UDP port (default=8848)
              --mcast-ttl ttl                     Multicast TTL (default=1)

            masq forwards in NAT mode only: -g (direct routing) and -i (tunnelling) are refused, and so are
            SCTP services, --pe, a real server of the other address family than its service's, and IPv6
            multicast groups for the sync daemon. Host and port names are read from /etc/hosts and
            /etc/services only, never from DNS.

            """
    }
}
