import MasqCore
import MasqRules

/// Reads the LVS part of a keepalived.conf (keepalived.conf(5); semantics from keepalived's
/// check_parser.c, check_api.c, check_tcp.c, check_http.c and lib/parser.c): the syntax, from the
/// lexer's words to raw blocks and checked values, here; keepalived's inheritance and corrections
/// (check_data.c) in `KeepalivedCheckData`, applied as each `virtual_server` block closes.
///
/// Supported: `virtual_server IP [PORT] { }`, `virtual_server fwmark N { }` and `virtual_server group
/// NAME { }` (with its `virtual_server_group NAME { }`) with their `real_server IP [PORT] { }`s, the
/// checkers, sorry servers, quorum and the notify scripts; NAT only. Sections
/// masq has no use for (`global_defs`, `vrrp_*`, `static_*`, `SSL`, other checkers ...) are skipped
/// with a warning naming file:line. Anything else unknown, every bad value, and DR/TUN forwarding are
/// errors naming file:line and the token; a file with an error gives no configuration.
///
/// keepalived reads one keyword per line: a line with more words than its keyword takes is an error
/// here (keepalived would silently ignore the rest, so `url { path /x digest ... }` on one line would
/// check no digest).
public enum KeepalivedParser {
    /// Parses keepalived.conf text. `include` returns the text of an included file, given its path
    /// (relative includes are resolved against `file`'s directory first); glob patterns are passed to it
    /// as they are (see the `glob:` variant, and `load(path:)` for the file system).
    public static func parse(text: String, file: String = "keepalived.conf",
                             include: (String) throws -> String = { path in
                                 throw RulesError(token: path, message: "includes are not available here")
                             }) throws(RulesError) -> KeepalivedConfig {
        try parse(text: text, file: file, glob: { [$0] }, include: include)
    }

    /// As `parse(text:file:include:)`, with `glob` expanding an include pattern into the paths it
    /// matches, in order (none: a warning for a pattern, an error for a plain name).
    public static func parse(text: String, file: String, glob: (String) throws -> [String],
                             include: (String) throws -> String) throws(RulesError) -> KeepalivedConfig {
        var lexer = KeepalivedLexer()
        try lexer.lex(text: text, file: file, glob: glob, read: include)
        let parser = KeepalivedFileParser(tokens: lexer.tokens, warnings: lexer.warnings)
        try parser.parseFile()
        // Zero services would start a daemon that balances nothing while looking healthy: a VRRP-only
        // file (keepalived's other half) given by mistake must say so, not run.
        guard !parser.data.virtualServers.isEmpty else {
            let blocks = parser.virtualServerBlocks
            throw RulesError(file: file, token: "", message: blocks == 0
                ? "no virtual_server block: masq needs keepalived's LVS part (virtual_server ...); VRRP-only files are for keepalived itself"
                : "no virtual server to run: \(blocks == 1 ? "its virtual_server block has" : "all its \(blocks) virtual_server blocks have") no real servers (keepalived ignores such blocks)")
        }
        var virtualServers = parser.data.virtualServers
        if let client = parser.ssl {  // keepalived's SSL context is global, wherever its block is
            for v in virtualServers.indices {
                for r in virtualServers[v].realServers.indices {
                    for c in virtualServers[v].realServers[r].checks.indices {
                        if case .ssl(var check) = virtualServers[v].realServers[r].checks[c].kind {
                            check.client = client
                            virtualServers[v].realServers[r].checks[c].kind = .ssl(check)
                        }
                    }
                }
            }
        }
        var syncDaemon = parser.syncDaemon
        if let instance = syncDaemon?.instance { syncDaemon?.instanceRouterID = parser.routerIDs[instance] }
        return KeepalivedConfig(configuration: Configuration(services: parser.data.services),
                                virtualServers: virtualServers, warnings: parser.warnings,
                                syncDaemon: syncDaemon)
    }

    /// Reads `path` and the files it includes (glob patterns expanded as glob(3) does, in order;
    /// directories skipped), and parses them.
    public static func load(path: String) throws(RulesError) -> KeepalivedConfig {
        let text: String
        do {
            text = try KeepalivedFiles.read(path)
        } catch {
            throw RulesError(file: path, token: path, message: "cannot read \(path): \(error)")
        }
        return try parse(text: text, file: path, glob: KeepalivedFiles.glob, include: KeepalivedFiles.read)
    }

    /// A notify / quorum script command line split into its arguments as keepalived does
    /// (`set_script_params_array`: blanks separate, quotes group, backslashes escape); nil if it can't be.
    public static func scriptArguments(_ commandLine: String) -> [String]? {
        let words = try? KeepalivedLexer.scan(Array(commandLine.utf8), braces: false) {
            RulesError(token: $1, message: $0)
        }
        return words.map { $0.map(\.text) }
    }
}

// MARK: - Statements

/// One keyword line: the keyword and its values.
struct KeepalivedStatement {
    var words: [KeepalivedToken]
    var keyword: KeepalivedToken { words[0] }
    var name: String { words[0].text }
}

enum KeepalivedItem {
    case statement(KeepalivedStatement)
    case open(KeepalivedToken)
    case close(KeepalivedToken)

    var lineID: Int {
        switch self {
        case .statement(let s): s.keyword.lineID
        case .open(let t), .close(let t): t.lineID
        }
    }
}

