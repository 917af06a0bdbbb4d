/*
 * The referrers index: for each subject, one file per referring manifest
 * holding the descriptor the referrers API answers with. It lives outside
 * Distribution's tree and is a cache: a listing keeps only entries whose
 * manifest is still a revision of the repository, and
 * berth_referrers_rebuild makes it again from the manifests.
 *
 * Distribution does not know the index, so manifests it stored have no
 * entries. As for the tag index (tag.c), a marker <index>/_complete holds
 * the store epoch in which every manifest of the repository had its entry;
 * a listing that finds no marker of the current epoch first adds the
 * missing entries (adding only: a manifest put meanwhile loses nothing),
 * and when it cannot (a read-only store) answers by reading every
 * manifest. A manifest put that fails to add its entry removes the marker.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "internal.h"

static int oom(berth_error *err)
{
    return berth_error_set(err, BERTH_ENOMEM, "out of memory");
}

static int referrer_path(berth_buf *out, berth_path_kind kind,
                         const char *repo, const berth_digest *subject,
                         const berth_digest *dgst, berth_error *err)
{
    berth_path_spec spec = { 0 };

    spec.kind = kind;
    spec.repo = repo;
    spec.subject = subject;
    spec.digest = dgst;
    return berth__path(out, &spec, err);
}

/* The marker of a complete index (its name is no algorithm's). */
static int marker_path(berth_buf *out, const char *repo, berth_error *err)
{
    return referrer_path(out, BERTH_PATH_REFERRERS_MARKER, repo, NULL, NULL,
                         err);
}

/* {"mediaType","digest","size","artifactType"?,"annotations"?} */
static int entry_json(berth_buf *out, const berth_manifest *m,
                      const berth_digest *dgst, berth_error *err)
{
    const char *artifact_type = berth_manifest_artifact_type(m);
    const char *annotations = berth_manifest_annotations(m);
    char size[32];
    size_t len;
    cJSON *obj;
    char *text = NULL;
    int rc = 0;

    berth_manifest_body(m, &len);
    /* The size as an integer literal: cJSON would print a double. */
    snprintf(size, sizeof(size), "%zu", len);
    if ((obj = cJSON_CreateObject()) == NULL ||
        !cJSON_AddStringToObject(obj, "mediaType",
                                 berth_manifest_media_type(m)) ||
        !cJSON_AddStringToObject(obj, "digest", dgst->str) ||
        !cJSON_AddRawToObject(obj, "size", size) ||
        (artifact_type &&
         !cJSON_AddStringToObject(obj, "artifactType", artifact_type)) ||
        /* Checked to be a JSON object of strings when it was set. */
        (annotations &&
         !cJSON_AddRawToObject(obj, "annotations", annotations)) ||
        (text = cJSON_PrintUnformatted(obj)) == NULL) {
        rc = oom(err);
        goto done;
    }
    berth_buf_clear(out);
    rc = berth_buf_put(out, text, strlen(text), err);
done:
    cJSON_free(text);
    cJSON_Delete(obj);
    return rc;
}

int berth__referrer_add(berth_store *st, const char *repo,
                        const berth_manifest *m, const berth_digest *dgst,
                        berth_error *err)
{
    const berth_descriptor *subject = berth_manifest_subject(m);
    berth_buf path = BERTH_BUF_INIT, json = BERTH_BUF_INIT;
    int rc;

    if (subject == NULL)
        return 0;
    if (dgst == NULL)
        dgst = berth_manifest_digest(m);
    if ((rc = entry_json(&json, m, dgst, err)) < 0 ||
        (rc = referrer_path(&path, BERTH_PATH_REFERRER, repo,
                            &subject->digest, dgst, err)) < 0)
        goto done;
    rc = berth_driver_put(st->driver, path.ptr, json.ptr, json.len, err);
done:
    berth_buf_dispose(&path);
    berth_buf_dispose(&json);
    return rc;
}

void berth__referrers_invalidate(berth_store *st, const char *repo)
{
    berth_buf path = BERTH_BUF_INIT;

    if (marker_path(&path, repo, NULL) == 0)
        berth_driver_remove(st->driver, path.ptr, NULL);
    berth_buf_dispose(&path);
}

int berth__referrer_remove(berth_store *st, const char *repo,
                           const berth_digest *subject,
                           const berth_digest *dgst, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    int rc;

    if ((rc = referrer_path(&path, BERTH_PATH_REFERRER, repo, subject, dgst,
                            err)) < 0)
        goto done;
    rc = berth_driver_remove(st->driver, path.ptr, err);
    if (rc == BERTH_ENOTFOUND)
        rc = 0;
done:
    berth_buf_dispose(&path);
    return rc;
}

/*
 * Append the entry of dgst (a referrer of subject) to out, with a leading
 * comma unless it is the first. Entries that are damaged, of another
 * artifact type, or whose manifest is gone are left out.
 */
