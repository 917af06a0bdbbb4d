/*
 * The S3 driver (berth/sys/driver.h): the layout's paths as keys of one
 * bucket under a root prefix, as CNCF Distribution's s3 driver keys them
 * (rootdirectory + path), so a bucket either registry wrote the other
 * serves. A directory is a key prefix: it exists while a key is under it.
 *
 * Work in progress (issue 15): a reader does not outlive a replace of its
 * file, and a key under another key (a file under a file) is not refused.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "berth/s3.h"
#include "internal.h"
#include "s3.h"

/* How long a lease lives without its holder renewing it. */
#define LEASE_SECONDS 60
/* How long a presigned URL of the hand-off stays valid (Distribution: 20
 * minutes). */
#define SEND_EXPIRES 1200

typedef struct s3_driver {
    berth_driver base;
    s3_client *client;
    char *root; /* key prefix without '/' at either end; "" for none */
    /* the driver's own, and one per reader, writer and lease, which may
     * outlive it (driver.h: freed in either order) */
    atomic_int refs;
} s3_driver;

static s3_driver *driver_ref(s3_driver *sd)
{
    atomic_fetch_add(&sd->refs, 1);
    return sd;
}

static void driver_unref(s3_driver *sd)
{
    if (!sd || atomic_fetch_sub(&sd->refs, 1) != 1)
        return;
    s3_client_free(sd->client);
    free(sd->root);
    free(sd);
}

static int oom(berth_error *err)
{
    return berth_error_set(err, BERTH_ENOMEM, "out of memory");
}

/* The key of a driver path ("/docker/..."): the root, then the path. */
static int key_of(berth_buf *out, const s3_driver *sd, const char *path,
                  berth_error *err)
{
    berth_buf_clear(out);
    if (sd->root[0])
        return berth_buf_printf(out, err, "%s%s", sd->root,
                                strcmp(path, "/") == 0 ? "" : path);
    return berth_buf_printf(out, err, "%s", path + 1);
}

/* The prefix of a directory's keys: its key and '/' ("" for the root of
 * a bucket without a root prefix). */
static int prefix_of(berth_buf *out, const s3_driver *sd, const char *path,
                     berth_error *err)
{
    int rc;

    if ((rc = key_of(out, sd, path, err)) < 0)
        return rc;
    return out->len ? berth_buf_put(out, "/", 1, err) : 0;
}

static int not_found(berth_error *err, const char *path)
{
    return berth_error_set(err, BERTH_ENOTFOUND, "path not found: %s", path);
}

static int request(s3_driver *sd, s3_response *resp, const char *method,
                   const char *key, berth_buf *out, size_t max,
                   berth_error *err)
{
    s3_request req;

    memset(&req, 0, sizeof(req));
    req.method = method;
    req.key = key;
    req.out = out;
    req.max = max;
    return s3_send(sd->client, &req, resp, err);
}

/* What a status other than the expected one means. */
static int answer(berth_error *err, const s3_response *resp, const char *what,
                  const char *key)
{
    if (resp->status == 404)
        return s3_fail(err, BERTH_ENOTFOUND, resp, what, key);
    if (resp->status == 412)
        return s3_fail(err, BERTH_ECHANGED, resp, what, key);
    if (resp->status == 503)
        return s3_fail(err, BERTH_EUNAVAILABLE, resp, what, key);
    return s3_fail(err, BERTH_EIO, resp, what, key);
}

/* ---- listings ---- */

/*
 * One page of a ListObjectsV2 under prefix: with a delimiter the names of
 * the direct children (keys and common prefixes, the prefix cut off, no
 * trailing '/'), without one every key under it, whole. next gets the
 * continuation token ("" after the last page).
 */
static int list_keys(berth_strlist *out, berth_strlist *sizes,
                     berth_strlist *etags, berth_buf *next, s3_driver *sd,
                     const char *prefix, int delimited, const char *cursor,
                     berth_error *err)
{
    berth__sigv4_pair query[5];
    berth_buf body = BERTH_BUF_INIT, item = BERTH_BUF_INIT,
              name = BERTH_BUF_INIT;
    s3_request req;
    s3_response resp;
    size_t nq = 0, plen = strlen(prefix);
    const char *at, *end;
    int rc;

    query[nq].name = "list-type";
    query[nq++].value = "2";
    query[nq].name = "prefix";
    query[nq++].value = prefix;
    query[nq].name = "max-keys";
    query[nq++].value = "1000";
    if (delimited) {
        query[nq].name = "delimiter";
        query[nq++].value = "/";
    }
    if (cursor && *cursor) {
        query[nq].name = "continuation-token";
        query[nq++].value = cursor;
    }
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.query = query;
    req.nquery = nq;
    req.out = &body;
    req.max = 64 * 1024 * 1024;
    if ((rc = s3_send(sd->client, &req, &resp, err)) < 0)
        goto done;
    if (resp.status != 200) {
        rc = answer(err, &resp, "list", prefix);
        goto done;
    }
    at = body.ptr;
    end = body.ptr + body.len;
    /* <Contents><Key>..</Key>..</Contents>, <CommonPrefixes><Prefix>.. */
    while ((rc = s3_xml_next(&item, &at, end, "Contents", err)) == 1) {
        const char *in = item.ptr;
        if ((rc = s3_xml_next(&name, &in, item.ptr + item.len, "Key", err)) <
            0)
            goto done;
        /* '~': the driver's own keys (parts, leases), no path's */
        if (rc == 1 && name.len > plen && name.ptr[plen] != '~') {
            const char *s = delimited ? name.ptr + plen : name.ptr;
            if ((rc = berth_strlist_add(out, s, strlen(s), err)) < 0)
                goto done;
            in = item.ptr;
            if (sizes &&
                ((rc = s3_xml_next(&name, &in, item.ptr + item.len, "Size",
                                   err)) < 0 ||
                 (rc = berth_strlist_add(sizes, rc ? name.ptr : "0",
                                         rc ? name.len : 1, err)) < 0))
                goto done;
            in = item.ptr;
            if (etags) {
                const char *e;
                size_t elen;
                if ((rc = s3_xml_next(&name, &in, item.ptr + item.len, "ETag",
                                      err)) < 0)
                    goto done;
                /* "\"<hex>\"": the quotes off */
                e = rc ? name.ptr : "";
                elen = rc ? name.len : 0;
                if (elen >= 2 && e[0] == '"' && e[elen - 1] == '"') {
                    e++;
                    elen -= 2;
                }
                if ((rc = berth_strlist_add(etags, e, elen, err)) < 0)
                    goto done;
            }
        }
    }
    if (rc < 0)
        goto done;
    at = body.ptr;
    while (delimited &&
           (rc = s3_xml_next(&item, &at, end, "CommonPrefixes", err)) == 1) {
        const char *in = item.ptr;
        if ((rc = s3_xml_next(&name, &in, item.ptr + item.len, "Prefix",
                              err)) < 0)
            goto done;
        if (rc == 1 && name.len > plen + 1 && name.ptr[plen] != '~')
            if ((rc = berth_strlist_add(out, name.ptr + plen,
                                        name.len - plen - 1, err)) < 0)
                goto done;
    }
    if (rc < 0)
        goto done;
    berth_buf_clear(next);
    at = body.ptr;
    if ((rc = s3_xml_next(&item, &at, end, "NextContinuationToken", err)) < 0)
        goto done;
    rc = berth_buf_put(next, rc == 1 ? item.ptr : "", rc == 1 ? item.len : 0,
                       err);
done:
    berth_buf_dispose(&body);
    berth_buf_dispose(&item);
    berth_buf_dispose(&name);
    return rc;
}

