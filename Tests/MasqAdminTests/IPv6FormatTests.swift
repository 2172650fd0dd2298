import MasqControl
import MasqCore
import MasqRules
import Testing
@testable import MasqAdmin

// IPv6 services in every ipvsadm 1.31 layout. The lines follow ipvsadm.c's printf formats for an
// AF_INET6 service (named on each): addresses bracketed by `addrport_to_anyname`, RFC 5952 text from
// `inet_ntop`, no cut at 33/28 bytes (`if (se->af != AF_INET6)`), `mask %i` for the prefix length,
// IPv4 services sorted before IPv6 ones (`ipvs_cmp_services` compares `af` first). Addresses are from
// 2001:2::/48 (RFC 5180, benchmarking) and 198.18.0.0/15 only.

/// A mixed table: an IPv4 service, then IPv6 ones in a non-sorted configuration order, one of them
/// persistent with a /64 granularity and one real server whose name:port is longer than 28 bytes.
enum IPv6Fixture {
    static let state = AdminState(
        capacity: 1 << 20, connections: 2, timeouts: TimeoutState(tcp: 900, tcpFin: 120, udp: 300),
        services: [
            ServiceState(proto: "UDP", address: "2001:2::53", port: 53, scheduler: "sh", persistence: 3600, netmask: "64",
                         destinations: [DestinationState(address: "2001:2:0:1::53", port: 53, weight: 2,
                                                         inactiveConnections: 7)]),
            ServiceState(
                proto: "TCP", address: "2001:2::1", port: 80, scheduler: "rr", netmask: "128",
                stats: TrafficCounters(connections: 10, packetsIn: 60, packetsOut: 50, bytesIn: 4000, bytesOut: 30000),
                destinations: [
                    DestinationState(address: "2001:2:0:ffff:ffff:ffff:ffff:ffff", port: 65535, weight: 1,
                                     stats: TrafficCounters(connections: 5, packetsIn: 30, packetsOut: 25, bytesIn: 2000,
                                                            bytesOut: 15000)),
                    DestinationState(address: "2001:2:0:1::202", port: 8080, weight: 3, activeConnections: 1),
                    DestinationState(
                        address: "2001:2:0:1::201", port: 80, weight: 1, activeConnections: 2, inactiveConnections: 3,
                        stats: TrafficCounters(connections: 5, packetsIn: 30, packetsOut: 25, bytesIn: 2000, bytesOut: 15000),
                        rates: TrafficRates(connectionsPerSecond: 1, packetsInPerSecond: 3, packetsOutPerSecond: 2,
                                            bytesInPerSecond: 200, bytesOutPerSecond: 1500)),
                ]),
            ServiceState(proto: "TCP", address: "198.18.0.1", port: 80, scheduler: "rr",
                         destinations: [DestinationState(address: "198.19.0.201", port: 80, weight: 1, inactiveConnections: 1)]),
        ])

    /// /etc/hosts with an IPv6 line for the VIP: ipvsadm never prints it (`addr_to_host` asks
    /// gethostbyaddr with an IPv4 length for AF_INET6).
    static let resolver = NameResolver(hostsText: "198.18.0.1 vip\n2001:2::1 vip6\n", servicesText: Fixture.services)
}

private let format = IPVSAdmFormat(resolver: IPv6Fixture.resolver)
private let versionLine = "IP Virtual Server version 1.2.1 (size=4096)"
private let title = [
    "Prot LocalAddress:Port Scheduler Flags",
    "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
]

@Suite struct IPv6ListLayouts {
    @Test func defaultNumeric() throws {
        // print_service_entry: "%s %s" of svc_name ("%-4s %s", not cut for AF_INET6) and sched_name,
        // " persistent %u", " mask %i" (netmask != 128); dests "  -> %-28s %-7s %-6d %-10u %-10u\n"
        // with dname not cut: the long one pushes its columns right, as in ipvsadm.
        let golden = Fixture.lines([versionLine] + title + [
            "TCP  198.18.0.1:80 rr",
            "  -> 198.19.0.201:80              Masq    1      0          1         ",
            "TCP  [2001:2::1]:80 rr",
            "  -> [2001:2:0:1::201]:80         Masq    1      2          3         ",
            "  -> [2001:2:0:1::202]:8080       Masq    3      1          0         ",
            "  -> [2001:2:0:ffff:ffff:ffff:ffff:ffff]:65535 Masq    1      0          0         ",
            "UDP  [2001:2::53]:53 sh persistent 3600 mask 64",
            "  -> [2001:2:0:1::53]:53          Masq    2      0          7         ",
        ])
        #expect(try format.list(IPv6Fixture.state, ListOptions(numeric: true)) == golden)
    }

