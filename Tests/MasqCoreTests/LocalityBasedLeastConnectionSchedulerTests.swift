import Testing
@testable import MasqCore

/// A pick's input for a packet to `destination` at `seconds` on the engine's clock.
func localityInput(_ destination: IPAddress, at seconds: Int64 = 0, client: UInt32 = 1) -> SchedulingInput {
    SchedulingInput(clientHashWord: 0xC612_0000 &+ client, clientPort: 40000,
                    virtualAddressHashWord: destination.hashWord, virtualPort: 80,
                    destinationAddress: destination, now: seconds * 1_000_000_000)
}

/// 198.18.1.0 + n, destinations of a firewall-mark service's packets.
func target(_ n: UInt32) -> IPAddress { .v4(IPv4Address(rawValue: 0xC612_0100 &+ n)) }

/// IPVS ip_vs_lblc.c: a destination address keeps its server until the server is quiesced, removed or
/// overloaded in lblc's sense; stale entries go as the kernel's timer collects them.
@Suite struct LocalityBasedLeastConnectionSchedulerTests {
    @Test func anAddressKeepsTheServerItWasGiven() {
        let d = dests([1, 1, 1])
        let s = LocalityBasedLeastConnectionScheduler(flags: [])
        s.destinationsChanged(d)
        #expect(s.select(from: d, for: localityInput(target(1)))?.id == 0)  // wlc: all idle → the first
        d[0].activeConnections = 1  // at its weight, not over it
        #expect(s.select(from: d, for: localityInput(target(1)))?.id == 0)
        // A new address takes the least loaded server, and keeps it.
        #expect(s.select(from: d, for: localityInput(target(2)))?.id == 1)
        d[1].activeConnections = 1
        #expect(s.select(from: d, for: localityInput(target(2)))?.id == 1)
        #expect(s.select(from: d, for: localityInput(target(3)))?.id == 2)
        #expect(s.table.count == 3)
    }

    /// `is_overloaded`: over its weight in active connections while another has under half its own.
    @Test(arguments: [
        // (weights, active of each, server the address moves to; 0 = it stays)
        ([1, 1], [2, 0], 1),       // 2 > 1 and the other has 0 × 2 < 1: moves
        ([1, 1], [1, 0], 0),       // not over its weight
        ([1, 1], [5, 1], 0),       // over, but no one under half: stays (1 × 2 < 1 is false)
        ([4, 4, 4], [5, 2, 3], 0), // 2 × 2 < 4 is false, 3 × 2 < 4 false: stays
        ([4, 4, 4], [5, 3, 1], 2), // 1 × 2 < 4: moves, to the least loaded (wlc)
        ([2, 0, 3], [3, 0, 2], 0), // the quiesced one is not under half its weight 0, nor 2 × 2 < 3
        ([2, 0, 3], [3, 0, 1], 2), // 1 × 2 < 3: moves to 256/3 < 768/2
    ] as [([Int32], [Int32], UInt32)])
    func overloadInTheLocalitySense(weights: [Int32], active: [Int32], movesTo: UInt32) {
        let d = dests(weights)
        let s = LocalityBasedLeastConnectionScheduler(flags: [])
        s.destinationsChanged(d)
        #expect(s.select(from: d, for: localityInput(target(1)))?.id == 0)
        for (i, a) in active.enumerated() { d[i].activeConnections = a }
        #expect(s.select(from: d, for: localityInput(target(1)))?.id == movesTo)
        // The entry now names the new server.
        for x in d { x.activeConnections = 0 }
        #expect(s.select(from: d, for: localityInput(target(1)))?.id == movesTo)
    }

    @Test func aQuiescedOrRemovedServerLosesItsAddresses() {
        let d = dests([1, 1])
        let s = LocalityBasedLeastConnectionScheduler(flags: [])
        s.destinationsChanged(d)
        #expect(s.select(from: d, for: localityInput(target(1)))?.id == 0)
        d[0].setWeight(0)
        #expect(s.select(from: d, for: localityInput(target(1)))?.id == 1)
        d[0].setWeight(1)
        #expect(s.select(from: d, for: localityInput(target(1)))?.id == 1)  // the entry moved
        // Removing server 1 drops the entries naming it.
        s.destinationsChanged([d[0]])
        #expect(s.table.count == 0)
        #expect(s.select(from: [d[0]], for: localityInput(target(1)))?.id == 0)
        #expect(s.select(from: [], for: localityInput(target(2))) == nil)
    }

    /// As ip_vs_lblc_schedule: the remembered server is checked for weight and lblc's overload, not
    /// for IP_VS_DEST_F_OVERLOAD; a new pick skips a threshold-overloaded server.
    @Test func aThresholdOverloadedServerKeepsItsAddressesButTakesNoNewOnes() {
        let d = dests([1, 1])
        let s = LocalityBasedLeastConnectionScheduler(flags: [])
        s.destinationsChanged(d)
        #expect(s.select(from: d, for: localityInput(target(1)))?.id == 0)
        d[0].overloaded = true
        #expect(s.select(from: d, for: localityInput(target(1)))?.id == 0)
        d[1].activeConnections = 5  // wlc would prefer server 0 for a new address, but it is overloaded
        #expect(s.select(from: d, for: localityInput(target(2)))?.id == 1)
    }

