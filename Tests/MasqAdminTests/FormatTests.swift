import MasqControl
import MasqCore
import MasqRules
import Testing
@testable import MasqAdmin

// Golden outputs for every ipvsadm 1.31 layout, written line by line from ipvsadm.c's printf formats
// (the function and format are named on each). They were also compared with the installed Debian
// ipvsadm 1.31 binary run against the same state (fake IPVS netlink replies, no kernel module):
// identical bytes.

private let numeric = IPVSAdmFormat(resolver: Fixture.resolver)

/// list_all(): printf("IP Virtual Server version %d.%d.%d (size=%d)\n")
private let versionLine = "IP Virtual Server version 1.2.1 (size=4096)"

@Suite struct ListLayouts {
    private func render(_ options: ListOptions) throws -> String {
        try numeric.list(Fixture.state, options, connections: Fixture.connections)
    }

    @Test func defaultNumeric() throws {
        // print_title(FMT_NONE); print_service_entry(): printf("%s %s", svc_name, sched_name) with
        // svc_name = "%-4s %s" cut to 33, " (" print_sched_flags ")", " persistent %u", " mask %s";
        // dests printf("  -> %-28s %-7s %-6d %-10u %-10u\n"). Services sorted by proto (TCP 6 < UDP 17),
        // address, port; dests by address, port (ipvs_cmp_services, ipvs_cmp_dests).
        let golden = Fixture.lines([
            versionLine,
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
            "TCP  198.18.0.1:80 rr",
            "  -> 192.168.100.101:80           Masq    1      2          3         ",
            "  -> 192.168.100.102:8080         Masq    3      1          0         ",
            "TCP  198.18.0.1:443 wlc persistent 300",
            "UDP  198.18.0.53:53 sh (sh-fallback,sh-port) persistent 3600 mask 255.255.255.0",
            "  -> 10.0.2.1:53                  Masq    1      0          2         ",
            "  -> 10.0.2.2:53                  Masq    2      0          7         ",
        ])
        #expect(try render(ListOptions(numeric: true)) == golden)
    }

    @Test func noSortKeepsConfigurationOrder() throws {
        // FMT_NOSORT: ipvs_sort_services / ipvs_sort_dests_entries skipped; masq's order stands for the kernel's.
        let golden = Fixture.lines([
            versionLine,
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
            "UDP  198.18.0.53:53 sh (sh-fallback,sh-port) persistent 3600 mask 255.255.255.0",
            "  -> 10.0.2.2:53                  Masq    2      0          7         ",
            "  -> 10.0.2.1:53                  Masq    1      0          2         ",
            "TCP  198.18.0.1:80 rr",
            "  -> 192.168.100.102:8080         Masq    3      1          0         ",
            "  -> 192.168.100.101:80           Masq    1      2          3         ",
            "TCP  198.18.0.1:443 wlc persistent 300",
        ])
        #expect(try render(ListOptions(numeric: true, noSort: true)) == golden)
    }

    @Test func stats() throws {
        // print_title(FMT_STATS): "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n";
        // service: printf("%-33s", svc_name) + print_largenum × 5 (stats64, 64-bit);
        // dest: printf("  -> %-28s", dname) + print_largenum × 5 (ipvs_parse_stats: conns and packets
        // modulo 2^32, so 4294967301 connections print 5; bytes 64-bit).
        // print_largenum: 123456789 → "%8lluK" 123456; 98765432109 → "%8lluM" 98765;
        // 123456789012345 → "%8lluT" 123; 99999999999999 → "%8lluG" 99999; 100000000 → "%8lluK".
        let golden = Fixture.lines([
            versionLine,
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes",
            "  -> RemoteAddress:Port",
            "TCP  198.18.0.1:80                      10       60       50     4000    30000",
            "  -> 192.168.100.101:80                  5       30       25     2000    15000",
            "  -> 192.168.100.102:8080                5       30       25     2000    15000",
            "TCP  198.18.0.1:443                      0        0        0        0        0",
            "UDP  198.18.0.53:53                123456K   98765M        5     123T   99999G",
            "  -> 10.0.2.1:53                         0        0        0        0        0",
            "  -> 10.0.2.2:53                         5  100000K 99999999    5000M     1000",
        ])
        #expect(try render(ListOptions(numeric: true, stats: true)) == golden)
    }

