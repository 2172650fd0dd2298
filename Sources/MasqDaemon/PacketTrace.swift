import MasqCapture
import MasqCore

/// A packet trace the admin asked for (`trace` on the control socket): the packets of the flows a
/// filter selects, each written as it arrived and again as masq let it go (unless dropped), to a pcap
/// file (raw IPv4 link type, which Wireshark opens), for N packets or S seconds, whichever ends first.
/// Lives in `SharedEngine` and is touched only under its lock.
public final class PacketTrace {
    public let filter: FlowFilter
    public let path: String
    public private(set) var remaining: Int
    public let deadline: Int64
    public private(set) var written = 0
    private let writer: CaptureWriter

    public init(filter: FlowFilter, path: String, packets: Int, seconds: Int, now: Int64) throws(CaptureError) {
        self.filter = filter
        self.path = path
        self.remaining = packets
        self.deadline = now &+ Int64(seconds) &* 1_000_000_000
        writer = try CaptureWriter(path: path, linkType: .raw)
    }

    public var isFinished: Bool { remaining <= 0 }

    /// Whether this packet, by its own addresses and ports, may belong to a traced flow.
    @inline(__always) public func selects(_ packet: PacketBytes) -> Bool {
        guard packet.count >= 20 else { return false }
        let ip = IPv4Header(packet)
        guard ip.version == 4, ip.headerLength >= 20, ip.headerLength <= packet.count else { return false }
        var sourcePort: UInt16?
        var destinationPort: UInt16?
        let proto = ip.proto
        if (proto == .tcp || proto == .udp) && !ip.isFragment && packet.count >= ip.headerLength + 4 {
            sourcePort = packet.u16(ip.headerLength)
            destinationPort = packet.u16(ip.headerLength + 2)
        }
        return filter.mayMatchPacket(source: ip.source, sourcePort: sourcePort, destination: ip.destination,
                                     destinationPort: destinationPort, proto: proto)
    }

    public func record(_ packet: PacketBytes, at time: Int64) {
        writer.write(packet, wireLength: packet.count, timestamp: time)
        written += 1
    }

    /// One traced packet done (its "before" and maybe "after" written).
    public func countPacket() {
        remaining -= 1
    }

    public func flush() { try? writer.flush() }
}
