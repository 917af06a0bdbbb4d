/* Blobs: global content-addressed data and per-repository links. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Path of a blob's layout entry into buf. */
static int blob_path(berth_buf *buf, berth_path_kind kind, const char *repo,
                     const berth_digest *dgst, berth_error *err)
{
    berth_path_spec spec = { 0 };

    spec.kind = kind;
    spec.repo = repo;
    spec.digest = dgst;
    return berth__path(buf, &spec, err);
}

/*
 * Check that repo links dgst (a no-op when repo is NULL). A link that is
 * missing, unreadable or names another digest means "not in this
 * repository".
 */
static int check_linked(berth_store *st, const char *repo,
                        const berth_digest *dgst, berth_buf *scratch,
                        berth_error *err)
{
    berth_digest target;
    int rc;

    if ((rc = berth__repo_check(repo, 1, err)) < 0 || repo == NULL)
        return rc;
    if ((rc = blob_path(scratch, BERTH_PATH_LAYER_LINK, repo, dgst, err)) < 0)
        return rc;
    rc = berth__link_read(&target, st, scratch->ptr, err);
    /* gc may have withdrawn it (berth_blob_link_withdraw): its last look
     * counts it once it is back */
    if (rc == BERTH_ENOTFOUND &&
        berth_blob_link_restore(st, repo, dgst, NULL) == 0)
        rc = berth__link_read(&target, st, scratch->ptr, err);
    if (rc == BERTH_ENOTFOUND || rc == BERTH_EDIGEST_INVALID ||
        (rc == 0 && strcmp(target.str, dgst->str) != 0))
        return berth_error_set(err, BERTH_EBLOB_UNKNOWN,
                               "blob unknown to repository %s: %s", repo,
                               dgst->str);
    return rc;
}

static int unknown_if_missing(int rc, const berth_digest *dgst,
                              berth_error *err)
{
    if (rc == BERTH_ENOTFOUND)
        return berth_error_set(err, BERTH_EBLOB_UNKNOWN, "blob unknown: %s",
                               dgst->str);
    return rc;
}

/*
 * A blob linked in repo whose data is not in the tree may be one gc has
 * condemned (berth_blob_condemn) after it judged the blob and before this
 * link was written: gc's last look will see the link and put the data
 * back. Put it back now, so that the manifest put or the pull the link is
 * for never sees the gap.
 * @return 1 when the data is back in the tree (look again), else 0
 */
static int reprieve_linked(berth_store *st, const char *repo,
                           const berth_digest *dgst, int rc)
{
    return rc == BERTH_ENOTFOUND && repo != NULL &&
           berth_blob_reprieve(st, dgst, NULL) == 0;
}

int berth_blob_stat(uint64_t *size_out, berth_store *st, const char *repo,
                    const berth_digest *dgst, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    berth_stat_info info;
    int rc;

    if ((rc = check_linked(st, repo, dgst, &path, err)) < 0)
        goto done;
    if ((rc = blob_path(&path, BERTH_PATH_BLOB_DATA, NULL, dgst, err)) < 0)
        goto done;
    rc = berth_driver_stat(st->driver, &info, path.ptr, err);
    if (reprieve_linked(st, repo, dgst, rc))
        rc = berth_driver_stat(st->driver, &info, path.ptr, err);
    rc = unknown_if_missing(rc, dgst, err);
    if (rc == 0 && info.is_dir)
        rc = berth_error_set(err, BERTH_EBLOB_UNKNOWN, "blob unknown: %s",
                             dgst->str);
    if (rc == 0)
        *size_out = info.size;
done:
    berth_buf_dispose(&path);
    return rc;
}

