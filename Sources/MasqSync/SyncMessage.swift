import MasqCore

// The IPVS connection-sync protocol's messages as values (net/netfilter/ipvs/ip_vs_sync.c,
// include/uapi/linux/ip_vs.h, include/net/ip_vs.h). Only the wire format lives here: no socket, no
// table. The encoder (`SyncEncoder`) writes version 1 as the kernel's master does; the decoder
// (`SyncDecoder`) reads versions 1 and 0 with every check the kernel's backup makes. Entries are
// IPv4 (`struct ip_vs_sync_v4`, 36 bytes) or IPv6 (`struct ip_vs_sync_v6`, 72 bytes; v1 only, its
// type byte's bit 0 says so), mixed in one message as the kernel's master mixes them.

/// Where IPVS sends sync messages: UDP to 224.0.0.81:8848 (`IP_VS_SYNC_GROUP`, `IP_VS_SYNC_PORT`);
/// thread *i* of a master with several `sync_ports` sends to port 8848 + i.
public enum SyncTransport {
    public static let group = IPv4Address(224, 0, 0, 81)
    public static let port: UInt16 = 8848
    /// The master's default `sync_maxlen`: 1500-byte MTU − 20 (IPv4) − 8 (UDP), whatever the real MTU.
    public static let defaultMaxLength = 1472
}

/// The message versions: 1 (`SYNC_PROTO_VER`, the default `sync_version`) and the original 0.
public enum SyncProtocolVersion: UInt8, Hashable, Sendable, CustomStringConvertible {
    case v0 = 0
    case v1 = 1

    /// Header bytes: `struct ip_vs_sync_mesg_v0` (4) and `struct ip_vs_sync_mesg` (8).
    public var headerLength: Int { self == .v0 ? 4 : 8 }

    public var description: String { "v\(rawValue)" }
}

/// A connection's flags as IPVS keeps them (`IP_VS_CONN_F_*`, include/uapi/linux/ip_vs.h). The low
/// three bits are the forwarding method, a number rather than flags (`forwarding`); only bits 0..15
/// travel (v0 carries 16 bits, and a v1 backup masks the rest off).
public struct SyncFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `IP_VS_CONN_F_FWD_MASK`: the forwarding method's three bits.
    public static let forwardingMask = SyncFlags(rawValue: 0x0007)
    /// The forwarding methods, values under `forwardingMask` (masq forwards by masquerading only).
    public static let masquerade = SyncFlags([])                    // IP_VS_CONN_F_MASQ 0
    public static let localNode = SyncFlags(rawValue: 0x0001)        // IP_VS_CONN_F_LOCALNODE
    public static let tunnel = SyncFlags(rawValue: 0x0002)           // IP_VS_CONN_F_TUNNEL
    public static let directRoute = SyncFlags(rawValue: 0x0003)      // IP_VS_CONN_F_DROUTE
    public static let bypass = SyncFlags(rawValue: 0x0004)           // IP_VS_CONN_F_BYPASS

    public static let sync = SyncFlags(rawValue: 0x0020)             // IP_VS_CONN_F_SYNC: came from a master
    public static let hashed = SyncFlags(rawValue: 0x0040)           // IP_VS_CONN_F_HASHED: never sent
    public static let noOutput = SyncFlags(rawValue: 0x0080)         // IP_VS_CONN_F_NOOUTPUT
    public static let inactive = SyncFlags(rawValue: 0x0100)         // IP_VS_CONN_F_INACTIVE: not established
    public static let outSequence = SyncFlags(rawValue: 0x0200)      // IP_VS_CONN_F_OUT_SEQ
    public static let inSequence = SyncFlags(rawValue: 0x0400)       // IP_VS_CONN_F_IN_SEQ
    public static let noClientPort = SyncFlags(rawValue: 0x0800)     // IP_VS_CONN_F_NO_CPORT
    public static let template = SyncFlags(rawValue: 0x1000)         // IP_VS_CONN_F_TEMPLATE: persistence
    public static let onePacket = SyncFlags(rawValue: 0x2000)        // IP_VS_CONN_F_ONE_PACKET: never synced

    /// `IP_VS_CONN_F_SEQ_MASK`: either sequence adjustment; v0 then carries 24 bytes of them.
    public static let sequenceMask: SyncFlags = [.outSequence, .inSequence]
    /// `IP_VS_CONN_F_BACKUP_MASK`: what a v1 backup keeps of a received entry's flags.
    public static let backupMask: SyncFlags = [.forwardingMask, .noOutput, .inactive, .sequenceMask,
                                               .noClientPort, .template]
    /// `IP_VS_CONN_F_BACKUP_UPD_MASK`: what a backup takes over into a connection it already has.
    public static let backupUpdateMask: SyncFlags = [.inactive, .sequenceMask]

    /// The forwarding method: one of `masquerade`, `localNode`, `tunnel`, `directRoute`, `bypass`.
    public var forwarding: SyncFlags { intersection(.forwardingMask) }

    /// The flags a kernel backup gives the connection it makes from a received entry
    /// (`ip_vs_proc_sync_conn` for v1, `ip_vs_process_message_v0` for v0): SYNC added, and for v1
    /// only `backupMask` kept, for v0 only HASHED cleared.
    public func received(as version: SyncProtocolVersion) -> SyncFlags {
        switch version {
        case .v1: intersection(.backupMask).union(.sync)
        case .v0: union(.sync).subtracting(.hashed)
        }
    }
}

