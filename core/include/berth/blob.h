/*
 * Blobs: global content-addressed data, linked into repositories, and the
 * upload sessions that create them.
 *
 * `repo` arguments are repository names; a function that accepts NULL for
 * repo then works on the global blob store, regardless of links.
 */
#ifndef BERTH_BLOB_H
#define BERTH_BLOB_H

#include <stddef.h>
#include <stdint.h>
#include "berth/errors.h"
#include "berth/buf.h"
#include "berth/digest.h"
#include "berth/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Size of a blob; with repo, only if it is linked there.
 * @return 0, BERTH_EBLOB_UNKNOWN or BERTH_ENAME_INVALID.
 */
BERTH_API
int berth_blob_stat(uint64_t *size_out, berth_store *st, const char *repo,
                    const berth_digest *dgst, berth_error *err);

/**
 * Whole content of a small blob (a manifest, a config), at most max bytes.
 * @return 0, BERTH_EBLOB_UNKNOWN, BERTH_ETOOLARGE or BERTH_ENAME_INVALID.
 */
BERTH_API
int berth_blob_get(berth_buf *out, berth_store *st, const char *repo,
                   const berth_digest *dgst, size_t max, berth_error *err);

/**
 * Read a blob from an offset (use berth_reader_read / berth_reader_free);
 * the reader keeps the store alive until it is freed.
 * @return 0, BERTH_EBLOB_UNKNOWN, BERTH_ERANGE or BERTH_ENAME_INVALID.
 */
BERTH_API
int berth_blob_open(berth_reader **out, berth_store *st, const char *repo,
                    const berth_digest *dgst, uint64_t offset,
                    berth_error *err);

/**
 * Local file of a blob, for sendfile: its absolute path into out (under
 * the store's root as the driver resolved it) and, when rel_out is not
 * NULL, its path relative to the blobs directory, for a web server that
 * serves that directory (nginx: alias <root>/<berth_blob_dir()>/). Only
 * the filesystem driver has local files.
 * @return 0, BERTH_EBLOB_UNKNOWN, BERTH_EUNSUPPORTED or BERTH_ENAME_INVALID.
 */
BERTH_API
int berth_blob_local_path(berth_buf *out, berth_buf *rel_out, berth_store *st,
                          const char *repo, const berth_digest *dgst,
                          berth_error *err);

/**
 * How a server sends a blob's bytes (the driver's hand-off): *kind and out,
 * a local file's absolute path (BERTH_SEND_FILE; rel_out, when not NULL,
 * gets its path under the blobs directory, as for berth_blob_local_path)
 * or a URL (BERTH_SEND_URL: rel_out stays empty).
 * @return 0, BERTH_EBLOB_UNKNOWN, BERTH_EUNSUPPORTED (the server reads the
 *         bytes: berth_blob_open) or BERTH_ENAME_INVALID.
 */
BERTH_API
int berth_blob_send(berth_send_kind *kind, berth_buf *out, berth_buf *rel_out,
                    berth_store *st, const char *repo,
                    const berth_digest *dgst, berth_error *err);

/** The blobs directory relative to a store's root, without a trailing
 *  '/' ("docker/registry/v2/blobs"). */
BERTH_API
const char *berth_blob_dir(void);

/**
 * Store a small blob held in memory and link it into repo (if not NULL).
 * Storing content that exists already is a cheap success.
 * @return 0, BERTH_ENAME_INVALID, BERTH_EIO.
 */
BERTH_API
int berth_blob_put(berth_digest *out, berth_store *st, const char *repo,
                   berth_digest_algo algo, const void *data, size_t len,
                   berth_error *err);

/**
 * Link an existing blob into repo (cross-repository mount). With from not
 * NULL, the blob must be linked in `from`.
 * @return 0, BERTH_EBLOB_UNKNOWN or BERTH_ENAME_INVALID.
 */
BERTH_API
int berth_blob_mount(berth_store *st, const char *repo, const char *from,
                     const berth_digest *dgst, berth_error *err);

/**
 * Remove repo's link to a blob; the data stays for garbage collection.
 * @return 0, BERTH_EBLOB_UNKNOWN or BERTH_ENAME_INVALID.
 */
BERTH_API
int berth_blob_unlink(berth_store *st, const char *repo,
                      const berth_digest *dgst, berth_error *err);

/**
 * Remove a blob's data from the global store (garbage collection only).
 * @return 0 or BERTH_EBLOB_UNKNOWN.
 */
