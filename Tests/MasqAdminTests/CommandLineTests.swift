import MasqControl
import MasqCore
import MasqRules
import Testing
@testable import MasqAdmin

private func parse(_ args: [String], readingStdin: Bool = false) throws(AdminError) -> IPVSAdmCommand {
    try AdminCommandLine.parse(args, readingStdin: readingStdin, resolver: Fixture.resolver)
}

private let tryHelpLine = "Try `masqadm -h' or 'masqadm --help' for more information.\n"

@Suite struct ParsesEditingCommands {
    // Each command line and the numeric words its command travels as (`ipvsadmArguments`: short
    // options in ipvsadm-save's order, names resolved, defaults written out), which IPVSCommandParser
    // reads back to the same command.
    @Test(arguments: [
        (["-A", "-t", "198.18.0.1:80", "-s", "rr"], ["-A", "-t", "198.18.0.1:80", "-s", "rr"]),
        (["--add-service", "--tcp-service=198.18.0.1:80", "--scheduler=rr", "--persistent"],
         ["-A", "-t", "198.18.0.1:80", "-s", "rr", "-p", "360"]),
        (["--add-service", "--tcp-service", "198.18.0.1:80", "--scheduler", "rr", "--persistent", "60"],
         ["-A", "-t", "198.18.0.1:80", "-s", "rr", "-p", "60"]),
        // popt clusters and attached values
        (["-At", "198.18.0.1:80", "-srr", "-p300", "-M", "255.255.255.0"],
         ["-A", "-t", "198.18.0.1:80", "-s", "rr", "-p", "300", "-M", "255.255.255.0"]),
        (["-A", "-t=198.18.0.1:80", "-s", "rr"], ["-A", "-t", "198.18.0.1:80", "-s", "rr"]),
        // an address without port is port 0, allowed when persistent; -p takes no value before "-s"
        (["-A", "-t", "198.18.0.1", "-p", "-s", "rr"], ["-A", "-t", "198.18.0.1:0", "-s", "rr", "-p", "360"]),
        // inet_aton forms
        (["-A", "-t", "198.18.1:80", "-s", "rr"], ["-A", "-t", "198.18.0.1:80", "-s", "rr"]),
        (["-A", "-t", "0xc6120001:80", "-s", "rr"], ["-A", "-t", "198.18.0.1:80", "-s", "rr"]),
        (["-A", "-t", "198.18.0.4:+080", "-s", "rr"], ["-A", "-t", "198.18.0.4:80", "-s", "rr"]),
        (["-E", "-u", "198.18.0.53:53", "-s", "sh", "-b", "sh-port,sh-fallback"],
         ["-E", "-u", "198.18.0.53:53", "-s", "sh", "-b", "sh-fallback,sh-port"]),
        (["-a", "-t", "198.18.0.1:80", "-r", "192.168.100.101", "-m", "-w", "+2"],
         ["-a", "-t", "198.18.0.1:80", "-r", "192.168.100.101", "-m", "-w", "2"]),
        // names from /etc/hosts and /etc/services (Fixture's)
        (["--add-server", "-t", "vip:http", "-r", "web1:www", "--masquerading"],
         ["-a", "-t", "198.18.0.1:80", "-r", "192.168.100.101:80", "-m"]),
        (["-A", "-u", "VIP.example.org:domain", "-s", "sh"], ["-A", "-u", "198.18.0.1:53", "-s", "sh"]),
        (["-a", "-t", "198.18.0.1:80", "-r", "198.19.0.203", "-m", "-x", "0", "-y", "0"],
         ["-a", "-t", "198.18.0.1:80", "-r", "198.19.0.203", "-m"]),  // no threshold: nothing to say
        (["-e", "-t", "198.18.0.1:80", "-r", "192.168.100.101:80", "-m", "-w", "0"],
         ["-e", "-t", "198.18.0.1:80", "-r", "192.168.100.101:80", "-m", "-w", "0"]),
        (["-d", "-t", "198.18.0.1:80", "-r", "192.168.100.102:8080"],
         ["-d", "-t", "198.18.0.1:80", "-r", "192.168.100.102:8080"]),
        (["-D", "-t", "198.18.0.1:80"], ["-D", "-t", "198.18.0.1:80"]),
        (["--clear"], ["-C"]),
    ])
    func edit(_ args: [String], _ words: [String]) throws {
        let expected = try IPVSCommandParser.parse(words)
        #expect(try parse(args) == .edit(expected))
        #expect(expected.ipvsadmArguments == words)
    }

