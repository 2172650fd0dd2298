import MasqCore
import MasqRules

/// One request to the daemon's control socket (see `ControlFraming` for how it travels). Each case is
/// one thing masqadm, `masq flows` or `masq trace` asks; the daemon's `ControlDispatcher` applies it.
public enum ControlRequest: Equatable, Sendable {
    /// Services, real servers, counts, counters, rates and timeouts (`ControlReply.state`).
    case state
    /// The connection table, only the flows the filter selects (`ControlReply.flows`).
    case flows(FlowFilter)
    /// One ipvsadm editing command (-A -E -D -C -a -e -d).
    case apply(IPVSCommand)
    /// Rules in ipvsadm-save syntax, applied to the running configuration all or none (`ipvsadm -R`).
    case restore(rules: String)
    /// Zero the counters of one service, or of all (`ipvsadm -Z`).
    case zero(ServiceKey?)
    /// `ipvsadm --set TCP TCPFIN UDP`, in seconds; 0 keeps a value.
    case setTimeouts(tcp: UInt32, tcpFin: UInt32, udp: UInt32)
    /// The running configuration in `ipvsadm-save -n` syntax (`ControlReply.text`).
    case save
    /// Record the packets of the flows the filter selects, before and after NAT, to a pcap file the
    /// daemon writes at `file` (an absolute path), for `packets` packets or `seconds` seconds.
    case trace(FlowFilter, packets: Int, seconds: Int, file: String)

    /// The longest trace a request may ask for, in seconds (a year).
    public static let longestTrace = 366 * 86_400
    /// What the daemon answers to (`ControlReply.text`, `helpText`).
    case help
    /// Start a sync daemon (`ipvsadm --start-daemon`); one per role (`daemonExists`).
    case startDaemon(SyncDaemonConfig)
    /// Stop the sync daemon of a role (`ipvsadm --stop-daemon`; `noDaemon` if none runs).
    case stopDaemon(SyncDaemonRole)
    /// The sync daemons, their counters and readiness (`ControlReply.syncStatus`).
    case syncStatus

    /// The requests, for `help`.
    public static let helpText = """
        state | flows FILTER | apply IPVSADM-COMMAND | restore RULES | zero [SERVICE] | setTimeouts TCP TCPFIN UDP
        save | trace FILTER PACKETS SECONDS FILE | startDaemon DAEMON | stopDaemon ROLE | syncStatus | help
        (one JSON object per connection: {"command":"flows","filter":"vip=198.18.0.1:80"}; see ControlFraming)

        """
}

// MARK: - Wire form

/// An object with the request's name under `command` and its arguments beside it, e.g.
/// `{"command":"apply","arguments":["-A","-t","198.18.0.1:80","-s","rr"]}`. Filters travel in the
/// text form `masq flows --filter` takes and IPVS commands as ipvsadm words, so decoding checks them
/// with the one parser each has (`FlowFilter`, `IPVSCommandParser`): a request that decodes is a
/// request the daemon can apply.
extension ControlRequest: Codable {
    enum CodingKeys: String, CodingKey {
        case command, filter, arguments, rules, service, tcp, tcpFin, udp, packets, seconds, file, daemon, role
    }

    enum ServiceKeys: String, CodingKey {
        case proto, address, port
        /// A firewall-mark service's mark (only for one; its address then only gives the family).
        case fwmark
    }

