import Testing
@testable import MasqCore

/// An index over zeroed heap memory (the table puts its indexes in its `TableMemory`).
final class IndexStorage {
    let entries: UnsafeMutableRawPointer
    let count = UnsafeMutablePointer<Int>.allocate(capacity: 1)
    let index: FlowIndex

    init(maximumCount: Int) {
        let n = FlowIndex.entryCount(forMaximumCount: maximumCount)
        entries = UnsafeMutableRawPointer.allocate(byteCount: n * FlowIndex.entryStride, alignment: 8)
        entries.initializeMemory(as: UInt8.self, repeating: 0, count: n * FlowIndex.entryStride)
        count.initialize(to: 0)
        index = FlowIndex(memory: entries, entryCount: n, seed: 0x1234_5678_9abc_def1, count: count)
    }

    deinit {
        entries.deallocate()
        count.deallocate()
    }
}

@Suite struct FlowIndexTests {
    /// Random inserts, replaces and removals against Swift's Dictionary as the reference, through many
    /// backward shifts (small key space, so probe runs are long and collide often). The index holds
    /// hashes and values only; `keyOf` plays the connection slab that confirms a key.
    @Test func behavesLikeADictionary() {
        let storage = IndexStorage(maximumCount: 64 * 64 * 2)
        let index = storage.index
        var reference: [FlowKey: UInt32] = [:]
        var keyOf: [UInt32: FlowKey] = [:]
        var rng = SystemRandomNumberGenerator()
        func randomKey() -> FlowKey {
            FlowKey(source: IPv4Address(rawValue: UInt32.random(in: 0..<64, using: &rng)),
                    destination: IPv4Address(rawValue: 7), sourcePort: UInt16.random(in: 0..<64, using: &rng),
                    destinationPort: 80, proto: Bool.random(using: &rng) ? .tcp : .udp)
        }
        func find(_ key: FlowKey) -> UInt32? { index.find(index.hash(key)) { keyOf[$0] == key } }
        for step in 0..<200_000 {
            let key = randomKey()
            if let old = reference[key] {
                index.remove(index.hash(key), old)
                keyOf[old] = nil
                reference[key] = nil
            }
            if Int.random(in: 0..<3, using: &rng) != 0 {
                let value = UInt32(step)
                #expect(index.insert(index.hash(key), value))
                keyOf[value] = key
                reference[key] = value
            }
            if step % 1000 == 0 {
                #expect(index.count == reference.count)
                for _ in 0..<100 {
                    let probe = randomKey()
                    #expect(find(probe) == reference[probe])
                }
            }
        }
        for (key, value) in reference { #expect(find(key) == value) }
    }

    /// Entries that share a hash are told apart by the key check alone.
    @Test func equalHashesAreConfirmedByKey() {
        let storage = IndexStorage(maximumCount: 16)
        let index = storage.index
        for value in UInt32(0)..<8 { #expect(index.insert(42, value)) }
        for value in UInt32(0)..<8 { #expect(index.find(42) { $0 == value } == value) }
        index.remove(42, 3)
        #expect(index.find(42) { $0 == 3 } == nil)
        #expect(index.find(42) { $0 == 7 } == 7)
        #expect(index.count == 7)
    }

    @Test func connectionStaysSmall() {
        #expect(MemoryLayout<Connection>.stride <= 80)
    }
}
