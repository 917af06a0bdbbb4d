/*
 * The S3 driver (berth/sys/driver.h): the layout's paths as keys of one
 * bucket under a root prefix, as CNCF Distribution's s3 driver keys them
 * (rootdirectory + path), so a bucket either registry wrote the other
 * serves. A directory is a key prefix: it exists while a key is under it.
 *
 * Work in progress (issue 15): get, put, conditional puts, stat, paged
 * listings, move (server-side copy, then delete), remove, readers, import,
 * leases and the hand-off (a presigned URL) are here; appending writers
 * (upload sessions) are not yet, and answer BERTH_EUNSUPPORTED.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

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
} s3_driver;

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
static int list_keys(berth_strlist *out, berth_buf *next, s3_driver *sd,
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
        if (rc == 1 && name.len > plen) {
            const char *s = delimited ? name.ptr + plen : name.ptr;
            if ((rc = berth_strlist_add(out, s, strlen(s), err)) < 0)
                goto done;
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
        if (rc == 1 && name.len > plen + 1)
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
        if ((rc = list_keys(out, &next, sd, prefix, 0, cursor.ptr, err)) < 0)
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
        (rc = list_keys(&one, &next, sd, prefix.ptr, 1, NULL, err)) == 0)
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
    if ((rc = list_keys(out, next, sd, prefix.ptr, 1, cursor, err)) < 0)
        goto done;
    berth_strlist_sort(out);
    /* no key under it: no such directory (a file has no children) */
    if (out->count == 0 && (!cursor || !*cursor) && strcmp(path, "/") != 0)
        rc = not_found(err, path);
done:
    berth_buf_dispose(&prefix);
    return rc;
}

/* ---- files ---- */

static int s3_get(berth_driver *d, berth_buf *out, const char *path,
                  size_t max, berth_error *err)
{
    s3_driver *sd = (s3_driver *)d;
    berth_buf key = BERTH_BUF_INIT;
    s3_response resp;
    int rc;

    if ((rc = key_of(&key, sd, path, err)) < 0)
        goto done;
    rc = request(sd, &resp, "GET", key.ptr, out, max, err);
    if (rc == BERTH_ETOOLARGE)
        berth_buf_clear(out);
    if (rc == 0 && resp.status != 200)
        rc = resp.status == 404 ? not_found(err, path)
                                : answer(err, &resp, "get", key.ptr);
done:
    berth_buf_dispose(&key);
    return rc;
}

static int put_with(s3_driver *sd, const char *path, const void *data,
                    size_t len, const s3_file_body *file,
                    const berth__sigv4_pair *headers, size_t nheaders,
                    berth_error *err)
{
    berth_buf key = BERTH_BUF_INIT;
    s3_request req;
    s3_response resp;
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
    if ((rc = s3_send(sd->client, &req, &resp, err)) == 0 &&
        resp.status != 200)
        rc = answer(err, &resp, "put", key.ptr);
done:
    berth_buf_dispose(&key);
    return rc;
}

static int s3_put(berth_driver *d, const char *path, const void *data,
                  size_t len, berth_error *err)
{
    return put_with((s3_driver *)d, path, data, len, NULL, NULL, 0, err);
}

/* RGW compares If-Match with the ETag unquoted (S3.md): it answers 412 to
 * the quoted form even when it matches. */
static int s3_put_if(berth_driver *d, const char *path, const void *data,
                     size_t len, const char *expected, berth_error *err)
{
    berth__sigv4_pair cond;

    if (expected) {
        cond.name = "if-match";
        cond.value = expected;
    } else {
        cond.name = "if-none-match";
        cond.value = "*";
    }
    return put_with((s3_driver *)d, path, data, len, NULL, &cond, 1, err);
}

static int head(s3_driver *sd, s3_response *resp, const char *path,
                berth_error *err)
{
    berth_buf key = BERTH_BUF_INIT;
    int rc;

    if ((rc = key_of(&key, sd, path, err)) == 0)
        rc = request(sd, resp, "HEAD", key.ptr, NULL, 0, err);
    berth_buf_dispose(&key);
    return rc;
}

static int s3_stat(berth_driver *d, berth_stat_info *out, const char *path,
                   berth_error *err)
{
    s3_driver *sd = (s3_driver *)d;
    s3_response resp;
    int rc;

    memset(out, 0, sizeof(*out));
    if (strcmp(path, "/") != 0) {
        if ((rc = head(sd, &resp, path, err)) < 0)
            return rc;
        if (resp.status == 200) {
            out->size = resp.length;
            out->mtime_ns = resp.mtime_ns;
            snprintf(out->version, sizeof(out->version), "%s", resp.etag);
            return 0;
        }
        if (resp.status != 404)
            return answer(err, &resp, "stat", path);
    }
    if ((rc = is_dir(sd, path, err)) < 0)
        return rc;
    if (!rc)
        return not_found(err, path);
    out->is_dir = 1;
    return 0;
}

/* ---- move and remove ---- */

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
    if (!found && keys.count == 0)
        rc = not_found(err, path);
