@testable import MasqCore

/// Builds IPv4 packets byte by byte with every checksum computed from scratch: the oracle the engine's
/// incremental updates are checked against. Deliberately naive: sums whole buffers, no shared code paths
/// with the engine beyond the address type.
struct PacketBuilder {
    var source: IPv4Address
    var destination: IPv4Address
    var ttl: UInt8 = 64
    var identification: UInt16 = 0x1234
    var options: [UInt8] = []
    var flagsAndFragment: UInt16 = 0x4000  // DF

    static func sum(_ bytes: [UInt8]) -> UInt16 {
        var s: UInt32 = 0
        var i = 0
        while i + 1 < bytes.count {
            s += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1])
            i += 2
        }
        if i < bytes.count { s += UInt32(bytes[i]) << 8 }
        while s > 0xffff { s = (s & 0xffff) + (s >> 16) }
        return UInt16(s)
    }

    static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }

    func pseudo(_ proto: UInt8, _ length: Int) -> [UInt8] {
        Self.be32(source.rawValue) + Self.be32(destination.rawValue) + [0, proto] + Self.be16(UInt16(length))
    }

    func ip(_ proto: UInt8, _ payload: [UInt8]) -> [UInt8] {
        let headerLength = 20 + options.count
        var h: [UInt8] = [0x40 | UInt8(headerLength / 4), 0]
        h += Self.be16(UInt16(headerLength + payload.count)) + Self.be16(identification) + Self.be16(flagsAndFragment)
        h += [ttl, proto, 0, 0] + Self.be32(source.rawValue) + Self.be32(destination.rawValue) + options
        let c = ~Self.sum(h)
        h[10] = UInt8(c >> 8)
        h[11] = UInt8(c & 0xff)
        return h + payload
    }

    func tcp(_ sport: UInt16, _ dport: UInt16, flags: TCPFlags, seq: UInt32 = 1000, ack: UInt32 = 0,
             payload: [UInt8] = []) -> [UInt8] {
        var t = Self.be16(sport) + Self.be16(dport) + Self.be32(seq) + Self.be32(ack)
        t += [0x50, flags.rawValue] + Self.be16(64240) + [0, 0, 0, 0] + payload
        let c = ~Self.sum(pseudo(6, t.count) + t)
        t[16] = UInt8(c >> 8)
        t[17] = UInt8(c & 0xff)
        return ip(6, t)
    }

    func udp(_ sport: UInt16, _ dport: UInt16, payload: [UInt8] = [], zeroChecksum: Bool = false) -> [UInt8] {
        var u = Self.be16(sport) + Self.be16(dport) + Self.be16(UInt16(8 + payload.count)) + [0, 0] + payload
        if !zeroChecksum {
            var c = ~Self.sum(pseudo(17, u.count) + u)
            if c == 0 { c = 0xffff }
            u[6] = UInt8(c >> 8)
            u[7] = UInt8(c & 0xff)
        }
        return ip(17, u)
    }

    /// An ICMP message quoting `quoted` (an error) or carrying it as data (echo).
    func icmp(type: UInt8, code: UInt8, rest: UInt32 = 0, body: [UInt8]) -> [UInt8] {
        var m = [type, code, 0, 0] + Self.be32(rest) + body
        let c = ~Self.sum(m)
        m[2] = UInt8(c >> 8)
        m[3] = UInt8(c & 0xff)
        return ip(1, m)
    }
}

/// A dotted-quad literal in a test.
func addr(_ text: String) -> IPv4Address { IPv4Address(text)! }

/// Runs `body` over a mutable copy of `bytes` as PacketBytes; returns the verdict and resulting bytes.
func run(_ engine: Engine, _ bytes: [UInt8], meta: PacketMeta = PacketMeta(), at seconds: Double = 0)
    -> (Verdict, [UInt8]) {
    var copy = bytes
    let verdict = copy.withUnsafeMutableBytes { raw in
        engine.process(PacketBytes(raw), meta: meta, now: Int64(seconds * 1e9))
    }
    return (verdict, copy)
}

/// True when every checksum in an IPv4 TCP/UDP/ICMP packet verifies from scratch.
func checksumsValid(_ packet: [UInt8]) -> Bool {
    let ihl = Int(packet[0] & 0x0f) * 4
    guard PacketBuilder.sum(Array(packet[0..<ihl])) == 0xffff else { return false }
    let total = Int(packet[2]) << 8 | Int(packet[3])
    let l4 = Array(packet[ihl..<total])
    let proto = packet[9]
    let pseudo = Array(packet[12..<20]) + [0, proto] + PacketBuilder.be16(UInt16(l4.count))
    switch proto {
    case 6: return PacketBuilder.sum(pseudo + l4) == 0xffff
    case 17: return (l4[6] == 0 && l4[7] == 0) || PacketBuilder.sum(pseudo + l4) == 0xffff
    case 1: return PacketBuilder.sum(l4) == 0xffff
    default: return true
    }
}
