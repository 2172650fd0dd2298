#ifndef MASQ_MALLOC_COUNTER_H
#define MASQ_MALLOC_COUNTER_H
#include <stdint.h>
/// Heap allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign) made by this
/// process since it started. Linking this target interposes those functions over glibc's.
uint64_t masq_allocation_count(void);
#endif