/// A connection's state as IPVS numbers it on the wire; what the number means depends on the
/// protocol and on whether the entry is a template.
public struct SyncState: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    // TCP: `enum ip_vs_tcp_states` (include/net/ip_vs.h), the numbering masq's ConnectionState uses.
    public static let tcpNone = SyncState(rawValue: 0)
    public static let tcpEstablished = SyncState(rawValue: 1)
    public static let tcpSynSent = SyncState(rawValue: 2)
    public static let tcpSynRecv = SyncState(rawValue: 3)
    public static let tcpFinWait = SyncState(rawValue: 4)
    public static let tcpTimeWait = SyncState(rawValue: 5)
    public static let tcpClose = SyncState(rawValue: 6)
    public static let tcpCloseWait = SyncState(rawValue: 7)
    public static let tcpLastAck = SyncState(rawValue: 8)
    public static let tcpListen = SyncState(rawValue: 9)
    public static let tcpSynAck = SyncState(rawValue: 10)
    /// UDP's one state, `IP_VS_UDP_S_NORMAL`.
    public static let udpNormal = SyncState(rawValue: 0)
    /// Templates: `IP_VS_CTPL_S_NONE` and `IP_VS_CTPL_S_ASSURED` (a bit: the template outlives its
    /// last connection).
    public static let templateNone = SyncState(rawValue: 0)
    public static let templateAssured = SyncState(rawValue: 1)

    /// How many states a protocol masq forwards has (`pp->num_states`: `IP_VS_TCP_S_LAST` 11,
    /// `IP_VS_UDP_S_LAST` 1); nil for every other protocol. The kernel also knows SCTP (14 states)
    /// and AH/ESP (1) when built with them; masq does not forward those, so for masq they are
    /// unsupported, as they are for a kernel built without them.
    public static func stateCount(for proto: IPProtocol) -> Int? {
        switch proto {
        case .tcp: 11
        case .udp: 1
        default: nil
        }
    }

    /// IPVS's number for masq's state of a connection (or template) of `proto`; nil when masq's state
    /// has no IPVS number for that protocol.
    public init?(_ state: ConnectionState, proto: IPProtocol, isTemplate: Bool) {
        if isTemplate {
            // masq's templates carry no state of their own (always NONE), as IPVS's start out.
            guard state == .none else { return nil }
            self = .templateNone
            return
        }
        switch proto {
        case .tcp:
            guard state.rawValue < 11 else { return nil }
            self.init(rawValue: UInt16(state.rawValue))
        case .udp:
            guard state == .udp else { return nil }
            self = .udpNormal
        default:
            return nil
        }
    }

    /// masq's state for this IPVS number: TCP states map one to one, UDP NORMAL is `.udp`, and both
    /// template states are `.none` (masq's templates carry no state). nil when the number is out of
    /// range for the protocol or the protocol is not one masq forwards.
    public func connectionState(proto: IPProtocol, isTemplate: Bool) -> ConnectionState? {
        if isTemplate { return rawValue < 2 ? ConnectionState.none : nil }
        switch proto {
        case .tcp: return rawValue < 11 ? ConnectionState(rawValue: UInt8(rawValue)) : nil
        case .udp: return rawValue == 0 ? .udp : nil
        default: return nil
        }
    }
}

