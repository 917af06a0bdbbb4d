/*
 * The garbage collector (berth/gc.h): mark, sweep, purge and the upload
 * sessions, over explicit state, a step at a time, so that the caller
 * decides how to wait and C never does.
 *
 * WHY NO LOCK IS NEEDED
 *
 * Pushes write in this order: blob data (an upload moved into place; its
 * mtime is that of its last written byte), the blob's _layers link (every
 * commit and every mount writes it, so its mtime is the time of the push
 * even when the data was there already), then the manifest: verify that
 * every reference is linked and present, write the manifest's body as a
 * blob, its revision link, then the tag. The collector runs against that,
 * with T0 = the time it starts and cutoff = T0 - grace:
 *
 * 1. Mark. For every repository: every tag's target, every revision (with
 *    delete_untagged only those tagged, younger than the grace or needed
 *    by a kept one: index children and referrers of kept manifests, to a
 *    fixpoint; the others are deleted after checking once more that they
 *    are still untagged and old), then recursively index children, and
 *    config, layers and other blobs of each. A manifest whose type has no
 *    schema is read conservatively: every digest in it is kept.
 * 2. Sweep. Candidates are the blobs not marked. A candidate is kept when
 *    its data is younger than the cutoff, when a _layers link to it in any
 *    repository is younger, or when it is any repository's revision (a
 *    manifest pushed since). For the others the collector first withdraws
 *    their (old) _layers links: it moves them to a journal of its own, not
 *    away, and a read through a link that finds it missing (a manifest put
 *    verifying its references, a pull, a mount's source) moves it back
 *    first (blob.h). The caller then waits (the settle step), so that a
 *    manifest put that verified before the withdrawal has written its
 *    revision.
 * 3. Purge. Mark again (new revisions and tags; an untagged manifest
 *    deleted in phase 1 that a new manifest or tag needs is put back), and
 *    the candidates marked now get their links back; then condemn each
 *    candidate left (move its directory out of the tree, blob.h) and list
 *    the repositories again; and finally, per candidate, condemn its
 *    withdrawn links (one move: no read puts them back from then on, and a
 *    read before it put its link in the tree), check the same conditions
 *    once more, now with ANY _layers link counting (a push wrote it, or a
 *    read put it back), and purge the condemned copy and links, or put
 *    both back. A push writes its link and then looks for the data
 *    (blob.c berth__blob_adopt): so either this last check sees the link,
 *    or the push sees the data condemned and puts it back; a push that
 *    takes up a blob the collector is purging never loses it. A read
 *    through a link that finds the data condemned puts it back too: the
 *    link may be one written, or put back, after the blob was judged,
 *    which this last check would see.
 * 4. Upload sessions whose startedat is older than upload_grace are purged,
 *    each under its writer lock: a session a request is writing stays.
 *
 * So a blob pushed during a run is younger than the grace (data or link)
 * and kept; a manifest put during a run references blobs that are marked,
 * young, or old orphans: it reads back their withdrawn links, and the last
 * check keeps them, or finds their links condemned (the put then fails
 * with MANIFEST_BLOB_UNKNOWN and the client uploads again). A manifest put
 * that verified before the withdrawal but writes its revision after the
 * second mark is caught by its own second check (berth_manifest_put
 * verifies its references once more after its revision is visible): that
 * read puts a withdrawn link back, which the last check sees, or finds it
 * condemned, and withdraws the manifest. A push must take less than the
 * grace from its first link to its manifest: blobs linked longer ago than
 * that, that no manifest needs, are garbage. A manifest deleted during a
 * run only keeps its blobs one run more.
 *
 * A run killed at any point has moved blobs and links out of the tree,
 * never away: the first read through a withdrawn link puts it back, and
 * the next run puts back every one (but links to data that is gone) before
 * it judges anything.
 *
 * Only positive evidence removes anything: a blob or link that cannot be
 * looked at (an i/o error) is kept, and a manifest that cannot be read
 * stops the run (its references are unknown; what was withdrawn so far is
 * put back). A tag whose current link is damaged keeps every manifest of
 * its history. The collector removes no tag; it removes revisions only
 * with delete_untagged (a manifest whose tag lock is held stays this run);
 * it writes no blob data (it moves links back, and writes the revision of
 * a manifest it put back); with a purged blob go its _layers links and the
 * tag history links naming it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cjson/cJSON.h>

#include "internal.h"

/* Blobs judged per sweep step, candidates per purge step. */
#define SWEEP_BATCH 64
#define PURGE_BATCH 16
/* How deep the conservative reading of an unknown manifest goes. */
#define JSON_DEPTH 64

static int oom(berth_error *err)
{
    return berth_error_set(err, BERTH_ENOMEM, "out of memory");
}

/* ---- a map of strings ---- */

/*
 * Open addressing with linear probing, grown at half full; keys are copied.
 * Values are the caller's; a NULL value counts as absent, which is how an
 * entry is removed (the key stays until the map goes).
 */
typedef struct strmap {
    char **keys;
    void **vals;
    size_t cap; /* a power of two, or 0 */
    size_t used;
} strmap;

#define STRMAP_INIT                                                          \
    {                                                                        \
        NULL, NULL, 0, 0                                                     \
    }

static size_t hash(const char *s)
{
    size_t h = 14695981039346656037u;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static size_t probe(const strmap *m, const char *key)
{
    size_t i = hash(key) & (m->cap - 1);

    while (m->keys[i] && strcmp(m->keys[i], key) != 0)
        i = (i + 1) & (m->cap - 1);
    return i;
}

static void *map_get(const strmap *m, const char *key)
{
    size_t i;

    if (m->cap == 0)
        return NULL;
    i = probe(m, key);
    return m->keys[i] ? m->vals[i] : NULL;
}

static int map_grow(strmap *m, berth_error *err)
{
    strmap bigger = STRMAP_INIT;

    bigger.cap = m->cap ? m->cap * 2 : 64;
    bigger.keys = calloc(bigger.cap, sizeof(*bigger.keys));
    bigger.vals = calloc(bigger.cap, sizeof(*bigger.vals));
    if (!bigger.keys || !bigger.vals) {
        free(bigger.keys);
        free(bigger.vals);
        return oom(err);
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i]) {
            size_t j = probe(&bigger, m->keys[i]);
            bigger.keys[j] = m->keys[i];
            bigger.vals[j] = m->vals[i];
        }
    }
    bigger.used = m->used;
    free(m->keys);
    free(m->vals);
    *m = bigger;
    return 0;
}

/* Set key's value (NULL removes it). */
static int map_put(strmap *m, const char *key, void *val, berth_error *err)
{
    size_t i;
    int rc;

    if (m->cap && (i = probe(m, key), m->keys[i])) {
        m->vals[i] = val;
        return 0;
    }
    if (!val)
        return 0;
    if ((m->used + 1) * 2 > m->cap && (rc = map_grow(m, err)) < 0)
        return rc;
    i = probe(m, key);
    if ((m->keys[i] = strdup(key)) == NULL)
        return oom(err);
    m->vals[i] = val;
    m->used++;
    return 0;
}

#define PRESENT ((void *)1)

