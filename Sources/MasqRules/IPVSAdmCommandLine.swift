import MasqCore

/// One ipvsadm command line, parsed and checked as ipvsadm 1.31 does (`parse_options` and
/// `process_options` in ipvsadm.c): what `masqadm` runs, and, for the editing commands, what a rules
/// file line (`ipvsadm-save` output, `ipvsadm -R` input) and the daemon's `apply` hold.
public enum IPVSAdmCommand: Equatable, Sendable {
    /// `-A -E -D -C -a -e -d`, host and port names resolved (`IPVSCommand.ipvsadmArguments` gives it
    /// back as numeric ipvsadm words, to send to the daemon or to write in a rules file).
    case edit(IPVSCommand)
    /// `-L|-l|--list` (and no arguments at all, which ipvsadm treats as `-L`).
    case list(ListOptions)
    /// `-Z|--zero [service]`: nil zeroes every service (as ipvsadm does for no service, or for the
    /// service 0.0.0.0:0, which libipvs's `ipvs_zero_service` sends without a service).
    case zero(ServiceKey?)
    /// `-S|--save [-n]`.
    case save(numeric: Bool)
    /// `-R|--restore`: ipvsadm then reads commands from stdin (`TextFile.lines`, no comments).
    case restore
    /// `--set tcp tcpfin udp`, in seconds (0 leaves a value unchanged in IPVS).
    case setTimeouts(tcp: UInt32, tcpFin: UInt32, udp: UInt32)
    /// `-h|--help`.
    case help
    /// `-v|--version`.
    case version
    /// `--start-daemon master|backup [--mcast-interface IF] [--syncid N] [--sync-maxlen N]
    /// [--mcast-group A] [--mcast-port P] [--mcast-ttl T]`: what was given (the daemon fills in the
    /// kernel's defaults when it starts, `SyncDaemonConfig.resolved`).
    case startDaemon(SyncDaemonConfig)
    /// `--stop-daemon master|backup`.
    case stopDaemon(SyncDaemonRole)
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
    /// `--daemon`: the sync daemons running (`list_daemon`), nothing else.
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

/// Why a command line is refused: the shape of the refusal (which the front ends turn into their own
/// words: ipvsadm's stderr and exit status in masqadm, file:line in the rules file), the words, and the
/// word at fault.
public struct IPVSCommandError: Error, Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        /// ipvsadm's `fail(2, msg)`: every value and consistency check ("illegal weight specified",
        /// "You need to supply the 'O' option for the 'C' command", …).
        case invalid
        /// What ipvsadm accepts and masq does not do (NAT only, SCTP, `--pe`, …):
        /// masq's words, which name the token.
        case unsupported
        /// ipvsadm's `tryhelp_exit`: the first option is not a command (or `-R` while restoring).
        case notACommand
        /// A popt error after the first option ("unknown option", "missing argument", …): ipvsadm
        /// prints "WORD: REASON" and exits 255.
        case popt
        /// What IPVS itself would refuse with ESRCH: a service masq cannot hold (IPVS has no such
        /// service); libipvs's words. ipvsadm's `list_service` exits 1, the other commands 255.
        case noSuchService(listing: Bool)
        /// IPVS's ENOENT for `-s` naming a scheduler it lacks; libipvs's words, exit 255.
        case noSuchScheduler
    }

    public var kind: Kind
    /// ipvsadm's words (or masq's, for `unsupported` and `notACommand`).
    public var message: String
    /// The word at fault (an option, a value, or an option's name for the option checks).
    public var token: String
    /// What masq adds where ipvsadm's words alone don't say which name failed (the rules file shows it).
    public var detail: String?

    public init(_ kind: Kind, _ message: String, token: String, detail: String? = nil) {
        self.kind = kind
        self.message = message
        self.token = token
        self.detail = detail
    }

    /// The words with masq's detail, for the rules file and the daemon.
    public var explained: String { detail.map { "\(message): \($0)" } ?? message }
}

