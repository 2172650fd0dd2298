import MasqCore
import MasqRules
import Testing
@testable import MasqAdmin

private func parse(_ args: [String]) throws(AdminError) -> IPVSAdmCommand {
    try AdminCommandLine.parse(args, resolver: Fixture.resolver)
}

/// `--start-daemon`, `--stop-daemon` as ipvsadm 1.31 parses them (`parse_options`, `commands_v_options`
/// rows STARTD and STOPD), and the kernel's defaults (`start_sync_thread`).
@Suite struct DaemonCommandLineTests {
    @Test func startDaemonDefaults() throws {
        // DEF_MCAST_IFN when no interface; syncid 0 (memset); the rest left to the kernel.
        #expect(try parse(["--start-daemon", "master"]) == .startDaemon(SyncDaemonConfig(role: .master)))
        #expect(try parse(["--start-daemon=backup"]) == .startDaemon(SyncDaemonConfig(role: .backup, interface: "eth0")))
    }

    @Test func startDaemonOptions() throws {
        let parsed = try parse(["--start-daemon", "backup", "--mcast-interface", "sy0", "--syncid", "7",
                                "--sync-maxlen", "1400", "--mcast-group", "239.1.2.3", "--mcast-port", "8850",
                                "--mcast-ttl", "2"])
        let expected = SyncDaemonConfig(role: .backup, interface: "sy0", syncID: 7, maxLength: 1400,
                                        group: IPv4Address(239, 1, 2, 3), port: 8850, ttl: 2)
        #expect(parsed == .startDaemon(expected))
        // The words go back to the same daemon.
        #expect(try parse(expected.ipvsadmArguments) == parsed)
    }

    @Test func interfaceNameIsCutAt15Bytes() throws {
        // strncpy(ce->daemon.mcast_ifn, optarg, IP_VS_IFNAME_MAXLEN - 1)
        guard case .startDaemon(let c) = try parse(["--start-daemon", "master", "--mcast-interface", "abcdefghijklmnopq"]) else {
            Issue.record("not a daemon")
            return
        }
        #expect(c.interface == "abcdefghijklmno")
    }

    @Test func stopDaemon() throws {
        #expect(try parse(["--stop-daemon", "master"]) == .stopDaemon(.master))
        // STOPD allows --syncid only (it is ignored, as the kernel ignores it).
        #expect(try parse(["--stop-daemon", "backup", "--syncid", "3"]) == .stopDaemon(.backup))
    }

    @Test(arguments: [
        (["--start-daemon", "foo"], "illegal start-daemon parameter specified"),
        (["--stop-daemon", "both"], "illegal start_daemon specified"),
        (["--start-daemon", "master", "--syncid", "-1"], "illegal syncid specified"),
        (["--start-daemon", "master", "--sync-maxlen", "65508"], "illegal sync-maxlen specified"),
        (["--start-daemon", "master", "--sync-maxlen", "0"], "illegal sync-maxlen specified"),
        (["--start-daemon", "master", "--mcast-port", "0"], "illegal mcast-port specified"),
        (["--start-daemon", "master", "--mcast-ttl", "256"], "illegal mcast-ttl specified"),
        (["--start-daemon", "master", "--mcast-group", "198.18.0.1"], "invalid IPv4 mcast-group `198.18.0.1'"),
        (["--start-daemon", "master", "--mcast-group", "2001:2::1"], "invalid IPv6 mcast-group `2001:2::1'"),
        (["--start-daemon", "master", "-t", "198.18.0.1:80"], "Illegal 'service-address' option with the 'start-daemon' command"),
        (["--start-daemon", "master", "-n"], "Illegal 'numeric' option with the 'start-daemon' command"),
        (["--stop-daemon", "master", "--mcast-interface", "eth0"], "Illegal 'mcast-interface' option with the 'stop-daemon' command"),
        (["--start-daemon", "master", "--syncid", "1", "--syncid", "2"], "multiple 'syncid' options specified"),
    ])
    func refusedAsIpvsadm(_ args: [String], _ message: String) {
        #expect(throws: AdminError.fail(message)) { try parse(args) }
    }

    @Test func listLineOfWhatWasGiven() {
        // Before the kernel fills in its defaults only what was given shows (an old kernel's answer).
        #expect(SyncDaemonConfig(role: .master, interface: "eth0", syncID: 7).listLine
                    == "master sync daemon (mcast=eth0, syncid=7)")
    }

    @Test func kernelDefaults() {
        // start_sync_thread: group 224.0.0.81, port 8848, ttl 1; maxlen 1500 − 28 on a master whatever the
        // MTU, clamp(mtu, 1500, 65535) − 28 on a backup; a given maxlen clamped to [1 | 1024, 65535 − 28].
        let master = SyncDaemonConfig(role: .master).resolved(interfaceMTU: 9000)
        #expect(master.maxLength == 1472 && master.group == IPv4Address(224, 0, 0, 81) && master.port == 8848 && master.ttl == 1)
        #expect(SyncDaemonConfig(role: .backup).resolved(interfaceMTU: 9000).maxLength == 8972)
        #expect(SyncDaemonConfig(role: .backup).resolved(interfaceMTU: 1280).maxLength == 1472)
        #expect(SyncDaemonConfig(role: .backup, maxLength: 100).resolved(interfaceMTU: 1500).maxLength == 1024)
        #expect(SyncDaemonConfig(role: .master, maxLength: 100).resolved(interfaceMTU: 1500).maxLength == 100)
    }
}
