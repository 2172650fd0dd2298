import Foundation
import Logging
import MasqCapture
import Testing
@testable import MasqCore
@testable import MasqDaemon
@testable import MasqNFQueue

/// The queue thread's batch step without a queue: packets as the kernel would hand them over, through
/// `PacketLoop.process` (the engine under its lock, the verdict sink, the trace).
@Suite struct PacketLoopTests {
    @Test func aTraceRecordsEachPacketBeforeAndAfterNATAndEndsWithItsCount() throws {
        let core = try controlPlane("-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m\n")
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("masq-trace-\(UUID().uuidString).pcap").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try core.startTrace(filter: try FlowFilter("client=198.18.1.10"), packets: 2, seconds: 60, path: path)

        // A traced client's SYN, another client's SYN (not traced), the traced client's second SYN.
        var bytes = tcpSegment(from: "198.18.1.10", 40000, to: "198.18.0.1", 80, flags: .syn)
            + tcpSegment(from: "198.18.1.11", 40000, to: "198.18.0.1", 80, flags: .syn)
            + tcpSegment(from: "198.18.1.10", 40001, to: "198.18.0.1", 80, flags: .syn)
        let loop = PacketLoop(logger: Logger(label: "test"))
        var sink = QueueVerdicts(socket: VerdictSocket(fd: -1, queue: 0), logger: nil)
        var failure: NFQError?
        bytes.withUnsafeMutableBytes { raw in
            let packets = (0..<3).map { i in
                QueuedPacket(id: UInt32(i + 1), payload: PacketBytes(base: raw.baseAddress! + 40 * i, count: 40),
                             originalLength: 40, skbInfo: 0)
            }
            packets.withUnsafeBufferPointer { packets in
                do throws(NFQError) {
                    _ = try loop.process(packets, into: &sink, core.shared)
                } catch {
                    failure = error
                }
            }
        }
        #expect(failure == nil)
        #expect(sink.sendError == nil)
        // Two traced packets were asked for: the trace ended with the batch, and is closed.
        #expect(core.shared.withLock { $0.trace == nil })

        var reader = try CaptureReader(path: path)
        var destinations: [IPv4Address] = []
        while let record = try reader.next() { destinations.append(IPv4Header(record.bytes).destination) }
        let vip = IPv4Address("198.18.0.1")!, server = IPv4Address("198.19.0.201")!
        #expect(destinations == [vip, server, vip, server])
        #expect(core.state().connections == 3)
    }
}