static int set_add(strmap *m, const char *key, berth_error *err)
{
    return map_put(m, key, PRESENT, err);
}

static void map_dispose(strmap *m, void (*free_val)(void *))
{
    for (size_t i = 0; i < m->cap; i++) {
        if (free_val && m->keys[i] && m->vals[i])
            free_val(m->vals[i]);
        free(m->keys[i]);
    }
    free(m->keys);
    free(m->vals);
    *m = (strmap)STRMAP_INIT;
}

/* The keys with a value, sorted, appended to out. */
static int map_keys(berth_strlist *out, const strmap *m, berth_error *err)
{
    int rc;

    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i] && m->vals[i] &&
            (rc = berth_strlist_add(out, m->keys[i], strlen(m->keys[i]),
                                    err)) < 0)
            return rc;
    berth_strlist_sort(out);
    return 0;
}

/* ---- what a manifest references ---- */

typedef enum ref_kind {
    REF_BLOB,     /* config, layer or other blob */
    REF_MANIFEST, /* an index child */
    REF_UNKNOWN   /* a digest in a manifest no schema knows: a child when
                     it is a revision of the repository */
} ref_kind;

typedef struct gc_ref {
    ref_kind kind;
    char *digest;
} gc_ref;

typedef struct minfo {
    gc_ref *refs;
    size_t count;
    char *subject; /* NULL without one */
} minfo;

/* A manifest whose data is not there: kept as "looked, nothing". */
static minfo NO_INFO;

static void minfo_free(void *p)
{
    minfo *i = p;

    if (i == &NO_INFO)
        return;
    for (size_t k = 0; k < i->count; k++)
        free(i->refs[k].digest);
    free(i->refs);
    free(i->subject);
    free(i);
}

static int minfo_add(minfo *i, ref_kind kind, const char *digest,
                     berth_error *err)
{
    gc_ref *grown = realloc(i->refs, (i->count + 1) * sizeof(*grown));

    if (!grown)
        return oom(err);
    i->refs = grown;
    if ((grown[i->count].digest = strdup(digest)) == NULL)
        return oom(err);
    grown[i->count++].kind = kind;
    return 0;
}

static int is_digest(const char *s)
{
    berth_digest d;

    return berth_digest_parse(&d, s, strlen(s), NULL) == 0;
}

/* Every digest string anywhere in the JSON but under the top level's
 * subject, once each (schema1's blobSum, Go reads "Digest" as digest). */
static int walk_json(minfo *i, strmap *seen, const cJSON *node, int depth,
                     berth_error *err)
{
    const cJSON *c;
    int rc;

    if (depth > JSON_DEPTH)
        return 0;
    cJSON_ArrayForEach(c, node)
    {
        if (cJSON_IsObject(c) || cJSON_IsArray(c)) {
            if (depth == 0 && c->string && strcmp(c->string, "subject") == 0)
                continue;
            if ((rc = walk_json(i, seen, c, depth + 1, err)) < 0)
                return rc;
        } else if (cJSON_IsString(c) && is_digest(c->valuestring) &&
                   !map_get(seen, c->valuestring)) {
            if ((rc = set_add(seen, c->valuestring, err)) < 0 ||
                (rc = minfo_add(i, REF_UNKNOWN, c->valuestring, err)) < 0)
                return rc;
        }
    }
    return 0;
}

static int conservative_refs(minfo *i, const char *body, size_t len,
                             berth_error *err)
{
    strmap seen = STRMAP_INIT;
    cJSON *doc = cJSON_ParseWithLength(body, len);
    const cJSON *subject, *sd;
    int rc = 0;

    /* not JSON: nothing to keep for it */
    if (!doc || !(cJSON_IsObject(doc) || cJSON_IsArray(doc)))
        goto done;
    if ((rc = walk_json(i, &seen, doc, 0, err)) < 0)
        goto done;
    subject = cJSON_GetObjectItemCaseSensitive(doc, "subject");
    sd = cJSON_GetObjectItemCaseSensitive(subject, "digest");
    if (cJSON_IsString(sd) && (i->subject = strdup(sd->valuestring)) == NULL)
        rc = oom(err);
done:
    cJSON_Delete(doc);
    map_dispose(&seen, NULL);
    return rc;
}

static int schema_refs(minfo *i, const berth_manifest *m, berth_error *err)
{
    const berth_descriptor *s = berth_manifest_subject(m);
    size_t n = berth_manifest_ref_count(m);
    int rc;

    for (size_t k = 0; k < n; k++) {
        const berth_descriptor *d = berth_manifest_ref(m, k);
        ref_kind kind = d->kind == BERTH_REF_MANIFEST ? REF_MANIFEST
                                                      : REF_BLOB;
        if ((rc = minfo_add(i, kind, d->digest.str, err)) < 0)
            return rc;
    }
    if (s && (i->subject = strdup(s->digest.str)) == NULL)
        return oom(err);
    return 0;
}

/* ---- the collector's state ---- */

typedef struct candidate {
    berth_digest digest;
    uint64_t size;
    berth_strlist old;        /* repositories with an old _layers link */
    unsigned char *withdrawn; /* per old: its link is in gc's journal */
    unsigned journal : 1;     /* links were withdrawn (or tried) */
    unsigned condemned : 1;   /* its directory is out of the tree */
    unsigned links_condemned : 1;
    unsigned gone : 1; /* its data went meanwhile (not by this run) */
} candidate;

typedef struct removal {
    berth_gc_removal_kind kind;
    char *repo;
    char *name;
    uint64_t size;
    int64_t started;
} removal;

typedef enum stage {
    STAGE_START,
    STAGE_MARK,
    STAGE_SWEEP,
    STAGE_SETTLED, /* the caller waited: mark again, condemn */
    STAGE_PURGE,
    STAGE_UPLOADS,
    STAGE_OVER,
    STAGE_STOPPED
} stage;

struct berth_gc {
    berth_store *st;
    berth_gc_options o;
    int64_t cutoff_ns;
    berth_gc_report report;
    stage stage;
    size_t at; /* position in the stage's list */
    berth_error stopped;

    berth_strlist repos;
    berth_strlist blobs; /* the sweep's listing */
    strmap marked;       /* digest: keep the blob */
    strmap done;         /* digest: marked with what it references */
    strmap infos;        /* digest -> minfo (NO_INFO: no data) */
    strmap deleted;      /* "repo@digest": deleted in phase 1 */
    strmap history;      /* digest -> berth_strlist of "repo\ntag" */
    candidate *cands;
    size_t ncands, cands_cap;
    removal *removals;
    size_t nremovals, removals_cap;
    berth_strlist warnings;
};

static void warn(berth_gc *gc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void warn(berth_gc *gc, const char *fmt, ...)
{
    char line[2 * BERTH_ERROR_MESSAGE_MAX];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 ||
        berth_strlist_add(&gc->warnings, line, strlen(line), NULL) < 0)
        gc->report.lost++;
}