/// The keepalived keywords masq skips with a warning, at the top level.
private let skippedSections: Set<String> = [
    "global_defs", "vrrp_script", "vrrp_instance", "vrrp_sync_group", "static_ipaddress", "static_routes",
    "static_rules", "vrrp_track_process", "track_file", "vrrp_track_file",
    "bfd_instance", "garp_group", "linkbeat_interfaces", "net_namespace", "net_namespace_ipvs",
    "namespace_with_ipsets", "instance", "use_pid_dir", "linkbeat_use_polling", "child_wait_time",
]

/// Checkers masq does not run: skipped with a warning (the real server is not checked by them).
let skippedCheckers: Set<String> = ["BFD_CHECK", "FILE_CHECK"]

/// The keywords every checker takes (check_api.c `install_checker_common_keywords`), read by the
/// parser's `checkKeyword`.
let commonCheckKeywords: Set<String> = [
    "connect_ip", "connect_port", "bindto", "connect_timeout", "retry", "delay_before_retry", "warmup",
    "delay_loop", "alpha", "log_all_failures", "bind_port", "bind_if", "fwmark",
]

/// keepalived keywords masq knows but refuses (an error rather than "unknown keyword").
let unsupportedKeywords: [String: String] = [
    "persistence_engine": "persistence engines are not supported by masq",
    "snmp_name": "SNMP is not supported by masq",
    "flag-3": "scheduler flag-3 is not supported by masq",
    "bind_port": "bind_port is not supported by masq (checks use an ephemeral source port)",
    "bind_if": "bind_if is not supported by masq (bind a check to a global address with bindto)",
    "fwmark": "marking check connections (fwmark) is not supported by masq",
    "enable_sni": "enable_sni is for SSL_GET",
    "fast_recovery": "fast_recovery is not supported by masq",
    "regex": "HTTP_GET regex matching is not supported by masq (use digest or status_code)",
    "regex_no_match": "HTTP_GET regex matching is not supported by masq (use digest or status_code)",
    "regex_options": "HTTP_GET regex matching is not supported by masq (use digest or status_code)",
    "regex_min_offset": "HTTP_GET regex matching is not supported by masq (use digest or status_code)",
    "regex_max_offset": "HTTP_GET regex matching is not supported by masq (use digest or status_code)",
    "regex_stack": "HTTP_GET regex matching is not supported by masq (use digest or status_code)",
    "track_file": "track_file is not supported by masq",
    "track_bfd": "track_bfd is not supported by masq",
]

let natOnly = "masq forwards in NAT mode only"

// MARK: - Parser

final class KeepalivedFileParser {
    let items: [KeepalivedItem]
    var index = 0
    var warnings: [RulesError] = []
    /// The lexer's warnings, given out as the parse reaches their place.
    var pending: ArraySlice<(lineID: Int, warning: RulesError)>
    /// The virtual servers read so far, resolved as each block closes.
    var data = KeepalivedCheckData()
    /// `virtual_server` blocks read, kept or not (one without real servers is ignored).
    var virtualServerBlocks = 0
    /// global_defs' `lvs_sync_daemon`, the last one (keepalived keeps the last).
    var syncDaemon: KeepalivedSyncDaemon?
    /// Each vrrp_instance's `virtual_router_id`, for the sync daemon's default syncid.
    var routerIDs: [String: UInt8] = [:]
    /// The `virtual_server_group`s read so far, by name (keepalived uses the first of a name).
    var groups: [String: RawGroup] = [:]
    /// `virtual_server group NAME` blocks read before their group: resolved at the end of the file, as
    /// keepalived links groups to virtual servers once the whole file is read (ipwrapper.c).
    var waitingForGroup: [RawVirtualServer] = []
    /// The top-level `SSL { }` block, for every SSL_GET (Checkers/SSLCheck.swift).
    var ssl: SSLCheck.Client?

    init(tokens: [KeepalivedToken], warnings: [(lineID: Int, warning: RulesError)]) {
        var items: [KeepalivedItem] = []
        var words: [KeepalivedToken] = []
        func flush() {
            if !words.isEmpty { items.append(.statement(KeepalivedStatement(words: words))) }
            words = []
        }
        for t in tokens {
            switch t.kind {
            case .open:
                flush()
                items.append(.open(t))
            case .close:
                flush()
                items.append(.close(t))
            case .word:
                if let last = words.last, last.lineID != t.lineID { flush() }
                words.append(t)
            }
        }
        flush()
        self.items = items
        pending = warnings[...]
    }

    /// The next item, the lexer's warnings before it first.
    func next() -> KeepalivedItem {
        let item = items[index]
        index += 1
        while let first = pending.first, first.lineID <= item.lineID {
            warnings.append(first.warning)
            pending.removeFirst()
        }
        return item
    }

    func warn(_ t: KeepalivedToken, _ message: String, token: String? = nil) {
        warnings.append(t.error(message, token: token))
    }

    // MARK: Blocks