    @Test func statsExact() throws {
        // print_largenum(FMT_EXACT): printf("%*llu", len <= 8 ? 9 : len + 1, n)
        let golden = Fixture.lines([
            versionLine,
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes",
            "  -> RemoteAddress:Port",
            "TCP  198.18.0.1:80                      10       60       50     4000    30000",
            "  -> 192.168.100.101:80                  5       30       25     2000    15000",
            "  -> 192.168.100.102:8080                5       30       25     2000    15000",
            "TCP  198.18.0.1:443                      0        0        0        0        0",
            "UDP  198.18.0.53:53               123456789 98765432109        5 123456789012345 99999999999999",
            "  -> 10.0.2.1:53                         0        0        0        0        0",
            "  -> 10.0.2.2:53                         5 100000000 99999999 5000000000     1000",
        ])
        #expect(try render(ListOptions(numeric: true, stats: true, exact: true)) == golden)
    }

    @Test func rate() throws {
        // print_title(FMT_RATE): same format as stats with "CPS","InPPS","OutPPS","InBPS","OutBPS";
        // service: "%-33s" + print_largenum × 5 (UInt64.max → "%8lluT" 18446744, no blank before it);
        // dest: printf("  -> %-28s %8llu %8llu %8llu", cps, inpps, outpps) + print_largenum(inbps, outbps),
        // all modulo 2^32 (4294967303 cps → 7).
        let golden = Fixture.lines([
            versionLine,
            "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS",
            "  -> RemoteAddress:Port",
            "TCP  198.18.0.1:80                       1        6        5      400     3000",
            "  -> 192.168.100.101:80                  1        3        2      200     1500",
            "  -> 192.168.100.102:8080                0        3        3      200     1500",
            "TCP  198.18.0.1:443                      0        0        0        0        0",
            "UDP  198.18.0.53:53                     12  100000K  999999K    1000M18446744T",
            "  -> 10.0.2.1:53                         0        0        0        0        0",
            "  -> 10.0.2.2:53                         7 123456789        0    4294M  100000K",
        ])
        #expect(try render(ListOptions(numeric: true, rate: true)) == golden)
    }

    @Test func rateExact() throws {
        // As rate, print_largenum with FMT_EXACT; the dest's three "%8llu" widen by themselves.
        let golden = Fixture.lines([
            versionLine,
            "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS",
            "  -> RemoteAddress:Port",
            "TCP  198.18.0.1:80                       1        6        5      400     3000",
            "  -> 192.168.100.101:80                  1        3        2      200     1500",
            "  -> 192.168.100.102:8080                0        3        3      200     1500",
            "TCP  198.18.0.1:443                      0        0        0        0        0",
            "UDP  198.18.0.53:53                     12 100000000 999999999 1000000000 18446744073709551615",
            "  -> 10.0.2.1:53                         0        0        0        0        0",
            "  -> 10.0.2.2:53                         7 123456789        0 4294967295 100000000",
        ])
        #expect(try render(ListOptions(numeric: true, rate: true, exact: true)) == golden)
    }

