// libFuzzer target: one Engine driven through a sequence of packets, clock steps, reloads and counter
// resets decoded from the input, with oracles checked after every packet and every step.
//
// Built by scripts/fuzz against MasqCore (compiled with -enable-testing) and the unit tests'
// PacketBuilder, whose from-scratch checksums are the templates' and the oracle's reference, with
// Fuzz/lab.swift (the input reader, the lab's addresses, the packet helpers it shares with `table`).
@testable import MasqCore

// MARK: The fixed lab set-up (198.18.0.0/15 only; vip1, vip2 and the clients are lab.swift's)

/// The lab's clients and, last, a real server as a client (hairpin).
let senders = clients + [IPv4Address(198, 19, 0, 201)]
let router = IPv4Address(198, 19, 0, 254)

/// The configurations a run reloads between: the first is the one it starts with (unless the first
/// byte says otherwise). Each changes something IPVS keeps across a reload: a real server removed
/// (its flows drain), a weight set to 0 (quiesced), a persistence timeout lowered or raised, a
/// service becoming persistent, services removed altogether.
let variants = parseVariants([
    labRules(sshPersistence: 10),
    """
    -A -t 198.18.0.1:80 -s rr
    -a -t 198.18.0.1:80 -r 198.19.0.201:8080 -m -w 1
    -A -u 198.18.0.1:53 -s rr
    -a -u 198.18.0.1:53 -r 198.19.0.201:5353 -m -w 0
    -a -u 198.18.0.1:53 -r 198.19.0.202:5353 -m
    -A -t 198.18.0.1:22 -s rr -p 300
    -a -t 198.18.0.1:22 -r 198.19.0.201:22 -m
    -a -t 198.18.0.1:22 -r 198.19.0.202:22 -m
    -A -u 198.18.0.2:0 -s rr -p 20
    -a -u 198.18.0.2:0 -r 198.19.0.203 -m
    """,
    """
    -A -t 198.18.0.1:80 -s sh
    -a -t 198.18.0.1:80 -r 198.19.0.201:8080 -m -w 1
    -a -t 198.18.0.1:80 -r 198.19.0.202:8080 -m -w 1
    -a -t 198.18.0.1:80 -r 198.19.0.203:8080 -m -w 3
    -A -t 198.18.0.1:22 -s rr -p 2
    -a -t 198.18.0.1:22 -r 198.19.0.202:22 -m
    """,
    "",
    """
    -A -t 198.18.0.1:80 -s wrr -p 60
    -a -t 198.18.0.1:80 -r 198.19.0.201:8080 -m -w 0
    -a -t 198.18.0.1:80 -r 198.19.0.202:8080 -m -w 0
    -A -u 198.18.0.1:53 -s lc
    -a -u 198.18.0.1:53 -r 198.19.0.202:5353 -m
    -A -t 198.18.0.1:22 -s rr -p 10
    -a -t 198.18.0.1:22 -r 198.19.0.201:22 -m
    -a -t 198.18.0.1:22 -r 198.19.0.202:22 -m
    -A -t 198.18.0.2:0 -s wlc -p 5 -M 255.255.255.0
    -a -t 198.18.0.2:0 -r 198.19.0.203 -m
    """,
])

/// The longest persistence any variant sets: no template's expiry may lie further ahead than this or
/// the 60 s re-check.
let longestPersistence: Int64 = 300

let capacities = [4, 16, 64, 1024]

// MARK: Checksums from scratch (bounds-checked: the bytes may be anything)

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

/// Ones'-complement equality: 0x0000 and 0xffff are the same number.
func sameSum(_ a: UInt16, _ b: UInt16) -> Bool { a == b || (a | b == 0xffff && (a == 0 || b == 0)) }

/// The pseudo-header sum (RFC 793, RFC 768), folded, not complemented: what a CHECKSUM_PARTIAL field holds.
func pseudoSum(_ p: [UInt8], proto: UInt8, length: Int) -> UInt16 {
    let s = UInt32(be16(p, 12)) + UInt32(be16(p, 14)) + UInt32(be16(p, 16)) + UInt32(be16(p, 18))
        + UInt32(proto) + UInt32(length)
    return sum16([], 0..<0, initial: s)
}