    func parseFile() throws(RulesError) {
        defer { warnings += pending.map(\.warning) }
        while index < items.count {
            switch next() {
            case .open(let t):
                throw t.error("unexpected '{' (no keyword opens this block)")
            case .close(let t):
                throw t.error("unexpected '}': no block is open")
            case .statement(let s):
                if s.name == "virtual_server" {
                    virtualServerBlocks += 1
                    try virtualServer(s)
                } else if s.name == "virtual_server_group" {
                    try virtualServerGroup(s)
                } else if s.name == "SSL" {
                    if ssl != nil { warn(s.keyword, "SSL context already specified: replaced (as keepalived does)") }
                    ssl = try sslSection(s)
                } else if skippedSections.contains(s.name) {
                    warn(s.keyword, "\(s.name) is not supported by masq: ignored")
                    try skipBlock(s) { inner throws(RulesError) in
                        // Read from the skipped sections: the sync daemon and the instances' router ids.
                        if s.name == "global_defs" && inner.name == "lvs_sync_daemon" {
                            syncDaemon = try lvsSyncDaemon(inner)
                        } else if s.name == "vrrp_instance", inner.name == "virtual_router_id", s.words.count > 1,
                                  inner.words.count > 1, let id = UInt8(inner.words[1].text) {
                            routerIDs[s.words[1].text] = id
                        }
                    }
                } else if s.name == "real_server" || s.name == "TCP_CHECK" || s.name == "HTTP_GET" {
                    throw s.keyword.error("\(s.name) outside a virtual_server")
                } else {
                    throw s.keyword.error("unknown keyword \(s.name)")
                }
            }
        }
        for vs in waitingForGroup {
            guard case .group(let name) = vs.target else { continue }
            if let group = groups[name.text] {
                try data.add(vs, group: group) { self.warn($0, $1) }
            } else {
                warn(name, "virtual server group \(name.text) specified but not configured: this virtual server is ignored (as keepalived does)")
            }
        }
    }

    /// Parses the `{ ... }` after `opener`, handing each statement in it to `body`.
    func block(_ opener: KeepalivedStatement,
                       _ body: (KeepalivedStatement) throws(RulesError) -> Void) throws(RulesError) {
        guard index < items.count, case .open = items[index] else {
            throw opener.keyword.error("'{' expected after \(opener.name)")
        }
        _ = next()
        while index < items.count {
            switch next() {
            case .close:
                return
            case .open(let t):
                throw t.error("unexpected '{' (the keyword before it takes no block)")
            case .statement(let s):
                try body(s)
            }
        }
        throw opener.keyword.error("the \(opener.name) block is not closed: '}' missing before the end of the file")
    }

    /// Skips a balanced `{ ... }` after `opener`, if there is one, showing `look` each statement
    /// directly inside it.
    func skipBlock(_ opener: KeepalivedStatement,
                           look: (KeepalivedStatement) throws(RulesError) -> Void = { _ in }) throws(RulesError) {
        guard index < items.count, case .open = items[index] else { return }
        var depth = 0
        while index < items.count {
            switch next() {
            case .open: depth += 1
            case .close: depth -= 1
            case .statement(let inner): if depth == 1 { try look(inner) }
            }
            if depth == 0 { return }
        }
        throw opener.keyword.error("the \(opener.name) block is not closed: '}' missing before the end of the file")
    }

    // MARK: Values

    /// `lvs_sync_daemon IF [[inst] NAME] [id N] [maxlen N] [port P] [ttl T] [group IP]`, with
    /// keepalived's ranges.
    func lvsSyncDaemon(_ s: KeepalivedStatement) throws(RulesError) -> KeepalivedSyncDaemon {
        guard s.words.count > 1 else { throw s.keyword.error("lvs_sync_daemon needs an interface") }
        let interface = s.words[1].text
        guard interface.utf8.count <= SyncDaemonConfig.interfaceNameMaximum else {
            throw s.words[1].error("lvs_sync_daemon: interface name \(interface) is too long")
        }
        var daemon = KeepalivedSyncDaemon(interface: interface)
        var i = 2
        func value(_ name: String, _ range: ClosedRange<Int>) throws(RulesError) -> Int {
            guard i + 1 < s.words.count, let n = Int(s.words[i + 1].text), range.contains(n) else {
                throw s.words[i].error("lvs_sync_daemon: \(name) needs a value in \(range.lowerBound)...\(range.upperBound)")
            }
            i += 2
            return n
        }
        while i < s.words.count {
            let word = s.words[i].text
            switch word {
            case "id": daemon.syncID = UInt8(try value("id", 0...255))
            case "maxlen": daemon.maxLength = try value("maxlen", 1...65507)
            case "port": daemon.port = UInt16(try value("port", 1...65535))
            case "ttl": daemon.ttl = UInt8(try value("ttl", 1...255))
            case "group":
                guard i + 1 < s.words.count, let group = IPv4Address(s.words[i + 1].text), group.rawValue >> 28 == 0xe else {
                    throw s.words[i].error("lvs_sync_daemon: group needs an IPv4 multicast address (masq syncs over IPv4)")
                }
                daemon.group = group
                i += 2
            case "inst":
                guard i + 1 < s.words.count else { throw s.words[i].error("lvs_sync_daemon: inst needs a vrrp_instance name") }
                daemon.instance = s.words[i + 1].text
                i += 2
            default:
                guard daemon.instance == nil, i == 2 else { throw s.words[i].error("lvs_sync_daemon: unknown option \(word)") }
                daemon.instance = word
                i += 1
            }
        }
        return daemon
    }

    func noMore(_ s: KeepalivedStatement, after count: Int) throws(RulesError) {
        guard s.words.count > count else { return }
        throw s.words[count].error("extra word after \(s.name): keepalived reads one keyword per line (and would ignore it)")
    }

    func none(_ s: KeepalivedStatement) throws(RulesError) { try noMore(s, after: 1) }

    func one(_ s: KeepalivedStatement) throws(RulesError) -> KeepalivedToken {
        guard s.words.count >= 2 else { throw s.keyword.error("\(s.name) needs a value") }
        try noMore(s, after: 2)
        return s.words[1]
    }

    func optionalOne(_ s: KeepalivedStatement) throws(RulesError) -> KeepalivedToken? {
        try noMore(s, after: 2)
        return s.words.count == 2 ? s.words[1] : nil
    }

