import Foundation
import MasqCapture
import MasqRules
import Testing
@testable import MasqCore

/// The property behind the one driver path: running a capture through `Engine.process(batch:into:)`
/// gives what running it one packet at a time through `process` gives (same verdicts, same bytes out,
/// same ICMP answers, same flow table), whatever the batch size, over every fixture in fixtures/.
@Suite struct BatchProcessorTests {
    /// A capture's records, each in its own writable buffer, and what running them produced.
    final class Capture {
        var frames: [UnsafeMutableRawBufferPointer] = []
        var wireLengths: [Int] = []
        var timestamps: [Int64] = []
        var ipOffsets: [Int?] = []

        init(path: String) throws {
            var reader = try CaptureReader(path: path)
            while let record = try reader.next() {
                let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: record.bytes.count, alignment: 16)
                frame.copyMemory(from: UnsafeRawBufferPointer(start: record.bytes.base, count: record.bytes.count))
                frames.append(frame)
                wireLengths.append(record.wireLength)
                timestamps.append(record.timestamp)
                ipOffsets.append(reader.linkType.ipOffset(record.bytes))
            }
        }

        deinit { frames.forEach { $0.deallocate() } }

        func packet(_ i: Int) -> PacketBytes {
            PacketBytes(frames[i]).slice(from: ipOffsets[i] ?? frames[i].count)
        }
        func meta(_ i: Int) -> PacketMeta { PacketMeta(truncated: wireLengths[i] > frames[i].count) }
    }

    /// Records `range` of a capture as a batch.
    struct Slice: PacketBatchSource {
        let capture: Capture
        let range: Range<Int>
        var count: Int { range.count }
        func packet(_ index: Int) -> PacketBytes { capture.packet(range.lowerBound + index) }
        func entersEngine(_ index: Int) -> Bool { capture.ipOffsets[range.lowerBound + index] != nil }
        func meta(_ index: Int) -> PacketMeta { capture.meta(range.lowerBound + index) }
        func time(_ index: Int) -> Int64 { capture.timestamps[range.lowerBound + index] }
    }

    /// What one packet produced: its verdict, its bytes after the engine, the ICMP answers it caused.
    struct Outcome: Equatable {
        var verdict: Verdict?
        var bytes: [UInt8]
        var answers: [[UInt8]]
    }

    struct Collector: VerdictSink {
        let engine: Engine
        var outcomes: [Outcome] = []
        mutating func take(_ verdict: Verdict?, of index: Int, _ packet: PacketBytes) -> Bool {
            outcomes.append(Outcome(verdict: verdict, bytes: packet.bytes, answers: answers(engine)))
            return true
        }
    }

    static func answers(_ engine: Engine) -> [[UInt8]] {
        var out: [[UInt8]] = []
        engine.unreachable.drain { bytes, _ in out.append(Array(bytes)) }
        return out
    }

    static func engine(_ name: String) throws -> Engine {
        let dir = ReplayFixtureTests.root.appendingPathComponent(name)
        let rules = try String(contentsOf: dir.appendingPathComponent("rules"), encoding: .utf8)
        return Engine(configuration: try RulesFile.parse(rules, file: "\(name)/rules"))
    }

    static func input(_ name: String) -> String {
        let dir = ReplayFixtureTests.root.appendingPathComponent(name)
        return ["input.pcap", "input.pcapng"].map { dir.appendingPathComponent($0).path }
            .first { FileManager.default.fileExists(atPath: $0) }!
    }

    static func oneByOne(_ name: String) throws -> ([Outcome], Engine) {
        let engine = try engine(name)
        let capture = try Capture(path: input(name))
        var outcomes: [Outcome] = []
        for i in capture.frames.indices {
            var verdict: Verdict?
            if capture.ipOffsets[i] != nil {
                verdict = engine.process(capture.packet(i), meta: capture.meta(i), now: capture.timestamps[i])
            } else {
                engine.advanceClock(to: capture.timestamps[i])
            }
            outcomes.append(Outcome(verdict: verdict, bytes: capture.packet(i).bytes, answers: answers(engine)))
        }
        return (outcomes, engine)
    }

    static func batched(_ name: String, size: Int) throws -> ([Outcome], Engine) {
        let engine = try engine(name)
        let capture = try Capture(path: input(name))
        var sink = Collector(engine: engine)
        for start in stride(from: 0, to: capture.frames.count, by: size) {
            let slice = Slice(capture: capture, range: start..<min(start + size, capture.frames.count))
            #expect(engine.process(batch: slice, into: &sink) == slice.count)
        }
        return (sink.outcomes, engine)
    }

    @Test(arguments: ReplayFixtureTests.names, [1, 3, Engine.batchSize])
    func batchedEqualsOneByOne(_ name: String, _ size: Int) throws {
        let (expected, reference) = try Self.oneByOne(name)
        let (got, engine) = try Self.batched(name, size: size)
        #expect(got.count == expected.count)
        for (i, (g, e)) in zip(got, expected).enumerated() where g != e {
            Issue.record("\(name), batches of \(size): packet \(i + 1) differs: \(g.verdict.map { "\($0)" } ?? "-") vs \(e.verdict.map { "\($0)" } ?? "-")")
        }
        #expect(engine.counters == reference.counters)
        #expect(engine.flowRecords().map(\.jsonLine) == reference.flowRecords().map(\.jsonLine))
    }

    /// A sink that says stop ends the batch there: the packets after it are not processed.
    @Test func aSinkCanStopTheBatch() throws {
        struct StopAfterTwo: VerdictSink {
            var seen = 0
            mutating func take(_ verdict: Verdict?, of index: Int, _ packet: PacketBytes) -> Bool {
                seen += 1
                return seen < 2
            }
        }
        let name = try #require(ReplayFixtureTests.names.first)
        let engine = try Self.engine(name)
        let capture = try Capture(path: Self.input(name))
        try #require(capture.frames.count > 2)
        var sink = StopAfterTwo()
        let slice = Slice(capture: capture, range: 0..<capture.frames.count)
        #expect(engine.process(batch: slice, into: &sink) == 2)
        #expect(sink.seen == 2)
    }
}
