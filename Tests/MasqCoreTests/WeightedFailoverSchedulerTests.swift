import Testing
@testable import MasqCore

/// IPVS ip_vs_fo.c: the available server of the highest weight takes every new connection.
@Suite struct WeightedFailoverSchedulerTests {
    @Test(arguments: [
        ([1, 3, 2], 1),
        ([3, 3, 2], 0),   // equal weights: the first in list order
        ([0, 0, 2], 2),
        ([0, 0], 99),     // none with weight
    ] as [([Int32], UInt32)])
    func theHighestWeightTakesEveryConnection(weights: [Int32], expected: UInt32) {
        #expect(picks("fo", dests(weights), count: 5) == Array(repeating: expected, count: 5))
    }

    @Test func connectionsDoNotMoveIt() {
        // Loads are not looked at: the primary takes them all.
        #expect(picks("fo", dests([5, 1], active: [1000, 0]), count: 3) == [0, 0, 0])
    }

    @Test func weightChangesFailOverAndBack() {
        let d = dests([10, 5, 1])
        let s = WeightedFailoverScheduler(flags: [])
        let sequence: [(set: (Int, Int32)?, expected: UInt32?)] = [
            (nil, 0), ((0, 0), 1), ((1, 0), 2), ((2, 0), nil), ((2, 1), 2), ((0, 10), 0), ((1, 20), 1),
        ]
        for step in sequence {
            if let (i, w) = step.set { d[i].setWeight(w) }
            s.destinationsChanged(d)
            #expect(s.select(from: d, for: input(0))?.id == step.expected)
        }
    }

    @Test func anOverloadedPrimaryFailsOver() {
        let d = dests([10, 5])
        d[0].overloaded = true
        #expect(picks("fo", d, count: 2) == [1, 1])
    }
}
