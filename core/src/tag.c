/*
 * Tags and the digest -> tags reverse index (the catalog: catalog.c).
 *
 * Tags are Distribution's: _manifests/tags/<tag>/current/link names the
 * manifest, tags/<tag>/index/<alg>/<hex>/link keeps every digest the tag
 * ever had. Distribution finds the tags of a digest by reading every
 * current link, O(tags) on each delete by digest. berth keeps a reverse
 * index beside the layout (_tagsof/<alg>/<hex>/<tag>, see path.c) so that a
 * lookup lists one directory and reads one link per tag found.
 *
 * The reverse index is a cache with one invariant: it is a SUPERSET of the
 * truth. Whenever current/link of tag t names d, the entry (d, t) exists.
 * Extra (stale) entries are allowed; a lookup checks each entry against
 * current/link and drops what is stale. The invariant holds
 *  - across crashes, because every step is one atomic put or remove and
 *    tag_set writes the entry before the links;
 *  - across concurrent writers (nginx workers, a CLI), by two rules:
 *    (1) whoever writes current/link = d makes sure afterwards that the
 *        entry (d, t) exists ("ensure": stat, put when missing);
 *    (2) whoever removes an entry (d, t) reads current/link afterwards and
 *        puts the entry back when it names d ("recheck").
 *    Let W be the last writer of t's current link, naming d, and R anyone
 *    removing (d, t). If R removes before W's ensure, the ensure repairs
 *    it. If after, then R's recheck follows W's current write and sees d.
 *
 * The index is only complete for a repository once it has been built from
 * the tags themselves: a store Distribution wrote has no index at all, and
 * the first tag_set berth makes there creates a partial one, so "the index
 * directory exists" proves nothing. A marker file <tagsof>/_complete is
 * written after a full build (berth_tag_reindex). A lookup that finds no
 * marker builds the index first, and if it cannot (a read-only store)
 * answers by reading every tag, so it is right either way. A failure to
 * keep the index up to date after a tag changed removes the marker, which
 * turns the next lookup into a rebuild rather than a wrong answer.
 *
 * Distribution does not know the index: when it may have written tags
 * into a store berth indexed, berth_store_new_epoch (berth serve calls it
 * at each start) changes the store's epoch. The marker holds the epoch it
 * was written in, and a marker of another epoch counts as missing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int layout_path(berth_buf *out, berth_path_kind kind, const char *repo,
                       const char *tag, const berth_digest *dgst,
                       berth_error *err)
{
    berth_path_spec spec = { 0 };

    spec.kind = kind;
    spec.repo = repo;
    spec.tag = tag;
    spec.digest = dgst;
    return berth__path(out, &spec, err);
}

static int check_tag(const char *tag, berth_error *err)
{
    if (tag == NULL)
        return berth_error_set(err, BERTH_ETAG_INVALID, "tag required");
    return berth_tag_validate(tag, strlen(tag), err);
}

static int check_args(const char *repo, const char *tag, berth_error *err)
{
    int rc;

    if ((rc = berth__repo_check(repo, 0, err)) < 0)
        return rc;
    return check_tag(tag, err);
}

/* The marker of a complete index (its name is no algorithm's). */
static int marker_path(berth_buf *out, const char *repo, berth_error *err)
{
    return layout_path(out, BERTH_PATH_TAG_REVERSE_MARKER, repo, NULL, NULL,
                       err);
}

/* Best effort: declare the index incomplete, so the next lookup rebuilds. */
static void invalidate(berth_store *st, const char *repo)
{
    berth_buf path = BERTH_BUF_INIT;

    if (marker_path(&path, repo, NULL) == 0)
        berth_driver_remove(st->driver, path.ptr, NULL);
    berth_buf_dispose(&path);
}

/* current/link of a tag. @return 0, BERTH_ENOTFOUND, BERTH_EDIGEST_INVALID
 * (damaged link) or BERTH_EIO. */
static int read_current(berth_digest *out, berth_store *st, const char *repo,
                        const char *tag, berth_buf *scratch, berth_error *err)
{
    int rc;

    if ((rc = layout_path(scratch, BERTH_PATH_TAG_CURRENT, repo, tag, NULL,
                          err)) < 0)
        return rc;
    return berth__link_read(out, st, scratch->ptr, err);
}

