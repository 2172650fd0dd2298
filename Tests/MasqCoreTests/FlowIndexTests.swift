import Testing
@testable import MasqCore

@Suite struct FlowIndexTests {
    /// Random inserts, replaces and removals against Swift's Dictionary as the reference, through growth
    /// and many backward shifts (small key space, so probe runs are long and collide often).
    @Test func behavesLikeADictionary() {
        var index = FlowIndex(minimumCapacity: 16)
        defer { index.deallocate() }
        var reference: [FlowKey: UInt32] = [:]
        var rng = SystemRandomNumberGenerator()
        func randomKey() -> FlowKey {
            FlowKey(source: IPv4Address(rawValue: UInt32.random(in: 0..<64, using: &rng)),
                    destination: IPv4Address(rawValue: 7), sourcePort: UInt16.random(in: 0..<64, using: &rng),
                    destinationPort: 80, proto: Bool.random(using: &rng) ? .tcp : .udp)
        }
        for step in 0..<200_000 {
            let key = randomKey()
            if Int.random(in: 0..<3, using: &rng) == 0 {
                index.remove(key)
                reference[key] = nil
            } else {
                let value = UInt32(step)
                index.set(key, value)
                reference[key] = value
            }
            if step % 1000 == 0 {
                #expect(index.count == reference.count)
                for _ in 0..<100 {
                    let probe = randomKey()
                    #expect(index[probe] == reference[probe])
                }
            }
        }
        for (key, value) in reference { #expect(index[key] == value) }
    }
}
