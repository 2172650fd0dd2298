/// One ipvsadm command (a line of an `ipvsadm-save` file, or a `masqadm` command line), parsed.
public struct IPVSCommand: Equatable, Sendable {
    public enum Kind: String, Sendable {
        case addService = "-A", editService = "-E", deleteService = "-D", clear = "-C"
        case addServer = "-a", editServer = "-e", deleteServer = "-d"
    }

    public var kind: Kind
    public var service: ServiceKey?
    public var scheduler: String?
    public var schedulerFlags: SchedulerFlags?
    /// `-p [SECS]`: present with the timeout (ipvsadm's default when no value follows).
    public var persistence: UInt32?
    public var netmask: IPv4Address?
    public var realServer: (address: IPv4Address, port: UInt16?)?
    public var weight: Int32?

    public static func == (a: IPVSCommand, b: IPVSCommand) -> Bool {
        a.kind == b.kind && a.service == b.service && a.scheduler == b.scheduler
            && a.schedulerFlags == b.schedulerFlags && a.persistence == b.persistence && a.netmask == b.netmask
            && a.realServer?.address == b.realServer?.address && a.realServer?.port == b.realServer?.port
            && a.weight == b.weight
    }
}

/// An error in a rules file or command, naming where and which token.
public struct RulesError: Error, Equatable, CustomStringConvertible, Sendable {
    public var file: String
    public var line: Int
    public var token: String
    public var message: String

    public init(file: String = "", line: Int = 0, token: String, message: String) {
        self.file = file
        self.line = line
        self.token = token
        self.message = message
    }

    public var description: String {
        let place = file.isEmpty ? "" : line > 0 ? "\(file):\(line): " : "\(file): "
        return token.isEmpty ? "\(place)\(message)" : "\(place)\(message) (at '\(token)')"
    }
}

/// Parses ipvsadm's command-line syntax, short and long options (ipvsadm(8)).
public enum IPVSCommandParser {
    static let natOnly = "masq forwards in NAT mode only (-m, --masquerading); direct routing (-g) and tunnelling (-i) are not supported"

    private static let commands: [String: IPVSCommand.Kind] = [
        "-A": .addService, "--add-service": .addService, "-E": .editService, "--edit-service": .editService,
        "-D": .deleteService, "--delete-service": .deleteService, "-C": .clear, "--clear": .clear,
        "-a": .addServer, "--add-server": .addServer, "-e": .editServer, "--edit-server": .editServer,
        "-d": .deleteServer, "--delete-server": .deleteServer,
    ]

    /// Parses one command from its tokens (`["-A", "-t", "198.18.0.1:80", "-s", "rr"]`). Host and port
    /// names (`web1:http`) are looked up in `names`; the default knows none, so only numbers parse.
    public static func parse(_ tokens: [String], names: NameResolver = .numericOnly) throws(RulesError) -> IPVSCommand {
        try parse(tokens, names: { names })
    }

