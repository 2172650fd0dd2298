import CPcap
import MasqCore

/// Why a capture file could not be read or written.
public enum CaptureError: Error, CustomStringConvertible {
    case open(path: String, reason: String)
    case unsupportedLinkType(path: String, linkType: Int32)
    case read(path: String, reason: String)
    case write(path: String, reason: String)

    public var description: String {
        switch self {
        case .open(let path, let reason): "\(path): cannot open: \(reason)"
        case .unsupportedLinkType(let path, let linkType):
            "\(path): link type \(linkType) is not supported (Ethernet, Linux cooked SLL/SLL2 and raw IP are)"
        case .read(let path, let reason): "\(path): read error: \(reason)"
        case .write(let path, let reason): "\(path): write error: \(reason)"
        }
    }
}

/// The capture link types masq reads, as libpcap's DLT values.
public struct LinkType: RawRepresentable, Hashable, Sendable {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let ethernet = LinkType(rawValue: 1)       // DLT_EN10MB
    public static let raw = LinkType(rawValue: 12)           // DLT_RAW (LINKTYPE_RAW 101 in files)
    public static let linuxSLL = LinkType(rawValue: 113)     // DLT_LINUX_SLL
    public static let ipv4 = LinkType(rawValue: 228)         // DLT_IPV4
    public static let linuxSLL2 = LinkType(rawValue: 276)    // DLT_LINUX_SLL2

    public var isSupported: Bool { [.ethernet, .raw, .linuxSLL, .ipv4, .linuxSLL2].contains(self) }

    /// Where the IPv4 header starts in a frame of this link type, or nil when the frame carries
    /// something else (ARP, IPv6, …) or is too short to tell.
    public func ipv4Offset(_ frame: PacketBytes) -> Int? {
        switch self {
        case .ethernet:
            var offset = 12
            guard frame.count >= offset + 2 else { return nil }
            var etherType = frame.u16(offset)
            // 802.1Q / 802.1ad tags: skip each 4-byte tag.
            while etherType == 0x8100 || etherType == 0x88a8 {
                offset += 4
                guard frame.count >= offset + 2 else { return nil }
                etherType = frame.u16(offset)
            }
            return etherType == 0x0800 ? offset + 2 : nil
        case .linuxSLL:
            guard frame.count >= 16 else { return nil }
            return frame.u16(14) == 0x0800 ? 16 : nil
        case .linuxSLL2:
            guard frame.count >= 20 else { return nil }
            return frame.u16(0) == 0x0800 ? 20 : nil
        case .raw, .ipv4:
            guard frame.count >= 1 else { return nil }
            return frame.u8(0) >> 4 == 4 ? 0 : nil
        default:
            return nil
        }
    }
}

/// One record of a capture: bytes (in a buffer the reader reuses), lengths and timestamp.
public struct CaptureRecord {
    /// The captured bytes, writable in place until the next `next()`.
    public var bytes: PacketBytes
    /// The packet's length on the wire; larger than `bytes.count` when the capture cut it short.
    public var wireLength: Int
    /// Nanoseconds since the epoch.
    public var timestamp: Int64
}

/// A pcap or pcapng file open for reading (libpcap reads both), with nanosecond timestamps.
public struct CaptureReader: ~Copyable {
    private let handle: OpaquePointer
    public let path: String
    public let linkType: LinkType
    private let scratch: UnsafeMutableRawPointer
    private let scratchSize = 262_144

    public init(path: String) throws(CaptureError) {
        var errorBuffer = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        guard let handle = pcap_open_offline_with_tstamp_precision(
            path, UInt32(PCAP_TSTAMP_PRECISION_NANO), &errorBuffer) else {
            throw .open(path: path, reason: String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        let linkType = LinkType(rawValue: pcap_datalink(handle))
        guard linkType.isSupported else {
            pcap_close(handle)
            throw .unsupportedLinkType(path: path, linkType: linkType.rawValue)
        }
        self.handle = handle
        self.path = path
        self.linkType = linkType
        scratch = UnsafeMutableRawPointer.allocate(byteCount: scratchSize, alignment: 16)
    }

    deinit {
        pcap_close(handle)
        scratch.deallocate()
    }

    /// The next record, copied into a reusable writable buffer; nil at the end of the file.
    public mutating func next() throws(CaptureError) -> CaptureRecord? {
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        switch pcap_next_ex(handle, &header, &data) {
        case 1:
            guard let header, let data else { return nil }
            let count = min(Int(header.pointee.caplen), scratchSize)
            scratch.copyMemory(from: data, byteCount: count)
            let ts = header.pointee.ts
            return CaptureRecord(bytes: PacketBytes(base: scratch, count: count),
                                 wireLength: Int(header.pointee.len),
                                 timestamp: Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_usec))
        case PCAP_ERROR_BREAK:
            return nil
        default:
            throw .read(path: path, reason: String(cString: pcap_geterr(handle)))
        }
    }
}

/// A pcap file open for writing, nanosecond timestamps, the given link type.
public struct CaptureWriter: ~Copyable {
    private let handle: OpaquePointer
    private let dumper: OpaquePointer
    public let path: String

    public init(path: String, linkType: LinkType, snapLength: Int32 = 262_144) throws(CaptureError) {
        guard let handle = pcap_open_dead_with_tstamp_precision(linkType.rawValue, snapLength,
                                                                UInt32(PCAP_TSTAMP_PRECISION_NANO)) else {
            throw .open(path: path, reason: "libpcap could not create a writer")
        }
        guard let dumper = pcap_dump_open(handle, path) else {
            let reason = String(cString: pcap_geterr(handle))
            pcap_close(handle)
            throw .open(path: path, reason: reason)
        }
        self.handle = handle
        self.dumper = dumper
        self.path = path
    }

    deinit {
        pcap_dump_close(dumper)
        pcap_close(handle)
    }

    public func write(_ bytes: PacketBytes, wireLength: Int, timestamp: Int64) {
        var header = pcap_pkthdr()
        header.ts.tv_sec = Int(timestamp / 1_000_000_000)
        header.ts.tv_usec = Int(timestamp % 1_000_000_000)
        header.caplen = UInt32(bytes.count)
        header.len = UInt32(max(wireLength, bytes.count))
        pcap_dump(UnsafeMutablePointer(dumper), &header, bytes.base.assumingMemoryBound(to: UInt8.self))
    }

    public func flush() throws(CaptureError) {
        if pcap_dump_flush(dumper) != 0 { throw .write(path: path, reason: "flush failed") }
    }
}
