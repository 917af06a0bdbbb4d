/*
 * Digests, streaming hashers and HMAC-SHA256. The only file that includes
 * mbedTLS's hash headers.
 *
 * SHA-256 runs on mbedTLS or on the SHA-NI block function; SHA-384/512 run
 * on mbedTLS. Either way the state saves to Go's MarshalBinary encoding
 * (crypto/sha256, crypto/sha512), the format CNCF Distribution keeps under
 * _uploads/<id>/hashstates/<alg>/<offset>:
 *
 *   sha256: "sha\x03" | h[8] as u32 BE | block[64] | length u64 BE  = 108
 *   sha384: "sha\x04" | h[8] as u64 BE | block[128] | length u64 BE = 204
 *   sha512: "sha\x07" (otherwise as sha384)                          = 204
 *
 * block holds the length % blocksize pending bytes, then zeros.
 */
#include <stdlib.h>
#include <string.h>

#include <mbedtls/md.h>
#include <mbedtls/sha256.h>
#include <mbedtls/sha512.h>
#include <mbedtls/version.h>

#include "berth/digest.h"
#include "sha256_shani.h"

#if defined(MBEDTLS_SHA256_ALT) || defined(MBEDTLS_SHA512_ALT)
#error "save/restore reads mbedTLS context fields; *_ALT hides them"
#endif

/* 3.x made the context fields private and dropped the _ret suffix. */
#ifndef MBEDTLS_PRIVATE
#define MBEDTLS_PRIVATE(member) member
#endif
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#define sha256_starts mbedtls_sha256_starts
#define sha256_update mbedtls_sha256_update
#define sha256_finish mbedtls_sha256_finish
#define sha512_starts mbedtls_sha512_starts
#define sha512_update mbedtls_sha512_update
#define sha512_finish mbedtls_sha512_finish
#else
#define sha256_starts mbedtls_sha256_starts_ret
#define sha256_update mbedtls_sha256_update_ret
#define sha256_finish mbedtls_sha256_finish_ret
#define sha512_starts mbedtls_sha512_starts_ret
#define sha512_update mbedtls_sha512_update_ret
#define sha512_finish mbedtls_sha512_finish_ret
#endif

#define SHA256_STATE_LEN 108
#define SHA512_STATE_LEN 204
/* mbedTLS 2.28 counts a single update's length in 32 bits; feed less. */
#define MBEDTLS_CHUNK ((size_t)1 << 30)

/* SHA-256 on the SHA-NI block function; berth keeps the buffering. */
struct shani_ctx {
    uint32_t h[8];
    unsigned char buf[64];
    uint64_t len; /* bytes fed; len % 64 of them wait in buf */
};

struct berth_hasher {
    berth_digest_algo algo;
    berth_hasher_impl impl; /* resolved: MBEDTLS or SHANI, never AUTO */
    union {
        mbedtls_sha256_context sha256;
        mbedtls_sha512_context sha512;
        struct shani_ctx ni;
    } u;
};

static const uint32_t sha256_iv[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static const char hexdigits[] = "0123456789abcdef";

static const struct {
    const char *name;
    size_t name_len;
    size_t hex_len;
} algos[] = {
    [BERTH_DIGEST_SHA256] = { "sha256", 6, 64 },
    [BERTH_DIGEST_SHA384] = { "sha384", 6, 96 },
    [BERTH_DIGEST_SHA512] = { "sha512", 6, 128 },
};

static int algo_known(berth_digest_algo algo)
{
    return algo == BERTH_DIGEST_SHA256 || algo == BERTH_DIGEST_SHA384 ||
           algo == BERTH_DIGEST_SHA512;
}

/* ---- digest strings ---------------------------------------------------- */

/*
 * Quote untrusted input for a one-line message: printable ASCII as is,
 * anything else as \xNN, cut to about 80 bytes.
 */
static const char *quote_input(char *out, size_t cap, const char *s,
                               size_t len)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (o + 8 >= cap) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
            out[o++] = (char)ch;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hexdigits[ch >> 4];
            out[o++] = hexdigits[ch & 15];
        }
    }
    out[o] = '\0';
    return out;
}

