/*
 * The filesystem driver: driver path P is the file root + P.
 *
 * Several processes (nginx workers, a CLI, gc) may use one store at once, so
 * every operation is safe against the others: put writes a uniquely named
 * temp file and renames it over the target, directory creation tolerates a
 * racing creator, a racing remove is retried or tolerated, and a writer holds
 * an flock(2) that other processes see too.
 *
 * Temp files are named ".tmp-<16 hex>~": the '~' is outside the driver path
 * alphabet, so no driver path can name one, and list() skips every name a
 * driver path could not name.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "berth/sys/driver.h"

#define TMP_PREFIX ".tmp-"
/* attempts when a concurrent remove pulls a directory from under us */
#define RACE_RETRIES 16

typedef struct fs_driver {
    berth_driver base;
    char *root; /* without trailing '/'; "" for the root "/" */
    size_t root_len;
    berth_fsync policy;
    /* Opened by root on a store someone else owns (berth serve runs its
     * nginx workers as the owner): what root creates there is given to
     * the owner, or the workers meet files they cannot write. */
    int give_away;
    uid_t owner_uid;
    gid_t owner_gid;
} fs_driver;

typedef struct fs_reader {
    berth_reader base;
    int fd;
    uint64_t pos;
} fs_reader;

/*
 * A writer keeps a copy of what it needs from the driver (the fsync policy),
 * never the driver itself: freeing it must not touch the driver, so a
 * garbage collector may free the two in either order.
 */
typedef struct fs_writer {
    berth_writer base;
    int fd;
    uint64_t size;
    berth_fsync policy;
    int cancelled;
    char *full; /* absolute file path */
} fs_writer;

/* ---- helpers ---- */

/* root + path into out (cleared first). */
static int full_path(berth_buf *out, fs_driver *fs, const char *path,
                     berth_error *err)
{
    int rc;

    berth_buf_clear(out);
    if ((rc = berth_buf_put(out, fs->root, fs->root_len, err)) < 0)
        return rc;
    return berth_buf_put(out, path, strlen(path), err);
}

/*
 * errno to a berth code. ENOENT and ENOTDIR (a component is a file) both
 * mean "nothing at that path", which is also what object storage answers.
 */
static int sys_fail(berth_error *err, int e, const char *what,
                    const char *path)
{
    if (e == ENOENT || e == ENOTDIR)
        return berth_error_set(err, BERTH_ENOTFOUND, "path not found: %s",
                               path);
    if (e == ENOMEM)
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    return berth_error_sys(err, BERTH_EIO, e, "%s %s", what, path);
}

/*
 * For creating calls: a file where a directory must be, or the reverse. A
 * parent that vanished (ENOENT) is a race lost to a concurrent remove,
 * already retried: EIO, not "not found".
 */
static int conflict_fail(berth_error *err, int e, const char *what,
                         const char *path)
{
    if (e == ENOENT)
        return berth_error_sys(err, BERTH_EIO, e, "%s %s", what, path);
    if (e == ENOTDIR || e == EISDIR || e == EEXIST || e == ENOTEMPTY)
        return berth_error_set(err, BERTH_EEXISTS,
                               "conflicts with an existing %s: %s",
                               e == ENOTDIR ? "file" : "directory", path);
    return sys_fail(err, e, what, path);
}

static int xclose(int fd)
{
    /* Linux closes the descriptor even when close() reports EINTR */
    int rc = close(fd);
    return rc < 0 && errno == EINTR ? 0 : rc;
}

static int fsync_fd(int fd)
{
    int rc;

    do
        rc = fsync(fd);
    while (rc < 0 && errno == EINTR);
    return rc;
}

/* fsync a directory; dir is a NUL-terminated absolute path. */
static int fsync_dir(const char *dir)
{
    int fd, rc, e;

    do
        fd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -1;
    rc = fsync_fd(fd);
    e = errno;
    xclose(fd);
    errno = e;
    return rc;
}

/* fsync the directory holding full (full[0..len) is a path). */
static int fsync_parent(char *full, size_t len)
{
    size_t slash = len;
    int rc, e;

    while (slash > 0 && full[slash - 1] != '/')
        slash--;
    if (slash == 0)
        return 0;
    full[slash - 1] = '\0';
    rc = fsync_dir(slash == 1 ? "/" : full);
    e = errno;
    full[slash - 1] = '/';
    errno = e;
    return rc;
}

static int64_t mtime_of(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static uint64_t random64(void)
{
    static uint64_t counter;
    uint64_t v;
    struct timespec ts;

    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == (ssize_t)sizeof(v))
        return v;
    /* no entropy yet (early boot): unique enough with O_EXCL retries */
    clock_gettime(CLOCK_REALTIME, &ts);
    v = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
        ((uint64_t)getpid() << 40) ^ ++counter * 0x9e3779b97f4a7c15u;
    return v;
}

/* Give what root just created to the store's owner (fs_driver). Best
 * effort, as nginx does for its temp paths: a filesystem that refuses
 * (root squashed) leaves it as it is. */
static void give_fd(const fs_driver *fs, int fd)
{
    if (fs->give_away && fchown(fd, fs->owner_uid, fs->owner_gid) < 0)
        return;
}

static void give_file(const fs_driver *fs, const char *file)
{
    if (fs->give_away && chown(file, fs->owner_uid, fs->owner_gid) < 0)
        return;
}

/* mkdir of full[0..p); 0 when it exists afterwards, else errno. */
static int make_dir(fs_driver *fs, char *full, size_t p)
{
    int e;

    full[p] = '\0';
    e = mkdir(full, 0755) == 0 ? 0 : errno;
    if (e == 0)
        give_file(fs, full);
    if (e == 0 && fs->policy == BERTH_FSYNC_FULL && fsync_parent(full, p) < 0)
        e = errno ? errno : EIO;
    full[p] = '/';
    return e == EEXIST ? 0 : e;
}

/*
 * mkdir -p of the directory holding full (a NUL-terminated absolute path),
 * never above the root. Walks back to the deepest existing ancestor, then
 * forward. Another process may create the same directories (EEXIST is
 * fine) or remove them while we work (start again from where it broke).
 */
