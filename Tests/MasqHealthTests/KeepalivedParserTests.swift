import MasqCore
import Testing
@testable import MasqHealth

private func ip(_ s: String) -> IPv4Address { IPv4Address(s)! }

private func parse(_ text: String, file: String = "keepalived.conf",
                   include: (String) throws -> String = { throw RulesError(token: $0, message: "no such file") })
    throws(RulesError) -> KeepalivedConfig {
    try KeepalivedParser.parse(text: text, file: file, include: include)
}

private func failure(_ text: String, file: String = "keepalived.conf",
                     include: (String) throws -> String = { throw RulesError(token: $0, message: "no such file") })
    -> RulesError? {
    do {
        _ = try KeepalivedParser.parse(text: text, file: file, include: include)
        return nil
    } catch {
        return error
    }
}

/// A virtual server with everything keepalived would otherwise warn about set.
private func service(_ body: String, header: String = "198.18.0.1 80") -> String {
    """
    virtual_server \(header) {
        lvs_sched rr
        lvs_method NAT
        protocol TCP
    \(body)
    }
    """
}

@Suite struct KeepalivedDocumentationExampleTests {
    /// keepalived's "Case Study: Healthcheck" (doc/source/case_study_healthcheck.rst), the LVS NAT
    /// example, addresses moved to 198.18.0.0/15 (VIP 198.18.0.15, real servers 198.19.0.x).
    static let caseStudy = """
        # Configuration File for keepalived
        global_defs {
            notification_email {
                admin@domain.com
                0633225522@domain.com
            }
            notification_email_from keepalived@domain.com
            smtp_server 198.18.0.20
            smtp_connect_timeout 30
            lvs_id LVS_MAIN
        }
        virtual_server 198.18.0.15 80 {
            delay_loop 30
            lb_algo wrr
            lb_kind NAT
            persistence_timeout 50
            protocol TCP

            sorry_server 198.19.0.100 80

            real_server 198.19.0.2 80 {
                weight 2
                HTTP_GET {
                    url {
                        path /testurl/test.jsp
                        digest ec90a42b99ea9a2f5ecbe213ac9eba03
                    }
                    url {
                        path /testurl2/test.jsp
                        digest 640205b7b0fc66c1ea91c463fac6334c
                    }
                    connect_timeout 3
                    retry 3
                    delay_before_retry 2
                }
            }
            real_server 198.19.0.3 80 {
                weight 1
                HTTP_GET {
                    url {
                        path /testurl/test.jsp
                        digest 640205b7b0fc66c1ea91c463fac6334c
                    }
                    connect_timeout 3
                    retry 3
                    delay_before_retry 2
                }
            }
        }
        virtual_server 198.18.0.15 443 {
            delay_loop 20
            lb_algo rr
            lb_kind NAT
            persistence_timeout 360
            protocol TCP
            real_server 198.19.0.2 443 {
                weight 1
                TCP_CHECK {
                    connect_timeout 3
                }
            }
            real_server 198.19.0.3 443 {
                weight 1
                TCP_CHECK {
                    connect_timeout 3
                }
            }
        }
        virtual_server 198.18.0.15 25 {
            delay_loop 15
            lb_algo wlc
            lb_kind NAT
            persistence_timeout 50
            protocol TCP
            real_server 198.19.0.4 25 {
                weight 1
                TCP_CHECK {
                    connect_timeout 3
                }
            }
            real_server 198.19.0.5 25 {
                weight 2
                TCP_CHECK {
                    connect_timeout 3
                }
            }
        }
        """