/// How the L4 checksum field of a packet is to be read (the meta flags the packet comes with).
enum ChecksumMode { case full, partial, kept }

/// What the oracle needs to know of a packet, computed without the engine's code.
struct Anatomy {
    var ipValid = false       // well-formed IPv4 header, inside the bytes, checksum right
    var headerLength = 0
    var totalLength = 0
    var proto: UInt8 = 0
    var fragment = false
    /// Where the L4 segment the engine works on lies (TCP: to the total length; UDP: its own length).
    var segment: Range<Int>?
    var checksumOffset = 0    // absolute
    var l4Valid = false       // per the mode; ICMP: the message checksum
    /// ICMP errors: where the quoted header and its ports start, whether the quote is whole.
    var quoted: Int?
    var quotedHeaderLength = 0
    var quotedProto: UInt8 = 0
    var quotedChecksumOffset: Int?  // absolute, when the quoted L4 checksum field is inside the quote
    var quotedL4Valid = false       // the whole quoted datagram is there and its L4 checksum verifies
    var quotedIPValid = false

    init(_ p: [UInt8], mode: ChecksumMode) {
        guard p.count >= 20, p[0] >> 4 == 4 else { return }
        headerLength = Int(p[0] & 0x0f) * 4
        totalLength = Int(be16(p, 2))
        guard headerLength >= 20, headerLength <= totalLength, totalLength <= p.count else { return }
        guard sum16(p, 0..<headerLength) == 0xffff else { return }
        ipValid = true
        proto = p[9]
        fragment = be16(p, 6) & 0x3fff != 0
        let l4 = headerLength..<totalLength
        switch proto {
        case 6, 17:
            guard !fragment else { return }
            var seg = l4
            if proto == 6 {
                guard l4.count >= 20, Int(p[l4.lowerBound + 12] >> 4) * 4 >= 20,
                      Int(p[l4.lowerBound + 12] >> 4) * 4 <= l4.count else { return }
                checksumOffset = l4.lowerBound + 16
            } else {
                guard l4.count >= 8 else { return }
                let length = Int(be16(p, l4.lowerBound + 4))
                guard length >= 8, length <= l4.count else { return }
                seg = l4.lowerBound..<(l4.lowerBound + length)
                checksumOffset = l4.lowerBound + 6
            }
            segment = seg
            let field = be16(p, checksumOffset)
            switch mode {
            case .full:
                l4Valid = (proto == 17 && field == 0) || sum16(p, seg, initial: UInt32(pseudoSum(p, proto: proto, length: seg.count))) == 0xffff
            case .partial, .kept:
                l4Valid = sameSum(field, pseudoSum(p, proto: proto, length: seg.count))
            }
        case 1:
            guard !fragment, l4.count >= 8 else { return }
            segment = l4
            checksumOffset = l4.lowerBound + 2
            l4Valid = sum16(p, l4) == 0xffff
            guard [3, 4, 11, 12].contains(p[l4.lowerBound]) else { return }
            let q = l4.lowerBound + 8
            guard l4.upperBound - q >= 20, p[q] >> 4 == 4 else { return }
            let qhl = Int(p[q] & 0x0f) * 4
            guard qhl >= 20, l4.upperBound - q >= qhl + 8, p[q + 9] == 6 || p[q + 9] == 17 else { return }
            quoted = q
            quotedHeaderLength = qhl
            quotedProto = p[q + 9]
            quotedIPValid = sum16(p, q..<(q + qhl)) == 0xffff
            let ports = q + qhl
            let csum = ports + (quotedProto == 6 ? 16 : 6)
            if csum + 2 <= l4.upperBound { quotedChecksumOffset = csum }
            let innerTotal = Int(be16(p, q + 2))
            // A whole quote (the engine folds the change into its L4 checksum): check it stays right.
            if innerTotal == l4.upperBound - q, quotedChecksumOffset != nil, be16(p, q + 6) & 0x3fff == 0 {
                let segLength = innerTotal - qhl
                let s = UInt32(be16(p, q + 12)) + UInt32(be16(p, q + 14)) + UInt32(be16(p, q + 16))
                    + UInt32(be16(p, q + 18)) + UInt32(quotedProto) + UInt32(segLength)
                let udpLengthRight = quotedProto == 6 || Int(be16(p, ports + 4)) == segLength
                quotedL4Valid = udpLengthRight && ((quotedProto == 17 && be16(p, csum) == 0)
                    || sum16(p, ports..<(q + innerTotal), initial: s) == 0xffff)
            }
        default:
            break
        }
    }
}

