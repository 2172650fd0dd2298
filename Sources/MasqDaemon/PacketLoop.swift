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

    /// A pipe `requestStop` writes a byte into, so a packet thread waiting on an idle queue stops at
    /// once, not after its poll's timeout (a restart's gap is that much shorter). Never read: once
    /// written, `wakeFD` (the read end) stays readable. -1 when no pipe could be made (then the
    /// timeout ends the wait, as before).
    let wakeFD: Int32
    private let wakeWriteFD: Int32

    public init() {
        var ends: [Int32] = [-1, -1]
        if pipe(&ends) == 0 {
            for end in ends {
                _ = fcntl(end, F_SETFD, FD_CLOEXEC)
                _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            }
        }
        wakeFD = ends[0]
        wakeWriteFD = ends[1]
    }

    deinit {
        if wakeFD >= 0 { close(wakeFD) }
        if wakeWriteFD >= 0 { close(wakeWriteFD) }
    }

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

    private let drain = Atomic<Bool>(true)
    private let restart = Atomic<Bool>(false)

    /// Asks the packet threads to stop: with `draining`, after handing back what is still queued (at
    /// most 500 ms; SIGTERM, whose rules are already gone so nothing new arrives); without, after the
    /// batch in hand (a restart: the rules stay, so the queue never runs dry; what is still queued
    /// when the socket closes the kernel drops, nfqnl's instance flush, and TCP retransmits it to
    /// the next masq).
    public func requestStop(draining: Bool = true) {
        if !draining { drain.store(false, ordering: .relaxed) }
        stop.store(true, ordering: .releasing)
        var byte: UInt8 = 1
        if wakeWriteFD >= 0 { _ = write(wakeWriteFD, &byte, 1) }
    }
    public var stopRequested: Bool { stop.load(ordering: .acquiring) }
    var drainsOnStop: Bool { drain.load(ordering: .relaxed) }

    /// SIGUSR2: this exit is a restart (the rules stay, the table is kept for the next masq). Set
    /// before the graceful shutdown starts, which reads it.
    public func requestRestart() { restart.store(true, ordering: .releasing) }
    public var restartRequested: Bool { restart.load(ordering: .acquiring) }
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

/// The packet loop of one queue: receive a batch, run it through the engine (`Engine.process(batch:into:)`,
/// the call `masq replay` makes too), send all verdicts in one `sendmsg`, then the housekeeping (the
/// counters, the trace's end, a dump request, and when idle the expiry tick). Every queued packet
/// gets exactly one verdict. Idle, it wakes every 100 ms to expire connections. Asked to stop, it
/// drains what is still queued and returns.
public struct PacketLoop: Sendable {
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

    /// What one queue's loop keeps from batch to batch.
    private struct QueueState {
        var counters = LoopCounters()
        var lastENOBUFSLog: Int64 = 0
        /// When the stop was asked for: the loop drains what is queued, for at most 500 ms.
        var drainingSince: Int64?
    }

    /// What a receive found.
    private enum Received {
        case batch
        /// Nothing queued within the poll's wait (the expiry tick ran).
        case idle
        /// Stopping, and nothing is left queued.
        case drained
    }

    public func run(queue: borrowing NFQueue, shared: SharedEngine, control: LoopControl) throws(NFQError) -> LoopCounters {
        var batch = ReceiveBatch()
        var sink = QueueVerdicts(socket: queue.verdictSocket, logger: logPackets ? logger : nil)
        var state = QueueState()
        let queueNumber = queue.queue
        let batchSizes = recordBatchSizes
            ? Recorder(label: "masq_verdict_batch_size", dimensions: [("queue", "\(queueNumber)")], aggregate: true) : nil
        while true {
            writeDumpIfAsked(control, shared)
            if state.drainingSince == nil && control.stopRequested {
                if !control.drainsOnStop { break }
                state.drainingSince = monotonicNanoseconds()
            }
            if let since = state.drainingSince, monotonicNanoseconds() - since > 500_000_000 { break }
            switch try receive(queue, into: &batch, state.drainingSince != nil, shared, wakeFD: control.wakeFD) {
            case .idle: continue
            case .drained: return state.counters
            case .batch: break
            }
            state.counters.receives &+= 1
            batch.parse()
            let now = try process(batch.packets, into: &sink, shared)
            if let id = batch.overflowID { sink.verdicts.accept(id) }
            try sink.send()
            batchSizes?.record(batch.packetCount)
            account(batch, sink.verdicts, now: now, &state, queue: queueNumber, shared)
        }
        return state.counters
    }