/// One direction's TCP sequence adjustment (`struct ip_vs_seq`), kept when an application helper
/// (ip_vs_ftp) has resized the payload.
public struct SyncSequenceAdjustment: Hashable, Sendable {
    public var initialSequence: UInt32
    public var delta: UInt32
    public var previousDelta: UInt32

    public init(initialSequence: UInt32, delta: UInt32, previousDelta: UInt32) {
        self.initialSequence = initialSequence
        self.delta = delta
        self.previousDelta = previousDelta
    }
}

/// The SEQ_DATA option (`struct ip_vs_sync_conn_options`): inbound, then outbound.
public struct SyncSequenceData: Hashable, Sendable {
    public var inbound: SyncSequenceAdjustment
    public var outbound: SyncSequenceAdjustment

    public init(inbound: SyncSequenceAdjustment, outbound: SyncSequenceAdjustment) {
        self.inbound = inbound
        self.outbound = outbound
    }

    /// On the wire: six 32-bit numbers.
    public static let wireLength = 24
}

/// One synced connection or template: IPv4 (`struct ip_vs_sync_v4`, or a v0 `ip_vs_sync_conn_v0`) or
/// IPv6 (`struct ip_vs_sync_v6`, v1 only). Its three addresses are of one family, the connection's
/// (`cp->af`: IPVS syncs no mixed-family connection, and its entry has room for one family only);
/// the encoder refuses an entry whose addresses are not.
public struct SyncEntry: Hashable, Sendable {
    /// The L4 protocol; a firewall-mark template carries 0 (IPPROTO_IP).
    public var proto: IPProtocol
    /// As on the wire (see `SyncFlags.received(as:)` for what a backup keeps).
    public var flags: SyncFlags
    public var state: SyncState
    public var clientAddress: IPAddress
    public var clientPort: UInt16
    public var virtualAddress: IPAddress
    public var virtualPort: UInt16
    /// The real server ("destination").
    public var destinationAddress: IPAddress
    public var destinationPort: UInt16
    /// The firewall mark of a fwmark service, else 0 (v0 carries none: 0).
    public var fwmark: UInt32
    /// The connection's timeout in seconds (`cp->timeout / HZ`, the state's whole timeout, not
    /// what is left). 0 means unknown: a backup then takes its own timeout for the state, or
    /// 3 minutes for a template. v0 carries none: 0.
    public var timeoutSeconds: UInt32
    /// SEQ_DATA (option 1): v1 sends it when `flags` has IN_SEQ or OUT_SEQ, v0 exactly then.
    public var sequence: SyncSequenceData?
    /// PE_DATA (option 2, 1...255 bytes) and PE_NAME (option 3, 1...16 bytes, e.g. `sip`): a
    /// persistence engine's data, raw. A kernel backup drops an entry whose engine it has not loaded;
    /// masq has none, which its receiver must decide, not this codec.
    public var persistenceEngineData: [UInt8]?
    public var persistenceEngineName: [UInt8]?

