import MasqCore

/// Something a health check changed, logged once and counted.
public struct HealthEvent: Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable { case serverDown = "down", serverUp = "up", quorumLost = "quorum lost", quorumRegained = "quorum regained" }
    public var kind: Kind
    public var service: ServiceKey
    public var server: RealServerSpec?
    public var reason: String
    /// The script keepalived would run for it (notify_up/down, quorum_up/down), if any.
    public var script: String?

    public var description: String {
        let who = server.map { "\($0.address):\($0.port)" } ?? "service"
        return "\(service) \(who) \(kind.rawValue)" + (reason.isEmpty ? "" : ": \(reason)")
    }
}

/// Runs keepalived's checks for a keepalived.conf's virtual servers and says which real servers the
/// services should have: failed servers out (or at weight 0 with inhibit_on_failure), the sorry server
/// when quorum is lost. A real server is alive while all its checks are. Driven by the caller's clock
/// and probe function, so it runs the same on a fake clock in tests and on NIO probes in the daemon.
public final class HealthMonitor: @unchecked Sendable {
    public typealias ProbeFunction = @Sendable (HealthCheck, IPv4Address, UInt16) async -> Probe.Result

    public let config: KeepalivedConfig
    /// [virtual server][real server][check]
    private var schedules: [[[CheckSchedule]]]
    private var quorum: [Bool]

    public init(_ config: KeepalivedConfig, now: Int64, random: () -> Double = { Double.random(in: 0...1) }) {
        self.config = config
        schedules = config.virtualServers.map { vs in
            vs.realServers.map { rs in
                rs.checks.map { check in
                    CheckSchedule(delayLoop: check.delayLoop, retry: check.retry, delayBeforeRetry: check.delayBeforeRetry,
                                  warmup: check.warmup, warmupFraction: check.warmup == nil ? 0 : random(),
                                  startUp: !(check.alpha || rs.alpha), now: now)
                }
            }
        }
        quorum = Array(repeating: true, count: config.virtualServers.count)
        for v in config.virtualServers.indices { quorum[v] = policy(v).quorumHeld(previously: true, members: members(v)) }
    }

    public func isAlive(_ v: Int, _ r: Int) -> Bool { schedules[v][r].allSatisfy { $0.status == .up } }

    /// When the next check is due (for the caller's sleep).
    public var nextDue: Int64? { schedules.joined().joined().map(\.nextCheckAt).min() }

    private func policy(_ v: Int) -> QuorumPolicy {
        let vs = config.virtualServers[v]
        return QuorumPolicy(quorum: vs.quorum, hysteresis: vs.hysteresis, sorryServer: vs.sorryServer)
    }

    private func members(_ v: Int) -> [QuorumPolicy.Member] {
        config.virtualServers[v].realServers.indices.map { r in
            let rs = config.virtualServers[v].realServers[r]
            return QuorumPolicy.Member(server: rs.spec, alive: isAlive(v, r), inhibitOnFailure: rs.inhibitOnFailure)
        }
    }

    /// Runs every check due at `now` (concurrently) and returns what changed.
    public func tick(now: Int64, probe: @escaping ProbeFunction) async -> [HealthEvent] {
        var due: [(Int, Int, Int, HealthCheck, IPv4Address, UInt16)] = []
        for (v, vs) in config.virtualServers.enumerated() {
            for (r, rs) in vs.realServers.enumerated() {
                for (c, check) in rs.checks.enumerated() where schedules[v][r][c].isDue(at: now) {
                    due.append((v, r, c, check, check.connectIP ?? rs.address, check.connectPort ?? rs.port))
                }
            }
        }
        guard !due.isEmpty else { return [] }
        let results = await withTaskGroup(of: (Int, Probe.Result).self) { group in
            for (i, d) in due.enumerated() {
                group.addTask { (i, await probe(d.3, d.4, d.5)) }
            }
            var out = [Probe.Result](repeating: .success, count: due.count)
            for await (i, r) in group { out[i] = r }
            return out
        }
        var events: [HealthEvent] = []
        for (i, d) in due.enumerated() {
            let (v, r, c) = (d.0, d.1, d.2)
            let wasAlive = isAlive(v, r)
            let reason: String
            if case .failure(let why) = results[i] { reason = why.description } else { reason = "" }
            _ = schedules[v][r][c].record(success: results[i].succeeded, at: now)
            let alive = isAlive(v, r)
            if alive != wasAlive {
                let vs = config.virtualServers[v], rs = vs.realServers[r]
                events.append(HealthEvent(kind: alive ? .serverUp : .serverDown, service: vs.key, server: rs.spec,
                                          reason: alive ? "checks pass again" : reason,
                                          script: alive ? rs.notifyUp : rs.notifyDown))
            }
        }
        for v in config.virtualServers.indices {
            let held = policy(v).quorumHeld(previously: quorum[v], members: members(v))
            if held != quorum[v] {
                quorum[v] = held
                let vs = config.virtualServers[v]
                events.append(HealthEvent(kind: held ? .quorumRegained : .quorumLost, service: vs.key, server: nil,
                                          reason: vs.sorryServer.map { held ? "" : "sorry server \($0.address):\($0.port) takes over" } ?? "",
                                          script: held ? vs.quorumUp : vs.quorumDown))
            }
        }
        return events
    }

    /// Passive detection: a real server that reset or never completed `threshold` new connections in a
    /// row is marked down now, without waiting for its checks; its next successful check re-admits it.
    public func markDown(service key: ServiceKey, server: RealServerSpec, reason: String, now: Int64) -> [HealthEvent] {
        guard let v = config.virtualServers.firstIndex(where: { $0.key == key }),
              let r = config.virtualServers[v].realServers.firstIndex(where: { $0.address == server.address && $0.port == server.port }),
              isAlive(v, r), !schedules[v][r].isEmpty else { return [] }
        for c in schedules[v][r].indices { schedules[v][r][c].forceDown(at: now) }
        let vs = config.virtualServers[v], rs = vs.realServers[r]
        var events = [HealthEvent(kind: .serverDown, service: key, server: rs.spec, reason: reason, script: rs.notifyDown)]
        let held = policy(v).quorumHeld(previously: quorum[v], members: members(v))
        if held != quorum[v] {
            quorum[v] = held
            events.append(HealthEvent(kind: .quorumLost, service: key, server: nil, reason: "", script: vs.quorumDown))
        }
        return events
    }

    /// Every checked real server, for the passive check: (service, server).
    public var checkedServers: [(ServiceKey, RealServerSpec)] {
        config.virtualServers.flatMap { vs in vs.realServers.filter { !$0.checks.isEmpty }.map { (vs.key, $0.spec) } }
    }

    /// The configuration the engine should run now: the keepalived file's services with each one's real
    /// servers as health and quorum allow.
    public func effectiveConfiguration(timeouts: Timeouts) -> Configuration {
        var c = config.configuration
        c.timeouts = timeouts
        for (v, vs) in config.virtualServers.enumerated() {
            guard let i = c.serviceIndex(vs.key) else { continue }
            c.services[i].realServers = policy(v).realServers(members(v), quorumHeld: quorum[v])
        }
        return c
    }
}
