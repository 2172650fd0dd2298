import MasqRules
import Testing
@testable import MasqCore

/// `Configuration.changes(to:)`: what a reload logs, one change per line.
@Suite struct ConfigurationChangesTests {
    static let running = """
        -A -t 198.18.0.1:80 -s rr
        -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w 1
        -a -t 198.18.0.1:80 -r 198.19.0.202:80 -m -w 1
        -A -t 198.18.0.1:443 -s wlc -p 300
        -a -t 198.18.0.1:443 -r 198.19.0.201:443 -m
        -A -u 198.18.0.1:53 -s sh -b sh-port
        -a -u 198.18.0.1:53 -r 198.19.0.203:53 -m -w 2
        """

    @Test func sameConfigurationNoChanges() throws {
        let c = try RulesFile.parse(Self.running)
        #expect(c.changes(to: c).isEmpty)
        // Order alone is not a change.
        let reordered = try RulesFile.parse("""
            -A -u 198.18.0.1:53 -s sh -b sh-port
            -a -u 198.18.0.1:53 -r 198.19.0.203:53 -m -w 2
            -A -t 198.18.0.1:443 -s wlc -p 300
            -a -t 198.18.0.1:443 -r 198.19.0.201:443 -m
            -A -t 198.18.0.1:80 -s rr
            -a -t 198.18.0.1:80 -r 198.19.0.202:80 -m -w 1
            -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w 1
            """)
        #expect(c.changes(to: reordered).isEmpty)
    }

    @Test func everyKindOfChangeOneLineEach() throws {
        let old = try RulesFile.parse(Self.running)
        let new = try RulesFile.parse("""
            -A -t 198.18.0.1:80 -s wrr -p 60 -M 255.255.255.0
            -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w 5
            -a -t 198.18.0.1:80 -r 198.19.0.204:8080 -m -w 1
            -A -u 198.18.0.1:53 -s sh -b sh-port,sh-fallback
            -a -u 198.18.0.1:53 -r 198.19.0.203:53 -m -w 2
            -A -u 198.18.0.2:514 -s rr
            -a -u 198.18.0.2:514 -r 198.19.0.205:514 -m -w 0
            """)
        let tcp80 = ServiceKey(proto: .tcp, address: IPv4Address(198, 18, 0, 1), port: 80)
        let changes = old.changes(to: new)
        #expect(changes.map(\.description) == [
            "service TCP 198.18.0.1:443 removed with its 1 real server",
            "service TCP 198.18.0.1:80 edited: scheduler rr → wrr, persistence none → 60 s, netmask 255.255.255.255 → 255.255.255.0",
            "real server 198.19.0.202:80 removed from TCP 198.18.0.1:80",
            "real server 198.19.0.201:80 of TCP 198.18.0.1:80 re-weighted 1 → 5",
            "real server 198.19.0.204:8080 added to TCP 198.18.0.1:80 (weight 1)",
            "service UDP 198.18.0.1:53 edited: flags sh-port → sh-fallback,sh-port",
            "service UDP 198.18.0.2:514 added (scheduler rr)",
            "real server 198.19.0.205:514 added to UDP 198.18.0.2:514 (weight 0)",
        ])
        // Typed values, with what the log's metadata carries.
        #expect(changes[3] == .realServerReweighted(
            tcp80, RealServerSpec(address: IPv4Address(198, 19, 0, 201), port: 80, weight: 5), from: 1))
        #expect(changes[3].service == tcp80 && changes[3].realServer == "198.19.0.201:80")
        #expect(changes[0].service?.port == 443 && changes[0].realServer == nil)
        // Going back undoes each one.
        #expect(new.changes(to: old).count == 8)
        #expect(new.changes(to: old).contains(.serviceAdded(old.services[1])))
    }

    @Test func addedServiceDescribesItsSettings() throws {
        let new = try RulesFile.parse("-A -t 198.18.0.9:0 -s mh -p 600 -M 255.255.0.0 -b mh-port")
        #expect(Configuration().changes(to: new).map(\.description) == [
            "service TCP 198.18.0.9:0 added (scheduler mh, flags mh-port, persistence 600 s, netmask 255.255.0.0)",
        ])
        #expect(new.changes(to: Configuration()).map(\.description) == ["service TCP 198.18.0.9:0 removed"])
    }

    @Test func clearingEverything() throws {
        let old = try RulesFile.parse(Self.running)
        let changes = old.changes(to: Configuration())
        #expect(changes.count == 3)
        #expect(changes.allSatisfy { if case .serviceRemoved = $0 { true } else { false } })
    }

    @Test func timeouts() {
        var new = Configuration()
        new.timeouts.set(tcp: 600, tcpFin: 0, udp: 30)
        #expect(Configuration().changes(to: new) == [
            .timeout(.established, from: 900, to: 600), .timeout(.udp, from: 300, to: 30),
        ])
        #expect(Configuration().changes(to: new)[1].description == "timeout UDP 300 s → 30 s")
    }
}
