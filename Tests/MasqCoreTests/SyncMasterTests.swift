import MasqRules
import Testing
@testable import MasqCore

/// The master's side of connection sync (IPVS `ip_vs_sync_conn_needed`, reference §1.4), as Katran
/// tests its packet path: a table of {description, packet sequence, expected pushed updates}. Each
/// case runs its packets through one connection (one client port) and reads what the outbox got.
@Suite struct SyncMasterTests {
    static let client = PacketBuilder(source: addr("198.18.0.12"), destination: addr("198.18.0.1"))
    static let server = PacketBuilder(source: addr("198.19.0.201"), destination: addr("198.18.0.12"))

    static let rules = """
        -A -t 198.18.0.1:80 -s rr
        -a -t 198.18.0.1:80 -r 198.19.0.201:8080 -m
        -A -u 198.18.0.1:53 -s rr
        -a -u 198.18.0.1:53 -r 198.19.0.201:53 -m
        -A -t 198.18.0.1:22 -s rr -p 300
        -a -t 198.18.0.1:22 -r 198.19.0.201:22 -m
        """

    /// One packet of the connection, `times` times: a client's (inbound) or the real server's.
    enum Step: CustomStringConvertible {
        case tcpIn(TCPFlags, times: Int = 1)
        case tcpOut(TCPFlags, times: Int = 1)
        case udpIn(times: Int = 1)
        case udpOut(times: Int = 1)

        var times: Int {
            switch self {
            case .tcpIn(_, let n), .tcpOut(_, let n), .udpIn(let n), .udpOut(let n): n
            }
        }
        var description: String {
            switch self {
            case .tcpIn(let f, let n): "in \(f.rawValue)×\(n)"
            case .tcpOut(let f, let n): "out \(f.rawValue)×\(n)"
            case .udpIn(let n): "udp in×\(n)"
            case .udpOut(let n): "udp out×\(n)"
            }
        }
    }

    /// What one push carried, in the outbox's order: the client packet count it came at (the
    /// connection's packetsIn then), its state, whether it is the template, counted active, timeout.
    struct Pushed: Equatable, CustomStringConvertible {
        var atPacket: UInt32
        var state: ConnectionState
        var template = false
        var active = false
        var timeout: UInt32
        var description: String { "@\(atPacket) \(state)\(template ? " template" : "")\(active ? " active" : "") \(timeout)s" }
    }

    struct Case: CustomTestStringConvertible, Sendable {
        var description: String
        var port: UInt16 = 80
        var settings = SyncSettings()
        var steps: [Step]
        var expected: [Pushed]
        var testDescription: String { description }
    }

    static let handshake: [Step] = [.tcpIn(.syn), .tcpOut([.syn, .ack]), .tcpIn(.ack)]  // 2 client packets, ESTABLISHED

    static let cases: [Case] = [
        Case(description: "an established connection: at the 3rd client packet, then every 50",
             steps: handshake + [.tcpIn(.ack, times: 51), .tcpOut(.ack, times: 10), .tcpIn(.ack, times: 50)],
             expected: [Pushed(atPacket: 3, state: .established, active: true, timeout: 900),
                        Pushed(atPacket: 53, state: .established, active: true, timeout: 900),
                        Pushed(atPacket: 103, state: .established, active: true, timeout: 900)]),
        Case(description: "a handshake that never completes is never sent",
             steps: [.tcpIn(.syn, times: 60)], expected: []),
        Case(description: "the real server's packets never send anything",
             steps: handshake + [.tcpOut(.ack, times: 100)], expected: []),
        Case(description: "the client's FIN: CLOSE_WAIT at once, then nothing until the period",
             steps: handshake + [.tcpIn(.ack, times: 2), .tcpIn([.fin, .ack]), .tcpIn(.ack, times: 3)],
             expected: [Pushed(atPacket: 3, state: .established, active: true, timeout: 900),
                        Pushed(atPacket: 5, state: .closeWait, timeout: 60)]),
        Case(description: "the server's FIN is sent at the client's next packet (FIN_WAIT), then TIME_WAIT",
             steps: handshake + [.tcpIn(.ack), .tcpOut([.fin, .ack]), .tcpIn(.ack), .tcpIn([.fin, .ack])],
             expected: [Pushed(atPacket: 3, state: .established, active: true, timeout: 900),
                        Pushed(atPacket: 4, state: .finWait, timeout: 120),
                        Pushed(atPacket: 5, state: .timeWait, timeout: 120)]),
        Case(description: "the client's RST: CLOSE at once, even before the threshold",
             steps: handshake + [.tcpIn(.rst)],
             expected: [Pushed(atPacket: 3, state: .close, timeout: 10)]),
        Case(description: "a FIN in the handshake (SYN_RECV to TIME_WAIT) is sent: a closing state",
             steps: [.tcpIn(.syn), .tcpIn(.fin)],
             expected: [Pushed(atPacket: 2, state: .timeWait, timeout: 120)]),
        Case(description: "period 0: only at the threshold, and still at every closing change",
             settings: SyncSettings(threshold: 3, period: 0),
             steps: handshake + [.tcpIn(.ack, times: 60), .tcpIn([.fin, .ack])],
             expected: [Pushed(atPacket: 3, state: .established, active: true, timeout: 900),
                        Pushed(atPacket: 63, state: .closeWait, timeout: 60)]),
        Case(description: "threshold 10 period 20", settings: SyncSettings(threshold: 10, period: 20),
             steps: handshake + [.tcpIn(.ack, times: 30)],
             expected: [Pushed(atPacket: 10, state: .established, active: true, timeout: 900),
                        Pushed(atPacket: 30, state: .established, active: true, timeout: 900)]),
        Case(description: "UDP: the same threshold and period, from the first datagram on", port: 53,
             steps: [.udpIn(times: 2), .udpOut(times: 5), .udpIn(times: 51)],
             expected: [Pushed(atPacket: 3, state: .udp, timeout: 300),
                        Pushed(atPacket: 53, state: .udp, timeout: 300)]),
        Case(description: "UDP with threshold 1: the first datagram is sent", port: 53,
             settings: SyncSettings(threshold: 1, period: 0),
             steps: [.udpIn(times: 5)],
             expected: [Pushed(atPacket: 1, state: .udp, timeout: 300)]),
        Case(description: "persistence: the template right after its connection, each time", port: 22,
             steps: handshake + [.tcpIn(.ack, times: 51), .tcpIn([.fin, .ack])],
             expected: [Pushed(atPacket: 3, state: .established, active: true, timeout: 900),
                        Pushed(atPacket: 3, state: .none, template: true, timeout: 300),
                        Pushed(atPacket: 53, state: .established, active: true, timeout: 900),
                        Pushed(atPacket: 53, state: .none, template: true, timeout: 300),
                        Pushed(atPacket: 54, state: .closeWait, timeout: 60),
                        Pushed(atPacket: 54, state: .none, template: true, timeout: 300)]),
    ]

