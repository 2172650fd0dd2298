import Foundation
import Logging
import MasqCore
import MasqHealth
import Metrics
import ServiceLifecycle

/// Reads a keepalived.conf for the daemon: the configuration, with its warnings logged.
func loadKeepalived(_ path: String, logger: Logger) throws(DaemonError) -> KeepalivedConfig {
    let config: KeepalivedConfig
    do {
        config = try KeepalivedParser.load(path: path)
    } catch {
        throw DaemonError(error.description)
    }
    for warning in config.warnings { logger.warning("\(warning.description)") }
    return config
}

/// The health checks of a keepalived.conf, run by the daemon off the packet path: each change of a
/// real server's health (or a service's quorum) is logged once, counted, runs its notify script, and
/// gives the engine the real servers keepalived's rules allow (through the same atomic change path
/// as SIGHUP and masqadm).
///
/// An actor: the check loop (`step`), SIGHUP (`reload`) and the graceful stop (`shutdown`) come from
/// different tasks, and the actor serialises what each does with the monitor. A reload during a
/// step's probes (the one await inside a step) replaces the monitor; the step sees that when it
/// resumes and records nothing.
actor HealthController {
    private var monitor: HealthMonitor
    /// Set by `shutdown()`: no check result, reload or script after it.
    private var stopped = false
    /// New connections in a row a real server must reset (or leave unanswered until SYN_RECV expires)
    /// before it is marked down without waiting for its checks.
    static let passiveThreshold: UInt32 = 3
    /// A notify script still running after this is stopped (health changes do not wait for them).
    static let scriptLimit: Duration = .seconds(10)
    /// keepalived gives the scripts it runs while stopping one second (TIMER_HZ in
    /// clear_services' system_call_script, then its shutdown backstop kills what is left).
    static let shutdownScriptLimit: Duration = .seconds(1)
    let core: ControlPlane
    let logger: Logger

    /// The daemon builds its engine from the keepalived.conf with every real server in; this gives it
    /// the servers the checks allow at start before the packet loop runs (keepalived never adds an
    /// `alpha` server until its first successful check), and handles what starting changed.
    init(_ config: KeepalivedConfig, core: ControlPlane, logger: Logger) {
        let m = HealthMonitor(config, now: monotonicNanoseconds())
        monitor = m
        self.core = core
        self.logger = logger
        Self.handle(m.startEvents, logger: logger)
        Self.apply(m, to: core, reason: "health checks at start")
    }

    /// SIGHUP: a new keepalived.conf. Real servers in both keep their health and services their
    /// quorum; new ones start as at start (down with alpha); removed ones run their notify_down.
    func reload(_ config: KeepalivedConfig) {
        guard !stopped else { return }
        let fresh = HealthMonitor(config, now: monotonicNanoseconds(), previous: monitor)
        monitor = fresh
        Self.handle(fresh.startEvents, logger: logger)
        Self.apply(fresh, to: core, reason: "SIGHUP")
    }

    /// Applies the monitor's view unless the engine already runs exactly those services (a health
    /// event that changes no destination, an alpha server's failed first check, need not touch it).
    private static func apply(_ m: HealthMonitor, to core: ControlPlane, reason: String) {
        core.replaceServices(reason: reason) { current in
            let next = m.effectiveConfiguration(timeouts: current.timeouts)
            return next.services != current.services ? next : nil
        }
    }

    /// One round: the checks that are due, then the passive signal. Returns when the next check is due.
    func step() async -> Int64? {
        let m = monitor
        let events = await m.tick(now: monotonicNanoseconds()) { check, address, port in
            return await Probe.run(Probe.Kind(check.kind), address: address, port: port, bindTo: check.bindTo, timeout: check.connectTimeout)
        }
        // Reloaded or shut down meanwhile: that monitor recorded nothing.
        guard monitor === m, !stopped else { return m.nextDue }
        let all = events + passiveFailures(m)
        Self.handle(all, logger: logger)
        if !all.isEmpty { Self.apply(m, to: core, reason: "health check") }
        return m.nextDue
    }

    /// The passive signal alone (what `step` does after the checks): each checked real server that
    /// reset or never completed `passiveThreshold` new connections in a row, as the engine counted
    /// them, is marked down, logged and taken out of the engine's services.
    func checkHandshakes() -> [HealthEvent] {
        guard !stopped else { return [] }
        let events = passiveFailures(monitor)
        Self.handle(events, logger: logger)
        if !events.isEmpty { Self.apply(monitor, to: core, reason: "health check") }
        return events
    }

    /// Real servers that reset or never completed new connections, from the engine; the count starts
    /// over for each one acted on.
    private func passiveFailures(_ m: HealthMonitor) -> [HealthEvent] {
        let now = monotonicNanoseconds()
        var events: [HealthEvent] = []
        let servers = m.checkedServers
        // One look at the engine for every server (the lock is the packet threads'), acted on outside it.
        let failing = core.shared.withLock { state in
            servers.compactMap { key, server -> (ServiceKey, RealServerSpec, UInt32)? in
                let failures = state.engine.handshakeFailures(key, server.address, server.port)
                guard failures >= Self.passiveThreshold else { return nil }
                _ = state.engine.handshakeFailures(key, server.address, server.port, reset: true)
                return (key, server, failures)
            }
        }
        for (key, server, failures) in failing {
            events += m.markDown(service: key, server: server,
                                 reason: "passive: \(failures) new connections in a row reset or not completed", now: now)
        }
        return events
    }

    /// Logs and counts each event and starts its script.
    private static func handle(_ events: [HealthEvent], logger: Logger) {
        for event in events {
            log(event, logger: logger)
            if let script = event.script {
                do {
                    try NotifyScripts.start(script, limit: Self.scriptLimit) {
                        logger.warning("notify script \(script) ran over \(Self.scriptLimit) and was stopped")
                    }
                } catch {
                    logger.error("\(error.description)")
                }
            }
        }
    }

    private static func log(_ event: HealthEvent, logger: Logger) {
        logger.notice("health: \(event)")
        let labels = [("service", "\(event.service)"),
                      ("real_server", event.server.map { $0.endpoint } ?? ""),
                      ("event", event.kind.rawValue)]
        Counter(label: "masq_health_events_total", dimensions: labels).increment()
    }

    /// Graceful stop (SIGTERM/SIGINT): keepalived's clear_services. With `omega`, the notify_down of
    /// the real servers in the pool and the quorum_down of their virtual server run, and are waited
    /// for up to `shutdownScriptLimit`; without omega nothing runs and this returns at once.
    func shutdown() async {
        guard !stopped else { return }
        stopped = true
        let events = monitor.shutdown()
        for event in events { Self.log(event, logger: logger) }
        let scripts = events.compactMap(\.script)
        guard !scripts.isEmpty else { return }
        let outcomes = await NotifyScripts.runAll(scripts, limit: Self.shutdownScriptLimit)
        for (script, outcome) in zip(scripts, outcomes) {
            switch outcome {
            case .success(.exited(0)): break
            case .success(.exited(let status)): logger.warning("shutdown script \(script) exited with status \(status)")
            case .success(.signalled(let signal)): logger.warning("shutdown script \(script) ended by signal \(signal)")
            case .success(.stopped): logger.warning("shutdown script \(script) ran over \(Self.shutdownScriptLimit) and was stopped")
            case .failure(let error): logger.error("\(error.description)")
            }
        }
    }
}

struct HealthService: Service {
    let controller: HealthController
    /// Says whether the stop is an exit for a restart (SIGUSR2), which runs no `omega` scripts: the
    /// next masq takes over the same pool at once, and a quorum_down that withdraws the VIP or a
    /// route would turn a restart that keeps every flow into an outage.
    let control: LoopControl

    func run() async throws {
        let controller = self.controller
        // The checks run in a task of their own so a shutdown never waits for a probe in flight (up
        // to connect_timeout, twice for HTTP_GET); its result is dropped.
        let checks = Task {
            while !Task.isCancelled {
                let next = await controller.step()
                let wait = min(max((next ?? Int64.max) - monotonicNanoseconds(), 10_000_000), 100_000_000)
                try? await Task.sleep(for: .nanoseconds(wait))
            }
        }
        defer { checks.cancel() }
        do {
            try await gracefulShutdown()
        } catch {
            return  // cancelled, not an orderly stop: keepalived runs omega's scripts only when stopping
        }
        checks.cancel()
        if control.restartRequested {
            controller.logger.notice("exiting for a restart: omega's shutdown scripts do not run")
            return
        }
        await controller.shutdown()
    }
}
