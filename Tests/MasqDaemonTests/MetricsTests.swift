import Foundation
import Testing
@testable import MasqCore
@testable import MasqDaemon

/// The publisher moves each swift-metrics counter on by the engine counters' increase since the last
/// scrape: a total is never published twice.
@Suite struct MetricsTests {
    @Test func increasesArePublishedOnce() {
        var totals = PublishedTotals()
        let labels = [("result", "untouched")]
        #expect(totals.increase("masq_packets_total", labels, to: 5) == 5)
        #expect(totals.increase("masq_packets_total", labels, to: 5) == 0)
        #expect(totals.increase("masq_packets_total", labels, to: 8) == 3)
        // Each series on its own.
        #expect(totals.increase("masq_packets_total", [("result", "rewritten_inbound")], to: 2) == 2)
        #expect(totals.increase("masq_packets_total", labels, to: 8) == 0)
    }

    @Test func aZeroedTotalCountsOnFromZero() {
        var totals = PublishedTotals()
        #expect(totals.increase("masq_service_connections_total", [("service", "s")], to: 10) == 10)
        // `masqadm -Z`: nothing goes back, and what comes after is counted.
        #expect(totals.increase("masq_service_connections_total", [("service", "s")], to: 0) <= 0)
        #expect(totals.increase("masq_service_connections_total", [("service", "s")], to: 4) == 4)
    }

    /// The whole path: an engine's counters through two scrapes into the Prometheus text. (The only
    /// test that bootstraps swift-metrics, which a process does once.)
    @Test func scrapesShowTheEngineTotals() throws {
        let core = try controlPlane("-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m\n")
        let publisher = MetricsPublisher(core: core)
        core.shared.process(tcpSegment(from: "198.18.1.10", 40000, to: "198.18.0.1", 80, flags: .syn))
        let first = publisher.scrape()
        #expect(first.contains(#"masq_packets_total{result="rewritten_inbound"} 1"#))
        #expect(first.contains(#"masq_service_connections_total{service="TCP 198.18.0.1:80"} 1"#))
        #expect(publisher.scrape().contains(#"masq_packets_total{result="rewritten_inbound"} 1"#))
        core.shared.process(tcpSegment(from: "198.18.1.10", 40001, to: "198.18.0.1", 80, flags: .syn))
        let third = publisher.scrape()
        #expect(third.contains(#"masq_packets_total{result="rewritten_inbound"} 2"#))
        #expect(third.contains(#"masq_engine_lock_acquisitions_total "#))
        // No state file (as this control plane's): no state file series.
        #expect(!third.contains("masq_state_file_generation"))
        // An adopted table: its generation and what it held; the gap once the first batch measured it.
        core.shared.withLock { state in
            state.tableFile = TableFileFigures(path: "/dev/shm/t.table")
            state.tableFile.generation = 3
            state.tableFile.adoptedConnections = 2
            state.tableFile.awaitingFirstPacketSince = 1_000_000_000
        }
        let adopted = publisher.scrape()
        #expect(adopted.contains("masq_state_file_generation 3"))
        #expect(adopted.contains("masq_state_file_adopted_connections 2"))
        #expect(!adopted.contains("masq_restart_gap_seconds"))
        _ = core.shared.withLock { $0.tableFile.firstBatchGap(at: 1_045_000_000) }
        #expect(publisher.scrape().contains("masq_restart_gap_seconds 0.045"))
    }

    /// Under User=masq /proc/net/netfilter/nfnetlink_queue is root's (0440): the kernel's drop
    /// counters are not exported, which is said once, not at every scrape.
    @Test func unreadableKernelCountersAreSaidOnce() throws {
        let capture = LogCapture()
        let counters = KernelQueueCounters(logger: capture.logger(), read: { .failure(ReadError(code: EACCES)) })
        #expect(counters.drops().isEmpty)
        #expect(counters.drops().isEmpty)
        #expect(counters.drops().isEmpty)
        let lines = capture.lines.withLock { $0 }
        try #require(lines.count == 1)
        #expect(lines[0].0 == .warning)
        #expect(lines[0].1 == "queue drop counters from /proc/net/netfilter/nfnetlink_queue are root-only (mode 0440; masq runs as uid \(geteuid())): masq_queue_kernel_dropped_total is not exported")

        let missing = LogCapture()
        let gone = KernelQueueCounters(logger: missing.logger(), read: { .failure(ReadError(code: ENOENT)) })
        #expect(gone.drops().isEmpty && gone.drops().isEmpty)
        #expect(missing.lines.withLock { $0.map(\.1) } == [
            "queue drop counters from /proc/net/netfilter/nfnetlink_queue cannot be read (No such file or directory): masq_queue_kernel_dropped_total is not exported"])
    }

    @Test func readableKernelCountersAreParsedWithoutAWord() {
        let capture = LogCapture()
        let text = "    0   4242     0 2 65531     7    3        9  1\n    1   4243     0 2 65531     0    0        0  1\n"
        let counters = KernelQueueCounters(logger: capture.logger(), read: { .success(text) })
        let drops = counters.drops()
        #expect(drops.map(\.0) == [0, 1] && drops.map(\.1) == [7, 0] && drops.map(\.2) == [3, 0])
        #expect(capture.lines.withLock { $0.isEmpty })
    }

    @Test func procFilesAreReadWithTheirErrno() {
        #expect(readProcFile("/proc/self/stat").map { $0.hasPrefix("\(getpid()) ") } == .success(true))
        #expect(readProcFile("/proc/no-such-file-masq") == .failure(ReadError(code: ENOENT)))
    }
}
