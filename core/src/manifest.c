/*
 * The manifest store: manifests are blobs (byte for byte as the client sent
 * them) plus a revision link in the repository, as in Distribution. They
 * are never linked in _layers, so a layer cannot be fetched as a manifest
 * nor a manifest as a layer.
 *
 * Order of a put, so that a crash at any point leaves no dangling pointer:
 * blob data, revision link, referrers entry, tag (index link, current link).
 * A delete undoes it the other way round: tags, referrers entry, revision.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The revision link of dgst in repo (kind BERTH_PATH_REVISION_LINK), or
 * its directory (BERTH_PATH_REVISION_DIR). */
static int revision_path(berth_buf *out, berth_path_kind kind,
                         const char *repo, const berth_digest *dgst,
                         berth_error *err)
{
    berth_path_spec spec = { 0 };

    spec.kind = kind;
    spec.repo = repo;
    spec.digest = dgst;
    return berth__path(out, &spec, err);
}

int berth__revision_exists(berth_store *st, const char *repo,
                           const berth_digest *dgst, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    berth_digest target;
    int rc;

    if ((rc = revision_path(&path, BERTH_PATH_REVISION_LINK, repo, dgst,
                            err)) < 0)
        goto done;
    rc = berth__link_read(&target, st, path.ptr, err);
    if (rc == BERTH_ENOTFOUND || rc == BERTH_EDIGEST_INVALID)
        rc = 0;
    else if (rc == 0)
        rc = strcmp(target.str, dgst->str) == 0;
done:
    berth_buf_dispose(&path);
    return rc;
}

static int manifest_unknown(berth_error *err, const char *repo,
                            const berth_digest *dgst)
{
    return berth_error_set(err, BERTH_EMANIFEST_UNKNOWN,
                           "manifest unknown: %s@%s", repo, dgst->str);
}

static int size_mismatch(berth_error *err, const berth_descriptor *d,
                         uint64_t size)
{
    return berth_error_set(err, BERTH_EMANIFEST_INVALID,
                           "manifest invalid: size mismatch: %s is %" PRIu64
                           " bytes, the descriptor says %" PRId64,
                           d->digest.str, size, d->size);
}

/*
 * Every reference must be in the repository: blobs linked in _layers,
 * child manifests as revisions. Both answer MANIFEST_BLOB_UNKNOWN, not
 * MANIFEST_UNKNOWN for a missing child: the OCI distribution spec says a
 * manifest rejected for a missing reference "MUST result in one or more
 * MANIFEST_BLOB_UNKNOWN errors", and Distribution's index handler does so.
 * Sizes are checked too (Distribution does not): a wrong size breaks every
 * client that pulls it. A negative size (a Lua handler's "unknown") is not
 * checked. The subject need not exist (OCI 1.1: referrers may come first).
 */
static int verify_refs(berth_store *st, const char *repo,
                       const berth_manifest *m,
                       const berth_manifest_put_options *opts,
                       berth_error *err)
{
    size_t n = berth_manifest_ref_count(m);
    uint64_t size;
    int rc;

    for (size_t i = 0; i < n; i++) {
        const berth_descriptor *d = berth_manifest_ref(m, i);

        if (d->kind == BERTH_REF_MANIFEST) {
            if ((rc = berth__revision_exists(st, repo, &d->digest, err)) < 0)
                return rc;
            if (rc == 1)
                rc = berth_blob_stat(&size, st, NULL, &d->digest, err);
            else
                rc = BERTH_EBLOB_UNKNOWN;
            if (rc == BERTH_EBLOB_UNKNOWN)
                return berth_error_set(err, BERTH_EMANIFEST_BLOB_UNKNOWN,
                                       "manifest blob unknown: manifest %s "
                                       "is not in %s",
                                       d->digest.str, repo);
        } else {
            rc = berth_blob_stat(&size, st, repo, &d->digest, err);
            if (rc == BERTH_EBLOB_UNKNOWN) {
                if (d->has_urls && opts->allow_foreign_layers)
                    continue;
                return berth_error_set(err, BERTH_EMANIFEST_BLOB_UNKNOWN,
                                       "manifest blob unknown: blob %s is "
                                       "not in %s",
                                       d->digest.str, repo);
            }
        }
        if (rc < 0)
            return rc;
        if (d->size >= 0 && size != (uint64_t)d->size)
            return size_mismatch(err, d, size);
    }
    return 0;
}

