/*
 * Embedding libberth: open a store in a directory, put a layer and a
 * config, put an image manifest naming them, tag it, read it all back.
 *   cc -std=c99 embed.c $(pkg-config --cflags --libs berth) -o embed
 *   ./embed DIR
 * Valid C99 and C++ alike: spec/11-install/embed_spec.lua builds it both
 * ways against an installed tree and runs it.
 */
#include <stdio.h>
#include <string.h>

#include <berth/berth.h>

#define REPO "example/app"

static int fail(const char *what, const berth_error *err)
{
    fprintf(stderr, "embed: %s: %s\n", what, err->message);
    return 1;
}

int main(int argc, char **argv)
{
    static const char layer[] = "a layer's bytes";
    static const char config[] = "{}";
    berth_store_options opts = BERTH_STORE_OPTIONS_INIT;
    berth_manifest_put_options put = BERTH_MANIFEST_PUT_OPTIONS_INIT;
    berth_gc_options gopts = BERTH_GC_OPTIONS_INIT;
    berth_gc_progress progress;
    berth_store *st = NULL;
    berth_manifest *m = NULL;
    berth_gc *gc = NULL;
    berth_digest layer_dgst, config_dgst, tagged;
    berth_buf back = BERTH_BUF_INIT;
    berth_error err = { 0, 0, "" };
    char body[1024];
    int n, step, rc = 1;

    if (argc != 2) {
        fprintf(stderr, "usage: embed DIR\n");
        return 2;
    }
    opts.root = argv[1];
    if (berth_store_open(&st, &opts, &err) < 0)
        return fail("open", &err);
    if (berth_blob_put(&layer_dgst, st, REPO, BERTH_DIGEST_SHA256, layer,
                       sizeof(layer) - 1, &err) < 0 ||
        berth_blob_put(&config_dgst, st, REPO, BERTH_DIGEST_SHA256, config,
                       sizeof(config) - 1, &err) < 0) {
        fail("blob put", &err);
        goto done;
    }
    n = snprintf(
        body, sizeof(body),
        "{\"schemaVersion\":2,"
        "\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"config\":{\"mediaType\":"
        "\"application/vnd.oci.image.config.v1+json\","
        "\"digest\":\"%s\",\"size\":%u},"
        "\"layers\":[{\"mediaType\":"
        "\"application/vnd.oci.image.layer.v1.tar\","
        "\"digest\":\"%s\",\"size\":%u}]}",
        config_dgst.str, (unsigned)(sizeof(config) - 1), layer_dgst.str,
        (unsigned)(sizeof(layer) - 1));
    if (n < 0 || (size_t)n >= sizeof(body)) {
        fprintf(stderr, "embed: manifest too long\n");
        goto done;
    }
    if (berth_manifest_parse(&m, "application/vnd.oci.image.manifest.v1+json",
                             body, (size_t)n, &err) < 0 ||
        berth_manifest_put(st, REPO, m, &put, &err) < 0 ||
        berth_tag_set(st, REPO, "v1", berth_manifest_digest(m), &err) < 0) {
        fail("manifest", &err);
        goto done;
    }
    if (berth_tag_get(&tagged, st, REPO, "v1", &err) < 0 ||
        berth_blob_get(&back, st, REPO, &layer_dgst, 1 << 20, &err) < 0) {
        fail("read back", &err);
        goto done;
    }
    if (strcmp(tagged.str, berth_manifest_digest(m)->str) != 0 ||
        back.len != sizeof(layer) - 1 ||
        memcmp(back.ptr, layer, back.len) != 0) {
        fprintf(stderr, "embed: read back something else\n");
        goto done;
    }
    /* garbage collection, a step at a time: what v1 needs stays */
    gopts.grace_ns = 0;
    if (berth_gc_new(&gc, st, &gopts, &err) < 0) {
        fail("gc", &err);
        goto done;
    }
    while ((step = berth_gc_step(&progress, gc, &err)) == 0)
        ; /* BERTH_GC_PHASE_SETTLE: a server would let pushes settle */
    if (step != BERTH_EITEROVER) {
        fail("gc", &err);
        goto done;
    }
    printf("%s:v1 %s\nlayer %s\ngc: %u kept, %u removed\n", REPO, tagged.str,
           layer_dgst.str, (unsigned)berth_gc_report_of(gc)->blobs_kept,
           (unsigned)berth_gc_report_of(gc)->blobs_removed);
    rc = 0;
done:
    berth_gc_free(gc);
    berth_buf_dispose(&back);
    berth_manifest_free(m);
    berth_store_free(st);
    return rc;
}