static void record(berth_gc *gc, berth_gc_removal_kind kind, const char *repo,
                   const char *name, uint64_t size, int64_t started)
{
    removal *r;

    if (gc->nremovals == gc->removals_cap) {
        size_t cap = gc->removals_cap ? gc->removals_cap * 2 : 64;
        removal *grown = realloc(gc->removals, cap * sizeof(*grown));
        if (!grown) {
            gc->report.lost++;
            return;
        }
        gc->removals = grown;
        gc->removals_cap = cap;
    }
    r = &gc->removals[gc->nremovals];
    r->kind = kind;
    r->size = size;
    r->started = started;
    r->name = strdup(name);
    r->repo = repo ? strdup(repo) : NULL;
    if (!r->name || (repo && !r->repo)) {
        free(r->name);
        free(r->repo);
        gc->report.lost++;
        return;
    }
    gc->nremovals++;
}

static int deleted_key(char *out, size_t cap, const char *repo, const char *d,
                       berth_error *err)
{
    int n = snprintf(out, cap, "%s@%s", repo, d);

    if (n < 0 || (size_t)n >= cap)
        return berth_error_set(err, BERTH_ENAME_INVALID,
                               "repository name too long: %s", repo);
    return 0;
}

#define KEY_MAX (BERTH__NAME_MAX + BERTH_DIGEST_STR_MAX + 2)

static int was_deleted(const berth_gc *gc, const char *repo, const char *d)
{
    char key[KEY_MAX];

    return deleted_key(key, sizeof(key), repo, d, NULL) == 0 &&
           map_get(&gc->deleted, key) != NULL;
}

/* ---- reading manifests ---- */

/*
 * The references of manifest d, or NULL when its data is not there (or it
 * is too large to be a manifest). Anything else stops the run: what it
 * references is unknown, so nothing may go.
 */
static int info_of(minfo **out, berth_gc *gc, const char *d, berth_error *err)
{
    berth_buf body = BERTH_BUF_INIT;
    berth_manifest *m = NULL;
    berth_digest dg;
    minfo *i = map_get(&gc->infos, d);
    int rc;

    if (i) {
        *out = i == &NO_INFO ? NULL : i;
        return 0;
    }
    *out = NULL;
    if ((rc = berth_digest_parse(&dg, d, strlen(d), err)) < 0)
        return rc;
    rc = berth_blob_get(&body, gc->st, NULL, &dg, BERTH_MANIFEST_MAX, err);
    if (rc == BERTH_EBLOB_UNKNOWN || rc == BERTH_ETOOLARGE) {
        rc = map_put(&gc->infos, d, &NO_INFO, err);
        goto done;
    }
    if (rc < 0) {
        char why[BERTH_ERROR_MESSAGE_MAX];
        snprintf(why, sizeof(why), "%s", err ? err->message : "");
        rc = berth_error_set(err, rc,
                             "cannot read manifest %s: %s (nothing removed "
                             "after this point; see berth fsck)",
                             d, why);
        goto done;
    }
    if ((i = calloc(1, sizeof(*i))) == NULL) {
        rc = oom(err);
        goto done;
    }
    if (berth_manifest_parse(&m, NULL, body.ptr, body.len, NULL) == 0)
        rc = schema_refs(i, m, err);
    else
        rc = conservative_refs(i, body.ptr, body.len, err);
    if (rc == 0 && (rc = map_put(&gc->infos, d, i, err)) == 0) {
        *out = i;
        i = NULL;
    }
done:
    if (i)
        minfo_free(i);
    berth_manifest_free(m);
    berth_buf_dispose(&body);
    return rc;
}

/* Whether ref is one of the manifests its manifest needs (revs: the
 * repository's revisions, to tell children among unknown references). */
static int is_child(const gc_ref *r, const strmap *revs)
{
    return r->kind == REF_MANIFEST ||
           (r->kind == REF_UNKNOWN && map_get(revs, r->digest));
}

/* Mark d as a manifest of the repository of revs, with everything it
 * needs. */
static int mark_manifest(berth_gc *gc, const char *d, const strmap *revs,
                         berth_error *err)
{
    berth_strlist stack = BERTH_STRLIST_INIT;
    int rc;

    if ((rc = berth_strlist_add(&stack, d, strlen(d), err)) < 0)
        goto done;
    while (stack.count > 0) {
        char *x = stack.items[--stack.count];
        minfo *i;

        rc = set_add(&gc->marked, x, err);
        if (rc == 0 && !map_get(&gc->done, x) &&
            (rc = set_add(&gc->done, x, err)) == 0 &&
            (rc = info_of(&i, gc, x, err)) == 0 && i) {
            for (size_t k = 0; k < i->count && rc == 0; k++) {
                const gc_ref *r = &i->refs[k];
                rc = is_child(r, revs)
                         ? berth_strlist_add(&stack, r->digest,
                                             strlen(r->digest), err)
                         : set_add(&gc->marked, r->digest, err);
            }
        }
        free(x);
        if (rc < 0)
            goto done;
    }
done:
    berth_strlist_dispose(&stack);
    return rc;
}

/* ---- one repository's revisions and tags ---- */

typedef struct rev {
    int ok;
    int64_t mtime_ns;
} rev;

typedef struct scan {
    strmap revs;   /* digest -> index + 1 into revs_of */
    strmap tagged; /* digest: a tag names it */
    rev *revs_of;
    size_t nrevs, revs_cap;
} scan;

#define SCAN_INIT                                                            \
    {                                                                        \
        STRMAP_INIT, STRMAP_INIT, NULL, 0, 0                                 \
    }

static void scan_dispose(scan *s)
{
    map_dispose(&s->revs, NULL);
    map_dispose(&s->tagged, NULL);
    free(s->revs_of);
}

static const rev *rev_of(const scan *s, const char *d)
{
    uintptr_t at = (uintptr_t)map_get(&s->revs, d);

    return at ? &s->revs_of[at - 1] : NULL;
}

static int scan_add_rev(scan *s, const char *d, int ok, int64_t mtime_ns,
                        berth_error *err)
{
    if (s->nrevs == s->revs_cap) {
        size_t cap = s->revs_cap ? s->revs_cap * 2 : 64;
        rev *grown = realloc(s->revs_of, cap * sizeof(*grown));
        if (!grown)
            return oom(err);
        s->revs_of = grown;
        s->revs_cap = cap;
    }
    s->revs_of[s->nrevs].ok = ok;
    s->revs_of[s->nrevs].mtime_ns = mtime_ns;
    s->nrevs++;
    return map_put(&s->revs, d, (void *)(uintptr_t)s->nrevs, err);
}

static int history_add(berth_gc *gc, const char *d, const char *repo,
                       const char *tag, berth_error *err)
{
    berth_strlist *list = map_get(&gc->history, d);
    char entry[BERTH__NAME_MAX + 130];
    int rc, n;

    if (!list) {
        if ((list = calloc(1, sizeof(*list))) == NULL)
            return oom(err);
        if ((rc = map_put(&gc->history, d, list, err)) < 0) {
            free(list);
            return rc;
        }
    }
    n = snprintf(entry, sizeof(entry), "%s\n%s", repo, tag);
    if (n < 0 || (size_t)n >= sizeof(entry))
        return berth_error_set(err, BERTH_ENAME_INVALID,
                               "repository name too long: %s", repo);
    return berth_strlist_add(list, entry, (size_t)n, err);
}

