/// The table lblc and lblcr keep per service (IPVS `struct ip_vs_lblc_table` / `ip_vs_lblcr_table`):
/// destination addresses, each with a value (lblc: its real server; lblcr: its server set) and the
/// time it was last used, in 2^10 hash buckets (CONFIG_IP_VS_LBLC_TAB_BITS 10), with the kernel's
/// garbage collection of stale entries.
///
/// IPVS runs that collection from a timer every 60 s (`ip_vs_lblc_check_expire`); masq has no timer
/// per service, so `collect(now:)` runs the same pass from the first pick 60 s or more after the
/// last one, on the engine's clock: a replay collects the same entries. The entries only matter to
/// picks, so a pass that runs at the next pick instead of on the minute changes no pick.
///
/// Storage is a pool of parallel arrays with a free list, chained by index (no allocation per pick;
/// an entry's slot is reused once collected). Bounded: IPVS collects down toward `maxSize` (16 × the
/// buckets) but has no hard limit beyond memory; masq stops caching new addresses at `entryLimit`
/// (as the kernel goes on without a cache entry when its allocation fails) until a pass frees slots.
struct LocalityTable<Value> {
    static var bucketBits: Int { 10 }
    static var bucketCount: Int { 1 << bucketBits }
    /// `tbl->max_size = IP_VS_LBLC_TAB_SIZE * 16`: over this, each pass collects entries idle 6 min.
    static var maxSize: Int { bucketCount * 16 }
    /// masq's hard bound on entries (4 × `maxSize`).
    static var entryLimit: Int { maxSize * 4 }
    static var nanosPerSecond: Int64 { 1_000_000_000 }
    /// CHECK_EXPIRE_INTERVAL: the collection pass's period.
    static var checkInterval: Int64 { 60 * nanosPerSecond }
    /// ENTRY_TIMEOUT: how long an entry must have been idle for a pass over `maxSize` to collect it.
    static var entryTimeout: Int64 { 6 * 60 * nanosPerSecond }
    /// DEFAULT_EXPIRATION (`sysctl lblc_expiration`, `lblcr_expiration`): 24 h.
    static var defaultExpiration: Int64 { 24 * 60 * 60 * nanosPerSecond }
    /// COUNT_FOR_FULL_EXPIRATION: every 30th pass that finds the table within `maxSize` is a full
    /// check, which collects entries idle for `expiration`.
    static var countForFullExpiration: Int { 30 }

    private static var none: Int32 { -1 }

    /// The idle time after which a full check collects an entry (the expiration sysctl).
    var expiration: Int64
    private var heads = [Int32](repeating: -1, count: LocalityTable.bucketCount)
    private var next: [Int32] = []
    private(set) var keys: [IPAddress] = []
    var lastUse: [Int64] = []
    var values: [Value] = []
    private var live: [Bool] = []
    private var freeHead: Int32 = -1
    private let empty: Value
    /// Entries in the table (IPVS `tbl->entries`).
    private(set) var count = 0
    /// IPVS `tbl->rover`: the bucket after which the next pass starts.
    private var rover = 0
    /// IPVS `tbl->counter`: passes since the last full check.
    private var counter = 1
    /// When the next pass is due; nil before the first pick (the kernel arms its timer at service creation).
    private var nextCheck: Int64?

    /// `empty`: what a free slot holds (no real server referenced).
    init(empty: Value, expiration: Int64 = LocalityTable.defaultExpiration) {
        self.empty = empty
        self.expiration = expiration
    }

    /// IPVS `ip_vs_lblc_hashkey`: the address (an IPv6 address's fold) × 2654435761, low 10 bits.
    static func bucket(_ address: IPAddress) -> Int {
        Int((UInt64(address.hashWord) &* 2_654_435_761) & UInt64(bucketCount - 1))
    }

    /// The entry for `address` (IPVS `ip_vs_lblc_get`).
    func find(_ address: IPAddress) -> Int? {
        var i = heads[Self.bucket(address)]
        while i != Self.none {
            if keys[Int(i)] == address { return Int(i) }
            i = next[Int(i)]
        }
        return nil
    }

    /// A new entry at the head of its bucket (`ip_vs_lblc_hash`), used now; nil at `entryLimit`.
    mutating func insert(_ address: IPAddress, _ value: Value, now: Int64) -> Int? {
        let i: Int
        if freeHead != Self.none {
            i = Int(freeHead)
            freeHead = next[i]
            keys[i] = address
            lastUse[i] = now
            values[i] = value
            live[i] = true
        } else {
            guard keys.count < Self.entryLimit else { return nil }
            i = keys.count
            keys.append(address)
            lastUse.append(now)
            values.append(value)
            live.append(true)
            next.append(Self.none)
        }
        let b = Self.bucket(address)
        next[i] = heads[b]
        heads[b] = Int32(i)
        count += 1
        return i
    }

    /// Takes entry `i` out of its bucket and frees its slot (its value is dropped).
    mutating func remove(_ i: Int) {
        let b = Self.bucket(keys[i])
        if heads[b] == Int32(i) {
            heads[b] = next[i]
        } else {
            var p = Int(heads[b])
            while next[p] != Int32(i) { p = Int(next[p]) }
            next[p] = next[i]
        }
        values[i] = empty
        live[i] = false
        next[i] = freeHead
        freeHead = Int32(i)
        count -= 1
    }

    /// Every entry's index (configuration changes walk them; not for the packet path).
    var indices: [Int] { live.indices.filter { live[$0] } }

    /// The periodic pass (IPVS `ip_vs_lblc_check_expire`), if one is due at `now`. Passes the kernel
    /// would have run while no pick came are counted toward the full check, as its timer would have.
    mutating func collect(now: Int64) {
        guard let due = nextCheck else {
            nextCheck = now &+ Self.checkInterval
            return
        }
        guard now >= due else { return }
        let missed = Int(min(Int64(Self.countForFullExpiration), (now - due) / Self.checkInterval))
        nextCheck = now &+ Self.checkInterval
        if count <= Self.maxSize { counter = min(Self.countForFullExpiration, counter + missed) }
        if counter % Self.countForFullExpiration == 0 {
            // `ip_vs_lblc_full_check`: every bucket, entries idle for the expiration.
            sweep(now: now, idle: expiration, goal: nil)
            counter = 1
            return
        }
        if count <= Self.maxSize {
            counter += 1
            return
        }
        // Over max_size: collect entries idle ENTRY_TIMEOUT, (entries - max) × 4/3 of them at most
        // max/2, from the rover on.
        let goal = min((count - Self.maxSize) * 4 / 3, Self.maxSize / 2)
        sweep(now: now, idle: Self.entryTimeout, goal: goal)
    }

    /// Walks the buckets after the rover, removing entries idle `idle` or longer (`time_before(now,
    /// lastuse + idle)` keeps an entry), bucket by bucket until `goal` entries went (nil: all buckets).
    private mutating func sweep(now: Int64, idle: Int64, goal: Int?) {
        var remaining = goal ?? Int.max
        var j = rover
        for _ in 0..<Self.bucketCount {
            j = (j + 1) & (Self.bucketCount - 1)
            var i = heads[j]
            while i != Self.none {
                let following = next[Int(i)]
                if now - lastUse[Int(i)] >= idle {
                    remove(Int(i))
                    remaining -= 1
                }
                i = following
            }
            if remaining <= 0 { break }
        }
        rover = j
    }
}
