// What the engine and table fuzz targets share, compiled into both by scripts/fuzz (it is no target of
// its own): the input reader, the lab's addresses (198.18.0.0/15 only), the parsing of a target's
// rules variants, and the packet helpers both drive an Engine with. Each target's oracles and its
// choice of packets stay in its own file.
import MasqRules
@testable import MasqCore

// MARK: Input decoding

/// The fuzz input read front to back; past its end every byte reads 0 (and `exhausted` says so).
struct FuzzInput {
    let data: UnsafePointer<UInt8>
    let size: Int
    var at = 0

    var exhausted: Bool { at >= size }

    mutating func byte() -> UInt8 {
        guard at < size else { return 0 }
        defer { at += 1 }
        return data[at]
    }

    mutating func u16() -> UInt16 { UInt16(byte()) << 8 | UInt16(byte()) }

    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in byte() } }
}

// MARK: The fixed lab set-up (198.18.0.0/15 only)

let vip1 = IPv4Address(198, 18, 0, 1)
let vip2 = IPv4Address(198, 18, 0, 2)  // a port-0 persistent service: every port of it
/// The clients an input's new flows come from, picked by index (a target may add more after them,
/// so that the committed corpus keeps its meaning).
let clients = [IPv4Address(198, 18, 0, 12), IPv4Address(198, 18, 0, 13), IPv4Address(198, 18, 1, 13)]

/// The lab's services, the rules both targets start from: TCP :80 and UDP :53 of vip1 over two real
/// servers, TCP :22 of vip1 persistent for `sshPersistence` seconds, and every port of vip2 persistent
/// per /24 of clients (weighted least-connection over a real server of weight 1 and one of 2).
func labRules(sshPersistence: Int) -> String {
    """
    -A -t 198.18.0.1:80 -s rr
    -a -t 198.18.0.1:80 -r 198.19.0.201:8080 -m -w 1
    -a -t 198.18.0.1:80 -r 198.19.0.202:8080 -m -w 1
    -A -u 198.18.0.1:53 -s rr
    -a -u 198.18.0.1:53 -r 198.19.0.201:5353 -m
    -a -u 198.18.0.1:53 -r 198.19.0.202:5353 -m
    -A -t 198.18.0.1:22 -s rr -p \(sshPersistence)
    -a -t 198.18.0.1:22 -r 198.19.0.201:22 -m
    -a -t 198.18.0.1:22 -r 198.19.0.202:22 -m
    -A -t 198.18.0.2:0 -s wlc -p 30 -M 255.255.255.0
    -a -t 198.18.0.2:0 -r 198.19.0.203 -m
    -a -t 198.18.0.2:0 -r 198.19.0.202 -m -w 2
    """
}

/// A target's rules variants, parsed as ipvsadm-restore text (numeric names only: no resolver in a
/// fuzz run). One that does not parse is a bug of the set-up, not of an input: it stops at once.
func parseVariants(_ texts: [String]) -> [Configuration] {
    texts.map { text in
        do {
            return try RulesFile.parse(text, names: .numericOnly)
        } catch {
            fatalError("fuzz set-up: a rules variant does not parse: \(error)")
        }
    }
}

// MARK: Packets

/// A live connection (not a template) the input points at, if the table has any.
func pickConnection(_ engine: Engine, _ k: UInt8) -> Connection? {
    var live: [Connection] = []
    engine.table.forEachLive { _, c in if !c.isTemplate { live.append(c) } }
    return live.isEmpty ? nil : live[Int(k) % live.count]
}

/// Mostly one of eight ports, so that flows meet again; sometimes any.
func clientPort(_ input: inout FuzzInput) -> UInt16 {
    let b = input.byte()
    return b < 240 ? 40000 + UInt16(b % 8) : input.u16()
}

/// A new flow's client (one of `clients`, by the next byte) and its source port (`clientPort`).
func newFlowSource(_ input: inout FuzzInput, from clients: [IPv4Address]) -> (IPv4Address, UInt16) {
    let client = clients[Int(input.byte()) % clients.count]
    return (client, clientPort(&input))
}

func be16(_ p: [UInt8], _ i: Int) -> UInt16 { UInt16(p[i]) << 8 | UInt16(p[i + 1]) }
func be32(_ p: [UInt8], _ i: Int) -> UInt32 { UInt32(be16(p, i)) << 16 | UInt32(be16(p, i + 2)) }

/// Runs one packet in a buffer of exactly its size, so AddressSanitizer sees any byte read past it;
/// returns the verdict and the bytes after.
func process(_ engine: Engine, _ bytes: [UInt8], meta: PacketMeta = PacketMeta(), at now: Int64) -> (Verdict, [UInt8]) {
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
    defer { buffer.deallocate() }
    bytes.withUnsafeBytes { if let base = $0.baseAddress { buffer.copyMemory(from: base, byteCount: bytes.count) } }
    let verdict = engine.process(PacketBytes(base: buffer, count: bytes.count), meta: meta, now: now)
    return (verdict, [UInt8](UnsafeRawBufferPointer(start: buffer, count: bytes.count)))
}
