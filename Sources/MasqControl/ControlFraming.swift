import Foundation

/// How requests and answers travel on the control socket (a Unix stream socket, one request per
/// connection, in the spirit of HAProxy's runtime API): the client writes one JSON object, a
/// `ControlRequest`, and closes its sending side; the daemon reads to that end of input, writes one
/// JSON object, a `ControlReply`, and closes. The end of the stream delimits each message, so there
/// is no length prefix; each side bounds what it reads instead.
public enum ControlFraming {
    /// The most a request may hold (a `restore` of a large rules file fits many times over); the
    /// daemon refuses more with `requestTooLarge` and reads no further.
    public static let maximumRequest = 16 << 20
    /// The most a client reads of an answer: 4 GiB, a `flows` answer of some 18 million entries (about
    /// 230 bytes each); a larger table is better read from a SIGUSR1 dump.
    public static let maximumReply = 1 << 32

    /// The request as sent: its JSON and a newline (for people reading with socat).
    public static func encode(_ request: ControlRequest) -> [UInt8] {
        // Encoding a request cannot fail: strings, numbers and arrays of them only.
        (try? JSONEncoder().encode(request)).map { Array($0) + [UInt8(ascii: "\n")] } ?? []
    }

    /// A request as received, or why it is not one.
    public static func decodeRequest<Bytes: Collection<UInt8>>(_ bytes: Bytes) throws(ControlError) -> ControlRequest {
        guard bytes.contains(where: { !Self.isBlank($0) }) else { throw ControlError(.badRequest, "empty request") }
        do {
            return try JSONDecoder().decode(ControlRequest.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw ControlError(.badRequest, describe(error))
        } catch {
            throw ControlError(.badRequest, "\(error)")
        }
    }

    /// The answer as sent: its JSON and a newline.
    public static func encode(_ reply: ControlReply) -> [UInt8] {
        if case .flows(let records) = reply {
            // The same object JSONEncoder writes, from the records' own lines: JSONEncoder builds a tree
            // of every record first, 4 times slower and a gigabyte for a table of a million flows.
            var text = #"{"ok":"flows","flows":["#
            text.reserveCapacity(records.count * 230 + 32)
            for (i, record) in records.enumerated() {
                if i > 0 { text += "," }
                text += record.jsonLine
            }
            text += "]}\n"
            return Array(text.utf8)
        }
        let encoder = JSONEncoder()
        do {
            return Array(try encoder.encode(reply)) + [UInt8(ascii: "\n")]
        } catch {
            let failure = ControlReply.failure(ControlError(.failed, "masq cannot encode its answer: \(error)"))
            return ((try? encoder.encode(failure)).map(Array.init) ?? []) + [UInt8(ascii: "\n")]
        }
    }

    /// An answer as received; what is not an answer reads as a failure of the kind `noAnswer` or `badReply`.
    public static func decodeReply<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> ControlReply {
        guard bytes.contains(where: { !Self.isBlank($0) }) else {
            return .failure(ControlError(.noAnswer, "masq closed the connection without an answer"))
        }
        do {
            return try JSONDecoder().decode(ControlReply.self, from: Data(bytes))
        } catch let error as DecodingError {
            return .failure(ControlError(.badReply, "masq answered something this client cannot read: \(describe(error))"))
        } catch {
            return .failure(ControlError(.badReply, "masq answered something this client cannot read: \(error)"))
        }
    }

    private static func isBlank(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
    }

    /// A decoding error in a line: where, and what.
    static func describe(_ error: DecodingError) -> String {
        func place(_ path: [any CodingKey]) -> String {
            path.isEmpty ? "" : " at '" + path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".") + "'"
        }
        switch error {
        case .dataCorrupted(let context):
            return context.debugDescription
        case .keyNotFound(let key, let context):
            return "'\(key.stringValue)' is missing" + place(context.codingPath)
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            return "expected \(type)" + place(context.codingPath)
        @unknown default:
            return "\(error)"
        }
    }
}