    /// As `parse(_:names:)`, asking `names` for the resolver only when a token is not numeric, so a
    /// numeric rules file never reads /etc/hosts or /etc/services.
    public static func parse(_ tokens: [String], names: () -> NameResolver) throws(RulesError) -> IPVSCommand {
        // `--opt=value` is the same as `--opt value`.
        var words: [String] = []
        for t in tokens {
            if t.hasPrefix("--"), let eq = t.firstIndex(of: "=") {
                words.append(String(t[..<eq]))
                words.append(String(t[t.index(after: eq)...]))
            } else {
                words.append(t)
            }
        }
        var kind: IPVSCommand.Kind?
        var command = IPVSCommand(kind: .clear)
        var forwarding: String?
        var seen = Set<String>()
        var i = 0

        func value(_ option: String) throws(RulesError) -> String {
            guard i + 1 < words.count, !(words[i + 1].hasPrefix("-") && words[i + 1].count > 1) else {
                throw RulesError(token: option, message: "option \(option) requires a value")
            }
            i += 1
            return words[i]
        }
        func once(_ name: String, _ token: String) throws(RulesError) {
            guard seen.insert(name).inserted else {
                throw RulesError(token: token, message: "multiple '\(name)' options specified")
            }
        }

        while i < words.count {
            let w = words[i]
            if let k = commands[w] {
                guard kind == nil else { throw RulesError(token: w, message: "multiple commands specified") }
                kind = k
                i += 1
                continue
            }
            switch w {
            case "-t", "--tcp-service", "-u", "--udp-service":
                try once("service", w)
                let text = try value(w)
                let proto: IPProtocol = w == "-u" || w == "--udp-service" ? .udp : .tcp
                let (address, port) = try endpoint(text, proto: proto, names: names,
                                                   illegal: "illegal virtual server address[:port] specified")
                command.service = ServiceKey(proto: proto, address: address, port: port ?? 0)
            case "-f", "--fwmark-service":
                throw RulesError(token: w, message: "firewall-mark services are not supported by masq (use -t or -u)")
            case "--sctp-service":
                throw RulesError(token: w, message: "SCTP services are not supported by masq (use -t or -u)")
            case "-6", "--ipv6":
                throw RulesError(token: w, message: "IPv6 services are not supported by masq yet")
            case "-s", "--scheduler":
                try once("scheduler", w)
                let name = try value(w)
                guard Schedulers.type(named: name) != nil else {
                    let known = Schedulers.all.map { $0.name }.joined(separator: ", ")
                    throw RulesError(token: name, message: "Scheduler or persistence engine not found (masq has \(known))")
                }
                command.scheduler = name
            case "-b", "--sched-flags":
                try once("sched-flags", w)
                let text = try value(w)
                var flags: SchedulerFlags = []
                for name in text.split(separator: ",") {
                    switch name {
                    case "sh-fallback", "mh-fallback", "flag-1": flags.insert(.fallback)
                    case "sh-port", "mh-port", "flag-2": flags.insert(.port)
                    default: throw RulesError(token: String(name), message: "invalid scheduler flag")
                    }
                }
                command.schedulerFlags = flags
            case "-p", "--persistent":
                try once("persistent", w)
                var timeout = ServiceSpec.defaultPersistence
                if i + 1 < words.count, !words[i + 1].hasPrefix("-") {
                    i += 1
                    guard let t = UInt32(words[i]), t > 0 else {
                        throw RulesError(token: words[i], message: "invalid timeout value `\(words[i])' specified")
                    }
                    timeout = t
                }
                command.persistence = timeout
            case "-M", "--netmask":
                try once("netmask", w)
                let text = try value(w)
                // ipvsadm's parse_netmask: an address, else a host name (from /etc/hosts here).
                guard let mask = IPv4Address(text) ?? (isNumeric(text) ? nil : names().address(forHost: text)) else {
                    throw RulesError(token: text, message: "illegal virtual server persistent mask specified")
                }
                command.netmask = mask
            case "-r", "--real-server":
                try once("real-server", w)
                let text = try value(w)
                // The protocol known so far names the port, as in ipvsadm (`-r` copies `ce->svc`, whose
                // protocol only a `-t`/`-u` before it has set).
                command.realServer = try endpoint(text, proto: command.service?.proto, names: names,
                                                  illegal: "illegal real server address[:port] specified")
            case "-m", "--masquerading":
                try once("forwarding", w)
                forwarding = w
            case "-g", "--gatewaying", "-i", "--ipip":
                throw RulesError(token: w, message: natOnly)
            case "-w", "--weight":
                try once("weight", w)
                let text = try value(w)
                guard let weight = Int32(text), (0...65535).contains(weight) else {
                    throw RulesError(token: text, message: "illegal weight specified")
                }
                command.weight = weight
            case "-x", "--u-threshold", "-y", "--l-threshold":
                let text = try value(w)
                guard text == "0" else {
                    throw RulesError(token: w, message: "connection thresholds are not supported by masq (only 0, no threshold)")
                }
            case "-o", "--ops", "--pe", "-c", "--connection":
                throw RulesError(token: w, message: "option \(w) is not supported by masq")
            default:
                throw RulesError(token: w, message: w.hasPrefix("-") ? "unknown option \(w)" : "unexpected argument \(w)")
            }
            i += 1
        }

        guard let kind else {
            throw RulesError(token: words.first ?? "", message: "no command (-A, -E, -D, -C, -a, -e or -d)")
        }
        command.kind = kind
        try validate(&command, forwarding: forwarding, tokens: words)
        return command
    }

