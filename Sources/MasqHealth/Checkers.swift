import Crypto
import MasqCore
import NIOCore
import NIOHTTP1
import NIOPosix

/// One probe of a real server, as keepalived's checkers do it: TCP_CHECK (a connection completes
/// within `connect_timeout`) and HTTP_GET (a GET per URL; each answer's status must be the expected
/// one — any 2xx when none is given — and, with `digest`, the MD5 of its body must match).
public enum Probe {
    public typealias HTTPURL = HTTPCheck.URLCheck

    public enum Kind: Equatable, Sendable {
        case tcp
        case http(urls: [HTTPURL], virtualHost: String?)
    }

    /// The outcome, with the reason a failure is logged with.
    public enum Result: Equatable, Sendable {
        case success
        case failure(String)
        public var succeeded: Bool { self == .success }
    }

    /// Runs one probe against `address:port` (optionally from `bindTo`), bounded by `timeout` seconds.
    public static func run(_ kind: Kind, address: IPv4Address, port: UInt16, bindTo: IPv4Address? = nil,
                           timeout: Double, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async -> Result {
        let deadline = TimeAmount.nanoseconds(Int64(timeout * 1e9))
        switch kind {
        case .tcp:
            do {
                let channel = try await bootstrap(group, bindTo: bindTo, timeout: deadline)
                    .connect(host: address.description, port: Int(port)).get()
                try? await channel.close()
                return .success
            } catch {
                return .failure("TCP connect to \(address):\(port) failed: \(error)")
            }
        case .http(let urls, let host):
            for url in urls {
                let result = await get(url, address: address, port: port, host: host, bindTo: bindTo,
                                       timeout: deadline, group: group)
                if !result.succeeded { return result }
            }
            return .success
        }
    }

    static func bootstrap(_ group: EventLoopGroup, bindTo: IPv4Address?, timeout: TimeAmount) -> ClientBootstrap {
        var b = ClientBootstrap(group: group).connectTimeout(timeout)
        if let bindTo, let local = try? SocketAddress(ipAddress: bindTo.description, port: 0) {
            b = b.bind(to: local)
        }
        return b
    }

    static func get(_ url: HTTPURL, address: IPv4Address, port: UInt16, host: String?, bindTo: IPv4Address?,
                    timeout: TimeAmount, group: EventLoopGroup) async -> Result {
        let promise = group.next().makePromise(of: (HTTPResponseStatus, [UInt8]).self)
        let collector = ResponseCollector(promise: promise)
        do {
            let channel = try await bootstrap(group, bindTo: bindTo, timeout: timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(collector)
                    }
                }
                .connect(host: address.description, port: Int(port)).get()
            var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: url.path)
            head.headers.add(name: "Host", value: url.virtualhost ?? host ?? "\(address):\(port)")
            head.headers.add(name: "User-Agent", value: "masq-health-check")
            head.headers.add(name: "Connection", value: "close")
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            let timer = channel.eventLoop.scheduleTask(in: timeout) {
                collector.fail(ChannelError.connectTimeout(timeout))
            }
            defer {
                timer.cancel()
                channel.close(promise: nil)
            }
            let (status, body) = try await promise.futureResult.get()
            guard url.accepts(status: Int(status.code)) else {
                let expected = (url.statusCodes ?? [200...299]).map {
                    $0.lowerBound == $0.upperBound ? "\($0.lowerBound)" : $0 == 200...299 ? "2xx" : "\($0.lowerBound)-\($0.upperBound)"
                }.joined(separator: ",")
                return .failure("GET \(url.path) on \(address):\(port): status \(status.code), expected \(expected)")
            }
            if let digest = url.digest {
                let actual = md5Hex(body)
                guard actual == digest.lowercased() else {
                    return .failure("GET \(url.path) on \(address):\(port): digest \(actual), expected \(digest)")
                }
            }
            return .success
        } catch {
            collector.fail(error)
            return .failure("GET \(url.path) on \(address):\(port) failed: \(error)")
        }
    }

    /// keepalived's `digest`: the body's MD5 in lower-case hex.
    public static func md5Hex(_ bytes: [UInt8]) -> String {
        Insecure.MD5.hash(data: bytes).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}

/// Gathers one HTTP response (status and body) and completes the promise at its end.
final class ResponseCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    private let promise: EventLoopPromise<(HTTPResponseStatus, [UInt8])>
    private var status: HTTPResponseStatus = .ok
    private var body: [UInt8] = []
    private static let maximumBody = 16 << 20

    private var completed = false

    init(promise: EventLoopPromise<(HTTPResponseStatus, [UInt8])>) { self.promise = promise }

    /// Completes the probe once; later outcomes (a close after the end, the timer) are ignored.
    func fail(_ error: Error) {
        guard !completed else { return }
        completed = true
        promise.fail(error)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = head.status
        case .body(var buffer):
            if body.count < Self.maximumBody, let bytes = buffer.readBytes(length: buffer.readableBytes) {
                body += bytes
            }
        case .end:
            guard !completed else { return }
            completed = true
            promise.succeed((status, body))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(ChannelError.eof)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(error)
        context.close(promise: nil)
    }
}
