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
 * ├── _referrers/_complete                          epoch it was complete in
 * ├── _tagsof/<alg>/<hex>/<tag>                     "<tag>": digest -> tags
 * ├── _tagsof/_complete                             the same, of _tagsof
 * └── _taglock                                      empty; the driver lock
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
 *
 * The walks of these trees are here too (berth__digest_walk,
 * berth__repo_walk): they join listed names to the directories they list.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ROOT "/docker/registry/v2"
#define BLOBS ROOT "/blobs"
/* A blob's data file under BLOBS: <alg>, <hex>[0:2], <hex>. */
#define BLOB_DATA "%s/%.2s/%s/data"
#define OWN_ROOT "/berth/v1"
#define OWN_REPO OWN_ROOT "/repositories/%s"
/* The file a link directory holds, and a cache directory's marker. */
#define LINK "/link"
#define COMPLETE "/_complete"
/* Stands for '/' in a repository name under unlinked/: a path component
 * cannot hold '/', and a name has no upper case. */
#define REPO_SEP 'S'

const char *berth_blob_dir(void)
{
    return &BLOBS[1];
}

int berth__path(berth_buf *out, const berth_path_spec *spec, berth_error *err)
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
        return berth_buf_printf(out, err, BLOBS "/%s/%.2s/%s", alg, hex, hex);
    case BERTH_PATH_BLOB_DATA:
        return berth_buf_printf(out, err, BLOBS "/" BLOB_DATA, alg, hex, hex);
    case BERTH_PATH_BLOB_DATA_UNDER:
        return berth_buf_printf(out, err, BLOB_DATA, alg, hex, hex);
    case BERTH_PATH_REPOSITORIES:
        return berth_buf_printf(out, err, ROOT "/repositories");
    case BERTH_PATH_REFERRERS_ROOT:
        return berth_buf_printf(out, err, OWN_REPO "/_referrers", spec->repo);
    case BERTH_PATH_REFERRERS_MARKER:
        return berth_buf_printf(out, err, OWN_REPO "/_referrers" COMPLETE,
                                spec->repo);
    case BERTH_PATH_REFERRERS:
    case BERTH_PATH_REFERRER: {
        const char *salg = berth_digest_algo_name(spec->subject->algo);
        const char *shex = berth_digest_hex(spec->subject);
        if (spec->kind == BERTH_PATH_REFERRERS)
            return berth_buf_printf(out, err, OWN_REPO "/_referrers/%s/%s",
                                    spec->repo, salg, shex);
        return berth_buf_printf(out, err, OWN_REPO "/_referrers/%s/%s/%s/%s",
                                spec->repo, salg, shex, alg, hex);
    }
    case BERTH_PATH_TAG_REVERSE_ROOT:
        return berth_buf_printf(out, err, OWN_REPO "/_tagsof", spec->repo);
    case BERTH_PATH_TAG_REVERSE_MARKER:
        return berth_buf_printf(out, err, OWN_REPO "/_tagsof" COMPLETE,
                                spec->repo);
    case BERTH_PATH_TAG_REVERSE:
        return berth_buf_printf(out, err, OWN_REPO "/_tagsof/%s/%s",
                                spec->repo, alg, hex);
    case BERTH_PATH_TAG_LOCK:
        return berth_buf_printf(out, err, OWN_REPO "/_taglock", spec->repo);
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
        return berth_buf_printf(out, err, OWN_REPO "/_tagsof/%s/%s/%s",
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
    case BERTH_PATH_LAYER_DIR:
    case BERTH_PATH_LAYER_LINK:
        rc = berth_buf_printf(out, err, "/_layers/%s/%s", alg, hex);
        break;
    case BERTH_PATH_MANIFESTS:
        return berth_buf_printf(out, err, "/_manifests");
    case BERTH_PATH_REVISIONS:
        return berth_buf_printf(out, err, "/_manifests/revisions");
    case BERTH_PATH_REVISION_DIR:
    case BERTH_PATH_REVISION_LINK:
        rc = berth_buf_printf(out, err, "/_manifests/revisions/%s/%s", alg,
                              hex);
        break;
    case BERTH_PATH_TAGS:
        return berth_buf_printf(out, err, "/_manifests/tags");
    case BERTH_PATH_TAG:
        return berth_buf_printf(out, err, "/_manifests/tags/%s", spec->tag);
    case BERTH_PATH_TAG_CURRENT:
        rc = berth_buf_printf(out, err, "/_manifests/tags/%s/current",
                              spec->tag);
        break;
    case BERTH_PATH_TAG_INDEX:
        return berth_buf_printf(out, err, "/_manifests/tags/%s/index",
                                spec->tag);
    case BERTH_PATH_TAG_INDEX_DIR:
    case BERTH_PATH_TAG_INDEX_LINK:
        rc = berth_buf_printf(out, err, "/_manifests/tags/%s/index/%s/%s",
                              spec->tag, alg, hex);
        break;
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
    /* A link's directory holds the link and nothing else. */
    if (rc == 0 && (spec->kind == BERTH_PATH_LAYER_LINK ||
                    spec->kind == BERTH_PATH_REVISION_LINK ||
                    spec->kind == BERTH_PATH_TAG_CURRENT ||
                    spec->kind == BERTH_PATH_TAG_INDEX_LINK))
        rc = berth_buf_printf(out, err, LINK);
    return rc;
}

