import Foundation
import Logging
import MasqCore
import MasqHealth
import Metrics
import ServiceLifecycle
import Synchronization

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
public final class HealthController: Sendable {
    private let monitor: Mutex<HealthMonitor>
    /// New connections in a row a real server must reset (or leave unanswered until SYN_RECV expires)
    /// before it is marked down without waiting for its checks.
    static let passiveThreshold: UInt32 = 3
    let core: DaemonCore
    let logger: Logger

    /// The daemon builds its engine from the keepalived.conf with every real server in; this gives it
    /// the servers the checks allow at start before the packet loop runs (keepalived never adds an
    /// `alpha` server until its first successful check), and handles what starting changed.
    init(_ config: KeepalivedConfig, core: DaemonCore, logger: Logger) {
        let m = HealthMonitor(config, now: monotonicNanoseconds())
        monitor = Mutex(m)
        self.core = core
        self.logger = logger
        handle(m.startEvents)
        apply(m, reason: "health checks at start")
    }

    /// SIGHUP: a new keepalived.conf. Real servers in both keep their health and services their
    /// quorum; new ones start as at start (down with alpha); removed ones run their notify_down.
    func reload(_ config: KeepalivedConfig) {
        let fresh = monitor.withLock { current in
            current = HealthMonitor(config, now: monotonicNanoseconds(), previous: current)
            return current
        }
        handle(fresh.startEvents)
        apply(fresh, reason: "SIGHUP")
    }

    /// Applies the monitor's view unless the engine already runs exactly those services (a health
    /// event that changes no destination, an alpha server's failed first check, need not touch it).
    private func apply(_ m: HealthMonitor, reason: String) {
        let current = core.currentConfiguration
        let next = m.effectiveConfiguration(timeouts: current.timeouts)
        guard next.services != current.services else { return }
        core.replaceServices(next, reason: reason)
    }

    func step() async -> Int64? {
        let m = monitor.withLock { $0 }
        let events = await m.tick(now: monotonicNanoseconds()) { check, address, port in
            let kind: Probe.Kind
            switch check.kind {
            case .tcp: kind = .tcp
            case .http(let http): kind = .http(urls: http.urls, virtualHost: nil)
            }
            return await Probe.run(kind, address: address, port: port, bindTo: check.bindTo, timeout: check.connectTimeout)
        }
        // Reloaded meanwhile: that monitor recorded nothing.
        guard monitor.withLock({ $0 === m }) else { return m.nextDue }
        var all = events
        // Passive: real servers that reset or never completed new connections, from the engine.
        let now = monotonicNanoseconds()
        for (key, server) in m.checkedServers {
            let failures = core.shared.withLock { $0.handshakeFailures(key, server.address, server.port) }
            if failures >= Self.passiveThreshold {
                _ = core.shared.withLock { $0.handshakeFailures(key, server.address, server.port, reset: true) }
                all += m.markDown(service: key, server: server,
                                  reason: "passive: \(failures) new connections in a row reset or not completed", now: now)
            }
        }
        handle(all)
        if !all.isEmpty { apply(m, reason: "health check") }
        return m.nextDue
    }

    /// Logs and counts each event and starts its script.
    private func handle(_ events: [HealthEvent]) {
        for event in events {
            log(event)
            if let script = event.script { runScript(script) }
        }
    }

    /// keepalived runs notify scripts without a shell, split like its parser does; bounded to 10 s.
    private func runScript(_ commandLine: String) {
        guard let argv = KeepalivedParser.scriptArguments(commandLine), let program = argv.first else { return }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = Array(argv.dropFirst())
        do {
            try process.run()
        } catch {
            logger.error("notify script \(commandLine) could not start: \(error)")
            return
        }
        let logger = self.logger
        DispatchQueue.global().asyncAfter(deadline: .now() + 10) {
            if process.isRunning {
                process.terminate()
                logger.warning("notify script \(commandLine) ran over 10 s and was stopped")
            }
        }
    }

    private func log(_ event: HealthEvent) {
        logger.notice("health: \(event)")
        let labels = [("service", "\(event.service)"),
                      ("real_server", event.server.map { "\($0.address):\($0.port)" } ?? ""),
                      ("event", event.kind.rawValue)]
        Counter(label: "masq_health_events_total", dimensions: labels).increment()
    }
}

struct HealthService: Service {
    let controller: HealthController

    func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let next = await controller.step()
            let wait = min(max((next ?? Int64.max) - monotonicNanoseconds(), 10_000_000), 100_000_000)
            try? await Task.sleep(for: .nanoseconds(wait))
        }
    }
}