int berth_digest_parse(berth_digest *out, const char *s, size_t len,
                       berth_error *err)
{
    char quoted[88];
    const char *colon;
    const char *why;
    berth_digest_algo algo;
    size_t hex_len;

    colon = s ? memchr(s, ':', len) : NULL;
    if (colon == NULL) {
        why = "expected algorithm:hex";
        goto invalid;
    }
    algo = berth_digest_algo_from_name(s, (size_t)(colon - s));
    if (algo == BERTH_DIGEST_NONE) {
        why = "unsupported algorithm";
        goto invalid;
    }
    hex_len = len - (size_t)(colon - s) - 1;
    if (hex_len != algos[algo].hex_len) {
        why = "wrong hex length";
        goto invalid;
    }
    for (size_t i = 0; i < hex_len; i++) {
        char ch = colon[1 + i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) {
            why = "not lowercase hex";
            goto invalid;
        }
    }
    out->algo = algo;
    memcpy(out->str, s, len);
    out->str[len] = '\0';
    return 0;

invalid:
    return berth_error_set(
        err, BERTH_EDIGEST_INVALID, "invalid digest \"%s\": %s",
        quote_input(quoted, sizeof(quoted), s ? s : "", s ? len : 0), why);
}

const char *berth_digest_hex(const berth_digest *d)
{
    const char *colon = strchr(d->str, ':');
    return colon ? colon + 1 : d->str;
}

const char *berth_digest_algo_name(berth_digest_algo algo)
{
    return algo_known(algo) ? algos[algo].name : NULL;
}

berth_digest_algo berth_digest_algo_from_name(const char *name, size_t len)
{
    for (int a = BERTH_DIGEST_SHA256; a <= BERTH_DIGEST_SHA512; a++) {
        if (len == algos[a].name_len && memcmp(name, algos[a].name, len) == 0)
            return (berth_digest_algo)a;
    }
    return BERTH_DIGEST_NONE;
}

/* "algo:" + lowercase hex of raw. */
static void digest_format(berth_digest *out, berth_digest_algo algo,
                          const unsigned char *raw, size_t raw_len)
{
    char *p = out->str;

    memcpy(p, algos[algo].name, algos[algo].name_len);
    p += algos[algo].name_len;
    *p++ = ':';
    for (size_t i = 0; i < raw_len; i++) {
        *p++ = hexdigits[raw[i] >> 4];
        *p++ = hexdigits[raw[i] & 15];
    }
    *p = '\0';
    out->algo = algo;
}