    @Test func valuesReachTheCommand() throws {
        guard case .edit(let c) = try parse(["-A", "-u", "198.18.0.53:53", "-s", "sh", "-p", "3600",
                                                "-M", "255.255.255.0", "-b", "sh-fallback"]) else {
            Issue.record("not an edit")
            return
        }
        #expect(c.kind == .addService)
        #expect(c.service == ServiceKey(proto: .udp, address: IPv4Address(198, 18, 0, 53), port: 53))
        #expect(c.scheduler == "sh")
        #expect(c.persistence == 3600)
        #expect(c.netmask == IPv4Address(255, 255, 255, 0))
        #expect(c.schedulerFlags == .fallback)
    }
}

@Suite struct ParsesOtherCommands {
    static let vip80 = ServiceKey(proto: .tcp, address: IPv4Address(198, 18, 0, 1), port: 80)
    static let dns = ServiceKey(proto: .udp, address: IPv4Address(198, 18, 0, 53), port: 53)

    @Test(arguments: [
        ([], IPVSAdmCommand.list(ListOptions())),  // main(): no argument lists the table
        (["-L"], .list(ListOptions())),
        (["-L", "-n"], .list(ListOptions(numeric: true))),
        (["-Ln"], .list(ListOptions(numeric: true))),
        (["-l", "--numeric"], .list(ListOptions(numeric: true))),
        (["--list", "-n", "--sort"], .list(ListOptions(numeric: true))),
        (["-L", "-n", "--nosort"], .list(ListOptions(numeric: true, noSort: true))),
        (["-L", "-t", "198.18.0.1:80", "-n", "--stats"], .list(ListOptions(numeric: true, service: vip80, stats: true))),
        (["-L", "-u", "198.18.0.53:domain"], .list(ListOptions(service: dns))),
        (["-L", "-n", "--rate", "--exact"], .list(ListOptions(numeric: true, rate: true, exact: true))),
        (["-L", "-X", "--stats"], .list(ListOptions(stats: true, exact: true))),
        (["-L", "--thresholds"], .list(ListOptions(thresholds: true))),
        (["-L", "--persistent-conn", "-n"], .list(ListOptions(numeric: true, persistentConnections: true))),
        (["-L", "--tun-info"], .list(ListOptions(tunnelInfo: true))),
        (["-L", "-c", "-n", "--persistent-conn"], .list(ListOptions(numeric: true, connections: true, persistentConnections: true))),
        (["-L", "--timeout"], .list(ListOptions(timeout: true))),
        (["-L", "--daemon"], .list(ListOptions(daemon: true))),
        (["-Z"], .zero(nil)),
        (["--zero", "-u", "198.18.0.53:53"], .zero(dns)),
        (["-Z", "-t", "0.0.0.0:0"], .zero(nil)),  // ipvs_zero_service sends no service: all
        (["-S"], .save(numeric: false)),
        (["--save", "-n"], .save(numeric: true)),
        (["-R"], .restore),
        (["--set", "900", "120", "300"], .setTimeouts(tcp: 900, tcpFin: 120, udp: 300)),
        (["900", "--set", "120", "300"], .setTimeouts(tcp: 900, tcpFin: 120, udp: 300)),
        (["--set", "0", "0", "2678400"], .setTimeouts(tcp: 0, tcpFin: 0, udp: 2_678_400)),
        (["-h"], .help),
        (["--help", "--bogus"], .help),  // usage_exit() before anything else is read
        (["-v"], .version),
        (["--version"], .version),
    ] as [([String], IPVSAdmCommand)])
    func command(_ args: [String], _ expected: IPVSAdmCommand) throws {
        #expect(try parse(args) == expected)
    }
}

