/*
 * The repository catalog (core/src/catalog.c). The list is returned in
 * `out`, which must be BERTH_STRLIST_INIT or a list from an earlier call:
 * it is emptied first, and is empty after a failure. The caller owns the
 * result: berth_strlist_dispose().
 */
#ifndef BERTH_CATALOG_H
#define BERTH_CATALOG_H

#include <stddef.h>
#include "berth/errors.h"
#include "berth/store.h"
#include "berth/sys/driver.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Repositories that hold at least one manifest (a revision link), after
 * `last`, at most n (SIZE_MAX: all), in Distribution's catalog order:
 * bytewise with '/' before every other byte ("a", "a/b", "a-b").
 * @return 0 or BERTH_EIO.
 */
BERTH_API
int berth_catalog_list(berth_strlist *out, berth_store *st, const char *last,
                       size_t n, berth_error *err);

#ifdef __cplusplus
}
#endif
#endif
