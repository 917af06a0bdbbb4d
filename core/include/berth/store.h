/*
 * A store: a driver plus the registry layout on top of it (CNCF
 * Distribution's, under /docker/registry/v2).
 */
#ifndef BERTH_STORE_H
#define BERTH_STORE_H

#include <stddef.h>
#include "berth/errors.h"
#include "berth/sys/driver.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct berth_store berth_store;

#define BERTH_STORE_OPTIONS_VERSION 1

typedef struct berth_store_options {
    unsigned version;     /* BERTH_STORE_OPTIONS_VERSION */
    const char *root;     /* directory of the "fs" driver */
    const char *driver;   /* "fs" (default) or "mem" */
    berth_fsync fsync;    /* fs driver policy */
    berth_driver *custom; /* use this driver instead; the store owns it */
} berth_store_options;

#define BERTH_STORE_OPTIONS_INIT                                             \
    {                                                                        \
        BERTH_STORE_OPTIONS_VERSION, NULL, NULL, BERTH_FSYNC_FULL, NULL      \
    }

/**
 * Open a store. The caller owns it: berth_store_free().
 * @return 0, BERTH_EINVAL (bad options), BERTH_EIO or BERTH_ENOMEM.
 */
BERTH_API
int berth_store_open(berth_store **out, const berth_store_options *opts,
                     berth_error *err);

/**
 * Declare berth's caches (the tag reverse index) possibly stale, because
 * another program (CNCF Distribution serving the same directory) may have
 * written the store since berth last did: each cache is rebuilt on its
 * first use in a store opened afterwards. `berth serve` does this at each
 * start. @return 0 or BERTH_EIO.
 */
BERTH_API
int berth_store_new_epoch(berth_store *st, berth_error *err);

/** The store's driver; owned by the store. */
BERTH_API
berth_driver *berth_store_driver(berth_store *st);

/**
 * Release the caller's store; NULL is fine. Uploads, readers and iterators
 * made from it keep it (and its driver) usable until they are freed too:
 * the store and its driver are freed with the last of them.
 */
BERTH_API
void berth_store_free(berth_store *st);

/**
 * Check a repository name against the OCI distribution grammar:
 * components [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* joined by '/', 255 bytes in all.
 * @return 0 or BERTH_ENAME_INVALID.
 */
BERTH_API
int berth_name_validate(const char *name, size_t len, berth_error *err);

/** Check a tag: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}. @return 0 or
 *  BERTH_ETAG_INVALID. */
BERTH_API
int berth_tag_validate(const char *tag, size_t len, berth_error *err);

/** libberth's version, "major.minor.patch". */
BERTH_API
const char *berth_version(void);

#ifdef __cplusplus
}
#endif
#endif
