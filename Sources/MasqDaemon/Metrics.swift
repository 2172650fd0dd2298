import Foundation
import Hummingbird
import Logging
import MasqControl
import MasqCore
import MasqRules
import Metrics
import Prometheus
import ServiceLifecycle
import Synchronization

/// Prometheus metrics over swift-metrics + swift-prometheus, served by Hummingbird at `/metrics`.
///
/// The numbers are the engine's own counters, the ones `masqadm --stats` shows: at each scrape the
/// publisher copies them under the engine lock (`MetricsSnapshot`), then, outside it, moves each
/// swift-metrics counter on by what it has not published yet (`PublishedTotals`), and sets the
/// gauges. The packet path itself never touches a metrics object, except one histogram sample per
/// receive batch (the verdict batch size).
public final class MetricsPublisher: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// What each counter series has been moved to so far; held for a whole scrape, so two scrapes
    /// at once cannot both publish the same increase.
    private let published = Mutex(PublishedTotals())
    private let core: ControlPlane
    /// The kernel's per-queue drop counters (`masq_queue_kernel_dropped_total`).
    let kernelQueues: KernelQueueCounters

    /// Bootstraps swift-metrics with a Prometheus factory (once per process).
    public init(core: ControlPlane) {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultValueHistogramBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256]
        MetricsSystem.bootstrap(factory)
        self.core = core
        kernelQueues = KernelQueueCounters(logger: core.logger)
    }

    /// Brings every metric up to date and renders the exposition text.
    public func scrape() -> String {
        let snapshot = core.shared.withLock { MetricsSnapshot($0) }
        let sendFailures = core.unreachableSender?.failures.load(ordering: .relaxed) ?? 0
        let kernelDrops = kernelQueues.drops().filter { core.options.queue.numbers.contains($0.0) }
        let sync = core.sync.status()
        published.withLock { totals in
            snapshot.publish(into: &totals, unreachableSendFailures: sendFailures)
            Self.publish(sync, into: &totals)
            for (queue, full, user) in kernelDrops {
                totals.count("masq_queue_kernel_dropped_total", [("queue", "\(queue)"), ("cause", "queue_full")], full)
                totals.count("masq_queue_kernel_dropped_total", [("queue", "\(queue)"), ("cause", "socket")], user)
            }
        }
        return registry.emitToString()
    }

    /// The sync daemons' counters, `masq_sync_*` by role (and direction, kind, reason, result), the
    /// last datagram times, which daemons run and whether this director is ready to be master.
    static func publish(_ sync: SyncStatus, into totals: inout PublishedTotals) {
        func gauge(_ name: String, _ labels: [(String, String)], _ value: Double) {
            Gauge(label: name, dimensions: labels).record(value)
        }
        for role in SyncDaemonRole.allCases {
            gauge("masq_sync_daemon_running", [("role", role.rawValue)], sync.daemons.contains { $0.config.role == role } ? 1 : 0)
        }
        gauge("masq_sync_ready", [], sync.ready ? 1 : 0)
        for daemon in sync.daemons {
            let c = daemon.counters
            let role = ("role", daemon.config.role.rawValue)
            totals.count("masq_sync_datagrams_total", [role, ("direction", "sent")], c.datagramsSent)
            totals.count("masq_sync_datagrams_total", [role, ("direction", "received")], c.datagramsReceived)
            totals.count("masq_sync_entries_total", [role, ("direction", "sent")], c.entriesSent)
            totals.count("masq_sync_entries_total", [role, ("direction", "received")], c.entriesReceived)
            /// One series per key of a by-label count, the key under `label`, in key order.
            func countEach(_ name: String, _ labels: [(String, String)], _ label: String, _ counts: [String: UInt64]) {
                for (key, n) in counts.sorted(by: { $0.key < $1.key }) { totals.count(name, labels + [(label, key)], n) }
            }
            countEach("masq_sync_control_messages_total", [role, ("direction", "sent")], "kind", c.controlSent)
            countEach("masq_sync_control_messages_total", [role, ("direction", "received")], "kind", c.controlReceived)
            countEach("masq_sync_rejected_total", [role], "reason", c.rejected)
            countEach("masq_sync_applied_total", [role], "result", c.applied)
            totals.count("masq_sync_queue_dropped_total", [role], c.queueDrops)
            totals.count("masq_sync_send_errors_total", [role], c.sendErrors)
            totals.count("masq_sync_table_walks_total", [role], c.walks)
            if let t = c.lastSent { gauge("masq_sync_last_datagram_timestamp_seconds", [role, ("direction", "sent")], t) }
            if let t = c.lastReceived {
                gauge("masq_sync_last_datagram_timestamp_seconds", [role, ("direction", "received")], t)
            }
        }
    }

}

