#ifndef MASQ_SHIMS_H
#define MASQ_SHIMS_H

/* Helpers Swift has no spelling for. Header-only and static inline: Swift inlines them. */

/* Ask the CPU to start loading the cache line at `address` (for reading), without waiting for it. */
static inline void masq_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

/* The same, for a line about to be written. */
static inline void masq_prefetch_for_write(const void *address) { __builtin_prefetch(address, 1, 3); }

#endif
