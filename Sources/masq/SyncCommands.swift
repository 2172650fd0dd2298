import ArgumentParser
import MasqCapture
import MasqCore
import MasqSync

// `masq sync-sample`: IPVS sync messages as masq encodes them, in a capture, so that a decoder masq
// did not write (tshark's IPVS dissector, scripts/check-sync-format) can read them back.

struct SyncSample: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync-sample",
        abstract: "Write a pcap of sample IPVS connection-sync datagrams, as masq encodes them.",
        discussion: """
            The datagrams are version 1 messages, UDP from 198.18.0.1 to 224.0.0.81:8848 (raw IPv4 \
            link type): TCP connections in several states, a UDP connection, persistence templates \
            and enough connections to fill more than one message. Standard output gets one line per \
            datagram, the fields as `tshark -T fields -E occurrence=a -E aggregator=,` prints them: \
            syncid, count, size, then per entry protocol, client, virtual and real server addresses \
            and ports, state, flags and timeout. With --control, a second pcap gets masq's own \
            control messages (heartbeat, resync request, resync done: v1 datagrams with no entries). \
            With --ipv6, the sample is IPv6 connections and templates mixed with IPv4 ones in the \
            same messages, as a kernel master mixes them, and each line has the entry type and the \
            IPv6 address fields as well (see `ipv6FieldsLine`).
            """)

    @Argument(help: "The pcap file to write.")
    var output: String

    @Option(help: "The sync ID in every message.")
    var syncID: UInt8 = 1

    @Option(help: "The most bytes of UDP payload per message (IPVS's sync_maxlen).")
    var maxLength = SyncTransport.defaultMaxLength

    @Option(help: ArgumentHelp("Also write masq's control messages, one of each kind, to this pcap.", valueName: "PCAP"))
    var control: String?

    @Flag(help: "Write the IPv6 sample: IPv6 entries (struct ip_vs_sync_v6) mixed with IPv4 ones.")
    var ipv6 = false

    func run() throws {
        // Each message with the entries it carries, taken in order as the encoder packs them.
        var messages: [(bytes: [UInt8], entries: [SyncEntry])] = []
        do {
            let sample = ipv6 ? Self.ipv6SampleEntries : Self.sampleEntries
            for group in [sample.first, sample.bulk] {
                var rest = group[...]
                while !rest.isEmpty {
                    var datagram: [UInt8] = []
                    let taken = try SyncEncoder.encode(rest, syncID: syncID, maxLength: maxLength, into: &datagram)
                    messages.append((datagram, Array(rest.prefix(taken))))
                    rest = rest.dropFirst(taken)
                }
            }
        } catch {
            throw MasqError(error.description)
        }
        let writer = try Self.openWriter(output)
        // 2026-01-01T00:00:00Z, one datagram every 20 ms (IPVS_SYNC_SEND_DELAY).
        let start: Int64 = 1_767_225_600 * 1_000_000_000
        for (index, message) in messages.enumerated() {
            let packet = Self.udpDatagram(message.bytes, identification: UInt16(index + 1))
            try Self.write(packet, to: writer, timestamp: start + Int64(index) * 20_000_000, number: index + 1)
            print(ipv6 ? Self.ipv6FieldsLine(message.entries, size: message.bytes.count, syncID: syncID)
                       : Self.fieldsLine(message.entries, size: message.bytes.count, syncID: syncID))
        }
        do { try writer.flush() } catch { throw MasqError(error.description) }
        if let control { try Self.writeControlSample(control, syncID: syncID, start: start) }
    }

    /// A heartbeat, a resync request and the resync done answering it.
    static func writeControlSample(_ path: String, syncID: UInt8, start: Int64) throws {
        let writer = try openWriter(path)
        let messages = [SyncControlMessage(.heartbeat, syncID: syncID),
                        SyncControlMessage(.resyncRequest, syncID: syncID, sequence: 0x1234_5678),
                        SyncControlMessage(.resyncDone, syncID: syncID, sequence: 0x1234_5678)]
        for (index, message) in messages.enumerated() {
            try write(udpDatagram(message.bytes, identification: UInt16(100 + index)), to: writer,
                      timestamp: start + Int64(index) * 1_000_000_000, number: index + 1)
        }
        do { try writer.flush() } catch { throw MasqError(error.description) }
    }

    static func openWriter(_ path: String) throws -> CaptureWriter {
        do { return try CaptureWriter(path: path, linkType: .ipv4) } catch { throw MasqError(error.description) }
    }

    static func write(_ packet: [UInt8], to writer: borrowing CaptureWriter, timestamp: Int64, number: Int) throws {
        var packet = packet
        let failure = packet.withUnsafeMutableBytes { buffer -> CaptureError? in
            do throws(CaptureError) {
                try writer.write(PacketBytes(buffer), wireLength: buffer.count, timestamp: timestamp,
                                 packet: "datagram \(number)")
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw MasqError(failure.description) }
    }

    /// The director's sync address and the UDP source port its socket got (IPVS binds port 0).
    static let source = IPv4Address(198, 18, 0, 1)
    static let sourcePort: UInt16 = 40_123

    /// IPv4 (no options, DF clear: IPVS sets IP_PMTUDISC_DONT; TTL 1, IPVS's default mcast_ttl) and
    /// UDP around one message, both checksums computed.
    static func udpDatagram(_ payload: [UInt8], identification: UInt16) -> [UInt8] {
        var packet = [UInt8](repeating: 0, count: 28) + payload
        packet.withUnsafeMutableBytes { buffer in
            let bytes = PacketBytes(buffer)
            bytes.setU8(0x45, 0)
            bytes.setU16(UInt16(buffer.count), 2)
            bytes.setU16(identification, 4)
            bytes.setU8(1, 8)
            bytes.setU8(IPProtocol.udp.rawValue, 9)
            bytes.setU32(source.rawValue, 12)
            bytes.setU32(SyncTransport.group.rawValue, 16)
            IPv4Header(bytes).recomputeChecksum()
            let udp = bytes.slice(from: 20)
            udp.setU16(sourcePort, 0)
            udp.setU16(SyncTransport.port, 2)
            udp.setU16(UInt16(udp.count), 4)
            TransportHeader(udp, proto: .udp).finishChecksum(source: source, destination: SyncTransport.group,
                                                              proto: .udp)
        }
        return packet
    }

    /// What tshark's IPVS fields should say about a message of `size` bytes carrying `entries` (what
    /// went in, not what masq's decoder reads back): ipvs.syncid, ipvs.conncount, ipvs.size, then
    /// each entry's ipvs.proto … ipvs.timeout, comma-separated per field.
    static func fieldsLine(_ entries: [SyncEntry], size: Int, syncID: UInt8) -> String {
        func hex(_ value: some BinaryInteger, digits: Int) -> String {
            let text = String(value, radix: 16)
            return "0x" + String(repeating: "0", count: max(0, digits - text.count)) + text
        }
        func each(_ field: (SyncEntry) -> String) -> String { entries.map(field).joined(separator: ",") }
        return [
            "\(syncID)", "\(entries.count)", "\(size)",
            each { hex($0.proto.rawValue, digits: 2) },
            each { "\($0.clientAddress)" }, each { "\($0.clientPort)" },
            each { "\($0.virtualAddress)" }, each { "\($0.virtualPort)" },
            each { "\($0.destinationAddress)" }, each { "\($0.destinationPort)" },
            each { hex($0.state.rawValue, digits: 4) },
            each { hex($0.flags.rawValue, digits: 8) },
            each { "\($0.timeoutSeconds)" },
        ].joined(separator: "\t")
    }

    /// The IPv6 sample's line: ipvs.syncid, ipvs.conncount, ipvs.size, then per entry ipvs.type and
    /// ipvs.proto; ipvs.caddr (the IPv4 entries' only), ipvs.caddr6 (the IPv6 entries'), ipvs.cport;
    /// the same three for the virtual service and for the real server; ipvs.state, ipvs.flags.v1 and
    /// ipvs.timeout, comma-separated per field as tshark aggregates them.
    static func ipv6FieldsLine(_ entries: [SyncEntry], size: Int, syncID: UInt8) -> String {
        func hex(_ value: some BinaryInteger, digits: Int) -> String {
            let text = String(value, radix: 16)
            return "0x" + String(repeating: "0", count: max(0, digits - text.count)) + text
        }
        func each(_ field: (SyncEntry) -> String?) -> String { entries.compactMap(field).joined(separator: ",") }
        func v4(_ a: IPAddress) -> String? { a.v4.map(\.description) }
        func v6(_ a: IPAddress) -> String? { a.v6.map(\.description) }
        return [
            "\(syncID)", "\(entries.count)", "\(size)",
            each { "\($0.isIPv6 ? SyncEntryType.ipv6 : SyncEntryType.ipv4)" },
            each { hex($0.proto.rawValue, digits: 2) },
            each { v4($0.clientAddress) }, each { v6($0.clientAddress) }, each { "\($0.clientPort)" },
            each { v4($0.virtualAddress) }, each { v6($0.virtualAddress) }, each { "\($0.virtualPort)" },
            each { v4($0.destinationAddress) }, each { v6($0.destinationAddress) }, each { "\($0.destinationPort)" },
            each { hex($0.state.rawValue, digits: 4) },
            each { hex($0.flags.rawValue, digits: 8) },
            each { "\($0.timeoutSeconds)" },
        ].joined(separator: "\t")
    }

    /// Lab addresses: clients 2001:2::/112, the service 2001:2::100, real servers in 2001:2:0:1::/64
    /// (the lab's networks); the IPv4 entries are the IPv4 sample's. The first message mixes every
    /// kind of IPv6 entry with IPv4 ones; the bulk (two IPv6 entries to one IPv4 one) fills more
    /// than one message.
    static let ipv6SampleEntries: (first: [SyncEntry], bulk: [SyncEntry]) = {
        let vip = IPAddress.v6(IPv6Address("2001:2::100")!)
        let rs1 = IPAddress.v6(IPv6Address("2001:2:0:1::101")!), rs2 = IPAddress.v6(IPv6Address("2001:2:0:1::102")!)
        func client(_ n: UInt16) -> IPAddress { .v6(IPv6Address(groups: (0x2001, 2, 0, 0, 0, 0, 0, n))) }
        func tcp(_ n: UInt16, _ port: UInt16, _ state: ConnectionState, _ rs: IPAddress,
                 flags: SyncFlags = [], timeout: UInt32) -> SyncEntry {
            SyncEntry(proto: .tcp, flags: flags, state: SyncState(state, proto: .tcp, isTemplate: false)!,
                      clientAddress: client(n), clientPort: port, virtualAddress: vip, virtualPort: 80,
                      destinationAddress: rs, destinationPort: 8080, timeoutSeconds: timeout)
        }
        let ipv4 = sampleEntries.first
        let first: [SyncEntry] = [
            tcp(0x10, 40_000, .established, rs1, timeout: 900),
            ipv4[0],
            tcp(0x11, 40_001, .finWait, rs2, flags: .inactive, timeout: 120),
            tcp(0x12, 40_002, .timeWait, rs1, flags: .inactive, timeout: 120),
            SyncEntry(proto: .udp, state: SyncState(.udp, proto: .udp, isTemplate: false)!,
                      clientAddress: client(0x15), clientPort: 50_000, virtualAddress: vip, virtualPort: 53,
                      destinationAddress: rs2, destinationPort: 53, timeoutSeconds: 300),
            ipv4[5],
            SyncEntry(proto: .tcp, flags: .template, state: SyncState(.none, proto: .tcp, isTemplate: true)!,
                      clientAddress: client(0x10), clientPort: 0, virtualAddress: vip, virtualPort: 80,
                      destinationAddress: rs1, destinationPort: 8080, timeoutSeconds: 360),
            SyncEntry(proto: .udp, flags: .template, state: .templateAssured,
                      clientAddress: client(0x15), clientPort: 0, virtualAddress: vip, virtualPort: 53,
                      destinationAddress: rs2, destinationPort: 53, timeoutSeconds: 360),
            ipv4[6],
        ]
        let bulk = (0..<45).map { (n: Int) -> SyncEntry in
            n % 3 == 2 ? sampleEntries.bulk[n]
                       : tcp(UInt16(0x100 + n), UInt16(42_000 + n), .established, n % 2 == 0 ? rs1 : rs2, timeout: 900)
        }
        return (first, bulk)
    }()

    /// Lab addresses: clients 198.18.0.0/24, services 198.18.1.0/24, real servers 198.19.0.0/24.
    static let sampleEntries: (first: [SyncEntry], bulk: [SyncEntry]) = {
        let vip = IPv4Address(198, 18, 1, 1)
        let rs1 = IPv4Address(198, 19, 0, 101), rs2 = IPv4Address(198, 19, 0, 102)
        func tcp(_ client: UInt8, _ port: UInt16, _ state: ConnectionState, _ rs: IPv4Address,
                 flags: SyncFlags = [], timeout: UInt32) -> SyncEntry {
            SyncEntry(proto: .tcp, flags: flags, state: SyncState(state, proto: .tcp, isTemplate: false)!,
                      clientAddress: IPv4Address(198, 18, 0, client), clientPort: port,
                      virtualAddress: vip, virtualPort: 80, destinationAddress: rs, destinationPort: 8080,
                      timeoutSeconds: timeout)
        }
        // Timeouts: IPVS's defaults for the state (ip_vs_proto_tcp.c, ip_vs_proto_udp.c), 360 s of -p.
        let first: [SyncEntry] = [
            tcp(10, 40_000, .established, rs1, timeout: 900),
            tcp(11, 40_001, .finWait, rs2, flags: .inactive, timeout: 120),
            tcp(12, 40_002, .closeWait, rs1, flags: .inactive, timeout: 60),
            tcp(13, 40_003, .timeWait, rs2, flags: .inactive, timeout: 120),
            tcp(14, 40_004, .close, rs1, flags: .inactive, timeout: 10),
            SyncEntry(proto: .udp, state: SyncState(.udp, proto: .udp, isTemplate: false)!,
                      clientAddress: IPv4Address(198, 18, 0, 15), clientPort: 50_000, virtualAddress: vip,
                      virtualPort: 53, destinationAddress: rs2, destinationPort: 53, timeoutSeconds: 300),
            // The persistence template of client .10 (cport 0, the service's protocol).
            SyncEntry(proto: .tcp, flags: .template, state: SyncState(.none, proto: .tcp, isTemplate: true)!,
                      clientAddress: IPv4Address(198, 18, 0, 10), clientPort: 0, virtualAddress: vip,
                      virtualPort: 80, destinationAddress: rs1, destinationPort: 8080, timeoutSeconds: 360),
            // An assured template: IPVS sets the bit; masq's own templates never carry it.
            SyncEntry(proto: .udp, flags: .template, state: .templateAssured,
                      clientAddress: IPv4Address(198, 18, 0, 15), clientPort: 0, virtualAddress: vip,
                      virtualPort: 53, destinationAddress: rs2, destinationPort: 53, timeoutSeconds: 360),
        ]
        // Sixty ESTABLISHED connections: more than one message of 1472 bytes holds (40).
        let bulk = (0..<60).map { (n: Int) -> SyncEntry in
            let client = UInt8(100 + n % 50)
            let port = UInt16(41_000 + n)
            return tcp(client, port, .established, n % 2 == 0 ? rs1 : rs2, timeout: 900)
        }
        return (first, bulk)
    }()
}