    private static func validate(_ c: inout IPVSCommand, forwarding: String?, tokens: [String]) throws(RulesError) {
        let cmd = c.kind.rawValue
        let serviceOptions = c.scheduler != nil || c.persistence != nil || c.netmask != nil || c.schedulerFlags != nil
        let serverOptions = c.realServer != nil || c.weight != nil || forwarding != nil
        func need(_ present: Bool, _ option: String) throws(RulesError) {
            if !present {
                throw RulesError(token: cmd, message: "You need to supply the '\(option)' option for the '\(cmd)' command")
            }
        }
        func refuse(_ present: Bool, _ option: String) throws(RulesError) {
            if present { throw RulesError(token: option, message: "Illegal '\(option)' option with the '\(cmd)' command") }
        }
        switch c.kind {
        case .clear:
            try refuse(c.service != nil, "service")
            try refuse(serviceOptions || serverOptions, "option")
        case .addService, .editService:
            try need(c.service != nil, "service")
            try refuse(serverOptions, c.realServer != nil ? "real-server" : c.weight != nil ? "weight" : "masquerading")
            if let s = c.service, s.port == 0, c.persistence == nil {
                throw RulesError(token: "\(s.address):0", message: "Zero port specified for non-persistent service")
            }
        case .deleteService:
            try need(c.service != nil, "service")
            try refuse(serviceOptions || serverOptions, "option")
        case .addServer, .editServer:
            try need(c.service != nil, "service")
            try need(c.realServer != nil, "real-server")
            try refuse(serviceOptions, "scheduler")
            if forwarding == nil && c.kind == .addServer {
                throw RulesError(token: cmd, message: "no forwarding method: ipvsadm would use -g (direct routing), and \(natOnly); add -m")
            }
        case .deleteServer:
            try need(c.service != nil, "service")
            try need(c.realServer != nil, "real-server")
            try refuse(serviceOptions || c.weight != nil, "weight")
        }
    }

    /// `A.B.C.D[:PORT]`, numeric only (what `ipvsadm-save -n` prints).
    public static func parseEndpoint(_ text: String) -> (IPv4Address, UInt16?)? {
        try? endpoint(text, proto: nil, names: { .numericOnly }, illegal: "")
    }

    /// ipvsadm's `parse_service` for IPv4: `HOST[:PORT]` split at the last colon, HOST a dotted quad or
    /// a host name, PORT a number or a service name of `proto` (nil before any `-t`/`-u`: names then
    /// fail, as in ipvsadm). The error keeps ipvsadm's words (`illegal`) and says which name failed.
    static func endpoint(_ text: String, proto: IPProtocol?, names: () -> NameResolver,
                         illegal: String) throws(RulesError) -> (IPv4Address, UInt16?) {
        // str_is_digit: a bare number is no address (ipvsadm would read it as a firewall mark).
        guard !isNumeric(text) else { throw RulesError(token: text, message: illegal) }
        var hostText = Substring(text)
        var portText: Substring?
        if let colon = text.lastIndex(of: ":") {
            hostText = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        let address: IPv4Address
        if let a = IPv4Address(hostText) {
            address = a
        } else if hostText.isEmpty || looksNumeric(hostText) || hostText.contains(":") {
            throw RulesError(token: text, message: illegal)  // a bad address, not a name
        } else {
            let resolver = names()
            guard let a = resolver.address(forHost: String(hostText)) else {
                throw RulesError(token: text, message: "\(illegal): unknown host '\(hostText)' (not in "
                    + "\(resolver.hostsSource); masq never asks DNS)")
            }
            address = a
        }
        guard let portText else { return (address, nil) }
        if let port = UInt16(portText) { return (address, port) }
        guard !portText.isEmpty, !isNumeric(portText) else { throw RulesError(token: text, message: illegal) }
        guard let proto else {
            throw RulesError(token: text, message: "\(illegal): service name '\(portText)' before the protocol "
                + "is known (give -t or -u first, as ipvsadm needs)")
        }
        let resolver = names()
        let protoName = proto == .udp ? "udp" : "tcp"
        guard let port = resolver.port(forService: String(portText), proto: protoName) else {
            throw RulesError(token: text, message: "\(illegal): unknown service name '\(portText)' for \(protoName) "
                + "(not in \(resolver.servicesSource))")
        }
        return (address, port)
    }

    /// Only ASCII digits (and not empty).
    static func isNumeric<S: StringProtocol>(_ s: S) -> Bool {
        !s.isEmpty && s.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
    }

    /// Digits and dots only: a mistyped address (`198.18.0.300`), never a host name worth looking up.
    static func looksNumeric(_ s: Substring) -> Bool {
        s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2e }
    }
}
