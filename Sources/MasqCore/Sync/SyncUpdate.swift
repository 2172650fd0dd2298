/// One connection or persistence template as the IPVS sync protocol carries it: the content of the
/// kernel's `struct ip_vs_sync_conn` (net/netfilter/ipvs/ip_vs_sync.c) in masq's own types, with no
/// wire detail. Plain data (no reference, no heap storage), so the packet path can copy it into a
/// `SyncOutbox` slot without allocating, and the sender thread can read it without the engine.
/// MasqSync converts it to and from the wire's `SyncEntry`.
public struct SyncUpdate: Hashable, Sendable {
    public var proto: IPProtocol
    /// masq's state (IPVS's numbering for TCP, `.udp` for UDP, `.none` for a template).
    public var state: ConnectionState
    public var isTemplate: Bool
    /// Counted active (ESTABLISHED) by its real server; on the wire, `!isActive` is the INACTIVE flag
    /// of a connection (a template carries none).
    public var isActive: Bool
    /// All three of one family (IPVS `struct ip_vs_sync_v4` or `ip_vs_sync_v6`).
    public var client: IPAddress
    public var clientPort: UInt16
    public var virtualAddress: IPAddress
    public var virtualPort: UInt16
    public var server: IPAddress
    public var serverPort: UInt16
    /// Seconds: the state's whole timeout, as the kernel sends it (`cp->timeout / HZ`), not what is left.
    public var timeout: UInt32
    /// The firewall mark of a firewall-mark service's entry (`Engine.syncUpdate`), else 0.
    public var fwmark: UInt32

    public init(proto: IPProtocol, state: ConnectionState, isTemplate: Bool = false, isActive: Bool,
                client: IPv4Address, clientPort: UInt16, virtualAddress: IPv4Address, virtualPort: UInt16,
                server: IPv4Address, serverPort: UInt16, timeout: UInt32, fwmark: UInt32 = 0) {
        self.init(proto: proto, state: state, isTemplate: isTemplate, isActive: isActive, client: .v4(client),
                  clientPort: clientPort, virtualAddress: .v4(virtualAddress), virtualPort: virtualPort,
                  server: .v4(server), serverPort: serverPort, timeout: timeout, fwmark: fwmark)
    }

    public init(proto: IPProtocol, state: ConnectionState, isTemplate: Bool = false, isActive: Bool,
                client: IPAddress, clientPort: UInt16, virtualAddress: IPAddress, virtualPort: UInt16,
                server: IPAddress, serverPort: UInt16, timeout: UInt32, fwmark: UInt32 = 0) {
        self.proto = proto
        self.state = state
        self.isTemplate = isTemplate
        self.isActive = isActive
        self.client = client
        self.clientPort = clientPort
        self.virtualAddress = virtualAddress
        self.virtualPort = virtualPort
        self.server = server
        self.serverPort = serverPort
        self.timeout = timeout
        self.fwmark = fwmark
    }

    /// The update describing an IPv4 table entry (connection or template) as it is now. An IPv6
    /// entry's IPv4 fields hold only folds: `init(_:addresses:)` (or `Engine.syncUpdate`) is its.
    public init(_ c: Connection) {
        self.init(proto: c.proto, state: c.state, isTemplate: c.isTemplate, isActive: c.countedActive,
                  client: c.client, clientPort: c.clientPort, virtualAddress: c.virtualAddress,
                  virtualPort: c.virtualPort, server: c.server, serverPort: c.serverPort, timeout: c.timeout)
    }

    /// The update describing an IPv6 table entry, its addresses from the table's sidecar
    /// (`ConnectionTable.addresses6`): IPVS's `struct ip_vs_sync_v6`.
    public init(_ c: Connection, addresses a: ConnectionAddresses6) {
        self.init(proto: c.proto, state: c.state, isTemplate: c.isTemplate, isActive: c.countedActive,
                  client: .v6(a.client), clientPort: c.clientPort, virtualAddress: .v6(a.virtualAddress),
                  virtualPort: c.virtualPort, server: .v6(a.server), serverPort: c.serverPort, timeout: c.timeout)
    }
}

/// When a master sends a connection again (`net.ipv4.vs.sync_threshold`, "3 50" by default;
/// ipvs-sysctl.rst): at the `threshold`-th packet from the client and then every `period` packets
/// (`pkts % period == threshold`), besides every change into a closing TCP state.
public struct SyncSettings: Sendable, Equatable {
    public var threshold: UInt32 = 3
    /// 0: only at `threshold` and on state changes.
    public var period: UInt32 = 50

    public init(threshold: UInt32 = 3, period: UInt32 = 50) {
        self.threshold = threshold
        self.period = period
    }

    /// The kernel refuses a threshold not below a non-zero period (`proc_do_sync_threshold`: EINVAL),
    /// since `pkts % period` would never reach it.
    public var isValid: Bool { period == 0 || threshold < period }
}

/// What a backup did with one received update (`Engine.applySynced`); the raw values are the metric
/// labels of the receiver's counters.
public enum SyncApplyResult: String, CaseIterable, Sendable {
    /// A new entry, bound to the local real server.
    case created
    /// An entry the table had: state, timeout and expiry taken from the update.
    case updated
    /// The table's entry for that client named another real server: removed, and the update's entered.
    case replaced
    /// An INACTIVE update for an entry now bound elsewhere: the master's expiry of a connection it has
    /// already replaced (`ip_vs_proc_conn`), ignored.
    case staleIgnored
    /// No local virtual service for the update's protocol, address and port (or its fwmark), or a
    /// template for a service without persistence.
    case unknownService = "unknown_service"
    /// The service has no such real server here.
    case noDestination = "no_destination"
    /// A state the protocol does not have.
    case badState = "bad_state"
    /// No room, and only established entries to make it with, which are never evicted.
    case tableFull = "table_full"
    /// Its tuples collide with another entry's (a reply direction taken, or inbound equal to outbound).
    case conflict
}
