import Foundation
import MasqCore
import MasqRules
import Testing
@testable import MasqAdmin

/// Writes the fixture's hosts and services files to a fresh temporary directory.
private func withTemporaryFiles<T>(_ body: (String, String) throws -> T) throws -> T {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("masqadmin-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let hosts = directory.appendingPathComponent("hosts").path
    let services = directory.appendingPathComponent("services").path
    try Fixture.hosts.write(toFile: hosts, atomically: true, encoding: .utf8)
    try Fixture.services.write(toFile: services, atomically: true, encoding: .utf8)
    return try body(hosts, services)
}

@Suite struct FilesOnlyResolution {
    @Test func readsInjectedFiles() throws {
        try withTemporaryFiles { hosts, services in
            let r = NameResolver(hostsPath: hosts, servicesPath: services)
            // gethostbyaddr: the first line's canonical name
            #expect(r.hostName(for: IPv4Address(198, 18, 0, 1)) == "vip.example.org")
            #expect(r.hostName(for: IPv4Address(192, 168, 100, 101)) == "web1")  // comment after the name
            #expect(r.hostName(for: IPv4Address(10, 0, 2, 1)) == nil)
            // gethostbyname: canonical names and aliases, any case; IPv6 lines ignored
            #expect(r.address(forHost: "vip") == IPv4Address(198, 18, 0, 1))
            #expect(r.address(forHost: "WEB2") == IPv4Address(192, 168, 100, 102))
            #expect(r.address(forHost: "ip6-localhost") == nil)
            #expect(r.address(forHost: "the") == nil)  // words of a comment are no names
            // getservbyport / getservbyname, per protocol
            #expect(r.serviceName(forPort: 80, proto: "tcp") == "http")
            #expect(r.serviceName(forPort: 80, proto: "udp") == nil)
            #expect(r.serviceName(forPort: 53, proto: "UDP") == "domain")
            #expect(r.serviceName(forPort: 5353, proto: "udp") == "mdns")
            #expect(r.port(forService: "www", proto: "tcp") == 80)
            #expect(r.port(forService: "webcache", proto: "tcp") == 8080)
            #expect(r.port(forService: "WWW", proto: "tcp") == nil)  // service names are case-sensitive
            #expect(r.port(forService: "mdns", proto: "tcp") == nil)
        }
    }

    @Test func missingFilesResolveNothing() {
        let r = NameResolver(hostsPath: "/nonexistent/hosts", servicesPath: "/nonexistent/services")
        #expect(r.hostName(for: IPv4Address(127, 0, 0, 1)) == nil)
        #expect(r.serviceName(forPort: 80, proto: "tcp") == nil)
    }

    @Test func listingUsesTheInjectedFiles() throws {
        try withTemporaryFiles { hosts, services in
            let format = IPVSAdmFormat(resolver: NameResolver(hostsPath: hosts, servicesPath: services))
            let text = try format.list(Fixture.state, ListOptions(service: ServiceKey(
                proto: .tcp, address: IPv4Address(198, 18, 0, 1), port: 80)))
            #expect(text == Fixture.lines([
                "Prot LocalAddress:Port Scheduler Flags",
                "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
                "TCP  vip.example.org:http rr",
                "  -> web1:http                    Masq    1      2          3         ",
                "  -> web2.example.org:http-alt    Masq    3      1          0         ",
            ]))
        }
    }

    @Test func commandLineNamesUseTheInjectedFiles() throws {
        try withTemporaryFiles { hosts, services in
            let r = NameResolver(hostsPath: hosts, servicesPath: services)
            let command = try AdminCommandLine.parse(["-a", "-t", "vip:https", "-r", "web2:webcache", "-m"], resolver: r)
            guard case .edit(let edit) = command else {
                Issue.record("not an edit")
                return
            }
            #expect(edit.ipvsadmArguments == ["-a", "-t", "198.18.0.1:443", "-r", "192.168.100.102:8080", "-m"])
        }
    }

    @Test func windowsLineEndings() {
        let r = NameResolver(hostsText: "10.0.0.1 one\r\n10.0.0.2 two\r\n", servicesText: "x 81/tcp\r\ny 82/tcp\r\n")
        #expect(r.hostName(for: IPv4Address(10, 0, 0, 2)) == "two")
        #expect(r.address(forHost: "one") == IPv4Address(10, 0, 0, 1))
        #expect(r.serviceName(forPort: 82, proto: "tcp") == "y")
    }

    @Test func numericOnlyPrintsNumbers() throws {
        let text = try IPVSAdmFormat(resolver: .numericOnly).list(Fixture.state, ListOptions())
        #expect(text.contains("TCP  198.18.0.1:80 rr\n"))
    }

    @Test func longNamesAreCutAt59Bytes() {
        // addrport_to_anyname: snprintf(buf, 60, "%s:%s", host, port)
        let long = String(repeating: "h", count: 70)
        let r = NameResolver(hostsText: "10.9.9.9 \(long)\n", servicesText: "")
        let f = IPVSAdmFormat(resolver: r)
        #expect(f.name("10.9.9.9", 80, proto: "tcp", numeric: false) == String(repeating: "h", count: 59))
        #expect(f.name("10.9.9.9", 80, proto: "tcp", numeric: true) == "10.9.9.9:80")
    }
}

@Suite struct PrintfPaddingTests {
    @Test func printfPadding() {
        #expect(CFormat.left("ab", 4) == "ab  ")
        #expect(CFormat.left("abcdef", 4) == "abcdef")  // %-4s never cuts
        #expect(CFormat.right("7", 3) == "  7")
        #expect(CFormat.cut("abcdef", 4) == "abcd")
        #expect(CFormat.unsigned(-1) == "4294967295")
    }
}