    /// `read_timer`: seconds, decimals to the microsecond.
    func timer(_ s: KeepalivedStatement, allowZero: Bool = false) throws(RulesError) -> Double {
        let t = try one(s)
        let parts = t.text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let whole = parts[0], fraction = parts.count == 2 ? parts[1] : ""
        let digits: (Substring) -> Bool = { $0.allSatisfy { $0.isASCII && $0.isNumber } }
        guard !(whole.isEmpty && fraction.isEmpty), digits(whole), digits(fraction), whole.count <= 10,
              let seconds = whole.isEmpty ? 0 : Int64(whole), seconds <= Int64(UInt32.max) else {
            throw t.error("invalid \(s.name) (seconds expected)")
        }
        let micros = Int64(String(fraction.prefix(6)) + String(repeating: "0", count: 6 - min(6, fraction.count))) ?? 0
        let total = seconds * 1_000_000 + micros
        guard total > 0 || allowZero else { throw t.error("\(s.name) must be more than 0") }
        return Double(total) / 1_000_000
    }

    func unsigned(_ s: KeepalivedStatement, _ range: ClosedRange<UInt64>) throws(RulesError) -> UInt64 {
        let t = try one(s)
        guard t.text.allSatisfy({ $0.isASCII && $0.isNumber }), let v = UInt64(t.text), range.contains(v) else {
            throw t.error("invalid \(s.name) (a number in \(range.lowerBound)-\(range.upperBound) expected)")
        }
        return v
    }

    func flag(_ s: KeepalivedStatement) throws(RulesError) -> Bool {
        guard let t = try optionalOne(s) else { return true }
        switch t.text {
        case "true", "on", "yes": return true
        case "false", "off", "no": return false
        default: throw t.error("invalid \(s.name) (true/on/yes or false/off/no expected)")
        }
    }

    /// A numeric address of either family (keepalived's `inet_stosockaddr`: a dotted quad, or RFC 4291
    /// text for IPv6; never a name).
    func address(_ t: KeepalivedToken, _ what: String) throws(RulesError) -> IPAddress {
        if let a = IPAddress(t.text) { return a }
        throw t.error("invalid \(what) address")
    }

    func port(_ t: KeepalivedToken, _ what: String, allowZero: Bool) throws(RulesError) -> UInt16 {
        guard t.text.allSatisfy({ $0.isASCII && $0.isNumber }), let p = UInt16(t.text), p > 0 || allowZero else {
            throw t.error("invalid \(what) port")
        }
        return p
    }

    /// `lb_kind`/`lvs_method`: NAT, or an error.
    func forwarding(_ s: KeepalivedStatement) throws(RulesError) {
        guard s.words.count >= 2 else { throw s.keyword.error("\(s.name) needs a value") }
        let t = s.words[1]
        switch t.text {
        case "NAT": try noMore(s, after: 2)
        case "DR", "TUN": throw t.error("\(natOnly): \(s.name) \(t.text) is not supported")
        default: throw t.error("unknown \(s.name) (NAT expected)")
        }
    }

    /// notify_up/notify_down/quorum_up/quorum_down: `"COMMAND LINE" [USER [GROUP]]`.
    func script(_ s: KeepalivedStatement) throws(RulesError) -> String {
        guard s.words.count >= 2 else { throw s.keyword.error("\(s.name) needs a script") }
        if s.words.count > 2 {
            throw s.words[2].error("running \(s.name) as another user is not supported by masq (the script runs as masq's user)")
        }
        let command = s.words[1]
        guard let args = KeepalivedParser.scriptArguments(command.text), !args.isEmpty, !args[0].isEmpty else {
            throw command.error("invalid \(s.name) script command line")
        }
        return command.text
    }

    func setScript(_ slot: inout String?, _ s: KeepalivedStatement) throws(RulesError) {
        let value = try script(s)
        if slot != nil {
            warn(s.keyword, "\(s.name) already specified: this one is ignored (as keepalived does)")
            return
        }
        slot = value
    }

    func refuse(_ s: KeepalivedStatement, in section: String) -> RulesError {
        if let why = unsupportedKeywords[s.name] { return s.keyword.error(why) }
        return s.keyword.error("unknown keyword \(s.name) in \(section)")
    }

    // MARK: virtual_server

    /// `virtual_server IP [PORT]`, `virtual_server fwmark N` or `virtual_server group NAME` (check_data.c
    /// `alloc_vs`), then its block.
    func virtualServer(_ s: KeepalivedStatement) throws(RulesError) {
        guard s.words.count >= 2 else { throw s.keyword.error("virtual_server needs an address and a port") }
        let first = s.words[1]
        let target: RawVirtualServerTarget
        switch first.text {
        case "group":
            guard s.words.count >= 3 else { throw first.error("virtual_server group needs a group name") }
            try noMore(s, after: 3)
            target = .group(s.words[2])
        case "fwmark":
            guard s.words.count >= 3 else { throw first.error("virtual_server fwmark needs a mark") }
            try noMore(s, after: 3)
            target = .fwmark(try fwmark(s.words[2]))
        default:
            let address = try address(first, "virtual server")
            let port = s.words.count >= 3 ? try port(s.words[2], "virtual server", allowZero: true) : 0
            try noMore(s, after: 3)
            target = .address(address, port)
        }
        var vs = RawVirtualServer(opener: s, target: target)
        try block(s) { (st: KeepalivedStatement) throws(RulesError) in try self.virtualServerKeyword(st, &vs) }
        if case .group(let name) = target {
            // A group read later in the file is linked at its end.
            guard let group = groups[name.text] else {
                waitingForGroup.append(vs)
                return
            }
            try data.add(vs, group: group) { self.warn($0, $1) }
        } else {
            try data.add(vs) { self.warn($0, $1) }
        }
    }

