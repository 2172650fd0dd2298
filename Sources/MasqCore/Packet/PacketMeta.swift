/// Facts about a packet that come from where it was read, not from its bytes.
public struct PacketMeta: Sendable {
    /// The L4 checksum field holds only the pseudo-header sum (Linux CHECKSUM_PARTIAL; NFQUEUE's
    /// NFQA_SKB_CSUMNOTREADY). A rewritten packet then leaves with its checksum finished.
    public var partialChecksum: Bool
    /// The bytes are fewer than the packet had (capture snap length, NFQA_CAP_LEN): never rewritten.
    public var truncated: Bool
    /// A GSO packet whose L4 checksum field holds only the pseudo-header sum and stays that way: the
    /// kernel finishes each segment's checksum from it. Address changes update that sum (the kernel's
    /// `inet_proto_csum_replace4` for CHECKSUM_PARTIAL); port changes do not touch it.
    public var partialChecksumKept: Bool
    /// The packet's firewall mark (NFQUEUE's NFQA_MARK, set by the user's `-j MARK` rules), which
    /// selects a firewall-mark service (`-f`); 0: unmarked.
    public var mark: UInt32

    public init(partialChecksum: Bool = false, truncated: Bool = false, partialChecksumKept: Bool = false, mark: UInt32 = 0) {
        self.partialChecksum = partialChecksum
        self.truncated = truncated
        self.partialChecksumKept = partialChecksumKept
        self.mark = mark
    }
}
