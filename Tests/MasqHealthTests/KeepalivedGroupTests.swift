import Synchronization
import Testing
@testable import MasqCore
@testable import MasqHealth

private func parse(_ text: String) throws(RulesError) -> KeepalivedConfig {
    try KeepalivedParser.parse(text: text, file: "k.conf")
}

private func failure(_ text: String) -> RulesError? {
    do {
        _ = try KeepalivedParser.parse(text: text, file: "k.conf")
        return nil
    } catch {
        return error
    }
}

private func v4(_ s: String) -> IPAddress { .v4(IPv4Address(s)!) }
private func v6(_ s: String) -> IPAddress { .v6(IPv6Address(s)!) }
private func tcp(_ a: String, _ port: UInt16) -> ServiceKey { ServiceKey(proto: .tcp, address: IPAddress(a)!, port: port) }

/// A `virtual_server HEADER` block with one checked real server (198.19.0.201, TCP_CHECK) and `body`.
private func block(_ header: String, _ body: String = "protocol TCP", server: String = "198.19.0.201 80") -> String {
    """
    virtual_server \(header) {
        lvs_sched rr
        lvs_method NAT
        \(body)
        real_server \(server) {
            TCP_CHECK {
                connect_timeout 3
                retry 0
            }
        }
    }
    """
}

/// keepalived's `virtual_server fwmark N` (check_data.c `alloc_vs`, check_parser.c).
@Suite struct KeepalivedFwmarkTests {
    @Test func aMarkIsOneServiceOfItsRealServersFamily() throws {
        let c = try parse(block("fwmark 7", "persistence_timeout 900", server: "198.19.0.201"))
        #expect(c.configuration.services.map(\.key) == [ServiceKey(fwmark: 7)])
        let s = c.configuration.services[0]
        // No port on a mark's real server stays 0 (IPVS forwards to the port the packet was sent to).
        #expect(s.realServers == [RealServerSpec(address: v4("198.19.0.201"), port: 0, weight: 1)])
        #expect(s.persistence == 900)
        #expect(c.virtualServers[0].keys == [ServiceKey(fwmark: 7)])
        // A mark has no protocol and no port: neither "no protocol" nor "zero port" is said.
        #expect(c.warnings.isEmpty)
    }

    @Test(arguments: [
        ("", "2001:2::201 80", true),          // the real servers' family
        ("ip_family inet6", "2001:2::201 80", true),
        ("ip_family inet", "198.19.0.201 80", false),
        ("persistence_granularity 64", "2001:2::201 80", true),
    ])
    func theFamilyIsIPFamilyOrTheServers(_ body: String, _ server: String, _ ipv6: Bool) throws {
        let c = try parse(block("fwmark 3", body, server: server))
        #expect(c.configuration.services.map(\.key) == [ServiceKey(fwmark: 3, ipv6: ipv6)])
    }

    @Test func aServerOfAnotherFamilyThanIPFamilyIsSkipped() throws {
        let c = try parse(block("fwmark 3", "ip_family inet6\nreal_server 2001:2::202 80 {\n}", server: "198.19.0.201 80"))
        #expect(c.configuration.services[0].key == ServiceKey(fwmark: 3, ipv6: true))
        #expect(c.configuration.services[0].realServers.map(\.address) == [v6("2001:2::202")])
        #expect(c.warnings.contains { $0.line == 7 && $0.message.contains("don't match: this real server is ignored") })
    }

    @Test func keepalivedsCorrections() throws {
        // The protocol of a mark is ignored (validate_check_config), as is ha_suspend.
        let c = try parse(block("fwmark 1", "protocol UDP\nha_suspend"))
        #expect(c.configuration.services[0].key == ServiceKey(fwmark: 1))
        #expect(c.virtualServers[0].haSuspend == false)
        let messages = c.warnings.map(\.message)
        #expect(messages.contains("virtual server fwmark 1: protocol specified for fwmark, the protocol is ignored (as keepalived does)"))
        #expect(messages.contains("virtual server fwmark 1: cannot use ha_suspend with fwmarks, ha_suspend cleared (as keepalived does)"))
    }