static int make_parents(fs_driver *fs, char *full, const char *path,
                        berth_error *err)
{
    size_t end = strlen(full), p;
    int e, forward = 0, races = 0;

    while (end > fs->root_len && full[end] != '/')
        end--;
    if (end <= fs->root_len)
        return 0; /* the parent is the root */
    p = end;
    for (;;) {
        if ((e = make_dir(fs, full, p)) == 0) {
            if (p == end)
                return 0;
            forward = 1;
            do
                p++;
            while (p < end && full[p] != '/');
            continue;
        }
        if (e != ENOENT)
            return conflict_fail(err, e, "cannot create directory for", path);
        /* a parent is missing: never made, or removed just now */
        if (forward && ++races > RACE_RETRIES)
            return berth_error_sys(err, BERTH_EIO, e,
                                   "cannot create directory for %s", path);
        forward = 0;
        do
            p--;
        while (p > fs->root_len && full[p] != '/');
        if (p <= fs->root_len)
            return berth_error_set(err, BERTH_EIO, "store root missing: %s",
                                   fs->root);
    }
}

static int open_retry(const char *file, int flags, mode_t mode)
{
    int fd;

    do
        fd = open(file, flags | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    return fd;
}

/* Write all of data; loops over partial writes and EINTR. */
static int write_all(int fd, const void *data, size_t len, size_t *done_out)
{
    const char *p = data;
    size_t done = 0;

    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (n == 0) {
            errno = EIO;
            break;
        }
        done += (size_t)n;
    }
    if (done_out)
        *done_out = done;
    return done == len ? 0 : -1;
}

/* ---- get / put ---- */

static int fs_get(berth_driver *d, berth_buf *out, const char *path,
                  size_t max, berth_error *err)
{
    fs_driver *fs = (fs_driver *)d;
    berth_buf full = BERTH_BUF_INIT;
    struct stat st;
    int fd = -1, rc;

    if ((rc = full_path(&full, fs, path, err)) < 0)
        goto done;
    if ((fd = open_retry(full.ptr, O_RDONLY, 0)) < 0) {
        rc = sys_fail(err, errno, "cannot open", path);
        goto done;
    }
    if (fstat(fd, &st) < 0) {
        rc = sys_fail(err, errno, "cannot stat", path);
        goto done;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = berth_error_set(err, BERTH_ENOTFOUND, "not a file: %s", path);
        goto done;
    }
    if ((uint64_t)st.st_size > max) {
        rc = berth_error_set(err, BERTH_ETOOLARGE,
                             "file too large: %s (%llu bytes, max %zu)", path,
                             (unsigned long long)st.st_size, max);
        goto done;
    }
    /* room for the whole file and one more byte, so that EOF is seen
     * without growing; read to EOF, as the file may have grown */
    if ((uint64_t)st.st_size >= SIZE_MAX - 1) {
        rc = berth_error_set(err, BERTH_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = berth_buf_grow(out, (size_t)st.st_size + 1, err)) < 0)
        goto done;
    for (;;) {
        ssize_t n;

        if (out->cap - out->len - 1 == 0 &&
            (rc = berth_buf_grow(out, 4096, err)) < 0)
            goto done;
        n = read(fd, out->ptr + out->len, out->cap - out->len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = sys_fail(err, errno, "cannot read", path);
            goto done;
        }
        if (n == 0)
            break;
        out->len += (size_t)n;
        out->ptr[out->len] = '\0';
        if (out->len > max) {
            rc = berth_error_set(err, BERTH_ETOOLARGE,
                                 "file too large: %s (max %zu)", path, max);
            goto done;
        }
    }
    rc = 0;
done:
    if (rc < 0)
        berth_buf_clear(out);
    if (fd >= 0)
        xclose(fd);
    berth_buf_dispose(&full);
    return rc;
}

/* Name a temp file beside full: tmp = dirname(full) + "/.tmp-<hex>~". */
static int temp_name(berth_buf *tmp, const berth_buf *full, berth_error *err)
{
    size_t slash = full->len;
    int rc;

    while (slash > 0 && full->ptr[slash - 1] != '/')
        slash--;
    berth_buf_clear(tmp);
    if ((rc = berth_buf_put(tmp, full->ptr, slash, err)) < 0)
        return rc;
    return berth_buf_printf(tmp, err, TMP_PREFIX "%016llx~",
                            (unsigned long long)random64());
}

/*
 * One attempt at put. Returns 1 when a concurrent remove took the directory
 * away under us (the temp file went with it) and the caller should retry.
 */
static int put_attempt(fs_driver *fs, berth_buf *full, berth_buf *tmp,
                       const char *path, const void *data, size_t len,
                       berth_error *err)
{
    int fd = -1, rc = 0, attempt;

    for (attempt = 0;; attempt++) {
        if ((rc = temp_name(tmp, full, err)) < 0)
            goto done;
        fd = open_retry(tmp->ptr, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd >= 0) {
            give_fd(fs, fd);
            break;
        }
        berth_buf_clear(tmp); /* not created: nothing to unlink */
        if (errno == EEXIST && attempt < RACE_RETRIES)
            continue;
        /* parents missing: first put there, or removed concurrently */
        if (errno == ENOENT && attempt < RACE_RETRIES) {
            if ((rc = make_parents(fs, full->ptr, path, err)) < 0)
                goto done;
            continue;
        }
        rc = conflict_fail(err, errno, "cannot create temp file for", path);
        goto done;
    }
    if (write_all(fd, data, len, NULL) < 0) {
        rc = sys_fail(err, errno, "cannot write", path);
        goto done;
    }
    if (fs->policy != BERTH_FSYNC_NONE && fsync_fd(fd) < 0) {
        rc = sys_fail(err, errno, "cannot fsync", path);
        goto done;
    }
    /* close can report a failed delayed write (NFS) */
    if (close(fd) < 0 && errno != EINTR) {
        fd = -1;
        rc = sys_fail(err, errno, "cannot close", path);
        goto done;
    }
    fd = -1;
    if (rename(tmp->ptr, full->ptr) < 0) {
        if (errno == ENOENT) {
            rc = 1;
            goto done;
        }
        rc = conflict_fail(err, errno, "cannot rename into", path);
        goto done;
    }
    berth_buf_clear(tmp); /* renamed: nothing left to clean up */
    if (fs->policy == BERTH_FSYNC_FULL &&
        fsync_parent(full->ptr, full->len) < 0)
        rc = sys_fail(err, errno, "cannot fsync directory of", path);
done:
    if (fd >= 0)
        xclose(fd);
    if (rc != 0 && tmp->len > 0)
        unlink(tmp->ptr);
    return rc;
}

