import CNetfilterQueue
import MasqCore
#if canImport(Glibc)
import Glibc
#endif

/// Verdicts for one receive, gathered into one `sendmsg`: netlink message headers in an arena, the
/// rewritten packets' bytes referenced in place (no copy) through the iovec list. A run of packets
/// accepted unchanged becomes a single NFQNL_MSG_VERDICT_BATCH (it covers every id up to its own).
public struct VerdictBatch: ~Copyable {
    public let capacity: Int
    private let arena: UnsafeMutableRawPointer
    private static let slot = 64
    let iovecs: UnsafeMutablePointer<iovec>
    public private(set) var iovecCount = 0
    private var messages = 0
    private var runEnd: UInt32?
    /// Zero bytes that pad a payload attribute to 4 (one per batch).
    private let padding: UnsafeMutableRawPointer

    /// Verdict messages sent, individual and batch.
    public private(set) var verdictMessages: UInt64 = 0
    public private(set) var batchVerdicts: UInt64 = 0
    public internal(set) var sendCalls: UInt64 = 0

    public init(capacity: Int = 512) {
        self.capacity = capacity
        arena = .allocate(byteCount: capacity * Self.slot, alignment: 8)
        iovecs = .allocate(capacity: capacity * 3)
        padding = .allocate(byteCount: 4, alignment: 4)
        padding.initializeMemory(as: UInt8.self, repeating: 0, count: 4)
    }

    deinit {
        arena.deallocate()
        iovecs.deallocate()
        padding.deallocate()
    }

    /// Leave room for a run's batch message plus one more verdict.
    public var isNearlyFull: Bool { messages + 2 >= capacity }

    /// Accepted, bytes unchanged: extends the current run (no message yet).
    public mutating func accept(_ id: UInt32) {
        runEnd = id
    }

    public mutating func drop(_ id: UInt32, queue: UInt16) {
        closeRun(queue: queue)
        _ = header(type: NFQNL_MSG_VERDICT, id: id, verdict: NF_DROP, queue: queue)
    }

    /// Accepted with these bytes instead of the queued ones.
    public mutating func acceptModified(_ id: UInt32, payload: PacketBytes, queue: UInt16) {
        closeRun(queue: queue)
        let nlh = header(type: NFQNL_MSG_VERDICT, id: id, verdict: NF_ACCEPT, queue: queue, extra: 4)
        // The NFQA_PAYLOAD attribute header sits at the end of this message's slot; its data is the
        // packet itself, sent from where it lies.
        let attributeOffset = Int(nlh.pointee.nlmsg_len)
        let attribute = (UnsafeMutableRawPointer(nlh) + attributeOffset).assumingMemoryBound(to: nlattr.self)
        attribute.pointee.nla_len = UInt16(4 + payload.count)
        attribute.pointee.nla_type = UInt16(NFQA_PAYLOAD.rawValue)
        let padded = (payload.count + 3) & ~3
        nlh.pointee.nlmsg_len += UInt32(4 + padded)
        iovecs[iovecCount - 1].iov_len += 4
        iovecs[iovecCount] = iovec(iov_base: payload.base, iov_len: payload.count)
        iovecCount += 1
        if padded > payload.count {
            iovecs[iovecCount] = iovec(iov_base: padding, iov_len: padded - payload.count)
            iovecCount += 1
        }
    }

    /// Ends the current run of unchanged accepts with one batch verdict.
    mutating func closeRun(queue: UInt16) {
        guard let end = runEnd else { return }
        runEnd = nil
        _ = header(type: NFQNL_MSG_VERDICT_BATCH, id: end, verdict: NF_ACCEPT, queue: queue)
        batchVerdicts &+= 1
    }

    private mutating func header(type: nfqnl_msg_types, id: UInt32, verdict: Int32, queue: UInt16,
                                 extra: Int = 0) -> UnsafeMutablePointer<nlmsghdr> {
        precondition(messages < capacity, "verdict batch over capacity: send before it is full")
        let buffer = arena + messages * Self.slot
        let nlh = nfq_nlmsg_put(buffer.assumingMemoryBound(to: CChar.self), Int32(type.rawValue), UInt32(queue))!
        nfq_nlmsg_verdict_put(nlh, Int32(bitPattern: id), verdict)
        iovecs[iovecCount] = iovec(iov_base: buffer, iov_len: Int(nlh.pointee.nlmsg_len))
        iovecCount += 1
        messages += 1
        verdictMessages &+= 1
        return nlh
    }

    mutating func reset() {
        iovecCount = 0
        messages = 0
    }
}
