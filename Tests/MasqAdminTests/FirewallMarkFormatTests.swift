import MasqControl
import MasqCore
import MasqRules
import Testing
@testable import MasqAdmin

// Firewall-mark services (-f), one-packet scheduling (-o) and real-server thresholds (-x, -y) in
// ipvsadm 1.31's layouts, written from ipvsadm.c's printf formats (print_service_entry, print_title,
// libipvs's ipvs_cmp_services), and the command lines that make them (parse_options and the checks
// after it in process_options).

private let format = IPVSAdmFormat(resolver: Fixture.resolver)

private func parse(_ args: [String]) throws(AdminError) -> IPVSAdmCommand {
    try AdminCommandLine.parse(args, resolver: Fixture.resolver)
}

/// In configuration order (not sorted): an IPv4 mark with two portless real servers (one with
/// thresholds), a UDP one-packet service, an IPv6 persistent one-packet mark, a TCP service whose real
/// server has thresholds.
enum MarkFixture {
    static let state = AdminState(
        capacity: 1024, connections: 0, timeouts: TimeoutState(tcp: 900, tcpFin: 120, udp: 300),
        services: [
            ServiceState(
                proto: "TCP", address: "0.0.0.0", port: 0, fwmark: 1, scheduler: "rr",
                stats: TrafficCounters(connections: 10, packetsIn: 20, packetsOut: 30, bytesIn: 40, bytesOut: 50),
                rates: TrafficRates(connectionsPerSecond: 1, packetsInPerSecond: 2, packetsOutPerSecond: 3,
                                    bytesInPerSecond: 4, bytesOutPerSecond: 5),
                destinations: [
                    DestinationState(address: "198.19.0.202", port: 0, weight: 1, activeConnections: 3,
                                     inactiveConnections: 4, upperThreshold: 100, lowerThreshold: 50,
                                     stats: TrafficCounters(connections: 1, packetsIn: 2, packetsOut: 3, bytesIn: 4, bytesOut: 5),
                                     rates: TrafficRates(connectionsPerSecond: 1, packetsInPerSecond: 2, packetsOutPerSecond: 3,
                                                         bytesInPerSecond: 4, bytesOutPerSecond: 5)),
                    DestinationState(address: "198.19.0.201", port: 0, weight: 2),
                ]),
            ServiceState(proto: "UDP", address: "198.18.0.53", port: 53, scheduler: "rr", onePacket: true,
                         destinations: [DestinationState(address: "198.19.0.201", port: 53, weight: 1)]),
            ServiceState(proto: "TCP", address: "::", port: 0, fwmark: 7, scheduler: "sh", persistence: 600, netmask: "64",
                         onePacket: true,
                         destinations: [DestinationState(address: "2001:2:0:1::201", port: 0, weight: 1)]),
            ServiceState(proto: "TCP", address: "198.18.0.1", port: 80, scheduler: "wlc",
                         destinations: [DestinationState(address: "198.19.0.201", port: 80, weight: 1, activeConnections: 5,
                                                         inactiveConnections: 6, upperThreshold: 1000, lowerThreshold: 750)]),
        ])
}

@Suite struct FirewallMarkLayouts {
    @Test func listNumeric() throws {
        // print_service_entry: svc_name = sprintf("FWM  %d") / ("FWM  %d IPv6"), not cut; then
        // printf("%s %s", svc_name, sched_name), " persistent %u", " mask %i" (IPv6), " ops".
        // Sorted by ipvs_cmp_services: the mark first (0 before 1 before 7), then family, protocol
        // (TCP 6 before UDP 17), address, port; a mark's real servers by address, port (0: the
        // packet's own port).
        let golden = Fixture.lines([
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
            "TCP  198.18.0.1:80 wlc",
            "  -> 198.19.0.201:80              Masq    1      5          6         ",
            "UDP  198.18.0.53:53 rr ops",
            "  -> 198.19.0.201:53              Masq    1      0          0         ",
            "FWM  1 rr",
            "  -> 198.19.0.201:0               Masq    2      0          0         ",
            "  -> 198.19.0.202:0               Masq    1      3          4         ",
            "FWM  7 IPv6 sh persistent 600 mask 64 ops",
            "  -> [2001:2:0:1::201]:0          Masq    1      0          0         ",
        ])
        #expect(try format.list(MarkFixture.state, ListOptions(numeric: true)) == golden)
    }

