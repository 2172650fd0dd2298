import MasqCore
import Testing
@testable import MasqRules

/// Names in a rules file, read as `ipvsadm -R` reads them: hosts from an /etc/hosts, ports from an
/// /etc/services for the service's protocol. The files here are fakes, so nothing depends on the
/// machine's own (and nothing can ask DNS).
@Suite struct RulesNamesTests {
    static let names = NameResolver(
        hostsText: """
            127.0.0.1 localhost
            198.18.0.1\tvip.lab.test vip   # the director
            198.19.0.201 web1
            198.19.0.202 web2.lab.test WEB2
            255.255.255.0 slash24
            ::1 ip6-localhost

            """,
        servicesText: """
            http\t80/tcp\twww
            http-alt\t8080/tcp webcache
            domain\t53/tcp
            domain\t53/udp
            syslog\t514/udp

            """,
        hostsSource: "fake-hosts", servicesSource: "fake-services")

    @Test func namesReadAsTheirNumbers() throws {
        let named = try RulesFile.parse("""
            -A -t vip.lab.test:http -s rr -p 60 -M slash24
            -a -t vip.lab.test:http -r web1:http -m -w 1
            -a -t vip:www -r WEB2:webcache -m -w 3
            -A -u vip:domain -s sh
            -a -u vip:domain -r web1:domain -m
            -a -u 198.18.0.1:53 -r web2.lab.test -m
            """, file: "named", names: Self.names)
        let numeric = try RulesFile.parse("""
            -A -t 198.18.0.1:80 -s rr -p 60 -M 255.255.255.0
            -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w 1
            -a -t 198.18.0.1:80 -r 198.19.0.202:8080 -m -w 3
            -A -u 198.18.0.1:53 -s sh
            -a -u 198.18.0.1:53 -r 198.19.0.201:53 -m
            -a -u 198.18.0.1:53 -r 198.19.0.202 -m
            """, file: "numeric")
        #expect(named == numeric)
        #expect(named.services[1].realServers.map(\.port) == [53, 53])  // no port: the virtual port
    }

    @Test func longOptionsAndEqualsTakeNamesToo() throws {
        let c = try RulesFile.parse("--add-service --udp-service=vip:syslog --scheduler rr", names: Self.names)
        #expect(c.services[0].key == ServiceKey(proto: .udp, address: IPv4Address(198, 18, 0, 1), port: 514))
    }

    static let errors: [(String, Int, String, String)] = [
        // a host /etc/hosts does not have (never DNS)
        ("-A -t vip:http\n-a -t vip:http -r web9:http -m", 2, "web9:http",
         "illegal real server address[:port] specified: unknown host 'web9' (not in fake-hosts; masq never asks DNS)"),
        ("-A -t nowhere.lab.test:80", 1, "nowhere.lab.test:80", "illegal virtual server address[:port] specified: unknown host 'nowhere.lab.test'"),
        // a service name of the other protocol only: getservbyname(name, proto) finds none
        ("-A -t vip:syslog", 1, "vip:syslog",
         "illegal virtual server address[:port] specified: unknown service name 'syslog' for tcp (not in fake-services)"),
        ("\n# comment\n-A -u vip:htp", 3, "vip:htp", "unknown service name 'htp' for udp"),
        // IPv6-only names and names in comments are no IPv4 hosts
        ("-A -t ip6-localhost:80", 1, "ip6-localhost:80", "unknown host 'ip6-localhost'"),
        ("-A -t director:80", 1, "director:80", "unknown host 'director'"),
        // a name before -t/-u: ipvsadm does not know the protocol yet either
        ("-A -t vip:80\n-a -r web1:http -t vip:80 -m", 2, "web1:http", "before the protocol is known"),
        // a mistyped number stays an address error, not a name lookup
        ("-A -t 198.18.0.300:80", 1, "198.18.0.300:80", "illegal virtual server address[:port] specified"),
        ("-A -t vip:99999", 1, "vip:99999", "illegal virtual server address[:port] specified"),
        ("-A -t 80", 1, "80", "illegal virtual server address[:port] specified"),
        ("-A -t vip:", 1, "vip:", "illegal virtual server address[:port] specified"),
        ("-A -t vip:80 -p 60 -M nomask", 1, "nomask", "illegal virtual server persistent mask specified"),
    ]

    @Test(arguments: errors) func unknownNamesNameFileLineAndToken(_ text: String, _ line: Int, _ token: String,
                                                                   _ words: String) {
        #expect {
            _ = try RulesFile.parse(text, file: "/etc/sysconfig/ipvsadm", names: Self.names)
        } throws: { error in
            guard let e = error as? RulesError else { return false }
            return e.line == line && e.token == token && e.message.contains(words)
                && e.description.hasPrefix("/etc/sysconfig/ipvsadm:\(line): ")
        }
    }

    @Test func missingFilesKnowNoNamesAndSaySo() {
        let none = NameResolver(hostsPath: "/nonexistent/hosts", servicesPath: "/nonexistent/services")
        #expect {
            _ = try RulesFile.parse("-A -t localhost:80", file: "r", names: none)
        } throws: { error in
            (error as? RulesError)?.description
                == "r:1: illegal virtual server address[:port] specified: unknown host 'localhost' (not in "
                + "/nonexistent/hosts; masq never asks DNS) (at 'localhost:80')"
        }
    }

    @Test func theDefaultParserKnowsNoNames() {
        // IPVSCommandParser on its own (what the control socket feeds masqadm's numeric words) reads numbers only.
        #expect(throws: RulesError.self) { _ = try IPVSCommandParser.parse(["-A", "-t", "localhost:80"]) }
        #expect(IPVSCommandParser.parseEndpoint("198.18.0.1:80")! == (.v4(IPv4Address(198, 18, 0, 1)), 80))
        #expect(IPVSCommandParser.parseEndpoint("198.18.0.1")! == (.v4(IPv4Address(198, 18, 0, 1)), nil))
        #expect(IPVSCommandParser.parseEndpoint("[2001:2::1]:80")! == (IPAddress("2001:2::1")!, 80))
        #expect(IPVSCommandParser.parseEndpoint("2001:2::1")! == (IPAddress("2001:2::1")!, nil))
        #expect(IPVSCommandParser.parseEndpoint("[2001:2::1]") == nil)
        #expect(IPVSCommandParser.parseEndpoint("localhost:80") == nil)
    }
}
