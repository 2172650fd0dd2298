// libFuzzer target: one Engine with IPv6 services (and an IPv4 one beside them) driven through packets,
// clock steps and reloads decoded from the input, with oracles after every packet and every step: a
// packet not rewritten is byte for byte what came in; a rewritten one changed only its addresses,
// ports and checksums (extension headers, payload and padding untouched), leaves with valid checksums
// when it came with them, and follows a connection the table holds; the table's counts agree with a
// walk of it.
//
// Built by scripts/fuzz against MasqCore (compiled with -enable-testing), with Fuzz/lab.swift (the
// input reader and `process`) and the unit tests' PacketBuilder (its byte helpers). Its packets and its
// oracle's chain walk are its own, not the engine's. Addresses from 2001:2::/48 (and 198.18.0.0/15).
@testable import MasqCore

// MARK: The set-up

func a6(_ text: String) -> IPv6Address { IPv6Address(text)! }

let vip6a = a6("2001:2::1"), vip6b = a6("2001:2::2")
let servers6 = [a6("2001:2:0:1::201"), a6("2001:2:0:1::202"), a6("2001:2:0:1::203")]
let router6 = a6("2001:2:0:1::fe")
/// Clients (two of one /64, one of another) and, last, a real server as a client (hairpin).
let senders6 = [a6("2001:2::12"), a6("2001:2::13"), a6("2001:2:0:5::12"), servers6[0]]

func spec6(_ proto: IPProtocol, _ vip: IPv6Address, _ port: UInt16, _ scheduler: String, persistence: UInt32? = nil,
           prefixLength: UInt8 = 128, _ servers: [(Int, UInt16, Int32)]) -> ServiceSpec {
    ServiceSpec(key: ServiceKey(proto: proto, address: vip, port: port), scheduler: scheduler, persistence: persistence,
                prefixLength: prefixLength,
                realServers: servers.map { RealServerSpec(address: servers6[$0.0], port: $0.1, weight: $0.2) })
}

let v4Service = ServiceSpec(key: ServiceKey(proto: .tcp, address: IPv4Address(198, 18, 0, 1), port: 80), scheduler: "rr",
                            realServers: [RealServerSpec(address: IPv4Address(198, 19, 0, 201), port: 8080)])

/// The configurations a run reloads between: a real server quiesced, sh instead of rr, persistence
/// changed, everything removed.
let variants6 = [
    Configuration(services: [
        spec6(.tcp, vip6a, 80, "rr", [(0, 8080, 1), (1, 8080, 1)]),
        spec6(.udp, vip6a, 53, "rr", [(0, 5353, 1), (1, 5353, 1)]),
        spec6(.tcp, vip6a, 22, "rr", persistence: 10, prefixLength: 64, [(0, 22, 1), (1, 22, 1)]),
        spec6(.tcp, vip6b, 0, "wlc", persistence: 30, prefixLength: 48, [(2, 0, 1), (1, 0, 2)]),
        v4Service,
    ]),
    Configuration(services: [
        spec6(.tcp, vip6a, 80, "sh", [(0, 8080, 1), (1, 8080, 0)]),
        spec6(.udp, vip6a, 53, "mh", [(1, 5353, 1)]),
        spec6(.tcp, vip6a, 22, "rr", persistence: 2, prefixLength: 128, [(1, 22, 1)]),
        v4Service,
    ]),
    Configuration(),
]
let longestPersistence6: Int64 = 30

// MARK: Packets, built here byte by byte

func sum16(_ p: [UInt8], _ range: Range<Int>, initial: UInt32 = 0) -> UInt16 {
    var s = initial
    var i = range.lowerBound
    while i + 1 < range.upperBound {
        s += UInt32(p[i]) << 8 | UInt32(p[i + 1])
        i += 2
    }
    if i < range.upperBound { s += UInt32(p[i]) << 8 }
    while s > 0xffff { s = (s & 0xffff) + (s >> 16) }
    return UInt16(s)
}