int berth_blob_get(berth_buf *out, berth_store *st, const char *repo,
                   const berth_digest *dgst, size_t max, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    berth_digest actual;
    int rc;

    if ((rc = check_linked(st, repo, dgst, &path, err)) < 0)
        goto done;
    if ((rc = blob_path(&path, BERTH_PATH_BLOB_DATA, NULL, dgst, err)) < 0)
        goto done;
    berth_buf_clear(out);
    rc = berth_driver_get(st->driver, out, path.ptr, max, err);
    if (reprieve_linked(st, repo, dgst, rc))
        rc = berth_driver_get(st->driver, out, path.ptr, max, err);
    rc = unknown_if_missing(rc, dgst, err);
    if (rc < 0)
        goto done;
    /* Small blobs are served whole from memory: verify them on the way,
     * so damage on disk is an error rather than a wrong answer. */
    if ((rc = berth_digest_compute(&actual, dgst->algo, out->ptr, out->len,
                                   err)) < 0)
        goto done;
    if (strcmp(actual.str, dgst->str) != 0)
        rc = berth_error_set(err, BERTH_EIO, "blob corrupt: %s hashes to %s",
                             dgst->str, actual.str);
done:
    if (rc < 0)
        berth_buf_clear(out);
    berth_buf_dispose(&path);
    return rc;
}

/* The driver's reader may use its driver: the blob's reader holds the
 * store (and so the driver) until it is freed. */
typedef struct blob_reader {
    berth_reader base;
    berth_reader *inner;
    berth_store *st;
} blob_reader;

static int blob_reader_read(berth_reader *r, void *buf, size_t cap,
                            size_t *n_out, berth_error *err)
{
    return berth_reader_read(((blob_reader *)r)->inner, buf, cap, n_out, err);
}

static void blob_reader_free(berth_reader *r)
{
    blob_reader *br = (blob_reader *)r;

    berth_reader_free(br->inner);
    berth__store_unref(br->st);
    free(br);
}

int berth_blob_open(berth_reader **out, berth_store *st, const char *repo,
                    const berth_digest *dgst, uint64_t offset,
                    berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    berth_reader *inner = NULL;
    blob_reader *br;
    int rc;

    *out = NULL;
    if ((rc = check_linked(st, repo, dgst, &path, err)) < 0)
        goto done;
    if ((rc = blob_path(&path, BERTH_PATH_BLOB_DATA, NULL, dgst, err)) < 0)
        goto done;
    rc = berth_driver_reader(st->driver, &inner, path.ptr, offset, err);
    if (reprieve_linked(st, repo, dgst, rc))
        rc = berth_driver_reader(st->driver, &inner, path.ptr, offset, err);
    if ((rc = unknown_if_missing(rc, dgst, err)) < 0)
        goto done;
    if ((br = malloc(sizeof(*br))) == NULL) {
        rc = berth_error_set(err, BERTH_ENOMEM, "out of memory");
        goto done;
    }
    br->base.read = blob_reader_read;
    br->base.free = blob_reader_free;
    br->inner = inner;
    br->st = berth__store_ref(st);
    inner = NULL;
    *out = &br->base;
done:
    berth_reader_free(inner);
    berth_buf_dispose(&path);
    return rc;
}

int berth_blob_send(berth_send_kind *kind, berth_buf *out, berth_buf *rel_out,
                    berth_store *st, const char *repo,
                    const berth_digest *dgst, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    int rc;

    *kind = BERTH_SEND_FILE;
    berth_buf_clear(out);
    if (rel_out)
        berth_buf_clear(rel_out);
    if ((rc = check_linked(st, repo, dgst, &path, err)) < 0)
        goto done;
    if ((rc = blob_path(&path, BERTH_PATH_BLOB_DATA, NULL, dgst, err)) < 0)
        goto done;
    rc = berth_driver_send(st->driver, kind, out, path.ptr, err);
    if (reprieve_linked(st, repo, dgst, rc))
        rc = berth_driver_send(st->driver, kind, out, path.ptr, err);
    if ((rc = unknown_if_missing(rc, dgst, err)) < 0 || rel_out == NULL ||
        *kind != BERTH_SEND_FILE)
        goto done;
    rc = blob_path(rel_out, BERTH_PATH_BLOB_DATA_UNDER, NULL, dgst, err);
done:
    if (rc < 0) {
        berth_buf_clear(out);
        if (rel_out)
            berth_buf_clear(rel_out);
    }
    berth_buf_dispose(&path);
    return rc;
}