/* A current link that names no digest: which manifest the tag meant is
 * unknown, an error to whoever asks (the path is in scratch). */
static int link_damaged(const berth_buf *scratch, berth_error *err)
{
    return berth_error_set(err, BERTH_EIO, "tag link damaged: %s",
                           scratch->ptr);
}

/* 1 when tag's current link names d, 0 when not (missing, other), < 0 on
 * an error: a damaged link is one (it may have named d), so that a lookup
 * never answers "no tags" for a tag it could not read. */
static int points_at(berth_store *st, const char *repo, const char *tag,
                     const berth_digest *d, berth_buf *scratch,
                     berth_error *err)
{
    berth_digest cur;
    int rc = read_current(&cur, st, repo, tag, scratch, err);

    if (rc == BERTH_ENOTFOUND)
        return 0;
    if (rc == BERTH_EDIGEST_INVALID)
        return link_damaged(scratch, err);
    if (rc < 0)
        return rc;
    return strcmp(cur.str, d->str) == 0;
}

static int reverse_put(berth_store *st, const char *repo, const char *tag,
                       const berth_digest *d, berth_buf *scratch,
                       berth_error *err)
{
    int rc;

    if ((rc = layout_path(scratch, BERTH_PATH_TAG_REVERSE_ENTRY, repo, tag, d,
                          err)) < 0)
        return rc;
    return berth_driver_put(st->driver, scratch->ptr, tag, strlen(tag), err);
}

/*
 * Rule (1): make sure the entry (d, tag) exists. A stat is cheaper than a
 * put (temp file, rename), and the entry is there in all but a race.
 */
static int reverse_ensure(berth_store *st, const char *repo, const char *tag,
                          const berth_digest *d, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    berth_stat_info info;
    int rc;

    if ((rc = layout_path(&path, BERTH_PATH_TAG_REVERSE_ENTRY, repo, tag, d,
                          err)) < 0)
        goto done;
    rc = berth_driver_stat(st->driver, &info, path.ptr, err);
    if (rc == BERTH_ENOTFOUND)
        rc = berth_driver_put(st->driver, path.ptr, tag, strlen(tag), err);
done:
    berth_buf_dispose(&path);
    return rc;
}

/*
 * Remove the entry (d, tag), which the caller found stale, then apply rule
 * (2). Only a file is removed: anything else there is damage, not an
 * entry, and is left for fsck.
 * @return 1 when the tag points at d after all (the entry is kept or put
 *         back), 0 when the entry is gone, < 0 on an error.
 */
static int reverse_drop(berth_store *st, const char *repo, const char *tag,
                        const berth_digest *d, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    berth_stat_info info;
    int rc;

    if ((rc = layout_path(&path, BERTH_PATH_TAG_REVERSE_ENTRY, repo, tag, d,
                          err)) < 0)
        goto done;
    rc = berth_driver_stat(st->driver, &info, path.ptr, err);
    if (rc == BERTH_ENOTFOUND) {
        rc = 0; /* not ours to recheck: whoever removed it does */
        goto done;
    }
    if (rc < 0 || info.is_dir)
        goto done;
    rc = berth_driver_remove(st->driver, path.ptr, err);
    if (rc == BERTH_ENOTFOUND) {
        rc = 0;
        goto done;
    }
    if (rc < 0)
        goto done;
    if ((rc = points_at(st, repo, tag, d, &path, err)) != 1)
        goto done;
    if ((rc = reverse_put(st, repo, tag, d, &path, err)) == 0)
        rc = 1;
done:
    berth_buf_dispose(&path);
    return rc;
}

int berth_tag_get(berth_digest *out, berth_store *st, const char *repo,
                  const char *tag, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    int rc;

    if ((rc = check_args(repo, tag, err)) < 0)
        goto done;
    rc = read_current(out, st, repo, tag, &path, err);
    if (rc == BERTH_ENOTFOUND)
        rc = berth_error_set(err, BERTH_EMANIFEST_UNKNOWN,
                             "manifest unknown: %s:%s", repo, tag);
    else if (rc == BERTH_EDIGEST_INVALID)
        rc = link_damaged(&path, err);
done:
    berth_buf_dispose(&path);
    return rc;
}

