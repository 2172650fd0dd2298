import MasqControl
import MasqCore

/// One `masqadm` command line, parsed as ipvsadm 1.31 parses it (`parse_options` and
/// `process_options` in ipvsadm.c).
public enum AdminCommand: Equatable, Sendable {
    /// `-A -E -D -C -a -e -d`: the command as masq's rules parser reads it, and the same command as
    /// numeric ipvsadm words (host and port names resolved, short options, in the order given), fit
    /// to send to the daemon or to write in a rules file.
    case edit(IPVSCommand, arguments: [String])
    /// `-L|-l|--list` (and no arguments at all, which ipvsadm treats as `-L`).
    case list(ListOptions)
    /// `-Z|--zero [service]`: nil zeroes every service (as ipvsadm does for no service, or for the
    /// service 0.0.0.0:0, which libipvs's `ipvs_zero_service` sends without a service).
    case zero(ServiceKey?)
    /// `-S|--save [-n]`.
    case save(numeric: Bool)
    /// `-R|--restore`: ipvsadm then reads commands from stdin; see `AdminCommandLine.restoreArguments`.
    case restore
    /// `--set tcp tcpfin udp`, in seconds (0 leaves a value unchanged in IPVS).
    case setTimeouts(TimeoutState)
    /// `-h|--help`: print `AdminCommandLine.help(program:)` to stdout, exit 0.
    case help
    /// `-v|--version`: print `AdminCommandLine.versionText` to stdout, exit 0.
    case version
}

/// What `-L` prints, from its options.
public struct ListOptions: Equatable, Sendable {
    /// `-n`: numbers instead of names.
    public var numeric = false
    /// `-c`: the connection table.
    public var connections = false
    /// `-t|-u VIP:PORT`: only this service (ipvsadm's `list_service`: no version line).
    public var service: ServiceKey?
    /// `--timeout`: the timeout line only.
    public var timeout = false
    /// `--daemon`: the sync daemons (masq runs none, so nothing).
    public var daemon = false
    public var stats = false
    public var rate = false
    public var thresholds = false
    /// `--persistent-conn`.
    public var persistentConnections = false
    /// `--exact`: whole numbers instead of K/M/G/T.
    public var exact = false
    /// `--nosort`: keep the daemon's order (configuration order). ipvsadm 1.31 sorts by default;
    /// `--sort` is accepted and does nothing, as in ipvsadm.
    public var noSort = false
    /// `--tun-info`.
    public var tunnelInfo = false

    public init(numeric: Bool = false, connections: Bool = false, service: ServiceKey? = nil, timeout: Bool = false,
                daemon: Bool = false, stats: Bool = false, rate: Bool = false, thresholds: Bool = false,
                persistentConnections: Bool = false, exact: Bool = false, noSort: Bool = false,
                tunnelInfo: Bool = false) {
        self.numeric = numeric
        self.connections = connections
        self.service = service
        self.timeout = timeout
        self.daemon = daemon
        self.stats = stats
        self.rate = rate
        self.thresholds = thresholds
        self.persistentConnections = persistentConnections
        self.exact = exact
        self.noSort = noSort
        self.tunnelInfo = tunnelInfo
    }
}

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
///   only the first option is read as a command)... masq's own refusals (NAT only, no IPv6,
///   firewall marks, SCTP, …) also exit 2.
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
}

public enum AdminCommandLine {
    /// ipvsadm's `MAX_TIMEOUT`: 31 days.
    static let maxTimeout = 86400 * 31
    /// libipvs's `IPVS_SVC_PERSISTENT_TIMEOUT`: `-p` without a value.
    static let defaultPersistence = 360

    /// Parses a command line (without argv[0]) as ipvsadm 1.31 does, checking everything ipvsadm
    /// checks before it talks to IPVS, in ipvsadm's order, with its words; then what masq refuses.
    /// Editing commands are finally read by masq's own `IPVSCommandParser`.
    ///
    /// - Parameters:
    ///   - program: argv[0] as ipvsadm quotes it in "Try `%s -h' …" (and `help(program:)`).
    ///   - readingStdin: true for a line read by `-R` (ipvsadm refuses `-R` there).
    ///   - resolver: host and port names on the command line (`web1:http`), from /etc/hosts and
    ///     /etc/services only, never DNS.
    public static func parse(_ arguments: [String], program: String = "masqadm", readingStdin: Bool = false,
                             resolver: NameResolver = NameResolver()) throws(AdminError) -> AdminCommand {
        // main(): no arguments at all lists the table.
        if arguments.isEmpty && !readingStdin { return .list(ListOptions()) }
        var parser = Parser(popt: PoptScanner(arguments, program: program), resolver: resolver)
        return try parser.run(readingStdin: readingStdin)
    }

