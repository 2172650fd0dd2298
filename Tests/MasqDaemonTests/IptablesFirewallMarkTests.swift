import Testing
@testable import MasqCore
@testable import MasqDaemon

/// The iptables plan of firewall-mark services (`-f`): the admin marks packets with their own rules
/// (raw PREROUTING, recommended, or mangle PREROUTING, IPVS's usual place), and masq's chains, jumped
/// to from the end of those hooks, queue what carries a service's mark.
@Suite struct IptablesFirewallMarkTests {
    static let web1 = IPAddress.v4(IPv4Address("198.19.0.201")!)
    static let web2 = IPAddress.v4(IPv4Address("198.19.0.202")!)
    static let q = ["-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass"]

    static func fwmark(_ mark: UInt32 = 1, ports: (UInt16, UInt16) = (0, 8080)) -> ServiceSpec {
        ServiceSpec(key: ServiceKey(fwmark: mark), scheduler: "rr",
                    realServers: [RealServerSpec(address: web1, port: ports.0), RealServerSpec(address: web2, port: ports.1)])
    }

    struct ChainCase: CustomTestStringConvertible, Sendable {
        var description: String
        var chain: String
        var rules: [[String]]
        var testDescription: String { description }
    }

    static let chainCases: [ChainCase] = [
        ChainCase(description: "raw MASQ-MARK: the mark notracked and queued, as an address service's VIP",
                  chain: "MASQ-MARK",
                  rules: [["-m", "mark", "--mark", "1", "-j", "CT", "--notrack"], ["-m", "mark", "--mark", "1"] + q]),
        ChainCase(description: "mangle MASQ-MANGLE: marked there (tracked), unless raw queued it already",
                  chain: "MASQ-MANGLE",
                  rules: [["-m", "mark", "--mark", "1", "-m", "conntrack", "!", "--ctstate", "UNTRACKED"] + q]),
        ChainCase(description: "security MASQ-FORWARD: answers of TCP and UDP, any port for a port-0 real server",
                  chain: "MASQ-FORWARD",
                  rules: [["-p", "tcp", "-s", "198.19.0.201/32"] + q, ["-p", "udp", "-s", "198.19.0.201/32"] + q,
                          ["-p", "tcp", "-s", "198.19.0.202/32", "--sport", "8080"] + q,
                          ["-p", "udp", "-s", "198.19.0.202/32", "--sport", "8080"] + q]),
    ]

    @Test(arguments: chainCases)
    func chainRules(_ c: ChainCase) throws {
        let plan = IptablesPlan(Configuration(services: [Self.fwmark()]), queue: .single(0))
        let chain = try #require(plan.ipv4.chains.first { $0.name == c.chain })
        let rules: [[String]] = c.chain == "MASQ-FORWARD" ? Array(chain.rules.prefix(4)) : chain.rules
        #expect(rules == c.rules)
    }

    /// Nothing keyed on a VIP for a firewall-mark service: it has none (no `-d 0.0.0.0/32`), and its
    /// real servers' answers are notracked outside the director, as an address service's.
    @Test func noVIPRules() {
        let plan = IptablesPlan(Configuration(services: [Self.fwmark()]), queue: .single(0))
        #expect(!plan.ipv4.chains.flatMap(\.rules).joined().contains("0.0.0.0/32"))
        let notrackAnswers: [String] = ["-p", "udp", "-s", "198.19.0.201/32", "-m", "addrtype", "!", "--dst-type", "LOCAL",
                                        "-j", "CT", "--notrack"]
        #expect(plan.preRouting.contains(notrackAnswers))
        #expect(!plan.input.flatMap { $0 }.contains("-d"))
    }

    /// The mark chains jump from the end of PREROUTING (after the admin's MARK rules), the others
    /// first, as before; install, check and removal all name them.
    @Test func jumpsAppended() {
        let plan = IptablesPlan(Configuration(services: [Self.fwmark()]), queue: .single(0))
        let inserts = plan.hookJumps.map(\.insert)
        let appended: [[String]] = [["-t", "mangle", "-A", "PREROUTING", "-j", "MASQ-MANGLE"],
                                    ["-t", "raw", "-A", "PREROUTING", "-j", "MASQ-MARK"]]
        #expect(Array(inserts.prefix(2)) == appended)
        #expect(inserts.dropFirst(2).allSatisfy { $0.contains("-I") })
        #expect(Array(plan.installCommands.suffix(6)) == inserts)
        #expect(plan.removeInput.contains("*mangle\n-D PREROUTING -j MASQ-MANGLE\n-F MASQ-MANGLE\n-X MASQ-MANGLE\nCOMMIT"))
        #expect(plan.restoreInput.contains(":MASQ-MARK - [0:0]"))
    }

    /// Without firewall-mark services the plan is what it was: four chains.
    @Test func noMarkChainsWithoutFirewallMarkServices() {
        let plan = IptablesPlan(Configuration(services: [ServiceSpec(key: ServiceKey(proto: .tcp, address: IPv4Address("198.18.0.1")!, port: 80),
                                                                     realServers: [RealServerSpec(address: Self.web1, port: 80)])]),
                                queue: .single(0))
        #expect(plan.ipv4.chains.map(\.name) == ["MASQ", "MASQ-OUTPUT", "MASQ-FORWARD", "MASQ-INPUT"])
    }

    /// An IPv6 firewall-mark service (`-f 2 -6`) gets the chains through ip6tables only.
    @Test func ipv6MarkChains() throws {
        var spec = ServiceSpec(key: ServiceKey(fwmark: 2, ipv6: true),
                               realServers: [RealServerSpec(address: .v6(IPv6Address("2001:2::201")!), port: 0)])
        spec.scheduler = "rr"
        let plan = IptablesPlan(Configuration(services: [spec]), queue: .single(0))
        #expect(plan.ipv4.chains.count == 4)
        let ipv6 = try #require(plan.ipv6)
        let expected: [[String]] = [["-m", "mark", "--mark", "2", "-j", "CT", "--notrack"], ["-m", "mark", "--mark", "2"] + Self.q]
        #expect(ipv6.marked == expected)
    }

    /// A reload that brings the first firewall-mark service adds the appended jumps the restore cannot;
    /// one that takes the last away removes the chains.
    @Test func refillAddsAndRemovesTheMarkChains() throws {
        let fake = try FakeIptables()
        let runner = IptablesRunner(binary: fake.binary)
        let none = IptablesPlan(Configuration(services: []), queue: .single(0))
        _ = try runner.install(none)
        fake.clearCalls()
        let marked = IptablesPlan(Configuration(services: [Self.fwmark()]), queue: .single(0))
        try runner.refill(marked)
        let appended = marked.hookJumps.filter { $0.insert.contains("-A") }
        var expected: [String] = ["iptables-restore --noflush"]
        for jump in appended {
            expected.append("iptables " + jump.check.joined(separator: " "))
            expected.append("iptables " + jump.insert.joined(separator: " "))
        }
        #expect(fake.calls == expected)
        fake.clearCalls()
        try runner.refill(none)
        #expect(fake.calls.first == "iptables-restore --noflush")
        #expect(fake.calls.contains("iptables -t raw -X MASQ-MARK") && fake.calls.contains("iptables -t mangle -X MASQ-MANGLE"))
    }
}