/* Every key under prefix, sorted. */
static int list_all_keys(berth_strlist *out, s3_driver *sd,
                         const char *prefix, berth_error *err)
{
    berth_buf cursor = BERTH_BUF_INIT, next = BERTH_BUF_INIT;
    int rc;

    do {
        if ((rc = list_keys(out, NULL, NULL, &next, sd, prefix, 0, cursor.ptr,
                            err)) < 0)
            break;
        berth_buf_clear(&cursor);
        rc = berth_buf_put(&cursor, next.ptr ? next.ptr : "", next.len, err);
    } while (rc == 0 && cursor.len > 0);
    berth_buf_dispose(&cursor);
    berth_buf_dispose(&next);
    berth_strlist_sort(out);
    return rc;
}

/* Whether some key is under the directory path: 1, 0, or an error. */
static int is_dir(s3_driver *sd, const char *path, berth_error *err)
{
    berth_strlist one = BERTH_STRLIST_INIT;
    berth_buf prefix = BERTH_BUF_INIT, next = BERTH_BUF_INIT;
    int rc;

    if (strcmp(path, "/") == 0)
        return 1;
    if ((rc = prefix_of(&prefix, sd, path, err)) == 0 &&
        (rc = list_keys(&one, NULL, NULL, &next, sd, prefix.ptr, 1, NULL,
                        err)) == 0)
        rc = one.count > 0;
    berth_strlist_dispose(&one);
    berth_buf_dispose(&prefix);
    berth_buf_dispose(&next);
    return rc;
}

static int s3_list_page(berth_driver *d, berth_strlist *out, const char *path,
                        const char *cursor, berth_buf *next, berth_error *err)
{
    s3_driver *sd = (s3_driver *)d;
    berth_buf prefix = BERTH_BUF_INIT;
    int rc;

    if ((rc = prefix_of(&prefix, sd, path, err)) < 0)
        goto done;
    if ((rc = list_keys(out, NULL, NULL, next, sd, prefix.ptr, 1, cursor,
                        err)) < 0)
        goto done;
    berth_strlist_sort(out);
    /* no key under it: no such directory (a file has no children) */
    if (out->count == 0 && (!cursor || !*cursor) && strcmp(path, "/") != 0)
        rc = not_found(err, path);
done:
    berth_buf_dispose(&prefix);
    return rc;
}

/* ---- keys ---- */

static int copy_key(s3_driver *sd, const char *from, const char *to,
                    berth_error *err)
{
    berth_buf source = BERTH_BUF_INIT, body = BERTH_BUF_INIT;
    berth__sigv4_pair hdr;
    s3_request req;
    s3_response resp;
    int rc;

    /* x-amz-copy-source: /<bucket>/<key>, encoded as the path is */
    if ((rc = s3_copy_source(&source, sd->client, from, err)) < 0)
        goto done;
    hdr.name = "x-amz-copy-source";
    hdr.value = source.ptr;
    memset(&req, 0, sizeof(req));
    req.method = "PUT";
    req.key = to;
    req.headers = &hdr;
    req.nheaders = 1;
    req.out = &body;
    req.max = 1024 * 1024;
    if ((rc = s3_send(sd->client, &req, &resp, err)) < 0)
        goto done;
    /* a copy may fail after its 200 (S3 streams the answer) */
    if (resp.status != 200 ||
        (body.len && memmem(body.ptr, body.len, "<Error>", 7)))
        rc = answer(err, &resp, "copy", from);
done:
    berth_buf_dispose(&source);
    berth_buf_dispose(&body);
    return rc;
}

static int delete_key(s3_driver *sd, const char *key, berth_error *err)
{
    s3_response resp;
    int rc;

    if ((rc = request(sd, &resp, "DELETE", key, NULL, 0, err)) == 0 &&
        resp.status != 204 && resp.status != 200 && resp.status != 404)
        rc = answer(err, &resp, "delete", key);
    return rc;
}

/* ---- files made of parts ---- */

/*
 * An object cannot grow, so a file an appending writer makes is a base
 * object at its key, marked with a token (x-amz-meta-berth-parts), then
 * parts: objects of their own under <root>/~parts<path>/<token>/, each
 * named by the offset it starts at (20 digits: they list in order). A
 * writer's commit puts what was written since as one part. The file is the
 * base and the parts that follow on without a gap; a put writes a base
 * without the mark, so parts left of an earlier content never show. A move
 * makes one object of it (server-side copies where parts are large
 * enough), a remove takes the parts too. '~' is in no driver path, so
 * these keys are no path's, and listings leave them out.
 */
#define PARTS_HEADER "x-amz-meta-berth-parts"
/* A writer puts a part once this much is written (a bounded buffer). */
#define PART_MAX (8 * 1024 * 1024)
/* S3's least size of a multipart upload's part but the last. */
#define MULTIPART_MIN (5 * 1024 * 1024)
/* One server-side part copy at most (S3: 5 GiB). */
#define COPY_MAX (1024ULL * 1024 * 1024)

typedef struct segment {
    char *key;
    uint64_t offset, size;
    char etag[BERTH_STAT_VERSION_MAX];
} segment;

/* A file as it is now: its base and parts, in order. */
typedef struct fileview {
    segment *segs;
    size_t count;
    uint64_t size;
    int64_t mtime_ns;
    char token[64]; /* "" for a plain object */
    char version[BERTH_STAT_VERSION_MAX];
    berth_strlist stale; /* parts under the token past a gap: no longer
                            the file's (a truncation cut short) */
} fileview;

static void view_dispose(fileview *v)
{
    for (size_t i = 0; i < v->count; i++)
        free(v->segs[i].key);
    free(v->segs);
    berth_strlist_dispose(&v->stale);
    memset(v, 0, sizeof(*v));
}

static int view_add(fileview *v, const char *key, uint64_t size,
                    const char *etag, berth_error *err)
{
    segment *grown = realloc(v->segs, (v->count + 1) * sizeof(*grown));

    if (!grown)
        return oom(err);
    v->segs = grown;
    memset(&grown[v->count], 0, sizeof(*grown));
    if ((grown[v->count].key = strdup(key)) == NULL)
        return oom(err);
    grown[v->count].offset = v->size;
    grown[v->count].size = size;
    snprintf(grown[v->count].etag, sizeof(grown[v->count].etag), "%s", etag);
    v->count++;
    v->size += size;
    return 0;
}

/* The prefix of path's parts: of those extending the base marked token,
 * or with token NULL of every one. */
static int parts_prefix(berth_buf *out, const s3_driver *sd, const char *path,
                        const char *token, berth_error *err)
{
    berth_buf_clear(out);
    return berth_buf_printf(out, err, "%s%s~parts%s/%s%s", sd->root,
                            sd->root[0] ? "/" : "", path, token ? token : "",
                            token ? "/" : "");
}