@Suite struct RefusesAsIpvsadmDoes {
    // fail(2, …): the message and exit 2. Words from ipvsadm.c 1.31 (and the installed binary).
    @Test(arguments: [
        (["-L", "-A"], "invalid option `-A'"),  // a second command is no command (not "multiple commands")
        (["-A", "-t", "198.18.0.1:80", "-D"], "invalid option `-D'"),
        (["-L", "-Lq"], "invalid option `-Lq'"),
        (["-L", "-n", "-n"], "multiple 'numeric' options specified"),
        (["-a", "-t", "198.18.0.4:80", "-r", "198.19.0.203", "-m", "-m"], "multiple 'forwarding-method' options specified"),
        (["-A"], "You need to supply the 'service-address' option for the 'add-service' command"),
        (["-D"], "You need to supply the 'service-address' option for the 'delete-service' command"),
        (["-a", "-t", "198.18.0.1:80", "-m"], "You need to supply the 'real-server' option for the 'add-server' command"),
        (["-A", "-t", "198.18.0.1:80", "-r", "198.19.0.203"], "Illegal 'real-server' option with the 'add-service' command"),
        (["-D", "-t", "198.18.0.1:80", "-s", "rr"], "Illegal 'scheduler' option with the 'delete-service' command"),
        (["-d", "-t", "198.18.0.4:80", "-r", "198.19.0.203", "-w", "2"], "Illegal 'weight' option with the 'delete-server' command"),
        (["-L", "-s", "rr"], "Illegal 'scheduler' option with the 'list' command"),
        (["-C", "-n"], "Illegal 'numeric' option with the 'flush' command"),
        (["-S", "-c"], "Illegal 'connection' option with the 'save' command"),
        (["-R", "-n"], "Illegal 'numeric' option with the 'restore' command"),
        (["-L", "-c", "-t", "198.18.0.1:80"], "The option 'service-address' conflicts with the 'connection' option in the 'list' command"),
        (["-L", "--timeout", "--daemon"], "The option 'daemon' conflicts with the 'timeout' option in the 'list' command"),
        (["-L", "-c", "--stats"], "options conflicts in the list command"),
        (["-L", "--timeout", "--rate"], "options conflicts in the list command"),
        (["-L", "--daemon", "--persistent-conn"], "options conflicts in the list command"),
        (["--set", "900", "120"], "--set option requires 3 timeout values"),
        (["--set", "900", "120", "x"], "invalid timeout value `x' specified"),
        (["--set", "0", "0", "2678401"], "invalid timeout value `2678401' specified"),
        (["--set", "900", "120", "300", "400"], "unexpected argument 400"),
        (["-L", "-n", "extra"], "unexpected argument extra"),
        (["foo", "-L"], "unexpected argument foo"),  // popt reads options wherever they are
        (["-A", "-t", "198.18.0.4:99999"], "illegal virtual server address[:port] specified"),
        (["-A", "-t", "80"], "illegal virtual server address[:port] specified"),
        (["-A", "-t", "nosuchhost:80"], "illegal virtual server address[:port] specified"),  // never DNS
        (["-A", "-u", "198.18.0.4:www"], "illegal virtual server address[:port] specified"),  // www is tcp only
        (["-A", "-t", "256.1.1.1:80"], "illegal virtual server address[:port] specified"),
        (["-A", "--tcp-service="], "illegal virtual server address[:port] specified"),
        (["-a", "-t", "198.18.0.4:80", "-r", "bad.host", "-m"], "illegal real server address[:port] specified"),
        (["-a", "-t", "198.18.0.4:80", "-r", "198.19.0.203", "-m", "-w", "65536"], "illegal weight specified"),
        (["-a", "-t", "198.18.0.4:80", "-r", "198.19.0.203", "-m", "-w", "-1"], "illegal weight specified"),
        (["-a", "-t", "198.18.0.4:80", "-r", "198.19.0.203", "-m", "-x", "abc"], "illegal u_threshold specified"),
        (["-A", "-t", "198.18.0.4:80", "-p", "abc"], "invalid timeout value `abc' specified"),
        (["-A", "-t", "198.18.0.4:80", "-p", "0"], "invalid timeout value `0' specified"),
        (["-A", "-t", "198.18.0.4:80", "-p="], "invalid timeout value `' specified"),
        (["-A", "-t", "198.18.0.4:80", "-p", "-M", "garbage"], "illegal virtual server persistent mask specified"),
        (["-A", "-t", "198.18.0.4"], "Zero port specified for non-persistent service"),
        (["-A", "-t", "198.18.0.4:80", "-s", "rr", "-b", "sh-port"], "incompatible scheduler flag `sh-port'"),
        (["-A", "-t", "198.18.0.4:80", "-s", "mh", "-b", "sh-port"], "incompatible scheduler flag `sh-port'"),
        (["-A", "-t", "198.18.0.4:80", "-b", "flag-9"], "invalid scheduler flag `flag-9'"),
        (["-A", "-t", "198.18.0.4:80", "-o"], "One-Packet Scheduling is only for UDP virtual services"),
        (["-A", "-f", "0"], "invalid fwmark value `0' specified"),
        (["-A", "-6", "-f", "5"], "-6 used before -f\n"),  // sic: fail() adds a second newline
        (["-a", "-t", "198.18.0.4:80", "-r", "198.19.0.203", "-m", "--tun-type", "gue"], "Tunnel options conflict with forward method"),
        (["-a", "-t", "198.18.0.4:80", "-r", "198.19.0.203", "-i", "--tun-type", "gue"],
         "You need to supply the 'tun-port' option for the 'gue' tunnel type"),
        (["-a", "-t", "198.18.0.4:80", "-r", "198.19.0.203", "-i", "--tun-type", "bogus"], "illegal tunnel type specified"),
        (["-a", "-t", "198.18.0.4:80", "-r", "[::1]:80", "-m"], "Different address family is allowed only for tunneling servers"),
        (["--start-daemon", "foo"], "illegal start-daemon parameter specified"),
        (["--stop-daemon", "foo"], "illegal start_daemon specified"),
        (["--start-daemon", "master", "--syncid", "256"], "illegal syncid specified"),
    ])
    func fails(_ args: [String], _ message: String) {
        #expect(throws: AdminError(message: message, exitCode: 2)) { try parse(args) }
    }