done:
    berth_strlist_dispose(&keys);
    berth_buf_dispose(&key);
    berth_buf_dispose(&prefix);
    return rc;
}

/* The keys of a move: from's (a file's, or every one under a directory)
 * and where each goes. */
static int s3_move(berth_driver *d, const char *from, const char *to,
                   berth_error *err)
{
    s3_driver *sd = (s3_driver *)d;
    berth_strlist keys = BERTH_STRLIST_INIT;
    berth_buf fk = BERTH_BUF_INIT, tk = BERTH_BUF_INIT, dst = BERTH_BUF_INIT;
    berth_stat_info src, dest;
    size_t flen = strlen(from);
    int rc;

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
        if ((rc = copy_key(sd, fk.ptr, tk.ptr, err)) == 0)
            rc = delete_key(sd, fk.ptr, err);
        goto done;
    }
    if ((rc = berth_buf_put(&fk, "/", 1, err)) < 0 ||
        (rc = list_all_keys(&keys, sd, fk.ptr, err)) < 0)
        goto done;
    /* copy all, then delete all: a move cut short leaves both whole */
    for (size_t i = 0; i < keys.count; i++) {
        berth_buf_clear(&dst);
        if ((rc = berth_buf_printf(&dst, err, "%s/%s", tk.ptr,
                                   keys.items[i] + fk.len)) < 0 ||
            (rc = copy_key(sd, keys.items[i], dst.ptr, err)) < 0)
            goto done;
    }
    for (size_t i = 0; i < keys.count; i++)
        if ((rc = delete_key(sd, keys.items[i], err)) < 0)
            goto done;
done:
    berth_strlist_dispose(&keys);
    berth_buf_dispose(&fk);
    berth_buf_dispose(&tk);
    berth_buf_dispose(&dst);
    return rc;
}

/* ---- readers ---- */

/* Ranged GETs of what the reader opened (If-Match its ETag): a file
 * replaced meanwhile is an error, never a mix of two contents. */
typedef struct s3_reader {
    berth_reader base;
    s3_driver *sd;
    char *key;
    char etag[BERTH_STAT_VERSION_MAX];
    uint64_t offset, size;
} s3_reader;

static int s3_reader_read(berth_reader *r, void *buf, size_t cap,
                          size_t *n_out, berth_error *err)
{
    s3_reader *sr = (s3_reader *)r;
    berth__sigv4_pair hdr[2];
    berth_buf out = BERTH_BUF_INIT;
    char range[64];
    s3_request req;
    s3_response resp;
    uint64_t want;
    int rc;

    *n_out = 0;
    if (sr->offset >= sr->size || cap == 0)
        return 0;
    want = sr->size - sr->offset < cap ? sr->size - sr->offset : cap;
    snprintf(range, sizeof(range), "bytes=%llu-%llu",
             (unsigned long long)sr->offset,
             (unsigned long long)(sr->offset + want - 1));
    hdr[0].name = "range";
    hdr[0].value = range;
    hdr[1].name = "if-match";
    hdr[1].value = sr->etag;
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.key = sr->key;
    req.headers = hdr;
    req.nheaders = sr->etag[0] ? 2 : 1;
    req.out = &out;
    req.max = (size_t)want;
    if ((rc = s3_send(sr->sd->client, &req, &resp, err)) < 0)
        goto done;
    if (resp.status != 206 && resp.status != 200) {
        rc = resp.status == 412
                 ? berth_error_set(err, BERTH_EIO,
                                   "s3: %s changed under its reader", sr->key)
                 : answer(err, &resp, "read", sr->key);
        goto done;
    }
    memcpy(buf, out.ptr, out.len);
    *n_out = out.len;
    sr->offset += out.len;
done:
    berth_buf_dispose(&out);
    return rc;
}

static void s3_reader_free(berth_reader *r)
{
    s3_reader *sr = (s3_reader *)r;

    if (!sr)
        return;
    free(sr->key);
    free(sr);
}

static int s3_reader_open(berth_driver *d, berth_reader **out,
                          const char *path, uint64_t offset, berth_error *err)
{
    s3_driver *sd = (s3_driver *)d;
    berth_stat_info st;
    berth_buf key = BERTH_BUF_INIT;
    s3_reader *sr = NULL;
    int rc;

    *out = NULL;
    if ((rc = s3_stat(d, &st, path, err)) < 0)
        goto done;
    if (st.is_dir) {
        rc = not_found(err, path);
        goto done;
    }
    if (offset > st.size) {
        rc = berth_error_set(err, BERTH_ERANGE,
                             "offset %llu past the end of "
                             "%s",
                             (unsigned long long)offset, path);
        goto done;
    }
    if ((rc = key_of(&key, sd, path, err)) < 0)
        goto done;
    if ((sr = calloc(1, sizeof(*sr))) == NULL ||
        (sr->key = strdup(key.ptr)) == NULL) {
        rc = oom(err);
        goto done;
    }
    sr->base.read = s3_reader_read;
    sr->base.free = s3_reader_free;
    sr->sd = sd;
    snprintf(sr->etag, sizeof(sr->etag), "%s", st.version);
    sr->offset = offset;
    sr->size = st.size;
    *out = &sr->base;
    sr = NULL;
done:
    s3_reader_free(sr ? &sr->base : NULL);
    berth_buf_dispose(&key);
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
    if ((rc = put_with((s3_driver *)d, path, NULL, 0, &body, NULL, 0, err)) ==
        0)
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
    if ((rc = key_of(&key, sd, path, err)) == 0 &&
        (rc = s3_presign(where, sd->client, key.ptr, SEND_EXPIRES, err)) == 0)
        *kind = BERTH_SEND_URL;
    berth_buf_dispose(&key);
    return rc;
}

