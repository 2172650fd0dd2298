import Testing
@testable import MasqCore

/// IPVS ip_vs_twos.c: two weighted random draws, the less loaded per weight taking the connection.
@Suite struct PowerOfTwoChoicesSchedulerTests {
    /// Counts of each server over `n` picks, each pick bound as an active connection when `bind`.
    func shares(_ d: [Destination], _ n: Int, bind: Bool, seed: UInt64 = 1) -> [Int] {
        let s = PowerOfTwoChoicesScheduler(flags: [], seed: seed)
        var counts = Array(repeating: 0, count: d.count)
        for _ in 0..<n {
            guard let x = s.select(from: d, for: input(0)) else { continue }
            counts[Int(x.id)] += 1
            if bind { x.bindConnection(active: true) }
        }
        return counts
    }

    @Test func theSameSeedMakesTheSamePicks() {
        let d = dests([1, 2, 3])
        let a = PowerOfTwoChoicesScheduler(flags: [], seed: 42), b = PowerOfTwoChoicesScheduler(flags: [], seed: 42)
        let pa = (0..<200).map { _ in a.select(from: d, for: input(0))!.id }
        let pb = (0..<200).map { _ in b.select(from: d, for: input(0))!.id }
        #expect(pa == pb)
        #expect(Set(pa) == [0, 1, 2])
    }

    /// Idle servers (no overhead anywhere): the first draw always wins, so picks follow the draw's
    /// weights, the first server having one chance more: (w0 + 1, w1, w2) / (total + 1).
    @Test func idleServersArePickedInProportionToWeight() {
        let counts = shares(dests([1, 2, 4]), 80_000, bind: false)
        let expected = [2.0, 2.0, 4.0].map { $0 / 8 * 80_000 }
        for (c, e) in zip(counts, expected) { #expect(abs(Double(c) - e) < e * 0.05) }
    }

    /// With connections bound as picked, loads per weight stay close: the power of two choices.
    @Test func loadPerWeightStaysBalanced() {
        let d = dests([1, 2, 4])
        let counts = shares(d, 7_000, bind: true)
        for (i, w) in [1.0, 2.0, 4.0].enumerated() {
            let share = Double(counts[i]) / 7_000
            #expect(abs(share - w / 7) < 0.02, "server \(i): \(share)")
        }
        // The spread of active/weight is a few connections, far tighter than random picks would be.
        let ratios = d.map { Double($0.activeConnections) / Double($0.weight) }
        #expect(ratios.max()! - ratios.min()! < 10)
    }

    @Test func theLessLoadedOfTheTwoWins() {
        // Two equal weights: whenever the draws differ the idle one wins; the loaded one only when
        // both draws fall on it (the first server's chance 2/3 squared: about 4/9).
        let counts = shares(dests([1, 1], active: [5, 0]), 9_000, bind: false)
        #expect(abs(Double(counts[0]) / 9_000 - 4.0 / 9) < 0.03)
    }

    @Test func unavailableServersAreNeverDrawn() {
        let d = dests([3, 0, 3])
        d[2].overloaded = true
        #expect(shares(d, 500, bind: false) == [500, 0, 0])
        d[0].setWeight(0)
        #expect(shares(d, 10, bind: false) == [0, 0, 0])
    }
}