static int append_entry(berth_buf *out, int *count, berth_store *st,
                        const char *repo, const berth_digest *subject,
                        const berth_digest *dgst, const char *artifact_type,
                        berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT, text = BERTH_BUF_INIT;
    cJSON *obj = NULL;
    const cJSON *digest, *type;
    const char *end = NULL;
    int rc;

    if ((rc = berth__revision_exists(st, repo, dgst, err)) <= 0)
        goto done;
    if ((rc = referrer_path(&path, BERTH_PATH_REFERRER, repo, subject, dgst,
                            err)) < 0)
        goto done;
    rc = berth_driver_get(st->driver, &text, path.ptr, BERTH_MANIFEST_MAX,
                          err);
    if (rc == BERTH_ENOTFOUND || rc == BERTH_ETOOLARGE) {
        rc = 0;
        goto done;
    }
    if (rc < 0 || text.ptr == NULL || strlen(text.ptr) != text.len)
        goto done;
    obj = cJSON_ParseWithOpts(text.ptr, &end, 1);
    digest = cJSON_GetObjectItemCaseSensitive(obj, "digest");
    if (!cJSON_IsObject(obj) || !cJSON_IsString(digest) ||
        strcmp(digest->valuestring, dgst->str) != 0)
        goto done;
    if (artifact_type) {
        type = cJSON_GetObjectItemCaseSensitive(obj, "artifactType");
        if (!cJSON_IsString(type) ||
            strcmp(type->valuestring, artifact_type) != 0)
            goto done;
    }
    /* Stored text, not cJSON's reprint: sizes stay integer literals. */
    if ((*count > 0 && (rc = berth_buf_put(out, ",", 1, err)) < 0) ||
        (rc = berth_buf_put(out, text.ptr, text.len, err)) < 0)
        goto done;
    (*count)++;
done:
    cJSON_Delete(obj);
    berth_buf_dispose(&path);
    berth_buf_dispose(&text);
    return rc < 0 ? rc : 0;
}

/* What each_referrer calls for a manifest with a subject. */
typedef int (*referrer_fn)(void *ctx, berth_store *st, const char *repo,
                           const berth_manifest *m, const berth_digest *dgst,
                           berth_error *err);

/* Call fn for every manifest of repo that has a subject, in digest order.
 * Content that is missing, damaged or no manifest is skipped: fsck reports
 * it, not this. Content that cannot be read now (EIO) fails the walk: a
 * completed index must not lack its entry. */
static int each_referrer(berth_store *st, const char *repo, referrer_fn fn,
                         void *ctx, berth_error *err)
{
    berth_strlist digests = BERTH_STRLIST_INIT;
    berth_buf content = BERTH_BUF_INIT;
    berth_manifest *m = NULL;
    berth_digest d;
    int rc;

    if ((rc = berth_manifest_list(&digests, st, repo, err)) < 0)
        goto done;
    for (size_t i = 0; i < digests.count; i++) {
        if (berth_digest_parse(&d, digests.items[i], strlen(digests.items[i]),
                               NULL) < 0)
            continue;
        rc = berth_blob_get(&content, st, NULL, &d, BERTH_MANIFEST_MAX, err);
        if (rc == 0)
            rc = berth__manifest_parse_stored(
                &m, content.ptr ? content.ptr : "", content.len, err);
        if (rc == BERTH_ENOMEM || rc == BERTH_EIO)
            goto done;
        if (rc == 0 && berth_manifest_subject(m) != NULL &&
            (rc = fn(ctx, st, repo, m, &d, err)) < 0)
            goto done;
        berth_manifest_free(m);
        m = NULL;
    }
    rc = 0;
done:
    berth_manifest_free(m);
    berth_strlist_dispose(&digests);
    berth_buf_dispose(&content);
    return rc;
}

static int add_entry(void *ctx, berth_store *st, const char *repo,
                     const berth_manifest *m, const berth_digest *dgst,
                     berth_error *err)
{
    (void)ctx;
    return berth__referrer_add(st, repo, m, dgst, err);
}

/* Add the entry of a manifest unless it is there: a first listing after a
 * restart should not rewrite the whole index. */
static int add_missing_entry(void *ctx, berth_store *st, const char *repo,
                             const berth_manifest *m,
                             const berth_digest *dgst, berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    berth_stat_info info;
    int rc;

    (void)ctx;
    if ((rc = referrer_path(&path, BERTH_PATH_REFERRER, repo,
                            &berth_manifest_subject(m)->digest, dgst, err)) <
        0)
        goto done;
    rc = berth_driver_stat(st->driver, &info, path.ptr, err);
    if (rc == BERTH_ENOTFOUND)
        rc = berth__referrer_add(st, repo, m, dgst, err);
done:
    berth_buf_dispose(&path);
    return rc;
}