BERTH_API
int berth_blob_purge(berth_store *st, const berth_digest *dgst,
                     berth_error *err);

/*
 * Online gc's purge in three steps. Condemn moves the blob's directory out
 * of the tree (the data is then unknown to a global read); a push that
 * links it afterwards finds it gone and puts it back (reprieve, or its own
 * bytes), and a read through a link (stat, get, open, local path with a
 * repository) puts it back too: the link may be newer than gc's judgement
 * and gc's last look would keep it. gc then looks for links once more and
 * either reprieves it or
 * purges the condemned copy (berth_gc_reprieve_all puts back what a gc
 * that was killed left).
 * Each @return 0 or BERTH_EBLOB_UNKNOWN (nothing to move or remove).
 */
BERTH_API
int berth_blob_condemn(berth_store *st, const berth_digest *dgst,
                       berth_error *err);
BERTH_API
int berth_blob_reprieve(berth_store *st, const berth_digest *dgst,
                        berth_error *err);
BERTH_API
int berth_blob_purge_condemned(berth_store *st, const berth_digest *dgst,
                               berth_error *err);

/*
 * Online gc takes the old _layers links of a blob it means to purge out of
 * the tree into a journal of its own (withdraw), not away: a read through
 * such a link (as above, a mount's source, a manifest's references) that
 * finds it missing puts it back first (restore), so a link an acknowledged
 * manifest needs is never lost to a gc that was killed, and is there when
 * gc's last look counts the links. Before that look gc condemns the
 * blob's withdrawn links at once (no read puts them back from then on);
 * a blob it keeps gets them back (reprieve), a purged one loses them
 * (purge). berth_gc_restore_links puts back what a gc that was killed
 * left. Each @return 0 or BERTH_EBLOB_UNKNOWN (nothing to move or remove),
 * BERTH_ENAME_INVALID.
 */
BERTH_API
int berth_blob_link_withdraw(berth_store *st, const char *repo,
                             const berth_digest *dgst, berth_error *err);
BERTH_API
int berth_blob_link_restore(berth_store *st, const char *repo,
                            const berth_digest *dgst, berth_error *err);
BERTH_API
int berth_blob_links_condemn(berth_store *st, const berth_digest *dgst,
                             berth_error *err);
BERTH_API
int berth_blob_link_reprieve(berth_store *st, const char *repo,
                             const berth_digest *dgst, berth_error *err);
/** Both the withdrawn and the condemned links of dgst. */
BERTH_API
int berth_blob_links_purge(berth_store *st, const berth_digest *dgst,
                           berth_error *err);

/*
 * Enumerate blobs: all of the store's (repo NULL) or those linked in repo,
 * sorted by algorithm then hex.
 */
typedef struct berth_blob_iter berth_blob_iter;

/** @return 0, BERTH_ENAME_INVALID or BERTH_ENOMEM. */
BERTH_API
int berth_blob_iter_new(berth_blob_iter **out, berth_store *st,
                        const char *repo, berth_error *err);
/** Next digest. @return 0, BERTH_EITEROVER at the end, or BERTH_EIO. */
BERTH_API
int berth_blob_iter_next(berth_digest *out, berth_blob_iter *it,
                         berth_error *err);
BERTH_API
void berth_blob_iter_free(berth_blob_iter *it);

/*
 * Upload sessions. An upload is opened for one request: berth_upload_create
 * or berth_upload_open with BERTH_UPLOAD_WRITE takes the session's writer,
 * which excludes every other writer (any process) until berth_upload_free.
 * Its state lives entirely in the store, so the next request may open it in
 * another process.
 */
typedef struct berth_upload berth_upload;

enum { BERTH_UPLOAD_READ = 0, BERTH_UPLOAD_WRITE = 1 };

/** UUIDs are 36 characters (RFC 4122 form). */
#define BERTH_UPLOAD_ID_MAX 37

/**
 * Start an upload into repo; it is open for writing.
 * @return 0, BERTH_ENAME_INVALID, BERTH_EIO.
 */
BERTH_API
int berth_upload_create(berth_upload **out, berth_store *st, const char *repo,
                        berth_error *err);

