import Foundation
import Logging
import Synchronization
import Testing
@testable import MasqDaemon
#if canImport(Glibc)
import Glibc
#endif

/// `--log-format`: the three line formats for fixed events, and the auto choice.
@Suite struct LogFormatTests {
    /// 2026-11-30T19:46:40.000123Z.
    static let fixedTime = timespec(tv_sec: 1_796_068_000, tv_nsec: 123_456)

    static func handler(_ format: LogLineFormat, label: String = "masq", output: LogOutput = LogOutput(descriptor: -1)) -> MasqLogHandler {
        MasqLogHandler(label: label, format: format, output: output, metadataProvider: nil, clock: { fixedTime })
    }

    static func event(_ level: Logger.Level, _ message: String, _ metadata: Logger.Metadata? = nil) -> LogEvent {
        LogEvent(level: level, message: "\(message)", metadata: metadata, source: "MasqDaemon",
                 file: "MasqDaemon/Daemon.swift", function: "runDaemon", line: 1)
    }

    /// What StreamLogHandler writes, to compare the text format with.
    final class StreamCapture: TextOutputStream, Sendable {
        let text = Mutex("")
        func write(_ string: String) { text.withLock { $0 += string } }
    }

    static let serving = event(.info, "serving", ["services": "2", "rules": "/etc/masq/rules", "pid": .stringConvertible(4242)])

