import Testing
import MasqAdmin
import MasqCore

@Suite struct FlowLineTests {
    /// What the daemon writes (`FlowRecord.jsonLine`) is what `masq flows` and `masqadm -L -c` read.
    @Test func readsTheDaemonsFlowLines() throws {
        let connection = Connection(
            proto: .tcp, state: .synRecv, isTemplate: false, countedActive: false,
            client: IPv4Address("198.18.0.12")!, clientPort: 40000,
            virtualAddress: IPv4Address("198.18.0.1")!, virtualPort: 80,
            server: IPv4Address("198.19.0.201")!, serverPort: 8080, serviceID: 0, destinationID: 0,
            controller: ConnectionTable.noSlot, timeout: 60, expires: 65_000_000_000,
            packetsIn: 1, packetsOut: 0, bytesIn: 60, bytesOut: 0)
        let body = FlowRecord(connection, now: 5_000_000_000).jsonLine + "\nnot json\n"
        let lines = FlowLine.parse(body)
        #expect(lines.count == 1)
        let f = try #require(lines.first)
        #expect(f.proto == "tcp" && f.client == "198.18.0.12:40000" && f.vip == "198.18.0.1:80")
        #expect(f.realServer == "198.19.0.201:8080" && f.state == "SYN_RECV" && f.expires == 60)
        #expect(!f.template && f.packetsIn == 1 && f.packetsOut == 0 && f.bytesIn == 60 && f.bytesOut == 0)
    }
}