int berth_blob_local_path(berth_buf *out, berth_buf *rel_out, berth_store *st,
                          const char *repo, const berth_digest *dgst,
                          berth_error *err)
{
    berth_send_kind kind;
    int rc = berth_blob_send(&kind, out, rel_out, st, repo, dgst, err);

    if (rc == 0 && kind != BERTH_SEND_FILE) {
        berth_buf_clear(out);
        rc = berth_error_set(err, BERTH_EUNSUPPORTED,
                             "blob %s is not a local file", dgst->str);
    }
    return rc;
}

/*
 * Whether the data at path is there, whole as far as its size tells.
 * @return 1, 0 (missing or of another size) or an error.
 */
static int data_present(berth_store *st, const char *path, int64_t size,
                        berth_error *err)
{
    berth_stat_info info;
    int rc = berth_driver_stat(st->driver, &info, path, err);

    if (rc == BERTH_ENOTFOUND)
        return 0;
    if (rc < 0)
        return rc;
    return !info.is_dir && (size < 0 || info.size == (uint64_t)size);
}

/* Put the data in place from source. */
static int provide(berth_store *st, const berth_digest *dgst,
                   const char *data_path, berth__blob_source *source,
                   void *ctx, berth_error *err)
{
    if (source == NULL)
        return berth_error_set(err, BERTH_EBLOB_UNKNOWN, "blob unknown: %s",
                               dgst->str);
    return source(st, ctx, data_path, err);
}

/*
 * The data, the link, then the data once more. Online gc condemns a blob
 * (moves its directory out of the tree, berth_blob_condemn) before its
 * last look for links to it. So either that look sees this link and gc
 * puts the blob back, or the second look here sees the data gone and the
 * push puts it back: from the condemned copy while there is one, else from
 * source again. Stopping after the link would let a purge fall between the
 * first look and the link and take data the push then acknowledges. The
 * data comes first so that a crash never leaves a link without data.
 */
int berth__blob_adopt(berth_store *st, const char *repo,
                      const berth_digest *dgst, int64_t size,
                      berth__blob_source *source, void *ctx, berth_error *err)
{
    berth_buf data = BERTH_BUF_INIT, link = BERTH_BUF_INIT;
    int rc;

    if ((rc = blob_path(&data, BERTH_PATH_BLOB_DATA, NULL, dgst, err)) < 0 ||
        (rc = data_present(st, data.ptr, size, err)) < 0 ||
        (rc == 0 && (rc = provide(st, dgst, data.ptr, source, ctx, err)) < 0))
        goto done;
    if (repo == NULL)
        goto done;
    if ((rc = blob_path(&link, BERTH_PATH_LAYER_LINK, repo, dgst, err)) < 0 ||
        (rc = berth__link_write(st, link.ptr, dgst, err)) < 0 ||
        (rc = data_present(st, data.ptr, size, err)) != 0)
        goto done;
    rc = berth_blob_reprieve(st, dgst, err);
    if (rc == 0 && (rc = data_present(st, data.ptr, size, err)) != 0)
        goto done;
    if (rc == 0 || rc == BERTH_EBLOB_UNKNOWN)
        rc = provide(st, dgst, data.ptr, source, ctx, err);
done:
    berth_buf_dispose(&data);
    berth_buf_dispose(&link);
    return rc < 0 ? rc : 0;
}

typedef struct {
    const void *data;
    size_t len;
} bytes_source;

static int put_bytes(berth_store *st, void *ctx, const char *data_path,
                     berth_error *err)
{
    bytes_source *b = ctx;

    return berth_driver_put(st->driver, data_path, b->data, b->len, err);
}

