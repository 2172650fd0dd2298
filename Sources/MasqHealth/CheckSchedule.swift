import MasqCore

/// keepalived's checker timing for one check of one real server (check_tcp.c / check_http.c): a check
/// every `delayLoop`; a failure is retried `retry` times, `delayBeforeRetry` apart, before the server
/// is declared down; one success brings it back up. `warmup` delays the first check by a random part
/// of itself, so many checkers do not fire together. Time is the caller's (a fake clock in tests).
public struct CheckSchedule: Equatable, Sendable {
    public enum Status: String, Sendable { case up, down }

    /// What a check result changed.
    public enum Transition: Equatable, Sendable {
        case wentDown, cameUp
        /// The first check of a checker that starts down (`alpha`) failed: nothing changes, but
        /// keepalived runs notify_down for it (update_svr_checker_state: `alpha && !has_run`).
        case firstCheckFailed
    }

    public let delayLoop: Int64
    public let retry: Int
    public let delayBeforeRetry: Int64
    public private(set) var status: Status
    public private(set) var nextCheckAt: Int64
    /// keepalived's `retry_it`: while up, the retries spent since the last success (a failure with
    /// `failures == retry` takes the server down). Starts at `retry` ("one failure is enough
    /// initially", check_data.c), so a server that fails from the start is not kept in service for
    /// `retry × delay_before_retry` first.
    public private(set) var failures: Int
    /// A result was recorded (keepalived's `has_run`).
    public private(set) var hasRun = false
    /// MISC_CHECK's misc_dynamic: the weight its last passing exit status set (status - 2); nil for
    /// the configured weight (status 0, or the check went down: check_misc.c resets cur_weight).
    public var dynamicWeight: Int?

    static let second: Int64 = 1_000_000_000

    /// - Parameters: times in seconds; `warmupFraction` in 0...1 is the random part of `warmup` used
    ///   (injected so tests are deterministic); `startUp`: keepalived starts servers up unless `alpha`;
    ///   `retriesSpent`: the first failure takes the server down (keepalived at start; false for a
    ///   checker a reload adds to a healthy server, which gets its retries).
    public init(delayLoop: Double, retry: Int, delayBeforeRetry: Double, warmup: Double? = nil,
                warmupFraction: Double = 0, startUp: Bool = true, retriesSpent: Bool = true, now: Int64) {
        self.delayLoop = Int64(delayLoop * 1e9)
        self.retry = max(0, retry)
        self.delayBeforeRetry = Int64(delayBeforeRetry * 1e9)
        status = startUp ? .up : .down
        failures = retriesSpent ? self.retry : 0
        nextCheckAt = now + Int64((warmup ?? 0) * min(1, max(0, warmupFraction)) * 1e9)
    }

    public func isDue(at now: Int64) -> Bool { now >= nextCheckAt }

    /// Takes over the state of the same checker before a reload (keepalived's migrate_checkers): its
    /// status, whether it ran, and its spent retries (no more than the new `retry` allows). Timing is
    /// this schedule's.
    public mutating func inherit(_ old: CheckSchedule) {
        guard old.hasRun else { return }
        status = old.status
        hasRun = true
        dynamicWeight = old.dynamicWeight  // migrate_misc_check keeps the last exit status's weight
        failures = status == .up ? min(old.failures, retry) : retry + 1
    }

    /// Down now (passive detection); the next check, a delay_loop away, may bring it back.
    public mutating func forceDown(at now: Int64) {
        status = .down
        failures = retry + 1
        hasRun = true
        nextCheckAt = now + delayLoop
    }

    /// Records a check's outcome at `now` and schedules the next check.
    public mutating func record(success: Bool, at now: Int64) -> Transition? {
        let first = !hasRun
        hasRun = true
        if success {
            failures = 0
            nextCheckAt = now + delayLoop
            guard status == .down else { return nil }
            status = .up
            return .cameUp
        }
        failures += 1
        if status == .up && failures <= retry {
            nextCheckAt = now + delayBeforeRetry
            return nil
        }
        nextCheckAt = now + delayLoop
        guard status == .up else { return first ? .firstCheckFailed : nil }
        status = .down
        return .wentDown
    }
}

/// What a virtual service runs with, given its real servers' health (keepalived's check_data /
/// ipwrapper.c): a failed server is removed, or kept with weight 0 under `inhibit_on_failure`; when
/// the alive weight falls below `quorum - hysteresis` the service loses quorum and, with a sorry
/// server, only that one serves; quorum comes back at `quorum + hysteresis` (between the two, nothing
/// changes).
public struct QuorumPolicy: Equatable, Sendable {
    public var quorum: Int
    public var hysteresis: Int
    public var sorryServer: RealServerSpec?

    public init(quorum: Int = 1, hysteresis: Int = 0, sorryServer: RealServerSpec? = nil) {
        self.quorum = quorum
        self.hysteresis = hysteresis
        self.sorryServer = sorryServer
    }

    /// One configured real server and what the checks say of it.
    public struct Member: Equatable, Sendable {
        public var server: RealServerSpec
        public var alive: Bool
        public var inhibitOnFailure: Bool

        public init(server: RealServerSpec, alive: Bool, inhibitOnFailure: Bool = false) {
            self.server = server
            self.alive = alive
            self.inhibitOnFailure = inhibitOnFailure
        }
    }

    /// The new quorum state, from the previous one and the alive weight.
    public func quorumHeld(previously: Bool, members: [Member]) -> Bool {
        let alive = members.filter(\.alive).reduce(0) { $0 + Int($1.server.weight) }
        if previously { return alive >= quorum - hysteresis }
        return alive >= quorum + hysteresis
    }

    /// The real servers the service should have now.
    public func realServers(_ members: [Member], quorumHeld: Bool) -> [RealServerSpec] {
        var servers: [RealServerSpec] = []
        for m in members {
            if m.alive {
                servers.append(m.server)
            } else if m.inhibitOnFailure {
                var inhibited = m.server  // keeps its thresholds
                inhibited.weight = 0
                servers.append(inhibited)
            }
        }
        if !quorumHeld, let sorry = sorryServer {
            return [sorry]
        }
        return servers
    }
}
