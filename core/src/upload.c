/*
 * Upload sessions, in Distribution's layout (_uploads/<id>/{data,startedat,
 * hashstates/<alg>/<offset>}). All state is in the store, so any process can
 * continue an upload; one writer at a time is guaranteed by the driver's
 * writer lock on the data file.
 *
 * The running SHA-256 is saved as a hash state at the current offset once
 * the data before it is durable, and a chunk is acknowledged after that: a
 * session opened again goes on from its newest state, with what follows it
 * cut off (resume, below, says why that is what is on disk).
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
    berth_writer *writer; /* held for BERTH_UPLOAD_WRITE */
    berth_hasher *hasher; /* sha256 over the first `size` bytes, or NULL */
    uint64_t size;
    int64_t started;
    uint64_t saved_offset; /* offset of the hash state on disk, if any */
    int has_saved;
};

/* Algorithms a session has hash states of: sha256's resume it, any is a
 * commit's record (finish_commit). */
static const berth_digest_algo state_algos[] = { BERTH_DIGEST_SHA256,
                                                 BERTH_DIGEST_SHA384,
                                                 BERTH_DIGEST_SHA512 };
#define STATE_ALGOS (sizeof(state_algos) / sizeof(state_algos[0]))

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
    *out = (int64_t)timegm(&tm) -
           (sign == '-' ? -1 : 1) * (int64_t)(oh * 3600 + om * 60);
    return 0;
}

static int upload_alloc(berth_upload **out, berth_store *st, const char *repo,
                        berth_error *err)
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
                             "request",
                             up->id);
    if (rc == 0) {
        up->flags = BERTH_UPLOAD_WRITE;
        up->size = berth_writer_size(up->writer);
    }
done:
    berth_buf_dispose(&path);
    return rc;
}

int berth_upload_create(berth_upload **out, berth_store *st, const char *repo,
                        berth_error *err)
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
    if ((rc = berth_driver_reader(up->st->driver, &r, path.ptr, from, err)) <
        0)
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

/* A hash state read back from the session. */
typedef struct saved_state {
    berth_hasher *h; /* NULL: none */
    uint64_t offset;
} saved_state;

/* The state of algo at offset, restored; NULL in *out when it does not
 * restore whole (gone, torn, damaged, or of another algorithm or length). */
static int load_state(berth_hasher **out, berth_upload *up,
                      berth_digest_algo algo, uint64_t offset,
                      berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT, state = BERTH_BUF_INIT;
    int rc;

    *out = NULL;
    if ((rc = upload_path(&path, up, BERTH_PATH_UPLOAD_HASHSTATE, algo,
                          offset, err)) < 0)
        goto done;
    rc = berth_driver_get(up->st->driver, &state, path.ptr,
                          BERTH_HASHER_STATE_MAX, err);
    if (rc == 0)
        rc = berth_hasher_restore(out, state.ptr, state.len,
                                  BERTH_HASHER_AUTO, err);
    if (rc == 0 && (berth_hasher_algo(*out) != algo ||
                    berth_hasher_size(*out) != offset)) {
        berth_hasher_free(*out);
        *out = NULL;
    }
    if (rc == BERTH_EINVAL || rc == BERTH_ENOTFOUND || rc == BERTH_ETOOLARGE)
        rc = 0;
done:
    berth_buf_dispose(&path);
    berth_buf_dispose(&state);
    return rc;
}