/*
 * berth's tag writes to a repository go one at a time, across processes:
 * each holds the driver's lock <own>/repositories/<repo>/_taglock.
 * A compare-and-set needs it; plain sets and deletes take it too, so that
 * none slips between a compare and its set. (Distribution knows nothing of
 * it.) It is tried once: BERTH_EBUSY while another holds it, and the
 * caller waits (lua/berth/busy.lua), never an nginx worker in here.
 */
int berth__tag_lock(berth_lease **out, berth_store *st, const char *repo,
                    berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    int rc;

    *out = NULL;
    if ((rc = layout_path(&path, BERTH_PATH_TAG_LOCK, repo, NULL, NULL,
                          err)) == 0)
        rc = berth_driver_lock(st->driver, out, path.ptr, err);
    if (rc == BERTH_EBUSY)
        rc = berth_error_set(err, BERTH_EBUSY, "tag lock of %s is held",
                             repo);
    berth_buf_dispose(&path);
    return rc;
}

/* For a compare-and-set: does the tag still point at expected (NULL: is
 * it still missing)? -> 0 or BERTH_ETAG_CHANGED */
static int unchanged(const char *tag, int had_old, const berth_digest *old,
                     const berth_digest *expected, berth_error *err)
{
    if (expected ? had_old && strcmp(old->str, expected->str) == 0 : !had_old)
        return 0;
    return berth_error_set(err, BERTH_ETAG_CHANGED,
                           "tag %s changed meanwhile: it points at %s", tag,
                           had_old ? old->str : "nothing");
}

/* What tag points at before a write (had_old: somewhere; a damaged
 * current link names nothing), and when compare is set, whether that is
 * expected. -> 0, BERTH_ETAG_CHANGED or a read failure */
static int current_before_write(berth_digest *old, int *had_old,
                                berth_store *st, const char *repo,
                                const char *tag, int compare,
                                const berth_digest *expected, berth_buf *path,
                                berth_error *err)
{
    int rc = read_current(old, st, repo, tag, path, err);

    *had_old = rc == 0;
    if (rc < 0 && rc != BERTH_ENOTFOUND && rc != BERTH_EDIGEST_INVALID)
        return rc;
    return compare ? unchanged(tag, *had_old, old, expected, err) : 0;
}

/* A tag never points at a manifest that is not there. -> 0 or
 * BERTH_EMANIFEST_UNKNOWN */
static int manifest_there(berth_store *st, const char *repo,
                          const berth_digest *dgst, berth_buf *path,
                          berth_error *err)
{
    berth_digest found;
    int rc;

    if ((rc = layout_path(path, BERTH_PATH_REVISION_LINK, repo, NULL, dgst,
                          err)) < 0)
        return rc;
    rc = berth__link_read(&found, st, path->ptr, err);
    if (rc == BERTH_ENOTFOUND || rc == BERTH_EDIGEST_INVALID ||
        (rc == 0 && strcmp(found.str, dgst->str) != 0))
        rc = berth_error_set(err, BERTH_EMANIFEST_UNKNOWN,
                             "manifest unknown: %s@%s", repo, dgst->str);
    return rc;
}

/*
 * The index link of (tag, dgst), written again when it is gone: gc
 * removes a tag directory without current link (what a crash left) under
 * the tag lock, and a first set's index link, written before the lock,
 * may have gone with it. Called under the lock. -> 0 or a write failure
 */
static int history_there(berth_store *st, const char *repo, const char *tag,
                         const berth_digest *dgst, berth_buf *path,
                         berth_error *err)
{
    berth_stat_info info;
    int rc;

    if ((rc = layout_path(path, BERTH_PATH_TAG_INDEX_LINK, repo, tag, dgst,
                          err)) < 0)
        return rc;
    rc = berth_driver_stat(st->driver, &info, path->ptr, err);
    if (rc == BERTH_ENOTFOUND)
        rc = berth__link_write(st, path->ptr, dgst, err);
    return rc;
}