// MARK: Packet templates

func payload(_ input: inout FuzzInput) -> [UInt8] {
    let n = Int(input.byte() % 48)
    return [UInt8](repeating: 0x41 &+ UInt8(n), count: n)
}

/// One packet built from the input: a template chosen by a byte, with fields from the input or from a
/// live connection so that replies and ICMP errors find their flows.
func buildPacket(_ input: inout FuzzInput, _ engine: Engine) -> (bytes: [UInt8], mode: ChecksumMode, meta: PacketMeta) {
    let kind = input.byte() % 12
    let options = input.byte()
    var packet: [UInt8]
    func builder(_ source: IPv4Address, _ destination: IPv4Address) -> PacketBuilder {
        var b = PacketBuilder(source: source, destination: destination)
        if options & 0x80 != 0 { b.options = [UInt8](repeating: 0x01, count: Int(options & 0x03) * 4) }
        if options & 0x40 != 0 { b.flagsAndFragment = options & 0x20 != 0 ? 0x2000 : 0x0010 | UInt16(options & 0x0f) }
        return b
    }
    let conn = pickConnection(engine, input.byte())
    switch kind {
    case 0, 1:  // a new TCP connection (or anything TCP) to a service
        let (client, sport) = newFlowSource(&input, from: senders)
        let which = input.byte()
        let (vip, dport): (IPv4Address, UInt16) = switch which % 4 {
        case 0: (vip1, 80)
        case 1: (vip1, 22)
        case 2: (vip2, UInt16(which >> 2) | 1000)
        default: (vip1, which & 0x80 != 0 ? 443 : 53)
        }
        packet = builder(client, vip).tcp(sport, dport, flags: TCPFlags(rawValue: input.byte()), payload: payload(&input))
    case 2, 3:  // TCP on a live connection: client → VIP, or real server → client
        let flags = TCPFlags(rawValue: input.byte())
        let data = payload(&input)
        guard let c = conn else { return buildRaw(&input) }
        packet = kind == 2
            ? builder(c.client, c.virtualAddress).tcp(c.clientPort, c.virtualPort, flags: flags, payload: data)
            : builder(c.server, c.client).tcp(c.serverPort, c.clientPort, flags: flags, payload: data)
    case 4:  // a new UDP flow
        let (client, sport) = newFlowSource(&input, from: senders)
        let which = input.byte()
        let (vip, dport): (IPv4Address, UInt16) = which & 1 == 0 ? (vip1, which & 2 == 0 ? 53 : 54) : (vip2, UInt16(which >> 1))
        packet = builder(client, vip).udp(sport, dport, payload: payload(&input), zeroChecksum: which & 0x80 != 0)
    case 5, 6:  // UDP on a live connection, either way
        let zero = input.byte() & 1 != 0
        let data = payload(&input)
        guard let c = conn else { return buildRaw(&input) }
        packet = kind == 5
            ? builder(c.client, c.virtualAddress).udp(c.clientPort, c.virtualPort, payload: data, zeroChecksum: zero)
            : builder(c.server, c.client).udp(c.serverPort, c.clientPort, payload: data, zeroChecksum: zero)
    case 7, 8:  // an ICMP error about a live connection: from the real servers' side or the client's
        let typeByte = input.byte()
        let type: UInt8 = [3, 11, 12, 4][Int(typeByte) % 4]
        let quoteMode = input.byte()
        let data = payload(&input)
        guard let c = conn else { return buildRaw(&input) }
        let innerBuilder = kind == 7 ? PacketBuilder(source: c.client, destination: c.server)
                                     : PacketBuilder(source: c.virtualAddress, destination: c.client)
        let (sp, dp) = kind == 7 ? (c.clientPort, c.serverPort) : (c.virtualPort, c.clientPort)
        let quotedProto = quoteMode & 0x40 != 0 ? (c.proto == .tcp ? IPProtocol.udp : .tcp) : c.proto
        let inner = quotedProto == .tcp ? innerBuilder.tcp(sp, dp, flags: [.ack], payload: data)
                                        : innerBuilder.udp(sp, dp, payload: data)
        let quote: [UInt8] = switch quoteMode % 3 {
        case 0: Array(inner.prefix(28))  // RFC 792: header + 8 bytes
        case 1: inner                    // RFC 1812: as much as fits
        default: Array(inner.prefix(Int(quoteMode >> 2) % (inner.count + 1)))
        }
        let source = kind == 7 ? (typeByte & 0x80 != 0 ? router : c.server) : c.client
        let destination = kind == 7 ? c.client : c.virtualAddress
        packet = builder(source, destination).icmp(type: type, code: typeByte >> 2 & 0x0f, rest: 1400, body: quote)
    case 9:  // ICMP that quotes nothing, or something unknown
        let client = senders[Int(input.byte()) % senders.count]
        packet = builder(client, vip1).icmp(type: input.byte(), code: 0, rest: 0x0001_0001, body: payload(&input))
    case 10:
        return buildRaw(&input)
    default:  // another IP protocol, or IPv6 / version junk in the first nibble
        let b = input.byte()
        packet = builder(senders[0], b & 1 == 0 ? vip1 : vip2).ip(b >> 1, payload(&input))
        if b & 0x80 != 0 { packet[0] = 0x60 | (packet[0] & 0x0f) }
    }
    return finish(packet, &input)
}

