import CMasqShims

/// An open-addressing hash index from a packet's 5-tuple to a connection slot, built for the packet
/// path and for memory: an entry is 8 bytes, the key's 32-bit hash and the value (slot << 1 | direction),
/// and the key itself is confirmed against the connection the value names, which the packet path loads
/// next anyway. Linear probing, backward-shift deletion (no tombstones), a per-table random seed so
/// clients cannot aim collisions at a known hash, and a fixed size (load ≤ 0.5 at the table's capacity)
/// reserved in zeroed pages of the table's memory (`TableMemory`): no rehash ever runs on the packet path.
struct FlowIndex {
    fileprivate struct Entry {
        var hash: UInt32
        /// Stored value + 1; 0 marks an empty entry (so fresh zeroed pages are an empty index).
        var tagged: UInt32
    }

    private let entries: UnsafeMutablePointer<Entry>
    private let size: Int
    private let mask: Int
    private let seed: UInt64
    /// In the table's live block, so a restarted masq finds it with the entries.
    private let countPointer: UnsafeMutablePointer<Int>
    var count: Int { countPointer.pointee }
    /// The largest value an entry can hold.
    static let maximumValue = UInt32.max - 1
    static let entryStride = MemoryLayout<Entry>.stride

    /// Entries reserved for up to `maximumCount` values (a power of two, load ≤ 0.5).
    static func entryCount(forMaximumCount maximumCount: Int) -> Int {
        var size = 1024
        while size < maximumCount * 2 { size <<= 1 }
        return size
    }

    /// An index over `entryCount` zeroed (or adopted) entries at `memory`, its count at `count`.
    init(memory: UnsafeMutableRawPointer, entryCount: Int, seed: UInt64, count: UnsafeMutablePointer<Int>) {
        size = entryCount
        entries = memory.bindMemory(to: Entry.self, capacity: entryCount)
        mask = entryCount - 1
        self.seed = seed
        countPointer = count
    }

    /// Bytes reserved (resident once touched).
    var byteCount: Int { size * MemoryLayout<Entry>.stride }

    /// Two rounds of multiply-xorshift over the 104-bit key, seeded.
    @inline(__always) func hash(_ key: FlowKey) -> UInt32 {
        var h = (UInt64(key.source) << 32 | UInt64(key.destination)) ^ seed
        h = (h ^ (h >> 32)) &* 0xd6e8_feb8_6659_fd93
        h ^= UInt64(key.ports) << 8 | UInt64(key.proto)
        h = (h ^ (h >> 32)) &* 0xd6e8_feb8_6659_fd93
        return UInt32(truncatingIfNeeded: h ^ (h >> 32))
    }

    /// The same mixing over an IPv6 tuple's 296 bits: each address's halves folded in turn.
    @inline(__always) func hash(_ key: FlowKey6) -> UInt32 {
        var h = key.source.high ^ seed
        h = (h ^ (h >> 32)) &* 0xd6e8_feb8_6659_fd93
        h ^= key.source.low
        h = (h ^ (h >> 32)) &* 0xd6e8_feb8_6659_fd93
        h ^= key.destination.high
        h = (h ^ (h >> 32)) &* 0xd6e8_feb8_6659_fd93
        h ^= key.destination.low
        h = (h ^ (h >> 32)) &* 0xd6e8_feb8_6659_fd93
        h ^= UInt64(key.ports) << 8 | UInt64(key.proto)
        h = (h ^ (h >> 32)) &* 0xd6e8_feb8_6659_fd93
        return UInt32(truncatingIfNeeded: h ^ (h >> 32))
    }

    /// The value of the entry with this hash whose key `matches` confirms.
    /// At most `size` probes: an adopted index full of entries ends the search instead of spinning.
    @inline(__always) func find(_ hash: UInt32, _ matches: (UInt32) -> Bool) -> UInt32? {
        var i = Int(hash) & mask
        for _ in 0..<size {
            let e = entries[i]
            if e.tagged == 0 { return nil }
            if e.hash == hash && matches(e.tagged &- 1) { return e.tagged &- 1 }
            i = (i &+ 1) & mask
        }
        return nil
    }

    /// Whether an entry holds exactly `value` (the recount pass's check of a template's entry).
    func contains(_ hash: UInt32, _ value: UInt32) -> Bool { find(hash) { $0 == value } != nil }

    /// Starts loading the bucket of `hash` into cache (see `Engine.prefetching`).
    @inline(__always) func prefetch(_ hash: UInt32) {
        masq_prefetch(UnsafeRawPointer(entries + (Int(hash) & mask)))
    }

    /// The value of the first entry near its bucket with this hash, unconfirmed: a prefetch hint only.
    @inline(__always) func candidate(_ hash: UInt32) -> UInt32? {
        var i = Int(hash) & mask
        for _ in 0..<4 {
            let e = entries[i]
            if e.tagged == 0 { return nil }
            if e.hash == hash { return e.tagged &- 1 }
            i = (i &+ 1) & mask
        }
        return nil
    }

    /// Adds an entry; the caller has checked its key is absent. False (nothing added) when the index
    /// is at its load limit or has no empty entry left, which only an inconsistent adopted file causes.
    func insert(_ hash: UInt32, _ value: UInt32) -> Bool {
        guard count * 2 < size && value <= Self.maximumValue else { return false }
        var i = Int(hash) & mask
        for _ in 0..<size {
            if entries[i].tagged == 0 {
                entries[i] = Entry(hash: hash, tagged: value &+ 1)
                countPointer.pointee += 1
                return true
            }
            i = (i &+ 1) & mask
        }
        return false
    }

    /// Removes the entry holding exactly `value` (a slot and direction name one entry).
    /// A no-op when absent (the scrub of an interrupted operation relies on it).
    func remove(_ hash: UInt32, _ value: UInt32) {
        var i = Int(hash) & mask
        var probes = 0
        while true {
            if entries[i].tagged == 0 || probes == size { return }
            if entries[i].tagged == value &+ 1 { break }
            i = (i &+ 1) & mask
            probes += 1
        }
        // Backward-shift: pull later entries of the probe run into the hole when their home allows it.
        var hole = i
        var j = i
        for _ in 0..<size {
            j = (j &+ 1) & mask
            let e = entries[j]
            if e.tagged == 0 { break }
            let home = Int(e.hash) & mask
            // Move e into the hole unless its home lies cyclically in (hole, j].
            if (j &- home) & mask >= (j &- hole) & mask {
                entries[hole] = e
                hole = j
            }
        }
        entries[hole] = Entry(hash: 0, tagged: 0)
        if countPointer.pointee > 0 { countPointer.pointee -= 1 }
    }
}
