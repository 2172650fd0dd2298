import Foundation
import Logging
import MasqAdmin
import MasqCore
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The runtime control socket, in the spirit of HAProxy's runtime API: a Unix socket (mode 0600, root
/// only), one request per connection. The client writes a command line (and, for `restore`, the rules
/// after it), closes its sending side, and reads the answer: a status line, `OK` or
/// `ERR <exit code> <message>`, then the body, then the server closes. Commands:
///
///     state                       JSON: services, real servers, counts, counters, rates, timeouts
///     flows [FILTER]              the connection table, JSON lines (the `masq replay --flows` schema)
///     apply IPVSADM-ARGS          one of -A -E -D -C -a -e -d, in ipvsadm's syntax
///     restore                     the lines after this one, ipvsadm-save syntax, applied all or none
///     zero [-t|-u VIP:PORT]       zero counters (ipvsadm -Z)
///     timeout TCP TCPFIN UDP      ipvsadm --set (0 keeps a value)
///     save                        the running configuration, ipvsadm-save -n syntax
///     trace FILTER packets=N seconds=S file=PATH
///                                 record the matching flows' packets, before and after NAT, to a pcap
///     help                        this list
public struct ControlService: Service {
    let core: DaemonCore
    let listener: ControlSocketListener
    let logger: Logger

    init(core: DaemonCore, listener: ControlSocketListener, logger: Logger) {
        self.core = core
        self.listener = listener
        self.logger = logger
    }

    public func run() async throws {
        let core = self.core
        let logger = self.logger
        let listener = self.listener
        let path = listener.address.text
        let channel: Channel
        do {
            channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ControlHandler(core: core, logger: logger))
                    }
                }
                .withBoundSocket(listener.descriptor)
                .get()
        } catch {
            listener.removeFile()  // NIO owns the descriptor once handed over, and closes it
            throw DaemonError("control socket \(path): cannot listen: \(error)")
        }
        logger.info("control socket listening", metadata: ["path": "\(path)"])
        await withGracefulShutdownHandler {
            try? await channel.closeFuture.get()
        } onGracefulShutdown: {
            channel.close(promise: nil)
        }
        listener.removeFile()
    }
}

