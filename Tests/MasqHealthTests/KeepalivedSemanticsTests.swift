import Synchronization
import Testing
@testable import MasqCore
@testable import MasqHealth

/// keepalived's alpha (start down), its reload (state carried over, removals notified) and omega
/// (scripts at shutdown), on the monitor with a fake clock and a scripted probe.
@Suite struct KeepalivedSemanticsTests {
    let s: Int64 = 1_000_000_000

    /// A scripted probe: the addresses in `up` pass, the others are refused.
    final class Probes: Sendable {
        let up = Mutex<Set<String>>([])
        var function: HealthMonitor.ProbeFunction {
            { [self] _, address, port in
                self.up.withLock { $0.contains(address.description) }
                    ? .success : .failure(ProbeFailure(check: "TCP connect to \(address):\(port)", reason: .connectionRefused))
            }
        }
        func set(_ addresses: String...) { up.withLock { $0 = Set(addresses) } }
    }

    func servers(_ m: HealthMonitor, _ service: Int = 0) -> [String] {
        m.effectiveConfiguration(timeouts: Timeouts()).services[service].realServers.map { "\($0.address)" }
    }

    static func virtualServer(_ address: String, _ options: String, servers: [String]) -> String {
        """
        virtual_server \(address) 80 {
            delay_loop 3
            lb_algo rr
            lb_kind NAT
            protocol TCP
            \(options)
        \(servers.map { """
                real_server \($0) 80 {
                    notify_up "/bin/echo \($0) up"
                    notify_down "/bin/echo \($0) down"
                    TCP_CHECK {
                        connect_timeout 1
                        retry 2
                        delay_before_retry 1
                    }
                }
            """ }.joined(separator: "\n"))
        }
        """
    }

    /// With alpha, a server whose checks never pass is never in the configuration, from the very first
    /// one; another enters at its first success. Without alpha the servers are in from the start.
    @Test func alphaServersEnterAtTheirFirstSuccess() async throws {
        let text = Self.virtualServer("198.18.0.1", "alpha", servers: ["198.19.0.1", "198.19.0.2"])
            + "\n" + Self.virtualServer("198.18.0.2", "", servers: ["198.19.0.3"])
        let monitor = HealthMonitor(try KeepalivedParser.parse(text: text, file: "k.conf"), now: 0)
        #expect(servers(monitor, 0) == [] && servers(monitor, 1) == ["198.19.0.3"])
        #expect(monitor.startEvents.isEmpty)  // no sorry server: quorum starts down silently

        let probes = Probes()
        probes.set("198.19.0.3")
        var t: Int64 = 0
        var sawSecond = false
        while t <= 30 * s {
            if t == 9 * s { probes.set("198.19.0.2", "198.19.0.3") }
            let events = await monitor.tick(now: t, probe: probes.function)
            if t == 0 {
                // Both alpha servers' first checks fail: nothing changes, keepalived still notifies.
                #expect(events.map(\.kind) == [.serverDown, .serverDown])
                #expect(events.map(\.script) == ["/bin/echo 198.19.0.1 down", "/bin/echo 198.19.0.2 down"])
                #expect(events[0].reason.hasSuffix("TCP connect to 198.19.0.1:80: connection refused"))
            } else if t == 9 * s {
                #expect(events.map(\.kind) == [.serverUp, .quorumRegained])
                #expect(events[0].description == "TCP 198.18.0.1:80 198.19.0.2:80 up: checks pass again")
            } else {
                #expect(events.isEmpty)
            }
            #expect(!servers(monitor, 0).contains("198.19.0.1"))
            #expect(servers(monitor, 1) == ["198.19.0.3"])
            sawSecond = sawSecond || servers(monitor, 0).contains("198.19.0.2")
            #expect(servers(monitor, 0).contains("198.19.0.2") == (t >= 9 * s))
            t = monitor.nextDue!
        }
        #expect(sawSecond)
    }

    /// A failing server without alpha goes at its first failed check, not after its retries.
    @Test func withoutAlphaAFailingServerGoesAtItsFirstCheck() async throws {
        let text = Self.virtualServer("198.18.0.1", "", servers: ["198.19.0.1", "198.19.0.2"])
        let monitor = HealthMonitor(try KeepalivedParser.parse(text: text, file: "k.conf"), now: 0)
        #expect(servers(monitor) == ["198.19.0.1", "198.19.0.2"])
        let probes = Probes()
        probes.set("198.19.0.2")
        #expect(await monitor.tick(now: 0, probe: probes.function).map(\.kind) == [.serverDown])
        #expect(servers(monitor) == ["198.19.0.2"])
    }