    /// A firewall mark: IPVS keys a mark service by a mark that is not 0 (0 is an address service).
    func fwmark(_ t: KeepalivedToken) throws(RulesError) -> UInt32 {
        guard t.text.allSatisfy({ $0.isASCII && $0.isNumber }), let mark = UInt32(t.text), mark > 0 else {
            throw t.error("invalid fwmark (a number in 1-\(UInt32.max) expected)")
        }
        return mark
    }

    func virtualServerKeyword(_ s: KeepalivedStatement, _ vs: inout RawVirtualServer) throws(RulesError) {
        switch s.name {
        case "delay_loop": vs.delayLoop = try timer(s)
        case "lvs_sched", "lb_algo":
            let t = try one(s)
            guard Schedulers.type(named: t.text) != nil else {
                let known = Schedulers.all.map { $0.name }.joined(separator: ", ")
                throw t.error("invalid \(s.name) (masq has \(known))")
            }
            vs.scheduler = t.text
        case "lvs_method", "lb_kind":
            try forwarding(s)
            vs.forwardingSet = true
        case "persistence_timeout":
            if let t = try optionalOne(s) {
                guard t.text.allSatisfy({ $0.isASCII && $0.isNumber }), let v = UInt32(t.text), v > 0 else {
                    throw t.error("invalid persistence_timeout (seconds, more than 0, expected)")
                }
                vs.persistence = v
            } else {
                vs.persistence = ServiceSpec.defaultPersistence
            }
        case "persistence_granularity":
            // keepalived's pgr_handler: a prefix length (1-128) for an IPv6 virtual server, a netmask
            // for an IPv4 one.
            let t = try one(s)
            // pgr_handler: a family not known yet is the value's (a dotted netmask: IPv4), and sets it.
            let ipv6 = vs.ipv6 ?? !t.text.contains(".")
            vs.ipv6 = ipv6
            if ipv6 {
                guard t.text.allSatisfy({ $0.isASCII && $0.isNumber }), let length = UInt8(t.text), (1...128).contains(length)
                else { throw t.error("invalid IPv6 persistence_granularity (a prefix length, 1-128, expected)") }
                vs.prefixLength = length
            } else {
                guard let mask = IPv4Address(t.text) else {
                    throw t.error("invalid IPv4 persistence_granularity (an IPv4 netmask expected)")
                }
                vs.netmask = mask
            }
        case "protocol":
            let t = try one(s)
            switch t.text.uppercased() {
            case "TCP": vs.proto = .tcp
            case "UDP": vs.proto = .udp
            case "SCTP": throw t.error("SCTP services are not supported by masq (TCP or UDP)")
            default: throw t.error("unknown protocol (TCP or UDP expected)")
            }
        case "quorum": vs.quorum = Int(try unsigned(s, 1...UInt64(UInt32.max)))
        case "hysteresis": vs.hysteresis = Int(try unsigned(s, 0...UInt64(UInt32.max)))
        case "quorum_up": try setScript(&vs.quorumUp, s)
        case "quorum_down": try setScript(&vs.quorumDown, s)
        case "sorry_server":
            guard s.words.count >= 2 else { throw s.keyword.error("sorry_server needs an address and a port") }
            let address = try address(s.words[1], "sorry server")
            // IPVS NAT has one family per service: the sorry server is a destination of it (and sets the
            // family of a mark or group virtual server not known yet, as check_parser.c does).
            if vs.ipv6 == nil { vs.ipv6 = address.isIPv6 }
            guard address.isIPv6 == vs.ipv6 else {
                throw s.words[1].error("address family of virtual server and sorry server don't match")
            }
            let port = s.words.count >= 3 ? try port(s.words[2], "sorry server", allowZero: true) : 0
            try noMore(s, after: 3)
            vs.sorry = RealServerSpec(address: address, port: port, weight: 1)
        case "sorry_server_inhibit":
            try none(s)
            if vs.sorry == nil {
                warn(s.keyword, "sorry_server_inhibit before or without sorry_server: ignored (as keepalived does)")
            } else {
                vs.sorryInhibit = true
            }
        case "sorry_server_lvs_method":
            try forwarding(s)
            if vs.sorry == nil { warn(s.keyword, "sorry_server_lvs_method without sorry_server: ignored") }
        case "virtualhost": vs.virtualhost = try one(s).text
        case "alpha":
            try none(s)
            vs.alpha = true
        case "omega":
            try none(s)
            vs.omega = true
        case "ha_suspend":
            try none(s)
            vs.haSuspend = true
            warn(s.keyword, "ha_suspend is accepted but has no effect: masq does not track VIP ownership, its checks always run")
        case "inhibit_on_failure":
            try none(s)
            vs.inhibit = true
        case "weight": vs.weight = Int32(try unsigned(s, 1...65535))
        case "retry": vs.retry = Int(try unsigned(s, 1...UInt64(UInt32.max)))
        case "delay_before_retry": vs.delayBeforeRetry = try timer(s, allowZero: true)
        case "warmup": vs.warmup = try timer(s, allowZero: true)
        case "connect_timeout": vs.connectTimeout = try timer(s)
        case "ip_family":
            let t = try one(s)
            // For an address virtual server the family is the address's; ip_family may only agree. It
            // sets the family of a mark or group virtual server (ip_family_handler).
            switch t.text {
            case "inet", "inet6":
                let ipv6 = t.text == "inet6"
                if vs.ipv6 == nil { vs.ipv6 = ipv6 }
                guard ipv6 == vs.ipv6 else {
                    if case .address(let address, _) = vs.target {
                        throw t.error("ip_family \(t.text) conflicts with the virtual server's address \(address)")
                    }
                    throw t.error("ip_family \(t.text) conflicts with the family of the servers before it")
                }
            default: throw t.error("unknown ip_family (inet or inet6 expected)")
            }
        case "hashed":
            try none(s)
            warn(s.keyword, "hashed has no effect in masq: ignored")
        case "ops":
            // lbflags_handler: IPVS's one-packet scheduling (ipvsadm -o); validate_check_config resets it
            // for a TCP address service.
            try none(s)
            vs.onePacket = true
        case "flag-1", "flag-2", "sh-port", "sh-fallback", "mh-port", "mh-fallback":
            try none(s)
            vs.flags.append(s.keyword)
        case "nat_mask":
            _ = try one(s)
            warn(s.keyword, "nat_mask is obsolete (keepalived ignores it): ignored")
        case "smtp_alert":
            _ = try flag(s)
            warn(s.keyword, "smtp_alert is not supported by masq (no e-mail is sent): ignored")
        case "real_server": try realServer(s, &vs)
        default: throw refuse(s, in: "virtual_server")
        }
    }

