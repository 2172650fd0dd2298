import MasqCore

/// What the running daemon reports of itself over the control socket (the `state` request's answer),
/// and what `masqadm` renders in ipvsadm's layouts. Plain Codable values: the wire format is JSON.
public struct AdminState: Codable, Equatable, Sendable {
    /// The IPVS version masq imitates in ipvsadm's first line (`IP Virtual Server version 1.2.1 (size=4096)`).
    public var version: String = "1.2.1"
    /// The connection-table size shown in that line (IPVS's hash-table size; masq prints 4096 like
    /// a default kernel, the real capacity is `capacity`).
    public var size: Int = 4096
    public var capacity: Int
    public var connections: Int
    public var timeouts: TimeoutState
    public var services: [ServiceState]

    public init(capacity: Int, connections: Int, timeouts: TimeoutState, services: [ServiceState]) {
        self.capacity = capacity
        self.connections = connections
        self.timeouts = timeouts
        self.services = services
    }
}

/// `ipvsadm --set tcp tcpfin udp` / `-L --timeout`, in seconds.
public struct TimeoutState: Codable, Equatable, Sendable {
    public var tcp: UInt32
    public var tcpFin: UInt32
    public var udp: UInt32

    public init(tcp: UInt32, tcpFin: UInt32, udp: UInt32) {
        self.tcp = tcp
        self.tcpFin = tcpFin
        self.udp = udp
    }
}

public struct ServiceState: Codable, Equatable, Sendable {
    /// "TCP" or "UDP" ("TCP" for a firewall-mark service, as ipvsadm sets it).
    public var proto: String
    /// Dotted quad, or RFC 5952 text for an IPv6 service (0.0.0.0 or :: for a firewall-mark service:
    /// its family).
    public var address: String
    public var port: UInt16
    /// The mark of a firewall-mark service (`-f`), 0 for a service by address and port.
    public var fwmark: UInt32 = 0
    /// `-o`: one-packet scheduling (IPVS `IP_VS_SVC_F_ONEPACKET`).
    public var onePacket: Bool = false
    public var scheduler: String
    /// ipvsadm's flag names: "sh-fallback", "sh-port", "mh-fallback", "mh-port", "flag-1", "flag-2".
    public var schedulerFlags: [String]
    /// Persistence timeout in seconds, nil when not persistent.
    public var persistence: UInt32?
    /// `-M`: a dotted netmask ("255.255.255.255" when not set); for an IPv6 service the prefix
    /// length, as ipvsadm takes and prints it ("128" when not set).
    public var netmask: String
    public var stats: TrafficCounters
    public var rates: TrafficRates
    public var destinations: [DestinationState]

    public init(proto: String, address: String, port: UInt16, fwmark: UInt32 = 0, scheduler: String,
                schedulerFlags: [String] = [], persistence: UInt32? = nil, netmask: String = "255.255.255.255",
                onePacket: Bool = false, stats: TrafficCounters = TrafficCounters(),
                rates: TrafficRates = TrafficRates(), destinations: [DestinationState] = []) {
        self.proto = proto
        self.address = address
        self.port = port
        self.fwmark = fwmark
        self.onePacket = onePacket
        self.scheduler = scheduler
        self.schedulerFlags = schedulerFlags
        self.persistence = persistence
        self.netmask = netmask
        self.stats = stats
        self.rates = rates
        self.destinations = destinations
    }
}

public struct DestinationState: Codable, Equatable, Sendable {
    public var address: String
    public var port: UInt16
    /// Always "Masq": masq forwards in NAT mode only.
    public var forward: String
    public var weight: Int32
    public var activeConnections: Int32
    public var inactiveConnections: Int32
    public var persistentConnections: Int32
    /// `-x`, `-y` (0: not set), as `--thresholds` lists them.
    public var upperThreshold: UInt32 = 0
    public var lowerThreshold: UInt32 = 0
    public var stats: TrafficCounters
    public var rates: TrafficRates

    public init(address: String, port: UInt16, forward: String = "Masq", weight: Int32, activeConnections: Int32 = 0,
                inactiveConnections: Int32 = 0, persistentConnections: Int32 = 0, upperThreshold: UInt32 = 0,
                lowerThreshold: UInt32 = 0, stats: TrafficCounters = TrafficCounters(),
                rates: TrafficRates = TrafficRates()) {
        self.upperThreshold = upperThreshold
        self.lowerThreshold = lowerThreshold
        self.address = address
        self.port = port
        self.forward = forward
        self.weight = weight
        self.activeConnections = activeConnections
        self.inactiveConnections = inactiveConnections
        self.persistentConnections = persistentConnections
        self.stats = stats
        self.rates = rates
    }
}

// A daemon from before firewall marks, one-packet scheduling and thresholds (masq 0.15) sends none of
// these fields: they decode as their defaults, so a newer masqadm still reads its state.

extension ServiceState {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            proto: try c.decode(String.self, forKey: .proto), address: try c.decode(String.self, forKey: .address),
            port: try c.decode(UInt16.self, forKey: .port),
            fwmark: try c.decodeIfPresent(UInt32.self, forKey: .fwmark) ?? 0,
            scheduler: try c.decode(String.self, forKey: .scheduler),
            schedulerFlags: try c.decode([String].self, forKey: .schedulerFlags),
            persistence: try c.decodeIfPresent(UInt32.self, forKey: .persistence),
            netmask: try c.decode(String.self, forKey: .netmask),
            onePacket: try c.decodeIfPresent(Bool.self, forKey: .onePacket) ?? false,
            stats: try c.decode(TrafficCounters.self, forKey: .stats), rates: try c.decode(TrafficRates.self, forKey: .rates),
            destinations: try c.decode([DestinationState].self, forKey: .destinations))
    }
}

extension DestinationState {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            address: try c.decode(String.self, forKey: .address), port: try c.decode(UInt16.self, forKey: .port),
            forward: try c.decode(String.self, forKey: .forward), weight: try c.decode(Int32.self, forKey: .weight),
            activeConnections: try c.decode(Int32.self, forKey: .activeConnections),
            inactiveConnections: try c.decode(Int32.self, forKey: .inactiveConnections),
            persistentConnections: try c.decode(Int32.self, forKey: .persistentConnections),
            upperThreshold: try c.decodeIfPresent(UInt32.self, forKey: .upperThreshold) ?? 0,
            lowerThreshold: try c.decodeIfPresent(UInt32.self, forKey: .lowerThreshold) ?? 0,
            stats: try c.decode(TrafficCounters.self, forKey: .stats), rates: try c.decode(TrafficRates.self, forKey: .rates))
    }
}