func put16(_ p: inout [UInt8], _ i: Int, _ v: UInt16) {
    p[i] = UInt8(v >> 8)
    p[i + 1] = UInt8(v & 0xff)
}

/// The IPv6 pseudo-header sum (RFC 8200 §8.1) of the addresses in `p`, folded, not complemented.
func pseudoSum6(_ p: [UInt8], proto: UInt8, length: Int) -> UInt16 {
    sum16(Array(p[8..<40]) + PacketBuilder.be32(UInt32(length)) + [0, 0, 0, proto], 0..<40)
}

/// Extension headers from the input: up to three, of the kinds the engine walks, lengths varied.
func extensions(_ input: inout FuzzInput) -> [(UInt8, [UInt8])] {
    let e = input.byte()
    return (0..<Int(e & 3)).map { i in
        let kind = input.byte()
        switch kind % 5 {
        case 0, 1, 2:
            let type: UInt8 = [60, 43, 0][Int(kind % 3)]
            let length = Int(kind >> 6)
            return (type, [0, UInt8(length)] + [UInt8](repeating: 0, count: (length + 1) * 8 - 2))
        default:
            // A fragment header: mostly atomic (offset 0, no M), sometimes a real fragment.
            let field: UInt16 = kind & 0x80 != 0 ? UInt16(kind & 0x78) << 3 | UInt16(kind >> 6 & 1) : 0
            return (44, [0, 0] + PacketBuilder.be16(field) + PacketBuilder.be32(UInt32(i)))
        }
    }
}

func packet6(_ source: IPv6Address, _ destination: IPv6Address, _ proto: UInt8, _ upper: [UInt8],
             extensions ext: [(UInt8, [UInt8])] = []) -> [UInt8] {
    var chain: [UInt8] = []
    for (i, e) in ext.enumerated() {
        var bytes = e.1
        bytes[0] = i + 1 < ext.count ? ext[i + 1].0 : proto
        chain += bytes
    }
    let payload = chain + upper
    return [0x60, 0, 0, 0] + PacketBuilder.be16(UInt16(payload.count)) + [ext.first?.0 ?? proto, 64]
        + source.bytes + destination.bytes + payload
}

/// A TCP (6), UDP (17) or ICMPv6 (58) upper layer, its checksum over `source`/`destination` (none with `zero`).
func upper6(_ proto: UInt8, _ source: IPv6Address, _ destination: IPv6Address, _ sport: UInt16, _ dport: UInt16,
            flags: UInt8, data: [UInt8], zero: Bool = false) -> [UInt8] {
    var u: [UInt8]
    let offset: Int
    switch proto {
    case 6:
        u = PacketBuilder.be16(sport) + PacketBuilder.be16(dport) + PacketBuilder.be32(1000) + PacketBuilder.be32(0)
            + [0x50, flags] + PacketBuilder.be16(64240) + [0, 0, 0, 0] + data
        offset = 16
    case 17:
        u = PacketBuilder.be16(sport) + PacketBuilder.be16(dport) + PacketBuilder.be16(UInt16(8 + data.count)) + [0, 0] + data
        offset = 6
    default:  // ICMPv6: sport = type << 8 | code, dport unused, data = the rest and the body
        u = [UInt8(sport >> 8), UInt8(sport & 0xff), 0, 0] + data
        offset = 2
    }
    if !zero {
        let pseudo = source.bytes + destination.bytes + PacketBuilder.be32(UInt32(u.count)) + [0, 0, 0, proto]
        var c = ~sum16(pseudo + u, 0..<(pseudo.count + u.count))
        if proto == 17 && c == 0 { c = 0xffff }
        put16(&u, offset, c)
    }
    return u
}

struct Live6 {
    var proto: UInt8
    var client: IPv6Address, virtualAddress: IPv6Address, server: IPv6Address
    var clientPort: UInt16, virtualPort: UInt16, serverPort: UInt16
}