static void history_free(void *p)
{
    berth_strlist_dispose(p);
    free(p);
}

/*
 * One repository's revisions and tags into s, and with with_history the
 * tag history (index links) recorded. A tag whose current link is damaged
 * counts every digest of its history as tagged: it may name any of them.
 * The walk gives each tag's current link before its index.
 */
static int scan_repo(scan *s, berth_gc *gc, const char *repo,
                     int with_history, berth_error *err)
{
    berth_gc_link_iter *it = NULL;
    berth_gc_link l;
    char broken[sizeof(l.tag)] = "";
    int rc;

    if ((rc = berth_gc_link_iter_new(&it, gc->st, repo,
                                     BERTH_GC_LINK_REVISION |
                                         BERTH_GC_LINK_TAG_CURRENT |
                                         BERTH_GC_LINK_TAG_INDEX,
                                     err)) < 0)
        return rc;
    while ((rc = berth_gc_link_iter_next(&l, it, err)) == 0) {
        if (l.kind == BERTH_GC_LINK_REVISION) {
            rc = scan_add_rev(s, l.digest.str, l.state == BERTH_GC_LINK_OK,
                              l.mtime_ns, err);
            /* damaged: keep what it names too */
            if (rc == 0 && l.target.algo != BERTH_DIGEST_NONE &&
                strcmp(l.target.str, l.digest.str) != 0)
                rc = set_add(&gc->marked, l.target.str, err);
        } else if (l.kind == BERTH_GC_LINK_TAG_CURRENT) {
            if (l.state == BERTH_GC_LINK_OK)
                rc = set_add(&s->tagged, l.digest.str, err);
            else
                snprintf(broken, sizeof(broken), "%s", l.tag);
        } else if (l.kind == BERTH_GC_LINK_TAG_INDEX) {
            if (strcmp(broken, l.tag) == 0)
                rc = set_add(&s->tagged, l.digest.str, err);
            if (rc == 0 && with_history)
                rc = history_add(gc, l.digest.str, repo, l.tag, err);
        }
        if (rc < 0)
            break;
    }
    berth_gc_link_iter_free(it);
    return rc == BERTH_EITEROVER ? 0 : rc;
}

/* The manifests d needs (index children), appended to out. */
static int children(berth_strlist *out, berth_gc *gc, const char *d,
                    const strmap *revs, berth_error *err)
{
    minfo *i;
    int rc;

    if ((rc = info_of(&i, gc, d, err)) < 0 || !i)
        return rc;
    for (size_t k = 0; k < i->count; k++)
        if (is_child(&i->refs[k], revs) &&
            (rc = berth_strlist_add(out, i->refs[k].digest,
                                    strlen(i->refs[k].digest), err)) < 0)
            return rc;
    return 0;
}

static int parse(berth_digest *out, const char *d, berth_error *err)
{
    return berth_digest_parse(out, d, strlen(d), err);
}

/* ---- phase 1: mark ---- */

/* Whether untagged revision d of repo is still untagged and old, and then
 * deleted, only while it has no tag (a tag set now keeps it). */
static int delete_if_untagged(berth_gc *gc, const char *repo, const char *d)
{
    berth_strlist tags = BERTH_STRLIST_INIT, none = BERTH_STRLIST_INIT;
    berth_gc_link l;
    berth_digest dg;
    berth_error e;
    int rc, gone = 0;

    if (parse(&dg, d, &e) < 0)
        goto done;
    rc = berth_gc_link_stat(&l, gc->st, repo, BERTH_GC_LINK_REVISION, &dg,
                            NULL, &e);
    /* gone meanwhile (deleted), or put again: a push is at it */
    if (rc == BERTH_ENOTFOUND || (rc == 0 && l.mtime_ns >= gc->cutoff_ns))
        goto done;
    if (rc == 0 &&
        (rc = berth_tag_lookup(&tags, gc->st, repo, &dg, &e)) == 0 &&
        tags.count > 0)
        goto done;
    if (rc < 0) {
        warn(gc, "%s@%s: kept: %s", repo, d, e.message);
        goto done;
    }
    rc = berth_manifest_delete_if(gc->st, repo, &dg, &none, &e);
    gone = rc == 0;
    /* a tag written or a tag lock held meanwhile: a push is at it */
    if (rc < 0 && rc != BERTH_ETAG_CHANGED && rc != BERTH_EBUSY)
        warn(gc, "%s@%s: %s", repo, d, e.message);
done:
    berth_strlist_dispose(&tags);
    berth_strlist_dispose(&none);
    return gone;
}

/*
 * With delete_untagged: the roots of repo are what its tags, its young or
 * damaged revisions need, to a fixpoint over index children and the
 * referrers of every kept manifest; the other revisions are deleted (or,
 * with dry_run, counted) and leave s. roots gets what is kept and what
 * stayed after all (tagged or put again meanwhile).
 */
static int delete_untagged(berth_strlist *roots, berth_gc *gc,
                           const char *repo, scan *s, berth_error *err)
{
    strmap referrers = STRMAP_INIT, kept = STRMAP_INIT;
    berth_strlist queue = BERTH_STRLIST_INIT, revs = BERTH_STRLIST_INIT;
    char key[KEY_MAX];
    int rc;

    if ((rc = map_keys(&queue, &s->tagged, err)) < 0 ||
        (rc = map_keys(&revs, &s->revs, err)) < 0)
        goto done;
    for (size_t k = 0; k < revs.count; k++) {
        const char *d = revs.items[k];
        const rev *r = rev_of(s, d);
        minfo *i;
        if ((!r->ok || r->mtime_ns >= gc->cutoff_ns) &&
            (rc = berth_strlist_add(&queue, d, strlen(d), err)) < 0)
            goto done;
        if ((rc = info_of(&i, gc, d, err)) < 0)
            goto done;
        if (i && i->subject) {
            berth_strlist *list = map_get(&referrers, i->subject);
            if (!list) {
                if ((list = calloc(1, sizeof(*list))) == NULL) {
                    rc = oom(err);
                    goto done;
                }
                if ((rc = map_put(&referrers, i->subject, list, err)) < 0) {
                    free(list);
                    goto done;
                }
            }
            if ((rc = berth_strlist_add(list, d, strlen(d), err)) < 0)
                goto done;
        }
    }
    while (queue.count > 0) {
        char *d = queue.items[--queue.count];
        const berth_strlist *refs = map_get(&referrers, d);
        rc = 0;
        if (!map_get(&kept, d) && (rc = set_add(&kept, d, err)) == 0 &&
            (rc = children(&queue, gc, d, &s->revs, err)) == 0 && refs)
            for (size_t k = 0; k < refs->count && rc == 0; k++)
                rc = berth_strlist_add(&queue, refs->items[k],
                                       strlen(refs->items[k]), err);
        free(d);
        if (rc < 0)
            goto done;
    }
    for (size_t k = 0; k < revs.count; k++) {
        const char *d = revs.items[k];
        if (map_get(&kept, d) ||
            !(gc->o.dry_run || delete_if_untagged(gc, repo, d)))
            continue;
        if ((rc = deleted_key(key, sizeof(key), repo, d, err)) < 0 ||
            (rc = set_add(&gc->deleted, key, err)) < 0 ||
            (rc = map_put(&s->revs, d, NULL, err)) < 0)
            goto done;
        gc->report.manifests_removed++;
    }
    if ((rc = map_keys(roots, &kept, err)) == 0)
        rc = map_keys(roots, &s->revs, err);
done:
    map_dispose(&referrers, history_free);
    map_dispose(&kept, NULL);
    berth_strlist_dispose(&queue);
    berth_strlist_dispose(&revs);
    return rc;
}

