import CNetfilterQueue
#if canImport(Glibc)
import Glibc
#endif

/// How a queue is set up.
public struct NFQueueOptions: Sendable {
    /// Hand over whole packets, up to 64 KiB with GSO.
    public var copyRange: Int32 = 0xffff
    /// Packets the kernel holds for us before dropping (or accepting, with `failOpen`) new ones.
    public var maxLength: UInt32 = 8192
    /// NFQA_CFG_F_GSO: no segmentation or checksumming before queueing (bulk TCP ~12× faster).
    public var gso = true
    /// NFQA_CFG_F_FAIL_OPEN: accept instead of drop when the queue is full.
    public var failOpen = false
    /// SO_RCVBUFFORCE: room for bursts (root beats rmem_max).
    public var receiveBufferBytes: Int32 = 64 << 20
    /// SO_SNDBUFFORCE: one verdict batch must fit.
    public var sendBufferBytes: Int32 = 16 << 20

    public init() {}
}

/// A bound NFQUEUE: libmnl socket, libnetfilter_queue's `nfq_nlmsg_*` messages. Closes itself.
public struct NFQueue: ~Copyable {
    private let socket: OpaquePointer
    public let queue: UInt16
    public let fd: Int32
    public let portID: UInt32

    public init(queue: UInt16, options: NFQueueOptions = NFQueueOptions()) throws(NFQError) {
        guard let socket = mnl_socket_open(NETLINK_NETFILTER) else { throw NFQError(.open, errno: errno, queue: queue) }
        do {
            try Self.setUp(socket, queue: queue, options: options)
        } catch {
            mnl_socket_close(socket)
            throw error
        }
        self.socket = socket
        self.queue = queue
        self.fd = mnl_socket_get_fd(socket)
        self.portID = mnl_socket_get_portid(socket)
    }