    /// Splits what `-R` reads into command lines as ipvsadm's `config_stream_read` does: one line per
    /// command, words separated by blanks, tabs or carriage returns, the word `ipvsadm` dropped
    /// anywhere, empty lines skipped. `#` is not special (in 1.31 the comment test never fires, so a
    /// `#` word reaches the parser, which refuses it), so the lines here are the lines ipvsadm runs.
    public static func restoreArguments(_ input: String) -> [[String]] {
        // Over Unicode scalars: "\r\n" is a single Character in Swift.
        input.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).compactMap { line in
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
                .map { String(String.UnicodeScalarView($0)) }.filter { $0 != "ipvsadm" }
            return words.isEmpty ? nil : words
        }
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
              --help            -h        display this help message
              --version         -v        display ipvsadm's version line and masq's version

            virtual-service:
              --tcp-service|-t  service-address   service-address is host[:port]
              --udp-service|-u  service-address   service-address is host[:port]

            Options:
              --scheduler    -s scheduler         one of \(schedulers),
                                                  the default scheduler is \(Schedulers.defaultName).
              --persistent   -p [timeout]         persistent service
              --netmask      -M netmask           persistent granularity mask
              --real-server  -r server-address    server-address is host (and port)
              --masquerading -m                   masquerading (NAT), required: masq forwards in NAT mode only
              --weight       -w weight            capacity of real server
              --connection   -c                   output of current IPVS connections
              --timeout                           output of timeout (tcp tcpfin udp)
              --stats                             output of statistics information
              --rate                              output of rate information
              --exact                             expand numbers (display exact values)
              --thresholds                        output of thresholds information
              --persistent-conn                   output of persistent connection info
              --nosort                            disable sorting output of service/server entries
              --sort                              does nothing, for backwards compatibility
              --numeric      -n                   numeric output of addresses and ports
              --sched-flags  -b flags             scheduler flags (comma-separated)

            masq forwards in NAT mode only: -g (direct routing) and -i (tunnelling) are refused, and so are
            firewall-mark, SCTP and IPv6 services, --pe, -o, connection thresholds (-x, -y) and the sync
            daemon. Host and port names are read from /etc/hosts and /etc/services only, never from DNS.

