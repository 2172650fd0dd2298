import MasqCore
import Testing
@testable import MasqRules

@Suite struct RulesParserTests {
    @Test func seedRulesParse() throws {
        let c = try RulesFile.parse("""
            # /etc/sysconfig/ipvsadm as ipvsadm-save -n writes it
            -A -t 12.0.0.1:80 -s rr
            -a -t 12.0.0.1:80 -r 192.168.100.101:80 -m -w 1

            -a -t 12.0.0.1:80 -r 192.168.100.102:80 -m -w 1   # trailing comment
            """, file: "seed")
        #expect(c.services.count == 1)
        #expect(c.services[0].scheduler == "rr")
        #expect(c.services[0].realServers.map(\.address.description) == ["192.168.100.101", "192.168.100.102"])
    }

    @Test func longOptionsAndDefaults() throws {
        let c = try RulesFile.parse("""
            --add-service --udp-service 198.18.0.1:53 --persistent --netmask 255.255.255.0
            --add-server --udp-service=198.18.0.1:53 --real-server 198.19.0.201 --masquerading
            -A -t 198.18.0.1:0 -p 600 -s mh -b mh-port,mh-fallback
            """)
        let s = c.services[0]
        #expect(s.key.proto == .udp && s.scheduler == "wlc" && s.persistence == 360)
        #expect(s.netmask.description == "255.255.255.0")
        #expect(s.realServers == [RealServerSpec(address: IPv4Address(198, 19, 0, 201), port: 53, weight: 1)])
        #expect(c.services[1].schedulerFlags == [.port, .fallback] && c.services[1].persistence == 600)
    }

    @Test func saveFormatRoundTrips() throws {
        let text = """
            -A -t 198.18.0.1:80 -s wrr -p 120 -M 255.255.255.0
            -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w 3
            -a -t 198.18.0.1:80 -r 198.19.0.202:80 -m -w 1
            -A -u 198.18.0.1:53 -s sh -b sh-port
            -a -u 198.18.0.1:53 -r 198.19.0.201:5353 -m -w 1

            """
        let c = try RulesFile.parse(text)
        #expect(RulesFile.format(c) == text)
        #expect(try RulesFile.parse(RulesFile.format(c)) == c)
    }

    static let errors: [(String, Int, String, String)] = [
        ("-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.19.0.201:80 -g", 2, "-g", "NAT mode only"),
        ("-A -t 198.18.0.1:80\n-a -t 198.18.0.1:80 -r 198.19.0.201:80 -i -w 1", 2, "-i", "NAT mode only"),
        ("-A -t 198.18.0.1:80 -s fastest", 1, "fastest", "Scheduler or persistence engine not found"),
        ("-A -t 198.18.0.1:80\n\n-A -t 198.18.0.1:80", 3, "198.18.0.1:80", "Service already exists"),
        ("-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m", 1, "198.18.0.1:80", "Service not defined"),
        ("-A -t 198.18.0.1:80\n-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w 70000", 2, "70000", "illegal weight specified"),
        // popt takes the next word as -w's value even when it starts with "-", as ipvsadm does
        ("-A -t 198.18.0.1:80\n-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w -1", 2, "-1", "illegal weight specified"),
        ("-A -t 198.18.0.1:80 -s", 1, "-s", "-s: missing argument"),
        ("-A -t 198.18.0.300:80", 1, "198.18.0.300:80", "illegal virtual server address"),
        ("-A -t 198.18.0.1:0", 1, "198.18.0.1:0", "Zero port specified for non-persistent service"),
        ("-A -t 198.18.0.1:80 --frobnicate", 1, "--frobnicate", "unknown option"),
        ("-A -t 198.18.0.1:80 extra", 1, "extra", "unexpected argument"),
        ("-t 198.18.0.1:80", 1, "-t", "no command"),
        // ipvsadm 1.31 reads only the first option as a command
        ("-A -a -t 198.18.0.1:80", 1, "-a", "invalid option `-a'"),
        ("-t 198.18.0.1:80 -A", 1, "-t", "no command"),
        ("-L -n", 1, "-L", "not an editing command"),
        ("-A -t 198.18.0.1:80\n-R", 2, "-R", "-R cannot be restored"),
        // ipvsadm's checks hold in a rules file as on masqadm's command line
        ("-A -t 198.18.0.1:80 -s rr -b sh-port", 1, "sh-port", "incompatible scheduler flag `sh-port'"),
        ("-A -t 198.18.0.1:80 -p 2678401", 1, "2678401", "invalid timeout value `2678401' specified"),
        ("-A -t 198.18.0.1:80\n-d -t 198.18.0.1:80 -r 198.19.0.201:80 -w 2", 2, "weight", "Illegal 'weight' option with the 'delete-server' command"),
        ("-A -t 198.18.0.1:80 -s rr -b flag-3", 1, "flag-3", "scheduler flag flag-3 is not supported by masq"),
        ("-A -f 1\n-A -f 1", 2, "1", "Service already exists"),
        ("-A -f 1\n-a -f 1 -r 198.19.0.201 -m -x 10\n-e -f 1 -r 198.19.0.201:0 -m -y 5", 3, "198.19.0.201:0",
         "Numerical result out of range"),
        ("-A -f 1 -6\n-a -f 1 -6 -r 198.19.0.201 -m", 2, "-r", "Different address family is allowed only for tunneling servers"),
        ("-A -t 198.18.0.1:80 -o", 1, "-o", "One-Packet Scheduling is only for UDP virtual services"),
        ("-A -t 198.18.0.1:80\n-a -t 198.18.0.1:80 -r 198.19.0.201 -m -x 2147483648", 2, "2147483648",
         "illegal u_threshold specified"),
        ("-A -t 198.18.0.1:80\n-a -t 198.18.0.1:80 -r 198.19.0.201 -m -y x", 2, "x", "illegal l_threshold specified"),
        ("-A -t 198.18.0.1:80\n-a -t 198.18.0.1:80 -r 198.19.0.201 -m -y 1", 2, "198.19.0.201:80",
         "Numerical result out of range"),
        ("-A -f 4294967296", 1, "4294967296", "invalid fwmark value `4294967296' specified"),
        ("-A -t 198.18.0.1:80\n-a -t 198.18.0.1:80 -r 198.19.0.201:80 -w 1", 2, "-a", "no forwarding method"),
        ("-A -t 198.18.0.1:80\n-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m\n-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m", 3, "198.19.0.201:80", "Destination already exists"),
        ("-A -t 198.18.0.1:80 -p 0", 1, "0", "invalid timeout value"),
        ("-A -t 198.18.0.1:80 -s rr -s wlc", 1, "-s", "multiple 'scheduler' options"),
        ("-A -t 198.18.0.1:80 -r 198.19.0.201:80", 1, "real-server", "Illegal 'real-server' option"),
    ]

