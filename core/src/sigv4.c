/*
 * AWS Signature Version 4, as S3 (and Ceph RGW) check it:
 *
 *   canonical request = method \n path \n query \n headers \n
 *                       signed header names \n payload hash
 *   string to sign    = AWS4-HMAC-SHA256 \n date \n scope \n
 *                       hex(sha256(canonical request))
 *   signature         = hex(hmac(signing key, string to sign)), the key
 *                       an HMAC chain over day, region, service and
 *                       "aws4_request" from "AWS4" + secret
 *
 * The path is taken as given (S3 signs it encoded once and does not
 * normalise it); query parameters are encoded and sorted here, by name
 * and then by value, after encoding, as the service sorts them; header
 * names are lower-cased and sorted, values trimmed with inner runs of
 * blanks made one space.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "berth/digest.h"
#include "sigv4.h"

#define ALGORITHM "AWS4-HMAC-SHA256"
/* 9999-12-31T23:59:59Z: x-amz-date has four digits of year */
#define TIME_MAX INT64_C(253402300799)

static const char hex_upper[] = "0123456789ABCDEF";
static const char hex_lower[] = "0123456789abcdef";

/* One header or query parameter, its strings in the arena: offsets while
 * the arena grows, pointers once it is complete. */
typedef struct entry {
    size_t name_off, value_off;
    const char *name, *value;
    size_t order; /* place in the request: repeated headers keep it */
} entry;

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
           c == '~';
}

int berth__sigv4_uri_encode(berth_buf *out, const char *s, size_t len,
                            int keep_slash, berth_error *err)
{
    size_t i, n = 0;
    char *p;
    int rc;

    if (len > SIZE_MAX / 3)
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    for (i = 0; i < len; i++)
        n += unreserved((unsigned char)s[i]) || (keep_slash && s[i] == '/')
                 ? 1
                 : 3;
    if ((rc = berth_buf_grow(out, n, err)) < 0)
        return rc;
    p = out->ptr + out->len;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (unreserved(c) || (keep_slash && c == '/')) {
            *p++ = (char)c;
        } else {
            *p++ = '%';
            *p++ = hex_upper[c >> 4];
            *p++ = hex_upper[c & 15];
        }
    }
    out->len += n;
    out->ptr[out->len] = '\0';
    return 0;
}

