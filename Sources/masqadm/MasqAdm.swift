// masqadm: ipvsadm's command line and output, against a running `masq run` (its control socket).
import Foundation
import MasqAdmin
import MasqControl
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
    func ask(_ request: ControlRequest) throws(AdminError) -> ControlReply {
        do {
            return try ControlClient.request(request, socket: socket)
        } catch {
            throw AdminError.fail("Can't initialize ipvs: \(error.explanation)\n"
                + "Are you sure that masq is running (masq run, control socket \(socket))?")
        }
    }

    /// What masqadm does with the daemon's answer: reads it with `read`, and words a refusal as ipvsadm
    /// words a failed IPVS call, the error's message (libipvs's words and what they are about, e.g.
    /// "No such service (at '198.18.0.1:80')") and exit 255 (`process_options` returns -1), whatever
    /// the code; the codes matter to clients that act on them, ipvsadm has one status for them all.
    func ask<Answer>(_ request: ControlRequest, _ read: (ControlReply) throws(ControlError) -> Answer) throws(AdminError) -> Answer {
        let reply = try ask(request)
        do {
            return try read(reply)
        } catch {
            throw AdminError.operationFailed(error.message)
        }
    }

    /// A request that only acts: -A -E -D -C -a -e -d, -R, -Z, --set.
    func act(_ request: ControlRequest) throws(AdminError) {
        try ask(request) { reply throws(ControlError) in try reply.requireDone() }
    }

    func state() throws(AdminError) -> AdminState {
        try ask(.state) { reply throws(ControlError) in try reply.requireState() }
    }

    func connections() throws(AdminError) -> [FlowRecord] {
        try ask(.flows(FlowFilter())) { reply throws(ControlError) in try reply.requireFlows() }
    }

    func syncStatus() throws(AdminError) -> SyncStatus {
        try ask(.syncStatus) { reply throws(ControlError) in try reply.requireSyncStatus() }
    }

    func run(_ arguments: [String]) -> Int32 {
        do throws(AdminError) {
            let command = try AdminCommandLine.parse(arguments)
            switch command {
            case .help:
                print(AdminCommandLine.help(), terminator: "")
            case .version:
                print(AdminCommandLine.versionText, terminator: "")
            case .edit(let command):
                try act(.apply(command))
            case .list(let options):
                let current = try state()
                let entries = options.connections ? try connections() : []
                let daemons = options.daemon ? try syncStatus() : nil
                print(try IPVSAdmFormat().list(current, options, connections: entries, syncStatus: daemons), terminator: "")
            case .zero(let key):
                try act(.zero(key))
            case .save(let numeric):
                print(IPVSAdmFormat().save(try state(), numeric: numeric), terminator: "")
            case .restore:
                let input = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
                var lines: [String] = []
                for words in AdminCommandLine.restoreArguments(input) where !words.isEmpty {
                    // Each line is checked as ipvsadm would before anything is sent; the daemon then
                    // applies them all or none.
                    guard case .edit(let command) = try AdminCommandLine.parse(words, readingStdin: true) else {
                        throw AdminError.fail("-R takes editing commands only (-A -E -D -C -a -e -d): \(words.joined(separator: " "))")
                    }
                    // Sent as numeric words: the daemon needs none of this host's names.
                    lines.append(command.ipvsadmArguments.joined(separator: " "))
                }
                try act(.restore(rules: lines.joined(separator: "\n")))
            case .setTimeouts(let tcp, let tcpFin, let udp):
                try act(.setTimeouts(tcp: tcp, tcpFin: tcpFin, udp: udp))
            case .startDaemon(let daemon):
                try act(.startDaemon(daemon))
            case .stopDaemon(let role):
                try act(.stopDaemon(role))
            }
            return 0
        } catch {
            return Self.fail(error)
        }
    }
}
