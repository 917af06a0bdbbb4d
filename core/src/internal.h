/* Declarations shared between core/src files; not part of the API. */
#ifndef BERTH_INTERNAL_H
#define BERTH_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>

#include "berth/berth.h"

/* Length of a store epoch: 16 random bytes in hex. */
#define BERTH_EPOCH_LEN 32

struct berth_store {
    berth_driver *driver;
    /* The owner's reference, and one for each upload, reader or iterator
     * made from the store, which uses it after the owner may have freed
     * it: the store and its driver go with the last (libgit2's odb). */
    atomic_uint refs;
    /* The epoch of berth's caches when the store was opened ("0" when the
     * store has none yet); see berth_store_new_epoch. */
    char epoch[BERTH_EPOCH_LEN + 1];
};

/*
 * Driver versions (sys/driver.h). berth__driver_slots_end() is where a
 * version's slots end (0 for a version not known: refused); BERTH__SLOT
 * is a slot of d, or NULL when d's version predates it: the one place
 * an optional or missing slot is looked up.
 */
size_t berth__driver_slots_end(unsigned version);
#define BERTH__SLOT(d, slot)                                                 \
    (offsetof(berth_driver, slot) < berth__driver_slots_end((d)->version)    \
         ? (d)->slot                                                         \
         : NULL)

/* A child's reference to its store, taken when it is made (-> st) and
 * dropped when it is freed (NULL is fine). */
berth_store *berth__store_ref(berth_store *st);
void berth__store_unref(berth_store *st);

/* What a path names; see the tree drawn in path.c. */
typedef enum berth_path_kind {
    BERTH_PATH_BLOBS,             /* blobs */
    BERTH_PATH_BLOB_DIR,          /* blobs/<alg>/<hh>/<hex> */
    BERTH_PATH_BLOB_DATA,         /* blobs/<alg>/<hh>/<hex>/data */
    BERTH_PATH_BLOB_DATA_UNDER,   /* <alg>/<hh>/<hex>/data in blobs */
    BERTH_PATH_REPOSITORIES,      /* repositories */
    BERTH_PATH_REPO,              /* repositories/<name> */
    BERTH_PATH_LAYERS,            /* <repo>/_layers */
    BERTH_PATH_LAYER_DIR,         /* <repo>/_layers/<alg>/<hex> */
    BERTH_PATH_LAYER_LINK,        /* <repo>/_layers/<alg>/<hex>/link */
    BERTH_PATH_MANIFESTS,         /* <repo>/_manifests */
    BERTH_PATH_REVISIONS,         /* <repo>/_manifests/revisions */
    BERTH_PATH_REVISION_DIR,      /* .../revisions/<alg>/<hex> */
    BERTH_PATH_REVISION_LINK,     /* .../revisions/<alg>/<hex>/link */
    BERTH_PATH_TAGS,              /* <repo>/_manifests/tags */
    BERTH_PATH_TAG,               /* .../tags/<tag> */
    BERTH_PATH_TAG_CURRENT,       /* .../tags/<tag>/current/link */
    BERTH_PATH_TAG_INDEX,         /* .../tags/<tag>/index */
    BERTH_PATH_TAG_INDEX_DIR,     /* .../tags/<tag>/index/<alg>/<hex> */
    BERTH_PATH_TAG_INDEX_LINK,    /* .../tags/<tag>/index/<alg>/<hex>/link */
    BERTH_PATH_UPLOADS,           /* <repo>/_uploads */
    BERTH_PATH_UPLOAD,            /* <repo>/_uploads/<id> */
    BERTH_PATH_UPLOAD_DATA,       /* .../<id>/data */
    BERTH_PATH_UPLOAD_STARTEDAT,  /* .../<id>/startedat */
    BERTH_PATH_UPLOAD_HASHSTATES, /* .../<id>/hashstates/<alg> */
    BERTH_PATH_UPLOAD_HASHSTATE,  /* .../<id>/hashstates/<alg>/<offset> */
    /* berth's own caches, outside Distribution's tree (rebuildable): */
    BERTH_PATH_REFERRERS_ROOT, /* /berth/v1/repositories/<name>/_referrers */
    BERTH_PATH_REFERRERS_MARKER, /* .../_referrers/_complete */
    BERTH_PATH_REFERRERS,        /* /berth/v1/repositories/<name>/_referrers/
                                   <alg>/<subject hex> */
    BERTH_PATH_REFERRER,         /* .../<subject hex>/<alg>/<hex> */
    BERTH_PATH_TAG_REVERSE_ROOT, /* /berth/v1/repositories/<name>/_tagsof */
    BERTH_PATH_TAG_REVERSE_MARKER, /* .../_tagsof/_complete */
    BERTH_PATH_TAG_REVERSE,        /* /berth/v1/repositories/<name>/_tagsof/
                                   <alg>/<hex> */
    BERTH_PATH_TAG_REVERSE_ENTRY,  /* .../_tagsof/<alg>/<hex>/<tag> */
    BERTH_PATH_TAG_LOCK,        /* /berth/v1/repositories/<name>/_taglock */
    BERTH_PATH_CONDEMNED,       /* /berth/v1/condemned */
    BERTH_PATH_BLOB_CONDEMNED,  /* /berth/v1/condemned/<alg>/<hex>: a blob
                                   directory gc is about to purge */
    BERTH_PATH_UNLINKED,        /* /berth/v1/unlinked */
    BERTH_PATH_BLOB_UNLINKED,   /* /berth/v1/unlinked/<alg>/<hex> */
    BERTH_PATH_LINK_UNLINKED,   /* .../<hex>/<repo as one name>: a _layers
                                   link directory gc took out of the tree */
    BERTH_PATH_LINKS_CONDEMNED, /* /berth/v1/condemned-links */
    BERTH_PATH_BLOB_LINKS_CONDEMNED, /* .../condemned-links/<alg>/<hex> */
    BERTH_PATH_LINK_CONDEMNED,       /* .../<hex>/<repo as one name> */
    BERTH_PATH_EPOCH                 /* /berth/v1/epoch */
} berth_path_kind;