int berth_blob_put(berth_digest *out, berth_store *st, const char *repo,
                   berth_digest_algo algo, const void *data, size_t len,
                   berth_error *err)
{
    bytes_source bytes = { data, len };
    int rc;

    if ((rc = berth__repo_check(repo, 1, err)) < 0 ||
        (rc = berth_digest_compute(out, algo, data, len, err)) < 0)
        return rc;
    /* Content addressing: what exists already is this content. */
    return berth__blob_adopt(st, repo, out, (int64_t)len, put_bytes, &bytes,
                             err);
}

int berth_blob_mount(berth_store *st, const char *repo, const char *from,
                     const berth_digest *dgst, berth_error *err)
{
    berth_buf scratch = BERTH_BUF_INIT;
    int rc;

    if ((rc = berth__repo_check(repo, 0, err)) < 0)
        return rc;
    if (from && (rc = berth__repo_check(from, 0, err)) < 0)
        return rc;
    rc = check_linked(st, from, dgst, &scratch, err);
    berth_buf_dispose(&scratch);
    /* adopt's first look finds the data, or answers BLOB_UNKNOWN; failing
     * after its link, it leaves the link: another push may have written
     * it too. */
    return rc < 0 ? rc
                  : berth__blob_adopt(st, repo, dgst, -1, NULL, NULL, err);
}

/* Remove the layout entry (kind, repo, dgst) and all it holds. */
static int remove_entry(berth_store *st, berth_path_kind kind,
                        const char *repo, const berth_digest *dgst,
                        berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    int rc;

    if ((rc = blob_path(&path, kind, repo, dgst, err)) == 0)
        rc = unknown_if_missing(
            berth_driver_remove(st->driver, path.ptr, err), dgst, err);
    berth_buf_dispose(&path);
    return rc;
}

int berth_blob_unlink(berth_store *st, const char *repo,
                      const berth_digest *dgst, berth_error *err)
{
    berth_buf scratch = BERTH_BUF_INIT;
    int rc;

    if ((rc = berth__repo_check(repo, 0, err)) == 0)
        rc = check_linked(st, repo, dgst, &scratch, err);
    berth_buf_dispose(&scratch);
    /* The link's directory holds nothing but the link: remove both, so an
     * enumeration never meets an empty entry. */
    return rc < 0 ? rc
                  : remove_entry(st, BERTH_PATH_LAYER_DIR, repo, dgst, err);
}

int berth_blob_purge(berth_store *st, const berth_digest *dgst,
                     berth_error *err)
{
    return remove_entry(st, BERTH_PATH_BLOB_DIR, NULL, dgst, err);
}

/* The blob's directory in the tree, and where gc's condemned copy goes. */
static int condemned_paths(berth_buf *tree, berth_buf *condemned,
                           const berth_digest *dgst, berth_error *err)
{
    int rc;

    if ((rc = blob_path(tree, BERTH_PATH_BLOB_DIR, NULL, dgst, err)) < 0)
        return rc;
    return blob_path(condemned, BERTH_PATH_BLOB_CONDEMNED, NULL, dgst, err);
}

int berth_blob_condemn(berth_store *st, const berth_digest *dgst,
                       berth_error *err)
{
    berth_buf tree = BERTH_BUF_INIT, condemned = BERTH_BUF_INIT;
    int rc;

    if ((rc = condemned_paths(&tree, &condemned, dgst, err)) < 0)
        goto done;
    /* a copy left by a gc that was killed is this content too */
    rc = berth_driver_remove(st->driver, condemned.ptr, err);
    if (rc < 0 && rc != BERTH_ENOTFOUND)
        goto done;
    rc = unknown_if_missing(
        berth_driver_move(st->driver, tree.ptr, condemned.ptr, err), dgst,
        err);
done:
    berth_buf_dispose(&tree);
    berth_buf_dispose(&condemned);
    return rc;
}

