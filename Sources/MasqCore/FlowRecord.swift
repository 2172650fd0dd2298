/// One line of a flow dump (`masq replay --flows`, `masq flows`): a connection or template as JSON.
public struct FlowRecord: Equatable, Sendable {
    public var proto: IPProtocol
    public var client: IPv4Address
    public var clientPort: UInt16
    public var virtualAddress: IPv4Address
    public var virtualPort: UInt16
    public var server: IPv4Address
    public var serverPort: UInt16
    public var state: ConnectionState
    /// Whole seconds left before the entry expires (what `ipvsadm -L -c` shows as mm:ss).
    public var expiresIn: Int64
    public var isTemplate: Bool
    public var packetsIn: UInt64
    public var packetsOut: UInt64
    public var bytesIn: UInt64
    public var bytesOut: UInt64

    public init(_ c: Connection, now: Int64) {
        proto = c.proto
        client = c.client
        clientPort = c.clientPort
        virtualAddress = c.virtualAddress
        virtualPort = c.virtualPort
        server = c.server
        serverPort = c.serverPort
        state = c.state
        expiresIn = max(0, (c.expires - now) / ConnectionTable.nanosPerTick)
        isTemplate = c.isTemplate
        packetsIn = UInt64(c.packetsIn)
        packetsOut = UInt64(c.packetsOut)
        bytesIn = c.bytesIn
        bytesOut = c.bytesOut
    }

    /// A JSON object on one line, keys in a fixed order (stable for diffs and golden files).
    public var jsonLine: String {
        let protoName = proto == .tcp ? "tcp" : proto == .udp ? "udp" : "\(proto.rawValue)"
        return "{\"proto\":\"\(protoName)\",\"client\":\"\(client):\(clientPort)\","
            + "\"vip\":\"\(virtualAddress):\(virtualPort)\",\"real_server\":\"\(server):\(serverPort)\","
            + "\"state\":\"\(state)\",\"expires\":\(expiresIn),\"template\":\(isTemplate),"
            + "\"packets_in\":\(packetsIn),\"packets_out\":\(packetsOut),"
            + "\"bytes_in\":\(bytesIn),\"bytes_out\":\(bytesOut)}"
    }
}
