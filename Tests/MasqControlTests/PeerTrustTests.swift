import Glibc
import MasqControl
import Testing

/// Which daemons a client talks to: root, itself, or the user masq.service runs masq as; a socket
/// another user holds (anyone may bind an abstract name) is never taken for masq's.
@Suite struct PeerTrustTests {
    static func peer(uid: uid_t) -> PeerCredentials {
        var credentials = PeerCredentials()
        credentials.uid = uid
        return credentials
    }

    @Test func rootAndSelfAreTrustedWithOrWithoutTheServiceUser() {
        for serviceUID in [nil, uid_t(999)] as [uid_t?] {
            #expect(Self.peer(uid: 0).isMasqDaemon(serviceUID: serviceUID))
            #expect(Self.peer(uid: getuid()).isMasqDaemon(serviceUID: serviceUID))
        }
    }

    @Test func theServiceUserIsTrustedOnlyWhenTheAccountExists() {
        #expect(Self.peer(uid: 999).isMasqDaemon(serviceUID: 999))
        #expect(!Self.peer(uid: 999).isMasqDaemon(serviceUID: nil))
        #expect(!Self.peer(uid: 998).isMasqDaemon(serviceUID: 999))
        #expect(!Self.peer(uid: 65534).isMasqDaemon(serviceUID: 999))
    }

    @Test func onlyASystemAccountIsTheServiceUser() {
        #expect(PeerCredentials.serviceUID(account: 998, systemUIDMax: 999) == 998)
        #expect(PeerCredentials.serviceUID(account: 999, systemUIDMax: 999) == 999)
        // A `masq` made as an ordinary login: its owner can run processes as it, not only root.
        #expect(PeerCredentials.serviceUID(account: 1000, systemUIDMax: 999) == nil)
        #expect(PeerCredentials.serviceUID(account: 1500, systemUIDMax: 1999) == 1500)
        #expect(PeerCredentials.serviceUID(account: nil, systemUIDMax: 999) == nil)
        #expect(PeerCredentials.serviceUID(account: 0, systemUIDMax: 999) == nil)
    }

    @Test func systemUIDMaxComesFromLoginDefs() {
        #expect(PeerCredentials.systemUIDMax(loginDefs: nil) == 999)
        #expect(PeerCredentials.systemUIDMax(loginDefs: "UID_MIN 1000\n#SYS_UID_MAX 1999\n") == 999)
        #expect(PeerCredentials.systemUIDMax(loginDefs: "# system accounts\nSYS_UID_MIN\t\t  101\nSYS_UID_MAX\t\t  499  # ours\n") == 499)
        #expect(PeerCredentials.systemUIDMax(loginDefs: "SYS_UID_MAX x\n") == 999)
    }

    @Test func theServiceUIDIsTheMasqSystemAccounts() {
        let entry = getpwnam("masq").map { $0.pointee.pw_uid }
        #expect(PeerCredentials.userID(named: "masq") == entry)
        #expect(PeerCredentials.userID(named: "root") == 0)
        #expect(PeerCredentials.userID(named: "no-such-user-masq-test") == nil)
        let loginDefs = try? String(contentsOfFile: "/etc/login.defs", encoding: .utf8)
        let system = PeerCredentials.systemUIDMax(loginDefs: loginDefs)
        #expect(PeerCredentials.serviceUID == entry.flatMap { $0 != 0 && $0 <= system ? $0 : nil })
    }
}
