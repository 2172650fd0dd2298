import MasqCore
import Synchronization

/// Something a health check changed, logged once and counted.
public struct HealthEvent: Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable { case serverDown = "down", serverUp = "up", quorumLost = "quorum lost", quorumRegained = "quorum regained"
        /// MISC_CHECK's misc_dynamic changed a live server's weight (`server` has the new one).
        case weightChanged = "weight changed"
    }
    public var kind: Kind
    public var service: ServiceKey
    public var server: RealServerSpec?
    public var reason: String
    /// The script keepalived would run for it (notify_up/down, quorum_up/down), if any.
    public var script: String?

    public var description: String {
        let who = server.map { $0.endpoint } ?? "service"
        return "\(service) \(who) \(kind.rawValue)" + (reason.isEmpty ? "" : ": \(reason)")
    }
}

/// Runs keepalived's checks for a keepalived.conf's virtual servers and says which real servers the
/// services should have: failed servers out (or at weight 0 with inhibit_on_failure), the sorry server
/// when quorum is lost. A real server is alive while all its checks are. Driven by the caller's clock
/// and probe function, so it runs the same on a fake clock in tests and on NIO probes in the daemon.
///
/// Its state is behind a lock and changes only inside it, never across an await: the daemon's health
/// controller ticks it while a reload reads the old monitor's state and the passive check marks
/// servers down.
public final class HealthMonitor: Sendable {
    public typealias ProbeFunction = @Sendable (HealthCheck, IPAddress, UInt16) async -> Probe.Result

    public let config: KeepalivedConfig
    /// What starting (or the reload that made this monitor) changed, for the caller to log and run the
    /// scripts of: keepalived's "starting with quorum down" (with a sorry server), and on a reload the
    /// real servers and virtual servers it removed (their notify_down / quorum_down), and servers it
    /// brought up.
    public let startEvents: [HealthEvent]

    private struct State {
        /// [virtual server][real server][check]
        var schedules: [[[CheckSchedule]]]
        var quorum: [Bool]
        /// After `shutdown()` (or once a reload took over): results are no longer recorded.
        var stopped = false
    }
    private let state: Mutex<State>