/* Offsets of algo's hash states, newest first, into *out (malloc'd). */
static int state_offsets(uint64_t **out, size_t *count, berth_upload *up,
                         berth_digest_algo algo, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    berth_strlist names = BERTH_STRLIST_INIT;
    uint64_t *offs = NULL;
    size_t n = 0;
    int rc;

    *out = NULL;
    *count = 0;
    if ((rc = upload_path(&path, up, BERTH_PATH_UPLOAD_HASHSTATES, algo, 0,
                          err)) < 0)
        goto done;
    rc = berth__list(&names, up->st, path.ptr, err);
    if (rc < 0 || names.count == 0)
        goto done;
    if ((offs = malloc(names.count * sizeof(*offs))) == NULL) {
        rc = berth_error_set(err, BERTH_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < names.count; i++) {
        char *end;
        unsigned long long off = strtoull(names.items[i], &end, 10);
        if (*end == '\0' && end != names.items[i] &&
            names.items[i][0] != '-') {
            size_t j = n++;
            /* insertion sort, newest first: a session has few states */
            for (; j > 0 && offs[j - 1] < off; j--)
                offs[j] = offs[j - 1];
            offs[j] = off;
        }
    }
    *out = offs;
    *count = n;
    offs = NULL;
done:
    free(offs);
    berth_strlist_dispose(&names);
    berth_buf_dispose(&path);
    return rc;
}

/*
 * The newest states of algo that restore whole: *at at an offset the data
 * reaches (up->size), *past beyond it (either may be NULL: not wanted).
 * *newest, when not NULL, is raised to the newest offset there is.
 */
static int scan_states(berth_upload *up, berth_digest_algo algo,
                       saved_state *at, saved_state *past, uint64_t *newest,
                       berth_error *err)
{
    uint64_t *offs;
    size_t count;
    int rc;

    if ((rc = state_offsets(&offs, &count, up, algo, err)) < 0)
        return rc;
    if (newest != NULL && count > 0 && offs[0] > *newest)
        *newest = offs[0];
    for (size_t i = 0; i < count && rc == 0; i++) {
        saved_state *want = offs[i] > up->size ? past : at;
        if (want == NULL || want->h != NULL)
            continue;
        want->offset = offs[i];
        rc = load_state(&want->h, up, algo, offs[i], err);
        if (want == at && at->h != NULL)
            break; /* older ones are not needed */
    }
    free(offs);
    return rc;
}

/* Remove every hash state past offset: they describe bytes the session no
 * longer has. */
static int remove_states_past(berth_upload *up, uint64_t offset,
                              berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    uint64_t *offs = NULL;
    size_t count;
    int rc = 0;

    for (size_t a = 0; a < STATE_ALGOS && rc == 0; a++) {
        if ((rc = state_offsets(&offs, &count, up, state_algos[a], err)) < 0)
            break;
        for (size_t i = 0; i < count && offs[i] > offset && rc == 0; i++) {
            if ((rc = upload_path(&path, up, BERTH_PATH_UPLOAD_HASHSTATE,
                                  state_algos[a], offs[i], err)) == 0)
                rc = berth_driver_remove(up->st->driver, path.ptr, err);
            if (rc == BERTH_ENOTFOUND)
                rc = 0;
        }
        free(offs);
        offs = NULL;
    }
    berth_buf_dispose(&path);
    return rc;
}

/* Make up->hasher cover exactly the first up->size bytes: from the
 * newest state and the data after it (after a write that failed part way,
 * the file is the truth). */
static int ensure_hasher(berth_upload *up, berth_error *err)
{
    saved_state at = { NULL, 0 };
    int rc;

    if (up->hasher && berth_hasher_size(up->hasher) == up->size)
        return 0;
    berth_hasher_free(up->hasher);
    up->hasher = NULL;
    rc = scan_states(up, BERTH_DIGEST_SHA256, &at, NULL, NULL, err);
    if (rc < 0)
        return rc;
    if (at.h != NULL) {
        up->saved_offset = at.offset;
        up->has_saved = 1;
    } else if ((rc = berth_hasher_new(&at.h, BERTH_DIGEST_SHA256,
                                      BERTH_HASHER_AUTO, err)) < 0) {
        return rc;
    }
    rc = rehash(up, at.h, berth_hasher_size(at.h), up->size, err);
    if (rc < 0) {
        berth_hasher_free(at.h);
        return rc;
    }
    up->hasher = at.h;
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

/* Save h's state, at the offset it has hashed to. */
static int put_state(berth_upload *up, const berth_hasher *h,
                     berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    unsigned char state[BERTH_HASHER_STATE_MAX];
    size_t state_len = sizeof(state);
    int rc;

    if ((rc = berth_hasher_save(state, &state_len, h, err)) == 0 &&
        (rc = upload_path(&path, up, BERTH_PATH_UPLOAD_HASHSTATE,
                          berth_hasher_algo(h), berth_hasher_size(h), err)) ==
            0)
        rc = berth_driver_put(up->st->driver, path.ptr, state, state_len,
                              err);
    berth_buf_dispose(&path);
    return rc;
}

int berth_upload_flush(berth_upload *up, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    int rc;

    if ((rc = need_writer(up, err)) < 0)
        return rc;
    /* Nothing to save at 0: a new hasher is that state. */
    if (up->size == 0 || (up->has_saved && up->saved_offset == up->size))
        return 0;
    if ((rc = ensure_hasher(up, err)) < 0)
        goto done;
    /* Data before the state that describes it. */
    if ((rc = berth_writer_commit(up->writer, err)) < 0 ||
        (rc = put_state(up, up->hasher, err)) < 0)
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

    if ((rc = upload_path(&file, up, BERTH_PATH_UPLOAD_DATA, 0, 0, err)) == 0)
        rc = berth_driver_move(st->driver, file.ptr, data_path, err);
    berth_buf_dispose(&file);
    if (rc == BERTH_ENOTFOUND)
        rc = berth_error_set(err, BERTH_EBLOB_UPLOAD_UNKNOWN,
                             "upload %s: its data went while it was "
                             "committed; upload it again",
                             up->id);
    return rc;
}

/*
 * A state of a commit's digest past the end of the data is its record: the
 * commit wrote it before moving the data into the blob store, so with the
 * blob there the commit stopped before its link. Finish it, and answer as
 * for a completed upload (Distribution: BLOB_UPLOAD_UNKNOWN). 0 when the
 * blob is not there (gc took it; fsync none lost it): the session goes on
 * with what it has.
 */
static int finish_commit(berth_upload *up, const saved_state *record,
                         berth_error *err)
{
    berth_digest dgst;
    int rc;

    if ((rc = berth_hasher_digest(&dgst, record->h, err)) < 0)
        return rc;
    rc = berth__blob_adopt(up->st, up->repo, &dgst, (int64_t)record->offset,
                           NULL, NULL, err);
    /* unlinked, it may be condemned by gc meanwhile: a push puts it back */
    if (rc == BERTH_EBLOB_UNKNOWN &&
        berth_blob_reprieve(up->st, &dgst, NULL) == 0)
        rc = berth__blob_adopt(up->st, up->repo, &dgst,
                               (int64_t)record->offset, NULL, NULL, err);
    if (rc == BERTH_EBLOB_UNKNOWN)
        return 0;
    if (rc < 0)
        return rc;
    remove_upload(up, NULL);
    return berth_error_set(err, BERTH_EBLOB_UPLOAD_UNKNOWN,
                           "upload %s is complete: its blob is %s", up->id,
                           dgst.str);
}

/*
 * Where a session resumes after a crash: up->size from the data file, cut
 * back to its newest durable hash state (and, holding the writer, the file
 * and the states past that point too). A state at N is written only after
 * the data before N was made durable (flush: the data's commit, then the
 * state's put, a temporary file fsynced, renamed and its directory
 * fsynced), and a chunk is acknowledged only after both. So:
 * - fsync full: the newest state that restores whole at an offset the data
 *   reaches marks acknowledged bytes that are on disk. What follows it is a
 *   request that did not finish; after a power cut it may be zeros (the
 *   file's size reached the disk, its data did not). Resuming at the state,
 *   the client resends the tail and the digest comes out right.
 * - fsync data: the same, but a power cut may lose the newest state's
 *   rename: the session resumes at an older state (Distribution keeps them
 *   all) or at 0, earlier than acknowledged, never on wrong bytes.
 * - fsync none: a killed process is survived (the kernel keeps what it
 *   wrote); after a power cut zeros may lie before a state too, and the
 *   commit's digest check refuses them.
 * A torn state (its rename outran its content) does not restore: the next
 * older one is used. Without the writer a record is only noted in
 * *record_seen: a writer at work may have grown the data since its size
 * was read.
 */
static int resume(berth_upload *up, int *record_seen, berth_error *err)
{
    saved_state at = { NULL, 0 }, record = { NULL, 0 };
    uint64_t newest = 0;
    int rc = 0;

    *record_seen = 0;
    for (size_t a = 0; a < STATE_ALGOS && rc == 0; a++) {
        rc = scan_states(up, state_algos[a],
                         state_algos[a] == BERTH_DIGEST_SHA256 ? &at : NULL,
                         &record, &newest, err);
        if (rc == 0 && record.h != NULL) {
            *record_seen = 1;
            if (up->writer != NULL)
                rc = finish_commit(up, &record, err);
        }
        berth_hasher_free(record.h);
        record.h = NULL;
    }
    if (rc < 0)
        goto done;
    if (at.h == NULL)
        at.offset = 0;
    if (up->writer != NULL) {
        /* states first: a state past the data would read as a record */
        if (newest > at.offset &&
            (rc = remove_states_past(up, at.offset, err)) < 0)
            goto done;
        if (at.offset < up->size &&
            (rc = berth_writer_truncate(up->writer, at.offset, err)) < 0)
            goto done;
        up->hasher = at.h;
        at.h = NULL;
        up->saved_offset = at.offset;
        up->has_saved = up->hasher != NULL;
    }
    up->size = at.offset;
done:
    berth_hasher_free(at.h);
    return rc;
}

/* The session's writer, for an upload whose startedat was read. */
static int take_writer(berth_upload *up, berth_error *err)
{
    int rc;

    if ((rc = open_writer(up, 1, err)) < 0)
        return rc;
    /* Cancelled between our read of startedat and the lock? Then the
     * writer just made a stray data file: take it away again (only then:
     * after a failed read, the data is the session's). */
    if ((rc = read_started(up, err)) == BERTH_EBLOB_UPLOAD_UNKNOWN)
        berth_writer_cancel(up->writer, NULL);
    return rc;
}

int berth_upload_open(berth_upload **out, berth_store *st, const char *repo,
                      const char *id, unsigned flags, berth_error *err)
{
    berth_upload *up = NULL;
    berth_buf path = BERTH_BUF_INIT;
    berth_stat_info info;
    int rc, record_seen;

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
        if ((rc = take_writer(up, err)) < 0)
            goto done;
    } else {
        if ((rc = upload_path(&path, up, BERTH_PATH_UPLOAD_DATA, 0, 0, err)) <
            0)
            goto done;
        rc = berth_driver_stat(st->driver, &info, path.ptr, err);
        if (rc == BERTH_ENOTFOUND) {
            info.size = 0; /* no byte written yet */
            rc = 0;
        }
        up->size = info.size;
    }
    if ((rc = resume(up, &record_seen, err)) < 0 || !record_seen ||
        up->writer != NULL)
        goto done;
    /* A status read finishes an interrupted commit too, holding the writer
     * for it; a writer at work (busy) settles the session itself. */
    rc = take_writer(up, err);
    if (rc == 0)
        rc = resume(up, &record_seen, err);
    berth_writer_free(up->writer);
    up->writer = NULL;
    up->flags = BERTH_UPLOAD_READ;
    berth_hasher_free(up->hasher);
    up->hasher = NULL;
    if (rc == BERTH_EBUSY)
        rc = 0;
done:
    berth_buf_dispose(&path);
    if (rc < 0) {
        berth_upload_free(up);
        return rc;
    }
    *out = up;
    return 0;
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

    /* Verified: make it durable with its record, a state of its digest
     * at its size (resume finishes a commit stopped after the move), then
     * take it into the repository; the session's file is moved in unless
     * the content is stored already. */
    if (other == NULL)
        rc = berth_upload_flush(up, err);
    else if ((rc = berth_writer_commit(up->writer, err)) == 0 && up->size > 0)
        rc = put_state(up, other, err);
    if (rc < 0 ||
        (rc = berth__blob_adopt(up->st, up->repo, expected, (int64_t)up->size,
                                move_in, up, err)) < 0)
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