int berth_blob_reprieve(berth_store *st, const berth_digest *dgst,
                        berth_error *err)
{
    berth_buf tree = BERTH_BUF_INIT, condemned = BERTH_BUF_INIT;
    int rc;

    if ((rc = condemned_paths(&tree, &condemned, dgst, err)) < 0)
        goto done;
    rc = berth_driver_move(st->driver, condemned.ptr, tree.ptr, err);
    if (rc == BERTH_EEXISTS) {
        /* a push put the blob back itself: the copy is not needed */
        rc = berth_driver_remove(st->driver, condemned.ptr, err);
        if (rc == BERTH_ENOTFOUND)
            rc = 0;
    }
    rc = unknown_if_missing(rc, dgst, err);
done:
    berth_buf_dispose(&tree);
    berth_buf_dispose(&condemned);
    return rc;
}

int berth_blob_purge_condemned(berth_store *st, const berth_digest *dgst,
                               berth_error *err)
{
    return remove_entry(st, BERTH_PATH_BLOB_CONDEMNED, NULL, dgst, err);
}

/* repo's link directory of dgst in the tree, and where gc keeps it out of
 * the tree (kind: BERTH_PATH_LINK_UNLINKED or BERTH_PATH_LINK_CONDEMNED). */
static int link_paths(berth_buf *tree, berth_buf *away, berth_path_kind kind,
                      const char *repo, const berth_digest *dgst,
                      berth_error *err)
{
    int rc;

    if ((rc = berth__repo_check(repo, 0, err)) < 0 ||
        (rc = blob_path(tree, BERTH_PATH_LAYER_DIR, repo, dgst, err)) < 0)
        return rc;
    return blob_path(away, kind, repo, dgst, err);
}

int berth_blob_link_withdraw(berth_store *st, const char *repo,
                             const berth_digest *dgst, berth_error *err)
{
    berth_buf tree = BERTH_BUF_INIT, away = BERTH_BUF_INIT;
    int rc;

    if ((rc = link_paths(&tree, &away, BERTH_PATH_LINK_UNLINKED, repo, dgst,
                         err)) < 0)
        goto done;
    rc = berth_driver_move(st->driver, tree.ptr, away.ptr, err);
    if (rc == BERTH_EEXISTS) {
        /* left by a gc that was killed: the link in the tree is this one
         * too (removed only now that one is known to be there) */
        if ((rc = berth_driver_remove(st->driver, away.ptr, err)) == 0 ||
            rc == BERTH_ENOTFOUND)
            rc = berth_driver_move(st->driver, tree.ptr, away.ptr, err);
    }
    rc = unknown_if_missing(rc, dgst, err);
done:
    berth_buf_dispose(&tree);
    berth_buf_dispose(&away);
    return rc;
}

/*
 * The tree has repo's link directory of dgst already: a push is linking
 * it, or left it without its link (a crash). Move in the link file only
 * when there is none, as a push's link is the newer (gc reads its time).
 */
static int link_back_into(berth_store *st, const berth_buf *tree,
                          const berth_buf *away, berth_error *err)
{
    berth_buf tree_link = BERTH_BUF_INIT, away_link = BERTH_BUF_INIT;
    berth_stat_info info;
    int rc;

    if ((rc = berth__link_file(&tree_link, tree->ptr, err)) < 0 ||
        (rc = berth__link_file(&away_link, away->ptr, err)) < 0)
        goto done;
    rc = berth_driver_stat(st->driver, &info, tree_link.ptr, err);
    if (rc == BERTH_ENOTFOUND)
        rc = berth_driver_move(st->driver, away_link.ptr, tree_link.ptr, err);
    if (rc < 0 && rc != BERTH_ENOTFOUND)
        goto done;
    rc = berth_driver_remove(st->driver, away->ptr, err);
    if (rc == BERTH_ENOTFOUND)
        rc = 0;
done:
    berth_buf_dispose(&tree_link);
    berth_buf_dispose(&away_link);
    return rc;
}

/* Move repo's link of dgst from out of the tree (kind) back in. */
static int link_back(berth_store *st, berth_path_kind kind, const char *repo,
                     const berth_digest *dgst, berth_error *err)
{
    berth_buf tree = BERTH_BUF_INIT, away = BERTH_BUF_INIT;
    int rc;

    if ((rc = link_paths(&tree, &away, kind, repo, dgst, err)) < 0)
        goto done;
    rc = berth_driver_move(st->driver, away.ptr, tree.ptr, err);
    if (rc == BERTH_EEXISTS)
        rc = link_back_into(st, &tree, &away, err);
    rc = unknown_if_missing(rc, dgst, err);
done:
    berth_buf_dispose(&tree);
    berth_buf_dispose(&away);
    return rc;
}

