/*
 * Garbage collection: the collector (mark, sweep, purge, upload sessions:
 * core/src/collect.c, which also argues why it needs no lock against
 * pushes), and the primitives it and fsck (lua/berth/fsck.lua) build on,
 * each of which sees, checks or removes one entry of the layout, so the
 * store stays usable by concurrent requests while a tool runs.
 *
 * `repo` arguments are repository names, validated as everywhere else.
 */
#ifndef BERTH_GC_H
#define BERTH_GC_H

#include <stddef.h>
#include <stdint.h>
#include "berth/errors.h"
#include "berth/digest.h"
#include "berth/store.h"
#include "berth/blob.h"
#include "berth/sys/driver.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Put back (berth_blob_reprieve) every blob a gc condemned and did not
 * finish with: it was killed.
 * @return 0, with the number put back in *count_out, or BERTH_EIO.
 */
BERTH_API
int berth_gc_reprieve_all(int *count_out, berth_store *st, berth_error *err);

/**
 * Put back every _layers link a gc withdrew or condemned and did not
 * finish with (blob.h), dropping those whose blob's data is neither in the
 * tree nor condemned (they would dangle).
 * @return 0, with the number put back in *count_out, or BERTH_EIO.
 */
BERTH_API
int berth_gc_restore_links(int *count_out, berth_store *st, berth_error *err);

/**
 * Every repository of the store: each directory under repositories/ with a
 * valid name and a _layers, _manifests or _uploads directory, so also those
 * without manifests (the catalog leaves them out), in catalog order.
 * `out` is emptied first; the caller owns it: berth_strlist_dispose().
 * @return 0, BERTH_EIO or BERTH_ENOMEM.
 */
BERTH_API
int berth_gc_repo_list(berth_strlist *out, berth_store *st, berth_error *err);

/**
 * Size and modification time of a blob's data file (global, links are not
 * looked at). is_dir is always 0.
 * @return 0, BERTH_EBLOB_UNKNOWN (no data file) or BERTH_EIO.
 */
BERTH_API
int berth_gc_blob_stat(berth_stat_info *out, berth_store *st,
                       const berth_digest *dgst, berth_error *err);

/**
 * Read a blob's data back and hash it (streamed, in chunks, with the
 * fastest hasher of the CPU), to find content damaged on disk.
 * @param actual_out digest of what is on disk (also on a mismatch)
 * @param size_out bytes read
 * @return 0 when the content hashes to dgst, BERTH_EDIGEST_INVALID when
 *         it does not, BERTH_EBLOB_UNKNOWN (no data file) or BERTH_EIO.
 */
BERTH_API
int berth_gc_blob_verify(berth_digest *actual_out, uint64_t *size_out,
                         berth_store *st, const berth_digest *dgst,
                         berth_error *err);

/* ---- links ---- */

/* The link files of a repository (kinds are bits, to select several). */
typedef enum berth_gc_link_kind {
    BERTH_GC_LINK_LAYER = 1,       /* _layers/<alg>/<hex>/link */
    BERTH_GC_LINK_REVISION = 2,    /* _manifests/revisions/<alg>/<hex>/link */
    BERTH_GC_LINK_TAG_CURRENT = 4, /* _manifests/tags/<tag>/current/link */
    BERTH_GC_LINK_TAG_INDEX = 8    /* .../tags/<tag>/index/<alg>/<hex>/link */
} berth_gc_link_kind;

#define BERTH_GC_LINK_ALL 15
/* With the kinds of a walk: also the <alg>/<hex> directories of those
 * kinds that lack their link file (state ABSENT), which are skipped
 * otherwise. A put cut short leaves one, and so does Distribution when it
 * deletes a link. */
#define BERTH_GC_LINK_EMPTY 16

typedef enum berth_gc_link_state {
    BERTH_GC_LINK_OK = 0,      /* a digest: the one its path names */
    BERTH_GC_LINK_ABSENT = 1,  /* its directory is there, the file not (a
                                   crash while writing or removing it) */
    BERTH_GC_LINK_DAMAGED = 2, /* content that is not a digest */
    BERTH_GC_LINK_MISMATCH = 3 /* a digest other than its path names */
} berth_gc_link_state;

