/*
 * Garbage collection and fsck primitives (see berth/gc.h). Each call looks
 * at or removes one entry of the layout; the policy is in collect.c (the
 * collector) and lua/berth/fsck.lua. Every path comes from berth__path(),
 * every walk is one of path.c's (one listing per level, lazily).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Read-back chunk when verifying a blob. */
#define VERIFY_CHUNK (1024 * 1024)

static int oom(berth_error *err)
{
    return berth_error_set(err, BERTH_ENOMEM, "out of memory");
}

static int layout(berth_buf *out, berth_path_kind kind, const char *repo,
                  const berth_digest *dgst, const char *tag, const char *id,
                  berth_error *err)
{
    berth_path_spec spec = { 0 };

    spec.kind = kind;
    spec.repo = repo;
    spec.digest = dgst;
    spec.tag = tag;
    spec.upload_id = id;
    return berth__path(out, &spec, err);
}

/* ---- blobs ---- */

static int blob_unknown(berth_error *err, const berth_digest *dgst)
{
    return berth_error_set(err, BERTH_EBLOB_UNKNOWN, "blob unknown: %s",
                           dgst->str);
}

int berth_gc_blob_stat(berth_stat_info *out, berth_store *st,
                       const berth_digest *dgst, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    int rc;

    if ((rc = layout(&path, BERTH_PATH_BLOB_DATA, NULL, dgst, NULL, NULL,
                     err)) < 0)
        goto done;
    rc = berth_driver_stat(st->driver, out, path.ptr, err);
    if (rc == BERTH_ENOTFOUND || (rc == 0 && out->is_dir))
        rc = blob_unknown(err, dgst);
done:
    berth_buf_dispose(&path);
    return rc;
}

int berth_gc_blob_verify(berth_digest *actual_out, uint64_t *size_out,
                         berth_store *st, const berth_digest *dgst,
                         berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    berth_reader *r = NULL;
    berth_hasher *h = NULL;
    char *chunk = NULL;
    int rc;

    *size_out = 0;
    memset(actual_out, 0, sizeof(*actual_out));
    if ((chunk = malloc(VERIFY_CHUNK)) == NULL) {
        rc = oom(err);
        goto done;
    }
    if ((rc = layout(&path, BERTH_PATH_BLOB_DATA, NULL, dgst, NULL, NULL,
                     err)) < 0)
        goto done;
    rc = berth_driver_reader(st->driver, &r, path.ptr, 0, err);
    if (rc == BERTH_ENOTFOUND || rc == BERTH_ERANGE)
        rc = blob_unknown(err, dgst);
    if (rc < 0)
        goto done;
    if ((rc = berth_hasher_new(&h, dgst->algo, BERTH_HASHER_AUTO, err)) < 0)
        goto done;
    for (;;) {
        size_t n = 0;
        if ((rc = berth_reader_read(r, chunk, VERIFY_CHUNK, &n, err)) < 0)
            goto done;
        if (n == 0)
            break;
        if ((rc = berth_hasher_update(h, chunk, n, err)) < 0)
            goto done;
        *size_out += n;
    }
    if ((rc = berth_hasher_digest(actual_out, h, err)) < 0)
        goto done;
    if (strcmp(actual_out->str, dgst->str) != 0)
        rc = berth_error_set(err, BERTH_EDIGEST_INVALID,
                             "blob corrupt: %s hashes to %s", dgst->str,
                             actual_out->str);
done:
    berth_reader_free(r);
    berth_hasher_free(h);
    berth_buf_dispose(&path);
    free(chunk);
    return rc;
}

/* ---- links ---- */

static berth_path_kind link_path_kind(berth_gc_link_kind kind)
{
    switch (kind) {
    case BERTH_GC_LINK_LAYER:
        return BERTH_PATH_LAYER_LINK;
    case BERTH_GC_LINK_REVISION:
        return BERTH_PATH_REVISION_LINK;
    case BERTH_GC_LINK_TAG_CURRENT:
        return BERTH_PATH_TAG_CURRENT;
    default:
        return BERTH_PATH_TAG_INDEX_LINK;
    }
}

