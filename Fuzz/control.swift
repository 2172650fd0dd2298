// libFuzzer target: the control protocol's request decoder (MasqControl's ControlFraming and
// ControlRequest, compiled in; the daemon's ControlHandler hands every request it reads to this decoder,
// and ControlDispatcher needs a running ControlPlane). Never a crash; a request that decodes is one the
// daemon can apply: it encodes to bytes that decode to the same request, an `apply`'s command travels
// as ipvsadm words that parse back to it, and the configuration takes it. The same bytes read as an
// answer (the client's decoder) never crash either. Oracles for FlowFilter, which `flows` and `trace`
// take: a filter prints (`description`) to text that parses to the same filter, and a flow it selects
// has both its packets (client → VIP and real server → client) pass `mayMatchPacket`, the test a trace
// puts every packet to before the engine sees it, so a trace never misses a packet of a flow it shows.
import MasqCore
import MasqRules

@inline(__always) func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }  // fatalError keeps its message in -O builds
}

let addresses = [IPv4Address(198, 18, 0, 1), IPv4Address(198, 18, 0, 12), IPv4Address(198, 19, 0, 201),
                 IPv4Address(198, 19, 0, 202)]

/// A flow the filter is checked against, from the input's last bytes (addresses from the lab set, so
/// that they meet the filter's terms often).
func connection(_ b: [UInt8]) -> Connection {
    func byte(_ i: Int) -> UInt8 { i < b.count ? b[b.count - 1 - i] : 0 }
    func port(_ i: Int) -> UInt16 { [80, 8080, 40000, 0][Int(byte(i)) % 4] }
    return Connection(
        proto: byte(0) & 1 == 0 ? .tcp : .udp, state: ConnectionState(rawValue: byte(1) % UInt8(ConnectionState.count)),
        isTemplate: byte(2) & 1 != 0, countedActive: false,
        client: addresses[Int(byte(3)) % 4], clientPort: port(4), virtualAddress: addresses[Int(byte(5)) % 4],
        virtualPort: port(6), server: addresses[Int(byte(7)) % 4], serverPort: port(8), serviceID: 0,
        destinationID: 0, controller: ConnectionTable.noSlot, timeout: 60, expires: 0,
        packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0)
}

func checkFilter(_ text: String, _ bytes: [UInt8]) {
    guard let filter = try? FlowFilter(text) else { return }
    let printed = filter.description
    guard let again = try? FlowFilter(printed) else { fatalError("control oracle: filter '\(text)' prints as '\(printed)', which does not parse") }
    require(again == filter, "control oracle: filter '\(text)' prints as '\(printed)', which parses to another filter")
    let c = connection(bytes)
    guard filter.matches(c), !c.isTemplate else { return }
    let inbound = filter.mayMatchPacket(source: c.client, sourcePort: c.clientPort, destination: c.virtualAddress,
                                        destinationPort: c.virtualPort, proto: c.proto)
    let outbound = filter.mayMatchPacket(source: c.server, sourcePort: c.serverPort, destination: c.client,
                                         destinationPort: c.clientPort, proto: c.proto)
    // ICMP errors about the flow carry no ports the pre-filter can read: addresses alone must do.
    let icmpIn = filter.mayMatchPacket(source: c.client, sourcePort: nil, destination: c.virtualAddress,
                                       destinationPort: nil, proto: .icmp)
    let icmpOut = filter.mayMatchPacket(source: c.server, sourcePort: nil, destination: c.client,
                                        destinationPort: nil, proto: .icmp)
    require(inbound && outbound && icmpIn && icmpOut,
            "control oracle: filter '\(printed)' selects \(c.proto) \(c.client):\(c.clientPort) → \(c.virtualAddress):\(c.virtualPort) via \(c.server):\(c.serverPort) but a trace would miss its \(!inbound ? "client → VIP" : !outbound ? "real server → client" : "ICMP") packets")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    _ = ControlFraming.decodeReply(bytes)
    guard let request = try? ControlFraming.decodeRequest(bytes) else {
        // Anything else: the filter parser on the whole input, the most hostile text it can get.
        checkFilter(String(decoding: bytes, as: UTF8.self), bytes)
        return 0
    }
    let again = try? ControlFraming.decodeRequest(ControlFraming.encode(request))
    require(again == request, "control oracle: \(request) encodes to bytes that decode to \(again.map { "\($0)" } ?? "nothing")")
    switch request {
    case .flows(let filter), .trace(let filter, _, _, _):
        checkFilter(filter.description, bytes)
    case .apply(let command):
        let words = command.ipvsadmArguments
        require((try? IPVSCommandParser.parse(words)) == command, "control oracle: \(command) travels as \(words), which parses to another command")
        var configuration = Configuration()
        try? configuration.apply(command)
    case .restore(let rules):
        _ = try? RulesFile.parse(rules, names: .numericOnly)
    case .startDaemon(let daemon):
        // What masqadm sends and a rules file line holds: ipvsadm's words, which must parse back to it.
        let words = daemon.ipvsadmArguments
        guard case .startDaemon(let again)? = try? IPVSCommandParser.parseLine(words, names: { .numericOnly }) else {
            fatalError("control oracle: \(daemon) travels as \(words), which ipvsadm's parser refuses")
        }
        require(again == daemon, "control oracle: \(daemon) travels as \(words), which parses to \(again)")
    case .state, .save, .help, .zero, .setTimeouts, .stopDaemon, .syncStatus:
        break
    }
    return 0
}
