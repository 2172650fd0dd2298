import Foundation
import Testing
@testable import MasqDaemon

/// Where the sender addresses each answer: the packet's own destination, by its version nibble.
@Suite struct UnreachableSenderTests {
    static func packet(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try bytes.withUnsafeBytes(body)
    }

    @Test func anIPv4AnswerGoesToItsDestinationThroughAFamilyINETAddress() throws {
        var bytes = [UInt8](repeating: 0, count: 56)
        bytes[0] = 0x45
        bytes[12...15] = [198, 18, 0, 1]
        bytes[16...19] = [198, 19, 0, 77]
        try Self.packet(bytes) { raw in
            guard case .ipv4(let address) = UnreachableSender.destination(of: raw) else { Issue.record("not IPv4"); return }
            #expect(Int32(address.sin_family) == AF_INET && address.sin_port == 0)
            #expect(UInt32(bigEndian: address.sin_addr.s_addr) == 0xC613_004D)
        }
    }

    @Test func anIPv6AnswerGoesToItsDestinationThroughAFamilyINET6Address() throws {
        var bytes = [UInt8](repeating: 0, count: 96)
        bytes[0] = 0x60
        bytes[6] = 58  // ICMPv6
        let client: [UInt8] = [0x20, 0x01, 0x00, 0x02, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0, 0x01, 0x23]
        bytes.replaceSubrange(8..<24, with: [0x20, 0x01, 0x00, 0x02] + [UInt8](repeating: 0, count: 11) + [1])
        bytes[24..<40] = client[...]
        try Self.packet(bytes) { raw in
            guard case .ipv6(let address) = UnreachableSender.destination(of: raw) else { Issue.record("not IPv6"); return }
            #expect(Int32(address.sin6_family) == AF_INET6 && address.sin6_port == 0)
            #expect(address.sin6_flowinfo == 0 && address.sin6_scope_id == 0)
            var wire = [UInt8](repeating: 0, count: 16)
            withUnsafeBytes(of: address.sin6_addr) { wire = Array($0) }
            #expect(wire == client)
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            var a = address.sin6_addr
            #expect(inet_ntop(AF_INET6, &a, &text, socklen_t(text.count)) != nil)
            #expect(String(cString: text) == "2001:2:0:2::123")
        }
    }

    /// Too short for its fixed header, or neither version: no address, so nothing is sent (counted).
    @Test(arguments: [
        [UInt8](), [0x45] + [UInt8](repeating: 0, count: 18), [0x60] + [UInt8](repeating: 0, count: 38),
        [0x55] + [UInt8](repeating: 0, count: 59), [0x00] + [UInt8](repeating: 0, count: 59),
    ])
    func unaddressablePacketsGetNone(bytes: [UInt8]) {
        bytes.withUnsafeBytes { #expect(UnreachableSender.destination(of: $0) == nil) }
    }
}
