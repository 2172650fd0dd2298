/// A connection or persistence template as the tools see it: one line of `masq replay --flows` and of a
/// SIGUSR1 dump, one entry of the control socket's `flows` answer (`masq flows`, `masqadm -L -c`).
///
/// It lives in MasqCore, next to the `Connection` it is taken from, because the engine makes it
/// (`Engine.flowRecords`) and `masq replay`, which has no control socket, writes it; the control
/// protocol (MasqControl) carries it as it is.
///
/// Codable under the keys of the JSON-lines schema. `jsonLine` writes those keys in their fixed order
/// (proto, client, vip, real_server, state, expires, template, packets_in, packets_out, bytes_in,
/// bytes_out) for golden files and diffs: Foundation's `JSONEncoder` on Linux orders an object's keys
/// as its dictionary hashes them, not as `encode(to:)` wrote them, so it cannot produce these lines.
/// An entry a master's sync update created adds `"origin":"sync"` last (the `Origin` column of the
/// kernel's /proc/net/ip_vs_conn_sync); every other line is as it has always been.
public struct FlowRecord: Equatable, Sendable, Codable {
    public var proto: IPProtocol
    /// All three of one family.
    public var client: IPAddress
    public var clientPort: UInt16
    public var virtualAddress: IPAddress
    public var virtualPort: UInt16
    public var server: IPAddress
    public var serverPort: UInt16
    public var state: ConnectionState
    /// Whole seconds left before the entry expires (what `ipvsadm -L -c` shows as mm:ss).
    public var expiresIn: Int64
    public var isTemplate: Bool
    public var packetsIn: UInt64
    public var packetsOut: UInt64
    public var bytesIn: UInt64
    public var bytesOut: UInt64
    /// Created by a sync update from a master (`Connection.isSynced`), not by a packet here.
    public var isSynced: Bool

    public init(proto: IPProtocol, client: IPv4Address, clientPort: UInt16, virtualAddress: IPv4Address,
                virtualPort: UInt16, server: IPv4Address, serverPort: UInt16, state: ConnectionState,
                expiresIn: Int64, isTemplate: Bool, packetsIn: UInt64 = 0, packetsOut: UInt64 = 0,
                bytesIn: UInt64 = 0, bytesOut: UInt64 = 0, isSynced: Bool = false) {
        self.init(proto: proto, client: .v4(client), clientPort: clientPort, virtualAddress: .v4(virtualAddress),
                  virtualPort: virtualPort, server: .v4(server), serverPort: serverPort, state: state,
                  expiresIn: expiresIn, isTemplate: isTemplate, packetsIn: packetsIn, packetsOut: packetsOut,
                  bytesIn: bytesIn, bytesOut: bytesOut, isSynced: isSynced)
    }

    public init(proto: IPProtocol, client: IPAddress, clientPort: UInt16, virtualAddress: IPAddress,
                virtualPort: UInt16, server: IPAddress, serverPort: UInt16, state: ConnectionState,
                expiresIn: Int64, isTemplate: Bool, packetsIn: UInt64 = 0, packetsOut: UInt64 = 0,
                bytesIn: UInt64 = 0, bytesOut: UInt64 = 0, isSynced: Bool = false) {
        self.proto = proto
        self.client = client
        self.clientPort = clientPort
        self.virtualAddress = virtualAddress
        self.virtualPort = virtualPort
        self.server = server
        self.serverPort = serverPort
        self.state = state
        self.expiresIn = expiresIn
        self.isTemplate = isTemplate
        self.packetsIn = packetsIn
        self.packetsOut = packetsOut
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
        self.isSynced = isSynced
    }

    /// The record of an entry; an IPv6 entry's addresses are its sidecar's (`ConnectionTable.addresses6`).
    public init(_ c: Connection, addresses6: ConnectionAddresses6? = nil, now: Int64) {
        let a = c.isIPv6 ? addresses6 : nil
        self.init(proto: c.proto, client: a.map { .v6($0.client) } ?? .v4(c.client), clientPort: c.clientPort,
                  virtualAddress: a.map { .v6($0.virtualAddress) } ?? .v4(c.virtualAddress),
                  virtualPort: c.virtualPort, server: a.map { .v6($0.server) } ?? .v4(c.server),
                  serverPort: c.serverPort, state: c.state,
                  expiresIn: max(0, (c.expires &- now) / ConnectionTable.nanosPerTick), isTemplate: c.isTemplate,
                  packetsIn: UInt64(c.packetsIn), packetsOut: UInt64(c.packetsOut), bytesIn: c.bytesIn,
                  bytesOut: c.bytesOut, isSynced: c.isSynced)
    }

    /// The schema's keys, in the order `jsonLine` writes them.
    public enum CodingKeys: String, CodingKey, CaseIterable {
        case proto, client, vip
        case realServer = "real_server"
        case state, expires, template
        case packetsIn = "packets_in", packetsOut = "packets_out", bytesIn = "bytes_in", bytesOut = "bytes_out"
    }