/// `/proc/net/netfilter/nfnetlink_queue` (net/netfilter/nfnetlink_queue.c, seq_show): per bound queue,
/// its number, portid, queued, copy mode, copy range, queue-full drops, user (socket) drops, last id, 1.
/// The file is 0440 root's: masq.service's User=masq cannot read it, whatever its capabilities, and
/// then `masq_queue_kernel_dropped_total` is not exported; that is said once, not at every scrape.
final class KernelQueueCounters: Sendable {
    static let path = "/proc/net/netfilter/nfnetlink_queue"
    private let read: @Sendable () -> Result<String, ReadError>
    private let logger: Logger
    private let warned = Mutex(false)

    init(logger: Logger, read: @escaping @Sendable () -> Result<String, ReadError> = { readProcFile(KernelQueueCounters.path) }) {
        self.logger = logger
        self.read = read
    }

    /// Each bound queue's number, queue-full drops and user drops; none when the file cannot be read
    /// (then, the first time, a warning naming the file and what is lost).
    func drops() -> [(UInt16, UInt64, UInt64)] {
        switch read() {
        case .success(let text):
            return Self.parse(text)
        case .failure(let error):
            if warned.withLock({ done in defer { done = true }; return !done }) {
                let why = error.code == EACCES ? "are root-only (mode 0440; masq runs as uid \(geteuid()))" : "cannot be read (\(error))"
                logger.warning("queue drop counters from \(Self.path) \(why): masq_queue_kernel_dropped_total is not exported")
            }
            return []
        }
    }

    static func parse(_ text: String) -> [(UInt16, UInt64, UInt64)] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 7, let q = UInt16(f[0]), let full = UInt64(f[5]), let user = UInt64(f[6]) else { return nil }
            return (q, full, user)
        }
    }
}

/// The HTTP endpoint: Hummingbird serving `GET /metrics` (Prometheus text format 0.0.4).
public func makeMetricsServer(_ publisher: MetricsPublisher, host: String, port: Int, logger: Logger) -> some Service {
    let router = Router()
    router.get("metrics") { _, _ -> Response in
        let text = publisher.scrape()
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }
    var serverLogger = logger
    serverLogger.logLevel = .warning
    return Application(router: router, configuration: .init(address: .hostname(host, port: port)), logger: serverLogger)
}

/// The totals each swift-metrics counter series has been moved to: a scrape publishes only the
/// increase since the last (a swift-metrics counter only counts up; setting it to the engine's total
/// would add the total again at every scrape).
struct PublishedTotals {
    private var totals: [String: Int64] = [:]

    /// The increase of series `name{labels}` since the last call (the whole total the first time). A
    /// total that went down (zeroed with `masqadm -Z`) publishes nothing, and counts on from there.
    mutating func increase(_ name: String, _ labels: [(String, String)], to value: UInt64) -> Int64 {
        let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
        let total = Int64(truncatingIfNeeded: value)
        let delta = total - (totals[key] ?? 0)
        totals[key] = total
        return delta
    }

    /// Moves the counter on by the increase; creating it registers the series (at 0 until something
    /// happens).
    mutating func count(_ name: String, _ labels: [(String, String)], _ value: UInt64) {
        let delta = increase(name, labels, to: value)
        let counter = Counter(label: name, dimensions: labels)
        if delta > 0 { counter.increment(by: delta) }
    }
}

/// What a scrape reads from the engine, copied under its lock; labelled and published outside it.
struct MetricsSnapshot: Sendable {
    struct RealServer: Sendable {
        var address: IPAddress
        var port: UInt16
        var stats: TrafficCounters
        var activeConnections: Int32
        var inactiveConnections: Int32
        var weight: Int32
    }
    struct Service: Sendable {
        var key: ServiceKey
        var stats: TrafficCounters
        var realServers: [RealServer]
    }

    var counters: EngineCounters
    var unreachableBuilt: UInt64
    var unreachableUnanswerable: UInt64
    var unreachableRateLimited: UInt64
    var pressure: Bool
    var lockAcquisitions: UInt64
    var lockWaits: UInt64
    var tableEntries: Int
    var tableCapacity: Int
    var services: [Service]
    var queues: [(UInt16, LoopCounters)]
    var tableFile: TableFileFigures

