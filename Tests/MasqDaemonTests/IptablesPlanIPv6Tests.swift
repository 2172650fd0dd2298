import Foundation
import Testing
@testable import MasqCore
@testable import MasqDaemon

/// IPv6 services' rules (issue 16): the IPv4 layout through ip6tables, `/128`, ICMPv6 (RFC 4443) errors
/// only, neighbour discovery (RFC 4861) returned first in every chain; nothing of ip6tables without them.
@Suite struct IptablesPlanIPv6Tests {
    static func service(_ vip: String, _ port: UInt16, _ servers: [(String, UInt16)], proto: IPProtocol = .tcp) -> ServiceSpec {
        ServiceSpec(key: ServiceKey(proto: proto, address: IPAddress(vip)!, port: port),
                    realServers: servers.map { RealServerSpec(address: IPAddress($0.0)!, port: $0.1) })
    }

    static let ipv6Web = service("2001:2::1", 80, [("2001:2:0:1::101", 80), ("2001:2:0:1::102", 80)])
    static let ipv4Web = service("198.18.0.1", 80, [("198.19.0.201", 80), ("198.19.0.202", 80)])

    /// An IPv6 service alone: iptables gets its four chains, empty (as an empty configuration's), and
    /// ip6tables the IPv6 ones, rule for rule.
    @Test func anIPv6ServiceGoesToIp6tables() throws {
        let plan = IptablesPlan(Configuration(services: [Self.ipv6Web]), queue: .single(0))
        let q = "-j NFQUEUE --queue-num 0 --queue-bypass"
        let a = "2001:2:0:1::101/128", b = "2001:2:0:1::102/128", vip = "2001:2::1/128"
        func nd(_ chain: String) -> String {
            ["router-solicitation", "router-advertisement", "neighbour-solicitation", "neighbour-advertisement", "redirect"]
                .map { "ip6tables -t \(chain.hasSuffix("FORWARD") || chain.hasSuffix("INPUT") ? "security" : "raw") -A \(chain) -p ipv6-icmp --icmpv6-type \($0) -j RETURN" }
                .joined(separator: "\n")
        }
        func errors(_ prefix: String) -> String {
            ["destination-unreachable", "packet-too-big", "time-exceeded", "parameter-problem"]
                .map { "\(prefix) --icmpv6-type \($0) \(q)" }.joined(separator: "\n")
        }
        #expect(plan.script() == IptablesPlan(Configuration(), queue: .single(0)).script() + """
            ip6tables -t raw -N MASQ
            \(nd("MASQ"))
            ip6tables -t raw -A MASQ -p tcp -s \(a) --sport 80 -d \(vip) -j CT --notrack
            ip6tables -t raw -A MASQ -p tcp -s \(a) --sport 80 -d \(vip) -j RETURN
            ip6tables -t raw -A MASQ -p tcp -s \(b) --sport 80 -d \(vip) -j CT --notrack
            ip6tables -t raw -A MASQ -p tcp -s \(b) --sport 80 -d \(vip) -j RETURN
            ip6tables -t raw -A MASQ -p tcp -d \(vip) --dport 80 -j CT --notrack
            ip6tables -t raw -A MASQ -p tcp -d \(vip) --dport 80 \(q)
            ip6tables -t raw -A MASQ -p tcp -s \(a) --sport 80 -m addrtype '!' --dst-type LOCAL -j CT --notrack
            ip6tables -t raw -A MASQ -p tcp -s \(b) --sport 80 -m addrtype '!' --dst-type LOCAL -j CT --notrack
            ip6tables -t raw -A MASQ -p ipv6-icmp -s \(a) -j RETURN
            ip6tables -t raw -A MASQ -p ipv6-icmp -s \(b) -j RETURN
            \(errors("ip6tables -t raw -A MASQ -p ipv6-icmp -d \(vip)"))
            ip6tables -t raw -N MASQ-OUTPUT
            \(nd("MASQ-OUTPUT"))
            ip6tables -t raw -A MASQ-OUTPUT -p tcp -d \(vip) --dport 80 -j CT --notrack
            ip6tables -t raw -A MASQ-OUTPUT -p tcp -d \(vip) --dport 80 \(q)
            ip6tables -t raw -A MASQ-OUTPUT -p ipv6-icmp --icmpv6-type packet-too-big \(q)
            ip6tables -t raw -A MASQ-OUTPUT -p ipv6-icmp -s \(vip) --icmpv6-type port-unreachable -j CT --notrack
            ip6tables -t security -N MASQ-FORWARD
            \(nd("MASQ-FORWARD"))
            ip6tables -t security -A MASQ-FORWARD -p tcp -s \(a) --sport 80 \(q)
            ip6tables -t security -A MASQ-FORWARD -p tcp -s \(b) --sport 80 \(q)
            \(errors("ip6tables -t security -A MASQ-FORWARD -p ipv6-icmp"))
            ip6tables -t security -N MASQ-INPUT
            \(nd("MASQ-INPUT"))
            ip6tables -t security -A MASQ-INPUT -p tcp -s \(a) --sport 80 -d \(vip) \(q)
            ip6tables -t security -A MASQ-INPUT -p tcp -s \(b) --sport 80 -d \(vip) \(q)
            \(errors("ip6tables -t security -A MASQ-INPUT -p ipv6-icmp -s \(a)"))
            \(errors("ip6tables -t security -A MASQ-INPUT -p ipv6-icmp -s \(b)"))
            ip6tables -t security -I INPUT 1 -j MASQ-INPUT
            ip6tables -t security -I FORWARD 1 -j MASQ-FORWARD
            ip6tables -t raw -I OUTPUT 1 -j MASQ-OUTPUT
            ip6tables -t raw -I PREROUTING 1 -j MASQ

            """)
        let ipv6 = try #require(plan.ipv6)
        #expect(ipv6.family == .ipv6 && ipv6.chains.map(\.name) == ["MASQ", "MASQ-OUTPUT", "MASQ-FORWARD", "MASQ-INPUT"])
        #expect(plan.ipv4 == IptablesPlan(Configuration(), queue: .single(0)).ipv4)
        #expect(plan.ruleCount == plan.ipv4.ruleCount + ipv6.ruleCount && ipv6.ruleCount == 19 + 9 + 11 + 15)
        #expect(plan.chainNames == "raw/MASQ, raw/MASQ-OUTPUT, security/MASQ-FORWARD, security/MASQ-INPUT (iptables and ip6tables)")
        // One transaction per table for ip6tables-restore too, the same shape as iptables'.
        #expect(ipv6.restoreInput.hasPrefix("*raw\n:MASQ - [0:0]\n:MASQ-OUTPUT - [0:0]\n-A MASQ -p ipv6-icmp --icmpv6-type router-solicitation -j RETURN\n"))
        #expect(ipv6.removeInput == """
            *raw
            -D PREROUTING -j MASQ
            -D OUTPUT -j MASQ-OUTPUT
            -F MASQ
            -F MASQ-OUTPUT
            -X MASQ
            -X MASQ-OUTPUT
            COMMIT
            *security
            -D FORWARD -j MASQ-FORWARD
            -D INPUT -j MASQ-INPUT
            -F MASQ-FORWARD
            -F MASQ-INPUT
            -X MASQ-FORWARD
            -X MASQ-INPUT
            COMMIT

            """)
    }

    /// Neighbour discovery is the first thing of every IPv6 chain, before any rule; nothing queues
    /// ICMPv6 but its four error types; echo is never named (so echo to a VIP stays the host's).
    @Test(arguments: [
        [Self.ipv6Web],
        [Self.ipv6Web, Self.ipv4Web, Self.service("2001:2::2", 0, [("2001:2:0:1::103", 0)], proto: .udp)],
        [Self.service("2001:2::2", 53, [("2001:2:0:1::103", 5353)], proto: .udp)],
    ])
    func neighbourDiscoveryFirstAndOnlyErrorsQueued(services: [ServiceSpec]) throws {
        let plan = IptablesPlan(Configuration(services: services), queue: .balance(0, 1), failClosed: true)
        let ipv6 = try #require(plan.ipv6)
        let nd = IptablesFamilyPlan.neighbourDiscovery.map { ["-p", "ipv6-icmp", "--icmpv6-type", $0, "-j", "RETURN"] }
        #expect(IptablesFamilyPlan.neighbourDiscovery.count == 5)  // RFC 4861 types 133-137
        for chain in ipv6.chains {
            #expect(Array(chain.rules.prefix(5)) == nd, "\(chain.name)")
            for rule in chain.rules.dropFirst(5) {
                #expect(!rule.contains { $0.hasPrefix("router-") || $0.hasPrefix("neighbour-") || $0 == "redirect" || $0.hasPrefix("echo") })
                #expect(!rule.contains("icmp") && !rule.contains("--icmp-type"))
                #expect(!rule.contains { $0.hasSuffix("/32") })
                if rule.contains("ipv6-icmp") && rule.contains("NFQUEUE") {
                    let type = try #require(rule.firstIndex(of: "--icmpv6-type").map { rule[$0 + 1] })
                    #expect(IptablesFamilyPlan.icmpv6Errors.contains(type), "\(rule)")
                }
            }
        }
    }

    /// Both families at once: the IPv4 chains exactly as without the IPv6 service, the IPv6 chains
    /// holding only IPv6 addresses; the queue target the same in both.
    @Test func mixedServicesSplitByFamily() throws {
        let mixed = IptablesPlan(Configuration(services: [Self.ipv4Web, Self.ipv6Web]), queue: .cpuFanout(2, 3))
        let ipv4Only = IptablesPlan(Configuration(services: [Self.ipv4Web]), queue: .cpuFanout(2, 3))
        let ipv6Only = IptablesPlan(Configuration(services: [Self.ipv6Web]), queue: .cpuFanout(2, 3))
        #expect(mixed.ipv4 == ipv4Only.ipv4)
        #expect(mixed.ipv6 == ipv6Only.ipv6)
        #expect(mixed.restoreInput == ipv4Only.restoreInput && mixed.hookJumps.map(\.insert) == ipv4Only.hookJumps.map(\.insert))
        #expect(mixed.script() == ipv4Only.script() + ipv6Only.ipv6!.script(binary: "ip6tables"))
        #expect(mixed.script(binary: "iptables-legacy").contains("\nip6tables-legacy -t raw -I PREROUTING 1 -j MASQ\n"))
        #expect(mixed.ruleCount == ipv4Only.ruleCount + ipv6Only.ipv6!.ruleCount)
        #expect(!mixed.ipv4.chains.flatMap(\.rules).joined().contains { $0.contains(":") && $0 != "2:3" })
        #expect(mixed.ipv6!.chains.flatMap(\.rules).allSatisfy { rule in
            rule.contains("--queue-balance") ? rule.suffix(4) == ["--queue-balance", "2:3", "--queue-cpu-fanout", "--queue-bypass"] : true
        })
        // A different IPv6 service is a different plan: the refresh compares the whole value.
        let other = IptablesPlan(Configuration(services: [Self.ipv4Web, Self.service("2001:2::9", 443, [])]), queue: .cpuFanout(2, 3))
        #expect(other != mixed && other.ipv4 == mixed.ipv4)
    }

    /// No IPv6 service, no IPv6 chains (so no ip6tables run); an IPv6 real server still draining
    /// keeps its reply rules, for every IPv6 VIP, as IPv4's do.
    @Test func ipv6ChainsOnlyWithIPv6ServicesOrDrainingServers() throws {
        let ipv4Only = IptablesPlan(Configuration(services: [Self.ipv4Web]), queue: .single(0))
        #expect(ipv4Only.ipv6 == nil && ipv4Only.families.count == 1 && !ipv4Only.script().contains("ip6tables"))
        #expect(ipv4Only.chainNames == "raw/MASQ, raw/MASQ-OUTPUT, security/MASQ-FORWARD, security/MASQ-INPUT")

        let draining = IptablesPlan(Configuration(services: [Self.ipv4Web]), queue: .single(0),
                                    draining: [(.tcp, IPAddress("2001:2:0:1::109")!, 80)])
        let ipv6 = try #require(draining.ipv6)
        #expect(ipv6.forward.map { $0.joined(separator: " ") }.contains(
            "-p tcp -s 2001:2:0:1::109/128 --sport 80 -j NFQUEUE --queue-num 0 --queue-bypass"))
        #expect(draining.ipv4 == ipv4Only.ipv4)

        let withVIP = IptablesPlan(Configuration(services: [Self.ipv6Web]), queue: .single(0),
                                   draining: [(.tcp, IPAddress("2001:2:0:1::109")!, 80), (.tcp, IPAddress("198.19.0.209")!, 80)])
        #expect(withVIP.ipv6!.input.map { $0.joined(separator: " ") }.contains(
            "-p tcp -s 2001:2:0:1::109/128 --sport 80 -d 2001:2::1/128 -j NFQUEUE --queue-num 0 --queue-bypass"))
        #expect(withVIP.ipv4.forward.map { $0.joined(separator: " ") } == [
            "-p tcp -s 198.19.0.209/32 --sport 80 -j NFQUEUE --queue-num 0 --queue-bypass",
            "-p icmp --icmp-type destination-unreachable -j NFQUEUE --queue-num 0 --queue-bypass",
            "-p icmp --icmp-type source-quench -j NFQUEUE --queue-num 0 --queue-bypass",
            "-p icmp --icmp-type time-exceeded -j NFQUEUE --queue-num 0 --queue-bypass",
            "-p icmp --icmp-type parameter-problem -j NFQUEUE --queue-num 0 --queue-bypass"])
    }

    /// ip6tables is chosen as `--iptables` chooses iptables: the same backend, the same directory.
    @Test(arguments: [
        ("iptables", "ip6tables"), ("iptables-legacy", "ip6tables-legacy"), ("iptables-nft", "ip6tables-nft"),
        ("/usr/sbin/iptables-legacy", "/usr/sbin/ip6tables-legacy"), ("/opt/iptables/bin/iptables", "/opt/iptables/bin/ip6tables"),
        ("/usr/local/bin/my-firewall", "ip6tables"),
    ])
    func ip6tablesFollowsTheIptablesOption(iptables: String, ip6tables: String) {
        #expect(IptablesFamily.ip6tables(for: iptables) == ip6tables)
        #expect(IptablesRunner(binary: iptables).binary6 == ip6tables)
    }

    /// A configuration without IPv6 services never runs ip6tables: installed, refilled and removed.
    @Test func noIPv6ServiceNoIp6tablesCall() throws {
        let fake = try FakeIptables()
        let plan = IptablesPlan(Configuration(services: [Self.ipv4Web]), queue: .single(0))
        let runner = IptablesRunner(binary: fake.binary)
        _ = try runner.install(plan)
        try runner.refill(IptablesPlan(Configuration(services: []), queue: .single(0)))
        runner.remove(plan)
        #expect(!fake.calls.isEmpty && fake.calls.allSatisfy { $0.hasPrefix("iptables") })
        #expect(fake.restoreInput6.isEmpty)
    }

    /// Both families installed: IPv4 first, then ip6tables the same way (its own -C checks, one restore,
    /// the missing jumps), and the count of hooks found covers both.
    @Test func installBothFamilies() throws {
        let fake = try FakeIptables()
        let plan = IptablesPlan(Configuration(services: [Self.ipv4Web, Self.ipv6Web]), queue: .single(0))
        fake.present(plan.hookJumps.map(\.check))
        fake.present6([plan.ipv6!.hookJumps[0].check])
        let installation = try IptablesRunner(binary: fake.binary).install(plan)
        #expect(installation == IptablesInstallation(note: nil, hooksFound: 5))
        let calls = fake.calls
        let firstIPv6 = try #require(calls.firstIndex { $0.hasPrefix("ip6tables") })
        #expect(calls[..<firstIPv6].allSatisfy { $0.hasPrefix("iptables") })
        #expect(Array(calls[firstIPv6...]) == plan.ipv6!.hookJumps.map { "ip6tables " + $0.check.joined(separator: " ") }
            + ["ip6tables-restore --noflush"] + plan.ipv6!.hookJumps.dropFirst().map { "ip6tables " + $0.insert.joined(separator: " ") })
        #expect(fake.restoreInput == plan.restoreInput && fake.restoreInput6 == plan.ipv6!.restoreInput)
    }

    /// The IPv6 chains fail on a clean host: the IPv4 chains just installed are taken back too, so a
    /// failed start leaves nothing; over a previous masq's IPv4 rules, those stay.
    @Test func aFailedIPv6InstallTakesBackAFreshIPv4One() throws {
        let plan = IptablesPlan(Configuration(services: [Self.ipv4Web, Self.ipv6Web]), queue: .single(0))
        let fresh = try FakeIptables(failRestore6: true)
        #expect(throws: IptablesError.self) { try IptablesRunner(binary: fresh.binary).install(plan) }
        #expect(fresh.calls.filter { $0.hasPrefix("ip6tables ") && $0.contains(" -X ") }.count == 4)
        #expect(fresh.calls.last == "iptables-restore --noflush" && fresh.restoreInput.hasSuffix(plan.ipv4.removeInput))
        let over = try FakeIptables(failRestore6: true)
        over.present(plan.hookJumps.map(\.check))
        #expect(throws: IptablesError.self) { try IptablesRunner(binary: over.binary).install(plan) }
        #expect(!over.calls.contains { $0.hasPrefix("iptables") && ($0.contains(" -D ") || $0.contains(" -X ")) })
        #expect(!over.restoreInput.contains("-X "))
    }

    /// Reloads: the first IPv6 service installs the IPv6 chains whole, a change refills them in one
    /// transaction, the last one gone removes them; stopping removes what is installed.
    @Test func refillBringsAndTakesTheIPv6Chains() throws {
        let fake = try FakeIptables()
        let runner = IptablesRunner(binary: fake.binary)
        let ipv4Only = IptablesPlan(Configuration(services: [Self.ipv4Web]), queue: .single(0))
        _ = try runner.install(ipv4Only)
        fake.clearCalls()

        let mixed = IptablesPlan(Configuration(services: [Self.ipv4Web, Self.ipv6Web]), queue: .single(0))
        try runner.refill(mixed)
        #expect(fake.calls == ["iptables-restore --noflush"]
            + mixed.ipv6!.hookJumps.map { "ip6tables " + $0.check.joined(separator: " ") } + ["ip6tables-restore --noflush"]
            + mixed.ipv6!.hookJumps.map { "ip6tables " + $0.insert.joined(separator: " ") })
        fake.clearCalls()

        let changed = IptablesPlan(Configuration(services: [Self.ipv4Web, Self.service("2001:2::1", 80, [("2001:2:0:1::101", 80)])]),
                                   queue: .single(0))
        try runner.refill(changed)
        #expect(fake.calls == ["iptables-restore --noflush", "ip6tables-restore --noflush"])
        #expect(fake.restoreInput6.hasSuffix(changed.ipv6!.restoreInput))
        fake.clearCalls()

        try runner.refill(ipv4Only)
        #expect(fake.calls == ["iptables-restore --noflush", "ip6tables-restore --noflush"])
        #expect(fake.restoreInput6.hasSuffix(changed.ipv6!.removeInput))
        fake.clearCalls()
        runner.remove(ipv4Only)
        #expect(fake.calls == ["iptables-restore --noflush"])

        // Installed with IPv6 and stopped: both families' chains go.
        _ = try runner.install(mixed)
        fake.clearCalls()
        runner.remove(mixed)
        #expect(fake.calls == ["iptables-restore --noflush", "ip6tables-restore --noflush"])
        #expect(fake.restoreInput6.hasSuffix(mixed.ipv6!.removeInput))
    }

    /// `masq iptables --remove` without a rules file knows no IPv6 service: it looks for masq's chains in
    /// `ip6tables-save`, and only where ip6tables is installed.
    @Test func removalFindsInstalledIPv6ChainsByName() throws {
        let chains = IptablesFamilyPlan(family: .ipv6, chain: "MASQ")
        let saved = """
            # Generated by ip6tables-nft-save v1.8.9 (nf_tables) on Tue Dec  1 23:00:00 2026
            *raw
            :PREROUTING ACCEPT [0:0]
            :OUTPUT ACCEPT [0:0]
            :MASQ - [0:0]
            :MASQ-OUTPUT - [0:0]
            -A PREROUTING -j MASQ
            COMMIT
            """
        #expect(IptablesRunner.savedRulesetHasChain(saved, of: chains))
        #expect(!IptablesRunner.savedRulesetHasChain(saved, of: IptablesFamilyPlan(family: .ipv6, chain: "LVS")))
        #expect(!IptablesRunner.savedRulesetHasChain("*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j MASQX\nCOMMIT\n", of: chains))
        #expect(!IptablesRunner.ip6TablesHold(chains, binary: "/nonexistent/ip6tables"))

        let fake = try FakeIptables()
        try "#!/bin/sh\necho \"$(basename \"$0\") $*\" >>'\(fake.directory)/calls'\ncat <<'END'\n\(saved)\nEND\n"
            .write(toFile: fake.binary6 + "-save", atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: fake.binary6 + "-save")
        #expect(IptablesRunner.ip6TablesHold(chains, binary: fake.binary6))
        fake.clearCalls()
        IptablesRunner.removeEverywhere(IptablesPlan(Configuration(), queue: .single(0)), binary: fake.binary)
        #expect(fake.calls == ["iptables-restore --noflush", "ip6tables-save ", "ip6tables-restore --noflush"])
        #expect(fake.restoreInput6 == chains.removeInput)
    }

    @Test func executablesAreLookedUpAsEnvDoes() throws {
        #expect(IptablesRunner.executableExists("sh", path: "/nonexistent:/bin"))
        #expect(!IptablesRunner.executableExists("sh", path: "/nonexistent"))
        #expect(IptablesRunner.executableExists("/bin/sh"))
        let fake = try FakeIptables()
        let plain = fake.directory + "/not-a-program"
        _ = FileManager.default.createFile(atPath: plain, contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o644])
        #expect(!IptablesRunner.executableExists(plain))
        #expect(IptablesRunner.executableExists("ip6tables", path: fake.directory))
        #expect(!IptablesRunner.executableExists("ip6tables-save", path: fake.directory))
    }

    /// The notice about an unreadable legacy table list is said once per family, naming its file.
    @Test func theLegacyNoticeIsPerFamily() throws {
        let capture = LogCapture()
        let runner = IptablesRunner(binary: "iptables", logger: capture.logger(),
                                    legacyTables: { .failure(ReadError(code: EACCES)) },
                                    legacyTables6: { .failure(ReadError(code: EACCES)) })
        let plan = IptablesPlan(Configuration(services: [Self.ipv6Web]), queue: .single(0))
        #expect(!runner.legacyHoldsOrSay(plan.ipv4) && !runner.legacyHoldsOrSay(plan.ipv6!) && !runner.legacyHoldsOrSay(plan.ipv6!))
        let lines = capture.lines.withLock { $0 }
        try #require(lines.count == 2)
        #expect(lines[1].1.hasPrefix("cannot tell whether ip6tables-legacy holds masq's tables (/proc/net/ip6_tables_names: Permission denied): taken as not"))
        #expect(IptablesRunner.legacyHolds(plan.ipv6!, tables: .success("filter\nsecurity\n")) == true)
    }
}
