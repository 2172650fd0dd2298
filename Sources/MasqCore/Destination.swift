/// A real server of one virtual service (IPVS `struct ip_vs_dest`): where NAT sends a flow, its weight
/// and the connection counts the schedulers read.
public final class Destination {
    /// Stable for the destination's life, even across rule reloads; connections refer to it by this id.
    public let id: UInt32
    public let address: IPv4Address
    public let port: UInt16
    /// 0 quiesces the server: no new connections, existing ones go on.
    public internal(set) var weight: Int32
    /// The last non-zero weight, so hashing schedulers keep a quiesced server's slots (IPVS `last_weight`).
    public internal(set) var lastWeight: Int32
    /// ESTABLISHED connections (ipvsadm's ActiveConn).
    public internal(set) var activeConnections: Int32 = 0
    /// Connections in any other state (ipvsadm's InActConn).
    public internal(set) var inactiveConnections: Int32 = 0
    /// Persistence templates pointing here (ipvsadm's `--persistent-conn` PersistConn).
    public internal(set) var persistentConnections: Int32 = 0

    public init(id: UInt32, address: IPv4Address, port: UInt16, weight: Int32) {
        self.id = id
        self.address = address
        self.port = port
        self.weight = weight
        self.lastWeight = weight
    }

    /// May take new connections (IPVS: weight > 0 and not overloaded; masq has no thresholds yet).
    @inlinable public var isAvailable: Bool { weight > 0 }

    func setWeight(_ newWeight: Int32) {
        weight = newWeight
        if newWeight > 0 { lastWeight = newWeight }
    }
}

/// What a scheduler may look at when it picks a real server for a new connection.
public struct SchedulingInput: Sendable {
    public var client: IPv4Address
    public var clientPort: UInt16
    public var virtualAddress: IPv4Address
    public var virtualPort: UInt16

    public init(client: IPv4Address, clientPort: UInt16, virtualAddress: IPv4Address, virtualPort: UInt16) {
        self.client = client
        self.clientPort = clientPort
        self.virtualAddress = virtualAddress
        self.virtualPort = virtualPort
    }
}