    @Test func aMarkTwiceIsAnError() {
        let e = failure(block("fwmark 1") + "\n" + block("fwmark 1"))
        #expect(e == RulesError(file: "k.conf", line: 12, token: "virtual_server",
                                message: "virtual server FWM 1 is already defined at k.conf:1"))
    }
}

/// `ops`, `uthreshold` and `lthreshold`.
@Suite struct KeepalivedOpsThresholdTests {
    @Test func opsOnUDPAndOnAMark() throws {
        let udp = try parse(block("198.18.0.1 53", "protocol UDP\nops", server: "198.19.0.201 53"))
        #expect(udp.configuration.services[0].onePacket)
        let mark = try parse(block("fwmark 5", "ops"))
        #expect(mark.configuration.services[0].onePacket)
    }

    @Test func opsOnTCPIsResetAsKeepalivedDoes() throws {
        let c = try parse(block("198.18.0.1 80", "protocol TCP\nops"))
        #expect(!c.configuration.services[0].onePacket)
        #expect(c.warnings == [RulesError(file: "k.conf", line: 1, token: "virtual_server",
                                          message: "virtual server TCP 198.18.0.1:80: one packet scheduling requires UDP, ops reset (as keepalived does)")])
    }

    @Test func thresholdsReachTheServerEvenInhibited() async throws {
        let c = try parse(block("198.18.0.1 80", "protocol TCP", server: "198.19.0.201 80")
            .replacingOccurrences(of: "TCP_CHECK {", with: "uthreshold 100\n lthreshold 80\n inhibit_on_failure\n TCP_CHECK {"))
        let rs = c.configuration.services[0].realServers[0]
        #expect(rs.upperThreshold == 100 && rs.lowerThreshold == 80)
        #expect(c.virtualServers[0].realServers[0].spec == rs)
        // Failed with inhibit_on_failure: weight 0, thresholds kept.
        let monitor = HealthMonitor(c, now: 0)
        _ = await monitor.tick(now: 0) { _, _, _ in .failure(ProbeFailure(check: "TCP", reason: .connectionRefused)) }
        let inhibited = monitor.effectiveConfiguration(timeouts: Timeouts()).services[0].realServers[0]
        #expect(inhibited.weight == 0 && inhibited.upperThreshold == 100 && inhibited.lowerThreshold == 80)
    }
}

/// `virtual_server_group NAME { ... }` and `virtual_server group NAME { ... }` (check_parser.c
/// `vsg_handler`, check_data.c `alloc_vsg_entry`, ipwrapper.c `link_vsg_to_vs`).
@Suite struct KeepalivedGroupTests {
    static let group = """
        virtual_server_group WEB {
            198.18.0.1 80
            198.18.0.2-4 8080
            fwmark 7
            198.18.1.0/30 443
            198.18.2.254-198.18.3.1 80
        }
        """

    @Test func everyMemberIsAServiceWithTheBlocksSettingsAndServers() throws {
        let c = try parse(Self.group + "\n" + block("group WEB", "protocol TCP\npersistence_timeout 30"))
        let keys = [tcp("198.18.0.1", 80), tcp("198.18.0.2", 8080), tcp("198.18.0.3", 8080), tcp("198.18.0.4", 8080),
                    ServiceKey(fwmark: 7),
                    tcp("198.18.1.0", 443), tcp("198.18.1.1", 443), tcp("198.18.1.2", 443), tcp("198.18.1.3", 443),
                    tcp("198.18.2.254", 80), tcp("198.18.2.255", 80), tcp("198.18.3.0", 80), tcp("198.18.3.1", 80)]
        #expect(c.configuration.services.map(\.key) == keys)
        for s in c.configuration.services {
            #expect(s.scheduler == "rr" && s.persistence == 30)
            #expect(s.realServers == [RealServerSpec(address: v4("198.19.0.201"), port: 80, weight: 1)])
        }
        // One health entry for the block, one check per real server: it stands for every member.
        #expect(c.virtualServers.count == 1)
        #expect(c.virtualServers[0].keys == keys && c.virtualServers[0].key == keys[0])
        #expect(c.virtualServers[0].realServers.map(\.checks.count) == [1])
        #expect(c.warnings.isEmpty)
    }

