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

    init(_ config: KeepalivedConfig, core: DaemonCore, logger: Logger) {
        monitor = Mutex(HealthMonitor(config, now: monotonicNanoseconds()))
        self.core = core
        self.logger = logger
    }

    /// SIGHUP: a new keepalived.conf; checks start over (servers up, as at start).
    func reload(_ config: KeepalivedConfig) {
        let fresh = HealthMonitor(config, now: monotonicNanoseconds())
        monitor.withLock { $0 = fresh }
        apply(fresh, reason: "SIGHUP")
    }

    private func apply(_ m: HealthMonitor, reason: String) {
        core.replaceServices(m.effectiveConfiguration(timeouts: core.currentConfiguration.timeouts), reason: reason)
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
        guard monitor.withLock({ $0 === m }) else { return m.nextDue }  // reloaded meanwhile
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
        for event in all {
            logger.notice("health: \(event)")
            let labels = [("service", "\(event.service)"),
                          ("real_server", event.server.map { "\($0.address):\($0.port)" } ?? ""),
                          ("event", event.kind.rawValue)]
            Counter(label: "masq_health_events_total", dimensions: labels).increment()
            if let script = event.script { runScript(script) }
        }
        if !all.isEmpty { apply(m, reason: "health check") }
        return m.nextDue
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