    init(_ state: borrowing EngineState) {
        let engine = state.engine
        counters = engine.counters
        unreachableBuilt = engine.unreachable.sent
        unreachableUnanswerable = engine.unreachable.unanswerable
        unreachableRateLimited = engine.unreachable.rateLimited
        pressure = engine.pressure
        lockAcquisitions = state.lockAcquisitions
        lockWaits = state.lockWaits
        tableEntries = engine.table.connectionCount + engine.table.templateCount
        tableCapacity = engine.table.capacity
        services = engine.services.map { service in
            Service(key: service.key, stats: engine.serviceStats[Int(service.id)],
                    realServers: service.destinations.map { d in
                        RealServer(address: d.address, port: d.port, stats: d.stats,
                                   activeConnections: d.activeConnections, inactiveConnections: d.inactiveConnections,
                                   weight: d.weight)
                    })
        }
        queues = state.queueCounters.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        tableFile = state.tableFile
    }

    func publish(into totals: inout PublishedTotals, unreachableSendFailures: UInt64) {
        func gauge(_ name: String, _ labels: [(String, String)], _ value: Double) {
            Gauge(label: name, dimensions: labels).record(value)
        }
        let c = counters
        totals.count("masq_packets_total", [("result", "rewritten_inbound")], c.rewrittenInbound)
        totals.count("masq_packets_total", [("result", "rewritten_outbound")], c.rewrittenOutbound)
        totals.count("masq_packets_total", [("result", "untouched")], c.untouched)
        for reason in DropReason.allCases {
            totals.count("masq_dropped_packets_total", [("reason", reason.description)], c[reason])
        }
        totals.count("masq_truncated_packets_total", [], c.truncated)
        for reason in EvictionReason.allCases {
            totals.count("masq_evicted_connections_total", [("reason", reason.description)], c[reason])
        }
        totals.count("masq_pressure_mode_entered_total", [], c.pressureEntered)
        totals.count("masq_unreachable_built_total", [], unreachableBuilt)
        totals.count("masq_unreachable_unanswerable_total", [], unreachableUnanswerable)
        totals.count("masq_unreachable_send_failures_total", [], unreachableSendFailures)
        totals.count("masq_unreachable_rate_limited_total", [], unreachableRateLimited)
        gauge("masq_pressure_mode", [], pressure ? 1 : 0)
        totals.count("masq_connections_created_total", [], c.connectionsCreated)
        totals.count("masq_connections_expired_total", [], c.expired)
        totals.count("masq_engine_lock_acquisitions_total", [], lockAcquisitions)
        totals.count("masq_engine_lock_waits_total", [], lockWaits)
        gauge("masq_connection_table_entries", [], Double(tableEntries))
        gauge("masq_connection_table_capacity", [], Double(tableCapacity))
        // The state file (none with --no-state-file): its generation (1: created by this masq), what
        // this masq adopted, and the last adoption's gap (the previous masq's last batch to this
        // one's first), once measured.
        if tableFile.path != nil {
            gauge("masq_state_file_generation", [], Double(tableFile.generation))
            gauge("masq_state_file_adopted_connections", [], Double(tableFile.adoptedConnections))
            if let gap = tableFile.restartGapNanoseconds { gauge("masq_restart_gap_seconds", [], Double(gap) / 1e9) }
        }
        /// A service's or real server's counters (`--stats`): PREFIX_connections_total, and
        /// PREFIX_packets_total and PREFIX_bytes_total by direction.
        func countTraffic(_ prefix: String, _ labels: [(String, String)], _ t: TrafficCounters) {
            totals.count("\(prefix)_connections_total", labels, t.connections)
            totals.count("\(prefix)_packets_total", labels + [("direction", "in")], t.packetsIn)
            totals.count("\(prefix)_packets_total", labels + [("direction", "out")], t.packetsOut)
            totals.count("\(prefix)_bytes_total", labels + [("direction", "in")], t.bytesIn)
            totals.count("\(prefix)_bytes_total", labels + [("direction", "out")], t.bytesOut)
        }
        for service in services {
            let name = service.key.description  // "TCP 198.18.0.1:80", "FWM 1"
            countTraffic("masq_service", [("service", name)], service.stats)
            for d in service.realServers {
                let labels = [("service", name), ("real_server", d.address.endpoint(d.port))]
                countTraffic("masq_real_server", labels, d.stats)
                gauge("masq_real_server_active_connections", labels, Double(d.activeConnections))
                gauge("masq_real_server_inactive_connections", labels, Double(d.inactiveConnections))
                gauge("masq_real_server_weight", labels, Double(d.weight))
            }
        }
        for (queue, q) in queues {
            let labels = [("queue", "\(queue)")]
            totals.count("masq_queue_packets_total", labels, q.packets)
            totals.count("masq_queue_receives_total", labels, q.receives)
            totals.count("masq_queue_sendmsg_total", labels, q.sendCalls)
            totals.count("masq_queue_enobufs_total", labels, q.enobufs)
            totals.count("masq_queue_netlink_errors_total", labels, q.netlinkErrors)
        }
    }
}
