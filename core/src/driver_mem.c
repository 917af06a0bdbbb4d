/*
 * The in-memory driver, for tests: the same semantics as the filesystem
 * driver without touching a disk.
 *
 * Files live in one array sorted bytewise by full path; directories are
 * implicit (a directory exists while some file lies under it, and "/"
 * always exists). Everything under a directory is then one contiguous run
 * of the array. A file is reference counted, like an inode: a reader or
 * writer keeps its file alive after a put replaced it or a remove dropped
 * it, exactly as an open descriptor does. Not thread-safe.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "berth/sys/driver.h"

typedef struct mem_file {
    char *path;
    size_t path_len;
    berth_buf data;
    int64_t mtime_ns;
    uint64_t serial; /* its version: the driver's count of changes */
    int locked;      /* a writer or a lease holds it */
    unsigned refs;
} mem_file;

typedef struct mem_driver {
    berth_driver base;
    mem_file **files; /* sorted by path */
    size_t count;
    size_t cap;
    uint64_t changes; /* file versions handed out */
} mem_driver;

typedef struct mem_reader {
    berth_reader base;
    mem_file *file;
    uint64_t pos;
} mem_reader;

/* Freeing a writer touches only its file, never the driver (see fs). */
typedef struct mem_writer {
    berth_writer base;
    mem_driver *md;
    mem_file *file;
    int cancelled;
} mem_writer;

/* Room for a driver path (at most 4096 bytes), a '/' and a NUL. */
#define KEY_MAX 4098

/* ---- files ---- */

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A file's content changed: it gets a version no file had. */
static void changed(mem_driver *md, mem_file *f)
{
    f->mtime_ns = now_ns();
    f->serial = ++md->changes;
}

static mem_file *file_new(mem_driver *md, const char *path, size_t len)
{
    mem_file *f = calloc(1, sizeof(*f));

    if (f == NULL || (f->path = malloc(len + 1)) == NULL) {
        free(f);
        return NULL;
    }
    memcpy(f->path, path, len);
    f->path[len] = '\0';
    f->path_len = len;
    f->refs = 1;
    changed(md, f);
    return f;
}

static void file_unref(mem_file *f)
{
    if (f == NULL || --f->refs > 0)
        return;
    berth_buf_dispose(&f->data);
    free(f->path);
    free(f);
}

/* ---- the sorted array ---- */

/* Bytewise order of a file's path against key[0..klen). */
static int cmp_key(const mem_file *f, const char *key, size_t klen)
{
    size_t m = f->path_len < klen ? f->path_len : klen;
    int r = memcmp(f->path, key, m);

    if (r != 0)
        return r;
    return f->path_len < klen ? -1 : f->path_len > klen ? 1 : 0;
}

