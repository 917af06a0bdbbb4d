/*
 * The allocation-failure sweep: a scenario over the public API (a store,
 * blobs, an upload, a manifest, tags, listings, iterators, deletes) run
 * again and again, the nth allocation of libberth failing on the nth run
 * (berth/sys/alloc.h), until a run makes fewer than n allocations. Every
 * failure must answer BERTH_ENOMEM, with its message, and free what it
 * took: the ASan build checks for leaks when the sweep ends.
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <berth/berth.h>
#include <berth/sys/alloc.h>

#define REPO "sweep/app"
#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"

static const char LAYER[] = "the bytes of a layer";

/* Set for the last run, which no failure disturbs: a gc that absorbed one
 * keeps what it could not look at, so only then is its result exact. */
static int exact;

#define STEP(call)                                                           \
    do {                                                                     \
        if ((rc = (call)) < 0)                                               \
            goto done;                                                       \
    } while (0)

/* Walk an iterator to its end, counting into count. */
#define DRAIN(next, count)                                                   \
    do {                                                                     \
        for (count = 0; (rc = (next)) == 0; count++)                         \
            ;                                                                \
        if (rc != BERTH_EITEROVER)                                           \
            goto done;                                                       \
    } while (0)

/* What a run that succeeds must have seen, whatever failure it absorbed. */
#define WRONG (-1000)
#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            rc = berth_error_set(err, WRONG, "wrong result: %s", #cond);     \
            goto done;                                                       \
        }                                                                    \
    } while (0)

static int scenario(const char *dir, berth_error *err)
{
    berth_store_options opts = BERTH_STORE_OPTIONS_INIT;
    berth_manifest_put_options put = BERTH_MANIFEST_PUT_OPTIONS_INIT;
    berth_store *st = NULL;
    berth_upload *up = NULL, *up2 = NULL;
    berth_manifest *m = NULL;
    berth_blob_iter *bi = NULL;
    berth_gc_link_iter *li = NULL;
    berth_gc_upload_iter *ui = NULL;
    berth_gc_options gopts = BERTH_GC_OPTIONS_INIT;
    berth_gc_progress gp;
    berth_gc *gc = NULL;
    const berth_gc_report *gr;
    berth_strlist tags = { NULL, 0, 0 }, tagged = { NULL, 0, 0 };
    berth_strlist repos = { NULL, 0, 0 }, all = { NULL, 0, 0 };
    berth_buf body = BERTH_BUF_INIT, json = BERTH_BUF_INIT;
    berth_manifest_info info;
    berth_digest config, layer, got;
    berth_gc_link link;
    berth_gc_upload gu;
    berth_digest md;
    char text[1024];
    size_t count;
    int n, rc;

    opts.root = dir;
    opts.fsync = BERTH_FSYNC_NONE;
    STEP(berth_store_open(&st, &opts, err));
    STEP(
        berth_blob_put(&config, st, REPO, BERTH_DIGEST_SHA256, "{}", 2, err));
    STEP(berth_digest_compute(&layer, BERTH_DIGEST_SHA256, LAYER,
                              sizeof(LAYER) - 1, err));
    STEP(berth_upload_create(&up, st, REPO, err));
    STEP(berth_upload_write(up, LAYER, sizeof(LAYER) - 1, err));
    STEP(berth_upload_commit(up, &layer, (int64_t)sizeof(LAYER) - 1, err));
    n = snprintf(text, sizeof(text),
                 "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST "\","
                 "\"config\":{\"mediaType\":"
                 "\"application/vnd.oci.image.config.v1+json\","
                 "\"digest\":\"%s\",\"size\":2},"
                 "\"layers\":[{\"mediaType\":"
                 "\"application/vnd.oci.image.layer.v1.tar\","
                 "\"digest\":\"%s\",\"size\":%zu}]}",
                 config.str, layer.str, sizeof(LAYER) - 1);
    STEP(berth_manifest_parse(&m, OCI_MANIFEST, text, (size_t)n, err));
    md = *berth_manifest_digest(m);
    put.tag = "v1";
    STEP(berth_manifest_put(st, REPO, m, &put, err));
    STEP(berth_tag_set(st, REPO, "v2", &md, err));
    STEP(berth_tag_get(&got, st, REPO, "v1", err));
    CHECK(strcmp(got.str, md.str) == 0);
    STEP(berth_tag_list(&tags, st, REPO, NULL, 100, err));
    CHECK(tags.count == 2);
    STEP(berth_tag_lookup(&tagged, st, REPO, &md, err));
    CHECK(tagged.count == 2);
    STEP(berth_manifest_get(&body, &info, st, REPO, "v2", err));
    CHECK(strcmp(info.digest.str, md.str) == 0 && body.len == (size_t)n);
    STEP(berth_catalog_list(&repos, st, NULL, 100, err));
    CHECK(repos.count == 1 && strcmp(repos.items[0], REPO) == 0);
    STEP(berth_gc_repo_list(&all, st, err));
    CHECK(all.count == 1);
    STEP(berth_referrers_list(&json, st, REPO, &md, NULL, err));
    CHECK(strstr(json.ptr, "\"manifests\":[]") != NULL);
    STEP(berth_blob_iter_new(&bi, st, REPO, err));
    DRAIN(berth_blob_iter_next(&got, bi, err), count);
    CHECK(count == 2); /* the config and the layer */
    STEP(berth_gc_link_iter_new(&li, st, REPO, BERTH_GC_LINK_ALL, err));
    DRAIN(berth_gc_link_iter_next(&link, li, err), count);
    CHECK(count == 2 + 1 + 2 * 2); /* two layers, a revision, two per tag */
    STEP(berth_upload_create(&up2, st, REPO, err));
    STEP(berth_gc_upload_iter_new(&ui, st, REPO, err));
    DRAIN(berth_gc_upload_iter_next(&gu, ui, err), count);
    CHECK(count == 1); /* the committed one is gone */
    STEP(berth_upload_cancel(up2, err));
    STEP(berth_tag_delete(st, REPO, "v2", err));
    STEP(berth_manifest_delete(st, REPO, &md, err));
    gopts.grace_ns = 0; /* the config, the layer, the manifest's body */
    STEP(berth_gc_new(&gc, st, &gopts, err));
    while ((rc = berth_gc_step(&gp, gc, err)) == 0)
        ;
    if (rc != BERTH_EITEROVER)
        goto done;
    gr = berth_gc_report_of(gc);
    /* one it could not look at stays, uncounted (it has no size) */
    CHECK(gr->blobs_total == 3 && gr->blobs_removed <= 3);
    CHECK(!exact || gr->blobs_removed == 3);
    rc = 0;
done:
    berth_gc_free(gc);
    berth_gc_upload_iter_free(ui);
    berth_gc_link_iter_free(li);
    berth_blob_iter_free(bi);
    berth_strlist_dispose(&tags);
    berth_strlist_dispose(&tagged);
    berth_strlist_dispose(&repos);
    berth_strlist_dispose(&all);
    berth_buf_dispose(&body);
    berth_buf_dispose(&json);
    berth_manifest_free(m);
    berth_upload_free(up);
    berth_upload_free(up2);
    berth_store_free(st);
    return rc;
}

