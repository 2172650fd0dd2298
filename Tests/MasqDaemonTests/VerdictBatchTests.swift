import CNetfilterQueue
import Testing
@testable import MasqCore
@testable import MasqNFQueue

/// The verdict datagram masq sends, taken apart again with libmnl: the layout the kernel parses.
@Suite struct VerdictBatchTests {
    func datagram(_ batch: borrowing VerdictBatch) -> [UInt8] {
        var bytes: [UInt8] = []
        for i in 0..<batch.iovecCount {
            let v = batch.iovecs[i]
            bytes += UnsafeRawBufferPointer(start: v.iov_base, count: v.iov_len)
        }
        return bytes
    }

    @Test func runsBecomeOneBatchVerdictAndPayloadsFollowTheirHeaders() {
        var batch = VerdictBatch(capacity: 16)
        var packet: [UInt8] = Array(repeating: 0xab, count: 41)  // odd length: needs padding
        packet.withUnsafeMutableBytes { raw in
            batch.accept(1)
            batch.accept(2)
            batch.acceptModified(3, payload: PacketBytes(raw), queue: 7)
            batch.drop(4, queue: 7)
            batch.accept(5)
            batch.closeRun(queue: 7)
        }
        var bytes = datagram(batch)
        #expect(bytes.count % 4 == 0)
        var seen: [(UInt16, UInt32, Int)] = []
        bytes.withUnsafeMutableBytes { raw in
            var remaining = Int32(raw.count)
            var nlh = raw.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)
            while mnl_nlmsg_ok(nlh, remaining) {
                let type = nlh.pointee.nlmsg_type & 0xff
                var id: UInt32 = 0
                var payload = 0
                var attr = mnl_nlmsg_get_payload_offset(nlh, 4)!.assumingMemoryBound(to: nlattr.self)
                let end = UnsafeMutableRawPointer(nlh) + Int(nlh.pointee.nlmsg_len)
                while UnsafeMutableRawPointer(attr) < end {
                    if mnl_attr_get_type(attr) == UInt16(NFQA_VERDICT_HDR.rawValue) {
                        let header = mnl_attr_get_payload(attr).assumingMemoryBound(to: nfqnl_msg_verdict_hdr.self)
                        id = UInt32(bigEndian: header.pointee.id)
                    }
                    if mnl_attr_get_type(attr) == UInt16(NFQA_PAYLOAD.rawValue) { payload = Int(mnl_attr_get_payload_len(attr)) }
                    attr = mnl_attr_next(attr)
                }
                seen.append((type, id, payload))
                nlh = mnl_nlmsg_next(nlh, &remaining)
            }
            #expect(remaining == 0)
        }
        let batchType = UInt16(NFQNL_MSG_VERDICT_BATCH.rawValue), single = UInt16(NFQNL_MSG_VERDICT.rawValue)
        #expect(seen.map(\.0) == [batchType, single, single, batchType])
        #expect(seen.map(\.1) == [2, 3, 4, 5])
        #expect(seen.map(\.2) == [0, 41, 0, 0])
    }
}