int berth_manifest_put(berth_store *st, const char *repo,
                       const berth_manifest *m,
                       const berth_manifest_put_options *opts,
                       berth_error *err)
{
    static const berth_manifest_put_options defaults =
        BERTH_MANIFEST_PUT_OPTIONS_INIT;
    berth_buf path = BERTH_BUF_INIT;
    berth_digest dgst, stored;
    const void *body;
    size_t len;
    int had_revision, rc;

    if (opts == NULL)
        opts = &defaults;
    if (opts->version < 1 ||
        opts->version > BERTH_MANIFEST_PUT_OPTIONS_VERSION)
        return berth_error_set(err, BERTH_EINVAL,
                               "manifest put options: unknown version");
    if ((rc = berth__repo_check(repo, 0, err)) < 0)
        goto done;
    if (opts->tag &&
        (rc = berth_tag_validate(opts->tag, strlen(opts->tag), err)) < 0)
        goto done;

    /* PUT by digest: the body must hash to it, in its algorithm, and is
     * then stored under it (a client that pushed sha512 pulls sha512). */
    body = berth_manifest_body(m, &len);
    dgst = *berth_manifest_digest(m);
    if (opts->expected) {
        if (opts->expected->algo != dgst.algo &&
            (rc = berth_digest_compute(&dgst, opts->expected->algo, body, len,
                                       err)) < 0)
            goto done;
        if (strcmp(dgst.str, opts->expected->str) != 0) {
            rc = berth_error_set(err, BERTH_EDIGEST_INVALID,
                                 "digest mismatch: expected %s got %s",
                                 opts->expected->str, dgst.str);
            goto done;
        }
    }
    if (!(opts->flags & BERTH_MANIFEST_SKIP_VERIFY) &&
        (rc = verify_refs(st, repo, m, opts, err)) < 0)
        goto done;

    /* Global data only: a manifest is not linked in _layers. */
    if ((rc = berth_blob_put(&stored, st, NULL, dgst.algo, body, len, err)) <
        0)
        goto done;
    if ((rc = berth__revision_exists(st, repo, &dgst, err)) < 0)
        goto done;
    had_revision = rc;
    if ((rc = revision_path(&path, BERTH_PATH_REVISION_LINK, repo, &dgst,
                            err)) < 0 ||
        (rc = berth__link_write(st, path.ptr, &dgst, err)) < 0)
        goto done;
    /* The second check of the collector's race argument (collect.c): a
     * put that verified before gc withdrew the links is checked again now
     * that its revision is visible. */
    if (!(opts->flags & BERTH_MANIFEST_SKIP_VERIFY) &&
        (rc = verify_refs(st, repo, m, opts, err)) < 0) {
        if (!had_revision && revision_path(&path, BERTH_PATH_REVISION_DIR,
                                           repo, &dgst, NULL) == 0)
            berth_driver_remove(st->driver, path.ptr, NULL);
        goto done;
    }
    if ((rc = berth__referrer_add(st, repo, m, &dgst, err)) < 0) {
        berth__referrers_invalidate(st, repo);
        goto done;
    }
    if (opts->tag && opts->version >= 2 &&
        (opts->flags & BERTH_MANIFEST_TAG_IF))
        rc = berth_tag_set_if(st, repo, opts->tag, &dgst, opts->tag_expected,
                              err);
    else if (opts->tag)
        rc = berth_tag_set(st, repo, opts->tag, &dgst, err);
done:
    berth_buf_dispose(&path);
    return rc;
}

/* A tag or a digest ("algo:hex"; tags cannot hold ':') to a digest. */
static int resolve(berth_digest *out, berth_store *st, const char *repo,
                   const char *ref, berth_error *err)
{
    int rc;

    if (strchr(ref, ':'))
        return berth_digest_parse(out, ref, strlen(ref), err);
    if ((rc = berth_tag_validate(ref, strlen(ref), err)) < 0)
        return rc;
    return berth_tag_get(out, st, repo, ref, err);
}

int berth_manifest_get(berth_buf *body, berth_manifest_info *info,
                       berth_store *st, const char *repo, const char *ref,
                       berth_error *err)
{
    berth_buf local = BERTH_BUF_INIT;
    berth_buf *out = body ? body : &local;
    berth_digest dgst;
    char media_type[sizeof(info->media_type)];
    int rc;

    if (body)
        berth_buf_clear(body);
    if ((rc = berth__repo_check(repo, 0, err)) < 0)
        goto done;
    if ((rc = resolve(&dgst, st, repo, ref, err)) < 0)
        goto done;
    if ((rc = berth__revision_exists(st, repo, &dgst, err)) < 0)
        goto done;
    if (rc == 0) {
        rc = manifest_unknown(err, repo, &dgst);
        goto done;
    }
    /* Verified against the digest on the way. */
    rc = berth_blob_get(out, st, NULL, &dgst, BERTH_MANIFEST_MAX, err);
    if (rc == BERTH_EBLOB_UNKNOWN)
        rc = manifest_unknown(err, repo, &dgst);
    else if (rc == BERTH_ETOOLARGE)
        rc = berth_error_set(err, BERTH_EMANIFEST_INVALID,
                             "manifest invalid: stored content of %s is "
                             "larger than %d bytes",
                             dgst.str, BERTH_MANIFEST_MAX);
    if (rc < 0)
        goto done;
    /* Check the content before trusting it as a manifest: Distribution
     * type-asserted first and panicked on blobs that are none. */
    if ((rc = berth__manifest_media_type(media_type, sizeof(media_type),
                                         out->ptr ? out->ptr : "", out->len,
                                         err)) < 0)
        goto done;
    if (info) {
        info->digest = dgst;
        info->size = out->len;
        memcpy(info->media_type, media_type, strlen(media_type) + 1);
    }
done:
    if (rc < 0 && body)
        berth_buf_clear(body);
    berth_buf_dispose(&local);
    return rc;
}

