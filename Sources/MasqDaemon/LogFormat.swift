import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `masq run --log-format`: how log lines look on stderr.
public enum LogFormat: String, CaseIterable, Sendable {
    /// `journal` when stderr is the journal (systemd.exec(5), `$JOURNAL_STREAM`), else `text`.
    case auto
    /// swift-log's StreamLogHandler line, as masq has always written it (the e2e scripts read it).
    case text
    /// For journald: `<P>` priority prefix (sd-daemon(3)), message, metadata; journald adds the time.
    case journal
    /// One JSON object (RFC 8259) per line, for log shippers.
    case json

    /// The line format this choice means for a process whose stderr is `standardError`, with
    /// `journalStream` the value of $JOURNAL_STREAM.
    public func lineFormat(journalStream: String?, standardError: Int32 = STDERR_FILENO) -> LogLineFormat {
        switch self {
        case .text: .text
        case .journal: .journal
        case .json: .json
        case .auto: Self.isJournal(journalStream, descriptor: standardError) ? .journal : .text
        }
    }

    /// As `lineFormat(journalStream:standardError:)` for this process's environment and fd 2.
    public var lineFormatForThisProcess: LogLineFormat {
        lineFormat(journalStream: ProcessInfo.processInfo.environment["JOURNAL_STREAM"])
    }

    /// systemd sets JOURNAL_STREAM to "DEV:INODE" (decimal) of the stream it connected stdout/stderr
    /// to; it is inherited, so it means "stderr is the journal" only while fd 2 is still that stream
    /// (a shell redirect or a child of the service keeps the variable but not the stream).
    static func isJournal(_ journalStream: String?, descriptor: Int32) -> Bool {
        guard let parts = journalStream?.split(separator: ":", omittingEmptySubsequences: false), parts.count == 2,
              let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var st = stat()
        guard fstat(descriptor, &st) == 0 else { return false }
        return UInt64(st.st_dev) == device && UInt64(st.st_ino) == inode
    }
}

/// The three ways a log line can be written (`LogFormat.auto` resolved).
public enum LogLineFormat: Sendable, Equatable {
    case text, journal, json
}

/// Where log lines go: a descriptor written with one write(2) per line under a lock, so lines from
/// the packet threads (`--debug-packets`) and the concurrency pool never mix, and a line reaches
/// journald (a stream socket) whole. Every handler of the process shares `standardError`.
public final class LogOutput: Sendable {
    let descriptor: Int32
    private let lock = Mutex(())

    public init(descriptor: Int32) { self.descriptor = descriptor }

    public static let standardError = LogOutput(descriptor: STDERR_FILENO)

    func write(_ line: String) {
        var line = line
        line.withUTF8 { bytes in
            lock.withLock { _ in
                var offset = 0
                while offset < bytes.count {
                    let n = Glibc.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                    if n < 0 {
                        if errno == EINTR { continue }
                        return  // nowhere to report it: stderr is what failed
                    }
                    offset += n
                }
            }
        }
    }
}

/// masq's LogHandler: the three line formats over one `LogOutput`.
public struct MasqLogHandler: LogHandler {
    public let label: String
    public let format: LogLineFormat
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let output: LogOutput
    /// The wall clock (CLOCK_REALTIME); the tests give a fixed one.
    let clock: @Sendable () -> timespec

    public init(label: String, format: LogLineFormat, output: LogOutput = .standardError,
                metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider) {
        self.init(label: label, format: format, output: output, metadataProvider: metadataProvider, clock: {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            return now
        })
    }

    init(label: String, format: LogLineFormat, output: LogOutput, metadataProvider: Logger.MetadataProvider?,
         clock: @escaping @Sendable () -> timespec) {
        self.label = label
        self.format = format
        self.output = output
        self.metadataProvider = metadataProvider
        self.clock = clock
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        output.write(line(for: event))
    }

    /// The event's line, newline included.
    func line(for event: LogEvent) -> String {
        let metadata = effectiveMetadata(event)
        switch format {
        case .text: return textLine(event, metadata)
        case .journal: return journalLine(event, metadata)
        case .json: return jsonLine(event, metadata)
        }
    }

    /// StreamLogHandler's merge: the handler's metadata, the provider's over it, the call's over both,
    /// and an attached error as `error.message`/`error.type`.
    private func effectiveMetadata(_ event: LogEvent) -> Logger.Metadata {
        var merged = metadata
        if let provided = metadataProvider?.get(), !provided.isEmpty {
            merged.merge(provided) { _, new in new }
        }
        if let explicit = event.metadata, !explicit.isEmpty {
            merged.merge(explicit) { _, new in new }
        }
        if let error = event.error {
            merged["error.message"] = "\(error)"
            merged["error.type"] = "\(String(reflecting: type(of: error)))"
        }
        return merged
    }

