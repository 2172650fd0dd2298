import Logging
import MasqCore
import Metrics
import MasqNFQueue
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The monotonic clock the daemon's engine runs on, in nanoseconds.
public func monotonicNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// What the control side (signals, reloads) tells the packet thread, which owns the engine.
public final class LoopControl: Sendable {
    private let stop = Atomic<Bool>(false)
    private let hasDump = Atomic<Bool>(false)
    private let dumpPath = Mutex<String?>(nil)

    public init() {}

    /// Asks the packet thread to write the connection table to `path` (JSON lines) between batches.
    public func requestDump(to path: String) {
        dumpPath.withLock { $0 = path }
        hasDump.store(true, ordering: .releasing)
    }

    func takeDumpRequest() -> String? {
        guard hasDump.load(ordering: .acquiring) else { return nil }
        hasDump.store(false, ordering: .relaxed)
        return dumpPath.withLock { value in
            defer { value = nil }
            return value
        }
    }

    public func requestStop() { stop.store(true, ordering: .releasing) }
    public var stopRequested: Bool { stop.load(ordering: .acquiring) }

}

/// The engine, shared by the packet threads of several queues: both directions of one NAT flow can
/// land on different queues (`--queue-balance` hashes the address pair), so there is one table.
/// Each thread holds the lock for one receive batch.
public final class SharedEngine: @unchecked Sendable {
    public let engine: Engine
    private var mutex = pthread_mutex_t()
    /// The packet trace in progress, if any (under the lock).
    public var trace: PacketTrace?
    /// Each queue's loop counters, refreshed after every batch (under the lock).
    public var queueCounters: [UInt16: LoopCounters] = [:]
    /// Acquisitions of the lock, and how many found it held and had to wait (under the lock): what
    /// sharing one table between queue threads costs.
    public private(set) var lockAcquisitions: UInt64 = 0
    public private(set) var lockWaits: UInt64 = 0

    public init(_ engine: Engine) {
        self.engine = engine
        pthread_mutex_init(&mutex, nil)
    }

    deinit { pthread_mutex_destroy(&mutex) }

    @inline(__always) public func lock() {
        if pthread_mutex_trylock(&mutex) != 0 {
            pthread_mutex_lock(&mutex)
            lockWaits &+= 1
        }
        lockAcquisitions &+= 1
    }
    @inline(__always) public func unlock() { pthread_mutex_unlock(&mutex) }

    public func withLock<T>(_ body: (Engine) throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body(engine)
    }
}

/// Counters of the queue side, for logs (and later metrics).
public struct LoopCounters: Sendable {
    public static func + (a: LoopCounters, b: LoopCounters) -> LoopCounters {
        var c = a
        c.receives &+= b.receives
        c.packets &+= b.packets
        c.enobufs &+= b.enobufs
        c.netlinkErrors &+= b.netlinkErrors
        c.sendCalls &+= b.sendCalls
        c.verdictMessages &+= b.verdictMessages
        c.batchVerdicts &+= b.batchVerdicts
        return c
    }

    public var receives: UInt64 = 0
    public var packets: UInt64 = 0
    public var enobufs: UInt64 = 0
    public var netlinkErrors: UInt64 = 0
    public var sendCalls: UInt64 = 0
    public var verdictMessages: UInt64 = 0
    public var batchVerdicts: UInt64 = 0
}

/// Closes the trace in progress (under the engine lock) and says so.
func finishTrace(_ shared: SharedEngine) {
    guard let trace = shared.trace else { return }
    trace.flush()
    shared.trace = nil
    traceLogger?.notice("packet trace finished", metadata: [
        "file": "\(trace.path)", "records": "\(trace.written)", "filter": "\(trace.filter)"])
}

nonisolated(unsafe) var traceLogger: Logger?

/// The packet loop: receive a batch, run each packet through the engine, send all verdicts in one
/// `sendmsg`. Every queued packet gets exactly one verdict. Idle, it wakes every 100 ms to expire
/// connections. Asked to stop, it drains what is still queued and returns.
public struct PacketLoop {
    public var logPackets = false
    /// Records each receive batch's size in the `masq_verdict_batch_size` histogram.
    public var recordBatchSizes = false
    /// Sends the engine's ICMP port-unreachable answers after each batch (nil: they are not sent).
    var unreachableSender: UnreachableSender?
    let logger: Logger

    public init(logger: Logger, logPackets: Bool = false) {
        self.logger = logger
        self.logPackets = logPackets
    }

