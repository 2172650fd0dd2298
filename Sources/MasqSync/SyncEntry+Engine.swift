import MasqCore

/// The wire's entry and the engine's update, each way: a master's sender turns the outbox's
/// `SyncUpdate`s into entries for `SyncEncoder`; a backup's receiver turns decoded entries into
/// updates for `Engine.applySynced`.
extension SyncEntry {
    /// The entry a kernel master would send for this connection or template (`ip_vs_sync_conn`): the
    /// masquerading forwarding method (masq's only one), TEMPLATE for a template, INACTIVE for a
    /// connection not counted active; the state in IPVS's numbering, or, for a state it has no number
    /// for, masq's raw number (a backup then refuses it as a bad state, as it should).
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