    @Test func caseStudyConfiguration() throws {
        let config = try parse(Self.caseStudy)
        let vip = ip("198.18.0.15")
        #expect(config.configuration == Configuration(services: [
            ServiceSpec(key: ServiceKey(proto: .tcp, address: vip, port: 80), scheduler: "wrr", persistence: 50,
                        realServers: [RealServerSpec(address: ip("198.19.0.2"), port: 80, weight: 2),
                                      RealServerSpec(address: ip("198.19.0.3"), port: 80, weight: 1)]),
            ServiceSpec(key: ServiceKey(proto: .tcp, address: vip, port: 443), scheduler: "rr", persistence: 360,
                        realServers: [RealServerSpec(address: ip("198.19.0.2"), port: 443, weight: 1),
                                      RealServerSpec(address: ip("198.19.0.3"), port: 443, weight: 1)]),
            ServiceSpec(key: ServiceKey(proto: .tcp, address: vip, port: 25), scheduler: "wlc", persistence: 50,
                        realServers: [RealServerSpec(address: ip("198.19.0.4"), port: 25, weight: 1),
                                      RealServerSpec(address: ip("198.19.0.5"), port: 25, weight: 2)]),
        ]))
        #expect(config.warnings == [RulesError(file: "keepalived.conf", line: 2, token: "global_defs",
                                               message: "global_defs is not supported by masq: ignored")])
    }

    @Test func caseStudyHealthChecks() throws {
        let config = try parse(Self.caseStudy)
        let vip = ip("198.18.0.15")
        func http(_ urls: [(String, String)]) -> HealthCheck {
            HealthCheck(kind: .http(HTTPCheck(urls: urls.map { HTTPCheck.URLCheck(path: $0.0, digest: $0.1) })),
                        connectTimeout: 3, retry: 3, delayBeforeRetry: 2, delayLoop: 30)
        }
        func tcp(_ delayLoop: Double) -> HealthCheck {
            HealthCheck(kind: .tcp, connectTimeout: 3, retry: 1, delayBeforeRetry: 1, delayLoop: delayLoop)
        }
        #expect(config.virtualServers == [
            VirtualServerHealth(
                key: ServiceKey(proto: .tcp, address: vip, port: 80), delayLoop: 30,
                sorryServer: RealServerSpec(address: ip("198.19.0.100"), port: 80, weight: 1),
                realServers: [
                    RealServerHealth(address: ip("198.19.0.2"), port: 80, weight: 2, checks: [http([
                        ("/testurl/test.jsp", "ec90a42b99ea9a2f5ecbe213ac9eba03"),
                        ("/testurl2/test.jsp", "640205b7b0fc66c1ea91c463fac6334c"),
                    ])]),
                    RealServerHealth(address: ip("198.19.0.3"), port: 80, weight: 1, checks: [http([
                        ("/testurl/test.jsp", "640205b7b0fc66c1ea91c463fac6334c"),
                    ])]),
                ]),
            VirtualServerHealth(
                key: ServiceKey(proto: .tcp, address: vip, port: 443), delayLoop: 20,
                realServers: [RealServerHealth(address: ip("198.19.0.2"), port: 443, checks: [tcp(20)]),
                              RealServerHealth(address: ip("198.19.0.3"), port: 443, checks: [tcp(20)])]),
            VirtualServerHealth(
                key: ServiceKey(proto: .tcp, address: vip, port: 25), delayLoop: 15,
                realServers: [RealServerHealth(address: ip("198.19.0.4"), port: 25, weight: 1, checks: [tcp(15)]),
                              RealServerHealth(address: ip("198.19.0.5"), port: 25, weight: 2, checks: [tcp(15)])]),
        ])
        // The url checks accept keepalived's default status codes, 2xx.
        guard case .http(let check) = config.virtualServers[0].realServers[0].checks[0].kind else {
            Issue.record("HTTP_GET expected")
            return
        }
        #expect(check.urls.allSatisfy { $0.statusCodes == nil && $0.accepts(status: 200) && $0.accepts(status: 299) })
        #expect(!check.urls[0].accepts(status: 301) && check.version == .http10)
    }

    /// keepalived's doc/samples/keepalived.conf.sample (`!` comments, a vrrp_instance, a sorry server),
    /// addresses moved to 198.18.0.0/15.
    @Test func sampleConfiguration() throws {
        let config = try parse("""
            ! Configuration File for keepalived

            global_defs {
               notification_email {
                 acassen
               }
               notification_email_from Alexandre.Cassen@firewall.loc
               smtp_server 198.18.200.1
               smtp_connect_timeout 30
               router_id LVS_DEVEL
            }

            vrrp_instance VI_1 {
                interface eth0
                virtual_router_id 50
                nopreempt
                priority 100
                advert_int 1
                virtual_ipaddress {
                    198.18.200.11
                    198.18.200.12
                    198.18.200.13
                }
            }

            virtual_server 198.18.10.2 1358 {
                delay_loop 6
                lb_algo rr
                lb_kind NAT
                persistence_timeout 50
                protocol TCP

                sorry_server 198.19.200.200 1358

                real_server 198.19.200.2 1358 {
                    weight 1
                    inhibit_on_failure        ! set weight to 0 instead of removing service
                    HTTP_GET {
                        url {
                          path /testurl3/test.jsp
                          digest 640205b7b0fc66c1ea91c463fac6334d
                        }
                        connect_timeout 3
                        retry 3
                        delay_before_retry 3
                    }
                }
            }
            """)
        let key = ServiceKey(proto: .tcp, address: ip("198.18.10.2"), port: 1358)
        #expect(config.configuration.services == [ServiceSpec(
            key: key, scheduler: "rr", persistence: 50,
            realServers: [RealServerSpec(address: ip("198.19.200.2"), port: 1358, weight: 1)])])
        #expect(config.virtualServers == [VirtualServerHealth(
            key: key, delayLoop: 6, sorryServer: RealServerSpec(address: ip("198.19.200.200"), port: 1358, weight: 1),
            realServers: [RealServerHealth(
                address: ip("198.19.200.2"), port: 1358, inhibitOnFailure: true,
                checks: [HealthCheck(kind: .http(HTTPCheck(urls: [HTTPCheck.URLCheck(
                    path: "/testurl3/test.jsp", digest: "640205b7b0fc66c1ea91c463fac6334d")])),
                    connectTimeout: 3, retry: 3, delayBeforeRetry: 3, delayLoop: 6)])])])
        #expect(config.warnings.map { "\($0.line) \($0.token)" } == ["3 global_defs", "13 vrrp_instance"])
    }
}

