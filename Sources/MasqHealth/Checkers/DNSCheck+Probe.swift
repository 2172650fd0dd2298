#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import MasqCore
import NIOCore
import NIOPosix

// The probe of DNSCheck.swift's checker (kept apart from its settings and parser, which the
// keepalived fuzz target builds without SwiftNIO).

extension Probe {
    /// One DNS_CHECK probe: the query from an ephemeral UDP port (connected, so an ICMP port
    /// unreachable fails it at once as "connection refused"), then the first reply with our id and QR.
    static func dns(_ check: DNSCheck, address: IPAddress, port: UInt16, bindTo: IPAddress?, timeout: Double, group: EventLoopGroup) async -> Result {
        let what = "DNS \(check.typeName) query for \(check.name.isEmpty ? "." : check.name) to \(address.endpoint(port))"
        let id = UInt16.random(in: 0...UInt16.max)
        guard let query = DNSMessage.query(id: id, name: check.name, type: check.type) else {
            return .failure(ProbeFailure(check: what, reason: .other("the name cannot be encoded")))
        }
        let eventLoop = group.next()
        let promise = eventLoop.makePromise(of: DNSMessage.Header.self)
        let waiter = NIOLoopBoundBox.makeBoxSendingValue(DNSReplyWaiter(id: id, promise: promise), eventLoop: eventLoop)
        do {
            let remote = try socketAddress(address, port)
            let local = try SocketAddress(ipAddress: bindTo?.description ?? (address.isIPv6 ? "::" : "0.0.0.0"), port: 0)
            let channel = try await DatagramBootstrap(group: eventLoop)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(waiter.value) }
                }
                .bind(to: local).get()
            defer { channel.close(promise: nil) }
            try await channel.connect(to: remote).get()
            var buffer = channel.allocator.buffer(capacity: query.count)
            buffer.writeBytes(query)
            try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: remote, data: buffer)).get()
            let timer = eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout * 1e9))) { waiter.value.fail(ResponseTimedOut()) }
            defer { timer.cancel() }
            let header = try await promise.futureResult.get()
            guard header.responseCode == 0 else {
                return .failure(ProbeFailure(check: what, reason: .other("DNS error \(Self.rcodeName(header.responseCode))")))
            }
            return .success
        } catch {
            eventLoop.execute { waiter.value.fail(error) }
            return .failure(ProbeFailure(check: what, reason: .init(error, timeout: timeout)))
        }
    }

    /// RFC 1035 section 4.1.1 and RFC 6895's names for the RCODE.
    static func rcodeName(_ code: Int) -> String {
        let names = [1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"]
        return "rcode \(code)" + (names[code].map { " (\($0))" } ?? "")
    }
}

/// Waits for the reply to one query; lives on its channel's event loop.
final class DNSReplyWaiter: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    private let id: UInt16
    private let promise: EventLoopPromise<DNSMessage.Header>
    private var completed = false

    init(id: UInt16, promise: EventLoopPromise<DNSMessage.Header>) {
        self.id = id
        self.promise = promise
    }

    func fail(_ error: Error) {
        guard !completed else { return }
        completed = true
        promise.fail(error)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        // check_dns.c `dns_recv_thread`: too short, another id or not a response: keep waiting.
        guard !completed, let header = envelope.data.withUnsafeReadableBytes({ DNSMessage.header($0) }),
              header.id == id, header.isResponse else { return }
        completed = true
        promise.succeed(header)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(ChannelError.eof)
    }
}
