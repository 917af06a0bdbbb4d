/*
 * The fault-injecting driver: a wrapper that counts every operation (each
 * vtable call, and each read, write, commit and cancel of the readers and
 * writers it hands out) and makes the Nth one fail. Crash-safety tests arm
 * it at every N in turn and check the store's invariants after each.
 *
 * A failing operation never reaches the inner driver, except a short write,
 * which writes half of its bytes first. Freeing and size() are not
 * operations: they cannot fail, and a "dead" process must still be cleaned
 * up by the test.
 */
#include <assert.h>
#include <stdlib.h>

#include "internal.h"

typedef struct fault_driver {
    berth_driver base;
    berth_driver *inner;
    berth_fault_mode mode;
    uint64_t nth;
    uint64_t count;
    berth_fault_watch_fn watch;
    void *watch_arg;
} fault_driver;

/* Wrappers keep only the counter's driver, and never touch it when freed. */
typedef struct fault_reader {
    berth_reader base;
    fault_driver *fd;
    berth_reader *inner;
} fault_reader;

typedef struct fault_writer {
    berth_writer base;
    fault_driver *fd;
    berth_writer *inner;
} fault_writer;

enum { PASS = 0, FAIL = 1, SHORT = 2 };

/*
 * Count one operation and say what happens to it. A short write only
 * applies to writes that can be partial; anything else fails whole.
 */
static int step(fault_driver *fd, int can_be_short)
{
    uint64_t n = ++fd->count;

    if (fd->nth == 0)
        return PASS;
    switch (fd->mode) {
    case BERTH_FAULT_FAIL_ONE:
        return n == fd->nth ? FAIL : PASS;
    case BERTH_FAULT_CRASH:
        return n >= fd->nth ? FAIL : PASS;
    case BERTH_FAULT_SHORT_WRITE:
        if (n != fd->nth)
            return PASS;
        return can_be_short ? SHORT : FAIL;
    case BERTH_FAULT_OFF:
    default:
        return PASS;
    }
}

/* A driver operation about to happen: tell the watcher, then count it. */
static int enter(fault_driver *fd, const char *op, const char *path,
                 const char *to)
{
    if (fd->watch)
        fd->watch(fd->watch_arg, op, path, to);
    return step(fd, 0);
}

static int injected(fault_driver *fd, berth_error *err)
{
    if (fd->mode == BERTH_FAULT_CRASH)
        return berth_error_set(err, BERTH_EIO,
                               "injected fault at operation %llu "
                               "(crashed at %llu)",
                               (unsigned long long)fd->count,
                               (unsigned long long)fd->nth);
    return berth_error_set(err, BERTH_EIO, "injected fault at operation %llu",
                           (unsigned long long)fd->count);
}

/* ---- reader ---- */

static int fault_reader_read(berth_reader *r, void *buf, size_t cap,
                             size_t *n_out, berth_error *err)
{
    fault_reader *fr = (fault_reader *)r;

    if (step(fr->fd, 0) != PASS)
        return injected(fr->fd, err);
    return berth_reader_read(fr->inner, buf, cap, n_out, err);
}

static void fault_reader_free(berth_reader *r)
{
    fault_reader *fr = (fault_reader *)r;

    berth_reader_free(fr->inner);
    free(fr);
}

/* ---- writer ---- */

static int fault_writer_write(berth_writer *w, const void *data, size_t len,
                              berth_error *err)
{
    fault_writer *fw = (fault_writer *)w;
    int rc;

    switch (step(fw->fd, 1)) {
    case PASS:
        return berth_writer_write(fw->inner, data, len, err);
    case SHORT:
        /* as a full disk or a kill in the middle of write() would */
        if ((rc = berth_writer_write(fw->inner, data, len / 2, err)) < 0)
            return rc;
        return injected(fw->fd, err);
    default:
        return injected(fw->fd, err);
    }
}

static uint64_t fault_writer_size(berth_writer *w)
{
    return berth_writer_size(((fault_writer *)w)->inner);
}

static int fault_writer_commit(berth_writer *w, berth_error *err)
{
    fault_writer *fw = (fault_writer *)w;

    if (step(fw->fd, 0) != PASS)
        return injected(fw->fd, err);
    return berth_writer_commit(fw->inner, err);
}

static int fault_writer_cancel(berth_writer *w, berth_error *err)
{
    fault_writer *fw = (fault_writer *)w;

    if (step(fw->fd, 0) != PASS)
        return injected(fw->fd, err);
    return berth_writer_cancel(fw->inner, err);
}

static int fault_writer_truncate(berth_writer *w, uint64_t size,
                                 berth_error *err)
{
    fault_writer *fw = (fault_writer *)w;

    if (step(fw->fd, 0) != PASS)
        return injected(fw->fd, err);
    return berth_writer_truncate(fw->inner, size, err);
}

static void fault_writer_free(berth_writer *w)
{
    fault_writer *fw = (fault_writer *)w;

    berth_writer_free(fw->inner);
    free(fw);
}

/* ---- driver ---- */