    /// The key only a synced entry's line has, after the schema's: `"origin":"sync"`.
    enum OriginKey: String, CodingKey {
        case origin
    }

    static let syncedOrigin = "sync"

    /// `proto`'s value: `tcp`, `udp`, else the protocol number.
    public var protoName: String {
        proto == .tcp ? "tcp" : proto == .udp ? "udp" : "\(proto.rawValue)"
    }

    /// A JSON object on one line, keys in the schema's fixed order (stable for diffs and golden files).
    /// No value needs escaping: addresses, ports, state names and numbers only. An IPv6 endpoint is
    /// bracketed (`[2001:2::12]:40000`), as ipvsadm prints one.
    public var jsonLine: String {
        "{\"proto\":\"\(protoName)\",\"client\":\"\(client.endpoint(clientPort))\","
            + "\"vip\":\"\(virtualAddress.endpoint(virtualPort))\",\"real_server\":\"\(server.endpoint(serverPort))\","
            + "\"state\":\"\(state)\",\"expires\":\(expiresIn),\"template\":\(isTemplate),"
            + "\"packets_in\":\(packetsIn),\"packets_out\":\(packetsOut),"
            + "\"bytes_in\":\(bytesIn),\"bytes_out\":\(bytesOut)"
            + (isSynced ? ",\"origin\":\"\(Self.syncedOrigin)\"}" : "}")
    }

    /// Records as JSON lines, each followed by a newline (`--flows`, SIGUSR1 dumps, `masq flows --json`).
    public static func jsonLines<S: Sequence<FlowRecord>>(_ records: S) -> String {
        var text = ""
        text.reserveCapacity(records.underestimatedCount * 220)
        for record in records {
            text += record.jsonLine
            text += "\n"
        }
        return text
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(protoName, forKey: .proto)
        try c.encode(client.endpoint(clientPort), forKey: .client)
        try c.encode(virtualAddress.endpoint(virtualPort), forKey: .vip)
        try c.encode(server.endpoint(serverPort), forKey: .realServer)
        try c.encode(state.description, forKey: .state)
        try c.encode(expiresIn, forKey: .expires)
        try c.encode(isTemplate, forKey: .template)
        try c.encode(packetsIn, forKey: .packetsIn)
        try c.encode(packetsOut, forKey: .packetsOut)
        try c.encode(bytesIn, forKey: .bytesIn)
        try c.encode(bytesOut, forKey: .bytesOut)
        if isSynced {
            var origin = encoder.container(keyedBy: OriginKey.self)
            try origin.encode(Self.syncedOrigin, forKey: .origin)
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func endpoint(_ key: CodingKeys) throws -> (IPAddress, UInt16) {
            let text = try c.decode(String.self, forKey: key)
            guard let parsed = IPAddress.endpoint(Substring(text)), let port = parsed.port else {
                throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "'\(text)' is not ADDRESS:PORT")
            }
            return (parsed.address, port)
        }
        switch try c.decode(String.self, forKey: .proto) {
        case "tcp": proto = .tcp
        case "udp": proto = .udp
        case let other:
            guard let number = UInt8(other) else {
                throw DecodingError.dataCorruptedError(forKey: .proto, in: c, debugDescription: "unknown protocol '\(other)'")
            }
            proto = IPProtocol(rawValue: number)
        }
        (client, clientPort) = try endpoint(.client)
        (virtualAddress, virtualPort) = try endpoint(.vip)
        (server, serverPort) = try endpoint(.realServer)
        let stateName = try c.decode(String.self, forKey: .state)
        guard let index = FlowFilter.stateNames.firstIndex(of: stateName) else {
            throw DecodingError.dataCorruptedError(forKey: .state, in: c, debugDescription: "unknown state '\(stateName)'")
        }
        state = ConnectionState(rawValue: UInt8(index))
        expiresIn = try c.decode(Int64.self, forKey: .expires)
        isTemplate = try c.decode(Bool.self, forKey: .template)
        packetsIn = try c.decode(UInt64.self, forKey: .packetsIn)
        packetsOut = try c.decode(UInt64.self, forKey: .packetsOut)
        bytesIn = try c.decode(UInt64.self, forKey: .bytesIn)
        bytesOut = try c.decode(UInt64.self, forKey: .bytesOut)
        let origin = try decoder.container(keyedBy: OriginKey.self)
        switch try origin.decodeIfPresent(String.self, forKey: .origin) {
        case nil: isSynced = false
        case Self.syncedOrigin?: isSynced = true
        case let other?:
            throw DecodingError.dataCorruptedError(forKey: .origin, in: origin, debugDescription: "unknown origin '\(other)'")
        }
    }
}
