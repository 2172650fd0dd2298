/// masq's version, one constant for every binary: `masq --version` prints it, `masqadm -v` adds it
/// after ipvsadm's own line, scripts/package names the .deb after it. 0.10 was the release of issue
/// 10; 0.11 is issue 12's redesign; 0.13 keeps the connection table across restarts (issue 14); 0.14
/// installs and runs as a system service (issue 15: Type=notify, journal and JSON logs, packages); 0.15
/// balances IPv6 services (issue 16).
public let masqVersion = "0.15.0"
