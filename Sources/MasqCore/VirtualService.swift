/// A virtual service as the engine runs it: its spec, its scheduler instance and its destinations.
public final class VirtualService {
    public let id: UInt32
    public private(set) var spec: ServiceSpec
    public private(set) var scheduler: any Scheduler
    /// In the order they were added (rr and wrr walk this order).
    public private(set) var destinations: [Destination]
    /// Turns the service's counters (`Engine.serviceStats`) into ipvsadm `--rate`'s figures.
    var rateEstimator = RateEstimator()

    init(id: UInt32, spec: ServiceSpec, destinations: [Destination]) {
        self.id = id
        self.spec = spec
        self.destinations = destinations
        scheduler = Schedulers.make(spec.scheduler, flags: spec.schedulerFlags)
            ?? WeightedLeastConnectionScheduler(flags: [])
        scheduler.destinationsChanged(destinations)
    }

    @inlinable public var key: ServiceKey { spec.key }

    /// The rates of the last sample (ipvsadm `--rate`; see `Engine.estimateRates(at:)`).
    public var rates: TrafficRates { rateEstimator.rates }

    /// Takes a new spec; keeps the scheduler's state when the algorithm is unchanged.
    func update(spec newSpec: ServiceSpec, destinations newDestinations: [Destination]) {
        if newSpec.scheduler != spec.scheduler || newSpec.schedulerFlags != spec.schedulerFlags {
            scheduler = Schedulers.make(newSpec.scheduler, flags: newSpec.schedulerFlags)
                ?? WeightedLeastConnectionScheduler(flags: [])
        }
        spec = newSpec
        destinations = newDestinations
        scheduler.destinationsChanged(destinations)
    }
}
