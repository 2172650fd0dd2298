import MasqCore
import Testing
@testable import MasqRules

// IPv6 services as ipvsadm 1.31's parse_options/parse_service read them (addresses from 2001:2::/48):
// `[ADDR]:PORT`, or the bare address (no port: -r then takes the service's); never a name (host_to_addr
// is gethostbyname, AF_INET only); `-M` a prefix length 1-128 (atoi); mixed families refused with
// ipvsadm's "Different address family is allowed only for tunneling servers".

private func edit(_ words: [String], names: NameResolver = .numericOnly) throws(IPVSCommandError) -> IPVSCommand {
    guard case .edit(let c) = try IPVSAdmCommandLine.parse(words, names: { names }) else {
        Issue.record("not an edit: \(words)")
        return IPVSCommand(kind: .clear)
    }
    return c
}

private let vip6 = IPv6Address("2001:2::1")!
private let rs6 = IPv6Address("2001:2:0:1::201")!

@Suite struct IPv6CommandLineParsing {
    @Test(arguments: [
        (["-A", "-t", "[2001:2::1]:80", "-s", "rr"], IPProtocol.tcp, "2001:2::1", UInt16(80)),
        (["-A", "-u", "[2001:2::1]:53"], .udp, "2001:2::1", 53),
        (["-A", "-t", "[2001:2:0:0:0:0:0:1]:443"], .tcp, "2001:2::1", 443),  // any RFC 4291 spelling
        (["-A", "-t", "[2001:2::198.18.0.1]:80"], .tcp, "2001:2::c612:1", 80),  // embedded dotted quad
        (["-A", "-t", "2001:2::1", "-p"], .tcp, "2001:2::1", 0),  // bare: no port (persistent, port 0)
        (["-A", "--tcp-service=[2001:2::1]:http"], .tcp, "2001:2::1", 80),  // port name for the protocol
    ])
    func services(_ words: [String], _ proto: IPProtocol, _ address: String, _ port: UInt16) throws {
        let names = NameResolver(hostsText: "", servicesText: "http 80/tcp\n")
        let c = try edit(words, names: names)
        #expect(c.service == ServiceKey(proto: proto, address: IPv6Address(address)!, port: port))
    }

    @Test func realServerForms() throws {
        // [ADDR]:PORT, [ADDR]:NAME, and the bare address, which takes the virtual port
        // (`if (parse == 1) ce->dest.port = ce->svc.port`).
        let names = NameResolver(hostsText: "", servicesText: "http-alt 8080/tcp\n")
        let withPort = try edit(["-a", "-t", "[2001:2::1]:80", "-r", "[2001:2:0:1::201]:8080", "-m", "-w", "2"])
        #expect(withPort.realServer?.address == .v6(rs6) && withPort.realServer?.port == 8080 && withPort.weight == 2)
        let named = try edit(["-a", "-t", "[2001:2::1]:80", "-r", "[2001:2:0:1::201]:http-alt", "-m"], names: names)
        #expect(named.realServer?.port == 8080)
        let bare = try edit(["-a", "-t", "[2001:2::1]:80", "-r", "2001:2:0:1::201", "-m"])
        #expect(bare.realServer?.address == .v6(rs6) && bare.realServer?.port == 80)
        // Its words read back to the same command (the daemon's `apply`).
        #expect(try IPVSCommandParser.parse(bare.ipvsadmArguments) == bare)
        #expect(bare.ipvsadmArguments == ["-a", "-t", "[2001:2::1]:80", "-r", "[2001:2:0:1::201]:80", "-m"])
        let delete = try edit(["-d", "-t", "[2001:2::1]:80", "-r", "2001:2:0:1::201"])
        #expect(delete.ipvsadmArguments == ["-d", "-t", "[2001:2::1]:80", "-r", "[2001:2:0:1::201]:80"])
    }

