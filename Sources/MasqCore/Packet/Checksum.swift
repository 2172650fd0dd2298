/// The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
public enum InternetChecksum {
    /// The 32-bit ones'-complement accumulation of `bytes` in 16-bit big-endian words, unfolded.
    /// An odd trailing byte is padded with zero (RFC 1071 §4.1).
    @inlinable public static func accumulate(_ bytes: PacketBytes, into initial: UInt64 = 0) -> UInt64 {
        var sum = initial
        var index = 0
        let count = bytes.count
        // 8 bytes at a time: four 16-bit words summed in a 64-bit accumulator cannot overflow for 64 KiB.
        while index + 8 <= count {
            let word = UInt64(bigEndian: bytes.base.loadUnaligned(fromByteOffset: index, as: UInt64.self))
            sum &+= (word >> 48) &+ (word >> 32 & 0xffff) &+ (word >> 16 & 0xffff) &+ (word & 0xffff)
            index += 8
        }
        while index + 2 <= count {
            sum &+= UInt64(bytes.u16(index))
            index += 2
        }
        if index < count {
            sum &+= UInt64(bytes.u8(index)) << 8
        }
        return sum
    }

    /// Folds an accumulated sum to 16 bits (end-around carry).
    @inlinable public static func fold(_ sum: UInt64) -> UInt16 {
        var s = sum
        while s > 0xffff { s = (s & 0xffff) &+ (s >> 16) }
        return UInt16(s)
    }

    /// The checksum field value for `bytes` (whose own checksum field must hold zero, or be accounted for).
    @inlinable public static func compute(_ bytes: PacketBytes, initial: UInt64 = 0) -> UInt16 {
        ~fold(accumulate(bytes, into: initial))
    }

    /// The IPv4 pseudo-header sum for TCP/UDP (RFC 793 §3.1, RFC 768).
    @inlinable public static func pseudoHeader(source: UInt32, destination: UInt32,
                                               protocol proto: IPProtocol, length: Int) -> UInt64 {
        UInt64(source >> 16) &+ UInt64(source & 0xffff) &+ UInt64(destination >> 16)
            &+ UInt64(destination & 0xffff) &+ UInt64(proto.rawValue) &+ UInt64(length)
    }

    /// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') for a 16-bit field changing from `old` to `new`.
    @inlinable public static func update(_ checksum: UInt16, old: UInt16, new: UInt16) -> UInt16 {
        let sum = UInt32(~checksum) &+ UInt32(~old) &+ UInt32(new)
        return ~fold(UInt64(sum))
    }

    /// RFC 1624 eqn. 3 for a 32-bit field (an address), as two 16-bit words.
    @inlinable public static func update(_ checksum: UInt16, old: UInt32, new: UInt32) -> UInt16 {
        var sum = UInt64(~checksum)
        sum &+= UInt64(~UInt16(truncatingIfNeeded: old >> 16)) &+ UInt64(~UInt16(truncatingIfNeeded: old))
        sum &+= UInt64(new >> 16) &+ UInt64(new & 0xffff)
        return ~fold(sum)
    }

    /// The IPv6 pseudo-header sum for upper-layer checksums (RFC 8200 §8.1): both addresses, the
    /// 32-bit upper-layer packet length and the next-header value (three zero bytes before it).
    @inlinable public static func pseudoHeader(source: IPv6Address, destination: IPv6Address,
                                               protocol proto: IPProtocol, length: Int) -> UInt64 {
        let length32 = UInt32(truncatingIfNeeded: length)
        return source.checksumSum &+ destination.checksumSum &+ UInt64(length32 >> 16)
            &+ UInt64(length32 & 0xffff) &+ UInt64(proto.rawValue)
    }

    /// RFC 1624 eqn. 3 for a 128-bit field (an IPv6 address in a pseudo-header), over its eight 16-bit
    /// words: HC' = ~(~HC + sum(~m_i) + sum(m'_i)). Complementing both halves complements every word.
    @inlinable public static func update(_ checksum: UInt16, old: IPv6Address, new: IPv6Address) -> UInt16 {
        let oldComplement = IPv6Address(high: ~old.high, low: ~old.low)
        return ~fold(UInt64(~checksum) &+ oldComplement.checksumSum &+ new.checksumSum)
    }
}
