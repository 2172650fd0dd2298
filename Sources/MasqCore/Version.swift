/// masq's version, one constant for every binary: `masq --version` prints it, `masqadm -v` adds it
/// after ipvsadm's own line. 0.10 is the release of issue 10.
public let masqVersion = "0.10.0"