/* The directory of a link with a digest (one holding nothing else). */
static berth_path_kind link_dir_kind(berth_gc_link_kind kind)
{
    switch (kind) {
    case BERTH_GC_LINK_LAYER:
        return BERTH_PATH_LAYER_DIR;
    case BERTH_GC_LINK_REVISION:
        return BERTH_PATH_REVISION_DIR;
    default:
        return BERTH_PATH_TAG_INDEX_DIR;
    }
}

static int check_link_args(const char *repo, berth_gc_link_kind kind,
                           const berth_digest *dgst, const char *tag,
                           berth_error *err)
{
    int rc;

    if ((rc = berth__repo_check(repo, 0, err)) < 0)
        return rc;
    if (kind != BERTH_GC_LINK_LAYER && kind != BERTH_GC_LINK_REVISION &&
        kind != BERTH_GC_LINK_TAG_CURRENT && kind != BERTH_GC_LINK_TAG_INDEX)
        return berth_error_set(err, BERTH_EINVAL, "unknown link kind %d",
                               (int)kind);
    if (kind & (BERTH_GC_LINK_TAG_CURRENT | BERTH_GC_LINK_TAG_INDEX)) {
        if (tag == NULL)
            return berth_error_set(err, BERTH_ETAG_INVALID, "tag required");
        if ((rc = berth_tag_validate(tag, strlen(tag), err)) < 0)
            return rc;
    }
    if (kind != BERTH_GC_LINK_TAG_CURRENT && dgst == NULL)
        return berth_error_set(err, BERTH_EINVAL, "link digest required");
    return 0;
}

/*
 * Describe the link at path into out. @return 0, BERTH_ENOTFOUND (no
 * file: out says ABSENT) or BERTH_EIO.
 */
static int read_link(berth_gc_link *out, berth_store *st, const char *path,
                     berth_error *err)
{
    berth_stat_info info;
    int rc;

    out->state = BERTH_GC_LINK_ABSENT;
    out->mtime_ns = 0;
    memset(&out->target, 0, sizeof(out->target));
    rc = berth_driver_stat(st->driver, &info, path, err);
    if (rc < 0)
        return rc;
    out->mtime_ns = info.mtime_ns;
    if (info.is_dir) {
        out->state = BERTH_GC_LINK_DAMAGED;
        return 0;
    }
    rc = berth__link_read(&out->target, st, path, err);
    if (rc == BERTH_EDIGEST_INVALID) {
        memset(&out->target, 0, sizeof(out->target));
        out->state = BERTH_GC_LINK_DAMAGED;
        return 0;
    }
    if (rc < 0) /* ENOTFOUND: removed meanwhile */
        return rc;
    if (out->kind == BERTH_GC_LINK_TAG_CURRENT)
        out->digest = out->target;
    out->state = strcmp(out->digest.str, out->target.str) == 0
                     ? BERTH_GC_LINK_OK
                     : BERTH_GC_LINK_MISMATCH;
    return 0;
}

/* Fill out for the link (kind, dgst, tag) and describe it. */
static int link_at(berth_gc_link *out, berth_store *st, const char *repo,
                   berth_gc_link_kind kind, const berth_digest *dgst,
                   const char *tag, berth_buf *path, berth_error *err)
{
    int rc;

    memset(out, 0, sizeof(*out));
    out->kind = kind;
    if (dgst)
        out->digest = *dgst;
    if (tag)
        snprintf(out->tag, sizeof(out->tag), "%s", tag);
    if ((rc = layout(path, link_path_kind(kind), repo, dgst, tag, NULL,
                     err)) < 0)
        return rc;
    return read_link(out, st, path->ptr, err);
}

int berth_gc_link_stat(berth_gc_link *out, berth_store *st, const char *repo,
                       berth_gc_link_kind kind, const berth_digest *dgst,
                       const char *tag, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    int rc;

    if ((rc = check_link_args(repo, kind, dgst, tag, err)) < 0)
        return rc;
    rc = link_at(out, st, repo, kind,
                 kind == BERTH_GC_LINK_TAG_CURRENT ? NULL : dgst, tag, &path,
                 err);
    berth_buf_dispose(&path);
    return rc;
}