@Suite struct KeepalivedDefaultsTests {
    /// Nothing set: keepalived's defaults (check_data.c, check_api.c, check_http.c), and its warnings
    /// for the protocol (UDP), scheduler (wlc) and forwarding method (NAT) it picks itself.
    @Test func defaults() throws {
        let config = try parse("""
            virtual_server 198.18.0.1 53 {
                real_server 198.19.0.1 53 {
                    TCP_CHECK {
                    }
                    HTTP_GET {
                        url {
                            path /
                        }
                    }
                }
            }
            """)
        let key = ServiceKey(proto: .udp, address: ip("198.18.0.1"), port: 53)
        #expect(config.configuration.services == [ServiceSpec(
            key: key, scheduler: "wlc", realServers: [RealServerSpec(address: ip("198.19.0.1"), port: 53, weight: 1)])])
        let vs = try #require(config.virtualServers.first)
        #expect(vs.delayLoop == 60 && vs.quorum == 1 && vs.hysteresis == 0 && vs.sorryServer == nil)
        #expect(!vs.alpha && !vs.omega && !vs.haSuspend && !vs.sorryServerInhibit)
        let rs = try #require(vs.realServers.first)
        #expect(rs.weight == 1 && !rs.inhibitOnFailure && !rs.alpha && rs.notifyUp == nil && rs.notifyDown == nil)
        let tcp = rs.checks[0], http = rs.checks[1]
        #expect(tcp == HealthCheck(kind: .tcp, connectTimeout: 5, retry: 1, delayBeforeRetry: 1, warmup: nil, delayLoop: 60))
        #expect(tcp.effectiveWarmup == 60)
        #expect(http.connectTimeout == 5 && http.retry == 1 && http.delayBeforeRetry == 3 && http.delayLoop == 60)
        #expect(http.connectPort == nil && http.connectIP == nil && http.bindTo == nil && http.warmup == nil)
        #expect(config.warnings.map(\.message) == [
            "virtual server UDP 198.18.0.1:53: no protocol set, keepalived defaults to UDP",
            "virtual server UDP 198.18.0.1:53: no lvs_sched set, keepalived uses wlc",
            "virtual server UDP 198.18.0.1:53: no lvs_method set, keepalived uses NAT",
        ])
        #expect(config.warnings.allSatisfy { $0.file == "keepalived.conf" && $0.line == 1 && $0.token == "virtual_server" })
    }

    @Test func constantsMatchKeepalived() {
        #expect(KeepalivedDefaults.delayLoop == 60 && KeepalivedDefaults.connectTimeout == 5)
        #expect(KeepalivedDefaults.retry == 1 && KeepalivedDefaults.tcpDelayBeforeRetry == 1)
        #expect(KeepalivedDefaults.httpDelayBeforeRetry == 3 && KeepalivedDefaults.scheduler == "wlc")
        #expect(KeepalivedDefaults.httpStatusCodes == 200...299)
    }

    /// checker ← real_server ← virtual_server ← default, keyword by keyword.
    @Test func inheritance() throws {
        let config = try parse(service("""
                delay_loop 10
                retry 4
                delay_before_retry 5
                warmup 6
                connect_timeout 7
                weight 3
                inhibit_on_failure
                alpha
                virtualhost vs.example
                real_server 198.19.0.1 80 {
                    TCP_CHECK {
                    }
                }
                real_server 198.19.0.2 80 {
                    weight 0
                    inhibit_on_failure false
                    alpha no
                    delay_loop 11
                    retry 2
                    delay_before_retry 0.5
                    warmup 0
                    connect_timeout 1.25
                    virtualhost rs.example
                    TCP_CHECK {
                        connect_port 8080
                        connect_ip 198.19.1.2
                        bindto 198.18.0.254
                    }
                    HTTP_GET {
                        delay_loop 12
                        retry 0
                        delay_before_retry 13
                        warmup 14
                        connect_timeout 15
                        alpha yes
                        url {
                            path /a
                        }
                    }
                }
            """))
        let vs = try #require(config.virtualServers.first)
        #expect(vs.delayLoop == 10 && vs.alpha && vs.virtualhost == "vs.example")
        let (first, second) = (vs.realServers[0], vs.realServers[1])
        #expect(first.weight == 3 && first.inhibitOnFailure && first.alpha && first.virtualhost == nil)
        #expect(first.checks == [HealthCheck(kind: .tcp, connectTimeout: 7, retry: 4, delayBeforeRetry: 5, warmup: 6,
                                             delayLoop: 10, alpha: true)])
        #expect(second.weight == 0 && !second.inhibitOnFailure && !second.alpha && second.virtualhost == "rs.example")
        #expect(second.checks[0] == HealthCheck(
            kind: .tcp, connectIP: .v4(ip("198.19.1.2")), connectPort: 8080, bindTo: .v4(ip("198.18.0.254")), connectTimeout: 1.25,
            retry: 2, delayBeforeRetry: 0.5, warmup: 0, delayLoop: 11, alpha: false))
        #expect(second.checks[1] == HealthCheck(
            kind: .http(HTTPCheck(urls: [HTTPCheck.URLCheck(path: "/a", virtualhost: "rs.example")])),
            connectTimeout: 15, retry: 0, delayBeforeRetry: 13, warmup: 14, delayLoop: 12, alpha: true))
        #expect(config.configuration.services[0].realServers.map(\.weight) == [3, 0])
    }

    /// The HTTP Host: the url's, else HTTP_GET's, else the real server's, else the virtual server's.
    @Test func virtualhostPrecedence() throws {
        let config = try parse(service("""
                virtualhost vs.example
                real_server 198.19.0.1 80 {
                    HTTP_GET {
                        virtualhost check.example
                        url {
                            path /own
                            virtualhost url.example
                        }
                        url {
                            path /check
                        }
                    }
                    HTTP_GET {
                        url {
                            path /vs
                        }
                    }
                }
            """))
        let hosts = config.virtualServers[0].realServers[0].checks.flatMap { check -> [String?] in
            guard case .http(let h) = check.kind else { return [] }
            return h.urls.map(\.virtualhost)
        }
        #expect(hosts == ["url.example", "check.example", "vs.example"])
    }

    @Test func timersTakeDecimals() throws {
        let config = try parse(service("""
                delay_loop 0.5
                real_server 198.19.0.1 80 {
                    TCP_CHECK {
                        connect_timeout 4.35
                        delay_before_retry .25
                        warmup 2.
                    }
                }
            """))
        let check = config.virtualServers[0].realServers[0].checks[0]
        #expect(check.delayLoop == 0.5 && check.connectTimeout == 4.35 && check.delayBeforeRetry == 0.25 && check.warmup == 2)
    }

    /// keepalived's NAT rule: a real server (or sorry server) without a port takes the service's.
    @Test func portsDefaultToTheService() throws {
        let config = try parse(service("""
                sorry_server 198.19.0.9
                real_server 198.19.0.1 {
                }
                real_server 198.19.0.2 0 {
                }
            """, header: "198.18.0.1 8080"))
        #expect(config.configuration.services[0].realServers.map(\.port) == [8080, 8080])
        #expect(config.virtualServers[0].sorryServer == RealServerSpec(address: ip("198.19.0.9"), port: 8080, weight: 1))
    }

    @Test func quorumScriptsAndSorryServer() throws {
        let config = try parse(service("""
                quorum 2
                hysteresis 1
                quorum_up "/usr/local/bin/quorum.sh up"
                quorum_down /usr/local/bin/quorum-down.sh
                sorry_server 198.19.0.9 80
                sorry_server_inhibit
                sorry_server_lvs_method NAT
                omega
                real_server 198.19.0.1 80 {
                    weight 2
                    notify_up "/usr/local/bin/notify.sh up 'web 1'"
                    notify_down '/usr/local/bin/notify.sh down "web 1"'
                }
            """))
        let vs = config.virtualServers[0]
        #expect(vs.quorum == 2 && vs.hysteresis == 1 && vs.omega && vs.sorryServerInhibit)
        #expect(vs.quorumUp == "/usr/local/bin/quorum.sh up" && vs.quorumDown == "/usr/local/bin/quorum-down.sh")
        #expect(vs.realServers[0].notifyUp == "/usr/local/bin/notify.sh up 'web 1'")
        #expect(vs.realServers[0].notifyDown == "/usr/local/bin/notify.sh down \"web 1\"")
        #expect(KeepalivedParser.scriptArguments(vs.realServers[0].notifyUp!) == ["/usr/local/bin/notify.sh", "up", "web 1"])
        #expect(KeepalivedParser.scriptArguments(vs.realServers[0].notifyDown!) == ["/usr/local/bin/notify.sh", "down", "web 1"])
        #expect(config.warnings.isEmpty)
    }

    @Test(arguments: ["rr", "wrr", "lc", "wlc", "sed", "nq", "sh", "dh", "mh"])
    func schedulers(_ name: String) throws {
        for keyword in ["lvs_sched", "lb_algo"] {
            let config = try parse("""
                virtual_server 198.18.0.1 80 {
                    \(keyword) \(name)
                    lb_kind NAT
                    protocol TCP
                    real_server 198.19.0.1 80 {
                    }
                }
                """)
            #expect(config.configuration.services[0].scheduler == name)
            #expect(config.warnings.isEmpty)
        }
    }

    @Test func schedulerFlags() throws {
        func flags(_ scheduler: String, _ lines: String) throws -> (SchedulerFlags, [String]) {
            let config = try parse("""
                virtual_server 198.18.0.1 80 {
                    lvs_sched \(scheduler)
                    lvs_method NAT
                    protocol TCP
                \(lines)
                    real_server 198.19.0.1 80 {
                    }
                }
                """)
            return (config.configuration.services[0].schedulerFlags, config.warnings.map(\.message))
        }
        let sh = try flags("sh", "sh-port\nsh-fallback")
        #expect(sh.0 == [.port, .fallback] && sh.1.isEmpty)
        let mh = try flags("mh", "mh-fallback")
        #expect(mh.0 == [.fallback] && mh.1.isEmpty)
        let generic = try flags("wlc", "flag-1\nflag-2")
        #expect(generic.0 == [.fallback, .port] && generic.1.isEmpty)
        let misplaced = try flags("rr", "sh-port")
        #expect(misplaced.0 == [] && misplaced.1 == ["sh-port only applies to the sh scheduler: ignored"])
    }

    @Test func persistence() throws {
        func spec(_ lines: String, header: String = "198.18.0.1 80") throws -> ServiceSpec {
            try parse(service(lines + "\n    real_server 198.19.0.1 80 {\n    }", header: header)).configuration.services[0]
        }
        #expect(try spec("persistence_timeout").persistence == 360)
        #expect(try spec("persistence_timeout 600").persistence == 600)
        let masked = try spec("persistence_granularity 255.255.255.0")
        #expect(masked.persistence == 360 && masked.netmask == ip("255.255.255.0"))
        #expect(try spec("").persistence == nil)
        let udp = try parse("""
            virtual_server 198.18.0.1 53 {
                protocol udp
                lvs_sched rr
                lvs_method NAT
                real_server 198.19.0.1 53 {
                }
            }
            """)
        #expect(udp.configuration.services[0].key.proto == .udp)
    }

    @Test func httpCheckDetails() throws {
        let config = try parse(service("""
                real_server 198.19.0.1 80 {
                    HTTP_GET {
                        http_protocol 1.1
                        url {
                            path /health
                            status_code 200 301-302
                            status_code 418
                            digest 640205B7B0FC66C1EA91C463FAC6334D
                        }
                    }
                }
            """))
        guard case .http(let http) = config.virtualServers[0].realServers[0].checks[0].kind else {
            Issue.record("HTTP_GET expected")
            return
        }
        #expect(http.version == .http11)
        let url = http.urls[0]
        #expect(url.statusCodes == [200...200, 301...302, 418...418])
        #expect(url.digest == "640205b7b0fc66c1ea91c463fac6334d")
        #expect(url.accepts(status: 301) && url.accepts(status: 418) && !url.accepts(status: 204))
    }
}