    // tryhelp_exit(argv[0], -1): only the Try line, exit 255, when the first option isn't a command.
    @Test(arguments: [["-n", "-L"], ["foo"], ["--bogus", "-L"], ["--stats"], ["-L="], ["--"]])
    func tryHelp(_ args: [String]) {
        #expect(throws: AdminError.tryHelpExit) { try parse(args) }
    }

    // A popt error after the first option: "WORD: REASON", exit 255, no Try line.
    @Test(arguments: [
        (["-L", "--bogus"], "--bogus: unknown option"),
        (["-L", "-q"], "-q: unknown option"),
        (["-L", "-nq"], "-nq: unknown option"),
        (["-L", "-t"], "-t: missing argument"),
        (["-A", "-t", "198.18.0.4:80", "-s"], "-s: missing argument"),
        (["-L", "--numeric=1"], "--numeric=1: option does not take an argument"),
        (["-L", "-n="], "-n=: option does not take an argument"),
        (["-Ln="], "-Ln=: option does not take an argument"),
        (["--set", "-1", "0", "0"], "-1: unknown option"),  // a negative number is a short option to popt
    ])
    func poptErrors(_ args: [String], _ message: String) {
        #expect(throws: AdminError(message: message, exitCode: 255)) { try parse(args) }
    }

    @Test func standardErrorText() {
        #expect(AdminError.tryHelpExit.standardError(program: "masqadm") == tryHelpLine)
        #expect(AdminError.fail("illegal weight specified").standardError() == "illegal weight specified\n")
        #expect(AdminError.fail("-6 used before -f\n").standardError() == "-6 used before -f\n\n")
    }

    @Test func restoreInsideRestore() {
        // restore_table(): "avoid infinite loop".
        #expect(throws: AdminError.tryHelpExit) { try parse(["-R"], readingStdin: true) }
        #expect(throws: AdminError.tryHelpExit) { try parse([], readingStdin: true) }
    }

    @Test func restoreLines() throws {
        // config_stream_read(): words per line, "ipvsadm" dropped, blank lines skipped.
        let input = "-A -t 198.18.0.4:80 -s rr\n\nipvsadm -a -t 198.18.0.4:80 -r 198.19.0.203 -m\r\n  \t \n-C"
        #expect(AdminCommandLine.restoreArguments(input) == [
            ["-A", "-t", "198.18.0.4:80", "-s", "rr"], ["-a", "-t", "198.18.0.4:80", "-r", "198.19.0.203", "-m"], ["-C"],
        ])
        for line in AdminCommandLine.restoreArguments(input) {
            _ = try parse(line, readingStdin: true)
        }
    }
}