    /// Reads the next batch; under load it is usually waiting already, so this reads first and polls
    /// only when the queue is empty (one system call fewer per batch). An idle poll runs the expiry tick
    /// and ends a trace whose time is up.
    private func receive(_ queue: borrowing NFQueue, into batch: inout ReceiveBatch, _ draining: Bool,
                         _ shared: SharedEngine, wakeFD: Int32) throws(NFQError) -> Received {
        if try queue.receive(into: &batch) > 0 { return .batch }
        guard queue.wait(timeoutMilliseconds: draining ? 20 : 100, wakeFD: draining ? -1 : wakeFD) else {
            let finished = shared.withLock { state in
                let now = monotonicNanoseconds()
                state.engine.advanceClock(to: now)
                return takeFinishedTrace(&state, now: now)
            }
            finished.map { closeTrace($0, shared) }
            return draining ? .drained : .idle  // stopping: nothing left queued
        }
        return try queue.receive(into: &batch) > 0 ? .batch : .idle
    }

    /// Runs the batch through the engine under the lock, its verdicts into the sink (sent early if
    /// they fill up); then, still under the lock that guards the outbox, the ICMP answers the batch
    /// caused (rate-limited, 1000/s, non-blocking sends). Returns the batch's time.
    func process(_ packets: UnsafeBufferPointer<QueuedPacket>, into sink: inout QueueVerdicts,
                 _ shared: SharedEngine) throws(NFQError) -> Int64 {
        let (now, trace, finished, gap) = shared.withLock { state in
            let now = monotonicNanoseconds()
            let engine = state.engine
            let trace = state.trace
            sink.packets = packets
            sink.now = now
            sink.trace = trace
            engine.process(batch: QueuedPackets(packets: packets, now: now), into: &sink)
            engine.noteActivity()  // the next masq's restart gap starts from the last batch
            sink.trace = nil
            if engine.unreachable.count > 0 {
                if let unreachableSender { unreachableSender.send(engine.unreachable) } else { engine.unreachable.drain { _, _ in } }
            }
            return (now, trace, takeFinishedTrace(&state, now: now), state.tableFile.firstBatchGap(at: now))
        }
        if let gap {
            logger.notice("first packet since adoption", metadata: [
                "gap_ms": "\(Double(gap / 1000) / 1000)", "packets": "\(packets.count)"])
        }
        // What the batch traced goes to the file outside the lock.
        if let finished { closeTrace(finished, shared) } else { trace?.writePending() }
        if let sendError = sink.sendError { throw sendError }
        return now
    }

    /// After a batch: the counters the metrics read, and the kernel's complaints, logged.
    private func account(_ batch: borrowing ReceiveBatch, _ verdicts: borrowing VerdictBatch, now: Int64,
                         _ state: inout QueueState, queue: UInt16, _ shared: SharedEngine) {
        state.counters.packets &+= UInt64(batch.packetCount)
        if batch.enobufs != state.counters.enobufs {
            state.counters.enobufs = batch.enobufs
            if now - state.lastENOBUFSLog > 10_000_000_000 {
                state.lastENOBUFSLog = now
                logger.warning("the kernel dropped queued packets: masq fell behind (ENOBUFS)",
                               metadata: ["enobufs_total": "\(state.counters.enobufs)"])
            }
        }
        if batch.netlinkErrors != state.counters.netlinkErrors {
            state.counters.netlinkErrors = batch.netlinkErrors
            logger.warning("the kernel refused a verdict", metadata: [
                "errno": "\(batch.lastNetlinkError)", "errors_total": "\(state.counters.netlinkErrors)"])
        }
        state.counters.sendCalls = verdicts.sendCalls
        state.counters.verdictMessages = verdicts.verdictMessages
        state.counters.batchVerdicts = verdicts.batchVerdicts
        let counters = state.counters
        shared.withLock { $0.queueCounters[queue] = counters }
    }

