import MasqCore
import MasqRules
import Testing
@testable import MasqHealth

/// global_defs' `lvs_sync_daemon` (global_parser.c `lvs_syncd_handler`), read from a file whose
/// other global_defs masq ignores.
@Suite struct KeepalivedSyncDaemonTests {
    static func parse(_ globals: String, instances: String = "") throws(RulesError) -> KeepalivedConfig {
        try KeepalivedParser.parse(text: """
            global_defs {
                router_id LVS_A
                notification_email {
                    admin@example.invalid
                }
                \(globals)
            }
            \(instances)
            virtual_server 198.18.0.1 80 {
                lb_kind NAT
                real_server 198.19.0.201 80 {
                }
            }
            """, file: "keepalived.conf", include: { throw RulesError(token: $0, message: "no such file") })
    }

    @Test func everyOption() throws {
        let c = try Self.parse("lvs_sync_daemon sy0 VI_1 id 7 maxlen 1400 port 8850 ttl 2 group 239.1.2.3")
        #expect(c.syncDaemon == KeepalivedSyncDaemon(interface: "sy0", instance: "VI_1", syncID: 7, maxLength: 1400,
                                                     port: 8850, ttl: 2, group: IPv4Address(239, 1, 2, 3)))
        #expect(c.syncDaemon?.config(role: .master) == SyncDaemonConfig(
            role: .master, interface: "sy0", syncID: 7, maxLength: 1400, group: IPv4Address(239, 1, 2, 3), port: 8850, ttl: 2))
        // global_defs is still said to be ignored (all but this line).
        #expect(c.warnings.filter { $0.token == "global_defs" }.count == 1)
        #expect(!c.warnings.contains { $0.description.contains("lvs_sync_daemon") })
    }

    @Test func theSyncIDDefaultsToTheInstancesRouterID() throws {
        let instance = """
            vrrp_instance VI_OUT {
                state BACKUP
                virtual_router_id 51
                virtual_ipaddress {
                    198.18.0.1/24
                }
            }
            """
        let c = try Self.parse("lvs_sync_daemon sy0 inst VI_OUT", instances: instance)
        #expect(c.syncDaemon?.instance == "VI_OUT" && c.syncDaemon?.syncID == nil && c.syncDaemon?.instanceRouterID == 51)
        #expect(c.syncDaemon?.config(role: .backup).syncID == 51)
        // No instance: 0.
        #expect(try Self.parse("lvs_sync_daemon sy0").syncDaemon?.config(role: .backup).syncID == 0)
    }

    @Test func noLineNoDaemon() throws {
        #expect(try Self.parse("").syncDaemon == nil)
    }

    @Test(arguments: ["lvs_sync_daemon", "lvs_sync_daemon sy0 id 256", "lvs_sync_daemon sy0 maxlen 0",
                      "lvs_sync_daemon sy0 ttl", "lvs_sync_daemon sy0 group 198.18.0.1", "lvs_sync_daemon sy0 VI_1 VI_2",
                      "lvs_sync_daemon sy0 port 70000", "lvs_sync_daemon abcdefghijklmnopq"])
    func refused(_ line: String) {
        #expect(throws: RulesError.self) { try Self.parse(line) }
    }
}
