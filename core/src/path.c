/*
 * The storage layout: CNCF Distribution's, byte for byte, so a store written
 * by either registry can be served by the other. Every path in berth comes
 * from berth__path(); nothing else concatenates layout strings.
 *
 * /docker/registry/v2
 * ├── blobs
 * │   └── <alg>/<hex[0:2]>/<hex>/data               raw bytes, immutable
 * └── repositories
 *     └── <name>                                    may contain '/'
 *         ├── _layers/<alg>/<hex>/link              "<alg>:<hex>", no newline
 *         ├── _manifests
 *         │   ├── revisions/<alg>/<hex>/link
 *         │   └── tags/<tag>
 *         │       ├── current/link
 *         │       └── index/<alg>/<hex>/link
 *         └── _uploads/<id>
 *             ├── data
 *             ├── startedat                         RFC 3339, UTC
 *             └── hashstates/<alg>/<offset>         Go MarshalBinary state
 *
 * berth's own caches live beside it, and can be rebuilt from the above:
 *
 * /berth/v1/repositories/<name>
 * ├── _referrers/<alg>/<subject hex>/<alg>/<hex>    descriptor JSON
 * ├── _tagsof/<alg>/<hex>/<tag>                     "<tag>": digest -> tags
 * └── _taglock                                      empty; its writer lock
 *                                                   orders berth's tag writes
 * /berth/v1/epoch          changes when the caches may be stale (store.h)
 * /berth/v1/condemned/<alg>/<hex>   a blob directory a running gc took out
 *                          of the tree to purge (blob.c); put back if not
 * /berth/v1/unlinked/<alg>/<hex>/<repo>   a _layers/<alg>/<hex> directory
 *                          gc took out of the tree (its name's '/' as 'S');
 *                          a read through the link puts it back (blob.c)
 * /berth/v1/condemned-links/<alg>/<hex>/<repo>   the same, of a blob gc is
 *                          about to purge: no read puts them back
 * (Their names start with "_", which no repository name component can.)
 */
#include <string.h>

#include "internal.h"

#define ROOT "/docker/registry/v2"
#define BLOBS ROOT "/blobs"
#define OWN_ROOT "/berth/v1"
/* Stands for '/' in a repository name under unlinked/: a path component
 * cannot hold '/', and a name has no upper case. */
#define REPO_SEP 'S'

const char *berth_blob_dir(void)
{
    return &BLOBS[1];
}