    /// SIGUSR1's dump: the records copied under the lock, formatted and written outside it, so the
    /// queues keep flowing.
    private func writeDumpIfAsked(_ control: LoopControl, _ shared: SharedEngine) {
        guard let path = control.takeDumpRequest() else { return }
        switch writeDump(shared.withLock { $0.engine.flowRecords() }, to: path) {
        case .success(let count):
            logger.notice("connection table written", metadata: ["file": "\(path)", "entries": "\(count)"])
        case .failure(let error):
            logger.error("connection table dump failed: \(error)")
        }
    }

    /// Under the lock: the trace in progress, taken out of the state if it is done (its packets, or its
    /// time, are up), to be closed outside the lock.
    private func takeFinishedTrace(_ state: inout EngineState, now: Int64) -> PacketTrace? {
        guard let trace = state.trace, trace.isFinished || now >= trace.deadline else { return nil }
        state.trace = nil
        return trace
    }

    /// Writes out and flushes a finished trace (no thread records into it any more), frees the trace
    /// slot, and says so.
    private func closeTrace(_ trace: PacketTrace, _ shared: SharedEngine) {
        trace.flush()
        shared.withLock { $0.traceSlot = nil }
        logger.notice("packet trace finished", metadata: [
            "file": "\(trace.path)", "records": "\(trace.written)", "filter": "\(trace.filter)"])
    }
}

/// A receive batch as the engine's packet source: every packet at the batch's time.
struct QueuedPackets: PacketBatchSource {
    let packets: UnsafeBufferPointer<QueuedPacket>
    let now: Int64

    var count: Int { packets.count }
    @inline(__always) func packet(_ index: Int) -> PacketBytes { packets[index].payload }
    @inline(__always) func meta(_ index: Int) -> PacketMeta { packets[index].meta }
    @inline(__always) func time(_ index: Int) -> Int64 { now }
}

/// The queue's verdicts: each into the verdict batch (sent early when nearly full), traced packets
/// recorded as they arrived and as they leave. One per queue thread, kept from batch to batch; the
/// batch's packets, time and trace are set for each batch.
struct QueueVerdicts: VerdictSink, ~Copyable {
    var verdicts = VerdictBatch()
    let socket: VerdictSocket
    /// Set with `--log-packets`: a debug line per packet.
    let logger: Logger?
    /// The batch in hand.
    var packets = UnsafeBufferPointer<QueuedPacket>(start: nil, count: 0)
    var now: Int64 = 0
    /// The trace in progress during the batch (set under the engine lock; nil between batches).
    var trace: PacketTrace?
    /// The early send that failed; the batch stops there and the loop ends with it.
    var sendError: NFQError?
    /// Whether the packet in hand is traced (set in `willProcess`).
    private var traced = false

    init(socket: VerdictSocket, logger: Logger?) {
        self.socket = socket
        self.logger = logger
    }

    /// Sends what the batch left (the rest of its verdicts, in one `sendmsg`).
    mutating func send() throws(NFQError) { try socket.send(&verdicts) }

    @inline(__always) mutating func willProcess(_ index: Int, _ packet: PacketBytes) {
        guard let trace else { return }
        traced = !trace.isFinished && trace.selects(packet)
        if traced { trace.record(packet, at: now) }
    }

    @inline(__always) mutating func take(_ verdict: Verdict?, of index: Int, _ packet: PacketBytes) -> Bool {
        guard let verdict else { return true }  // every queued packet enters the engine
        if traced, let trace {
            if verdict.accepts { trace.record(packet, at: now) }
            trace.countPacket()
            traced = false
        }
        let queued = packets[index]
        switch verdict {
        case .accept: verdicts.accept(queued.id)
        case .rewritten: verdicts.acceptModified(queued.id, payload: packet, queue: socket.queue)
        case .drop: verdicts.drop(queued.id, queue: socket.queue)
        }
        if let logger {
            logger.debug("packet", metadata: ["id": "\(queued.id)", "length": "\(packet.count)",
                                              "gso": "\(queued.isGSO)", "verdict": "\(verdict)"])
        }
        guard verdicts.isNearlyFull else { return true }
        do throws(NFQError) {
            try socket.send(&verdicts)
            return true
        } catch {
            sendError = error
            return false
        }
    }
}
