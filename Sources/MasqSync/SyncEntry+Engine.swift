import MasqCore

/// The wire's entry and the engine's update, each way: a master's sender turns the outbox's
/// `SyncUpdate`s into entries for `SyncEncoder`; a backup's receiver turns decoded entries into
/// updates for `Engine.applySynced`.
extension SyncEntry {
    /// The entry a kernel master would send for this connection or template (`ip_vs_sync_conn`): the
    /// masquerading forwarding method (masq's only one), TEMPLATE for a template, INACTIVE for a
    /// connection not counted active; the state in IPVS's numbering, or, for a state it has no number
    /// for, masq's raw number (a backup then refuses it as a bad state, as it should). The addresses
    /// keep their family; an update mixing families (the engine makes none) gives an entry the
    /// encoder refuses.
    public init(_ update: SyncUpdate) {
        var flags = SyncFlags.masquerade
        if update.isTemplate {
            flags.insert(.template)
        } else if !update.isActive {
            flags.insert(.inactive)
        }
        let state = SyncState(update.state, proto: update.proto, isTemplate: update.isTemplate)
            ?? SyncState(rawValue: UInt16(update.state.rawValue))
        self.init(proto: update.proto, flags: flags, state: state,
                  // Either family, as the update has it: an IPv6 connection's entry is `ip_vs_sync_v6`.
                  clientAddress: update.client, clientPort: update.clientPort,
                  virtualAddress: update.virtualAddress, virtualPort: update.virtualPort,
                  destinationAddress: update.server, destinationPort: update.serverPort,
                  fwmark: update.fwmark, timeoutSeconds: update.timeout)
    }

    /// The update this entry asks a backup to apply, or nil when its state means nothing for its
    /// protocol in masq (see `SyncState.connectionState(proto:isTemplate:)`): the receiver counts
    /// that as a bad state. Options (sequence data, persistence-engine data) are not carried: the
    /// receiver decides about entries that have them.
    public var update: SyncUpdate? {
        guard let state = connectionState else { return nil }
        return SyncUpdate(proto: proto, state: state, isTemplate: isTemplate,
                          isActive: !isTemplate && !flags.contains(.inactive),
                          client: clientAddress, clientPort: clientPort,
                          virtualAddress: virtualAddress, virtualPort: virtualPort,
                          server: destinationAddress, serverPort: destinationPort,
                          timeout: timeoutSeconds, fwmark: fwmark)
    }
}

// MARK: The encoder, specialised for the senders' containers

/// `SyncEncoder.encode` is generic over its collection and not inlinable, so a caller in another
/// module (the daemon's sender, masq-bench) runs its unspecialised form, whose element reads through
/// the collection's witness allocate a coroutine frame per entry for an Array or an ArraySlice
/// (about one malloc an entry, measured with masq-bench's allocation counter). These overloads,
/// chosen over the generic one for those types, are specialised here, in the encoder's module, and
/// allocate nothing.
extension SyncEncoder {
    @discardableResult
    public static func encode(_ entries: ArraySlice<SyncEntry>, syncID: UInt8,
                              maxLength: Int = SyncTransport.defaultMaxLength,
                              into datagram: inout [UInt8]) throws(SyncEncodingError) -> Int {
        try encodeCollection(entries, syncID: syncID, maxLength: maxLength, into: &datagram)
    }

    @discardableResult
    public static func encode(_ entries: [SyncEntry], syncID: UInt8,
                              maxLength: Int = SyncTransport.defaultMaxLength,
                              into datagram: inout [UInt8]) throws(SyncEncodingError) -> Int {
        try encodeCollection(entries, syncID: syncID, maxLength: maxLength, into: &datagram)
    }

    @discardableResult
    public static func encode(_ entries: UnsafeBufferPointer<SyncEntry>, syncID: UInt8,
                              maxLength: Int = SyncTransport.defaultMaxLength,
                              into datagram: inout [UInt8]) throws(SyncEncodingError) -> Int {
        try encodeCollection(entries, syncID: syncID, maxLength: maxLength, into: &datagram)
    }

    /// The generic encoder for `C` (in a generic context only the generic overload applies).
    private static func encodeCollection<C: Collection<SyncEntry>>(
        _ entries: C, syncID: UInt8, maxLength: Int, into datagram: inout [UInt8]
    ) throws(SyncEncodingError) -> Int {
        try encode(entries, syncID: syncID, maxLength: maxLength, into: &datagram)
    }
}