int berth_gc_link_remove(berth_store *st, const char *repo,
                         berth_gc_link_kind kind, const berth_digest *dgst,
                         const char *tag, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    int rc;

    if ((rc = check_link_args(repo, kind, dgst, tag, err)) < 0)
        return rc;
    if (kind == BERTH_GC_LINK_TAG_CURRENT) {
        /* The tag, its history and its reverse-index entry. */
        rc = berth_tag_delete(st, repo, tag, err);
        if (rc == BERTH_EMANIFEST_UNKNOWN)
            rc = berth_error_set(err, BERTH_ENOTFOUND, "no such tag: %s:%s",
                                 repo, tag);
        return rc;
    }
    if ((rc = layout(&path, link_dir_kind(kind), repo, dgst, tag, NULL,
                     err)) < 0)
        goto done;
    rc = berth_driver_remove(st->driver, path.ptr, err);
done:
    berth_buf_dispose(&path);
    return rc;
}

int berth_gc_link_leftover(berth_store *st, const char *repo,
                           berth_gc_link_kind kind, const berth_digest *dgst,
                           const char *tag, int64_t cutoff_ns, int remove,
                           berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    int rc;

    if ((rc = check_link_args(repo, kind, dgst, tag, err)) < 0)
        return rc;
    if (kind == BERTH_GC_LINK_TAG_CURRENT)
        return berth_error_set(err, BERTH_EINVAL,
                               "a tag's leftover is the whole tag");
    if ((rc = layout(&path, link_dir_kind(kind), repo, dgst, tag, NULL,
                     err)) < 0)
        goto done;
    rc = berth_driver_leftover(st->driver, path.ptr, cutoff_ns, remove, err);
done:
    berth_buf_dispose(&path);
    return rc;
}

int berth_gc_blob_leftover(berth_store *st, const berth_digest *dgst,
                           int64_t cutoff_ns, int remove, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    int rc;

    if ((rc = layout(&path, BERTH_PATH_BLOB_DIR, NULL, dgst, NULL, NULL,
                     err)) < 0)
        goto done;
    rc = berth_driver_leftover(st->driver, path.ptr, cutoff_ns, remove, err);
    if (rc == BERTH_ENOTFOUND)
        rc = blob_unknown(err, dgst);
done:
    berth_buf_dispose(&path);
    return rc;
}

/* Start a digest walk of the tree of (kind, repo, tag). */
static int walk_start(berth__digest_walk *w, berth_path_kind kind,
                      const char *repo, const char *tag, berth_store *st,
                      berth_error *err)
{
    berth_path_spec spec = { 0 };

    spec.kind = kind;
    spec.repo = repo;
    spec.tag = tag;
    return berth__digest_walk_start(w, st, &spec, err);
}

int berth_gc_reprieve_all(int *count_out, berth_store *st, berth_error *err)
{
    berth__digest_walk walk = { 0 };
    berth_digest d;
    int rc;

    *count_out = 0;
    rc = walk_start(&walk, BERTH_PATH_CONDEMNED, NULL, NULL, st, err);
    while (rc == 0 && (rc = berth__digest_walk_next(&d, &walk, err)) == 0) {
        rc = berth_blob_reprieve(st, &d, err);
        if (rc == 0)
            ++*count_out;
        else if (rc == BERTH_EBLOB_UNKNOWN)
            rc = 0; /* another gc put it back or purged it */
    }
    berth__digest_walk_dispose(&walk);
    return rc == BERTH_EITEROVER ? 0 : rc;
}