/* Drop the referrers entry of a stored manifest, if it has a subject.
 * Content that cannot be read or parsed has no entry to drop; a stale
 * entry would be harmless anyway (listings check the revision). */
static int forget_referrer(berth_store *st, const char *repo,
                           const berth_digest *dgst, berth_error *err)
{
    berth_buf content = BERTH_BUF_INIT;
    berth_manifest *m = NULL;
    const berth_descriptor *subject;
    int rc;

    rc = berth_blob_get(&content, st, NULL, dgst, BERTH_MANIFEST_MAX, err);
    if (rc == 0)
        rc = berth__manifest_parse_stored(&m, content.ptr ? content.ptr : "",
                                          content.len, err);
    if (rc == BERTH_ENOMEM)
        goto done;
    rc = 0;
    if (m && (subject = berth_manifest_subject(m)) != NULL)
        rc = berth__referrer_remove(st, repo, &subject->digest, dgst, err);
done:
    berth_manifest_free(m);
    berth_buf_dispose(&content);
    return rc;
}

/* Are two lists the same set of names? Sorts both. */
static int same_names(berth_strlist *a, berth_strlist *b)
{
    if (a->count != b->count)
        return 0;
    berth_strlist_sort(a);
    berth_strlist_sort(b);
    for (size_t i = 0; i < a->count; i++)
        if (strcmp(a->items[i], b->items[i]) != 0)
            return 0;
    return 1;
}

/* Delete dgst and its tags, all under the tag lock, so that no tag can be
 * set on it meanwhile; with expected_tags, only if those are its tags. */
static int manifest_delete(berth_store *st, const char *repo,
                           const berth_digest *dgst,
                           berth_strlist *expected_tags, berth_error *err)
{
    berth_strlist tags = BERTH_STRLIST_INIT;
    berth_buf path = BERTH_BUF_INIT;
    berth_lease *lock = NULL;
    int rc;

    if ((rc = berth__repo_check(repo, 0, err)) < 0 ||
        (rc = berth__tag_lock(&lock, st, repo, err)) < 0)
        goto done;
    if ((rc = berth__revision_exists(st, repo, dgst, err)) < 0)
        goto done;
    if (rc == 0) {
        rc = manifest_unknown(err, repo, dgst);
        goto done;
    }

    /* Tags first: a tag never points at a manifest that is not there. */
    if ((rc = berth_tag_lookup(&tags, st, repo, dgst, err)) < 0)
        goto done;
    if (expected_tags && !same_names(&tags, expected_tags)) {
        rc = berth_error_set(err, BERTH_ETAG_CHANGED,
                             "the tags of %s changed meanwhile", dgst->str);
        goto done;
    }
    for (size_t i = 0; i < tags.count; i++) {
        rc = berth__tag_delete_locked(st, repo, tags.items[i], 0, NULL, err);
        if (rc == BERTH_EMANIFEST_UNKNOWN) /* deleted meanwhile */
            rc = 0;
        if (rc < 0)
            goto done;
    }
    if ((rc = forget_referrer(st, repo, dgst, err)) < 0)
        goto done;

    /* The link's directory holds nothing but the link: remove both, so a
     * listing never meets an empty entry. */
    if ((rc = revision_path(&path, BERTH_PATH_REVISION_DIR, repo, dgst,
                            err)) < 0)
        goto done;
    rc = berth_driver_remove(st->driver, path.ptr, err);
    if (rc == BERTH_ENOTFOUND) /* deleted meanwhile */
        rc = manifest_unknown(err, repo, dgst);
done:
    berth_lease_free(lock);
    berth_buf_dispose(&path);
    berth_strlist_dispose(&tags);
    return rc;
}

int berth_manifest_delete(berth_store *st, const char *repo,
                          const berth_digest *dgst, berth_error *err)
{
    return manifest_delete(st, repo, dgst, NULL, err);
}

int berth_manifest_delete_if(berth_store *st, const char *repo,
                             const berth_digest *dgst,
                             berth_strlist *expected_tags, berth_error *err)
{
    return manifest_delete(st, repo, dgst, expected_tags, err);
}

/* The repository's revisions whose link names them (berth_gc_link_iter
 * walks the layout and skips what is no link), sorted. */
int berth_manifest_list(berth_strlist *out, berth_store *st, const char *repo,
                        berth_error *err)
{
    berth_gc_link_iter *it = NULL;
    berth_gc_link link;
    int rc;

    if ((rc = berth_gc_link_iter_new(&it, st, repo, BERTH_GC_LINK_REVISION,
                                     err)) < 0)
        return rc;
    while ((rc = berth_gc_link_iter_next(&link, it, err)) == 0) {
        if (link.state == BERTH_GC_LINK_OK &&
            (rc = berth_strlist_add(out, link.digest.str,
                                    strlen(link.digest.str), err)) < 0)
            break;
    }
    berth_gc_link_iter_free(it);
    if (rc != BERTH_EITEROVER) {
        berth_strlist_dispose(out);
        return rc;
    }
    berth_strlist_sort(out);
    return 0;
}