static int fs_put(berth_driver *d, const char *path, const void *data,
                  size_t len, berth_error *err)
{
    fs_driver *fs = (fs_driver *)d;
    berth_buf full = BERTH_BUF_INIT, tmp = BERTH_BUF_INIT;
    int rc, attempt = 0;

    if ((rc = full_path(&full, fs, path, err)) < 0)
        goto done;
    while ((rc = put_attempt(fs, &full, &tmp, path, data, len, err)) > 0) {
        if (++attempt >= RACE_RETRIES) {
            rc = berth_error_sys(err, BERTH_EIO, ENOENT,
                                 "cannot rename into %s", path);
            break;
        }
    }
done:
    berth_buf_dispose(&tmp);
    berth_buf_dispose(&full);
    return rc;
}

/*
 * A file's version: its inode, size and ctime. A put renames a new inode
 * in, and every write moves ctime, which nobody can set back.
 */
static void version_of(char out[BERTH_STAT_VERSION_MAX],
                       const struct stat *st)
{
    int64_t ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 +
                       st->st_ctim.tv_nsec;

    snprintf(out, BERTH_STAT_VERSION_MAX, "%jx-%jx-%jx",
             (uintmax_t)st->st_ino, (uintmax_t)st->st_size,
             (uintmax_t)ctime_ns);
}

/*
 * Open and flock the directory that holds full, made when missing: what
 * orders put_ifs in it. It must still be the directory at its path once
 * locked (a remove may have replaced it). -> fd in *fd_out
 */
static int lock_parent(int *fd_out, fs_driver *fs, berth_buf *full,
                       const char *path, berth_error *err)
{
    size_t slash = full->len;
    struct stat mine, there;
    int fd, rc = 0, attempt;

    *fd_out = -1;
    while (slash > 0 && full->ptr[slash - 1] != '/')
        slash--;
    assert(slash > 0); /* full is root + a driver path */
    full->ptr[slash - 1] = '\0';
    for (attempt = 0;; attempt++) {
        const char *dir = full->ptr[0] ? full->ptr : "/";

        fd = open_retry(dir, O_RDONLY | O_DIRECTORY, 0);
        if (fd < 0 && errno == ENOENT && attempt < RACE_RETRIES) {
            full->ptr[slash - 1] = '/';
            rc = make_parents(fs, full->ptr, path, err);
            full->ptr[slash - 1] = '\0';
            if (rc < 0)
                break;
            continue;
        }
        if (fd < 0) {
            rc = conflict_fail(err, errno, "cannot open the directory of",
                               path);
            break;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            rc = errno == EWOULDBLOCK || errno == EINTR
                     ? berth_error_set(err, BERTH_EBUSY, "busy: %s", path)
                     : sys_fail(err, errno, "cannot lock the directory of",
                                path);
            xclose(fd);
            break;
        }
        if (fstat(fd, &mine) == 0 && stat(dir, &there) == 0 &&
            mine.st_ino == there.st_ino && mine.st_dev == there.st_dev) {
            *fd_out = fd;
            break;
        }
        xclose(fd);
        if (attempt >= RACE_RETRIES) {
            rc = berth_error_set(err, BERTH_EBUSY, "busy: %s", path);
            break;
        }
    }
    full->ptr[slash - 1] = '/';
    return rc;
}

/*
 * put_if: the compare and the rename happen under the flock of the
 * directory, so of two put_ifs on one version only one can win. Plain
 * puts do not take it.
 */
static int fs_put_if(berth_driver *d, const char *path, const void *data,
                     size_t len, const char *expected, berth_error *err)
{
    fs_driver *fs = (fs_driver *)d;
    berth_buf full = BERTH_BUF_INIT, tmp = BERTH_BUF_INIT;
    char now[BERTH_STAT_VERSION_MAX];
    struct stat st;
    int rc, dir = -1, attempt, there;

    if ((rc = full_path(&full, fs, path, err)) < 0)
        goto done;
    for (attempt = 0;; attempt++) {
        if ((rc = lock_parent(&dir, fs, &full, path, err)) < 0)
            goto done;
        there = stat(full.ptr, &st) == 0;
        if (!there && errno != ENOENT) {
            rc = sys_fail(err, errno, "cannot stat", path);
            goto done;
        }
        if (there)
            version_of(now, &st);
        if (expected ? !there || strcmp(now, expected) != 0 : there) {
            rc = berth_error_set(err, BERTH_ECHANGED, "changed meanwhile: %s",
                                 path);
            goto done;
        }
        rc = put_attempt(fs, &full, &tmp, path, data, len, err);
        if (rc <= 0)
            goto done;
        /* the directory was removed under us: lock the new one */
        xclose(dir);
        dir = -1;
        if (attempt >= RACE_RETRIES) {
            rc = berth_error_sys(err, BERTH_EIO, ENOENT,
                                 "cannot rename into %s", path);
            goto done;
        }
    }
done:
    if (dir >= 0)
        xclose(dir);
    berth_buf_dispose(&tmp);
    berth_buf_dispose(&full);
    return rc;
}

/* ---- reader ---- */

static int fs_reader_read(berth_reader *r, void *buf, size_t cap,
                          size_t *n_out, berth_error *err)
{
    fs_reader *fr = (fs_reader *)r;
    ssize_t n;

    if (cap == 0)
        return 0;
    do
        n = pread(fr->fd, buf, cap, (off_t)fr->pos);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return berth_error_sys(err, BERTH_EIO, errno, "cannot read");
    fr->pos += (uint64_t)n;
    *n_out = (size_t)n;
    return 0;
}

static void fs_reader_free(berth_reader *r)
{
    fs_reader *fr = (fs_reader *)r;

    xclose(fr->fd);
    free(fr);
}