    @Test func aGroupAfterItsBlockIsLinkedAtTheEnd() throws {
        let c = try parse(block("group LATE") + "\nvirtual_server_group LATE {\n 198.18.0.9 80\n}")
        #expect(c.configuration.services.map(\.key) == [tcp("198.18.0.9", 80)])
    }

    @Test func ipv6MembersAndRanges() throws {
        let c = try parse("virtual_server_group V6 {\n 2001:2::1 80\n 2001:2::a-c 80\n 2001:2::fe-2001:2::101 80\n 2001:2::1:0/126 80\n fwmark 9\n}\n"
                          + block("group V6", server: "2001:2::201 80"))
        let hosts = ["2001:2::1", "2001:2::a", "2001:2::b", "2001:2::c", "2001:2::fe", "2001:2::ff", "2001:2::100", "2001:2::101"]
        #expect(c.configuration.services.map(\.key) == (hosts + ["2001:2::1:0", "2001:2::1:1", "2001:2::1:2", "2001:2::1:3"]).map { tcp($0, 80) }
                    + [ServiceKey(fwmark: 9, ipv6: true)])
    }

    @Test func oneGroupForTCPAndUDP() throws {
        let c = try parse("virtual_server_group DNS {\n 198.18.0.53 53\n}\n" + block("group DNS", "protocol TCP", server: "198.19.0.201 53")
                          + "\n" + block("group DNS", "protocol UDP\nops", server: "198.19.0.201 53"))
        #expect(c.configuration.services.map(\.key) == [tcp("198.18.0.53", 53), ServiceKey(proto: .udp, address: v4("198.18.0.53"), port: 53)])
        #expect(c.configuration.services.map(\.onePacket) == [false, true])
    }

    @Test func aZeroPortMemberMakesTheBlockPersistent() throws {
        let c = try parse("virtual_server_group G {\n 198.18.0.1\n 198.18.0.2 0\n}\n" + block("group G"))
        #expect(c.configuration.services.map(\.persistence) == [ServiceSpec.defaultPersistence, ServiceSpec.defaultPersistence])
        #expect(c.warnings.map(\.message) == ["virtual server group G: a zero port is only valid for persistent services, "
                                              + "persistence_timeout \(ServiceSpec.defaultPersistence) set (as keepalived does)"])
    }

    /// What keepalived warns about and drops, at file:line.
    @Test(arguments: [
        ("virtual_server_group G {\n 198.18.0.1 80\n 198.18.0.1 80\n}", 3, "198.18.0.1",
         "G: this member is already in the group (line 2): ignored", 1),
        ("virtual_server_group G {\n 198.18.0.1-4 80\n 198.18.0.3-6 80\n}", 3, "198.18.0.3-6",
         "G: 2 of its 4 members are already in the group (line 2): ignored", 6),
        ("virtual_server_group G {\n 198.18.0.1 80\n}\nvirtual_server_group G {\n 198.18.0.2 80\n}", 4, "virtual_server_group",
         "virtual server group G is already defined at k.conf:1: this one is ignored (keepalived uses the first)", 1),
    ])
    func warned(_ groups: String, _ line: Int, _ token: String, _ message: String, _ services: Int) throws {
        let c = try parse(groups + "\n" + block("group G"))
        #expect(c.warnings == [RulesError(file: "k.conf", line: line, token: token, message: message)])
        #expect(c.configuration.services.count == services && c.configuration.services[0].key == tcp("198.18.0.1", 80))
    }

    /// Groups and blocks keepalived removes (with its message): the file has then nothing to run.
    @Test(arguments: [
        ("virtual_server_group G {\n}", false, "virtual_server_group", "virtual server group G has no entries: removed (as keepalived does)"),
        ("virtual_server_group G {\n 198.18.0.1 80\n 2001:2::1 80\n fwmark 1\n}", false, "virtual_server_group",
         "virtual server group G cannot have IPv4, IPv6 and fwmark without family: removed (as keepalived does)"),
        ("virtual_server_group G {\n 198.18.0.1 80\n 2001:2::1 80\n}", true, "G",
         "G: virtual server group with IPv4 & IPv6 doesn't match virtual server group G: this virtual server is ignored (as keepalived does)"),
        ("virtual_server_group G {\n 2001:2::1 80\n}", true, "G",
         "G: address family doesn't match virtual server group G: this virtual server is ignored (as keepalived does)"),
        ("virtual_server_group G {\n fwmark 1 inet6\n}", true, "G",
         "G: address family doesn't match virtual server group G: this virtual server is ignored (as keepalived does)"),
        ("virtual_server_group OTHER {\n 198.18.0.1 80\n}", true, "G",
         "virtual server group G specified but not configured: this virtual server is ignored (as keepalived does)"),
    ])
    func removed(_ groups: String, _ atBlock: Bool, _ token: String, _ message: String) {
        let text = groups + "\n" + block("group G")
        // Said at the group's line 1, or at the block's name (the line after the group).
        let blockLine = groups.split(separator: "\n", omittingEmptySubsequences: false).count + 1
        let expected = RulesError(file: "k.conf", line: atBlock ? blockLine : 1, token: token, message: message)
        do {
            let c = try parse(text + "\n" + block("198.18.9.9 80"))
            #expect(c.warnings.contains(expected), "\(c.warnings)")
            #expect(c.configuration.services.map(\.key) == [tcp("198.18.9.9", 80)])
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test(arguments: [
        ("198.18.0.5-4 80", "198.18.0.5-4", "address range end is not greater than address range start"),
        ("198.18.0.5-5 80", "198.18.0.5-5", "address range end is not greater than address range start"),
        ("198.18.0.5-256 80", "198.18.0.5-256", "invalid IPv4 range end 256 (a last byte, up to 255 expected)"),
        ("198.18.0.9-198.18.0.1 80", "198.18.0.9-198.18.0.1", "address range end is less than address range start"),
        // keepalived's family is the line's (a ':' makes it IPv6): not an IPv6 address.
        ("198.18.0.1-2001:2::1 80", "198.18.0.1-2001:2::1", "invalid virtual server group address"),
        ("2001:2::1-g 80", "2001:2::1-g", "invalid IPv6 range end g (a hexadecimal group, up to ffff expected)"),
        ("198.18.0.1/24 80", "198.18.0.1/24", "address mask bits not empty"),
        ("198.18.0.0/33 80", "198.18.0.0/33", "invalid netmask (a prefix length of 1-32 expected)"),
        ("198.18.0.0/16 80", "198.18.0.0/16", "198.18.0.0/16 has more than 4096 addresses (masq makes a service of each)"),
        ("198.18.0.0-198.18.255.255 80", "198.18.0.0-198.18.255.255",
         "198.18.0.0-198.18.255.255 has more than 4096 addresses (masq makes a service of each)"),
        ("[2001:2::1] 80", "[2001:2::1]", "invalid virtual server group address"),
        ("198.18.0.1 http", "http", "invalid virtual server group port"),
        ("198.18.0.1 80 TCP", "TCP", "extra word after 198.18.0.1: keepalived reads one keyword per line (and would ignore it)"),
        ("fwmark 0", "0", "invalid fwmark (a number in 1-4294967295 expected)"),
        ("fwmark 1 inet4", "inet4", "unknown fwmark family (inet or inet6 expected)"),
        ("fwmark", "fwmark", "fwmark needs a mark"),
    ])
    func badMembers(_ member: String, _ token: String, _ message: String) {
        let e = failure("virtual_server_group G {\n \(member)\n}\n" + block("group G"))
        #expect(e == RulesError(file: "k.conf", line: 2, token: token, message: message))
    }

    @Test func aMemberDefinedElsewhereIsAnError() {
        let e = failure(block("198.18.0.3 80") + "\nvirtual_server_group G {\n 198.18.0.1-5 80\n}\n" + block("group G"))
        #expect(e == RulesError(file: "k.conf", line: 15, token: "virtual_server",
                                message: "virtual server TCP 198.18.0.3:80 (virtual server group G, from k.conf:13) is already defined at k.conf:1"))
    }

    /// One real server's check moves it in every member, quorum and sorry server per block.
    @Test func oneCheckDrivesEveryMember() async throws {
        let text = """
            virtual_server_group G {
                198.18.0.1 80
                198.18.0.2 80
                fwmark 4
            }
            virtual_server group G {
                delay_loop 6
                lvs_sched rr
                lvs_method NAT
                protocol TCP
                quorum 1
                sorry_server 198.19.0.250 80
                real_server 198.19.0.201 80 {
                    TCP_CHECK {
                        retry 0
                    }
                }
                real_server 198.19.0.202 80 {
                    inhibit_on_failure
                    TCP_CHECK {
                        retry 0
                    }
                }
                real_server 198.19.0.203 80 {
                    TCP_CHECK {
                        retry 0
                    }
                }
            }
            """
        let config = try parse(text)
        let monitor = HealthMonitor(config, now: 0)
        let down = Mutex<Set<String>>([])
        let probed = Mutex<[String]>([])
        let probe: HealthMonitor.ProbeFunction = { _, address, _ in
            probed.withLock { $0.append(address.description) }
            return down.withLock { $0.contains(address.description) }
                ? .failure(ProbeFailure(check: "TCP connect to \(address):80", reason: .connectionRefused)) : .success
        }
        func pools() -> [[String]] {
            monitor.effectiveConfiguration(timeouts: Timeouts()).services.map { $0.realServers.map { "\($0.address) \($0.weight)" } }
        }
        let all = ["198.19.0.201 1", "198.19.0.202 1", "198.19.0.203 1"]
        #expect(await monitor.tick(now: 0, probe: probe).isEmpty)
        #expect(pools() == [all, all, all])
        // Three checks a round, not nine: the checker belongs to the block's real server.
        #expect(probed.withLock { $0.count } == 3)

        let s: Int64 = 1_000_000_000
        _ = down.withLock { $0.formUnion(["198.19.0.201", "198.19.0.202"]) }
        let events = await monitor.tick(now: 6 * s, probe: probe)
        #expect(events.map(\.kind) == [.serverDown, .serverDown])
        let degraded = ["198.19.0.202 0", "198.19.0.203 1"]
        #expect(pools() == [degraded, degraded, degraded])

        _ = down.withLock { $0.insert("198.19.0.203") }
        let lost = await monitor.tick(now: 12 * s, probe: probe)
        #expect(lost.map(\.kind) == [.serverDown, .quorumLost])
        #expect(pools() == [["198.19.0.250 1"], ["198.19.0.250 1"], ["198.19.0.250 1"]])

        // The passive check knows every member; marking a server down in one member marks it in all.
        #expect(monitor.checkedServers.count == 9 && Set(monitor.checkedServers.map(\.0)) == Set(config.virtualServers[0].keys))
        _ = down.withLock { $0.removeAll() }
        _ = await monitor.tick(now: 18 * s, probe: probe)
        #expect(pools() == [all, all, all])
        let marked = monitor.markDown(service: ServiceKey(fwmark: 4), server: RealServerSpec(address: v4("198.19.0.203"), port: 80),
                                      reason: "handshakes failing", now: 19 * s)
        #expect(marked.map(\.kind) == [.serverDown])
        let without203 = ["198.19.0.201 1", "198.19.0.202 1"]
        #expect(pools() == [without203, without203, without203])
    }

    /// A reload keeps a group block's health (the block is known by its first member) while its
    /// members change: a new member starts with the block's servers as they are.
    @Test func aReloadKeepsTheBlocksHealthForNewMembers() async throws {
        func conf(_ members: String) -> String { "virtual_server_group G {\n\(members)\n}\n" + block("group G") }
        let first = try parse(conf(" 198.18.0.1 80"))
        let monitor = HealthMonitor(first, now: 0)
        _ = await monitor.tick(now: 0) { _, _, _ in .failure(ProbeFailure(check: "TCP", reason: .connectionRefused)) }
        #expect(monitor.effectiveConfiguration(timeouts: Timeouts()).services.map(\.realServers.count) == [0])
        let reloaded = HealthMonitor(try parse(conf(" 198.18.0.1 80\n 198.18.0.2 80")), now: 1, previous: monitor)
        #expect(reloaded.effectiveConfiguration(timeouts: Timeouts()).services.map(\.realServers.count) == [0, 0])
        #expect(reloaded.startEvents.isEmpty)
    }
}
