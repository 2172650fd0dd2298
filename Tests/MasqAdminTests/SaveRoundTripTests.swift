import MasqControl
import MasqCore
import MasqRules
import Testing
@testable import MasqAdmin

/// `masqadm -S` without `-n` (what the seed's `ipvsadm-save > /etc/sysconfig/ipvsadm` writes) is a
/// rules file masq reads back, through the same resolver, as the configuration `-S -n` gives.
@Suite struct SaveRoundTrip {
    @Test func namedSaveReadsBackAsTheNumericConfiguration() throws {
        let format = IPVSAdmFormat(resolver: Fixture.resolver)
        let named = format.save(Fixture.state, numeric: false)
        let numeric = format.save(Fixture.state, numeric: true)
        #expect(named != numeric)
        #expect(named.contains("-t vip.example.org:http ") && named.contains("-r web2.example.org:http-alt "))
        let fromNames = try RulesFile.parse(named, file: "/etc/sysconfig/ipvsadm", names: Fixture.resolver)
        let fromNumbers = try RulesFile.parse(numeric, file: "numeric")
        #expect(fromNames == fromNumbers)
        #expect(RulesFile.format(fromNames) == numeric)
    }

    @Test func seedShapedSave() throws {
        // The seed's service: an address /etc/hosts doesn't name, so only the ports become names.
        let state = AdminState(
            capacity: 1024, connections: 0, timeouts: TimeoutState(tcp: 900, tcpFin: 120, udp: 300),
            services: [ServiceState(proto: "TCP", address: "12.0.0.1", port: 80, scheduler: "rr", destinations: [
                DestinationState(address: "192.168.100.101", port: 80, weight: 1),
                DestinationState(address: "192.168.100.102", port: 80, weight: 1),
            ])])
        let named = IPVSAdmFormat(resolver: Fixture.resolver).save(state, numeric: false)
        #expect(named == Fixture.lines([
            "-A -t 12.0.0.1:http -s rr",
            "-a -t 12.0.0.1:http -r web1:http -m -w 1",
            "-a -t 12.0.0.1:http -r web2.example.org:http -m -w 1",
        ]))
        let c = try RulesFile.parse(named, names: Fixture.resolver)
        #expect(c == (try RulesFile.parse("""
            -A -t 12.0.0.1:80 -s rr
            -a -t 12.0.0.1:80 -r 192.168.100.101:80 -m -w 1
            -a -t 12.0.0.1:80 -r 192.168.100.102:80 -m -w 1
            """)))
    }

    @Test func masqadmAndTheRulesFileResolveAlike() throws {
        // One resolver: the words masqadm sends for a named command are what the rules file reads.
        let line = ["-a", "-t", "vip:https", "-r", "web2:webcache", "-m", "-w", "2"]
        guard case .edit(let command) = try AdminCommandLine.parse(line, resolver: Fixture.resolver) else {
            Issue.record("not an edit")
            return
        }
        #expect(try IPVSCommandParser.parse(line, names: Fixture.resolver) == command)
        #expect(try IPVSCommandParser.parse(command.ipvsadmArguments) == command)
    }
}