public enum IPVSAdmCommandLine {
    /// Parses a command line (without argv[0]) as ipvsadm 1.31 does, checking everything ipvsadm
    /// checks before it talks to IPVS, in ipvsadm's order, with its words; then what masq refuses.
    ///
    /// - Parameters:
    ///   - readingStdin: true for a line `-R` reads (a rules file line too): ipvsadm refuses `-R` there.
    ///   - names: host and port names (`web1:http`), from /etc/hosts and /etc/services only, never
    ///     DNS; asked for only when a word is not numeric.
    public static func parse(_ arguments: [String], readingStdin: Bool = false,
                             names: @escaping () -> NameResolver) throws(IPVSCommandError) -> IPVSAdmCommand {
        // main(): no arguments at all lists the table.
        if arguments.isEmpty && !readingStdin { return .list(ListOptions()) }
        // A C string ends at a NUL: argv never holds one, a rules file line might.
        if let word = arguments.first(where: { $0.utf8.contains(0) }) {
            throw IPVSCommandError(.popt, "argument holds a NUL byte", token: word)
        }
        var parser = Parser(popt: PoptScanner(arguments), names: names)
        return try parser.run(readingStdin: readingStdin)
    }

    /// An IPVS `HOST[:PORT]`, `[IPv6]:PORT` or bare IPv6 address as `parse_service` reads it before
    /// any protocol is known (so port names fail); nil for what it refuses.
    static func endpoint(_ text: String, names: @escaping () -> NameResolver) -> (IPAddress, UInt16?)? {
        guard let e = try? Parser(popt: PoptScanner([]), names: names).parseService(text) else { return nil }
        return (e.address, e.portGiven ? e.port : nil)
    }

    /// ipvsadm's `MAX_TIMEOUT`: 31 days.
    static let maxTimeout = 86400 * 31

    static let natOnly = "masq forwards in NAT mode only (-m, --masquerading); direct routing (-g) and tunnelling (-i) are not supported"
}

// MARK: - ipvsadm's tables

/// ipvsadm's `CMD_*`, in its order (the rows of `commands_v_options`).
private enum CommandCode: Int {
    case add = 0, edit, delete, flush, list, addDest, deleteDest, editDest, timeout, startDaemon, stopDaemon
    case restore, save, zero

    /// ipvsadm's `cmdnames` (the words of its option-check errors).
    var name: String {
        [
            "add-service", "edit-service", "delete-service", "flush", "list", "add-server", "delete-server",
            "edit-server", "set", "start-daemon", "stop-daemon", "restore", "save", "zero",
        ][rawValue]
    }
}