    /// - Parameter previous: the monitor of the configuration a reload replaces. Real servers present
    ///   in both keep their health and each virtual server its quorum state (keepalived's
    ///   clear_diff_services / migrate_checkers), so only new servers start over (down with `alpha`);
    ///   `previous` stops recording results.
    public init(_ config: KeepalivedConfig, now: Int64, previous: HealthMonitor? = nil,
                random: () -> Double = { Double.random(in: 0...1) }) {
        self.config = config
        let old = previous.map { p in
            p.state.withLock { s -> (KeepalivedConfig, State) in
                s.stopped = true
                return (p.config, s)
            }
        }
        var events: [HealthEvent] = []
        var schedules: [[[CheckSchedule]]] = []
        var quorum: [Bool] = []
        if let (oldConfig, oldState) = old {
            events += Self.removals(from: oldConfig, oldState, keptIn: config)
        }
        for vs in config.virtualServers {
            let oldV = old.flatMap { o in o.0.virtualServers.firstIndex { $0.key == vs.key } }
            var vsSchedules: [[CheckSchedule]] = []
            for rs in vs.realServers {
                func fresh(_ check: HealthCheck, startUp: Bool, retriesSpent: Bool) -> CheckSchedule {
                    CheckSchedule(delayLoop: check.delayLoop, retry: check.retry, delayBeforeRetry: check.delayBeforeRetry,
                                  warmup: check.warmup, warmupFraction: check.warmup == nil ? 0 : random(),
                                  startUp: startUp, retriesSpent: retriesSpent, now: now)
                }
                guard let (oldConfig, oldState) = old, let oldV,
                      let oldR = oldConfig.virtualServers[oldV].realServers.firstIndex(where: { $0.sameDestination(as: rs) })
                else {
                    // New (at start, or added by the reload): keepalived starts it down with alpha
                    // (check_data.c at start, check_new_rs_state on a reload), up otherwise.
                    vsSchedules.append(rs.checks.map { fresh($0, startUp: !$0.alpha, retriesSpent: true) })
                    continue
                }
                // Kept by the reload: the same checkers take over their state (migrate_checkers).
                let oldRS = oldConfig.virtualServers[oldV].realServers[oldR]
                let oldSchedules = oldState.schedules[oldV][oldR]
                let wasAlive = oldSchedules.allSatisfy { $0.status == .up }
                var unused = Array(oldSchedules.indices)
                var matched: [CheckSchedule?] = []
                for check in rs.checks {
                    if let u = unused.firstIndex(where: { oldRS.checks[$0].sameProbe(as: check) }) {
                        matched.append(oldSchedules[unused.remove(at: u)])
                    } else {
                        matched.append(nil)
                    }
                }
                let anyFailed = matched.contains { $0.map { $0.hasRun && $0.status == .down } ?? false }
                let anyRan = matched.contains { $0?.hasRun ?? false }
                // A checker that has not run yet starts down with alpha only while the server is not
                // known good; it gets its retries unless the server is failing or unproven.
                let unproven = anyFailed || (!wasAlive && !anyRan)
                var list: [CheckSchedule] = []
                for (check, previous) in zip(rs.checks, matched) {
                    var schedule = fresh(check, startUp: !(unproven && check.alpha), retriesSpent: unproven)
                    if let previous { schedule.inherit(previous) }
                    list.append(schedule)
                }
                let alive = list.allSatisfy { $0.status == .up }
                if alive && !wasAlive {
                    events.append(HealthEvent(kind: .serverUp, service: vs.key, server: rs.spec,
                                              reason: "no failing check left after the reload", script: rs.notifyUp))
                }
                vsSchedules.append(list)
            }
            schedules.append(vsSchedules)
            let policy = Self.policy(vs)
            let members = Self.members(vs, vsSchedules)
            if let (_, oldState) = old, let oldV {
                // update_quorum_state after a reload: from the state carried over.
                let before = oldState.quorum[oldV]
                let held = policy.quorumHeld(previously: before, members: members)
                quorum.append(held)
                if held != before { events.append(Self.quorumEvent(vs, held: held, reason: "after the reload")) }
            } else {
                // set_quorum_states: a service starts with quorum only at `quorum + hysteresis`; with a
                // sorry server, starting without it runs quorum_down (update_quorum_state, init).
                let held = policy.quorumHeld(previously: false, members: members)
                quorum.append(held)
                if !held && vs.sorryServer != nil {
                    events.append(Self.quorumEvent(vs, held: false, reason: "starting with quorum down"))
                }
            }
        }
        state = Mutex(State(schedules: schedules, quorum: quorum))
        startEvents = events
    }

    /// keepalived's clear_diff_services for what a reload drops (clear_service_vs / clear_service_rs,
    /// not stopping, so whatever `omega` says): each real server that was in the pool runs its
    /// notify_down, and a removed virtual server that held quorum runs quorum_down.
    private static func removals(from oldConfig: KeepalivedConfig, _ old: State, keptIn config: KeepalivedConfig) -> [HealthEvent] {
        var events: [HealthEvent] = []
        for (v, vs) in oldConfig.virtualServers.enumerated() {
            let kept = config.virtualServers.first { $0.key == vs.key }
            for (r, rs) in vs.realServers.enumerated()
            where kept?.realServers.contains(where: { $0.sameDestination(as: rs) }) != true
                && inPool(vs, rs, alive: old.schedules[v][r].allSatisfy { $0.status == .up }, quorumHeld: old.quorum[v]) {
                events.append(HealthEvent(kind: .serverDown, service: vs.key, server: rs.spec,
                                          reason: kept == nil ? "virtual server removed by the reload" : "removed by the reload",
                                          script: rs.notifyDown))
            }
            if kept == nil && old.quorum[v] {
                events.append(quorumEvent(vs, held: false, reason: "virtual server removed by the reload"))
            }
        }
        return events
    }