/* Whether dgst's data is in the tree or condemned. @return 1, 0, < 0. */
static int data_kept(berth_store *st, const berth_digest *dgst,
                     berth_buf *path, berth_error *err)
{
    static const berth_path_kind kinds[] = { BERTH_PATH_BLOB_DATA,
                                             BERTH_PATH_BLOB_CONDEMNED };
    berth_stat_info info;
    int rc = 0;

    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if ((rc = layout(path, kinds[i], NULL, dgst, NULL, NULL, err)) < 0)
            return rc;
        rc = berth_driver_stat(st->driver, &info, path->ptr, err);
        if (rc == 0)
            return 1;
        if (rc != BERTH_ENOTFOUND)
            return rc;
    }
    return 0;
}

/*
 * Put back the links of dgst that gc keeps out of the tree (dir: the
 * BERTH_PATH_BLOB_UNLINKED or _LINKS_CONDEMNED directory) while its data is
 * kept, else drop them (they would dangle); then remove dir, unless one
 * could not be put back.
 */
static int restore_blob_links(int *count, berth_store *st,
                              berth_path_kind dir, const berth_digest *dgst,
                              berth_buf *path, berth_error *err)
{
    berth_strlist names = BERTH_STRLIST_INIT;
    int kept, rc;

    if ((rc = kept = data_kept(st, dgst, path, err)) < 0 ||
        (rc = layout(path, dir, NULL, dgst, NULL, NULL, err)) < 0 ||
        (rc = berth__list(&names, st, path->ptr, err)) < 0)
        goto done;
    for (size_t i = 0; kept && rc == 0 && i < names.count; i++) {
        char *repo = names.items[i];
        if (berth__unlinked_repo(repo) < 0)
            continue; /* no link of berth's */
        rc = dir == BERTH_PATH_BLOB_UNLINKED
                 ? berth_blob_link_restore(st, repo, dgst, err)
                 : berth_blob_link_reprieve(st, repo, dgst, err);
        if (rc == 0)
            ++*count;
        else if (rc == BERTH_EBLOB_UNKNOWN)
            rc = 0; /* a read put it back */
    }
    if (rc == 0 && (rc = layout(path, dir, NULL, dgst, NULL, NULL, err)) == 0)
        rc = berth_driver_remove(st->driver, path->ptr, err);
    if (rc == BERTH_ENOTFOUND)
        rc = 0;
done:
    berth_strlist_dispose(&names);
    return rc;
}

int berth_gc_restore_links(int *count_out, berth_store *st, berth_error *err)
{
    static const berth_path_kind areas[][2] = {
        { BERTH_PATH_LINKS_CONDEMNED, BERTH_PATH_BLOB_LINKS_CONDEMNED },
        { BERTH_PATH_UNLINKED, BERTH_PATH_BLOB_UNLINKED },
    };
    berth__digest_walk walk = { 0 };
    berth_buf path = BERTH_BUF_INIT;
    berth_digest d;
    int rc = 0;

    *count_out = 0;
    for (size_t a = 0; rc == 0 && a < sizeof(areas) / sizeof(areas[0]); a++) {
        rc = walk_start(&walk, areas[a][0], NULL, NULL, st, err);
        while (rc == 0 && (rc = berth__digest_walk_next(&d, &walk, err)) == 0)
            rc = restore_blob_links(count_out, st, areas[a][1], &d, &path,
                                    err);
        if (rc == BERTH_EITEROVER)
            rc = 0;
    }
    berth__digest_walk_dispose(&walk);
    berth_buf_dispose(&path);
    return rc;
}

enum { PHASE_LAYERS, PHASE_REVISIONS, PHASE_TAGS, PHASE_DONE };

struct berth_gc_link_iter {
    berth_store *st;
    char *repo;
    unsigned kinds;
    int empty; /* BERTH_GC_LINK_EMPTY */
    int phase;
    berth__digest_walk walk;
    int walking; /* walk is started on the phase's (or tag's) tree */
    berth_strlist tags;
    int tags_listed;
    size_t ti;
    int tag_step; /* 0: current link next, 1: start the index, 2: in it */
    berth_buf path;
};