/* ---- big-endian helpers ------------------------------------------------ */

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void put_be64(unsigned char *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

static uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

static uint64_t get_be64(const unsigned char *p)
{
    return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

/* ---- SHA-NI streaming -------------------------------------------------- */

static void shani_init(struct shani_ctx *c)
{
    memcpy(c->h, sha256_iv, sizeof(c->h));
    memset(c->buf, 0, sizeof(c->buf));
    c->len = 0;
}

static void shani_update(struct shani_ctx *c, const unsigned char *p,
                         size_t n)
{
    size_t fill = (size_t)(c->len % 64);

    c->len += n;
    if (fill > 0) {
        size_t take = 64 - fill < n ? 64 - fill : n;
        memcpy(c->buf + fill, p, take);
        p += take;
        n -= take;
        if (fill + take < 64)
            return;
        berth_sha256__shani_blocks(c->h, c->buf, 1);
    }
    if (n >= 64) {
        berth_sha256__shani_blocks(c->h, p, n / 64);
        p += n - n % 64;
        n %= 64;
    }
    if (n > 0)
        memcpy(c->buf, p, n);
}

/* Pad and compress a copy, so c itself stays as it was. */
static void shani_final(const struct shani_ctx *c, unsigned char out[32])
{
    uint32_t h[8];
    unsigned char tail[128];
    size_t fill = (size_t)(c->len % 64);
    size_t total = fill < 56 ? 64 : 128;

    memcpy(h, c->h, sizeof(h));
    memset(tail, 0, sizeof(tail));
    memcpy(tail, c->buf, fill);
    tail[fill] = 0x80;
    put_be64(tail + total - 8, c->len << 3);
    berth_sha256__shani_blocks(h, tail, total / 64);
    for (int i = 0; i < 8; i++)
        put_be32(out + 4 * i, h[i]);
}

/* ---- hashers ------------------------------------------------------------ */

static int impl_resolve(berth_hasher_impl *out, berth_digest_algo algo,
                        berth_hasher_impl impl, berth_error *err)
{
    if (impl != BERTH_HASHER_AUTO && impl != BERTH_HASHER_MBEDTLS &&
        impl != BERTH_HASHER_SHANI)
        return berth_error_set(err, BERTH_EINVAL,
                               "unknown hasher implementation: %d",
                               (int)impl);
    if (algo != BERTH_DIGEST_SHA256) {
        if (impl == BERTH_HASHER_SHANI)
            return berth_error_set(err, BERTH_EUNSUPPORTED,
                                   "sha-ni does not implement %s",
                                   algos[algo].name);
        *out = BERTH_HASHER_MBEDTLS;
        return 0;
    }
    if (impl == BERTH_HASHER_AUTO)
        impl = berth_sha256__shani_supported() ? BERTH_HASHER_SHANI
                                               : BERTH_HASHER_MBEDTLS;
    else if (impl == BERTH_HASHER_SHANI && !berth_sha256__shani_supported())
        return berth_error_set(err, BERTH_EUNSUPPORTED,
                               "sha-ni is not available on this cpu");
    *out = impl;
    return 0;
}

/*
 * Set up h in place (heap or stack). On failure h holds nothing that needs
 * freeing.
 */
static int hasher_init(berth_hasher *h, berth_digest_algo algo,
                       berth_hasher_impl impl, berth_error *err)
{
    int rc;

    if (!algo_known(algo))
        return berth_error_set(err, BERTH_EINVAL,
                               "unknown digest algorithm: %d", (int)algo);
    if ((rc = impl_resolve(&h->impl, algo, impl, err)) < 0)
        return rc;
    h->algo = algo;
    if (h->impl == BERTH_HASHER_SHANI) {
        shani_init(&h->u.ni);
        return 0;
    }
    if (algo == BERTH_DIGEST_SHA256) {
        mbedtls_sha256_init(&h->u.sha256);
        rc = sha256_starts(&h->u.sha256, 0);
    } else {
        mbedtls_sha512_init(&h->u.sha512);
        rc = sha512_starts(&h->u.sha512, algo == BERTH_DIGEST_SHA384);
    }
    if (rc != 0) {
        if (algo == BERTH_DIGEST_SHA256)
            mbedtls_sha256_free(&h->u.sha256);
        else
            mbedtls_sha512_free(&h->u.sha512);
        return berth_error_set(err, BERTH_ERROR, "mbedtls %s start: -0x%04x",
                               algos[algo].name, (unsigned)-rc);
    }
    return 0;
}

/* Release what hasher_init set up, without freeing h itself. */
static void hasher_dispose(berth_hasher *h)
{
    if (h->impl == BERTH_HASHER_SHANI)
        memset(&h->u.ni, 0, sizeof(h->u.ni));
    else if (h->algo == BERTH_DIGEST_SHA256)
        mbedtls_sha256_free(&h->u.sha256);
    else
        mbedtls_sha512_free(&h->u.sha512);
}

int berth_hasher_new(berth_hasher **out, berth_digest_algo algo,
                     berth_hasher_impl impl, berth_error *err)
{
    berth_hasher *h;
    int rc;

    *out = NULL;
    if ((h = malloc(sizeof(*h))) == NULL)
        return berth_error_set(err, BERTH_ENOMEM, "out of memory: hasher");
    if ((rc = hasher_init(h, algo, impl, err)) < 0) {
        free(h);
        return rc;
    }
    *out = h;
    return 0;
}

int berth_hasher_update(berth_hasher *h, const void *data, size_t len,
                        berth_error *err)
{
    const unsigned char *p = data;
    int rc = 0;

    if (len == 0)
        return 0;
    if (h->impl == BERTH_HASHER_SHANI) {
        shani_update(&h->u.ni, p, len);
        return 0;
    }
    while (len > 0 && rc == 0) {
        size_t n = len < MBEDTLS_CHUNK ? len : MBEDTLS_CHUNK;
        if (h->algo == BERTH_DIGEST_SHA256)
            rc = sha256_update(&h->u.sha256, p, n);
        else
            rc = sha512_update(&h->u.sha512, p, n);
        p += n;
        len -= n;
    }
    if (rc != 0)
        return berth_error_set(err, BERTH_ERROR, "mbedtls %s update: -0x%04x",
                               algos[h->algo].name, (unsigned)-rc);
    return 0;
}

/* The digest of what h was fed, raw, into out (64 bytes hold any); h is
 * left as it was. */
static int hasher_finish(unsigned char *out, size_t *len_out,
                         const berth_hasher *h, berth_error *err)
{
    int rc;

    *len_out = h->algo == BERTH_DIGEST_SHA256   ? 32
               : h->algo == BERTH_DIGEST_SHA384 ? 48
                                                : 64;
    if (h->impl == BERTH_HASHER_SHANI) {
        shani_final(&h->u.ni, out);
        return 0;
    }
    /* Finish a clone: the caller may keep feeding h. */
    if (h->algo == BERTH_DIGEST_SHA256) {
        mbedtls_sha256_context c;
        mbedtls_sha256_init(&c);
        mbedtls_sha256_clone(&c, &h->u.sha256);
        rc = sha256_finish(&c, out);
        mbedtls_sha256_free(&c);
    } else {
        mbedtls_sha512_context c;
        mbedtls_sha512_init(&c);
        mbedtls_sha512_clone(&c, &h->u.sha512);
        rc = sha512_finish(&c, out);
        mbedtls_sha512_free(&c);
    }
    if (rc != 0)
        return berth_error_set(err, BERTH_ERROR, "mbedtls %s finish: -0x%04x",
                               algos[h->algo].name, (unsigned)-rc);
    return 0;
}

int berth_hasher_digest(berth_digest *out, const berth_hasher *h,
                        berth_error *err)
{
    unsigned char raw[64];
    size_t raw_len;
    int rc;

    if ((rc = hasher_finish(raw, &raw_len, h, err)) < 0)
        return rc;
    digest_format(out, h->algo, raw, raw_len);
    return 0;
}

uint64_t berth_hasher_size(const berth_hasher *h)
{
    if (h->impl == BERTH_HASHER_SHANI)
        return h->u.ni.len;
    if (h->algo == BERTH_DIGEST_SHA256)
        return (uint64_t)h->u.sha256.MBEDTLS_PRIVATE(total)[1] << 32 |
               h->u.sha256.MBEDTLS_PRIVATE(total)[0];
    return h->u.sha512.MBEDTLS_PRIVATE(total)[0];
}

berth_digest_algo berth_hasher_algo(const berth_hasher *h)
{
    return h->algo;
}

berth_hasher_impl berth_hasher_impl_of(const berth_hasher *h)
{
    return h->impl;
}

int berth_hasher_save(void *buf, size_t *len_inout, const berth_hasher *h,
                      berth_error *err)
{
    unsigned char *p = buf;
    uint64_t len = berth_hasher_size(h);
    size_t need, block, fill;
    const unsigned char *pending;

    need = h->algo == BERTH_DIGEST_SHA256 ? SHA256_STATE_LEN
                                          : SHA512_STATE_LEN;
    if (*len_inout < need) {
        *len_inout = need;
        return berth_error_set(err, BERTH_EBUFS,
                               "buffer too small: %s hasher state needs %zu "
                               "bytes",
                               algos[h->algo].name, need);
    }
    memcpy(p, "sha", 3);
    if (h->algo == BERTH_DIGEST_SHA256) {
        const uint32_t *state = h->impl == BERTH_HASHER_SHANI
                                    ? h->u.ni.h
                                    : h->u.sha256.MBEDTLS_PRIVATE(state);
        p[3] = 0x03;
        for (int i = 0; i < 8; i++)
            put_be32(p + 4 + 4 * i, state[i]);
        p += 4 + 32;
        block = 64;
        pending = h->impl == BERTH_HASHER_SHANI
                      ? h->u.ni.buf
                      : h->u.sha256.MBEDTLS_PRIVATE(buffer);
    } else {
        p[3] = h->algo == BERTH_DIGEST_SHA384 ? 0x04 : 0x07;
        for (int i = 0; i < 8; i++)
            put_be64(p + 4 + 8 * i, h->u.sha512.MBEDTLS_PRIVATE(state)[i]);
        p += 4 + 64;
        block = 128;
        pending = h->u.sha512.MBEDTLS_PRIVATE(buffer);
    }
    fill = (size_t)(len % block);
    memcpy(p, pending, fill);
    memset(p + fill, 0, block - fill);
    put_be64(p + block, len);
    *len_inout = need;
    return 0;
}

int berth_hasher_restore(berth_hasher **out, const void *buf, size_t len,
                         berth_hasher_impl impl, berth_error *err)
{
    const unsigned char *p = buf;
    berth_hasher *h = NULL;
    berth_digest_algo algo;
    size_t need, block, fill;
    uint64_t total;
    int rc;

    *out = NULL;
    if (len < 4 || memcmp(p, "sha", 3) != 0)
        return berth_error_set(err, BERTH_EINVAL,
                               "invalid hasher state: bad magic");
    switch (p[3]) {
    case 0x03:
        algo = BERTH_DIGEST_SHA256;
        need = SHA256_STATE_LEN;
        break;
    case 0x04:
        algo = BERTH_DIGEST_SHA384;
        need = SHA512_STATE_LEN;
        break;
    case 0x07:
        algo = BERTH_DIGEST_SHA512;
        need = SHA512_STATE_LEN;
        break;
    default:
        return berth_error_set(err, BERTH_EINVAL,
                               "invalid hasher state: bad magic");
    }
    if (len != need)
        return berth_error_set(err, BERTH_EINVAL,
                               "invalid %s hasher state: %zu bytes, want %zu",
                               algos[algo].name, len, need);
    if ((rc = berth_hasher_new(&h, algo, impl, err)) < 0)
        return rc;

    block = algo == BERTH_DIGEST_SHA256 ? 64 : 128;
    total = get_be64(p + need - 8);
    fill = (size_t)(total % block);
    if (h->impl == BERTH_HASHER_SHANI) {
        for (int i = 0; i < 8; i++)
            h->u.ni.h[i] = get_be32(p + 4 + 4 * i);
        memcpy(h->u.ni.buf, p + 4 + 32, fill);
        h->u.ni.len = total;
    } else if (algo == BERTH_DIGEST_SHA256) {
        mbedtls_sha256_context *c = &h->u.sha256;
        for (int i = 0; i < 8; i++)
            c->MBEDTLS_PRIVATE(state)[i] = get_be32(p + 4 + 4 * i);
        memcpy(c->MBEDTLS_PRIVATE(buffer), p + 4 + 32, fill);
        c->MBEDTLS_PRIVATE(total)[0] = (uint32_t)total;
        c->MBEDTLS_PRIVATE(total)[1] = (uint32_t)(total >> 32);
    } else {
        mbedtls_sha512_context *c = &h->u.sha512;
        for (int i = 0; i < 8; i++)
            c->MBEDTLS_PRIVATE(state)[i] = get_be64(p + 4 + 8 * i);
        memcpy(c->MBEDTLS_PRIVATE(buffer), p + 4 + 64, fill);
        c->MBEDTLS_PRIVATE(total)[0] = total;
        c->MBEDTLS_PRIVATE(total)[1] = 0;
    }
    *out = h;
    return 0;
}

void berth_hasher_free(berth_hasher *h)
{
    if (h == NULL)
        return;
    hasher_dispose(h);
    free(h);
}

const char *berth_hasher_auto_name(void)
{
    return berth_sha256__shani_supported() ? "sha-ni" : "mbedtls";
}

int berth_digest_compute(berth_digest *out, berth_digest_algo algo,
                         const void *data, size_t len, berth_error *err)
{
    berth_hasher h;
    int rc;

    if ((rc = hasher_init(&h, algo, BERTH_HASHER_AUTO, err)) < 0)
        return rc;
    if ((rc = berth_hasher_update(&h, data, len, err)) < 0)
        goto done;
    rc = berth_hasher_digest(out, &h, err);
done:
    hasher_dispose(&h);
    return rc;
}

/* ---- HMAC --------------------------------------------------------------- */

int berth_hmac_sha256(unsigned char out[BERTH_HMAC_SHA256_LEN],
                      const void *key, size_t key_len, const void *msg,
                      size_t msg_len, berth_error *err)
{
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(
        MBEDTLS_MD_SHA256);

    if (md == NULL ||
        mbedtls_md_hmac(md, key, key_len, msg, msg_len, out) != 0)
        return berth_error_set(err, BERTH_ERROR, "hmac-sha256 failed");
    return 0;
}
