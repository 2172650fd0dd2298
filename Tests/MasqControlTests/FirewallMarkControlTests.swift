import Foundation
import MasqControl
import MasqCore
import MasqRules
import Testing

/// Firewall-mark services, one-packet scheduling and thresholds through the control protocol: the
/// editing commands travel as ipvsadm words, `zero` carries the mark, the state carries the new
/// fields, and a state from a daemon without them (masq 0.15) still decodes.
@Suite struct FirewallMarkControlTests {
    static func command(_ words: String) throws -> IPVSCommand {
        try IPVSCommandParser.parse(words.split(separator: " ").map(String.init))
    }

    @Test func requestsRoundTrip() throws {
        let requests: [ControlRequest] = [
            .apply(try Self.command("-A -f 1 -s rr -o")),
            .apply(try Self.command("-A -f 7 -6 -s sh -p 600 -M 64")),
            .apply(try Self.command("-a -f 7 -6 -r [2001:2:0:1::201]:0 -m -w 2")),
            .apply(try Self.command("-a -f 1 -r 198.19.0.201 -m -x 100 -y 50")),
            .apply(try Self.command("-e -t 198.18.0.1:80 -r 198.19.0.201:80 -m -x 7")),
            .zero(ServiceKey(fwmark: 1)),
            .zero(ServiceKey(fwmark: 7, ipv6: true)),
            .zero(ServiceKey(proto: .tcp, address: IPv4Address(rawValue: 0), port: 0)),
        ]
        for request in requests {
            #expect(try ControlFraming.decodeRequest(ControlFraming.encode(request)) == request, "\(request)")
        }
        let wire = String(decoding: ControlFraming.encode(ControlRequest.zero(ServiceKey(fwmark: 7, ipv6: true))), as: UTF8.self)
        #expect(wire.contains(#""fwmark":7"#) && wire.contains(#""address":"::""#))
    }

    static let state = AdminState(
        capacity: 1024, connections: 0, timeouts: TimeoutState(tcp: 900, tcpFin: 120, udp: 300),
        services: [
            ServiceState(proto: "TCP", address: "0.0.0.0", port: 0, fwmark: 1, scheduler: "rr", onePacket: true,
                         destinations: [DestinationState(address: "198.19.0.201", port: 0, weight: 1,
                                                         upperThreshold: 100, lowerThreshold: 50)]),
        ])

    @Test func stateRoundTrips() {
        #expect(ControlFraming.decodeReply(ControlFraming.encode(ControlReply.state(Self.state))) == .state(Self.state))
    }

    @Test func stateWithoutTheNewFieldsDecodes() throws {
        // What a 0.15 daemon sends: no fwmark, onePacket, upperThreshold, lowerThreshold.
        var json = try #require(try JSONSerialization.jsonObject(with: Data(ControlFraming.encode(ControlReply.state(Self.state)))) as? [String: Any])
        var state = try #require(json["state"] as? [String: Any])
        var services = try #require(state["services"] as? [[String: Any]])
        services[0]["fwmark"] = nil
        services[0]["onePacket"] = nil
        var destinations = try #require(services[0]["destinations"] as? [[String: Any]])
        destinations[0]["upperThreshold"] = nil
        destinations[0]["lowerThreshold"] = nil
        services[0]["destinations"] = destinations
        state["services"] = services
        json["state"] = state
        let old = try JSONSerialization.data(withJSONObject: json)
        #expect(!String(decoding: old, as: UTF8.self).contains("Threshold"))
        var expected = Self.state
        expected.services[0].fwmark = 0
        expected.services[0].onePacket = false
        expected.services[0].destinations[0].upperThreshold = 0
        expected.services[0].destinations[0].lowerThreshold = 0
        #expect(ControlFraming.decodeReply(Array(old) + [0x0a]) == .state(expected))
    }
}
