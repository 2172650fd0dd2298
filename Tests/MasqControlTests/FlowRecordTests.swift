import Foundation
import MasqCore
import Testing

/// The one flow record: its JSON-lines bytes (the `masq replay --flows` schema, which golden files and
/// scripts read) and its Codable form (the control socket's `flows` answer) are one schema.
@Suite struct FlowRecordTests {
    static let synRecv = FlowRecord(
        Connection(proto: .tcp, state: .synRecv, isTemplate: false, countedActive: false,
                   client: IPv4Address(198, 18, 0, 12), clientPort: 40000,
                   virtualAddress: IPv4Address(198, 18, 0, 1), virtualPort: 80,
                   server: IPv4Address(198, 19, 0, 201), serverPort: 8080, serviceID: 0, destinationID: 0,
                   controller: ConnectionTable.noSlot, timeout: 60, expires: 65_000_000_000,
                   packetsIn: 1, packetsOut: 0, bytesIn: 60, bytesOut: 0),
        now: 5_000_000_000)
    static let template = FlowRecord(
        proto: .udp, client: IPv4Address(198, 18, 0, 13), clientPort: 0, virtualAddress: IPv4Address(198, 18, 0, 1),
        virtualPort: 53, server: IPv4Address(198, 19, 0, 202), serverPort: 53, state: .none, expiresIn: 359,
        isTemplate: true, packetsIn: 12, packetsOut: 11, bytesIn: 1_234_567_890_123, bytesOut: 98)
    static let established = FlowRecord(
        proto: .tcp, client: IPv4Address(198, 18, 0, 14), clientPort: 65535, virtualAddress: IPv4Address(198, 18, 0, 2),
        virtualPort: 443, server: IPv4Address(198, 19, 0, 203), serverPort: 443, state: .established, expiresIn: 0,
        isTemplate: false, packetsIn: UInt64.max, packetsOut: 0, bytesIn: 0, bytesOut: UInt64.max)

    /// The bytes, keys in the schema's order, exactly as the hand-written line has always been.
    @Test func jsonLinesAreTheGoldenBytes() {
        #expect(Self.synRecv.jsonLine == #"{"proto":"tcp","client":"198.18.0.12:40000","vip":"198.18.0.1:80","real_server":"198.19.0.201:8080","state":"SYN_RECV","expires":60,"template":false,"packets_in":1,"packets_out":0,"bytes_in":60,"bytes_out":0}"#)
        #expect(Self.template.jsonLine == #"{"proto":"udp","client":"198.18.0.13:0","vip":"198.18.0.1:53","real_server":"198.19.0.202:53","state":"NONE","expires":359,"template":true,"packets_in":12,"packets_out":11,"bytes_in":1234567890123,"bytes_out":98}"#)
        #expect(FlowRecord.jsonLines([Self.synRecv, Self.template]) == Self.synRecv.jsonLine + "\n" + Self.template.jsonLine + "\n")
        #expect(FlowRecord.jsonLines([]) == "")
    }

    /// `jsonLine` writes the keys `CodingKeys` lists, in that order, and no others.
    @Test func jsonLineKeysAreTheCodingKeysInOrder() throws {
        let line = Self.established.jsonLine
        var keys: [String] = []
        var rest = Substring(line)
        while let open = rest.firstIndex(of: "\"") {
            let after = rest[rest.index(after: open)...]
            guard let close = after.firstIndex(of: "\"") else { break }
            if after[after.index(after: close)...].first == ":" { keys.append(String(after[..<close])) }
            rest = after[after.index(after: close)...]
        }
        #expect(keys == FlowRecord.CodingKeys.allCases.map(\.stringValue))
        #expect(keys == ["proto", "client", "vip", "real_server", "state", "expires", "template", "packets_in",
                         "packets_out", "bytes_in", "bytes_out"])
    }

    /// A line decodes to its record, and JSONEncoder's form of a record (any key order) is the same record.
    @Test(arguments: [synRecv, template, established]) func codableRoundTrip(_ record: FlowRecord) throws {
        let decoded = try JSONDecoder().decode(FlowRecord.self, from: Data(record.jsonLine.utf8))
        #expect(decoded == record)
        let encoded = try JSONEncoder().encode(record)
        #expect(try JSONDecoder().decode(FlowRecord.self, from: encoded) == record)
    }

    @Test func refusesWhatIsNotARecord() {
        let good = Self.synRecv.jsonLine
        for bad in [
            good.replacingOccurrences(of: "\"tcp\"", with: "\"sctp\""),
            good.replacingOccurrences(of: "198.18.0.12:40000", with: "198.18.0.12"),
            good.replacingOccurrences(of: "198.18.0.12:40000", with: "198.18.0.300:1"),
            good.replacingOccurrences(of: "SYN_RECV", with: "SYN_RCVD"),
            good.replacingOccurrences(of: ",\"bytes_out\":0", with: ""),
        ] {
            #expect(throws: DecodingError.self) { try JSONDecoder().decode(FlowRecord.self, from: Data(bad.utf8)) }
        }
    }
}