int berth_gc_link_iter_new(berth_gc_link_iter **out, berth_store *st,
                           const char *repo, unsigned kinds, berth_error *err)
{
    berth_gc_link_iter *it;
    int rc;

    *out = NULL;
    if ((rc = berth__repo_check(repo, 0, err)) < 0)
        return rc;
    if ((it = calloc(1, sizeof(*it))) == NULL)
        return oom(err);
    if ((it->repo = strdup(repo)) == NULL) {
        free(it);
        return oom(err);
    }
    it->st = berth__store_ref(st);
    it->kinds = kinds & BERTH_GC_LINK_ALL;
    it->empty = (kinds & BERTH_GC_LINK_EMPTY) != 0;
    it->phase = PHASE_LAYERS;
    *out = it;
    return 0;
}

/*
 * Describe the link of the walk's current digest (or the tag's current
 * link). A walked <alg>/<hex> directory without its link file is no link:
 * CNCF Distribution leaves one when it deletes a manifest or a layer link,
 * a put that died leaves one, and it vanishes with its file: it is
 * reported (ABSENT, with the directory's mtime) only when the walk asked
 * for BERTH_GC_LINK_EMPTY. A tag directory without current/link is
 * reported, as ABSENT, with the mtime of the tag's directory (a first set
 * or a delete cut short left it).
 * @return 0, 1 to skip, < 0 error.
 */
static int iter_link(berth_gc_link *out, berth_gc_link_iter *it,
                     berth_gc_link_kind kind, const berth_digest *dgst,
                     const char *tag, berth_error *err)
{
    berth_stat_info info;
    int rc = link_at(out, it->st, it->repo, kind, dgst, tag, &it->path, err);

    if (rc != BERTH_ENOTFOUND)
        return rc;
    if (kind != BERTH_GC_LINK_TAG_CURRENT && !it->empty)
        return 1;
    if ((rc = layout(&it->path,
                     kind == BERTH_GC_LINK_TAG_CURRENT ? BERTH_PATH_TAG
                                                       : link_dir_kind(kind),
                     it->repo, dgst, tag, NULL, err)) < 0)
        return rc;
    rc = berth_driver_stat(it->st->driver, &info, it->path.ptr, err);
    if (rc == BERTH_ENOTFOUND) /* removed meanwhile */
        return 1;
    if (rc < 0)
        return rc;
    out->state = BERTH_GC_LINK_ABSENT;
    out->mtime_ns = info.mtime_ns;
    return 0;
}

int berth_gc_link_iter_next(berth_gc_link *out, berth_gc_link_iter *it,
                            berth_error *err)
{
    berth_digest d;
    int rc;

    for (;;) {
        switch (it->phase) {
        case PHASE_LAYERS:
        case PHASE_REVISIONS: {
            int layers = it->phase == PHASE_LAYERS;
            berth_gc_link_kind kind = layers ? BERTH_GC_LINK_LAYER
                                             : BERTH_GC_LINK_REVISION;
            if (!(it->kinds & kind)) {
                it->phase++;
                continue;
            }
            if (!it->walking) {
                if ((rc = walk_start(&it->walk,
                                     layers ? BERTH_PATH_LAYERS
                                            : BERTH_PATH_REVISIONS,
                                     it->repo, NULL, it->st, err)) < 0)
                    return rc;
                it->walking = 1;
            }
            rc = berth__digest_walk_next(&d, &it->walk, err);
            if (rc == BERTH_EITEROVER) {
                it->walking = 0;
                it->phase++;
                continue;
            }
            if (rc < 0)
                return rc;
            if ((rc = iter_link(out, it, kind, &d, NULL, err)) == 1)
                continue;
            return rc;
        }
        case PHASE_TAGS: {
            const char *tag;
            if (!(it->kinds &
                  (BERTH_GC_LINK_TAG_CURRENT | BERTH_GC_LINK_TAG_INDEX))) {
                it->phase++;
                continue;
            }
            if (!it->tags_listed) {
                it->tags_listed = 1;
                if ((rc = layout(&it->path, BERTH_PATH_TAGS, it->repo, NULL,
                                 NULL, NULL, err)) < 0 ||
                    (rc = berth__list(&it->tags, it->st, it->path.ptr, err)) <
                        0)
                    return rc;
            }
            if (it->ti >= it->tags.count) {
                it->phase++;
                continue;
            }
            tag = it->tags.items[it->ti];
            if (berth_tag_validate(tag, strlen(tag), NULL) < 0) {
                it->ti++;
                continue;
            }
            if (it->tag_step == 0) {
                it->tag_step = 1;
                /* 1: the tag went meanwhile, its index is walked still */
                if ((it->kinds & BERTH_GC_LINK_TAG_CURRENT) &&
                    (rc = iter_link(out, it, BERTH_GC_LINK_TAG_CURRENT, NULL,
                                    tag, err)) != 1)
                    return rc;
                continue;
            }
            if (it->tag_step == 1) {
                if (!(it->kinds & BERTH_GC_LINK_TAG_INDEX)) {
                    it->ti++;
                    it->tag_step = 0;
                    continue;
                }
                if ((rc = walk_start(&it->walk, BERTH_PATH_TAG_INDEX,
                                     it->repo, tag, it->st, err)) < 0)
                    return rc;
                it->tag_step = 2;
            }
            rc = berth__digest_walk_next(&d, &it->walk, err);
            if (rc == BERTH_EITEROVER) {
                it->ti++;
                it->tag_step = 0;
                continue;
            }
            if (rc < 0)
                return rc;
            if ((rc = iter_link(out, it, BERTH_GC_LINK_TAG_INDEX, &d, tag,
                                err)) == 1)
                continue;
            return rc;
        }
        default:
            return BERTH_EITEROVER;
        }
    }
}