/// Arbitrary bytes as a packet, optionally given a consistent IPv4 header so they get further.
func buildRaw(_ input: inout FuzzInput) -> (bytes: [UInt8], mode: ChecksumMode, meta: PacketMeta) {
    let n = Int(input.byte() % 96)
    var packet = input.bytes(n)
    if packet.count >= 20 && packet[0] & 1 != 0 {
        packet[0] = 0x45
        put16(&packet, 2, UInt16(packet.count))
        put16(&packet, 10, 0)
        put16(&packet, 10, ~sum16(packet, 0..<20))
    }
    return (packet, .full, PacketMeta())
}

/// Byte mutations, checksums redone or not, truncation, padding and the meta flags.
func finish(_ built: [UInt8], _ input: inout FuzzInput) -> (bytes: [UInt8], mode: ChecksumMode, meta: PacketMeta) {
    var p = built
    let m = input.byte()
    let metaByte = input.byte()
    // The kernel's CHECKSUM_PARTIAL form (the folded pseudo-header sum in the field), before mutating.
    let mode: ChecksumMode = [.full, .partial, .kept, .full][Int(metaByte & 3)]
    if mode != .full {
        let a = Anatomy(p, mode: .full)
        if let seg = a.segment, a.proto == 6 || a.proto == 17 {
            put16(&p, a.checksumOffset, pseudoSum(p, proto: a.proto, length: seg.count))
        }
    }
    for _ in 0..<Int(m & 0x07) {
        let offset = Int(input.byte())
        let value = input.byte()
        if !p.isEmpty { p[offset % p.count] = value }
    }
    if m & 0x08 != 0 && p.count >= 20 {
        // Redo the IP header checksum so the mutation is seen past the header check.
        let hl = min(Int(p[0] & 0x0f) * 4, p.count)
        if hl >= 12 {
            put16(&p, 10, 0)
            put16(&p, 10, ~sum16(p, 0..<hl))
        }
    }
    if m & 0x10 != 0 {
        let a = Anatomy(p, mode: .full)
        if let seg = a.segment, a.ipValid {
            put16(&p, a.checksumOffset, 0)
            let initial: UInt32 = a.proto == 1 ? 0 : UInt32(pseudoSum(p, proto: a.proto, length: seg.count))
            var c = ~sum16(p, seg, initial: initial)
            if a.proto == 17 && c == 0 { c = 0xffff }
            put16(&p, a.checksumOffset, mode == .full || a.proto == 1 ? c : pseudoSum(p, proto: a.proto, length: seg.count))
        }
    }
    if m & 0x20 != 0 { p = Array(p.prefix(Int(input.byte()) % (p.count + 1))) }
    if m & 0x40 != 0 { p += [UInt8](repeating: 0, count: Int(input.byte() % 32)) }  // Ethernet padding
    var meta = PacketMeta(partialChecksum: mode == .partial || metaByte & 3 == 3,
                          truncated: metaByte & 4 != 0, partialChecksumKept: mode == .kept)
    if meta.truncated && p.count > 1 { p.removeLast(Int(metaByte >> 3) % p.count) }  // as a snap length does
    if metaByte & 0x80 != 0 { meta.partialChecksumKept = true }  // both flags at once: kept wins in the engine
    return (p, meta.partialChecksumKept ? .kept : meta.partialChecksum ? .partial : .full, meta)
}