static int remove_entry(const char *path, const struct stat *sb, int flag,
                        struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(void)
{
    /* hundreds of stores: in memory when the system has a tmpfs there */
    char shm[] = "/dev/shm/berth-sweep-XXXXXX";
    char tmp[] = "/tmp/berth-sweep-XXXXXX";
    const char *base = mkdtemp(shm);
    char dir[64];
    uint64_t n, used = 0, absorbed = 0;
    int rc;

    if (base == NULL)
        base = mkdtemp(tmp);
    if (base == NULL) {
        perror("mkdtemp");
        return 1;
    }
    for (n = 1;; n++) {
        berth_error err = { 0, 0, "" };

        snprintf(dir, sizeof(dir), "%s/%llu", base, (unsigned long long)n);
        berth_alloc_fail_at(n);
        rc = scenario(dir, &err);
        used = berth_alloc_count();
        berth_alloc_fail_at(0);
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        if (used < n) {
            if (rc < 0) {
                fprintf(stderr, "without a failure: %d %s\n", rc,
                        err.message);
                return 1;
            }
            break; /* every allocation of the scenario has failed once */
        }
        if (rc == 0) {
            absorbed++; /* a failure the scenario did not need to see */
        } else if (rc != BERTH_ENOMEM || err.code != rc ||
                   err.message[0] == '\0') {
            fprintf(stderr,
                    "allocation %llu failed: answered %d (%s), not "
                    "BERTH_ENOMEM\n",
                    (unsigned long long)n, rc, err.message);
            return 1;
        }
    }
    exact = 1;
    snprintf(dir, sizeof(dir), "%s/exact", base);
    rc = scenario(dir, &(berth_error){ 0, 0, "" });
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (rc < 0) {
        fprintf(stderr, "the run without failures answered %d\n", rc);
        return 1;
    }
    remove(base);
    printf("%llu allocations, each failed once: BERTH_ENOMEM (%llu "
           "absorbed)\n",
           (unsigned long long)used, (unsigned long long)absorbed);
    return 0;
}