    private static func setUp(_ socket: OpaquePointer, queue: UInt16, options: NFQueueOptions) throws(NFQError) {
        guard mnl_socket_bind(socket, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            throw NFQError(.open, errno: errno, queue: queue)
        }
        let fd = mnl_socket_get_fd(socket)
        let size = socklen_t(MemoryLayout<Int32>.size)
        // We want to hear about ENOBUFS (packets lost because we fell behind): count it, go on.
        var zero: Int32 = 0
        _ = setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &zero, size)
        var rcv = options.receiveBufferBytes
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, size) != 0 {
            throw NFQError(.socketOption, errno: errno, queue: queue)
        }
        var snd = options.sendBufferBytes
        if setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, size) != 0 {
            throw NFQError(.socketOption, errno: errno, queue: queue)
        }

        let buffer = UnsafeMutableRawPointer.allocate(byteCount: Self.setupBufferSize, alignment: 8)
        defer { buffer.deallocate() }
        // One CONFIG message, acknowledged: BIND (the kernel handles the command first), copy mode,
        // queue length, and one FLAGS/MASK pair holding every flag (the kernel keeps only the last
        // attribute of a type; FLAGS without MASK is EINVAL). One message, so no packet is ever
        // queued to us half configured.
        let nlh = nfq_nlmsg_put(buffer.assumingMemoryBound(to: CChar.self), Int32(NFQNL_MSG_CONFIG.rawValue),
                                UInt32(queue))!
        // One bind serves both families: the kernel (since 3.8) binds the queue number whatever the
        // message's pf says (nfqnl_recv_config ignores it for BIND; PF_BIND/PF_UNBIND are no-ops), so the
        // packets ip6tables queues arrive on this socket as IPv4's do, each an IPv6 packet from its
        // first byte (version 6). The engine tells them apart by that nibble; nothing here looks.
        nfq_nlmsg_cfg_put_cmd(nlh, UInt16(AF_INET), UInt8(NFQNL_CFG_CMD_BIND.rawValue))
        nfq_nlmsg_cfg_put_params(nlh, UInt8(NFQNL_COPY_PACKET.rawValue), options.copyRange)
        nfq_nlmsg_cfg_put_qmaxlen(nlh, options.maxLength)
        var flags: UInt32 = 0
        if options.gso { flags |= UInt32(NFQA_CFG_F_GSO) }
        if options.failOpen { flags |= UInt32(NFQA_CFG_F_FAIL_OPEN) }
        mnl_attr_put_u32(nlh, UInt16(NFQA_CFG_FLAGS.rawValue), flags.bigEndian)
        mnl_attr_put_u32(nlh, UInt16(NFQA_CFG_MASK.rawValue), flags.bigEndian)
        try request(socket, nlh, buffer: buffer, step: .bind, queue: queue)
    }

    private static let setupBufferSize = 65_536 + 8_192

    deinit {
        // Closing the socket unbinds the queue; the kernel drops what is still queued (or bypasses
        // it with --queue-bypass once nobody is bound).
        mnl_socket_close(socket)
    }

    /// Sends one configuration message with NLM_F_ACK and waits for the kernel's answer to it. Packets
    /// may be queued to us before that answer (rules already in place): each goes back with NF_REPEAT,
    /// so the hook queues it again for the packet loop — none is lost or left without a verdict.
    private static func request(_ socket: OpaquePointer, _ nlh: UnsafeMutablePointer<nlmsghdr>,
                                buffer: UnsafeMutableRawPointer, step: NFQError.Step,
                                queue: UInt16) throws(NFQError) {
        nlh.pointee.nlmsg_flags |= UInt16(NLM_F_ACK)
        let seq = UInt32(truncatingIfNeeded: time(nil))
        nlh.pointee.nlmsg_seq = seq
        guard mnl_socket_sendto(socket, nlh, Int(nlh.pointee.nlmsg_len)) >= 0 else {
            throw NFQError(step, errno: errno, queue: queue)
        }
        let packetType = UInt16(NFNL_SUBSYS_QUEUE) << 8 | UInt16(NFQNL_MSG_PACKET.rawValue)
        let attributes = UnsafeMutablePointer<UnsafeMutablePointer<nlattr>?>.allocate(capacity: Int(__NFQA_MAX.rawValue))
        defer { attributes.deallocate() }
        var verdict = [CChar](repeating: 0, count: 256)
        while true {
            let n = mnl_socket_recvfrom(socket, buffer, setupBufferSize)
            guard n >= 0 else {
                if errno == EINTR || errno == ENOBUFS { continue }
                throw NFQError(step, errno: errno, queue: queue)
            }
            var remaining = Int32(n)
            var message = buffer.assumingMemoryBound(to: nlmsghdr.self)
            while mnl_nlmsg_ok(message, remaining) {
                if message.pointee.nlmsg_type == UInt16(NLMSG_ERROR) && message.pointee.nlmsg_seq == seq {
                    let error = mnl_nlmsg_get_payload(message).assumingMemoryBound(to: nlmsgerr.self).pointee.error
                    if error != 0 { throw NFQError(step, errno: -error, queue: queue) }
                    return
                }
                if message.pointee.nlmsg_type == packetType {
                    attributes.update(repeating: nil, count: Int(__NFQA_MAX.rawValue))
                    if nfq_nlmsg_parse(message, attributes) >= 0, let header = attributes[Int(NFQA_PACKET_HDR.rawValue)] {
                        let id = UInt32(bigEndian: mnl_attr_get_payload(header)
                            .assumingMemoryBound(to: nfqnl_msg_packet_hdr.self).pointee.packet_id)
                        verdict.withUnsafeMutableBufferPointer { out in
                            let v = nfq_nlmsg_put(out.baseAddress!, Int32(NFQNL_MSG_VERDICT.rawValue), UInt32(queue))!
                            nfq_nlmsg_verdict_put(v, Int32(bitPattern: id), NF_REPEAT)
                            _ = mnl_socket_sendto(socket, v, Int(v.pointee.nlmsg_len))
                        }
                    }
                }
                message = mnl_nlmsg_next(message, &remaining)
            }
        }
    }

    /// Waits at most `timeoutMilliseconds` for the socket to have something to read, or for `wakeFD`
    /// (the read end of a pipe the caller writes to, to end the wait early; -1: none) to become readable. True when
    /// the socket has something to read.
    public func wait(timeoutMilliseconds: Int32, wakeFD: Int32 = -1) -> Bool {
        var fds = (pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0))
        return withUnsafeMutableBytes(of: &fds) { raw in
            let p = raw.baseAddress!.assumingMemoryBound(to: pollfd.self)
            return poll(p, wakeFD >= 0 ? 2 : 1, timeoutMilliseconds) > 0 && p[0].revents & Int16(POLLIN) != 0
        }
    }

    /// Reads as many netlink datagrams as are waiting, up to the batch's size, in one `recvmmsg`.
    /// Returns how many were read (0 when none was waiting); ENOBUFS is counted in `batch`.
    public func receive(into batch: inout ReceiveBatch) throws(NFQError) -> Int {
        while true {
            let n = masq_recvmmsg(fd, batch.headers, UInt32(batch.capacity), Int32(MSG_DONTWAIT), nil)
            if n >= 0 {
                batch.count = Int(n)
                return Int(n)
            }
            switch errno {
            case EINTR: continue
            case EAGAIN: batch.count = 0; return 0
            case ENOBUFS: batch.enobufs &+= 1; continue
            default: throw NFQError(.receive, errno: errno, queue: queue)
            }
        }
    }

    /// Sends every verdict of the batch in one `sendmsg` (several netlink messages in one datagram).
    public func send(_ verdicts: inout VerdictBatch) throws(NFQError) {
        try verdictSocket.send(&verdicts)
    }

    /// What sending verdicts needs of the queue, as a plain value a verdict sink can hold while the
    /// queue itself (which closes the socket) stays with its thread.
    public var verdictSocket: VerdictSocket { VerdictSocket(fd: fd, queue: queue) }
}

/// The sending side of a bound queue: its socket and number. Valid while the `NFQueue` lives.
public struct VerdictSocket {
    public let fd: Int32
    public let queue: UInt16

    /// Sends every verdict of the batch in one `sendmsg` (several netlink messages in one datagram).
    public func send(_ verdicts: inout VerdictBatch) throws(NFQError) {
        verdicts.closeRun(queue: queue)
        guard verdicts.iovecCount > 0 else { return }
        var address = sockaddr_nl()
        address.nl_family = sa_family_t(AF_NETLINK)
        let result = withUnsafeMutablePointer(to: &address) { addr -> Int in
            var message = msghdr()
            message.msg_name = UnsafeMutableRawPointer(addr)
            message.msg_namelen = socklen_t(MemoryLayout<sockaddr_nl>.size)
            message.msg_iov = verdicts.iovecs
            message.msg_iovlen = verdicts.iovecCount
            while true {
                let sent = sendmsg(fd, &message, 0)
                if sent < 0 && errno == EINTR { continue }
                return sent
            }
        }
        verdicts.sendCalls &+= 1
        verdicts.reset()
        if result < 0 { throw NFQError(.send, errno: errno, queue: queue) }
    }
}
