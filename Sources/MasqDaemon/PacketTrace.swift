import MasqCapture
import MasqCore
import Synchronization

/// A packet trace the admin asked for (`trace` on the control socket): the packets of the flows a
/// filter selects, each written as it arrived and again as masq let it go (unless dropped), to a pcap
/// file (raw IPv4 link type, which Wireshark opens), for N packets or S seconds, whichever ends first.
/// Held in `SharedEngine`'s state: the queue threads record into it under the engine lock; the thread
/// that sees it done takes it out of the state and closes it outside the lock. Its own counters are
/// atomics and its writer has a lock of its own, so it is safe wherever a reference ends up.
public final class PacketTrace: Sendable {
    public let filter: FlowFilter
    public let path: String
    public let deadline: Int64
    private let remainingPackets: Atomic<Int>
    private let records = Atomic<Int>(0)
    private let writer: Mutex<CaptureWriter>

    public init(filter: FlowFilter, path: String, packets: Int, seconds: Int, now: Int64) throws(CaptureError) {
        self.filter = filter
        self.path = path
        remainingPackets = Atomic(packets)
        self.deadline = now &+ Int64(seconds) &* 1_000_000_000
        writer = Mutex(try CaptureWriter(path: path, linkType: .raw))
    }

    /// Traced packets still to record.
    public var remaining: Int { remainingPackets.load(ordering: .relaxed) }
    /// Records written (each traced packet once as it arrived, once more as it left).
    public var written: Int { records.load(ordering: .relaxed) }
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
        // The bytes are only read, during the call, on the thread that holds the packet (its queue
        // thread, under the engine lock); nothing of them stays with the writer, so the view crosses
        // into the writer's lock as an address, not as a (non-Sendable) view.
        let address = UInt(bitPattern: packet.base), count = packet.count
        writer.withLock { writer in
            let bytes = PacketBytes(base: UnsafeMutableRawPointer(bitPattern: address)!, count: count)
            _ = writer.write(bytes, wireLength: count, timestamp: time)
        }
        records.add(1, ordering: .relaxed)
    }

    /// One traced packet done (its "before" and maybe "after" written).
    public func countPacket() {
        remainingPackets.subtract(1, ordering: .relaxed)
    }

    public func flush() { writer.withLock { try? $0.flush() } }
}