static int fs_reader_open(berth_driver *d, berth_reader **out,
                          const char *path, uint64_t offset, berth_error *err)
{
    fs_driver *fs = (fs_driver *)d;
    berth_buf full = BERTH_BUF_INIT;
    fs_reader *fr = NULL;
    struct stat st;
    int fd = -1, rc;

    if ((rc = full_path(&full, fs, path, err)) < 0)
        goto done;
    if ((fd = open_retry(full.ptr, O_RDONLY, 0)) < 0) {
        rc = sys_fail(err, errno, "cannot open", path);
        goto done;
    }
    if (fstat(fd, &st) < 0) {
        rc = sys_fail(err, errno, "cannot stat", path);
        goto done;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = berth_error_set(err, BERTH_ENOTFOUND, "not a file: %s", path);
        goto done;
    }
    if (offset > (uint64_t)st.st_size) {
        rc = berth_error_set(
            err, BERTH_ERANGE, "offset %llu past the end of %s (%llu bytes)",
            (unsigned long long)offset, path, (unsigned long long)st.st_size);
        goto done;
    }
    if ((fr = calloc(1, sizeof(*fr))) == NULL) {
        rc = berth_error_set(err, BERTH_ENOMEM, "out of memory");
        goto done;
    }
    fr->base.read = fs_reader_read;
    fr->base.free = fs_reader_free;
    fr->fd = fd;
    fr->pos = offset;
    fd = -1;
    *out = &fr->base;
    rc = 0;
done:
    if (fd >= 0)
        xclose(fd);
    berth_buf_dispose(&full);
    return rc;
}

/* ---- writer ---- */

static int fs_writer_write(berth_writer *w, const void *data, size_t len,
                           berth_error *err)
{
    fs_writer *fw = (fs_writer *)w;
    size_t done = 0;
    int rc = 0;

    if (fw->cancelled)
        return berth_error_set(err, BERTH_EINVAL, "writer was cancelled");
    if (write_all(fw->fd, data, len, &done) < 0)
        rc = berth_error_sys(err, BERTH_EIO, errno, "cannot write %s",
                             fw->full);
    fw->size += done;
    return rc;
}

static uint64_t fs_writer_size(berth_writer *w)
{
    return ((fs_writer *)w)->size;
}

static int fs_writer_commit(berth_writer *w, berth_error *err)
{
    fs_writer *fw = (fs_writer *)w;

    if (fw->cancelled)
        return berth_error_set(err, BERTH_EINVAL, "writer was cancelled");
    if (fw->policy != BERTH_FSYNC_NONE && fsync_fd(fw->fd) < 0)
        return berth_error_sys(err, BERTH_EIO, errno, "cannot fsync %s",
                               fw->full);
    /* the file may be new: make its directory entry durable too */
    if (fw->policy == BERTH_FSYNC_FULL &&
        fsync_parent(fw->full, strlen(fw->full)) < 0)
        return berth_error_sys(err, BERTH_EIO, errno,
                               "cannot fsync directory of %s", fw->full);
    return 0;
}

static int fs_writer_truncate(berth_writer *w, uint64_t size,
                              berth_error *err)
{
    fs_writer *fw = (fs_writer *)w;
    int rc;

    if (fw->cancelled)
        return berth_error_set(err, BERTH_EINVAL, "writer was cancelled");
    do
        rc = ftruncate(fw->fd, (off_t)size);
    while (rc < 0 && errno == EINTR);
    if (rc < 0)
        return berth_error_sys(err, BERTH_EIO, errno, "cannot truncate %s",
                               fw->full);
    fw->size = size;
    return fs_writer_commit(w, err);
}

static int fs_writer_cancel(berth_writer *w, berth_error *err)
{
    fs_writer *fw = (fs_writer *)w;
    struct stat mine, there;

    if (fw->cancelled)
        return 0;
    fw->cancelled = 1;
    /* only unlink the file we hold: a put may have replaced it since */
    if (fstat(fw->fd, &mine) < 0)
        return berth_error_sys(err, BERTH_EIO, errno, "cannot stat %s",
                               fw->full);
    if (stat(fw->full, &there) < 0 || mine.st_ino != there.st_ino ||
        mine.st_dev != there.st_dev)
        return 0;
    if (unlink(fw->full) < 0 && errno != ENOENT)
        return berth_error_sys(err, BERTH_EIO, errno, "cannot remove %s",
                               fw->full);
    return 0;
}

static void fs_writer_free(berth_writer *w)
{
    fs_writer *fw = (fs_writer *)w;

    xclose(fw->fd); /* releases the flock */
    free(fw->full);
    free(fw);
}

/*
 * Open and flock the file at path (full), made empty when missing, for a
 * writer or a lease: -> its descriptor in *fd_out and its stat. The
 * locked file must still be the one at the path: a writer in another
 * process may have cancelled (unlinked) it between our open and flock,
 * and writing to an unlinked file would lose the data.
 */
static int open_locked(int *fd_out, struct stat *st, fs_driver *fs,
                       berth_buf *full, const char *path, berth_error *err)
{
    struct stat there;
    int fd = -1, rc = 0, lrc, attempt;

    *fd_out = -1;
    for (attempt = 0;; attempt++) {
        fd = open_retry(full->ptr, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0) {
            if (errno == ENOENT && attempt < RACE_RETRIES) {
                if ((rc = make_parents(fs, full->ptr, path, err)) < 0)
                    return rc;
                continue;
            }
            return conflict_fail(err, errno, "cannot open", path);
        }
        give_fd(fs, fd);
        do
            lrc = flock(fd, LOCK_EX | LOCK_NB);
        while (lrc < 0 && errno == EINTR);
        if (lrc < 0) {
            if (errno == EWOULDBLOCK)
                rc = berth_error_set(err, BERTH_EBUSY, "busy: %s", path);
            else
                rc = sys_fail(err, errno, "cannot lock", path);
            goto done;
        }
        if (fstat(fd, st) < 0) {
            rc = sys_fail(err, errno, "cannot stat", path);
            goto done;
        }
        if (stat(full->ptr, &there) == 0 && there.st_ino == st->st_ino &&
            there.st_dev == st->st_dev)
            break;
        if (attempt >= RACE_RETRIES) {
            rc = berth_error_set(err, BERTH_EBUSY, "busy: %s", path);
            goto done;
        }
        xclose(fd);
        fd = -1;
    }
    if (!S_ISREG(st->st_mode)) {
        rc = berth_error_set(err, BERTH_EEXISTS, "not a regular file: %s",
                             path);
        goto done;
    }
    *fd_out = fd;
    fd = -1;
done:
    if (fd >= 0)
        xclose(fd);
    return rc;
}

