import MasqCore
import Synchronization

/// What the queue threads share, owned by `SharedEngine`'s lock and reachable only inside its
/// `withLock`: the engine, the packet trace in progress, each queue's loop counters, the state
/// file's figures, and what the lock itself cost.
public struct EngineState {
    public let engine: Engine
    /// The packet trace in progress, if any.
    public var trace: PacketTrace?
    /// The file of the trace that holds the one trace slot: from the request that starts it (before
    /// its file is created, outside the lock) until its file is flushed after it ends (also outside
    /// the lock), so a second trace can neither race the first's start nor truncate its tail.
    public var traceSlot: String?
    /// Each queue's loop counters, refreshed after every batch.
    public var queueCounters: [UInt16: LoopCounters] = [:]
    /// The state file's figures: the metrics read them, the first batch after an adoption sets the gap.
    public var tableFile = TableFileFigures(path: nil)
    /// Acquisitions of the lock, and how many found it held and had to wait: what sharing one table
    /// between queue threads costs.
    public fileprivate(set) var lockAcquisitions: UInt64 = 0
    public fileprivate(set) var lockWaits: UInt64 = 0
}

/// The engine, shared by the packet threads of several queues: both directions of one NAT flow can
/// land on different queues (`--queue-balance` hashes the address pair), so there is one table.
/// Each queue thread holds the lock for one receive batch; the control plane, the health checks and
/// the metrics take it between batches, copy what they need, and format it outside.
///
/// swift-nio's `NIOLockedValueBox` shape: a final class, so the `Mutex` (and the state) sits at one
/// stable address that every thread shares.
public final class SharedEngine: Sendable {
    private let state: Mutex<EngineState>

    public init(_ engine: sending Engine) {
        state = Mutex(EngineState(engine: engine))
    }

    /// Runs `body` with the state under the lock. The lock is tried first, so a wait (the lock held by
    /// another thread) is counted apart from an acquisition.
    @inline(__always)
    public func withLock<T, E: Error>(_ body: (inout EngineState) throws(E) -> sending T) throws(E) -> sending T {
        if let result = try state.withLockIfAvailable({ (state: inout sending EngineState) throws(E) -> sending T in
            state.lockAcquisitions &+= 1
            return try body(&state)
        }) {
            return result
        }
        return try state.withLock { (state: inout sending EngineState) throws(E) -> sending T in
            state.lockAcquisitions &+= 1
            state.lockWaits &+= 1
            return try body(&state)
        }
    }
}