int berth__link_file(berth_buf *out, const char *dir, berth_error *err)
{
    berth_buf_clear(out);
    return berth_buf_printf(out, err, "%s" LINK, dir);
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

int berth_name_validate(const char *name, size_t len, berth_error *err)
{
    size_t i = 0;

    if (name == NULL || len == 0)
        return berth_error_set(err, BERTH_ENAME_INVALID,
                               "invalid repository name: empty");
    if (len > BERTH__NAME_MAX)
        return berth_error_set(err, BERTH_ENAME_INVALID,
                               "invalid repository name: longer than %d "
                               "characters",
                               BERTH__NAME_MAX);
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
        return allow_null ? 0
                          : berth_error_set(err, BERTH_ENAME_INVALID,
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
        rc = berth_error_set(err, BERTH_EDIGEST_INVALID, "link too long: %s",
                             path);
    if (rc < 0)
        goto done;
    rc = berth__link_parse(out, &content, err);
done:
    berth_buf_dispose(&content);
    return rc;
}

/* ---- walks ---- */

int berth__list(berth_strlist *out, berth_store *st, const char *path,
                berth_error *err)
{
    int rc;

    berth_strlist_dispose(out);
    rc = berth_driver_list(st->driver, out, path, err);
    return rc == BERTH_ENOTFOUND ? 0 : rc;
}

int berth__digest_walk_start(berth__digest_walk *w, berth_store *st,
                             const berth_path_spec *tree, berth_error *err)
{
    assert(tree->kind == BERTH_PATH_BLOBS ||
           tree->kind == BERTH_PATH_LAYERS ||
           tree->kind == BERTH_PATH_REVISIONS ||
           tree->kind == BERTH_PATH_TAG_INDEX ||
           tree->kind == BERTH_PATH_REFERRERS ||
           tree->kind == BERTH_PATH_TAG_REVERSE_ROOT ||
           tree->kind == BERTH_PATH_CONDEMNED ||
           tree->kind == BERTH_PATH_UNLINKED ||
           tree->kind == BERTH_PATH_LINKS_CONDEMNED);
    berth_strlist_dispose(&w->algs);
    berth_strlist_dispose(&w->mids);
    berth_strlist_dispose(&w->hexes);
    w->ai = w->mi = w->hi = 0;
    w->listed = 0;
    w->st = st;
    w->levels = tree->kind == BERTH_PATH_BLOBS ? 3 : 2;
    return berth__path(&w->base, tree, err);
}

/* List <tree>/<alg>, or <tree>/<alg>/<mid>, into l. */
static int walk_list(berth__digest_walk *w, berth_strlist *l, const char *alg,
                     const char *mid, berth_error *err)
{
    int rc;

    berth_buf_clear(&w->dir);
    if (mid)
        rc = berth_buf_printf(&w->dir, err, "%s/%s/%s", w->base.ptr, alg,
                              mid);
    else
        rc = berth_buf_printf(&w->dir, err, "%s/%s", w->base.ptr, alg);
    return rc < 0 ? rc : berth__list(l, w->st, w->dir.ptr, err);
}

/* The digest whose directory <alg>/<hex> (in blobs, <alg>/<mid>/<hex>)
 * is. @return 0, or -1 when it is none. */
static int walk_digest(berth_digest *out, const char *alg, const char *mid,
                       const char *hex)
{
    char text[BERTH_DIGEST_STR_MAX + 8];
    int len = snprintf(text, sizeof(text), "%s:%s", alg, hex);

    if (len < 0 || (size_t)len >= sizeof(text) ||
        berth_digest_parse(out, text, (size_t)len, NULL) < 0)
        return -1;
    return mid && strncmp(mid, hex, 2) != 0 ? -1 : 0;
}

int berth__digest_walk_next(berth_digest *out, berth__digest_walk *w,
                            berth_error *err)
{
    int rc;

    if (!w->listed) {
        w->listed = 1;
        if ((rc = berth__list(&w->algs, w->st, w->base.ptr, err)) < 0)
            return rc;
    }
    for (;;) {
        /* the algorithm (and in blobs the middle level) being walked */
        const char *alg = w->ai ? w->algs.items[w->ai - 1] : NULL;
        const char *mid = w->mi ? w->mids.items[w->mi - 1] : NULL;

        if (w->hi < w->hexes.count) {
            if (walk_digest(out, alg, mid, w->hexes.items[w->hi++]) == 0)
                return 0;
        } else if (w->mi < w->mids.count) {
            mid = w->mids.items[w->mi++];
            if (strlen(mid) != 2)
                continue;
            if ((rc = walk_list(w, &w->hexes, alg, mid, err)) < 0)
                return rc;
            w->hi = 0;
        } else if (w->ai < w->algs.count) {
            alg = w->algs.items[w->ai++];
            /* nothing else can hold digests (_complete, junk) */
            if (berth_digest_algo_from_name(alg, strlen(alg)) ==
                BERTH_DIGEST_NONE)
                continue;
            if (w->levels == 3) {
                berth_strlist_dispose(&w->mids);
                rc = walk_list(w, &w->mids, alg, NULL, err);
            } else {
                rc = walk_list(w, &w->hexes, alg, NULL, err);
            }
            if (rc < 0)
                return rc;
            w->mi = w->hi = 0;
        } else {
            return BERTH_EITEROVER;
        }
    }
}

void berth__digest_walk_dispose(berth__digest_walk *w)
{
    berth_strlist_dispose(&w->algs);
    berth_strlist_dispose(&w->mids);
    berth_strlist_dispose(&w->hexes);
    berth_buf_dispose(&w->base);
    berth_buf_dispose(&w->dir);
}

/* One directory open in a repository walk. */
struct berth__repo_dir {
    berth_strlist children;
    size_t next;     /* the child to visit next */
    size_t name_len; /* of the directory's name (the walk's name) */
};

/* Distribution's catalog order (lessPath in registry/storage/catalog.go):
 * the order of a depth-first walk that lists each directory sorted and
 * names a repository before the ones nested in it. */
static int catalog_cmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        int ca = *a == '\0' ? -1 : *a == '/' ? 0 : (unsigned char)*a;
        int cb = *b == '\0' ? -1 : *b == '/' ? 0 : (unsigned char)*b;
        if (ca != cb)
            return ca < cb ? -1 : 1;
        if (ca == -1)
            return 0;
    }
}

