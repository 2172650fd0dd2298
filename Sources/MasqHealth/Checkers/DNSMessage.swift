/// The few parts of a DNS message (RFC 1035 section 4.1) DNS_CHECK needs: a one-question query to
/// send, and the header of the reply (id, flags, counts) to judge it by. Not a resolver: no records
/// are decoded, so no name (or name compression, section 4.1.4) is ever read.
public enum DNSMessage {
    /// RFC 1035 section 4.1.1: the fixed 12-byte header.
    public struct Header: Equatable, Sendable {
        public var id: UInt16
        public var flags: UInt16
        public var questions: UInt16
        public var answers: UInt16
        public var authorities: UInt16
        public var additionals: UInt16

        /// QR: set in a response.
        public var isResponse: Bool { flags & 0x8000 != 0 }
        /// RCODE: 0 no error, 1 format error, 2 server failure, 3 name error (NXDOMAIN), 4 not
        /// implemented, 5 refused.
        public var responseCode: Int { Int(flags & 0x000f) }

        public static let size = 12
    }

    /// Flags of the query keepalived sends (check_dns.c `dns_make_query`): a standard query with RD set.
    static let recursionDesired: UInt16 = 0x0100

    /// A standard query for `name` (dotted, a trailing dot optional; "" or "." is the root) of `type`,
    /// class IN, as keepalived's `dns_make_query` builds it. nil when a label is empty or longer than
    /// 63 bytes, or the name is longer than 255 (RFC 1035 section 2.3.4).
    public static func query(id: UInt16, name: String, type: UInt16) -> [UInt8]? {
        guard let qname = encodeName(name) else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Header.size + qname.count + 4)
        for field in [id, recursionDesired, 1, 0, 0, 0] { append(field, to: &bytes) }
        bytes += qname
        append(type, to: &bytes)
        append(1, to: &bytes)  // QCLASS IN
        return bytes
    }

    /// RFC 1035 section 3.1: a name as length-prefixed labels ending with the root's zero length.
    static func encodeName(_ name: String) -> [UInt8]? {
        var text = Substring(name)
        if text.hasSuffix(".") { text = text.dropLast() }
        var out: [UInt8] = []
        if !text.isEmpty {
            for label in text.split(separator: ".", omittingEmptySubsequences: false) {
                let bytes = Array(label.utf8)
                guard !bytes.isEmpty, bytes.count <= 63 else { return nil }
                out.append(UInt8(bytes.count))
                out += bytes
            }
        }
        out.append(0)
        return out.count <= 255 ? out : nil
    }

    /// The header of a received message; nil when it is shorter than a header.
    public static func header(_ bytes: some Collection<UInt8>) -> Header? {
        guard bytes.count >= Header.size else { return nil }
        var words: [UInt16] = []
        var i = bytes.startIndex
        for _ in 0..<6 {
            let high = bytes[i]
            i = bytes.index(after: i)
            words.append(UInt16(high) << 8 | UInt16(bytes[i]))
            i = bytes.index(after: i)
        }
        return Header(id: words[0], flags: words[1], questions: words[2], answers: words[3],
                      authorities: words[4], additionals: words[5])
    }

    private static func append(_ value: UInt16, to bytes: inout [UInt8]) {
        bytes.append(UInt8(value >> 8))
        bytes.append(UInt8(value & 0xff))
    }
}
