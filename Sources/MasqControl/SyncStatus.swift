import Foundation
import MasqRules

/// The sync daemons as `masq sync-status`, `masq ready`, `masqadm -L --daemon` and the metrics see
/// them: each daemon's parameters (as the kernel completes them) and counters, whether this director
/// may take over, and which keepalived state it follows.
public struct SyncStatus: Equatable, Sendable, Codable {
    /// The master first, then the backup (the order `ipvsadm -L --daemon` prints them).
    public var daemons: [SyncDaemonStatus]
    /// Ready to be master: no backup daemon is waiting for its master's table (see `notReadyReason`).
    public var ready: Bool
    /// Why not ready, one line (`masq ready` prints it).
    public var notReadyReason: String?
    /// `--vrrp-notify-fifo`: what masq follows, nil when it follows nothing.
    public var vrrp: VRRPFollowStatus?

    public init(daemons: [SyncDaemonStatus], ready: Bool, notReadyReason: String? = nil, vrrp: VRRPFollowStatus? = nil) {
        self.daemons = daemons
        self.ready = ready
        self.notReadyReason = notReadyReason
        self.vrrp = vrrp
    }

    /// `ipvsadm -L --daemon`'s lines (`list_daemon`), one per daemon, each ending in a newline.
    public var listText: String {
        daemons.map { $0.config.listLine + "\n" }.joined()
    }

    /// The human form: one block per daemon, counters that are not zero.
    public var summary: String {
        var out = "ready: \(ready ? "yes" : "no\(notReadyReason.map { " (\($0))" } ?? "")")\n"
        if let vrrp {
            out += "keepalived: \(vrrp.fifo), following \(vrrp.followed ?? "the first instance or group named"), state \(vrrp.state ?? "none yet")\n"
        }
        if daemons.isEmpty { out += "no sync daemon\n" }
        for d in daemons {
            let c = d.counters
            out += d.config.listLine + ", from \(d.localAddress)\n"
            if let heard = d.masterHeard {
                out += "  master heard: \(heard ? "yes" : "no"), its table: \(d.tableComplete == true ? "complete" : "not yet")\n"
            }
            out += "  sent: \(c.datagramsSent) datagrams, \(c.entriesSent) entries; received: \(c.datagramsReceived) datagrams, \(c.entriesReceived) entries\n"
            func line(_ title: String, _ values: [String: UInt64]) {
                guard !values.isEmpty else { return }
                out += "  \(title): " + values.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + "\n"
            }
            line("control sent", c.controlSent)
            line("control received", c.controlReceived)
            line("applied", c.applied)
            line("rejected", c.rejected)
            if c.queueDrops > 0 || c.sendErrors > 0 { out += "  send queue drops: \(c.queueDrops), send errors: \(c.sendErrors)\n" }
            if c.walks > 0 { out += "  whole-table walks: \(c.walks)\n" }
            func time(_ t: Double?) -> String {
                guard let t else { return "never" }
                let formatter = ISO8601DateFormatter()
                formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
                return formatter.string(from: Date(timeIntervalSince1970: t))
            }
            out += "  last datagram sent: \(time(c.lastSent)), received: \(time(c.lastReceived))\n"
        }
        return out
    }
}

/// One running sync daemon.
public struct SyncDaemonStatus: Equatable, Sendable, Codable {
    public var config: SyncDaemonConfig
    /// The primary IPv4 address of the interface the daemon's sockets are bound to.
    public var localAddress: String
    public var counters: SyncCounters
    /// Backup: a masq master is heard (a heartbeat within the last 3 s).
    public var masterHeard: Bool?
    /// Backup: the whole table has arrived since the master was (re)heard.
    public var tableComplete: Bool?

    public init(config: SyncDaemonConfig, localAddress: String, counters: SyncCounters,
                masterHeard: Bool? = nil, tableComplete: Bool? = nil) {
        self.config = config
        self.localAddress = localAddress
        self.counters = counters
        self.masterHeard = masterHeard
        self.tableComplete = tableComplete
    }
}

/// A sync daemon's counters since it started. Reasons are the labels the metrics use: the decoder's
/// rejections (`SyncRejection`), the engine's apply results (`SyncApplyResult`) and the receiver's own.
public struct SyncCounters: Equatable, Sendable, Codable {
    public var datagramsSent: UInt64 = 0
    public var entriesSent: UInt64 = 0
    public var datagramsReceived: UInt64 = 0
    public var entriesReceived: UInt64 = 0
    /// Control messages by kind (`heartbeat`, `resync_request`, `resync_done`).
    public var controlSent: [String: UInt64] = [:]
    public var controlReceived: [String: UInt64] = [:]
    /// Datagrams or entries refused, by reason.
    public var rejected: [String: UInt64] = [:]
    /// Received entries applied, by result (`created`, `updated`, `replaced`, `stale_ignored`).
    public var applied: [String: UInt64] = [:]
    /// Updates the packet path could not hand over (the send queue was full).
    public var queueDrops: UInt64 = 0
    /// Datagrams not sent: the socket stayed full (EAGAIN) or refused them (errno).
    public var sendErrors: UInt64 = 0
    /// Whole-table walks finished (refresh and resync).
    public var walks: UInt64 = 0
    /// Unix times in seconds of the last datagram sent and received; nil: none yet.
    public var lastSent: Double?
    public var lastReceived: Double?

    public init() {}
}

/// What masq follows of keepalived's state (`--vrrp-notify-fifo`).
public struct VRRPFollowStatus: Equatable, Sendable, Codable {
    public var fifo: String
    /// `INSTANCE "NAME"` or `GROUP "NAME"`; nil until the first line names one (no choice given).
    public var followed: String?
    /// The last state of it (MASTER, BACKUP, FAULT, STOP); nil before the first line.
    public var state: String?

    public init(fifo: String, followed: String? = nil, state: String? = nil) {
        self.fifo = fifo
        self.followed = followed
        self.state = state
    }
}