    /// Whether keepalived has the real server in IPVS as a live destination (`alive && set`): alive,
    /// and not pulled out for the sorry server (a removal that `inhibit_on_failure` turns into weight 0
    /// leaves it set).
    private static func inPool(_ vs: VirtualServerHealth, _ rs: RealServerHealth, alive: Bool, quorumHeld: Bool) -> Bool {
        alive && (quorumHeld || vs.sorryServer == nil || rs.inhibitOnFailure)
    }

    private static func quorumEvent(_ vs: VirtualServerHealth, held: Bool, reason: String) -> HealthEvent {
        var why = [reason]
        if !held, let sorry = vs.sorryServer { why.append("sorry server \(sorry.endpoint) takes over") }
        return HealthEvent(kind: held ? .quorumRegained : .quorumLost, service: vs.key, server: nil,
                           reason: why.filter { !$0.isEmpty }.joined(separator: "; "),
                           script: held ? vs.quorumUp : vs.quorumDown)
    }

    public func isAlive(_ v: Int, _ r: Int) -> Bool { state.withLock { $0.schedules[v][r].allSatisfy { $0.status == .up } } }

    /// When the next check is due (for the caller's sleep).
    public var nextDue: Int64? { state.withLock { $0.schedules.joined().joined().map(\.nextCheckAt).min() } }

    private static func policy(_ vs: VirtualServerHealth) -> QuorumPolicy {
        QuorumPolicy(quorum: vs.quorum, hysteresis: vs.hysteresis, sorryServer: vs.sorryServer)
    }

    private static func members(_ vs: VirtualServerHealth, _ schedules: [[CheckSchedule]]) -> [QuorumPolicy.Member] {
        zip(vs.realServers, schedules).map { rs, checks in
            var server = rs.spec
            server.weight = effectiveWeight(rs, checks)
            return QuorumPolicy.Member(server: server, alive: checks.allSatisfy { $0.status == .up }, inhibitOnFailure: rs.inhibitOnFailure)
        }
    }

    /// keepalived's effective_weight (check_misc.c, update_svr_wgt): the configured weight plus each
    /// misc_dynamic checker's `cur_weight` (its weight minus the configured one), within IPVS's 0...INT32_MAX
    /// (real_weight).
    static func effectiveWeight(_ rs: RealServerHealth, _ checks: [CheckSchedule]) -> Int32 {
        let base = Int64(rs.weight)
        let total = checks.reduce(base) { sum, c in sum + (c.dynamicWeight.map { Int64($0) - base } ?? 0) }
        return Int32(clamping: max(0, total))
    }

    /// Re-derives every virtual server's quorum, with an event for each change.
    private func updateQuorum(_ s: inout State) -> [HealthEvent] {
        var events: [HealthEvent] = []
        for (v, vs) in config.virtualServers.enumerated() {
            let held = Self.policy(vs).quorumHeld(previously: s.quorum[v], members: Self.members(vs, s.schedules[v]))
            if held != s.quorum[v] {
                s.quorum[v] = held
                events.append(Self.quorumEvent(vs, held: held, reason: ""))
            }
        }
        return events
    }

    /// A check that is due: which one, and where its probe connects.
    public struct DueCheck: Sendable {
        let virtualServer: Int, realServer: Int, check: Int
        public let health: HealthCheck
        public let address: IPAddress
        public let port: UInt16
    }