    @Test func thresholds() throws {
        // print_title(FMT_THRESHOLDS): "%-33s %-10s %-10s %-10s %-10s\n  -> RemoteAddress:Port\n";
        // the service line keeps the default layout; dest "  -> %-28s %-10u %-10u %-10u %-10u\n"
        // (masq has no thresholds: 0 0).
        let golden = Fixture.lines([
            versionLine,
            "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn ",
            "  -> RemoteAddress:Port",
            "TCP  198.18.0.1:80 rr",
            "  -> 192.168.100.101:80           0          0          2          3         ",
            "  -> 192.168.100.102:8080         0          0          1          0         ",
            "TCP  198.18.0.1:443 wlc persistent 300",
            "UDP  198.18.0.53:53 sh (sh-fallback,sh-port) persistent 3600 mask 255.255.255.0",
            "  -> 10.0.2.1:53                  0          0          0          2         ",
            "  -> 10.0.2.2:53                  0          0          0          7         ",
        ])
        #expect(try render(ListOptions(numeric: true, thresholds: true)) == golden)
    }

    @Test func persistentConnections() throws {
        // print_title(FMT_PERSISTENTCONN): "%-33s %-9s %-11s %-10s %-10s\n  -> RemoteAddress:Port\n";
        // dest "  -> %-28s %-9u %-11u %-10u %-10u\n" (weight, persistconns, active, inactive).
        let golden = Fixture.lines([
            versionLine,
            "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn ",
            "  -> RemoteAddress:Port",
            "TCP  198.18.0.1:80 rr",
            "  -> 192.168.100.101:80           1         0           2          3         ",
            "  -> 192.168.100.102:8080         3         0           1          0         ",
            "TCP  198.18.0.1:443 wlc persistent 300",
            "UDP  198.18.0.53:53 sh (sh-fallback,sh-port) persistent 3600 mask 255.255.255.0",
            "  -> 10.0.2.1:53                  1         1           0          2         ",
            "  -> 10.0.2.2:53                  2         3           0          7         ",
        ])
        #expect(try render(ListOptions(numeric: true, persistentConnections: true)) == golden)
    }

    @Test func tunnelInfo() throws {
        // print_title(FMT_TUN_INFO); dest "  -> %-28s %-7s %-13s %-6d %-10u %-10u\n" with fwd_tun_info
        // NULL for Masq → "n/a".
        let golden = Fixture.lines([
            versionLine,
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn",
            "TCP  198.18.0.1:80 rr",
            "  -> 192.168.100.101:80           Masq    n/a           1      2          3         ",
            "  -> 192.168.100.102:8080         Masq    n/a           3      1          0         ",
            "TCP  198.18.0.1:443 wlc persistent 300",
            "UDP  198.18.0.53:53 sh (sh-fallback,sh-port) persistent 3600 mask 255.255.255.0",
            "  -> 10.0.2.1:53                  Masq    n/a           1      0          2         ",
            "  -> 10.0.2.2:53                  Masq    n/a           2      0          7         ",
        ])
        #expect(try render(ListOptions(numeric: true, tunnelInfo: true)) == golden)
    }

    @Test func statsWinsOverRateAndThresholds() throws {
        // print_title / print_service_entry test FMT_STATS first.
        let both = try render(ListOptions(numeric: true, stats: true, rate: true, thresholds: true))
        #expect(both == (try render(ListOptions(numeric: true, stats: true))))
    }

    @Test func oneService() throws {
        // list_service(): print_title + print_service_entry, no version line.
        let key = ServiceKey(proto: .udp, address: IPv4Address(198, 18, 0, 53), port: 53)
        let golden = Fixture.lines([
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
            "UDP  198.18.0.53:53 sh (sh-fallback,sh-port) persistent 3600 mask 255.255.255.0",
            "  -> 10.0.2.1:53                  Masq    1      0          2         ",
            "  -> 10.0.2.2:53                  Masq    2      0          7         ",
        ])
        #expect(try render(ListOptions(numeric: true, service: key)) == golden)
    }