    @Test func withNamesBracketsTheAddressAndNamesOnlyThePort() throws {
        // addrport_to_anyname without FMT_NUMERIC: "[" addr_to_anyname "]:" port_to_anyname; the
        // IPv6 address stays numeric (2001:2::1 is "vip6" in hosts), the IPv4 one is named.
        let golden = Fixture.lines([versionLine] + title + [
            "TCP  vip:http rr",
            "  -> 198.19.0.201:http            Masq    1      0          1         ",
            "TCP  [2001:2::1]:http rr",
            "  -> [2001:2:0:1::201]:http       Masq    1      2          3         ",
            "  -> [2001:2:0:1::202]:http-alt   Masq    3      1          0         ",
            "  -> [2001:2:0:ffff:ffff:ffff:ffff:ffff]:65535 Masq    1      0          0         ",
            "UDP  [2001:2::53]:domain sh persistent 3600 mask 64",
            "  -> [2001:2:0:1::53]:domain      Masq    2      0          7         ",
        ])
        #expect(try format.list(IPv6Fixture.state, ListOptions()) == golden)
    }

    @Test func oneIPv6Service() throws {
        // list_service: no version line; the service is found by its IPv6 key.
        let key = ServiceKey(proto: .udp, address: IPv6Address("2001:2::53")!, port: 53)
        let golden = Fixture.lines(title + [
            "UDP  [2001:2::53]:53 sh persistent 3600 mask 64",
            "  -> [2001:2:0:1::53]:53          Masq    2      0          7         ",
        ])
        #expect(try format.list(IPv6Fixture.state, ListOptions(numeric: true, service: key)) == golden)
        let absent = ServiceKey(proto: .tcp, address: IPv6Address("2001:2::53")!, port: 53)
        #expect(throws: AdminError(message: "No such service", exitCode: 1)) {
            try format.list(IPv6Fixture.state, ListOptions(numeric: true, service: absent))
        }
    }

    @Test func stats() throws {
        // "%-33s" svc_name then print_largenum × 5; dests "  -> %-28s" then print_largenum × 5.
        let text = try format.list(IPv6Fixture.state, ListOptions(numeric: true, stats: true))
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.contains("TCP  [2001:2::1]:80                     10       60       50     4000    30000"))
        #expect(lines.contains("  -> [2001:2:0:ffff:ffff:ffff:ffff:ffff]:65535        5       30       25     2000    15000"))
        #expect(lines.contains("  -> [2001:2:0:1::201]:80                5       30       25     2000    15000"))
    }

    @Test func rate() throws {
        // dests "  -> %-28s %8u %8u %8u" then print_largenum × 2.
        let text = try format.list(IPv6Fixture.state, ListOptions(numeric: true, rate: true))
        #expect(text.contains("\n  -> [2001:2:0:1::201]:80                1        3        2      200     1500\n"))
    }

    @Test func thresholdsAndPersistentConnections() throws {
        let thresholds = try format.list(IPv6Fixture.state, ListOptions(numeric: true, thresholds: true))
        #expect(thresholds.contains("\n  -> [2001:2:0:1::201]:80         0          0          2          3         \n"))
        let persistent = try format.list(IPv6Fixture.state, ListOptions(numeric: true, persistentConnections: true))
        #expect(persistent.contains("\n  -> [2001:2:0:1::201]:80         1         0           2          3         \n"))
    }

    @Test func saveNumeric() {
        // FMT_RULE: "-A %s -s %s", " -p %u", " -M %i" (AF_INET6, netmask != 128);
        // "-a %s -r %s %s -w %d\n".
        let golden = Fixture.lines([
            "-A -t 198.18.0.1:80 -s rr",
            "-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w 1",
            "-A -t [2001:2::1]:80 -s rr",
            "-a -t [2001:2::1]:80 -r [2001:2:0:1::201]:80 -m -w 1",
            "-a -t [2001:2::1]:80 -r [2001:2:0:1::202]:8080 -m -w 3",
            "-a -t [2001:2::1]:80 -r [2001:2:0:ffff:ffff:ffff:ffff:ffff]:65535 -m -w 1",
            "-A -u [2001:2::53]:53 -s sh -p 3600 -M 64",
            "-a -u [2001:2::53]:53 -r [2001:2:0:1::53]:53 -m -w 2",
        ])
        #expect(format.save(IPv6Fixture.state, numeric: true) == golden)
    }

    @Test func saveReadsBackAsTheSameCommands() throws {
        // Every -S -n line parses back (ipvsadm -R) to a command whose words are the line's.
        for line in format.save(IPv6Fixture.state, numeric: true).split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            let command = try IPVSCommandParser.parse(words)
            #expect(command.ipvsadmArguments == words)
        }
    }

    @Test func defaultPrefixLengthPrintsNoMask() throws {
        var state = IPv6Fixture.state
        state.services[0].netmask = "128"
        let text = try format.list(state, ListOptions(numeric: true))
        #expect(text.contains("\nUDP  [2001:2::53]:53 sh persistent 3600\n"))
        #expect(format.save(state, numeric: true).contains("-A -u [2001:2::53]:53 -s sh -p 3600\n"))
    }
}