    @Test func prefixLengthNetmask() throws {
        let c = try edit(["-A", "-t", "[2001:2::1]:80", "-p", "300", "-M", "64"])
        #expect(c.prefixLength == 64 && c.netmask == nil && c.persistence == 300)
        #expect(c.ipvsadmArguments == ["-A", "-t", "[2001:2::1]:80", "-p", "300", "-M", "64"])
        // atoi: what follows the digits is ignored, as in ipvsadm.
        #expect(try edit(["-A", "-t", "[2001:2::1]:80", "-p", "-M", "48x"]).prefixLength == 48)
        // parse_service sets svc->netmask = 128 for an IPv6 address: a -M before -t is lost.
        let lost = try edit(["-A", "-M", "255.255.255.0", "-t", "[2001:2::1]:80", "-p"])
        #expect(lost.netmask == nil && lost.prefixLength == nil)
    }

    @Test(arguments: [
        (["-A", "-t", "[2001:2::1]:80", "-p", "-M", "0"], "illegal ipv6 netmask specified", "0"),
        (["-A", "-t", "[2001:2::1]:80", "-p", "-M", "129"], "illegal ipv6 netmask specified", "129"),
        (["-A", "-t", "[2001:2::1]:80", "-p", "-M", "255.255.255.0"], "illegal ipv6 netmask specified", "255.255.255.0"),
        (["-A", "-t", "[2001:2::1]"], "illegal virtual server address[:port] specified", "[2001:2::1]"),
        (["-A", "-t", "[2001:2::1]80"], "illegal virtual server address[:port] specified", "[2001:2::1]80"),
        (["-A", "-t", "[2001:2::1:80"], "illegal virtual server address[:port] specified", "[2001:2::1:80"),
        (["-A", "-t", "[2001:2::1]:"], "illegal virtual server address[:port] specified", "[2001:2::1]:"),
        (["-A", "-t", "[2001:2::1]:65536"], "illegal virtual server address[:port] specified", "[2001:2::1]:65536"),
        (["-A", "-t", "2001:2::1"], "Zero port specified for non-persistent service", "2001:2::1"),
        (["-a", "-t", "[2001:2::1]:80", "-r", "[2001:2:0:1::201]", "-m"],
         "illegal real server address[:port] specified", "[2001:2:0:1::201]"),
        (["-a", "-t", "[2001:2::1]:80", "-r", "198.19.0.201:80", "-m"],
         "Different address family is allowed only for tunneling servers", "-r"),
        (["-a", "-t", "198.18.0.1:80", "-r", "[2001:2:0:1::201]:80", "-m"],
         "Different address family is allowed only for tunneling servers", "-r"),
        (["-e", "-t", "198.18.0.1:80", "-r", "2001:2:0:1::201", "-m"],
         "Different address family is allowed only for tunneling servers", "-r"),
        (["-A", "-6", "-t", "[2001:2::1]:80"], "-6 used before -f\n", "-6"),
    ])
    func refusedInIpvsadmWords(_ words: [String], _ message: String, _ token: String) {
        // ipvsadm's words and the word at fault (masq's detail, where it adds one, aside).
        do {
            _ = try edit(words)
            Issue.record("accepted \(words)")
        } catch {
            #expect(error.kind == .invalid && error.message == message && error.token == token, "\(error)")
        }
    }

    @Test func bracketsWithoutAPortSayWhy() {
        do {
            _ = try edit(["-a", "-t", "[2001:2::1]:80", "-r", "[2001:2:0:1::201]", "-m"])
            Issue.record("accepted")
        } catch {
            #expect(error.explained.contains("needs a port ([ADDRESS]:PORT)"))
        }
    }

    @Test func namesNeverResolveToIPv6() {
        // gethostbyname is AF_INET only: a name whose only address is IPv6 is not found (the
        // resolver skips IPv6 hosts lines), so the word is an illegal address.
        let names = NameResolver(hostsText: "2001:2::1 vip6\n", servicesText: "")
        #expect(throws: IPVSCommandError.self) { _ = try edit(["-A", "-t", "vip6:80"], names: names) }
    }