@Suite struct RefusesWhatMasqDoesNotDo {
    // masq's own refusals (ipvsadm would accept these): exit 2, masq's words naming the word at fault.
    @Test(arguments: [
        (["-a", "-t", "198.18.0.4:80", "-r", "198.19.0.203", "-g"], "NAT mode only"),
        (["-a", "-t", "198.18.0.4:80", "-r", "198.19.0.203", "-i"], "NAT mode only"),
        (["-a", "-t", "198.18.0.4:80", "-r", "198.19.0.203"], "no forwarding method"),  // ipvsadm's default is -g
        (["-A", "--sctp-service", "198.18.0.4:80"], "SCTP services are not supported"),
        (["-A", "-t", "198.18.0.4:80", "--pe", "sip"], "option --pe is not supported"),
        (["-A", "-t", "198.18.0.4:80", "-s", "rr", "-b", "flag-3"], "flag-3 is not supported"),
        (["--start-daemon", "master", "--mcast-group", "ff02::81"], "IPv6 multicast groups are not supported"),
    ])
    func refuses(_ args: [String], _ words: String) {
        do {
            _ = try parse(args)
            Issue.record("accepted \(args)")
        } catch {
            #expect(error.exitCode == 2)
            #expect(!error.tryHelp)
            #expect(error.message?.contains(words) == true, "\(error.message ?? "")")
        }
    }

    @Test func unknownSchedulerIsIPVSError() {
        // IPVS answers ENOENT; libipvs says so, ipvsadm returns -1 (exit 255).
        #expect(throws: AdminError(message: "Scheduler or persistence engine not found", exitCode: 255)) {
            try parse(["-A", "-t", "198.18.0.4:80", "-s", "bogus"])
        }
    }

    @Test func servicesMasqCannotHaveAreNotThere() {
        // -L of an SCTP service: list_service's "No such service", exit 1; -Z: exit 255.
        // (IPv6 and firewall-mark services are services masq can have: IPv6CommandLineTests,
        // FirewallMarkCommandLines.)
        #expect(throws: AdminError(message: "No such service", exitCode: 1)) { try parse(["-L", "--sctp-service", "198.18.0.4:80"]) }
        #expect(throws: AdminError(message: "No such service", exitCode: 255)) { try parse(["-Z", "--sctp-service", "198.18.0.4:80"]) }
    }
}

@Suite struct HelpAndVersion {
    @Test func version() {
        // ipvsadm's line first, unchanged (scripts read it), then masq's version.
        let lines = AdminCommandLine.versionText.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines == ["ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)", "masqadm (masq \(masqVersion))", ""])
        #expect(masqVersion.split(separator: ".").count == 3 && masqVersion.split(separator: ".").allSatisfy { UInt($0) != nil })
    }

    @Test func help() {
        let text = AdminCommandLine.help(program: "masqadm")
        #expect(text.hasPrefix("masqadm: ipvsadm v1.31's command line"))
        #expect(text.hasSuffix("\n"))
        #expect(text.contains("  masqadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags]\n"))
        #expect(text.contains("  --masquerading -m "))
        #expect(text.contains("one of rr|wrr|lc|wlc|sed|nq|sh|dh|mh,"))
        #expect(text.contains("NAT mode only"))
        for unsupported in ["--gatewaying", "--ipip", "--sctp-service", "--tun-type", "--pe "] {
            #expect(!text.contains(unsupported), "\(unsupported)")
        }
        // ipvsadm's lines for what masq now takes.
        for line in ["  --fwmark-service|-f fwmark          fwmark is an integer greater than zero\n",
                     "  --ipv6         -6                   fwmark entry uses IPv6\n",
                     "  --u-threshold  -x uthreshold        upper threshold of connections\n",
                     "  --l-threshold  -y lthreshold        lower threshold of connections\n",
                     "  --ops          -o                   one-packet scheduling\n"] {
            #expect(text.contains(line), "\(line)")
        }
    }

    @Test func everyOptionInTheHelpParses() throws {
        // The list options the help names are all accepted by -L.
        for option in ["--stats", "--rate", "--thresholds", "--persistent-conn", "--nosort", "--sort", "--timeout",
                       "--connection", "--exact", "--numeric"] {
            #expect(AdminCommandLine.help().contains("  \(option) "))
            _ = try parse(["-L", option])
        }
    }
}
