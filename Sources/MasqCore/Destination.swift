/// A real server of one virtual service, and everything the engine keeps about it in one record (IPVS
/// `struct ip_vs_dest`): where NAT sends a flow, its weight, the service it belongs to, whether it is
/// still in that service, the connection counts the schedulers read, its traffic counters and rates,
/// and the passive health signal.
///
/// Connections name it by `id`. Its service lists it while it is configured; `Engine.destinations`
/// holds it by id until its last connection has ended, even once removed (IPVS keeps removed real
/// servers in its trash while connections use them), so their replies are still NATed.
///
/// Its connection counts and traffic counters live in its registry record in the table's memory
/// (`DestinationRecord`), so they survive a restart with the connections that make them.
public final class Destination {
    /// Stable for the destination's life, even across rule reloads and restarts; connections refer to
    /// it by this id. A released id is given to the next new real server.
    public let id: UInt32
    let record: UnsafeMutablePointer<DestinationRecord>
    /// Keeps the record's memory mapped while the object lives.
    private let memory: TableMemory
    /// ipvsadm `--stats` for this real server, counted on the packet path.
    public internal(set) var stats: TrafficCounters {
        get { record.pointee.stats }
        set { record.pointee.stats = newValue }
    }
    public let address: IPAddress
    /// The address by family, for the packet paths (each reads its own; the other is zero).
    public let address4: IPv4Address
    public let address6: IPv6Address
    public let port: UInt16
    /// The service it belongs (or belonged) to, and that service's protocol.
    public let serviceID: UInt32
    public let proto: IPProtocol
    /// 0 quiesces the server: no new connections, existing ones go on.
    public internal(set) var weight: Int32
    /// The last non-zero weight, so hashing schedulers keep a quiesced server's slots (IPVS `last_weight`).
    public internal(set) var lastWeight: Int32
    /// Still in its service; false once a reload or `-d` removed it, while its connections drain.
    /// In the registry record, so the next masq binds the configured server to this record and not to
    /// a draining one of the same address:port (see `DestinationRecord.inService`).
    public internal(set) var inService: Bool {
        get { record.pointee.inService != 0 }
        set { record.pointee.inService = newValue ? 1 : 0 }
    }
    /// ESTABLISHED connections (ipvsadm's ActiveConn).
    public internal(set) var activeConnections: Int32 {
        get { record.pointee.activeConnections }
        set { record.pointee.activeConnections = newValue }
    }
    /// Connections in any other state (ipvsadm's InActConn).
    public internal(set) var inactiveConnections: Int32 {
        get { record.pointee.inactiveConnections }
        set { record.pointee.inactiveConnections = newValue }
    }
    /// Persistence templates pointing here (ipvsadm's `--persistent-conn` PersistConn).
    public internal(set) var persistentConnections: Int32 {
        get { record.pointee.persistentConnections }
        set { record.pointee.persistentConnections = newValue }
    }
    /// New TCP connections in a row the real server reset or never answered (passive health, read by
    /// the health checks through `Engine.handshakeFailures`); a completed handshake sets it back to 0.
    public internal(set) var handshakeFailures: UInt32 = 0
    /// Turns `stats` into ipvsadm `--rate`'s figures (see `Engine.estimateRates(at:)`).
    var rateEstimator = RateEstimator()

    /// A new real server on a free record: the record is (re)initialised, counts and stats zero.
    convenience init(id: UInt32, in memory: TableMemory, address: IPAddress, port: UInt16, weight: Int32,
                     serviceID: UInt32, proto: IPProtocol) {
        let record = TableRegistry(memory).destinations + Int(id)
        record.pointee = DestinationRecord(inUse: 1, inService: 1, port: port, proto: proto.rawValue,
                                           family: address.isIPv6 ? 6 : 0, reserved: (0, 0),
                                           address: address.v4?.rawValue ?? 0, address6: address.v6 ?? .unspecified,
                                           serviceID: serviceID, activeConnections: 0, inactiveConnections: 0,
                                           persistentConnections: 0, stats: TrafficCounters())
        self.init(adopting: id, in: memory, weight: weight)
    }

    /// The real server of an existing record (adopted from an earlier masq): its counts and stats as
    /// they are, `weight` until the configuration is applied.
    init(adopting id: UInt32, in memory: TableMemory, weight: Int32) {
        let record = TableRegistry(memory).destinations + Int(id)
        self.id = id
        self.record = record
        self.memory = memory
        address = record.pointee.ipAddress
        address4 = address.v4 ?? IPv4Address(rawValue: 0)
        address6 = address.v6 ?? .unspecified
        port = record.pointee.port
        serviceID = record.pointee.serviceID
        proto = IPProtocol(rawValue: record.pointee.proto)
        self.weight = weight
        self.lastWeight = weight
    }

