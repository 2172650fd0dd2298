#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import MasqCore

/// Host and port names for ipvsadm's non-numeric output (no `-n`), for names on its command line and
/// for names in a rules file (what `ipvsadm-save` without `-n` writes), read from `/etc/hosts` and
/// `/etc/services` only. One implementation for masqadm (MasqAdmin) and the rules parser (here), so
/// what `masqadm -S` prints is what `masq run --rules` reads back.
///
/// ipvsadm 1.31 calls `gethostbyaddr`/`getservbyport` to print names (`addr_to_anyname`,
/// `port_to_anyname`) and `gethostbyname`/`getservbyname` to read them (`host_to_addr`,
/// `service_to_port`); through nsswitch those may ask DNS. masq must never send a DNS query (its
/// test hosts live on reserved addresses, a query would leave the machine), so this resolver reads
/// the two files itself, the way glibc's `files` backend does, and falls back to numbers.
/// The files are read once, when the resolver is made; their paths are injectable for tests.
public struct NameResolver: Sendable {
    struct Host: Sendable {
        var address: IPv4Address
        var names: [String]  // canonical name first, then aliases
    }

    struct Service: Sendable {
        var names: [String]  // official name first, then aliases
        var port: UInt16
        var proto: String  // "tcp", "udp", "sctp", …
    }

    private var hosts: [Host]
    private var services: [Service]
    /// Where the names came from, for error messages ("not in /etc/hosts").
    public let hostsSource: String
    public let servicesSource: String

    /// Reads `hostsPath` and `servicesPath` (a missing or unreadable file counts as empty).
    public init(hostsPath: String = "/etc/hosts", servicesPath: String = "/etc/services") {
        self.init(hostsText: Self.readFile(hostsPath) ?? "", servicesText: Self.readFile(servicesPath) ?? "",
                  hostsSource: hostsPath, servicesSource: servicesPath)
    }

    /// From the files' contents; the sources only name them in messages.
    public init(hostsText: String, servicesText: String, hostsSource: String = "/etc/hosts",
                servicesSource: String = "/etc/services") {
        hosts = Self.parseHosts(hostsText)
        services = Self.parseServices(servicesText)
        self.hostsSource = hostsSource
        self.servicesSource = servicesSource
    }

    /// Resolves nothing: every address and port prints as a number.
    public static let numericOnly = NameResolver(hostsText: "", servicesText: "")

    // MARK: lookups

    /// `gethostbyaddr` over /etc/hosts: the canonical name of the first IPv4 line with this address.
    public func hostName(for address: IPv4Address) -> String? {
        hosts.first { $0.address == address }?.names.first
    }

    /// `gethostbyname` over /etc/hosts: the address of the first IPv4 line naming the host (canonical
    /// name or alias, case-insensitively, as glibc compares host names).
    public func address(forHost name: String) -> IPv4Address? {
        let wanted = Self.lowercasedASCII(name)
        return hosts.first { $0.names.contains { Self.lowercasedASCII($0) == wanted } }?.address
    }

    /// `getservbyport(port, proto)` over /etc/services: the official name of the first matching line.
    /// `proto` is "tcp", "udp" or "sctp" (any case).
    public func serviceName(forPort port: UInt16, proto: String) -> String? {
        let p = Self.lowercasedASCII(proto)
        return services.first { $0.port == port && $0.proto == p }?.names.first
    }

    /// `getservbyname(name, proto)` over /etc/services: official names and aliases, case-sensitively.
    public func port(forService name: String, proto: String) -> UInt16? {
        let p = Self.lowercasedASCII(proto)
        return services.first { $0.proto == p && $0.names.contains(name) }?.port
    }

    // MARK: parsing

    /// glibc `files` hosts format: `ADDRESS NAME [ALIAS...]`, `#` to the end of the line is a comment.
    /// IPv6 lines are skipped (ipvsadm's IPv4 lookups never match them).
    static func parseHosts(_ text: String) -> [Host] {
        var out: [Host] = []
        for line in TextLine.lines(text) {
            let words = line.words
            guard words.count >= 2, let address = IPv4Address(words[0]) else { continue }
            out.append(Host(address: address, names: Array(words.dropFirst())))
        }
        return out
    }

    /// glibc `files` services format: `NAME PORT/PROTO [ALIAS...]`, `#` comments.
    static func parseServices(_ text: String) -> [Service] {
        var out: [Service] = []
        for line in TextLine.lines(text) {
            let words = line.words
            guard words.count >= 2 else { continue }
            let portProto = words[1].split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            guard portProto.count == 2, !portProto[1].isEmpty,
                  portProto[0].allSatisfy({ $0.isASCII && $0.isNumber }), let port = UInt16(portProto[0])
            else { continue }
            let names = [words[0]] + words.dropFirst(2)
            out.append(Service(names: names, port: port, proto: lowercasedASCII(String(portProto[1]))))
        }
        return out
    }

    private static func lowercasedASCII(_ s: String) -> String {
        String(decoding: s.utf8.map { (0x41...0x5a).contains($0) ? $0 + 0x20 : $0 }, as: UTF8.self)
    }

    /// The whole file, or nil when it can't be opened.
    static func readFile(_ path: String) -> String? { try? TextFile.read(path) }
}