/*
 * Set tag; when compare is set, only if it points at expected (NULL: only
 * if it does not exist). Entry, index link, current link, in that order: a
 * crash anywhere leaves the index a superset and the tag either old or
 * new. The first two only add (an entry or a history link for a digest the
 * tag never got is harmless), so only the current link is written under
 * the lock, with the compare and a second look at the manifest, which a
 * manifest delete removes under the lock.
 */
static int tag_set(berth_store *st, const char *repo, const char *tag,
                   const berth_digest *dgst, int compare,
                   const berth_digest *expected, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    berth_lease *lock = NULL;
    berth_digest old;
    int rc, had_old;

    if ((rc = check_args(repo, tag, err)) < 0 ||
        (rc = manifest_there(st, repo, dgst, &path, err)) < 0)
        goto done;
    if ((rc = reverse_put(st, repo, tag, dgst, &path, err)) < 0)
        goto done;
    if ((rc = layout_path(&path, BERTH_PATH_TAG_INDEX_LINK, repo, tag, dgst,
                          err)) < 0 ||
        (rc = berth__link_write(st, path.ptr, dgst, err)) < 0)
        goto done;

    /* What the tag named before: compared, and its entry dropped at the
     * end. */
    if ((rc = berth__tag_lock(&lock, st, repo, err)) < 0 ||
        (rc = manifest_there(st, repo, dgst, &path, err)) < 0 ||
        (rc = current_before_write(&old, &had_old, st, repo, tag, compare,
                                   expected, &path, err)) < 0 ||
        (rc = history_there(st, repo, tag, dgst, &path, err)) < 0)
        goto done;
    if ((rc = layout_path(&path, BERTH_PATH_TAG_CURRENT, repo, tag, NULL,
                          err)) < 0 ||
        (rc = berth__link_write(st, path.ptr, dgst, err)) < 0)
        goto done;
    berth_lease_free(lock);
    lock = NULL;

    /* The tag is set; the rest only keeps the index tidy and whole. */
    if ((had_old && strcmp(old.str, dgst->str) != 0 &&
         reverse_drop(st, repo, tag, &old, NULL) < 0) ||
        reverse_ensure(st, repo, tag, dgst, NULL) < 0)
        invalidate(st, repo);
done:
    berth_lease_free(lock);
    berth_buf_dispose(&path);
    return rc;
}

int berth_tag_set(berth_store *st, const char *repo, const char *tag,
                  const berth_digest *dgst, berth_error *err)
{
    return tag_set(st, repo, tag, dgst, 0, NULL, err);
}

int berth_tag_set_if(berth_store *st, const char *repo, const char *tag,
                     const berth_digest *dgst, const berth_digest *expected,
                     berth_error *err)
{
    return tag_set(st, repo, tag, dgst, 1, expected, err);
}

int berth__tag_delete_locked(berth_store *st, const char *repo,
                             const char *tag, int compare,
                             const berth_digest *expected, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    berth_digest old;
    int rc, had_old;

    if ((rc = current_before_write(&old, &had_old, st, repo, tag, compare,
                                   expected, &path, err)) < 0)
        goto done;
    /* The whole tag directory goes, history (index/) included, as in
     * Distribution. A tag directory without current/link (a crash in an
     * earlier delete) is removed all the same. */
    if ((rc = layout_path(&path, BERTH_PATH_TAG, repo, tag, NULL, err)) < 0)
        goto done;
    rc = berth_driver_remove(st->driver, path.ptr, err);
    if (rc == BERTH_ENOTFOUND)
        rc = berth_error_set(err, BERTH_EMANIFEST_UNKNOWN,
                             "manifest unknown: %s:%s", repo, tag);
    if (rc < 0)
        goto done;
    if (had_old && reverse_drop(st, repo, tag, &old, NULL) < 0)
        invalidate(st, repo);
done:
    berth_buf_dispose(&path);
    return rc;
}

/* Delete tag; when compare is set, only if it points at expected (NULL:
 * only if it has no current link, a directory a crash left behind). */
