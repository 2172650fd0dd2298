import Foundation
import MasqControl
import MasqCore
import MasqRules
import Testing

/// Requests and answers through the framing: what a client encodes the daemon decodes to the same
/// value, and what is not a request is refused with a reason.
@Suite struct ControlProtocolTests {
    static func command(_ words: String) throws -> IPVSCommand {
        try IPVSCommandParser.parse(words.split(separator: " ").map(String.init))
    }

    static func requests() throws -> [ControlRequest] {
        [
            .state, .save, .help,
            .flows(FlowFilter()),
            .flows(try FlowFilter("proto=udp client=198.18.0.12:40000 vip=198.18.0.1 rs=198.19.0.201:53 state=UDP")),
            .apply(try command("-A -t 198.18.0.1:80 -s rr")),
            .apply(try command("-a -u 198.18.0.1:53 -r 198.19.0.201 -m -w 3")),
            .restore(rules: "-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m\n"),
            .zero(nil),
            .zero(ServiceKey(proto: .udp, address: IPv4Address(198, 18, 0, 1), port: 53)),
            .setTimeouts(tcp: 900, tcpFin: 0, udp: 300),
            .trace(try FlowFilter("vip=198.18.0.1:80,state=SYN_RECV"), packets: 10, seconds: 5, file: "/tmp/t.pcap"),
            .startDaemon(SyncDaemonConfig(role: .master, interface: "sy0", syncID: 7)),
            .startDaemon(SyncDaemonConfig(role: .backup, interface: "eth1", syncID: 0, maxLength: 9000,
                                          group: IPv4Address(239, 0, 0, 1), port: 8850, ttl: 3)),
            .stopDaemon(.master), .stopDaemon(.backup), .syncStatus,
        ]
    }

    @Test func everyRequestRoundTrips() throws {
        for request in try Self.requests() {
            let bytes = ControlFraming.encode(request)
            #expect(bytes.last == UInt8(ascii: "\n"))
            #expect(try ControlFraming.decodeRequest(bytes) == request, "\(request)")
        }
    }

