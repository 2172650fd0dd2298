/// glibc's `qsort` (2.36, the one ipvsadm runs on in Debian 12) is a merge sort (`msort_with_tmp`):
/// split n into n/2 and the rest, sort both halves, merge taking from the left while
/// `cmp(left, right) <= 0`. Reproduced step for step, because ipvsadm's comparators
/// (`ipvs_cmp_services`, `ipvs_cmp_dests`) subtract 32-bit addresses into an `int` and so are not
/// transitive when addresses are 2^31 or more apart: only the same algorithm gives the same order.
func glibcMergeSort<T>(_ items: [T], by compare: (T, T) -> Int32) -> [T] {
    guard items.count > 1 else { return items }
    let n1 = items.count / 2
    let left = glibcMergeSort(Array(items[..<n1]), by: compare)
    let right = glibcMergeSort(Array(items[n1...]), by: compare)
    var out: [T] = []
    out.reserveCapacity(items.count)
    var i = 0
    var j = 0
    while i < left.count && j < right.count {
        if compare(left[i], right[j]) <= 0 {
            out.append(left[i])
            i += 1
        } else {
            out.append(right[j])
            j += 1
        }
    }
    out.append(contentsOf: left[i...])
    out.append(contentsOf: right[j...])
    return out
}
