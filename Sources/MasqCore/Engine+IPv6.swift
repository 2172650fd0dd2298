/// The IPv6 packet path (RFC 8200), as IPVS's `ip_vs_in`/`ip_vs_out` run for AF_INET6: the fixed
/// header and its extension-header chain checked, TCP and UDP through the same generic path as IPv4
/// (`Engine.transport` over `IPv6Family`), and ICMPv6 errors about a NATed flow translated (RFC 4443).
///
/// What differs from IPv4, and why:
/// - No header checksum (RFC 8200 §3): an address change touches only the upper layer's pseudo-header
///   checksum, updated over the 128-bit addresses by RFC 1624.
/// - Extension headers (RFC 8200 §4) are walked to the upper layer (bounded: at most
///   `IPv6Header.maximumExtensionHeaders`) and left byte for byte. A packet whose chain cannot be
///   walked (truncated, too long, hop-by-hop not first) or whose payload length runs past its bytes is
///   dropped as `.malformedExtensionHeaders`, whoever it is for: no host would take it either.
/// - Fragments: masq does not reassemble, for IPv6 as for IPv4 (its flows bypass conntrack and its
///   defrag; a non-first fragment has no ports to look up). A fragment header of a real fragment
///   (first or not; an atomic fragment, RFC 6946, is a whole datagram) on a packet to a VIP or from a
///   real server is dropped as `.fragment`; others pass. Path MTU discovery (RFC 8201) keeps NATed
///   flows unfragmented, and masq translates the packet too big errors it needs.
/// - UDP's checksum is mandatory (RFC 8200 §8.1): a datagram with checksum 0 that masq would NAT is
///   dropped as `.udpZeroChecksum`.
/// - ICMPv6's checksum covers a pseudo-header (RFC 4443 §2.3), so it is recomputed after the outer
///   address changes. Neighbour discovery and echo pass untouched, as ICMP echo does for IPv4.
extension Engine {
    /// An IPv6 packet (`process` saw a first nibble of 6).
    @inline(never)
    func route6(_ bytes: PacketBytes, meta: PacketMeta) -> Verdict {
        guard bytes.count >= IPv6Header.length else { return .drop(.malformedIP) }
        let ip = IPv6Header(bytes)
        let upper: IPv6UpperLayer
        do {
            upper = try ip.upperLayer()
        } catch {
            return .drop(.malformedExtensionHeaders)
        }
        // Passing through on a routing header's way to another node: not for a VIP, and its checksums
        // cover the final destination, which NAT would not change (IPVS looks no further either).
        if upper.routedOnward { return .accept }
        let packet = IPv6Packet(ip: ip, upperLayerOffset: upper.offset, isFragment: upper.isFragment)
        switch upper.proto {
        case .tcp: return transport(IPv6Family.self, TCPProtocol.self, packet, meta: meta)
        case .udp: return transport(IPv6Family.self, UDPProtocol.self, packet, meta: meta)
        // As ICMP over IPv4: a fragment of an ICMPv6 message passes (an error is at most 1280 bytes,
        // RFC 4443 §2.4(c), so it is never fragmented by its sender).
        case .icmpv6: return upper.isFragment ? .accept : icmpv6(ip, at: upper.offset)
        default:
            // A non-first fragment whose fragmentable part starts with an extension header names no
            // upper protocol: it concerns masq if it could be either of its protocols'.
            guard upper.isFragment else { return .accept }
            return concernsMasq6(ip, proto: .tcp) || concernsMasq6(ip, proto: .udp) ? .drop(.fragment) : .accept
        }
    }

    /// Whether an IPv6 packet masq cannot look up could be one of its flows: to a VIP of `proto`, or
    /// from a real server (as `IPv4Family.concernsMasq`).
    func concernsMasq6(_ ip: IPv6Header, proto: IPProtocol) -> Bool {
        virtualAddresses6.contains(VirtualAddress6(proto: proto, address: ip.destination))
            || realAddresses6.contains(ip.source)
    }

    /// `prefetching`'s look-ahead for an IPv6 packet whose fixed header is followed directly by TCP or
    /// UDP; 0 (nothing fetched) for any other.
    @inline(__always) func prefetchBucket6(_ bytes: PacketBytes) -> UInt32 {
        guard bytes.count >= IPv6Header.length &+ 4 else { return 0 }
        let ip = IPv6Header(bytes)
        let proto = ip.nextHeader
        guard proto.isTracked else { return 0 }
        let key = FlowKey6(source: ip.source, destination: ip.destination, sourcePort: bytes.u16(IPv6Header.length),
                           destinationPort: bytes.u16(IPv6Header.length &+ 2), proto: proto)
        return table.prefetchBucket(key) &+ 1
    }

    // MARK: ICMPv6

    /// RFC 4443 errors (destination unreachable, packet too big, time exceeded, parameter problem)
    /// quoting a NATed datagram are translated both ways as IPVS `ip_vs_nat_icmp_v6` does: the outer
    /// address, the quoted addresses and ports, the quoted L4 checksum when the quote holds it, and the
    /// ICMPv6 checksum, recomputed whole since its pseudo-header covers the outer addresses (RFC 4443
    /// §2.3). A packet too big's MTU is kept: the client's path MTU is the real server's. The checksum
    /// is verified before anything changes (IPVS does too): a bad one on an error about a NATed flow is
    /// `.badICMPChecksum`. Informational messages (echo, neighbour discovery) and errors about nothing
    /// masq NATs pass untouched.
    ///
    /// The quote is cut short (as much as fits in 1280 bytes, RFC 4443 §2.4(c)) while its payload
    /// length is the original's, so its chain is walked over the bytes present
    /// (`IPv6Header.quotedUpperLayer`); a quoted non-first fragment has no ports and passes.
    private func icmpv6(_ ip: IPv6Header, at offset: Int) -> Verdict {
        let message = ip.payload(from: offset)
        guard message.count >= ICMPv6Header.headerLength else { return .accept }
        let icmp = ICMPv6Header(message)
        guard icmp.type.quotesDatagram else { return .accept }
        let quoted = icmp.quoted
        guard quoted.count >= IPv6Header.length else { return .accept }
        let inner = IPv6Header(quoted)
        guard inner.version == 6, let upper = try? inner.quotedUpperLayer(), upper.proto.isTracked,
              (upper.fragment?.offset ?? 0) == 0, quoted.count >= upper.offset &+ 8 else { return .accept }
        let th = TransportHeader(quoted.slice(from: upper.offset), proto: upper.proto)
        let quotedPacket = IPv6Packet(ip: inner, upperLayerOffset: upper.offset, isFragment: upper.isFragment)
        guard let (slot, direction) = quotedFlow(IPv6Family.self, quotedPacket, th, proto: upper.proto) else {
            return .accept
        }
        guard icmp.isChecksumValid(source: ip.source, destination: ip.destination) else {
            return .drop(.badICMPChecksum)
        }
        let outer = IPv6Packet(ip: ip, upperLayerOffset: offset, isFragment: false)
        translateQuoted(IPv6Family.self, slot, direction, outer: outer, quoted: quotedPacket, th)
        icmp.recomputeChecksum(source: ip.source, destination: ip.destination)
        return .rewritten(direction)
    }
}
