import MasqRules
import Testing
@testable import MasqCore

/// The per-protocol tables on their own: header checks, who starts a connection, states, timeouts
/// and the half-open notion early drop uses. (TCP's full transition table: TCPStateTests.)
@Suite struct TransportProtocolTests {
    /// The L4 segment of a built packet, in a buffer the caller keeps alive for `body`.
    func withSegment<R>(_ packet: [UInt8], _ body: (PacketBytes) -> R) -> R {
        var copy = packet
        return copy.withUnsafeMutableBytes { raw in
            let ip = IPv4Header(PacketBytes(raw))
            return body(ip.payload)
        }
    }

    func header<P: TransportProtocol>(_: P.Type, _ packet: [UInt8], _ body: (TransportHeader) -> Void) {
        withSegment(packet) { segment in
            guard let valid = P.validate(segment) else { Issue.record("header rejected"); return }
            body(TransportHeader(valid, proto: P.number))
        }
    }

    @Test func tcpHeaderChecks() {
        let packet = c2v.tcp(40000, 80, flags: .syn, payload: [1, 2, 3, 4])
        #expect(withSegment(packet) { TCPProtocol.validate($0)?.count } == 24)
        #expect(withSegment(packet) { TCPProtocol.validate($0.slice(from: 0, count: 19)) } == nil)
        var shortOffset = packet
        shortOffset[20 + 12] = 0x40  // data offset 16 bytes
        #expect(withSegment(shortOffset) { TCPProtocol.validate($0) } == nil)
        var pastTheEnd = packet
        pastTheEnd[20 + 12] = 0x70  // 28 bytes of header in a 24-byte segment
        #expect(withSegment(pastTheEnd) { TCPProtocol.validate($0) } == nil)
    }

    @Test func udpHeaderChecksCutToItsLength() {
        var packet = c2v.udp(5000, 53, payload: [1, 2, 3, 4, 5, 6])
        #expect(withSegment(packet) { UDPProtocol.validate($0)?.count } == 14)
        packet[20 + 5] = 10  // UDP length 10 of 14: the rest is padding
        #expect(withSegment(packet) { UDPProtocol.validate($0)?.count } == 10)
        packet[20 + 5] = 7
        #expect(withSegment(packet) { UDPProtocol.validate($0) } == nil)
        packet[20 + 5] = 15
        #expect(withSegment(packet) { UDPProtocol.validate($0) } == nil)
        #expect(withSegment(packet) { UDPProtocol.validate($0.slice(from: 0, count: 7)) } == nil)
    }

    /// A SYN without RST starts a TCP connection, in SYN_RECV; a new SYN without ACK reopens one in
    /// TIME_WAIT or CLOSE (conn_reuse_mode 1).
    static let firstSegments: [(TCPFlags, Bool, ConnectionState)] = [
        (.syn, true, .synRecv), ([.syn, .ack], true, .synRecv), ([.syn, .rst], false, .close),
        (.ack, false, .established), (.fin, false, .close), ([], false, .close),
    ]

    @Test(arguments: firstSegments)
    func tcpStartsConnections(_ flags: TCPFlags, _ starts: Bool, _ initial: ConnectionState) {
        header(TCPProtocol.self, c2v.tcp(40000, 80, flags: flags)) { th in
            #expect(TCPProtocol.startsConnection(th) == starts)
            #expect(TCPProtocol.initialState(th) == initial)
            let reopensClosed = flags == .syn
            for state: ConnectionState in [.timeWait, .close] {
                #expect(TCPProtocol.reopens(state, with: th) == reopensClosed)
            }
            #expect(!TCPProtocol.reopens(.established, with: th))
            #expect(!TCPProtocol.reopens(.finWait, with: th))
        }
    }

    @Test func udpHasOneStateAndEveryDatagramStartsAFlow() {
        header(UDPProtocol.self, c2v.udp(5000, 53)) { th in
            #expect(UDPProtocol.startsConnection(th))
            #expect(UDPProtocol.initialState(th) == .udp)
            #expect(!UDPProtocol.reopens(.udp, with: th))
            for direction in [FlowDirection.inbound, .outbound] {
                #expect(UDPProtocol.transition(from: .udp, direction: direction, header: th) == .udp)
            }
        }
    }