    /// The value under `command`.
    public var name: String {
        switch self {
        case .state: "state"
        case .flows: "flows"
        case .apply: "apply"
        case .restore: "restore"
        case .zero: "zero"
        case .setTimeouts: "setTimeouts"
        case .save: "save"
        case .trace: "trace"
        case .help: "help"
        case .startDaemon: "startDaemon"
        case .stopDaemon: "stopDaemon"
        case .syncStatus: "syncStatus"
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .command)
        switch self {
        case .state, .save, .help, .syncStatus:
            break
        case .startDaemon(let daemon):
            try c.encode(daemon, forKey: .daemon)
        case .stopDaemon(let role):
            try c.encode(role, forKey: .role)
        case .flows(let filter):
            try c.encode(filter.description, forKey: .filter)
        case .apply(let command):
            try c.encode(command.ipvsadmArguments, forKey: .arguments)
        case .restore(let rules):
            try c.encode(rules, forKey: .rules)
        case .zero(let key):
            if let key {
                var s = c.nestedContainer(keyedBy: ServiceKeys.self, forKey: .service)
                try s.encode(key.proto == .udp ? "udp" : "tcp", forKey: .proto)
                try s.encode(key.address.description, forKey: .address)
                try s.encode(key.port, forKey: .port)
                if key.isFirewallMark { try s.encode(key.fwmark, forKey: .fwmark) }
            }
        case .setTimeouts(let tcp, let tcpFin, let udp):
            try c.encode(tcp, forKey: .tcp)
            try c.encode(tcpFin, forKey: .tcpFin)
            try c.encode(udp, forKey: .udp)
        case .trace(let filter, let packets, let seconds, let file):
            try c.encode(filter.description, forKey: .filter)
            try c.encode(packets, forKey: .packets)
            try c.encode(seconds, forKey: .seconds)
            try c.encode(file, forKey: .file)
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func filter() throws -> FlowFilter {
            let text = try c.decodeIfPresent(String.self, forKey: .filter) ?? ""
            do {
                return try FlowFilter(text)
            } catch {
                throw DecodingError.dataCorruptedError(forKey: .filter, in: c, debugDescription: error.description)
            }
        }
        let command = try c.decode(String.self, forKey: .command)
        switch command {
        case "state": self = .state
        case "save": self = .save
        case "help": self = .help
        case "syncStatus": self = .syncStatus
        case "startDaemon": self = .startDaemon(try c.decode(SyncDaemonConfig.self, forKey: .daemon))
        case "stopDaemon": self = .stopDaemon(try c.decode(SyncDaemonRole.self, forKey: .role))
        case "flows": self = .flows(try filter())
        case "apply":
            let words = try c.decode([String].self, forKey: .arguments)
            do {
                self = .apply(try IPVSCommandParser.parse(words))
            } catch {
                throw DecodingError.dataCorruptedError(forKey: .arguments, in: c, debugDescription: error.description)
            }
        case "restore": self = .restore(rules: try c.decode(String.self, forKey: .rules))
        case "zero":
            guard c.contains(.service) else {
                self = .zero(nil)
                return
            }
            let s = try c.nestedContainer(keyedBy: ServiceKeys.self, forKey: .service)
            let proto: IPProtocol
            switch try s.decode(String.self, forKey: .proto) {
            case "tcp": proto = .tcp
            case "udp": proto = .udp
            case let other:
                throw DecodingError.dataCorruptedError(forKey: .proto, in: s, debugDescription: "proto '\(other)' is not tcp or udp")
            }
            let text = try s.decode(String.self, forKey: .address)
            // Either family: RFC 4291 text for IPv6 (the encoder writes RFC 5952), dotted quad for IPv4.
            guard let address = IPAddress(text) else {
                throw DecodingError.dataCorruptedError(forKey: .address, in: s, debugDescription: "'\(text)' is not an IP address")
            }
            if let mark = try s.decodeIfPresent(UInt32.self, forKey: .fwmark), mark != 0 {
                self = .zero(ServiceKey(fwmark: mark, ipv6: address.isIPv6))
                return
            }
            self = .zero(ServiceKey(proto: proto, address: address, port: try s.decode(UInt16.self, forKey: .port)))
        case "setTimeouts":
            self = .setTimeouts(tcp: try c.decode(UInt32.self, forKey: .tcp), tcpFin: try c.decode(UInt32.self, forKey: .tcpFin),
                                udp: try c.decode(UInt32.self, forKey: .udp))
        case "trace":
            let packets = try c.decode(Int.self, forKey: .packets)
            let seconds = try c.decode(Int.self, forKey: .seconds)
            let file = try c.decode(String.self, forKey: .file)
            guard packets > 0, seconds > 0 else {
                throw DecodingError.dataCorruptedError(forKey: packets > 0 ? .seconds : .packets, in: c,
                                                       debugDescription: "trace: packets and seconds must be positive")
            }
            // A deadline in nanoseconds must not wrap: a year is more than any trace needs.
            guard seconds <= Self.longestTrace else {
                throw DecodingError.dataCorruptedError(forKey: .seconds, in: c,
                                                       debugDescription: "trace: seconds must be at most \(Self.longestTrace)")
            }
            guard file.hasPrefix("/") else {
                throw DecodingError.dataCorruptedError(forKey: .file, in: c, debugDescription: "trace needs an absolute file path")
            }
            self = .trace(try filter(), packets: packets, seconds: seconds, file: file)
        default:
            throw DecodingError.dataCorruptedError(forKey: .command, in: c, debugDescription: "unknown command '\(command)'")
        }
    }
}
