/*
 * A follower hashes a local file on a thread of its own while another
 * writer appends to it: the request body nginx spools for a whole-blob
 * upload. Hashing while the body arrives rather than after it takes the
 * hash (~0.15 s per 256 MiB) off the request's path. It also starts
 * writing what it has hashed to disk, so the commit's fsync has little
 * left to wait for.
 *
 * The file only grows while followed; every byte below the size fstat
 * reports has been copied in by the writer (Linux updates i_size after the
 * copy), so reading up to it is safe.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define FOLLOW_CHUNK (256 * 1024)
#define WRITEBACK_STEP (8 * 1024 * 1024)
/* Poll interval when no new bytes have come: doubles up to the maximum, so
 * an idle client costs ~50 wake-ups a second. */
#define POLL_MIN_NS 200000L
#define POLL_MAX_NS 20000000L
/* hashing needs little stack; sanitizers need more than glibc's minimum */
#define FOLLOW_STACK (256 * 1024)

struct berth_follower {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stop; /* under lock */
    int joined;
    int fd;
    dev_t dev;
    ino_t ino;
    unsigned flags;
    berth_hasher *hasher; /* the thread's until joined */
    _Atomic uint64_t hashed;
    atomic_int failed; /* errno of a failed read, or 0 */
    unsigned char buf[FOLLOW_CHUNK];
};

/* Sleep ns unless told to stop. -> 1 when told to stop */
static int nap(berth_follower *f, long ns)
{
    struct timespec until;
    int stop;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += ns;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&f->lock);
    while (!f->stop &&
           pthread_cond_timedwait(&f->wake, &f->lock, &until) == EINTR)
        ;
    stop = f->stop;
    pthread_mutex_unlock(&f->lock);
    return stop;
}

static int stopping(berth_follower *f)
{
    int stop;

    pthread_mutex_lock(&f->lock);
    stop = f->stop;
    pthread_mutex_unlock(&f->lock);
    return stop;
}

static void *follow(void *arg)
{
    berth_follower *f = arg;
    uint64_t hashed = 0, written_back = 0;
    long wait_ns = POLL_MIN_NS;
    struct stat st;

    while (!stopping(f)) {
        if (fstat(f->fd, &st) < 0) {
            atomic_store(&f->failed, errno);
            break;
        }
        /* removed, not moved: nginx dropped the body (request aborted) */
        if (st.st_nlink == 0) {
            atomic_store(&f->failed, ENOENT);
            break;
        }
        if ((uint64_t)st.st_size <= hashed) {
            if (nap(f, wait_ns))
                break;
            if (wait_ns < POLL_MAX_NS)
                wait_ns *= 2;
            continue;
        }
        wait_ns = POLL_MIN_NS;
        /* a chunk at a time, so that a join never waits for more */
        while (hashed < (uint64_t)st.st_size && !stopping(f)) {
            uint64_t left = (uint64_t)st.st_size - hashed;
            size_t want = left < FOLLOW_CHUNK ? (size_t)left : FOLLOW_CHUNK;
            ssize_t n = pread(f->fd, f->buf, want, (off_t)hashed);

            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0 ||
                berth_hasher_update(f->hasher, f->buf, (size_t)n, NULL) < 0) {
                /* a short file is one truncated under us: not followable */
                atomic_store(&f->failed, n < 0 ? errno : EIO);
                return NULL;
            }
            hashed += (uint64_t)n;
            atomic_store_explicit(&f->hashed, hashed, memory_order_release);
        }
        if ((f->flags & BERTH_FOLLOW_WRITEBACK) &&
            hashed - written_back >= WRITEBACK_STEP) {
            /* only a hint: the commit's fsync is what makes it durable */
            (void)sync_file_range(f->fd, (off_t)written_back,
                                  (off_t)(hashed - written_back),
                                  SYNC_FILE_RANGE_WRITE);
            written_back = hashed;
        }
    }
    return NULL;
}

int berth_follower_start(berth_follower **out, const char *file,
                         unsigned flags, berth_error *err)
{
    berth_follower *f;
    pthread_attr_t attr;
    pthread_condattr_t ca;
    sigset_t all, old;
    struct stat st;
    int rc;

    *out = NULL;
    if ((f = calloc(1, sizeof(*f))) == NULL)
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    f->flags = flags;
    if ((f->fd = open(file, O_RDONLY | O_CLOEXEC)) < 0) {
        rc = berth_error_sys(err,
                             errno == ENOENT ? BERTH_ENOTFOUND : BERTH_EIO,
                             errno, "cannot open %s", file);
        free(f);
        return rc;
    }
    if (fstat(f->fd, &st) < 0) {
        rc = berth_error_sys(err, BERTH_EIO, errno, "cannot stat %s", file);
        goto fail_fd;
    }
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    if ((rc = berth_hasher_new(&f->hasher, BERTH_DIGEST_SHA256,
                               BERTH_HASHER_AUTO, err)) < 0)
        goto fail_fd;
    pthread_mutex_init(&f->lock, NULL);
    /* nap() waits on the monotonic clock: a clock step is no wake-up */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->wake, &ca);
    pthread_condattr_destroy(&ca);
    /* Signals stay with the host's threads (nginx's worker). */
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, FOLLOW_STACK);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&f->thread, &attr, follow, f);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        rc = berth_error_sys(err, BERTH_EIO, rc, "cannot start a thread");
        pthread_cond_destroy(&f->wake);
        pthread_mutex_destroy(&f->lock);
        berth_hasher_free(f->hasher);
        goto fail_fd;
    }
    *out = f;
    return 0;
fail_fd:
    close(f->fd);
    free(f);
    return rc;
}

int berth_follower_progress(const berth_follower *f, uint64_t *hashed,
                            berth_error *err)
{
    int failed = atomic_load(&f->failed);

    *hashed = atomic_load_explicit(&f->hashed, memory_order_acquire);
    if (failed)
        return berth_error_sys(err, BERTH_EIO, failed,
                               "the hashing thread stopped");
    return 0;
}

static void join(berth_follower *f)
{
    if (f->joined)
        return;
    pthread_mutex_lock(&f->lock);
    f->stop = 1;
    pthread_cond_signal(&f->wake);
    pthread_mutex_unlock(&f->lock);
    pthread_join(f->thread, NULL);
    f->joined = 1;
}

int berth__follower_take(berth_follower *f, const char *file,
                         berth_hasher **out)
{
    struct stat st;
    uint64_t hashed = 0;

    *out = NULL;
    if (stat(file, &st) < 0 || st.st_dev != f->dev || st.st_ino != f->ino) {
        join(f);
        return -1;
    }
    /* Caught up when the caller waited for it (berth.nginx, without
     * blocking); one that is behind is not waited for here: the caller
     * hashes the file itself. */
    join(f);
    (void)berth_follower_progress(f, &hashed, NULL);
    if (atomic_load(&f->failed) || hashed != (uint64_t)st.st_size ||
        berth_hasher_size(f->hasher) != hashed)
        return -1;
    *out = f->hasher;
    f->hasher = NULL;
    return 0;
}

void berth_follower_free(berth_follower *f)
{
    if (f == NULL)
        return;
    join(f);
    pthread_cond_destroy(&f->wake);
    pthread_mutex_destroy(&f->lock);
    berth_hasher_free(f->hasher);
    close(f->fd);
    free(f);
}
