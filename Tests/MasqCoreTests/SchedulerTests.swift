import Testing
@testable import MasqCore

/// Destinations with weights and connection counts, in the order added (records in a small table's
/// memory, which each destination keeps mapped).
func dests(_ weights: [Int32], active: [Int32] = [], inactive: [Int32] = []) -> [Destination] {
    let memory = TableMemory.anonymous(capacity: 16)
    return weights.enumerated().map { i, w in
        let d = Destination(id: UInt32(i), in: memory, address: .v4(IPv4Address(rawValue: 0xC613_00C9 + UInt32(i))), port: 80,
                            weight: w, serviceID: 0, proto: .tcp)
        d.activeConnections = i < active.count ? active[i] : 0
        d.inactiveConnections = i < inactive.count ? inactive[i] : 0
        return d
    }
}

func input(_ n: UInt32, port: UInt16 = 40000) -> SchedulingInput {
    SchedulingInput(client: IPv4Address(rawValue: 0xC612_0000 &+ n &* 7919), clientPort: port,
                    virtualAddress: addr("198.18.0.1"), virtualPort: 80)
}

func picks(_ name: String, _ d: [Destination], count: Int, flags: SchedulerFlags = []) -> [UInt32] {
    let s = Schedulers.make(name, flags: flags)!
    s.destinationsChanged(d)
    return (0..<count).map { s.select(from: d, for: input(UInt32($0)))?.id ?? 99 }
}

@Suite struct SchedulerTests {
    @Test func everySchedulerIsRegisteredByItsIpvsadmName() {
        #expect(Schedulers.all.map { $0.name }.sorted() == ["dh", "fo", "lblc", "lblcr", "lc", "mh", "nq", "ovf", "rr", "sed", "sh", "twos", "wlc", "wrr"])
    }

    @Test func rrStartsWithTheFirstAndSkipsWeightZero() {
        #expect(picks("rr", dests([1, 1, 1]), count: 6) == [0, 1, 2, 0, 1, 2])
        #expect(picks("rr", dests([1, 0, 1]), count: 4) == [0, 2, 0, 2])
        #expect(picks("rr", dests([0, 0]), count: 1) == [99])
    }

    @Test func wrrFollowsIpvsOrder() {
        #expect(picks("wrr", dests([3, 1]), count: 8) == [0, 0, 0, 1, 0, 0, 0, 1])
        #expect(picks("wrr", dests([4, 3, 2]), count: 9) == [0, 0, 1, 0, 1, 2, 0, 1, 2])
        #expect(picks("wrr", dests([2, 0, 2]), count: 4) == [0, 2, 0, 2])
    }

    @Test func wrrThreeToOneOverForty() {
        let p = picks("wrr", dests([3, 1]), count: 40)
        #expect(p.filter { $0 == 0 }.count == 30)
    }

    @Test func lcCountsActiveAs256Inactive() {
        // overheads: 1*256+0 = 256, 0*256+255 = 255 → the second.
        #expect(picks("lc", dests([1, 1], active: [1, 0], inactive: [0, 255]), count: 1) == [1])
        #expect(picks("lc", dests([1, 1], active: [1, 0], inactive: [0, 256]), count: 1) == [0])  // tie → first
        #expect(picks("lc", dests([1, 0], active: [5, 0]), count: 1) == [0])  // weight 0 never
    }

    @Test func wlcDividesByWeight() {
        // 256/1 vs 512/3 → second; equal ratios → first.
        #expect(picks("wlc", dests([1, 3], active: [1, 2]), count: 1) == [1])
        #expect(picks("wlc", dests([1, 2], active: [1, 2]), count: 1) == [0])
        #expect(picks("wlc", dests([0, 1], active: [0, 9]), count: 1) == [1])
    }

    @Test func sedIgnoresInactiveAndAddsOne() {
        // (0+1)/1 = 1 vs (1+1)/3 = 0.67 → second.
        #expect(picks("sed", dests([1, 3], active: [0, 1], inactive: [0, 50]), count: 1) == [1])
    }

    @Test func nqTakesAnIdleServerFirst() {
        #expect(picks("nq", dests([1, 10], active: [0, 1]), count: 1) == [0])
        #expect(picks("nq", dests([1, 10], active: [1, 1]), count: 1) == [1])
    }

    @Test func shIsStableAndSpreadsByWeight() {
        let d = dests([1, 3])
        let first = picks("sh", d, count: 400)
        #expect(first == picks("sh", d, count: 400))
        let share = Double(first.filter { $0 == 1 }.count) / 400
        #expect(share > 0.6 && share < 0.9)
    }

    @Test func shQuiescedServerRefusesUnlessFallback() {
        let d = dests([1, 1])
        let s = SourceHashingScheduler(flags: [])
        s.destinationsChanged(d)
        let who = (0..<50).map { s.select(from: d, for: input(UInt32($0)))!.id }
        d[0].setWeight(0)
        for (i, w) in who.enumerated() {
            let now = s.select(from: d, for: input(UInt32(i)))
            #expect(w == 0 ? now == nil : now?.id == 1)
        }
        let f = SourceHashingScheduler(flags: .fallback)
        f.destinationsChanged(d)
        for i in 0..<50 { #expect(f.select(from: d, for: input(UInt32(i)))?.id == 1) }
    }

    @Test func dhSendsOneDestinationAddressToOneServer() {
        #expect(Set(picks("dh", dests([1, 1, 1]), count: 20)).count == 1)
    }

    @Test func mhFillsItsPrimeTableByWeight() {
        #expect(MaglevHashingScheduler.tableSize == 4093)
        let d = dests([1, 2, 1])
        let p = picks("mh", d, count: 4000)
        let counts = (0..<3).map { i in p.filter { $0 == UInt32(i) }.count }
        #expect(counts[1] > counts[0] && counts[1] > counts[2])
        #expect(counts.allSatisfy { $0 > 600 })
    }

    /// Maglev's promise (NSDI 2016 §3.4): removing a server moves its clients and very few others.
    @Test func mhRemovingAServerMovesFewOtherClients() {
        let d = dests([1, 1, 1, 1])
        let before = picks("mh", d, count: 4000)
        let after = picks("mh", Array(d.dropLast()), count: 4000)
        let others = zip(before, after).filter { $0.0 != 3 }
        let moved = others.filter { $0.0 != $0.1 }.count
        #expect(Double(moved) / Double(others.count) < 0.05)
    }

    @Test func mhPortFlagSpreadsOneClientsConnections() {
        let d = dests([1, 1, 1])
        let s = MaglevHashingScheduler(flags: .port)
        s.destinationsChanged(d)
        let servers = Set((0..<64).map { s.select(from: d, for: input(1, port: UInt16(40000 + $0)))!.id })
        #expect(servers.count == 3)
    }

    /// Review finding: IPVS shifts large weights down; 5000:4999 must split about evenly.
    @Test func mhLargeCoprimeWeightsBothGetClients() {
        let p = picks("mh", dests([5000, 4999]), count: 2000)
        #expect(p.filter { $0 == 1 }.count > 600)
    }
}