    @Test func ipv6OptionOnlyAfterAFirewallMark() throws {
        // ipvsadm: `-f N -6` makes the fwmark service IPv6 (and -M a prefix length).
        let c = try edit(["-A", "-f", "5", "-6", "-p", "-M", "64"])
        #expect(c.service == ServiceKey(fwmark: 5, ipv6: true) && c.prefixLength == 64 && c.netmask == nil)
        // A -M before the -6 is lost (`ce->svc.netmask = 128`).
        let lost = try edit(["-A", "-f", "5", "-p", "-M", "255.255.255.0", "-6"])
        #expect(lost.netmask == nil && lost.prefixLength == nil)
        #expect(throws: IPVSCommandError(.invalid, "illegal ipv6 netmask specified", token: "200")) {
            _ = try edit(["-A", "-f", "5", "--ipv6", "-p", "-M", "200"])
        }
    }

    @Test func listAndZeroTakeAnIPv6Service() throws {
        let key = ServiceKey(proto: .tcp, address: vip6, port: 80)
        guard case .list(let l) = try IPVSAdmCommandLine.parse(["-L", "-n", "-t", "[2001:2::1]:80"], names: { .numericOnly })
        else { Issue.record("not a list"); return }
        #expect(l.service == key)
        #expect(try IPVSAdmCommandLine.parse(["-Z", "-t", "[2001:2::1]:80"], names: { .numericOnly }) == .zero(key))
        // [::]:0, like 0.0.0.0:0, is no service: ipvs_zero_service zeroes them all.
        #expect(try IPVSAdmCommandLine.parse(["-Z", "-t", "[::]:0"], names: { .numericOnly }) == .zero(nil))
    }
}

@Suite struct IPv6RulesFile {
    @Test func saveFormatRoundTrips() throws {
        let text = """
            -A -t 198.18.0.1:80 -s rr
            -a -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w 1
            -A -t [2001:2::1]:80 -s wrr -p 120 -M 64
            -a -t [2001:2::1]:80 -r [2001:2:0:1::201]:80 -m -w 3
            -a -t [2001:2::1]:80 -r [2001:2:0:1::202]:8080 -m -w 1
            -A -u [2001:2::53]:53 -s sh -b sh-port
            -a -u [2001:2::53]:53 -r [2001:2:0:1::53]:5353 -m -w 1

            """
        let c = try RulesFile.parse(text)
        #expect(c.services.map(\.key.endpoint) == ["198.18.0.1:80", "[2001:2::1]:80", "[2001:2::53]:53"])
        #expect(c.services[1].prefixLength == 64 && c.services[1].hasPersistenceMask)
        #expect(c.services[1].realServers == [RealServerSpec(address: rs6, port: 80, weight: 3),
                                              RealServerSpec(address: IPv6Address("2001:2:0:1::202")!, port: 8080)])
        #expect(RulesFile.format(c) == text)
    }

    @Test func bareRealServerTakesTheVirtualPort() throws {
        let c = try RulesFile.parse("""
            -A -t [2001:2::1]:443 -s rr
            -a -t [2001:2::1]:443 -r 2001:2:0:1::201 -m
            """)
        #expect(c.services[0].realServers == [RealServerSpec(address: rs6, port: 443, weight: 1)])
    }

    @Test func errorsKeepFileLineAndToken() {
        #expect(throws: RulesError(file: "rules.v6", line: 2, token: "-r",
                                   message: "Different address family is allowed only for tunneling servers")) {
            _ = try RulesFile.parse("-A -t [2001:2::1]:80 -s rr\n-a -t [2001:2::1]:80 -r 198.19.0.201:80 -m\n",
                                    file: "rules.v6")
        }
        #expect(throws: RulesError(file: "rules.v6", line: 1, token: "[2001:2::1]:99999",
                                   message: "illegal virtual server address[:port] specified")) {
            _ = try RulesFile.parse("-A -t [2001:2::1]:99999\n", file: "rules.v6")
        }
    }
}
