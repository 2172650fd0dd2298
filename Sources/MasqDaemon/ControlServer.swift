import Foundation
import Logging
import MasqControl
import MasqCore
import MasqRules
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The runtime control socket, in the spirit of HAProxy's runtime API: a Unix socket (mode 0600 or an
/// abstract name; root or the daemon's user only), one request per connection, in MasqControl's
/// protocol: a JSON `ControlRequest` in, a JSON `ControlReply` out (`ControlFraming`). `ControlHandler`
/// reads and decodes the request, `ControlDispatcher` applies it to the control plane (`ControlPlane`).
public struct ControlService: Service {
    let core: ControlPlane
    let listener: ControlSocketListener
    let logger: Logger

    init(core: ControlPlane, listener: ControlSocketListener, logger: Logger) {
        self.core = core
        self.listener = listener
        self.logger = logger
    }

    public func run() async throws {
        let core = self.core
        let listener = self.listener
        let path = listener.address.text
        let channel: Channel
        do {
            channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ControlHandler(dispatcher: ControlDispatcher(core: core)))
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

/// One control connection: gather the request until the client half-closes, decode it, answer, close.
/// Lives on its channel's event loop only.
final class ControlHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Whether a peer may send requests, from its credentials.
    typealias PeerCheck = (Channel) -> EventLoopFuture<Bool>

    /// Root, or the daemon's own user (SO_PEERCRED). Every peer is checked: an abstract socket has no
    /// file mode at all, and a socket file's 0600 could be changed. A channel without socket options
    /// (not a socket) is refused.
    static func rootOrDaemonUser(_ channel: Channel) -> EventLoopFuture<Bool> {
        guard let provider = channel as? SocketOptionProvider else { return channel.eventLoop.makeSucceededFuture(false) }
        let credentials: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        return credentials.map { $0.isRootOrSelf }.recover { _ in false }
    }

    private let dispatcher: ControlDispatcher
    private let peerCheck: PeerCheck

    private enum Peer {
        /// Its credentials are not read yet: what it sends is kept for later.
        case unchecked
        case allowed
        /// Someone else: its request is read and dropped, and the refusal sent once it has finished
        /// writing (closing with its bytes unread would reset the connection before it reads why).
        case denied
    }

    private var peer = Peer.unchecked
    private var request: ByteBuffer?
    /// Bytes read so far (the request's, or those dropped from a refused peer).
    private var received = 0
    /// The answer is sent (or being sent): whatever else comes is ignored.
    private var answered = false

    init(dispatcher: ControlDispatcher, peerCheck: @escaping PeerCheck = ControlHandler.rootOrDaemonUser) {
        self.dispatcher = dispatcher
        self.peerCheck = peerCheck
    }

    func channelActive(context: ChannelHandlerContext) {
        // On the event loop the socket option's future is already complete, before any read.
        peerCheck(context.channel).assumeIsolated().whenComplete { result in
            self.peer = (try? result.get()) == true ? .allowed : .denied
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var part = unwrapInboundIn(data)
        guard !answered else { return }
        received += part.readableBytes
        guard received <= ControlFraming.maximumRequest else {
            if peer == .denied {
                context.close(promise: nil)
            } else {
                respond(context, .failure(ControlError(.requestTooLarge,
                                                       "request too large")))
            }
            return
        }
        guard peer != .denied else { return }
        if request == nil {
            request = part
        } else {
            request!.writeBuffer(&part)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? ChannelEvent, event == .inputClosed else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard !answered else { return }
        guard peer == .allowed else {
            respond(context, .failure(ControlError(.permissionDenied, "Permission denied (you must be root)")))
            return
        }
        let bytes = request?.readableBytesView ?? ByteBuffer().readableBytesView
        do throws(ControlError) {
            respond(context, dispatcher.reply(to: try ControlFraming.decodeRequest(bytes)))
        } catch {
            respond(context, .failure(error))
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ reply: ControlReply) {
        answered = true
        request = nil
        let bytes = ControlFraming.encode(reply)
        var out = context.channel.allocator.buffer(capacity: bytes.count)
        out.writeBytes(bytes)
        context.writeAndFlush(wrapOutboundOut(out)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// Applies a decoded request to the daemon's control plane and says how it went, in the protocol's
/// terms: the typed error codes, never ipvsadm's exit statuses (masqadm words those).
struct ControlDispatcher: Sendable {
    let core: ControlPlane

    func reply(to request: ControlRequest) -> ControlReply {
        switch request {
        case .help:
            return .text(ControlRequest.helpText)
        case .state:
            return .state(core.state())
        case .flows(let filter):
            return .flows(core.flows(filter))
        case .apply(let command):
            return done { () throws(RulesError) in try core.edit(command) }
        case .restore(let rules):
            return done { () throws(RulesError) in try core.restore(rules) }
        case .zero(let key):
            return done { () throws(RulesError) in try core.zero(key) }
        case .setTimeouts(let tcp, let tcpFin, let udp):
            core.setTimeouts(tcp: tcp, tcpFin: tcpFin, udp: udp)
            return .done
        case .save:
            return .text(RulesFile.format(core.currentConfiguration))
        case .trace(let filter, let packets, let seconds, let file):
            do {
                try core.startTrace(filter: filter, packets: packets, seconds: seconds, path: file)
            } catch {
                let code: ControlError.Code = switch error {
                case .busy: .busy
                case .cannotCreate: .failed
                }
                return .failure(ControlError(code, error.description))
            }
            return .text("tracing \(filter.isEmpty ? "every flow" : filter.description) to \(file) for \(packets) packets or \(seconds) s\n")
        case .startDaemon(let config):
            do {
                try core.startSyncDaemon(config)
                return .done
            } catch {
                return .failure(error.controlError)
            }
        case .stopDaemon(let role):
            do {
                try core.stopSyncDaemon(role)
                return .done
            } catch {
                return .failure(error.controlError)
            }
        case .syncStatus:
            return .syncStatus(core.sync.status())
        }
    }

    /// A change's answer: done, or IPVS's refusal as its error code.
    private func done(_ change: () throws(RulesError) -> Void) -> ControlReply {
        do {
            try change()
            return .done
        } catch {
            return .failure(ControlError(error))
        }
    }
}
