import Synchronization
import Testing
@testable import MasqCore
@testable import MasqHealth

/// The monitor on a fake clock with a scripted probe: the keepalived semantics end to end, without a
/// network.
@Suite struct HealthMonitorTests {
    static let conf = """
        virtual_server 198.18.0.1 80 {
            delay_loop 6
            lb_algo rr
            lb_kind NAT
            protocol TCP
            sorry_server 198.19.0.250 80
            real_server 198.19.0.201 80 {
                weight 1
                TCP_CHECK {
                    connect_timeout 3
                    retry 2
                    delay_before_retry 1
                }
            }
            real_server 198.19.0.202 80 {
                weight 1
                inhibit_on_failure
                notify_down "/bin/true web2 down"
                TCP_CHECK {
                    connect_timeout 3
                    retry 0
                }
            }
        }
        """

    let s: Int64 = 1_000_000_000

    func servers(_ m: HealthMonitor) -> [String] {
        m.effectiveConfiguration(timeouts: Timeouts()).services[0].realServers.map { "\($0.address) \($0.weight)" }
    }

    @Test func downRetriesInhibitSorryAndBack() async throws {
        let config = try KeepalivedParser.parse(text: Self.conf, file: "k.conf")
        let monitor = HealthMonitor(config, now: 0)
        let down = Mutex<Set<String>>([])
        let probe: HealthMonitor.ProbeFunction = { _, address, _ in
            down.withLock { $0.contains(address.description) } ? .failure(ProbeFailure(check: "TCP connect to \(address):80", reason: .connectionRefused)) : .success
        }
        #expect(await monitor.tick(now: 0, probe: probe).isEmpty)
        #expect(servers(monitor) == ["198.19.0.201 1", "198.19.0.202 1"])

        // web2 fails: retry 0, so down at once; inhibit_on_failure keeps it at weight 0.
        _ = down.withLock { $0.insert("198.19.0.202") }
        let events = await monitor.tick(now: 6 * s, probe: probe)
        #expect(events.map(\.kind) == [.serverDown] && events[0].script == "/bin/true web2 down")
        #expect(events[0].reason == "TCP connect to 198.19.0.202:80: connection refused")
        #expect(servers(monitor) == ["198.19.0.201 1", "198.19.0.202 0"])

        // web1 fails from its next check (12 s): two retries a second apart, then down at 14 s; quorum
        // (1) is lost: only the sorry server serves.
        _ = down.withLock { $0.insert("198.19.0.201") }
        #expect(await monitor.tick(now: 12 * s, probe: probe).isEmpty)
        #expect(await monitor.tick(now: 13 * s, probe: probe).isEmpty)
        let lost = await monitor.tick(now: 14 * s, probe: probe)
        #expect(lost.map(\.kind) == [.serverDown, .quorumLost])
        #expect(servers(monitor) == ["198.19.0.250 1"])

        // Both come back at their next checks: web2 at 18 s (quorum regained), web1 at 20 s.
        down.withLock { $0.removeAll() }
        #expect(await monitor.tick(now: 18 * s, probe: probe).map(\.kind) == [.serverUp, .quorumRegained])
        #expect(servers(monitor) == ["198.19.0.202 1"])
        #expect(await monitor.tick(now: 20 * s, probe: probe).map(\.kind) == [.serverUp])
        #expect(servers(monitor) == ["198.19.0.201 1", "198.19.0.202 1"])
    }

    @Test func passiveDetectionMarksDownUntilTheNextGoodCheck() async throws {
        let config = try KeepalivedParser.parse(text: Self.conf, file: "k.conf")
        let monitor = HealthMonitor(config, now: 0)
        let key = config.virtualServers[0].key
        let web1 = config.virtualServers[0].realServers[0].spec
        let events = monitor.markDown(service: key, server: web1, reason: "passive", now: s)
        #expect(events.map(\.kind) == [.serverDown])
        #expect(servers(monitor) == ["198.19.0.202 1"])
        let back = await monitor.tick(now: 7 * s) { _, _, _ in .success }
        #expect(back.map(\.kind) == [.serverUp])
    }
}