/// One control connection: gather the request until the client half-closes, answer, close.
final class ControlHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let core: DaemonCore
    private let logger: Logger
    private var request: ByteBuffer?
    private static let maximumRequest = 16 << 20

    init(core: DaemonCore, logger: Logger) {
        self.core = core
        self.logger = logger
    }

    /// Set once the peer's credentials are checked: root, or the daemon's own user.
    private var allowed = false
    /// The peer is someone else: its request is read and dropped, and the refusal sent once it has
    /// finished writing (closing with its bytes unread would reset the connection before it reads why).
    private var denied = false
    private var discarded = 0

    func channelActive(context: ChannelHandlerContext) {
        // Every peer's credentials are checked (SO_PEERCRED): an abstract socket has no file mode at all,
        // and a socket file's 0600 could be changed.
        // On the event loop the option future is already complete.
        guard let provider = context.channel as? SocketOptionProvider else { return }
        let future: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        future.whenComplete { result in
            if case .success(let credentials) = result, credentials.uid == 0 || credentials.uid == getuid() {
                self.allowed = true
            } else {
                self.denied = true
            }
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard allowed else {
            discarded += unwrapInboundIn(data).readableBytes
            if discarded > Self.maximumRequest { context.close(promise: nil) }
            return
        }
        var part = unwrapInboundIn(data)
        if request == nil {
            request = part
        } else {
            request!.writeBuffer(&part)
        }
        if request!.readableBytes > Self.maximumRequest {
            respond(context, status: "ERR 2 request too large", body: "")
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            guard allowed else {
                if denied { respond(context, status: "ERR 2 Permission denied (you must be root)", body: "") }
                return
            }
            let text = request.map { String(buffer: $0) } ?? ""
            let (status, body) = ControlCommands.execute(text, core: core, logger: logger)
            respond(context, status: status, body: body)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func respond(_ context: ChannelHandlerContext, status: String, body: String) {
        var out = context.channel.allocator.buffer(capacity: status.utf8.count + body.utf8.count + 2)
        out.writeString(status)
        out.writeString("\n")
        out.writeString(body)
        context.writeAndFlush(wrapOutboundOut(out)).whenComplete { _ in context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// `struct ucred` (SO_PEERCRED), which glibc declares only under _GNU_SOURCE.
struct PeerCredentials {
    var pid: pid_t = 0
    var uid: uid_t = 0
    var gid: gid_t = 0
}

/// The control commands, on the daemon's control plane.
public enum ControlCommands {
    public static let help = """
        state | flows [FILTER] | apply IPVSADM-ARGS | restore (rules follow) | zero [-t|-u VIP:PORT]
        timeout TCP TCPFIN UDP | save | trace FILTER packets=N seconds=S file=PATH | help

        """

    /// Runs one request; returns the status line and the body.
    public static func execute(_ request: String, core: DaemonCore, logger: Logger) -> (String, String) {
        let lines = request.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
        let words = (lines.first ?? "").split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
        let rest = lines.count > 1 ? String(lines[1]) : ""
        guard let command = words.first else { return ("ERR 255 empty request", help) }
        let args = Array(words.dropFirst())
        func fail(_ error: RulesError, code: Int = 2) -> (String, String) {
            ("ERR \(code) \(error.message)" + (error.token.isEmpty ? "" : " (at '\(error.token)')"), "")
        }
        switch command {
        case "help":
            return ("OK", help)
        case "state":
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            guard let data = try? encoder.encode(core.state()) else { return ("ERR 1 cannot encode state", "") }
            return ("OK", String(decoding: data, as: UTF8.self) + "\n")
        case "flows":
            let filter: FlowFilter
            do {
                filter = try FlowFilter(args.joined(separator: " "))
            } catch {
                return ("ERR 2 \(error.description)", "")
            }
            var body = ""
            for record in core.flows(filter) {
                body += record.jsonLine
                body += "\n"
            }
            return ("OK", body)
        case "apply":
            do {
                let parsed = try IPVSCommandParser.parse(args)
                try core.edit(parsed)
                return ("OK", "")
            } catch {
                return fail(error)
            }
        case "restore":
            do {
                try core.restore(rest)
                return ("OK", "")
            } catch {
                return ("ERR 2 \(error.description)", "")
            }
        case "zero":
            var key: ServiceKey?
            if !args.isEmpty {
                guard args.count == 2, args[0] == "-t" || args[0] == "-u",
                      let (address, port) = IPVSCommandParser.parseEndpoint(args[1]) else {
                    return ("ERR 2 zero takes no argument or -t|-u VIP:PORT", "")
                }
                key = ServiceKey(proto: args[0] == "-u" ? .udp : .tcp, address: address, port: port ?? 0)
            }
            do {
                try core.zero(key)
                return ("OK", "")
            } catch {
                return fail(error, code: 255)
            }
        case "timeout":
            guard args.count == 3, let tcp = UInt32(args[0]), let fin = UInt32(args[1]), let udp = UInt32(args[2]) else {
                return ("ERR 2 --set option requires 3 timeout values", "")
            }
            core.setTimeouts(tcp: tcp, tcpFin: fin, udp: udp)
            return ("OK", "")
        case "save":
            return ("OK", RulesFile.format(core.currentConfiguration))
        case "trace":
            var filterTerms: [String] = []
            var packets = 100
            var seconds = 60
            var file: String?
            for a in args {
                if a.hasPrefix("packets="), let n = Int(a.dropFirst(8)), n > 0 { packets = n }
                else if a.hasPrefix("seconds="), let n = Int(a.dropFirst(8)), n > 0 { seconds = n }
                else if a.hasPrefix("file=") { file = String(a.dropFirst(5)) }
                else { filterTerms.append(a) }
            }
            guard let file, file.hasPrefix("/") else { return ("ERR 2 trace needs file=/ABSOLUTE/PATH.pcap", "") }
            do {
                let filter = try FlowFilter(filterTerms.joined(separator: " "))
                try core.startTrace(filter: filter, packets: packets, seconds: seconds, path: file)
                return ("OK", "tracing \(filter.isEmpty ? "every flow" : filter.description) to \(file) for \(packets) packets or \(seconds) s\n")
            } catch let error as FlowFilter.ParseError {
                return ("ERR 2 \(error.description)", "")
            } catch {
                return ("ERR 1 \(error)", "")
            }
        default:
            return ("ERR 255 unknown command '\(command)'", help)
        }
    }
}