            """
    }

    /// ipvsadm's `cmdnames`, indexed by `IPVSAdmCommand` (the words of its option-check errors).
    static let commandNames = [
        "add-service", "edit-service", "delete-service", "flush", "list", "add-server", "delete-server",
        "edit-server", "set", "start-daemon", "stop-daemon", "restore", "save", "zero",
    ]
}

// MARK: - ipvsadm's parse_options / process_options

/// ipvsadm's `CMD_*`, in its order (the rows of `commands_v_options`).
enum IPVSAdmCommand: Int {
    case add = 0, edit, delete, flush, list, addDest, deleteDest, editDest, timeout, startDaemon, stopDaemon
    case restore, save, zero
}

/// ipvsadm's `OPTC_*`: bit numbers of the options given, and the columns of `commands_v_options`.
enum IPVSAdmOption: Int, CaseIterable {
    case numeric = 0, connection, service, scheduler, persistent, netmask, server, forward, weight
    case uThreshold, lThreshold, mcast, timeout, daemon, stats, rate, thresholds, persistentConn, noSort
    case syncID, exact, onePacket, persistenceEngine, schedFlags, mcastGroup, mcastPort, mcastTTL
    case syncMaxlen, tunInfo, tunType, tunPort, tunNoCsum, tunCsum, tunRemCsum

    /// ipvsadm's `optnames`.
    var name: String {
        [
            "numeric", "connection", "service-address", "scheduler", "persistent", "netmask", "real-server",
            "forwarding-method", "weight", "u-threshold", "l-threshold", "mcast-interface", "timeout", "daemon",
            "stats", "rate", "thresholds", "persistent-conn", "nosort", "syncid", "exact", "ops", "pe",
            "sched-flags", "mcast-group", "mcast-port", "mcast-ttl", "sync-maxlen", "tun-info", "tun-type",
            "tun-port", "tun-nocsum", "tun-csum", "tun-remcsum",
        ][rawValue]
    }
}

/// ipvsadm 1.31's `commands_v_options`, one row per command, one column per option
/// (`+` compulsory, `x` illegal, `1` exclusive, blank optional). Columns:
/// `-n -c svc -s -p -M -r fwd -w -x -y -mc tot dmn -st -rt thr -pc srt sid -ex ops -pe -b grp port ttl size tinf type tprt nocs csum remc`.
let commandsVersusOptions: [String] = [
    /* ADD     */ "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx",
    /* EDIT    */ "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx",
    /* DEL     */ "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* FLUSH   */ "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* LIST    */ " 11xxxxxxxxx11       xxxxxxx xxxxx",
    /* ADDSRV  */ "xx+xxx+    xxxxxxxxxxxxxxxxxx     ",
    /* DELSRV  */ "xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* EDITSRV */ "xx+xxx+    xxxxxxxxxxxxxxxxxx     ",
    /* TIMEOUT */ "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* STARTD  */ "xxxxxxxxxxx xxxxxxx xxxx    xxxxxx",
    /* STOPD   */ "xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxx",
    /* RESTORE */ "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* SAVE    */ " xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* ZERO    */ "xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
]

/// ipvsadm's `tunnel_types_v_options` (ipip, gue, gre) over tun-port, tun-nocsum, tun-csum, tun-remcsum.
let tunnelTypesVersusOptions = ["xxxx", "+111", "x11x"]
let tunnelNames = ["ipip", "gue", "gre"]

/// An address[:port] as ipvsadm's `parse_service` read it.
struct ParsedEndpoint: Equatable {
    var ipv6: Bool
    var address: IPv4Address  // 0.0.0.0 for IPv6 (masq refuses those)
    var port: UInt16
    var portGiven: Bool
    var isAny: Bool  // 0.0.0.0 or ::
}

private enum Forward { case masquerading, gatewaying, tunnelling }

private struct Parser {
    var popt: PoptScanner
    let resolver: NameResolver

    var options = Set<IPVSAdmOption>()
    var words: [String] = []  // the numeric command for IPVSCommandParser, in the order given
    var serviceProto: String?  // "tcp", "udp", "sctp"; `ce->svc.protocol`
    var service: ParsedEndpoint?
    var fwmark: UInt32?
    var serviceIPv6 = false  // -6 after -f
    var scheduler = ""
    var persistence: Int?
    var server: ParsedEndpoint?
    var forward: Forward?
    var onePacket = false
    var schedFlags = ""
    var tunnelType = 0

    init(popt: PoptScanner, resolver: NameResolver) {
        self.popt = popt
        self.resolver = resolver
    }

    mutating func run(readingStdin: Bool) throws(AdminError) -> AdminCommand {
        // The first option must be a command (parse_options' first switch).
        guard case .option(let first, let firstValue) = popt.nextEvent() else { throw .tryHelpExit }
        let command: IPVSAdmCommand
        switch first.tag {
        case .addService: command = .add
        case .editService: command = .edit
        case .deleteService: command = .delete
        case .clear: command = .flush
        case .list: command = .list
        case .zero: command = .zero
        case .addServer: command = .addDest
        case .editServer: command = .editDest
        case .deleteServer: command = .deleteDest
        case .set: command = .timeout
        case .restore: command = .restore
        case .save: command = .save
        case .help: return .help
        case .version: return .version
        case .startDaemon, .stopDaemon:
            command = first.tag == .startDaemon ? .startDaemon : .stopDaemon
            guard firstValue == "master" || firstValue == "backup" else {
                throw .fail(first.tag == .startDaemon
                    ? "illegal start-daemon parameter specified" : "illegal start_daemon specified")
            }
        default: throw .tryHelpExit
        }
        switch command {
        case .add: words = ["-A"]
        case .edit: words = ["-E"]
        case .delete: words = ["-D"]
        case .flush: words = ["-C"]
        case .addDest: words = ["-a"]
        case .editDest: words = ["-e"]
        case .deleteDest: words = ["-d"]
        default: break
        }

        // The other options, in order; the first bad value stops everything (fail() exits).
        loop: while true {
            switch popt.nextEvent() {
            case .end: break loop
            case .error(let reason):
                throw AdminError(message: "\(popt.badOption): \(reason)", exitCode: 255)
            case .option(let option, let value):
                try take(option, value)
            }
        }

        var timeouts: TimeoutState?
        if command == .timeout {
            guard let tcp = popt.nextArgument(), let fin = popt.nextArgument(), let udp = popt.nextArgument() else {
                throw .fail("--set option requires 3 timeout values")
            }
            timeouts = TimeoutState(tcp: UInt32(try timeout(tcp, min: 0)), tcpFin: UInt32(try timeout(fin, min: 0)),
                                    udp: UInt32(try timeout(udp, min: 0)))
        }
        if let extra = popt.nextArgument() { throw .fail("unexpected argument \(extra)") }
        if !schedFlags.isEmpty { try checkSchedulerFlags() }

        try genericOptionCheck(command)

        if command == .add || command == .edit {
            if fwmark == nil, service?.port == 0, persistence == nil {
                throw .fail("Zero port specified for non-persistent service")
            }
            if onePacket, fwmark == nil, serviceProto != "udp" {
                throw .fail("One-Packet Scheduling is only for UDP virtual services")
            }
        }
        if command == .addDest || command == .editDest {
            let method = forward ?? .gatewaying  // ipvsadm's default: direct routing
            let serviceV6 = service?.ipv6 ?? serviceIPv6
            if (server?.ipv6 ?? false) != serviceV6 && method != .tunnelling {
                throw .fail("Different address family is allowed only for tunneling servers")
            }
            let tunnelOptions: [IPVSAdmOption] = [.tunType, .tunPort, .tunNoCsum, .tunCsum, .tunRemCsum]
            if tunnelOptions.contains(where: options.contains) && method != .tunnelling {
                throw .fail("Tunnel options conflict with forward method")
            }
            try tunnelOptionCheck()
        }
        if command == .list {
            let o = options
            if (!o.isDisjoint(with: [.connection, .timeout, .daemon]) && !o.isDisjoint(with: [.stats, .rate, .thresholds]))
                || (!o.isDisjoint(with: [.timeout, .daemon]) && o.contains(.persistentConn)) {
                throw .fail("options conflicts in the list command")
            }
        }

        // What ipvsadm would now ask IPVS to do.
        switch command {
        case .list:
            var l = ListOptions()
            l.numeric = options.contains(.numeric)
            l.connections = options.contains(.connection)
            l.timeout = options.contains(.timeout)
            l.daemon = options.contains(.daemon)
            l.stats = options.contains(.stats)
            l.rate = options.contains(.rate)
            l.thresholds = options.contains(.thresholds)
            l.persistentConnections = options.contains(.persistentConn)
            l.exact = options.contains(.exact)
            l.noSort = options.contains(.noSort)
            l.tunnelInfo = options.contains(.tunInfo)
            if options.contains(.service) && !l.connections {
                // list_service: a service masq cannot have is a service IPVS doesn't have.
                guard let key = serviceKey() else { throw AdminError(message: "No such service", exitCode: 1) }
                l.service = key
            }
            return .list(l)
        case .zero:
            guard options.contains(.service) else { return .zero(nil) }
            if fwmark == nil, let s = service, s.isAny, s.port == 0 { return .zero(nil) }  // ipvs_zero_service
            guard let key = serviceKey() else { throw .operationFailed("No such service") }
            return .zero(key)
        case .save:
            return .save(numeric: options.contains(.numeric))
        case .restore:
            if readingStdin { throw .tryHelpExit }  // restore_table: avoid an infinite loop
            return .restore
        case .timeout:
            return .setTimeouts(timeouts!)
        case .startDaemon, .stopDaemon:
            throw .fail("the connection synchronisation daemon (--start-daemon, --stop-daemon) is not supported by masq")
        case .add, .edit, .delete, .flush, .addDest, .editDest, .deleteDest:
            if schedFlags.split(separator: ",").contains("flag-3") {
                throw .fail("scheduler flag flag-3 is not supported by masq (at 'flag-3')")
            }
            do {
                return .edit(try IPVSCommandParser.parse(words), arguments: words)
            } catch {
                if error.message.hasPrefix("Scheduler or persistence engine not found") {
                    // IPVS's ENOENT from the add/edit, in libipvs's words.
                    throw .operationFailed("Scheduler or persistence engine not found")
                }
                throw .fail(error.description)
            }
        }
    }

    /// A -t/-u service masq can hold, nil for IPv6, firewall marks and SCTP.
    func serviceKey() -> ServiceKey? {
        guard fwmark == nil, let s = service, !s.ipv6, let proto = serviceProto, proto == "tcp" || proto == "udp"
        else { return nil }
        return ServiceKey(proto: proto == "udp" ? .udp : .tcp, address: s.address, port: s.port)
    }

    mutating func set(_ option: IPVSAdmOption) throws(AdminError) {
        guard options.insert(option).inserted else { throw .fail("multiple '\(option.name)' options specified") }
    }

    /// The `while (poptGetNextOpt(...))` switch of `parse_options`.
    mutating func take(_ option: PoptScanner.Option, _ value: String?) throws(AdminError) {
        let v = value ?? ""
        switch option.tag {
        case .tcpService, .udpService, .sctpService:
            try set(.service)
            serviceProto = option.tag == .tcpService ? "tcp" : option.tag == .udpService ? "udp" : "sctp"
            guard let s = parseService(v) else { throw .fail("illegal virtual server address[:port] specified") }
            service = s
            switch option.tag {
            case .sctpService: words += ["--sctp-service", v]
            case _ where s.ipv6: words += ["-6"]
            default: words += [option.tag == .udpService ? "-u" : "-t", "\(s.address):\(s.port)"]
            }
        case .fwmarkService:
            try set(.service)
            serviceProto = "tcp"
            guard let mark = CSemantics.stringToNumber(v, min: Int(Int64.min), max: Int(Int64.max)),
                  mark > 0, mark <= Int(UInt32.max) else {
                throw .fail("invalid fwmark value `\(v)' specified")
            }
            fwmark = UInt32(mark)
            words += ["-f", v]
        case .scheduler:
            try set(.scheduler)
            scheduler = CFormat.cut(v, 15)  // IP_VS_SCHEDNAME_MAXLEN - 1
            words += ["-s", scheduler]
        case .persistent:
            try set(.persistent)
            if let value {
                let t = try timeout(value, min: 1)
                persistence = t
                words += ["-p", String(t)]
            } else {
                persistence = AdminCommandLine.defaultPersistence
                words += ["-p"]
            }
        case .netmask:
            try set(.netmask)
            if service?.ipv6 ?? serviceIPv6 {
                guard (1...128).contains(CSemantics.atoi(v)) else { throw .fail("illegal ipv6 netmask specified") }
            } else {
                guard let mask = CSemantics.inetAton(v) ?? resolver.address(forHost: v) else {
                    throw .fail("illegal virtual server persistent mask specified")
                }
                words += ["-M", mask.description]
            }
        case .realServer:
            try set(.server)
            guard let s = parseService(v) else { throw .fail("illegal real server address[:port] specified") }
            server = s
            words += s.ipv6 ? ["-6"] : ["-r", s.portGiven ? "\(s.address):\(s.port)" : s.address.description]
        case .ipip, .gatewaying, .masquerading:
            try set(.forward)
            forward = option.tag == .ipip ? .tunnelling : option.tag == .gatewaying ? .gatewaying : .masquerading
            words += [option.tag == .ipip ? "-i" : option.tag == .gatewaying ? "-g" : "-m"]
        case .weight:
            try set(.weight)
            guard let w = CSemantics.stringToNumber(v, min: 0, max: 65535) else { throw .fail("illegal weight specified") }
            words += ["-w", String(w)]
        case .uThreshold, .lThreshold:
            let upper = option.tag == .uThreshold
            try set(upper ? .uThreshold : .lThreshold)
            guard let t = CSemantics.stringToNumber(v, min: 0, max: Int(Int32.max)) else {
                throw .fail(upper ? "illegal u_threshold specified" : "illegal l_threshold specified")
            }
            words += [upper ? "-x" : "-y", String(t)]
        case .connection: try set(.connection)
        case .numeric: try set(.numeric)
        case .mcastInterface: try set(.mcast)
        case .syncID:
            try set(.syncID)
            guard CSemantics.stringToNumber(v, min: 0, max: 255) != nil else { throw .fail("illegal syncid specified") }
        case .timeout: try set(.timeout)
        case .daemon: try set(.daemon)
        case .stats: try set(.stats)
        case .rate: try set(.rate)
        case .thresholds: try set(.thresholds)
        case .persistentConn: try set(.persistentConn)
        case .noSort: try set(.noSort)
        case .sort: break  // "Sort is the default, this is a no-op for compatibility"
        case .exact: try set(.exact)
        case .ipv6:
            guard fwmark != nil else { throw .fail("-6 used before -f\n") }  // sic: fail() adds a second newline
            serviceIPv6 = true
            words += ["-6"]
        case .ops:
            try set(.onePacket)
            onePacket = true
            words += ["-o"]
        case .pe:
            try set(.persistenceEngine)
            words += ["--pe"]
        case .schedFlags:
            try set(.schedFlags)
            schedFlags = CFormat.cut(v, 127)  // sched_flags_arg[128]
            words += ["-b", schedFlags]
        case .mcastGroup:
            try set(.mcastGroup)
            if v.contains(":") {
                let first = v.split(separator: ":", omittingEmptySubsequences: false).first ?? ""
                guard CSemantics.isIPv6(v), first.count == 4, first.lowercased().hasPrefix("ff") else {
                    throw .fail("invalid IPv6 mcast-group `\(v)'")
                }
            } else {
                guard let a = IPv4Address(v), v.split(separator: ".").allSatisfy({ $0 == "0" || $0.first != "0" }),
                      a.rawValue >> 28 == 0xe else {
                    throw .fail("invalid IPv4 mcast-group `\(v)'")
                }
            }
        case .mcastPort:
            try set(.mcastPort)
            guard CSemantics.stringToNumber(v, min: 1, max: 65535) != nil else { throw .fail("illegal mcast-port specified") }
        case .mcastTTL:
            try set(.mcastTTL)
            guard CSemantics.stringToNumber(v, min: 1, max: 255) != nil else { throw .fail("illegal mcast-ttl specified") }
        case .syncMaxlen:
            try set(.syncMaxlen)
            guard CSemantics.stringToNumber(v, min: 1, max: 65535 - 20 - 8) != nil else {
                throw .fail("illegal sync-maxlen specified")
            }
        case .tunInfo: try set(.tunInfo)
        case .tunType:
            try set(.tunType)
            guard let t = tunnelNames.firstIndex(of: v) else { throw .fail("illegal tunnel type specified") }
            tunnelType = t
        case .tunPort:
            try set(.tunPort)
            guard CSemantics.stringToNumber(v, min: 1, max: 65535) != nil else { throw .fail("illegal tunnel port specified") }
        case .tunNoCsum: try set(.tunNoCsum)
        case .tunCsum: try set(.tunCsum)
        case .tunRemCsum: try set(.tunRemCsum)
        case .addService, .editService, .deleteService, .clear, .list, .zero, .addServer, .editServer,
             .deleteServer, .set, .help, .version, .restore, .save, .startDaemon, .stopDaemon:
            // A second command is not a command any more: the loop's default case.
            throw .fail("invalid option `\(popt.badOption)'")
        }
    }

    /// ipvsadm's `parse_timeout(buf, min, MAX_TIMEOUT)`.
    func timeout(_ text: String, min: Int) throws(AdminError) -> Int {
        guard let t = CSemantics.stringToNumber(text, min: min, max: AdminCommandLine.maxTimeout) else {
            throw .fail("invalid timeout value `\(text)' specified")
        }
        return t
    }

    /// ipvsadm's `parse_service`: `[IPv6]:port`, IPv6, or `host[:port]` where host is an `inet_aton`
    /// address or an /etc/hosts name and port a number or an /etc/services name for the protocol
    /// known so far. nil is SERVICE_NONE (no address).
    func parseService(_ text: String) -> ParsedEndpoint? {
        if text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) { return nil }  // str_is_digit (also "")
        var host = Substring(text)
        var portText: Substring?
        var bracketPort: Substring?
        if host.hasPrefix("[") {
            host = host.dropFirst()
            guard let close = host.firstIndex(of: "]") else { return nil }
            let after = host[host.index(after: close)...]
            guard after.first == ":" else { return nil }
            bracketPort = after.dropFirst()
            host = host[..<close]
        }
        var ipv6 = false
        var address = IPv4Address(rawValue: 0)
        var isAny = false
        if CSemantics.isIPv6(String(host)) {
            ipv6 = true
            portText = bracketPort
            isAny = String(host).utf8.allSatisfy { $0 == 0x3a || $0 == 0x30 || $0 == 0x2e }
        } else {
            if let colon = host.lastIndex(of: ":") {
                portText = host[host.index(after: colon)...]
                host = host[..<colon]
            }
            guard let a = CSemantics.inetAton(String(host)) ?? resolver.address(forHost: String(host)) else {
                return nil
            }
            address = a
            isAny = a.rawValue == 0
        }
        var port: UInt16 = 0
        if let portText {
            if let n = CSemantics.stringToNumber(String(portText), min: 0, max: 65535) {
                port = UInt16(n)
            } else if let proto = serviceProto, let p = resolver.port(forService: String(portText), proto: proto) {
                port = p
            } else {
                return nil
            }
        }
        return ParsedEndpoint(ipv6: ipv6, address: address, port: port, portGiven: portText != nil, isAny: isAny)
    }

    /// ipvsadm's `parse_sched_flags`, against the scheduler given (or wlc).
    func checkSchedulerFlags() throws(AdminError) {
        let sched = scheduler.isEmpty ? Schedulers.defaultName : scheduler
        let flags = schedFlags.split(separator: ",")
        // strtok finds no flag in ",,,": ipvsadm then crashes on strcmp(NULL); masq refuses it.
        guard !flags.isEmpty else { throw .fail("invalid scheduler flag `\(schedFlags)'") }
        for flag in flags {
            switch flag {
            case "flag-1", "flag-2", "flag-3": break
            case "sh-fallback", "sh-port":
                if sched != "sh" { throw .fail("incompatible scheduler flag `\(flag)'") }
            case "mh-fallback", "mh-port":
                if sched != "mh" { throw .fail("incompatible scheduler flag `\(flag)'") }
            default:
                throw .fail("invalid scheduler flag `\(flag)'")
            }
        }
    }

    /// ipvsadm's `generic_opt_check`.
    func genericOptionCheck(_ command: IPVSAdmCommand) throws(AdminError) {
        let row = Array(commandsVersusOptions[command.rawValue])
        let name = AdminCommandLine.commandNames[command.rawValue]
        var last: IPVSAdmOption?
        for option in IPVSAdmOption.allCases {
            let rule = row[option.rawValue]
            if !options.contains(option) {
                if rule == "+" { throw .fail("You need to supply the '\(option.name)' option for the '\(name)' command") }
            } else {
                if rule == "x" { throw .fail("Illegal '\(option.name)' option with the '\(name)' command") }
                if rule == "1" {
                    if let last {
                        throw .fail("The option '\(option.name)' conflicts with the '\(last.name)' option in the '\(name)' command")
                    }
                    last = option
                }
            }
        }
    }

    /// ipvsadm's `tunnel_opt_check`.
    func tunnelOptionCheck() throws(AdminError) {
        let row = Array(tunnelTypesVersusOptions[tunnelType])
        let name = tunnelNames[tunnelType]
        var last: IPVSAdmOption?
        for (j, option) in [IPVSAdmOption.tunPort, .tunNoCsum, .tunCsum, .tunRemCsum].enumerated() {
            let rule = row[j]
            if !options.contains(option) {
                if rule == "+" { throw .fail("You need to supply the '\(option.name)' option for the '\(name)' tunnel type") }
            } else {
                if rule == "x" { throw .fail("Illegal '\(option.name)' option with the '\(name)' tunnel type") }
                if rule == "1" {
                    if let last {
                        throw .fail("The option '\(option.name)' conflicts with the '\(last.name)' option in the '\(name)' tunnel type")
                    }
                    last = option
                }
            }
        }
    }
}