    /// Runs every check due at `now` (concurrently) and returns what changed. The state changes in
    /// two locked steps with the probes between them and no lock held across the await: the checks
    /// due are read (`dueChecks`), then their results recorded (`record`).
    public func tick(now: Int64, probe: @escaping ProbeFunction) async -> [HealthEvent] {
        let due = dueChecks(at: now)
        guard !due.isEmpty else { return [] }
        let results = await withTaskGroup(of: (Int, Probe.Result).self) { group in
            for (i, d) in due.enumerated() {
                group.addTask { (i, await probe(d.health, d.address, d.port)) }
            }
            var out = [Probe.Result](repeating: .success, count: due.count)
            for await (i, r) in group { out[i] = r }
            return out
        }
        return record(results, of: due, at: now)
    }

    /// The checks due at `now` (none once stopped).
    public func dueChecks(at now: Int64) -> [DueCheck] {
        state.withLock { s -> [DueCheck] in
            guard !s.stopped else { return [] }
            var due: [DueCheck] = []
            for (v, vs) in config.virtualServers.enumerated() {
                for (r, rs) in vs.realServers.enumerated() {
                    for (c, check) in rs.checks.enumerated() where s.schedules[v][r][c].isDue(at: now) {
                        due.append(DueCheck(virtualServer: v, realServer: r, check: c, health: check,
                                            address: check.connectIP ?? rs.address, port: check.connectPort ?? rs.port))
                    }
                }
            }
            return due
        }
    }

    /// Records the probes' results (`results[i]` for `due[i]`) and returns what changed; nothing if the
    /// monitor was stopped (shut down, or a reload took over) while the probes ran.
    public func record(_ results: [Probe.Result], of due: [DueCheck], at now: Int64) -> [HealthEvent] {
        state.withLock { s -> [HealthEvent] in
            guard !s.stopped else { return [] }
            var events: [HealthEvent] = []
            var notified = Set<[Int]>()
            for (d, result) in zip(due, results) {
                let v = d.virtualServer, r = d.realServer
                let wasAlive = s.schedules[v][r].allSatisfy { $0.status == .up }
                let firstRun = !s.schedules[v][r][d.check].hasRun
                let reason: String
                if case .failure(let why) = result { reason = why.description } else { reason = "" }
                let vs = config.virtualServers[v], rs = vs.realServers[r]
                let weightBefore = Self.effectiveWeight(rs, s.schedules[v][r])
                let transition = s.schedules[v][r][d.check].record(success: result.succeeded, at: now)
                if case .weighted(let weight) = result {
                    s.schedules[v][r][d.check].dynamicWeight = weight
                } else if result.succeeded || s.schedules[v][r][d.check].status == .down {
                    s.schedules[v][r][d.check].dynamicWeight = nil
                }
                let alive = s.schedules[v][r].allSatisfy { $0.status == .up }
                let weightAfter = Self.effectiveWeight(rs, s.schedules[v][r])
                if alive && wasAlive && weightAfter != weightBefore {
                    var server = rs.spec
                    server.weight = weightAfter
                    events.append(HealthEvent(kind: .weightChanged, service: vs.key, server: server,
                                              reason: "misc_dynamic: weight \(weightBefore) -> \(weightAfter)"))
                }
                if alive != wasAlive {
                    events.append(HealthEvent(kind: alive ? .serverUp : .serverDown, service: vs.key, server: rs.spec,
                                              reason: alive ? (firstRun ? "first check passed" : "checks pass again") : reason,
                                              script: alive ? rs.notifyUp : rs.notifyDown))
                } else if transition == .firstCheckFailed, !alive, notified.insert([v, r]).inserted {
                    // alpha: it was never in; keepalived still reports the failed first check.
                    events.append(HealthEvent(kind: .serverDown, service: vs.key, server: rs.spec,
                                              reason: "first check failed (alpha: not added yet): \(reason)",
                                              script: rs.notifyDown))
                }
            }
            return events + updateQuorum(&s)
        }
    }