/*
 * The inner driver is called through its vtable, not through the checked
 * entry points: the path was checked once by our caller's entry point.
 */

static int fault_get(berth_driver *d, berth_buf *out, const char *path,
                     size_t max, berth_error *err)
{
    fault_driver *fd = (fault_driver *)d;

    if (enter(fd, "get", path, NULL) != PASS)
        return injected(fd, err);
    return fd->inner->get(fd->inner, out, path, max, err);
}

static int fault_put(berth_driver *d, const char *path, const void *data,
                     size_t len, berth_error *err)
{
    fault_driver *fd = (fault_driver *)d;

    /* put is atomic: even a short write leaves nothing behind */
    if (enter(fd, "put", path, NULL) != PASS)
        return injected(fd, err);
    return fd->inner->put(fd->inner, path, data, len, err);
}

static int fault_reader_open(berth_driver *d, berth_reader **out,
                             const char *path, uint64_t offset,
                             berth_error *err)
{
    fault_driver *fd = (fault_driver *)d;
    fault_reader *fr;
    berth_reader *inner = NULL;
    int rc;

    if (enter(fd, "reader", path, NULL) != PASS)
        return injected(fd, err);
    if ((fr = calloc(1, sizeof(*fr))) == NULL)
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    if ((rc = fd->inner->reader(fd->inner, &inner, path, offset, err)) < 0) {
        free(fr);
        return rc;
    }
    fr->base.read = fault_reader_read;
    fr->base.free = fault_reader_free;
    fr->fd = fd;
    fr->inner = inner;
    *out = &fr->base;
    return 0;
}

static int fault_writer_open(berth_driver *d, berth_writer **out,
                             const char *path, int append, berth_error *err)
{
    fault_driver *fd = (fault_driver *)d;
    fault_writer *fw;
    berth_writer *inner = NULL;
    int rc;

    if (enter(fd, "writer", path, NULL) != PASS)
        return injected(fd, err);
    if ((fw = calloc(1, sizeof(*fw))) == NULL)
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    if ((rc = fd->inner->writer(fd->inner, &inner, path, append, err)) < 0) {
        free(fw);
        return rc;
    }
    fw->base.write = fault_writer_write;
    fw->base.size = fault_writer_size;
    fw->base.commit = fault_writer_commit;
    fw->base.cancel = fault_writer_cancel;
    fw->base.free = fault_writer_free;
    fw->base.truncate = fault_writer_truncate;
    fw->fd = fd;
    fw->inner = inner;
    *out = &fw->base;
    return 0;
}

static int fault_stat(berth_driver *d, berth_stat_info *out, const char *path,
                      berth_error *err)
{
    fault_driver *fd = (fault_driver *)d;

    if (enter(fd, "stat", path, NULL) != PASS)
        return injected(fd, err);
    return fd->inner->stat(fd->inner, out, path, err);
}

static int fault_list(berth_driver *d, berth_strlist *out, const char *path,
                      berth_error *err)
{
    fault_driver *fd = (fault_driver *)d;

    if (enter(fd, "list", path, NULL) != PASS)
        return injected(fd, err);
    return fd->inner->list(fd->inner, out, path, err);
}

static int fault_move(berth_driver *d, const char *from, const char *to,
                      berth_error *err)
{
    fault_driver *fd = (fault_driver *)d;

    if (enter(fd, "move", from, to) != PASS)
        return injected(fd, err);
    return fd->inner->move(fd->inner, from, to, err);
}

static int fault_remove(berth_driver *d, const char *path, berth_error *err)
{
    fault_driver *fd = (fault_driver *)d;

    if (enter(fd, "remove", path, NULL) != PASS)
        return injected(fd, err);
    return fd->inner->remove(fd->inner, path, err);
}

static int fault_local_path(berth_driver *d, berth_buf *out, const char *path,
                            berth_error *err)
{
    fault_driver *fd = (fault_driver *)d;

    if (enter(fd, "local_path", path, NULL) != PASS)
        return injected(fd, err);
    return fd->inner->local_path(fd->inner, out, path, err);
}

static int fault_import(berth_driver *d, const char *path,
                        const char *local_file, berth_error *err)
{
    fault_driver *fd = (fault_driver *)d;

    if (enter(fd, "import", path, NULL) != PASS)
        return injected(fd, err);
    return fd->inner->import(fd->inner, path, local_file, err);
}

static int fault_leftover(berth_driver *d, const char *path,
                          int64_t cutoff_ns, int remove, berth_error *err)
{
    fault_driver *fd = (fault_driver *)d;

    if (enter(fd, "leftover", path, NULL) != PASS)
        return injected(fd, err);
    return fd->inner->leftover(fd->inner, path, cutoff_ns, remove, err);
}

static int fault_list_version(berth_driver *d, const char *path,
                              char out[BERTH_LIST_VERSION_MAX],
                              berth_error *err)
{
    fault_driver *fd = (fault_driver *)d;

    if (enter(fd, "list_version", path, NULL) != PASS)
        return injected(fd, err);
    return fd->inner->list_version(fd->inner, path, out, err);
}