    @Test func textIsStreamLogHandlersLine() throws {
        let capture = StreamCapture()
        let events = [
            Self.serving,
            Self.event(.notice, "no metadata"),
            Self.event(.error, "reload rejected, the running configuration stays: rules:3: \"xx\"\nsecond line",
                       ["nested": .dictionary(["b": "2", "a": .array(["x", "y"])]), "empty": ""]),
        ]
        for label in ["masq", ""] {
            let stream = StreamLogHandler(label: label, stream: capture, metadataProvider: nil)
            let ours = Self.handler(.text, label: label)
            for event in events {
                capture.text.withLock { $0 = "" }
                stream.log(event: event)
                let theirs = capture.text.withLock { $0 }
                let mine = ours.line(for: event)
                // The time is each handler's own clock: the rest must be the same bytes.
                #expect(mine.drop { $0 != " " } == theirs.drop { $0 != " " })
            }
        }

        // The time: local, to the second, with the UTC offset, as strftime's %z.
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone.current
        formatter.dateFormat = "yyyy-MM-dd'T'HH:mm:ssZ"
        let stamp = formatter.string(from: Date(timeIntervalSince1970: TimeInterval(Self.fixedTime.tv_sec)))
        #expect(Self.handler(.text).line(for: Self.serving)
                == "\(stamp) info masq: pid=4242 rules=/etc/masq/rules services=2 [MasqDaemon] serving\n")
    }

    @Test func journalLinesHaveAPriorityAndNoTime() {
        let handler = Self.handler(.journal)
        #expect(handler.line(for: Self.serving) == "<6>serving pid=4242 rules=/etc/masq/rules services=2\n")
        #expect(handler.line(for: Self.event(.warning, "cannot open a raw socket (CAP_NET_RAW)")) == "<4>cannot open a raw socket (CAP_NET_RAW)\n")
        // Every line of a multi-line message carries the priority, so journald files none at its default.
        #expect(handler.line(for: Self.event(.error, "reload rejected: rules:3\n  -A -t x", ["rules": "r"]))
                == "<3>reload rejected: rules:3\n<3>  -A -t x rules=r\n")
        let priorities = Logger.Level.allCases.map { MasqLogHandler.priority($0) }
        #expect(priorities == [7, 7, 6, 5, 4, 3, 2])  // trace debug info notice warning error critical
    }

    @Test func jsonLinesAreOneObjectEach() {
        let handler = Self.handler(.json)
        #expect(handler.line(for: Self.serving) == """
            {"time":"2026-11-30T19:46:40.000123Z","level":"info","message":"serving","label":"masq","source":"MasqDaemon",\
            "metadata":{"pid":"4242","rules":"/etc/masq/rules","services":"2"}}

            """)
        #expect(handler.line(for: Self.event(.notice, "SIGUSR2: stopping for a restart")) == """
            {"time":"2026-11-30T19:46:40.000123Z","level":"notice","message":"SIGUSR2: stopping for a restart","label":"masq","source":"MasqDaemon"}

            """)
        let nested = Self.event(.warning, "say \"hi\" \\ there", ["z": .array(["1", .dictionary(["k": "v"])]), "a": .dictionary(["y": "2", "x": "1"])])
        #expect(handler.line(for: nested) == """
            {"time":"2026-11-30T19:46:40.000123Z","level":"warning","message":"say \\"hi\\" \\\\ there","label":"masq",\
            "source":"MasqDaemon","metadata":{"a":{"x":"1","y":"2"},"z":["1",{"k":"v"}]}}

            """)
        var escaped = ""
        MasqLogHandler.appendJSONString("\u{0}\u{1}\u{8}\u{C}\n\r\t\u{1F}\u{7F}é", to: &escaped)
        #expect(escaped == #""\u0000\u0001\b\f\n\r\t\u001f"# + "\u{7F}é\"")
    }

    @Test(arguments: [
        "plain", "quote \" inside", "back\\slash \\\\ two", "new\nline\r\nand\ttab", "\u{0}nul \u{1}\u{1F} controls \u{7F}",
        "non-ASCII: é ß 日本語 🚀", "\u{2028} line separator \u{FEFF}", "\"", "\\", "",
    ])
    func everyJSONLineParses(message: String) throws {
        let handler = Self.handler(.json, label: "masq \"label\"")
        let metadata: Logger.Metadata = ["value": "\(message)", "key \"\\\n": "x", "list": [.string(message)]]
        let line = handler.line(for: Self.event(.critical, message, metadata))
        #expect(line.hasSuffix("}\n") && line.filter { $0 == "\n" }.count == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["message"] as? String == message)
        #expect(object["label"] as? String == "masq \"label\"")
        #expect(object["level"] as? String == "critical")
        let parsed = try #require(object["metadata"] as? [String: Any])
        #expect(parsed["value"] as? String == message)
        #expect(parsed["key \"\\\n"] as? String == "x")
        #expect(parsed["list"] as? [String] == [message])
    }

    @Test func anAttachedErrorIsMetadataAsStreamLogHandlerHasIt() {
        struct Broken: Error, CustomStringConvertible { var description: String { "queue 0: EPERM" } }
        var event = Self.event(.error, "failed")
        event.error = Broken()
        #expect(Self.handler(.journal).line(for: event).hasPrefix("<3>failed error.message=queue 0: EPERM error.type="))
    }

    @Test func autoIsJournalOnlyWhenStderrIsTheJournalStream() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("masq-journal-\(UUID().uuidString.prefix(8))").path
        let fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        defer { close(fd); unlink(path) }
        var st = stat()
        try #require(fstat(fd, &st) == 0)
        let stream = "\(st.st_dev):\(st.st_ino)"

        #expect(LogFormat.auto.lineFormat(journalStream: stream, standardError: fd) == .journal)
        #expect(LogFormat.auto.lineFormat(journalStream: "\(st.st_dev):\(st.st_ino + 1)", standardError: fd) == .text)
        #expect(LogFormat.auto.lineFormat(journalStream: nil, standardError: fd) == .text)
        #expect(LogFormat.auto.lineFormat(journalStream: "", standardError: fd) == .text)
        #expect(LogFormat.auto.lineFormat(journalStream: "\(st.st_dev):\(st.st_ino):0", standardError: fd) == .text)
        #expect(LogFormat.auto.lineFormat(journalStream: stream, standardError: -1) == .text)
        // An explicit choice wins over the journal.
        #expect(LogFormat.text.lineFormat(journalStream: stream, standardError: fd) == .text)
        #expect(LogFormat.json.lineFormat(journalStream: stream, standardError: fd) == .json)
        #expect(LogFormat.journal.lineFormat(journalStream: nil, standardError: fd) == .journal)
    }

    @Test func linesFromManyThreadsNeverMix() throws {
        var ends: [Int32] = [0, 0]
        try #require(pipe(&ends) == 0)
        defer { close(ends[0]) }
        let output = LogOutput(descriptor: ends[1])
        let padding = String(repeating: "x", count: 80)
        // 8 × 50 lines of ~130 bytes: within the pipe's 64 KiB, read once all are written.
        let threads = (0..<8).map { t in
            Thread {
                let logger = Logger(label: "masq") { label in
                    MasqLogHandler(label: label, format: .journal, output: output, metadataProvider: nil, clock: { LogFormatTests.fixedTime })
                }
                for i in 0..<50 { logger.info("thread \(t) line \(i) \(padding)", metadata: ["t": "\(t)"]) }
            }
        }
        for thread in threads { thread.start() }
        // Thread has no join: the pipe's contents tell when every line is in.
        var text = ""
        var buffer = [UInt8](repeating: 0, count: 65536)
        let deadline = Date().addingTimeInterval(10)
        while text.filter({ $0 == "\n" }).count < 400 && Date() < deadline {
            let n = read(ends[0], &buffer, buffer.count)
            if n > 0 { text += String(decoding: buffer.prefix(n), as: UTF8.self) }
        }
        close(ends[1])
        let lines = text.split(separator: "\n")
        #expect(lines.count == 400)
        for line in lines {
            let words = line.split(separator: " ")
            #expect(words.count == 6 && words[0] == "<6>thread" && words[4] == padding && words[5] == "t=\(words[1])")
        }
    }
}
