/*
 * AWS Signature Version 4 (sigv4.c), for the S3 driver: the Authorization
 * header of a request, a presigned URL's query, and the URI encoding both
 * rely on. Pure functions of their arguments (the time is one), no HTTP;
 * not part of the API (the library exports only BERTH_API).
 *
 *   berth__sigv4_signed s = BERTH__SIGV4_SIGNED_INIT;
 *   berth__sigv4_pair hdr[] = { { "host", "127.0.0.1:7480" } };
 *   berth__sigv4_request req = { "GET", "/bucket/blobs/...", NULL, 0,
 *                                hdr, 1, BERTH_SIGV4_UNSIGNED_PAYLOAD,
 *                                time(NULL), 0 };
 *   rc = berth__sigv4_sign(&s, &cache, &creds, &req, err);
 *   send: "?" s.query (when not empty), Authorization: s.authorization,
 *         x-amz-date: s.amz_date, x-amz-content-sha256: req.payload_hash
 *   berth__sigv4_signed_dispose(&s);
 */
#ifndef BERTH_SIGV4_H
#define BERTH_SIGV4_H

#include <stddef.h>
#include <stdint.h>

#include "berth/buf.h"

/* x-amz-date: "20150830T123600Z" */
#define BERTH_SIGV4_DATE_LEN 16
#define BERTH_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
/* The longest a presigned URL may live (AWS's limit: 7 days). */
#define BERTH_SIGV4_EXPIRES_MAX 604800

typedef struct berth__sigv4_pair {
    const char *name;
    const char *value; /* NULL is "" */
} berth__sigv4_pair;

typedef struct berth__sigv4_creds {
    const char *access_key;
    const char *secret_key;
    const char *region;  /* "us-east-1" (RGW takes any, but must agree) */
    const char *service; /* "s3" */
} berth__sigv4_creds;

typedef struct berth__sigv4_request {
    const char *method; /* "GET" */
    /* the URI path as sent, each segment encoded once and '/' kept
     * (berth__sigv4_uri_encode); S3 signs it as it is, never normalised */
    const char *path;
    /* query parameters, raw (encoded and sorted here); any order, names
     * may repeat; a parameter without a value ("?uploads") has "" */
    const berth__sigv4_pair *query;
    size_t nquery;
    /* headers to sign, host among them, any case and order; a name may
     * repeat (values joined with ',' in the order given). Not x-amz-date,
     * x-amz-content-sha256 or authorization: the signer adds the first
     * two itself. */
    const berth__sigv4_pair *headers;
    size_t nheaders;
    /* lowercase hex SHA-256 of the body, or BERTH_SIGV4_UNSIGNED_PAYLOAD;
     * ignored by presign (always UNSIGNED-PAYLOAD) */
    const char *payload_hash;
    int64_t time; /* seconds since the epoch */
    /* Services other than S3 do not want x-amz-content-sha256: set to
     * leave it unsigned (the generic AWS test suite). */
    int no_content_sha256;
} berth__sigv4_request;

/*
 * What a signature is made of. The canonical request and the string to
 * sign are kept because S3 (and RGW) answer SignatureDoesNotMatch with
 * theirs: comparing the two says which line differs.
 */
typedef struct berth__sigv4_signed {
    berth_buf authorization;  /* the Authorization value (sign only) */
    berth_buf signed_headers; /* "host;range;x-amz-content-sha256;..." */
    /* the canonical query: the URL's query as is (presign: with the
     * X-Amz-* parameters and X-Amz-Signature last) */
    berth_buf query;
    berth_buf canonical_request;
    berth_buf string_to_sign;
    char signature[65];                      /* lowercase hex */
    char amz_date[BERTH_SIGV4_DATE_LEN + 1]; /* x-amz-date value */
} berth__sigv4_signed;

#define BERTH__SIGV4_SIGNED_INIT                                             \
    {                                                                        \
        BERTH_BUF_INIT, BERTH_BUF_INIT, BERTH_BUF_INIT, BERTH_BUF_INIT,      \
            BERTH_BUF_INIT, "", ""                                           \
    }

void berth__sigv4_signed_dispose(berth__sigv4_signed *s);

/*
 * The signing key depends only on the day, region, service and secret:
 * a cache keeps the last one, so a day costs one HMAC chain (four HMACs)
 * instead of one per request. Not locked: one per thread, or under the
 * caller's lock. It holds a copy of the secret (credentials that do not
 * fit are not cached); berth__sigv4_cache_clear wipes it.
 */
#define BERTH__SIGV4_CACHE_ID_MAX 256
typedef struct berth__sigv4_cache {
    size_t id_len; /* 0: empty */
    /* "date\0region\0service\0secret" the key was derived for */
    char id[BERTH__SIGV4_CACHE_ID_MAX];
    unsigned char key[32];
} berth__sigv4_cache;

#define BERTH__SIGV4_CACHE_INIT                                              \
    {                                                                        \
        0, { 0 },                                                            \
        {                                                                    \
            0                                                                \
        }                                                                    \
    }

void berth__sigv4_cache_clear(berth__sigv4_cache *c);

/*
 * Sign req for the Authorization header: out (emptied first) gets the
 * header's value, x-amz-date, the signed headers and the canonical query.
 * cache may be NULL.
 * @return 0, BERTH_EINVAL (a request that cannot be signed as given: no
 *         host, a path not encoded, a header value with a line break...)
 *         or BERTH_ENOMEM.
 */
int berth__sigv4_sign(berth__sigv4_signed *out, berth__sigv4_cache *cache,
                      const berth__sigv4_creds *creds,
                      const berth__sigv4_request *req, berth_error *err);

/*
 * Presign req (GET or HEAD, for a redirect) to be valid for expires
 * seconds (1..BERTH_SIGV4_EXPIRES_MAX) from req->time: out->query is the
 * URL's whole query, X-Amz-Signature last; the headers signed are those
 * given (host alone, usually), and the payload is UNSIGNED-PAYLOAD.
 * @return 0, BERTH_EINVAL or BERTH_ENOMEM.
 */
int berth__sigv4_presign(berth__sigv4_signed *out, berth__sigv4_cache *cache,
                         const berth__sigv4_creds *creds,
                         const berth__sigv4_request *req, unsigned expires,
                         berth_error *err);

/*
 * Append s[0..len) to out URI-encoded as SigV4 wants: A-Z a-z 0-9 - _ . ~
 * stay, every other byte is %XX (uppercase hex); '/' stays when
 * keep_slash (an object key made a path), else it is %2F (a query value).
 * @return 0 or BERTH_ENOMEM.
 */
int berth__sigv4_uri_encode(berth_buf *out, const char *s, size_t len,
                            int keep_slash, berth_error *err);

#endif