    @Test(arguments: errors) func errorsNameFileLineAndToken(_ text: String, _ line: Int, _ token: String, _ words: String) {
        #expect {
            _ = try RulesFile.parse(text, file: "rules.conf")
        } throws: { error in
            guard let e = error as? RulesError else { return false }
            return e.file == "rules.conf" && e.line == line && e.token == token && e.message.contains(words)
                && e.description.hasPrefix("rules.conf:\(line): ")
        }
    }

    @Test func inetAtonFormsAndSignedNumbersReadAsIpvsadmReadsThem() throws {
        let c = try RulesFile.parse("""
            -A -t 198.18.1:80 -s rr
            -a -t 0xc6120001:+080 -r 198.19.0.201 -m -w +2
            """)
        #expect(c.services[0].key == ServiceKey(proto: .tcp, address: IPv4Address(198, 18, 0, 1), port: 80))
        #expect(c.services[0].realServers == [RealServerSpec(address: IPv4Address(198, 19, 0, 201), port: 80, weight: 2)])
    }

    @Test func carriageReturnLineEndsSplitLines() throws {
        let c = try RulesFile.parse("-A -t 198.18.0.1:80 -s rr\r\n-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m\r\n")
        #expect(c.services[0].realServers.count == 1)
    }

    @Test func editAndDeleteCommandsApplyInOrder() throws {
        let c = try RulesFile.parse("""
            -A -t 198.18.0.1:80 -s rr
            -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m
            -a -t 198.18.0.1:80 -r 198.19.0.202:80 -m
            -e -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w 5
            -d -t 198.18.0.1:80 -r 198.19.0.202:80
            -E -t 198.18.0.1:80 -s wrr
            """)
        #expect(c.services[0].scheduler == "wrr")
        #expect(c.services[0].realServers == [RealServerSpec(address: IPv4Address(198, 19, 0, 201), port: 80, weight: 5)])
    }
}

@Suite struct TextLineTests {
    @Test func wordsLinesAndComments() {
        let text = "# head\n\n  -A\t-t x  # tail\r\n\r\n\tipvsadm -C\nlast"
        #expect(TextLine.lines(text) == [
            TextLine(number: 3, words: ["-A", "-t", "x"]), TextLine(number: 5, words: ["ipvsadm", "-C"]),
            TextLine(number: 6, words: ["last"]),
        ])
        // ipvsadm -R has no comments: "#" is a word there.
        #expect(TextLine.lines("-A # x", comment: nil) == [TextLine(number: 1, words: ["-A", "#", "x"])])
        #expect(TextLine.lines("") == [])
    }
}