/// ipvsadm's `OPTC_*`: bit numbers of the options given, and the columns of `commands_v_options`.
private enum OptionCode: Int, CaseIterable {
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
private let commandsVersusOptions: [String] = [
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
private let tunnelTypesVersusOptions = ["xxxx", "+111", "x11x"]
private let tunnelNames = ["ipip", "gue", "gre"]

/// An address[:port] as ipvsadm's `parse_service` read it: `ce->svc.af` is the address's family.
private struct ParsedEndpoint: Equatable {
    var address: IPAddress
    var port: UInt16
    var portGiven: Bool

    var ipv6: Bool { address.isIPv6 }
    /// 0.0.0.0 or ::
    var isAny: Bool { address == .v4(IPv4Address(rawValue: 0)) || address == .v6(.unspecified) }
}

/// `parse_service` found no address: SERVICE_NONE, with which name failed when masq can say.
private struct IllegalEndpoint: Error {
    var detail: String?
}

private enum Forward { case masquerading, gatewaying, tunnelling }

/// `buf[n] = '\0'` after a `strncpy` into a fixed buffer: the first n bytes.
private func cut(_ text: String, _ bytes: Int) -> String {
    let u = Array(text.utf8)
    return u.count <= bytes ? text : String(decoding: u[..<bytes], as: UTF8.self)
}

// MARK: - ipvsadm's parse_options / process_options

private struct Parser {
    var popt: PoptScanner
    let names: () -> NameResolver

    var options = Set<OptionCode>()
    var commandWord = ""
    var serviceProto: String?  // "tcp", "udp", "sctp"; `ce->svc.protocol`
    var serviceText = ""
    var service: ParsedEndpoint?
    var fwmark: UInt32?
    var serviceIPv6 = false  // -6 after -f
    var scheduler = ""
    var persistence: Int?
    var netmask: IPv4Address?
    /// `-M` of an IPv6 service (or of `-f -6`): a prefix length, 1...128.
    var prefixLength: UInt8?
    var server: ParsedEndpoint?
    var weight: Int?
    /// `-x`, `-y`: `ce->dest.u_threshold`, `l_threshold` (0 when not given: `memset(&ce, 0, …)`).
    var upperThreshold: UInt32 = 0
    var lowerThreshold: UInt32 = 0
    var forward: Forward?
    var onePacket = false
    var schedFlags = ""
    var tunnelType = 0
    // --start-daemon's parameters (`ce->daemon`).
    var daemonRole: SyncDaemonRole?
    var mcastInterface = ""
    var syncID: UInt8 = 0
    var syncMaxLength: Int?
    var mcastGroup: IPv4Address?
    var mcastPort: UInt16?
    var mcastTTL: UInt8?
    /// masq's first refusal of what ipvsadm accepts, in the order given; thrown once ipvsadm's own
    /// checks pass, so a line ipvsadm refuses gets ipvsadm's words.
    var refusal: IPVSCommandError?

    init(popt: PoptScanner, names: @escaping () -> NameResolver) {
        self.popt = popt
        self.names = names
    }

    mutating func run(readingStdin: Bool) throws(IPVSCommandError) -> IPVSAdmCommand {
        // The first option must be a command (parse_options' first switch).
        let notACommand = IPVSCommandError(.notACommand, "no command (-A, -E, -D, -C, -a, -e or -d)",
                                           token: popt.firstWord)
        guard case .option(let first, let firstValue) = popt.nextEvent() else { throw notACommand }
        commandWord = popt.optionWord
        let command: CommandCode
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
            guard let role = firstValue.flatMap(SyncDaemonRole.init(rawValue:)) else {
                throw invalid(first.tag == .startDaemon
                    ? "illegal start-daemon parameter specified" : "illegal start_daemon specified", firstValue ?? "")
            }
            daemonRole = role
        default: throw notACommand
        }
        let kind: IPVSCommand.Kind? = switch command {
        case .add: .addService
        case .edit: .editService
        case .delete: .deleteService
        case .flush: .clear
        case .addDest: .addServer
        case .editDest: .editServer
        case .deleteDest: .deleteServer
        default: nil
        }

        // The other options, in order; the first bad value stops everything (fail() exits).
        loop: while true {
            switch popt.nextEvent() {
            case .end: break loop
            case .error(let reason):
                throw IPVSCommandError(.popt, reason, token: popt.badOption)
            case .option(let option, let value):
                try take(option, value)
            }
        }

        var timeouts: (tcp: UInt32, tcpFin: UInt32, udp: UInt32)?
        if command == .timeout {
            guard let tcp = popt.nextArgument(), let fin = popt.nextArgument(), let udp = popt.nextArgument() else {
                throw invalid("--set option requires 3 timeout values", commandWord)
            }
            timeouts = (UInt32(try timeout(tcp, min: 0)), UInt32(try timeout(fin, min: 0)), UInt32(try timeout(udp, min: 0)))
        }
        if let extra = popt.nextArgument() { throw invalid("unexpected argument \(extra)", extra) }
        if !schedFlags.isEmpty { try checkSchedulerFlags() }

        try genericOptionCheck(command)

        if command == .add || command == .edit {
            if fwmark == nil, service?.port == 0, persistence == nil {
                throw invalid("Zero port specified for non-persistent service", serviceText)
            }
            if onePacket, fwmark == nil, serviceProto != "udp" {
                throw invalid("One-Packet Scheduling is only for UDP virtual services", "-o")
            }
        }
        if command == .addDest || command == .editDest {
            let method = forward ?? .gatewaying  // ipvsadm's default: direct routing
            let serviceV6 = service?.ipv6 ?? serviceIPv6
            if (server?.ipv6 ?? false) != serviceV6 && method != .tunnelling {
                throw invalid("Different address family is allowed only for tunneling servers", "-r")
            }
            let tunnelOptions: [OptionCode] = [.tunType, .tunPort, .tunNoCsum, .tunCsum, .tunRemCsum]
            if tunnelOptions.contains(where: options.contains) && method != .tunnelling {
                throw invalid("Tunnel options conflict with forward method", "--tun-type")
            }
            try tunnelOptionCheck()
        }
        if command == .list {
            let o = options
            if (!o.isDisjoint(with: [.connection, .timeout, .daemon]) && !o.isDisjoint(with: [.stats, .rate, .thresholds]))
                || (!o.isDisjoint(with: [.timeout, .daemon]) && o.contains(.persistentConn)) {
                throw invalid("options conflicts in the list command", commandWord)
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
                guard let key = serviceKey() else {
                    throw IPVSCommandError(.noSuchService(listing: true), "No such service", token: serviceText)
                }
                l.service = key
            }
            return .list(l)
        case .zero:
            guard options.contains(.service) else { return .zero(nil) }
            if fwmark == nil, let s = service, s.isAny, s.port == 0 { return .zero(nil) }  // ipvs_zero_service
            guard let key = serviceKey() else {
                throw IPVSCommandError(.noSuchService(listing: false), "No such service", token: serviceText)
            }
            return .zero(key)
        case .save:
            return .save(numeric: options.contains(.numeric))
        case .restore:
            // restore_table: avoid an infinite loop.
            if readingStdin { throw IPVSCommandError(.notACommand, "-R cannot be restored", token: commandWord) }
            return .restore
        case .timeout:
            let t = timeouts!
            return .setTimeouts(tcp: t.tcp, tcpFin: t.tcpFin, udp: t.udp)
        case .startDaemon:
            if let refusal { throw refusal }
            return .startDaemon(SyncDaemonConfig(
                role: daemonRole!, interface: mcastInterface.isEmpty ? SyncDaemonConfig.defaultInterface : mcastInterface,
                syncID: syncID, maxLength: syncMaxLength, group: mcastGroup, port: mcastPort, ttl: mcastTTL))
        case .stopDaemon:
            return .stopDaemon(daemonRole!)
        case .add, .edit, .delete, .flush, .addDest, .editDest, .deleteDest:
            return .edit(try editCommand(kind!))
        }
    }

    /// The editing command, once ipvsadm has nothing against it: masq's own refusals last.
    func editCommand(_ kind: IPVSCommand.Kind) throws(IPVSCommandError) -> IPVSCommand {
        if schedFlags.split(separator: ",").contains("flag-3") {
            throw unsupported("scheduler flag flag-3 is not supported by masq", "flag-3")
        }
        if let refusal { throw refusal }
        if kind == .addServer && forward == nil {
            throw unsupported("no forwarding method: ipvsadm would use -g (direct routing), and "
                              + "\(IPVSAdmCommandLine.natOnly); add -m", commandWord)
        }
        var command = IPVSCommand(kind: kind)
        command.service = serviceKey()
        if options.contains(.scheduler) { command.scheduler = scheduler }
        if !schedFlags.isEmpty {
            var flags: SchedulerFlags = []
            for name in schedFlags.split(separator: ",") {
                flags.insert(name.hasSuffix("-port") || name == "flag-2" ? .port : .fallback)
            }
            command.schedulerFlags = flags
        }
        command.persistence = persistence.map { UInt32($0) }
        command.netmask = netmask
        command.prefixLength = prefixLength
        if kind == .addService || kind == .editService, onePacket { command.onePacket = true }
        if let server {
            // ipvsadm copies the virtual port to a real server given without one (a firewall-mark
            // service's is 0: the packet's own port). An IPv4 server keeps "no port" (its words read
            // back the same); an IPv6 one takes the port now, because its only portless form is the
            // bare address, which the numeric writer (`IPVSCommand.ipvsadmArguments`) does not produce.
            let port: UInt16? = server.portGiven ? server.port : server.ipv6 ? (service?.port ?? 0) : nil
            command.realServer = (server.address, port)
        }
        command.weight = weight.map { Int32($0) }
        // 0 is what an omitted -x/-y sends too (`-e` sets both afresh, as ipvs_update_dest does).
        if upperThreshold != 0 { command.upperThreshold = upperThreshold }
        if lowerThreshold != 0 { command.lowerThreshold = lowerThreshold }
        return command
    }

    /// A -t/-u service (of either family) or a -f service (`-6`: IPv6); nil for SCTP.
    func serviceKey() -> ServiceKey? {
        if let fwmark { return ServiceKey(fwmark: fwmark, ipv6: serviceIPv6) }
        guard let s = service, let proto = serviceProto, proto == "tcp" || proto == "udp"
        else { return nil }
        return ServiceKey(proto: proto == "udp" ? .udp : .tcp, address: s.address, port: s.port)
    }

    func invalid(_ message: String, _ token: String, detail: String? = nil) -> IPVSCommandError {
        IPVSCommandError(.invalid, message, token: token, detail: detail)
    }

    func unsupported(_ message: String, _ token: String) -> IPVSCommandError {
        IPVSCommandError(.unsupported, message, token: token)
    }

    /// Keeps masq's first refusal (ipvsadm reads on).
    mutating func refuse(_ message: String, _ token: String) {
        if refusal == nil { refusal = unsupported(message, token) }
    }

    mutating func set(_ option: OptionCode) throws(IPVSCommandError) {
        guard options.insert(option).inserted else {
            throw invalid("multiple '\(option.name)' options specified", popt.optionWord)
        }
    }

    /// The `while (poptGetNextOpt(...))` switch of `parse_options`.
    mutating func take(_ option: PoptScanner.Option, _ value: String?) throws(IPVSCommandError) {
        let v = value ?? ""
        switch option.tag {
        case .tcpService, .udpService, .sctpService:
            try set(.service)
            serviceProto = option.tag == .tcpService ? "tcp" : option.tag == .udpService ? "udp" : "sctp"
            serviceText = v
            let s = try endpoint(v, illegal: "illegal virtual server address[:port] specified")
            service = s
            // parse_service sets `svc->netmask = 128` for an IPv6 address: a `-M` before it is lost.
            if s.ipv6 {
                netmask = nil
                prefixLength = nil
            }
            if option.tag == .sctpService {
                refuse("SCTP services are not supported by masq (use -t or -u)", "--sctp-service")
            }
        case .fwmarkService:
            try set(.service)
            serviceProto = "tcp"
            serviceText = v
            guard let mark = GlibcParsing.stringToNumber(v, min: Int(Int64.min), max: Int(Int64.max)),
                  mark > 0, mark <= Int(UInt32.max) else {
                throw invalid("invalid fwmark value `\(v)' specified", v)
            }
            fwmark = UInt32(mark)
        case .scheduler:
            try set(.scheduler)
            scheduler = cut(v, 15)  // IP_VS_SCHEDNAME_MAXLEN - 1
            if Schedulers.type(named: scheduler) == nil, refusal == nil {
                // IPVS's ENOENT from the add/edit, in libipvs's words.
                refusal = IPVSCommandError(.noSuchScheduler, "Scheduler or persistence engine not found",
                                           token: scheduler,
                                           detail: "masq has \(Schedulers.all.map { $0.name }.joined(separator: ", "))")
            }
        case .persistent:
            try set(.persistent)
            if let value {
                persistence = try timeout(value, min: 1)
            } else {
                persistence = Int(ServiceSpec.defaultPersistence)  // libipvs's IPVS_SVC_PERSISTENT_TIMEOUT
            }
        case .netmask:
            try set(.netmask)
            if service?.ipv6 ?? serviceIPv6 {
                // `ce->svc.netmask = atoi(optarg)`: "64abc" is 64, as in ipvsadm.
                let length = GlibcParsing.atoi(v)
                guard (1...128).contains(length) else { throw invalid("illegal ipv6 netmask specified", v) }
                prefixLength = UInt8(length)
            } else {
                guard let mask = GlibcParsing.inetAton(v) ?? (isNumeric(v) ? nil : names().address(forHost: v)) else {
                    throw invalid("illegal virtual server persistent mask specified", v)
                }
                netmask = mask
            }
        case .realServer:
            try set(.server)
            let s = try endpoint(v, illegal: "illegal real server address[:port] specified")
            server = s
        case .ipip, .gatewaying, .masquerading:
            try set(.forward)
            forward = option.tag == .ipip ? .tunnelling : option.tag == .gatewaying ? .gatewaying : .masquerading
            if forward != .masquerading { refuse(IPVSAdmCommandLine.natOnly, option.tag == .ipip ? "-i" : "-g") }
        case .weight:
            try set(.weight)
            guard let w = GlibcParsing.stringToNumber(v, min: 0, max: 65535) else {
                throw invalid("illegal weight specified", v)
            }
            weight = w
        case .uThreshold, .lThreshold:
            let upper = option.tag == .uThreshold
            try set(upper ? .uThreshold : .lThreshold)
            // `string_to_number(optarg, 0, INT_MAX)`.
            guard let t = GlibcParsing.stringToNumber(v, min: 0, max: Int(Int32.max)) else {
                throw invalid(upper ? "illegal u_threshold specified" : "illegal l_threshold specified", v)
            }
            if upper { upperThreshold = UInt32(t) } else { lowerThreshold = UInt32(t) }
        case .connection: try set(.connection)
        case .numeric: try set(.numeric)
        case .mcastInterface:
            try set(.mcast)
            mcastInterface = cut(v, SyncDaemonConfig.interfaceNameMaximum)  // strncpy(mcast_ifn, optarg, IP_VS_IFNAME_MAXLEN - 1)
        case .syncID:
            try set(.syncID)
            guard let id = GlibcParsing.stringToNumber(v, min: 0, max: 255) else { throw invalid("illegal syncid specified", v) }
            syncID = UInt8(id)
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
            // sic: fail() adds a second newline
            guard fwmark != nil else { throw invalid("-6 used before -f\n", popt.optionWord) }
            // `ce->svc.af = AF_INET6; ce->svc.netmask = 128`: the -f service is IPv6 (a -M before
            // the -6 is lost).
            serviceIPv6 = true
            netmask = nil
            prefixLength = nil
        case .ops:
            try set(.onePacket)
            onePacket = true  // `ce->svc.flags |= IP_VS_SVC_F_ONEPACKET`
        case .pe:
            try set(.persistenceEngine)
            refuse("option --pe is not supported by masq", "--pe")
        case .schedFlags:
            try set(.schedFlags)
            schedFlags = cut(v, 127)  // sched_flags_arg[128]
        case .mcastGroup:
            try set(.mcastGroup)
            if v.contains(":") {
                let first = v.split(separator: ":", omittingEmptySubsequences: false).first ?? ""
                guard GlibcParsing.isIPv6(v), first.count == 4, first.lowercased().hasPrefix("ff") else {
                    throw invalid("invalid IPv6 mcast-group `\(v)'", v)
                }
                refuse("IPv6 multicast groups are not supported by masq (its sync runs over IPv4)", v)
            } else {
                guard let a = IPv4Address(v), v.split(separator: ".").allSatisfy({ $0 == "0" || $0.first != "0" }),
                      a.rawValue >> 28 == 0xe else {
                    throw invalid("invalid IPv4 mcast-group `\(v)'", v)
                }
                mcastGroup = a
            }
        case .mcastPort:
            try set(.mcastPort)
            guard let p = GlibcParsing.stringToNumber(v, min: 1, max: 65535) else {
                throw invalid("illegal mcast-port specified", v)
            }
            mcastPort = UInt16(p)
        case .mcastTTL:
            try set(.mcastTTL)
            guard let t = GlibcParsing.stringToNumber(v, min: 1, max: 255) else {
                throw invalid("illegal mcast-ttl specified", v)
            }
            mcastTTL = UInt8(t)
        case .syncMaxlen:
            try set(.syncMaxlen)
            guard let n = GlibcParsing.stringToNumber(v, min: 1, max: 65535 - 20 - 8) else {
                throw invalid("illegal sync-maxlen specified", v)
            }
            syncMaxLength = n
        case .tunInfo: try set(.tunInfo)
        case .tunType:
            try set(.tunType)
            guard let t = tunnelNames.firstIndex(of: v) else { throw invalid("illegal tunnel type specified", v) }
            tunnelType = t
        case .tunPort:
            try set(.tunPort)
            guard GlibcParsing.stringToNumber(v, min: 1, max: 65535) != nil else {
                throw invalid("illegal tunnel port specified", v)
            }
        case .tunNoCsum: try set(.tunNoCsum)
        case .tunCsum: try set(.tunCsum)
        case .tunRemCsum: try set(.tunRemCsum)
        case .addService, .editService, .deleteService, .clear, .list, .zero, .addServer, .editServer,
             .deleteServer, .set, .help, .version, .restore, .save, .startDaemon, .stopDaemon:
            // A second command is not a command any more: the loop's default case.
            throw invalid("invalid option `\(popt.badOption)'", popt.optionWord)
        }
    }

    /// ipvsadm's `parse_timeout(buf, min, MAX_TIMEOUT)`.
    func timeout(_ text: String, min: Int) throws(IPVSCommandError) -> Int {
        guard let t = GlibcParsing.stringToNumber(text, min: min, max: IPVSAdmCommandLine.maxTimeout) else {
            throw invalid("invalid timeout value `\(text)' specified", text)
        }
        return t
    }

    /// `parse_service`, refused in ipvsadm's words (`illegal`) with which name failed.
    func endpoint(_ text: String, illegal: String) throws(IPVSCommandError) -> ParsedEndpoint {
        do {
            return try parseService(text)
        } catch {
            throw invalid(illegal, text, detail: error.detail)
        }
    }

    /// ipvsadm's `parse_service`: `[IPv6]:port`, IPv6, or `host[:port]` where host is an `inet_aton`
    /// address or an /etc/hosts name and port a number or an /etc/services name for the protocol
    /// known so far (`-r` copies `ce->svc`, whose protocol only a `-t`/`-u` before it has set).
    func parseService(_ text: String) throws(IllegalEndpoint) -> ParsedEndpoint {
        if text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) { throw IllegalEndpoint() }  // str_is_digit (also "")
        var host = Substring(text)
        var portText: Substring?
        var bracketPort: Substring?
        if host.hasPrefix("[") {
            host = host.dropFirst()
            guard let close = host.firstIndex(of: "]") else { throw IllegalEndpoint() }
            let after = host[host.index(after: close)...]
            guard after.first == ":" else {
                // ipvsadm refuses `[2001:2::201]` (no port after the brackets).
                throw IllegalEndpoint(detail: after.isEmpty && GlibcParsing.inet6Pton(String(host[..<close])) != nil
                    ? "an IPv6 address in brackets needs a port ([ADDRESS]:PORT); without one, give it bare" : nil)
            }
            bracketPort = after.dropFirst()
            host = host[..<close]
        }
        let address: IPAddress
        if let v6 = GlibcParsing.inet6Pton(String(host)) {
            // inet_pton(AF_INET6) first: a bare IPv6 address has no port (`-r 2001:2::201` takes the
            // service's); `[IPv6]:PORT` gave one. Names never resolve to IPv6 (host_to_addr is
            // gethostbyname, AF_INET only).
            address = .v6(v6)
            portText = bracketPort
        } else {
            // Brackets around what is not IPv6 ("[198.18.0.1]:80"): ipvsadm looks for the port in the
            // text inside them only, so the port after them is lost.
            if let colon = host.lastIndex(of: ":") {
                portText = host[host.index(after: colon)...]
                host = host[..<colon]
            }
            address = .v4(try hostAddress(String(host)))
        }
        var port: UInt16 = 0
        if let portText {
            port = try servicePort(String(portText))
        }
        return ParsedEndpoint(address: address, port: port, portGiven: portText != nil)
    }

