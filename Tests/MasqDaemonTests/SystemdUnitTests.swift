import Foundation
import Testing

/// dist/systemd: the unit the README installs, its signals as masq reads them, and systemd's own
/// verdict on the files where `systemd-analyze` is installed.
@Suite struct SystemdUnitTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("dist/systemd").path

    /// `KEY=value` lines of a unit file (comments and sections dropped), in order.
    static func settings(_ file: String) throws -> [(String, String)] {
        try String(contentsOfFile: "\(directory)/\(file)", encoding: .utf8).split(separator: "\n").compactMap { line in
            guard !line.hasPrefix("#"), !line.hasPrefix("["), let equals = line.firstIndex(of: "=") else { return nil }
            return (String(line[..<equals]), String(line[line.index(after: equals)...]))
        }
    }

    static func value(_ key: String, in file: String) throws -> String? {
        try settings(file).last { $0.0 == key }?.1
    }

    /// A restart is SIGUSR2 (rules and table kept), a stop SIGTERM (rules removed); a crash restarts
    /// within RestartSec, and a unit that keeps failing hands over to masq-unqueue.
    @Test func signalsAndRestartsAreMasqs() throws {
        #expect(try Self.value("RestartKillSignal", in: "masq.service") == "SIGUSR2")
        #expect(try Self.value("KillSignal", in: "masq.service") == "SIGTERM")
        #expect(try Self.value("Restart", in: "masq.service") == "always")
        #expect(try Self.value("RestartSec", in: "masq.service") == "100ms")
        #expect(try Self.value("OnFailure", in: "masq.service") == "masq-unqueue.service")
        #expect(try Self.value("ExecStopPost", in: "masq.service") == "/usr/local/sbin/masq iptables --remove --if-stop-unhandled $MASQ_IPTABLES_OPTIONS")
        #expect(try Self.value("ExecReload", in: "masq.service") == "/bin/kill -HUP $MAINPID")
        #expect(try Self.value("ExecStart", in: "masq.service") == "/usr/local/sbin/masq run $MASQ_OPTIONS $MASQ_IPTABLES_OPTIONS")
        #expect(try Self.value("ExecStart", in: "masq-unqueue.service") == "/usr/local/sbin/masq iptables --remove --unless-queue-bound 5 $MASQ_IPTABLES_OPTIONS")
        #expect(try Self.settings("masq.service").contains { $0 == ("EnvironmentFile", "-/etc/default/masq") })
        // Every variable the units use is set in the default file.
        let defaults = try Self.settings("masq.default").map(\.0)
        #expect(defaults == ["MASQ_OPTIONS", "MASQ_IPTABLES_OPTIONS"])
    }

    /// `systemd-analyze verify` accepts the units (with the binary's path pointed at one that exists).
    @Test func systemdAcceptsTheUnits() throws {
        guard let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first(where: FileManager.default.isExecutableFile)
        else { return }  // no systemd here: the static checks above are what there is
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("masq-units-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: copy) }
        for unit in ["masq.service", "masq-unqueue.service", "run-masq.mount"] {
            let text = try String(contentsOfFile: "\(Self.directory)/\(unit)", encoding: .utf8)
            try text.replacingOccurrences(of: "/usr/local/sbin/masq", with: "/bin/true")
                .write(toFile: "\(copy)/\(unit)", atomically: true, encoding: .utf8)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: analyze)
        process.arguments = ["verify", "--man=no", "\(copy)/masq.service", "\(copy)/masq-unqueue.service", "\(copy)/run-masq.mount"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "systemd-analyze verify: \(output)")
        #expect(output.isEmpty, "systemd-analyze verify: \(output)")
    }
}
