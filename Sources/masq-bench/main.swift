// The in-process engine benchmark: runs the packet path over a synthetic flow mix on one core and
// prints ns/packet, packets/s and heap allocations per packet for established flows, the same with
// connection sync on (an outbox drained and encoded by a consumer thread, as the daemon's sender),
// the sync encoder's rate and the datagrams new flows cost, the rate of new flows, memory per flow
// with the table filled to `--memory-flows`, and the cost of expiring them; the established and
// new-flow figures with the table in a state file (a shared mapping) against private memory, and the
// time a restart's adoption of `--restart-flows` connections takes to the first packet handled; and the
// established and new-flow figures and memory per flow for IPv6 (2001:2::/48) beside IPv4's.
// Not a test: figures, not assertions, except `--check-allocations`, which fails when the established
// path allocates at all, with sync off or on.
import CMallocCounter
import MasqCore
import MasqRules
import MasqSync
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

struct Options {
    var flows = 100_000
    var packets = 10_000_000
    var newFlows = 1_000_000
    var memoryFlows = 1_000_000
    var restartFlows = 1_000_000
    /// Where the bench's state files go: tmpfs, /dev/shm as masq's default, or a tmpfs mounted with
    /// `huge=within_size` to see what 2 MiB pages give a table in a shared mapping.
    var stateDirectory = "/dev/shm"
    var checkAllocations = false

    init(_ args: [String]) {
        var i = 1
        while i < args.count {
            let next = i + 1 < args.count ? Int(args[i + 1]) : nil
            switch args[i] {
            case "--flows": flows = next ?? flows; i += 1
            case "--packets": packets = next ?? packets; i += 1
            case "--new-flows": newFlows = next ?? newFlows; i += 1
            case "--memory-flows": memoryFlows = next ?? memoryFlows; i += 1
            case "--restart-flows": restartFlows = next ?? restartFlows; i += 1
            case "--state-dir": stateDirectory = i + 1 < args.count ? args[i + 1] : stateDirectory; i += 1
            case "--quick": flows = 10_000; packets = 1_000_000; newFlows = 100_000; memoryFlows = 100_000; restartFlows = 100_000
            case "--check-allocations": checkAllocations = true
            default:
                print("usage: masq-bench [--flows N] [--packets N] [--new-flows N] [--memory-flows N] [--restart-flows N] [--state-dir DIR] [--quick] [--check-allocations]")
                exit(2)
            }
            i += 1
        }
    }
}

func nanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Writes a TCP/IPv4 packet with valid checksums into `p` (40 bytes + payload).
func writeTCP(_ p: PacketBytes, src: UInt32, dst: UInt32, sport: UInt16, dport: UInt16, flags: UInt8, payload: Int) {
    let total = 40 + payload
    for i in 0..<total { p.setU8(UInt8(truncatingIfNeeded: i &* 31), i) }
    p.setU8(0x45, 0); p.setU8(0, 1); p.setU16(UInt16(total), 2); p.setU16(1, 4); p.setU16(0x4000, 6)
    p.setU8(64, 8); p.setU8(6, 9); p.setU16(0, 10); p.setU32(src, 12); p.setU32(dst, 16)
    p.setU16(InternetChecksum.compute(p.slice(from: 0, count: 20)), 10)
    let t = p.slice(from: 20, count: 20 + payload)
    t.setU16(sport, 0); t.setU16(dport, 2); t.setU32(1, 4); t.setU32(1, 8); t.setU8(0x50, 12); t.setU8(flags, 13)
    t.setU16(65535, 14); t.setU16(0, 16); t.setU16(0, 18)
    let pseudo = InternetChecksum.pseudoHeader(source: src, destination: dst, protocol: .tcp, length: t.count)
    t.setU16(InternetChecksum.compute(t, initial: pseudo), 16)
}

let options = Options(CommandLine.arguments)

// The counter must see Swift's own allocations, or every "0 allocations" below would mean nothing.
let probeBefore = masq_allocation_count()
let probe = [Int](repeating: 1, count: Int(CommandLine.arguments.count) + 1000)
guard masq_allocation_count() > probeBefore, probe.count > 0 else {
    print("FAIL: the allocation counter does not see Swift's allocations")
    exit(1)
}
let stride = 128
let payload = 64
let vip: UInt32 = 0xC612_0001       // 198.18.0.1
let rules = """
    -A -t 198.18.0.1:80 -s rr
    -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m
    -a -t 198.18.0.1:80 -r 198.19.0.202:80 -m
    -a -t 198.18.0.1:80 -r 198.19.0.203:80 -m
    -a -t 198.18.0.1:80 -r 198.19.0.204:80 -m
    """
let configuration = try! RulesFile.parse(rules)

func clientAddress(_ i: Int) -> UInt32 { 0xC612_0100 &+ UInt32(i >> 14) }   // 198.18.1.0 upwards
func clientPort(_ i: Int) -> UInt16 { UInt16(1024 + (i & 0x3fff)) }

// MARK: Established flows

let engineCapacity = options.flows + options.newFlows + 16
let engine = Engine(configuration: configuration, capacity: engineCapacity)
let templates = UnsafeMutableRawPointer.allocate(byteCount: options.flows * 2 * stride, alignment: 64)
let work = UnsafeMutableRawPointer.allocate(byteCount: stride, alignment: 64)
var now: Int64 = 1_000_000_000

