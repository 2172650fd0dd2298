import Synchronization

/// The packet path's hand-over to the sync sender: a single-producer single-consumer ring of
/// `SyncUpdate`s, fixed capacity (a power of two), allocated once at init.
///
/// The producer is the engine, always under the daemon's engine lock, so pushes are serialised and
/// ordered by that lock even when several threads take it in turn; the consumer is the sender thread
/// only. `tail` is written by the producer alone and `head` by the consumer alone: a push writes its
/// slot, then publishes it with a releasing store of `tail`; a pop reads `tail` acquiring (so the
/// slots before it are visible), copies them out, then frees them with a releasing store of `head`,
/// which the producer reads acquiring before it reuses a slot. Neither side blocks, waits or
/// allocates: a full ring drops the update and counts it (the kernel silently frees buffers past
/// `sync_qlen_max` the same way). That discipline is why the class is `@unchecked Sendable`.
public final class SyncOutbox: @unchecked Sendable {
    public let capacity: Int
    private let mask: UInt64
    private let slots: UnsafeMutablePointer<SyncUpdate>
    /// Updates ever pushed (next slot to write), producer-written.
    private let tail = Atomic<UInt64>(0)
    /// Updates ever popped (next slot to read), consumer-written.
    private let head = Atomic<UInt64>(0)
    private let droppedCount = Atomic<UInt64>(0)

    /// `capacity` is rounded up to a power of two (at least 2).
    public init(capacity: Int) {
        precondition(capacity > 0 && capacity <= 1 << 30, "sync outbox capacity out of range")
        var size = 2
        while size < capacity { size <<= 1 }
        self.capacity = size
        mask = UInt64(size - 1)
        slots = .allocate(capacity: size)
        let blank = SyncUpdate(proto: .tcp, state: .none, isActive: false, client: IPv4Address(rawValue: 0),
                               clientPort: 0, virtualAddress: IPv4Address(rawValue: 0), virtualPort: 0,
                               server: IPv4Address(rawValue: 0), serverPort: 0, timeout: 0)
        slots.initialize(repeating: blank, count: size)
    }

    deinit { slots.deallocate() }

    /// Producer: queues `update`; false (and counted in `dropped`) when the ring is full.
    @inline(__always)
    public func push(_ update: SyncUpdate) -> Bool {
        let t = tail.load(ordering: .relaxed)
        guard t &- head.load(ordering: .acquiring) < UInt64(capacity) else {
            droppedCount.wrappingAdd(1, ordering: .relaxed)
            return false
        }
        slots[Int(t & mask)] = update
        tail.store(t &+ 1, ordering: .releasing)
        return true
    }

    /// Consumer: moves up to `buffer.count` queued updates, oldest first, into `buffer`; returns how many.
    public func pop(into buffer: UnsafeMutableBufferPointer<SyncUpdate>) -> Int {
        let h = head.load(ordering: .relaxed)
        let available = Int(tail.load(ordering: .acquiring) &- h)
        let n = min(available, buffer.count)
        guard n > 0, let base = buffer.baseAddress else { return 0 }
        for i in 0..<n { base[i] = slots[Int((h &+ UInt64(i)) & mask)] }
        head.store(h &+ UInt64(n), ordering: .releasing)
        return n
    }

    /// Updates waiting (a snapshot; exact only on the consumer's thread).
    public var count: Int {
        let h = head.load(ordering: .acquiring)  // first: head never passes the tail read after it
        return Int(tail.load(ordering: .acquiring) &- h)
    }

    /// Pushes refused because the ring was full.
    public var dropped: UInt64 { droppedCount.load(ordering: .relaxed) }

    /// Pushes accepted.
    public var pushed: UInt64 { tail.load(ordering: .relaxed) }
}