    @Test func missingServiceIsNoSuchServiceExit1() {
        // list_service(): fprintf(stderr, "%s\n", ipvs_strerror(ESRCH)); exit(1)
        let key = ServiceKey(proto: .tcp, address: IPv4Address(198, 18, 0, 1), port: 81)
        #expect(throws: AdminError(message: "No such service", exitCode: 1)) {
            try render(ListOptions(numeric: true, service: key))
        }
        // The same address and port under the other protocol is another service.
        #expect(throws: AdminError.self) {
            try render(ListOptions(numeric: true, service: ServiceKey(proto: .udp, address: IPv4Address(198, 18, 0, 1), port: 80)))
        }
    }

    @Test func timeout() throws {
        // list_timeout(): printf("Timeout (tcp tcpfin udp): %d %d %d\n") — the only line.
        #expect(try render(ListOptions(timeout: true)) == "Timeout (tcp tcpfin udp): 900 120 300\n")
    }

    @Test func daemonPrintsNothingWithoutDaemons() throws {
        // list_daemon(): one line per running sync daemon; none runs.
        #expect(try render(ListOptions(daemon: true)) == "")
        let none = SyncStatus(daemons: [], ready: true)
        #expect(try numeric.list(Fixture.state, ListOptions(daemon: true), syncStatus: none) == "")
    }

    @Test func daemonLines() throws {
        // list_daemon(): printf("%s sync daemon (mcast=%s, syncid=%d") then ", maxlen=%u", ", group=%s",
        // ", port=%u", ", ttl=%u" for what the kernel reports (all of them once it has filled in its
        // defaults), ")\n"; the master first.
        let master = SyncDaemonConfig(role: .master, interface: "sy0", syncID: 7).resolved(interfaceMTU: 9000)
        let backup = SyncDaemonConfig(role: .backup, interface: "sy0", syncID: 7, port: 8850).resolved(interfaceMTU: 9000)
        let status = SyncStatus(daemons: [master, backup].map {
            SyncDaemonStatus(config: $0, localAddress: "198.19.254.1", counters: SyncCounters())
        }, ready: true)
        #expect(try numeric.list(Fixture.state, ListOptions(daemon: true), syncStatus: status) == """
            master sync daemon (mcast=sy0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)
            backup sync daemon (mcast=sy0, syncid=7, maxlen=8972, group=224.0.0.81, port=8850, ttl=1)

            """)
        // -c wins over --daemon, as in process_options.
        #expect(try numeric.list(Fixture.state, ListOptions(connections: true, daemon: true), syncStatus: status)
                    .hasPrefix("IPVS connection entries\n"))
    }

    @Test func emptyTable() throws {
        let empty = AdminState(capacity: 1, connections: 0, timeouts: TimeoutState(tcp: 900, tcpFin: 120, udp: 300),
                               services: [])
        #expect(try numeric.list(empty, ListOptions()) == Fixture.lines([
            versionLine,
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
        ]))
        #expect(numeric.save(empty, numeric: true) == "")
    }
}

@Suite struct SaveAndConnections {
    @Test func saveNumeric() {
        // list_all(FMT_RULE): no version line, no title; "-A %s -s %s" with svc_name "-t|-u %s",
        // " -p %u", " -M %s" (mask not /32), " -b " print_sched_flags; dests "-a %s -r %s %s -w %d\n".
        let golden = Fixture.lines([
            "-A -t 198.18.0.1:80 -s rr",
            "-a -t 198.18.0.1:80 -r 192.168.100.101:80 -m -w 1",
            "-a -t 198.18.0.1:80 -r 192.168.100.102:8080 -m -w 3",
            "-A -t 198.18.0.1:443 -s wlc -p 300",
            "-A -u 198.18.0.53:53 -s sh -p 3600 -M 255.255.255.0 -b sh-fallback,sh-port",
            "-a -u 198.18.0.53:53 -r 10.0.2.1:53 -m -w 1",
            "-a -u 198.18.0.53:53 -r 10.0.2.2:53 -m -w 2",
        ])
        #expect(numeric.save(Fixture.state, numeric: true) == golden)
    }

    @Test func saveNumericReadsBackAsTheSameConfiguration() throws {
        // What -S -n prints is a rules file masq reads (RulesFile), and prints back the same way.
        let text = numeric.save(Fixture.state, numeric: true)
        let configuration = try RulesFile.parse(text)
        #expect(configuration.services.count == 3)
        #expect(RulesFile.format(configuration) == text)
    }

    @Test func saveWithNames() {
        // addrport_to_anyname without FMT_NUMERIC, not cut in FMT_RULE.
        let golden = Fixture.lines([
            "-A -t vip.example.org:http -s rr",
            "-a -t vip.example.org:http -r web1:http -m -w 1",
            "-a -t vip.example.org:http -r web2.example.org:http-alt -m -w 3",
            "-A -t vip.example.org:https -s wlc -p 300",
            "-A -u a-very-long-host-name-for-truncation.example.org:domain -s sh -p 3600 -M 255.255.255.0 -b sh-fallback,sh-port",
            "-a -u a-very-long-host-name-for-truncation.example.org:domain -r 10.0.2.1:domain -m -w 1",
            "-a -u a-very-long-host-name-for-truncation.example.org:domain -r 10.0.2.2:domain -m -w 2",
        ])
        #expect(numeric.save(Fixture.state, numeric: false) == golden)
    }

    @Test func listWithNames() throws {
        // svc_name "%-4s %s" cut to 33 bytes ("UDP  a-very-long-host-name-for-tr"), dname cut to 28.
        let golden = Fixture.lines([
            versionLine,
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
            "TCP  vip.example.org:http rr",
            "  -> web1:http                    Masq    1      2          3         ",
            "  -> web2.example.org:http-alt    Masq    3      1          0         ",
            "TCP  vip.example.org:https wlc persistent 300",
            "UDP  a-very-long-host-name-for-tr sh (sh-fallback,sh-port) persistent 3600 mask 255.255.255.0",
            "  -> 10.0.2.1:domain              Masq    1      0          2         ",
            "  -> 10.0.2.2:domain              Masq    2      0          7         ",
        ])
        #expect(try numeric.list(Fixture.state, ListOptions()) == golden)
    }

    @Test func statsWithNames() throws {
        // "%-33s" of the cut svc_name leaves no blank before the first print_largenum's "%8lluK".
        let golden = Fixture.lines([
            versionLine,
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes",
            "  -> RemoteAddress:Port",
            "TCP  vip.example.org:http               10       60       50     4000    30000",
            "  -> web1:http                           5       30       25     2000    15000",
            "  -> web2.example.org:http-alt           5       30       25     2000    15000",
            "TCP  vip.example.org:https               0        0        0        0        0",
            "UDP  a-very-long-host-name-for-tr  123456K   98765M        5     123T   99999G",
            "  -> 10.0.2.1:domain                     0        0        0        0        0",
            "  -> 10.0.2.2:domain                     5  100000K 99999999    5000M     1000",
        ])
        #expect(try numeric.list(Fixture.state, ListOptions(stats: true)) == golden)
    }

    @Test func connectionsNumeric() throws {
        // list_conn(): "IPVS connection entries\n", printf("pro expire %-11s %-18s %-18s %s\n", "state",
        // "source", "virtual", "destination"); print_conn(): "%02d:%02d" (minutes past 99 widen), then
        // printf("%-3s %-6s %-11s %-18s %-18s %s\n").
        let golden = Fixture.lines([
            "IPVS connection entries",
            "pro expire state       source             virtual            destination",
            "TCP 14:55  ESTABLISHED 10.0.0.2:40000     198.18.0.1:80      192.168.100.101:80",
            "UDP 04:59  UDP         10.0.0.3:5353      198.18.0.53:53     10.0.2.1:53",
            "TCP 100:00 NONE        10.0.0.2:0         198.18.0.1:443     192.168.100.102:443",
            "TCP 00:05  TIME_WAIT   10.0.0.2:40001     198.18.0.1:80      192.168.100.102:8080",
        ])
        #expect(try numeric.list(Fixture.state, ListOptions(numeric: true, connections: true),
                                 connections: Fixture.connections) == golden)
    }

    @Test func connectionsWithNames() throws {
        // addrport_to_anyname per column, names by the connection's protocol (5353/udp is mdns);
        // a column wider than 18 pushes the next one.
        let golden = Fixture.lines([
            "IPVS connection entries",
            "pro expire state       source             virtual            destination",
            "TCP 14:55  ESTABLISHED client:40000       vip.example.org:http web1:http",
            "UDP 04:59  UDP         10.0.0.3:mdns      a-very-long-host-name-for-truncation.example.org:domain 10.0.2.1:domain",
            "TCP 100:00 NONE        client:0           vip.example.org:https web2.example.org:https",
            "TCP 00:05  TIME_WAIT   client:40001       vip.example.org:http web2.example.org:http-alt",
        ])
        #expect(try numeric.list(Fixture.state, ListOptions(connections: true), connections: Fixture.connections) == golden)
    }

    @Test func connectionsWithPersistenceEngineColumns() throws {
        // list_conn(FMT_PERSISTENTCONN): printf("pro expire %-11s %-18s %-18s %-18s %-16s %s\n", …,
        // "pe name", "pe_data"); rows keep the 6-column format (no pe data: sscanf reads 9 fields).
        let golden = Fixture.lines([
            "IPVS connection entries",
            "pro expire state       source             virtual            destination        pe name          pe_data",
            "TCP 14:55  ESTABLISHED 10.0.0.2:40000     198.18.0.1:80      192.168.100.101:80",
            "UDP 04:59  UDP         10.0.0.3:5353      198.18.0.53:53     10.0.2.1:53",
            "TCP 100:00 NONE        10.0.0.2:0         198.18.0.1:443     192.168.100.102:443",
            "TCP 00:05  TIME_WAIT   10.0.0.2:40001     198.18.0.1:80      192.168.100.102:8080",
        ])
        #expect(try numeric.list(Fixture.state, ListOptions(numeric: true, connections: true, persistentConnections: true),
                                 connections: Fixture.connections) == golden)
    }

    @Test func noConnections() throws {
        #expect(try numeric.list(Fixture.state, ListOptions(numeric: true, connections: true)) == Fixture.lines([
            "IPVS connection entries",
            "pro expire state       source             virtual            destination",
        ]))
    }
}

@Suite struct LargeNumbers {
    // print_largenum(): "%9llu" below 10^8, "%8lluK" below 10^9, "%8lluM" below 10^11,
    // "%8lluG" below 10^14, "%8lluT" above.
    @Test(arguments: [
        (UInt64(0), "        0"),
        (99_999_999, " 99999999"),
        (100_000_000, "  100000K"),
        (999_999_999, "  999999K"),
        (1_000_000_000, "    1000M"),
        (99_999_999_999, "   99999M"),
        (100_000_000_000, "     100G"),
        (99_999_999_999_999, "   99999G"),
        (100_000_000_000_000, "     100T"),
        (UInt64.max, "18446744T"),
    ])
    func rounded(_ n: UInt64, _ text: String) {
        #expect(IPVSAdmFormat.largeNumber(n, exact: false) == text)
    }

    // FMT_EXACT: printf("%*llu", len <= 8 ? 9 : len + 1, n): always at least one blank before.
    @Test(arguments: [
        (UInt64(7), "        7"),
        (12_345_678, " 12345678"),
        (123_456_789, " 123456789"),
        (UInt64.max, " 18446744073709551615"),
    ])
    func exact(_ n: UInt64, _ text: String) {
        #expect(IPVSAdmFormat.largeNumber(n, exact: true) == text)
    }
}

@Suite struct Sorting {
    private func service(_ proto: String, _ address: String, _ port: UInt16, dests: [String] = []) -> ServiceState {
        ServiceState(proto: proto, address: address, port: port, scheduler: "rr",
                     destinations: dests.map { DestinationState(address: $0, port: 80, weight: 1) })
    }

    @Test func byProtocolAddressPort() {
        let state = AdminState(capacity: 1, connections: 0, timeouts: TimeoutState(tcp: 1, tcpFin: 1, udp: 1), services: [
            service("UDP", "10.0.0.1", 53), service("TCP", "10.0.0.2", 80), service("TCP", "10.0.0.1", 443),
            service("TCP", "10.0.0.1", 80),
        ])
        #expect(numeric.save(state, numeric: true) == Fixture.lines([
            "-A -t 10.0.0.1:80 -s rr", "-A -t 10.0.0.1:443 -s rr", "-A -t 10.0.0.2:80 -s rr", "-A -u 10.0.0.1:53 -s rr",
        ]))
    }

    @Test func addressesMoreThan2To31ApartCompareAsIpvsadmDoes() {
        // ipvs_cmp_dests: r = ntohl(a) - ntohl(b) in an int. 10.0.0.1 - 198.18.0.1 wraps to a
        // positive int, so 198.18.0.1 sorts first; 100.0.0.1 vs 10.0.0.1 is a plain difference.
        let s = service("TCP", "1.1.1.1", 80, dests: ["10.0.0.1", "198.18.0.1", "100.0.0.1"])
        let state = AdminState(capacity: 1, connections: 0, timeouts: TimeoutState(tcp: 1, tcpFin: 1, udp: 1), services: [s])
        // glibc msort on [10, 198, 100]: [10] | [198, 100]; 198 vs 100 differ by less than 2^31 → [100, 198];
        // merge: 10 vs 100 → 10 first. Every pair compared was less than 2^31 apart: plain order.
        #expect(numeric.save(state, numeric: true) == Fixture.lines([
            "-A -t 1.1.1.1:80 -s rr",
            "-a -t 1.1.1.1:80 -r 10.0.0.1:80 -m -w 1",
            "-a -t 1.1.1.1:80 -r 100.0.0.1:80 -m -w 1",
            "-a -t 1.1.1.1:80 -r 198.18.0.1:80 -m -w 1",
        ]))
        // Two apart by more than 2^31: the wrapped comparison puts the higher address first.
        let t = service("TCP", "1.1.1.1", 80, dests: ["10.0.0.1", "198.18.0.1"])
        let state2 = AdminState(capacity: 1, connections: 0, timeouts: TimeoutState(tcp: 1, tcpFin: 1, udp: 1), services: [t])
        #expect(numeric.save(state2, numeric: true).split(separator: "\n").dropFirst().first == "-a -t 1.1.1.1:80 -r 198.18.0.1:80 -m -w 1")
    }

    @Test func mergeSortIsStableAndMatchesGlibc() {
        let sorted = glibcMergeSort([(1, "a"), (0, "b"), (1, "c"), (0, "d")]) { Int32($0.0 - $1.0) }
        #expect(sorted.map(\.1) == ["b", "d", "a", "c"])
    }
}

@Suite struct SchedulerFlagNames {
    // print_sched_flags(): sh-…/mh-… for sh and mh, flag-N for the others, in bit order.
    @Test(arguments: [
        ("sh", ["sh-port", "sh-fallback"], "sh-fallback,sh-port"),
        ("mh", ["mh-port"], "mh-port"),
        ("rr", ["flag-2", "flag-1"], "flag-1,flag-2"),
        ("sh", ["flag-2"], "sh-port"),
    ])
    func named(_ scheduler: String, _ flags: [String], _ text: String) {
        let s = ServiceState(proto: "TCP", address: "10.0.0.1", port: 80, scheduler: scheduler, schedulerFlags: flags)
        #expect(IPVSAdmFormat.schedulerFlags(s) == text)
    }
}