    // MARK: virtual_server_group

    /// The most addresses one group line may expand to: masq makes a service of each.
    static let groupRangeLimit = 4096

    /// `virtual_server_group NAME { ADDRESS [PORT] ... fwmark N [inet|inet6] ... }` (check_parser.c
    /// `vsg_handler`, check_data.c `alloc_vsg_entry`): its members in order, ranges expanded, each once.
    func virtualServerGroup(_ s: KeepalivedStatement) throws(RulesError) {
        guard s.words.count >= 2 else { throw s.keyword.error("virtual_server_group needs a name") }
        try noMore(s, after: 2)
        let name = s.words[1].text
        var group = RawGroup(opener: s, name: name)
        var seen: [RawGroupMember.Kind: KeepalivedToken] = [:]
        try block(s) { (st: KeepalivedStatement) throws(RulesError) in
            let kinds: [RawGroupMember.Kind]
            if st.name == "fwmark" {
                guard st.words.count >= 2 else { throw st.keyword.error("fwmark needs a mark") }
                try noMore(st, after: 3)
                let mark = try fwmark(st.words[1])
                var family: Bool?
                if st.words.count == 3 {
                    switch st.words[2].text {
                    case "inet": family = false
                    case "inet6": family = true
                    default: throw st.words[2].error("unknown fwmark family (inet or inet6 expected)")
                    }
                }
                if let family { if family { group.haveIPv6 = true } else { group.haveIPv4 = true } }
                else { group.fwmarkWithoutFamily = true }
                kinds = [.fwmark(mark, ipv6: family)]
            } else {
                try noMore(st, after: 2)
                // inet_stosockaddr: a port of 0 (or none) is no port.
                let port = st.words.count == 2 ? try self.port(st.words[1], "virtual server group", allowZero: true) : 0
                let addresses = try groupAddresses(st.keyword)
                if addresses[0].isIPv6 { group.haveIPv6 = true } else { group.haveIPv4 = true }
                kinds = addresses.map { .address($0, port) }
            }
            var repeated = 0
            var firstRepeat: KeepalivedToken?
            for kind in kinds {
                if let previous = seen[kind] {
                    repeated += 1
                    firstRepeat = firstRepeat ?? previous
                    continue
                }
                seen[kind] = st.keyword
                group.members.append(RawGroupMember(token: st.keyword, kind: kind))
            }
            // IPVS has a service once: a member given twice would be refused by the kernel (EEXIST).
            if let firstRepeat {
                let what = kinds.count == 1 ? "this member is" : "\(repeated) of its \(kinds.count) members are"
                warn(st.keyword, "\(name): \(what) already in the group (line \(firstRepeat.line)): ignored")
            }
        }
        if group.members.isEmpty {
            warn(s.keyword, "virtual server group \(name) has no entries: removed (as keepalived does)")
            return
        }
        if group.haveIPv4 && group.haveIPv6 && group.fwmarkWithoutFamily {
            warn(s.keyword, "virtual server group \(name) cannot have IPv4, IPv6 and fwmark without family: removed (as keepalived does)")
            return
        }
        if let previous = groups[name] {
            warn(s.keyword, "virtual server group \(name) is already defined at \(previous.opener.keyword.file):"
                     + "\(previous.opener.keyword.line): this one is ignored (keepalived uses the first)")
            return
        }
        groups[name] = group
    }

