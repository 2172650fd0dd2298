/// What the packet path asks of an IP version, so one generic path (`Engine.transport` and what it
/// calls: state transitions, counters, timeouts, sync, persistence, early drop) serves IPv4 and IPv6,
/// as IPVS's ip_vs_core.c serves both through `ip_vs_iphdr` and `union nf_inet_addr`. Every
/// requirement is static and the path's functions are generic over the family, so the optimizer
/// specialises them per family, as it does per `TransportProtocol`: no existential, no witness table,
/// no allocation on the packet path, and the IPv4 path compiles to what it was before IPv6.
///
/// A family gives the header view with its upper-layer offset (`Packet`), the table's key for a
/// 5-tuple (`Key`: `FlowKey` or `FlowKey6`) and its lookups and insert, where an entry's addresses
/// are (IPv4: in the `Connection`; IPv6: in the table's sidecar, `ConnectionTable.addresses6`), the
/// rewrite of an address with its L4 pseudo-header checksum (RFC 1624; IPv6 has no header checksum,
/// RFC 8200 §8.1), persistence's client key (`-M` netmask or prefix length), and the answer to a new
/// flow no real server can take.
protocol AddressFamily {
    associatedtype Address: Hashable
    associatedtype Key: Hashable
    associatedtype Packet: FamilyPacket where Packet.Address == Address

    /// The key a packet with this 5-tuple is looked up by.
    static func key(source: Address, destination: Address, sourcePort: UInt16, destinationPort: UInt16,
                    proto: IPProtocol) -> Key
    static func lookup(_ table: ConnectionTable, _ key: Key) -> (slot: UInt32, direction: FlowDirection)?
    static func template(_ table: ConnectionTable, for key: Key) -> UInt32?
    /// Enters `connection` with its addresses (IPv4: already in it; IPv6: into the sidecar).
    static func insert(_ table: ConnectionTable, _ connection: Connection, _ addresses: EntryAddresses<Address>) -> UInt32?
    /// The entry's addresses: IPv4 reads them from `c` (the slot's own copy), IPv6 from the sidecar.
    static func addresses(_ table: ConnectionTable, _ slot: UInt32, _ c: Connection) -> EntryAddresses<Address>
    /// What `Connection`'s IPv4 address fields hold for `address` (an IPv6 address's fold, never used
    /// as an address: `ConnectionTable.insert(_:addresses:)` writes it too).
    static func connectionField(_ address: Address) -> IPv4Address
    /// A real server's address of this family.
    static func address(of destination: Destination) -> Address
    static func ipAddress(_ address: Address) -> IPAddress
    static func address(_ address: IPAddress) -> Address?
    /// The 32-bit word the hashing schedulers hash (`SchedulingInput`).
    static func hashWord(_ address: Address) -> UInt32

    /// Folds an address change into the L4 checksum (RFC 1624 eqn. 3: two words or eight).
    static func addressChanged(_ th: TransportHeader, from old: Address, to new: Address)
    /// The same for a field holding the uncomplemented pseudo-header sum (CHECKSUM_PARTIAL kept).
    static func pseudoHeaderSumAddressChanged(_ th: TransportHeader, from old: Address, to new: Address)
    /// Computes the L4 checksum whole over the family's pseudo-header (CHECKSUM_PARTIAL finished).
    static func finishChecksum(_ th: TransportHeader, source: Address, destination: Address, proto: IPProtocol)
    /// UDP's checksum 0 is "none" over IPv4 (RFC 768), invalid over IPv6 (RFC 8200 §8.1).
    static var zeroUDPChecksumIsInvalid: Bool { get }

    /// Whether a packet masq cannot look up (a fragment, a bad L4 header) could be one of its flows:
    /// to a VIP of `proto`, or from a real server.
    static func concernsMasq(_ engine: Engine, _ packet: Packet, proto: IPProtocol) -> Bool
    /// Queues the ICMP (or ICMPv6) port unreachable a new flow no real server can take gets.
    static func answerUnreachable(_ outbox: UnreachableOutbox, _ packet: Packet, now: Int64)
    /// The firewall-mark service of this family for `mark` (IPVS `__ip_vs_svc_fwm_find`, which also
    /// matches the family), nil if none.
    static func firewallMarkService(_ engine: Engine, _ mark: UInt32) -> VirtualService?
    /// The address a firewall-mark service's persistence template has for its virtual address: the
    /// mark in the first 32 bits (IPVS `ip_vs_sched_persist`: `union nf_inet_addr fwmark = { .ip =
    /// htonl(svc->fwmark) }`).
    static func firewallMarkAddress(_ mark: UInt32) -> Address
}