typedef struct berth_path_spec {
    berth_path_kind kind;
    const char *repo;
    const berth_digest *digest;
    const berth_digest *subject; /* referrers */
    const char *tag;
    const char *upload_id;
    berth_digest_algo algo; /* hashstates */
    uint64_t offset;        /* hashstate */
} berth_path_spec;

/* Stop a follower and take its hasher when it covers exactly the whole of
 * file (the one it followed). -> 0, or -1 (nothing taken; hash again). */
int berth__follower_take(berth_follower *f, const char *file,
                         berth_hasher **out);

/* The one function that knows the on-disk layout. The caller has
 * validated repo, tag and upload id. @return 0 or BERTH_ENOMEM. */
int berth__path(berth_buf *out, const berth_path_spec *spec,
                berth_error *err);

/* ---- walks of the layout (path.c) ---- */

/* The directory at path, listed into out (emptied first) as the driver
 * lists it, sorted; a missing one, or a file, is an empty list.
 * @return 0 or the driver's error (BERTH_EIO, BERTH_ENOMEM). */
int berth__list(berth_strlist *out, berth_store *st, const char *path,
                berth_error *err);

/*
 * The digests stored in a digest tree, one listing per level as the walk
 * goes: BERTH_PATH_BLOBS (<alg>/<hh>/<hex>), or <alg>/<hex> under
 * BERTH_PATH_LAYERS, _REVISIONS, _TAG_INDEX, _REFERRERS, _TAG_REVERSE_ROOT,
 * _CONDEMNED, _UNLINKED or _LINKS_CONDEMNED. They come in listing order
 * (algorithm, then hex); a name that is not a digest's directory is
 * skipped, a missing tree is empty. The walk borrows st.
 *
 *   berth__digest_walk w = { 0 };
 *   rc = berth__digest_walk_start(&w, st, &tree, err);
 *   while (rc == 0 && (rc = berth__digest_walk_next(&d, &w, err)) == 0)
 *       ...;                              rc: BERTH_EITEROVER at the end
 *   berth__digest_walk_dispose(&w);       also after an error
 *
 * Starting again walks another tree with the same buffers. The members are
 * the walk's own.
 */
typedef struct berth__digest_walk {
    berth_store *st;
    int levels; /* 3: blobs, 2: the others */
    int listed; /* the tree's own listing is in algs */
    berth_buf base, dir;
    berth_strlist algs, mids, hexes;
    size_t ai, mi, hi; /* the next of each list */
} berth__digest_walk;

/* @return 0 or BERTH_ENOMEM (nothing is listed yet). */
int berth__digest_walk_start(berth__digest_walk *w, berth_store *st,
                             const berth_path_spec *tree, berth_error *err);
/* @return 0 with the next digest in *out, BERTH_EITEROVER, or a listing's
 * error. */
int berth__digest_walk_next(berth_digest *out, berth__digest_walk *w,
                            berth_error *err);
void berth__digest_walk_dispose(berth__digest_walk *w);

/*
 * The repositories of the store, in Distribution's catalog order (bytewise,
 * with '/' below every other byte: "a/b" before "a-b"): a depth-first walk of
 * BERTH_PATH_REPOSITORIES that yields each directory whose path there is a
 * valid repository name and that holds _layers, _manifests or _uploads. It
 * does not enter '_' directories (Distribution's), which never hold
 * repositories. With after (borrowed; NULL: from the start) it yields only
 * names past it, and lists no subtree that lies wholly before it.
 * Used as berth__digest_walk, zeroed first: start (cannot fail), next,
 * dispose.
 */
typedef struct berth__repo_walk {
    berth_store *st;
    const char *after;
    int started;
    berth_buf name, path;         /* the directory being visited; scratch */
    struct berth__repo_dir *dirs; /* the open directories, outermost first */
    size_t depth, cap;
} berth__repo_walk;

void berth__repo_walk_start(berth__repo_walk *w, berth_store *st,
                            const char *after);
/* @return 0 with *name_out (valid until the next call), BERTH_EITEROVER,
 * or a listing's error. */
int berth__repo_walk_next(const char **name_out, berth__repo_walk *w,
                          berth_error *err);