int berth__path(berth_buf *out, const berth_path_spec *spec,
                berth_error *err)
{
    const char *alg = NULL, *hex = NULL;
    int rc;

    if (spec->digest) {
        alg = berth_digest_algo_name(spec->digest->algo);
        hex = berth_digest_hex(spec->digest);
    }
    berth_buf_clear(out);
    switch (spec->kind) {
    case BERTH_PATH_BLOBS:
        return berth_buf_printf(out, err, BLOBS);
    case BERTH_PATH_BLOB_DIR:
        return berth_buf_printf(out, err, BLOBS "/%s/%.2s/%s", alg, hex,
                                hex);
    case BERTH_PATH_BLOB_DATA:
        return berth_buf_printf(out, err, BLOBS "/%s/%.2s/%s/data", alg,
                                hex, hex);
    case BERTH_PATH_REPOSITORIES:
        return berth_buf_printf(out, err, ROOT "/repositories");
    case BERTH_PATH_REFERRERS:
    case BERTH_PATH_REFERRER: {
        const char *salg = berth_digest_algo_name(spec->subject->algo);
        const char *shex = berth_digest_hex(spec->subject);
        if (spec->kind == BERTH_PATH_REFERRERS)
            return berth_buf_printf(out, err,
                                    OWN_ROOT "/repositories/%s/_referrers/%s/%s",
                                    spec->repo, salg, shex);
        return berth_buf_printf(out, err,
                                OWN_ROOT "/repositories/%s/_referrers/%s/%s/%s/%s",
                                spec->repo, salg, shex, alg, hex);
    }
    case BERTH_PATH_TAG_REVERSE:
        return berth_buf_printf(out, err,
                                OWN_ROOT "/repositories/%s/_tagsof/%s/%s",
                                spec->repo, alg, hex);
    case BERTH_PATH_TAG_LOCK:
        return berth_buf_printf(out, err,
                                OWN_ROOT "/repositories/%s/_taglock",
                                spec->repo);
    case BERTH_PATH_EPOCH:
        return berth_buf_printf(out, err, OWN_ROOT "/epoch");
    case BERTH_PATH_CONDEMNED:
        return berth_buf_printf(out, err, OWN_ROOT "/condemned");
    case BERTH_PATH_BLOB_CONDEMNED:
        return berth_buf_printf(out, err, OWN_ROOT "/condemned/%s/%s", alg,
                                hex);
    case BERTH_PATH_UNLINKED:
        return berth_buf_printf(out, err, OWN_ROOT "/unlinked");
    case BERTH_PATH_BLOB_UNLINKED:
        return berth_buf_printf(out, err, OWN_ROOT "/unlinked/%s/%s", alg,
                                hex);
    case BERTH_PATH_LINKS_CONDEMNED:
        return berth_buf_printf(out, err, OWN_ROOT "/condemned-links");
    case BERTH_PATH_BLOB_LINKS_CONDEMNED:
        return berth_buf_printf(out, err, OWN_ROOT "/condemned-links/%s/%s",
                                alg, hex);
    case BERTH_PATH_LINK_UNLINKED:
    case BERTH_PATH_LINK_CONDEMNED: {
        size_t start;
        rc = berth_buf_printf(out, err,
                              spec->kind == BERTH_PATH_LINK_UNLINKED
                                  ? OWN_ROOT "/unlinked/%s/%s/"
                                  : OWN_ROOT "/condemned-links/%s/%s/",
                              alg, hex);
        start = out->len;
        if (rc < 0 || (rc = berth_buf_printf(out, err, "%s", spec->repo)) < 0)
            return rc;
        for (size_t i = start; i < out->len; i++)
            if (out->ptr[i] == '/')
                out->ptr[i] = REPO_SEP;
        return 0;
    }
    case BERTH_PATH_TAG_REVERSE_ENTRY:
        return berth_buf_printf(out, err,
                                OWN_ROOT "/repositories/%s/_tagsof/%s/%s/%s",
                                spec->repo, alg, hex, spec->tag);
    default:
        break;
    }

    /* Everything else lives under one repository. */
    if ((rc = berth_buf_printf(out, err, ROOT "/repositories/%s",
                               spec->repo)) < 0)
        return rc;
    switch (spec->kind) {
    case BERTH_PATH_REPO:
        return 0;
    case BERTH_PATH_LAYERS:
        return berth_buf_printf(out, err, "/_layers");
    case BERTH_PATH_LAYER_LINK:
        return berth_buf_printf(out, err, "/_layers/%s/%s/link", alg, hex);
    case BERTH_PATH_MANIFESTS:
        return berth_buf_printf(out, err, "/_manifests");
    case BERTH_PATH_REVISIONS:
        return berth_buf_printf(out, err, "/_manifests/revisions");
    case BERTH_PATH_REVISION_LINK:
        return berth_buf_printf(out, err, "/_manifests/revisions/%s/%s/link",
                                alg, hex);
    case BERTH_PATH_TAGS:
        return berth_buf_printf(out, err, "/_manifests/tags");
    case BERTH_PATH_TAG:
        return berth_buf_printf(out, err, "/_manifests/tags/%s", spec->tag);
    case BERTH_PATH_TAG_CURRENT:
        return berth_buf_printf(out, err, "/_manifests/tags/%s/current/link",
                                spec->tag);
    case BERTH_PATH_TAG_INDEX:
        return berth_buf_printf(out, err, "/_manifests/tags/%s/index",
                                spec->tag);
    case BERTH_PATH_TAG_INDEX_LINK:
        return berth_buf_printf(out, err,
                                "/_manifests/tags/%s/index/%s/%s/link",
                                spec->tag, alg, hex);
    case BERTH_PATH_UPLOADS:
        return berth_buf_printf(out, err, "/_uploads");
    case BERTH_PATH_UPLOAD:
        return berth_buf_printf(out, err, "/_uploads/%s", spec->upload_id);
    case BERTH_PATH_UPLOAD_DATA:
        return berth_buf_printf(out, err, "/_uploads/%s/data",
                                spec->upload_id);
    case BERTH_PATH_UPLOAD_STARTEDAT:
        return berth_buf_printf(out, err, "/_uploads/%s/startedat",
                                spec->upload_id);
    case BERTH_PATH_UPLOAD_HASHSTATES:
        return berth_buf_printf(out, err, "/_uploads/%s/hashstates/%s",
                                spec->upload_id,
                                berth_digest_algo_name(spec->algo));
    case BERTH_PATH_UPLOAD_HASHSTATE:
        return berth_buf_printf(out, err, "/_uploads/%s/hashstates/%s/%llu",
                                spec->upload_id,
                                berth_digest_algo_name(spec->algo),
                                (unsigned long long)spec->offset);
    default:
        return berth_error_set(err, BERTH_ERROR, "unknown path kind %d",
                               (int)spec->kind);
    }
}