/* The inner lease is handed out as it is: releasing is not an operation. */
static int fault_lock(berth_driver *d, berth_lease **out, const char *path,
                      berth_error *err)
{
    fault_driver *fd = (fault_driver *)d;

    if (enter(fd, "lock", path, NULL) != PASS)
        return injected(fd, err);
    return fd->inner->lock(fd->inner, out, path, err);
}

static int fault_put_if(berth_driver *d, const char *path, const void *data,
                        size_t len, const char *expected, berth_error *err)
{
    fault_driver *fd = (fault_driver *)d;

    if (enter(fd, "put_if", path, NULL) != PASS)
        return injected(fd, err);
    return fd->inner->put_if(fd->inner, path, data, len, expected, err);
}

static int fault_list_page(berth_driver *d, berth_strlist *out,
                           const char *path, const char *cursor,
                           berth_buf *next, berth_error *err)
{
    fault_driver *fd = (fault_driver *)d;

    if (enter(fd, "list", path, NULL) != PASS)
        return injected(fd, err);
    return fd->inner->list_page(fd->inner, out, path, cursor, next, err);
}

static int fault_send(berth_driver *d, berth_send_kind *kind,
                      berth_buf *where, const char *path, berth_error *err)
{
    fault_driver *fd = (fault_driver *)d;

    if (enter(fd, "send", path, NULL) != PASS)
        return injected(fd, err);
    return fd->inner->send(fd->inner, kind, where, path, err);
}

static void fault_free(berth_driver *d)
{
    fault_driver *fd = (fault_driver *)d;

    berth_driver_free(fd->inner);
    free(fd);
}

/*
 * Every slot of berth_driver after its name, with its wrapper: the one
 * table the fault driver is made from. A slot added to the struct and not
 * here fails to compile (below).
 */
#define FAULT_SLOTS(X)                                                       \
    X(get, fault_get)                                                        \
    X(put, fault_put)                                                        \
    X(reader, fault_reader_open)                                             \
    X(writer, fault_writer_open)                                             \
    X(stat, fault_stat)                                                      \
    X(list, fault_list)                                                      \
    X(move, fault_move)                                                      \
    X(remove, fault_remove)                                                  \
    X(local_path, fault_local_path)                                          \
    X(free, fault_free)                                                      \
    X(import, fault_import)                                                  \
    X(list_version, fault_list_version)                                      \
    X(leftover, fault_leftover)                                              \
    X(lock, fault_lock)                                                      \
    X(put_if, fault_put_if)                                                  \
    X(list_page, fault_list_page)                                            \
    X(send, fault_send)

#define COUNT_SLOT(slot, fn) +1
_Static_assert(offsetof(berth_driver, name) + sizeof(const char *) +
                       (0 FAULT_SLOTS(COUNT_SLOT)) * sizeof(void (*)(void)) ==
                   sizeof(berth_driver),
               "a slot of berth_driver is missing from FAULT_SLOTS");

/*
 * On failure (BERTH_ENOMEM, or an inner driver of a version not known)
 * inner stays the caller's.
 */
int berth_driver_fault_new(berth_driver **out, berth_driver *inner,
                           berth_error *err)
{
    fault_driver *fd;

    assert(out != NULL && inner != NULL);
    *out = NULL;
    if (berth__driver_slots_end(inner->version) == 0)
        return berth_error_set(err, BERTH_EUNSUPPORTED,
                               "driver version %u not supported",
                               inner->version);
    if ((fd = calloc(1, sizeof(*fd))) == NULL)
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    fd->base.version = BERTH_DRIVER_VERSION;
    fd->base.name = "fault";
    /* mirror the inner driver's slots: what it cannot do is unsupported
     * here too, and not an operation */
#define MIRROR_SLOT(slot, fn)                                                \
    fd->base.slot = BERTH__SLOT(inner, slot) ? fn : NULL;
    FAULT_SLOTS(MIRROR_SLOT)
#undef MIRROR_SLOT
    fd->base.free = fault_free;
    fd->inner = inner;
    *out = &fd->base;
    return 0;
}

/* Any other driver is recognised by its free function and left alone. */
static fault_driver *as_fault(berth_driver *d)
{
    return d != NULL && d->free == fault_free ? (fault_driver *)d : NULL;
}

void berth_driver_fault_arm(berth_driver *d, berth_fault_mode mode,
                            uint64_t nth)
{
    fault_driver *fd = as_fault(d);

    if (fd == NULL)
        return;
    fd->mode = mode;
    fd->nth = nth;
    fd->count = 0;
}

uint64_t berth_driver_fault_count(berth_driver *d)
{
    fault_driver *fd = as_fault(d);

    return fd ? fd->count : 0;
}

void berth_driver_fault_watch(berth_driver *d, berth_fault_watch_fn fn,
                              void *arg)
{
    fault_driver *fd = as_fault(d);

    if (fd == NULL)
        return;
    fd->watch = fn;
    fd->watch_arg = arg;
}