    /// Passive detection: a real server that reset or never completed `threshold` new connections in a
    /// row is marked down now, without waiting for its checks; its next successful check re-admits it.
    public func markDown(service key: ServiceKey, server: RealServerSpec, reason: String, now: Int64) -> [HealthEvent] {
        // A group's member: its block's real server is marked down in every member (one health per block).
        guard let v = config.virtualServers.firstIndex(where: { $0.keys.contains(key) }),
              let r = config.virtualServers[v].realServers.firstIndex(where: { $0.address == server.address && $0.port == server.port })
        else { return [] }
        return state.withLock { s -> [HealthEvent] in
            guard !s.stopped, !s.schedules[v][r].isEmpty, s.schedules[v][r].allSatisfy({ $0.status == .up }) else { return [] }
            for c in s.schedules[v][r].indices { s.schedules[v][r][c].forceDown(at: now) }
            let vs = config.virtualServers[v], rs = vs.realServers[r]
            return [HealthEvent(kind: .serverDown, service: key, server: rs.spec, reason: reason, script: rs.notifyDown)]
                + updateQuorum(&s)
        }
    }

    /// keepalived's clear_services at a graceful stop: for each virtual server with `omega`, the
    /// notify_down of every real server in the pool, then its quorum_down (run at a stop whatever the
    /// quorum was: update_vs_notifies with `stopping`). Without omega keepalived runs nothing (it only
    /// sends SNMP traps). The monitor stops: later results change nothing.
    public func shutdown() -> [HealthEvent] {
        state.withLock { s -> [HealthEvent] in
            guard !s.stopped else { return [] }
            s.stopped = true
            var events: [HealthEvent] = []
            for (v, vs) in config.virtualServers.enumerated() where vs.omega {
                for (r, rs) in vs.realServers.enumerated()
                where Self.inPool(vs, rs, alive: s.schedules[v][r].allSatisfy { $0.status == .up }, quorumHeld: s.quorum[v]) {
                    events.append(HealthEvent(kind: .serverDown, service: vs.key, server: rs.spec,
                                              reason: "shutting down (omega)", script: rs.notifyDown))
                }
                events.append(HealthEvent(kind: .quorumLost, service: vs.key, server: nil,
                                          reason: "shutting down (omega)", script: vs.quorumDown))
            }
            return events
        }
    }

    /// Every checked real server, for the passive check: (service, server), for each service a block
    /// stands for (a group's members each count their own handshakes).
    public var checkedServers: [(ServiceKey, RealServerSpec)] {
        config.virtualServers.flatMap { vs in
            vs.keys.flatMap { key in vs.realServers.filter { !$0.checks.isEmpty }.map { (key, $0.spec) } }
        }
    }

    /// The configuration the engine should run now: the keepalived file's services with each one's real
    /// servers as health and quorum allow. From the start: `alpha` servers are out until a check passes.
    public func effectiveConfiguration(timeouts: Timeouts) -> Configuration {
        var c = config.configuration
        c.timeouts = timeouts
        let index = Dictionary(c.services.enumerated().map { ($1.key, $0) }, uniquingKeysWith: { first, _ in first })
        state.withLock { s in
            for (v, vs) in config.virtualServers.enumerated() {
                // One block's health and quorum, applied to each service it stands for (a group's members).
                let servers = Self.policy(vs).realServers(Self.members(vs, s.schedules[v]), quorumHeld: s.quorum[v])
                for key in vs.keys {
                    guard let i = index[key] else { continue }
                    c.services[i].realServers = servers
                }
            }
        }
        return c
    }
}

extension RealServerHealth {
    /// The same IPVS destination (keepalived's rs_iseq: address and port).
    func sameDestination(as other: RealServerHealth) -> Bool { address == other.address && port == other.port }
}

extension HealthCheck {
    /// The same probe (keepalived's checker compare functions: type, where and how it connects, what
    /// it asks), so a reload keeps its state; timers and retries may differ.
    func sameProbe(as other: HealthCheck) -> Bool {
        kind == other.kind && connectIP == other.connectIP && connectPort == other.connectPort
            && bindTo == other.bindTo && connectTimeout == other.connectTimeout
    }
}