/* Open and lock path; the lock is taken before truncating. */
static int fs_writer_open(berth_driver *d, berth_writer **out,
                          const char *path, int append, berth_error *err)
{
    fs_driver *fs = (fs_driver *)d;
    berth_buf full = BERTH_BUF_INIT;
    fs_writer *fw = NULL;
    struct stat st;
    int fd = -1, rc = 0;

    if ((rc = full_path(&full, fs, path, err)) < 0 ||
        (rc = open_locked(&fd, &st, fs, &full, path, err)) < 0)
        goto done;
    if (!append && st.st_size > 0) {
        int trc;

        do
            trc = ftruncate(fd, 0);
        while (trc < 0 && errno == EINTR);
        if (trc < 0) {
            rc = sys_fail(err, errno, "cannot truncate", path);
            goto done;
        }
        st.st_size = 0;
    }
    if ((fw = calloc(1, sizeof(*fw))) == NULL) {
        rc = berth_error_set(err, BERTH_ENOMEM, "out of memory");
        goto done;
    }
    fw->base.write = fs_writer_write;
    fw->base.size = fs_writer_size;
    fw->base.commit = fs_writer_commit;
    fw->base.cancel = fs_writer_cancel;
    fw->base.free = fs_writer_free;
    fw->base.truncate = fs_writer_truncate;
    fw->fd = fd;
    fw->size = (uint64_t)st.st_size;
    fw->policy = fs->policy;
    fw->full = full.ptr; /* take the buffer's memory */
    full.ptr = NULL;
    full.len = full.cap = 0;
    fd = -1;
    *out = &fw->base;
done:
    if (fd >= 0)
        xclose(fd);
    berth_buf_dispose(&full);
    return rc;
}

/* ---- lock ---- */

/* The flock of a lock file, as a writer holds it: an older berth that
 * takes a lock by opening a writer on the file excludes us, and we it. */
typedef struct fs_lease {
    berth_lease base;
    int fd;
} fs_lease;

static void fs_lease_free(berth_lease *l)
{
    fs_lease *fl = (fs_lease *)l;

    xclose(fl->fd); /* releases the flock */
    free(fl);
}

static int fs_lock(berth_driver *d, berth_lease **out, const char *path,
                   berth_error *err)
{
    fs_driver *fs = (fs_driver *)d;
    berth_buf full = BERTH_BUF_INIT;
    fs_lease *fl = NULL;
    struct stat st;
    int fd = -1, rc;

    if ((rc = full_path(&full, fs, path, err)) < 0 ||
        (rc = open_locked(&fd, &st, fs, &full, path, err)) < 0)
        goto done;
    if ((fl = calloc(1, sizeof(*fl))) == NULL) {
        rc = berth_error_set(err, BERTH_ENOMEM, "out of memory");
        goto done;
    }
    fl->base.free = fs_lease_free;
    fl->fd = fd;
    fd = -1;
    *out = &fl->base;
done:
    if (fd >= 0)
        xclose(fd);
    berth_buf_dispose(&full);
    return rc;
}

/* ---- stat / list ---- */

/* stat(2) of a driver path. */
static int stat_path(fs_driver *fs, const char *path, struct stat *st,
                     berth_error *err)
{
    berth_buf full = BERTH_BUF_INIT;
    int rc;

    if ((rc = full_path(&full, fs, path, err)) == 0 && stat(full.ptr, st) < 0)
        rc = sys_fail(err, errno, "cannot stat", path);
    berth_buf_dispose(&full);
    return rc;
}

static int fs_stat(berth_driver *d, berth_stat_info *out, const char *path,
                   berth_error *err)
{
    struct stat st;
    int rc;

    if ((rc = stat_path((fs_driver *)d, path, &st, err)) < 0)
        return rc;
    out->is_dir = S_ISDIR(st.st_mode) ? 1 : 0;
    out->size = out->is_dir ? 0 : (uint64_t)st.st_size;
    out->mtime_ns = mtime_of(&st);
    if (!out->is_dir)
        version_of(out->version, &st);
    return 0;
}

/* A name a driver path could contain (so not a temp file, not "..."). */
static int listable(const char *name)
{
    size_t len = strlen(name);
    char probe[258];

    if (len == 0 || len > 255)
        return 0;
    probe[0] = '/';
    memcpy(probe + 1, name, len + 1);
    return berth_driver_path_valid(probe);
}

static int fs_list(berth_driver *d, berth_strlist *out, const char *path,
                   berth_error *err)
{
    fs_driver *fs = (fs_driver *)d;
    berth_buf full = BERTH_BUF_INIT;
    DIR *dir = NULL;
    struct dirent *ent;
    int fd, rc;

    if ((rc = full_path(&full, fs, path, err)) < 0)
        goto done;
    /* a file is not a directory: "no children here", as object storage
     * would answer, so ENOTFOUND (sys_fail maps ENOTDIR) */
    fd = open_retry(full.ptr, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0 && errno == ENOTDIR) {
        rc = berth_error_set(err, BERTH_ENOTFOUND, "not a directory: %s",
                             path);
        goto done;
    }
    if (fd < 0) {
        rc = sys_fail(err, errno, "cannot open directory", path);
        goto done;
    }
    if ((dir = fdopendir(fd)) == NULL) {
        rc = sys_fail(err, errno, "cannot open directory", path);
        xclose(fd);
        goto done;
    }
    for (;;) {
        errno = 0;
        if ((ent = readdir(dir)) == NULL) {
            if (errno != 0) {
                rc = sys_fail(err, errno, "cannot list", path);
                goto done;
            }
            break;
        }
        if (!listable(ent->d_name))
            continue;
        if ((rc = berth_strlist_add(out, ent->d_name, strlen(ent->d_name),
                                    err)) < 0)
            goto done;
    }
    berth_strlist_sort(out);
done:
    if (dir)
        closedir(dir);
    berth_buf_dispose(&full);
    return rc;
}

/* ---- move ---- */