int berth_blob_link_restore(berth_store *st, const char *repo,
                            const berth_digest *dgst, berth_error *err)
{
    return link_back(st, BERTH_PATH_LINK_UNLINKED, repo, dgst, err);
}

int berth_blob_link_reprieve(berth_store *st, const char *repo,
                             const berth_digest *dgst, berth_error *err)
{
    return link_back(st, BERTH_PATH_LINK_CONDEMNED, repo, dgst, err);
}

int berth_blob_links_condemn(berth_store *st, const berth_digest *dgst,
                             berth_error *err)
{
    berth_buf unlinked = BERTH_BUF_INIT, condemned = BERTH_BUF_INIT;
    int rc;

    /* One move: a read restores a link before it, or finds none after.
     * Condemned links a gc that was killed left make this fail, and the
     * blob stay: they may be the only ones. */
    if ((rc = blob_path(&unlinked, BERTH_PATH_BLOB_UNLINKED, NULL, dgst,
                        err)) == 0 &&
        (rc = blob_path(&condemned, BERTH_PATH_BLOB_LINKS_CONDEMNED, NULL,
                        dgst, err)) == 0)
        rc = unknown_if_missing(
            berth_driver_move(st->driver, unlinked.ptr, condemned.ptr, err),
            dgst, err);
    berth_buf_dispose(&unlinked);
    berth_buf_dispose(&condemned);
    return rc;
}

int berth_blob_links_purge(berth_store *st, const berth_digest *dgst,
                           berth_error *err)
{
    static const berth_path_kind kinds[] = {
        BERTH_PATH_BLOB_UNLINKED, BERTH_PATH_BLOB_LINKS_CONDEMNED
    };
    berth_buf path = BERTH_BUF_INIT;
    int rc = 0, removed = 0;

    for (size_t i = 0; rc == 0 && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if ((rc = blob_path(&path, kinds[i], NULL, dgst, err)) < 0)
            break;
        rc = berth_driver_remove(st->driver, path.ptr, err);
        removed += rc == 0;
        if (rc == BERTH_ENOTFOUND)
            rc = 0;
    }
    if (rc == 0 && !removed)
        rc = unknown_if_missing(BERTH_ENOTFOUND, dgst, err);
    berth_buf_dispose(&path);
    return rc;
}

/* Enumeration is the layout's digest walk (path.c) of blobs/ or of the
 * repository's _layers. */
struct berth_blob_iter {
    berth_store *st;
    berth__digest_walk walk;
};

int berth_blob_iter_new(berth_blob_iter **out, berth_store *st,
                        const char *repo, berth_error *err)
{
    berth_blob_iter *it;
    berth_path_spec spec = { 0 };
    int rc;

    *out = NULL;
    if ((rc = berth__repo_check(repo, 1, err)) < 0)
        return rc;
    it = calloc(1, sizeof(*it));
    if (it == NULL)
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    it->st = berth__store_ref(st);
    spec.kind = repo ? BERTH_PATH_LAYERS : BERTH_PATH_BLOBS;
    spec.repo = repo;
    if ((rc = berth__digest_walk_start(&it->walk, st, &spec, err)) < 0) {
        berth_blob_iter_free(it);
        return rc;
    }
    *out = it;
    return 0;
}

int berth_blob_iter_next(berth_digest *out, berth_blob_iter *it,
                         berth_error *err)
{
    return berth__digest_walk_next(out, &it->walk, err);
}

void berth_blob_iter_free(berth_blob_iter *it)
{
    if (it == NULL)
        return;
    berth__digest_walk_dispose(&it->walk);
    berth__store_unref(it->st);
    free(it);
}