    @Test func thresholds() throws {
        // print_title(FMT_THRESHOLDS): "%-33s %-10s %-10s %-10s %-10s\n  -> RemoteAddress:Port\n";
        // the services keep the default line (" ops" too); dests
        // "  -> %-28s %-10u %-10u %-10u %-10u\n" of u_threshold, l_threshold, activeconns, inactconns.
        let golden = Fixture.lines([
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn ",
            "  -> RemoteAddress:Port",
            "TCP  198.18.0.1:80 wlc",
            "  -> 198.19.0.201:80              1000       750        5          6         ",
            "UDP  198.18.0.53:53 rr ops",
            "  -> 198.19.0.201:53              0          0          0          0         ",
            "FWM  1 rr",
            "  -> 198.19.0.201:0               0          0          0          0         ",
            "  -> 198.19.0.202:0               100        50         3          4         ",
            "FWM  7 IPv6 sh persistent 600 mask 64 ops",
            "  -> [2001:2:0:1::201]:0          0          0          0          0         ",
        ])
        #expect(try format.list(MarkFixture.state, ListOptions(numeric: true, thresholds: true)) == golden)
    }

    @Test func saveNumeric() {
        // FMT_RULE: "-f %d" / "-f %d -6"; "-A %s -s %s", " -p %u", " -M %i", " -o", then
        // "-a %s -r %s %s -w %d": ipvsadm-save writes no -x/-y (print_service_entry has no place for
        // them), so neither does masqadm -S.
        let golden = Fixture.lines([
            "-A -t 198.18.0.1:80 -s wlc",
            "-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w 1",
            "-A -u 198.18.0.53:53 -s rr -o",
            "-a -u 198.18.0.53:53 -r 198.19.0.201:53 -m -w 1",
            "-A -f 1 -s rr",
            "-a -f 1 -r 198.19.0.201:0 -m -w 2",
            "-a -f 1 -r 198.19.0.202:0 -m -w 1",
            "-A -f 7 -6 -s sh -p 600 -M 64 -o",
            "-a -f 7 -6 -r [2001:2:0:1::201]:0 -m -w 1",
        ])
        #expect(format.save(MarkFixture.state, numeric: true) == golden)
    }

    @Test func saveReadsBack() throws {
        // -S (named or not) is a rules file: the same services, marks, -o and ports; the thresholds
        // are lost, as with ipvsadm-save | ipvsadm -R.
        let numeric = try RulesFile.parse(format.save(MarkFixture.state, numeric: true))
        let named = format.save(MarkFixture.state, numeric: false)
        #expect(named.contains("-A -u a-very-long-host-name-for-truncation.example.org:domain -s rr -o\n") && named.contains("-a -f 1 -r 198.19.0.201:0 -m -w 2\n"))
        #expect(try RulesFile.parse(named, names: Fixture.resolver) == numeric)
        let marks = numeric.services.filter { $0.key.isFirewallMark }
        #expect(marks.map(\.key) == [ServiceKey(fwmark: 1), ServiceKey(fwmark: 7, ipv6: true)])
        #expect(marks[0].realServers.map(\.port) == [0, 0] && marks[1].onePacket && marks[1].prefixLength == 64)
        #expect(numeric.services.allSatisfy { $0.realServers.allSatisfy { $0.upperThreshold == 0 && $0.lowerThreshold == 0 } })
    }

