/*
 * Allocation failures, for tests (as SQLite's and libgit2's failing
 * allocators): every allocation libberth's own code makes (malloc, calloc,
 * realloc, strdup; not cJSON's, mbedTLS's nor the C library's inside its
 * calls) is counted, and one of them can be made to fail, so that each
 * out-of-memory path runs. Process-wide: for test programs only.
 */
#ifndef BERTH_SYS_ALLOC_H
#define BERTH_SYS_ALLOC_H

#include <stdint.h>
#include "berth/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Fail the nth allocation from now on (1: the next one), that one only;
 * 0: none. Resets the count. */
BERTH_API
void berth_alloc_fail_at(uint64_t nth);

/** Allocations made since the last berth_alloc_fail_at. */
BERTH_API
uint64_t berth_alloc_count(void);

#ifdef __cplusplus
}
#endif
#endif