typedef struct berth_gc_link {
    berth_gc_link_kind kind;
    berth_gc_link_state state;
    berth_digest digest; /* the digest the path names; for a current link
                            its content (algo BERTH_DIGEST_NONE unless OK) */
    berth_digest target; /* the content when it is a digest, else algo
                            BERTH_DIGEST_NONE */
    char tag[129];       /* tag links; "" otherwise */
    int64_t mtime_ns;    /* of the link file; when absent, of the
                            directory that lacks it */
} berth_gc_link;

typedef struct berth_gc_link_iter berth_gc_link_iter;

/**
 * Walk repo's links of the given kinds (an OR of BERTH_GC_LINK_*): layers,
 * then revisions, then per tag (sorted) its current link and its index,
 * each sorted by digest. Directory names that are not digests or tags are
 * not links berth or Distribution wrote, and are skipped. A repository
 * without these directories has no links. Lazy: one directory listing per
 * level, so a repository of any size walks in little memory.
 * The iterator is the caller's (berth_gc_link_iter_free); repo is copied.
 * @return 0, BERTH_ENAME_INVALID or BERTH_ENOMEM.
 */
BERTH_API
int berth_gc_link_iter_new(berth_gc_link_iter **out, berth_store *st,
                           const char *repo, unsigned kinds,
                           berth_error *err);
/** Next link, copied into out. @return 0, BERTH_EITEROVER at the end, or
 *  BERTH_EIO. */
BERTH_API
int berth_gc_link_iter_next(berth_gc_link *out, berth_gc_link_iter *it,
                            berth_error *err);
BERTH_API
void berth_gc_link_iter_free(berth_gc_link_iter *it);

/**
 * One link: dgst names it (NULL for BERTH_GC_LINK_TAG_CURRENT), tag is
 * needed for the tag kinds (NULL otherwise).
 * @return 0 (out filled, state says what is there), BERTH_ENOTFOUND (no
 *         link file), BERTH_ENAME_INVALID, BERTH_ETAG_INVALID, BERTH_EIO.
 */
BERTH_API
int berth_gc_link_stat(berth_gc_link *out, berth_store *st, const char *repo,
                       berth_gc_link_kind kind, const berth_digest *dgst,
                       const char *tag, berth_error *err);

/**
 * Remove one link with its directory, whatever it holds (so damaged links
 * go too). For BERTH_GC_LINK_TAG_CURRENT the whole tag goes, as
 * berth_tag_delete does it. Nothing else is checked: the caller decided.
 * @return 0, BERTH_ENOTFOUND, BERTH_ENAME_INVALID, BERTH_ETAG_INVALID,
 *         BERTH_EIO.
 */
BERTH_API
int berth_gc_link_remove(berth_store *st, const char *repo,
                         berth_gc_link_kind kind, const berth_digest *dgst,
                         const char *tag, berth_error *err);

/**
 * Whether the directory of a link (dgst and tag as berth_gc_link_stat;
 * a tag's current link is no kind here, see berth_tag_delete_if) is what
 * a put cut short leaves: no link file, nothing but the driver's temp
 * files, none of it changed since cutoff_ns. With remove, it goes
 * (berth_driver_leftover: a put arriving meanwhile keeps it).
 * @return 0 (a leftover; gone with remove), BERTH_EEXISTS (not one),
 *         BERTH_ENOTFOUND, BERTH_EUNSUPPORTED (a driver without
 *         leftovers), BERTH_ENAME_INVALID, BERTH_ETAG_INVALID, BERTH_EIO.
 */
BERTH_API
int berth_gc_link_leftover(berth_store *st, const char *repo,
                           berth_gc_link_kind kind, const berth_digest *dgst,
                           const char *tag, int64_t cutoff_ns, int remove,
                           berth_error *err);

