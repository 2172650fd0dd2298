/// One difference between two configurations, in ipvsadm's terms: what an admin would have typed
/// (`-A`, `-D`, `-E`, `-a`, `-d`, `-e`, `--set`) to turn the one into the other. The daemon logs one
/// line per change when a configuration replaces the running one (SIGHUP, masqadm, health checks).
public enum ConfigurationChange: Equatable, Sendable, CustomStringConvertible {
    /// `-A`: a new service; its real servers follow as `realServerAdded`.
    case serviceAdded(ServiceSpec)
    /// `-D`: the service as it was; its real servers go with it (no separate changes, as in ipvsadm).
    case serviceRemoved(ServiceSpec)
    /// `-E`: what changed in the service's own settings, never empty.
    case serviceEdited(ServiceKey, [ServiceSetting])
    /// `-a`.
    case realServerAdded(ServiceKey, RealServerSpec)
    /// `-d`: the real server as it was.
    case realServerRemoved(ServiceKey, RealServerSpec)
    /// `-e -w`: the real server with its new weight, and the old one.
    case realServerReweighted(ServiceKey, RealServerSpec, from: Int32)
    /// `--set`: one state's idle timeout, in seconds.
    case timeout(ConnectionState, from: UInt32, to: UInt32)

    /// A service setting `-E` changed, old and new.
    public enum ServiceSetting: Equatable, Sendable, CustomStringConvertible {
        case scheduler(from: String, to: String)
        /// ipvsadm's flag names (`sh-port`, `flag-1`), which depend on the scheduler.
        case schedulerFlags(from: [String], to: [String])
        /// Seconds; nil when not persistent.
        case persistence(from: UInt32?, to: UInt32?)
        case netmask(from: IPv4Address, to: IPv4Address)

        public var description: String {
            switch self {
            case .scheduler(let a, let b): "scheduler \(a) → \(b)"
            case .schedulerFlags(let a, let b): "flags \(Self.flags(a)) → \(Self.flags(b))"
            case .persistence(let a, let b): "persistence \(Self.seconds(a)) → \(Self.seconds(b))"
            case .netmask(let a, let b): "netmask \(a) → \(b)"
            }
        }

        static func flags(_ names: [String]) -> String { names.isEmpty ? "none" : names.joined(separator: ",") }
        static func seconds(_ s: UInt32?) -> String { s.map { "\($0) s" } ?? "none" }
    }

    /// The service the change is about (nil for a timeout).
    public var service: ServiceKey? {
        switch self {
        case .serviceAdded(let s), .serviceRemoved(let s): s.key
        case .serviceEdited(let k, _), .realServerAdded(let k, _), .realServerRemoved(let k, _),
             .realServerReweighted(let k, _, _): k
        case .timeout: nil
        }
    }

    /// The real server the change is about, `ADDR:PORT`, if it is about one.
    public var realServer: String? {
        switch self {
        case .realServerAdded(_, let r), .realServerRemoved(_, let r), .realServerReweighted(_, let r, _):
            r.endpoint
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .serviceAdded(let s):
            var settings = ["scheduler \(s.scheduler)"]
            if !s.schedulerFlagNames.isEmpty { settings.append("flags \(s.schedulerFlagNames.joined(separator: ","))") }
            if let p = s.persistence { settings.append("persistence \(p) s") }
            if s.persistence != nil, s.netmask != Configuration.hostMask { settings.append("netmask \(s.netmask)") }
            return "service \(s.key) added (\(settings.joined(separator: ", ")))"
        case .serviceRemoved(let s):
            let n = s.realServers.count
            return "service \(s.key) removed" + (n == 0 ? "" : " with its \(n) real server\(n == 1 ? "" : "s")")
        case .serviceEdited(let k, let settings):
            return "service \(k) edited: " + settings.map(\.description).joined(separator: ", ")
        case .realServerAdded(let k, let r):
            return "real server \(r.endpoint) added to \(k) (weight \(r.weight))"
        case .realServerRemoved(let k, let r):
            return "real server \(r.endpoint) removed from \(k)"
        case .realServerReweighted(let k, let r, let old):
            return "real server \(r.endpoint) of \(k) re-weighted \(old) → \(r.weight)"
        case .timeout(let state, let a, let b):
            return "timeout \(state) \(a) s → \(b) s"
        }
    }
}

extension Configuration {
    /// Persistence granularity of one client (`-M 255.255.255.255`, the default).
    static let hostMask = IPv4Address(rawValue: 0xffff_ffff)

    /// What changes going from this configuration to `new`, in order: services that went (in this
    /// configuration's order), then each of `new`'s services in its order, either added with its real
    /// servers or with its own edits, then its real servers removed, added and re-weighted; last the
    /// timeouts. Services are known by protocol, address and port, real servers by address and port
    /// within their service. The order of services or real servers alone is not a change.
    public func changes(to new: Configuration) -> [ConfigurationChange] {
        var out: [ConfigurationChange] = []
        let newKeys = Set(new.services.map(\.key))
        for s in services where !newKeys.contains(s.key) { out.append(.serviceRemoved(s)) }

        // First entry wins should a configuration hold a key twice (RulesFile never lets it).
        let old = Dictionary(services.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
        for s in new.services {
            guard let before = old[s.key] else {
                out.append(.serviceAdded(s))
                out += s.realServers.map { .realServerAdded(s.key, $0) }
                continue
            }
            var settings: [ConfigurationChange.ServiceSetting] = []
            if before.scheduler != s.scheduler { settings.append(.scheduler(from: before.scheduler, to: s.scheduler)) }
            if before.schedulerFlagNames != s.schedulerFlagNames {
                settings.append(.schedulerFlags(from: before.schedulerFlagNames, to: s.schedulerFlagNames))
            }
            if before.persistence != s.persistence {
                settings.append(.persistence(from: before.persistence, to: s.persistence))
            }
            if before.netmask != s.netmask { settings.append(.netmask(from: before.netmask, to: s.netmask)) }
            if !settings.isEmpty { out.append(.serviceEdited(s.key, settings)) }

            struct Endpoint: Hashable { var address: IPAddress, port: UInt16 }
            func endpoint(_ r: RealServerSpec) -> Endpoint { Endpoint(address: r.address, port: r.port) }
            let nowThere = Set(s.realServers.map(endpoint))
            for r in before.realServers where !nowThere.contains(endpoint(r)) { out.append(.realServerRemoved(s.key, r)) }
            let weights = Dictionary(before.realServers.map { (endpoint($0), $0.weight) },
                                     uniquingKeysWith: { first, _ in first })
            for r in s.realServers {
                switch weights[endpoint(r)] {
                case nil: out.append(.realServerAdded(s.key, r))
                case let w? where w != r.weight: out.append(.realServerReweighted(s.key, r, from: w))
                default: break
                }
            }
        }

        for raw in 0..<min(timeouts.seconds.count, new.timeouts.seconds.count) {
            let state = ConnectionState(rawValue: UInt8(raw))
            if timeouts[state] != new.timeouts[state] {
                out.append(.timeout(state, from: timeouts[state], to: new.timeouts[state]))
            }
        }
        return out
    }
}
