import Testing
@testable import MasqCore
@testable import MasqHealth

@Suite struct CheckScheduleTests {
    let s: Int64 = 1_000_000_000

    /// delay_loop 6, retry 2, delay_before_retry 1: down after the third failure in a row, 2 s after
    /// the first, well inside delay_loop × (retry + 1) + connect_timeout.
    @Test func retriesThenDown() {
        var c = CheckSchedule(delayLoop: 6, retry: 2, delayBeforeRetry: 1, now: 0)
        #expect(c.isDue(at: 0))
        #expect(c.record(success: true, at: 0) == nil && c.nextCheckAt == 6 * s)
        #expect(c.record(success: false, at: 6 * s) == nil && c.nextCheckAt == 7 * s)
        #expect(c.record(success: false, at: 7 * s) == nil && c.nextCheckAt == 8 * s)
        #expect(c.record(success: false, at: 8 * s) == .wentDown && c.status == .down)
        #expect(c.nextCheckAt == 14 * s)
        #expect(c.record(success: false, at: 14 * s) == nil)  // stays down, no retries while down
        #expect(c.record(success: true, at: 20 * s) == .cameUp && c.status == .up)
    }

    @Test func aSuccessResetsTheRetries() {
        var c = CheckSchedule(delayLoop: 6, retry: 1, delayBeforeRetry: 1, now: 0)
        #expect(c.record(success: true, at: 0) == nil)
        #expect(c.record(success: false, at: 6 * s) == nil)
        #expect(c.record(success: true, at: 7 * s) == nil)
        #expect(c.record(success: false, at: 13 * s) == nil)
        #expect(c.record(success: false, at: 14 * s) == .wentDown)
    }

    /// keepalived starts each checker with its retries spent (check_data.c, "one failure is enough
    /// initially"): a server failing from the start goes at its first check, retries or not.
    @Test func theFirstFailureIsEnough() {
        var c = CheckSchedule(delayLoop: 6, retry: 3, delayBeforeRetry: 3, now: 0)
        #expect(c.record(success: false, at: 0) == .wentDown && c.nextCheckAt == 6 * s)
        // A checker a reload adds to a healthy server gets its retries.
        var added = CheckSchedule(delayLoop: 6, retry: 1, delayBeforeRetry: 1, retriesSpent: false, now: 0)
        #expect(added.record(success: false, at: 0) == nil && added.nextCheckAt == 1 * s)
        #expect(added.record(success: false, at: 1 * s) == .wentDown)
    }

    @Test func retryZeroFailsAtOnce() {
        var c = CheckSchedule(delayLoop: 3, retry: 0, delayBeforeRetry: 1, now: 0)
        #expect(c.record(success: false, at: 0) == .wentDown)
    }

    @Test(arguments: [0.0, 0.5, 1.0]) func warmupDelaysTheFirstCheck(_ fraction: Double) {
        let c = CheckSchedule(delayLoop: 6, retry: 1, delayBeforeRetry: 1, warmup: 10, warmupFraction: fraction, now: 0)
        #expect(c.nextCheckAt == Int64(10 * fraction * 1e9))
    }

    @Test func alphaStartsDown() {
        var c = CheckSchedule(delayLoop: 6, retry: 1, delayBeforeRetry: 1, startUp: false, now: 0)
        #expect(c.status == .down)
        #expect(c.record(success: true, at: 0) == .cameUp)
    }

    /// An alpha checker's failed first check changes nothing but is reported (keepalived runs
    /// notify_down for it); later failures while down are not.
    @Test func alphaReportsOnlyItsFirstFailure() {
        var c = CheckSchedule(delayLoop: 6, retry: 1, delayBeforeRetry: 1, startUp: false, now: 0)
        #expect(c.record(success: false, at: 0) == .firstCheckFailed && c.status == .down)
        #expect(c.record(success: false, at: 6 * s) == nil)
    }

    /// A reload's checker takes over the old one's state; spent retries are capped by the new retry.
    @Test func inheritCarriesStatusAndRetries() {
        var old = CheckSchedule(delayLoop: 6, retry: 3, delayBeforeRetry: 1, now: 0)
        _ = old.record(success: true, at: 0)
        _ = old.record(success: false, at: 6 * s)
        _ = old.record(success: false, at: 7 * s)
        var new = CheckSchedule(delayLoop: 6, retry: 1, delayBeforeRetry: 1, startUp: false, now: 8 * s)
        new.inherit(old)
        #expect(new.status == .up && new.hasRun && new.failures == 1)
        #expect(new.record(success: false, at: 8 * s) == .wentDown)
        // One that never ran passes nothing on.
        var fresh = CheckSchedule(delayLoop: 6, retry: 1, delayBeforeRetry: 1, startUp: false, now: 0)
        fresh.inherit(CheckSchedule(delayLoop: 6, retry: 1, delayBeforeRetry: 1, now: 0))
        #expect(fresh.status == .down && !fresh.hasRun)
    }
}

@Suite struct QuorumPolicyTests {
    let web1 = RealServerSpec(address: IPv4Address("198.19.0.201")!, port: 80, weight: 1)
    let web2 = RealServerSpec(address: IPv4Address("198.19.0.202")!, port: 80, weight: 1)
    let sorry = RealServerSpec(address: IPv4Address("198.19.0.250")!, port: 80, weight: 1)

    @Test func failedServersAreRemovedOrInhibited() {
        let p = QuorumPolicy()
        let members = [QuorumPolicy.Member(server: web1, alive: true), .init(server: web2, alive: false)]
        #expect(p.realServers(members, quorumHeld: true) == [web1])
        let inhibited = [QuorumPolicy.Member(server: web1, alive: true), .init(server: web2, alive: false, inhibitOnFailure: true)]
        #expect(p.realServers(inhibited, quorumHeld: true)
            == [web1, RealServerSpec(address: web2.address, port: 80, weight: 0)])
    }

    @Test func sorryServerWhenNoneIsAlive() {
        let p = QuorumPolicy(sorryServer: sorry)
        let down = [QuorumPolicy.Member(server: web1, alive: false), .init(server: web2, alive: false)]
        let held = p.quorumHeld(previously: true, members: down)
        #expect(!held)
        #expect(p.realServers(down, quorumHeld: held) == [sorry])
    }

    @Test func hysteresisHoldsTheQuorumStateInBetween() {
        let p = QuorumPolicy(quorum: 2, hysteresis: 1)
        let one = [QuorumPolicy.Member(server: web1, alive: true), .init(server: web2, alive: false)]
        let none = [QuorumPolicy.Member(server: web1, alive: false), .init(server: web2, alive: false)]
        let both = [QuorumPolicy.Member(server: web1, alive: true), .init(server: web2, alive: true)]
        #expect(p.quorumHeld(previously: true, members: one))     // 1 >= 2 - 1: still held
        #expect(!p.quorumHeld(previously: true, members: none))   // 0 < 1: lost
        #expect(!p.quorumHeld(previously: false, members: both))  // 2 < 2 + 1: not yet back
        #expect(!p.quorumHeld(previously: false, members: one))
    }
}
