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
}