    /// ipvsadm `-x`: at this many connections (active + inactive) the server takes no new ones; 0 = none.
    public internal(set) var upperThreshold: UInt32 = 0
    /// ipvsadm `-y`: an overloaded server takes new connections again below this many; 0 = 3/4 of
    /// the upper threshold.
    public internal(set) var lowerThreshold: UInt32 = 0
    /// IPVS IP_VS_DEST_F_OVERLOAD: the upper threshold was reached and the count has not yet fallen
    /// below the lower one. Not in the registry record: `restoreOverload()` recomputes it after a restart.
    public internal(set) var overloaded = false

    /// May take new connections (IPVS: weight > 0 and not IP_VS_DEST_F_OVERLOAD).
    @inlinable public var isAvailable: Bool { weight > 0 && !overloaded }

    /// IPVS `ip_vs_dest_totalconns`: active and inactive connections (templates are not counted).
    @inlinable var totalConnections: Int64 { Int64(activeConnections) + Int64(inactiveConnections) }

    /// A connection now names this server (IPVS `ip_vs_bind_dest`): counted active or inactive, and
    /// the server is overloaded once the count reaches its upper threshold.
    @inline(__always) func bindConnection(active: Bool) {
        if active { activeConnections &+= 1 } else { inactiveConnections &+= 1 }
        checkUpperThreshold()
    }

    /// A persistence template now names this server (`ip_vs_bind_dest` with IP_VS_CONN_F_TEMPLATE):
    /// counted in PersistConn; the threshold is checked as for a connection, on the connection count.
    @inline(__always) func bindTemplate() {
        persistentConnections &+= 1
        checkUpperThreshold()
    }

    /// A connection no longer names this server (IPVS `ip_vs_unbind_dest`).
    @inline(__always) func unbindConnection(active: Bool) {
        if active { activeConnections &-= 1 } else { inactiveConnections &-= 1 }
        checkLowerThreshold()
    }

    /// A persistence template no longer names this server.
    @inline(__always) func unbindTemplate() {
        persistentConnections &-= 1
        checkLowerThreshold()
    }

    /// `ip_vs_bind_dest`: `u_threshold != 0 && totalconns >= u_threshold` sets the flag.
    @inline(__always) private func checkUpperThreshold() {
        if upperThreshold != 0 && totalConnections >= Int64(upperThreshold) { overloaded = true }
    }

    /// `ip_vs_unbind_dest`: the flag clears below the lower threshold when one is set, else below 3/4
    /// of the upper one (`totalconns * 4 < u_threshold * 3`), else (no thresholds) at once.
    @inline(__always) private func checkLowerThreshold() {
        guard overloaded else { return }
        if lowerThreshold != 0 {
            if totalConnections < Int64(lowerThreshold) { overloaded = false }
        } else if upperThreshold != 0 {
            if totalConnections * 4 < Int64(upperThreshold) * 3 { overloaded = false }
        } else {
            overloaded = false
        }
    }

    /// New thresholds from the configuration (IPVS `__ip_vs_update_dest`): the flag clears when the
    /// upper threshold is removed or raised; otherwise it stands until the next connection ends (a
    /// lowered threshold takes effect at the next connection, as in the kernel).
    func setThresholds(upper: UInt32, lower: UInt32) {
        if upper == 0 || upper > upperThreshold { overloaded = false }
        upperThreshold = upper
        lowerThreshold = lower
    }

    /// After adopting an earlier masq's table, whose records keep the counts but not the flag: set
    /// when the count is at or over the upper threshold (the kernel could not have cleared it there);
    /// between the two thresholds the history is unknown and the server is taken as not overloaded.
    func restoreOverload() {
        overloaded = upperThreshold != 0 && totalConnections >= Int64(upperThreshold)
    }

    /// The rates of the last sample (ipvsadm `--rate`).
    public var rates: TrafficRates { rateEstimator.rates }

    func setWeight(_ newWeight: Int32) {
        weight = newWeight
        if newWeight > 0 { lastWeight = newWeight }
    }

    /// Connections and templates that still name this destination.
    var isUnused: Bool { activeConnections == 0 && inactiveConnections == 0 && persistentConnections == 0 }
}
