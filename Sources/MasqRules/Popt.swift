import CPopt
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// ipvsadm's command line read by libpopt, the library ipvsadm 1.31 itself reads it with (1.19 in
/// Debian 12), driven by ipvsadm's own option table (`parse_options`): so which words are options,
/// which take values (`-srr`, `-t=…`, `--scheduler=rr`, `-p` taking the next word only when it does
/// not start with `-`), where arguments may stand, and which word an error quotes are popt's.
/// One scanner per command line; `nextEvent` is `poptGetNextOpt` with ipvsadm's `optarg`.
final class PoptScanner {
    enum Argument { case none, required, optional }

    struct Option {
        let long: StaticString?
        let short: Character?
        let argument: Argument
        let tag: OptionTag
    }

    enum Event {
        case option(Option, String?)
        case end
        /// popt's words for the error (`poptStrerror`): "unknown option", "missing argument", …
        case error(String)
    }

    private let words: [String]
    /// "ipvsadm" and the words, NUL-terminated C strings, as popt wants `argv` (it skips argv[0]).
    private let argv: UnsafeMutablePointer<UnsafePointer<CChar>?>
    private let argc: Int
    /// ipvsadm's `optarg`: where popt stores each option's value (a copy we then own).
    private let value: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    private let options: UnsafeMutablePointer<masq_popt_option>
    private let context: poptContext?
    /// The last option, as its short form (`-s`) or else its long one: what masq's own refusals name.
    private(set) var optionWord = ""

    init(_ words: [String]) {
        self.words = words
        let all = ["ipvsadm"] + words
        argc = all.count
        argv = .allocate(capacity: argc + 1)
        for (i, word) in all.enumerated() { argv[i] = UnsafePointer(strdup(word)) }
        argv[argc] = nil
        value = .allocate(capacity: 1)
        value.initialize(to: nil)
        options = .allocate(capacity: Self.table.count + 1)
        for (i, o) in Self.table.enumerated() {
            let argInfo: UInt32 = switch o.argument {
            case .none: POPT_ARG_NONE
            case .required: POPT_ARG_STRING
            case .optional: POPT_ARG_STRING | POPT_ARGFLAG_OPTIONAL
            }
            // Static string literals are NUL-terminated and live as long as the program.
            let long = o.long.map { UnsafeRawPointer($0.utf8Start).assumingMemoryBound(to: CChar.self) }
            (options + i).initialize(to: masq_popt_option(
                longName: long, shortName: CChar(o.short?.asciiValue ?? 0), argInfo: argInfo,
                arg: o.argument == .none ? nil : UnsafeMutableRawPointer(value), val: Int32(i + 1),
                descrip: nil, argDescrip: nil))
        }
        (options + Self.table.count).initialize(to: masq_popt_option())  // POPT_TABLEEND
        context = poptGetContext("ipvsadm", Int32(argc), argv, options, 0)
    }

    deinit {
        poptFreeContext(context)
        free(value.pointee)
        value.deallocate()
        options.deinitialize(count: Self.table.count + 1)
        options.deallocate()
        for i in 0..<argc { free(UnsafeMutablePointer(mutating: argv[i])) }
        argv.deallocate()
    }

    /// The first word of the command line.
    var firstWord: String { words.first ?? "" }

    /// `poptBadOption(con, POPT_BADOPTION_NOALIAS)`: the last word popt consumed.
    var badOption: String { poptBadOption(context, POPT_BADOPTION_NOALIAS).map { String(cString: $0) } ?? "" }

    /// `poptGetNextOpt`, and the option's value (`optarg`) when it has one.
    func nextEvent() -> Event {
        let rc = poptGetNextOpt(context)
        if rc == -1 { return .end }
        guard rc > 0 else { return .error(String(cString: poptStrerror(rc))) }
        let option = Self.table[Int(rc) - 1]
        optionWord = option.short.map { "-\($0)" } ?? option.long.map { "--\($0)" } ?? ""
        guard let copy = value.pointee else { return .option(option, nil) }
        defer {
            free(copy)
            value.pointee = nil
        }
        return .option(option, String(cString: copy))
    }

    /// `poptGetArg`: the next argument word, in order.
    func nextArgument() -> String? {
        poptGetArg(context).map { String(cString: $0) }
    }