static int is_hex_upper(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

/* RFC 9110 token characters: what a header name may be made of. */
static int is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') || (c != 0 && strchr("!#$%&'*+-.^_`|~", c));
}

/* A part of the credential scope or Credential= (it is '/' and ','
 * separated): printable ASCII without either. */
static int scope_part_ok(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f ||
            *s == '/' || *s == ',')
            return 0;
    return 1;
}

static int payload_hash_ok(const char *h)
{
    size_t i;

    if (strcmp(h, BERTH_SIGV4_UNSIGNED_PAYLOAD) == 0)
        return 1;
    for (i = 0; i < 64; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
            return 0;
    return h[64] == '\0';
}

/* What can be told wrong before any work, so that a request S3 would
 * refuse with SignatureDoesNotMatch is refused here with a reason. */
static int check_request(const berth__sigv4_creds *cr,
                         const berth__sigv4_request *req, int presign,
                         unsigned expires, berth_error *err)
{
    const char *p;

    assert(cr->access_key && cr->secret_key && cr->region && cr->service);
    assert(req->method && req->path);
    assert(req->nquery == 0 || req->query);
    assert(req->nheaders == 0 || req->headers);
    if (!scope_part_ok(cr->access_key) || !scope_part_ok(cr->region) ||
        !scope_part_ok(cr->service))
        return berth_error_set(err, BERTH_EINVAL,
                               "sigv4: access key, region and service must "
                               "be printable, without '/' or ','");
    if (req->method[0] == '\0')
        return berth_error_set(err, BERTH_EINVAL, "sigv4: empty method");
    for (p = req->method; *p; p++)
        if (*p < 'A' || *p > 'Z')
            return berth_error_set(err, BERTH_EINVAL, "sigv4: bad method: %s",
                                   req->method);
    if (presign && strcmp(req->method, "GET") != 0 &&
        strcmp(req->method, "HEAD") != 0)
        return berth_error_set(err, BERTH_EINVAL,
                               "sigv4: presigning %s (GET or HEAD only)",
                               req->method);
    /* signed as given: a raw key here would sign what curl does not send */
    if (req->path[0] != '/')
        return berth_error_set(err, BERTH_EINVAL,
                               "sigv4: path must start with '/': %s",
                               req->path);
    for (p = req->path; *p; p++) {
        if (unreserved((unsigned char)*p) || *p == '/')
            continue;
        if (*p == '%' && is_hex_upper((unsigned char)p[1]) &&
            is_hex_upper((unsigned char)p[2])) {
            p += 2;
            continue;
        }
        return berth_error_set(err, BERTH_EINVAL,
                               "sigv4: path not uri-encoded: %s", req->path);
    }
    if (!presign &&
        (req->payload_hash == NULL || !payload_hash_ok(req->payload_hash)))
        return berth_error_set(err, BERTH_EINVAL,
                               "sigv4: payload hash must be hex sha-256 or "
                               "UNSIGNED-PAYLOAD");
    if (req->time < 0 || req->time > TIME_MAX)
        return berth_error_set(err, BERTH_EINVAL,
                               "sigv4: time out of range: %lld",
                               (long long)req->time);
    if (presign && (expires < 1 || expires > BERTH_SIGV4_EXPIRES_MAX))
        return berth_error_set(err, BERTH_EINVAL,
                               "sigv4: expires %u not in 1..%d", expires,
                               BERTH_SIGV4_EXPIRES_MAX);
    return 0;
}

/* The value of a header as signed: trimmed, inner runs of blanks one
 * space. Control characters are refused: a line break would end the
 * header on the wire where the signature says it goes on. */
static int put_header_value(berth_buf *b, const char *name, const char *v,
                            berth_error *err)
{
    size_t len = strlen(v), start;
    int blank = 0, rc;
    char *p;

    if ((rc = berth_buf_grow(b, len + 1, err)) < 0)
        return rc;
    start = b->len;
    p = b->ptr + b->len;
    for (; *v; v++) {
        unsigned char c = (unsigned char)*v;

        if (c == ' ' || c == '\t') {
            blank = 1;
            continue;
        }
        if (c < 0x20 || c == 0x7f)
            return berth_error_set(err, BERTH_EINVAL,
                                   "sigv4: control character in header %s",
                                   name);
        if (blank && p > b->ptr + start)
            *p++ = ' ';
        blank = 0;
        *p++ = (char)c;
    }
    *p++ = '\0';
    b->len = (size_t)(p - b->ptr);
    return 0;
}

/* Put a string and its NUL into the arena, noting where it starts. */
static int arena_put(berth_buf *arena, size_t *off, const char *s, size_t len,
                     berth_error *err)
{
    *off = arena->len;
    return berth_buf_put(arena, s, len + 1, err);
}

static int arena_encode(berth_buf *arena, size_t *off, const char *s,
                        berth_error *err)
{
    int rc;

    *off = arena->len;
    if ((rc = berth__sigv4_uri_encode(arena, s, strlen(s), 0, err)) < 0)
        return rc;
    return berth_buf_put(arena, "", 1, err);
}

static int header_cmp(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    if (c != 0)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int query_cmp(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    return c != 0 ? c : strcmp(x->value, y->value);
}

static int add_header(entry *e, size_t order, berth_buf *arena,
                      const char *name, const char *value, berth_error *err)
{
    size_t i;
    int rc;

    if ((rc = arena_put(arena, &e->name_off, name, strlen(name), err)) < 0)
        return rc;
    for (i = e->name_off; arena->ptr[i]; i++)
        if (arena->ptr[i] >= 'A' && arena->ptr[i] <= 'Z')
            arena->ptr[i] = (char)(arena->ptr[i] - 'A' + 'a');
    e->value_off = arena->len;
    e->order = order;
    return put_header_value(arena, name, value ? value : "", err);
}

/*
 * The request's headers and the signer's own (x-amz-content-sha256 and
 * x-amz-date, which presigning puts in the query instead) lower-cased and
 * trimmed into hs[0..*nh_out), their strings in arena.
 */
static int collect_headers(entry *hs, size_t *nh_out, berth_buf *arena,
                           const berth__sigv4_request *req, int presign,
                           const char *amz_date, berth_error *err)
{
    static const char *const own[] = { "x-amz-date", "x-amz-content-sha256",
                                       "authorization" };
    size_t i, k, nh = 0;
    const char *p;
    int rc;

    for (i = 0; i < req->nheaders; i++) {
        const berth__sigv4_pair *h = &req->headers[i];

        assert(h->name);
        if (h->name[0] == '\0')
            return berth_error_set(err, BERTH_EINVAL,
                                   "sigv4: empty header name");
        for (p = h->name; *p; p++)
            if (!is_tchar((unsigned char)*p))
                return berth_error_set(err, BERTH_EINVAL,
                                       "sigv4: bad header name: %s", h->name);
        for (k = 0; k < sizeof(own) / sizeof(own[0]); k++)
            if (strcasecmp(h->name, own[k]) == 0)
                return berth_error_set(err, BERTH_EINVAL,
                                       "sigv4: header %s is the signer's",
                                       own[k]);
        if ((rc = add_header(&hs[nh], nh, arena, h->name, h->value, err)) < 0)
            return rc;
        nh++;
    }
    if (!presign && !req->no_content_sha256) {
        rc = add_header(&hs[nh], nh, arena, "x-amz-content-sha256",
                        req->payload_hash, err);
        if (rc < 0)
            return rc;
        nh++;
    }
    if (!presign) {
        rc = add_header(&hs[nh], nh, arena, "x-amz-date", amz_date, err);
        if (rc < 0)
            return rc;
        nh++;
    }
    *nh_out = nh;
    return 0;
}

static void fix_pointers(entry *es, size_t n, const berth_buf *arena)
{
    size_t i;

    for (i = 0; i < n; i++) {
        es[i].name = arena->ptr + es[i].name_off;
        es[i].value = arena->ptr + es[i].value_off;
    }
}

static int signing_key(unsigned char key[32], berth__sigv4_cache *cache,
                       const berth__sigv4_creds *cr, const char *date,
                       berth_error *err)
{
    const char *parts[4] = { date, cr->region, cr->service, cr->secret_key };
    char id[BERTH__SIGV4_CACHE_ID_MAX];
    unsigned char a[32], b[32];
    berth_buf k0 = BERTH_BUF_INIT;
    size_t id_len = 0, i, n;
    int rc;

    /* the cache's identity: every input of the key, secret included, so a
     * rotated secret is never signed with under the old key */
    for (i = 0; cache && i < 4; i++) {
        n = strlen(parts[i]) + 1;
        if (n > sizeof(id) - id_len) {
            id_len = 0;
            break;
        }
        memcpy(id + id_len, parts[i], n);
        id_len += n;
    }
    if (id_len > 0 && cache->id_len == id_len &&
        memcmp(cache->id, id, id_len) == 0) {
        memcpy(key, cache->key, 32);
        rc = 0;
        goto done;
    }
    if ((rc = berth_buf_put(&k0, "AWS4", 4, err)) < 0 ||
        (rc = berth_buf_put(&k0, cr->secret_key, strlen(cr->secret_key),
                            err)) < 0)
        goto done;
    if ((rc = berth_hmac_sha256(a, k0.ptr, k0.len, date, strlen(date), err)) <
            0 ||
        (rc = berth_hmac_sha256(b, a, 32, cr->region, strlen(cr->region),
                                err)) < 0 ||
        (rc = berth_hmac_sha256(a, b, 32, cr->service, strlen(cr->service),
                                err)) < 0 ||
        (rc = berth_hmac_sha256(key, a, 32, "aws4_request", 12, err)) < 0)
        goto done;
    if (id_len > 0) {
        memcpy(cache->id, id, id_len);
        cache->id_len = id_len;
        memcpy(cache->key, key, 32);
    }
done:
    if (k0.ptr)
        explicit_bzero(k0.ptr, k0.cap);
    berth_buf_dispose(&k0);
    explicit_bzero(id, sizeof(id));
    explicit_bzero(a, sizeof(a));
    explicit_bzero(b, sizeof(b));
    return rc;
}

/* Join sorted headers: "name:v1,v2\n" per name into canonical, the names
 * with ';' into signed_headers. */
static int join_headers(berth_buf *canonical, berth_buf *signed_headers,
                        const entry *hs, size_t nh, berth_error *err)
{
    size_t i;
    int rc;

    for (i = 0; i < nh; i++) {
        int first = i == 0 || strcmp(hs[i].name, hs[i - 1].name) != 0;
        int last = i + 1 == nh || strcmp(hs[i].name, hs[i + 1].name) != 0;

        if (first) {
            rc = berth_buf_printf(canonical, err, "%s:", hs[i].name);
            if (rc == 0)
                rc = berth_buf_printf(signed_headers, err, "%s%s",
                                      i == 0 ? "" : ";", hs[i].name);
        } else {
            rc = berth_buf_put(canonical, ",", 1, err);
        }
        if (rc == 0)
            rc = berth_buf_put(canonical, hs[i].value, strlen(hs[i].value),
                               err);
        if (rc == 0 && last)
            rc = berth_buf_put(canonical, "\n", 1, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void signed_clear(berth__sigv4_signed *out)
{
    berth_buf_clear(&out->authorization);
    berth_buf_clear(&out->signed_headers);
    berth_buf_clear(&out->query);
    berth_buf_clear(&out->canonical_request);
    berth_buf_clear(&out->string_to_sign);
    out->signature[0] = '\0';
    out->amz_date[0] = '\0';
}

/* Both forms: presign puts the signature in the query, else it goes in
 * the Authorization value. */
static int sign_request(berth__sigv4_signed *out, berth__sigv4_cache *cache,
                        const berth__sigv4_creds *cr,
                        const berth__sigv4_request *req, int presign,
                        unsigned expires, berth_error *err)
{
    berth_buf arena = BERTH_BUF_INIT, scope = BERTH_BUF_INIT;
    berth_buf headers = BERTH_BUF_INIT, cred = BERTH_BUF_INIT;
    entry *hs = NULL, *qs = NULL;
    size_t nh = 0, nq = 0, i;
    unsigned char key[32], mac[32];
    char date[9], expires_str[16];
    const char *payload;
    berth_digest d;
    time_t t;
    struct tm tm;
    int rc, has_host = 0;

    signed_clear(out);
    if ((rc = check_request(cr, req, presign, expires, err)) < 0)
        goto done;
    payload = presign ? BERTH_SIGV4_UNSIGNED_PAYLOAD : req->payload_hash;
    t = (time_t)req->time;
    gmtime_r(&t, &tm);
    strftime(out->amz_date, sizeof(out->amz_date), "%Y%m%dT%H%M%SZ", &tm);
    memcpy(date, out->amz_date, 8);
    date[8] = '\0';
    if ((rc = berth_buf_printf(&scope, err, "%s/%s/%s/aws4_request", date,
                               cr->region, cr->service)) < 0)
        goto done;

    hs = calloc(req->nheaders + 2, sizeof(*hs));
    qs = calloc(req->nquery + 5, sizeof(*qs));
    if (hs == NULL || qs == NULL) {
        rc = berth_error_set(err, BERTH_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = collect_headers(hs, &nh, &arena, req, presign, out->amz_date,
                              err)) < 0)
        goto done;
    /* used before the query's strings move the arena */
    fix_pointers(hs, nh, &arena);
    qsort(hs, nh, sizeof(*hs), header_cmp);
    for (i = 0; i < nh; i++)
        has_host |= strcmp(hs[i].name, "host") == 0;
    if (!has_host) {
        rc = berth_error_set(err, BERTH_EINVAL, "sigv4: no host header");
        goto done;
    }
    if ((rc = join_headers(&headers, &out->signed_headers, hs, nh, err)) < 0)
        goto done;

    /* query: the request's, and presign's X-Amz-* (but the signature) */
    for (i = 0; i < req->nquery; i++) {
        const berth__sigv4_pair *q = &req->query[i];

        assert(q->name);
        if (presign && strncmp(q->name, "X-Amz-", 6) == 0) {
            rc = berth_error_set(err, BERTH_EINVAL,
                                 "sigv4: query parameter %s is the signer's",
                                 q->name);
            goto done;
        }
        if ((rc = arena_encode(&arena, &qs[nq].name_off, q->name, err)) < 0 ||
            (rc = arena_encode(&arena, &qs[nq].value_off,
                               q->value ? q->value : "", err)) < 0)
            goto done;
        nq++;
    }
    if (presign) {
        const char *names[5] = { "X-Amz-Algorithm", "X-Amz-Credential",
                                 "X-Amz-Date", "X-Amz-Expires",
                                 "X-Amz-SignedHeaders" };
        const char *values[5];

        snprintf(expires_str, sizeof(expires_str), "%u", expires);
        if ((rc = berth_buf_printf(&cred, err, "%s/%s", cr->access_key,
                                   scope.ptr)) < 0)
            goto done;
        values[0] = ALGORITHM;
        values[1] = cred.ptr;
        values[2] = out->amz_date;
        values[3] = expires_str;
        values[4] = out->signed_headers.ptr;
        for (i = 0; i < 5; i++, nq++)
            if ((rc = arena_encode(&arena, &qs[nq].name_off, names[i], err)) <
                    0 ||
                (rc = arena_encode(&arena, &qs[nq].value_off, values[i],
                                   err)) < 0)
                goto done;
    }
    fix_pointers(qs, nq, &arena);
    qsort(qs, nq, sizeof(*qs), query_cmp);
    for (i = 0; i < nq; i++)
        if ((rc = berth_buf_printf(&out->query, err, "%s%s=%s",
                                   i == 0 ? "" : "&", qs[i].name,
                                   qs[i].value)) < 0)
            goto done;

    if ((rc = berth_buf_printf(
             &out->canonical_request, err, "%s\n%s\n%s\n%s\n%s\n%s",
             req->method, req->path, nq ? out->query.ptr : "", headers.ptr,
             out->signed_headers.ptr, payload)) < 0)
        goto done;
    if ((rc = berth_digest_compute(&d, BERTH_DIGEST_SHA256,
                                   out->canonical_request.ptr,
                                   out->canonical_request.len, err)) < 0)
        goto done;
    if ((rc = berth_buf_printf(&out->string_to_sign, err, "%s\n%s\n%s\n%s",
                               ALGORITHM, out->amz_date, scope.ptr,
                               berth_digest_hex(&d))) < 0)
        goto done;
    if ((rc = signing_key(key, cache, cr, date, err)) < 0)
        goto done;
    if ((rc = berth_hmac_sha256(mac, key, sizeof(key),
                                out->string_to_sign.ptr,
                                out->string_to_sign.len, err)) < 0)
        goto done;
    for (i = 0; i < 32; i++) {
        out->signature[2 * i] = hex_lower[mac[i] >> 4];
        out->signature[2 * i + 1] = hex_lower[mac[i] & 15];
    }
    out->signature[64] = '\0';
    if (presign)
        rc = berth_buf_printf(&out->query, err, "%sX-Amz-Signature=%s",
                              nq ? "&" : "", out->signature);
    else
        rc = berth_buf_printf(&out->authorization, err,
                              ALGORITHM
                              " Credential=%s/%s, SignedHeaders=%s, "
                              "Signature=%s",
                              cr->access_key, scope.ptr,
                              out->signed_headers.ptr, out->signature);
done:
    if (rc < 0)
        signed_clear(out);
    explicit_bzero(key, sizeof(key));
    free(hs);
    free(qs);
    berth_buf_dispose(&arena);
    berth_buf_dispose(&scope);
    berth_buf_dispose(&headers);
    berth_buf_dispose(&cred);
    return rc;
}

int berth__sigv4_sign(berth__sigv4_signed *out, berth__sigv4_cache *cache,
                      const berth__sigv4_creds *creds,
                      const berth__sigv4_request *req, berth_error *err)
{
    return sign_request(out, cache, creds, req, 0, 0, err);
}

int berth__sigv4_presign(berth__sigv4_signed *out, berth__sigv4_cache *cache,
                         const berth__sigv4_creds *creds,
                         const berth__sigv4_request *req, unsigned expires,
                         berth_error *err)
{
    return sign_request(out, cache, creds, req, 1, expires, err);
}

void berth__sigv4_signed_dispose(berth__sigv4_signed *s)
{
    berth_buf_dispose(&s->authorization);
    berth_buf_dispose(&s->signed_headers);
    berth_buf_dispose(&s->query);
    berth_buf_dispose(&s->canonical_request);
    berth_buf_dispose(&s->string_to_sign);
    s->signature[0] = '\0';
    s->amz_date[0] = '\0';
}

void berth__sigv4_cache_clear(berth__sigv4_cache *c)
{
    explicit_bzero(c, sizeof(*c));
}
