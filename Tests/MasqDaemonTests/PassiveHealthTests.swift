import Logging
import MasqHealth
import Testing
@testable import MasqCore
@testable import MasqDaemon

/// The passive health signal without NFQUEUE: new connections a real server resets, as the engine
/// counts them, take it out after `HealthController.passiveThreshold` in a row; one it answers resets
/// the count.
@Suite struct PassiveHealthTests {
    static let keepalived = """
        virtual_server 198.18.0.1 80 {
            lb_algo rr
            lb_kind NAT
            protocol TCP
            real_server 198.19.0.201 80 {
                TCP_CHECK {
                    connect_timeout 1
                }
            }
        }

        """
    static let server = IPv4Address("198.19.0.201")!

    static func controller() throws -> (HealthController, ControlPlane) {
        let config = try KeepalivedParser.parse(text: keepalived)
        let core = ControlPlane(options: DaemonOptions(rulesPath: "/nonexistent"),
                              shared: SharedEngine(Engine(configuration: config.configuration)),
                              configuration: config.configuration, iptables: nil, logger: Logger(label: "test"))
        return (HealthController(config, core: core, logger: Logger(label: "test")), core)
    }

    /// A client's SYN, then the real server's answer: a reset, or a SYN-ACK the client acknowledges.
    static func connect(_ core: ControlPlane, clientPort: UInt16, refused: Bool) {
        core.shared.process(tcpSegment(from: "198.18.1.10", clientPort, to: "198.18.0.1", 80, flags: .syn))
        if refused {
            core.shared.process(tcpSegment(from: "198.19.0.201", 80, to: "198.18.1.10", clientPort, flags: [.rst, .ack]))
        } else {
            core.shared.process(tcpSegment(from: "198.19.0.201", 80, to: "198.18.1.10", clientPort, flags: [.syn, .ack]))
            core.shared.process(tcpSegment(from: "198.18.1.10", clientPort, to: "198.18.0.1", 80, flags: .ack))
        }
    }

    static func servers(_ core: ControlPlane) -> [IPAddress] {
        core.currentConfiguration.services[0].realServers.map(\.address)
    }

    @Test func threeRefusedHandshakesMarkTheServerDown() async throws {
        let (controller, core) = try Self.controller()
        #expect(Self.servers(core) == [.v4(Self.server)])
        for port: UInt16 in 40000..<40002 { Self.connect(core, clientPort: port, refused: true) }
        #expect(await controller.checkHandshakes().isEmpty)
        #expect(Self.servers(core) == [.v4(Self.server)])

        Self.connect(core, clientPort: 40002, refused: true)
        let events = await controller.checkHandshakes()
        // Its only real server gone, the service loses its quorum too.
        #expect(events.map(\.kind) == [.serverDown, .quorumLost])
        #expect(events.first?.server?.address == .v4(Self.server))
        #expect(Self.servers(core).isEmpty)
        // Acted on: the count starts over.
        #expect(core.shared.withLock { $0.engine.handshakeFailures(core.currentConfiguration.services[0].key, .v4(Self.server), 80) } == 0)
    }

    @Test func anAnsweredHandshakeResetsTheCount() async throws {
        let (controller, core) = try Self.controller()
        for port: UInt16 in 40000..<40002 { Self.connect(core, clientPort: port, refused: true) }
        Self.connect(core, clientPort: 40002, refused: false)
        for port: UInt16 in 40003..<40005 { Self.connect(core, clientPort: port, refused: true) }
        #expect(await controller.checkHandshakes().isEmpty)
        #expect(Self.servers(core) == [.v4(Self.server)])
    }
}