    @Test func statsAndRate() throws {
        // "%-33s" of svc_name then print_largenum × 5; dests "  -> %-28s" (+ "%8llu" × 3 for --rate).
        let stats = try format.list(MarkFixture.state, ListOptions(numeric: true, stats: true))
        #expect(stats.contains("\nFWM  1                                  10       20       30       40       50\n"))
        #expect(stats.contains("\n  -> 198.19.0.202:0                      1        2        3        4        5\n"))
        #expect(stats.contains("\nFWM  7 IPv6                              0        0        0        0        0\n"))
        #expect(stats.contains("\nUDP  198.18.0.53:53                      0        0        0        0        0\n"))  // no " ops"
        let rate = try format.list(MarkFixture.state, ListOptions(numeric: true, rate: true))
        #expect(rate.contains("\nFWM  1                                   1        2        3        4        5\n"))
        #expect(rate.contains("\n  -> 198.19.0.202:0                      1        2        3        4        5\n"))
    }

    @Test func oneMarkService() throws {
        // list_service(): ipvs_get_service(fwmark, af, …) finds a mark service by mark and family.
        let v4 = try format.list(MarkFixture.state, ListOptions(numeric: true, service: ServiceKey(fwmark: 1)))
        #expect(v4 == Fixture.lines([
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
            "FWM  1 rr",
            "  -> 198.19.0.201:0               Masq    2      0          0         ",
            "  -> 198.19.0.202:0               Masq    1      3          4         ",
        ]))
        let v6 = try format.list(MarkFixture.state, ListOptions(numeric: true, service: ServiceKey(fwmark: 7, ipv6: true)))
        #expect(v6.hasSuffix("FWM  7 IPv6 sh persistent 600 mask 64 ops\n  -> [2001:2:0:1::201]:0          Masq    1      0          0         \n"))
        for absent in [ServiceKey(fwmark: 7), ServiceKey(fwmark: 1, ipv6: true), ServiceKey(fwmark: 2)] {
            #expect(throws: AdminError(message: "No such service", exitCode: 1), "\(absent)") {
                try format.list(MarkFixture.state, ListOptions(service: absent))
            }
        }
        // The mark service is not the address service 0.0.0.0:0 it is stored with.
        #expect(throws: AdminError(message: "No such service", exitCode: 1)) {
            try format.list(MarkFixture.state, ListOptions(service: ServiceKey(proto: .tcp, address: IPv4Address(rawValue: 0), port: 0)))
        }
    }

    @Test func markAbove2To31PrintsSignedAndSortsFirst() throws {
        // sprintf("FWM  %d", se->fwmark) of a __u32, and ipvs_cmp_services' `s1->fwmark - s2->fwmark`
        // as an int: mark 4294967295 is "-1" and sorts before the address services (-1 < 0).
        var state = MarkFixture.state
        state.services.append(ServiceState(proto: "TCP", address: "0.0.0.0", port: 0, fwmark: .max, scheduler: "wlc"))
        let list = try format.list(state, ListOptions(numeric: true))
        #expect(list.contains("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\nFWM  -1 wlc\nTCP  198.18.0.1:80 wlc\n"))
        #expect(format.save(state, numeric: true).hasPrefix("-A -f -1 -s wlc\n"))
    }

    @Test func connectionsOfAMarkServiceShowTheirOwnVirtualAddress() {
        // list_conn prints each entry's vaddr:vport (cp->vaddr), never the mark.
        let flow = FlowRecord(proto: .tcp, client: IPv4Address(10, 0, 0, 2), clientPort: 40000,
                              virtualAddress: IPv4Address(198, 18, 0, 7), virtualPort: 443,
                              server: IPv4Address(198, 19, 0, 201), serverPort: 443, state: .established,
                              expiresIn: 900, isTemplate: false)
        #expect(format.connections([flow], numeric: true) == Fixture.lines([
            "IPVS connection entries",
            "pro expire state       source             virtual            destination",
            "TCP 15:00  ESTABLISHED 10.0.0.2:40000     198.18.0.7:443     198.19.0.201:443",
        ]))
    }
}