@Suite struct KeepalivedLexerTests {
    /// `#` and `!` comments (also after values), escaped `\#`, comment characters inside double
    /// quotes, blank lines, CRLF, tabs, braces on their own lines or sharing one.
    @Test func commentsAndLayout() throws {
        let text = [
            "# a comment",
            "! another",
            "",
            "virtual_server 198.18.0.1 80   # trailing",
            "{",
            "\tlvs_sched rr ! why not",
            "\tlvs_method NAT",
            "\tprotocol TCP",
            "\treal_server 198.19.0.1 80 { weight 2 }",
            "\treal_server 198.19.0.2 80 {",
            "\t\tnotify_up \"/bin/echo #1 !2\" # a comment after a quoted script",
            "\t\tnotify_down /bin/echo\\#3",
            "\t}",
            "}",
        ].joined(separator: "\r\n")
        let config = try parse(text)
        #expect(config.warnings.isEmpty)
        let vs = config.virtualServers[0]
        #expect(vs.realServers.map(\.weight) == [2, 1])
        #expect(vs.realServers[1].notifyUp == "/bin/echo #1 !2" && vs.realServers[1].notifyDown == "/bin/echo#3")
    }

    @Test func quotingAndEscapes() throws {
        let tokens = try KeepalivedLexer.lexLine(Array(#"a "b c" 'd "e"' f\ g "h\"i" \x41\101\tZ "{" '}' {x}"#.utf8),
                                                 file: "f", line: 1, lineID: 1)
        #expect(tokens.map(\.text) == ["a", "b c", "d \"e\"", "f g", "h\"i", "AA\tZ", "{", "}", "{", "x", "}"])
        #expect(tokens.map(\.kind) == [.word, .word, .word, .word, .word, .word, .word, .word, .open, .word, .close])
        #expect(KeepalivedParser.scriptArguments(#"/bin/sh -c 'echo "$1" >> /tmp/x' -- "a b""#)
            == ["/bin/sh", "-c", "echo \"$1\" >> /tmp/x", "--", "a b"])
        #expect(KeepalivedParser.scriptArguments("/bin/x 'open") == nil)
    }