// MARK: Oracles

/// `precondition` with its message kept: -O builds drop precondition messages, fatalError keeps its.
@inline(__always) func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}

func fail(_ what: String, _ before: [UInt8], _ after: [UInt8]? = nil) -> Never {
    func hex(_ b: [UInt8]) -> String {
        b.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }
    fatalError("engine oracle: \(what)\n  in:  \(hex(before))" + (after.map { "\n  out: \(hex($0))" } ?? ""))
}

/// Checks one packet's verdict and bytes against what came in.
func checkPacket(_ engine: Engine, before: [UInt8], after: [UInt8], mode: ChecksumMode, meta: PacketMeta,
                 verdict: Verdict) {
    guard after.count == before.count else { fail("length changed", before, after) }
    guard case .rewritten(let direction) = verdict else {
        // Accepted untouched, or dropped: the engine must not have written a byte.
        if after != before { fail("\(verdict) but the bytes changed", before, after) }
        return
    }
    if meta.truncated { fail("a truncated packet was rewritten", before, after) }
    let a = Anatomy(before, mode: mode)
    guard a.ipValid else { fail("rewrote a packet whose IP header is malformed or fails its checksum", before, after) }
    let b = Anatomy(after, mode: mode == .partial ? .full : mode)
    guard b.ipValid, b.totalLength == a.totalLength, b.headerLength == a.headerLength else {
        fail("rewritten packet's IP header is no longer valid", before, after)
    }
    let hl = a.headerLength
    // Which bytes a rewrite may touch: addresses, ports, checksums; nothing else (payload, padding).
    var allowed: Set<Int> = [10, 11]
    allowed.formUnion(direction == .inbound ? 16..<20 : 12..<16)
    switch a.proto {
    case 6, 17:
        allowed.formUnion(direction == .inbound ? (hl + 2)..<(hl + 4) : hl..<(hl + 2))
        allowed.formUnion([a.checksumOffset, a.checksumOffset + 1])
        switch mode {
        case .full:
            if a.l4Valid && !b.l4Valid { fail("rewritten \(a.proto == 6 ? "TCP" : "UDP") leaves with a bad checksum", before, after) }
        case .partial:
            // The engine finishes the checksum from scratch, whatever the field held.
            if !b.l4Valid { fail("partial checksum not finished right", before, after) }
        case .kept:
            if a.l4Valid && !b.l4Valid { fail("kept partial checksum is not the new pseudo-header sum", before, after) }
        }
        // The rewrite must follow a connection in the table: inbound to its real server, outbound from its VIP.
        let src = IPv4Address(rawValue: be32(after, 12)), dst = IPv4Address(rawValue: be32(after, 16))
        let sport = be16(after, hl), dport = be16(after, hl + 2)
        // The reverse of what leaves is the connection's other direction.
        let key = FlowKey(source: dst, destination: src, sourcePort: dport, destinationPort: sport, proto: IPProtocol(rawValue: a.proto))
        guard let (slot, found) = engine.table.lookup(key), found != direction else {
            fail("rewritten \(direction) to a tuple no connection answers for", before, after)
        }
        let c = engine.table[slot]
        let origSrc = IPv4Address(rawValue: be32(before, 12)), origDst = IPv4Address(rawValue: be32(before, 16))
        let ok = direction == .inbound
            ? c.client == origSrc && c.virtualAddress == origDst && c.virtualPort == be16(before, hl + 2)
            : c.server == origSrc && c.serverPort == be16(before, hl) && c.client == origDst
        if !ok { fail("rewritten \(direction) along a connection that is not this packet's", before, after) }
    case 1:
        allowed.formUnion([a.checksumOffset, a.checksumOffset + 1])
        guard let q = a.quoted else { fail("rewrote an ICMP message that quotes no TCP/UDP header", before, after) }
        guard a.l4Valid else { fail("translated an ICMP error whose checksum was wrong", before, after) }
        guard b.l4Valid else { fail("translated ICMP error leaves with a bad ICMP checksum", before, after) }
        guard b.quoted != nil, b.quotedIPValid else { fail("translated ICMP error's quoted IP header is invalid", before, after) }
        let ports = q + a.quotedHeaderLength
        allowed.formUnion([q + 10, q + 11])
        allowed.formUnion(direction == .inbound ? (q + 12)..<(q + 16) : (q + 16)..<(q + 20))
        allowed.formUnion(direction == .inbound ? ports..<(ports + 2) : (ports + 2)..<(ports + 4))
        if let cs = a.quotedChecksumOffset { allowed.formUnion([cs, cs + 1]) }
        if a.quotedL4Valid && !b.quotedL4Valid {
            fail("translated ICMP error: the whole quoted datagram's L4 checksum went bad", before, after)
        }
    default:
        fail("rewrote a packet that is neither TCP, UDP nor ICMP", before, after)
    }
    for i in 0..<before.count where before[i] != after[i] && !allowed.contains(i) {
        fail("rewrite changed byte \(i), which is no address, port or checksum", before, after)
    }
}