static int fs_move(berth_driver *d, const char *from, const char *to,
                   berth_error *err)
{
    fs_driver *fs = (fs_driver *)d;
    berth_buf src = BERTH_BUF_INIT, dst = BERTH_BUF_INIT;
    struct stat st, dst_st;
    size_t from_len = strlen(from);
    int rc, attempt;

    if ((rc = full_path(&src, fs, from, err)) < 0 ||
        (rc = full_path(&dst, fs, to, err)) < 0)
        goto done;
    if (lstat(src.ptr, &st) < 0) {
        rc = sys_fail(err, errno, "cannot stat", from);
        goto done;
    }
    if (strcmp(from, to) == 0)
        goto done;
    if (strncmp(to, from, from_len) == 0 && to[from_len] == '/') {
        rc = berth_error_set(err, BERTH_EINVAL, "cannot move %s into itself",
                             from);
        goto done;
    }
    /* rename() would replace an empty directory: never merge or replace
     * directories, only files */
    if (S_ISDIR(st.st_mode) && stat(dst.ptr, &dst_st) == 0) {
        rc = berth_error_set(err, BERTH_EEXISTS, "destination exists: %s",
                             to);
        goto done;
    }
    for (attempt = 0;; attempt++) {
        if (rename(src.ptr, dst.ptr) == 0)
            break;
        if (errno != ENOENT || attempt >= RACE_RETRIES) {
            rc = conflict_fail(err, errno, "cannot move to", to);
            goto done;
        }
        /* the source went away, or the destination's parents are missing */
        if (lstat(src.ptr, &st) < 0) {
            rc = sys_fail(err, errno, "cannot stat", from);
            goto done;
        }
        if ((rc = make_parents(fs, dst.ptr, to, err)) < 0)
            goto done;
    }
    /* A directory a concurrent remove took away after the rename holds
     * nothing of ours left to make durable (ENOENT). */
    if (fs->policy == BERTH_FSYNC_FULL &&
        ((fsync_parent(dst.ptr, dst.len) < 0 && errno != ENOENT) ||
         (fsync_parent(src.ptr, src.len) < 0 && errno != ENOENT)))
        rc = berth_error_sys(err, BERTH_EIO, errno,
                             "cannot fsync directories of %s", to);
done:
    berth_buf_dispose(&dst);
    berth_buf_dispose(&src);
    return rc;
}

/* ---- import ---- */

/*
 * An imported file is usually hashed next and then fsynced: start writing
 * it to disk now, so the disk works while the CPU hashes and the fsync
 * has little left to wait for. Only a hint: failures do not matter here.
 */
static void start_writeback(const char *file)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return;
    (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    xclose(fd);
}

static int fs_import(berth_driver *d, const char *path,
                     const char *local_file, berth_error *err)
{
    fs_driver *fs = (fs_driver *)d;
    berth_buf dst = BERTH_BUF_INIT;
    struct stat st;
    int rc, attempt;

    if ((rc = full_path(&dst, fs, path, err)) < 0)
        goto done;
    /* ext4 flushes a file renamed over another one (auto_da_alloc), in
     * the rename: ~0.17 s per 256 MiB. An empty file (a new upload's data)
     * has nothing to lose, so it goes first and the rename replaces
     * nothing. */
    if (lstat(dst.ptr, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0)
        (void)unlink(dst.ptr);
    for (attempt = 0;; attempt++) {
        if (rename(local_file, dst.ptr) == 0) {
            give_file(fs, dst.ptr);
            break;
        }
        if (errno == EXDEV) {
            rc = berth_error_set(err, BERTH_EUNSUPPORTED,
                                 "%s is on another filesystem than the store",
                                 local_file);
            goto done;
        }
        if (errno == ENOENT && access(local_file, F_OK) < 0) {
            rc = sys_fail(err, errno, "cannot import", local_file);
            goto done;
        }
        if (errno != ENOENT || attempt >= RACE_RETRIES) {
            rc = conflict_fail(err, errno, "cannot import to", path);
            goto done;
        }
        if ((rc = make_parents(fs, dst.ptr, path, err)) < 0)
            goto done;
    }
    if (fs->policy == BERTH_FSYNC_FULL &&
        fsync_parent(dst.ptr, dst.len) < 0) {
        rc = berth_error_sys(err, BERTH_EIO, errno,
                             "cannot fsync the directory of %s", path);
        goto done;
    }
    if (fs->policy != BERTH_FSYNC_NONE)
        start_writeback(dst.ptr);
done:
    berth_buf_dispose(&dst);
    return rc;
}

/* ---- remove ---- */

static int remove_dir_at(int parent, const char *name, const char *path,
                         berth_error *err);

/*
 * Empty the directory open at fd (closed here), never following symlinks.
 * Entries that vanish under us were removed by someone else: fine.
 */
static int remove_children(int fd, const char *path, berth_error *err)
{
    DIR *dir;
    struct dirent *ent;
    int rc = 0;

    if ((dir = fdopendir(fd)) == NULL) {
        rc = sys_fail(err, errno, "cannot open directory", path);
        xclose(fd);
        return rc;
    }
    for (;;) {
        int is_dir;

        errno = 0;
        if ((ent = readdir(dir)) == NULL) {
            if (errno != 0)
                rc = sys_fail(err, errno, "cannot list", path);
            break;
        }
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
            continue;
        is_dir = ent->d_type == DT_DIR;
        if (ent->d_type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(dirfd(dir), ent->d_name, &st, AT_SYMLINK_NOFOLLOW) <
                0) {
                if (errno == ENOENT)
                    continue;
                rc = sys_fail(err, errno, "cannot stat in", path);
                break;
            }
            is_dir = S_ISDIR(st.st_mode);
        }
        if (!is_dir) {
            if (unlinkat(dirfd(dir), ent->d_name, 0) == 0 || errno == ENOENT)
                continue;
            if (errno != EISDIR) {
                rc = sys_fail(err, errno, "cannot remove in", path);
                break;
            }
        }
        if ((rc = remove_dir_at(dirfd(dir), ent->d_name, path, err)) < 0)
            break;
    }
    closedir(dir);
    return rc;
}

/*
 * Remove the directory tree name (relative to parent, or absolute with
 * AT_FDCWD). A concurrent put may add files while we empty it, so an
 * ENOTEMPTY is retried a few times. Gone meanwhile is fine.
 */
