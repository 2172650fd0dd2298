import Foundation
import Logging
import MasqRules
@testable import MasqCore
@testable import MasqDaemon

/// A TCP segment with no payload and a valid IPv4 header checksum (computed with the engine's own
/// RFC 1071 code; the engine checks the IP header's, and updates the TCP one without checking it).
func tcpSegment(from source: String, _ sourcePort: UInt16, to destination: String, _ destinationPort: UInt16,
                flags: TCPFlags) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: 40)
    bytes[0] = 0x45
    bytes[3] = 40
    bytes[6] = 0x40  // DF
    bytes[8] = 64
    bytes[9] = IPProtocol.tcp.rawValue
    bytes.withUnsafeMutableBytes { raw in
        let packet = PacketBytes(raw)
        packet.setU32(IPv4Address(source)!.rawValue, 12)
        packet.setU32(IPv4Address(destination)!.rawValue, 16)
        packet.setU16(sourcePort, 20)
        packet.setU16(destinationPort, 22)
        packet.setU8(0x50, 32)  // data offset: 5 words
        packet.setU8(flags.rawValue, 33)
        packet.setU16(64240, 34)
        packet.setU16(InternetChecksum.compute(packet.slice(from: 0, count: 20)), 10)
    }
    return bytes
}

extension SharedEngine {
    /// Runs one packet through the engine under the lock, as a queue thread would.
    @discardableResult
    func process(_ bytes: [UInt8]) -> Verdict {
        var copy = bytes
        return copy.withUnsafeMutableBytes { raw in
            let packet = PacketBytes(raw)
            return withLock { $0.engine.process(packet, now: monotonicNanoseconds()) }
        }
    }
}

/// A control plane with no iptables and no queue: what masqadm and SIGHUP change, on a bare engine.
func controlPlane(_ rules: String, logger: Logger = Logger(label: "test")) throws -> ControlPlane {
    let configuration = try RulesFile.parse(rules)
    return ControlPlane(options: DaemonOptions(rulesPath: "/nonexistent"), shared: SharedEngine(Engine(configuration: configuration)),
                      configuration: configuration, iptables: nil, logger: logger)
}