void berth_gc_link_iter_free(berth_gc_link_iter *it)
{
    if (it == NULL)
        return;
    berth__digest_walk_dispose(&it->walk);
    berth_strlist_dispose(&it->tags);
    berth_buf_dispose(&it->path);
    berth__store_unref(it->st);
    free(it->repo);
    free(it);
}

/* ---- upload sessions ---- */

/* The shape of an upload id (a UUID, any case of hex), as upload.c takes
 * them. */
static int upload_id_valid(const char *id)
{
    if (strlen(id) != BERTH_UPLOAD_ID_MAX - 1)
        return 0;
    for (size_t i = 0; id[i]; i++) {
        char c = id[i];
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? c != '-'
                 : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                     (c >= 'A' && c <= 'F')))
            return 0;
    }
    return 1;
}

struct berth_gc_upload_iter {
    berth_store *st;
    char *repo;
    berth_strlist ids;
    size_t i;
    berth_buf path;
};

int berth_gc_upload_iter_new(berth_gc_upload_iter **out, berth_store *st,
                             const char *repo, berth_error *err)
{
    berth_gc_upload_iter *it;
    int rc;

    *out = NULL;
    if ((rc = berth__repo_check(repo, 0, err)) < 0)
        return rc;
    if ((it = calloc(1, sizeof(*it))) == NULL)
        return oom(err);
    it->st = berth__store_ref(st);
    if ((it->repo = strdup(repo)) == NULL) {
        rc = oom(err);
        goto done;
    }
    if ((rc = layout(&it->path, BERTH_PATH_UPLOADS, repo, NULL, NULL, NULL,
                     err)) < 0)
        goto done;
    rc = berth__list(&it->ids, st, it->path.ptr, err);
done:
    if (rc < 0) {
        berth_gc_upload_iter_free(it);
        return rc;
    }
    *out = it;
    return 0;
}

/*
 * A session without startedat: its age is that of the newest change to its
 * directory or data. @return 0, BERTH_ENOTFOUND (gone), < 0 error.
 */
