/// An open-addressing hash index from a packet's 5-tuple to a connection slot, built for the packet
/// path: key and value sit together in one 20-byte entry (one cache miss per lookup where Swift's
/// Dictionary costs three), linear probing, backward-shift deletion (no tombstones), and a per-table
/// random seed so clients cannot aim collisions at a known hash.
struct FlowIndex {
    fileprivate struct Entry {
        var source: UInt32
        var destination: UInt32
        var ports: UInt32
        /// proto << 24 | 1 << 23 (occupied); 0 when empty.
        var tag: UInt32
        var value: UInt32

        var key: FlowKey {
            FlowKey(source: IPv4Address(rawValue: source), destination: IPv4Address(rawValue: destination),
                    sourcePort: UInt16(ports >> 16), destinationPort: UInt16(ports & 0xffff),
                    proto: IPProtocol(rawValue: UInt8(tag >> 24)))
        }
    }

    private var entries: UnsafeMutableBufferPointer<Entry>
    private var mask: Int
    private let seed: UInt64
    private(set) var count = 0

    init(minimumCapacity: Int) {
        var size = 1024
        while size < minimumCapacity * 2 { size <<= 1 }
        entries = .allocate(capacity: size)
        entries.initialize(repeating: Entry(source: 0, destination: 0, ports: 0, tag: 0, value: 0))
        mask = size - 1
        seed = UInt64.random(in: 1...UInt64.max)
    }

    /// Frees the storage; the owner calls it once (the index is a value type over manual memory).
    func deallocate() { entries.deallocate() }

    @inline(__always) private static func tag(_ key: FlowKey) -> UInt32 { UInt32(key.proto) << 24 | 1 << 23 }

    @inline(__always) private func bucket(_ key: FlowKey) -> Int {
        // Two rounds of multiply-xorshift over the 104-bit key, seeded.
        var h = (UInt64(key.source) << 32 | UInt64(key.destination)) ^ seed
        h = (h ^ (h >> 32)) &* 0xd6e8_feb8_6659_fd93
        h ^= UInt64(key.ports) << 8 | UInt64(key.proto)
        h = (h ^ (h >> 32)) &* 0xd6e8_feb8_6659_fd93
        return Int(truncatingIfNeeded: h ^ (h >> 32)) & mask
    }

    @inline(__always) private func matches(_ e: Entry, _ key: FlowKey, _ tag: UInt32) -> Bool {
        e.tag == tag && e.source == key.source && e.destination == key.destination && e.ports == key.ports
    }

    subscript(key: FlowKey) -> UInt32? {
        let tag = Self.tag(key)
        var i = bucket(key)
        while true {
            let e = entries[i]
            if e.tag == 0 { return nil }
            if matches(e, key, tag) { return e.value }
            i = (i &+ 1) & mask
        }
    }

    /// Inserts or replaces.
    mutating func set(_ key: FlowKey, _ value: UInt32) {
        if (count + 1) * 2 > entries.count { grow() }
        let tag = Self.tag(key)
        var i = bucket(key)
        while entries[i].tag != 0 {
            if matches(entries[i], key, tag) {
                entries[i].value = value
                return
            }
            i = (i &+ 1) & mask
        }
        entries[i] = Entry(source: key.source, destination: key.destination, ports: key.ports, tag: tag, value: value)
        count += 1
    }

    mutating func remove(_ key: FlowKey) {
        let tag = Self.tag(key)
        var i = bucket(key)
        while true {
            if entries[i].tag == 0 { return }
            if matches(entries[i], key, tag) { break }
            i = (i &+ 1) & mask
        }
        // Backward-shift: pull later entries of the probe run into the hole when their home allows it.
        var hole = i
        var j = i
        while true {
            j = (j &+ 1) & mask
            let e = entries[j]
            if e.tag == 0 { break }
            let home = bucket(e.key)
            // Move e into the hole unless its home lies cyclically in (hole, j].
            let distanceToHome = (j &- home) & mask
            let distanceToHole = (j &- hole) & mask
            if distanceToHome >= distanceToHole {
                entries[hole] = e
                hole = j
            }
        }
        entries[hole].tag = 0
        count -= 1
    }

    private mutating func grow() {
        let old = entries
        let size = old.count * 2
        entries = .allocate(capacity: size)
        entries.initialize(repeating: Entry(source: 0, destination: 0, ports: 0, tag: 0, value: 0))
        mask = size - 1
        count = 0
        for e in old where e.tag != 0 { set(e.key, e.value) }
        old.deallocate()
    }

}