/// The table's own counts against a walk of it, destinations' counts against the connections naming
/// them, templates' controlled counts against their connections, and expiry: after the clock has moved,
/// no entry may still be live past its expiry second (the wheel missed it), and none may expire further
/// ahead than its timeout allows.
func checkTable(_ engine: Engine) {
    let table = engine.table
    let nowTick = engine.now / ConnectionTable.nanosPerTick
    var entries: [UInt32: Connection] = [:]
    var connections = 0, templates = 0
    let n = engine.destinations.count
    var active = [Int32](repeating: 0, count: n), inactive = active, persistent = active
    var controlled: [UInt32: UInt32] = [:]
    table.forEachLive { slot, c in
        entries[slot] = c
        let id = Int(c.destinationID)
        require(id < n, "engine oracle: an entry names destination \(id) of \(n)")
        require(engine.destinations[id] != nil, "engine oracle: an entry names a released destination")
        require(engine.destinations[id]?.serviceID == c.serviceID,
                     "engine oracle: an entry's service is not its destination's")
        require(c.expires / ConnectionTable.nanosPerTick >= nowTick,
                     "engine oracle: \(c.isTemplate ? "template" : "connection") \(c.client):\(c.clientPort) → \(c.virtualAddress):\(c.virtualPort) is live at \(nowTick) s, past its expiry \(c.expires / ConnectionTable.nanosPerTick) s (controlled \(c.controlled))")
        let ahead = (c.expires - engine.now) / ConnectionTable.nanosPerTick
        if c.isTemplate {
            templates += 1
            persistent[id] += 1
            require(ahead <= max(longestPersistence, 60), "engine oracle: a template expires \(ahead) s ahead")
        } else {
            connections += 1
            if c.countedActive { active[id] += 1 } else { inactive[id] += 1 }
            require(c.countedActive == (c.state == .established),
                         "engine oracle: \(c.state) connection counted \(c.countedActive ? "active" : "inactive")")
            require(ahead <= Int64(c.timeout), "engine oracle: a connection expires \(ahead) s ahead, its timeout is \(c.timeout) s")
            if c.controller != ConnectionTable.noSlot { controlled[c.controller, default: 0] += 1 }
        }
    }
    require(table.connectionCount == connections,
                 "engine oracle: connectionCount \(table.connectionCount), \(connections) live connections")
    require(table.templateCount == templates, "engine oracle: templateCount \(table.templateCount), \(templates) live templates")
    require(engine.flowRecords().count == connections + templates, "engine oracle: flowRecords() misses entries")
    for (slot, count) in controlled {
        guard let t = entries[slot], t.isTemplate else { fatalError("engine oracle: a connection's controller is no live template") }
        require(t.controlled == count, "engine oracle: template controls \(t.controlled), \(count) connections name it")
    }
    for (slot, c) in entries where c.isTemplate {
        require(c.controlled == controlled[slot] ?? 0, "engine oracle: template controls \(c.controlled), none name it")
    }
    for (slot, c) in entries where !c.isTemplate && c.controller != ConnectionTable.noSlot {
        require(entries[c.controller]!.destinationID == c.destinationID,
                     "engine oracle: connection in slot \(slot) is not on its template's real server")
    }
    for (i, d) in engine.destinations.enumerated() {
        guard let d else { continue }
        require(d.activeConnections == active[i] && d.inactiveConnections == inactive[i]
                     && d.persistentConnections == persistent[i],
                     "engine oracle: \(d.address):\(d.port) counts \(d.activeConnections)/\(d.inactiveConnections)/\(d.persistentConnections), the table has \(active[i])/\(inactive[i])/\(persistent[i])")
    }
    let k = engine.counters
    require(k.packets == k.untouched + k.rewrittenInbound + k.rewrittenOutbound + k.droppedTotal,
                 "engine oracle: packet counters do not add up")
}

