// The helpers are static inline in include/masq_shims.h; SwiftPM wants one source file per C target.
#include "masq_shims.h"
