#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Anonymous memory for the connection table's fixed-size parts (slab and index), reserved once for
/// the table's capacity: the kernel hands out zeroed pages as they are first touched, so RSS follows
/// the flows actually held, nothing is ever copied to grow (no stall on the packet path), and
/// `MADV_HUGEPAGE` lets 2 MiB pages cut the TLB misses of random lookups in a big table.
enum PageMemory {
    static func reserve(byteCount: Int) -> UnsafeMutableRawPointer {
        let size = max(byteCount, 1)
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let p, p != UnsafeMutableRawPointer(bitPattern: -1) else {
            fatalError("masq: cannot reserve \(size) bytes for the connection table (errno \(errno))")
        }
        _ = madvise(p, size, MADV_HUGEPAGE)  // advice only: without THP, 4 KiB pages
        return p
    }

    static func release(_ pointer: UnsafeMutableRawPointer, byteCount: Int) {
        munmap(pointer, max(byteCount, 1))
    }
}