/**
 * Whether the directory of blob dgst is what a crash leaves: no data,
 * nothing but temp files of a put, or nothing at all (an upload's commit
 * killed between making the directory and moving the data in), none of
 * it changed since cutoff_ns. With remove, it goes; a commit moving data
 * in meanwhile keeps it, as only an empty directory is removed.
 * @return 0 (a leftover; gone with remove), BERTH_EEXISTS (not one: data
 *         or anything else is there), BERTH_EBLOB_UNKNOWN (no directory),
 *         BERTH_EUNSUPPORTED, BERTH_EIO.
 */
BERTH_API
int berth_gc_blob_leftover(berth_store *st, const berth_digest *dgst,
                           int64_t cutoff_ns, int remove, berth_error *err);

/* ---- upload sessions ---- */

typedef struct berth_gc_upload {
    char id[BERTH_UPLOAD_ID_MAX];
    int64_t started; /* startedat, seconds since the epoch (0 when it is
                          damaged); without a startedat file, the newest
                          modification time of the session's directory and
                          data (a session being created, or a crash) */
    int has_startedat;
    uint64_t size; /* bytes of data received */
} berth_gc_upload;

typedef struct berth_gc_upload_iter berth_gc_upload_iter;

/**
 * Walk repo's upload sessions, sorted by id. Names that are not upload ids
 * are skipped. The iterator is the caller's (berth_gc_upload_iter_free);
 * repo is copied.
 * @return 0, BERTH_ENAME_INVALID or BERTH_ENOMEM.
 */
BERTH_API
int berth_gc_upload_iter_new(berth_gc_upload_iter **out, berth_store *st,
                             const char *repo, berth_error *err);
/** Next session, copied into out. @return 0, BERTH_EITEROVER at the end,
 *  or BERTH_EIO. */
BERTH_API
int berth_gc_upload_iter_next(berth_gc_upload *out, berth_gc_upload_iter *it,
                              berth_error *err);
BERTH_API
void berth_gc_upload_iter_free(berth_gc_upload_iter *it);

/**
 * Remove an upload session and its data, with or without startedat. The
 * session's writer lock is taken first, so a session that a request is
 * writing right now is left alone.
 * @return 0, BERTH_EBUSY (being written), BERTH_EBLOB_UPLOAD_UNKNOWN,
 *         BERTH_ENAME_INVALID, BERTH_EIO.
 */
BERTH_API
int berth_gc_upload_purge(berth_store *st, const char *repo, const char *id,
                          berth_error *err);

/**
 * Put back a manifest gc or fsck deleted whose body is still stored: its
 * revision link and referrers entry, without verifying its references
 * (what it needs was kept with it). Bodies no schema knows are stored as
 * they are.
 * @return 0, BERTH_EBLOB_UNKNOWN (no body), BERTH_ENAME_INVALID, BERTH_EIO,
 *         BERTH_ENOMEM.
 */
BERTH_API
int berth_gc_manifest_restore(berth_store *st, const char *repo,
                              const berth_digest *dgst, berth_error *err);

/* ---- the collector ---- */

#define BERTH_GC_OPTIONS_VERSION 1

typedef struct berth_gc_options {
    unsigned version;        /* BERTH_GC_OPTIONS_VERSION */
    int64_t now_ns;          /* the run's start, since the epoch; 0: now */
    int64_t grace_ns;        /* blobs, links and revisions younger stay */
    int64_t upload_grace_ns; /* upload sessions started since then stay */
    int dry_run;             /* only report what would go */
    int delete_untagged;     /* also manifests no tag needs (older than the
                                grace, not needed by a kept one) */
} berth_gc_options;

#define BERTH_GC_OPTIONS_INIT                                                \
    {                                                                        \
        BERTH_GC_OPTIONS_VERSION, 0, 3600 * INT64_C(1000000000),             \
            7 * 86400 * INT64_C(1000000000), 0, 0                            \
    }

typedef enum berth_gc_phase {
    BERTH_GC_PHASE_MARK = 1,
    BERTH_GC_PHASE_SWEEP = 2,
    BERTH_GC_PHASE_SETTLE = 3, /* wait before the next step (below) */
    BERTH_GC_PHASE_PURGE = 4,
    BERTH_GC_PHASE_UPLOADS = 5
} berth_gc_phase;