static int mark_repo(berth_gc *gc, const char *repo, berth_error *err)
{
    scan s = SCAN_INIT;
    berth_strlist roots = BERTH_STRLIST_INIT;
    int rc;

    if ((rc = scan_repo(&s, gc, repo, 1, err)) < 0)
        goto done;
    if (gc->o.delete_untagged)
        rc = delete_untagged(&roots, gc, repo, &s, err);
    else if ((rc = map_keys(&roots, &s.tagged, err)) == 0)
        rc = map_keys(&roots, &s.revs, err);
    for (size_t k = 0; k < roots.count && rc == 0; k++)
        if (!was_deleted(gc, repo, roots.items[k]))
            rc = mark_manifest(gc, roots.items[k], &s.revs, err);
done:
    berth_strlist_dispose(&roots);
    scan_dispose(&s);
    return rc;
}

/* ---- phase 2: sweep ---- */

typedef enum verdict {
    GOES = 0,
    KEEP_YOUNG,    /* data, or (condemned) data back in the tree */
    KEEP_LINKED,   /* a young link, or (condemned) any link */
    KEEP_MANIFEST, /* a revision of some repository */
    KEEP_MARKED,   /* marked by the second mark */
    KEEP_GONE,     /* its data went meanwhile */
    KEEP_UNSURE    /* something could not be looked at */
} verdict;

/*
 * Why d must stay, or GOES, with its data's stat in *info (*have when
 * there is one) and, when old is not NULL, the repositories with an old
 * _layers link to it. condemned: d's directory is out of the tree and
 * every link is a new one (the old ones were condemned); data back in the
 * tree was put back by a push or a read.
 */
/* What could not be looked at stays, and the report says why. */
static int unsure(verdict *out, berth_gc *gc, const berth_digest *d,
                  const berth_error *e)
{
    warn(gc, "%s: kept: %s", d->str, e->message);
    *out = KEEP_UNSURE;
    return 0;
}

static int must_keep(verdict *out, berth_stat_info *info, int *have,
                     berth_strlist *old, berth_gc *gc, const berth_digest *d,
                     int condemned, berth_error *err)
{
    berth_gc_link l;
    berth_error e;
    int rc;

    rc = berth_gc_blob_stat(info, gc->st, d, &e);
    *have = rc == 0;
    *out = GOES;
    if (condemned) {
        if (*have)
            return *out = KEEP_YOUNG, 0;
        if (rc != BERTH_EBLOB_UNKNOWN)
            return unsure(out, gc, d, &e);
    } else if (!*have) {
        if (rc != BERTH_EBLOB_UNKNOWN)
            return unsure(out, gc, d, &e);
        return *out = KEEP_GONE, 0;
    } else if (info->mtime_ns >= gc->cutoff_ns) {
        return *out = KEEP_YOUNG, 0;
    }
    for (size_t k = 0; k < gc->repos.count; k++) {
        const char *repo = gc->repos.items[k];
        rc = berth_gc_link_stat(&l, gc->st, repo, BERTH_GC_LINK_LAYER, d,
                                NULL, &e);
        if (rc == 0) {
            if (condemned || l.mtime_ns >= gc->cutoff_ns)
                return *out = KEEP_LINKED, 0;
            if (old &&
                (rc = berth_strlist_add(old, repo, strlen(repo), err)) < 0)
                return rc;
        } else if (rc != BERTH_ENOTFOUND) {
            return unsure(out, gc, d, &e);
        }
        rc = berth_gc_link_stat(&l, gc->st, repo, BERTH_GC_LINK_REVISION, d,
                                NULL, &e);
        if (rc == 0 && !was_deleted(gc, repo, d->str))
            return *out = KEEP_MANIFEST, 0;
        if (rc < 0 && rc != BERTH_ENOTFOUND)
            return unsure(out, gc, d, &e);
    }
    return 0;
}

static void keep_young(berth_gc *gc, uint64_t size)
{
    gc->report.blobs_young++;
    gc->report.blobs_young_bytes += size;
}

static int add_candidate(berth_gc *gc, const berth_digest *d, uint64_t size,
                         berth_strlist *old, berth_error *err)
{
    candidate *c;

    if (gc->ncands == gc->cands_cap) {
        size_t cap = gc->cands_cap ? gc->cands_cap * 2 : 64;
        candidate *grown = realloc(gc->cands, cap * sizeof(*grown));
        if (!grown)
            return oom(err);
        gc->cands = grown;
        gc->cands_cap = cap;
    }
    c = &gc->cands[gc->ncands++];
    memset(c, 0, sizeof(*c));
    c->digest = *d;
    c->size = size;
    c->old = *old;
    *old = (berth_strlist)BERTH_STRLIST_INIT;
    return 0;
}

/* Every blob of the store, as digest strings. */
static int blob_names(berth_strlist *out, berth_store *st, berth_error *err)
{
    berth_blob_iter *it = NULL;
    berth_digest d;
    int rc;

    if ((rc = berth_blob_iter_new(&it, st, NULL, err)) < 0)
        return rc;
    while ((rc = berth_blob_iter_next(&d, it, err)) == 0)
        if ((rc = berth_strlist_add(out, d.str, strlen(d.str), err)) < 0)
            break;
    berth_blob_iter_free(it);
    return rc == BERTH_EITEROVER ? 0 : rc;
}

static int sweep_blob(berth_gc *gc, const char *name, berth_error *err)
{
    berth_strlist old = BERTH_STRLIST_INIT;
    berth_stat_info info;
    berth_digest d;
    verdict why;
    int rc, have;

    if ((rc = parse(&d, name, err)) < 0)
        return rc;
    if (map_get(&gc->marked, name)) {
        gc->report.blobs_kept++;
        if (berth_gc_blob_stat(&info, gc->st, &d, NULL) == 0)
            gc->report.blobs_kept_bytes += info.size;
        return 0;
    }
    if ((rc = must_keep(&why, &info, &have, &old, gc, &d, 0, err)) == 0) {
        if (why != GOES) {
            if (have)
                keep_young(gc, info.size);
        } else {
            rc = add_candidate(gc, &d, info.size, &old, err);
        }
    }
    berth_strlist_dispose(&old);
    return rc;
}

/* Withdraw the candidates' old links: a manifest put or a pull that needs
 * one puts it back (so the last look counts it), the others stay out. */
