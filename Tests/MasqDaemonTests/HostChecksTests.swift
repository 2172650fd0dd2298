import Testing
@testable import MasqDaemon

/// Which queues the host's rules feed: the start-up warning "no rule sends packets to NFQUEUE N".
@Suite struct HostChecksTests {
    @Test func iptablesSaveQueueNumbersRangesAndTheDefault() {
        // As `iptables-save` prints masq's own rules and an admin's (captured from a lab namespace).
        let text = """
            *raw
            :PREROUTING ACCEPT [0:0]
            -A MASQ -d 198.18.0.1/32 -p tcp -m tcp --dport 80 -j CT --notrack
            -A MASQ -d 198.18.0.1/32 -p tcp -m tcp --dport 80 -j NFQUEUE --queue-balance 2:3 --queue-bypass
            -A PREROUTING -p udp -j NFQUEUE
            -A PREROUTING -p udp -j NFQUEUE --queue-num 7
            -A PREROUTING -p udp -j NFQUEUEX --queue-num 9
            COMMIT
            """
        #expect(HostChecks.queuesTargeted(iptablesSave: text) == [0, 2, 3, 7])
        #expect(HostChecks.queuesTargeted(iptablesSave: "*raw\n-A MASQ -j CT --notrack\nCOMMIT\n").isEmpty)
    }

    @Test func nftQueueStatements() {
        let text = """
            table ip raw {
                chain PREROUTING {
                    ip daddr 198.18.0.1 tcp dport 80 counter queue flags bypass to 2-3
                    udp dport 53 queue num 7
                    udp dport 54 queue
                    udp dport 55 queue to 11 comment "x"
                }
            }
            """
        #expect(HostChecks.queuesTargeted(nft: text) == [0, 2, 3, 7, 11])
    }
}