/* Distribution's directories inside a repository. */
static int is_repo_marker(const char *name)
{
    return strcmp(name, "_layers") == 0 || strcmp(name, "_manifests") == 0 ||
           strcmp(name, "_uploads") == 0;
}

void berth__repo_walk_start(berth__repo_walk *w, berth_store *st,
                            const char *after)
{
    while (w->depth > 0)
        berth_strlist_dispose(&w->dirs[--w->depth].children);
    w->st = st;
    w->after = after;
    w->started = 0;
}

/* List the directory of w->name and open it.
 * @return 1 when it is a repository, 0 when not, < 0 on an error. */
static int repo_walk_enter(berth__repo_walk *w, berth_error *err)
{
    berth_path_spec spec = { 0 };
    struct berth__repo_dir *d;
    int rc, is_repo = 0;

    if (w->depth == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 8;
        d = realloc(w->dirs, cap * sizeof(*d));
        if (d == NULL)
            return berth_error_set(err, BERTH_ENOMEM, "out of memory");
        w->dirs = d;
        w->cap = cap;
    }
    d = &w->dirs[w->depth];
    memset(d, 0, sizeof(*d));
    spec.kind = w->name.len ? BERTH_PATH_REPO : BERTH_PATH_REPOSITORIES;
    spec.repo = w->name.ptr;
    if ((rc = berth__path(&w->path, &spec, err)) < 0 ||
        (rc = berth__list(&d->children, w->st, w->path.ptr, err)) < 0)
        return rc;
    d->name_len = w->name.len;
    w->depth++;
    for (size_t i = 0; i < d->children.count; i++)
        is_repo |= is_repo_marker(d->children.items[i]);
    return w->name.len > 0 && is_repo;
}