    @Test func theWireFormIsReadable() throws {
        let text = String(decoding: ControlFraming.encode(.flows(try FlowFilter("vip=198.18.0.1:80"))), as: UTF8.self)
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        #expect(object?["command"] as? String == "flows")
        #expect(object?["filter"] as? String == "vip=198.18.0.1:80")
        // A request written by hand (socat) reads as well.
        #expect(try ControlFraming.decodeRequest(Array(#" {"command":"apply","arguments":["-D","-t","198.18.0.1:80"]} "#.utf8))
            == .apply(try Self.command("-D -t 198.18.0.1:80")))
    }

    /// The ipvsadm words a command travels as parse back to that command, for every kind and option.
    @Test(arguments: [
        "-A -t 198.18.0.1:80", "-A -t 198.18.0.1:80 -s wrr -p 120 -M 255.255.255.0",
        "-A -u 198.18.0.1:0 -s sh -b sh-fallback,sh-port -p", "-E -t 198.18.0.1:80 -s mh -b mh-port",
        "-D -u 198.18.0.1:53", "-C", "-a -t 198.18.0.1:80 -r 198.19.0.201:8080 -m -w 0",
        "-a -t 198.18.0.1:80 -r 198.19.0.201 -m", "-e -t 198.18.0.1:80 -r 198.19.0.201:80 -m -w 7",
        "-d -t 198.18.0.1:80 -r 198.19.0.201:80", "-d -t 198.18.0.1:80 -r 198.19.0.201",
    ])
    func ipvsadmArgumentsRoundTrip(_ words: String) throws {
        let command = try Self.command(words)
        #expect(try IPVSCommandParser.parse(command.ipvsadmArguments) == command, "\(command.ipvsadmArguments)")
    }

    @Test func badRequestsAreRefusedWithAReason() {
        func refusal(_ text: String) -> ControlError? {
            do {
                _ = try ControlFraming.decodeRequest(Array(text.utf8))
                return nil
            } catch {
                return error
            }
        }
        let cases: [(String, String)] = [
            ("", "empty request"),
            ("  \n", "empty request"),
            ("state\n", "not valid JSON"),  // the old text protocol
            (#"{"command":"reboot"}"#, "unknown command 'reboot'"),
            (#"{"filter":"vip=198.18.0.1"}"#, "'command' is missing"),
            (#"{"command":"flows","filter":"vip=198.18.0.300"}"#, "is not ADDRESS[:PORT]"),
            (#"{"command":"flows","filter":"state=FOO"}"#, "unknown state"),
            (#"{"command":"apply","arguments":["-a","-t","198.18.0.1:80","-r","198.19.0.201","-g"]}"#, "NAT mode only"),
            (#"{"command":"apply","arguments":"-C"}"#, "expected"),
            (#"{"command":"zero","service":{"proto":"sctp","address":"198.18.0.1","port":80}}"#, "not tcp or udp"),
            (#"{"command":"setTimeouts","tcp":-1,"tcpFin":0,"udp":0}"#, ""),  // Foundation's words vary
            (#"{"command":"trace","filter":"","packets":0,"seconds":5,"file":"/tmp/t"}"#, "must be positive"),
            (#"{"command":"trace","filter":"","packets":1,"seconds":5,"file":"t.pcap"}"#, "absolute file path"),
            (#"{"command":"trace","filter":"","packets":1,"seconds":9223372036854775807,"file":"/tmp/t"}"#, "at most"),
        ]
        for (text, words) in cases {
            let error = refusal(text)
            #expect(error?.code == .badRequest, "\(text)")
            if !words.isEmpty {
                #expect(error?.message.contains(words) == true, "\(text): \(error?.message ?? "accepted")")
            }
        }
    }

    static let state = AdminState(
        capacity: 1 << 20, connections: 2, timeouts: TimeoutState(tcp: 900, tcpFin: 120, udp: 300),
        services: [ServiceState(proto: "TCP", address: "198.18.0.1", port: 80, scheduler: "rr",
                                destinations: [DestinationState(address: "198.19.0.201", port: 80, weight: 1,
                                                                activeConnections: 1)])])

    @Test func everyReplyRoundTrips() throws {
        let flow = FlowRecord(proto: .tcp, client: IPv4Address(198, 18, 0, 12), clientPort: 40000,
                              virtualAddress: IPv4Address(198, 18, 0, 1), virtualPort: 80,
                              server: IPv4Address(198, 19, 0, 201), serverPort: 80, state: .established,
                              expiresIn: 899, isTemplate: false, packetsIn: 5, packetsOut: 4, bytesIn: 400, bytesOut: 9000)
        let replies: [ControlReply] = [
            .done, .text("-A -t 198.18.0.1:80 -s rr\n"), .text(""), .state(Self.state), .flows([]), .flows([flow, flow]),
            .failure(ControlError(.noSuchService, "No such service (at '198.18.0.1:81')")),
        ]
        for reply in replies {
            #expect(ControlFraming.decodeReply(ControlFraming.encode(reply)) == reply, "\(reply)")
        }
        // A `flows` answer is written from the records' lines: the object JSONEncoder would write.
        let written = try JSONSerialization.jsonObject(with: Data(ControlFraming.encode(.flows([flow, flow]))))
        let encoded = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(ControlReply.flows([flow, flow])))
        #expect(try JSONSerialization.data(withJSONObject: written, options: .sortedKeys)
            == JSONSerialization.data(withJSONObject: encoded, options: .sortedKeys))
    }

    @Test func whatIsNotAnAnswerReadsAsAFailure() {
        #expect(ControlFraming.decodeReply([UInt8]()) == .failure(ControlError(.noAnswer, "masq closed the connection without an answer")))
        guard case .failure(let error) = ControlFraming.decodeReply(Array("OK\n".utf8)) else {
            Issue.record("a text answer decoded")
            return
        }
        #expect(error.code == .badReply)
        guard case .failure(let other) = ControlFraming.decodeReply(Array(#"{"ok":"maybe"}"#.utf8)) else {
            Issue.record("an unknown answer decoded")
            return
        }
        #expect(other.code == .badReply && other.message.contains("unknown answer 'maybe'"))
    }

    @Test func readersTakeTheAnswerTheyExpect() throws {
        #expect(try ControlReply.state(Self.state).requireState() == Self.state)
        #expect(try ControlReply.text("x").requireText() == "x")
        try ControlReply.done.requireDone()
        #expect(try ControlReply.flows([]).requireFlows().isEmpty)
        let refusal = ControlError(.busy, "a trace is already running")
        #expect(throws: refusal) { try ControlReply.failure(refusal).requireDone() }
        #expect(throws: ControlError(.badReply, "masq answered text where the state was expected")) {
            try ControlReply.text("x").requireState()
        }
    }

    /// Rules errors get the code of the errno IPVS answers them with; the message stays the error's own.
    @Test func rulesErrorsMapToCodes() {
        let cases: [(RulesError.Kind, ControlError.Code)] = [
            (.noSuchService, .noSuchService), (.serviceExists, .serviceExists),
            (.noSuchDestination, .noSuchDestination), (.destinationExists, .destinationExists),
            (.noSuchScheduler, .noSuchScheduler), (.invalid, .invalidArgument),
        ]
        for (kind, code) in cases {
            let error = ControlError(RulesError(kind, token: "198.18.0.1:80", message: "words"))
            #expect(error.code == code, "\(kind)")
            #expect(error.message == "words (at '198.18.0.1:80')")
        }
        #expect(ControlError(RulesError(.noSuchService, file: "<stdin>", line: 2, token: "", message: "No such service")).message
            == "<stdin>:2: No such service")
    }

    /// The edits IPVS refuses come out of the parser and the configuration with their kind, not just words.
    @Test func refusedEditsCarryTheirKind() throws {
        var configuration = try RulesFile.parse("-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m\n", file: "rules")
        let cases: [(String, ControlError.Code)] = [
            ("-A -t 198.18.0.1:80 -s rr", .serviceExists),
            ("-E -t 198.18.0.2:80 -s rr", .noSuchService),
            ("-a -t 198.18.0.2:80 -r 198.19.0.201:80 -m", .noSuchService),
            ("-a -t 198.18.0.1:80 -r 198.19.0.201:80 -m", .destinationExists),
            ("-d -t 198.18.0.1:80 -r 198.19.0.202:80", .noSuchDestination),
            ("-A -t 198.18.0.3:80 -s nosuch", .noSuchScheduler),
            ("-A -t 198.18.0.3:80 -s rr -w -1", .invalidArgument),
        ]
        for (words, code) in cases {
            do {
                try configuration.apply(IPVSCommandParser.parse(words.split(separator: " ").map(String.init)))
                Issue.record("\(words): accepted")
            } catch {
                #expect(ControlError(error).code == code, "\(words): \(error)")
            }
        }
    }

    @Test func syncStatusRoundTrips() throws {
        var counters = SyncCounters()
        counters.datagramsReceived = 12
        counters.rejected = ["size_mismatch": 2, "unknown_service": 1]
        counters.applied = ["created": 9]
        counters.lastReceived = 1_790_000_000.5
        let daemon = SyncDaemonStatus(config: SyncDaemonConfig(role: .backup, interface: "sy0", syncID: 7).resolved(interfaceMTU: 1500),
                                      localAddress: "198.19.254.2", counters: counters, masterHeard: true, tableComplete: false)
        let status = SyncStatus(daemons: [daemon], ready: false, notReadyReason: "backup: waiting for the master's table",
                                vrrp: VRRPFollowStatus(fifo: "/run/masq/vrrp.fifo", followed: "GROUP \"G\"", state: "BACKUP"))
        let bytes = ControlFraming.encode(.syncStatus(status))
        #expect(ControlFraming.decodeReply(bytes) == .syncStatus(status))
        #expect(try ControlReply.syncStatus(status).requireSyncStatus() == status)
        #expect(throws: ControlError.self) { try ControlReply.done.requireSyncStatus() }
    }

    @Test func daemonRequestsAreChecked() {
        // A request that decodes is one the daemon can start: the interface name and the group are checked.
        for text in [#"{"command":"startDaemon","daemon":{"role":"master","interface":"","syncid":0}}"#,
                     #"{"command":"startDaemon","daemon":{"role":"master","interface":"eth0","syncid":0,"group":"198.18.0.1"}}"#,
                     #"{"command":"startDaemon","daemon":{"role":"both","interface":"eth0","syncid":0}}"#,
                     #"{"command":"stopDaemon","role":"none"}"#] {
            #expect(throws: ControlError.self, "\(text)") { try ControlFraming.decodeRequest(Array(text.utf8)) }
        }
    }
}

/// `masq sync-status`'s text.
@Suite struct SyncStatusSummaryTests {
    @Test func noDaemon() {
        #expect(SyncStatus(daemons: [], ready: true).summary == "ready: yes\nno sync daemon\n")
    }

    @Test func aWaitingBackup() {
        var c = SyncCounters()
        c.datagramsSent = 2
        c.datagramsReceived = 5
        c.entriesReceived = 40
        c.controlSent = ["resync_request": 2]
        c.controlReceived = ["heartbeat": 3]
        c.applied = ["created": 38]
        c.rejected = ["unknown_service": 1, "no_destination": 1]
        c.lastSent = 1_767_225_600
        c.lastReceived = 1_767_225_601.25
        let backup = SyncDaemonStatus(config: SyncDaemonConfig(role: .backup, interface: "sy0", syncID: 7).resolved(interfaceMTU: 1500),
                                      localAddress: "198.19.254.2", counters: c, masterHeard: true, tableComplete: false)
        let status = SyncStatus(daemons: [backup], ready: false, notReadyReason: "backup: waiting for the master's table",
                                vrrp: VRRPFollowStatus(fifo: "/run/masq/vrrp.fifo", followed: #"GROUP "G""#, state: "BACKUP"))
        #expect(status.summary == """
            ready: no (backup: waiting for the master's table)
            keepalived: /run/masq/vrrp.fifo, following GROUP "G", state BACKUP
            backup sync daemon (mcast=sy0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1), from 198.19.254.2
              master heard: yes, its table: not yet
              sent: 2 datagrams, 0 entries; received: 5 datagrams, 40 entries
              control sent: resync_request 2
              control received: heartbeat 3
              applied: created 38
              rejected: no_destination 1, unknown_service 1
              last datagram sent: 2026-01-01T00:00:00.000Z, received: 2026-01-01T00:00:01.250Z

            """)
    }
}