    @Test func ipv6DestinationsAreKeyedInFull() {
        let d = dests([1, 1])
        let s = LocalityBasedLeastConnectionScheduler(flags: [])
        s.destinationsChanged(d)
        // Two addresses with the same 32-bit fold (same bucket), and an IPv4 one equal to the fold.
        let a = IPAddress.v6(IPv6Address(high: 0x2001_0002_0000_0000, low: 1))
        let b = IPAddress.v6(IPv6Address(high: 0x2001_0002_0000_0001, low: 0))
        #expect(a.hashWord == b.hashWord)
        #expect(s.select(from: d, for: localityInput(a))?.id == 0)
        d[0].activeConnections = 1
        #expect(s.select(from: d, for: localityInput(b))?.id == 1)
        #expect(s.select(from: d, for: localityInput(.v4(IPv4Address(rawValue: a.hashWord))))?.id == 1)
        #expect(s.table.count == 3)
        #expect(s.select(from: d, for: localityInput(a))?.id == 0)
    }

    /// `ip_vs_lblc_full_check`: every 30th pass (30 min) collects entries idle 24 h.
    @Test func entriesIdleADayGoInTheFullCheck() {
        let d = dests([1, 1])
        let s = LocalityBasedLeastConnectionScheduler(flags: [])
        s.destinationsChanged(d)
        let hour: Int64 = 3600
        #expect(s.select(from: d, for: localityInput(target(1), at: 0))?.id == 0)
        #expect(s.select(from: d, for: localityInput(target(2), at: 0))?.id == 0)
        d[0].activeConnections = 1  // a fresh pick would now take server 1
        // Target 2 is used again at 20 h; at 23 h nothing is a day old.
        #expect(s.select(from: d, for: localityInput(target(2), at: 20 * hour))?.id == 0)
        #expect(s.select(from: d, for: localityInput(target(3), at: 23 * hour))?.id == 1)
        #expect(s.table.count == 3)
        // At 24 h 31 min the full check (due: 30 passes since the last) collects target 1 alone.
        _ = s.select(from: d, for: localityInput(target(3), at: 24 * hour + 31 * 60))
        #expect(s.table.count == 2)
        #expect(s.select(from: d, for: localityInput(target(1), at: 24 * hour + 31 * 60))?.id == 1)
        #expect(s.select(from: d, for: localityInput(target(2), at: 24 * hour + 31 * 60))?.id == 0)
    }

    /// The timer's counter starts at 1 and a pass within max_size adds one: the 30th pass, at 30 min,
    /// is the first full check.
    @Test func theFirstFullCheckIsTheThirtiethPass() {
        let d = dests([1])
        let s = LocalityBasedLeastConnectionScheduler(flags: [])
        s.destinationsChanged(d)
        _ = s.select(from: d, for: localityInput(target(1), at: 0))
        for minute in 1...29 { _ = s.select(from: d, for: localityInput(target(2), at: Int64(minute) * 60)) }
        s.table.expiration = 10 * 60 * 1_000_000_000  // a 10 min lblc_expiration, so the full check shows
        #expect(s.table.count == 2)
        _ = s.select(from: d, for: localityInput(target(2), at: 30 * 60))
        #expect(s.table.count == 1)  // target 1 (idle 30 min) went; target 2 (idle 1 min) stays
        #expect(s.table.find(target(2)) != nil)
    }

    /// `ip_vs_lblc_check_expire` over max_size: entries idle 6 min go, (entries − 16384) × 4/3 of them
    /// at least (whole buckets), at most 8192 a pass; the table stops growing at masq's bound.
    @Test func anOverfullTableCollectsEntriesIdleSixMinutes() {
        let d = dests([1])
        let s = LocalityBasedLeastConnectionScheduler(flags: [])
        s.destinationsChanged(d)
        let max = LocalityTable<Destination?>.maxSize
        for n in 0..<(max + 300) { _ = s.select(from: d, for: localityInput(target(UInt32(n)), at: 0)) }
        #expect(s.table.count == max + 300)
        // At 5 min nothing is idle long enough.
        _ = s.select(from: d, for: localityInput(target(0), at: 5 * 60))
        #expect(s.table.count == max + 300)
        // At 7 min: at least 400 go, far from all.
        _ = s.select(from: d, for: localityInput(target(0), at: 7 * 60))
        #expect(s.table.count <= max + 300 - 400)
        #expect(s.table.count > max - 1000)
        #expect(s.select(from: d, for: localityInput(target(0), at: 7 * 60))?.id == 0)
    }

    @Test func theTableIsBounded() {
        let d = dests([1])
        let s = LocalityBasedLeastConnectionScheduler(flags: [])
        s.destinationsChanged(d)
        let limit = LocalityTable<Destination?>.entryLimit
        for n in 0..<(limit + 10) { _ = s.select(from: d, for: localityInput(target(UInt32(n)))) }
        #expect(s.table.count == limit)
        // Past the bound a new address is still scheduled, only not remembered.
        #expect(s.select(from: d, for: localityInput(target(UInt32(limit + 20))))?.id == 0)
        #expect(s.table.count == limit)
    }
}