// MARK: The run

/// Runs one packet (in a buffer of exactly its size: `process`) and checks its verdict and bytes.
func processAndCheck(_ engine: Engine, _ built: (bytes: [UInt8], mode: ChecksumMode, meta: PacketMeta), at now: Int64) {
    let (verdict, after) = process(engine, built.bytes, meta: built.meta, at: now)
    checkPacket(engine, before: built.bytes, after: after, mode: built.mode, meta: built.meta, verdict: verdict)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data: data, size: size)
    let setup = input.byte()
    let engine = Engine(configuration: variants[Int(setup >> 3) % variants.count], capacity: capacities[Int(setup & 3)])
    engine.expireNodestConnections = setup & 4 != 0
    var now: Int64 = 0
    var steps = 0
    while !input.exhausted && steps < 256 {
        steps += 1
        let op = input.byte()
        switch op & 0x0f {
        case 0...9:  // one packet, after a clock step of up to 25.5 s
            now += Int64(input.byte()) * 100_000_000
            processAndCheck(engine, buildPacket(&input, engine), at: now)
        case 10:  // a batch through `prefetching`, as the daemon runs NFQUEUE batches, all at one time
            now += Int64(input.byte()) * 10_000_000
            let batch = (0..<(Int(op >> 4) % 8 + 2)).map { _ in buildPacket(&input, engine) }
            var buffers = batch.map { b -> UnsafeMutableRawPointer in
                let p = UnsafeMutableRawPointer.allocate(byteCount: max(b.bytes.count, 1), alignment: 1)
                b.bytes.withUnsafeBytes { if let base = $0.baseAddress { p.copyMemory(from: base, byteCount: b.bytes.count) } }
                return p
            }
            defer { for p in buffers { p.deallocate() }; buffers = [] }
            engine.prefetching(count: batch.count, bytes: { PacketBytes(base: buffers[$0], count: batch[$0].bytes.count) }) { i in
                let b = batch[i]
                let verdict = engine.process(PacketBytes(base: buffers[i], count: b.bytes.count), meta: b.meta, now: now)
                let after = [UInt8](UnsafeRawBufferPointer(start: buffers[i], count: b.bytes.count))
                checkPacket(engine, before: b.bytes, after: after, mode: b.mode, meta: b.meta, verdict: verdict)
            }
        case 11:  // the clock alone, as the daemon's timer moves it; sometimes past a whole wheel turn
            let b = input.byte()
            now += (b & 0x80 != 0 ? Int64(b & 0x7f) * 64 : Int64(b)) * 1_000_000_000 + Int64(input.byte()) * 3_900_000
            engine.advanceClock(to: now)
        case 12:  // a reload
            engine.apply(variants[Int(input.byte()) % variants.count])
        case 13:  // ipvsadm -Z, of all or of one service
            let b = input.byte()
            engine.zeroCounters(b & 1 == 0 ? nil : engine.services.isEmpty ? nil : engine.services[Int(b >> 1) % engine.services.count].key)
        case 14:  // ipvsadm --set tcp tcpfin udp (0 keeps a value)
            var t = engine.timeouts
            t.set(tcp: UInt32(input.byte()), tcpFin: UInt32(input.byte()), udp: UInt32(input.byte()))
            engine.setTimeouts(t)
        default:
            engine.expireNodestConnections.toggle()
        }
        checkTable(engine)
    }
    return 0
}