    /// alpha with a sorry server: keepalived starts with quorum down, the sorry server serving, and runs
    /// quorum_down; a real server's `alpha no` overrides its virtual server's.
    @Test func alphaWithASorryServerStartsOnTheSorryServer() throws {
        let text = """
            virtual_server 198.18.0.1 80 {
                lb_algo rr
                lb_kind NAT
                protocol TCP
                alpha
                quorum 2
                quorum_down "/bin/echo quorum down"
                sorry_server 198.19.0.250 80
                real_server 198.19.0.1 80 {
                    TCP_CHECK {
                    }
                }
                real_server 198.19.0.2 80 {
                    alpha no
                    TCP_CHECK {
                    }
                }
            }
            """
        let monitor = HealthMonitor(try KeepalivedParser.parse(text: text, file: "k.conf"), now: 0)
        #expect(servers(monitor) == ["198.19.0.250"])
        #expect(monitor.startEvents.map(\.kind) == [.quorumLost])
        #expect(monitor.startEvents[0].script == "/bin/echo quorum down")
        #expect(monitor.isAlive(0, 1) && !monitor.isAlive(0, 0))
    }

    /// A reload keeps the health of the servers it keeps (an alpha server that came up stays in), starts
    /// new ones as at start (down with alpha), and notifies the removed: notify_down of each server that
    /// was in, quorum_down of a removed virtual server that held quorum (with or without omega).
    @Test func reloadCarriesStateAndNotifiesRemovals() async throws {
        let first = Self.virtualServer("198.18.0.1", "alpha", servers: ["198.19.0.1", "198.19.0.2"])
            + "\n" + Self.virtualServer("198.18.0.2", "quorum_down \"/bin/echo gone\"", servers: ["198.19.0.5"])
        let old = HealthMonitor(try KeepalivedParser.parse(text: first, file: "k.conf"), now: 0)
        let probes = Probes()
        probes.set("198.19.0.1", "198.19.0.2", "198.19.0.5")
        _ = await old.tick(now: 0, probe: probes.function)
        #expect(servers(old, 0) == ["198.19.0.1", "198.19.0.2"])

        let second = Self.virtualServer("198.18.0.1", "alpha", servers: ["198.19.0.1", "198.19.0.3"])
        let new = HealthMonitor(try KeepalivedParser.parse(text: second, file: "k.conf"), now: 5 * s, previous: old)
        #expect(servers(new, 0) == ["198.19.0.1"])  // .3 is new and alpha: out until its first success
        #expect(new.startEvents.map(\.description) == [
            "TCP 198.18.0.1:80 198.19.0.2:80 down: removed by the reload",
            "TCP 198.18.0.2:80 198.19.0.5:80 down: virtual server removed by the reload",
            "TCP 198.18.0.2:80 service quorum lost: virtual server removed by the reload",
        ])
        #expect(new.startEvents.map(\.script) == ["/bin/echo 198.19.0.2 down", "/bin/echo 198.19.0.5 down", "/bin/echo gone"])
        // The old monitor records nothing more.
        #expect(await old.tick(now: 100 * s, probe: probes.function).isEmpty)

        probes.set("198.19.0.1", "198.19.0.3")
        #expect(await new.tick(now: 5 * s, probe: probes.function).map(\.description)
            == ["TCP 198.18.0.1:80 198.19.0.3:80 up: first check passed"])
        #expect(servers(new, 0) == ["198.19.0.1", "198.19.0.3"])
    }

    /// A kept server that was down stays down across a reload, and keeps failing at once (no retries).
    @Test func reloadKeepsAFailedServerOut() async throws {
        let text = Self.virtualServer("198.18.0.1", "", servers: ["198.19.0.1", "198.19.0.2"])
        let config = try KeepalivedParser.parse(text: text, file: "k.conf")
        let old = HealthMonitor(config, now: 0)
        let probes = Probes()
        probes.set("198.19.0.1")
        _ = await old.tick(now: 0, probe: probes.function)
        #expect(servers(old) == ["198.19.0.1"])
        let new = HealthMonitor(config, now: 1 * s, previous: old)
        #expect(servers(new) == ["198.19.0.1"] && new.startEvents.isEmpty)
    }

    /// omega: at shutdown, notify_down of the servers in the pool, then quorum_down; without omega,
    /// nothing. Afterwards the monitor records nothing.
    @Test func omegaRunsTheDownScriptsAtShutdown() async throws {
        let text = Self.virtualServer("198.18.0.1", "omega\n    quorum_down \"/bin/echo q down\"",
                                      servers: ["198.19.0.1", "198.19.0.2"])
            + "\n" + Self.virtualServer("198.18.0.2", "quorum_down \"/bin/echo other\"", servers: ["198.19.0.3"])
        let monitor = HealthMonitor(try KeepalivedParser.parse(text: text, file: "k.conf"), now: 0)
        let probes = Probes()
        probes.set("198.19.0.1", "198.19.0.3")
        _ = await monitor.tick(now: 0, probe: probes.function)  // .2 goes down: it gets no second notify_down
        let events = monitor.shutdown()
        #expect(events.map(\.description) == [
            "TCP 198.18.0.1:80 198.19.0.1:80 down: shutting down (omega)",
            "TCP 198.18.0.1:80 service quorum lost: shutting down (omega)",
        ])
        #expect(events.map(\.script) == ["/bin/echo 198.19.0.1 down", "/bin/echo q down"])
        #expect(monitor.shutdown().isEmpty)
        probes.set()
        #expect(await monitor.tick(now: 3 * s, probe: probes.function).isEmpty)
        #expect(servers(monitor, 0) == ["198.19.0.1"])
    }
}