void berth__repo_walk_dispose(berth__repo_walk *w);

/* A repository name from its one-name form under /berth/v1/unlinked (and
 * condemned-links), in place. @return 0, or -1 when it is not one. */
int berth__unlinked_repo(char *name);

/* Link file content: "sha256:<hex>", no newline. Parses one.
 * @return 0 or BERTH_EDIGEST_INVALID. */
int berth__link_parse(berth_digest *out, const berth_buf *content,
                      berth_error *err);

/* Write a link file atomically (the driver's put). */
int berth__link_write(berth_store *st, const char *path,
                      const berth_digest *dgst, berth_error *err);

/* The link file of a link directory (a _DIR kind's, or one gc moved out
 * of the tree) into out. @return 0 or BERTH_ENOMEM. */
int berth__link_file(berth_buf *out, const char *dir, berth_error *err);

/* Read a link. @return 0, BERTH_ENOTFOUND, BERTH_EDIGEST_INVALID. */
int berth__link_read(berth_digest *out, berth_store *st, const char *path,
                     berth_error *err);

/* Puts a pushed blob's data at data_path (its own bytes, or its upload's
 * file moved in). */
typedef int berth__blob_source(berth_store *st, void *ctx,
                               const char *data_path, berth_error *err);

/*
 * Take a blob into repo for a push: its data (size bytes, or any size when
 * negative) from source when it is not stored (NULL: BERTH_EBLOB_UNKNOWN),
 * its link, then a second look at its data. See blob.c for why in that
 * order.
 */
int berth__blob_adopt(berth_store *st, const char *repo,
                      const berth_digest *dgst, int64_t size,
                      berth__blob_source *source, void *ctx,
                      berth_error *err);

/* Check repo (NULL is allowed when allow_null). */
/* Distribution's limit for a whole repository name, in bytes. */
#define BERTH__NAME_MAX 255

int berth__repo_check(const char *repo, int allow_null, berth_error *err);

/* ---- JSON (json.c) ---- */

struct cJSON;

/*
 * Parse a whole JSON text of exactly len bytes strictly: trailing bytes
 * other than whitespace, or a member repeated in any object, refuse it.
 * @return 0 with *out the tree (cJSON_Delete it), or code (BERTH_ENOMEM)
 * with the message "<what>: <why>".
 */
int berth__json_parse(struct cJSON **out, const char *text, size_t len,
                      int code, const char *what, berth_error *err);

/* ---- manifests (schema.c, referrers.c) ---- */

/* Parse a stored manifest (body NUL terminated at len, as a berth_buf is):
 * the built-in schemas, else for other media types only what the referrers
 * index needs (mediaType, subject, artifactType, annotations).
 * @return 0, BERTH_EMANIFEST_INVALID, BERTH_ENOMEM. */
int berth__manifest_parse_stored(berth_manifest **out, const char *body,
                                 size_t len, berth_error *err);

/* Media type of stored content (body NUL terminated at len): "mediaType",
 * else an OCI index when it has a "manifests" array, else an OCI image
 * manifest when it has a "layers" array or a "config" descriptor (an image
 * config's "config" is none). Anything else, schema1 included, is
 * BERTH_EMANIFEST_INVALID. */
int berth__manifest_media_type(char *out, size_t cap, const char *body,
                               size_t len, berth_error *err);

/* Record m, stored as dgst (NULL: m's own sha256 digest), as a referrer of
 * its subject; a no-op without one. */
int berth__referrer_add(berth_store *st, const char *repo,
                        const berth_manifest *m, const berth_digest *dgst,
                        berth_error *err);

/* berth's tag writes to repo go one at a time (tag.c): hold this writer
 * to write tags, or to remove a manifest tags may point at. */
int berth__tag_lock(berth_lease **out, berth_store *st, const char *repo,
                    berth_error *err);

/* berth_tag_delete(_if) for a holder of berth__tag_lock; compare as
 * berth_tag_delete_if when set. */
int berth__tag_delete_locked(berth_store *st, const char *repo,
                             const char *tag, int compare,
                             const berth_digest *expected, berth_error *err);

/* berth's caches are complete for an epoch when a marker file holds it:
 * is the marker at path of this store's epoch? -> 1, 0 (missing, damaged
 * or another epoch's), or a read failure. */
int berth__epoch_marker_current(berth_store *st, const char *path,
                                berth_error *err);
/* Write this store's epoch to the marker at path. */
int berth__epoch_marker_put(berth_store *st, const char *path,
                            berth_error *err);

/* Best effort: declare repo's referrers index incomplete (an entry could
 * not be added), so the next listing completes it. */
void berth__referrers_invalidate(berth_store *st, const char *repo);

/* Forget dgst as a referrer of subject; a missing entry is fine. */
int berth__referrer_remove(berth_store *st, const char *repo,
                           const berth_digest *subject,
                           const berth_digest *dgst, berth_error *err);

/* Whether repo holds a revision link for dgst (missing, damaged or naming
 * another digest: no). @return 1, 0, or a negative error. */
int berth__revision_exists(berth_store *st, const char *repo,
                           const berth_digest *dgst, berth_error *err);

#endif
