#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import MasqCore
import Testing
@testable import MasqHealth

/// A scratch directory under /tmp, removed afterwards.
private final class ScratchDirectory {
    let path: String
    private var created: [(path: String, isDirectory: Bool)] = []

    init() throws {
        var template = Array("/tmp/masq-keepalived-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw RulesError(token: "mkdtemp", message: String(cString: strerror(errno)))
        }
        path = String(cString: made)
    }

    func directory(_ name: String) {
        mkdir(path + "/" + name, 0o755)
        created.append((path + "/" + name, true))
    }

    func file(_ name: String, _ text: String) {
        let full = path + "/" + name
        let f = fopen(full, "w")
        fputs(text, f)
        fclose(f)
        created.append((full, false))
    }

    deinit {
        for entry in created.reversed() {
            if entry.isDirectory { rmdir(entry.path) } else { unlink(entry.path) }
        }
        rmdir(path)
    }
}

@Suite struct KeepalivedLoadTests {
    /// keepalived.conf includes conf.d/*.conf (sorted; the directory `conf.d/skip.conf/` is passed over),
    /// and conf.d/a.conf includes ../servers/*.inc from inside its virtual_server.
    @Test func globsAndNestedIncludes() throws {
        let dir = try ScratchDirectory()
        dir.directory("conf.d")
        dir.directory("conf.d/skip.conf")
        dir.directory("servers")
        dir.file("keepalived.conf", "global_defs {\n}\ninclude conf.d/*.conf\ninclude empty.d/*.conf\n")
        dir.file("braces.conf", "include conf.d/{b,a}.conf\n")
        dir.file("conf.d/b.conf", """
            virtual_server 198.18.0.1 53 {
                lvs_sched rr
                lvs_method NAT
                protocol UDP
                real_server 198.19.0.3 53 {
                }
            }
            """)
        dir.file("conf.d/a.conf", """
            virtual_server 198.18.0.1 80 {
                lvs_sched rr
                lvs_method NAT
                protocol TCP
                include ../servers/*.inc
            }
            """)
        dir.file("servers/1.inc", "real_server 198.19.0.1 80 {\n    TCP_CHECK {\n    }\n}\n")
        dir.file("servers/2.inc", "real_server 198.19.0.2 80 {\n}\n")

        let config = try KeepalivedParser.load(path: dir.path + "/keepalived.conf")
        #expect(config.configuration.services.map(\.key.port) == [80, 53])
        #expect(config.configuration.services[0].realServers.map(\.address) == [IPAddress("198.19.0.1")!, IPAddress("198.19.0.2")!])
        #expect(config.virtualServers[0].realServers[0].checks == [HealthCheck(kind: .tcp)])
        #expect(config.warnings.map { "\($0.file):\($0.line) \($0.token)" } == [
            "\(dir.path)/keepalived.conf:1 global_defs", "\(dir.path)/keepalived.conf:4 empty.d/*.conf",
        ])
        // GLOB_BRACE, in the pattern's own order: b, then a.
        let braces = try KeepalivedParser.load(path: dir.path + "/braces.conf")
        #expect(braces.configuration.services.map(\.key.port) == [53, 80])
    }

    @Test func errorsNameTheFileTheyAreIn() throws {
        let dir = try ScratchDirectory()
        dir.file("keepalived.conf", "# main\ninclude web.conf\n")
        dir.file("web.conf", "virtual_server 198.18.0.1 80 {\n    lb_kind DR\n}\n")
        #expect(throws: RulesError(file: "\(dir.path)/web.conf", line: 2, token: "DR",
                                   message: "masq forwards in NAT mode only: lb_kind DR is not supported")) {
            try KeepalivedParser.load(path: dir.path + "/keepalived.conf")
        }
    }

    @Test func missingFilesAndLoops() throws {
        let dir = try ScratchDirectory()
        dir.file("missing.conf", "\ninclude nope.conf\n")
        dir.file("loop.conf", "include ./loop.conf\n")
        #expect(throws: RulesError(file: "\(dir.path)/missing.conf", line: 2, token: "nope.conf",
                                   message: "included file \(dir.path)/nope.conf does not exist (or is not a file)")) {
            try KeepalivedParser.load(path: dir.path + "/missing.conf")
        }
        #expect(throws: RulesError(file: "\(dir.path)/loop.conf", line: 1, token: "./loop.conf",
                                   message: "include loop: \(dir.path)/loop.conf -> \(dir.path)/loop.conf")) {
            try KeepalivedParser.load(path: dir.path + "/loop.conf")
        }
        #expect(throws: RulesError(file: "\(dir.path)/absent.conf", token: "\(dir.path)/absent.conf",
                                   message: "cannot read \(dir.path)/absent.conf: No such file or directory")) {
            try KeepalivedParser.load(path: dir.path + "/absent.conf")
        }
    }
}