/* path as a file: ENOTFOUND when there is no object at its key. */
static int view_load(fileview *v, s3_driver *sd, const char *path,
                     berth_error *err)
{
    berth_strlist keys = BERTH_STRLIST_INIT, sizes = BERTH_STRLIST_INIT,
                  etags = BERTH_STRLIST_INIT;
    berth_buf key = BERTH_BUF_INIT, prefix = BERTH_BUF_INIT,
              next = BERTH_BUF_INIT, cursor = BERTH_BUF_INIT;
    s3_response resp;
    int rc, chained = 1;

    memset(v, 0, sizeof(*v));
    if ((rc = key_of(&key, sd, path, err)) < 0 ||
        (rc = request(sd, &resp, "HEAD", key.ptr, NULL, 0, err)) < 0)
        goto done;
    if (resp.status != 200) {
        rc = resp.status == 404 ? not_found(err, path)
                                : answer(err, &resp, "stat", key.ptr);
        goto done;
    }
    v->mtime_ns = resp.mtime_ns;
    snprintf(v->token, sizeof(v->token), "%s", resp.parts);
    if ((rc = view_add(v, key.ptr, resp.length, resp.etag, err)) < 0)
        goto done;
    snprintf(v->version, sizeof(v->version), "%s", resp.etag);
    if (!v->token[0])
        goto done;
    if ((rc = parts_prefix(&prefix, sd, path, v->token, err)) < 0)
        goto done;
    do {
        if ((rc = list_keys(&keys, &sizes, &etags, &next, sd, prefix.ptr, 0,
                            cursor.ptr, err)) < 0)
            goto done;
        berth_buf_clear(&cursor);
        if ((rc = berth_buf_put(&cursor, next.ptr ? next.ptr : "", next.len,
                                err)) < 0)
            goto done;
    } while (cursor.len > 0);
    /* in order, and only while each follows on from the last; those after
     * a gap are no longer the file's */
    for (size_t i = 0; i < keys.count; i++) {
        uint64_t at = strtoull(keys.items[i] + prefix.len, NULL, 10);
        if (chained && at == v->size)
            rc = view_add(v, keys.items[i],
                          strtoull(sizes.items[i], NULL, 10), etags.items[i],
                          err);
        else if ((chained = 0), at >= v->size)
            rc = berth_strlist_add(&v->stale, keys.items[i],
                                   strlen(keys.items[i]), err);
        if (rc < 0)
            goto done;
    }
    if (v->count > 1)
        snprintf(v->version, sizeof(v->version), "p:%.32s:%zu:%llu",
                 v->segs[v->count - 1].etag, v->count,
                 (unsigned long long)v->size);
done:
    berth_strlist_dispose(&keys);
    berth_strlist_dispose(&sizes);
    berth_strlist_dispose(&etags);
    berth_buf_dispose(&key);
    berth_buf_dispose(&prefix);
    berth_buf_dispose(&next);
    berth_buf_dispose(&cursor);
    if (rc < 0)
        view_dispose(v);
    return rc;
}

/* Bytes [from, from + len) of one segment into out (appended). */
static int segment_get(berth_buf *out, s3_driver *sd, const segment *s,
                       uint64_t from, uint64_t len, berth_error *err)
{
    berth__sigv4_pair hdr[2];
    berth_buf got = BERTH_BUF_INIT;
    char range[64];
    s3_request req;
    s3_response resp;
    size_t n = 0;
    int rc;

    if (len == 0)
        return 0;
    snprintf(range, sizeof(range), "bytes=%llu-%llu",
             (unsigned long long)from, (unsigned long long)(from + len - 1));
    hdr[n].name = "range";
    hdr[n++].value = range;
    if (s->etag[0]) {
        hdr[n].name = "if-match";
        hdr[n++].value = s->etag;
    }
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.key = s->key;
    req.headers = hdr;
    req.nheaders = n;
    req.out = &got;
    req.max = (size_t)len;
    if ((rc = s3_send(sd->client, &req, &resp, err)) < 0)
        goto done;
    if (resp.status != 206 && resp.status != 200) {
        rc = resp.status == 412 || resp.status == 404
                 ? berth_error_set(err, BERTH_EIO,
                                   "s3: %s changed under its reader", s->key)
                 : answer(err, &resp, "read", s->key);
        goto done;
    }
    if (got.len != len) {
        rc = berth_error_set(err, BERTH_EIO, "s3: %s: %zu bytes, not %llu",
                             s->key, got.len, (unsigned long long)len);
        goto done;
    }
    rc = berth_buf_put(out, got.ptr, got.len, err);
done:
    berth_buf_dispose(&got);
    return rc;
}

/* Every key of path's parts, any token: gone, best effort (they are no
 * file's once their base went or lost its mark). */
static void drop_parts(s3_driver *sd, const char *path)
{
    berth_strlist keys = BERTH_STRLIST_INIT;
    berth_buf prefix = BERTH_BUF_INIT;

    if (parts_prefix(&prefix, sd, path, NULL, NULL) == 0 &&
        list_all_keys(&keys, sd, prefix.ptr, NULL) == 0)
        for (size_t i = 0; i < keys.count; i++)
            delete_key(sd, keys.items[i], NULL);
    berth_strlist_dispose(&keys);
    berth_buf_dispose(&prefix);
}

/* ---- files ---- */

static int s3_get(berth_driver *d, berth_buf *out, const char *path,
                  size_t max, berth_error *err)
{
    s3_driver *sd = (s3_driver *)d;
    fileview v;
    int rc;

    berth_buf_clear(out);
    if ((rc = view_load(&v, sd, path, err)) < 0)
        return rc;
    if (v.size > max) {
        rc = berth_error_set(err, BERTH_ETOOLARGE,
                             "%s is larger than %zu bytes", path, max);
        goto done;
    }
    for (size_t i = 0; i < v.count && rc == 0; i++)
        rc = segment_get(out, sd, &v.segs[i], 0, v.segs[i].size, err);
    if (rc == 0)
        rc = berth_buf_put(out, "", 0, err);
done:
    if (rc < 0)
        berth_buf_clear(out);
    view_dispose(&v);
    return rc;
}

/*
 * PUT path (data, or a file); etag_out (may be NULL) gets the new ETag.
 * A conditional put sent more than once may find its own first attempt
 * done (412 to the retry): the content there is then compared with ours.
 */
static int put_with(s3_driver *sd, const char *path, const void *data,
                    size_t len, const s3_file_body *file,
                    const berth__sigv4_pair *headers, size_t nheaders,
                    char *etag_out, berth_error *err)
{
    berth_buf key = BERTH_BUF_INIT, there = BERTH_BUF_INIT;
    s3_request req;
    s3_response resp, got;
    int rc;

    if ((rc = key_of(&key, sd, path, err)) < 0)
        goto done;
    memset(&req, 0, sizeof(req));
    req.method = "PUT";
    req.key = key.ptr;
    req.body = data;
    req.body_len = len;
    req.file = file;
    req.headers = headers;
    req.nheaders = nheaders;
    if ((rc = s3_send(sd->client, &req, &resp, err)) < 0)
        goto done;
    if (resp.status == 412 && resp.attempts > 1 && !file &&
        request(sd, &got, "GET", key.ptr, &there, len + 1, NULL) == 0 &&
        got.status == 200 && there.len == len &&
        memcmp(there.ptr, data ? data : "", len) == 0)
        resp = got; /* ours, from the attempt whose answer was lost */
    if (resp.status != 200) {
        rc = answer(err, &resp, "put", key.ptr);
        goto done;
    }
    if (etag_out)
        snprintf(etag_out, BERTH_STAT_VERSION_MAX, "%s", resp.etag);
done:
    berth_buf_dispose(&key);
    berth_buf_dispose(&there);
    return rc;
}

static int s3_put(berth_driver *d, const char *path, const void *data,
                  size_t len, berth_error *err)
{
    return put_with((s3_driver *)d, path, data, len, NULL, NULL, 0, NULL,
                    err);
}

