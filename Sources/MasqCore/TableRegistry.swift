/// A virtual service's record in the table's memory: what the next masq needs to give its id back to
/// the same service after a restart (its key) and the counters ipvsadm `--stats` shows.
struct ServiceRecord {
    var inUse: UInt8
    /// Configured (in `Engine.serviceByKey`); 0 while a removed service's connections drain.
    var inService: UInt8
    var port: UInt16
    var proto: UInt8
    /// 6 for an IPv6 service (its address in `address6`), 0 for IPv4 (in `address`).
    var family: UInt8
    /// `ServiceRecord.firewallMarkKind` for a firewall-mark service (`-f`), whose mark is in `address`
    /// (its address is the family's unspecified one); 0 for a service by address and port. The byte
    /// was reserved (always 0) before, so a table of an older masq reads as address services, and the
    /// layout (sizes and offsets, `TableMemory`'s fingerprint) is unchanged.
    var kind: UInt8
    var reserved: UInt8
    var address: UInt32
    var address6: IPv6Address
    var stats: TrafficCounters

    static let firewallMarkKind: UInt8 = 1

    var isIPv6: Bool { family == 6 }
    /// The mark of a firewall-mark service, 0 for an address service.
    var fwmark: UInt32 { kind == Self.firewallMarkKind ? address : 0 }
    /// The service's address, of its family.
    var ipAddress: IPAddress { isIPv6 ? .v6(address6) : .v4(IPv4Address(rawValue: address)) }

    /// The key the record was written for (`Engine.newServiceID`), which adoption matches.
    var key: ServiceKey {
        if kind == Self.firewallMarkKind { return ServiceKey(fwmark: address, ipv6: isIPv6) }
        return ServiceKey(proto: IPProtocol(rawValue: proto), address: ipAddress, port: port)
    }
}

/// A real server's record (IPVS `struct ip_vs_dest`'s counts and stats): connections name it by id, so
/// its ActiveConn/InActConn/PersistConn and traffic counters live with the connections.
struct DestinationRecord {
    var inUse: UInt8
    /// In its service (`Destination.inService`); 0 while a removed real server's connections drain. After
    /// a remove and re-add of the same address:port while the old one drains, two records share the key:
    /// this flag tells the next masq which one the configured server is.
    var inService: UInt8
    var port: UInt16
    var proto: UInt8
    /// 6 for an IPv6 real server (its address in `address6`), 0 for IPv4 (in `address`).
    var family: UInt8
    var reserved: (UInt8, UInt8)
    var address: UInt32
    var address6: IPv6Address
    var serviceID: UInt32
    var activeConnections: Int32
    var inactiveConnections: Int32
    var persistentConnections: Int32
    var stats: TrafficCounters

    var isIPv6: Bool { family == 6 }
    var ipAddress: IPAddress { isIPv6 ? .v6(address6) : .v4(IPv4Address(rawValue: address)) }
}

/// The service and real-server records of a `TableMemory`: ids index them, a freed id is reused
/// (`Engine` keeps them below `capacity` for a configuration's life), and every access by an id read
/// from the slab is bounds-checked, so an adopted file can never send the packet path out of range.
struct TableRegistry {
    let services: UnsafeMutablePointer<ServiceRecord>
    let destinations: UnsafeMutablePointer<DestinationRecord>
    let capacity: Int

    init(_ memory: TableMemory) {
        let l = memory.layout
        services = (memory.base + l.servicesOffset).bindMemory(to: ServiceRecord.self, capacity: l.registryCapacity)
        destinations = (memory.base + l.destinationsOffset).bindMemory(to: DestinationRecord.self, capacity: l.registryCapacity)
        capacity = l.registryCapacity
    }

    /// The record of a service id, nil when out of range.
    @inline(__always) func service(_ id: UInt32) -> UnsafeMutablePointer<ServiceRecord>? {
        Int(id) < capacity ? services + Int(id) : nil
    }

    @inline(__always) func destination(_ id: UInt32) -> UnsafeMutablePointer<DestinationRecord>? {
        Int(id) < capacity ? destinations + Int(id) : nil
    }

    /// The lowest service id whose record is free, nil when all are in use.
    func freeServiceID() -> UInt32? {
        for i in 0..<capacity where services[i].inUse == 0 { return UInt32(i) }
        return nil
    }
}

/// ipvsadm `--stats` of every service, by service id, read from the registry (a removed service's
/// connections still count until they end). An id out of range reads as zero counters.
public struct ServiceStatistics {
    let registry: TableRegistry

    public subscript(id: Int) -> TrafficCounters {
        get { id >= 0 && id < registry.capacity ? registry.services[id].stats : TrafficCounters() }
        nonmutating set { if id >= 0 && id < registry.capacity { registry.services[id].stats = newValue } }
    }
}
