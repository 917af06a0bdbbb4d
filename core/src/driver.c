/*
 * The driver entry points every caller goes through: paths are checked here,
 * once, so a driver can trust what it is given (sys/driver.h). Also the
 * string list helpers shared by the drivers.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PATH_MAX_LEN 4096

/* ---- string lists ---- */

int berth_strlist_add(berth_strlist *l, const char *s, size_t len,
                      berth_error *err)
{
    char *copy;

    assert(l != NULL && (s != NULL || len == 0));
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **items;

        if (cap > SIZE_MAX / sizeof(*items))
            return berth_error_set(err, BERTH_ENOMEM, "out of memory");
        items = realloc(l->items, cap * sizeof(*items));
        if (items == NULL)
            return berth_error_set(err, BERTH_ENOMEM, "out of memory");
        l->items = items;
        l->cap = cap;
    }
    if (len == SIZE_MAX || (copy = malloc(len + 1)) == NULL)
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    if (len)
        memcpy(copy, s, len);
    copy[len] = '\0';
    l->items[l->count++] = copy;
    return 0;
}

static int compare_items(const void *a, const void *b)
{
    /* strcmp compares as unsigned char: bytewise order */
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void berth_strlist_sort(berth_strlist *l)
{
    assert(l != NULL);
    if (l->count > 1)
        qsort(l->items, l->count, sizeof(*l->items), compare_items);
}

void berth_strlist_dispose(berth_strlist *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = l->cap = 0;
}

/* ---- paths ---- */

static int component_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/*
 * "/" alone is valid: it names the root, which can be listed and stat'ed.
 * The entry points that need a file (or would act on the whole store) refuse
 * it separately, in path_ok().
 */
int berth_driver_path_valid(const char *path)
{
    size_t i = 0, start;

    if (path == NULL || path[0] != '/')
        return 0;
    if (path[1] == '\0')
        return 1;
    while (path[i] == '/') {
        if (i >= PATH_MAX_LEN)
            return 0;
        start = ++i;
        while (component_char((unsigned char)path[i]))
            i++;
        /* empty component: "//" or a trailing '/' */
        if (i == start)
            return 0;
        if (path[start] == '.' &&
            (i - start == 1 || (i - start == 2 && path[start + 1] == '.')))
            return 0;
    }
    return path[i] == '\0' && i <= PATH_MAX_LEN;
}

static int is_root(const char *path)
{
    return path[0] == '/' && path[1] == '\0';
}

/* Checks a path; allow_root for the calls that make sense on "/". */
static int path_ok(const char *path, int allow_root, berth_error *err)
{
    if (!berth_driver_path_valid(path) || (!allow_root && is_root(path)))
        return berth_error_set(err, BERTH_EINVAL, "invalid path: %.200s",
                               path ? path : "(null)");
    return 0;
}

/*
 * Versions grow as SQLite's sqlite3_vfs does: each appends slots to the
 * struct, and a driver has the slots of its version only.
 */
size_t berth__driver_slots_end(unsigned version)
{
    switch (version) {
    case 2: /* up to leftover */
        return offsetof(berth_driver, lock);
    case 3:
        return sizeof(berth_driver);
    default:
        return 0;
    }
}

static int driver_ok(berth_driver *d, berth_error *err)
{
    assert(d != NULL);
    if (berth__driver_slots_end(d->version) == 0)
        return berth_error_set(err, BERTH_EUNSUPPORTED,
                               "driver version %u not supported", d->version);
    return 0;
}

static int unsupported(berth_driver *d, const char *op, berth_error *err)
{
    return berth_error_set(err, BERTH_EUNSUPPORTED,
                           "driver %s does not support %s",
                           d->name ? d->name : "?", op);
}

/* ---- checked entry points ---- */

/*
 * get: max is a plain limit (SIZE_MAX for none). On any failure out is left
 * empty, so a caller never sees a partial file.
 */
int berth_driver_get(berth_driver *d, berth_buf *out, const char *path,
                     size_t max, berth_error *err)
{
    int rc;

    assert(out != NULL);
    berth_buf_clear(out);
    if ((rc = driver_ok(d, err)) < 0 || (rc = path_ok(path, 0, err)) < 0)
        return rc;
    if (BERTH__SLOT(d, get) == NULL)
        return unsupported(d, "get", err);
    if ((rc = d->get(d, out, path, max, err)) < 0)
        berth_buf_clear(out);
    return rc;
}

int berth_driver_put(berth_driver *d, const char *path, const void *data,
                     size_t len, berth_error *err)
{
    int rc;

    assert(data != NULL || len == 0);
    if ((rc = driver_ok(d, err)) < 0 || (rc = path_ok(path, 0, err)) < 0)
        return rc;
    if (BERTH__SLOT(d, put) == NULL)
        return unsupported(d, "put", err);
    return d->put(d, path, data, len, err);
}

int berth_driver_put_if(berth_driver *d, const char *path, const void *data,
                        size_t len, const char *expected, berth_error *err)
{
    int rc;

    assert(data != NULL || len == 0);
    if ((rc = driver_ok(d, err)) < 0 || (rc = path_ok(path, 0, err)) < 0)
        return rc;
    if (BERTH__SLOT(d, put_if) == NULL)
        return unsupported(d, "conditional puts", err);
    return d->put_if(d, path, data, len, expected, err);
}

int berth_driver_reader(berth_driver *d, berth_reader **out, const char *path,
                        uint64_t offset, berth_error *err)
{
    int rc;

    assert(out != NULL);
    *out = NULL;
    if ((rc = driver_ok(d, err)) < 0 || (rc = path_ok(path, 0, err)) < 0)
        return rc;
    if (BERTH__SLOT(d, reader) == NULL)
        return unsupported(d, "reader", err);
    return d->reader(d, out, path, offset, err);
}

int berth_driver_writer(berth_driver *d, berth_writer **out, const char *path,
                        int append, berth_error *err)
{
    int rc;

    assert(out != NULL);
    *out = NULL;
    if ((rc = driver_ok(d, err)) < 0 || (rc = path_ok(path, 0, err)) < 0)
        return rc;
    if (BERTH__SLOT(d, writer) == NULL)
        return unsupported(d, "writer", err);
    return d->writer(d, out, path, append, err);
}

int berth_driver_stat(berth_driver *d, berth_stat_info *out, const char *path,
                      berth_error *err)
{
    int rc;

    assert(out != NULL);
    memset(out, 0, sizeof(*out));
    if ((rc = driver_ok(d, err)) < 0 || (rc = path_ok(path, 1, err)) < 0)
        return rc;
    if (BERTH__SLOT(d, stat) == NULL)
        return unsupported(d, "stat", err);
    return d->stat(d, out, path, err);
}

/* The names in all after cursor, as one last page. */
static int one_page(berth_strlist *out, berth_strlist *all,
                    const char *cursor, berth_buf *next, berth_error *err)
{
    int rc = 0;

    for (size_t i = 0; i < all->count && rc == 0; i++)
        if (strcmp(all->items[i], cursor) > 0)
            rc = berth_strlist_add(out, all->items[i], strlen(all->items[i]),
                                   err);
    berth_buf_clear(next);
    return rc;
}

/* One page, from list_page or else the whole of list; out is empty. */
static int page(berth_driver *d, berth_strlist *out, const char *path,
                const char *cursor, berth_buf *next, berth_error *err)
{
    berth_strlist all = BERTH_STRLIST_INIT;
    int rc;

    berth_buf_clear(next);
    if (BERTH__SLOT(d, list_page) != NULL)
        rc = d->list_page(d, out, path, cursor, next, err);
    else if ((rc = d->list(d, &all, path, err)) == 0)
        rc = one_page(out, &all, cursor, next, err);
    berth_strlist_dispose(&all);
    if (rc < 0) {
        berth_strlist_dispose(out);
        berth_buf_clear(next);
    }
    return rc;
}

static int list_ok(berth_driver *d, const char *path, berth_error *err)
{
    int rc;

    if ((rc = driver_ok(d, err)) < 0 || (rc = path_ok(path, 1, err)) < 0)
        return rc;
    if (BERTH__SLOT(d, list_page) == NULL && BERTH__SLOT(d, list) == NULL)
        return unsupported(d, "list", err);
    return 0;
}

int berth_driver_list_page(berth_driver *d, berth_strlist *out,
                           const char *path, const char *cursor,
                           berth_buf *next, berth_error *err)
{
    int rc;

    assert(out != NULL && out->count == 0 && cursor != NULL && next != NULL);
    berth_buf_clear(next);
    if ((rc = list_ok(d, path, err)) < 0)
        return rc;
    return page(d, out, path, cursor, next, err);
}

/* A driver without pages lists at once; pages are appended one after the
 * other, each sorted and after the last. */
int berth_driver_list(berth_driver *d, berth_strlist *out, const char *path,
                      berth_error *err)
{
    berth_buf cursor = BERTH_BUF_INIT, next = BERTH_BUF_INIT, swap;
    int rc;

    assert(out != NULL && out->count == 0);
    if ((rc = list_ok(d, path, err)) < 0)
        return rc;
    if (BERTH__SLOT(d, list_page) == NULL)
        rc = d->list(d, out, path, err);
    else
        do {
            berth_buf_clear(&next);
            rc = d->list_page(d, out, path, cursor.len ? cursor.ptr : "",
                              &next, err);
            if (rc == 0 && next.len > 0 && cursor.len == next.len &&
                memcmp(cursor.ptr, next.ptr, next.len) == 0)
                rc = berth_error_set(err, BERTH_EIO,
                                     "driver %s: the listing of %s does "
                                     "not advance",
                                     d->name ? d->name : "?", path);
            swap = cursor;
            cursor = next;
            next = swap;
        } while (rc == 0 && cursor.len > 0);
    if (rc < 0)
        berth_strlist_dispose(out);
    berth_buf_dispose(&cursor);
    berth_buf_dispose(&next);
    return rc;
}

int berth_driver_move(berth_driver *d, const char *from, const char *to,
                      berth_error *err)
{
    int rc;

    if ((rc = driver_ok(d, err)) < 0 || (rc = path_ok(from, 0, err)) < 0 ||
        (rc = path_ok(to, 0, err)) < 0)
        return rc;
    if (BERTH__SLOT(d, move) == NULL)
        return unsupported(d, "move", err);
    return d->move(d, from, to, err);
}

int berth_driver_remove(berth_driver *d, const char *path, berth_error *err)
{
    int rc;

    /* "/" is refused: removing the whole store is never what a caller
     * meant, and the fs driver's root must survive */
    if ((rc = driver_ok(d, err)) < 0 || (rc = path_ok(path, 0, err)) < 0)
        return rc;
    if (BERTH__SLOT(d, remove) == NULL)
        return unsupported(d, "remove", err);
    return d->remove(d, path, err);
}

int berth_driver_local_path(berth_driver *d, berth_buf *out, const char *path,
                            berth_error *err)
{
    int rc;

    assert(out != NULL);
    berth_buf_clear(out);
    if ((rc = driver_ok(d, err)) < 0 || (rc = path_ok(path, 0, err)) < 0)
        return rc;
    if (BERTH__SLOT(d, local_path) == NULL)
        return unsupported(d, "local paths", err);
    if ((rc = d->local_path(d, out, path, err)) < 0)
        berth_buf_clear(out);
    return rc;
}

int berth_driver_send(berth_driver *d, berth_send_kind *kind,
                      berth_buf *where, const char *path, berth_error *err)
{
    int rc;

    assert(kind != NULL && where != NULL);
    *kind = BERTH_SEND_FILE;
    berth_buf_clear(where);
    if ((rc = driver_ok(d, err)) < 0 || (rc = path_ok(path, 0, err)) < 0)
        return rc;
    if (BERTH__SLOT(d, send) != NULL)
        rc = d->send(d, kind, where, path, err);
    else if (BERTH__SLOT(d, local_path) != NULL)
        rc = d->local_path(d, where, path, err);
    else
        return unsupported(d, "hand-offs", err);
    if (rc < 0)
        berth_buf_clear(where);
    return rc;
}

int berth_driver_import(berth_driver *d, const char *path,
                        const char *local_file, berth_error *err)
{
    int rc;

    assert(local_file != NULL);
    if ((rc = driver_ok(d, err)) < 0 || (rc = path_ok(path, 0, err)) < 0)
        return rc;
    if (BERTH__SLOT(d, import) == NULL)
        return unsupported(d, "importing files", err);
    return d->import(d, path, local_file, err);
}

int berth_driver_leftover(berth_driver *d, const char *path,
                          int64_t cutoff_ns, int remove, berth_error *err)
{
    int rc;

    if ((rc = driver_ok(d, err)) < 0 || (rc = path_ok(path, 0, err)) < 0)
        return rc;
    if (BERTH__SLOT(d, leftover) == NULL)
        return unsupported(d, "leftovers", err);
    return d->leftover(d, path, cutoff_ns, remove, err);
}

int berth_driver_list_version(berth_driver *d, const char *path,
                              char out[BERTH_LIST_VERSION_MAX],
                              berth_error *err)
{
    int rc;

    out[0] = '\0';
    if ((rc = driver_ok(d, err)) < 0 || (rc = path_ok(path, 1, err)) < 0)
        return rc;
    if (BERTH__SLOT(d, list_version) == NULL)
        return unsupported(d, "list versions", err);
    if ((rc = d->list_version(d, path, out, err)) < 0)
        out[0] = '\0';
    return rc;
}

int berth_driver_lock(berth_driver *d, berth_lease **out, const char *path,
                      berth_error *err)
{
    int rc;

    assert(out != NULL);
    *out = NULL;
    if ((rc = driver_ok(d, err)) < 0 || (rc = path_ok(path, 0, err)) < 0)
        return rc;
    if (BERTH__SLOT(d, lock) == NULL)
        return 0; /* one process: nobody to exclude */
    return d->lock(d, out, path, err);
}

void berth_lease_free(berth_lease *l)
{
    if (l != NULL)
        l->free(l);
}

void berth_driver_free(berth_driver *d)
{
    if (d != NULL && d->free != NULL)
        d->free(d);
}

/* ---- readers and writers ---- */

int berth_reader_read(berth_reader *r, void *buf, size_t cap, size_t *n_out,
                      berth_error *err)
{
    assert(r != NULL && n_out != NULL && (buf != NULL || cap == 0));
    *n_out = 0;
    return r->read(r, buf, cap, n_out, err);
}

void berth_reader_free(berth_reader *r)
{
    if (r != NULL)
        r->free(r);
}

int berth_writer_write(berth_writer *w, const void *data, size_t len,
                       berth_error *err)
{
    assert(w != NULL && (data != NULL || len == 0));
    return w->write(w, data, len, err);
}

uint64_t berth_writer_size(berth_writer *w)
{
    assert(w != NULL);
    return w->size(w);
}

int berth_writer_commit(berth_writer *w, berth_error *err)
{
    assert(w != NULL);
    return w->commit(w, err);
}

int berth_writer_cancel(berth_writer *w, berth_error *err)
{
    assert(w != NULL);
    return w->cancel(w, err);
}

int berth_writer_truncate(berth_writer *w, uint64_t size, berth_error *err)
{
    assert(w != NULL);
    if (size > w->size(w))
        return berth_error_set(err, BERTH_EINVAL,
                               "cannot truncate to %" PRIu64 " bytes: the "
                               "file has %" PRIu64,
                               size, w->size(w));
    return w->truncate(w, size, err);
}

void berth_writer_free(berth_writer *w)
{
    if (w != NULL)
        w->free(w);
}
