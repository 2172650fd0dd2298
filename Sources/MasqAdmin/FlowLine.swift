import Foundation

/// One line of the daemon's `flows` answer (`FlowRecord.jsonLine`), as `masq flows` and
/// `masqadm -L -c` read it back.
public struct FlowLine: Decodable, Sendable {
    public var proto: String
    public var client: String
    public var vip: String
    public var realServer: String
    public var state: String
    public var expires: Int64
    public var template: Bool
    public var packetsIn: UInt64
    public var packetsOut: UInt64
    public var bytesIn: UInt64
    public var bytesOut: UInt64

    enum CodingKeys: String, CodingKey {
        case proto, client, vip, state, expires, template
        case realServer = "real_server", packetsIn = "packets_in", packetsOut = "packets_out"
        case bytesIn = "bytes_in", bytesOut = "bytes_out"
    }

    /// The lines of a `flows` answer, in order; a line that does not parse is skipped.
    public static func parse(_ body: String) -> [FlowLine] {
        let decoder = JSONDecoder()
        return body.split(separator: "\n").compactMap { try? decoder.decode(FlowLine.self, from: Data($0.utf8)) }
    }
}