static int remove_dir_at(int parent, const char *name, const char *path,
                         berth_error *err)
{
    int rc, fd, attempt;

    for (attempt = 0;; attempt++) {
        do
            fd = openat(parent, name,
                        O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        while (fd < 0 && errno == EINTR);
        if (fd < 0) {
            if (errno == ENOENT)
                return 0;
            /* replaced by a file or a symlink meanwhile */
            if ((errno == ENOTDIR || errno == ELOOP) &&
                (unlinkat(parent, name, 0) == 0 || errno == ENOENT))
                return 0;
            return sys_fail(err, errno, "cannot open in", path);
        }
        if ((rc = remove_children(fd, path, err)) < 0)
            return rc;
        if (unlinkat(parent, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
            return 0;
        if (errno != ENOTEMPTY && errno != EEXIST)
            return sys_fail(err, errno, "cannot remove directory in", path);
        if (attempt >= RACE_RETRIES)
            return berth_error_sys(err, BERTH_EIO, ENOTEMPTY,
                                   "cannot remove directory in %s", path);
    }
}

static int fs_remove(berth_driver *d, const char *path, berth_error *err)
{
    fs_driver *fs = (fs_driver *)d;
    berth_buf full = BERTH_BUF_INIT;
    struct stat st;
    int rc;

    if ((rc = full_path(&full, fs, path, err)) < 0)
        goto done;
    if (lstat(full.ptr, &st) < 0) {
        rc = sys_fail(err, errno, "cannot stat", path);
        goto done;
    }
    if (S_ISDIR(st.st_mode))
        rc = remove_dir_at(AT_FDCWD, full.ptr, path, err);
    else if (unlink(full.ptr) < 0)
        rc = sys_fail(err, errno, "cannot remove", path);
    if (rc == 0 && fs->policy == BERTH_FSYNC_FULL &&
        fsync_parent(full.ptr, full.len) < 0)
        rc = sys_fail(err, errno, "cannot fsync directory of", path);
done:
    berth_buf_dispose(&full);
    return rc;
}

/* ---- leftovers ---- */

/* A temp file of put (temp_name). */
static int is_temp(const char *name)
{
    size_t len = strlen(name), pre = sizeof(TMP_PREFIX) - 1;

    return len > pre + 1 && strncmp(name, TMP_PREFIX, pre) == 0 &&
           name[len - 1] == '~';
}

/*
 * The temp files in the directory open at fd (closed here) into temps,
 * when they are all it holds and all changed before cutoff_ns.
 * @return 0, BERTH_EEXISTS (something else, or younger), < 0 error.
 */
static int old_temps(berth_strlist *temps, int fd, int64_t cutoff_ns,
                     const char *path, berth_error *err)
{
    DIR *dir;
    struct dirent *ent;
    struct stat st;
    int rc = 0;

    if ((dir = fdopendir(fd)) == NULL) {
        rc = sys_fail(err, errno, "cannot open directory", path);
        xclose(fd);
        return rc;
    }
    for (;;) {
        errno = 0;
        if ((ent = readdir(dir)) == NULL) {
            if (errno != 0)
                rc = sys_fail(err, errno, "cannot list", path);
            break;
        }
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
            continue;
        if (!is_temp(ent->d_name)) {
            rc = berth_error_set(err, BERTH_EEXISTS, "not a leftover: %s",
                                 path);
            break;
        }
        if (fstatat(dirfd(dir), ent->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT) /* a put renamed it meanwhile */
                continue;
            rc = sys_fail(err, errno, "cannot stat in", path);
            break;
        }
        if (!S_ISREG(st.st_mode) || mtime_of(&st) >= cutoff_ns) {
            rc = berth_error_set(err, BERTH_EEXISTS, "not a leftover: %s",
                                 path);
            break;
        }
        if ((rc = berth_strlist_add(temps, ent->d_name, strlen(ent->d_name),
                                    err)) < 0)
            break;
    }
    closedir(dir);
    return rc;
}

/*
 * Only old temp files, or nothing: what a put or a move killed midway
 * leaves. Removing a temp file or the empty directory under a live put or
 * move only makes it retry (put_attempt, fs_move), and rmdir never takes
 * what arrived meanwhile.
 */
static int fs_leftover(berth_driver *d, const char *path, int64_t cutoff_ns,
                       int remove, berth_error *err)
{
    fs_driver *fs = (fs_driver *)d;
    berth_buf full = BERTH_BUF_INIT;
    berth_strlist temps = BERTH_STRLIST_INIT;
    struct stat st;
    int fd = -1, rc;

    if ((rc = full_path(&full, fs, path, err)) < 0)
        goto done;
    do
        fd = open(full.ptr, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        rc = errno == ENOTDIR || errno == ELOOP
                 ? berth_error_set(err, BERTH_EEXISTS, "not a directory: %s",
                                   path)
                 : sys_fail(err, errno, "cannot open directory", path);
        goto done;
    }
    if (fstat(fd, &st) < 0) {
        rc = sys_fail(err, errno, "cannot stat", path);
        xclose(fd);
        goto done;
    }
    if (mtime_of(&st) >= cutoff_ns) {
        rc = berth_error_set(err, BERTH_EEXISTS, "changed since: %s", path);
        xclose(fd);
        goto done;
    }
    if ((rc = old_temps(&temps, fd, cutoff_ns, path, err)) < 0 || !remove)
        goto done;
    for (size_t i = 0; i < temps.count; i++) {
        berth_buf_clear(&full);
        if ((rc = full_path(&full, fs, path, err)) < 0 ||
            (rc = berth_buf_printf(&full, err, "/%s", temps.items[i])) < 0)
            goto done;
        if (unlink(full.ptr) < 0 && errno != ENOENT) {
            rc = sys_fail(err, errno, "cannot remove in", path);
            goto done;
        }
    }
    if ((rc = full_path(&full, fs, path, err)) < 0)
        goto done;
    if (rmdir(full.ptr) < 0 && errno != ENOENT) {
        rc = errno == ENOTEMPTY || errno == EEXIST
                 ? berth_error_set(err, BERTH_EEXISTS,
                                   "written meanwhile: %s", path)
                 : sys_fail(err, errno, "cannot remove", path);
        goto done;
    }
    if (fs->policy == BERTH_FSYNC_FULL &&
        fsync_parent(full.ptr, full.len) < 0)
        rc = sys_fail(err, errno, "cannot fsync directory of", path);
done:
    berth_strlist_dispose(&temps);
    berth_buf_dispose(&full);
    return rc;
}

/* ---- list version ---- */

/*
 * Adding or removing a child changes a directory's mtime and ctime. A
 * change within the same clock tick as the last one would leave both as
 * they were, so a directory changed in the last second has no version yet.
 * ctime cannot be set back by anyone; the inode tells a directory removed
 * and made again.
 */
#define LIST_VERSION_SETTLE_NS 1000000000LL

static int fs_list_version(berth_driver *d, const char *path,
                           char out[BERTH_LIST_VERSION_MAX], berth_error *err)
{
    struct stat st;
    struct timespec now;
    int64_t changed, ctime_ns;
    int rc;

    if ((rc = stat_path((fs_driver *)d, path, &st, err)) < 0)
        return rc;
    if (!S_ISDIR(st.st_mode))
        return berth_error_set(err, BERTH_ENOTFOUND, "not a directory: %s",
                               path);
    ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
    changed = mtime_of(&st) > ctime_ns ? mtime_of(&st) : ctime_ns;
    clock_gettime(CLOCK_REALTIME, &now);
    if ((int64_t)now.tv_sec * 1000000000 + now.tv_nsec - changed <
        LIST_VERSION_SETTLE_NS)
        return berth_error_set(err, BERTH_EUNSUPPORTED,
                               "%s changed too recently", path);
    snprintf(out, BERTH_LIST_VERSION_MAX, "%ju:%ju:%" PRId64 ":%" PRId64,
             (uintmax_t)st.st_dev, (uintmax_t)st.st_ino, mtime_of(&st),
             ctime_ns);
    return 0;
}

/* ---- local path / free / new ---- */

static int fs_local_path(berth_driver *d, berth_buf *out, const char *path,
                         berth_error *err)
{
    fs_driver *fs = (fs_driver *)d;
    struct stat st;
    int rc;

    if ((rc = full_path(out, fs, path, err)) < 0)
        return rc;
    if (stat(out->ptr, &st) < 0)
        return sys_fail(err, errno, "cannot stat", path);
    if (S_ISDIR(st.st_mode))
        return berth_error_set(err, BERTH_ENOTFOUND, "not a file: %s", path);
    return 0;
}

/* A local file, for sendfile. */
static int fs_send(berth_driver *d, berth_send_kind *kind, berth_buf *where,
                   const char *path, berth_error *err)
{
    *kind = BERTH_SEND_FILE;
    return fs_local_path(d, where, path, err);
}

static void fs_free(berth_driver *d)
{
    fs_driver *fs = (fs_driver *)d;

    free(fs->root);
    free(fs);
}

/* mkdir -p of the root itself. */
static int make_root(char *root, berth_error *err)
{
    size_t len = strlen(root);
    struct stat st;

    if (len == 0)
        return 0;
    for (size_t i = 1; i <= len; i++) {
        if (root[i] != '/' && root[i] != '\0')
            continue;
        root[i] = '\0';
        if (mkdir(root, 0755) < 0 && errno != EEXIST) {
            int e = errno;
            root[i] = i < len ? '/' : '\0';
            return berth_error_sys(err, BERTH_EIO, e,
                                   "cannot create store root %s", root);
        }
        root[i] = i < len ? '/' : '\0';
    }
    if (stat(root, &st) < 0)
        return berth_error_sys(err, BERTH_EIO, errno,
                               "cannot create store root %s", root);
    if (!S_ISDIR(st.st_mode))
        return berth_error_sys(err, BERTH_EIO, ENOTDIR,
                               "cannot create store root %s", root);
    return 0;
}

int berth_driver_fs_new(berth_driver **out, const char *root,
                        berth_fsync fsync_policy, berth_error *err)
{
    fs_driver *fs = NULL;
    size_t len;
    int rc = 0;

    assert(out != NULL && root != NULL);
    *out = NULL;
    len = strlen(root);
    if (len == 0)
        return berth_error_set(err, BERTH_EINVAL, "empty store root");
    while (len > 0 && root[len - 1] == '/')
        len--;
    if ((fs = calloc(1, sizeof(*fs))) == NULL ||
        (fs->root = malloc(len + 1)) == NULL) {
        rc = berth_error_set(err, BERTH_ENOMEM, "out of memory");
        goto done;
    }
    memcpy(fs->root, root, len);
    fs->root[len] = '\0';
    fs->root_len = len;
    fs->policy = fsync_policy;
    if ((rc = make_root(fs->root, err)) < 0)
        goto done;
    /* The root in one form, made here once: local_path() answers absolute
     * paths without "//", "/./" or "..", for sendfile and nginx. */
    if (len > 0) {
        char *abs = realpath(fs->root, NULL);
        if (abs == NULL) {
            rc = berth_error_sys(err, BERTH_EIO, errno,
                                 "cannot resolve store root %s", fs->root);
            goto done;
        }
        free(fs->root);
        fs->root = abs;
        fs->root_len = strlen(abs);
        if (fs->root_len == 1) /* "/" */
            fs->root[--fs->root_len] = '\0';
    }
    {
        struct stat st;
        if (geteuid() == 0 && stat(fs->root[0] ? fs->root : "/", &st) == 0 &&
            st.st_uid != 0) {
            fs->give_away = 1;
            fs->owner_uid = st.st_uid;
            fs->owner_gid = st.st_gid;
        }
    }
    fs->base.version = BERTH_DRIVER_VERSION;
    fs->base.name = "fs";
    fs->base.get = fs_get;
    fs->base.put = fs_put;
    fs->base.reader = fs_reader_open;
    fs->base.writer = fs_writer_open;
    fs->base.stat = fs_stat;
    fs->base.list = fs_list;
    fs->base.move = fs_move;
    fs->base.remove = fs_remove;
    fs->base.local_path = fs_local_path;
    fs->base.import = fs_import;
    fs->base.list_version = fs_list_version;
    fs->base.leftover = fs_leftover;
    fs->base.free = fs_free;
    fs->base.lock = fs_lock;
    fs->base.put_if = fs_put_if;
    fs->base.send = fs_send;
    *out = &fs->base;
done:
    if (rc < 0 && fs != NULL)
        fs_free(&fs->base);
    return rc;
}
