import MasqCore
import Testing
@testable import MasqRules

// Firewall-mark services (`-f MARK [-6]`), one-packet scheduling (`-o`) and real-server thresholds
// (`-x`, `-y`) in a rules file: read as ipvsadm 1.31 reads them, applied as IPVS applies them
// (ip_vs_ctl.c: ip_vs_add_service/ip_vs_edit_service set the flags afresh, ip_vs_add_dest/
// ip_vs_edit_dest the thresholds), and written back by RulesFile.format.

@Suite struct RulesFirewallMarkTests {
    static let text = """
        -A -f 1 -s rr
        -a -f 1 -r 198.19.0.201:0 -m -w 2 -x 100 -y 50
        -a -f 1 -r 198.19.0.201:8080 -m -w 1
        -A -f 1 -6 -s wlc
        -A -f 7 -6 -s sh -p 600 -M 64 -o
        -a -f 7 -6 -r [2001:2:0:1::201]:0 -m -w 1
        -A -u 198.18.0.53:53 -s rr -o
        -a -u 198.18.0.53:53 -r 198.19.0.201:53 -m -w 1 -x 1000

        """

    @Test func marksOnePacketAndThresholdsRead() throws {
        let c = try RulesFile.parse(Self.text, file: "marks")
        #expect(c.services.map(\.key) == [
            ServiceKey(fwmark: 1), ServiceKey(fwmark: 1, ipv6: true), ServiceKey(fwmark: 7, ipv6: true),
            ServiceKey(proto: .udp, address: IPv4Address(198, 18, 0, 53), port: 53),
        ])
        // A mark service: protocol TCP, the family's unspecified address, port 0, as ipvsadm sets them.
        #expect(c.services[0].key.proto == .tcp && c.services[0].key.port == 0 && c.services[2].key.address == .v6(.unspecified))
        #expect(c.services[0].realServers == [
            RealServerSpec(address: .v4(IPv4Address(198, 19, 0, 201)), port: 0, weight: 2, upperThreshold: 100, lowerThreshold: 50),
            RealServerSpec(address: .v4(IPv4Address(198, 19, 0, 201)), port: 8080, weight: 1),
        ])
        #expect(!c.services[0].onePacket && c.services[2].onePacket && c.services[3].onePacket)
        #expect(c.services[2].persistence == 600 && c.services[2].prefixLength == 64)
        #expect(c.services[3].realServers[0].upperThreshold == 1000 && c.services[3].realServers[0].lowerThreshold == 0)
    }

    @Test func formatRoundTrips() throws {
        // masq's writer keeps -x/-y (ipvsadm-save, and masqadm -S, do not), after -w.
        let c = try RulesFile.parse(Self.text)
        #expect(RulesFile.format(c) == Self.text)
        #expect(try RulesFile.parse(RulesFile.format(c)) == c)
    }

    @Test func portlessRealServerOfAMarkIsPortZero() throws {
        // `-r ADDR` copies ce->svc.port, 0 for a mark (the packet's own port): an explicit :0 is the
        // same server.
        #expect(throws: RulesError(.destinationExists, file: "f", line: 3, token: "198.19.0.201:0",
                                   message: "Destination already exists")) {
            _ = try RulesFile.parse("-A -f 3\n-a -f 3 -r 198.19.0.201 -m\n-a -f 3 -r 198.19.0.201:0 -m", file: "f")
        }
        // -f 3 -6 is another service, not defined here.
        #expect(throws: RulesError(.noSuchService, file: "f", line: 2, token: "3", message: "Service not defined")) {
            _ = try RulesFile.parse("-A -f 3\n-a -f 3 -6 -r [2001:2::201]:0 -m", file: "f")
        }
    }

    @Test func editsSetFlagsAndThresholdsAfresh() throws {
        // ipvsadm -E sends the service's flags from its own options: no -o clears one-packet; -e sends
        // u_threshold and l_threshold as given, 0 when not (memset of ipvs_command_entry).
        let c = try RulesFile.parse("""
            -A -u 198.18.0.53:53 -s rr -o
            -a -u 198.18.0.53:53 -r 198.19.0.201:53 -m -x 10 -y 5
            -a -u 198.18.0.53:53 -r 198.19.0.202:53 -m -x 10 -y 5
            -E -u 198.18.0.53:53 -s rr
            -e -u 198.18.0.53:53 -r 198.19.0.201:53 -m -w 3
            -e -u 198.18.0.53:53 -r 198.19.0.202:53 -m -x 20
            """)
        let s = c.services[0]
        #expect(!s.onePacket)
        #expect(s.realServers.map { [$0.weight, Int32($0.upperThreshold), Int32($0.lowerThreshold)] } == [[3, 0, 0], [1, 20, 0]])
        let again = try RulesFile.apply("-E -u 198.18.0.53:53 -o", to: c, file: "restore")
        #expect(again.services[0].onePacket && again.services[0].scheduler == "wlc")
    }

    @Test func lowerAboveUpperIsIPVSRangeError() {
        // ip_vs_add_dest / ip_vs_edit_dest: l_threshold > u_threshold is -ERANGE, which libipvs has no
        // words for (strerror's); an upper of 0 with a lower set is refused too.
        for (line, token) in [("-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m -x 5 -y 6", "198.19.0.201:80"),
                              ("-a -t 198.18.0.1:80 -r 198.19.0.202 -m -y 1", "198.19.0.202:80"),
                              ("-e -t 198.18.0.1:80 -r 198.19.0.203:80 -m -y 1", "198.19.0.203:80")] {
            #expect {
                _ = try RulesFile.parse("-A -t 198.18.0.1:80\n" + line, file: "r")
            } throws: { error in
                guard let e = error as? RulesError else { return false }
                return e.line == 2 && e.token == token && e.message.hasPrefix("Numerical result out of range")
            }
        }
        // Equal is fine.
        #expect(throws: Never.self) { _ = try RulesFile.parse("-A -t 198.18.0.1:80\n-a -t 198.18.0.1:80 -r 198.19.0.201 -m -x 5 -y 5") }
    }

    @Test func markServicesAreTheirOwnKeys() throws {
        // -f 1 and -f 1 -6 are two services; deleting one leaves the other; a mark is no address service.
        var c = try RulesFile.parse("-A -f 1\n-A -f 1 -6\n-A -t 0.0.0.0:0 -p")
        #expect(c.services.count == 3)
        c = try RulesFile.apply("-D -f 1", to: c, file: "x")
        #expect(c.services.map(\.key) == [ServiceKey(fwmark: 1, ipv6: true),
                                          ServiceKey(proto: .tcp, address: IPv4Address(rawValue: 0), port: 0)])
        #expect(throws: RulesError(.noSuchService, file: "x", line: 1, token: "2", message: "No such service")) {
            _ = try RulesFile.apply("-D -f 2", to: c, file: "x")
        }
    }
}
