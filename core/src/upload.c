/*
 * Upload sessions, in Distribution's layout (_uploads/<id>/{data,startedat,
 * hashstates/<alg>/<offset>}). All state is in the store, so any process can
 * continue an upload; one writer at a time is guaranteed by the driver's
 * writer lock on the data file.
 *
 * The running SHA-256 is saved as a hash state at the current offset. After
 * a crash between appending data and saving the state, the newest state is
 * behind the data: the missing tail is re-read and hashed, so a digest is
 * always computed over the bytes that are really on disk.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "internal.h"

struct berth_upload {
    berth_store *st;
    char *repo;
    char id[BERTH_UPLOAD_ID_MAX];
    unsigned flags;
    berth_writer *writer;  /* held for BERTH_UPLOAD_WRITE */
    berth_hasher *hasher;  /* sha256 over the first `size` bytes, or NULL */
    uint64_t size;
    int64_t started;
    uint64_t saved_offset; /* offset of the hash state on disk, if any */
    int has_saved;
};

/* Read-back chunk when re-hashing data from disk. */
#define REHASH_CHUNK (256 * 1024)

static int upload_path(berth_buf *out, const berth_upload *up,
                       berth_path_kind kind, berth_digest_algo algo,
                       uint64_t offset, berth_error *err)
{
    berth_path_spec spec = { 0 };

    spec.kind = kind;
    spec.repo = up->repo;
    spec.upload_id = up->id;
    spec.algo = algo;
    spec.offset = offset;
    return berth__path(out, &spec, err);
}

/* RFC 4122 version 4 UUID, as Distribution makes them. */
static int make_id(char out[BERTH_UPLOAD_ID_MAX], berth_error *err)
{
    unsigned char r[16];
    size_t got = 0;

    while (got < sizeof(r)) {
        ssize_t n = getrandom(r + got, sizeof(r) - got, 0);
        if (n < 0)
            return berth_error_sys(err, BERTH_EIO, errno, "getrandom");
        got += (size_t)n;
    }
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(out, BERTH_UPLOAD_ID_MAX,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x",
             r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
             r[10], r[11], r[12], r[13], r[14], r[15]);
    return 0;
}

/* Ids come from URLs: accept only the shape make_id produces (any case of
 * hex, as other registries may have written them). */
static int id_valid(const char *id)
{
    size_t len = strlen(id);

    if (len != 36)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? c != '-'
                 : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                     (c >= 'A' && c <= 'F')))
            return 0;
    }
    return 1;
}