    public func run(queue: borrowing NFQueue, shared: SharedEngine, control: LoopControl) throws(NFQError) -> LoopCounters {
        let engine = shared.engine
        var batch = ReceiveBatch()
        var verdicts = VerdictBatch()
        var counters = LoopCounters()
        var lastENOBUFSLog: Int64 = 0
        var drainingSince: Int64?
        let queueNumber = queue.queue
        let batchSizes = recordBatchSizes
            ? Recorder(label: "masq_verdict_batch_size", dimensions: [("queue", "\(queueNumber)")], aggregate: true) : nil
        while true {
            if let path = control.takeDumpRequest() {
                // Copy under the lock, format and write outside it: the queues keep flowing.
                switch writeDump(shared.withLock { $0.flowRecords() }, to: path) {
                case .success(let count):
                    logger.notice("connection table written", metadata: ["file": "\(path)", "entries": "\(count)"])
                case .failure(let error):
                    logger.error("connection table dump failed: \(error)")
                }
            }
            if drainingSince == nil && control.stopRequested { drainingSince = monotonicNanoseconds() }
            if let since = drainingSince, monotonicNanoseconds() - since > 500_000_000 { break }
            // Under load the next batch is usually waiting already: read first, and poll only when
            // the queue is empty (one syscall fewer per batch).
            if try queue.receive(into: &batch) == 0 {
                guard queue.wait(timeoutMilliseconds: drainingSince == nil ? 100 : 20) else {
                    shared.withLock { engine in
                        let now = monotonicNanoseconds()
                        engine.advanceClock(to: now)
                        if let trace = shared.trace, trace.isFinished || now >= trace.deadline { finishTrace(shared) }
                    }
                    if drainingSince != nil { break }  // nothing left queued
                    continue
                }
                guard try queue.receive(into: &batch) > 0 else { continue }
            }
            counters.receives &+= 1
            batch.parse()
            shared.lock()
            let now = monotonicNanoseconds()
            let trace = shared.trace
            var sendError: NFQError?
            engine.prefetching(count: batch.packetCount, bytes: { batch.packet($0).payload }) { i in
                guard sendError == nil else { return }  // the loop ends with the error below
                let packet = batch.packet(i)
                let traced = trace.map { !$0.isFinished && $0.selects(packet.payload) } ?? false
                if traced { trace!.record(packet.payload, at: now) }
                let verdict = engine.process(packet.payload, meta: packet.meta, now: now)
                if traced {
                    if verdict.accepts { trace!.record(packet.payload, at: now) }
                    trace!.countPacket()
                }
                switch verdict {
                case .accept: verdicts.accept(packet.id)
                case .rewritten: verdicts.acceptModified(packet.id, payload: packet.payload, queue: queueNumber)
                case .drop: verdicts.drop(packet.id, queue: queueNumber)
                }
                if logPackets {
                    logger.debug("packet", metadata: ["id": "\(packet.id)", "length": "\(packet.payload.count)",
                                                      "gso": "\(packet.isGSO)", "verdict": "\(verdict)"])
                }
                if verdicts.isNearlyFull {
                    do throws(NFQError) {
                        try queue.send(&verdicts)
                    } catch {
                        sendError = error
                    }
                }
            }
            if let sendError {
                shared.unlock()
                throw sendError
            }
            counters.packets &+= UInt64(batch.packetCount)
            if let trace, trace.isFinished || now >= trace.deadline { finishTrace(shared) }
            // Rate-limited (1000/s) non-blocking sends, so cheap enough to make under the lock that
            // guards the outbox.
            if engine.unreachable.count > 0 {
                if let unreachableSender { unreachableSender.send(engine.unreachable) } else { engine.unreachable.drain { _, _ in } }
            }
            shared.unlock()
            if let id = batch.overflowID { verdicts.accept(id) }
            try queue.send(&verdicts)
            batchSizes?.record(batch.packetCount)
            if batch.enobufs != counters.enobufs {
                counters.enobufs = batch.enobufs
                if now - lastENOBUFSLog > 10_000_000_000 {
                    lastENOBUFSLog = now
                    logger.warning("the kernel dropped queued packets: masq fell behind (ENOBUFS)",
                                   metadata: ["enobufs_total": "\(counters.enobufs)"])
                }
            }
            if batch.netlinkErrors != counters.netlinkErrors {
                counters.netlinkErrors = batch.netlinkErrors
                logger.warning("the kernel refused a verdict", metadata: [
                    "errno": "\(batch.lastNetlinkError)", "errors_total": "\(counters.netlinkErrors)"])
            }
            counters.sendCalls = verdicts.sendCalls
            counters.verdictMessages = verdicts.verdictMessages
            counters.batchVerdicts = verdicts.batchVerdicts
            shared.withLock { _ in shared.queueCounters[queueNumber] = counters }
        }
        return counters
    }
}
