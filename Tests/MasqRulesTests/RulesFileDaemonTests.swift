import MasqCore
import Testing
@testable import MasqRules

/// The rules file's `--start-daemon` line (masq's extension: ipvsadm-save has no form for a daemon).
@Suite struct RulesFileDaemonTests {
    @Test func startDaemonLineIsKept() throws {
        let document = try RulesFile.load("""
            -A -t 198.18.0.1:80 -s rr
            -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w 1
            --start-daemon master --mcast-interface sy0 --syncid 7
            --start-daemon backup --mcast-interface sy0 --syncid 7
            """, file: "pair.rules")
        #expect(document.configuration.services.count == 1)
        #expect(document.syncDaemons == [SyncDaemonConfig(role: .master, interface: "sy0", syncID: 7),
                                         SyncDaemonConfig(role: .backup, interface: "sy0", syncID: 7)])
        // The daemons are not part of the configuration, and -S (RulesFile.format) never prints them.
        #expect(!RulesFile.format(document.configuration).contains("daemon"))
    }

    @Test func secondDaemonOfARoleIsRefused() {
        #expect {
            try RulesFile.load("--start-daemon master\n--start-daemon master --syncid 2\n", file: "f")
        } throws: { error in
            let e = error as! RulesError
            return e.line == 2 && e.description.contains("Daemon has already run")
        }
    }

    @Test func restoreRefusesDaemons() {
        #expect(throws: RulesError.self) {
            try RulesFile.apply("--start-daemon master\n", to: Configuration(), file: "<stdin>")
        }
    }

    @Test func stopDaemonIsNotARulesLine() {
        #expect(throws: RulesError.self) { try RulesFile.load("--stop-daemon master\n") }
    }
}
