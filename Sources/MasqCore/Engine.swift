/// The LVS-NAT engine: every packet, from NFQUEUE or from a capture file, goes through `process`.
///
/// Inbound (client → VIP:port): find or schedule a connection, rewrite the destination to the real
/// server. Outbound (real server → client): rewrite the source back to VIP:port. ICMP errors about a
/// connection are translated both ways. Anything else is accepted untouched. No I/O, no clock of its
/// own: the caller passes the time, so a replay is deterministic. Not thread-safe: one owner (the
/// daemon's lock) calls it, for packets and for configuration alike.
///
/// Split as IPVS splits itself (net/netfilter/ipvs): this file holds the engine's state (IPVS's
/// `struct netns_ipvs`); `Engine+PacketPath.swift` the packet path, new connections, early drop and
/// ICMP (ip_vs_core.c); `Engine+Control.swift` configuration, real servers, zeroing and rates
/// (ip_vs_ctl.c); `RateEstimator.swift` the rate estimator (ip_vs_est.c); `ConnectionTable.swift`
/// the connections (ip_vs_conn.c), in the memory `TableMemory.swift` maps (a state file the next masq
/// adopts, or anonymous pages) with the service and real-server records of `TableRegistry.swift`;
/// `Protocols/` the per-protocol tables (ip_vs_proto_*.c);
/// `Sync/` connection sync's engine side (ip_vs_sync.c: what a master hands its sender, what a backup
/// applies, the whole-table walk); and `Schedulers/` one file per scheduler (ip_vs_rr.c, ip_vs_wlc.c, …).
public final class Engine {
    public let table: ConnectionTable
    public internal(set) var counters = EngineCounters()
    public internal(set) var timeouts: Timeouts
    /// Services in configuration order.
    public internal(set) var services: [VirtualService] = []
    var serviceByKey: [ServiceKey: VirtualService] = [:]
    /// Firewall-mark services (`-f`) by mark, IPv4 and IPv6 apart (IPVS's `svc_fwm_table`, whose lookup
    /// matches the family too). Looked up only for a marked packet: an unmarked one pays one compare.
    var firewallMarkServices: [UInt32: VirtualService] = [:]
    var firewallMarkServices6: [UInt32: VirtualService] = [:]
    /// One-packet (`-o`) UDP services by real server endpoint: the stateless reverse of their datagrams
    /// (no entry is kept), so a real server's answer still leaves from the VIP (see `onePacketReply`).
    var onePacketReplies: [OnePacketReplyKey: OnePacketReply] = [:]
    /// `proto << 32 | address` of every VIP, for fragments and malformed packets that have no ports.
    var virtualAddresses: Set<UInt64> = []
    var realAddresses: Set<UInt32> = []
    /// The same for IPv6 services: each VIP with its protocol, and every real server's address.
    var virtualAddresses6: Set<VirtualAddress6> = []
    var realAddresses6: Set<IPv6Address> = []
    /// Real servers by id; a removed one stays until its last connection ends, then its slot is nil.
    public internal(set) var destinations: [Destination?] = []
    /// ipvsadm `--stats` of each service, by service id (a removed service's connections still count),
    /// in the service's registry record.
    public var serviceStats: ServiceStatistics { ServiceStatistics(registry: registry) }
    /// The service and real-server records in the table's memory.
    let registry: TableRegistry
    /// What adopting the previous masq's table found; nil unless `table.memory` was adopted.
    public internal(set) var adoption: AdoptionReport?
    /// `markCleanShutdown` ran: nothing may change the table any more.
    public private(set) var isShutDown = false
    /// The latest time seen, nanoseconds on the caller's clock.
    public internal(set) var now: Int64 = 0
    /// When `estimateRates` last ran, on the clock it was given.
    var lastRateSample: Int64?
    /// IPVS's `expire_nodest_conn`: a packet of a connection whose real server was removed is dropped
    /// and its connection expired, instead of the default (the flow lives out its timeout).
    public var expireNodestConnections = false

    // MARK: Connection sync (ip_vs_sync.c; see Sync/Engine+Sync.swift)

    /// Where a master's packet path hands connections over to the sync sender; nil: sync off, which
    /// costs the packet path one branch. Set by the daemon when a master sync daemon starts, nil when
    /// it stops.
    public var syncOutbox: SyncOutbox?
    /// When a connection is sent again (`sync_threshold`).
    public var syncSettings = SyncSettings()

    public static let defaultCapacity = 1 << 20

    // MARK: Defence (conntrack's early_drop, IPVS's drop_entry and secure_tcp)

    /// Slots drawn per early-drop attempt (conntrack samples 8 entries of a bucket chain).
    public static let evictionSamples = 16
    /// Pressure mode starts when the table is this full and ends below `pressureOff` (hysteresis, so a
    /// table hovering at one level does not flap).
    public static let pressureOn = 0.75, pressureOff = 0.5
    /// Half-open entries' idle timeout under pressure, in seconds (SYN_RECV is 60 s otherwise, an
    /// unanswered UDP flow 300 s): a flood's entries leave in seconds, not minutes.
    public static let pressureHalfOpenTimeout: UInt32 = 5
    /// IPVS `secure_tcp`/`amemthresh` in spirit: the table is under pressure (see `pressureOn`).
    public internal(set) var pressure = false
    /// ICMP port unreachable for new flows no real server can take, waiting for the caller to send.
    public let unreachable = UnreachableOutbox()
    /// xorshift64 state for early-drop sampling: fixed seed, so a replay is deterministic.
    var evictionRandom: UInt64 = 0x9E37_79B9_7F4A_7C15
    /// `prefetching`'s ring of the hashes it has fetched buckets for (allocated once).
    let prefetchHashes = UnsafeMutablePointer<UInt32>.allocate(capacity: 16)

