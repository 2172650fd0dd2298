import Foundation
import MasqCapture
import Testing
@testable import MasqCore

/// `masq replay --fwmark`: a capture holds no mark, so the option gives every packet one, and a
/// firewall-mark service takes the flows it would take with the admin's MARK rule in place.
@Suite struct ReplayFirewallMarkTests {
    @Test(arguments: [(UInt32(0), UInt64(0)), (UInt32(1), UInt64(3)), (UInt32(2), UInt64(0))])
    func replayWithAMark(mark: UInt32, rewritten: UInt64) throws {
        let b = PacketBuilder(source: addr("198.18.0.12"), destination: addr("198.18.0.1"))
        let packets = [b.tcp(40000, 443, flags: .syn), b.udp(40001, 53, payload: [1]),
                       b.tcp(40002, 80, flags: .syn)]
        let input = try ReplayTimestampTests.write(
            ReplayTimestampTests.pcap(packets.enumerated().map { (UInt32($0.offset + 1), 0, $0.element) }), "fwmark.pcap")
        let output = ReplayTimestampTests.temporary("fwmark-out.pcap")
        defer {
            try? FileManager.default.removeItem(atPath: input)
            try? FileManager.default.removeItem(atPath: output)
        }
        let configuration = Configuration(services: [
            ServiceSpec(key: ServiceKey(fwmark: 1), scheduler: "rr",
                        realServers: [RealServerSpec(address: addr("198.19.0.201"), port: 0)]),
        ])
        let engine = Engine(configuration: configuration, capacity: 64)
        let summary = try replay(engine, input: input, output: output, fwmark: mark)
        #expect(summary.engine.rewrittenInbound == rewritten)
        var reader = try CaptureReader(path: output)
        var count = 0
        while try reader.next() != nil { count += 1 }
        #expect(count == 3)  // rewritten or untouched, every one accepted
        #expect(engine.table.connectionCount == Int(rewritten))
    }
}
