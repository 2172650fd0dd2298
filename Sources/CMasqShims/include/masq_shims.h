#ifndef MASQ_SHIMS_H
#define MASQ_SHIMS_H

/* Helpers Swift has no spelling for. Header-only and static inline: Swift inlines them. */

/* Ask the CPU to start loading the cache line at `address` (for reading), without waiting for it. */
static inline void masq_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

/* The same, for a line about to be written. */
static inline void masq_prefetch_for_write(const void *address) { __builtin_prefetch(address, 1, 3); }

/* The filesystem type of an open file (statfs's f_type, linux/magic.h), or -1: Glibc's Swift module
   does not export sys/vfs.h. */
#include <sys/vfs.h>
static inline long masq_filesystem_type(int fd) {
    struct statfs fs;
    return fstatfs(fd, &fs) == 0 ? (long)fs.f_type : -1;
}

#endif
