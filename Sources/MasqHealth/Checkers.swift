#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Crypto
import MasqCore
import NIOCore
import NIOHTTP1
import NIOPosix

/// Why a probe failed, in the words an LVS admin expects in the log ("connection refused", "timeout
/// after 5 s", "HTTP 404") rather than NIO's error descriptions.
public struct ProbeFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Reason: Equatable, Sendable, CustomStringConvertible {
        case connectionRefused
        /// No connection or no complete answer within `connect_timeout` (seconds).
        case timeout(seconds: Double)
        case connectionReset
        case noRouteToHost
        case networkUnreachable
        case hostDown
        /// The server closed the connection before the end of its answer.
        case closedEarly
        case malformedResponse
        /// The answer's status is not in `status_code` (`expected` as the file gives it, or 2xx).
        case httpStatus(Int, expected: String)
        case digestMismatch(actual: String, expected: String)
        /// Any other system error, by its errno (described by strerror).
        case system(errno: Int32)
        case other(String)

        public var description: String {
            switch self {
            case .connectionRefused: "connection refused"
            case .timeout(let seconds): "timeout after \(Self.seconds(seconds)) s"
            case .connectionReset: "connection reset"
            case .noRouteToHost: "no route to host"
            case .networkUnreachable: "network unreachable"
            case .hostDown: "host down"
            case .closedEarly: "connection closed before the answer was complete"
            case .malformedResponse: "malformed HTTP response"
            case .httpStatus(let code, let expected): "HTTP \(code) (expected \(expected))"
            case .digestMismatch(let actual, let expected): "digest mismatch: got \(actual), expected \(expected)"
            case .system(let code): String(cString: strerror(code)).lowercased()
            case .other(let text): text
            }
        }

        /// `5` for 5.0, `0.3` for 0.3: the timeout as the keepalived.conf would write it.
        static func seconds(_ value: Double) -> String {
            value == value.rounded() && abs(value) < 1e15 ? "\(Int64(value))" : "\(value)"
        }

        /// What NIO (or the kernel, through it) reported, in words; `timeout` is the probe's bound.
        public init(_ error: any Error, timeout: Double) {
            switch error {
            case let failure as ProbeFailure:
                self = failure.reason
            case is ResponseTimedOut:
                self = .timeout(seconds: timeout)
            case let io as IOError:
                self = Self(errno: io.errnoCode, timeout: timeout)
            case let channel as ChannelError:
                switch channel {
                case .connectTimeout: self = .timeout(seconds: timeout)
                case .eof, .ioOnClosedChannel, .alreadyClosed, .outputClosed, .inputClosed: self = .closedEarly
                default: self = .other("\(channel)")
                }
            case let connection as NIOConnectionError:
                // connect(host:port:) wraps each address's failure; ours is a single address literal.
                if let first = connection.connectionErrors.first {
                    self = Self(first.error, timeout: timeout)
                } else {
                    self = .other("\(connection)")
                }
            case is HTTPParserError:
                self = .malformedResponse
            default:
                self = .other("\(error)")
            }
        }

        init(errno code: Int32, timeout: Double) {
            switch code {
            case ECONNREFUSED: self = .connectionRefused
            case ETIMEDOUT: self = .timeout(seconds: timeout)
            case ECONNRESET, EPIPE: self = .connectionReset
            case EHOSTUNREACH: self = .noRouteToHost
            case ENETUNREACH: self = .networkUnreachable
            case EHOSTDOWN: self = .hostDown
            default: self = .system(errno: code)
            }
        }
    }

    /// What was tried: "TCP connect to 198.19.0.1:80", "GET /health on 198.19.0.1:80".
    public var check: String
    public var reason: Reason

    public init(check: String, reason: Reason) {
        self.check = check
        self.reason = reason
    }

    public var description: String { "\(check): \(reason)" }
}

/// The HTTP answer did not end within the probe's time.
struct ResponseTimedOut: Error {}

/// One probe of a real server, as keepalived's checkers do it: TCP_CHECK (a connection completes
/// within `connect_timeout`) and HTTP_GET (a GET per URL; each answer's status must be the expected
/// one — any 2xx when none is given — and, with `digest`, the MD5 of its body must match).
public enum Probe {
    public typealias HTTPURL = HTTPCheck.URLCheck

    public enum Kind: Equatable, Sendable {
        case tcp
        case http(urls: [HTTPURL], virtualHost: String?)
        case ssl(SSLCheck)
        case misc(MiscCheck)
        case udp(UDPCheck)
        case smtp(SMTPCheck)
        case dns(DNSCheck)
        case ping(PingCheck)

        /// The probe a configured checker runs.
        public init(_ kind: HealthCheck.Kind) {
            switch kind {
            case .tcp: self = .tcp
            case .http(let http): self = .http(urls: http.urls, virtualHost: nil)
            case .ssl(let c): self = .ssl(c)
            case .misc(let c): self = .misc(c)
            case .udp(let c): self = .udp(c)
            case .smtp(let c): self = .smtp(c)
            case .dns(let c): self = .dns(c)
            case .ping(let c): self = .ping(c)
            }
        }
    }

