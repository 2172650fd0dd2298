import Logging
import MasqControl
import MasqCore
import MasqRules
import Synchronization

/// Why a sync daemon did not start or stop, as IPVS answers `IPVS_CMD_NEW_DAEMON`/`DEL_DAEMON`.
public enum SyncDaemonError: Error, Equatable, Sendable, CustomStringConvertible {
    /// One of that role runs already (EEXIST).
    case alreadyRunning(SyncDaemonRole)
    /// None of that role runs (ESRCH).
    case notRunning(SyncDaemonRole)
    /// Its sockets could not be set up.
    case socket(SyncSocketError)

    /// libipvs's words (`ipvs_strerror`), which masqadm prints as ipvsadm does.
    public var description: String {
        switch self {
        case .alreadyRunning: "Daemon has already run"
        case .notRunning: "No daemon is running"
        case .socket(let error): error.description
        }
    }

    public var controlError: ControlError {
        switch self {
        case .alreadyRunning: ControlError(.daemonExists, description)
        case .notRunning: ControlError(.noDaemon, description)
        case .socket: ControlError(.failed, description)
        }
    }
}

/// The director's sync daemons: at most a master and a backup (IPVS's `sync_state` bitmask), started
/// and stopped by masqadm, `masq run`'s options, the rules file or keepalived's state.
public final class SyncManager: Sendable {
    private let shared: SharedEngine
    private let tuning: SyncTuning
    private let logger: Logger
    private let daemons = Mutex<[SyncDaemonRole: SyncDaemon]>([:])
    /// A daemon has run since start: the iptables rules fail closed from then on.
    let everStarted = Atomic<Bool>(false)
    /// What `--vrrp-notify-fifo` follows (nil: nothing).
    let vrrp = Mutex<VRRPFollowStatus?>(nil)

    init(shared: SharedEngine, tuning: SyncTuning, logger: Logger) {
        self.shared = shared
        self.tuning = tuning
        self.logger = logger
    }

    /// Starts a daemon; the sockets are open and its thread runs when this returns.
    public func start(_ config: SyncDaemonConfig) throws(SyncDaemonError) {
        try daemons.withLock { (running: inout [SyncDaemonRole: SyncDaemon]) throws(SyncDaemonError) in
            guard running[config.role] == nil else { throw .alreadyRunning(config.role) }
            let daemon: SyncDaemon
            do throws(SyncSocketError) {
                daemon = try SyncDaemon(config, shared: shared, tuning: tuning, logger: logger)
            } catch {
                throw .socket(error)
            }
            daemon.start()
            running[config.role] = daemon
        }
        everStarted.store(true, ordering: .releasing)
    }

    /// Stops the daemon of `role` and waits for its thread.
    public func stop(_ role: SyncDaemonRole) throws(SyncDaemonError) {
        let daemon = daemons.withLock { $0.removeValue(forKey: role) }
        guard let daemon else { throw .notRunning(role) }
        daemon.stop()
    }

    /// Stops whichever run (at shutdown).
    public func stopAll() {
        for role in SyncDaemonRole.allCases { try? stop(role) }
    }

    public func isRunning(_ role: SyncDaemonRole) -> Bool { daemons.withLock { $0[role] != nil } }

    /// The daemons (master first), their counters, and whether this director may become master.
    public func status() -> SyncStatus {
        let running = daemons.withLock { d in SyncDaemonRole.allCases.compactMap { d[$0] } }
        var status = SyncStatus(daemons: running.map(\.status), ready: true, vrrp: vrrp.withLock { $0 })
        let now = monotonicNanoseconds()
        // A master is always ready (the moment keepalived's MASTER starts it, the backup may still run).
        let masterRuns = running.contains { $0.config.role == .master }
        if !masterRuns, let backup = running.first(where: { $0.config.role == .backup }),
           !backup.readiness.withLock({ $0.isReady(now: now) }) {
            status.ready = false
            status.notReadyReason = "backup: waiting for the master's table"
        } else if status.vrrp != nil && running.isEmpty {
            // Following keepalived, a daemon runs in every state; none means it could not start.
            status.ready = false
            status.notReadyReason = "following keepalived, but no sync daemon runs (see the log)"
        }
        return status
    }
}