static int withdraw(berth_gc *gc, berth_error *err)
{
    for (size_t k = 0; k < gc->ncands; k++) {
        candidate *c = &gc->cands[k];
        c->withdrawn = calloc(c->old.count + 1, 1);
        if (!c->withdrawn)
            return oom(err);
        c->journal = 1;
        for (size_t i = 0; i < c->old.count; i++) {
            berth_error e;
            int rc = berth_blob_link_withdraw(gc->st, c->old.items[i],
                                              &c->digest, &e);
            c->withdrawn[i] = rc == 0;
            /* BLOB_UNKNOWN: a read or a delete took it meanwhile */
            if (rc < 0 && rc != BERTH_EBLOB_UNKNOWN)
                warn(gc, "%s: %s: kept: %s", c->old.items[i], c->digest.str,
                     e.message);
        }
    }
    return 0;
}

/* ---- putting back ---- */

/* A condemned candidate that stays goes back into the tree; a failure
 * leaves it for the next run (berth_gc_reprieve_all), and says so. */
static void reprieve(berth_gc *gc, candidate *c)
{
    berth_error e;
    int rc;

    if (!c->condemned)
        return;
    c->condemned = 0;
    rc = berth_blob_reprieve(gc->st, &c->digest, &e);
    if (rc < 0 && rc != BERTH_EBLOB_UNKNOWN)
        warn(gc, "%s: cannot put back: %s", c->digest.str, e.message);
}

/* A candidate that stays gets its withdrawn links back (condemned: from
 * there); one that cannot be put back is left for the next run
 * (berth_gc_restore_links), and said. A gone one loses them: they would
 * dangle. */
static void relink(berth_gc *gc, candidate *c)
{
    berth_error e;
    int all = 1, rc;

    if (!c->journal)
        return;
    for (size_t i = 0; !c->gone && i < c->old.count; i++) {
        if (!c->withdrawn[i])
            continue;
        rc = c->links_condemned
                 ? berth_blob_link_reprieve(gc->st, c->old.items[i],
                                            &c->digest, &e)
                 : berth_blob_link_restore(gc->st, c->old.items[i],
                                           &c->digest, &e);
        /* BLOB_UNKNOWN: a read put it back */
        if (rc < 0 && rc != BERTH_EBLOB_UNKNOWN) {
            all = 0;
            warn(gc, "%s: %s: cannot put the link back: %s", c->old.items[i],
                 c->digest.str, e.message);
        }
    }
    if (all) /* what is left is empty */
        berth_blob_links_purge(gc->st, &c->digest, NULL);
    c->journal = 0;
}

static void spare(berth_gc *gc, candidate *c, verdict why)
{
    reprieve(gc, c);
    relink(gc, c);
    if (why != KEEP_GONE)
        keep_young(gc, c->size);
}

int berth_gc_manifest_restore(berth_store *st, const char *repo,
                              const berth_digest *d, berth_error *err)
{
    berth_manifest_put_options opts = BERTH_MANIFEST_PUT_OPTIONS_INIT;
    berth_buf body = BERTH_BUF_INIT;
    berth_manifest *m = NULL;
    int rc;

    if ((rc = berth_blob_get(&body, st, NULL, d, BERTH_MANIFEST_MAX, err)) <
        0)
        goto done;
    rc = berth__manifest_parse_stored(&m, body.ptr, body.len, err);
    if (rc == BERTH_EMANIFEST_INVALID)
        rc = berth_manifest_new(&m, "application/octet-stream", body.ptr,
                                body.len, err);
    if (rc < 0)
        goto done;
    opts.expected = d;
    opts.flags = BERTH_MANIFEST_SKIP_VERIFY;
    rc = berth_manifest_put(st, repo, m, &opts, err);
done:
    berth_manifest_free(m);
    berth_buf_dispose(&body);
    return rc;
}

/* Put back a manifest phase 1 deleted that a tag or a new manifest needs,
 * with the manifests it needs, into repo and its scan s. */
static int restore(berth_gc *gc, const char *repo, const char *d, scan *s,
                   berth_error *err)
{
    berth_strlist stack = BERTH_STRLIST_INIT;
    char key[KEY_MAX];
    int rc;

    if ((rc = berth_strlist_add(&stack, d, strlen(d), err)) < 0)
        goto done;
    while (stack.count > 0) {
        char *x = stack.items[--stack.count];
        berth_digest dg;
        berth_error e;
        rc = 0;
        if (was_deleted(gc, repo, x) && (rc = parse(&dg, x, err)) == 0) {
            if (berth_gc_manifest_restore(gc->st, repo, &dg, &e) < 0) {
                warn(gc, "%s@%s: cannot put back: %s", repo, x, e.message);
            } else if ((rc = deleted_key(key, sizeof(key), repo, x, err)) ==
                           0 &&
                       (rc = map_put(&gc->deleted, key, NULL, err)) == 0 &&
                       (rc = scan_add_rev(s, x, 1, gc->o.now_ns, err)) == 0) {
                gc->report.manifests_removed--;
                gc->report.manifests_restored++;
                rc = children(&stack, gc, x, &s->revs, err);
            }
        }
        free(x);
        if (rc < 0)
            goto done;
    }
done:
    berth_strlist_dispose(&stack);
    return rc;
}

/* ---- phase 3: purge ---- */

/* The manifests and tags that arrived while the links were out: the
 * deleted ones they need come back, and what they need is marked. */
static int mark_again(berth_gc *gc, const char *repo, berth_error *err)
{
    scan s = SCAN_INIT;
    berth_strlist tagged = BERTH_STRLIST_INIT, revs = BERTH_STRLIST_INIT;
    berth_strlist kids = BERTH_STRLIST_INIT;
    int rc;

    if ((rc = scan_repo(&s, gc, repo, 0, err)) < 0 ||
        (rc = map_keys(&tagged, &s.tagged, err)) < 0 ||
        (rc = map_keys(&revs, &s.revs, err)) < 0)
        goto done;
    for (size_t k = 0; k < tagged.count; k++)
        if (!rev_of(&s, tagged.items[k]) &&
            (rc = restore(gc, repo, tagged.items[k], &s, err)) < 0)
            goto done;
    for (size_t k = 0; k < revs.count; k++) {
        if (map_get(&gc->done, revs.items[k]))
            continue;
        berth_strlist_dispose(&kids);
        if ((rc = children(&kids, gc, revs.items[k], &s.revs, err)) < 0)
            goto done;
        for (size_t j = 0; j < kids.count; j++)
            if (!rev_of(&s, kids.items[j]) &&
                (rc = restore(gc, repo, kids.items[j], &s, err)) < 0)
                goto done;
    }
    berth_strlist_dispose(&revs);
    if ((rc = map_keys(&revs, &s.revs, err)) < 0)
        goto done;
    for (size_t k = 0; k < tagged.count && rc == 0; k++)
        rc = mark_manifest(gc, tagged.items[k], &s.revs, err);
    for (size_t k = 0; k < revs.count && rc == 0; k++)
        rc = mark_manifest(gc, revs.items[k], &s.revs, err);
done:
    berth_strlist_dispose(&tagged);
    berth_strlist_dispose(&revs);
    berth_strlist_dispose(&kids);
    scan_dispose(&s);
    return rc;
}

