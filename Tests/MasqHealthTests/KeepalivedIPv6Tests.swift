import Foundation
import MasqCore
import Testing
@testable import MasqHealth

// keepalived.conf with IPv6 virtual servers: addresses of either family wherever keepalived takes one
// (virtual_server, real_server, sorry_server, connect_ip, bindto), persistence_granularity as a prefix
// length for an IPv6 virtual server (keepalived's pgr_handler), and its family checks. Addresses are
// from 2001:2::/48, except keepalived's own sample, which is parsed only.

private func parse(_ text: String) throws(RulesError) -> KeepalivedConfig {
    try KeepalivedParser.parse(text: text, file: "v6.conf")
}

private func failure(_ text: String) -> RulesError? {
    do {
        _ = try parse(text)
        return nil
    } catch {
        return error
    }
}

private func v6(_ s: String) -> IPAddress { IPAddress(s)! }

private func service(_ body: String, header: String = "2001:2::1 80") -> String {
    """
    virtual_server \(header) {
        lvs_sched rr
        lvs_method NAT
        protocol TCP
    \(body)
    }
    """
}

@Suite struct KeepalivedIPv6Tests {
    @Test func everyAddressOfAnIPv6VirtualServer() throws {
        let c = try parse(service("""
                persistence_timeout 300
                persistence_granularity 64
                sorry_server 2001:2:0:1::250 8080
                virtualhost www.example
                real_server 2001:2:0:1::201 80 {
                    weight 2
                    TCP_CHECK {
                        connect_ip 2001:2:0:1::201
                        connect_port 8080
                        bindto 2001:2::1
                        connect_timeout 3
                    }
                }
                real_server 2001:2:0:1::202 {
                    HTTP_GET {
                        url {
                            path /health
                            status_code 200
                        }
                    }
                }
            """))
        let s = try #require(c.configuration.services.first)
        #expect(s.key == ServiceKey(proto: .tcp, address: IPv6Address("2001:2::1")!, port: 80))
        #expect(s.persistence == 300 && s.prefixLength == 64 && s.persistenceMaskText == "64")
        #expect(s.realServers == [RealServerSpec(address: v6("2001:2:0:1::201"), port: 80, weight: 2),
                                  RealServerSpec(address: v6("2001:2:0:1::202"), port: 80, weight: 1)])
        let vs = c.virtualServers[0]
        #expect(vs.sorryServer == RealServerSpec(address: v6("2001:2:0:1::250"), port: 8080, weight: 1))
        let check = vs.realServers[0].checks[0]
        #expect(check.connectIP == v6("2001:2:0:1::201") && check.connectPort == 8080 && check.bindTo == v6("2001:2::1"))
        #expect(IPVSCommand(adding: s).ipvsadmArguments == ["-A", "-t", "[2001:2::1]:80", "-s", "rr", "-p", "300", "-M", "64"])
    }

    @Test func granularityAloneMakesItPersistent() throws {
        let c = try parse(service("persistence_granularity 48\nreal_server 2001:2:0:1::201 80 {\n}"))
        #expect(c.configuration.services[0].persistence == ServiceSpec.defaultPersistence)
        #expect(c.configuration.services[0].prefixLength == 48)
    }

    @Test func ipFamilyAgreeingIsAccepted() throws {
        _ = try parse(service("ip_family inet6\nreal_server 2001:2:0:1::201 80 {\n}"))
        _ = try parse(service("ip_family inet\nreal_server 198.19.0.201 80 {\n}", header: "198.18.0.1 80"))
    }

    @Test(arguments: [
        (service("persistence_granularity 255.255.255.0\nreal_server 2001:2:0:1::201 80 {\n}"),
         "invalid IPv6 persistence_granularity (a prefix length, 1-128, expected)"),
        (service("persistence_granularity 129\nreal_server 2001:2:0:1::201 80 {\n}"),
         "invalid IPv6 persistence_granularity (a prefix length, 1-128, expected)"),
        (service("persistence_granularity 64\nreal_server 198.19.0.201 80 {\n}", header: "198.18.0.1 80"),
         "invalid IPv4 persistence_granularity (an IPv4 netmask expected)"),
        (service("ip_family inet\nreal_server 2001:2:0:1::201 80 {\n}"),
         "ip_family inet conflicts with the virtual server's address 2001:2::1"),
        (service("sorry_server 198.19.0.250 80\nreal_server 2001:2:0:1::201 80 {\n}"),
         "address family of virtual server and sorry server don't match"),
        (service("real_server 2001:2:0:1::201 80 {\nTCP_CHECK {\nbindto 198.18.0.1\n}\n}"),
         "TCP_CHECK: bindto 198.18.0.1 is not of the family of the address it connects to, 2001:2:0:1::201"),
        (service("real_server 198.19.0.201 80 {\nTCP_CHECK {\nconnect_ip 2001:2:0:1::201\nbindto 198.18.0.1\n}\n}",
                 header: "198.18.0.1 80"),
         "TCP_CHECK: bindto 198.18.0.1 is not of the family of the address it connects to, 2001:2:0:1::201"),
        (service("real_server 2001:2:0:1::201:: 80 {\n}"), "invalid real server address"),
    ])
    func refused(_ text: String, _ message: String) {
        #expect(failure(text)?.message == message)
    }

    @Test func aRealServerOfTheOtherFamilyIsSkippedAsKeepalivedDoes() throws {
        let c = try parse(service("real_server 198.19.0.201 80 {\n}\nreal_server 2001:2:0:1::201 80 {\n}"))
        #expect(c.configuration.services[0].realServers.map(\.address) == [v6("2001:2:0:1::201")])
        #expect(c.warnings.contains { $0.message.contains("address family of virtual server and real server 198.19.0.201:80 don't match") })
    }

    @Test func keepalivedsOwnIPv6SampleChecks() throws {
        // doc/samples/keepalived.conf.IPv6 (Tests/samples/keepalived; not under fixtures/, which holds packet fixtures): what `masq check --keepalived` loads.
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Tests/samples/keepalived/keepalived.conf.IPv6").path
        let c = try KeepalivedParser.load(path: path)
        let s = try #require(c.configuration.services.first)
        #expect(c.configuration.services.count == 1)
        #expect(s.key == ServiceKey(proto: .tcp, address: IPv6Address("ae00::1")!, port: 80))
        #expect(s.scheduler == "rr" && s.persistence == 50 && !s.hasPersistenceMask)
        #expect(s.realServers == [RealServerSpec(address: v6("ae00::10"), port: 25, weight: 1)])
        // Its virtual_server_group (ae00::2-9 80, ae00::1 80) is read but used by no block (the sample
        // comments out `virtual_server group IPv6_group`): no service of it, nothing said. Its
        // SMTP_CHECK runs (no warning).
        #expect(!c.warnings.contains { $0.message.contains("virtual_server_group") || $0.message.contains("IPv6_group") })
        #expect(c.virtualServers[0].realServers[0].checks.map(\.kind) == [.smtp(SMTPCheck(heloName: "foo.bar.com"))])
        #expect(c.virtualServers[0].realServers[0].checks.first?.retry == 3)
        #expect(!c.warnings.contains { $0.message.contains("SMTP_CHECK") })
    }
}
