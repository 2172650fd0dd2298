/// Which flows a dump or a packet trace is about: `proto=tcp client=198.18.0.12 vip=198.18.0.1:80
/// rs=198.19.0.201 state=ESTABLISHED` — every term must match (AND); terms are separated by spaces or
/// commas; an address term may carry a port (`ADDR:PORT`) or not (any port).
public struct FlowFilter: Equatable, Sendable, CustomStringConvertible {
    public struct Endpoint: Equatable, Sendable {
        public var address: IPAddress
        public var port: UInt16?

        func matches(_ a: IPAddress, _ p: UInt16?) -> Bool {
            a == address && (port == nil || p == nil || port == p)
        }
    }

    public var proto: IPProtocol?
    public var client: Endpoint?
    public var virtual: Endpoint?
    public var server: Endpoint?
    public var state: String?

    public init() {}

    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    public init(_ text: String) throws(ParseError) {
        for term in text.split(whereSeparator: { $0 == " " || $0 == "," }) {
            let parts = term.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else {
                throw ParseError(description: "filter term '\(term)' is not KEY=VALUE (keys: proto, client, vip, rs, state)")
            }
            let value = String(parts[1])
            func endpoint() throws(ParseError) -> Endpoint {
                guard let (address, port) = IPAddress.endpoint(Substring(value)) else {
                    throw ParseError(description: "filter term '\(term)': '\(value)' is not ADDRESS[:PORT] or [IPV6][:PORT]")
                }
                return Endpoint(address: address, port: port)
            }
            switch parts[0].lowercased() {
            case "proto", "protocol":
                switch value.lowercased() {
                case "tcp": proto = .tcp
                case "udp": proto = .udp
                default: throw ParseError(description: "filter term '\(term)': proto is tcp or udp")
                }
            case "client", "source", "src": client = try endpoint()
            case "vip", "virtual", "service": virtual = try endpoint()
            case "rs", "real_server", "realserver", "server", "destination", "dst": server = try endpoint()
            case "state":
                // A misspelt state would match nothing and look like an empty table: refuse it.
                let name = value.uppercased()
                guard Self.stateNames.contains(name) else {
                    throw ParseError(description: "filter term '\(term)': unknown state; one of "
                        + Self.stateNames.joined(separator: ", "))
                }
                state = name
            default:
                throw ParseError(description: "filter term '\(term)': unknown key '\(parts[0])' (keys: proto, client, vip, rs, state)")
            }
        }
    }

    /// The states a flow can be in, as `ipvsadm -L -c` and `masq flows` print them: IPVS's TCP states
    /// in its order (NONE is also a persistence template's), then UDP's one.
    public static let stateNames: [String] = (0..<ConnectionState.count).map {
        ConnectionState(rawValue: UInt8($0)).description
    }

    public var isEmpty: Bool { self == FlowFilter() }

    /// Whether the filter selects an IPv4 entry (an IPv6 one: `matches(_: FlowRecord)`).
    public func matches(_ c: Connection) -> Bool {
        matches(FlowRecord(c, now: 0))
    }

    public func matches(_ r: FlowRecord) -> Bool {
        if let proto, r.proto != proto { return false }
        if let client, !client.matches(r.client, r.clientPort) { return false }
        if let virtual, !virtual.matches(r.virtualAddress, r.virtualPort) { return false }
        if let server, !server.matches(r.server, r.serverPort) { return false }
        if let state, r.state.description != state { return false }
        return true
    }

    /// Whether a packet (by its own 5-tuple) could belong to a flow this filter selects, before the
    /// engine has looked it up: inbound packets carry client → VIP, outbound real server → client.
    /// Ports are nil for packets without them (ICMP), which then match on addresses alone.
    public func mayMatchPacket(source: IPv4Address, sourcePort: UInt16?, destination: IPv4Address,
                               destinationPort: UInt16?, proto packetProto: IPProtocol) -> Bool {
        mayMatchPacket(source: .v4(source), sourcePort: sourcePort, destination: .v4(destination),
                       destinationPort: destinationPort, proto: packetProto)
    }

    public func mayMatchPacket(source: IPAddress, sourcePort: UInt16?, destination: IPAddress,
                               destinationPort: UInt16?, proto packetProto: IPProtocol) -> Bool {
        if let proto, packetProto != proto && packetProto != .icmp { return false }
        // An inbound packet does not show the real server, nor an outbound one the VIP: those terms
        // cannot rule a packet out (with both `vip=` and `rs=` given, requiring either to be absent
        // made a trace miss every packet of the flows it selects; found by Fuzz/control.swift).
        let inbound = (client?.matches(source, sourcePort) ?? true)
            && (virtual?.matches(destination, destinationPort) ?? true)
        let outbound = (server?.matches(source, sourcePort) ?? true)
            && (client?.matches(destination, destinationPort) ?? true)
        let toServer = (client?.matches(source, sourcePort) ?? true) && (server?.matches(destination, destinationPort) ?? true)
        let fromVIP = (virtual?.matches(source, sourcePort) ?? true) && (client?.matches(destination, destinationPort) ?? true)
        return inbound || outbound || toServer || fromVIP
    }

    public var description: String {
        var terms: [String] = []
        if let proto { terms.append("proto=\(proto == .tcp ? "tcp" : "udp")") }
        func show(_ e: Endpoint) -> String { e.port.map { e.address.endpoint($0) } ?? "\(e.address)" }
        if let client { terms.append("client=\(show(client))") }
        if let virtual { terms.append("vip=\(show(virtual))") }
        if let server { terms.append("rs=\(show(server))") }
        if let state { terms.append("state=\(state)") }
        return terms.joined(separator: " ")
    }
}

extension Engine {
    /// The table as records (slot order), only those the filter selects.
    public func flowRecords(matching filter: FlowFilter) -> [FlowRecord] {
        if filter.isEmpty { return flowRecords() }
        var records: [FlowRecord] = []
        table.forEachLive { slot, c in
            let record = FlowRecord(c, addresses6: c.isIPv6 ? table.addresses6(slot) : nil, now: now)
            if filter.matches(record) { records.append(record) }
        }
        return records
    }
}
