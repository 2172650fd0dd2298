// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "masq",
    platforms: [.macOS(.v15)],  // Linux is the target; this only satisfies dependencies' minimums
    products: [
        .executable(name: "masq", targets: ["masq"]),
        .executable(name: "masqadm", targets: ["masqadm"]),
        .library(name: "MasqCore", targets: ["MasqCore"]),
        .library(name: "MasqRules", targets: ["MasqRules"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // C libraries, each behind a system-library target with its own module map.
        .systemLibrary(
            name: "CPcap",
            pkgConfig: "libpcap",
            providers: [.apt(["libpcap-dev"])]
        ),
        // libpopt: ipvsadm's own option parser, for ipvsadm's command line (MasqRules: masqadm, rules
        // files, apply).
        .systemLibrary(
            name: "CPopt",
            pkgConfig: "popt",
            providers: [.apt(["libpopt-dev"])]
        ),
        .systemLibrary(
            name: "CNetfilterQueue",
            pkgConfig: "libnetfilter_queue",
            providers: [.apt(["libnetfilter-queue-dev", "libmnl-dev"])]
        ),

        // C helpers Swift cannot spell (cache prefetch), static inline so they inline into the engine.
        .target(name: "CMasqShims"),

        // The engine and the configuration model: pure Swift, no I/O. Exclusivity is proven statically;
        // the dynamic checks on class properties cost half of the packet path's instructions
        // (callgrind), so they are off here.
        .target(
            name: "MasqCore",
            dependencies: ["CMasqShims"],
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]
        ),

        // The text side of the configuration: ipvsadm's command line (libpopt, glibc's parsers), the
        // rules file, /etc/hosts and /etc/services.
        .target(name: "MasqRules", dependencies: ["MasqCore", "CPopt"]),

        // NFQUEUE over libmnl + libnetfilter_queue: bind, receive in batches, send verdicts in batches.
        .target(name: "MasqNFQueue", dependencies: ["CNetfilterQueue", "MasqCore"]),

        // The daemon: the packet thread, iptables rules, signals and reloads.
        .target(
            name: "MasqDaemon",
            dependencies: [
                "MasqCore", "MasqRules", "MasqNFQueue", "MasqControl", "MasqCapture", "MasqHealth", "MasqSync",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),

        // Health checks with keepalived's semantics, and keepalived.conf's LVS part as input.
        .target(
            name: "MasqHealth",
            dependencies: [
                "MasqCore", "MasqRules",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),  // SSL_GET
            ]
        ),

        // The control socket's protocol: requests, answers, error codes, framing, and the client.
        .target(name: "MasqControl", dependencies: ["MasqCore", "MasqRules"]),

        // masqadm's front end: ipvsadm's command line and output layouts over the daemon's state.
        .target(name: "MasqAdmin", dependencies: ["MasqCore", "MasqRules", "MasqControl"]),

        // Capture files in and out (libpcap), feeding the engine the same way NFQUEUE does.
        .target(name: "MasqCapture", dependencies: ["CPcap", "MasqCore"]),

        // The IPVS connection-sync protocol's wire format (ip_vs_sync.c): v1 encoder, v1/v0 decoder; no I/O.
        .target(name: "MasqSync", dependencies: ["MasqCore"]),

        .executableTarget(
            name: "masq",
            dependencies: [
                "MasqCore", "MasqRules", "MasqCapture", "MasqNFQueue", "MasqDaemon", "MasqControl", "MasqHealth",
                "MasqSync",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Counts heap allocations for the benchmark (interposes malloc & co.).
        .target(name: "CMallocCounter"),
        .executableTarget(name: "masqadm", dependencies: ["MasqAdmin", "MasqControl", "MasqCore", "MasqRules"]),
        .executableTarget(
            name: "masq-bench", dependencies: ["MasqCore", "MasqRules", "MasqSync", "CMallocCounter"],
            swiftSettings: [.swiftLanguageMode(.v5)]  // top-level benchmark script
        ),

        .testTarget(name: "MasqCoreTests", dependencies: ["MasqCore", "MasqRules", "MasqCapture"]),
        .testTarget(name: "MasqRulesTests", dependencies: ["MasqRules", "MasqCore"]),
        .testTarget(name: "MasqSyncTests", dependencies: ["MasqSync", "MasqCore"]),
        .testTarget(
            name: "MasqHealthTests",
            dependencies: [
                "MasqHealth", "MasqCore", "MasqRules",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "MasqAdminTests", dependencies: ["MasqAdmin", "MasqControl", "MasqCore", "MasqRules"]),
        .testTarget(name: "MasqControlTests", dependencies: ["MasqControl", "MasqCore", "MasqRules"]),
        .testTarget(
            name: "MasqDaemonTests",
            dependencies: [
                "MasqCore", "MasqRules", "MasqNFQueue", "MasqDaemon", "MasqControl", "CNetfilterQueue", "MasqSync", "MasqHealth",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
    ]
)
