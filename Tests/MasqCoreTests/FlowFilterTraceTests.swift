import Testing
@testable import MasqCore

/// A trace tests each packet with `mayMatchPacket` before the engine sees it: every packet of a flow the
/// filter selects must pass, whichever terms the filter has (found by Fuzz/control.swift: with both
/// `vip=` and `rs=` a trace recorded nothing; Fuzz/corpus/control/regress-vip-and-rs-trace).
@Suite struct FlowFilterTraceTests {
    let client = addr("198.18.0.12"), vip = addr("198.18.0.1"), web1 = addr("198.19.0.201")

    @Test(arguments: ["vip=198.18.0.1:80 rs=198.19.0.201", "vip=198.18.0.1 rs=198.19.0.201:8080 client=198.18.0.12",
                      "rs=198.19.0.201", "vip=198.18.0.1:80", "client=198.18.0.12:40000 proto=tcp"])
    func bothPacketsOfASelectedFlowPass(_ text: String) throws {
        let filter = try FlowFilter(text)
        let flow = Connection(
            proto: .tcp, state: .established, isTemplate: false, countedActive: true,
            client: client, clientPort: 40000, virtualAddress: vip, virtualPort: 80, server: web1, serverPort: 8080,
            serviceID: 0, destinationID: 0, controller: ConnectionTable.noSlot, timeout: 900, expires: 0,
            packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0)
        #expect(filter.matches(flow))
        #expect(filter.mayMatchPacket(source: client, sourcePort: 40000, destination: vip, destinationPort: 80, proto: .tcp))
        #expect(filter.mayMatchPacket(source: web1, sourcePort: 8080, destination: client, destinationPort: 40000, proto: .tcp))
        #expect(filter.mayMatchPacket(source: web1, sourcePort: nil, destination: client, destinationPort: nil, proto: .icmp))
    }

    @Test func packetsOfOtherFlowsStillFail() throws {
        let filter = try FlowFilter("vip=198.18.0.1:80 rs=198.19.0.201")
        #expect(!filter.mayMatchPacket(source: client, sourcePort: 40000, destination: vip, destinationPort: 443, proto: .tcp))
        #expect(!filter.mayMatchPacket(source: addr("198.19.0.202"), sourcePort: 8080, destination: client,
                                       destinationPort: 40000, proto: .tcp))
    }
}