/**
 * Open an existing upload. Its size is that of its newest durable hash
 * state (berth_upload_flush), never more: bytes past it were never
 * acknowledged, and with BERTH_UPLOAD_WRITE they are cut off. A commit
 * that stopped after moving the data into the blob store is finished here
 * (the blob linked, the upload gone: BERTH_EBLOB_UPLOAD_UNKNOWN).
 * @param flags BERTH_UPLOAD_READ (status only) or BERTH_UPLOAD_WRITE
 * @return 0, BERTH_EBLOB_UPLOAD_UNKNOWN, BERTH_EBUSY (another request is
 *         writing it), BERTH_ENAME_INVALID.
 */
BERTH_API
int berth_upload_open(berth_upload **out, berth_store *st, const char *repo,
                      const char *id, unsigned flags, berth_error *err);

/** The upload's id; borrowed, valid until berth_upload_free. */
BERTH_API
const char *berth_upload_id(const berth_upload *up);
/** Bytes received so far. */
BERTH_API
uint64_t berth_upload_size(const berth_upload *up);
/** When the upload started, seconds since the epoch. */
BERTH_API
int64_t berth_upload_started(const berth_upload *up);

/**
 * Append bytes; they are hashed as they arrive.
 * @return 0, BERTH_EINVAL (opened read-only), BERTH_EIO.
 */
BERTH_API
int berth_upload_write(berth_upload *up, const void *data, size_t len,
                       berth_error *err);

/*
 * A follower hashes a local file on a thread of its own while something
 * else appends to it (a request body nginx spools), so that the hash is
 * done when the body is; berth_upload_adopt then takes the hash with the
 * file. The thread blocks every signal and polls the file's size.
 */
typedef struct berth_follower berth_follower;

/** Also start writing hashed bytes to disk (for a store that fsyncs). */
#define BERTH_FOLLOW_WRITEBACK 1u

/**
 * Start following file (sha256). Owned by the caller: berth_follower_free.
 * @return 0, BERTH_ENOTFOUND, BERTH_EIO (no thread), BERTH_ENOMEM.
 */
BERTH_API
int berth_follower_start(berth_follower **out, const char *file,
                         unsigned flags, berth_error *err);

/**
 * Bytes hashed so far, from the start of the file.
 * @return 0, or BERTH_EIO once the thread has failed (a read error, the
 *         file shrank): berth_upload_adopt then hashes the file itself.
 */
BERTH_API
int berth_follower_progress(const berth_follower *f, uint64_t *hashed,
                            berth_error *err);

/** Stop the thread and free; NULL is fine. */
BERTH_API
void berth_follower_free(berth_follower *f);

/**
 * Take a whole local file as the upload's content, by moving it into the
 * store (a request body nginx spooled next to the store): no second copy.
 * The upload must be empty. With a follower that followed this file, the
 * upload takes its hash (waiting for it to reach the end of the file);
 * otherwise, or if it failed, the file is hashed by reading it once. The
 * follower is stopped either way, and still the caller's to free.
 * @return 0, BERTH_EINVAL (upload not empty or read-only),
 *         BERTH_EUNSUPPORTED (the driver cannot import; copy instead),
 *         BERTH_ENOTFOUND (no such file), BERTH_EIO.
 */
BERTH_API
int berth_upload_adopt(berth_upload *up, const char *local_file,
                       berth_follower *follower, berth_error *err);

/**
 * Make the bytes written so far durable, then save the hash state at their
 * end: the point the next request resumes from. Bytes written and not
 * flushed are dropped by the next berth_upload_open.
 * @return 0, BERTH_EINVAL (read-only), BERTH_EIO: the new bytes may not be
 *         durable; the upload resumes from the last flush that succeeded
 *         (or this one, if its state reached the disk).
 */
BERTH_API
int berth_upload_flush(berth_upload *up, berth_error *err);

/**
 * Finish an upload: verify digest (and size, unless expected_size < 0), save
 * its hash state at the end (the record berth_upload_open finishes an
 * interrupted commit by), move the data into the blob store and link it
 * into the repository. On success
 * and on a verification failure the upload is gone. An existing blob makes
 * this a cheap success.
 * @return 0, BERTH_EDIGEST_INVALID, BERTH_ESIZE_INVALID, BERTH_EIO.
 */
BERTH_API
int berth_upload_commit(berth_upload *up, const berth_digest *expected,
                        int64_t expected_size, berth_error *err);

/** Delete the upload and its data. @return 0 or BERTH_EIO. */
BERTH_API
int berth_upload_cancel(berth_upload *up, berth_error *err);

/** Release the upload (and its writer lock); NULL is fine. */
BERTH_API
void berth_upload_free(berth_upload *up);

#ifdef __cplusplus
}
#endif
#endif