/* RGW compares If-Match with the ETag unquoted (S3.md): it answers 412 to
 * the quoted form even when it matches. A file made of parts has a
 * version no ETag is ("p:..."): nothing matches it. */
static int s3_put_if(berth_driver *d, const char *path, const void *data,
                     size_t len, const char *expected, berth_error *err)
{
    berth__sigv4_pair cond;

    if (expected && strncmp(expected, "p:", 2) == 0)
        return berth_error_set(err, BERTH_ECHANGED, "%s changed", path);
    if (expected) {
        cond.name = "if-match";
        cond.value = expected;
    } else {
        cond.name = "if-none-match";
        cond.value = "*";
    }
    return put_with((s3_driver *)d, path, data, len, NULL, &cond, 1, NULL,
                    err);
}

static int s3_stat(berth_driver *d, berth_stat_info *out, const char *path,
                   berth_error *err)
{
    s3_driver *sd = (s3_driver *)d;
    fileview v;
    int rc;

    memset(out, 0, sizeof(*out));
    if (strcmp(path, "/") != 0) {
        rc = view_load(&v, sd, path, err);
        if (rc == 0) {
            out->size = v.size;
            out->mtime_ns = v.mtime_ns;
            snprintf(out->version, sizeof(out->version), "%s", v.version);
            view_dispose(&v);
            return 0;
        }
        if (rc != BERTH_ENOTFOUND)
            return rc;
    }
    if ((rc = is_dir(sd, path, err)) < 0)
        return rc;
    if (!rc)
        return not_found(err, path);
    out->is_dir = 1;
    return 0;
}

/* ---- multipart uploads ---- */

typedef struct multipart {
    s3_driver *sd;
    const char *key;
    berth_buf id;
    berth_buf parts; /* <Part>s of CompleteMultipartUpload */
    int n;
} multipart;

static int mp_start(multipart *mp, s3_driver *sd, const char *key,
                    const char *mark, berth_error *err)
{
    berth__sigv4_pair q = { "uploads", "" };
    berth__sigv4_pair hdr = { PARTS_HEADER, NULL };
    berth_buf body = BERTH_BUF_INIT;
    s3_request req;
    s3_response resp;
    const char *at;
    int rc;

    memset(mp, 0, sizeof(*mp));
    mp->sd = sd;
    mp->key = key;
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.key = key;
    req.query = &q;
    req.nquery = 1;
    req.out = &body;
    req.max = 1024 * 1024;
    if (mark) {
        hdr.value = mark;
        req.headers = &hdr;
        req.nheaders = 1;
    }
    if ((rc = s3_send(sd->client, &req, &resp, err)) == 0) {
        at = body.ptr;
        if (resp.status != 200)
            rc = answer(err, &resp, "multipart", key);
        else if ((rc = s3_xml_next(&mp->id, &at, body.ptr + body.len,
                                   "UploadId", err)) == 0)
            rc = berth_error_set(err, BERTH_EIO, "s3: no UploadId for %s",
                                 key);
        else if (rc == 1)
            rc = 0;
    }
    berth_buf_dispose(&body);
    return rc;
}

/* The next part: bytes, or (data NULL) a server-side copy of
 * src[from, from + len). */
static int mp_part(multipart *mp, const void *data, size_t len,
                   const char *src, uint64_t from, uint64_t len64,
                   berth_error *err)
{
    berth__sigv4_pair q[2], hdr[2];
    berth_buf body = BERTH_BUF_INIT, source = BERTH_BUF_INIT,
              etag = BERTH_BUF_INIT;
    char number[16], range[64];
    s3_request req;
    s3_response resp;
    const char *at;
    int rc;

    snprintf(number, sizeof(number), "%d", ++mp->n);
    q[0].name = "partNumber";
    q[0].value = number;
    q[1].name = "uploadId";
    q[1].value = mp->id.ptr;
    memset(&req, 0, sizeof(req));
    req.method = "PUT";
    req.key = mp->key;
    req.query = q;
    req.nquery = 2;
    req.out = &body;
    req.max = 1024 * 1024;
    if (data) {
        req.body = data;
        req.body_len = len;
    } else {
        if ((rc = s3_copy_source(&source, mp->sd->client, src, err)) < 0)
            goto done;
        snprintf(range, sizeof(range), "bytes=%llu-%llu",
                 (unsigned long long)from,
                 (unsigned long long)(from + len64 - 1));
        hdr[0].name = "x-amz-copy-source";
        hdr[0].value = source.ptr;
        hdr[1].name = "x-amz-copy-source-range";
        hdr[1].value = range;
        req.headers = hdr;
        req.nheaders = 2;
    }
    if ((rc = s3_send(mp->sd->client, &req, &resp, err)) < 0)
        goto done;
    if (resp.status != 200 ||
        (body.len && memmem(body.ptr, body.len, "<Error>", 7))) {
        rc = answer(err, &resp, "part", mp->key);
        goto done;
    }
    at = body.ptr;
    if (!data &&
        (rc = s3_xml_next(&etag, &at, body.ptr + body.len, "ETag", err)) < 0)
        goto done;
    rc = berth_buf_printf(&mp->parts, err,
                          "<Part><PartNumber>%d</PartNumber><ETag>%s%s%s"
                          "</ETag></Part>",
                          mp->n, data ? "\"" : "",
                          data ? resp.etag : (etag.ptr ? etag.ptr : ""),
                          data ? "\"" : "");
done:
    berth_buf_dispose(&body);
    berth_buf_dispose(&source);
    berth_buf_dispose(&etag);
    return rc;
}

static int mp_finish(multipart *mp, int complete, berth_error *err)
{
    berth__sigv4_pair q = { "uploadId", NULL };
    berth_buf body = BERTH_BUF_INIT, answer_body = BERTH_BUF_INIT;
    s3_request req;
    s3_response resp;
    int rc = 0;

    if (!mp->id.len)
        goto done;
    q.value = mp->id.ptr;
    memset(&req, 0, sizeof(req));
    req.key = mp->key;
    req.query = &q;
    req.nquery = 1;
    if (complete) {
        if ((rc = berth_buf_printf(&body, err,
                                   "<CompleteMultipartUpload>%s"
                                   "</CompleteMultipartUpload>",
                                   mp->parts.ptr ? mp->parts.ptr : "")) < 0)
            goto done;
        req.method = "POST";
        req.body = body.ptr;
        req.body_len = body.len;
        req.out = &answer_body;
        req.max = 1024 * 1024;
    } else {
        req.method = "DELETE";
    }
    rc = s3_send(mp->sd->client, &req, &resp, complete ? err : NULL);
    /* sent again after a lost answer: the first completed it */
    if (complete && rc == 0 && resp.status == 404 && resp.attempts > 1 &&
        request(mp->sd, &resp, "HEAD", mp->key, NULL, 0, NULL) == 0 &&
        resp.status == 200)
        answer_body.len = 0;
    if (complete && rc == 0 &&
        (resp.status != 200 ||
         (answer_body.len &&
          memmem(answer_body.ptr, answer_body.len, "<Error>", 7))))
        rc = answer(err, &resp, "complete", mp->key);
done:
    berth_buf_dispose(&body);
    berth_buf_dispose(&answer_body);
    berth_buf_dispose(&mp->id);
    berth_buf_dispose(&mp->parts);
    return complete ? rc : 0;
}

/*
 * One object at key `to` of the file's segments: server-side copies of
 * the ranges at least MULTIPART_MIN long that start a part, the bytes of
 * shorter stretches read into a part of their own (at most MULTIPART_MIN
 * held).
 */