/* Index of the first file whose path is >= key. */
static size_t lower_bound(const mem_driver *md, const char *key, size_t klen)
{
    size_t lo = 0, hi = md->count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_key(md->files[mid], key, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Index of the file at key, or -1. */
static long find(const mem_driver *md, const char *key, size_t klen)
{
    size_t i = lower_bound(md, key, klen);

    if (i < md->count && cmp_key(md->files[i], key, klen) == 0)
        return (long)i;
    return -1;
}

/* The run [*lo, *hi) of files under directory path; empty if none. */
static void children(const mem_driver *md, const char *path, size_t *lo,
                     size_t *hi)
{
    char key[KEY_MAX];
    size_t klen = strlen(path);

    assert(klen < KEY_MAX - 1);
    memcpy(key, path, klen);
    if (klen == 1) /* "/" */
        klen = 0;
    key[klen++] = '/';
    *lo = *hi = lower_bound(md, key, klen);
    while (*hi < md->count && md->files[*hi]->path_len > klen &&
           memcmp(md->files[*hi]->path, key, klen) == 0)
        (*hi)++;
}

static int is_dir(const mem_driver *md, const char *path)
{
    size_t lo, hi;

    children(md, path, &lo, &hi);
    return lo < hi;
}

/* 1 when some proper ancestor of path is a file. */
static int ancestor_is_file(const mem_driver *md, const char *path)
{
    for (size_t i = 1; path[i] != '\0'; i++)
        if (path[i] == '/' && find(md, path, i) >= 0)
            return 1;
    return 0;
}

static int reserve(mem_driver *md, size_t extra, berth_error *err)
{
    size_t cap;
    mem_file **files;

    if (md->count + extra <= md->cap)
        return 0;
    cap = md->cap ? md->cap : 16;
    while (cap < md->count + extra)
        cap *= 2;
    if ((files = realloc(md->files, cap * sizeof(*files))) == NULL)
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    md->files = files;
    md->cap = cap;
    return 0;
}

/* Insert at i; room must have been reserved. */
static void insert_at(mem_driver *md, size_t i, mem_file *f)
{
    memmove(md->files + i + 1, md->files + i,
            (md->count - i) * sizeof(*md->files));
    md->files[i] = f;
    md->count++;
}

/* Drop files [lo, hi) from the array. */
static void remove_range(mem_driver *md, size_t lo, size_t hi)
{
    if (lo == hi)
        return; /* files may be NULL: no memmove then */
    for (size_t i = lo; i < hi; i++)
        file_unref(md->files[i]);
    memmove(md->files + lo, md->files + hi,
            (md->count - hi) * sizeof(*md->files));
    md->count -= hi - lo;
}

static int compare_files(const void *a, const void *b)
{
    const mem_file *fa = *(mem_file *const *)a;
    const mem_file *fb = *(mem_file *const *)b;

    return cmp_key(fa, fb->path, fb->path_len);
}

/* Where a new file may go: not over a directory, not under a file. */
static int check_creatable(const mem_driver *md, const char *path,
                           berth_error *err)
{
    if (is_dir(md, path))
        return berth_error_set(err, BERTH_EEXISTS,
                               "conflicts with an existing directory: %s",
                               path);
    if (ancestor_is_file(md, path))
        return berth_error_set(err, BERTH_EEXISTS,
                               "conflicts with an existing file: %s", path);
    return 0;
}

/* The file at path, or ENOTFOUND (a directory is not a file). *out is
 * always written, so no caller reads it unset on a failure path. */
static int lookup_file(mem_file **out, const mem_driver *md, const char *path,
                       berth_error *err)
{
    long i = find(md, path, strlen(path));

    *out = NULL;
    if (i >= 0) {
        *out = md->files[i];
        return 0;
    }
    if (is_dir(md, path))
        return berth_error_set(err, BERTH_ENOTFOUND, "not a file: %s", path);
    return berth_error_set(err, BERTH_ENOTFOUND, "path not found: %s", path);
}

/* ---- get / put ---- */

static int mem_get(berth_driver *d, berth_buf *out, const char *path,
                   size_t max, berth_error *err)
{
    mem_driver *md = (mem_driver *)d;
    mem_file *f;
    int rc;

    if ((rc = lookup_file(&f, md, path, err)) < 0)
        return rc;
    if (f->data.len > max)
        return berth_error_set(err, BERTH_ETOOLARGE,
                               "file too large: %s (%zu bytes, max %zu)",
                               path, f->data.len, max);
    berth_buf_clear(out);
    return berth_buf_put(out, f->data.ptr, f->data.len, err);
}

static int mem_put(berth_driver *d, const char *path, const void *data,
                   size_t len, berth_error *err)
{
    mem_driver *md = (mem_driver *)d;
    size_t plen = strlen(path), i;
    mem_file *f;
    int rc;

    if ((rc = check_creatable(md, path, err)) < 0 ||
        (rc = reserve(md, 1, err)) < 0)
        return rc;
    if ((f = file_new(md, path, plen)) == NULL)
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    if ((rc = berth_buf_put(&f->data, data, len, err)) < 0) {
        file_unref(f);
        return rc;
    }
    /* a new file replaces the old one, as rename() does: open readers
     * and writers keep the old one */
    i = lower_bound(md, path, plen);
    if (i < md->count && cmp_key(md->files[i], path, plen) == 0) {
        file_unref(md->files[i]);
        md->files[i] = f;
    } else {
        insert_at(md, i, f);
    }
    return 0;
}

static void version_of(char out[BERTH_STAT_VERSION_MAX], const mem_file *f)
{
    snprintf(out, BERTH_STAT_VERSION_MAX, "m%llu",
             (unsigned long long)f->serial);
}

static int mem_put_if(berth_driver *d, const char *path, const void *data,
                      size_t len, const char *expected, berth_error *err)
{
    mem_driver *md = (mem_driver *)d;
    long i = find(md, path, strlen(path));
    char now[BERTH_STAT_VERSION_MAX];

    if (i >= 0)
        version_of(now, md->files[i]);
    if (expected ? i < 0 || strcmp(now, expected) != 0 : i >= 0)
        return berth_error_set(err, BERTH_ECHANGED, "changed meanwhile: %s",
                               path);
    return mem_put(d, path, data, len, err);
}

/* ---- reader ---- */

static int mem_reader_read(berth_reader *r, void *buf, size_t cap,
                           size_t *n_out, berth_error *err)
{
    mem_reader *mr = (mem_reader *)r;
    size_t len = mr->file->data.len, n = 0;

    (void)err;
    /* a truncating writer may have shrunk the file under us */
    if (mr->pos < len) {
        n = len - (size_t)mr->pos;
        if (n > cap)
            n = cap;
        memcpy(buf, mr->file->data.ptr + mr->pos, n);
    }
    mr->pos += n;
    *n_out = n;
    return 0;
}

static void mem_reader_free(berth_reader *r)
{
    mem_reader *mr = (mem_reader *)r;

    file_unref(mr->file);
    free(mr);
}

static int mem_reader_open(berth_driver *d, berth_reader **out,
                           const char *path, uint64_t offset,
                           berth_error *err)
{
    mem_driver *md = (mem_driver *)d;
    mem_reader *mr;
    mem_file *f;
    int rc;

    if ((rc = lookup_file(&f, md, path, err)) < 0)
        return rc;
    if (offset > f->data.len)
        return berth_error_set(err, BERTH_ERANGE,
                               "offset %llu past the end of %s (%zu bytes)",
                               (unsigned long long)offset, path, f->data.len);
    if ((mr = calloc(1, sizeof(*mr))) == NULL)
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    mr->base.read = mem_reader_read;
    mr->base.free = mem_reader_free;
    mr->file = f;
    f->refs++;
    mr->pos = offset;
    *out = &mr->base;
    return 0;
}

/* ---- writer ---- */

/* Lock the file at path, made empty when missing, for a writer or a
 * lease: one holder at a time, as the fs driver's flock. */
static int lock_file(mem_file **out, mem_driver *md, const char *path,
                     berth_error *err)
{
    size_t plen = strlen(path), i = lower_bound(md, path, plen);
    mem_file *f;
    int rc;

    *out = NULL;
    if (i < md->count && cmp_key(md->files[i], path, plen) == 0) {
        f = md->files[i];
        if (f->locked)
            return berth_error_set(err, BERTH_EBUSY, "busy: %s", path);
    } else {
        if ((rc = check_creatable(md, path, err)) < 0 ||
            (rc = reserve(md, 1, err)) < 0)
            return rc;
        if ((f = file_new(md, path, plen)) == NULL)
            return berth_error_set(err, BERTH_ENOMEM, "out of memory");
        insert_at(md, i, f);
    }
    f->locked = 1;
    f->refs++;
    *out = f;
    return 0;
}

static void unlock_file(mem_file *f)
{
    f->locked = 0;
    file_unref(f);
}

static int mem_writer_write(berth_writer *w, const void *data, size_t len,
                            berth_error *err)
{
    mem_writer *mw = (mem_writer *)w;
    int rc;

    if (mw->cancelled)
        return berth_error_set(err, BERTH_EINVAL, "writer was cancelled");
    if ((rc = berth_buf_put(&mw->file->data, data, len, err)) < 0)
        return rc;
    changed(mw->md, mw->file);
    return 0;
}

static uint64_t mem_writer_size(berth_writer *w)
{
    return ((mem_writer *)w)->file->data.len;
}

static int mem_writer_commit(berth_writer *w, berth_error *err)
{
    if (((mem_writer *)w)->cancelled)
        return berth_error_set(err, BERTH_EINVAL, "writer was cancelled");
    return 0;
}

static int mem_writer_cancel(berth_writer *w, berth_error *err)
{
    mem_writer *mw = (mem_writer *)w;
    mem_driver *md = mw->md;
    long i;

    (void)err;
    if (mw->cancelled)
        return 0;
    mw->cancelled = 1;
    /* only if the path still holds our file: a put may have replaced it */
    i = find(md, mw->file->path, mw->file->path_len);
    if (i >= 0 && md->files[i] == mw->file)
        remove_range(md, (size_t)i, (size_t)i + 1);
    return 0;
}

static int mem_writer_truncate(berth_writer *w, uint64_t size,
                               berth_error *err)
{
    mem_writer *mw = (mem_writer *)w;

    if (mw->cancelled)
        return berth_error_set(err, BERTH_EINVAL, "writer was cancelled");
    mw->file->data.len = (size_t)size;
    if (mw->file->data.ptr != NULL)
        mw->file->data.ptr[size] = '\0'; /* a buf's content stays a string */
    changed(mw->md, mw->file);
    return 0;
}

static void mem_writer_free(berth_writer *w)
{
    mem_writer *mw = (mem_writer *)w;

    unlock_file(mw->file);
    free(mw);
}

static int mem_writer_open(berth_driver *d, berth_writer **out,
                           const char *path, int append, berth_error *err)
{
    mem_driver *md = (mem_driver *)d;
    mem_writer *mw;
    mem_file *f;
    int rc;

    if ((mw = calloc(1, sizeof(*mw))) == NULL)
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    if ((rc = lock_file(&f, md, path, err)) < 0) {
        free(mw);
        return rc;
    }
    if (!append && f->data.len > 0) {
        berth_buf_clear(&f->data);
        changed(md, f);
    }
    mw->base.write = mem_writer_write;
    mw->base.size = mem_writer_size;
    mw->base.commit = mem_writer_commit;
    mw->base.cancel = mem_writer_cancel;
    mw->base.free = mem_writer_free;
    mw->base.truncate = mem_writer_truncate;
    mw->md = md;
    mw->file = f;
    *out = &mw->base;
    return 0;
}

/* ---- lock ---- */

typedef struct mem_lease {
    berth_lease base;
    mem_file *file;
} mem_lease;

static void mem_lease_free(berth_lease *l)
{
    mem_lease *ml = (mem_lease *)l;

    unlock_file(ml->file);
    free(ml);
}

static int mem_lock(berth_driver *d, berth_lease **out, const char *path,
                    berth_error *err)
{
    mem_lease *ml;
    int rc;

    if ((ml = calloc(1, sizeof(*ml))) == NULL)
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    if ((rc = lock_file(&ml->file, (mem_driver *)d, path, err)) < 0) {
        free(ml);
        return rc;
    }
    ml->base.free = mem_lease_free;
    *out = &ml->base;
    return 0;
}

/* ---- stat / list ---- */

static int mem_stat(berth_driver *d, berth_stat_info *out, const char *path,
                    berth_error *err)
{
    mem_driver *md = (mem_driver *)d;
    long i = find(md, path, strlen(path));
    size_t lo, hi;

    if (i >= 0) {
        out->is_dir = 0;
        out->size = md->files[i]->data.len;
        out->mtime_ns = md->files[i]->mtime_ns;
        version_of(out->version, md->files[i]);
        return 0;
    }
    children(md, path, &lo, &hi);
    if (lo == hi && strcmp(path, "/") != 0)
        return berth_error_set(err, BERTH_ENOTFOUND, "path not found: %s",
                               path);
    /* a directory changes when something under it does */
    out->is_dir = 1;
    out->size = 0;
    out->mtime_ns = 0;
    for (; lo < hi; lo++)
        if (md->files[lo]->mtime_ns > out->mtime_ns)
            out->mtime_ns = md->files[lo]->mtime_ns;
    return 0;
}

/* Names per page: small, so that the specs page through listings. */
#define MEM_LIST_PAGE 100

/* All names of path's children, sorted. */
static int list_all(mem_driver *md, berth_strlist *out, const char *path,
                    berth_error *err)
{
    size_t lo, hi, skip = strlen(path);
    const char *last = NULL;
    size_t last_len = 0;
    int rc;

    children(md, path, &lo, &hi);
    if (lo == hi) {
        if (skip == 1) /* "/" always exists */
            return 0;
        /* a file has no children: ENOTFOUND, as for the fs driver */
        return berth_error_set(err, BERTH_ENOTFOUND, "%s: %s",
                               find(md, path, skip) >= 0 ? "not a directory"
                                                         : "path not found",
                               path);
    }
    if (skip == 1)
        skip = 0;
    skip++; /* the '/' */
    for (; lo < hi; lo++) {
        const char *name = md->files[lo]->path + skip;
        const char *slash = strchr(name, '/');
        size_t len = slash ? (size_t)(slash - name) : strlen(name);

        /* files of one subdirectory are contiguous, so a repeated name is
         * always the previous one */
        if (last && len == last_len && memcmp(name, last, len) == 0)
            continue;
        if ((rc = berth_strlist_add(out, name, len, err)) < 0)
            return rc;
        last = name;
        last_len = len;
    }
    /* "b-x" sorts before "b/..." in the array, but after "b" as a name */
    berth_strlist_sort(out);
    return 0;
}

/* A page ends with the name its cursor is: the next one starts after it. */
static int mem_list_page(berth_driver *d, berth_strlist *out,
                         const char *path, const char *cursor,
                         berth_buf *next, berth_error *err)
{
    berth_strlist all = BERTH_STRLIST_INIT;
    size_t i = 0, n = 0;
    int rc;

    if ((rc = list_all((mem_driver *)d, &all, path, err)) < 0)
        goto done;
    while (i < all.count && strcmp(all.items[i], cursor) <= 0)
        i++;
    for (; i < all.count && n < MEM_LIST_PAGE; i++, n++)
        if ((rc = berth_strlist_add(out, all.items[i], strlen(all.items[i]),
                                    err)) < 0)
            goto done;
    if (i < all.count)
        rc = berth_buf_put(next, all.items[i - 1], strlen(all.items[i - 1]),
                           err);
done:
    berth_strlist_dispose(&all);
    return rc;
}

/* ---- move / remove ---- */

static int mem_move(berth_driver *d, const char *from, const char *to,
                    berth_error *err)
{
    mem_driver *md = (mem_driver *)d;
    size_t from_len = strlen(from), to_len = strlen(to), lo, hi, n, k;
    long src = find(md, from, from_len), dst;
    char **paths = NULL;
    int rc = 0;

    children(md, from, &lo, &hi);
    if (src < 0 && lo == hi)
        return berth_error_set(err, BERTH_ENOTFOUND, "path not found: %s",
                               from);
    if (strcmp(from, to) == 0)
        return 0;
    if (strncmp(to, from, from_len) == 0 && to[from_len] == '/')
        return berth_error_set(err, BERTH_EINVAL,
                               "cannot move %s into itself", from);
    dst = find(md, to, to_len);
    /* never merge or replace directories, only files */
    if (is_dir(md, to) || (src < 0 && dst >= 0))
        return berth_error_set(err, BERTH_EEXISTS, "destination exists: %s",
                               to);
    if (ancestor_is_file(md, to))
        return berth_error_set(err, BERTH_EEXISTS,
                               "conflicts with an existing file: %s", to);
    if (src >= 0) {
        lo = (size_t)src;
        hi = lo + 1;
    }
    /* make every new name first, so running out of memory changes nothing */
    n = hi - lo;
    if ((paths = calloc(n, sizeof(*paths))) == NULL) {
        rc = berth_error_set(err, BERTH_ENOMEM, "out of memory");
        goto done;
    }
    for (k = 0; k < n; k++) {
        const mem_file *f = md->files[lo + k];
        size_t rest = f->path_len - from_len;

        if ((paths[k] = malloc(to_len + rest + 1)) == NULL) {
            rc = berth_error_set(err, BERTH_ENOMEM, "out of memory");
            goto done;
        }
        memcpy(paths[k], to, to_len);
        memcpy(paths[k] + to_len, f->path + from_len, rest + 1);
    }
    for (k = 0; k < n; k++) {
        mem_file *f = md->files[lo + k];

        free(f->path);
        f->path = paths[k];
        f->path_len = strlen(paths[k]);
        paths[k] = NULL;
    }
    /* a replaced destination file goes, as with rename() */
    if (dst >= 0)
        remove_range(md, (size_t)dst, (size_t)dst + 1);
    qsort(md->files, md->count, sizeof(*md->files), compare_files);
done:
    if (paths)
        for (k = 0; k < n; k++)
            free(paths[k]);
    free(paths);
    return rc;
}

static int mem_remove(berth_driver *d, const char *path, berth_error *err)
{
    mem_driver *md = (mem_driver *)d;
    long i = find(md, path, strlen(path));
    size_t lo, hi;

    if (i >= 0) {
        remove_range(md, (size_t)i, (size_t)i + 1);
        return 0;
    }
    children(md, path, &lo, &hi);
    if (lo == hi)
        return berth_error_set(err, BERTH_ENOTFOUND, "path not found: %s",
                               path);
    remove_range(md, lo, hi);
    return 0;
}

/* ---- new / free ---- */

static void mem_free(berth_driver *d)
{
    mem_driver *md = (mem_driver *)d;

    remove_range(md, 0, md->count);
    free(md->files);
    free(md);
}

int berth_driver_mem_new(berth_driver **out, berth_error *err)
{
    mem_driver *md;

    assert(out != NULL);
    *out = NULL;
    if ((md = calloc(1, sizeof(*md))) == NULL)
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    md->base.version = BERTH_DRIVER_VERSION;
    md->base.name = "mem";
    md->base.get = mem_get;
    md->base.put = mem_put;
    md->base.reader = mem_reader_open;
    md->base.writer = mem_writer_open;
    md->base.stat = mem_stat;
    md->base.list = NULL; /* list_page */
    md->base.move = mem_move;
    md->base.remove = mem_remove;
    md->base.local_path = NULL; /* no file to hand to sendfile */
    md->base.free = mem_free;
    md->base.lock = mem_lock;
    md->base.put_if = mem_put_if;
    md->base.list_page = mem_list_page;
    *out = &md->base;
    return 0;
}