/* Whether the walk's name is past after, or has it in its subtree. */
static int repo_walk_wanted(const berth__repo_walk *w, int *past)
{
    const char *name = w->name.ptr, *after = w->after;
    size_t len = w->name.len;

    if (after == NULL) {
        *past = 1;
        return 1;
    }
    *past = catalog_cmp(name, after) > 0;
    return *past || (strncmp(after, name, len) == 0 &&
                     (after[len] == '/' || after[len] == '\0'));
}

int berth__repo_walk_next(const char **name_out, berth__repo_walk *w,
                          berth_error *err)
{
    int rc, past;

    if (!w->started) {
        w->started = 1;
        berth_buf_clear(&w->name);
        /* the name buffer must hold a string from the start */
        if ((rc = berth_buf_put(&w->name, "", 0, err)) < 0 ||
            (rc = repo_walk_enter(w, err)) < 0)
            return rc;
    }
    while (w->depth > 0) {
        struct berth__repo_dir *d = &w->dirs[w->depth - 1];
        const char *c;

        if (d->next >= d->children.count) {
            berth_strlist_dispose(&d->children);
            w->depth--;
            continue;
        }
        c = d->children.items[d->next++];
        if (c[0] == '_')
            continue;
        w->name.len = d->name_len;
        w->name.ptr[w->name.len] = '\0';
        if ((rc = berth_buf_printf(&w->name, err, "%s%s",
                                   d->name_len ? "/" : "", c)) < 0)
            return rc;
        if (berth_name_validate(w->name.ptr, w->name.len, NULL) < 0 ||
            !repo_walk_wanted(w, &past))
            continue;
        if ((rc = repo_walk_enter(w, err)) < 0)
            return rc;
        if (rc == 1 && past) {
            *name_out = w->name.ptr;
            return 0;
        }
    }
    return BERTH_EITEROVER;
}

void berth__repo_walk_dispose(berth__repo_walk *w)
{
    berth__repo_walk_start(w, NULL, NULL);
    free(w->dirs);
    w->dirs = NULL;
    w->cap = 0;
    berth_buf_dispose(&w->name);
    berth_buf_dispose(&w->path);
}