func pickConnection6(_ engine: Engine, _ k: UInt8) -> Live6? {
    var live: [Live6] = []
    engine.table.forEachLive { slot, c in
        guard c.isIPv6, !c.isTemplate else { return }
        let a = engine.table.addresses6(slot)
        live.append(Live6(proto: c.proto.rawValue, client: a.client, virtualAddress: a.virtualAddress, server: a.server,
                          clientPort: c.clientPort, virtualPort: c.virtualPort, serverPort: c.serverPort))
    }
    return live.isEmpty ? nil : live[Int(k) % live.count]
}

func data(_ input: inout FuzzInput) -> [UInt8] {
    let n = Int(input.byte() % 48)
    return [UInt8](repeating: 0x41 &+ UInt8(n), count: n)
}

func port(_ input: inout FuzzInput) -> UInt16 {
    let b = input.byte()
    return b < 240 ? 40000 + UInt16(b % 8) : input.u16()
}

func buildPacket6(_ input: inout FuzzInput, _ engine: Engine) -> [UInt8] {
    let kind = input.byte() % 12
    let ext = extensions(&input)
    let conn = pickConnection6(engine, input.byte())
    switch kind {
    case 0, 1, 4:  // a new flow (or anything) to a service
        let client = senders6[Int(input.byte()) % senders6.count], sport = port(&input)
        let which = input.byte()
        let proto: UInt8 = kind == 4 ? 17 : 6
        let (vip, dport): (IPv6Address, UInt16) = switch which % 4 {
        case 0: (vip6a, proto == 6 ? 80 : 53)
        case 1: (vip6a, 22)
        case 2: (vip6b, UInt16(which >> 2) | 1000)
        default: (vip6a, 443)
        }
        let u = upper6(proto, client, vip, sport, dport, flags: input.byte(), data: data(&input), zero: which & 0x80 != 0 && proto == 17)
        return packet6(client, vip, proto, u, extensions: ext)
    case 2, 3, 5, 6:  // on a live connection: client → VIP, or real server → client
        let flags = input.byte(), zero = flags & 0x40 != 0 && flags & 0x80 != 0, d = data(&input)
        guard let c = conn else { return raw6(&input) }
        let inbound = kind == 2 || kind == 5
        let (s, t, sp, dp) = inbound ? (c.client, c.virtualAddress, c.clientPort, c.virtualPort)
                                     : (c.server, c.client, c.serverPort, c.clientPort)
        return packet6(s, t, c.proto, upper6(c.proto, s, t, sp, dp, flags: flags, data: d, zero: zero && c.proto == 17),
                       extensions: ext)
    case 7, 8:  // an ICMPv6 error about a live connection, from the real servers' side or the client's
        let type = input.byte(), cut = input.u16(), d = data(&input)
        guard let c = conn else { return raw6(&input) }
        let fromServers = kind == 7
        let (s, t, sp, dp) = fromServers ? (c.client, c.server, c.clientPort, c.serverPort)
                                         : (c.virtualAddress, c.client, c.virtualPort, c.clientPort)
        let inner = packet6(s, t, c.proto, upper6(c.proto, s, t, sp, dp, flags: 0x10, data: d + d + d), extensions: ext)
        let quote = cut & 0x8000 != 0 ? inner : Array(inner.prefix(Int(cut) % (inner.count + 1)))
        let source = fromServers ? (type & 0x80 != 0 ? router6 : c.server) : c.client
        let destination = fromServers ? c.client : c.virtualAddress
        let message = upper6(58, source, destination, UInt16(type % 4 + 1) << 8 | UInt16(type >> 2 & 3), 0, flags: 0,
                             data: PacketBuilder.be32(1280) + quote)
        return packet6(source, destination, 58, message)
    case 9:  // ICMPv6 of any type (echo, neighbour discovery, errors quoting junk)
        let client = senders6[Int(input.byte()) % senders6.count]
        let type = input.byte()
        return packet6(client, vip6a, 58, upper6(58, client, vip6a, UInt16(type) << 8, 0, flags: 0,
                                                  data: [0, 1, 0, 1] + input.bytes(Int(input.byte() % 64))), extensions: ext)
    case 10:
        return raw6(&input)
    default:  // an IPv4 SYN to the IPv4 service: the families share one table
        let b = PacketBuilder(source: IPv4Address(198, 18, 0, 12), destination: IPv4Address(198, 18, 0, 1))
        return b.tcp(port(&input), 80, flags: TCPFlags(rawValue: input.byte()))
    }
}