static int consolidate(s3_driver *sd, const fileview *v, const char *to,
                       const char *mark, berth_error *err)
{
    berth_buf pending = BERTH_BUF_INIT;
    multipart mp;
    int rc;

    if (v->count == 1 && !mark)
        return copy_key(sd, v->segs[0].key, to, err);
    if ((rc = mp_start(&mp, sd, to, mark, err)) < 0)
        return rc;
    for (size_t i = 0; i < v->count && rc == 0; i++) {
        const segment *s = &v->segs[i];
        uint64_t at = 0;
        while (at < s->size && rc == 0) {
            uint64_t left = s->size - at, take;
            if (pending.len == 0 && left >= MULTIPART_MIN) {
                take = left < COPY_MAX ? left : COPY_MAX;
                rc = mp_part(&mp, NULL, 0, s->key, at, take, err);
            } else {
                take = MULTIPART_MIN - pending.len;
                take = left < take ? left : take;
                rc = segment_get(&pending, sd, s, at, take, err);
                if (rc == 0 && pending.len >= MULTIPART_MIN) {
                    rc = mp_part(&mp, pending.ptr, pending.len, NULL, 0, 0,
                                 err);
                    berth_buf_clear(&pending);
                }
            }
            at += take;
        }
    }
    if (rc == 0 && (pending.len > 0 || mp.n == 0))
        rc = mp_part(&mp, pending.ptr ? pending.ptr : "", pending.len, NULL,
                     0, 0, err);
    rc = rc == 0 ? mp_finish(&mp, 1, err) : (mp_finish(&mp, 0, NULL), rc);
    berth_buf_dispose(&pending);
    return rc;
}

/* ---- move and remove ---- */

static int s3_remove(berth_driver *d, const char *path, berth_error *err)
{
    s3_driver *sd = (s3_driver *)d;
    berth_strlist keys = BERTH_STRLIST_INIT;
    berth_buf key = BERTH_BUF_INIT, prefix = BERTH_BUF_INIT;
    s3_response resp;
    int rc, found = 0;

    if ((rc = key_of(&key, sd, path, err)) < 0 ||
        (rc = prefix_of(&prefix, sd, path, err)) < 0)
        goto done;
    if (strcmp(path, "/") != 0) {
        if ((rc = request(sd, &resp, "HEAD", key.ptr, NULL, 0, err)) < 0)
            goto done;
        if (resp.status == 200) {
            found = 1;
            if ((rc = delete_key(sd, key.ptr, err)) < 0)
                goto done;
        } else if (resp.status != 404) {
            rc = answer(err, &resp, "remove", key.ptr);
            goto done;
        }
    }
    if ((rc = list_all_keys(&keys, sd, prefix.ptr, err)) < 0)
        goto done;
    for (size_t i = 0; i < keys.count; i++)
        if ((rc = delete_key(sd, keys.items[i], err)) < 0)
            goto done;
    if (!found && keys.count == 0) {
        rc = not_found(err, path);
        goto done;
    }
    /* the parts of the file, or of every file under the directory */
    drop_parts(sd, path);
done:
    berth_strlist_dispose(&keys);
    berth_buf_dispose(&key);
    berth_buf_dispose(&prefix);
    return rc;
}

/* Copy every key under from_prefix to the same name under to_prefix. */
static int copy_tree(s3_driver *sd, berth_strlist *keys,
                     const char *from_prefix, const char *to_prefix,
                     berth_error *err)
{
    berth_buf dst = BERTH_BUF_INIT;
    size_t flen = strlen(from_prefix);
    int rc;

    if ((rc = list_all_keys(keys, sd, from_prefix, err)) < 0)
        goto done;
    for (size_t i = 0; i < keys->count; i++) {
        berth_buf_clear(&dst);
        if ((rc = berth_buf_printf(&dst, err, "%s%s", to_prefix,
                                   keys->items[i] + flen)) < 0 ||
            (rc = copy_key(sd, keys->items[i], dst.ptr, err)) < 0)
            goto done;
    }
done:
    berth_buf_dispose(&dst);
    return rc;
}

static int s3_move(berth_driver *d, const char *from, const char *to,
                   berth_error *err)
{
    s3_driver *sd = (s3_driver *)d;
    berth_strlist keys = BERTH_STRLIST_INIT, parts = BERTH_STRLIST_INIT;
    berth_buf fk = BERTH_BUF_INIT, tk = BERTH_BUF_INIT, fp = BERTH_BUF_INIT,
              tp = BERTH_BUF_INIT;
    berth_stat_info src, dest;
    fileview v;
    size_t flen = strlen(from);
    int rc;

    memset(&v, 0, sizeof(v));
    if ((rc = s3_stat(d, &src, from, err)) < 0)
        goto done;
    if (strcmp(from, to) == 0)
        goto done;
    if (src.is_dir && strncmp(to, from, flen) == 0 && to[flen] == '/') {
        rc = berth_error_set(err, BERTH_EINVAL,
                             "cannot move %s into itself: %s", from, to);
        goto done;
    }
    rc = s3_stat(d, &dest, to, err);
    if (rc == 0 && (dest.is_dir || src.is_dir)) {
        rc = berth_error_set(err, BERTH_EEXISTS, "destination exists: %s",
                             to);
        goto done;
    }
    if (rc < 0 && rc != BERTH_ENOTFOUND)
        goto done;
    if ((rc = key_of(&fk, sd, from, err)) < 0 ||
        (rc = key_of(&tk, sd, to, err)) < 0)
        goto done;
    if (!src.is_dir) {
        /* one object of the file's base and parts, then the old go */
        if ((rc = view_load(&v, sd, from, err)) < 0 ||
            (rc = consolidate(sd, &v, tk.ptr, NULL, err)) < 0 ||
            (rc = delete_key(sd, fk.ptr, err)) < 0)
            goto done;
        if (v.count > 1)
            drop_parts(sd, from);
        goto done;
    }
    /* copy all (and the parts of the files in it), then delete all: a
     * move cut short leaves both whole */
    if ((rc = berth_buf_put(&fk, "/", 1, err)) < 0 ||
        (rc = berth_buf_put(&tk, "/", 1, err)) < 0 ||
        (rc = parts_prefix(&fp, sd, from, NULL, err)) < 0 ||
        (rc = parts_prefix(&tp, sd, to, NULL, err)) < 0 ||
        (rc = copy_tree(sd, &keys, fk.ptr, tk.ptr, err)) < 0 ||
        (rc = copy_tree(sd, &parts, fp.ptr, tp.ptr, err)) < 0)
        goto done;
    for (size_t i = 0; i < keys.count; i++)
        if ((rc = delete_key(sd, keys.items[i], err)) < 0)
            goto done;
    for (size_t i = 0; i < parts.count; i++)
        delete_key(sd, parts.items[i], NULL);
done:
    view_dispose(&v);
    berth_strlist_dispose(&keys);
    berth_strlist_dispose(&parts);
    berth_buf_dispose(&fk);
    berth_buf_dispose(&tk);
    berth_buf_dispose(&fp);
    berth_buf_dispose(&tp);
    return rc;
}

/* ---- readers ---- */

/* Ranged GETs of the segments the file had when the reader opened, each
 * pinned by If-Match where it has an ETag: a file replaced meanwhile is an
 * error, never a mix of two contents. */
typedef struct s3_reader {
    berth_reader base;
    s3_driver *sd;
    fileview v;
    uint64_t offset;
} s3_reader;