    @Test func pathNormalization() {
        #expect(KeepalivedLexer.resolve("conf.d/a.conf", relativeTo: "/etc/keepalived/keepalived.conf")
            == "/etc/keepalived/conf.d/a.conf")
        #expect(KeepalivedLexer.resolve("/abs/a.conf", relativeTo: "/etc/keepalived/keepalived.conf") == "/abs/a.conf")
        #expect(KeepalivedLexer.resolve("a.conf", relativeTo: "keepalived.conf") == "a.conf")
        #expect(KeepalivedLexer.normalize("/etc/./keepalived//conf.d/../a.conf") == "/etc/keepalived/a.conf")
        #expect(KeepalivedLexer.normalize("x/../../y") == "../y")
    }
}

@Suite struct KeepalivedIncludeTests {
    let files: [String: String] = [
        "/etc/keepalived/conf.d/web.conf": """
            virtual_server 198.18.0.1 80 {
                lvs_sched rr
                lvs_method NAT
                protocol TCP
                include ../servers/web.inc
            }
            """,
        "/etc/keepalived/servers/web.inc": """
            real_server 198.19.0.1 80 {
                TCP_CHECK {
                }
            }
            real_server 198.19.0.2 80 {
            }
            """,
        "/etc/keepalived/conf.d/dns.conf": """
            virtual_server 198.18.0.1 53 {
                lvs_sched rr
                lvs_method NAT
                protocol UDP
                real_server 198.19.0.3 53 {
                }
            }
            """,
        "/etc/keepalived/bad.conf": """
            virtual_server 198.18.0.1 80 {

                bogus 1
            }
            """,
        "/etc/keepalived/loop-a.conf": "include loop-b.conf\n",
        "/etc/keepalived/loop-b.conf": "# b\ninclude ./loop-a.conf\n",
    ]

    /// The file system resolves `..`; this fake does it lexically.
    func read(_ path: String) throws -> String {
        guard let text = files[KeepalivedLexer.normalize(path)] else { throw RulesError(token: path, message: "no such file") }
        return text
    }

    /// Relative to the including file's directory, nested, and inside a block.
    @Test func nestedIncludes() throws {
        var asked: [String] = []
        let config = try KeepalivedParser.parse(
            text: "global_defs {\n}\ninclude conf.d/web.conf\n", file: "/etc/keepalived/keepalived.conf") { path in
            asked.append(path)
            return try read(path)
        }
        #expect(asked == ["/etc/keepalived/conf.d/web.conf", "/etc/keepalived/conf.d/../servers/web.inc"])
        #expect(config.configuration.services[0].realServers.map(\.address) == [.v4(ip("198.19.0.1")), .v4(ip("198.19.0.2"))])
        #expect(config.virtualServers[0].realServers[0].checks == [HealthCheck(kind: .tcp)])
        #expect(config.warnings.map { "\($0.file):\($0.line)" } == ["/etc/keepalived/keepalived.conf:1"])
    }