/// Opens the established flows in `target` (a SYN each); with `writeTemplates`, then replaces each
/// SYN with the flow's steady traffic: client data in, server data out. A second engine filled so
/// (fresh, same configuration, same order) picks the same real servers, so the packets fit it too.
func openFlows(_ target: Engine, writeTemplates: Bool) {
    for i in 0..<options.flows {
        let syn = PacketBytes(base: (writeTemplates ? templates + (2 * i) * stride : work), count: 40)
        writeTCP(syn, src: clientAddress(i), dst: vip, sport: clientPort(i), dport: 80, flags: 0x02, payload: 0)
        _ = target.process(syn, now: now)
        guard writeTemplates else { continue }
        let server = syn.u32(16)
        let inbound = PacketBytes(base: templates + (2 * i) * stride, count: 40 + payload)
        writeTCP(inbound, src: clientAddress(i), dst: vip, sport: clientPort(i), dport: 80, flags: 0x10, payload: payload)
        let outbound = PacketBytes(base: templates + (2 * i + 1) * stride, count: 40 + payload)
        writeTCP(outbound, src: server, dst: clientAddress(i), sport: 80, dport: clientPort(i), flags: 0x10, payload: payload)
    }
}
openFlows(engine, writeTemplates: true)

// A fixed pseudo-random walk over the flows, both directions, so the table is hit like real traffic.
var order = [Int32](repeating: 0, count: 1 << 20)
var x: UInt64 = 0x9E37_79B9_7F4A_7C15
for k in order.indices {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17
    order[k] = Int32(truncatingIfNeeded: x % UInt64(options.flows * 2))
}

// The daemon receives up to 64 packets per recvmmsg into one buffer and then runs them through the
// engine; the benchmark does the same, so a packet's bytes are in cache when the engine sees them.
let batchSize = 64
let batch = UnsafeMutableRawPointer.allocate(byteCount: batchSize * stride, alignment: 64)

enum Mode { case copyOnly, inOrder, prefetching }

/// The bench's packets as the engine's batch source: `count` packets of `length` bytes, `stride` apart,
/// all at one time (as a receive batch is).
struct BenchBatch: PacketBatchSource {
    let base: UnsafeMutableRawPointer
    let count: Int
    let length: Int
    let now: Int64
    func packet(_ k: Int) -> PacketBytes { PacketBytes(base: base + k * stride, count: length) }
    func meta(_ k: Int) -> PacketMeta { PacketMeta() }
    func time(_ k: Int) -> Int64 { now }
}

/// Counts the rewritten verdicts (the daemon's sink puts them in a verdict batch instead).
struct CountRewritten: VerdictSink {
    var rewritten = 0
    mutating func take(_ verdict: Verdict?, of index: Int, _ packet: PacketBytes) -> Bool {
        if case .rewritten? = verdict { rewritten &+= 1 }
        return true
    }
}

/// `source`: the flows' packets, inbound and outbound of each in turn (IPv4's by default, or IPv6's);
/// `length`: each packet's bytes.
func runEstablished(_ mode: Mode, on engine: Engine = engine, source: UnsafeMutableRawPointer = templates,
                    length: Int = 40 + payload) -> (ns: Double, allocations: UInt64, rewritten: Int) {
    var rewritten = 0
    let mask = order.count - 1
    let allocationsBefore = masq_allocation_count()
    let start = nanoseconds()
    order.withUnsafeBufferPointer { walk in
        var n = 0
        while n < options.packets {
            let count = min(batchSize, options.packets - n)
            for k in 0..<count {
                batch.advanced(by: k * stride).copyMemory(from: source + Int(walk[(n + k) & mask]) * stride,
                                                          byteCount: length)
            }
            func packet(_ k: Int) -> PacketBytes { PacketBytes(base: batch + k * stride, count: length) }
            switch mode {
            case .copyOnly:
                for k in 0..<count { rewritten &+= Int(batch.load(fromByteOffset: k * stride + 9, as: UInt8.self)) }
            case .inOrder:
                for k in 0..<count {
                    if case .rewritten = engine.process(packet(k), now: now) { rewritten &+= 1 }
                }
            case .prefetching:  // as the daemon runs a batch: the one driver call, prefetching ahead
                var sink = CountRewritten()
                engine.process(batch: BenchBatch(base: batch, count: count, length: length, now: now), into: &sink)
                rewritten &+= sink.rewritten
            }
            n += count
        }
    }
    let elapsed = nanoseconds() - start
    return (Double(elapsed) / Double(options.packets), masq_allocation_count() - allocationsBefore, rewritten)
}

// MARK: Connection sync's consumer

/// A placeholder the sync buffers start filled with.
let blankUpdate = SyncUpdate(proto: .tcp, state: .none, isActive: false, client: IPv4Address(rawValue: 0),
                             clientPort: 0, virtualAddress: IPv4Address(rawValue: 0), virtualPort: 0,
                             server: IPv4Address(rawValue: 0), serverPort: 0, timeout: 0)