static int s3_reader_read(berth_reader *r, void *buf, size_t cap,
                          size_t *n_out, berth_error *err)
{
    s3_reader *sr = (s3_reader *)r;
    berth_buf out = BERTH_BUF_INIT;
    const segment *s = NULL;
    uint64_t want;
    int rc;

    *n_out = 0;
    if (sr->offset >= sr->v.size || cap == 0)
        return 0;
    for (size_t i = 0; i < sr->v.count; i++)
        if (sr->offset < sr->v.segs[i].offset + sr->v.segs[i].size) {
            s = &sr->v.segs[i];
            break;
        }
    want = s->offset + s->size - sr->offset;
    if (want > cap)
        want = cap;
    if ((rc = segment_get(&out, sr->sd, s, sr->offset - s->offset, want,
                          err)) == 0) {
        memcpy(buf, out.ptr, out.len);
        *n_out = out.len;
        sr->offset += out.len;
    }
    berth_buf_dispose(&out);
    return rc;
}

static void s3_reader_free(berth_reader *r)
{
    s3_reader *sr = (s3_reader *)r;

    if (!sr)
        return;
    view_dispose(&sr->v);
    driver_unref(sr->sd);
    free(sr);
}

static int s3_reader_open(berth_driver *d, berth_reader **out,
                          const char *path, uint64_t offset, berth_error *err)
{
    s3_reader *sr;
    int rc;

    *out = NULL;
    if ((sr = calloc(1, sizeof(*sr))) == NULL)
        return oom(err);
    sr->base.read = s3_reader_read;
    sr->base.free = s3_reader_free;
    sr->sd = driver_ref((s3_driver *)d);
    if ((rc = view_load(&sr->v, sr->sd, path, err)) < 0)
        goto done;
    if (offset > sr->v.size) {
        rc = berth_error_set(err, BERTH_ERANGE,
                             "offset %llu past the end of %s",
                             (unsigned long long)offset, path);
        goto done;
    }
    sr->offset = offset;
    *out = &sr->base;
    sr = NULL;
done:
    s3_reader_free(sr ? &sr->base : NULL);
    return rc;
}

/* ---- import, hand-off ---- */

/* One PUT streamed from the local file, which then goes: the caller's
 * file moved in, as the fs driver's rename does. */
static int s3_import(berth_driver *d, const char *path,
                     const char *local_file, berth_error *err)
{
    s3_file_body body;
    struct stat sb;
    int fd, rc;

    if ((fd = open(local_file, O_RDONLY | O_CLOEXEC)) < 0)
        return berth_error_sys(err, BERTH_ENOTFOUND, errno, "cannot open %s",
                               local_file);
    if (fstat(fd, &sb) < 0) {
        rc = berth_error_sys(err, BERTH_EIO, errno, "cannot stat %s",
                             local_file);
        goto done;
    }
    body.fd = fd;
    body.offset = 0;
    body.size = (uint64_t)sb.st_size;
    if ((rc = put_with((s3_driver *)d, path, NULL, 0, &body, NULL, 0, NULL,
                       err)) == 0)
        unlink(local_file);
done:
    close(fd);
    return rc;
}

static int s3_send_slot(berth_driver *d, berth_send_kind *kind,
                        berth_buf *where, const char *path, berth_error *err)
{
    s3_driver *sd = (s3_driver *)d;
    berth_stat_info st;
    berth_buf key = BERTH_BUF_INIT;
    int rc;

    if ((rc = s3_stat(d, &st, path, err)) < 0)
        return rc;
    if (st.is_dir)
        return not_found(err, path);
    /* a URL answers one object: a file still made of parts has none */
    if (strncmp(st.version, "p:", 2) == 0)
        return berth_error_set(err, BERTH_EUNSUPPORTED,
                               "s3: %s is still being written", path);
    if ((rc = key_of(&key, sd, path, err)) == 0 &&
        (rc = s3_presign(where, sd->client, key.ptr, SEND_EXPIRES, err)) == 0)
        *kind = BERTH_SEND_URL;
    berth_buf_dispose(&key);
    return rc;
}

/* ---- leases ---- */

/*
 * A lease is an object at the lock's path holding its holder's token and
 * when it expires, created only where none is (If-None-Match), renewed and
 * released only over the version its holder wrote (If-Match), taken over
 * from a holder that let it expire only over the version seen: the store
 * decides who holds it, whichever node asks. Expiry compares the nodes'
 * clocks: they must agree to well within LEASE_SECONDS.
 */
typedef struct s3_lease {
    berth_lease base;
    s3_driver *sd;
    char *path;
    char token[64];
    char etag[BERTH_STAT_VERSION_MAX]; /* of what we wrote last */
    int taken_over;                    /* from a holder that let it expire */
} s3_lease;

static int lease_body(berth_buf *out, const s3_lease *sl, long long until,
                      berth_error *err)
{
    berth_buf_clear(out);
    return berth_buf_printf(out, err, "{\"holder\":\"%s\",\"expires\":%lld}",
                            sl->token, until);
}

static int lease_write(s3_lease *sl, long long until, const char *expected,
                       berth_error *err)
{
    berth__sigv4_pair cond;
    berth_buf body = BERTH_BUF_INIT;
    int rc;

    if (expected) {
        cond.name = "if-match";
        cond.value = expected;
    } else {
        cond.name = "if-none-match";
        cond.value = "*";
    }
    if ((rc = lease_body(&body, sl, until, err)) == 0)
        rc = put_with(sl->sd, sl->path, body.ptr, body.len, NULL, &cond, 1,
                      sl->etag, err);
    berth_buf_dispose(&body);
    return rc;
}

static long long seconds_now(void)
{
    struct timespec now;

    clock_gettime(CLOCK_REALTIME, &now);
    return (long long)now.tv_sec;
}

/* Another LEASE_SECONDS, only while it is still ours. */
static int lease_renew(s3_lease *sl, berth_error *err)
{
    int rc = lease_write(sl, seconds_now() + LEASE_SECONDS, sl->etag, err);

    if (rc == BERTH_ECHANGED || rc == BERTH_ENOTFOUND)
        rc = berth_error_set(err, BERTH_EIO,
                             "s3: lost the lease %s (it expired and "
                             "another took it)",
                             sl->path);
    return rc;
}

static void s3_lease_free(berth_lease *l)
{
    s3_lease *sl = (s3_lease *)l;
    berth_buf key = BERTH_BUF_INIT;

    if (!sl)
        return;
    /* expired over our own version, so another's lease is never touched;
     * then gone (RGW ignores conditions on DELETE: one taking it between
     * the two loses it, and its next renewal says so) */
    if (lease_write(sl, 0, sl->etag, NULL) == 0 &&
        key_of(&key, sl->sd, sl->path, NULL) == 0)
        delete_key(sl->sd, key.ptr, NULL);
    berth_buf_dispose(&key);
    driver_unref(sl->sd);
    free(sl->path);
    free(sl);
}

