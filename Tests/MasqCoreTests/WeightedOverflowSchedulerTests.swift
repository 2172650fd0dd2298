import Testing
@testable import MasqCore

/// IPVS ip_vs_ovf.c: the highest weight takes connections until its active ones exceed its weight.
@Suite struct WeightedOverflowSchedulerTests {
    @Test(arguments: [
        // (weights, active, expected)
        ([3, 2, 1], [0, 0, 0], 0),
        ([3, 2, 1], [3, 0, 0], 0),   // at its weight still takes one (active > weight skips)
        ([3, 2, 1], [4, 0, 0], 1),
        ([3, 2, 1], [4, 3, 0], 2),
        ([3, 2, 1], [4, 3, 2], 99),  // every one over: none
        ([2, 2], [0, 0], 0),         // equal weights: the first
        ([2, 2], [3, 0], 1),
        ([0, 1], [0, 0], 1),         // weight 0 never
    ] as [([Int32], [Int32], UInt32)])
    func overflowsByActiveConnections(weights: [Int32], active: [Int32], expected: UInt32) {
        #expect(picks("ovf", dests(weights, active: active), count: 1) == [expected])
    }

    @Test func inactiveConnectionsNeverOverflow() {
        // UDP flows and half-open ones are inactive: the kernel's note that ovf may not suit UDP.
        #expect(picks("ovf", dests([1, 1], inactive: [1000, 0]), count: 1) == [0])
    }

    /// Connections as the engine binds them (active ones) fill the servers in weight order.
    @Test func fillsInWeightOrder() {
        let d = dests([2, 3, 1])
        let s = WeightedOverflowScheduler(flags: [])
        var order: [UInt32] = []
        for _ in 0..<9 {
            guard let x = s.select(from: d, for: input(0)) else { order.append(99); continue }
            x.bindConnection(active: true)
            order.append(x.id)
        }
        // Server 1 (weight 3) takes 4 (0…3 active), server 0 takes 3, server 2 takes 2; then none.
        #expect(order == [1, 1, 1, 1, 0, 0, 0, 2, 2])
    }

    @Test func weightChangesAndOverload() {
        let d = dests([3, 2], active: [1, 0])
        let s = WeightedOverflowScheduler(flags: [])
        #expect(s.select(from: d, for: input(0))?.id == 0)
        d[1].setWeight(5)
        #expect(s.select(from: d, for: input(0))?.id == 1)
        d[1].overloaded = true
        #expect(s.select(from: d, for: input(0))?.id == 0)
        d[0].setWeight(0)
        #expect(s.select(from: d, for: input(0)) == nil)
    }
}
