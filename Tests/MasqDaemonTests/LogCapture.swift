import Logging
import Synchronization

/// What a test's logger logged: level, message and metadata, in order.
final class LogCapture: Sendable {
    let lines = Mutex<[(Logger.Level, String, Logger.Metadata)]>([])

    /// A logger whose every line lands in `lines`.
    func logger(label: String = "test") -> Logger {
        Logger(label: label) { _ in Handler(capture: self) }
    }

    private struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            capture.lines.withLock { $0.append((event.level, event.message.description, event.metadata ?? [:])) }
        }
    }
}
