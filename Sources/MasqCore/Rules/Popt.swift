/// ipvsadm 1.31 reads its command line with popt (libpopt 1.19 in Debian 12); masq reproduces the
/// parts of `poptGetNextOpt` that decide what ipvsadm accepts and which word its errors quote, for
/// masqadm, the rules file and the daemon alike (the rules file is MasqCore's, pure Swift with no C
/// library, which the fuzz targets and the benchmark link too):
///
/// - `--name` must match a long option exactly; `--name=value` gives the value inline.
///   `--` makes every later word an argument.
/// - `-abc` is a cluster of short options; the rest of the cluster after an option that takes a
///   value is that value (`-t10.0.0.1:80`, a leading `=` skipped), else the next word is, even when
///   it starts with `-`. An *optional* value (`-p`) is only taken from the next word when that word
///   does not start with `-`.
/// - Any other word (including `-` alone) is an argument (`poptGetArg`), wherever it appears.
/// - Errors: an unknown option is POPT_ERROR_BADOPT ("unknown option"), a value missing at the end
///   is POPT_ERROR_NOARG ("missing argument"), `=` after an option that takes no value
///   (`--numeric=1`, `-n=`, `-Ln=`) is POPT_ERROR_UNWANTEDARG ("option does not take an argument");
///   `poptBadOption` quotes the last word consumed. (Checked against the installed ipvsadm 1.31.)
struct PoptScanner {
    enum Argument { case none, required, optional }

    struct Option {
        let long: String?
        let short: Character?
        let argument: Argument
        let tag: OptionTag
    }

    enum Event {
        case option(Option, String?)
        case end
        case error(String)
    }

    private let words: [String]
    private var next = 0
    private var cluster: Substring?
    private var restAreArguments = false
    private(set) var leftovers: [String] = []
    private var leftoverIndex = 0

    /// The word the last option came from (`-s` of `-s rr`, `-srr` of `-srr`): what masq's own
    /// refusals name.
    private(set) var optionWord = ""

    init(_ words: [String]) {
        self.words = words
    }

    /// The first word of the command line.
    var firstWord: String { words.first ?? "" }

    /// `poptBadOption(con, POPT_BADOPTION_NOALIAS)`: the last word consumed (only asked after one was).
    var badOption: String { next > 0 ? words[next - 1] : "" }

    /// `poptGetArg`: the next argument word, in order.
    mutating func nextArgument() -> String? {
        guard leftoverIndex < leftovers.count else { return nil }
        defer { leftoverIndex += 1 }
        return leftovers[leftoverIndex]
    }

    mutating func nextEvent() -> Event {
        var option: Option?
        var inlineValue: Substring?
        if cluster == nil {
            while true {
                guard next < words.count else { return .end }
                let word = words[next]
                next += 1
                if restAreArguments || !word.hasPrefix("-") || word == "-" {
                    leftovers.append(word)
                    continue
                }
                if word == "--" {
                    restAreArguments = true
                    continue
                }
                optionWord = word
                if word.hasPrefix("--") {
                    let body = word.dropFirst(2)
                    let name: Substring
                    if let eq = body.firstIndex(of: "=") {
                        name = body[..<eq]
                        inlineValue = body[body.index(after: eq)...]
                    } else {
                        name = body
                    }
                    guard let o = Self.table.first(where: { $0.long.map { $0 == name } ?? false }) else {
                        return .error("unknown option")
                    }
                    option = o
                } else {
                    cluster = word.dropFirst()
                }
                break
            }
        }
        if option == nil, let rest = cluster {
            cluster = nil
            guard let c = rest.first, let o = Self.table.first(where: { $0.short == c }) else {
                return .error("unknown option")
            }
            option = o
            let after = rest.dropFirst()
            if after.first == "=" && o.argument == .none { return .error("option does not take an argument") }
            if !after.isEmpty { cluster = after.first == "=" ? after.dropFirst() : after }
        }
        guard let option else { return .error("unknown option") }
        switch option.argument {
        case .none:
            if inlineValue != nil { return .error("option does not take an argument") }
            return .option(option, nil)
        case .required, .optional:
            if let inlineValue { return .option(option, String(inlineValue)) }
            if let rest = cluster {
                cluster = nil
                return .option(option, String(rest))
            }
            guard next < words.count else {
                return option.argument == .optional ? .option(option, nil) : .error("missing argument")
            }
            if option.argument == .optional && words[next].hasPrefix("-") { return .option(option, nil) }
            next += 1
            return .option(option, words[next - 1])
        }
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