/// The header view of one packet of a family, as the generic path reads and rewrites it.
protocol FamilyPacket {
    associatedtype Address: Hashable
    var source: Address { get }
    var destination: Address { get }
    func setSource(_ address: Address)
    func setDestination(_ address: Address)
    /// The packet's length as its header says (what IPVS's byte counters count: `skb->len`).
    var length: Int { get }
    /// The upper-layer bytes: the L4 header and its data, padding after them excluded.
    var upperLayer: PacketBytes { get }
    /// A fragment of a larger datagram, first or not (masq does not reassemble: see `DropReason.fragment`).
    var isFragment: Bool { get }
}

/// The three addresses of an entry (IPVS `cp->caddr`, `cp->vaddr`, `cp->daddr`), of one family.
struct EntryAddresses<Address: Hashable> {
    var client: Address
    var virtualAddress: Address
    var server: Address
}

// MARK: IPv4

/// An IPv4 packet: the header view is the packet (its header checksum kept up by `setSource` and
/// `setDestination`, RFC 1624).
struct IPv4Packet: FamilyPacket {
    let ip: IPv4Header
    @inline(__always) var source: IPv4Address { ip.source }
    @inline(__always) var destination: IPv4Address { ip.destination }
    @inline(__always) func setSource(_ address: IPv4Address) { ip.setSource(address) }
    @inline(__always) func setDestination(_ address: IPv4Address) { ip.setDestination(address) }
    @inline(__always) var length: Int { ip.totalLength }
    @inline(__always) var upperLayer: PacketBytes { ip.payload }
    @inline(__always) var isFragment: Bool { ip.isFragment }
}

enum IPv4Family: AddressFamily {
    typealias Packet = IPv4Packet

    @inline(__always)
    static func key(source: IPv4Address, destination: IPv4Address, sourcePort: UInt16, destinationPort: UInt16,
                    proto: IPProtocol) -> FlowKey {
        FlowKey(source: source, destination: destination, sourcePort: sourcePort, destinationPort: destinationPort,
                proto: proto)
    }

    @inline(__always)
    static func lookup(_ table: ConnectionTable, _ key: FlowKey) -> (slot: UInt32, direction: FlowDirection)? {
        table.lookup(key)
    }

    static func template(_ table: ConnectionTable, for key: FlowKey) -> UInt32? { table.template(for: key) }

    static func insert(_ table: ConnectionTable, _ connection: Connection,
                       _ addresses: EntryAddresses<IPv4Address>) -> UInt32? {
        table.insert(connection)
    }

    @inline(__always)
    static func addresses(_ table: ConnectionTable, _ slot: UInt32, _ c: Connection) -> EntryAddresses<IPv4Address> {
        EntryAddresses(client: c.client, virtualAddress: c.virtualAddress, server: c.server)
    }

    @inline(__always) static func connectionField(_ address: IPv4Address) -> IPv4Address { address }
    @inline(__always) static func address(of destination: Destination) -> IPv4Address { destination.address4 }
    @inline(__always) static func ipAddress(_ address: IPv4Address) -> IPAddress { .v4(address) }
    @inline(__always) static func address(_ address: IPAddress) -> IPv4Address? { address.v4 }
    @inline(__always) static func hashWord(_ address: IPv4Address) -> UInt32 { address.rawValue }

    @inline(__always)
    static func addressChanged(_ th: TransportHeader, from old: IPv4Address, to new: IPv4Address) {
        th.addressChanged(from: old, to: new)
    }

    @inline(__always)
    static func pseudoHeaderSumAddressChanged(_ th: TransportHeader, from old: IPv4Address, to new: IPv4Address) {
        th.pseudoHeaderSumAddressChanged(from: old, to: new)
    }

    @inline(__always)
    static func finishChecksum(_ th: TransportHeader, source: IPv4Address, destination: IPv4Address, proto: IPProtocol) {
        th.finishChecksum(source: source, destination: destination, proto: proto)
    }

    @inline(__always) static var zeroUDPChecksumIsInvalid: Bool { false }

    static func concernsMasq(_ engine: Engine, _ packet: IPv4Packet, proto: IPProtocol) -> Bool {
        engine.virtualAddresses.contains(UInt64(proto.rawValue) << 32 | UInt64(packet.destination.rawValue))
            || engine.realAddresses.contains(packet.source.rawValue)
    }

    static func answerUnreachable(_ outbox: UnreachableOutbox, _ packet: IPv4Packet, now: Int64) {
        _ = outbox.answer(packet.ip, now: now)
    }