    @Test func globPatterns() throws {
        var patterns: [String] = []
        let config = try KeepalivedParser.parse(
            text: "include conf.d/*.conf\ninclude none.d/*.conf\n", file: "/etc/keepalived/keepalived.conf",
            glob: { pattern in
                patterns.append(pattern)
                if pattern == "/etc/keepalived/conf.d/*.conf" {
                    return ["/etc/keepalived/conf.d/dns.conf", "/etc/keepalived/conf.d/web.conf"]
                }
                return KeepalivedLexer.isPattern(pattern) ? [] : [pattern]
            }, include: read)
        #expect(patterns == ["/etc/keepalived/conf.d/*.conf", "/etc/keepalived/conf.d/../servers/web.inc",
                             "/etc/keepalived/none.d/*.conf"])
        #expect(config.configuration.services.map(\.key.port) == [53, 80])
        #expect(config.warnings == [RulesError(
            file: "/etc/keepalived/keepalived.conf", line: 2, token: "none.d/*.conf",
            message: "no file matches include pattern /etc/keepalived/none.d/*.conf: nothing included")])
    }

    @Test func errorsNameTheIncludedFile() {
        let error = failure("include bad.conf\n", file: "/etc/keepalived/keepalived.conf", include: read)
        #expect(error == RulesError(file: "/etc/keepalived/bad.conf", line: 3, token: "bogus",
                                    message: "unknown keyword bogus in virtual_server"))
    }

    @Test func missingFilesAndLoops() {
        let missing = failure("\ninclude nope.conf\n", file: "/etc/keepalived/keepalived.conf", include: read)
        #expect(missing == RulesError(file: "/etc/keepalived/keepalived.conf", line: 2, token: "nope.conf",
                                      message: "cannot read included file /etc/keepalived/nope.conf: no such file"))
        let loop = failure("include loop-a.conf\n", file: "/etc/keepalived/keepalived.conf", include: read)
        #expect(loop?.file == "/etc/keepalived/loop-b.conf" && loop?.line == 2 && loop?.token == "./loop-a.conf")
        #expect(loop?.message == "include loop: /etc/keepalived/loop-a.conf -> /etc/keepalived/loop-b.conf -> /etc/keepalived/loop-a.conf")
        let itself = failure("include keepalived.conf\n", file: "/etc/keepalived/keepalived.conf") { _ in "include keepalived.conf\n" }
        #expect(itself?.message.hasPrefix("include loop") == true)
        var asked: [String] = []
        _ = try? parse("include conf.d/{a,b}.conf\n", file: "/etc/keepalived/keepalived.conf") { path in
            asked.append(path)
            return ""
        }
        #expect(asked == ["/etc/keepalived/conf.d/{a,b}.conf"])
        let arity = failure("include a.conf b.conf\n")
        #expect(arity == RulesError(file: "keepalived.conf", line: 1, token: "include",
                                    message: "include takes one file name or glob pattern"))
    }
}

/// An invalid input and the error it must give.
struct ErrorCase: Sendable, CustomTestStringConvertible {
    var text: String
    var line: Int
    var token: String
    var message: String
    var testDescription: String { "\(token): \(message)" }

    init(_ text: String, _ line: Int, _ token: String, _ message: String) {
        self.text = text
        self.line = line
        self.token = token
        self.message = message
    }

    /// The body inside a complete virtual server (starting on line 5).
    static func inService(_ body: String, _ line: Int, _ token: String, _ message: String) -> ErrorCase {
        ErrorCase(service(body), line, token, message)
    }

    /// The body inside a real server (starting on line 6).
    static func inServer(_ body: String, _ line: Int, _ token: String, _ message: String) -> ErrorCase {
        ErrorCase(service("real_server 198.19.0.1 80 {\n\(body)\n}"), line, token, message)
    }
}

