import Foundation
import MasqRules
import Testing
@testable import MasqCore
@testable import MasqDaemon

/// The control plane without iptables or NFQUEUE: each change validated whole, applied to the engine
/// under its lock, nothing changed on error.
@Suite struct ControlPlaneTests {
    static let rules = """
        -A -t 198.18.0.1:80 -s rr
        -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w 1

        """

    static func command(_ text: String) throws -> IPVSCommand {
        try IPVSCommandParser.parse(text.split(separator: " ").map(String.init))
    }

    @Test func editsReachTheEngine() throws {
        let core = try controlPlane(Self.rules)
        try core.edit(try Self.command("-a -t 198.18.0.1:80 -r 198.19.0.202:80 -m -w 3"))
        let servers = core.currentConfiguration.services[0].realServers
        #expect(servers.map(\.address) == [IPAddress("198.19.0.201")!, IPAddress("198.19.0.202")!])
        #expect(core.state().services[0].destinations.map(\.weight) == [1, 3])
    }

    @Test func aRefusedEditChangesNothing() throws {
        let core = try controlPlane(Self.rules)
        let before = core.currentConfiguration
        #expect(throws: RulesError.self) { try core.edit(try Self.command("-a -t 198.18.0.9:80 -r 198.19.0.202:80 -m")) }
        #expect(throws: RulesError.self) { try core.edit(try Self.command("-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m")) }
        #expect(core.currentConfiguration == before)
        #expect(core.state().services.map(\.destinations.count) == [1])
    }

    @Test func restoreIsAllOrNone() throws {
        let core = try controlPlane(Self.rules)
        let before = core.currentConfiguration
        // The third line names a service that does not exist: the first two are not applied either.
        #expect(throws: RulesError.self) {
            try core.restore("""
                -A -u 198.18.0.2:53 -s rr
                -a -u 198.18.0.2:53 -r 198.19.0.201:53 -m
                -a -u 198.18.0.3:53 -r 198.19.0.201:53 -m

                """)
        }
        #expect(core.currentConfiguration == before)
        #expect(core.state().services.count == 1)

        try core.restore("""
            -A -u 198.18.0.2:53 -s rr
            -a -u 198.18.0.2:53 -r 198.19.0.201:53 -m

            """)
        #expect(core.state().services.map(\.proto) == ["TCP", "UDP"])
    }

    @Test func zeroClearsTheCountersOfOneServiceOrAll() throws {
        let core = try controlPlane(Self.rules + "-A -t 198.18.0.2:80 -s rr\n-a -t 198.18.0.2:80 -r 198.19.0.202:80 -m\n")
        core.shared.process(tcpSegment(from: "198.18.1.10", 40000, to: "198.18.0.1", 80, flags: .syn))
        core.shared.process(tcpSegment(from: "198.18.1.10", 40001, to: "198.18.0.2", 80, flags: .syn))
        #expect(core.state().services.map(\.stats.connections) == [1, 1])

        let second = ServiceKey(proto: .tcp, address: IPv4Address("198.18.0.2")!, port: 80)
        try core.zero(second)
        #expect(core.state().services.map(\.stats.connections) == [1, 0])
        try core.zero(nil)
        #expect(core.state().services.map(\.stats.packetsIn) == [0, 0])
        // The connections themselves stay.
        #expect(core.state().connections == 2)

        let missing = ServiceKey(proto: .udp, address: IPv4Address("198.18.0.1")!, port: 80)
        #expect(throws: RulesError.self) { try core.zero(missing) }
    }

    @Test func timeoutsReachTheEngineAndSurviveAReplace() throws {
        let core = try controlPlane(Self.rules)
        core.setTimeouts(tcp: 100, tcpFin: 20, udp: 30)
        let timeouts = core.state().timeouts
        #expect(timeouts.tcp == 100 && timeouts.tcpFin == 20 && timeouts.udp == 30)
        #expect(core.shared.withLock { $0.engine.timeouts[.established] } == 100)
        // Health checks (and SIGHUP) replace the services; timeouts set at run time stay.
        core.replaceServices(try RulesFile.parse("-A -t 198.18.0.5:443 -s wlc\n"), reason: "test")
        #expect(core.state().timeouts.tcp == 100 && core.state().timeouts.udp == 30)
        #expect(core.state().services.map(\.port) == [443])
    }

    @Test func stateShowsTheEngine() throws {
        let core = try controlPlane(Self.rules)
        core.shared.process(tcpSegment(from: "198.18.1.10", 40000, to: "198.18.0.1", 80, flags: .syn))
        let state = core.state()
        #expect(state.connections == 1)
        #expect(state.services.count == 1)
        let service = state.services[0]
        #expect(service.address == "198.18.0.1" && service.port == 80 && service.scheduler == "rr")
        #expect(service.stats.packetsIn == 1 && service.destinations[0].stats.connections == 1)
        // A SYN not yet answered: an inactive connection, as ipvsadm counts it.
        #expect(service.destinations[0].inactiveConnections == 1 && service.destinations[0].activeConnections == 0)
    }

    @Test func oneTraceAtATime() throws {
        let core = try controlPlane(Self.rules)
        let directory = FileManager.default.temporaryDirectory.path
        let first = "\(directory)/masq-trace-\(UUID().uuidString).pcap", second = "\(directory)/masq-trace-\(UUID().uuidString).pcap"
        defer { try? FileManager.default.removeItem(atPath: first) }
        try core.startTrace(filter: FlowFilter(), packets: 10, seconds: 60, path: first)
        #expect(throws: ControlPlane.TraceRefusal.self) { try core.startTrace(filter: FlowFilter(), packets: 10, seconds: 60, path: second) }
        #expect(!FileManager.default.fileExists(atPath: second))
        #expect(core.shared.withLock { $0.trace?.path } == first)
    }
}
