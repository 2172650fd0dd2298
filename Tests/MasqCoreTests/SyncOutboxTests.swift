import Foundation
import Synchronization
import Testing
@testable import MasqCore

/// The packet path's hand-over to the sync sender: order, capacity, drops, wrap-around, and one
/// producer thread against one consumer thread losing, duplicating or reordering nothing.
@Suite struct SyncOutboxTests {
    func update(_ n: UInt32) -> SyncUpdate {
        SyncUpdate(proto: .tcp, state: .established, isActive: true, client: IPv4Address(rawValue: n),
                   clientPort: UInt16(truncatingIfNeeded: n), virtualAddress: addr("198.18.0.1"), virtualPort: 80,
                   server: addr("198.19.0.201"), serverPort: 80, timeout: 900)
    }

    func pop(_ outbox: SyncOutbox, max: Int) -> [SyncUpdate] {
        var buffer = [SyncUpdate](repeating: update(0), count: max)
        let n = buffer.withUnsafeMutableBufferPointer { outbox.pop(into: $0) }
        return Array(buffer.prefix(n))
    }

    @Test(arguments: [(1, 2), (2, 2), (3, 4), (1000, 1024), (1024, 1024)])
    func capacityIsAPowerOfTwo(asked: Int, got: Int) {
        #expect(SyncOutbox(capacity: asked).capacity == got)
    }

    @Test func firstInFirstOutUpToCapacityThenDrops() {
        let outbox = SyncOutbox(capacity: 4)
        for n: UInt32 in 1...4 { #expect(outbox.push(update(n))) }
        #expect(!outbox.push(update(5)))
        #expect(outbox.count == 4)
        #expect(outbox.pushed == 4)
        #expect(outbox.dropped == 1)
        #expect(pop(outbox, max: 3).map(\.client.v4!.rawValue) == [1, 2, 3])
        #expect(outbox.push(update(6)))
        #expect(pop(outbox, max: 10).map(\.client.v4!.rawValue) == [4, 6])
        #expect(pop(outbox, max: 10).isEmpty)
        #expect(outbox.count == 0)
    }

    @Test func wrapsAroundManyTimes() {
        let outbox = SyncOutbox(capacity: 8)
        var expected: UInt32 = 0, next: UInt32 = 0
        for round in 0..<1000 {
            for _ in 0..<(round % 4 + 1) {  // at most 4 onto at most 4 waiting: never full
                #expect(outbox.push(update(next)))
                next += 1
            }
            for u in pop(outbox, max: round % 5 + 3) {
                #expect(u.client.v4!.rawValue == expected)
                expected += 1
            }
            while outbox.count > 4 {  // keep room for the next round
                for u in pop(outbox, max: 8) {
                    #expect(u.client.v4!.rawValue == expected)
                    expected += 1
                }
            }
        }
        for u in pop(outbox, max: 8) {
            #expect(u.client.v4!.rawValue == expected)
            expected += 1
        }
        #expect(expected == next)
        #expect(outbox.dropped == 0)
    }

    @Test func anEmptyBufferTakesNothing() {
        let outbox = SyncOutbox(capacity: 4)
        #expect(outbox.push(update(1)))
        #expect(pop(outbox, max: 0).isEmpty)
        #expect(outbox.count == 1)
    }

    /// A producer and a consumer on their own threads: every update arrives once and in order, or was
    /// counted as dropped; pushed + dropped is what the producer tried.
    @Test func oneProducerOneConsumerThread() async {
        let outbox = SyncOutbox(capacity: 64)
        let total: UInt32 = 50_000
        let consumer = Thread {
            var buffer = [SyncUpdate](repeating: self.update(0), count: 16)
            var last: Int64 = -1
            var received = 0
            var ordered = true
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                let n = buffer.withUnsafeMutableBufferPointer { outbox.pop(into: $0) }
                for u in buffer.prefix(n) {
                    if Int64(u.client.v4!.rawValue) <= last || UInt32(u.clientPort) != u.client.v4!.rawValue & 0xffff {
                        ordered = false
                    }
                    last = Int64(u.client.v4!.rawValue)
                    received += 1
                }
                if last == Int64(total - 1) || (n == 0 && Self.producerDone.withLock { $0 } && outbox.count == 0) {
                    break
                }
                // An empty ring: give the core back (the suite's timed tests share two cores).
                if n == 0 { sched_yield() }
            }
            Self.consumerResult.withLock { $0 = (received, ordered) }
        }
        Self.producerDone.withLock { $0 = false }
        consumer.start()
        for n in 0..<total { _ = outbox.push(update(n)) }
        Self.producerDone.withLock { $0 = true }
        while !consumer.isFinished { try? await Task.sleep(nanoseconds: 1_000_000) }
        let (received, ordered) = Self.consumerResult.withLock { $0 }
        #expect(ordered)
        #expect(UInt64(received) == outbox.pushed)
        #expect(outbox.pushed + outbox.dropped == UInt64(total))
    }

    static let producerDone = Mutex(false)
    static let consumerResult = Mutex((0, false))
}
