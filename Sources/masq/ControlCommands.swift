import ArgumentParser
import Foundation
import MasqControl
import MasqCore

// `masq flows` and `masq trace`: requests to a running daemon over its control socket.
/// One request to the running daemon, its answer read with `read`; an unreachable daemon or a refusal
/// becomes a user error.
func askDaemon<Answer>(_ request: ControlRequest, socket: String,
                       _ read: (ControlReply) throws(ControlError) -> Answer) throws -> Answer {
    let reply: ControlReply
    do {
        reply = try ControlClient.request(request, socket: socket)
    } catch {
        throw MasqError("\(error.description) (is `masq run` running?)")
    }
    do {
        return try read(reply)
    } catch {
        throw MasqError(error.message)
    }
}

/// The filter a user gave, or a user error saying why it is not one.
func flowFilter(_ text: String) throws -> FlowFilter {
    do { return try FlowFilter(text) } catch { throw MasqError(error.description) }
}

struct Flows: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Dump the running daemon's connection table.",
        discussion: """
            FILTER terms, all of which must match: proto=tcp|udp client=ADDR[:PORT] vip=ADDR[:PORT] \
            rs=ADDR[:PORT] state=STATE (e.g. ESTABLISHED), separated by spaces or commas.
            """)

    @Flag(help: "JSON lines, the schema of `masq replay --flows`.")
    var json = false

    @Option(help: "Only the flows that match, e.g. 'vip=198.18.0.1:80 state=ESTABLISHED'.")
    var filter = ""

    @Option(help: ArgumentHelp("The daemon's control socket (default: $MASQ_CONTROL_SOCKET, else \(ControlClient.defaultSocket)).",
                               valueName: "PATH|@NAME"))
    var socket: String?

    func run() throws {
        let flows = try askDaemon(.flows(try flowFilter(filter)), socket: ControlClient.socketPath(option: socket)) {
            reply throws(ControlError) in try reply.requireFlows()
        }
        if json {
            print(FlowRecord.jsonLines(flows), terminator: "")
            return
        }
        print("pro  state        client                 virtual                real server            expire  pkts in/out      bytes in/out")
        for f in flows {
            let e = f.expiresIn
            print(pad(f.protoName.uppercased() + (f.isTemplate ? "*" : ""), 4), pad(f.state.description, 12),
                  pad("\(f.client):\(f.clientPort)", 22), pad("\(f.virtualAddress):\(f.virtualPort)", 22),
                  pad("\(f.server):\(f.serverPort)", 22), pad(String(format: "%02d:%02d", e / 60, e % 60), 7),
                  pad("\(f.packetsIn)/\(f.packetsOut)", 16), "\(f.bytesIn)/\(f.bytesOut)")
        }
    }

    func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
}

struct Trace: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask the running daemon to record the packets of matching flows to a pcap file.",
        discussion: """
            Each matching packet is written as it arrived and again as masq sent it (unless dropped), \
            raw IP link type; the trace ends after --packets packets or --seconds seconds, and the \
            daemon logs when it has. Open the file with Wireshark or tshark.
            """)

    @Option(help: "Which flows (see `masq flows --help`); empty traces every queued packet.")
    var filter = ""

    @Option(help: "Stop after this many packets.")
    var packets = 100

    @Option(help: "Stop after this many seconds.")
    var seconds = 60

    @Option(help: "The pcap file the daemon writes.")
    var out: String

    @Option(help: ArgumentHelp("The daemon's control socket (default: $MASQ_CONTROL_SOCKET, else \(ControlClient.defaultSocket)).",
                               valueName: "PATH|@NAME"))
    var socket: String?

    func run() throws {
        let selection = try flowFilter(filter)
        guard packets > 0, seconds > 0 else { throw ValidationError("--packets and --seconds must be positive") }
        let path = out.hasPrefix("/") ? out : FileManager.default.currentDirectoryPath + "/" + out
        let note = try askDaemon(.trace(selection, packets: packets, seconds: seconds, file: path),
                                 socket: ControlClient.socketPath(option: socket)) {
            reply throws(ControlError) in try reply.requireText()
        }
        print(note, terminator: "")
    }
}
