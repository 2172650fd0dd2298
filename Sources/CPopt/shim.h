#ifndef MASQ_CPOPT_SHIM_H
#define MASQ_CPOPT_SHIM_H
#include <popt.h>

/// popt.h's `typedef struct poptOption * poptOption` gives the struct and the pointer one name; this
/// names the struct alone for Swift.
typedef struct poptOption masq_popt_option;
#endif