static int lock_lease(s3_lease **out, s3_driver *sd, const char *path,
                      berth_error *err)
{
    berth_buf current = BERTH_BUF_INIT;
    berth_stat_info st;
    s3_lease *sl;
    struct timespec now;
    long long until;
    const char *exp;
    int rc;

    *out = NULL;
    clock_gettime(CLOCK_REALTIME, &now);
    if ((sl = calloc(1, sizeof(*sl))) == NULL)
        return oom(err);
    if ((sl->path = strdup(path)) == NULL) {
        free(sl);
        return oom(err);
    }
    sl->sd = driver_ref(sd);
    sl->base.free = s3_lease_free;
    snprintf(sl->token, sizeof(sl->token), "%lx-%lx-%lx",
             (unsigned long)getpid(), (unsigned long)now.tv_sec,
             (unsigned long)now.tv_nsec ^ (unsigned long)(uintptr_t)sl);
    rc = lease_write(sl, (long long)now.tv_sec + LEASE_SECONDS, NULL, err);
    if (rc == BERTH_ECHANGED) {
        /* held: taken over only when its holder let it expire */
        if ((rc = s3_stat(&sd->base, &st, path, err)) < 0 ||
            (rc = s3_get(&sd->base, &current, path, 4096, err)) < 0)
            goto busy;
        exp = strstr(current.ptr, "\"expires\":");
        until = exp ? strtoll(exp + 10, NULL, 10) : 0;
        if (until > (long long)now.tv_sec) {
            rc = berth_error_set(err, BERTH_EBUSY, "lock %s is held", path);
            goto done;
        }
        rc = lease_write(sl, (long long)now.tv_sec + LEASE_SECONDS,
                         st.version, err);
        sl->taken_over = rc == 0;
    busy:
        if (rc == BERTH_ECHANGED || rc == BERTH_ENOTFOUND)
            rc = berth_error_set(err, BERTH_EBUSY, "lock %s is held", path);
    }
done:
    berth_buf_dispose(&current);
    if (rc < 0) {
        driver_unref(sl->sd);
        free(sl->path);
        free(sl);
        return rc;
    }
    *out = sl;
    return 0;
}

static int s3_lock(berth_driver *d, berth_lease **out, const char *path,
                   berth_error *err)
{
    s3_lease *sl;
    int rc = lock_lease(&sl, (s3_driver *)d, path, err);

    *out = rc == 0 ? &sl->base : NULL;
    return rc;
}

/* ---- appending writers ---- */

/*
 * One writer per path across nodes: it holds the lease /~locks<path>. It
 * keeps what was written since its last part (at most PART_MAX) and puts
 * it as a part at commit, when PART_MAX is reached, and when it is freed.
 */
typedef struct s3_writer {
    berth_writer base;
    s3_driver *sd;
    char *path;
    s3_lease *lease;
    char token[64];   /* of the base its parts extend */
    uint64_t durable; /* bytes in the base and the parts */
    berth_buf pending;
    int failed; /* a part could not be put: the writer is done */
} s3_writer;

/* A new token for the writer's parts. */
static void new_token(s3_writer *w)
{
    struct timespec now;

    clock_gettime(CLOCK_REALTIME, &now);
    snprintf(w->token, sizeof(w->token), "%lx%09lx%lx",
             (unsigned long)now.tv_sec, (unsigned long)now.tv_nsec,
             (unsigned long)getpid());
}

/* A base for path marked with a new token: data (len bytes, or none), or
 * (keep) path's bytes copied onto themselves. One PUT: the file is the old
 * one or the new, never empty between. */
static int new_base(s3_writer *w, int keep, const void *data, size_t len,
                    berth_error *err)
{
    berth__sigv4_pair hdr[3];
    berth_buf key = BERTH_BUF_INIT, source = BERTH_BUF_INIT;
    s3_request req;
    s3_response resp;
    size_t n = 0;
    int rc;

    new_token(w);
    hdr[n].name = PARTS_HEADER;
    hdr[n++].value = w->token;
    if ((rc = key_of(&key, w->sd, w->path, err)) < 0)
        goto done;
    if (keep) {
        if ((rc = s3_copy_source(&source, w->sd->client, key.ptr, err)) < 0)
            goto done;
        hdr[n].name = "x-amz-copy-source";
        hdr[n++].value = source.ptr;
        hdr[n].name = "x-amz-metadata-directive";
        hdr[n++].value = "REPLACE";
    }
    memset(&req, 0, sizeof(req));
    req.method = "PUT";
    req.key = key.ptr;
    req.headers = hdr;
    req.nheaders = n;
    req.body = data;
    req.body_len = len;
    if ((rc = s3_send(w->sd->client, &req, &resp, err)) == 0 &&
        resp.status != 200)
        rc = answer(err, &resp, "put", key.ptr);
done:
    berth_buf_dispose(&key);
    berth_buf_dispose(&source);
    return rc;
}

/* What was written since the last part, as a part. */
static int flush_part(s3_writer *w, berth_error *err)
{
    berth_buf prefix = BERTH_BUF_INIT;
    s3_request req;
    s3_response resp;
    int rc;

    if (w->pending.len == 0)
        return 0;
    if (w->failed)
        return berth_error_set(err, BERTH_EIO, "s3: writer of %s failed",
                               w->path);
    /* only while the lease is ours: one that expired may be another's */
    if ((rc = lease_renew(w->lease, err)) < 0) {
        w->failed = 1;
        return rc;
    }
    if ((rc = parts_prefix(&prefix, w->sd, w->path, w->token, err)) < 0 ||
        (rc = berth_buf_printf(&prefix, err, "%020llu",
                               (unsigned long long)w->durable)) < 0)
        goto done;
    memset(&req, 0, sizeof(req));
    req.method = "PUT";
    req.key = prefix.ptr;
    req.body = w->pending.ptr;
    req.body_len = w->pending.len;
    if ((rc = s3_send(w->sd->client, &req, &resp, err)) == 0 &&
        resp.status != 200)
        rc = answer(err, &resp, "put", prefix.ptr);
    if (rc < 0) {
        w->failed = 1;
        goto done;
    }
    w->durable += w->pending.len;
    berth_buf_clear(&w->pending);
done:
    berth_buf_dispose(&prefix);
    return rc;
}

static int s3_writer_write(berth_writer *bw, const void *data, size_t len,
                           berth_error *err)
{
    s3_writer *w = (s3_writer *)bw;
    const char *p = data;
    int rc;

    while (len > 0) {
        size_t room = PART_MAX - w->pending.len;
        size_t take = len < room ? len : room;
        if ((rc = berth_buf_put(&w->pending, p, take, err)) < 0)
            return rc;
        p += take;
        len -= take;
        if (w->pending.len >= PART_MAX && (rc = flush_part(w, err)) < 0)
            return rc;
    }
    return 0;
}

static uint64_t s3_writer_size(berth_writer *bw)
{
    s3_writer *w = (s3_writer *)bw;

    return w->durable + w->pending.len;
}

static int s3_writer_commit(berth_writer *bw, berth_error *err)
{
    return flush_part((s3_writer *)bw, err);
}

/*
 * Cut back to size: the part holding the cut is put again shorter at its
 * offset (or, for a cut in the base, a new base of the bytes before it),
 * and the parts after it no longer follow on, so they are no longer the
 * file's; then they go.
 */