    /// `key=value` pairs sorted by key, as StreamLogHandler prints them (nil: none).
    private static func pairs(_ metadata: Logger.Metadata) -> String? {
        metadata.isEmpty ? nil : metadata.sorted { $0.key < $1.key }.map { "\($0)=\($1)" }.joined(separator: " ")
    }

    /// Byte for byte StreamLogHandler's: local time to the second with its UTC offset, level, label,
    /// metadata, `[source]`, message.
    private func textLine(_ event: LogEvent, _ metadata: Logger.Metadata) -> String {
        var seconds = clock().tv_sec
        var local = tm()
        var stamp = "<unknown>"
        if localtime_r(&seconds, &local) != nil {
            stamp = Self.formatted(&local, "%Y-%m-%dT%H:%M:%S%z")
        }
        let pairs = Self.pairs(metadata).map { " \($0)" } ?? ""
        return "\(stamp) \(event.level)\(label.isEmpty ? "" : " ")\(label):\(pairs) [\(event.source)] \(event.message)\n"
    }

    /// strftime(3) of a broken-down time.
    private static func formatted(_ time: inout tm, _ format: String) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, format, &time)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// sd-daemon(3)'s priorities: swift-log has no emerg/alert, and trace is below debug.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// `<P>message key=value…`. journald makes one entry per line of its stream, so a message with
    /// newlines gets the prefix on every line: none of them falls to the stream's default priority.
    private func journalLine(_ event: LogEvent, _ metadata: Logger.Metadata) -> String {
        let prefix = "<\(Self.priority(event.level))>"
        let text = "\(event.message)" + (Self.pairs(metadata).map { " \($0)" } ?? "")
        return text.split(separator: "\n", omittingEmptySubsequences: false).map { prefix + $0 }.joined(separator: "\n") + "\n"
    }

    /// `{"time":…,"level":…,"message":…,"label":…,"source":…,"metadata":{…}}`: UTC to the µs;
    /// "metadata" only when there is some, its keys sorted, nested values as JSON arrays and objects.
    private func jsonLine(_ event: LogEvent, _ metadata: Logger.Metadata) -> String {
        let now = clock()
        var seconds = now.tv_sec
        var utc = tm()
        gmtime_r(&seconds, &utc)
        let microseconds = String(now.tv_nsec / 1000)
        let time = Self.formatted(&utc, "%Y-%m-%dT%H:%M:%S") + "." + String(repeating: "0", count: 6 - microseconds.count) + microseconds + "Z"
        var line = "{\"time\":\"\(time)\",\"level\":\"\(event.level.rawValue)\",\"message\":"
        Self.appendJSONString(event.message.description, to: &line)
        line += ",\"label\":"
        Self.appendJSONString(label, to: &line)
        line += ",\"source\":"
        Self.appendJSONString(event.source, to: &line)
        if !metadata.isEmpty {
            line += ",\"metadata\":"
            Self.appendJSON(.dictionary(metadata), to: &line)
        }
        return line + "}\n"
    }

    private static func appendJSON(_ value: Logger.MetadataValue, to line: inout String) {
        switch value {
        case .string(let s): appendJSONString(s, to: &line)
        case .stringConvertible(let c): appendJSONString(c.description, to: &line)
        case .array(let values):
            line += "["
            for (i, v) in values.enumerated() {
                if i > 0 { line += "," }
                appendJSON(v, to: &line)
            }
            line += "]"
        case .dictionary(let d):
            line += "{"
            for (i, (key, v)) in d.sorted(by: { $0.key < $1.key }).enumerated() {
                if i > 0 { line += "," }
                appendJSONString(key, to: &line)
                line += ":"
                appendJSON(v, to: &line)
            }
            line += "}"
        }
    }

    /// RFC 8259 section 7: quote and backslash escaped, control characters (U+0000…U+001F) as the
    /// short escapes or \u00XX; everything else, non-ASCII included, as its UTF-8.
    static func appendJSONString(_ s: String, to line: inout String) {
        line += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": line += "\\\""
            case "\\": line += "\\\\"
            case "\n": line += "\\n"
            case "\r": line += "\\r"
            case "\t": line += "\\t"
            case "\u{08}": line += "\\b"
            case "\u{0C}": line += "\\f"
            case let c where c.value < 0x20:
                let hex = String(c.value, radix: 16)
                line += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: line.unicodeScalars.append(scalar)
            }
        }
        line += "\""
    }
}