typedef struct berth_gc_progress {
    berth_gc_phase phase;
    size_t done; /* of total: repositories, blobs or candidates */
    size_t total;
} berth_gc_progress;

typedef struct berth_gc_report {
    uint64_t blobs_total, blobs_kept, blobs_kept_bytes;
    uint64_t blobs_young, blobs_young_bytes; /* not marked, but kept */
    uint64_t blobs_removed, blobs_removed_bytes;
    uint64_t blobs_reprieved; /* put back from a killed gc */
    uint64_t manifests_removed, manifests_restored;
    uint64_t links_removed, links_restored; /* restored: from a killed gc */
    uint64_t uploads_total, uploads_removed, uploads_removed_bytes;
    uint64_t uploads_busy; /* being written, left alone */
    uint64_t lost;         /* list entries or warnings not recorded: out
                               of memory after the removal was done */
} berth_gc_report;

typedef enum berth_gc_removal_kind {
    BERTH_GC_REMOVED_BLOB = 1,
    BERTH_GC_REMOVED_MANIFEST = 2,
    BERTH_GC_REMOVED_UPLOAD = 3
} berth_gc_removal_kind;

typedef struct berth_gc_removal {
    berth_gc_removal_kind kind;
    const char *repo; /* manifests and uploads; NULL for blobs */
    const char *name; /* a digest, or an upload's id */
    uint64_t size;    /* blobs and uploads */
    int64_t started;  /* uploads: seconds since the epoch */
} berth_gc_removal;

typedef struct berth_gc berth_gc;

/**
 * A garbage collection run over st, a step at a time: C never waits, the
 * caller does (an nginx worker yields, a command sleeps):
 *
 *   berth_gc_new(&gc, st, &opts, err);
 *   while ((rc = berth_gc_step(&p, gc, err)) == 0)
 *       if (p.phase == BERTH_GC_PHASE_SETTLE)
 *           sleep(1);   (let manifest puts under way finish, collect.c)
 *   rc == BERTH_EITEROVER: done, see berth_gc_report_of; else stopped
 *   berth_gc_free(gc);
 *
 * A store may run one collector at a time; concurrent pushes, pulls and
 * deletes are safe (collect.c says why). Without dry_run the run first
 * puts back what a collector that was killed left out of the tree.
 * @return 0, BERTH_EINVAL (an unknown options version or a negative
 *         grace), BERTH_ENOMEM.
 */
BERTH_API
int berth_gc_new(berth_gc **out, berth_store *st,
                 const berth_gc_options *opts, berth_error *err);

/**
 * The next step of the run, with where it is in *out.
 * @return 0 (more to do), BERTH_EITEROVER (the run is over), or the error
 *         that stopped it (a manifest that cannot be read: what it needs is
 *         unknown, so nothing more goes; BERTH_EIO, BERTH_ENOMEM): the links
 *         and blobs it held out of the tree are put back, and every later
 *         step answers the same.
 */
BERTH_API
int berth_gc_step(berth_gc_progress *out, berth_gc *gc, berth_error *err);

/** What the run did so far (whole once berth_gc_step answered
 *  BERTH_EITEROVER). */
BERTH_API
const berth_gc_report *berth_gc_report_of(const berth_gc *gc);

/** The ith removal the run made (or, with dry_run, would make): blobs as
 *  they went, then the manifests deleted (sorted by repository and digest)
 *  once the run is over, and upload sessions. Strings are the collector's.
 *  @return 0, or BERTH_EITEROVER past the last. */
BERTH_API
int berth_gc_removed(berth_gc_removal *out, const berth_gc *gc, size_t i);

/** The ith warning (something kept because it could not be looked at or
 *  put back), or NULL past the last. */
BERTH_API
const char *berth_gc_warning(const berth_gc *gc, size_t i);

/** Free a collector; one stopped before its end puts back what it held out
 *  of the tree first. */
BERTH_API
void berth_gc_free(berth_gc *gc);

#ifdef __cplusplus
}
#endif
#endif
