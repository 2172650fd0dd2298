import Foundation
import Logging
import MasqRules
import Synchronization
import Testing
@testable import MasqCore
@testable import MasqDaemon

/// What `masq run` says about its table at start, and the figures it hands the metrics: private
/// memory, a new state file, an adopted one, one that could not be adopted (with the reason).
@Suite struct TableLogTests {
    let configuration = try! RulesFile.parse("-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m\n")

    /// Logs `engine`'s table; returns the figures and the one line logged.
    func logged(_ engine: Engine) -> (TableFileFigures, (Logger.Level, String, Logger.Metadata)?) {
        let captured = LogCapture()
        let figures = logTable(engine, logger: captured.logger())
        return (figures, captured.lines.withLock { $0.first })
    }

    @Test func privateMemorySaysARestartLosesIt() {
        let (figures, line) = logged(Engine(configuration: configuration, capacity: 1024))
        #expect(figures.path == nil)
        #expect(line?.0 == .info && line?.1.contains("private memory") == true)
    }

    /// Created, then adopted after a clean exit (generation 2, the flow counted, the gap armed from
    /// the previous masq's exit), then replaced when the file is garbage.
    @Test func createdAdoptedAndReplaced() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("masq-tablelog-\(UUID().uuidString).table").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        var lastBatch: Int64 = 0
        do {
            let engine = Engine(configuration: configuration, memory: try TableMemory.shared(path: path, capacity: 1024))
            let (figures, line) = logged(engine)
            #expect(line?.0 == .info && line?.1 == "connection table created")
            #expect(figures.path == path && figures.generation == 1 && figures.awaitingFirstPacketSince == nil)
            let shared = SharedEngine(engine)
            shared.process(tcpSegment(from: "198.18.1.10", 40000, to: "198.18.0.1", 80, flags: .syn))
            shared.withLock { $0.engine.noteActivity() }
            lastBatch = shared.withLock { $0.engine.now }
            finishTable(shared, logger: Logger(label: "test"))
        }
        do {
            let engine = Engine(configuration: configuration, memory: try TableMemory.shared(path: path, capacity: 1024))
            let (figures, line) = logged(engine)
            #expect(line?.0 == .notice && line?.1 == "connection table adopted")
            #expect(line?.2["clean"] == "true" && line?.2["generation"] == "2" && line?.2["connections"] == "1")
            #expect(figures.generation == 2 && figures.adoptedConnections == 1)
            // A clean exit records its own time as the last activity: the gap is measured from the exit.
            #expect(lastBatch > 0 && figures.awaitingFirstPacketSince.map { $0 >= lastBatch } == true)
        }
        try Data((0..<8192).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: path))
        let (figures, line) = logged(Engine(configuration: configuration, memory: try TableMemory.shared(path: path, capacity: 1024)))
        #expect(line?.0 == .warning && line?.1.hasPrefix("connection table created: the state file's table could not be adopted (") == true)
        #expect(figures.generation == 1 && figures.adoptedConnections == 0)
    }
}
