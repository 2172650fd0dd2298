import Foundation
import MasqControl
import MasqCore
import MasqRules
import Testing

/// IPv6 services through the control protocol (addresses from 2001:2::/48): the editing commands'
/// words, `zero`'s service and the state's addresses carry IPv6 as RFC 5952 text and decode to the
/// same values.
@Suite struct IPv6ControlTests {
    static func command(_ words: String) throws -> IPVSCommand {
        try IPVSCommandParser.parse(words.split(separator: " ").map(String.init))
    }

    @Test func requestsRoundTrip() throws {
        let requests: [ControlRequest] = [
            .apply(try Self.command("-A -t [2001:2::1]:80 -s rr -p 300 -M 64")),
            .apply(try Self.command("-a -t [2001:2::1]:80 -r [2001:2:0:1::201]:8080 -m -w 3")),
            .apply(try Self.command("-a -u [2001:2::53]:53 -r 2001:2:0:1::53 -m")),
            .apply(try Self.command("-d -t [2001:2::1]:80 -r [2001:2:0:1::201]:8080")),
            .apply(try Self.command("-D -u [2001:2::53]:53")),
            .restore(rules: "-A -t [2001:2::1]:80 -s rr\n-a -t [2001:2::1]:80 -r [2001:2:0:1::201]:80 -m\n"),
            .zero(ServiceKey(proto: .tcp, address: IPv6Address("2001:2::1")!, port: 80)),
            .flows(try FlowFilter("proto=tcp client=[2001:2::100] vip=[2001:2::1]:80 rs=[2001:2:0:1::201]:80")),
        ]
        for request in requests {
            #expect(try ControlFraming.decodeRequest(ControlFraming.encode(request)) == request, "\(request)")
        }
    }

    @Test func zeroWritesRFC5952AndReadsAnySpelling() throws {
        let key = ServiceKey(proto: .udp, address: IPv6Address("2001:2::53")!, port: 53)
        let wire = String(decoding: ControlFraming.encode(ControlRequest.zero(key)), as: UTF8.self)
        #expect(wire.contains(#""address":"2001:2::53""#))
        let long = #"{"command":"zero","service":{"proto":"udp","address":"2001:0002:0:0:0:0:0:0053","port":53}}"# + "\n"
        #expect(try ControlFraming.decodeRequest(Array(long.utf8)) == .zero(key))
        let bad = #"{"command":"zero","service":{"proto":"udp","address":"2001:2::53::1","port":53}}"# + "\n"
        #expect(throws: (any Error).self) { try ControlFraming.decodeRequest(Array(bad.utf8)) }
    }

    @Test func stateRoundTrips() {
        let state = AdminState(
            capacity: 1024, connections: 1, timeouts: TimeoutState(tcp: 900, tcpFin: 120, udp: 300),
            services: [
                ServiceState(proto: "TCP", address: "198.18.0.1", port: 80, scheduler: "rr",
                             destinations: [DestinationState(address: "198.19.0.201", port: 80, weight: 1)]),
                ServiceState(proto: "TCP", address: "2001:2::1", port: 80, scheduler: "rr", persistence: 300, netmask: "64",
                             destinations: [DestinationState(address: "2001:2:0:1::201", port: 80, weight: 1,
                                                             activeConnections: 1)]),
            ])
        #expect(ControlFraming.decodeReply(ControlFraming.encode(ControlReply.state(state))) == .state(state))
    }

    @Test func flowsReplyRoundTrips() {
        let flow = FlowRecord(proto: .tcp, client: IPAddress("2001:2::100")!, clientPort: 40000,
                              virtualAddress: IPAddress("2001:2::1")!, virtualPort: 80,
                              server: IPAddress("2001:2:0:1::201")!, serverPort: 80, state: .established,
                              expiresIn: 895, isTemplate: false)
        #expect(ControlFraming.decodeReply(ControlFraming.encode(ControlReply.flows([flow]))) == .flows([flow]))
    }
}
