// masqadm: ipvsadm's command line and output, against a running `masq run` (its control socket).
import Foundation
import MasqAdmin
import MasqCore

@main
struct MasqAdm {
    /// The daemon's control socket: `--socket`, else `MASQ_CONTROL_SOCKET`, else masq's default.
    let socket: String

    static func main() {
        let (socket, arguments) = splitSocketOption(Array(CommandLine.arguments.dropFirst()))
        exit(MasqAdm(socket: ControlClient.socketPath(option: socket)).run(arguments))
    }

    /// masqadm's one option ipvsadm lacks, `--socket PATH|@NAME` (or `--socket=...`), taken out before
    /// ipvsadm's own parsing sees the rest.
    static func splitSocketOption(_ arguments: [String]) -> (socket: String?, rest: [String]) {
        var socket: String?
        var rest: [String] = []
        var i = 0
        while i < arguments.count {
            let word = arguments[i]
            if word == "--socket" {
                // A missing value reads as an empty name, which the client refuses with its reason.
                socket = i + 1 < arguments.count ? arguments[i + 1] : ""
                i += 2
                continue
            }
            if word.hasPrefix("--socket=") {
                socket = String(word.dropFirst("--socket=".count))
            } else {
                rest.append(word)
            }
            i += 1
        }
        return (socket, rest)
    }

    static func printError(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    static func fail(_ error: AdminError) -> Int32 {
        printError(error.standardError())
        return error.exitCode
    }

    /// One request to the daemon; an unreachable daemon reads as ipvsadm's "Can't initialize ipvs".
    func ask(_ request: String) throws(AdminError) -> String {
        let reply: ControlClient.Reply
        do {
            reply = try ControlClient.request(request, socket: socket)
        } catch {
            throw AdminError.fail("Can't initialize ipvs: \(error.explanation)\n"
                + "Are you sure that masq is running (masq run, control socket \(socket))?")
        }
        guard reply.ok else { throw AdminError.operationFailed(reply.message) }
        return reply.body
    }

    func state() throws(AdminError) -> AdminState {
        let body = try ask("state")
        do {
            return try JSONDecoder().decode(AdminState.self, from: Data(body.utf8))
        } catch {
            throw AdminError.operationFailed("masq answered something masqadm cannot read: \(error)")
        }
    }

    func connections() throws(AdminError) -> [ConnectionEntry] {
        let body = try ask("flows")
        func split(_ endpoint: String) -> (String, UInt16) {
            guard let colon = endpoint.lastIndex(of: ":") else { return (endpoint, 0) }
            return (String(endpoint[..<colon]), UInt16(endpoint[endpoint.index(after: colon)...]) ?? 0)
        }
        return FlowLine.parse(body).map { f in
            let (c, cp) = split(f.client), (v, vp) = split(f.vip), (r, rp) = split(f.realServer)
            return ConnectionEntry(proto: f.proto.uppercased(), expires: f.expires, state: f.state, client: c,
                                   clientPort: cp, virtualAddress: v, virtualPort: vp, server: r, serverPort: rp)
        }
    }

    func run(_ arguments: [String]) -> Int32 {
        do throws(AdminError) {
            let command = try AdminCommandLine.parse(arguments)
            switch command {
            case .help:
                print(AdminCommandLine.help(), terminator: "")
            case .version:
                print(AdminCommandLine.versionText, terminator: "")
            case .edit(_, let words):
                _ = try ask("apply " + words.joined(separator: " "))
            case .list(let options):
                let current = try state()
                let entries = options.connections ? try connections() : []
                print(try IPVSAdmFormat().list(current, options, connections: entries), terminator: "")
            case .zero(let key):
                if let key {
                    _ = try ask("zero \(key.proto == .udp ? "-u" : "-t") \(key.address):\(key.port)")
                } else {
                    _ = try ask("zero")
                }
            case .save(let numeric):
                print(IPVSAdmFormat().save(try state(), numeric: numeric), terminator: "")
            case .restore:
                let input = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
                var lines: [String] = []
                for words in AdminCommandLine.restoreArguments(input) where !words.isEmpty {
                    // Each line is checked as ipvsadm would before anything is sent; the daemon then
                    // applies them all or none.
                    guard case .edit(_, let normalized) = try AdminCommandLine.parse(words, readingStdin: true) else {
                        throw AdminError.fail("-R takes editing commands only (-A -E -D -C -a -e -d): \(words.joined(separator: " "))")
                    }
                    lines.append(normalized.joined(separator: " "))
                }
                _ = try ask("restore\n" + lines.joined(separator: "\n"))
            case .setTimeouts(let tcp, let tcpFin, let udp):
                _ = try ask("timeout \(tcp) \(tcpFin) \(udp)")
            }
            return 0
        } catch {
            return Self.fail(error)
        }
    }
}