    /// A group line's addresses (`alloc_vsg_entry`): `A`, `A-N` (the last IPv4 byte, decimal, or the last
    /// IPv6 group, hexadecimal, up to N), `A-B` (a full end address), `A/LEN` (the whole prefix, whose
    /// host bits must be 0), each inclusive and in order.
    func groupAddresses(_ t: KeepalivedToken) throws(RulesError) -> [IPAddress] {
        let text = t.text
        let ipv6 = text.contains(":")
        let family = ipv6 ? "IPv6" : "IPv4"
        if let slash = text.firstIndex(of: "/") {
            guard let start = IPAddress(text[..<slash]), start.isIPv6 == ipv6 else {
                throw t.error("invalid virtual server group address")
            }
            let lengthText = text[text.index(after: slash)...]
            let bits = ipv6 ? 128 : 32
            guard lengthText.allSatisfy({ $0.isASCII && $0.isNumber }), let length = Int(lengthText), (1...bits).contains(length)
            else { throw t.error("invalid netmask (a prefix length of 1-\(bits) expected)") }
            return try expand(t, from: start, count: bits - length)
        }
        guard let dash = text.firstIndex(of: "-") else {
            guard let a = IPAddress(text) else { throw t.error("invalid virtual server group address") }
            return [a]
        }
        guard let start = IPAddress(text[..<dash]), start.isIPv6 == ipv6 else {
            throw t.error("invalid virtual server group address")
        }
        let endText = text[text.index(after: dash)...]
        let end: IPAddress
        if endText.contains(ipv6 ? ":" : ".") {
            guard let e = IPAddress(endText) else { throw t.error("invalid range end \(endText)") }
            guard e.isIPv6 == ipv6 else { throw t.error("range address families do not match") }
            guard start <= e else { throw t.error("address range end is less than address range start") }
            end = e
        } else {
            // inet_stor: the last byte (decimal) of an IPv4 address, the last group (hexadecimal) of an IPv6 one.
            guard !endText.isEmpty, let last = UInt32(endText, radix: ipv6 ? 16 : 10), last <= (ipv6 ? 0xffff : 0xff) else {
                throw t.error("invalid \(family) range end \(endText) (\(ipv6 ? "a hexadecimal group, up to ffff" : "a last byte, up to 255") expected)")
            }
            switch start {
            case .v4(let a):
                guard a.rawValue & 0xff < last else { throw t.error("address range end is not greater than address range start") }
                end = .v4(IPv4Address(rawValue: a.rawValue & ~0xff | last))
            case .v6(let a):
                guard a.low & 0xffff < UInt64(last) else { throw t.error("address range end is not greater than address range start") }
                end = .v6(IPv6Address(high: a.high, low: a.low & ~0xffff | UInt64(last)))
            }
        }
        var out: [IPAddress] = []
        var a = start
        while true {
            out.append(a)
            if a == end { break }
            guard out.count < Self.groupRangeLimit else {
                throw t.error("\(text) has more than \(Self.groupRangeLimit) addresses (masq makes a service of each)")
            }
            a = a.successor
        }
        return out
    }

    /// The 2^hostBits addresses from `start` (a prefix), refusing one with host bits set.
    private func expand(_ t: KeepalivedToken, from start: IPAddress, count hostBits: Int) throws(RulesError) -> [IPAddress] {
        guard hostBits <= 12 else {
            throw t.error("\(t.text) has more than \(Self.groupRangeLimit) addresses (masq makes a service of each)")
        }
        let hostMask = (UInt64(1) << UInt64(hostBits)) - 1
        let low: UInt64 = switch start { case .v4(let a): UInt64(a.rawValue); case .v6(let a): a.low }
        guard low & hostMask == 0 else { throw t.error("address mask bits not empty") }
        var out = [start]
        for _ in 0..<hostMask { out.append(out[out.count - 1].successor) }
        return out
    }

    // MARK: real_server

    func realServer(_ s: KeepalivedStatement, _ vs: inout RawVirtualServer) throws(RulesError) {
        guard s.words.count >= 2 else { throw s.keyword.error("real_server needs an address and a port") }
        let address = try address(s.words[1], "real server")
        let port = s.words.count >= 3 ? try port(s.words[2], "real server", allowZero: true) : 0
        try noMore(s, after: 3)
        var rs = RawRealServer(opener: s, address: address, port: port)
        try block(s) { (st: KeepalivedStatement) throws(RulesError) in try self.realServerKeyword(st, &rs) }
        // rs_handler: the first real server sets the family of a mark or group virtual server.
        if vs.ipv6 == nil { vs.ipv6 = address.isIPv6 }
        vs.realServers.append(rs)
    }

    func realServerKeyword(_ s: KeepalivedStatement, _ rs: inout RawRealServer) throws(RulesError) {
        switch s.name {
        case "weight": rs.weight = Int32(try unsigned(s, 0...65535))
        case "lvs_method": try forwarding(s)
        // IPVS's connection thresholds (ipvsadm -x / -y): above the upper one the server is overloaded
        // (no new connections) until it falls to the lower one; 0 is none.
        case "uthreshold": rs.upperThreshold = UInt32(try unsigned(s, 0...UInt64(UInt32.max)))
        case "lthreshold": rs.lowerThreshold = UInt32(try unsigned(s, 0...UInt64(UInt32.max)))
        case "inhibit_on_failure": rs.inhibit = try flag(s)
        case "notify_up": try setScript(&rs.notifyUp, s)
        case "notify_down": try setScript(&rs.notifyDown, s)
        case "alpha": rs.alpha = try flag(s)
        case "retry": rs.retry = Int(try unsigned(s, 1...UInt64(UInt32.max)))
        case "delay_before_retry": rs.delayBeforeRetry = try timer(s, allowZero: true)
        case "warmup": rs.warmup = try timer(s, allowZero: true)
        case "connect_timeout": rs.connectTimeout = try timer(s)
        case "delay_loop": rs.delayLoop = try timer(s)
        case "virtualhost": rs.virtualhost = try one(s).text
        case "smtp_alert":
            _ = try flag(s)
            warn(s.keyword, "smtp_alert is not supported by masq (no e-mail is sent): ignored")
        case "TCP_CHECK", "HTTP_GET":
            try noMore(s, after: 1)
            var check = RawCheck(opener: s, http: s.name == "HTTP_GET")
            try block(s) { (st: KeepalivedStatement) throws(RulesError) in try self.checkKeyword(st, &check) }
            if check.http && check.urls.isEmpty {
                throw s.keyword.error("HTTP_GET needs at least one url { path ... }")
            }
            // A socket bound to one family cannot connect to the other: the check could never pass.
            if let bindTo = check.bindTo, bindTo.isIPv6 != (check.connectIP ?? rs.address).isIPv6 {
                throw s.keyword.error("\(s.name): bindto \(bindTo) is not of the family of the address it connects to, "
                                      + "\(check.connectIP ?? rs.address)")
            }
            rs.checks.append(check)
        // Each checker's block is read by its own file (KeepalivedParser+NAME.swift).
        case "SSL_GET": if let check = try sslGet(s, rs) { rs.checks.append(check) }
        case "MISC_CHECK": if let check = try miscCheck(s, rs) { rs.checks.append(check) }
        case "UDP_CHECK": if let check = try udpCheck(s, rs) { rs.checks.append(check) }
        case "SMTP_CHECK": rs.checks += try smtpCheck(s, rs)  // host { } blocks: a checker each
        case "DNS_CHECK": if let check = try dnsCheck(s, rs) { rs.checks.append(check) }
        case "PING_CHECK": if let check = try pingCheck(s, rs) { rs.checks.append(check) }
        case let name where skippedCheckers.contains(name):
            warn(s.keyword, "\(name) is not supported by masq: ignored (the real server is not checked by it)")
            try skipBlock(s)
        default: throw refuse(s, in: "real_server")
        }
    }

