import Foundation
import MasqCapture
import MasqRules
import Testing
@testable import MasqCore

/// Replays each capture under fixtures/ (made by scripts/gen-fixtures, whose expected outputs are built
/// independently with scapy) and compares every verdict and every output byte.
@Suite struct ReplayFixtureTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("fixtures")

    static var names: [String] {
        let all = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return all.filter { FileManager.default.fileExists(atPath: root.appendingPathComponent("\($0)/rules").path) }.sorted()
    }

    @Test func fixturesExist() {
        #expect(Self.names.count >= 6, "run scripts/gen-fixtures")
    }

    static func expectedVerdict(_ word: Substring) -> Verdict? {
        switch word {
        case "accept": return .accept
        case "in": return .rewritten(.inbound)
        case "out": return .rewritten(.outbound)
        default:
            guard word.hasPrefix("drop:") else { return nil }
            return DropReason.allCases.first { $0.description == word.dropFirst(5) }.map { .drop($0) }
        }
    }

    static func records(_ path: String) throws -> [[UInt8]] {
        var reader = try CaptureReader(path: path)
        var out: [[UInt8]] = []
        while let r = try reader.next() { out.append(r.bytes.bytes) }
        return out
    }

    @Test(arguments: names) func replayMatchesExpected(_ name: String) throws {
        let dir = Self.root.appendingPathComponent(name)
        let rules = try String(contentsOf: dir.appendingPathComponent("rules"), encoding: .utf8)
        let engine = Engine(configuration: try RulesFile.parse(rules, file: "\(name)/rules"))
        let input = ["input.pcap", "input.pcapng"].map { dir.appendingPathComponent($0).path }
            .first { FileManager.default.fileExists(atPath: $0) }!
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("masq-\(name)-\(getpid()).pcap").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        let summary = try replay(engine, input: input, output: output, recordVerdicts: true)

        let lines = try String(contentsOf: dir.appendingPathComponent("verdicts.txt"), encoding: .utf8)
            .split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        #expect(lines.count == summary.verdicts.count, "one verdict line per input packet")
        for (line, actual) in zip(lines, summary.verdicts) {
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            let expected = words.count > 1 ? Self.expectedVerdict(words[1]) : nil
            #expect(expected != nil, "unreadable verdict line: \(line)")
            #expect(actual == expected, "\(name): \(line)")
        }

        let got = try Self.records(output)
        let want = try Self.records(dir.appendingPathComponent("expected.pcap").path)
        #expect(got.count == want.count)
        for (i, (g, w)) in zip(got, want).enumerated() where g != w {
            Issue.record("\(name): output packet \(i) differs from expected.pcap")
        }
    }
}
