/// The engine's own counts, as `masq replay` summarises them.
public struct EngineCounters: Equatable, Sendable {
    public var packets: UInt64 = 0
    public var rewrittenInbound: UInt64 = 0
    public var rewrittenOutbound: UInt64 = 0
    public var untouched: UInt64 = 0
    /// Accepted untouched because the bytes were truncated (also counted in `untouched`).
    public var truncated: UInt64 = 0
    public var dropped = [UInt64](repeating: 0, count: DropReason.allCases.count)
    public var connectionsCreated: UInt64 = 0
    /// Entries evicted by early drop, by `EvictionReason`.
    public var evicted = [UInt64](repeating: 0, count: EvictionReason.allCases.count)
    /// Times the engine entered pressure mode (see `Engine.pressure`).
    public var pressureEntered: UInt64 = 0
    public var templatesCreated: UInt64 = 0
    /// Entries a master's sync updates created here (not in `connectionsCreated`/`templatesCreated`).
    public var syncedCreated: UInt64 = 0
    public var expired: UInt64 = 0
    /// Services and real servers left out of the configuration for want of a registry record (see
    /// `Engine.apply`).
    public var registryFull: UInt64 = 0
    public init() {}

    public subscript(reason: DropReason) -> UInt64 { dropped[reason.rawValue] }
    public subscript(reason: EvictionReason) -> UInt64 { evicted[reason.rawValue] }
    public var droppedTotal: UInt64 { dropped.reduce(0, +) }
}