    // MARK: checkers

    func checkKeyword(_ s: KeepalivedStatement, _ c: inout RawCheck) throws(RulesError) {
        switch s.name {
        case "connect_ip": c.connectIP = try address(try one(s), "connect_ip")
        case "connect_port": c.connectPort = try port(try one(s), "connect", allowZero: false)
        case "bindto": c.bindTo = try address(try one(s), "bindto")
        case "connect_timeout": c.connectTimeout = try timer(s)
        case "retry": c.retry = Int(try unsigned(s, 0...UInt64(UInt32.max)))
        case "nb_get_retry":
            c.retry = Int(try unsigned(s, 0...UInt64(UInt32.max)))
            warn(s.keyword, "nb_get_retry is deprecated: use retry"
                     + (c.http ? "" : " (keepalived 2 ignores it in TCP_CHECK; masq honours it)"))
        case "delay_before_retry": c.delayBeforeRetry = try timer(s, allowZero: true)
        case "warmup": c.warmup = try timer(s, allowZero: true)
        case "delay_loop": c.delayLoop = try timer(s)
        case "alpha": c.alpha = try flag(s)
        case "log_all_failures":
            _ = try flag(s)
            warn(s.keyword, "log_all_failures has no effect in masq: ignored")
        case "virtualhost" where c.http: c.virtualhost = try one(s).text
        case "http_protocol" where c.http:
            let t = try one(s)
            switch t.text {
            case "1.0": c.version = .http10
            case "1.1": c.version = .http11
            case "1.0C", "1.0c": c.version = .http10Close
            default: throw t.error("invalid http_protocol (1.0, 1.0C or 1.1 expected)")
            }
        case "url" where c.http:
            try noMore(s, after: 1)
            var path: String?
            var url = HTTPCheck.URLCheck(path: "")
            try block(s) { (st: KeepalivedStatement) throws(RulesError) in try self.urlKeyword(st, &url, &path) }
            guard let path else { throw s.keyword.error("url needs a path") }
            url.path = path
            c.urls.append(url)
        default: throw refuse(s, in: c.http ? "HTTP_GET" : "TCP_CHECK")
        }
    }

    func urlKeyword(_ s: KeepalivedStatement, _ url: inout HTTPCheck.URLCheck, _ path: inout String?) throws(RulesError) {
        switch s.name {
        case "path":
            let t = try one(s)
            guard !t.text.isEmpty else { throw t.error("empty url path") }
            path = t.text
        case "digest":
            let t = try one(s)
            guard t.text.count == 32, t.text.allSatisfy(\.isHexDigit) else {
                throw t.error("invalid digest (the MD5 of the body, 32 hexadecimal digits, expected)")
            }
            guard url.digest == nil else { throw t.error("this url already has a digest") }
            url.digest = t.text.lowercased()
        case "status_code":
            guard s.words.count >= 2 else { throw s.keyword.error("status_code needs a value") }
            var codes = url.statusCodes ?? []
            for t in s.words.dropFirst() {
                let bounds = t.text.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
                let numbers = bounds.map { b -> UInt16? in
                    b.allSatisfy({ $0.isASCII && $0.isNumber }) ? UInt16(b) : nil
                }
                guard let low = numbers.first ?? nil, let high = numbers.last ?? nil, low <= high,
                      (100...599).contains(low), (100...599).contains(high) else {
                    throw t.error("invalid status_code (100-599, or a range like 200-299, expected)")
                }
                codes.append(low...high)
            }
            url.statusCodes = codes
        case "virtualhost": url.virtualhost = try one(s).text
        default: throw refuse(s, in: "url")
        }
    }
}

extension IPAddress {
    /// The next address (wrapping), for a group's ranges.
    var successor: IPAddress {
        switch self {
        case .v4(let a): .v4(IPv4Address(rawValue: a.rawValue &+ 1))
        case .v6(let a): .v6(a.low == .max ? IPv6Address(high: a.high &+ 1, low: 0) : IPv6Address(high: a.high, low: a.low + 1))
        }
    }
}