/// The master sync daemon's sender, minus the socket: drains the outbox every millisecond (the
/// daemon's is at most 10 ms; no signal from the packet thread), converts each update to its wire
/// entry and packs them into datagrams of at most 1472 bytes with `SyncEncoder`, all into buffers
/// allocated once, so the allocation check counts its thread too.
final class SyncConsumer {
    let outbox: SyncOutbox
    let stopping = Atomic<Bool>(false)
    private let updates = UnsafeMutableBufferPointer<SyncUpdate>.allocate(capacity: 256)
    private var entries: [SyncEntry] = []
    private var datagram: [UInt8] = []
    /// Written by the consumer thread only, read after it has been joined.
    private(set) var entryCount = 0
    private(set) var datagramCount = 0
    private var thread = pthread_t()

    init(_ outbox: SyncOutbox) {
        self.outbox = outbox
        entries.reserveCapacity(updates.count)
        datagram.reserveCapacity(SyncTransport.defaultMaxLength)
        updates.initialize(repeating: blankUpdate)
    }

    deinit { updates.deallocate() }

    func start() {
        pthread_create(&thread, nil, { context in
            let consumer = Unmanaged<SyncConsumer>.fromOpaque(context!).takeUnretainedValue()
            while !consumer.stopping.load(ordering: .acquiring) {
                consumer.drain()
                usleep(1000)
            }
            consumer.drain()
            return nil
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    func stop() {
        stopping.store(true, ordering: .releasing)
        pthread_join(thread, nil)
    }

    /// Everything queued, into as many datagrams as it takes.
    func drain() {
        while true {
            let n = outbox.pop(into: updates)
            guard n > 0 else { return }
            encode(UnsafeMutableBufferPointer(rebasing: updates[0..<n]))
        }
    }

    /// Converts and encodes `batch`, counting entries, datagrams and bytes.
    func encode(_ batch: UnsafeMutableBufferPointer<SyncUpdate>) {
        entries.removeAll(keepingCapacity: true)
        for update in batch { entries.append(SyncEntry(update)) }
        var offset = 0
        while offset < entries.count {
            let taken = try! SyncEncoder.encode(entries[offset...], syncID: 1, into: &datagram)
            offset += taken
            entryCount += taken
            datagramCount += 1
        }
    }
}

typealias SyncedRun = (run: (ns: Double, allocations: UInt64, rewritten: Int), pushed: UInt64, dropped: UInt64,
                      entries: Int, datagrams: Int)

/// The established run with sync on: the engine pushing into an outbox that a consumer thread drains
/// and encodes meanwhile; the outbox detached afterwards.
func runEstablishedSynced() -> SyncedRun {
    let outbox = SyncOutbox(capacity: 1 << 16)
    let consumer = SyncConsumer(outbox)
    consumer.start()
    engine.syncOutbox = outbox
    let result = runEstablished(.prefetching)
    engine.syncOutbox = nil
    consumer.stop()
    return (result, outbox.pushed, outbox.dropped, consumer.entryCount, consumer.datagramCount)
}

_ = runEstablished(.prefetching)  // warm up
let baseline = runEstablished(.copyOnly)
let inOrder = runEstablished(.inOrder)
let established = runEstablished(.prefetching)
// Sync on and off in turn, three times, the best of each: the ratio should not be the noise of a
// shared core.
var syncedRuns: [SyncedRun] = []
var syncOffNs = established.ns
for _ in 0..<3 {
    syncedRuns.append(runEstablishedSynced())
    syncOffNs = min(syncOffNs, runEstablished(.prefetching).ns)
}
let syncOn = syncedRuns.min { $0.run.ns < $1.run.ns }!

// MARK: The table in a state file (a shared mapping) against private memory

/// A state file of the bench's own in `--state-dir` (/dev/shm), unlinked at once (the mapping keeps it while used).
func sharedTable(capacity: Int, tag: String) -> TableMemory {
    let path = "\(options.stateDirectory)/masq-bench-\(getpid())-\(tag).table"
    let memory: TableMemory
    do {
        memory = try TableMemory.shared(path: path, capacity: capacity, fresh: true)
    } catch {
        print("FAIL: \(error)")
        exit(1)
    }
    unlink(path)
    return memory
}

let sharedEngine = Engine(configuration: configuration, memory: sharedTable(capacity: engineCapacity, tag: "established"))
openFlows(sharedEngine, writeTemplates: false)
// In turn, three times each, the best of each: the ratio should not be the noise of a shared core.
var sharedRuns: [(ns: Double, allocations: UInt64, rewritten: Int)] = []
var privateNs = established.ns
for _ in 0..<3 {
    sharedRuns.append(runEstablished(.prefetching, on: sharedEngine))
    privateNs = min(privateNs, runEstablished(.prefetching).ns)
}
let sharedEstablished = sharedRuns.min { $0.ns < $1.ns }!

// MARK: New flows

/// Runs `count` SYNs from distinct clients (source addresses from `sourceBase` up) through `target`
/// in batches of 64, as the daemon would receive them, one engine millisecond per batch; with
/// `process` false it only builds them (the cost subtracted from the timed runs).
func runSYNs(_ target: Engine, count: Int, sourceBase: UInt32, process: Bool = true) -> Double {
    runSYNs(target, count: count, length: 40, process: process) { syn, i in
        writeTCP(syn, src: sourceBase &+ UInt32(i >> 14), dst: vip, sport: clientPort(i), dport: 80, flags: 0x02, payload: 0)
    }
}

/// `runSYNs` of any family: `write(p, i)` writes the `i`-th flow's SYN of `length` bytes into `p`.
func runSYNs(_ target: Engine, count: Int, length: Int, process: Bool = true, write: (PacketBytes, Int) -> Void) -> Double {
    var clock: Int64 = now
    let start = nanoseconds()
    var i = 0
    func syn(_ k: Int) -> PacketBytes { PacketBytes(base: batch + k * stride, count: length) }
    while i < count {
        let n = min(batchSize, count - i)
        for k in 0..<n { write(syn(k), i + k) }
        if process {
            var sink = CountRewritten()
            target.process(batch: BenchBatch(base: batch, count: n, length: length, now: clock), into: &sink)
        }
        clock += 1_000_000
        i += n
    }
    return Double(nanoseconds() - start) / Double(count)
}

let writeNs = runSYNs(engine, count: options.newFlows, sourceBase: 0xC614_0000, process: false)
let createdBefore = engine.counters.connectionsCreated
let newFlowAllocationsBefore = masq_allocation_count()
let newFlowNs = runSYNs(engine, count: options.newFlows, sourceBase: 0xC613_0000)
let newFlows = (ns: newFlowNs, allocations: masq_allocation_count() - newFlowAllocationsBefore,
                created: engine.counters.connectionsCreated - createdBefore)

// New flows into a table of each kind, in turn, three times each: first into pages never touched
// (each first touch a page fault: 2 MiB anonymous pages, 4 KiB tmpfs ones unless the host enables
// shmem THP), then, once those flows expired, into the same pages again, as a director that has run
// a while does.
var privateNewNs = (cold: Double.infinity, warm: Double.infinity), sharedNewNs = (cold: Double.infinity, warm: Double.infinity)
func newFlowRounds(_ target: Engine) -> (cold: Double, warm: Double) {
    let cold = runSYNs(target, count: options.newFlows, sourceBase: 0xC613_0000)
    target.advanceClock(to: target.now + 120 * 1_000_000_000)  // SYN_RECV is 60 s: all expire
    return (cold, runSYNs(target, count: options.newFlows, sourceBase: 0xC613_8000))
}
for round in 0..<3 {
    let p = newFlowRounds(Engine(configuration: configuration, capacity: options.newFlows + 16))
    privateNewNs = (min(privateNewNs.cold, p.cold), min(privateNewNs.warm, p.warm))
    let s = newFlowRounds(Engine(configuration: configuration,
                                 memory: sharedTable(capacity: options.newFlows + 16, tag: "new\(round)")))
    sharedNewNs = (min(sharedNewNs.cold, s.cold), min(sharedNewNs.warm, s.warm))
}

func format(_ v: Double, _ digits: Int = 1) -> String {
    var s = String(Int((v * pow(10, Double(digits))).rounded()))
    while s.count <= digits { s = "0" + s }
    if digits > 0 { s.insert(".", at: s.index(s.endIndex, offsetBy: -digits)) }
    return s
}

let establishedNet = established.ns - baseline.ns
let newNet = newFlows.ns - writeNs
print("masq-bench: in-process engine, one core, \(options.flows) established flows, \(options.packets) packets of \(40 + payload) bytes in batches of \(batchSize)")
print("established: \(format(established.ns)) ns/packet incl. \(format(baseline.ns)) ns copying into the batch = \(format(establishedNet)) ns net; "
      + "\(format(1000 / max(establishedNet, 0.001), 2)) M packets/s; "
      + "allocations/packet \(format(Double(established.allocations) / Double(options.packets), 4)) "
      + "(\(established.rewritten) rewritten)")
let inOrderNet = inOrder.ns - baseline.ns
print("             without prefetching ahead in the batch: \(format(inOrderNet)) ns net, \(format(1000 / max(inOrderNet, 0.001), 2)) M packets/s "
      + "(prefetching: \(format(inOrderNet / max(establishedNet, 0.001), 2))x)")
let syncOnNet = syncOn.run.ns - baseline.ns, syncOffNet = syncOffNs - baseline.ns
print("sync:        established with an outbox drained and encoded by a consumer thread: \(format(syncOnNet)) ns net, "
      + "\(format(1000 / max(syncOnNet, 0.001), 2)) M packets/s against \(format(1000 / max(syncOffNet, 0.001), 2)) M without "
      + "= \(format(syncOffNet / max(syncOnNet, 0.001), 2))x (target >= 0.90x; best of 3 each, alternating); "
      + "allocations/packet \(format(Double(syncOn.run.allocations) / Double(options.packets), 4)) "
      + "(\(syncOn.pushed) updates pushed, \(syncOn.dropped) dropped, \(syncOn.entries) entries in \(syncOn.datagrams) datagrams)")

print("new flows:   \(format(newFlows.ns)) ns/flow incl. \(format(writeNs)) ns building the SYN = \(format(newNet)) ns net; "
      + "\(format(1000 / max(newNet, 0.001), 2)) M flows/s; "
      + "allocations/flow \(format(Double(newFlows.allocations) / Double(options.newFlows), 4)) "
      + "(\(newFlows.created) created, table \(engine.table.connectionCount))")

let privateNet = privateNs - baseline.ns, sharedNet = sharedEstablished.ns - baseline.ns
print("state file:  established with the table in a shared mapping (\(options.stateDirectory)): \(format(sharedNet)) ns net, "
      + "\(format(1000 / max(sharedNet, 0.001), 2)) M packets/s against \(format(1000 / max(privateNet, 0.001), 2)) M in private memory "
      + "= \(format(privateNet / max(sharedNet, 0.001), 2))x (target >= 0.95x; best of 3 each, alternating); "
      + "new flows \(format(sharedNewNs.warm - writeNs)) ns net against \(format(privateNewNs.warm - writeNs)) = "
      + "\(format((privateNewNs.warm - writeNs) / max(sharedNewNs.warm - writeNs, 0.001), 2))x into pages used before, "
      + "\(format(sharedNewNs.cold - writeNs)) against \(format(privateNewNs.cold - writeNs)) = "
      + "\(format((privateNewNs.cold - writeNs) / max(sharedNewNs.cold - writeNs, 0.001), 2))x into pages never touched; "
      + "allocations/packet \(format(Double(sharedEstablished.allocations) / Double(options.packets), 4))")

// MARK: IPv6 (2001:2::/48): the established path and new flows, as the IPv4 rows above

/// Writes a TCP/IPv6 packet with a valid checksum into `p` (60 bytes + payload; no extension headers).
func writeTCP6(_ p: PacketBytes, src: IPv6Address, dst: IPv6Address, sport: UInt16, dport: UInt16, flags: UInt8,
               payload: Int) {
    let total = 60 + payload
    for i in 0..<total { p.setU8(UInt8(truncatingIfNeeded: i &* 31), i) }
    p.setU32(0x6000_0000, 0); p.setU16(UInt16(20 + payload), 4); p.setU8(6, 6); p.setU8(64, 7)
    src.store(to: p, at: 8); dst.store(to: p, at: 24)
    let t = p.slice(from: 40, count: 20 + payload)
    t.setU16(sport, 0); t.setU16(dport, 2); t.setU32(1, 4); t.setU32(1, 8); t.setU8(0x50, 12); t.setU8(flags, 13)
    t.setU16(65535, 14); t.setU16(0, 16); t.setU16(0, 18)
    let pseudo = InternetChecksum.pseudoHeader(source: src, destination: dst, protocol: .tcp, length: t.count)
    t.setU16(InternetChecksum.compute(t, initial: pseudo), 16)
}

let vip6 = IPv6Address(high: 0x2001_0002_0000_0000, low: 1)  // 2001:2::1
let configuration6 = Configuration(services: [
    ServiceSpec(key: ServiceKey(proto: .tcp, address: vip6, port: 80), scheduler: "rr",
                realServers: (1...4).map { RealServerSpec(address: IPv6Address(high: 0x2001_0002_0000_0001, low: 0x200 + UInt64($0)), port: 80) }),
])
/// 2001:2:0:100::/64 and up: 16384 client ports per address, as the IPv4 clients.
func clientAddress6(_ i: Int, base: UInt64 = 0x2001_0002_0000_0100) -> IPv6Address {
    IPv6Address(high: base, low: 0x12 &+ UInt64(i >> 14))
}

let engine6 = Engine(configuration: configuration6, capacity: engineCapacity)
let templates6 = UnsafeMutableRawPointer.allocate(byteCount: options.flows * 2 * stride, alignment: 64)
for i in 0..<options.flows {
    let syn = PacketBytes(base: templates6 + (2 * i) * stride, count: 60)
    writeTCP6(syn, src: clientAddress6(i), dst: vip6, sport: clientPort(i), dport: 80, flags: 0x02, payload: 0)
    _ = engine6.process(syn, now: now)
    let server = IPv6Address(syn, at: 24)
    writeTCP6(PacketBytes(base: templates6 + (2 * i) * stride, count: 60 + payload), src: clientAddress6(i), dst: vip6,
              sport: clientPort(i), dport: 80, flags: 0x10, payload: payload)
    writeTCP6(PacketBytes(base: templates6 + (2 * i + 1) * stride, count: 60 + payload), src: server, dst: clientAddress6(i),
              sport: 80, dport: clientPort(i), flags: 0x10, payload: payload)
}
// IPv4 and IPv6 in turn, three times each, the best of each: the ratio should not be a shared core's noise.
var established6Runs: [(ns: Double, allocations: UInt64, rewritten: Int)] = []
var established4Ns = established.ns
for _ in 0..<3 {
    established6Runs.append(runEstablished(.prefetching, on: engine6, source: templates6, length: 60 + payload))
    established4Ns = min(established4Ns, runEstablished(.prefetching).ns)
}
let established6 = established6Runs.min { $0.ns < $1.ns }!
let baseline6 = runEstablished(.copyOnly, source: templates6, length: 60 + payload)

/// `count` IPv6 SYNs from distinct clients (from the /64 `base` up) through `target`, as `runSYNs`.
func runSYNs6(_ target: Engine, count: Int, base: UInt64, process: Bool = true) -> Double {
    runSYNs(target, count: count, length: 60, process: process) { syn, i in
        writeTCP6(syn, src: clientAddress6(i, base: base), dst: vip6, sport: clientPort(i), dport: 80, flags: 0x02, payload: 0)
    }
}
let write6Ns = runSYNs6(engine6, count: options.newFlows, base: 0x2001_0002_0000_0300, process: false)
let created6Before = engine6.counters.connectionsCreated
let newFlow6AllocationsBefore = masq_allocation_count()
let newFlow6Ns = runSYNs6(engine6, count: options.newFlows, base: 0x2001_0002_0000_0200)
let newFlow6Allocations = masq_allocation_count() - newFlow6AllocationsBefore
let created6 = engine6.counters.connectionsCreated - created6Before

let established6Net = established6.ns - baseline6.ns, established4Net = established4Ns - baseline.ns
print("ipv6:        established \(format(established6Net)) ns net (\(60 + payload)-byte packets), "
      + "\(format(1000 / max(established6Net, 0.001), 2)) M packets/s against \(format(1000 / max(established4Net, 0.001), 2)) M for IPv4 "
      + "= \(format(established4Net / max(established6Net, 0.001), 2))x (best of 3 each, alternating); "
      + "allocations/packet \(format(Double(established6.allocations) / Double(options.packets), 4)); "
      + "new flows \(format(newFlow6Ns - write6Ns)) ns net = \(format(1000 / max(newFlow6Ns - write6Ns, 0.001), 2)) M flows/s "
      + "(IPv4 \(format(newNet)) ns); allocations/flow \(format(Double(newFlow6Allocations) / Double(options.newFlows), 4)) "
      + "(\(created6) created)")

if options.checkAllocations {
    guard established.allocations == 0, established.rewritten == options.packets,
          inOrder.allocations == 0, inOrder.rewritten == options.packets else {
        print("FAIL: the established path allocated \(established.allocations) times or missed packets")
        exit(1)
    }
    for run in syncedRuns {
        guard run.run.allocations == 0, run.run.rewritten == options.packets, run.pushed > 0,
              run.entries == Int(run.pushed) else {
            print("FAIL: with sync on, the established path and its consumer allocated \(run.run.allocations) times, "
                  + "missed packets or lost updates (\(run.pushed) pushed, \(run.entries) encoded)")
            exit(1)
        }
    }
    for run in sharedRuns where run.allocations != 0 || run.rewritten != options.packets {
        print("FAIL: with the table in a shared mapping, the established path allocated \(run.allocations) times or missed packets")
        exit(1)
    }
    for run in established6Runs where run.allocations != 0 || run.rewritten != options.packets {
        print("FAIL: the IPv6 established path allocated \(run.allocations) times or missed packets")
        exit(1)
    }
    print("ok: no heap allocation on the established path, with sync off and on, in private memory and in a state file, IPv4 and IPv6")
}

// MARK: Connection sync: the encoder, and what new flows cost

do {
    // The whole table as a full resend walks it (collectSyncable slices of 256), then converted and
    // encoded as the sender does, timed: entries per second one core packs into datagrams.
    var walked: [SyncUpdate] = []
    walked.reserveCapacity(engine.table.connectionCount)
    let slice = UnsafeMutableBufferPointer<SyncUpdate>.allocate(capacity: 256)
    slice.initialize(repeating: blankUpdate)
    var cursor: UInt32? = 0
    let walkStart = nanoseconds()
    while cursor != nil {
        let n = engine.collectSyncable(from: &cursor, into: slice)
        walked.append(contentsOf: slice[0..<n])
    }
    let walkNs = Double(nanoseconds() - walkStart) / Double(max(walked.count, 1))
    slice.deallocate()
    let consumer = SyncConsumer(SyncOutbox(capacity: 2))
    let rounds = max(1, 2_000_000 / max(walked.count, 1))
    let allocationsBefore = masq_allocation_count()
    let encodeStart = nanoseconds()
    walked.withUnsafeMutableBufferPointer { all in
        for _ in 0..<rounds {
            // Slices of 240 (6 full datagrams): what a sender with a backlog packs.
            var i = 0
            while i < all.count {
                let n = min(240, all.count - i)
                consumer.encode(UnsafeMutableBufferPointer(rebasing: all[i..<(i + n)]))
                i += n
            }
        }
    }
    let encodeNs = Double(nanoseconds() - encodeStart) / Double(max(consumer.entryCount, 1))
    let allocations = masq_allocation_count() - allocationsBefore
    let perDatagram = Double(consumer.entryCount) / Double(max(consumer.datagramCount, 1))
    print("encoder:     \(format(encodeNs)) ns per entry (SyncUpdate -> SyncEntry -> SyncEncoder v1, \(format(perDatagram, 1)) entries "
          + "per datagram of at most \(SyncTransport.defaultMaxLength) bytes) = \(format(1000 / max(encodeNs, 0.001), 2)) M entries/s "
          + "= \(format(1e6 / max(encodeNs * perDatagram, 0.001), 1)) k datagrams/s; allocations/datagram "
          + "\(format(Double(allocations) / Double(max(consumer.datagramCount, 1)), 4)); "
          + "the table walk (collectSyncable) \(format(walkNs)) ns per entry sent (\(walked.count) of \(engine.table.connectionCount))")

    // A short TCP flow's whole life on a master with sync on: handshake, a request and its answer,
    // FIN both ways. Its updates are the entries a new flow costs; at 100,000 new flows per second,
    // the datagrams per second follow from the entries per datagram.
    let flows = 10_000
    let shortLived = Engine(configuration: configuration, capacity: flows + 16)
    let outbox = SyncOutbox(capacity: 1 << 16)
    shortLived.syncOutbox = outbox
    var clock = now
    func send(_ src: UInt32, _ dst: UInt32, _ sport: UInt16, _ dport: UInt16, _ flags: UInt8, payload: Int = 0) -> UInt32 {
        let p = PacketBytes(base: work, count: 40 + payload)
        writeTCP(p, src: src, dst: dst, sport: sport, dport: dport, flags: flags, payload: payload)
        _ = shortLived.process(p, now: clock)
        clock += 10_000
        return p.u32(16)
    }
    for i in 0..<flows {
        let client = 0xC615_0000 &+ UInt32(i >> 14), port = clientPort(i)
        let server = send(client, vip, port, 80, 0x02)                       // SYN
        _ = send(server, client, 80, port, 0x12)                            // SYN-ACK
        _ = send(client, vip, port, 80, 0x10)                                // ACK
        _ = send(client, vip, port, 80, 0x18, payload: 64)                   // request
        _ = send(server, client, 80, port, 0x18, payload: 64)                // answer
        _ = send(client, vip, port, 80, 0x11)                                // client FIN
        _ = send(server, client, 80, port, 0x11)                             // server FIN
        _ = send(client, vip, port, 80, 0x10)                                // last ACK
    }
    let entriesPerFlow = Double(outbox.pushed) / Double(flows)
    // What the first flow sent, in order (the outbox holds every flow's updates).
    let sent = UnsafeMutableBufferPointer<SyncUpdate>.allocate(capacity: outbox.count)
    sent.initialize(repeating: blankUpdate)
    let firstFlow = sent[0..<outbox.pop(into: sent)].filter { $0.clientPort == clientPort(0) && $0.client == .v4(IPv4Address(rawValue: 0xC615_0000)) }
    sent.deallocate()
    let perDatagramMax = (SyncTransport.defaultMaxLength - 8) / SyncEntry.fixedLength
    let newFlowRate = 100_000.0
    let datagramsPerSecond = newFlowRate * entriesPerFlow / Double(perDatagramMax)
    print("sync flows:  a short TCP flow (handshake, request, answer, FIN both ways) sends \(format(entriesPerFlow, 2)) entries "
          + "(\(firstFlow.map { "\($0.state)" }.joined(separator: ", "))); \(Int(newFlowRate)) new flows/s = \(Int(newFlowRate * entriesPerFlow)) entries/s "
          + "= \(Int(datagramsPerSecond.rounded(.up))) datagrams/s of \(perDatagramMax) entries "
          + "(\(format(newFlowRate * entriesPerFlow * encodeNs / 1e7, 2))% of one core encoding)")
}

// MARK: Memory per flow and expiry cost

/// Resident set size in bytes (/proc/self/statm, second field, in pages).
func residentBytes() -> Int {
    guard let f = fopen("/proc/self/statm", "r") else { return 0 }
    defer { fclose(f) }
    var size = 0, resident = 0
    guard withUnsafeMutablePointer(to: &size, { s in
        withUnsafeMutablePointer(to: &resident) { r in withVaList([s, r]) { vfscanf(f, "%ld %ld", $0) } }
    }) == 2 else { return 0 }
    return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
}

do {
    // A table of the daemon's default capacity, filled with `memoryFlows` TCP connections (SYN each).
    let filled = Engine(configuration: configuration)
    let flows = min(options.memoryFlows, filled.table.capacity)
    let rssBefore = residentBytes()
    let fillNs = runSYNs(filled, count: flows, sourceBase: 0xC612_4000) - writeNs
    let perFlow = Double(residentBytes() - rssBefore) / Double(flows)
    let held = filled.table.connectionCount
    print("memory:      \(held) flows in a table of capacity \(filled.table.capacity): RSS +\(format(perFlow)) bytes/flow "
          + "(Connection \(MemoryLayout<Connection>.stride) B; slab + index reserve \(filled.table.reservedBytes / filled.table.capacity) B per capacity entry); "
          + "filled at \(format(fillNs)) ns/flow = \(format(1000 / max(fillNs, 0.001), 2)) M flows/s")
    // Every flow is in SYN_RECV (60 s): a clock step past that expires the whole table in one sweep.
    let expireStart = nanoseconds()
    filled.advanceClock(to: filled.now + 120 * 1_000_000_000)
    let expireNs = Double(nanoseconds() - expireStart) / Double(max(held, 1))
    print("expiry:      \(format(expireNs)) ns per expired flow (\(held - filled.table.connectionCount) expired in one clock step, "
          + "\(filled.table.connectionCount) left)")
}

do {
    // The same for IPv6 flows: the slab's entry plus the addresses' sidecar.
    let filled = Engine(configuration: configuration6)
    let flows = min(options.memoryFlows, filled.table.capacity)
    let rssBefore = residentBytes()
    let fillNs = runSYNs6(filled, count: flows, base: 0x2001_0002_0000_4000) - write6Ns
    let perFlow = Double(residentBytes() - rssBefore) / Double(flows)
    print("memory ipv6: \(filled.table.connectionCount) flows in a table of capacity \(filled.table.capacity): RSS +\(format(perFlow)) bytes/flow "
          + "(Connection \(MemoryLayout<Connection>.stride) B + ConnectionAddresses6 \(MemoryLayout<ConnectionAddresses6>.stride) B); "
          + "filled at \(format(fillNs)) ns/flow = \(format(1000 / max(fillNs, 0.001), 2)) M flows/s")
}

// MARK: A SYN flood against a full table (early drop)

do {
    // The issue's attack in-process: `--max-flows 20000` full of half-open entries, then every new SYN
    // (spoofed or not) must evict one: the cost of a new flow then, against one into free room.
    let small = Engine(configuration: configuration, capacity: 20_000)
    _ = runSYNs(small, count: 20_000, sourceBase: 0xC612_8000)
    let allocationsBefore = masq_allocation_count()
    let floodNs = runSYNs(small, count: options.newFlows, sourceBase: 0xC612_C000) - writeNs
    let allocations = masq_allocation_count() - allocationsBefore
    let evicted = small.counters[EvictionReason.halfOpenTCP]
    print("flood:       \(format(floodNs)) ns per new flow into a full table of 20000 half-open entries "
          + "(\(evicted) evicted, \(small.counters[.tableFull]) refused; \(format(floodNs / max(newNet, 0.001), 2))x a new flow with room); "
          + "allocations/flow \(format(Double(allocations) / Double(options.newFlows), 4))")
}

// MARK: Restart: adopting a state file of `restartFlows` connections

do {
    // A masq that held the flows exits (cleanly, or as if killed: no clean mark); the next one opens
    // the file, adopts it and handles the first packet of an established flow. Timed from the open
    // to that packet's verdict: the gap the table adds to a restart (the process start and the queue
    // bind come on top, see scripts/e2e-restart).
    let path = "\(options.stateDirectory)/masq-bench-\(getpid())-restart.table"
    defer { unlink(path) }
    let flows = options.restartFlows
    let capacity = max(Engine.defaultCapacity, flows + 16)
    let rulesForRestart = configuration
    func open() -> TableMemory {
        do {
            return try TableMemory.shared(path: path, capacity: capacity)
        } catch {
            print("FAIL: \(error)")
            exit(1)
        }
    }
    let clientBase: UInt32 = 0xC612_4000
    var restartClock = now  // the engine clock at the exit: the next masq's first packet comes 2 s later
    do {
        let first = Engine(configuration: rulesForRestart, memory: open())
        _ = runSYNs(first, count: flows, sourceBase: clientBase)
        guard first.table.connectionCount == flows else {
            print("FAIL: the restart table holds \(first.table.connectionCount) of \(flows) flows")
            exit(1)
        }
        first.markCleanShutdown()
        restartClock = first.now
    }
    /// The first flow's client ACK: an established packet the adopting engine must find and rewrite.
    func firstPacket(_ target: Engine) -> Bool {
        let p = PacketBytes(base: work, count: 40)
        writeTCP(p, src: clientBase, dst: vip, sport: clientPort(0), dport: 80, flags: 0x10, payload: 0)
        if case .rewritten(.inbound) = target.process(p, now: restartClock + 2_000_000_000) { return true }
        return false
    }
    func adopt(markCleanAfter: Bool) -> (openMs: Double, engineMs: Double, packetMs: Double, report: AdoptionReport?, found: Bool) {
        let t0 = nanoseconds()
        let memory = open()
        let t1 = nanoseconds()
        let adopted = Engine(configuration: rulesForRestart, memory: memory)
        let t2 = nanoseconds()
        let found = firstPacket(adopted)
        let t3 = nanoseconds()
        if markCleanAfter { adopted.markCleanShutdown() }
        func ms(_ a: UInt64, _ b: UInt64) -> Double { Double(b - a) / 1e6 }
        return (ms(t0, t1), ms(t1, t2), ms(t2, t3), adopted.adoption, found)
    }
    let clean = adopt(markCleanAfter: false)  // of a clean exit; leaves the file unclean, so the next is a crash's
    let crash = adopt(markCleanAfter: true)
    for (name, run) in [("clean exit", clean), ("after a kill", crash)] {
        guard let report = run.report, run.found, report.connections == flows else {
            print("FAIL: restart (\(name)): adopted \(run.report?.connections ?? 0) of \(flows) flows, first packet found: \(run.found)")
            exit(1)
        }
        let total = run.openMs + run.engineMs + run.packetMs
        let recount = report.recountNanoseconds.map { ", of which the recount pass \(format(Double($0) / 1e6, 2)) ms" } ?? ""
        print("restart:     \(name), \(report.connections) flows adopted: \(format(total, 2)) ms to the first packet handled "
              + "(open and validate \(format(run.openMs, 2)) ms, engine and registry \(format(run.engineMs, 2)) ms\(recount), "
              + "first packet \(format(run.packetMs, 3)) ms; target < 100 ms)")
    }
}
