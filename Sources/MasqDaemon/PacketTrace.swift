import MasqCapture
import MasqCore
import Synchronization

/// A packet trace the admin asked for (`trace` on the control socket): the packets of the flows a
/// filter selects, each written as it arrived and again as masq let it go (unless dropped), to a pcap
/// file (raw IP link type, IPv4 and IPv6 alike, which Wireshark opens), for N packets or S seconds, whichever ends first.
///
/// Held in `SharedEngine`'s state. Under the engine lock a queue thread only copies a traced packet's
/// bytes into memory (`record`); after the batch, outside the engine lock, it writes what is waiting to
/// the file (`writePending`). The thread that sees the trace done takes it out of the state and closes
/// it, also outside the lock. Its counters are atomics and its buffers and writer have locks of their
/// own, so it is safe wherever a reference ends up.
public final class PacketTrace: Sendable {
    public let filter: FlowFilter
    public let path: String
    public let deadline: Int64
    private let remainingPackets: Atomic<Int>
    private let records = Atomic<Int>(0)

    /// Copies of traced packets waiting to be written, in the order they were recorded.
    private struct Pending {
        var bytes: [UInt8] = []
        var records: [(length: Int, time: Int64)] = []
    }
    private let pending = Mutex(Pending())

    /// The file, and the buffers last written (swapped with `pending`, so both keep their capacity).
    private struct Output: ~Copyable {
        let writer: CaptureWriter
        var spare = Pending()
    }
    private let output: Mutex<Output>

    public init(filter: FlowFilter, path: String, packets: Int, seconds: Int, now: Int64) throws(CaptureError) {
        self.filter = filter
        self.path = path
        remainingPackets = Atomic(packets)
        self.deadline = now &+ Int64(seconds) &* 1_000_000_000
        output = Mutex(Output(writer: try CaptureWriter(path: path, linkType: .raw)))
    }

    /// Traced packets still to record.
    public var remaining: Int { remainingPackets.load(ordering: .relaxed) }
    /// Records taken (each traced packet once as it arrived, once more as it left).
    public var written: Int { records.load(ordering: .relaxed) }
    public var isFinished: Bool { remaining <= 0 }

    /// Whether this packet, by its own addresses and ports, may belong to a traced flow.
    @inline(__always) public func selects(_ packet: PacketBytes) -> Bool {
        guard packet.count >= 20 else { return false }
        if packet.u8(0) >> 4 == 6 { return selects6(packet) }
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

    /// `selects` for an IPv6 packet: ports past its extension headers (none for a fragment or a bad chain).
    private func selects6(_ packet: PacketBytes) -> Bool {
        guard packet.count >= IPv6Header.length else { return false }
        let ip = IPv6Header(packet)
        var sourcePort: UInt16?
        var destinationPort: UInt16?
        var proto = ip.nextHeader
        if let upper = try? ip.upperLayer() {
            proto = upper.proto
            if (proto == .tcp || proto == .udp) && !upper.isFragment && packet.count >= upper.offset + 4 {
                sourcePort = packet.u16(upper.offset)
                destinationPort = packet.u16(upper.offset + 2)
            }
        }
        return filter.mayMatchPacket(source: .v6(ip.source), sourcePort: sourcePort, destination: .v6(ip.destination),
                                     destinationPort: destinationPort, proto: proto)
    }

    /// Copies the packet as it is now, to be written by `writePending`.
    public func record(_ packet: PacketBytes, at time: Int64) {
        // The bytes are only read, during the call, on the thread that holds the packet (its queue
        // thread, under the engine lock), so the view crosses into the buffer's lock as an address,
        // not as a (non-Sendable) view.
        let address = UInt(bitPattern: packet.base), count = packet.count
        pending.withLock { pending in
            pending.bytes.append(contentsOf: UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: address), count: count))
            pending.records.append((count, time))
        }
        records.add(1, ordering: .relaxed)
    }

    /// One traced packet done (its "before" and maybe "after" recorded).
    public func countPacket() {
        remainingPackets.subtract(1, ordering: .relaxed)
    }

    /// Writes the recorded packets to the file (outside the engine lock; the queue threads keep
    /// recording meanwhile into the other buffer).
    public func writePending() {
        output.withLock { output in
            pending.withLock { swap(&$0, &output.spare) }
            var offset = 0
            output.spare.bytes.withUnsafeMutableBytes { bytes in
                for (length, time) in output.spare.records {
                    output.writer.write(PacketBytes(base: bytes.baseAddress! + offset, count: length),
                                        wireLength: length, timestamp: time)
                    offset += length
                }
            }
            output.spare.bytes.removeAll(keepingCapacity: true)
            output.spare.records.removeAll(keepingCapacity: true)
        }
    }

    /// Writes what is waiting and flushes the file.
    public func flush() {
        writePending()
        output.withLock { try? $0.writer.flush() }
    }
}