static int tag_delete(berth_store *st, const char *repo, const char *tag,
                      int compare, const berth_digest *expected,
                      berth_error *err)
{
    berth_lease *lock = NULL;
    int rc;

    if ((rc = check_args(repo, tag, err)) == 0 &&
        (rc = berth__tag_lock(&lock, st, repo, err)) == 0)
        rc = berth__tag_delete_locked(st, repo, tag, compare, expected, err);
    berth_lease_free(lock);
    return rc;
}

int berth_tag_delete(berth_store *st, const char *repo, const char *tag,
                     berth_error *err)
{
    return tag_delete(st, repo, tag, 0, NULL, err);
}

int berth_tag_delete_if(berth_store *st, const char *repo, const char *tag,
                        const berth_digest *expected, berth_error *err)
{
    return tag_delete(st, repo, tag, 1, expected, err);
}

int berth_tag_list_version(berth_store *st, const char *repo,
                           char out[BERTH_LIST_VERSION_MAX], berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    int rc;

    out[0] = '\0';
    if ((rc = berth__repo_check(repo, 0, err)) < 0)
        return rc;
    if ((rc = layout_path(&path, BERTH_PATH_TAGS, repo, NULL, NULL, err)) ==
        0)
        rc = berth_driver_list_version(st->driver, path.ptr, out, err);
    berth_buf_dispose(&path);
    return rc;
}

/*
 * The names under _manifests/tags, sorted. A repository without a tags
 * directory but with _manifests has no tags; without _manifests it is
 * unknown.
 */
static int list_tag_names(berth_strlist *out, berth_store *st,
                          const char *repo, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    berth_stat_info info;
    int rc;

    if ((rc = layout_path(&path, BERTH_PATH_TAGS, repo, NULL, NULL, err)) < 0)
        goto done;
    rc = berth_driver_list(st->driver, out, path.ptr, err);
    if (rc != BERTH_ENOTFOUND)
        goto done;
    if ((rc = layout_path(&path, BERTH_PATH_MANIFESTS, repo, NULL, NULL,
                          err)) < 0)
        goto done;
    rc = berth_driver_stat(st->driver, &info, path.ptr, err);
    if (rc == BERTH_ENOTFOUND || (rc == 0 && !info.is_dir))
        rc = berth_error_set(err, BERTH_ENAME_UNKNOWN,
                             "repository name not known to registry: %s",
                             repo);
done:
    berth_buf_dispose(&path);
    return rc;
}

/*
 * 1 when the tag has a current link, 0 when not, < 0 on an error. A tag
 * directory without one names no manifest: a first set writes the index
 * link before it, so one under way or cut short leaves such a directory,
 * as does a delete cut short. A current link that is damaged is a tag all
 * the same (fsck reports it); only its absence says "not a tag".
 */
static int has_current(berth_store *st, const char *repo, const char *tag,
                       berth_buf *scratch, berth_error *err)
{
    berth_stat_info info;
    int rc;

    if ((rc = layout_path(scratch, BERTH_PATH_TAG_CURRENT, repo, tag, NULL,
                          err)) < 0)
        return rc;
    rc = berth_driver_stat(st->driver, &info, scratch->ptr, err);
    if (rc == BERTH_ENOTFOUND)
        return 0;
    return rc < 0 ? rc : 1;
}

/*
 * The page of tags after last, at most n; the tag directories without a
 * current link passed over on the way go to unset_out (when not NULL).
 * Each name on the page costs one stat, never the names past it. Names
 * that are not valid tags are not tags berth or Distribution wrote, and
 * are skipped.
 */