@Suite struct FirewallMarkCommandLines {
    // Command line → the numeric words its command travels as (which read back to the same command).
    @Test(arguments: [
        (["-A", "-f", "1", "-s", "rr"], ["-A", "-f", "1", "-s", "rr"]),
        // no zero-port rule for a mark service; -o is allowed for marks whatever the protocol
        (["-A", "-f", "1"], ["-A", "-f", "1"]),
        (["-A", "-f", "1", "-o"], ["-A", "-f", "1", "-o"]),
        (["--add-service", "--fwmark-service=7", "--ipv6", "-p", "600", "-M", "64", "-s", "sh", "--ops"],
         ["-A", "-f", "7", "-6", "-s", "sh", "-p", "600", "-M", "64", "-o"]),
        (["-A", "-f", "4294967295"], ["-A", "-f", "4294967295"]),  // parse_fwmark: up to UINT_MAX
        (["-A", "-f", "+010"], ["-A", "-f", "10"]),  // strtol base 10
        (["-E", "-f", "1", "-s", "wrr"], ["-E", "-f", "1", "-s", "wrr"]),
        (["-D", "-f", "7", "-6"], ["-D", "-f", "7", "-6"]),
        (["-A", "-u", "198.18.0.53:53", "-o"], ["-A", "-u", "198.18.0.53:53", "-o"]),
        (["-Au", "198.18.0.53:53", "-os", "rr"], ["-A", "-u", "198.18.0.53:53", "-s", "rr", "-o"]),  // popt cluster
        // a mark's real server: no port is port 0 (ce->svc.port), an IPv6 one written with it
        (["-a", "-f", "1", "-r", "198.19.0.201", "-m"], ["-a", "-f", "1", "-r", "198.19.0.201", "-m"]),
        (["-a", "-f", "1", "-r", "198.19.0.201:8080", "-m", "-w", "3"], ["-a", "-f", "1", "-r", "198.19.0.201:8080", "-m", "-w", "3"]),
        (["-a", "-f", "7", "-6", "-r", "2001:2:0:1::201", "-m"], ["-a", "-f", "7", "-6", "-r", "[2001:2:0:1::201]:0", "-m"]),
        (["-d", "-f", "1", "-r", "198.19.0.201:0"], ["-d", "-f", "1", "-r", "198.19.0.201:0"]),
        // thresholds: string_to_number(optarg, 0, INT_MAX)
        (["-a", "-t", "198.18.0.1:80", "-r", "198.19.0.201:80", "-m", "-x", "1000", "-y", "750"],
         ["-a", "-t", "198.18.0.1:80", "-r", "198.19.0.201:80", "-m", "-x", "1000", "-y", "750"]),
        (["-e", "-t", "198.18.0.1:80", "-r", "198.19.0.201:80", "-m", "--u-threshold=2147483647", "--l-threshold", "+5"],
         ["-e", "-t", "198.18.0.1:80", "-r", "198.19.0.201:80", "-m", "-x", "2147483647", "-y", "5"]),
        (["-a", "-f", "1", "-r", "198.19.0.201", "-m", "-w", "0", "-x", "10"], ["-a", "-f", "1", "-r", "198.19.0.201", "-m", "-w", "0", "-x", "10"]),
    ])
    func edit(_ args: [String], _ words: [String]) throws {
        let expected = try IPVSCommandParser.parse(words)
        #expect(try parse(args) == .edit(expected))
        #expect(expected.ipvsadmArguments == words)
    }