/*
 * After the settle: mark again; the candidates marked now get their links
 * back, the others are condemned. A push that links one from now on finds
 * its data gone and puts it back (blob.c), so no link the last look misses
 * belongs to a push that succeeded; the repositories are listed again
 * after condemning for the same reason.
 */
static int settled(berth_gc *gc, berth_error *err)
{
    int rc;

    if ((rc = berth_gc_repo_list(&gc->repos, gc->st, err)) < 0)
        return rc;
    for (size_t k = 0; k < gc->repos.count; k++)
        if ((rc = mark_again(gc, gc->repos.items[k], err)) < 0)
            return rc;
    for (size_t k = 0; k < gc->ncands; k++) {
        candidate *c = &gc->cands[k];
        berth_error e;
        if (map_get(&gc->marked, c->digest.str)) {
            relink(gc, c);
            continue;
        }
        rc = berth_blob_condemn(gc->st, &c->digest, &e);
        c->condemned = rc == 0;
        c->gone = rc == BERTH_EBLOB_UNKNOWN;
        if (rc < 0 && !c->gone)
            warn(gc, "%s: %s", c->digest.str, e.message);
    }
    return berth_gc_repo_list(&gc->repos, gc->st, err);
}

static void remove_history(berth_gc *gc, const berth_digest *d)
{
    const berth_strlist *list = map_get(&gc->history, d->str);

    for (size_t k = 0; list && k < list->count; k++) {
        char repo[BERTH__NAME_MAX + 130];
        char *tag;
        snprintf(repo, sizeof(repo), "%s", list->items[k]);
        if ((tag = strchr(repo, '\n')) == NULL)
            continue;
        *tag++ = '\0';
        if (berth_gc_link_remove(gc->st, repo, BERTH_GC_LINK_TAG_INDEX, d,
                                 tag, NULL) == 0)
            gc->report.links_removed++;
    }
}

/* The last look at a condemned candidate, and its purge. */
static void purge(berth_gc *gc, candidate *c)
{
    berth_stat_info info;
    berth_error e;
    verdict why = GOES;
    int rc, have;

    if (map_get(&gc->marked, c->digest.str)) {
        why = KEEP_MARKED;
    } else if (!c->condemned) {
        why = c->gone ? KEEP_GONE : KEEP_UNSURE;
    } else {
        /* no read puts a withdrawn link back from now on; BLOB_UNKNOWN:
         * none is left out (reads put them back: this look sees them) */
        rc = berth_blob_links_condemn(gc->st, &c->digest, &e);
        c->links_condemned = rc == 0;
        if (rc < 0 && rc != BERTH_EBLOB_UNKNOWN) {
            why = KEEP_UNSURE;
            warn(gc, "%s: %s", c->digest.str, e.message);
        } else if (must_keep(&why, &info, &have, NULL, gc, &c->digest, 1,
                             NULL) < 0) {
            why = KEEP_UNSURE;
        }
    }
    if (why != GOES) {
        spare(gc, c, why);
        return;
    }
    rc = berth_blob_purge_condemned(gc->st, &c->digest, &e);
    if (rc == 0) {
        c->condemned = 0;
        gc->report.blobs_removed++;
        gc->report.blobs_removed_bytes += c->size;
        record(gc, BERTH_GC_REMOVED_BLOB, NULL, c->digest.str, c->size, 0);
        for (size_t i = 0; i < c->old.count; i++)
            gc->report.links_removed += c->withdrawn[i];
        c->journal = 0;
        /* one left (a failure) is dropped by the next run */
        berth_blob_links_purge(gc->st, &c->digest, NULL);
        remove_history(gc, &c->digest);
    } else if (rc == BERTH_EBLOB_UNKNOWN) {
        c->condemned = 0; /* a push took the copy back */
        spare(gc, c, KEEP_LINKED);
    } else {
        spare(gc, c, KEEP_UNSURE);
        warn(gc, "%s: %s", c->digest.str, e.message);
    }
}

/* ---- phase 4: upload sessions ---- */

static void purge_uploads(berth_gc *gc, const char *repo)
{
    berth_gc_upload_iter *it = NULL;
    berth_gc_upload u;
    berth_error e;
    int rc;

    if ((rc = berth_gc_upload_iter_new(&it, gc->st, repo, &e)) == 0) {
        while ((rc = berth_gc_upload_iter_next(&u, it, &e)) == 0) {
            gc->report.uploads_total++;
            if (u.started * INT64_C(1000000000) >=
                gc->o.now_ns - gc->o.upload_grace_ns)
                continue;
            rc = gc->o.dry_run
                     ? 0
                     : berth_gc_upload_purge(gc->st, repo, u.id, &e);
            if (rc == 0) {
                gc->report.uploads_removed++;
                gc->report.uploads_removed_bytes += u.size;
                record(gc, BERTH_GC_REMOVED_UPLOAD, repo, u.id, u.size,
                       u.started);
            } else if (rc == BERTH_EBUSY) {
                gc->report.uploads_busy++;
            } else if (rc != BERTH_EBLOB_UPLOAD_UNKNOWN) {
                warn(gc, "%s: upload %s: %s", repo, u.id, e.message);
            }
        }
    }
    if (rc != BERTH_EITEROVER)
        warn(gc, "%s: uploads: %s", repo, e.message);
    berth_gc_upload_iter_free(it);
}

/* The manifests deleted, sorted by repository then digest. */
static int by_repo_then_name(const void *a, const void *b)
{
    const removal *x = a, *y = b;
    int c = strcmp(x->repo, y->repo);

    return c ? c : strcmp(x->name, y->name);
}

static void record_deleted(berth_gc *gc)
{
    size_t first = gc->nremovals;

    for (size_t i = 0; i < gc->deleted.cap; i++) {
        char repo[KEY_MAX], *at;
        if (!gc->deleted.keys[i] || !gc->deleted.vals[i])
            continue;
        snprintf(repo, sizeof(repo), "%s", gc->deleted.keys[i]);
        at = strrchr(repo, '@');
        *at++ = '\0';
        record(gc, BERTH_GC_REMOVED_MANIFEST, repo, at, 0, 0);
    }
    if (gc->nremovals > first)
        qsort(gc->removals + first, gc->nremovals - first, sizeof(removal),
              by_repo_then_name);
}

/* ---- the run ---- */

static int64_t clock_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int berth_gc_new(berth_gc **out, berth_store *st,
                 const berth_gc_options *opts, berth_error *err)
{
    berth_gc *gc;

    *out = NULL;
    if (!opts || opts->version != BERTH_GC_OPTIONS_VERSION)
        return berth_error_set(err, BERTH_EINVAL,
                               "unknown gc options version %u",
                               opts ? opts->version : 0);
    if (opts->grace_ns < 0 || opts->upload_grace_ns < 0)
        return berth_error_set(err, BERTH_EINVAL,
                               "grace periods must not be negative");
    if ((gc = calloc(1, sizeof(*gc))) == NULL)
        return oom(err);
    gc->st = berth__store_ref(st);
    gc->o = *opts;
    if (gc->o.now_ns == 0)
        gc->o.now_ns = clock_now_ns();
    gc->cutoff_ns = gc->o.now_ns - gc->o.grace_ns;
    *out = gc;
    return 0;
}

