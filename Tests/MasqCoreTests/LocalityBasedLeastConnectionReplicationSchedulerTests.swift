import Testing
@testable import MasqCore

/// IPVS ip_vs_lblcr.c: a destination address keeps a set of servers, takes its least loaded member,
/// grows the set when that one overloads, and sheds its most loaded member once the set has been
/// unchanged for lblcr_expiration.
@Suite struct LocalityBasedLeastConnectionReplicationSchedulerTests {
    func members(_ s: LocalityBasedLeastConnectionReplicationScheduler, _ address: IPAddress) -> [UInt32] {
        guard let i = s.table.find(address) else { return [] }
        return s.table.values[i].members.map(\.id)
    }

    @Test func aNewAddressGetsTheLeastLoadedServerAsItsSet() {
        let d = dests([1, 1, 1], active: [1, 0, 1])
        let s = LocalityBasedLeastConnectionReplicationScheduler(flags: [])
        s.destinationsChanged(d)
        #expect(s.select(from: d, for: localityInput(target(1)))?.id == 1)
        #expect(members(s, target(1)) == [1])
        // Server 1 at its weight is not overloaded: the address stays.
        d[1].activeConnections = 1
        #expect(s.select(from: d, for: localityInput(target(1)))?.id == 1)
    }

    @Test func anOverloadedMemberBringsInTheLeastLoadedServer() {
        let d = dests([2, 2, 2])
        let s = LocalityBasedLeastConnectionReplicationScheduler(flags: [])
        s.destinationsChanged(d)
        #expect(s.select(from: d, for: localityInput(target(1)))?.id == 0)
        // Server 0 over its weight while server 2 is under half its own: server 2 (least loaded) joins.
        d[0].activeConnections = 3
        d[1].activeConnections = 1
        #expect(s.select(from: d, for: localityInput(target(1)))?.id == 2)
        #expect(members(s, target(1)) == [2, 0])  // newest first
        // Now the set's least loaded member is taken: server 2 (0 active), then server 0 once lighter.
        #expect(s.select(from: d, for: localityInput(target(1)))?.id == 2)
        d[2].activeConnections = 2
        d[0].activeConnections = 1
        #expect(s.select(from: d, for: localityInput(target(1)))?.id == 0)
        // Server 1 never joined: only servers of the set are taken while one of them can.
        #expect(members(s, target(1)) == [2, 0])
    }

    @Test func allMembersUnavailableAddsAnotherServer() {
        let d = dests([1, 1])
        let s = LocalityBasedLeastConnectionReplicationScheduler(flags: [])
        s.destinationsChanged(d)
        #expect(s.select(from: d, for: localityInput(target(1)))?.id == 0)
        d[0].overloaded = true  // -x reached: the set has no member to give
        #expect(s.select(from: d, for: localityInput(target(1)))?.id == 1)
        #expect(members(s, target(1)) == [1, 0])
        d[1].setWeight(0)
        #expect(s.select(from: d, for: localityInput(target(1))) == nil)
    }

    @Test func aSetUnchangedForTheExpirationShedsItsMostLoadedMember() {
        let d = dests([1, 1, 1])
        let s = LocalityBasedLeastConnectionReplicationScheduler(flags: [])
        s.destinationsChanged(d)
        let hour: Int64 = 3600
        #expect(s.select(from: d, for: localityInput(target(1), at: 0))?.id == 0)
        d[0].activeConnections = 2
        #expect(s.select(from: d, for: localityInput(target(1), at: hour))?.id == 1)  // set changed at 1 h
        #expect(members(s, target(1)) == [1, 0])
        // Picks in between keep the entry itself from the 24 h full check; the set does not change.
        #expect(s.select(from: d, for: localityInput(target(1), at: 12 * hour))?.id == 1)
        #expect(s.select(from: d, for: localityInput(target(1), at: 24 * hour))?.id == 1)
        // 24 h after the change, not more: kept (`time_after`, strictly).
        #expect(s.select(from: d, for: localityInput(target(1), at: 25 * hour))?.id == 1)
        #expect(members(s, target(1)) == [1, 0])
        // Past it: the most loaded (server 0, 2 active per weight 1) leaves; the pick is still server 1.
        #expect(s.select(from: d, for: localityInput(target(1), at: 25 * hour + 1))?.id == 1)
        #expect(members(s, target(1)) == [1])
        // A set of one is never shed.
        d[1].activeConnections = 1
        _ = s.select(from: d, for: localityInput(target(1), at: 26 * hour))
        #expect(members(s, target(1)) == [1])
    }

    @Test func mostLoadedFollowsIpvsDestSetMax() {
        // overhead / weight: 256/1, 512/4, 768/2 → the third; weight 0 never; ties → the first.
        #expect(LocalityBasedLeastConnectionReplicationScheduler.mostLoaded(dests([1, 4, 2], active: [1, 2, 3]))?.id == 2)
        #expect(LocalityBasedLeastConnectionReplicationScheduler.mostLoaded(dests([0, 1], active: [9, 1]))?.id == 1)
        #expect(LocalityBasedLeastConnectionReplicationScheduler.mostLoaded(dests([1, 1], active: [1, 1]))?.id == 0)
        #expect(LocalityBasedLeastConnectionReplicationScheduler.mostLoaded(dests([0, 0])) == nil)
    }

    @Test func aRemovedServerLeavesEverySet() {
        let d = dests([1, 1])
        let s = LocalityBasedLeastConnectionReplicationScheduler(flags: [])
        s.destinationsChanged(d)
        #expect(s.select(from: d, for: localityInput(target(1)))?.id == 0)
        s.destinationsChanged([d[1]])
        #expect(members(s, target(1)) == [])
        #expect(s.select(from: [d[1]], for: localityInput(target(1)))?.id == 1)
        #expect(members(s, target(1)) == [1])
    }

    @Test func staleEntriesGoAsLblcs() {
        let d = dests([1])
        let s = LocalityBasedLeastConnectionReplicationScheduler(flags: [])
        s.destinationsChanged(d)
        _ = s.select(from: d, for: localityInput(target(1), at: 0))
        _ = s.select(from: d, for: localityInput(target(2), at: 24 * 3600 + 31 * 60))
        #expect(s.table.count == 1)
        #expect(members(s, target(2)) == [0])
    }
}