static int s3_writer_truncate(berth_writer *bw, uint64_t size,
                              berth_error *err)
{
    s3_writer *w = (s3_writer *)bw;
    berth_buf head = BERTH_BUF_INIT;
    fileview v;
    int rc;

    if ((rc = flush_part(w, err)) < 0)
        return rc;
    if (size > w->durable)
        return berth_error_set(err, BERTH_EINVAL,
                               "cannot truncate %s to %llu: it has %llu",
                               w->path, (unsigned long long)size,
                               (unsigned long long)w->durable);
    if (size == w->durable)
        return 0;
    if ((rc = view_load(&v, w->sd, w->path, err)) < 0)
        return rc;
    for (size_t i = 0; i < v.count; i++) {
        const segment *s = &v.segs[i];
        if (size >= s->offset + s->size)
            continue;
        if (size - s->offset > PART_MAX) {
            rc = berth_error_set(err, BERTH_EUNSUPPORTED,
                                 "s3: cutting %s %llu bytes into a part",
                                 w->path,
                                 (unsigned long long)(size - s->offset));
            break;
        }
        /* the bytes of this segment before the cut, then whatever follows
         * is put again from them */
        if ((rc = segment_get(&head, w->sd, s, 0, size - s->offset, err)) < 0)
            break;
        if (i == 0) {
            /* a cut in the base: one PUT of its first bytes, new token,
             * and every part goes with the old token */
            if ((rc = new_base(w, 0, head.ptr, head.len, err)) < 0)
                break;
            w->durable = head.len;
            berth_buf_clear(&w->pending);
        } else if (head.len == 0) {
            /* cut where the part starts: without it the rest does not
             * follow on */
            rc = delete_key(w->sd, s->key, err);
            w->durable = s->offset;
            berth_buf_clear(&w->pending);
        } else {
            w->durable = s->offset;
            berth_buf_clear(&w->pending);
            if ((rc = berth_buf_put(&w->pending, head.ptr, head.len, err)) ==
                0)
                rc = flush_part(w, err);
        }
        /* the parts after the cut are no longer the file's: they must go
         * before anything is appended at their offsets (else one would
         * follow on again) */
        for (size_t j = i + 1; rc == 0 && j < v.count; j++)
            if ((rc = delete_key(w->sd, v.segs[j].key, err)) < 0)
                w->failed = 1;
        break;
    }
    view_dispose(&v);
    berth_buf_dispose(&head);
    return rc;
}

static int s3_writer_cancel(berth_writer *bw, berth_error *err)
{
    s3_writer *w = (s3_writer *)bw;
    int rc;

    berth_buf_clear(&w->pending);
    rc = s3_remove(&w->sd->base, w->path, err);
    return rc == BERTH_ENOTFOUND ? 0 : rc;
}

static void s3_writer_free(berth_writer *bw)
{
    s3_writer *w = (s3_writer *)bw;

    if (!w)
        return;
    /* freed without a commit: what was written stays, as on a disk */
    flush_part(w, NULL);
    s3_lease_free(w->lease ? &w->lease->base : NULL);
    berth_buf_dispose(&w->pending);
    driver_unref(w->sd);
    free(w->path);
    free(w);
}

static int s3_writer_open(berth_driver *d, berth_writer **out,
                          const char *path, int append, berth_error *err)
{
    s3_driver *sd = (s3_driver *)d;
    berth_buf lock = BERTH_BUF_INIT;
    s3_writer *w;
    fileview v;
    int rc;

    *out = NULL;
    memset(&v, 0, sizeof(v));
    if ((w = calloc(1, sizeof(*w))) == NULL)
        return oom(err);
    w->base.write = s3_writer_write;
    w->base.size = s3_writer_size;
    w->base.commit = s3_writer_commit;
    w->base.cancel = s3_writer_cancel;
    w->base.free = s3_writer_free;
    w->base.truncate = s3_writer_truncate;
    w->sd = driver_ref(sd);
    if ((w->path = strdup(path)) == NULL) {
        rc = oom(err);
        goto done;
    }
    if ((rc = berth_buf_printf(&lock, err, "/~locks%s", path)) < 0 ||
        (rc = lock_lease(&w->lease, sd, lock.ptr, err)) < 0)
        goto done;
    if ((rc = is_dir(sd, path, err)) != 0) {
        if (rc > 0)
            rc = berth_error_set(err, BERTH_EEXISTS, "%s is a directory",
                                 path);
        goto done;
    }
    rc = append ? view_load(&v, sd, path, err) : BERTH_ENOTFOUND;
    if (rc == 0 && v.token[0] && w->lease->taken_over) {
        /* from a writer that let its lease expire, and may still put a
         * part: its parts made one object, marked with a new token */
        new_token(w);
        if ((rc = key_of(&lock, sd, path, err)) < 0 ||
            (rc = consolidate(sd, &v, lock.ptr, w->token, err)) < 0)
            goto done;
        w->durable = v.size;
    } else if (rc == 0 && v.token[0]) {
        /* parts already: go on after them, once those past a gap (a
         * truncation cut short) are gone */
        for (size_t i = 0; i < v.stale.count; i++)
            if ((rc = delete_key(sd, v.stale.items[i], err)) < 0)
                goto done;
        snprintf(w->token, sizeof(w->token), "%s", v.token);
        w->durable = v.size;
    } else if (rc == 0) {
        /* a plain object: marked, its bytes the base */
        if ((rc = new_base(w, 1, NULL, 0, err)) < 0)
            goto done;
        w->durable = v.size;
    } else if (rc == BERTH_ENOTFOUND) {
        /* a new file, or started again: an empty base, no parts */
        if ((rc = new_base(w, 0, NULL, 0, err)) < 0)
            goto done;
        drop_parts(sd, path); /* its token has none yet */
    } else {
        goto done;
    }
    *out = &w->base;
    w = NULL;
done:
    if (w) {
        s3_lease_free(w->lease ? &w->lease->base : NULL);
        driver_unref(w->sd);
        free(w->path);
        free(w);
    }
    view_dispose(&v);
    berth_buf_dispose(&lock);
    return rc;
}

static void s3_free(berth_driver *d)
{
    driver_unref((s3_driver *)d);
}

int berth_driver_s3_new(berth_driver **out, const berth_s3_options *opts,
                        berth_error *err)
{
    s3_config cfg;
    s3_driver *sd;
    const char *root;
    size_t len;
    int rc;

    *out = NULL;
    if (!opts || opts->version != BERTH_S3_OPTIONS_VERSION)
        return berth_error_set(err, BERTH_EINVAL,
                               "unknown s3 options version %u",
                               opts ? opts->version : 0);
    if ((sd = calloc(1, sizeof(*sd))) == NULL)
        return oom(err);
    atomic_init(&sd->refs, 1);
    /* rootdirectory without its slashes, as Distribution trims it */
    root = opts->root ? opts->root : "";
    while (*root == '/')
        root++;
    len = strlen(root);
    while (len && root[len - 1] == '/')
        len--;
    if ((sd->root = strdup(root)) == NULL) {
        free(sd);
        return oom(err);
    }
    sd->root[len] = '\0';
    memset(&cfg, 0, sizeof(cfg));
    cfg.endpoint = opts->endpoint;
    cfg.bucket = opts->bucket;
    cfg.region = opts->region ? opts->region : "us-east-1";
    cfg.access_key = opts->access_key;
    cfg.secret_key = opts->secret_key;
    cfg.attempts = opts->attempts;
    if ((rc = s3_client_new(&sd->client, &cfg, err)) < 0) {
        driver_unref(sd);
        return rc;
    }
    sd->base.version = BERTH_DRIVER_VERSION;
    sd->base.name = "s3";
    sd->base.get = s3_get;
    sd->base.put = s3_put;
    sd->base.reader = s3_reader_open;
    sd->base.writer = s3_writer_open;
    sd->base.stat = s3_stat;
    sd->base.move = s3_move;
    sd->base.remove = s3_remove;
    sd->base.free = s3_free;
    sd->base.import = s3_import;
    sd->base.lock = s3_lock;
    sd->base.put_if = s3_put_if;
    sd->base.list_page = s3_list_page;
    sd->base.send = s3_send_slot;
    *out = &sd->base;
    return 0;
}