/* ---- leases ---- */

/*
 * A lease is an object at the lock's path holding its holder's token and
 * when it expires, created only where none is (If-None-Match), taken over
 * from an expired holder only over the version seen (If-Match): the store
 * decides who holds it, whichever node asks.
 */
typedef struct s3_lease {
    berth_lease base;
    s3_client *client; /* borrowed: a lease is freed before its driver */
    char *key;
    char token[64];
} s3_lease;

static void s3_lease_free(berth_lease *l)
{
    s3_lease *sl = (s3_lease *)l;
    berth_buf body = BERTH_BUF_INIT;
    s3_request req;
    s3_response resp;

    if (!sl)
        return;
    /* RGW ignores conditions on DELETE: look that it is still ours */
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.key = sl->key;
    req.out = &body;
    req.max = 4096;
    if (s3_send(sl->client, &req, &resp, NULL) == 0 && resp.status == 200 &&
        strstr(body.ptr, sl->token)) {
        req.method = "DELETE";
        req.out = NULL;
        s3_send(sl->client, &req, &resp, NULL);
    }
    berth_buf_dispose(&body);
    free(sl->key);
    free(sl);
}

static int s3_lock(berth_driver *d, berth_lease **out, const char *path,
                   berth_error *err)
{
    s3_driver *sd = (s3_driver *)d;
    berth_buf body = BERTH_BUF_INIT, current = BERTH_BUF_INIT,
              key = BERTH_BUF_INIT;
    berth_stat_info st;
    s3_lease *sl = NULL;
    struct timespec now;
    long long until = 0;
    const char *exp;
    int rc;

    *out = NULL;
    clock_gettime(CLOCK_REALTIME, &now);
    if ((sl = calloc(1, sizeof(*sl))) == NULL) {
        rc = oom(err);
        goto done;
    }
    snprintf(sl->token, sizeof(sl->token), "%lx-%lx-%lx",
             (unsigned long)getpid(), (unsigned long)now.tv_sec,
             (unsigned long)now.tv_nsec ^ (unsigned long)(uintptr_t)sl);
    if ((rc = berth_buf_printf(&body, err,
                               "{\"holder\":\"%s\",\"expires\":"
                               "%lld}",
                               sl->token,
                               (long long)now.tv_sec + LEASE_SECONDS)) < 0)
        goto done;
    rc = s3_put_if(d, path, body.ptr, body.len, NULL, err);
    if (rc == BERTH_ECHANGED) {
        /* held: taken over only when its holder let it expire */
        if ((rc = s3_stat(d, &st, path, err)) < 0 ||
            (rc = s3_get(d, &current, path, 4096, err)) < 0)
            goto busy;
        exp = strstr(current.ptr, "\"expires\":");
        until = exp ? strtoll(exp + 10, NULL, 10) : 0;
        if (until > (long long)now.tv_sec) {
            rc = berth_error_set(err, BERTH_EBUSY, "lock %s is held", path);
            goto done;
        }
        rc = s3_put_if(d, path, body.ptr, body.len, st.version, err);
    busy:
        if (rc == BERTH_ECHANGED || rc == BERTH_ENOTFOUND)
            rc = berth_error_set(err, BERTH_EBUSY, "lock %s is held", path);
    }
    if (rc < 0)
        goto done;
    if ((rc = key_of(&key, sd, path, err)) < 0 ||
        (sl->key = strdup(key.ptr)) == NULL) {
        rc = rc < 0 ? rc : oom(err);
        goto done;
    }
    sl->client = sd->client;
    sl->base.free = s3_lease_free;
    *out = &sl->base;
    sl = NULL;
done:
    if (sl) {
        free(sl->key);
        free(sl);
    }
    berth_buf_dispose(&body);
    berth_buf_dispose(&current);
    berth_buf_dispose(&key);
    return rc;
}

/* ---- writers (not yet) ---- */

static int s3_writer_open(berth_driver *d, berth_writer **out,
                          const char *path, int append, berth_error *err)
{
    (void)d;
    (void)append;
    *out = NULL;
    return berth_error_set(err, BERTH_EUNSUPPORTED,
                           "s3: appending writers are not there yet: %s",
                           path);
}

static void s3_free(berth_driver *d)
{
    s3_driver *sd = (s3_driver *)d;

    if (!sd)
        return;
    s3_client_free(sd->client);
    free(sd->root);
    free(sd);
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
        s3_free(&sd->base);
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