static int orphan_session(berth_gc_upload *out, berth_gc_upload_iter *it,
                          berth_error *err)
{
    berth_stat_info info;
    int64_t newest;
    int rc;

    if ((rc = layout(&it->path, BERTH_PATH_UPLOAD, it->repo, NULL, NULL,
                     out->id, err)) < 0 ||
        (rc = berth_driver_stat(it->st->driver, &info, it->path.ptr, err)) <
            0)
        return rc;
    newest = info.mtime_ns;
    if ((rc = layout(&it->path, BERTH_PATH_UPLOAD_DATA, it->repo, NULL, NULL,
                     out->id, err)) < 0)
        return rc;
    rc = berth_driver_stat(it->st->driver, &info, it->path.ptr, err);
    if (rc == 0) {
        out->size = info.size;
        if (info.mtime_ns > newest)
            newest = info.mtime_ns;
    } else if (rc != BERTH_ENOTFOUND) {
        return rc;
    }
    out->has_startedat = 0;
    out->started = newest / 1000000000;
    return 0;
}

int berth_gc_upload_iter_next(berth_gc_upload *out, berth_gc_upload_iter *it,
                              berth_error *err)
{
    berth_upload *up = NULL;
    int rc;

    while (it->i < it->ids.count) {
        const char *id = it->ids.items[it->i++];
        if (!upload_id_valid(id))
            continue;
        memset(out, 0, sizeof(*out));
        memcpy(out->id, id, BERTH_UPLOAD_ID_MAX);
        rc = berth_upload_open(&up, it->st, it->repo, id, BERTH_UPLOAD_READ,
                               err);
        if (rc == 0) {
            out->has_startedat = 1;
            out->started = berth_upload_started(up);
            out->size = berth_upload_size(up);
            berth_upload_free(up);
            return 0;
        }
        if (rc != BERTH_EBLOB_UPLOAD_UNKNOWN)
            return rc;
        rc = orphan_session(out, it, err);
        if (rc == BERTH_ENOTFOUND) /* gone meanwhile */
            continue;
        return rc;
    }
    return BERTH_EITEROVER;
}

void berth_gc_upload_iter_free(berth_gc_upload_iter *it)
{
    if (it == NULL)
        return;
    berth_strlist_dispose(&it->ids);
    berth_buf_dispose(&it->path);
    berth__store_unref(it->st);
    free(it->repo);
    free(it);
}

int berth_gc_upload_purge(berth_store *st, const char *repo, const char *id,
                          berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    berth_writer *lock = NULL;
    berth_stat_info info;
    int rc;

    if ((rc = berth__repo_check(repo, 0, err)) < 0)
        return rc;
    if (id == NULL || !upload_id_valid(id))
        return berth_error_set(err, BERTH_EBLOB_UPLOAD_UNKNOWN,
                               "blob upload unknown: %s", id ? id : "(null)");
    /* Look before taking the lock: the writer would create the session's
     * directory if it were gone. */
    if ((rc = layout(&path, BERTH_PATH_UPLOAD, repo, NULL, NULL, id, err)) <
        0)
        goto done;
    rc = berth_driver_stat(st->driver, &info, path.ptr, err);
    if (rc == BERTH_ENOTFOUND)
        rc = berth_error_set(err, BERTH_EBLOB_UPLOAD_UNKNOWN,
                             "blob upload unknown: %s", id);
    if (rc < 0)
        goto done;
    /* The session's writer lock: a request holding it is writing now. A
     * request that opens the session after us finds startedat gone and
     * gives up (berth_upload_open checks it again under the lock). */
    if ((rc = layout(&path, BERTH_PATH_UPLOAD_DATA, repo, NULL, NULL, id,
                     err)) < 0)
        goto done;
    rc = berth_driver_writer(st->driver, &lock, path.ptr, 1, err);
    if (rc == BERTH_EBUSY)
        rc = berth_error_set(err, BERTH_EBUSY,
                             "upload busy: %s is being written", id);
    if (rc < 0)
        goto done;
    if ((rc = layout(&path, BERTH_PATH_UPLOAD, repo, NULL, NULL, id, err)) <
        0)
        goto done;
    rc = berth_driver_remove(st->driver, path.ptr, err);
    if (rc == BERTH_ENOTFOUND) /* committed or cancelled meanwhile */
        rc = 0;
done:
    berth_writer_free(lock);
    berth_buf_dispose(&path);
    return rc;
}
