import MasqCore

/// One row of `ipvsadm -L -c` (a connection or persistence template), from the daemon's table.
public struct ConnectionEntry: Codable, Equatable, Sendable {
    /// "TCP" or "UDP".
    public var proto: String
    /// Whole seconds left.
    public var expires: Int64
    /// "ESTABLISHED", "TIME_WAIT", … ("NONE" for templates).
    public var state: String
    public var client: String
    public var clientPort: UInt16
    public var virtualAddress: String
    public var virtualPort: UInt16
    public var server: String
    public var serverPort: UInt16

    public init(proto: String, expires: Int64, state: String, client: String, clientPort: UInt16,
                virtualAddress: String, virtualPort: UInt16, server: String, serverPort: UInt16) {
        self.proto = proto
        self.expires = expires
        self.state = state
        self.client = client
        self.clientPort = clientPort
        self.virtualAddress = virtualAddress
        self.virtualPort = virtualPort
        self.server = server
        self.serverPort = serverPort
    }
}

extension ConnectionEntry {
    /// The row `ipvsadm -L -c` prints for one of the daemon's flow records.
    public init(_ record: FlowRecord) {
        self.init(proto: record.protoName.uppercased(), expires: record.expiresIn, state: record.state.description,
                  client: record.client.description, clientPort: record.clientPort,
                  virtualAddress: record.virtualAddress.description, virtualPort: record.virtualPort,
                  server: record.server.description, serverPort: record.serverPort)
    }
}