/* startedat is "2006-01-02T15:04:05Z" (Go's time.RFC3339, UTC). */
static int format_started(char *out, size_t cap, int64_t when)
{
    time_t t = (time_t)when;
    struct tm tm;

    gmtime_r(&t, &tm);
    return (int)strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int parse_started(int64_t *out, const char *s)
{
    struct tm tm = { 0 };
    int n = 0;
    char sign = 0;
    int oh = 0, om = 0;

    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
               &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
        return -1;
    s += n;
    if (*s == '.') /* fractional seconds: ignored */
        while (*++s >= '0' && *s <= '9')
            ;
    if (*s == 'Z') {
        s++;
    } else if ((*s == '+' || *s == '-') &&
               sscanf(s, "%c%2d:%2d", &sign, &oh, &om) == 3) {
        s += 6;
    } else {
        return -1;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (int64_t)timegm(&tm) - (sign == '-' ? -1 : 1) *
                                      (int64_t)(oh * 3600 + om * 60);
    return 0;
}

static int upload_alloc(berth_upload **out, berth_store *st,
                        const char *repo, berth_error *err)
{
    berth_upload *up = calloc(1, sizeof(*up));

    if (up == NULL || (up->repo = strdup(repo)) == NULL) {
        free(up);
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    }
    up->st = berth__store_ref(st);
    *out = up;
    return 0;
}

static int open_writer(berth_upload *up, int append, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    int rc;

    if ((rc = upload_path(&path, up, BERTH_PATH_UPLOAD_DATA, 0, 0, err)) < 0)
        goto done;
    rc = berth_driver_writer(up->st->driver, &up->writer, path.ptr, append,
                             err);
    if (rc == BERTH_EBUSY)
        rc = berth_error_set(err, BERTH_EBUSY,
                             "upload busy: %s is being written by another "
                             "request", up->id);
    if (rc == 0) {
        up->flags = BERTH_UPLOAD_WRITE;
        up->size = berth_writer_size(up->writer);
    }
done:
    berth_buf_dispose(&path);
    return rc;
}

int berth_upload_create(berth_upload **out, berth_store *st,
                        const char *repo, berth_error *err)
{
    berth_upload *up = NULL;
    berth_buf path = BERTH_BUF_INIT;
    char started[32];
    int rc;

    *out = NULL;
    if ((rc = berth__repo_check(repo, 0, err)) < 0)
        return rc;
    if ((rc = upload_alloc(&up, st, repo, err)) < 0)
        return rc;
    if ((rc = make_id(up->id, err)) < 0)
        goto done;
    up->started = (int64_t)time(NULL);
    format_started(started, sizeof(started), up->started);
    /* startedat first: an upload exists once it has one. */
    if ((rc = upload_path(&path, up, BERTH_PATH_UPLOAD_STARTEDAT, 0, 0,
                          err)) < 0 ||
        (rc = berth_driver_put(st->driver, path.ptr, started, strlen(started),
                               err)) < 0)
        goto done;
    if ((rc = open_writer(up, 0, err)) < 0)
        goto done;
    rc = berth_hasher_new(&up->hasher, BERTH_DIGEST_SHA256, BERTH_HASHER_AUTO,
                          err);
done:
    berth_buf_dispose(&path);
    if (rc < 0) {
        berth_upload_free(up);
        return rc;
    }
    *out = up;
    return 0;
}

static int unknown_upload(berth_error *err, const char *id)
{
    return berth_error_set(err, BERTH_EBLOB_UPLOAD_UNKNOWN,
                           "blob upload unknown: %s", id);
}

/* Read startedat; BERTH_EBLOB_UPLOAD_UNKNOWN when the upload is gone. */
static int read_started(berth_upload *up, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT, content = BERTH_BUF_INIT;
    int rc;

    if ((rc = upload_path(&path, up, BERTH_PATH_UPLOAD_STARTEDAT, 0, 0,
                          err)) < 0)
        goto done;
    rc = berth_driver_get(up->st->driver, &content, path.ptr, 64, err);
    if (rc == BERTH_ENOTFOUND || rc == BERTH_ETOOLARGE) {
        rc = unknown_upload(err, up->id);
        goto done;
    }
    if (rc < 0)
        goto done;
    if (parse_started(&up->started, content.ptr) < 0)
        up->started = 0; /* unreadable: oldest possible, for purging */
done:
    berth_buf_dispose(&path);
    berth_buf_dispose(&content);
    return rc;
}

int berth_upload_open(berth_upload **out, berth_store *st, const char *repo,
                      const char *id, unsigned flags, berth_error *err)
{
    berth_upload *up = NULL;
    berth_buf path = BERTH_BUF_INIT;
    berth_stat_info info;
    int rc;

    *out = NULL;
    if ((rc = berth__repo_check(repo, 0, err)) < 0)
        return rc;
    if (id == NULL || !id_valid(id))
        return unknown_upload(err, id ? id : "(null)");
    if ((rc = upload_alloc(&up, st, repo, err)) < 0)
        return rc;
    memcpy(up->id, id, sizeof(up->id));
    if ((rc = read_started(up, err)) < 0)
        goto done;
    if (flags & BERTH_UPLOAD_WRITE) {
        if ((rc = open_writer(up, 1, err)) < 0)
            goto done;
        /* Cancelled between our read of startedat and the lock? Then the
         * writer just made a stray data file: take it away again. */
        if ((rc = read_started(up, err)) < 0) {
            berth_writer_cancel(up->writer, NULL);
            goto done;
        }
    } else {
        if ((rc = upload_path(&path, up, BERTH_PATH_UPLOAD_DATA, 0, 0,
                              err)) < 0)
            goto done;
        rc = berth_driver_stat(st->driver, &info, path.ptr, err);
        if (rc == BERTH_ENOTFOUND) {
            info.size = 0; /* no byte written yet */
            rc = 0;
        }
        up->size = info.size;
    }
done:
    berth_buf_dispose(&path);
    if (rc < 0) {
        berth_upload_free(up);
        return rc;
    }
    *out = up;
    return 0;
}

const char *berth_upload_id(const berth_upload *up)
{
    return up->id;
}

uint64_t berth_upload_size(const berth_upload *up)
{
    return up->size;
}

int64_t berth_upload_started(const berth_upload *up)
{
    return up->started;
}

/* Hash data[from, to) of the upload into h, reading it back from disk. */
static int rehash(berth_upload *up, berth_hasher *h, uint64_t from,
                  uint64_t to, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    berth_reader *r = NULL;
    char *chunk = NULL;
    int rc;

    if (from == to)
        return 0;
    if ((chunk = malloc(REHASH_CHUNK)) == NULL)
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    if ((rc = upload_path(&path, up, BERTH_PATH_UPLOAD_DATA, 0, 0, err)) < 0)
        goto done;
    if ((rc = berth_driver_reader(up->st->driver, &r, path.ptr, from,
                                  err)) < 0)
        goto done;
    while (from < to) {
        size_t want = to - from < REHASH_CHUNK ? (size_t)(to - from)
                                               : REHASH_CHUNK;
        size_t n = 0;
        if ((rc = berth_reader_read(r, chunk, want, &n, err)) < 0)
            goto done;
        if (n == 0) {
            rc = berth_error_set(err, BERTH_EIO,
                                 "upload %s: data shorter than expected",
                                 up->id);
            goto done;
        }
        if ((rc = berth_hasher_update(h, chunk, n, err)) < 0)
            goto done;
        from += n;
    }
done:
    berth_reader_free(r);
    berth_buf_dispose(&path);
    free(chunk);
    return rc;
}

/*
 * Newest saved sha256 state at an offset <= size, restored; NULL in *out
 * when there is none usable (then hashing starts from byte 0).
 */
static int restore_state(berth_hasher **out, berth_upload *up,
                         berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT, state = BERTH_BUF_INIT;
    berth_strlist names = BERTH_STRLIST_INIT;
    uint64_t best = 0;
    int found = 0, rc;

    *out = NULL;
    if ((rc = upload_path(&path, up, BERTH_PATH_UPLOAD_HASHSTATES,
                          BERTH_DIGEST_SHA256, 0, err)) < 0)
        goto done;
    rc = berth_driver_list(up->st->driver, &names, path.ptr, err);
    if (rc == BERTH_ENOTFOUND) {
        rc = 0;
        goto done;
    }
    if (rc < 0)
        goto done;
    for (size_t i = 0; i < names.count; i++) {
        char *end;
        unsigned long long off = strtoull(names.items[i], &end, 10);
        if (*end == '\0' && end != names.items[i] && off <= up->size &&
            (!found || off > best)) {
            best = off;
            found = 1;
        }
    }
    if (!found)
        goto done;
    if ((rc = upload_path(&path, up, BERTH_PATH_UPLOAD_HASHSTATE,
                          BERTH_DIGEST_SHA256, best, err)) < 0)
        goto done;
    rc = berth_driver_get(up->st->driver, &state, path.ptr,
                          BERTH_HASHER_STATE_MAX, err);
    if (rc == 0)
        rc = berth_hasher_restore(out, state.ptr, state.len,
                                  BERTH_HASHER_AUTO, err);
    if (rc == 0 && berth_hasher_size(*out) != best) {
        berth_hasher_free(*out);
        *out = NULL;
    }
    /* A damaged or vanished state only costs a re-hash. */
    if (rc == BERTH_EINVAL || rc == BERTH_ENOTFOUND ||
        rc == BERTH_ETOOLARGE)
        rc = 0;
    if (*out) {
        up->saved_offset = best;
        up->has_saved = 1;
    }
done:
    berth_strlist_dispose(&names);
    berth_buf_dispose(&path);
    berth_buf_dispose(&state);
    return rc;
}

/* Make up->hasher cover exactly the first up->size bytes. */
static int ensure_hasher(berth_upload *up, berth_error *err)
{
    berth_hasher *h = NULL;
    int rc;

    if (up->hasher && berth_hasher_size(up->hasher) == up->size)
        return 0;
    berth_hasher_free(up->hasher);
    up->hasher = NULL;
    if ((rc = restore_state(&h, up, err)) < 0)
        return rc;
    if (h == NULL &&
        (rc = berth_hasher_new(&h, BERTH_DIGEST_SHA256, BERTH_HASHER_AUTO,
                               err)) < 0)
        return rc;
    if ((rc = rehash(up, h, berth_hasher_size(h), up->size, err)) < 0) {
        berth_hasher_free(h);
        return rc;
    }
    up->hasher = h;
    return 0;
}

static int need_writer(berth_upload *up, berth_error *err)
{
    if (up->writer == NULL)
        return berth_error_set(err, BERTH_EINVAL,
                               "upload %s is not open for writing", up->id);
    return 0;
}

int berth_upload_write(berth_upload *up, const void *data, size_t len,
                       berth_error *err)
{
    int rc;

    if ((rc = need_writer(up, err)) < 0)
        return rc;
    if ((rc = ensure_hasher(up, err)) < 0)
        return rc;
    rc = berth_writer_write(up->writer, data, len, err);
    if (rc < 0) {
        /* Part of the chunk may be on disk: trust the file, not the
         * hasher, from here on. */
        up->size = berth_writer_size(up->writer);
        berth_hasher_free(up->hasher);
        up->hasher = NULL;
        return rc;
    }
    up->size += len;
    return berth_hasher_update(up->hasher, data, len, err);
}

int berth_upload_adopt(berth_upload *up, const char *local_file,
                       berth_follower *follower, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    berth_hasher *followed = NULL;
    int rc;

    if ((rc = need_writer(up, err)) < 0)
        return rc;
    if (up->size != 0)
        return berth_error_set(err, BERTH_EINVAL,
                               "upload %s is not empty: append instead",
                               up->id);
    if ((rc = upload_path(&path, up, BERTH_PATH_UPLOAD_DATA, 0, 0, err)) < 0)
        goto done;
    /* What the follower hashed is the file's content only if it is this
     * file, whole: checked before the file moves. */
    if (follower != NULL)
        (void)berth__follower_take(follower, local_file, &followed);
    /* The file replaces the data file our writer locks, so the writer is
     * reopened on the new one: the session stays ours. */
    if ((rc = berth_driver_import(up->st->driver, path.ptr, local_file,
                                  err)) < 0)
        goto done;
    berth_writer_free(up->writer);
    up->writer = NULL;
    berth_hasher_free(up->hasher);
    up->hasher = NULL;
    if ((rc = open_writer(up, 1, err)) < 0)
        goto done;
    if (followed != NULL && berth_hasher_size(followed) == up->size) {
        up->hasher = followed;
        followed = NULL;
    }
    /* Without a follower, one read of the file: hash it and save the
     * state. */
    rc = berth_upload_flush(up, err);
done:
    berth_hasher_free(followed);
    berth_buf_dispose(&path);
    return rc;
}

int berth_upload_flush(berth_upload *up, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    unsigned char state[BERTH_HASHER_STATE_MAX];
    size_t state_len = sizeof(state);
    int rc;

    if ((rc = need_writer(up, err)) < 0)
        return rc;
    /* Nothing to save at 0: a new hasher is that state. */
    if (up->size == 0 || (up->has_saved && up->saved_offset == up->size))
        return 0;
    if ((rc = ensure_hasher(up, err)) < 0)
        goto done;
    /* Data before the state that describes it. */
    if ((rc = berth_writer_commit(up->writer, err)) < 0)
        goto done;
    if ((rc = berth_hasher_save(state, &state_len, up->hasher, err)) < 0)
        goto done;
    if ((rc = upload_path(&path, up, BERTH_PATH_UPLOAD_HASHSTATE,
                          BERTH_DIGEST_SHA256, up->size, err)) < 0)
        goto done;
    if ((rc = berth_driver_put(up->st->driver, path.ptr, state, state_len,
                               err)) < 0)
        goto done;
    /* The older state is now useless; losing this removal is harmless. */
    if (up->has_saved && up->saved_offset < up->size &&
        upload_path(&path, up, BERTH_PATH_UPLOAD_HASHSTATE,
                    BERTH_DIGEST_SHA256, up->saved_offset, NULL) == 0)
        berth_driver_remove(up->st->driver, path.ptr, NULL);
    up->saved_offset = up->size;
    up->has_saved = 1;
done:
    berth_buf_dispose(&path);
    return rc;
}

static int remove_upload(berth_upload *up, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    int rc;

    if ((rc = upload_path(&path, up, BERTH_PATH_UPLOAD, 0, 0, err)) < 0)
        goto done;
    rc = berth_driver_remove(up->st->driver, path.ptr, err);
    if (rc == BERTH_ENOTFOUND)
        rc = 0;
done:
    berth_buf_dispose(&path);
    return rc;
}

/* The session's file, moved in. Gone, it was moved in already and gc
 * took it meanwhile (blob.c): the client must upload it again. */
static int move_in(berth_store *st, void *ctx, const char *data_path,
                   berth_error *err)
{
    berth_upload *up = ctx;
    berth_buf file = BERTH_BUF_INIT;
    int rc;

    if ((rc = upload_path(&file, up, BERTH_PATH_UPLOAD_DATA, 0, 0,
                          err)) == 0)
        rc = berth_driver_move(st->driver, file.ptr, data_path, err);
    berth_buf_dispose(&file);
    if (rc == BERTH_ENOTFOUND)
        rc = berth_error_set(err, BERTH_EBLOB_UPLOAD_UNKNOWN,
                             "upload %s: its data went while it was "
                             "committed; upload it again", up->id);
    return rc;
}

int berth_upload_commit(berth_upload *up, const berth_digest *expected,
                        int64_t expected_size, berth_error *err)
{
    berth_hasher *other = NULL;
    berth_digest actual;
    int rc;

    if ((rc = need_writer(up, err)) < 0)
        return rc;
    if (expected_size >= 0 && (uint64_t)expected_size != up->size) {
        rc = berth_error_set(err, BERTH_ESIZE_INVALID,
                             "upload %s: size %" PRIu64 ", expected %" PRId64,
                             up->id, up->size, expected_size);
        goto failed;
    }
    if (expected->algo == BERTH_DIGEST_SHA256) {
        if ((rc = ensure_hasher(up, err)) < 0)
            goto done;
        rc = berth_hasher_digest(&actual, up->hasher, err);
    } else {
        /* Only sha256 is hashed on the fly; others read the data back. */
        if ((rc = berth_hasher_new(&other, expected->algo, BERTH_HASHER_AUTO,
                                   err)) < 0 ||
            (rc = rehash(up, other, 0, up->size, err)) < 0)
            goto done;
        rc = berth_hasher_digest(&actual, other, err);
    }
    if (rc < 0)
        goto done;
    if (strcmp(actual.str, expected->str) != 0) {
        rc = berth_error_set(err, BERTH_EDIGEST_INVALID,
                             "digest mismatch: expected %s got %s",
                             expected->str, actual.str);
        goto failed;
    }

    /* Verified: make it durable, then take it into the repository; the
     * session's file is moved in unless the content is stored already. */
    if ((rc = berth_writer_commit(up->writer, err)) < 0 ||
        (rc = berth__blob_adopt(up->st, up->repo, expected,
                                (int64_t)up->size, move_in, up, err)) < 0)
        goto done;
    /* Committed. Leftovers of the session are garbage, not an error. */
    remove_upload(up, NULL);
    goto done;

failed:
    /* A failed verification ends the session and leaves nothing. */
    remove_upload(up, NULL);
done:
    berth_hasher_free(other);
    return rc;
}

int berth_upload_cancel(berth_upload *up, berth_error *err)
{
    int rc;

    if ((rc = need_writer(up, err)) < 0)
        return rc;
    return remove_upload(up, err);
}

void berth_upload_free(berth_upload *up)
{
    if (up == NULL)
        return;
    berth_writer_free(up->writer);
    berth_hasher_free(up->hasher);
    berth__store_unref(up->st);
    free(up->repo);
    free(up);
}