static int is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/*
 * One path component of a repository name:
 *   [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
 * Returns the length consumed, or 0 when the component is not valid.
 */
static size_t name_component(const char *s, size_t len)
{
    size_t i = 0;

    for (;;) {
        size_t start = i;
        while (i < len && is_lower_alnum(s[i]))
            i++;
        if (i == start)
            return 0;
        if (i == len || s[i] == '/')
            return i;
        if (s[i] == '.') {
            i++;
        } else if (s[i] == '_') {
            i++;
            if (i < len && s[i] == '_')
                i++;
        } else if (s[i] == '-') {
            while (i < len && s[i] == '-')
                i++;
        } else {
            return 0;
        }
    }
}

/* Distribution's limit for a whole repository name. */
#define NAME_MAX_LEN 255

int berth_name_validate(const char *name, size_t len, berth_error *err)
{
    size_t i = 0;

    if (name == NULL || len == 0)
        return berth_error_set(err, BERTH_ENAME_INVALID,
                               "invalid repository name: empty");
    if (len > NAME_MAX_LEN)
        return berth_error_set(err, BERTH_ENAME_INVALID,
                               "invalid repository name: longer than %d "
                               "characters", NAME_MAX_LEN);
    for (;;) {
        size_t n = name_component(name + i, len - i);
        if (n == 0)
            break;
        i += n;
        if (i == len)
            return 0;
        i++; /* the '/' */
    }
    return berth_error_set(err, BERTH_ENAME_INVALID,
                           "invalid repository name: %.*s", (int)len, name);
}

int berth_tag_validate(const char *tag, size_t len, berth_error *err)
{
    if (tag == NULL || len == 0 || len > 128)
        goto invalid;
    for (size_t i = 0; i < len; i++) {
        char c = tag[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 (c >= '0' && c <= '9') || c == '_' ||
                 (i > 0 && (c == '.' || c == '-'));
        if (!ok)
            goto invalid;
    }
    return 0;
invalid:
    return berth_error_set(err, BERTH_ETAG_INVALID, "invalid tag: %.*s",
                           (int)(len > 140 ? 140 : len), tag ? tag : "");
}

int berth__unlinked_repo(char *name)
{
    for (char *c = name; *c; c++)
        if (*c == REPO_SEP)
            *c = '/';
        else if (*c == '/')
            return -1;
    return berth_name_validate(name, strlen(name), NULL) < 0 ? -1 : 0;
}

int berth__repo_check(const char *repo, int allow_null, berth_error *err)
{
    if (repo == NULL)
        return allow_null ? 0 : berth_error_set(err, BERTH_ENAME_INVALID,
                                                "repository name required");
    return berth_name_validate(repo, strlen(repo), err);
}

int berth__link_parse(berth_digest *out, const berth_buf *content,
                      berth_error *err)
{
    return berth_digest_parse(out, content->ptr ? content->ptr : "",
                              content->len, err);
}

int berth__link_write(berth_store *st, const char *path,
                      const berth_digest *dgst, berth_error *err)
{
    return berth_driver_put(st->driver, path, dgst->str, strlen(dgst->str),
                            err);
}

/* Links hold one digest; anything longer is damage, not a link. */
#define LINK_MAX 256

int berth__link_read(berth_digest *out, berth_store *st, const char *path,
                     berth_error *err)
{
    berth_buf content = BERTH_BUF_INIT;
    int rc;

    rc = berth_driver_get(st->driver, &content, path, LINK_MAX, err);
    if (rc == BERTH_ETOOLARGE)
        rc = berth_error_set(err, BERTH_EDIGEST_INVALID,
                             "link too long: %s", path);
    if (rc < 0)
        goto done;
    rc = berth__link_parse(out, &content, err);
done:
    berth_buf_dispose(&content);
    return rc;
}
