/* Opening and closing a store. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

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
    *out = st;
    return 0;
}

berth_driver *berth_store_driver(berth_store *st)
{
    return st->driver;
}

void berth_store_free(berth_store *st)
{
    if (st == NULL)
        return;
    berth_driver_free(st->driver);
    free(st);
}

const char *berth_version(void)
{
    return BERTH_VERSION_STRING;
}