    /// An engine on `memory`: a fresh table, or the previous masq's when the memory was adopted. Then
    /// the services and real servers of the registry's records are matched against `configuration` as
    /// a reload matches them (`apply`): a service (by key) and its real servers (by address and port)
    /// keep their ids, counts and stats and take the configured weights; a real server no longer
    /// configured drains (IPVS's trash) and is released once unused; a service no longer configured
    /// leaves `services`, its flows living out their timeouts. Scheduler state starts over (the rr
    /// position, wrr's current weight): it is not in the table's memory.
    public init(configuration: Configuration, memory: TableMemory) {
        table = ConnectionTable(memory: memory)
        registry = table.registry
        timeouts = configuration.timeouts
        if table.memory.isAdopted {
            adoptRegistry(configuration)
        } else {
            apply(configuration)
        }
    }

    /// An engine over private anonymous memory (flows end with the process).
    public convenience init(configuration: Configuration, capacity: Int = Engine.defaultCapacity) {
        self.init(configuration: configuration, memory: TableMemory.anonymous(capacity: capacity))
    }

    deinit { prefetchHashes.deallocate() }

    /// Records that a batch was handled at the engine's `now` (one store into the table's memory): the
    /// next masq measures its restart gap from it.
    public func noteActivity() {
        guard !isShutDown else { return }
        table.memory.noteActivity(now)
    }

    /// The last mutation is done: marks the table's memory clean, so the next masq adopts it without a
    /// repair or recount pass (msync for a file not on tmpfs), with the exit's CLOCK_MONOTONIC time as
    /// the last activity (the next masq's gap is measured from the exit, not from the last packet). The
    /// daemon calls it under the engine's owner, after the packet threads stopped, at any orderly exit.
    ///
    /// From then on every mutating entry point (`process`, `advanceClock`, `apply`, `applySynced`,
    /// `zeroCounters`, `setTimeouts`, `estimateRates`, `noteActivity`) is refused: a control request or
    /// health check still in flight must not change a table already marked clean.
    public func markCleanShutdown() {
        guard !isShutDown else { return }
        isShutDown = true
        table.memory.markClean()
    }
}

/// A real server's UDP endpoint as its answers carry it (source address and port), for
/// `Engine.onePacketReplies`.
struct OnePacketReplyKey: Hashable {
    var address: IPAddress
    var port: UInt16
}

/// Where a one-packet service's answers come from: its VIP and port, and the records they count in.
struct OnePacketReply {
    var virtualAddress: IPAddress
    var virtualPort: UInt16
    var serviceID: UInt32
    var destinationID: UInt32
}

/// An IPv6 VIP with its protocol, for `Engine.virtualAddresses6`.
struct VirtualAddress6: Hashable {
    var proto: IPProtocol
    var address: IPv6Address
}

/// What `Engine(configuration:memory:)` found in an adopted table (the daemon logs it).
public struct AdoptionReport: Sendable {
    public var generation: UInt64
    public var previousOwnerPID: Int32?
    /// The previous masq marked the table clean at exit.
    public var clean: Bool
    public var connections: Int
    public var templates: Int
    /// Connections whose real server is no longer configured: they drain, as after a reload.
    public var onRemovedRealServers: Int
    /// The one operation a `kill -9` interrupted, rolled back or forward.
    public var repairedSlot: UInt32?
    /// Unclean exit only: the sequential recount pass.
    public var recountNanoseconds: Int64?
    /// CLOCK_MONOTONIC ns of the last batch the previous masq handled (or of its clean exit).
    public var previousActivity: Int64?
    /// Unclean exit only: live entries the recount found impossible, each scrubbed alone (the rest of
    /// the table kept), and the first one's reason ("slot N: …") for the log.
    public var scrubbedSlots: Int
    public var firstScrubReason: String?
    /// Unclean exit only: freed service and real-server records revived because a live entry still named
    /// them (they drain, as after a reload).
    public var revivedRecords: Int

    public init(generation: UInt64, previousOwnerPID: Int32?, clean: Bool, connections: Int, templates: Int,
                onRemovedRealServers: Int, repairedSlot: UInt32?, recountNanoseconds: Int64?, previousActivity: Int64?,
                scrubbedSlots: Int = 0, firstScrubReason: String? = nil, revivedRecords: Int = 0) {
        self.scrubbedSlots = scrubbedSlots
        self.firstScrubReason = firstScrubReason
        self.revivedRecords = revivedRecords
        self.generation = generation
        self.previousOwnerPID = previousOwnerPID
        self.clean = clean
        self.connections = connections
        self.templates = templates
        self.onRemovedRealServers = onRemovedRealServers
        self.repairedSlot = repairedSlot
        self.recountNanoseconds = recountNanoseconds
        self.previousActivity = previousActivity
    }
}