static int tag_list(berth_strlist *out, berth_strlist *unset_out,
                    berth_store *st, const char *repo, const char *last,
                    size_t n, berth_error *err)
{
    berth_strlist names = BERTH_STRLIST_INIT;
    berth_buf path = BERTH_BUF_INIT;
    size_t i, kept = 0;
    int rc;

    if (unset_out)
        berth_strlist_dispose(unset_out);
    if ((rc = berth__repo_check(repo, 0, err)) < 0)
        goto done;
    if ((rc = list_tag_names(&names, st, repo, err)) < 0)
        goto done;
    /* Keep the wanted names in place and hand the list over. */
    for (i = 0; i < names.count; i++) {
        char *name = names.items[i];
        names.items[i] = NULL;
        if (rc == 0 && kept < n &&
            berth_tag_validate(name, strlen(name), NULL) == 0 &&
            (last == NULL || strcmp(name, last) > 0)) {
            rc = has_current(st, repo, name, &path, err);
            if (rc == 1) {
                names.items[kept++] = name;
                rc = 0;
                continue;
            }
            if (rc == 0 && unset_out)
                rc = berth_strlist_add(unset_out, name, strlen(name), err);
        }
        free(name);
    }
    names.count = kept;
    if (rc < 0)
        goto done;
    berth_strlist_dispose(out);
    *out = names;
    names = (berth_strlist)BERTH_STRLIST_INIT;
done:
    if (rc < 0 && unset_out)
        berth_strlist_dispose(unset_out);
    berth_strlist_dispose(&names);
    berth_buf_dispose(&path);
    return rc;
}

int berth_tag_list(berth_strlist *out, berth_store *st, const char *repo,
                   const char *last, size_t n, berth_error *err)
{
    return tag_list(out, NULL, st, repo, last, n, err);
}

int berth_tag_list_all(berth_strlist *out, berth_strlist *unset_out,
                       berth_store *st, const char *repo, berth_error *err)
{
    return tag_list(out, unset_out, st, repo, NULL, SIZE_MAX, err);
}

/*
 * Build the index from the current links: an entry for each tag, then,
 * when prune is set, drop the stale entries, then the marker. Lookups use
 * it with prune off (a first build has nothing to prune).
 */
static int reindex(berth_store *st, const char *repo, int prune,
                   berth_error *err);

/* The tags of d by reading every current link (Distribution's way); used
 * when the index cannot be built. */
static int scan_lookup(berth_strlist *out, berth_store *st, const char *repo,
                       const berth_digest *d, berth_error *err)
{
    berth_strlist names = BERTH_STRLIST_INIT;
    berth_buf path = BERTH_BUF_INIT;
    int rc;

    rc = list_tag_names(&names, st, repo, err);
    if (rc == BERTH_ENAME_UNKNOWN)
        rc = 0;
    for (size_t i = 0; rc == 0 && i < names.count; i++) {
        const char *name = names.items[i];
        if (berth_tag_validate(name, strlen(name), NULL) < 0)
            continue;
        rc = points_at(st, repo, name, d, &path, err);
        if (rc == 1)
            rc = berth_strlist_add(out, name, strlen(name), err);
    }
    berth_strlist_dispose(&names);
    berth_buf_dispose(&path);
    return rc;
}

int berth_tag_lookup(berth_strlist *out, berth_store *st, const char *repo,
                     const berth_digest *dgst, berth_error *err)
{
    berth_strlist names = BERTH_STRLIST_INIT;
    berth_buf path = BERTH_BUF_INIT;
    int rc;

    berth_strlist_dispose(out);
    if ((rc = berth__repo_check(repo, 0, err)) < 0)
        goto done;
    if ((rc = marker_path(&path, repo, err)) < 0 ||
        (rc = berth__epoch_marker_current(st, path.ptr, err)) < 0)
        goto done;
    if (rc == 0) { /* missing, damaged or another epoch's: rebuild */
        rc = reindex(st, repo, 0, err);
        if (rc == BERTH_ENAME_UNKNOWN) {
            rc = 0; /* no repository, no tags */
            goto done;
        }
        if (rc < 0) {
            rc = scan_lookup(out, st, repo, dgst, err);
            goto done;
        }
    }

    if ((rc = layout_path(&path, BERTH_PATH_TAG_REVERSE, repo, NULL, dgst,
                          err)) < 0)
        goto done;
    rc = berth__list(&names, st, path.ptr, err);
    for (size_t i = 0; rc == 0 && i < names.count; i++) {
        const char *name = names.items[i];
        if (berth_tag_validate(name, strlen(name), NULL) < 0)
            continue;
        rc = points_at(st, repo, name, dgst, &path, err);
        if (rc == 0) /* stale: the tag moved or went */
            rc = reverse_drop(st, repo, name, dgst, err);
        if (rc == 1)
            rc = berth_strlist_add(out, name, strlen(name), err);
    }
    /* The driver lists sorted already; this costs nothing then. */
    berth_strlist_sort(out);
done:
    if (rc < 0)
        berth_strlist_dispose(out);
    berth_strlist_dispose(&names);
    berth_buf_dispose(&path);
    return rc;
}