    public init(proto: IPProtocol, flags: SyncFlags = [], state: SyncState,
                clientAddress: IPAddress, clientPort: UInt16,
                virtualAddress: IPAddress, virtualPort: UInt16,
                destinationAddress: IPAddress, destinationPort: UInt16,
                fwmark: UInt32 = 0, timeoutSeconds: UInt32 = 0, sequence: SyncSequenceData? = nil,
                persistenceEngineData: [UInt8]? = nil, persistenceEngineName: [UInt8]? = nil) {
        self.proto = proto
        self.flags = flags
        self.state = state
        self.clientAddress = clientAddress
        self.clientPort = clientPort
        self.virtualAddress = virtualAddress
        self.virtualPort = virtualPort
        self.destinationAddress = destinationAddress
        self.destinationPort = destinationPort
        self.fwmark = fwmark
        self.timeoutSeconds = timeoutSeconds
        self.sequence = sequence
        self.persistenceEngineData = persistenceEngineData
        self.persistenceEngineName = persistenceEngineName
    }

    /// An IPv4 entry, its addresses given as such.
    public init(proto: IPProtocol, flags: SyncFlags = [], state: SyncState,
                clientAddress: IPv4Address, clientPort: UInt16,
                virtualAddress: IPv4Address, virtualPort: UInt16,
                destinationAddress: IPv4Address, destinationPort: UInt16,
                fwmark: UInt32 = 0, timeoutSeconds: UInt32 = 0, sequence: SyncSequenceData? = nil,
                persistenceEngineData: [UInt8]? = nil, persistenceEngineName: [UInt8]? = nil) {
        self.init(proto: proto, flags: flags, state: state,
                  clientAddress: .v4(clientAddress), clientPort: clientPort,
                  virtualAddress: .v4(virtualAddress), virtualPort: virtualPort,
                  destinationAddress: .v4(destinationAddress), destinationPort: destinationPort,
                  fwmark: fwmark, timeoutSeconds: timeoutSeconds, sequence: sequence,
                  persistenceEngineData: persistenceEngineData, persistenceEngineName: persistenceEngineName)
    }

    public var isTemplate: Bool { flags.contains(.template) }

    /// An IPv6 entry (`STYPE_F_INET6`): the client's family, which the encoder requires of all three.
    public var isIPv6: Bool { clientAddress.isIPv6 }

    /// Whether the three addresses are of one family, as an entry on the wire can only be.
    public var addressesShareFamily: Bool {
        virtualAddress.isIPv6 == clientAddress.isIPv6 && destinationAddress.isIPv6 == clientAddress.isIPv6
    }

    /// masq's state for this entry, or nil (see `SyncState.connectionState(proto:isTemplate:)`).
    public var connectionState: ConnectionState? { state.connectionState(proto: proto, isTemplate: isTemplate) }

    /// The fixed part of an IPv4 v1 entry (`sizeof(struct ip_vs_sync_v4)`): the shortest entry, and
    /// what a backup checks is left before it reads any entry's type and length.
    public static let fixedLength = 36
    /// The fixed part of an IPv6 v1 entry (`sizeof(struct ip_vs_sync_v6)`): the first 24 bytes as in
    /// IPv4, then the client, virtual and real server addresses at 24, 40 and 56.
    public static let ipv6FixedLength = 72
    /// The most a PE_DATA option holds (`IP_VS_PEDATA_MAXLEN`) and a PE_NAME (`IP_VS_PENAME_MAXLEN`).
    public static let maximumPersistenceEngineDataLength = 255
    public static let maximumPersistenceEngineNameLength = 16

    /// The entry's v1 length (`ver_size`'s low 12 bits): the fixed part and its options, not the
    /// padding that may follow.
    public var wireLength: Int {
        var length = isIPv6 ? Self.ipv6FixedLength : Self.fixedLength
        if sequence != nil { length += 2 + SyncSequenceData.wireLength }
        if let data = persistenceEngineData { length += 2 + data.count }
        if let name = persistenceEngineName { length += 2 + name.count }
        return length
    }
}

/// A sync message's header as received.
public struct SyncHeader: Hashable, Sendable {
    public var version: SyncProtocolVersion
    public var syncID: UInt8
    /// `nr_conns`: how many entries the header announces.
    public var count: Int
    /// `size`: the whole datagram, equal to its received length.
    public var size: Int

    public init(version: SyncProtocolVersion, syncID: UInt8, count: Int, size: Int) {
        self.version = version
        self.syncID = syncID
        self.count = count
        self.size = size
    }
}