/* Make repo's index hold an entry for each of its manifests, once per
 * epoch (see the top of this file). */
static int ensure_complete(berth_store *st, const char *repo,
                           berth_error *err)
{
    berth_buf path = BERTH_BUF_INIT;
    int rc;

    if ((rc = marker_path(&path, repo, err)) < 0 ||
        (rc = berth__epoch_marker_current(st, path.ptr, err)) != 0)
        goto done; /* complete (1 -> 0), or a read failure */
    if ((rc = each_referrer(st, repo, add_missing_entry, NULL, err)) == 0)
        rc = berth__epoch_marker_put(st, path.ptr, err);
done:
    berth_buf_dispose(&path);
    return rc < 0 ? rc : 0;
}

/* The listing without the index: every manifest read (a read-only store
 * whose index cannot be completed). */
typedef struct scan_ctx {
    berth_buf *out;
    int count;
    const berth_digest *subject;
    const char *artifact_type;
} scan_ctx;

static int scan_entry(void *ctx, berth_store *st, const char *repo,
                      const berth_manifest *m, const berth_digest *dgst,
                      berth_error *err)
{
    scan_ctx *sc = ctx;
    const char *type = berth_manifest_artifact_type(m);
    berth_buf json = BERTH_BUF_INIT;
    int rc;

    (void)st;
    (void)repo;
    if (strcmp(berth_manifest_subject(m)->digest.str, sc->subject->str) !=
            0 ||
        (sc->artifact_type &&
         (type == NULL || strcmp(type, sc->artifact_type) != 0)))
        return 0;
    if ((rc = entry_json(&json, m, dgst, err)) == 0 &&
        (sc->count == 0 || (rc = berth_buf_put(sc->out, ",", 1, err)) == 0) &&
        (rc = berth_buf_put(sc->out, json.ptr, json.len, err)) == 0)
        sc->count++;
    berth_buf_dispose(&json);
    return rc;
}

int berth_referrers_list(berth_buf *json_out, berth_store *st,
                         const char *repo, const berth_digest *subject,
                         const char *artifact_type, berth_error *err)
{
    berth_path_spec tree = { 0 };
    berth__digest_walk walk = { 0 };
    berth_digest d;
    int count = 0, rc;

    berth_buf_clear(json_out);
    if ((rc = berth__repo_check(repo, 0, err)) < 0)
        goto done;
    if ((rc = berth_buf_printf(json_out, err,
                               "{\"schemaVersion\":2,\"mediaType\":\"%s\","
                               "\"manifests\":[",
                               BERTH_MT_OCI_INDEX)) < 0)
        goto done;
    rc = ensure_complete(st, repo, err);
    if (rc == BERTH_ENAME_UNKNOWN) {
        rc = 0; /* no manifests: no referrers */
    } else if (rc < 0 && rc != BERTH_ENOMEM) {
        scan_ctx sc = { json_out, 0, subject, artifact_type };

        if ((rc = each_referrer(st, repo, scan_entry, &sc, err)) == 0)
            rc = berth_buf_put(json_out, "]}", 2, err);
        goto done;
    }
    if (rc < 0)
        goto done;
    /* Entries are <subject dir>/<alg>/<hex>; listings come sorted, and
     * "sha256" < "sha384" < "sha512", so the result is sorted by digest. */
    tree.kind = BERTH_PATH_REFERRERS;
    tree.repo = repo;
    tree.subject = subject;
    rc = berth__digest_walk_start(&walk, st, &tree, err);
    while (rc == 0 && (rc = berth__digest_walk_next(&d, &walk, err)) == 0)
        rc = append_entry(json_out, &count, st, repo, subject, &d,
                          artifact_type, err);
    if (rc == BERTH_EITEROVER)
        rc = berth_buf_put(json_out, "]}", 2, err);
done:
    if (rc < 0)
        berth_buf_clear(json_out);
    berth__digest_walk_dispose(&walk);
    return rc;
}

int berth_referrers_rebuild(berth_store *st, const char *repo,
                            berth_error *err)
{
    berth_buf root = BERTH_BUF_INIT, path = BERTH_BUF_INIT;
    int rc;

    if ((rc = berth__repo_check(repo, 0, err)) < 0)
        goto done;
    if ((rc = referrer_path(&root, BERTH_PATH_REFERRERS_ROOT, repo, NULL,
                            NULL, err)) < 0)
        goto done;
    rc = berth_driver_remove(st->driver, root.ptr, err);
    if (rc < 0 && rc != BERTH_ENOTFOUND)
        goto done;
    if ((rc = each_referrer(st, repo, add_entry, NULL, err)) < 0)
        goto done;
    if ((rc = marker_path(&path, repo, err)) == 0)
        rc = berth__epoch_marker_put(st, path.ptr, err);
done:
    berth_buf_dispose(&root);
    berth_buf_dispose(&path);
    return rc;
}
