import Foundation
import MasqCapture
import MasqRules
import Testing
@testable import MasqCore

/// Timestamps from 2038 on through `masq replay`: pcap's seconds are 32-bit unsigned (libpcap hands
/// them over sign-extended), pcapng's 64-bit; what pcap cannot hold is an error naming the packet.
@Suite struct ReplayTimestampTests {
    static let rules = """
        -A -u 198.18.0.1:53 -s rr
        -a -u 198.18.0.1:53 -r 198.19.0.201:53 -m
        """
    /// 2040-01-01T00:00:00Z, past 2^31 seconds.
    static let y2040: UInt32 = 2_208_988_800

    static func packet(_ n: UInt8) -> [UInt8] {
        PacketBuilder(source: addr("198.18.0.12"), destination: addr("198.18.0.1")).udp(5000 + UInt16(n), 53, payload: [n])
    }

    static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8)] }
    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(v >> (8 * $0) & 0xff) } }
    static func readLE32(_ b: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[at + $1]) << (8 * $1) } }

    /// A nanosecond pcap (magic a1b23c4d), LINKTYPE_RAW, one record per (seconds, nanoseconds, bytes).
    static func pcap(_ records: [(UInt32, UInt32, [UInt8])]) -> [UInt8] {
        var out = le32(0xa1b2_3c4d) + le16(2) + le16(4) + le32(0) + le32(0) + le32(65535) + le32(101)
        for (s, ns, data) in records {
            out += le32(s) + le32(ns) + le32(UInt32(data.count)) + le32(UInt32(data.count)) + data
        }
        return out
    }

    /// A pcapng: section header, one LINKTYPE_RAW interface (microsecond resolution, the default), and an
    /// enhanced packet block per (microseconds since 1970, bytes).
    static func pcapng(_ records: [(UInt64, [UInt8])]) -> [UInt8] {
        var out = le32(0x0a0d_0d0a) + le32(28) + le32(0x1a2b_3c4d) + le16(1) + le16(0) + [UInt8](repeating: 0xff, count: 8)
            + le32(28)
        out += le32(1) + le32(20) + le16(101) + le16(0) + le32(65535) + le32(20)
        for (micros, data) in records {
            let padded = data + [UInt8](repeating: 0, count: (4 - data.count % 4) % 4)
            let length = UInt32(32 + padded.count)
            out += le32(6) + le32(length) + le32(0) + le32(UInt32(micros >> 32)) + le32(UInt32(micros & 0xffff_ffff))
            out += le32(UInt32(data.count)) + le32(UInt32(data.count)) + padded + le32(length)
        }
        return out
    }

    static func temporary(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("masq-ts-\(getpid())-\(UUID().uuidString)-\(name)").path
    }

    static func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = temporary(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func after2038WithAFractionStaysPositive() throws {
        let input = try Self.write(Self.pcap([
            (Self.y2040, 500_000_000, Self.packet(1)),
            (Self.y2040 + 1, 250_000_000, Self.packet(2)),
            (UInt32.max, 999_999_999, Self.packet(3)),  // the last nanosecond pcap holds: 2106-02-07T06:28:15.999999999Z
        ]), "in.pcap")
        let output = Self.temporary("out.pcap")
        defer {
            try? FileManager.default.removeItem(atPath: input)
            try? FileManager.default.removeItem(atPath: output)
        }
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        let summary = try replay(engine, input: input, output: output, recordVerdicts: true)
        #expect(summary.written == 3 && summary.verdicts == [.rewritten(.inbound), .rewritten(.inbound), .rewritten(.inbound)])

        // The record headers as written: unsigned seconds, a fraction in 0..<1e9.
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: output)))
        #expect(Self.readLE32(bytes, 0) == 0xa1b2_3c4d)  // nanosecond pcap
        var offset = 24
        var headers: [(UInt32, UInt32)] = []
        while offset + 16 <= bytes.count {
            headers.append((Self.readLE32(bytes, offset), Self.readLE32(bytes, offset + 4)))
            offset += 16 + Int(Self.readLE32(bytes, offset + 8))
        }
        #expect(headers.map(\.0) == [Self.y2040, Self.y2040 + 1, UInt32.max])
        #expect(headers.map(\.1) == [500_000_000, 250_000_000, 999_999_999])

        // And read back as the same instants.
        var reader = try CaptureReader(path: output)
        var times: [Int64] = []
        while let r = try reader.next() { times.append(r.timestamp) }
        #expect(times == [2_208_988_800_500_000_000, 2_208_988_801_250_000_000, 4_294_967_295_999_999_999])
        #expect(PcapTime.utc(nanosecondsSinceEpoch: times[0]) == "2040-01-01T00:00:00.5Z")
    }

    /// A capture that breaks off mid-record: every whole record before the break is replayed and
    /// written (replay reads in batches; the batch in hand when the read fails still runs), then the error.
    @Test func aTruncatedCaptureWritesEveryWholeRecordFirst() throws {
        let whole = Self.pcap([(1, 0, Self.packet(1)), (2, 0, Self.packet(2)), (3, 0, Self.packet(3))])
        let input = try Self.write(Array(whole.dropLast(5)), "cut.pcap")
        let output = Self.temporary("out.pcap")
        defer {
            try? FileManager.default.removeItem(atPath: input)
            try? FileManager.default.removeItem(atPath: output)
        }
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        #expect(throws: CaptureError.self) { try replay(engine, input: input, output: output) }
        var reader = try CaptureReader(path: output)
        var count = 0
        while try reader.next() != nil { count += 1 }
        #expect(count == 2)
    }

    @Test func pcapngBeyondPcapsRangeIsAnErrorNamingThePacket() throws {
        let beyond: UInt64 = (1 << 32) + 5  // 2106-02-07T06:28:21Z
        let input = try Self.write(Self.pcapng([
            (UInt64(Self.y2040) * 1_000_000 + 500_000, Self.packet(1)),
            (beyond * 1_000_000 + 500_000, Self.packet(2)),
        ]), "in.pcapng")
        let output = Self.temporary("out.pcap")
        defer {
            try? FileManager.default.removeItem(atPath: input)
            try? FileManager.default.removeItem(atPath: output)
        }
        let engine = Engine(configuration: try RulesFile.parse(Self.rules))
        #expect {
            _ = try replay(engine, input: input, output: output)
        } throws: { error in
            guard case .unwritableTimestamp(let path, let packet, let timestamp) = error as? CaptureError else { return false }
            return path == output && packet == "packet 2 of \(input)" && timestamp == Int64(beyond) * 1_000_000_000 + 500_000_000
                && (error as! CaptureError).description == "\(output): cannot write packet 2 of \(input): its timestamp "
                + "2106-02-07T06:28:21.5Z is outside what a pcap record holds (32-bit unsigned seconds: "
                + "1970-01-01T00:00:00Z to 2106-02-07T06:28:15.999999999Z)"
        }
        // Without an output the same capture replays: the engine's clock holds it.
        let summary = try replay(Engine(configuration: try RulesFile.parse(Self.rules)), input: input, output: nil)
        #expect(summary.records == 2)
    }

    @Test func beyondMasqsClockIsAReadErrorNamingThePacket() throws {
        // 10^10 s (year 2286) is more nanoseconds than an Int64 holds.
        let input = try Self.write(Self.pcapng([(10_000_000_000 * 1_000_000, Self.packet(1))]), "far.pcapng")
        defer { try? FileManager.default.removeItem(atPath: input) }
        #expect {
            _ = try replay(Engine(configuration: try RulesFile.parse(Self.rules)), input: input, output: nil)
        } throws: { error in
            guard case .unreadableTimestamp(let path, 1, 10_000_000_000, 0) = error as? CaptureError else { return false }
            return path == input && "\(error)".contains("2286-11-20T17:46:40Z is beyond masq's clock")
        }
    }

    @Test func floorDivisionAndUTC() {
        #expect(PcapTime.split(2_208_988_800_500_000_000) == (2_208_988_800, 500_000_000))
        #expect(PcapTime.split(-1) == (-1, 999_999_999))  // truncation would give (0, -1)
        #expect(PcapTime.split(-1_500_000_000) == (-2, 500_000_000))
        #expect(PcapTime.pcapFields(-1) == nil)  // before 1970
        #expect(PcapTime.pcapFields(Int64(UInt32.max) * 1_000_000_000 + 999_999_999)! == (UInt32.max, 999_999_999))
        #expect(PcapTime.pcapFields((Int64(UInt32.max) + 1) * 1_000_000_000) == nil)
        // libpcap's sign-extended 32-bit seconds are pcap's unsigned ones.
        #expect(PcapTime.fileSeconds(Int64(Int32(bitPattern: Self.y2040))) == Int64(Self.y2040))
        #expect(PcapTime.fileSeconds(5_000_000_000) == 5_000_000_000)  // pcapng's wide seconds stay
        #expect(PcapTime.nanoseconds(seconds: 9_300_000_000, fraction: 0) == nil)
        #expect(PcapTime.utc(seconds: 0, nanoseconds: 0) == "1970-01-01T00:00:00Z")
        #expect(PcapTime.utc(seconds: 951_782_400, nanoseconds: 1) == "2000-02-29T00:00:00.000000001Z")
        #expect(PcapTime.utc(nanosecondsSinceEpoch: -500_000_000) == "1969-12-31T23:59:59.5Z")
        #expect(PcapTime.utc(nanosecondsSinceEpoch: .max) == "2262-04-11T23:47:16.854775807Z")
    }
}
