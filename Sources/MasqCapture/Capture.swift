import CPcap
import MasqCore

/// Why a capture file could not be read or written.
public enum CaptureError: Error, CustomStringConvertible {
    case open(path: String, reason: String)
    case unsupportedLinkType(path: String, linkType: Int32)
    case read(path: String, reason: String)
    case write(path: String, reason: String)
    /// A record whose timestamp masq's clock (signed 64-bit nanoseconds since 1970) cannot hold:
    /// pcapng allows 64-bit seconds. `packet` counts from 1 in the file.
    case unreadableTimestamp(path: String, packet: UInt64, seconds: Int64, nanoseconds: Int64)
    /// A timestamp pcap's record header (32-bit unsigned seconds) cannot hold; written, it would wrap.
    /// `packet` is how the caller names it (replay: the input file and its record number).
    case unwritableTimestamp(path: String, packet: String, timestamp: Int64)

    public var description: String {
        switch self {
        case .open(let path, let reason): "\(path): cannot open: \(reason)"
        case .unsupportedLinkType(let path, let linkType):
            "\(path): link type \(linkType) is not supported (Ethernet, Linux cooked SLL/SLL2, raw IP, "
                + "raw IPv4 and raw IPv6 are)"
        case .read(let path, let reason): "\(path): read error: \(reason)"
        case .write(let path, let reason): "\(path): write error: \(reason)"
        case .unreadableTimestamp(let path, let packet, let seconds, let nanoseconds):
            "\(path): packet \(packet): timestamp \(PcapTime.utc(seconds: seconds, nanoseconds: nanoseconds)) is "
                + "beyond masq's clock (nanoseconds since 1970 in 64 bits, up to "
                + "\(PcapTime.utc(nanosecondsSinceEpoch: Int64.max)))"
        case .unwritableTimestamp(let path, let packet, let timestamp):
            "\(path): cannot write \(packet): its timestamp \(PcapTime.utc(nanosecondsSinceEpoch: timestamp)) is "
                + "outside what a pcap record holds (32-bit unsigned seconds: \(PcapTime.utc(seconds: 0, nanoseconds: 0)) "
                + "to \(PcapTime.utc(seconds: Int64(UInt32.max), nanoseconds: 999_999_999)))"
        }
    }
}

/// Timestamps between masq's clock (nanoseconds since 1970, Int64) and pcap's records (seconds and
/// a fraction), and as UTC text for messages.
public enum PcapTime {
    /// Seconds and nanoseconds of a nanosecond timestamp, by floor division: the fraction is always
    /// in 0..<1e9, also before 1970 (truncating division would give a negative fraction there).
    public static func split(_ nanoseconds: Int64) -> (seconds: Int64, fraction: Int64) {
        let (q, r) = nanoseconds.quotientAndRemainder(dividingBy: 1_000_000_000)
        return r < 0 ? (q - 1, r + 1_000_000_000) : (q, r)
    }

    /// What a pcap record header can hold: seconds 0...UInt32.max (pcap's seconds are unsigned; libpcap
    /// stores the low 32 bits of whatever it is given, so anything else would wrap silently). nil
    /// when the timestamp is outside.
    public static func pcapFields(_ nanoseconds: Int64) -> (seconds: UInt32, fraction: UInt32)? {
        let (seconds, fraction) = split(nanoseconds)
        guard let s = UInt32(exactly: seconds) else { return nil }
        return (s, UInt32(fraction))
    }

    /// A record's seconds as libpcap hands them over: libpcap 1.10 reads pcap's 32 bits into a signed
    /// int and sign-extends, so from 2038-01-19 on they arrive negative. pcap's seconds are unsigned
    /// (pcap's specification, and what tcpdump writes), so a value in Int32's negative range is taken
    /// as the unsigned 32-bit number it came from; pcapng's 64-bit seconds never arrive negative.
    public static func fileSeconds(_ tvSec: Int64) -> Int64 {
        (Int64(Int32.min)..<0).contains(tvSec) ? tvSec + (1 << 32) : tvSec
    }