/// Arbitrary bytes behind an IPv6 fixed header (to a VIP, from a client), its payload length right or not.
func raw6(_ input: inout FuzzInput) -> [UInt8] {
    let n = Int(input.byte() % 96)
    var p = packet6(senders6[0], vip6a, input.byte(), input.bytes(n))
    if input.byte() & 1 != 0 { put16(&p, 4, input.u16()) }
    return p
}

// MARK: The oracle's own view of a packet

struct View6 {
    var upper: Int?         // where the upper layer starts
    var proto: UInt8 = 0
    var end = 0             // 40 + payload length
    var fragment = false

    init(_ p: [UInt8], bytes: Int? = nil) {
        guard p.count >= 40, p[0] >> 4 == 6 else { return }
        end = 40 + Int(be16(p, 4))
        let limit = min(end, bytes ?? p.count)
        guard end > 40, bytes != nil || end <= p.count else { return }
        var next = p[6], offset = 40, walked = 0
        while [0, 43, 60, 44, 51, 135, 139, 140].contains(next) {
            if next == 0 && offset != 40 { return }
            guard walked < 8, offset + 8 <= limit else { return }
            let length = next == 44 ? 8 : next == 51 ? (Int(p[offset + 1]) + 2) * 4 : (Int(p[offset + 1]) + 1) * 8
            guard offset + length <= limit else { return }
            if next == 44 {
                let field = be16(p, offset + 2)
                if field & 0xfff9 != 0 { fragment = true }
                if field & 0xfff8 != 0 { next = p[offset]; offset += length; break }
            }
            walked += 1
            next = p[offset]
            offset += length
        }
        proto = next
        upper = offset
    }
}

func l4Valid(_ p: [UInt8], _ v: View6) -> Bool {
    guard let u = v.upper, [6, 17, 58].contains(v.proto) else { return false }
    var segment = u..<v.end
    if v.proto == 17 {
        guard segment.count >= 8, Int(be16(p, u + 4)) >= 8, Int(be16(p, u + 4)) <= segment.count else { return false }
        segment = u..<(u + Int(be16(p, u + 4)))
        if be16(p, u + 6) == 0 { return false }
    }
    guard segment.count >= (v.proto == 6 ? 20 : 8) else { return false }
    return sum16(p, segment, initial: UInt32(pseudoSum6(p, proto: v.proto, length: segment.count))) == 0xffff
}

func fail6(_ what: String, _ before: [UInt8], _ after: [UInt8]) -> Never {
    func hex(_ b: [UInt8]) -> String { b.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }
    fatalError("engine6 oracle: \(what)\n  in:  \(hex(before))\n  out: \(hex(after))")
}