/* What the run holds out of the tree goes back; the run is over. */
static int stop(berth_gc *gc, int rc, berth_error *err)
{
    for (size_t k = 0; k < gc->ncands; k++) {
        reprieve(gc, &gc->cands[k]);
        relink(gc, &gc->cands[k]);
    }
    gc->stage = STAGE_STOPPED;
    if (err)
        gc->stopped = *err;
    gc->stopped.code = rc;
    return rc;
}

static int over(berth_gc_progress *out, berth_gc_phase phase, size_t done,
                size_t total)
{
    out->phase = phase;
    out->done = done;
    out->total = total;
    return 0;
}

/* The stage after the sweep: the settle, or straight to the uploads when
 * nothing is to go (or dry_run: it is reported). */
static int end_sweep(berth_gc *gc, berth_error *err)
{
    int rc;

    if (gc->o.dry_run) {
        for (size_t k = 0; k < gc->ncands; k++) {
            candidate *c = &gc->cands[k];
            gc->report.blobs_removed++;
            gc->report.blobs_removed_bytes += c->size;
            record(gc, BERTH_GC_REMOVED_BLOB, NULL, c->digest.str, c->size,
                   0);
        }
    } else if (gc->ncands > 0 || gc->deleted.used > 0) {
        if ((rc = withdraw(gc, err)) < 0)
            return rc;
        gc->stage = STAGE_SETTLED;
        return 0;
    }
    gc->stage = STAGE_UPLOADS;
    gc->at = 0;
    return 0;
}

static int step(berth_gc_progress *out, berth_gc *gc, berth_error *err)
{
    int rc;
    uint64_t n;

    switch (gc->stage) {
    case STAGE_START:
        if (!gc->o.dry_run) {
            /* what a killed run left is judged again, from the start */
            int count;
            if ((rc = berth_gc_reprieve_all(&count, gc->st, err)) < 0)
                return rc;
            gc->report.blobs_reprieved = (uint64_t)count;
            if ((rc = berth_gc_restore_links(&count, gc->st, err)) < 0)
                return rc;
            gc->report.links_restored = (uint64_t)count;
        }
        if ((rc = berth_gc_repo_list(&gc->repos, gc->st, err)) < 0)
            return rc;
        gc->stage = STAGE_MARK;
        gc->at = 0;
        return over(out, BERTH_GC_PHASE_MARK, 0, gc->repos.count);
    case STAGE_MARK:
        if (gc->at < gc->repos.count) {
            if ((rc = mark_repo(gc, gc->repos.items[gc->at], err)) < 0)
                return rc;
            gc->at++;
            return over(out, BERTH_GC_PHASE_MARK, gc->at, gc->repos.count);
        }
        if ((rc = blob_names(&gc->blobs, gc->st, err)) < 0 ||
            (rc = berth_gc_repo_list(&gc->repos, gc->st, err)) < 0)
            return rc;
        gc->report.blobs_total = gc->blobs.count;
        gc->stage = STAGE_SWEEP;
        gc->at = 0;
        return over(out, BERTH_GC_PHASE_SWEEP, 0, gc->blobs.count);
    case STAGE_SWEEP:
        for (n = 0; n < SWEEP_BATCH && gc->at < gc->blobs.count; n++)
            if ((rc = sweep_blob(gc, gc->blobs.items[gc->at++], err)) < 0)
                return rc;
        if (gc->at < gc->blobs.count)
            return over(out, BERTH_GC_PHASE_SWEEP, gc->at, gc->blobs.count);
        berth_strlist_dispose(&gc->blobs);
        if ((rc = end_sweep(gc, err)) < 0)
            return rc;
        if (gc->stage == STAGE_SETTLED)
            return over(out, BERTH_GC_PHASE_SETTLE, 0, 0);
        return over(out, BERTH_GC_PHASE_UPLOADS, 0, gc->repos.count);
    case STAGE_SETTLED:
        if ((rc = settled(gc, err)) < 0)
            return rc;
        gc->stage = STAGE_PURGE;
        gc->at = 0;
        return over(out, BERTH_GC_PHASE_PURGE, 0, gc->ncands);
    case STAGE_PURGE:
        for (n = 0; n < PURGE_BATCH && gc->at < gc->ncands; n++)
            purge(gc, &gc->cands[gc->at++]);
        if (gc->at == gc->ncands) {
            gc->stage = STAGE_UPLOADS;
            gc->at = 0;
        }
        return over(out, BERTH_GC_PHASE_PURGE, gc->at, gc->ncands);
    case STAGE_UPLOADS:
        if (gc->at < gc->repos.count) {
            purge_uploads(gc, gc->repos.items[gc->at++]);
            return over(out, BERTH_GC_PHASE_UPLOADS, gc->at, gc->repos.count);
        }
        record_deleted(gc);
        gc->stage = STAGE_OVER;
        return BERTH_EITEROVER;
    case STAGE_OVER:
        return BERTH_EITEROVER;
    case STAGE_STOPPED:
        break;
    }
    if (err)
        *err = gc->stopped;
    return gc->stopped.code;
}

int berth_gc_step(berth_gc_progress *out, berth_gc *gc, berth_error *err)
{
    int rc;

    memset(out, 0, sizeof(*out));
    if (gc->stage == STAGE_STOPPED || gc->stage == STAGE_OVER)
        return step(out, gc, err);
    rc = step(out, gc, err);
    if (rc < 0 && rc != BERTH_EITEROVER)
        return stop(gc, rc, err);
    return rc;
}

const berth_gc_report *berth_gc_report_of(const berth_gc *gc)
{
    return &gc->report;
}

int berth_gc_removed(berth_gc_removal *out, const berth_gc *gc, size_t i)
{
    const removal *r;

    if (i >= gc->nremovals)
        return BERTH_EITEROVER;
    r = &gc->removals[i];
    out->kind = r->kind;
    out->repo = r->repo;
    out->name = r->name;
    out->size = r->size;
    out->started = r->started;
    return 0;
}

const char *berth_gc_warning(const berth_gc *gc, size_t i)
{
    return i < gc->warnings.count ? gc->warnings.items[i] : NULL;
}

void berth_gc_free(berth_gc *gc)
{
    if (!gc)
        return;
    if (gc->stage != STAGE_OVER && gc->stage != STAGE_STOPPED)
        stop(gc, BERTH_EINVAL, NULL);
    for (size_t k = 0; k < gc->ncands; k++) {
        berth_strlist_dispose(&gc->cands[k].old);
        free(gc->cands[k].withdrawn);
    }
    free(gc->cands);
    for (size_t k = 0; k < gc->nremovals; k++) {
        free(gc->removals[k].repo);
        free(gc->removals[k].name);
    }
    free(gc->removals);
    berth_strlist_dispose(&gc->repos);
    berth_strlist_dispose(&gc->blobs);
    berth_strlist_dispose(&gc->warnings);
    map_dispose(&gc->marked, NULL);
    map_dispose(&gc->done, NULL);
    map_dispose(&gc->infos, minfo_free);
    map_dispose(&gc->deleted, NULL);
    map_dispose(&gc->history, history_free);
    berth__store_unref(gc->st);
    free(gc);
}