    /// seconds * 1e9 + nanoseconds, or nil when masq's Int64 clock cannot hold it.
    public static func nanoseconds(seconds: Int64, fraction: Int64) -> Int64? {
        let (product, o1) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let (sum, o2) = product.addingReportingOverflow(fraction)
        return o1 || o2 ? nil : sum
    }

    public static func utc(nanosecondsSinceEpoch ns: Int64) -> String {
        let (s, f) = split(ns)
        return utc(seconds: s, nanoseconds: f)
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (proleptic Gregorian, UTC), the fraction without trailing zeros.
    public static func utc(seconds: Int64, nanoseconds: Int64) -> String {
        // Normalise the fraction into the seconds first (floor division, as everywhere here).
        let (carry, fraction) = split(nanoseconds)
        let (total, overflow) = seconds.addingReportingOverflow(carry)
        guard !overflow else { return "\(seconds) s + \(nanoseconds) ns since 1970" }
        let (days, secondOfDay) = floorDivide(total, 86_400)
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let (era, _) = floorDivide(z, 146_097)
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        func two(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }
        var text = "\(year)-\(two(month))-\(two(day))T\(two(secondOfDay / 3600)):\(two(secondOfDay / 60 % 60)):"
            + two(secondOfDay % 60)
        if fraction != 0 {
            var digits = String(fraction)
            digits = String(repeating: "0", count: 9 - digits.count) + digits
            while digits.hasSuffix("0") { digits.removeLast() }
            text += "." + digits
        }
        return text + "Z"
    }

    private static func floorDivide(_ a: Int64, _ b: Int64) -> (Int64, Int64) {
        let (q, r) = a.quotientAndRemainder(dividingBy: b)
        return r < 0 ? (q - 1, r + b) : (q, r)
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
    public static let ipv6 = LinkType(rawValue: 229)         // DLT_IPV6
    public static let linuxSLL2 = LinkType(rawValue: 276)    // DLT_LINUX_SLL2

    public var isSupported: Bool { [.ethernet, .raw, .linuxSLL, .ipv4, .ipv6, .linuxSLL2].contains(self) }

    /// The EtherType (IEEE 802 numbers) of IPv4 and of IPv6 (RFC 8200 §2 runs over it as 0x86DD), in
    /// Ethernet frames and in the protocol field of Linux cooked headers alike.
    static let etherTypeIPv4: UInt16 = 0x0800
    static let etherTypeIPv6: UInt16 = 0x86DD

    /// Where the IP header (IPv4 or IPv6) starts in a frame of this link type, or nil when the frame
    /// carries something else (ARP, …) or is too short to tell. The link layer names the family
    /// (EtherType, cooked protocol, or the link type itself); raw IP has only the version nibble.
    /// The engine reads the version again, so a frame whose link layer and version disagree is its
    /// to judge (malformed), as an IPv4 frame with a wrong version always was.
    public func ipOffset(_ frame: PacketBytes) -> Int? {
        switch self {
        case .ethernet, .linuxSLL, .linuxSLL2:
            guard let (offset, etherType) = linkHeader(frame) else { return nil }
            return etherType == Self.etherTypeIPv4 || etherType == Self.etherTypeIPv6 ? offset : nil
        case .raw:
            guard frame.count >= 1 else { return nil }
            let version = frame.u8(0) >> 4
            return version == 4 || version == 6 ? 0 : nil
        case .ipv4:
            guard frame.count >= 1 else { return nil }
            return frame.u8(0) >> 4 == 4 ? 0 : nil
        case .ipv6:
            guard frame.count >= 1 else { return nil }
            return frame.u8(0) >> 4 == 6 ? 0 : nil
        default:
            return nil
        }
    }

    /// Where the IPv4 header starts in a frame of this link type, or nil when the frame carries
    /// something else (ARP, IPv6, …) or is too short to tell.
    public func ipv4Offset(_ frame: PacketBytes) -> Int? {
        switch self {
        case .ethernet, .linuxSLL, .linuxSLL2:
            guard let (offset, etherType) = linkHeader(frame) else { return nil }
            return etherType == Self.etherTypeIPv4 ? offset : nil
        case .raw, .ipv4:
            guard frame.count >= 1 else { return nil }
            return frame.u8(0) >> 4 == 4 ? 0 : nil
        default:
            return nil
        }
    }

    /// For the link types with a header naming the payload: where the payload starts and its
    /// EtherType, or nil when the frame is too short to hold the header.
    private func linkHeader(_ frame: PacketBytes) -> (offset: Int, etherType: UInt16)? {
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
            return (offset + 2, etherType)
        case .linuxSLL:
            guard frame.count >= 16 else { return nil }
            return (16, frame.u16(14))
        case .linuxSLL2:
            guard frame.count >= 20 else { return nil }
            return (20, frame.u16(0))
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
    /// Records read so far: the number of the last one, counting from 1 (tshark's frame.number).
    public private(set) var recordNumber: UInt64 = 0

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
            recordNumber += 1
            let count = min(Int(header.pointee.caplen), scratchSize)
            scratch.copyMemory(from: data, byteCount: count)
            // Opened with nanosecond precision: tv_usec holds nanoseconds.
            let ts = header.pointee.ts
            let seconds = PcapTime.fileSeconds(Int64(ts.tv_sec))
            guard let timestamp = PcapTime.nanoseconds(seconds: seconds, fraction: Int64(ts.tv_usec)) else {
                throw .unreadableTimestamp(path: path, packet: recordNumber, seconds: seconds,
                                           nanoseconds: Int64(ts.tv_usec))
            }
            return CaptureRecord(bytes: PacketBytes(base: scratch, count: count),
                                 wireLength: Int(header.pointee.len), timestamp: timestamp)
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

    /// Writes one record. A timestamp pcap cannot hold (before 1970, or from 2106-02-07T06:28:16Z on)
    /// is an error naming `packet` (how the caller knows it), and nothing is written.
    public func write(_ bytes: PacketBytes, wireLength: Int, timestamp: Int64, packet: String) throws(CaptureError) {
        guard let fields = PcapTime.pcapFields(timestamp) else {
            throw .unwritableTimestamp(path: path, packet: packet, timestamp: timestamp)
        }
        dump(bytes, wireLength: wireLength, fields)
    }

    /// For callers stamping packets with the current time (packet traces): a timestamp pcap cannot
    /// hold is not written (false), never wrapped. Prefer `write(_:wireLength:timestamp:packet:)`.
    @discardableResult
    public func write(_ bytes: PacketBytes, wireLength: Int, timestamp: Int64) -> Bool {
        guard let fields = PcapTime.pcapFields(timestamp) else { return false }
        dump(bytes, wireLength: wireLength, fields)
        return true
    }

    private func dump(_ bytes: PacketBytes, wireLength: Int, _ fields: (seconds: UInt32, fraction: UInt32)) {
        var header = pcap_pkthdr()
        // libpcap keeps the low 32 bits of tv_sec: exact for every UInt32, so 2038-2106 survive.
        header.ts.tv_sec = Int(fields.seconds)
        header.ts.tv_usec = Int(fields.fraction)  // nanoseconds: the dumper was opened with nano precision
        header.caplen = UInt32(bytes.count)
        header.len = UInt32(max(wireLength, bytes.count))
        pcap_dump(UnsafeMutablePointer(dumper), &header, bytes.base.assumingMemoryBound(to: UInt8.self))
    }

    public func flush() throws(CaptureError) {
        if pcap_dump_flush(dumper) != 0 { throw .write(path: path, reason: "flush failed") }
    }
}