    /// ipvsadm 1.31's popt option table (`parse_options`), in its order: popt takes the first match.
    static let table: [Option] = [
        Option(long: "add-service", short: "A", argument: .none, tag: .addService),
        Option(long: "edit-service", short: "E", argument: .none, tag: .editService),
        Option(long: "delete-service", short: "D", argument: .none, tag: .deleteService),
        Option(long: "clear", short: "C", argument: .none, tag: .clear),
        Option(long: "list", short: "L", argument: .none, tag: .list),
        Option(long: "list", short: "l", argument: .none, tag: .list),
        Option(long: "zero", short: "Z", argument: .none, tag: .zero),
        Option(long: "add-server", short: "a", argument: .none, tag: .addServer),
        Option(long: "edit-server", short: "e", argument: .none, tag: .editServer),
        Option(long: "delete-server", short: "d", argument: .none, tag: .deleteServer),
        Option(long: "set", short: nil, argument: .none, tag: .set),
        Option(long: "help", short: "h", argument: .none, tag: .help),
        Option(long: "version", short: "v", argument: .none, tag: .version),
        Option(long: "restore", short: "R", argument: .none, tag: .restore),
        Option(long: "save", short: "S", argument: .none, tag: .save),
        Option(long: "start-daemon", short: nil, argument: .required, tag: .startDaemon),
        Option(long: "stop-daemon", short: nil, argument: .required, tag: .stopDaemon),
        Option(long: "tcp-service", short: "t", argument: .required, tag: .tcpService),
        Option(long: "udp-service", short: "u", argument: .required, tag: .udpService),
        Option(long: "sctp-service", short: nil, argument: .required, tag: .sctpService),
        Option(long: "fwmark-service", short: "f", argument: .required, tag: .fwmarkService),
        Option(long: "scheduler", short: "s", argument: .required, tag: .scheduler),
        Option(long: "persistent", short: "p", argument: .optional, tag: .persistent),
        Option(long: "netmask", short: "M", argument: .required, tag: .netmask),
        Option(long: "real-server", short: "r", argument: .required, tag: .realServer),
        Option(long: "masquerading", short: "m", argument: .none, tag: .masquerading),
        Option(long: "ipip", short: "i", argument: .none, tag: .ipip),
        Option(long: "gatewaying", short: "g", argument: .none, tag: .gatewaying),
        Option(long: "weight", short: "w", argument: .required, tag: .weight),
        Option(long: "u-threshold", short: "x", argument: .required, tag: .uThreshold),
        Option(long: "l-threshold", short: "y", argument: .required, tag: .lThreshold),
        Option(long: "numeric", short: "n", argument: .none, tag: .numeric),
        Option(long: "connection", short: "c", argument: .none, tag: .connection),
        Option(long: "mcast-interface", short: nil, argument: .required, tag: .mcastInterface),
        Option(long: "syncid", short: nil, argument: .required, tag: .syncID),
        Option(long: "timeout", short: nil, argument: .none, tag: .timeout),
        Option(long: "daemon", short: nil, argument: .none, tag: .daemon),
        Option(long: "stats", short: nil, argument: .none, tag: .stats),
        Option(long: "rate", short: nil, argument: .none, tag: .rate),
        Option(long: "thresholds", short: nil, argument: .none, tag: .thresholds),
        Option(long: "persistent-conn", short: nil, argument: .none, tag: .persistentConn),
        Option(long: "nosort", short: nil, argument: .none, tag: .noSort),
        Option(long: "sort", short: nil, argument: .none, tag: .sort),
        Option(long: "exact", short: "X", argument: .none, tag: .exact),
        Option(long: "ipv6", short: "6", argument: .none, tag: .ipv6),
        Option(long: "ops", short: "o", argument: .none, tag: .ops),
        Option(long: "pe", short: nil, argument: .required, tag: .pe),
        Option(long: "sched-flags", short: "b", argument: .required, tag: .schedFlags),
        Option(long: "mcast-group", short: nil, argument: .required, tag: .mcastGroup),
        Option(long: "mcast-port", short: nil, argument: .required, tag: .mcastPort),
        Option(long: "mcast-ttl", short: nil, argument: .required, tag: .mcastTTL),
        Option(long: "sync-maxlen", short: nil, argument: .required, tag: .syncMaxlen),
        Option(long: "tun-info", short: nil, argument: .none, tag: .tunInfo),
        Option(long: "tun-type", short: nil, argument: .required, tag: .tunType),
        Option(long: "tun-port", short: nil, argument: .required, tag: .tunPort),
        Option(long: "tun-nocsum", short: nil, argument: .none, tag: .tunNoCsum),
        Option(long: "tun-csum", short: nil, argument: .none, tag: .tunCsum),
        Option(long: "tun-remcsum", short: nil, argument: .none, tag: .tunRemCsum),
    ]
}

enum OptionTag: Hashable {
    // commands
    case addService, editService, deleteService, clear, list, zero, addServer, editServer, deleteServer
    case set, help, version, restore, save, startDaemon, stopDaemon
    // options
    case tcpService, udpService, sctpService, fwmarkService, scheduler, persistent, netmask, realServer
    case masquerading, ipip, gatewaying, weight, uThreshold, lThreshold, numeric, connection
    case mcastInterface, syncID, timeout, daemon, stats, rate, thresholds, persistentConn, noSort, sort
    case exact, ipv6, ops, pe, schedFlags, mcastGroup, mcastPort, mcastTTL, syncMaxlen
    case tunInfo, tunType, tunPort, tunNoCsum, tunCsum, tunRemCsum
}
