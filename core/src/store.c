/* Opening and closing a store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "internal.h"

/* The caches' epoch, or "0" for a store that has none (or a damaged one:
 * a cache marked with it is then rebuilt, which is always safe). */
static void read_epoch(berth_store *st)
{
    berth_path_spec spec = { 0 };
    berth_buf path = BERTH_BUF_INIT, content = BERTH_BUF_INIT;

    strcpy(st->epoch, "0");
    spec.kind = BERTH_PATH_EPOCH;
    if (berth__path(&path, &spec, NULL) == 0 &&
        berth_driver_get(st->driver, &content, path.ptr, BERTH_EPOCH_LEN,
                         NULL) == 0 &&
        content.len == BERTH_EPOCH_LEN)
        memcpy(st->epoch, content.ptr, BERTH_EPOCH_LEN + 1);
    berth_buf_dispose(&path);
    berth_buf_dispose(&content);
}

int berth_store_open(berth_store **out, const berth_store_options *opts,
                     berth_error *err)
{
    berth_driver *driver = NULL;
    berth_store *st;
    const char *name;
    int rc;

    *out = NULL;
    if (opts == NULL || opts->version != BERTH_STORE_OPTIONS_VERSION)
        return berth_error_set(err, BERTH_EINVAL,
                               "store options: unknown version");
    name = opts->driver ? opts->driver : "fs";
    if (opts->custom) {
        driver = opts->custom;
    } else if (strcmp(name, "fs") == 0) {
        if (opts->root == NULL || opts->root[0] == '\0')
            return berth_error_set(err, BERTH_EINVAL,
                                   "store options: fs driver needs a root");
        if ((rc = berth_driver_fs_new(&driver, opts->root, opts->fsync,
                                      err)) < 0)
            return rc;
    } else if (strcmp(name, "mem") == 0) {
        if ((rc = berth_driver_mem_new(&driver, err)) < 0)
            return rc;
    } else {
        return berth_error_set(err, BERTH_EINVAL,
                               "store options: unknown driver: %s", name);
    }

    st = calloc(1, sizeof(*st));
    if (st == NULL) {
        if (!opts->custom)
            berth_driver_free(driver);
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    }
    st->driver = driver;
    atomic_init(&st->refs, 1);
    read_epoch(st);
    *out = st;
    return 0;
}

int berth__epoch_marker_current(berth_store *st, const char *path,
                                berth_error *err)
{
    berth_buf marker = BERTH_BUF_INIT;
    int rc;

    rc = berth_driver_get(st->driver, &marker, path, BERTH_EPOCH_LEN, err);
    if (rc == 0)
        rc = strcmp(marker.ptr ? marker.ptr : "", st->epoch) == 0;
    else if (rc == BERTH_ENOTFOUND || rc == BERTH_ETOOLARGE)
        rc = 0; /* missing, or damaged */
    berth_buf_dispose(&marker);
    return rc;
}

int berth__epoch_marker_put(berth_store *st, const char *path,
                            berth_error *err)
{
    return berth_driver_put(st->driver, path, st->epoch, strlen(st->epoch),
                            err);
}

int berth_store_new_epoch(berth_store *st, berth_error *err)
{
    berth_path_spec spec = { 0 };
    berth_buf path = BERTH_BUF_INIT;
    unsigned char r[BERTH_EPOCH_LEN / 2];
    char epoch[BERTH_EPOCH_LEN + 1];
    int rc;

    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
        return berth_error_set(err, BERTH_EIO, "getrandom failed");
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(epoch + 2 * i, 3, "%02x", r[i]);
    spec.kind = BERTH_PATH_EPOCH;
    if ((rc = berth__path(&path, &spec, err)) < 0 ||
        (rc = berth_driver_put(st->driver, path.ptr, epoch, BERTH_EPOCH_LEN,
                               err)) < 0)
        goto done;
    memcpy(st->epoch, epoch, sizeof(epoch));
done:
    berth_buf_dispose(&path);
    return rc;
}

berth_driver *berth_store_driver(berth_store *st)
{
    return st->driver;
}

berth_store *berth__store_ref(berth_store *st)
{
    atomic_fetch_add_explicit(&st->refs, 1, memory_order_relaxed);
    return st;
}

void berth__store_unref(berth_store *st)
{
    if (st == NULL ||
        atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) != 1)
        return;
    berth_driver_free(st->driver);
    free(st);
}

void berth_store_free(berth_store *st)
{
    berth__store_unref(st);
}

const char *berth_version(void)
{
    return BERTH_VERSION_STRING;
}