    @Test func valuesReachTheCommand() throws {
        guard case .edit(let a) = try parse(["-A", "-f", "7", "-6", "-o"]),
              case .edit(let r) = try parse(["-a", "-f", "1", "-r", "198.19.0.201", "-m", "-x", "9", "-y", "3"]) else {
            Issue.record("not an edit")
            return
        }
        #expect(a.service == ServiceKey(fwmark: 7, ipv6: true) && a.onePacket == true)
        #expect(a.service?.description == "FWM 7 IPv6")
        #expect(r.service == ServiceKey(fwmark: 1) && r.upperThreshold == 9 && r.lowerThreshold == 3)
        #expect(r.realServer?.address == .v4(IPv4Address(198, 19, 0, 201)) && r.realServer?.port == nil)
    }

    @Test(arguments: [
        (["-L", "-n", "-f", "1"], IPVSAdmCommand.list(ListOptions(numeric: true, service: ServiceKey(fwmark: 1)))),
        (["-L", "--thresholds", "-f", "7", "-6"], .list(ListOptions(service: ServiceKey(fwmark: 7, ipv6: true), thresholds: true))),
        (["-Z", "-f", "1"], .zero(ServiceKey(fwmark: 1))),
        (["-Z", "--fwmark-service", "7", "--ipv6"], .zero(ServiceKey(fwmark: 7, ipv6: true))),
    ] as [([String], IPVSAdmCommand)])
    func listAndZero(_ args: [String], _ expected: IPVSAdmCommand) throws {
        #expect(try parse(args) == expected)
    }

    // fail(2, …) in ipvsadm's words.
    @Test(arguments: [
        (["-A", "-f", "abc"], "invalid fwmark value `abc' specified"),
        (["-A", "-f", "-5"], "invalid fwmark value `-5' specified"),
        (["-A", "-f", "4294967296"], "invalid fwmark value `4294967296' specified"),
        (["-A", "-f", "1", "-t", "198.18.0.1:80"], "multiple 'service-address' options specified"),
        (["-A", "-t", "198.18.0.1:80", "-6"], "-6 used before -f\n"),
        (["-A", "-t", "198.18.0.1:80", "-s", "rr", "-o"], "One-Packet Scheduling is only for UDP virtual services"),
        (["-E", "-t", "198.18.0.1:80", "--ops"], "One-Packet Scheduling is only for UDP virtual services"),
        (["-A", "-u", "198.18.0.53:53", "-o", "-o"], "multiple 'ops' options specified"),
        (["-a", "-u", "198.18.0.53:53", "-r", "198.19.0.201", "-m", "-o"], "Illegal 'ops' option with the 'add-server' command"),
        (["-L", "-o"], "Illegal 'ops' option with the 'list' command"),
        (["-A", "-f", "1", "-x", "5"], "Illegal 'u-threshold' option with the 'add-service' command"),
        (["-d", "-f", "1", "-r", "198.19.0.201", "-y", "5"], "Illegal 'l-threshold' option with the 'delete-server' command"),
        (["-a", "-f", "1", "-r", "198.19.0.201", "-m", "-x", "-1"], "illegal u_threshold specified"),
        (["-a", "-f", "1", "-r", "198.19.0.201", "-m", "-x", "2147483648"], "illegal u_threshold specified"),
        (["-a", "-f", "1", "-r", "198.19.0.201", "-m", "-y", "1x"], "illegal l_threshold specified"),
        (["-a", "-f", "1", "-r", "198.19.0.201", "-m", "-x", "5", "-x", "6"], "multiple 'u-threshold' options specified"),
        (["-a", "-f", "1", "-6", "-r", "198.19.0.201", "-m"], "Different address family is allowed only for tunneling servers"),
        (["-a", "-f", "1", "-r", "[2001:2::1]:80", "-m"], "Different address family is allowed only for tunneling servers"),
        (["-L", "-c", "-f", "1"], "The option 'service-address' conflicts with the 'connection' option in the 'list' command"),
        (["-L", "-c", "--thresholds"], "options conflicts in the list command"),
    ])
    func fails(_ args: [String], _ message: String) {
        #expect(throws: AdminError(message: message, exitCode: 2)) { try parse(args) }
    }
}
