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

    /// masq 0.9's rules queued replies in raw PREROUTING: queue 0 is fed, but nothing after routing is.
    @Test func repliesQueuedAfterRoutingOnlyThroughForward() {
        let old = """
            *raw
            :PREROUTING ACCEPT [0:0]
            :OUTPUT ACCEPT [0:0]
            :MASQ - [0:0]
            -A PREROUTING -j MASQ
            -A MASQ -d 198.18.0.1/32 -p tcp -m tcp --dport 80 -j NFQUEUE --queue-num 0 --queue-bypass
            -A MASQ -s 198.19.0.201/32 -p tcp -m tcp --sport 80 -j NFQUEUE --queue-num 0 --queue-bypass
            COMMIT
            """
        #expect(HostChecks.QueueRules(iptablesSave: old).queues() == [0])
        #expect(HostChecks.QueueRules(iptablesSave: old).queues(reachableFrom: "forward").isEmpty)
        let new = old.replacingOccurrences(of: "COMMIT", with: """
            COMMIT
            *security
            :INPUT ACCEPT [0:0]
            :FORWARD ACCEPT [0:0]
            :MASQ-FORWARD - [0:0]
            :UNUSED - [0:0]
            -A FORWARD -j MASQ-FORWARD
            -A MASQ-FORWARD -s 198.19.0.201/32 -p tcp -m tcp --sport 80 -j NFQUEUE --queue-num 0 --queue-bypass
            -A UNUSED -j NFQUEUE --queue-num 5
            COMMIT
            """)
        #expect(HostChecks.QueueRules(iptablesSave: new).queues() == [0, 5])
        #expect(HostChecks.QueueRules(iptablesSave: new).queues(reachableFrom: "forward") == [0])
    }

    @Test func nftBaseChainsAndJumps() {
        let text = """
            table inet lb {
                chain queue {
                    queue num 3
                }
                chain fwd {
                    type filter hook forward priority 50; policy accept;
                    ip saddr 198.19.0.201 tcp sport 80 jump queue
                }
                chain pre {
                    type filter hook prerouting priority -300; policy accept;
                    ip daddr 198.18.0.1 queue to 4
                }
            }
            """
        let rules = HostChecks.QueueRules(nft: text)
        #expect(rules.queues() == [3, 4])
        #expect(rules.queues(reachableFrom: "forward") == [3])
        #expect(rules.queues(reachableFrom: "prerouting") == [4])
    }
}

/// The forwarding sysctls: IPv4's always, IPv6's only with IPv6 services, each as the one fix to make.
@Suite struct ForwardingChecksTests {
    static let ipv4Off = "net.ipv4.ip_forward is 0 in this network namespace: the kernel will not forward packets to the real servers; set it with `sysctl -w net.ipv4.ip_forward=1` (and in /etc/sysctl.conf)"
    static let ipv6Off = "net.ipv6.conf.all.forwarding is 0 in this network namespace: the kernel will not forward IPv6 packets to the real servers; set it with `sysctl -w net.ipv6.conf.all.forwarding=1` (and in /etc/sysctl.conf)"
    static let ipv6Disabled = "net.ipv6.conf.all.disable_ipv6 is 1 in this network namespace: no interface takes IPv6 packets for the IPv6 services; set it with `sysctl -w net.ipv6.conf.all.disable_ipv6=0` (and in /etc/sysctl.conf)"
    static let noIPv6 = "this kernel has no IPv6 in this network namespace (no /proc/sys/net/ipv6: ipv6.disable=1 on its command line?): the IPv6 services' packets never reach masq; boot it with IPv6"

    typealias Sysctls = HostChecks.IPv6Sysctls

    @Test(arguments: [
        // No IPv6 service: IPv6's sysctls are not looked at, whatever they say.
        ("1\n", nil, [String]()),
        ("0\n", nil, [Self.ipv4Off]),
        (nil, nil, []),
        ("1\n", Sysctls(present: true, forwarding: "1\n", disabled: "0\n"), []),
        ("1\n", Sysctls(present: true, forwarding: "0\n", disabled: "0\n"), [Self.ipv6Off]),
        ("0\n", Sysctls(present: true, forwarding: "0\n", disabled: "0\n"), [Self.ipv4Off, Self.ipv6Off]),
        ("1\n", Sysctls(present: true, forwarding: "0\n", disabled: "1\n"), [Self.ipv6Disabled, Self.ipv6Off]),
        ("1\n", Sysctls(present: true, forwarding: nil, disabled: nil), []),
        ("1\n", Sysctls(present: false, forwarding: nil, disabled: nil), [Self.noIPv6]),
    ] as [(String?, Sysctls?, [String])])
    func forwardingWarnings(ipv4: String?, ipv6: Sysctls?, expected: [String]) {
        #expect(HostChecks.forwardingWarnings(ipv4Forward: ipv4, ipv6: ipv6) == expected)
    }
}
