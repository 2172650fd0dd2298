import Foundation
import Hummingbird
import Logging
import MasqCore
import Metrics
import Prometheus
import ServiceLifecycle

/// Prometheus metrics over swift-metrics + swift-prometheus, served by Hummingbird at `/metrics`.
///
/// The numbers are the engine's own counters, the ones `masqadm --stats` shows: at each scrape the
/// publisher reads them under the engine lock and moves each swift-metrics counter on by what it has
/// not published yet, and sets the gauges. The packet path itself never touches a metrics object,
/// except one histogram sample per receive batch (the verdict batch size).
public final class MetricsPublisher: @unchecked Sendable {
    public let registry: PrometheusCollectorRegistry
    private let lock = NSLock()
    private var published: [String: Int64] = [:]
    private let core: DaemonCore

    /// Bootstraps swift-metrics with a Prometheus factory (once per process).
    public init(core: DaemonCore) {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultValueHistogramBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256]
        MetricsSystem.bootstrap(factory)
        self.core = core
    }

    private func count(_ name: String, _ labels: [(String, String)], _ value: UInt64) {
        let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
        let total = Int64(truncatingIfNeeded: value)
        let delta = total - (published[key] ?? 0)
        published[key] = total
        // Creating the counter registers the series (at 0 until something happens).
        let counter = Counter(label: name, dimensions: labels)
        if delta > 0 { counter.increment(by: delta) }
    }

    private func gauge(_ name: String, _ labels: [(String, String)], _ value: Double) {
        Gauge(label: name, dimensions: labels).record(value)
    }

    /// Brings every metric up to date and renders the exposition text.
    public func scrape() -> String {
        lock.lock()
        defer { lock.unlock() }
        let shared = core.shared
        shared.withLock { engine in
            let c = engine.counters
            count("masq_packets_total", [("result", "rewritten_inbound")], c.rewrittenInbound)
            count("masq_packets_total", [("result", "rewritten_outbound")], c.rewrittenOutbound)
            count("masq_packets_total", [("result", "untouched")], c.untouched)
            for reason in DropReason.allCases {
                count("masq_dropped_packets_total", [("reason", reason.description)], c[reason])
            }
            count("masq_truncated_packets_total", [], c.truncated)
            for reason in EvictionReason.allCases {
                count("masq_evicted_connections_total", [("reason", reason.description)], c[reason])
            }
            count("masq_pressure_mode_entered_total", [], c.pressureEntered)
            count("masq_unreachable_built_total", [], engine.unreachable.sent)
            count("masq_unreachable_unanswerable_total", [], engine.unreachable.unanswerable)
            count("masq_unreachable_send_failures_total", [], core.unreachableSender?.failures.load(ordering: .relaxed) ?? 0)
            count("masq_unreachable_rate_limited_total", [], engine.unreachable.rateLimited)
            gauge("masq_pressure_mode", [], engine.pressure ? 1 : 0)
            count("masq_connections_created_total", [], c.connectionsCreated)
            count("masq_connections_expired_total", [], c.expired)
            count("masq_engine_lock_acquisitions_total", [], shared.lockAcquisitions)
            count("masq_engine_lock_waits_total", [], shared.lockWaits)
            gauge("masq_connection_table_entries", [], Double(engine.table.connectionCount + engine.table.templateCount))
            gauge("masq_connection_table_capacity", [], Double(engine.table.capacity))
            for service in engine.services {
                let name = "\(service.key.proto) \(service.key.address):\(service.key.port)"
                let s = engine.serviceStats[Int(service.id)]
                count("masq_service_connections_total", [("service", name)], s.connections)
                count("masq_service_packets_total", [("service", name), ("direction", "in")], s.packetsIn)
                count("masq_service_packets_total", [("service", name), ("direction", "out")], s.packetsOut)
                count("masq_service_bytes_total", [("service", name), ("direction", "in")], s.bytesIn)
                count("masq_service_bytes_total", [("service", name), ("direction", "out")], s.bytesOut)
                for d in service.destinations {
                    let labels = [("service", name), ("real_server", "\(d.address):\(d.port)")]
                    let r = d.stats
                    count("masq_real_server_connections_total", labels, r.connections)
                    count("masq_real_server_packets_total", labels + [("direction", "in")], r.packetsIn)
                    count("masq_real_server_packets_total", labels + [("direction", "out")], r.packetsOut)
                    count("masq_real_server_bytes_total", labels + [("direction", "in")], r.bytesIn)
                    count("masq_real_server_bytes_total", labels + [("direction", "out")], r.bytesOut)
                    gauge("masq_real_server_active_connections", labels, Double(d.activeConnections))
                    gauge("masq_real_server_inactive_connections", labels, Double(d.inactiveConnections))
                    gauge("masq_real_server_weight", labels, Double(d.weight))
                }
            }
            for (queue, q) in shared.queueCounters {
                let labels = [("queue", "\(queue)")]
                count("masq_queue_packets_total", labels, q.packets)
                count("masq_queue_receives_total", labels, q.receives)
                count("masq_queue_sendmsg_total", labels, q.sendCalls)
                count("masq_queue_enobufs_total", labels, q.enobufs)
                count("masq_queue_netlink_errors_total", labels, q.netlinkErrors)
            }
        }
        for (queue, full, user) in Self.kernelQueueDrops() where core.options.queue.numbers.contains(queue) {
            count("masq_queue_kernel_dropped_total", [("queue", "\(queue)"), ("cause", "queue_full")], full)
            count("masq_queue_kernel_dropped_total", [("queue", "\(queue)"), ("cause", "socket")], user)
        }
        return registry.emitToString()
    }

    /// `/proc/net/netfilter/nfnetlink_queue`: queue, portid, queued, copy mode, copy range,
    /// queue-full drops, user (socket) drops, last id, 1.
    static func kernelQueueDrops() -> [(UInt16, UInt64, UInt64)] {
        guard let text = try? String(contentsOfFile: "/proc/net/netfilter/nfnetlink_queue", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
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