    @inline(__always) static func firewallMarkService(_ engine: Engine, _ mark: UInt32) -> VirtualService? {
        engine.firewallMarkServices[mark]
    }

    @inline(__always) static func firewallMarkAddress(_ mark: UInt32) -> IPv4Address { IPv4Address(rawValue: mark) }
}

// MARK: IPv6

/// An IPv6 packet and where its upper layer starts (after any extension headers, which the NAT
/// path leaves byte for byte: none of the ones masq walks carries an address it rewrites, and a
/// routing header's segments are the client's business, not the VIP's).
struct IPv6Packet: FamilyPacket {
    let ip: IPv6Header
    /// The upper-layer header's offset, from `IPv6Header.upperLayer()`.
    let upperLayerOffset: Int
    /// The chain held a fragment header of a real fragment (not an atomic one, RFC 6946).
    let isFragment: Bool
    @inline(__always) var source: IPv6Address { ip.source }
    @inline(__always) var destination: IPv6Address { ip.destination }
    @inline(__always) func setSource(_ address: IPv6Address) { ip.setSource(address) }
    @inline(__always) func setDestination(_ address: IPv6Address) { ip.setDestination(address) }
    @inline(__always) var length: Int { ip.totalLength }
    @inline(__always) var upperLayer: PacketBytes { ip.payload(from: upperLayerOffset) }
}

enum IPv6Family: AddressFamily {
    typealias Packet = IPv6Packet

    @inline(__always)
    static func key(source: IPv6Address, destination: IPv6Address, sourcePort: UInt16, destinationPort: UInt16,
                    proto: IPProtocol) -> FlowKey6 {
        FlowKey6(source: source, destination: destination, sourcePort: sourcePort, destinationPort: destinationPort,
                 proto: proto)
    }

    @inline(__always)
    static func lookup(_ table: ConnectionTable, _ key: FlowKey6) -> (slot: UInt32, direction: FlowDirection)? {
        table.lookup(key)
    }

    static func template(_ table: ConnectionTable, for key: FlowKey6) -> UInt32? { table.template(for: key) }

    static func insert(_ table: ConnectionTable, _ connection: Connection,
                       _ addresses: EntryAddresses<IPv6Address>) -> UInt32? {
        table.insert(connection, addresses: ConnectionAddresses6(
            client: addresses.client, virtualAddress: addresses.virtualAddress, server: addresses.server))
    }

    @inline(__always)
    static func addresses(_ table: ConnectionTable, _ slot: UInt32, _ c: Connection) -> EntryAddresses<IPv6Address> {
        let a = table.addresses6(slot)
        return EntryAddresses(client: a.client, virtualAddress: a.virtualAddress, server: a.server)
    }

    @inline(__always) static func connectionField(_ address: IPv6Address) -> IPv4Address {
        IPv4Address(rawValue: address.folded)
    }

    @inline(__always) static func address(of destination: Destination) -> IPv6Address { destination.address6 }
    @inline(__always) static func ipAddress(_ address: IPv6Address) -> IPAddress { .v6(address) }
    @inline(__always) static func address(_ address: IPAddress) -> IPv6Address? { address.v6 }
    @inline(__always) static func hashWord(_ address: IPv6Address) -> UInt32 { address.folded }

    @inline(__always)
    static func addressChanged(_ th: TransportHeader, from old: IPv6Address, to new: IPv6Address) {
        th.addressChanged(from: old, to: new)
    }

    @inline(__always)
    static func pseudoHeaderSumAddressChanged(_ th: TransportHeader, from old: IPv6Address, to new: IPv6Address) {
        th.pseudoHeaderSumAddressChanged(from: old, to: new)
    }

    @inline(__always)
    static func finishChecksum(_ th: TransportHeader, source: IPv6Address, destination: IPv6Address, proto: IPProtocol) {
        th.finishChecksum(source: source, destination: destination, proto: proto)
    }

    @inline(__always) static var zeroUDPChecksumIsInvalid: Bool { true }

    static func concernsMasq(_ engine: Engine, _ packet: IPv6Packet, proto: IPProtocol) -> Bool {
        engine.concernsMasq6(packet.ip, proto: proto)
    }

    static func answerUnreachable(_ outbox: UnreachableOutbox, _ packet: IPv6Packet, now: Int64) {
        _ = outbox.answer(packet.ip, now: now)
    }

    @inline(__always) static func firewallMarkService(_ engine: Engine, _ mark: UInt32) -> VirtualService? {
        engine.firewallMarkServices6[mark]
    }

    @inline(__always) static func firewallMarkAddress(_ mark: UInt32) -> IPv6Address {
        IPv6Address(high: UInt64(mark) << 32, low: 0)
    }
}