func check6(_ engine: Engine, before: [UInt8], after: [UInt8], meta: PacketMeta, verdict: Verdict) {
    guard after.count == before.count else { fail6("length changed", before, after) }
    guard case .rewritten(let direction) = verdict else {
        if after != before { fail6("\(verdict) but the bytes changed", before, after) }
        return
    }
    guard before[0] >> 4 == 6 else { return }  // IPv4: the engine target's oracles
    let v = View6(before)
    guard let u = v.upper, !v.fragment else { fail6("rewrote a packet whose chain the oracle cannot walk", before, after) }
    var allowed = Set(direction == .inbound ? 24..<40 : 8..<24)
    switch v.proto {
    case 6, 17:
        allowed.formUnion(direction == .inbound ? (u + 2)..<(u + 4) : u..<(u + 2))
        let cs = u + (v.proto == 6 ? 16 : 6)
        allowed.formUnion([cs, cs + 1])
        if meta.partialChecksumKept {
            if be16(before, cs) == pseudoSum6(before, proto: v.proto, length: v.end - u) && v.proto == 6
                && be16(after, cs) != pseudoSum6(after, proto: v.proto, length: v.end - u) {
                fail6("a kept partial checksum is not the new pseudo-header sum", before, after)
            }
        } else if meta.partialChecksum {
            if !l4Valid(after, View6(after)) { fail6("a partial checksum was not finished", before, after) }
        } else if l4Valid(before, v) && !l4Valid(after, View6(after)) {
            fail6("the rewritten L4 checksum is wrong", before, after)
        }
        let src = IPv6Address(high: beHigh(after, 8), low: beHigh(after, 16)), dst = IPv6Address(high: beHigh(after, 24), low: beHigh(after, 32))
        let reverse = FlowKey6(source: dst, destination: src, sourcePort: be16(after, u + 2), destinationPort: be16(after, u),
                               proto: IPProtocol(rawValue: v.proto))
        guard let (_, found) = engine.table.lookup(reverse), found != direction else {
            fail6("rewritten \(direction) to a tuple no connection answers for", before, after)
        }
    case 58:
        allowed.formUnion([u + 2, u + 3])
        guard l4Valid(before, v) else { fail6("translated an ICMPv6 error whose checksum was wrong", before, after) }
        guard l4Valid(after, View6(after)) else { fail6("the translated ICMPv6 checksum is wrong", before, after) }
        guard [1, 2, 3, 4].contains(before[u]) else { fail6("translated an ICMPv6 message that is no error", before, after) }
        let q = u + 8
        let quoted = Array(before[q..<v.end])
        let inner = View6(quoted, bytes: quoted.count)
        guard let iu = inner.upper else { fail6("translated an error whose quote the oracle cannot walk", before, after) }
        allowed.formUnion(direction == .inbound ? (q + 8)..<(q + 24) : (q + 24)..<(q + 40))
        allowed.formUnion(direction == .inbound ? (q + iu)..<(q + iu + 2) : (q + iu + 2)..<(q + iu + 4))
        let cs = q + iu + (inner.proto == 6 ? 16 : 6)
        allowed.formUnion([cs, cs + 1])
    default:
        fail6("rewrote an IPv6 packet that is neither TCP, UDP nor ICMPv6", before, after)
    }
    for i in 0..<before.count where before[i] != after[i] && !allowed.contains(i) {
        fail6("the rewrite changed byte \(i), which is no address, port or checksum", before, after)
    }
}

func beHigh(_ p: [UInt8], _ i: Int) -> UInt64 { UInt64(be32(p, i)) << 32 | UInt64(be32(p, i + 4)) }

/// The table's counts against a walk of it, real servers' counts against the entries naming them.
func checkTable6(_ engine: Engine) {
    var connections = 0, templates = 0
    let n = engine.destinations.count
    var active = [Int32](repeating: 0, count: n), inactive = active, persistent = active
    engine.table.forEachLive { slot, c in
        let id = Int(c.destinationID)
        guard id < n, engine.destinations[id] != nil else { fatalError("engine6 oracle: an entry names no real server") }
        if c.isIPv6 {
            let a = engine.table.addresses6(slot)
            guard engine.destinations[id]?.address == .v6(a.server) else { fatalError("engine6 oracle: an IPv6 entry's server is not its real server's") }
            guard c.client.rawValue == a.client.folded, c.server.rawValue == a.server.folded else {
                fatalError("engine6 oracle: an IPv6 entry's IPv4 fields are not its addresses' folds")
            }
        }
        let ahead = (c.expires - engine.now) / ConnectionTable.nanosPerTick
        if c.isTemplate {
            templates += 1
            persistent[id] += 1
            guard ahead <= max(longestPersistence6, 60) else { fatalError("engine6 oracle: a template expires \(ahead) s ahead") }
        } else {
            connections += 1
            if c.countedActive { active[id] += 1 } else { inactive[id] += 1 }
            guard ahead <= Int64(c.timeout) else { fatalError("engine6 oracle: a connection expires \(ahead) s ahead") }
        }
    }
    guard engine.table.connectionCount == connections, engine.table.templateCount == templates else {
        fatalError("engine6 oracle: the table counts \(engine.table.connectionCount)/\(engine.table.templateCount), a walk \(connections)/\(templates)")
    }
    for (i, d) in engine.destinations.enumerated() {
        guard let d else { continue }
        guard d.activeConnections == active[i], d.inactiveConnections == inactive[i], d.persistentConnections == persistent[i] else {
            fatalError("engine6 oracle: \(d.address.endpoint(d.port)) counts \(d.activeConnections)/\(d.inactiveConnections)/\(d.persistentConnections), the table \(active[i])/\(inactive[i])/\(persistent[i])")
        }
    }
    let k = engine.counters
    guard k.packets == k.untouched + k.rewrittenInbound + k.rewrittenOutbound + k.droppedTotal else {
        fatalError("engine6 oracle: the packet counters do not add up")
    }
}