@Suite struct IPv6Sorting {
    private func dests(_ addresses: [String]) -> [String] {
        let service = ServiceState(proto: "TCP", address: "2001:2::1", port: 80, scheduler: "rr",
                                   destinations: addresses.map { DestinationState(address: $0, port: 80, weight: 1) })
        let state = AdminState(capacity: 1, connections: 0, timeouts: TimeoutState(tcp: 1, tcpFin: 1, udp: 1),
                               services: [service])
        return format.save(state, numeric: true).split(separator: "\n").dropFirst()
            .map { String($0.split(separator: " ")[4]) }
    }

    @Test func destinationsByFourWordsInTurn() {
        // ipvs_cmp_dests: ntohl of each 32-bit word, first difference wins.
        #expect(dests(["2001:2:0:1::202", "2001:2::9", "2001:2:0:1::201"])
            == ["[2001:2::9]:80", "[2001:2:0:1::201]:80", "[2001:2:0:1::202]:80"])
    }

    @Test func wordDifferencesWrapAsAnInt() {
        // `r = ntohl(a) - ntohl(b)` into an int: 0x00000000 - 0xffffffff is 1, so 2001:2:: (word 1 = 0)
        // sorts after 2001:2:ffff:ffff:: (word 1 = 0xffffffff), as libipvs sorts them.
        #expect(dests(["2001:2::", "2001:2:ffff:ffff::"]) == ["[2001:2:ffff:ffff::]:80", "[2001:2::]:80"])
    }

    @Test func servicesIPv4FirstThenProtocolThenAddress() {
        let services = [("UDP", "198.18.0.53"), ("TCP", "2001:2::2"), ("UDP", "2001:2::1"), ("TCP", "198.18.0.1"),
                        ("TCP", "2001:2::1")].map { ServiceState(proto: $0.0, address: $0.1, port: 80, scheduler: "rr") }
        let state = AdminState(capacity: 1, connections: 0, timeouts: TimeoutState(tcp: 1, tcpFin: 1, udp: 1),
                               services: services)
        #expect(format.save(state, numeric: true) == Fixture.lines([
            "-A -t 198.18.0.1:80 -s rr",
            "-A -u 198.18.0.53:80 -s rr",
            "-A -t [2001:2::1]:80 -s rr",
            "-A -t [2001:2::2]:80 -s rr",
            "-A -u [2001:2::1]:80 -s rr",
        ]))
    }
}

@Suite struct IPv6Connections {
    static let flows = [
        FlowRecord(proto: .tcp, client: IPAddress("2001:2::100")!, clientPort: 40000, virtualAddress: IPAddress("2001:2::1")!,
                   virtualPort: 80, server: IPAddress("2001:2:0:1::201")!, serverPort: 80, state: .established,
                   expiresIn: 895, isTemplate: false),
        FlowRecord(proto: .udp, client: IPAddress("2001:2::100")!, clientPort: 5353, virtualAddress: IPAddress("2001:2::53")!,
                   virtualPort: 53, server: IPAddress("2001:2:0:1::53")!, serverPort: 53, state: .udp, expiresIn: 299,
                   isTemplate: false),
    ]

    @Test func numeric() {
        // print_conn: the kernel's /proc line holds the address as %pI6 (full form); ipvsadm reads it
        // with inet_pton and prints it through addrport_to_anyname (inet_ntop: RFC 5952, bracketed);
        // printf("%-3s %-6s %-11s %-18s %-18s %s\n"): an address wider than 18 pushes the next.
        #expect(format.connections(Self.flows, numeric: true) == Fixture.lines([
            "IPVS connection entries",
            "pro expire state       source             virtual            destination",
            "TCP 14:55  ESTABLISHED [2001:2::100]:40000 [2001:2::1]:80     [2001:2:0:1::201]:80",
            "UDP 04:59  UDP         [2001:2::100]:5353 [2001:2::53]:53    [2001:2:0:1::53]:53",
        ]))
    }

    @Test func withNames() {
        // Ports named, IPv6 addresses never (addr_to_host's IPv4-length gethostbyaddr).
        let text = format.connections(Self.flows, numeric: false)
        #expect(text.contains("\nTCP 14:55  ESTABLISHED [2001:2::100]:40000 [2001:2::1]:http   [2001:2:0:1::201]:http\n"))
        #expect(text.contains("\nUDP 04:59  UDP         [2001:2::100]:mdns [2001:2::53]:domain [2001:2:0:1::53]:domain\n"))
    }
}