/* Index of name in a sorted list, or -1. */
static long find_name(const berth_strlist *l, const char *name)
{
    size_t lo = 0, hi = l->count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(l->items[mid], name);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/*
 * Drop entries of the index that the tags (names, with their current
 * digests in cur; algo NONE for none) do not back. A tag changed since it
 * was read is caught by reverse_drop's recheck.
 */
static int prune_index(berth_store *st, const char *repo,
                       const berth_strlist *names, const berth_digest *cur,
                       berth_error *err)
{
    berth_path_spec tree = { 0 };
    berth__digest_walk walk = { 0 };
    berth_strlist entries = BERTH_STRLIST_INIT;
    berth_buf path = BERTH_BUF_INIT;
    berth_digest d;
    int rc;

    tree.kind = BERTH_PATH_TAG_REVERSE_ROOT;
    tree.repo = repo;
    rc = berth__digest_walk_start(&walk, st, &tree, err);
    while (rc == 0 && (rc = berth__digest_walk_next(&d, &walk, err)) == 0) {
        if ((rc = layout_path(&path, BERTH_PATH_TAG_REVERSE, repo, NULL, &d,
                              err)) < 0 ||
            (rc = berth__list(&entries, st, path.ptr, err)) < 0)
            break;
        for (size_t e = 0; rc == 0 && e < entries.count; e++) {
            const char *tag = entries.items[e];
            long at = find_name(names, tag);
            if (at >= 0 && strcmp(cur[at].str, d.str) == 0)
                continue;
            if (berth_tag_validate(tag, strlen(tag), NULL) < 0)
                continue;
            rc = reverse_drop(st, repo, tag, &d, err);
            if (rc > 0)
                rc = 0;
        }
    }
    if (rc == BERTH_EITEROVER)
        rc = 0;
    berth__digest_walk_dispose(&walk);
    berth_strlist_dispose(&entries);
    berth_buf_dispose(&path);
    return rc;
}

static int reindex(berth_store *st, const char *repo, int prune,
                   berth_error *err)
{
    berth_strlist names = BERTH_STRLIST_INIT;
    berth_buf path = BERTH_BUF_INIT;
    berth_digest *cur = NULL;
    int rc;

    if ((rc = list_tag_names(&names, st, repo, err)) < 0)
        goto done;
    berth_strlist_sort(&names); /* find_name needs it */
    if (names.count > 0 &&
        (cur = calloc(names.count, sizeof(*cur))) == NULL) {
        rc = berth_error_set(err, BERTH_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < names.count; i++) {
        const char *name = names.items[i];
        if (berth_tag_validate(name, strlen(name), NULL) < 0)
            continue;
        rc = read_current(&cur[i], st, repo, name, &path, err);
        if (rc == BERTH_ENOTFOUND || rc == BERTH_EDIGEST_INVALID) {
            cur[i].algo = BERTH_DIGEST_NONE;
            cur[i].str[0] = '\0';
            rc = 0;
            continue;
        }
        if (rc < 0 || (rc = reverse_ensure(st, repo, name, &cur[i], err)) < 0)
            goto done;
    }
    if (prune && (rc = prune_index(st, repo, &names, cur, err)) < 0)
        goto done;
    if ((rc = marker_path(&path, repo, err)) == 0)
        rc = berth__epoch_marker_put(st, path.ptr, err);
done:
    free(cur);
    berth_strlist_dispose(&names);
    berth_buf_dispose(&path);
    return rc;
}

int berth_tag_reindex(berth_store *st, const char *repo, berth_error *err)
{
    int rc;

    if ((rc = berth__repo_check(repo, 0, err)) < 0)
        return rc;
    /* Entries missing from the index are what a rebuild is for (tags
     * Distribution wrote): while it runs, lookups must not trust it. */
    invalidate(st, repo);
    return reindex(st, repo, 1, err);
}