@Suite struct KeepalivedErrorTests {
    static let cases: [ErrorCase] = [
        // Unknown keywords, at every level.
        ErrorCase("bogus {\n}", 1, "bogus", "unknown keyword bogus"),
        .inService("frobnicate 1", 5, "frobnicate", "unknown keyword frobnicate in virtual_server"),
        .inServer("frobnicate", 6, "frobnicate", "unknown keyword frobnicate in real_server"),
        .inServer("TCP_CHECK {\n url {\n }\n}", 7, "url", "unknown keyword url in TCP_CHECK"),
        .inServer("HTTP_GET {\n frobnicate 1\n}", 7, "frobnicate", "unknown keyword frobnicate in HTTP_GET"),
        .inServer("HTTP_GET {\n url {\n path /\n frobnicate 1\n }\n}", 9, "frobnicate", "unknown keyword frobnicate in url"),
        .inServer("HTTP_GET {\n url {\n path /\n regex ok\n }\n}", 9, "regex",
                  "HTTP_GET regex matching is not supported by masq (use digest or status_code)"),
        .inServer("TCP_CHECK {\n bind_port 999\n}", 7, "bind_port",
                  "bind_port is not supported by masq (checks use an ephemeral source port)"),
        ErrorCase("real_server 198.19.0.1 80 {\n}", 1, "real_server", "real_server outside a virtual_server"),
        // Forwarding methods.
        ErrorCase("virtual_server 198.18.0.1 80 {\n  lb_kind DR\n}", 2, "DR", "masq forwards in NAT mode only: lb_kind DR is not supported"),
        ErrorCase("virtual_server 198.18.0.1 80 {\n  lvs_method TUN\n}", 2, "TUN", "masq forwards in NAT mode only: lvs_method TUN is not supported"),
        .inServer("lvs_method DR", 6, "DR", "masq forwards in NAT mode only: lvs_method DR is not supported"),
        .inService("lb_kind MASQ", 5, "MASQ", "unknown lb_kind (NAT expected)"),
        // Virtual server identity.
        ErrorCase("virtual_server group {\n}", 1, "group", "virtual_server group needs a group name"),
        ErrorCase("virtual_server fwmark {\n}", 1, "fwmark", "virtual_server fwmark needs a mark"),
        ErrorCase("virtual_server fwmark 0 {\n}", 1, "0", "invalid fwmark (a number in 1-4294967295 expected)"),
        ErrorCase("virtual_server 2001:2::1::2 80 {\n}", 1, "2001:2::1::2", "invalid virtual server address"),
        ErrorCase("virtual_server 198.18.0.300 80 {\n}", 1, "198.18.0.300", "invalid virtual server address"),
        ErrorCase("virtual_server 198.18.0.1 http {\n}", 1, "http", "invalid virtual server port"),
        ErrorCase(service("real_server 198.19.0.1 80 {\n}") + "\n" + service("real_server 198.19.0.1 80 {\n}"), 8,
                  "virtual_server", "virtual server TCP 198.18.0.1:80 is already defined at keepalived.conf:1"),
        // Values.
        .inService("lb_algo fastest", 5, "fastest",
                   "invalid lb_algo (masq has \(Schedulers.all.map { $0.name }.joined(separator: ", ")))"),
        .inService("protocol SCTP", 5, "SCTP", "SCTP services are not supported by masq (TCP or UDP)"),
        .inService("protocol ICMP", 5, "ICMP", "unknown protocol (TCP or UDP expected)"),
        .inService("delay_loop soon", 5, "soon", "invalid delay_loop (seconds expected)"),
        .inService("delay_loop 0", 5, "0", "delay_loop must be more than 0"),
        .inService("delay_loop", 5, "delay_loop", "delay_loop needs a value"),
        .inService("persistence_timeout 0", 5, "0", "invalid persistence_timeout (seconds, more than 0, expected)"),
        .inService("quorum 0", 5, "0", "invalid quorum (a number in 1-4294967295 expected)"),
        .inService("ops 1", 5, "1", "extra word after ops: keepalived reads one keyword per line (and would ignore it)"),
        .inService("ip_family inet6", 5, "inet6", "ip_family inet6 conflicts with the virtual server's address 198.18.0.1"),
        .inService("ip_family inet4", 5, "inet4", "unknown ip_family (inet or inet6 expected)"),
        .inServer("weight 70000", 6, "70000", "invalid weight (a number in 0-65535 expected)"),
        .inServer("inhibit_on_failure maybe", 6, "maybe", "invalid inhibit_on_failure (true/on/yes or false/off/no expected)"),
        .inServer("uthreshold -1", 6, "-1", "invalid uthreshold (a number in 0-4294967295 expected)"),
        .inServer("TCP_CHECK {\n connect_port 0\n}", 7, "0", "invalid connect port"),
        .inServer("TCP_CHECK {\n bindto 2001:2::1\n}", 6, "TCP_CHECK",
                  "TCP_CHECK: bindto 2001:2::1 is not of the family of the address it connects to, 198.19.0.1"),
        .inServer("TCP_CHECK {\n bindto 2001:2::1::\n}", 7, "2001:2::1::", "invalid bindto address"),
        .inServer("HTTP_GET {\n url {\n path /\n digest 1234\n }\n}", 9, "1234",
                  "invalid digest (the MD5 of the body, 32 hexadecimal digits, expected)"),
        .inServer("HTTP_GET {\n url {\n path /\n status_code 700\n }\n}", 9, "700",
                  "invalid status_code (100-599, or a range like 200-299, expected)"),
        .inServer("HTTP_GET {\n url {\n path /\n status_code 300-200\n }\n}", 9, "300-200",
                  "invalid status_code (100-599, or a range like 200-299, expected)"),
        .inServer("HTTP_GET {\n connect_timeout 3\n}", 6, "HTTP_GET", "HTTP_GET needs at least one url { path ... }"),
        .inServer("HTTP_GET {\n url {\n digest 640205b7b0fc66c1ea91c463fac6334d\n }\n}", 7, "url", "url needs a path"),
        .inServer("HTTP_GET {\n http_protocol 2\n url {\n path /\n }\n}", 7, "2", "invalid http_protocol (1.0, 1.0C or 1.1 expected)"),
        // One keyword per line, as keepalived reads them.
        .inServer("HTTP_GET {\n url { path /x digest 640205b7b0fc66c1ea91c463fac6334d }\n}", 7, "digest",
                  "extra word after path: keepalived reads one keyword per line (and would ignore it)"),
        .inServer("weight 1 inhibit_on_failure", 6, "inhibit_on_failure",
                  "extra word after weight: keepalived reads one keyword per line (and would ignore it)"),
        // Scripts.
        .inServer("notify_up /bin/notify.sh nobody", 6, "nobody",
                  "running notify_up as another user is not supported by masq (the script runs as masq's user)"),
        .inServer("notify_down \"\"", 6, "", "invalid notify_down script command line"),
        .inServer("notify_down \"/bin/x 'unbalanced\"", 6, "/bin/x 'unbalanced", "invalid notify_down script command line"),
        // Blocks.
        ErrorCase("virtual_server 198.18.0.1 80\n  lvs_sched rr\n", 1, "virtual_server", "'{' expected after virtual_server"),
        ErrorCase("virtual_server 198.18.0.1 80 {\n  lvs_sched rr\n", 1, "virtual_server",
                  "the virtual_server block is not closed: '}' missing before the end of the file"),
        ErrorCase("global_defs {\n  router_id x\n", 1, "global_defs",
                  "the global_defs block is not closed: '}' missing before the end of the file"),
        ErrorCase("}\n", 1, "}", "unexpected '}': no block is open"),
        ErrorCase("{\n}\n", 1, "{", "unexpected '{' (no keyword opens this block)"),
        .inService("lvs_sched rr {\n}", 5, "{", "unexpected '{' (the keyword before it takes no block)"),
        // The lexer.
        .inServer("notify_up \"/bin/x", 6, "notify_up \"/bin/x", "missing terminating \""),
        .inServer("notify_up '/bin/x", 6, "notify_up '/bin/x", "missing terminating '"),
        .inServer("weight 1 \\", 6, "weight 1 \\", "a '\\' at the end of a line (line continuation) is not supported"),
        ErrorCase("$PORT=80\n", 1, "$PORT=80", "keepalived parameter definitions ($NAME=...) are not supported by masq"),
        ErrorCase("@lb1 global_defs {\n}\n", 1, "@lb1 global_defs {", "keepalived conditional lines (@instance ...) are not supported by masq"),
        ErrorCase("~SEQ(i, 1, 3) real_server 198.19.0.$i 80\n", 1, "~SEQ(i, 1, 3) real_server 198.19.0.$i 80",
                  "keepalived ~SEQ lines are not supported by masq"),
    ]

    @Test(arguments: cases) func rejected(_ c: ErrorCase) {
        let error = failure(c.text, file: "keepalived.conf")
        #expect(error == RulesError(file: "keepalived.conf", line: c.line, token: c.token, message: c.message))
    }