    @Test(arguments: cases)
    func pushes(_ c: Case) throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        let outbox = SyncOutbox(capacity: 64)
        engine.syncOutbox = outbox
        engine.syncSettings = c.settings
        var pushed: [Pushed] = []
        var buffer = [SyncUpdate](repeating: SyncUpdate(Connection.blank), count: 64)
        var time = 1.0
        for step in c.steps {
            for _ in 0..<step.times {
                let bytes: [UInt8] = switch step {
                case .tcpIn(let flags, _): Self.client.tcp(40000, c.port, flags: flags)
                case .tcpOut(let flags, _): Self.server.tcp(c.port == 80 ? 8080 : c.port, 40000, flags: flags)
                case .udpIn: Self.client.udp(40000, c.port, payload: [1])
                case .udpOut: Self.server.udp(c.port, 40000, payload: [2])
                }
                #expect(run(engine, bytes, at: time).0 != .accept, "\(step)")
                time += 0.001
                let n = buffer.withUnsafeMutableBufferPointer { outbox.pop(into: $0) }
                let packets = engine.table.liveEntries.first { !$0.isTemplate }?.packetsIn ?? 0
                for u in buffer.prefix(n) {
                    pushed.append(Pushed(atPacket: packets, state: u.state, template: u.isTemplate,
                                         active: u.isActive, timeout: u.timeout))
                    // Every update names this flow (or its template) as the table has it.
                    #expect(u.client == .v4(addr("198.18.0.12")))
                    #expect(u.clientPort == (u.isTemplate ? 0 : 40000))
                    #expect(u.virtualAddress == .v4(addr("198.18.0.1")) && u.virtualPort == c.port)
                    #expect(u.server == .v4(addr("198.19.0.201")) && u.serverPort == (c.port == 80 ? 8080 : c.port))
                    #expect(u.proto == (c.port == 53 ? .udp : .tcp) && u.fwmark == 0)
                }
            }
        }
        #expect(pushed == c.expected)
        #expect(outbox.dropped == 0)
    }

    /// The kernel's check on `sync_threshold` (`proc_do_sync_threshold`): a threshold not below a
    /// non-zero period could never be reached.
    @Test(arguments: [(3, 50, true), (0, 50, true), (49, 50, true), (50, 50, false), (60, 50, false),
                      (3, 0, true), (0, 0, true)])
    func settingsValidity(threshold: UInt32, period: UInt32, valid: Bool) {
        #expect(SyncSettings(threshold: threshold, period: period).isValid == valid)
    }

    /// Sync off (no outbox): the same traffic pushes nothing and the packet path is otherwise the same.
    @Test func noOutboxNoPushes() throws {
        let on = Engine(configuration: try RulesFile.parse(Self.rules))
        let off = Engine(configuration: try RulesFile.parse(Self.rules))
        let outbox = SyncOutbox(capacity: 64)
        on.syncOutbox = outbox
        for (i, flags) in [TCPFlags.syn, .ack, .ack, .ack, [.fin, .ack]].enumerated() {
            let packet = Self.client.tcp(40000, 80, flags: flags)
            let a = run(on, packet, at: Double(i)), b = run(off, packet, at: Double(i))
            #expect(a.0 == b.0 && a.1 == b.1)
        }
        #expect(outbox.pushed == 2)
        #expect(on.table.liveEntries.map { FlowRecord($0, now: on.now) } == off.table.liveEntries.map { FlowRecord($0, now: off.now) })
    }

    /// A full outbox drops and counts; the packet path goes on unhurt.
    @Test func aFullOutboxDropsAndCounts() throws {
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        let outbox = SyncOutbox(capacity: 2)
        engine.syncOutbox = outbox
        engine.syncSettings = SyncSettings(threshold: 1, period: 0)
        for port: UInt16 in 40000..<40005 {
            #expect(run(engine, Self.client.udp(port, 53, payload: [1]), at: 1).0 == .rewritten(.inbound))
        }
        #expect(outbox.pushed == 2)
        #expect(outbox.dropped == 3)
        #expect(engine.table.connectionCount == 5)
    }
}

extension Connection {
    /// A placeholder for test buffers.
    static let blank = Connection(
        proto: .tcp, state: .none, isTemplate: false, countedActive: false, client: IPv4Address(rawValue: 0),
        clientPort: 0, virtualAddress: IPv4Address(rawValue: 0), virtualPort: 0, server: IPv4Address(rawValue: 0),
        serverPort: 0, serviceID: 0, destinationID: 0, controller: ConnectionTable.noSlot, timeout: 0, expires: 0,
        packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0)
}