    /// Half-open: TCP before its handshake completes, UDP until the first answer. Only UDP's ends with
    /// an answer alone.
    @Test func halfOpenPerProtocol() {
        for state: ConnectionState in [.synRecv, .synSent] {
            #expect(TCPProtocol.isHalfOpen(state, answered: false) && TCPProtocol.isHalfOpen(state, answered: true))
            #expect(!TCPProtocol.answerEndsHalfOpen(state))
        }
        for state: ConnectionState in [.established, .finWait, .timeWait, .close, .closeWait, .lastAck] {
            #expect(!TCPProtocol.isHalfOpen(state, answered: false))
        }
        #expect(UDPProtocol.isHalfOpen(.udp, answered: false) && !UDPProtocol.isHalfOpen(.udp, answered: true))
        #expect(UDPProtocol.answerEndsHalfOpen(.udp))
        #expect(TCPProtocol.evictionReason == .halfOpenTCP && UDPProtocol.evictionReason == .unansweredUDP)
    }

    /// The passive health signal: SYN_RECV → ESTABLISHED completes a handshake, SYN_RECV → CLOSE (a
    /// reset) fails it, and so does a SYN_RECV nobody answered expiring. UDP says nothing.
    @Test func handshakeOutcomes() {
        #expect(TCPProtocol.handshake(from: .synRecv, to: .established) == .completed)
        #expect(TCPProtocol.handshake(from: .synRecv, to: .close) == .failed)
        #expect(TCPProtocol.handshake(from: .synRecv, to: .timeWait) == nil)
        #expect(TCPProtocol.handshake(from: .established, to: .close) == nil)
        #expect(TCPProtocol.failsHandshake(expiringIn: .synRecv, answered: false))
        #expect(!TCPProtocol.failsHandshake(expiringIn: .synRecv, answered: true))
        #expect(!TCPProtocol.failsHandshake(expiringIn: .established, answered: false))
        #expect(UDPProtocol.handshake(from: .udp, to: .udp) == nil)
        #expect(!UDPProtocol.failsHandshake(expiringIn: .udp, answered: false))
    }

    /// Every protocol's states have their IPVS default timeout in `Timeouts`, and no two protocols
    /// claim one state.
    @Test func timeoutsComeFromTheTables() {
        let t = Timeouts()
        var claimed = Set<UInt8>()
        for table in TransportProtocols.all {
            for (state, seconds) in table.defaultTimeouts {
                #expect(claimed.insert(state.rawValue).inserted, "\(state) claimed twice")
                #expect(t[state] == seconds)
            }
        }
        #expect(claimed.count == ConnectionState.count)
        #expect(TransportProtocols.all.map { $0.number } == [.tcp, .udp])
        #expect(TransportProtocols.all.allSatisfy { $0.number.isTracked } && !IPProtocol.icmp.isTracked)
    }

    /// Under pressure a half-open entry of either protocol gets the short timeout; an answer restores
    /// UDP's, the handshake TCP's.
    @Test func pressureTimeoutsFollowTheHalfOpenNotion() throws {
        let engine = Engine(configuration: try RulesFile.parse(tableRules), capacity: 8)
        for i in 0..<6 {  // fill to 75 %: pressure from the next new flow on
            _ = run(engine, c2v.udp(UInt16(6000 + i), 53), at: 0)
            _ = run(engine, w1c.udp(5353, UInt16(6000 + i)), at: 0)
        }
        _ = run(engine, c2v.udp(5000, 53), at: 1)
        _ = run(engine, syn, at: 1)
        #expect(engine.pressure)
        let flows = engine.flowRecords()
        let udp = try #require(flows.first { $0.clientPort == 5000 }), tcp = try #require(flows.first { $0.clientPort == 40000 })
        #expect(udp.expiresIn == Int64(Engine.pressureHalfOpenTimeout) && tcp.expiresIn == Int64(Engine.pressureHalfOpenTimeout))
        _ = run(engine, w1c.udp(5353, 5000), at: 2)
        _ = run(engine, c2v.tcp(40000, 80, flags: .ack), at: 2)
        let after = engine.flowRecords()
        #expect(after.first { $0.clientPort == 5000 }?.expiresIn == 300)
        #expect(after.first { $0.clientPort == 40000 }?.expiresIn == 900)
    }
}
