import MasqControl
import MasqCore
import MasqRules
@testable import MasqAdmin

/// The state every golden test renders: deliberately in a non-sorted configuration order, with a
/// persistent UDP service carrying a mask and sh flags, counters that reach K, M, G and T (and a
/// real server's that pass 2^32), and the seed's TCP service on 198.18.0.1:80 (rr, web1/web2).
enum Fixture {
    static let state = AdminState(
        capacity: 1 << 20, connections: 4, timeouts: TimeoutState(tcp: 900, tcpFin: 120, udp: 300),
        services: [
            ServiceState(
                proto: "UDP", address: "198.18.0.53", port: 53, scheduler: "sh",
                schedulerFlags: ["sh-fallback", "sh-port"], persistence: 3600, netmask: "255.255.255.0",
                stats: TrafficCounters(connections: 123_456_789, packetsIn: 98_765_432_109, packetsOut: 5,
                                  bytesIn: 123_456_789_012_345, bytesOut: 99_999_999_999_999),
                rates: TrafficRates(connectionsPerSecond: 12, packetsInPerSecond: 100_000_000,
                                 packetsOutPerSecond: 999_999_999, bytesInPerSecond: 1_000_000_000,
                                 bytesOutPerSecond: UInt64.max),
                destinations: [
                    DestinationState(
                        address: "10.0.2.2", port: 53, weight: 2, activeConnections: 0, inactiveConnections: 7,
                        persistentConnections: 3,
                        stats: TrafficCounters(connections: 4_294_967_301, packetsIn: 100_000_000, packetsOut: 99_999_999,
                                          bytesIn: 5_000_000_000, bytesOut: 1000),
                        rates: TrafficRates(connectionsPerSecond: 4_294_967_303, packetsInPerSecond: 123_456_789,
                                         packetsOutPerSecond: 0, bytesInPerSecond: 4_294_967_295,
                                         bytesOutPerSecond: 100_000_000)),
                    DestinationState(address: "10.0.2.1", port: 53, weight: 1, inactiveConnections: 2,
                                     persistentConnections: 1),
                ]),
            ServiceState(
                proto: "TCP", address: "198.18.0.1", port: 80, scheduler: "rr",
                stats: TrafficCounters(connections: 10, packetsIn: 60, packetsOut: 50, bytesIn: 4000, bytesOut: 30000),
                rates: TrafficRates(connectionsPerSecond: 1, packetsInPerSecond: 6, packetsOutPerSecond: 5,
                                 bytesInPerSecond: 400, bytesOutPerSecond: 3000),
                destinations: [
                    DestinationState(
                        address: "192.168.100.102", port: 8080, weight: 3, activeConnections: 1, inactiveConnections: 0,
                        stats: TrafficCounters(connections: 5, packetsIn: 30, packetsOut: 25, bytesIn: 2000, bytesOut: 15000),
                        rates: TrafficRates(connectionsPerSecond: 0, packetsInPerSecond: 3, packetsOutPerSecond: 3,
                                         bytesInPerSecond: 200, bytesOutPerSecond: 1500)),
                    DestinationState(
                        address: "192.168.100.101", port: 80, weight: 1, activeConnections: 2, inactiveConnections: 3,
                        stats: TrafficCounters(connections: 5, packetsIn: 30, packetsOut: 25, bytesIn: 2000, bytesOut: 15000),
                        rates: TrafficRates(connectionsPerSecond: 1, packetsInPerSecond: 3, packetsOutPerSecond: 2,
                                         bytesInPerSecond: 200, bytesOutPerSecond: 1500)),
                ]),
            ServiceState(proto: "TCP", address: "198.18.0.1", port: 443, scheduler: "wlc", persistence: 300),
        ])

    static let connections = [
        FlowRecord(proto: .tcp, client: IPv4Address(10, 0, 0, 2), clientPort: 40000, virtualAddress: IPv4Address(198, 18, 0, 1),
                   virtualPort: 80, server: IPv4Address(192, 168, 100, 101), serverPort: 80, state: .established,
                   expiresIn: 895, isTemplate: false),
        FlowRecord(proto: .udp, client: IPv4Address(10, 0, 0, 3), clientPort: 5353, virtualAddress: IPv4Address(198, 18, 0, 53),
                   virtualPort: 53, server: IPv4Address(10, 0, 2, 1), serverPort: 53, state: .udp, expiresIn: 299,
                   isTemplate: false),
        // A persistence template: client port 0, more than 99 minutes left.
        FlowRecord(proto: .tcp, client: IPv4Address(10, 0, 0, 2), clientPort: 0, virtualAddress: IPv4Address(198, 18, 0, 1),
                   virtualPort: 443, server: IPv4Address(192, 168, 100, 102), serverPort: 443, state: .none,
                   expiresIn: 6000, isTemplate: true),
        FlowRecord(proto: .tcp, client: IPv4Address(10, 0, 0, 2), clientPort: 40001, virtualAddress: IPv4Address(198, 18, 0, 1),
                   virtualPort: 80, server: IPv4Address(192, 168, 100, 102), serverPort: 8080, state: .timeWait,
                   expiresIn: 5, isTemplate: false),
    ]

    /// An /etc/hosts: comments, tabs, aliases, an IPv6 line, a name longer than ipvsadm's columns.
    static let hosts = """
        127.0.0.1\tlocalhost
        # the director
        198.18.0.1\tvip.example.org vip
        192.168.100.101 web1   # first real server
        192.168.100.102\tweb2.example.org web2
        198.18.0.53 a-very-long-host-name-for-truncation.example.org
        10.0.0.2 client
        ::1 localhost ip6-localhost

        """

    /// An /etc/services: aliases, comments, a name per protocol.
    static let services = """
        # test services
        http\t\t80/tcp\t\twww\t\t# WorldWideWeb HTTP
        https\t\t443/tcp
        domain\t\t53/tcp
        domain\t\t53/udp
        http-alt\t8080/tcp\twebcache
        mdns\t\t5353/udp

        """

    static let resolver = NameResolver(hostsText: hosts, servicesText: services)

    /// Joins golden lines, each ending in a newline (trailing blanks stay visible in the sources).
    static func lines(_ l: [String]) -> String { l.map { $0 + "\n" }.joined() }
}
