/// A mutable window onto packet bytes owned by someone else (a receive buffer, a capture record).
///
/// Views never copy and never allocate; integers are read and written in network byte order at a byte
/// index, in the manner of swift-nio's `getInteger`/`setInteger`. Callers check bounds once per header
/// (`count`), so the accessors themselves are unchecked in release builds.
public struct PacketBytes {
    public let base: UnsafeMutableRawPointer
    public let count: Int

    @inlinable public init(base: UnsafeMutableRawPointer, count: Int) {
        self.base = base
        self.count = count
    }

    @inlinable public init(_ buffer: UnsafeMutableRawBufferPointer) {
        self.base = buffer.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 0x10)!
        self.count = buffer.count
    }

    /// The bytes from `offset` on, as a view of their own.
    @inlinable public func slice(from offset: Int) -> PacketBytes {
        PacketBytes(base: base + offset, count: count - offset)
    }

    @inlinable public func slice(from offset: Int, count: Int) -> PacketBytes {
        PacketBytes(base: base + offset, count: count)
    }

    @inlinable public func u8(_ index: Int) -> UInt8 {
        base.load(fromByteOffset: index, as: UInt8.self)
    }

    @inlinable public func u16(_ index: Int) -> UInt16 {
        UInt16(bigEndian: base.loadUnaligned(fromByteOffset: index, as: UInt16.self))
    }

    @inlinable public func u32(_ index: Int) -> UInt32 {
        UInt32(bigEndian: base.loadUnaligned(fromByteOffset: index, as: UInt32.self))
    }

    @inlinable public func setU8(_ value: UInt8, _ index: Int) {
        base.storeBytes(of: value, toByteOffset: index, as: UInt8.self)
    }

    @inlinable public func setU16(_ value: UInt16, _ index: Int) {
        base.storeBytes(of: value.bigEndian, toByteOffset: index, as: UInt16.self)
    }

    @inlinable public func setU32(_ value: UInt32, _ index: Int) {
        base.storeBytes(of: value.bigEndian, toByteOffset: index, as: UInt32.self)
    }

    public var bytes: [UInt8] {
        Array(UnsafeRawBufferPointer(start: base, count: count))
    }
}