    /// The outcome, with the reason a failure is logged with.
    public enum Result: Equatable, Sendable {
        case success
        /// Passed, and sets the real server's weight: MISC_CHECK's misc_dynamic (exit status - 2).
        case weighted(Int)
        case failure(ProbeFailure)
        public var succeeded: Bool { if case .failure = self { false } else { true } }
    }

    /// Runs one probe against `address:port` (optionally from `bindTo`), bounded by `timeout` seconds.
    public static func run(_ kind: Kind, address: IPAddress, port: UInt16, bindTo: IPAddress? = nil,
                           timeout: Double, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async -> Result {
        let deadline = TimeAmount.nanoseconds(Int64(timeout * 1e9))
        switch kind {
        case .tcp:
            do {
                let channel = try await bootstrap(group, bindTo: bindTo, timeout: deadline)
                    .connect(to: socketAddress(address, port)).get()
                try? await channel.close()
                return .success
            } catch {
                return .failure(ProbeFailure(check: "TCP connect to \(address.endpoint(port))",
                                             reason: .init(error, timeout: timeout)))
            }
        case .http(let urls, let host):
            for url in urls {
                let result = await get(url, address: address, port: port, host: host, bindTo: bindTo,
                                       timeout: timeout, group: group)
                if !result.succeeded { return result }
            }
            return .success
        // Each in its file under Checkers/.
        case .ssl(let check):
            return await ssl(check, address: address, port: port, bindTo: bindTo, timeout: timeout, group: group)
        case .misc(let check):
            return await misc(check, address: address, port: port, timeout: timeout)
        case .udp(let check):
            return await udp(check, address: address, port: port, bindTo: bindTo, timeout: timeout, group: group)
        case .smtp(let check):
            return await smtp(check, address: address, port: port, bindTo: bindTo, timeout: timeout, group: group)
        case .dns(let check):
            return await dns(check, address: address, port: port, bindTo: bindTo, timeout: timeout, group: group)
        case .ping(let check):
            return await ping(check, address: address, bindTo: bindTo, timeout: timeout)
        }
    }

    /// The real server's address for NIO: an address literal (IPv4, or IPv6 for an AF_INET6 socket,
    /// RFC 5952 text), so no resolver is involved (and a failure
    /// is the connect's own error, not a resolver's wrapper).
    static func socketAddress(_ address: IPAddress, _ port: UInt16) throws -> SocketAddress {
        try SocketAddress(ipAddress: address.description, port: Int(port))
    }

    static func bootstrap(_ group: EventLoopGroup, bindTo: IPAddress?, timeout: TimeAmount) -> ClientBootstrap {
        var b = ClientBootstrap(group: group).connectTimeout(timeout)
        if let bindTo, let local = try? SocketAddress(ipAddress: bindTo.description, port: 0) {
            b = b.bind(to: local)
        }
        return b
    }

    /// `tls` adds a TLS handler first (SSL_GET, Checkers/SSLCheck.swift).
    static func get(_ url: HTTPURL, address: IPAddress, port: UInt16, host: String?, bindTo: IPAddress?,
                    timeout seconds: Double, group: EventLoopGroup,
                    tls: (@Sendable (Channel) throws -> Void)? = nil) async -> Result {
        let timeout = TimeAmount.nanoseconds(Int64(seconds * 1e9))
        let what = "GET \(url.path) on \(address.endpoint(port))"
        // One event loop for the channel, the collector and its promise: the collector's state is
        // touched only there (NIOLoopBoundBox checks it).
        let eventLoop = group.next()
        let promise = eventLoop.makePromise(of: (HTTPResponseStatus, [UInt8]).self)
        let collector = NIOLoopBoundBox.makeBoxSendingValue(ResponseCollector(promise: promise), eventLoop: eventLoop)
        do {
            let channel = try await bootstrap(eventLoop, bindTo: bindTo, timeout: timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try tls?(channel)
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(collector.value)
                    }
                }
                .connect(to: socketAddress(address, port)).get()
            var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: url.path)
            // RFC 7230 section 5.4: an IPv6 literal goes in brackets in Host (keepalived's
            // REQUEST_TEMPLATE_IPV6); `endpoint` writes `[2001:2::201]:80` and IPv4 as before.
            head.headers.add(name: "Host", value: url.virtualhost ?? host ?? address.endpoint(port))
            head.headers.add(name: "User-Agent", value: "masq-health-check")
            head.headers.add(name: "Connection", value: "close")
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            let timer = channel.eventLoop.scheduleTask(in: timeout) {
                collector.value.fail(ResponseTimedOut())
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
                return .failure(ProbeFailure(check: what, reason: .httpStatus(Int(status.code), expected: expected)))
            }
            if let digest = url.digest {
                let actual = md5Hex(body)
                guard actual == digest.lowercased() else {
                    return .failure(ProbeFailure(check: what, reason: .digestMismatch(actual: actual, expected: digest)))
                }
            }
            return .success
        } catch {
            eventLoop.execute { collector.value.fail(error) }
            return .failure(ProbeFailure(check: what, reason: .init(error, timeout: seconds)))
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

/// Gathers one HTTP response (status and body) and completes the promise at its end. Lives on its
/// channel's event loop (held in a `NIOLoopBoundBox` by the probe).
final class ResponseCollector: ChannelInboundHandler {
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