    /// `host_to_addr`: `inet_aton`, else /etc/hosts (a mistyped number is not looked up).
    func hostAddress(_ host: String) throws(IllegalEndpoint) -> IPv4Address {
        if let a = GlibcParsing.inetAton(host) { return a }
        guard !host.isEmpty, !host.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2e }), !host.contains(":")
        else { throw IllegalEndpoint() }
        let resolver = names()
        guard let a = resolver.address(forHost: host) else {
            throw IllegalEndpoint(detail: "unknown host '\(host)' (not in \(resolver.hostsSource); masq never asks DNS)")
        }
        return a
    }

    /// `string_to_number(port, 0, 65535)`, else `service_to_port` for the protocol known so far.
    func servicePort(_ text: String) throws(IllegalEndpoint) -> UInt16 {
        if let n = GlibcParsing.stringToNumber(text, min: 0, max: 65535) { return UInt16(n) }
        guard !text.isEmpty, !isNumeric(text) else { throw IllegalEndpoint() }
        guard let proto = serviceProto else {
            throw IllegalEndpoint(detail: "service name '\(text)' before the protocol is known "
                                  + "(give -t or -u first, as ipvsadm needs)")
        }
        let resolver = names()
        guard let p = resolver.port(forService: text, proto: proto) else {
            throw IllegalEndpoint(detail: "unknown service name '\(text)' for \(proto) (not in \(resolver.servicesSource))")
        }
        return p
    }

    /// Only ASCII digits (and not empty).
    func isNumeric(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
    }

    /// ipvsadm's `parse_sched_flags`, against the scheduler given (or wlc).
    func checkSchedulerFlags() throws(IPVSCommandError) {
        let sched = scheduler.isEmpty ? Schedulers.defaultName : scheduler
        let flags = schedFlags.split(separator: ",")
        // strtok finds no flag in ",,,": ipvsadm then crashes on strcmp(NULL); masq refuses it.
        guard !flags.isEmpty else { throw invalid("invalid scheduler flag `\(schedFlags)'", schedFlags) }
        for flag in flags {
            switch flag {
            case "flag-1", "flag-2", "flag-3": break
            case "sh-fallback", "sh-port":
                if sched != "sh" { throw invalid("incompatible scheduler flag `\(flag)'", String(flag)) }
            case "mh-fallback", "mh-port":
                if sched != "mh" { throw invalid("incompatible scheduler flag `\(flag)'", String(flag)) }
            default:
                throw invalid("invalid scheduler flag `\(flag)'", String(flag))
            }
        }
    }

    /// ipvsadm's `generic_opt_check`.
    func genericOptionCheck(_ command: CommandCode) throws(IPVSCommandError) {
        try optionCheck(Array(commandsVersusOptions[command.rawValue]), OptionCode.allCases,
                        "the '\(command.name)' command", commandWord)
    }

    /// ipvsadm's `tunnel_opt_check`.
    func tunnelOptionCheck() throws(IPVSCommandError) {
        try optionCheck(Array(tunnelTypesVersusOptions[tunnelType]), [.tunPort, .tunNoCsum, .tunCsum, .tunRemCsum],
                        "the '\(tunnelNames[tunnelType])' tunnel type", "--tun-type")
    }

    /// One row of an ipvsadm options table: `+` compulsory, `x` illegal, `1` one of.
    private func optionCheck(_ row: [Character], _ columns: [OptionCode], _ what: String,
                             _ missingToken: String) throws(IPVSCommandError) {
        var last: OptionCode?
        for (j, option) in columns.enumerated() {
            let rule = row[j]
            if !options.contains(option) {
                if rule == "+" { throw invalid("You need to supply the '\(option.name)' option for \(what)", missingToken) }
            } else {
                if rule == "x" { throw invalid("Illegal '\(option.name)' option with \(what)", option.name) }
                if rule == "1" {
                    if let last {
                        throw invalid("The option '\(option.name)' conflicts with the '\(last.name)' option in \(what)",
                                      option.name)
                    }
                    last = option
                }
            }
        }
    }
}