    /// A VRRP-only keepalived.conf is keepalived's other half: masq refuses it, naming the file, rather
    /// than serving zero services; so with virtual_server blocks that all had to be ignored.
    @Test func noVirtualServerIsAnError() {
        let vrrp = """
            global_defs {
                router_id LVS_DEVEL
            }
            vrrp_instance VI_1 {
                state MASTER
                interface eth0
                virtual_router_id 51
                priority 100
                virtual_ipaddress {
                    198.18.0.15
                }
            }
            """
        let error = failure(vrrp, file: "/etc/keepalived/keepalived.conf")
        #expect(error?.description == "/etc/keepalived/keepalived.conf: no virtual_server block: masq needs keepalived's LVS part (virtual_server ...); VRRP-only files are for keepalived itself")
        #expect(failure("", file: "empty.conf")?.message.hasPrefix("no virtual_server block") == true)
        #expect(failure(service("") + "\n" + service("", header: "198.18.0.2 80"))?.description
            == "keepalived.conf: no virtual server to run: all its 2 virtual_server blocks have no real servers (keepalived ignores such blocks)")
    }

    @Test func errorsPrintFileLineAndToken() {
        let error = failure(service("lb_kind DR"))
        #expect(error?.description == "keepalived.conf:5: masq forwards in NAT mode only: lb_kind DR is not supported (at 'DR')")
    }
}

@Suite struct KeepalivedWarningTests {
    @Test(arguments: ["global_defs", "vrrp_script", "vrrp_instance", "vrrp_sync_group", "static_ipaddress",
                      "static_routes"])
    func skippedSections(_ name: String) throws {
        let config = try parse("""
            \(name) NAME {
                nested {
                    anything goes { }
                }
                # even } in a comment
            }
            """ + "\n" + service("real_server 198.19.0.1 80 {\n}"))
        #expect(config.warnings == [RulesError(file: "keepalived.conf", line: 1, token: name,
                                               message: "\(name) is not supported by masq: ignored")])
        #expect(config.configuration.services.count == 1)
    }

    @Test(arguments: ["BFD_CHECK", "FILE_CHECK"])  // the other checkers run (Checkers/)
    func skippedCheckers(_ name: String) throws {
        let config = try parse(service("""
                real_server 198.19.0.1 80 {
                    \(name) {
                        misc_path "/bin/check {x}"
                        url {
                            path /
                        }
                    }
                    TCP_CHECK {
                    }
                }
            """))
        #expect(config.warnings == [RulesError(file: "keepalived.conf", line: 6, token: name,
                                               message: "\(name) is not supported by masq: ignored (the real server is not checked by it)")])
        #expect(config.virtualServers[0].realServers[0].checks == [HealthCheck(kind: .tcp)])
    }

    /// keepalived's own corrections and masq's no-ops, each a warning at its line.
    @Test func corrections() throws {
        let config = try parse("""
            virtual_server 198.18.0.1 80 {
                lvs_sched rr
                lvs_method NAT
                protocol TCP
                ha_suspend
                nat_mask 255.255.255.0
                smtp_alert
                hashed
                sorry_server_inhibit
                quorum 5
                hysteresis 7
                real_server 198.19.0.1 80 {
                    weight 2
                    TCP_CHECK {
                        nb_get_retry 3
                    }
                }
                real_server 198.19.0.1 80 {
                }
            }
            virtual_server 198.18.0.2 0 {
                lvs_sched rr
                lvs_method NAT
                protocol TCP
                real_server 198.19.0.1 80 {
                    notify_up /bin/a
                    notify_up /bin/b
                }
            }
            virtual_server 198.18.0.3 80 {
                lvs_sched rr
                lvs_method NAT
                protocol TCP
            }
            """)
        #expect(config.warnings.map { "\($0.line) \($0.token): \($0.message)" } == [
            "5 ha_suspend: ha_suspend is accepted but has no effect: masq does not track VIP ownership, its checks always run",
            "6 nat_mask: nat_mask is obsolete (keepalived ignores it): ignored",
            "7 smtp_alert: smtp_alert is not supported by masq (no e-mail is sent): ignored",
            "8 hashed: hashed has no effect in masq: ignored",
            "9 sorry_server_inhibit: sorry_server_inhibit before or without sorry_server: ignored (as keepalived does)",
            "15 nb_get_retry: nb_get_retry is deprecated: use retry (keepalived 2 ignores it in TCP_CHECK; masq honours it)",
            "18 real_server: real server 198.19.0.1:80 is already in virtual server TCP 198.18.0.1:80: this one is ignored (as keepalived does)",
            "1 virtual_server: virtual server TCP 198.18.0.1:80: quorum 5 exceeds the real servers' total weight 2, reduced to 2 (as keepalived does)",
            "1 virtual_server: virtual server TCP 198.18.0.1:80: hysteresis 7 >= quorum 2, set to 1 (as keepalived does)",
            "27 notify_up: notify_up already specified: this one is ignored (as keepalived does)",
            "21 virtual_server: virtual server TCP 198.18.0.2:0: a zero port is only valid for persistent services, persistence_timeout 360 set (as keepalived does)",
            "30 virtual_server: virtual server TCP 198.18.0.3:80 has no real servers: ignored (as keepalived does)",
        ])
        let (first, second) = (config.virtualServers[0], config.virtualServers[1])
        #expect(first.haSuspend && first.quorum == 2 && first.hysteresis == 1 && first.realServers.count == 1)
        #expect(first.realServers[0].checks[0].retry == 3)
        #expect(second.realServers[0].notifyUp == "/bin/a" && second.realServers[0].port == 80)
        #expect(config.configuration.services.map(\.persistence) == [nil, 360])
        #expect(config.configuration.services.count == 2 && config.virtualServers.count == 2)
    }
}
