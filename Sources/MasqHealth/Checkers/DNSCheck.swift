#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import MasqCore
import NIOCore
import NIOPosix

/// keepalived's `DNS_CHECK { type T; name N }` (keepalived/check/check_dns.c): one query over UDP to
/// the real server's address and port (`connect_ip`/`connect_port` override them); it passes when a
/// response with the query's id arrives with RCODE 0 (NOERROR) — the answer count is not looked at,
/// as keepalived does not. Replies with another id, or that are queries, are ignored while waiting
/// (`dns_recv_thread`). keepalived's defaults: type SOA, name "" (the root), retry 3, and
/// delay_before_retry the checker's delay_loop (`dns_check_handler`: `default_delay_before_retry = 0`).
public struct DNSCheck: Equatable, Sendable {
    /// The query types keepalived knows (check_dns.c `DNS_TYPE`), by the name the file gives.
    public static let types: [(name: String, code: UInt16)] = [
        ("A", 1), ("NS", 2), ("CNAME", 5), ("SOA", 6), ("MX", 15), ("TXT", 16), ("AAAA", 28),
        ("RRSIG", 46), ("DNSKEY", 48),
    ]

    /// QTYPE; keepalived's `DNS_DEFAULT_TYPE` is SOA.
    public var type: UInt16
    /// QNAME in dotted form; "" (keepalived's `DNS_DEFAULT_NAME`) is the root.
    public var name: String

    public init(type: UInt16 = 6, name: String = "") {
        self.type = type
        self.name = name
    }

    public var typeName: String { Self.types.first { $0.code == type }?.name ?? "TYPE\(type)" }
}

/// The keywords every checker takes (check_api.c `install_checker_common_keywords`), read by the
/// parser's `checkKeyword`.
let commonCheckKeywords: Set<String> = [
    "connect_ip", "connect_port", "bindto", "connect_timeout", "retry", "delay_before_retry", "warmup",
    "delay_loop", "alpha", "log_all_failures", "bind_port", "bind_if", "fwmark",
]

extension KeepalivedFileParser {
    /// A keyword every checker shares, or an error naming the checker it is unknown in.
    func commonCheckKeyword(_ s: KeepalivedStatement, _ c: inout RawCheck, in checker: String) throws(RulesError) {
        guard commonCheckKeywords.contains(s.name) else { throw refuse(s, in: checker) }
        try checkKeyword(s, &c)
    }

    /// The checks TCP_CHECK gets too: a socket bound to one family cannot reach the other.
    func checkBindFamily(_ c: RawCheck, _ rs: RawRealServer) throws(RulesError) {
        if let bindTo = c.bindTo, bindTo.isIPv6 != (c.connectIP ?? rs.address).isIPv6 {
            throw c.opener.keyword.error("\(c.opener.name): bindto \(bindTo) is not of the family of the address it connects to, "
                                         + "\(c.connectIP ?? rs.address)")
        }
    }

    /// Reads a `DNS_CHECK` block of a real server (check_dns.c `install_dns_check_keyword`). Where
    /// keepalived warns and ignores a bad `type` or `name` (an empty label), masq refuses the file.
    func dnsCheck(_ s: KeepalivedStatement, _ rs: RawRealServer) throws(RulesError) -> RawCheck? {
        try noMore(s, after: 1)
        var check = RawCheck(opener: s, http: false)
        var dns = DNSCheck()
        var named: KeepalivedToken?
        try block(s) { (st: KeepalivedStatement) throws(RulesError) in
            switch st.name {
            case "type":
                let t = try self.one(st)
                guard let type = DNSCheck.types.first(where: { $0.name.caseInsensitiveCompare(t.text) == .orderedSame }) else {
                    throw t.error("unknown DNS_CHECK type \(t.text) (\(DNSCheck.types.map(\.name).joined(separator: ", ")) expected)")
                }
                dns.type = type.code
            case "name":
                let t = try self.one(st)
                if let named { throw t.error("DNS_CHECK name already given at line \(named.line)") }
                guard DNSMessage.encodeName(t.text) != nil else {
                    throw t.error("invalid DNS_CHECK name \(t.text) (an empty label, or a label over 63 or a name over 255 bytes)")
                }
                named = t
                dns.name = t.text
            default:
                try self.commonCheckKeyword(st, &check, in: "DNS_CHECK")
            }
        }
        try checkBindFamily(check, rs)
        check.kind = .dns(dns)
        return check
    }
}

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

extension HealthCheck.Kind {
    var isDNS: Bool { if case .dns = self { true } else { false } }
}