// MARK: The run

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data: data, size: size)
    let setup = input.byte()
    let engine = Engine(configuration: variants6[Int(setup >> 2) % variants6.count], capacity: [4, 16, 64, 1024][Int(setup & 3)])
    let outbox = SyncOutbox(capacity: 16)
    engine.syncOutbox = setup & 0x80 != 0 ? outbox : nil
    let updates = UnsafeMutableBufferPointer<SyncUpdate>.allocate(capacity: 16)
    updates.initialize(repeating: SyncUpdate(proto: .tcp, state: .none, isActive: false, client: IPv4Address(rawValue: 0),
                                             clientPort: 0, virtualAddress: IPv4Address(rawValue: 0), virtualPort: 0,
                                             server: IPv4Address(rawValue: 0), serverPort: 0, timeout: 0))
    defer { updates.deallocate() }
    var now: Int64 = 0
    var steps = 0
    while !input.exhausted && steps < 256 {
        steps += 1
        let op = input.byte()
        switch op & 0x0f {
        case 0...10:
            now += Int64(input.byte()) * 100_000_000
            var p = buildPacket6(&input, engine)
            let m = input.byte()
            for _ in 0..<Int(m & 0x03) where !p.isEmpty { p[Int(input.byte()) % p.count] = input.byte() }
            if m & 0x04 != 0 { p = Array(p.prefix(Int(input.u16()) % (p.count + 1))) }
            if m & 0x08 != 0 { p += [UInt8](repeating: 0, count: Int(input.byte() % 32)) }
            let v = View6(p)
            if m & 0x30 != 0, let u = v.upper, v.proto == 6 || v.proto == 17, v.end <= p.count, v.end - u >= (v.proto == 6 ? 20 : 8) {
                put16(&p, u + (v.proto == 6 ? 16 : 6), pseudoSum6(p, proto: v.proto, length: v.proto == 6 ? v.end - u : Int(be16(p, u + 4))))
            }
            let meta = PacketMeta(partialChecksum: m & 0x10 != 0, truncated: m & 0x40 != 0, partialChecksumKept: m & 0x20 != 0)
            let (verdict, after) = process(engine, p, meta: meta, at: now)
            check6(engine, before: p, after: after, meta: meta, verdict: verdict)
        case 11:
            now += Int64(input.byte()) * 1_000_000_000
            engine.advanceClock(to: now)
        case 12:
            engine.apply(variants6[Int(input.byte()) % variants6.count])
        case 13, 14:
            // A backup's side: what the master pushed (or the table's own entries, as a walk sends
            // them), applied again, sometimes for another client port.
            var cursor: UInt32? = UInt32(input.byte())
            let n = op & 0x0f == 13 ? outbox.pop(into: updates) : engine.collectSyncable(from: &cursor, into: updates)
            for u in updates[0..<n] {
                var update = u
                if input.byte() & 1 != 0 { update.clientPort &+= 1 }
                _ = engine.applySynced(update)
            }
        default:
            engine.expireNodestConnections.toggle()
        }
        checkTable6(engine)
    }
    return 0
}
