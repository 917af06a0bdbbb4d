/*
 * Tokens and passwords: JWT verification (RS256, ES256) with mbedTLS's
 * public-key layer, htpasswd files of bcrypt hashes checked with libcrypt.
 *
 * Keys end up in one form whatever their source: a DER SubjectPublicKeyInfo
 * (a PEM public key as parsed, the SPKI cut out of a certificate, or one
 * built from a JWK), parsed by mbedtls_pk_parse_public_key. The key's kind
 * (RSA, or EC on P-256) and its ids are read from that DER here, so nothing
 * depends on mbedTLS struct fields that 3.x made private. SHA-256 comes from
 * digest.c (the one file with mbedTLS's hash headers).
 *
 * No message set here contains a token, a password or a hash.
 */
#include <crypt.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <mbedtls/asn1.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>
#include <mbedtls/version.h>
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_USE_PSA_CRYPTO)
/* 3.x built to route pk through PSA needs the PSA core started first. */
#include <psa/crypto.h>
#define BERTH_PSA_INIT 1
#endif

#include "internal.h"
#include "berth/auth.h"

#define KEY_FILE_MAX (1u << 20)
#define HTPASSWD_MAX (16u << 20)
#define RSA_MIN_BITS 2048

/* ---- small helpers ------------------------------------------------------ */

/* Compare without an early exit: the time depends on len only. */
static int ct_equal(const void *a, const void *b, size_t len)
{
    const volatile unsigned char *x = a;
    const volatile unsigned char *y = b;
    unsigned char diff = 0;

    for (size_t i = 0; i < len; i++)
        diff |= (unsigned char)(x[i] ^ y[i]);
    return diff == 0;
}

/* Overwrite memory that held a secret, in a way the compiler keeps. */
static void wipe(void *p, size_t len)
{
    volatile unsigned char *q = p;

    while (len--)
        *q++ = 0;
}

/* Whole file into a NUL-terminated buffer of at most max bytes. */
static int read_file(berth_buf *out, const char *path, size_t max,
                     const char *what, berth_error *err)
{
    FILE *f = fopen(path, "rb");
    char chunk[8192];
    size_t n;
    int rc = 0;

    if (f == NULL)
        return berth_error_sys(err, BERTH_EINVAL, errno, "%s %s", what, path);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (out->len + n > max) {
            rc = berth_error_set(err, BERTH_EINVAL,
                                 "%s %s: larger than %zu bytes", what, path,
                                 max);
            goto done;
        }
        if ((rc = berth_buf_put(out, chunk, n, err)) < 0)
            goto done;
    }
    if (ferror(f)) {
        rc = berth_error_sys(err, BERTH_EINVAL, errno, "%s %s", what, path);
        goto done;
    }
    rc = berth_buf_grow(out, 1, err); /* NUL terminated, even when empty */
    if (rc == 0)
        out->ptr[out->len] = '\0';
done:
    wipe(chunk, sizeof(chunk));
    fclose(f);
    return rc;
}

/* ---- SHA-256 through digest.c ------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int sha256(unsigned char out[32], const void *data, size_t len,
                  berth_error *err)
{
    berth_digest d;
    const char *hex;
    int rc;

    if ((rc = berth_digest_compute(&d, BERTH_DIGEST_SHA256, data, len, err)) <
        0)
        return rc;
    hex = berth_digest_hex(&d);
    for (int i = 0; i < 32; i++)
        out[i] = (unsigned char)(hexval(hex[2 * i]) << 4 |
                                 hexval(hex[2 * i + 1]));
    return 0;
}

/* ---- keys ---------------------------------------------------------------- */

enum key_kind { KEY_RSA = 1, KEY_EC256 = 2 };

struct auth_key {
    mbedtls_pk_context pk;
    enum key_kind kind;
    char kid[128];       /* from JWKS, or "" */
    char libtrust[64];   /* 12 groups of 4 base32 characters, ':' between */
    char thumbprint[48]; /* RFC 7638, base64url of a SHA-256 */
};

struct berth_auth_keys {
    struct auth_key **keys;
    size_t count;
    size_t cap;
};

static const unsigned char OID_RSA[] = { 0x2a, 0x86, 0x48, 0x86, 0xf7,
                                         0x0d, 0x01, 0x01, 0x01 };
static const unsigned char OID_EC[] = { 0x2a, 0x86, 0x48, 0xce,
                                        0x3d, 0x02, 0x01 };
static const unsigned char OID_P256[] = { 0x2a, 0x86, 0x48, 0xce,
                                          0x3d, 0x03, 0x01, 0x07 };

/* SubjectPublicKeyInfo of a P-256 key, up to the 65-byte point. */
static const unsigned char EC256_SPKI_PREFIX[] = {
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00
};

/* The public numbers of an SPKI: RSA n and e, or the P-256 x and y. */
struct spki_parts {
    enum key_kind kind;
    const unsigned char *a; /* n or x */
    size_t alen;
    const unsigned char *b; /* e or y */
    size_t blen;
};

static void strip_zeros(const unsigned char **p, size_t *len)
{
    while (*len > 1 && (*p)[0] == 0) {
        (*p)++;
        (*len)--;
    }
}

/* Read the kind and the numbers of a DER SubjectPublicKeyInfo. */
static int spki_parse(struct spki_parts *out, const unsigned char *der,
                      size_t len, const char *what, berth_error *err)
{
    unsigned char *p = (unsigned char *)der;
    const unsigned char *end = der + len;
    const unsigned char *alg_end, *oid;
    size_t n, oid_len;

    memset(out, 0, sizeof(*out));
    if (mbedtls_asn1_get_tag(&p, end, &n,
                             MBEDTLS_ASN1_CONSTRUCTED |
                                 MBEDTLS_ASN1_SEQUENCE) != 0 ||
        mbedtls_asn1_get_tag(&p, end, &n,
                             MBEDTLS_ASN1_CONSTRUCTED |
                                 MBEDTLS_ASN1_SEQUENCE) != 0)
        goto bad;
    alg_end = p + n;
    if (mbedtls_asn1_get_tag(&p, alg_end, &oid_len, MBEDTLS_ASN1_OID) != 0)
        goto bad;
    oid = p;
    p += oid_len;
    if (oid_len == sizeof(OID_RSA) && memcmp(oid, OID_RSA, oid_len) == 0) {
        out->kind = KEY_RSA;
    } else if (oid_len == sizeof(OID_EC) &&
               memcmp(oid, OID_EC, oid_len) == 0) {
        if (mbedtls_asn1_get_tag(&p, alg_end, &n, MBEDTLS_ASN1_OID) != 0 ||
            n != sizeof(OID_P256) || memcmp(p, OID_P256, n) != 0)
            return berth_error_set(err, BERTH_EINVAL,
                                   "%s: EC key not on curve P-256", what);
        out->kind = KEY_EC256;
    } else {
        return berth_error_set(err, BERTH_EINVAL,
                               "%s: key type not supported (RSA or EC "
                               "P-256 only)",
                               what);
    }
    p = (unsigned char *)alg_end;
    if (mbedtls_asn1_get_tag(&p, end, &n, MBEDTLS_ASN1_BIT_STRING) != 0 ||
        n < 2 || p[0] != 0)
        goto bad;
    p++;
    n--;
    if (out->kind == KEY_EC256) {
        if (n != 65 || p[0] != 0x04)
            return berth_error_set(err, BERTH_EINVAL,
                                   "%s: EC point not uncompressed", what);
        out->a = p + 1;
        out->alen = 32;
        out->b = p + 33;
        out->blen = 32;
        return 0;
    }
    end = p + n;
    if (mbedtls_asn1_get_tag(&p, end, &n,
                             MBEDTLS_ASN1_CONSTRUCTED |
                                 MBEDTLS_ASN1_SEQUENCE) != 0 ||
        mbedtls_asn1_get_tag(&p, end, &out->alen, MBEDTLS_ASN1_INTEGER) != 0)
        goto bad;
    out->a = p;
    p += out->alen;
    if (mbedtls_asn1_get_tag(&p, end, &out->blen, MBEDTLS_ASN1_INTEGER) != 0)
        goto bad;
    out->b = p;
    strip_zeros(&out->a, &out->alen);
    strip_zeros(&out->b, &out->blen);
    return 0;
bad:
    return berth_error_set(err, BERTH_EINVAL, "%s: malformed public key",
                           what);
}

/* libtrust's key id: base32 of the first 240 bits of SHA-256(SPKI), in
 * twelve groups of four joined by ':' (what Distribution's token servers
 * write in "kid"). */
static int libtrust_id(char out[64], const unsigned char *der, size_t len,
                       berth_error *err)
{
    static const char B32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    unsigned char h[32];
    char b32[49];
    int rc, o = 0;

    if ((rc = sha256(h, der, len, err)) < 0)
        return rc;
    /* 30 bytes = 48 base32 characters, 5 bytes per 8 characters */
    for (int i = 0; i < 30; i += 5) {
        uint64_t v = 0;
        for (int j = 0; j < 5; j++)
            v = v << 8 | h[i + j];
        for (int j = 7; j >= 0; j--)
            b32[o++] = B32[(v >> (5 * j)) & 31];
    }
    b32[48] = '\0';
    o = 0;
    for (int i = 0; i < 48; i++) {
        if (i > 0 && i % 4 == 0)
            out[o++] = ':';
        out[o++] = b32[i];
    }
    out[o] = '\0';
    return 0;
}

/* RFC 7638: SHA-256 of the required members, sorted, no whitespace. */
static int jwk_thumbprint(char out[48], const struct spki_parts *sp,
                          berth_error *err)
{
    berth_buf json = BERTH_BUF_INIT, a = BERTH_BUF_INIT, b = BERTH_BUF_INIT;
    berth_buf t = BERTH_BUF_INIT;
    unsigned char h[32];
    int rc;

    if ((rc = berth_base64_encode(&a, sp->a, sp->alen, BERTH_BASE64_URL,
                                  err)) < 0 ||
        (rc = berth_base64_encode(&b, sp->b, sp->blen, BERTH_BASE64_URL,
                                  err)) < 0)
        goto done;
    if (sp->kind == KEY_RSA)
        rc = berth_buf_printf(&json, err,
                              "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}",
                              b.ptr, a.ptr);
    else
        rc = berth_buf_printf(
            &json, err,
            "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\","
            "\"y\":\"%s\"}",
            a.ptr, b.ptr);
    if (rc < 0)
        goto done;
    if ((rc = sha256(h, json.ptr, json.len, err)) < 0 ||
        (rc = berth_base64_encode(&t, h, sizeof(h), BERTH_BASE64_URL, err)) <
            0)
        goto done;
    memcpy(out, t.ptr, t.len + 1); /* 43 characters and the NUL */
done:
    berth_buf_dispose(&a);
    berth_buf_dispose(&b);
    berth_buf_dispose(&t);
    berth_buf_dispose(&json);
    return rc;
}

static void key_free(struct auth_key *k)
{
    if (k == NULL)
        return;
    mbedtls_pk_free(&k->pk);
    free(k);
}

/* A key from a DER SubjectPublicKeyInfo; kid may be NULL. */
static int key_from_spki(struct auth_key **out, const unsigned char *der,
                         size_t len, const char *kid, const char *what,
                         berth_error *err)
{
    struct auth_key *k;
    struct spki_parts sp;
    int rc;

    *out = NULL;
    if ((rc = spki_parse(&sp, der, len, what, err)) < 0)
        return rc;
    if ((k = calloc(1, sizeof(*k))) == NULL)
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    mbedtls_pk_init(&k->pk);
    k->kind = sp.kind;
    if (mbedtls_pk_parse_public_key(&k->pk, der, len) != 0) {
        rc = berth_error_set(err, BERTH_EINVAL, "%s: invalid public key",
                             what);
        goto done;
    }
    if (sp.kind == KEY_RSA &&
        (mbedtls_pk_get_type(&k->pk) != MBEDTLS_PK_RSA ||
         mbedtls_pk_get_bitlen(&k->pk) < RSA_MIN_BITS)) {
        rc = berth_error_set(err, BERTH_EINVAL,
                             "%s: RSA key of %zu bits (at least %d)", what,
                             mbedtls_pk_get_bitlen(&k->pk), RSA_MIN_BITS);
        goto done;
    }
    if (sp.kind == KEY_EC256 &&
        !mbedtls_pk_can_do(&k->pk, MBEDTLS_PK_ECDSA)) {
        rc = berth_error_set(err, BERTH_EINVAL, "%s: invalid EC key", what);
        goto done;
    }
    if (kid != NULL) {
        if (strlen(kid) >= sizeof(k->kid)) {
            rc = berth_error_set(err, BERTH_EINVAL, "%s: kid too long", what);
            goto done;
        }
        strcpy(k->kid, kid);
    }
    if ((rc = libtrust_id(k->libtrust, der, len, err)) < 0 ||
        (rc = jwk_thumbprint(k->thumbprint, &sp, err)) < 0)
        goto done;
    *out = k;
done:
    if (rc < 0)
        key_free(k);
    return rc;
}

/* Keys are added in batches (one file): all or none. */
static int keys_push(berth_auth_keys *ks, struct auth_key *k,
                     berth_error *err)
{
    if (ks->count == ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 4;
        struct auth_key **n = realloc(ks->keys, cap * sizeof(*n));
        if (n == NULL)
            return berth_error_set(err, BERTH_ENOMEM, "out of memory");
        ks->keys = n;
        ks->cap = cap;
    }
    ks->keys[ks->count++] = k;
    return 0;
}

static void keys_truncate(berth_auth_keys *ks, size_t count)
{
    while (ks->count > count)
        key_free(ks->keys[--ks->count]);
}

int berth_auth_keys_new(berth_auth_keys **out, berth_error *err)
{
#ifdef BERTH_PSA_INIT
    if (psa_crypto_init() != PSA_SUCCESS)
        return berth_error_set(err, BERTH_ERROR, "psa_crypto_init failed");
#endif
    *out = calloc(1, sizeof(**out));
    if (*out == NULL)
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    return 0;
}

size_t berth_auth_keys_count(const berth_auth_keys *ks)
{
    return ks->count;
}

void berth_auth_keys_info(const berth_auth_keys *ks, size_t i,
                          const char **alg_out, const char **kid_out,
                          const char **libtrust_out,
                          const char **thumbprint_out)
{
    const struct auth_key *k = ks->keys[i];

    if (alg_out)
        *alg_out = k->kind == KEY_RSA ? "RS256" : "ES256";
    if (kid_out)
        *kid_out = k->kid;
    if (libtrust_out)
        *libtrust_out = k->libtrust;
    if (thumbprint_out)
        *thumbprint_out = k->thumbprint;
}

void berth_auth_keys_free(berth_auth_keys *ks)
{
    if (ks == NULL)
        return;
    keys_truncate(ks, 0);
    free(ks->keys);
    free(ks);
}

/* The SubjectPublicKeyInfo inside a DER certificate (its TBSCertificate's
 * seventh field, after the optional version). */
static int cert_spki(const unsigned char **spki, size_t *spki_len,
                     const unsigned char *der, size_t len)
{
    unsigned char *p = (unsigned char *)der;
    const unsigned char *end = der + len;
    const unsigned char *start;
    size_t n;
    int seq = MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE;

    if (mbedtls_asn1_get_tag(&p, end, &n, seq) != 0 ||
        mbedtls_asn1_get_tag(&p, end, &n, seq) != 0)
        return -1;
    end = p + n;
    if (p < end && *p == (MBEDTLS_ASN1_CONTEXT_SPECIFIC |
                          MBEDTLS_ASN1_CONSTRUCTED | 0)) {
        if (mbedtls_asn1_get_tag(&p, end, &n, *p) != 0)
            return -1;
        p += n;
    }
    if (mbedtls_asn1_get_tag(&p, end, &n, MBEDTLS_ASN1_INTEGER) != 0)
        return -1;
    p += n;
    for (int i = 0; i < 4; i++) { /* signature, issuer, validity, subject */
        if (mbedtls_asn1_get_tag(&p, end, &n, seq) != 0)
            return -1;
        p += n;
    }
    start = p;
    if (mbedtls_asn1_get_tag(&p, end, &n, seq) != 0)
        return -1;
    *spki = start;
    *spki_len = (size_t)(p - start) + n;
    return 0;
}

/* The next PEM block in s: its label (between "-----BEGIN " and "-----")
 * and its base64 body (between the BEGIN and END lines). -> 1, 0 at the
 * end, -1 when malformed. */
static int pem_next(const char **label, size_t *label_len, const char **body,
                    size_t *body_len, const char **rest, const char *s)
{
    const char *b = strstr(s, "-----BEGIN ");
    const char *l, *e, *f, *g;

    if (b == NULL)
        return 0;
    l = b + 11;
    e = strstr(l, "-----");
    if (e == NULL || memchr(l, '\n', (size_t)(e - l)) != NULL)
        return -1;
    f = strstr(e + 5, "-----END ");
    if (f == NULL)
        return -1;
    g = strstr(f + 9, "-----");
    if (g == NULL)
        return -1;
    /* the END line names the same label */
    if ((size_t)(g - (f + 9)) != (size_t)(e - l) ||
        memcmp(f + 9, l, (size_t)(e - l)) != 0)
        return -1;
    *label = l;
    *label_len = (size_t)(e - l);
    *body = e + 5;
    *body_len = (size_t)(f - (e + 5));
    *rest = g + 5;
    return 1;
}

static int label_is(const char *label, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(label, want, len) == 0;
}

/* A PEM body (base64 lines, no headers) to DER. */
static int pem_decode(berth_buf *out, const char *body, size_t len,
                      berth_error *err)
{
    berth_buf b64 = BERTH_BUF_INIT;
    int rc = 0;

    for (size_t i = 0; i < len && rc == 0; i++) {
        char c = body[i];
        if (c == ':') /* RFC 1421 headers: an encrypted block */
            rc = -1;
        else if (!isspace((unsigned char)c))
            rc = berth_buf_put(&b64, &c, 1, err);
    }
    if (rc == 0)
        rc = berth_base64_decode(out, b64.ptr ? b64.ptr : "", b64.len, 0,
                                 NULL);
    berth_buf_dispose(&b64);
    return rc;
}

/* Re-encode a parsed key as SPKI DER (PKCS#1 "RSA PUBLIC KEY" included). */
static int pk_to_spki(berth_buf *out, mbedtls_pk_context *pk,
                      berth_error *err)
{
    unsigned char tmp[2048];
    int n = mbedtls_pk_write_pubkey_der(pk, tmp, sizeof(tmp));

    if (n <= 0)
        return berth_error_set(err, BERTH_EINVAL, "cannot encode public key");
    return berth_buf_put(out, tmp + sizeof(tmp) - n, (size_t)n, err);
}

int berth_auth_keys_add_pem(berth_auth_keys *ks, const char *path,
                            berth_error *err)
{
    berth_buf text = BERTH_BUF_INIT, der = BERTH_BUF_INIT;
    berth_buf spki = BERTH_BUF_INIT;
    size_t before = ks->count, label_len, body_len;
    const char *s, *label, *body;
    struct auth_key *k;
    char what[300];
    int rc, found, block = 0;

    if ((rc = read_file(&text, path, KEY_FILE_MAX, "key file", err)) < 0)
        goto done;
    s = text.ptr;
    while ((found = pem_next(&label, &label_len, &body, &body_len, &s, s)) >
           0) {
        snprintf(what, sizeof(what), "key file %s, block %d", path, ++block);
        berth_buf_clear(&der);
        berth_buf_clear(&spki);
        if (label_len >= 11 &&
            memcmp(label + label_len - 11, "PRIVATE KEY", 11) == 0) {
            rc = berth_error_set(err, BERTH_EINVAL,
                                 "%s: a private key; give the public key or "
                                 "the certificate",
                                 what);
            goto done;
        }
        if (label_is(label, label_len, "EC PARAMETERS"))
            continue;
        if (pem_decode(&der, body, body_len, err) < 0) {
            rc = berth_error_set(err, BERTH_EINVAL, "%s: malformed PEM",
                                 what);
            goto done;
        }
        if (label_is(label, label_len, "CERTIFICATE")) {
            const unsigned char *p;
            size_t n;
            if (cert_spki(&p, &n, (const unsigned char *)der.ptr, der.len) !=
                0) {
                rc = berth_error_set(err, BERTH_EINVAL,
                                     "%s: malformed certificate", what);
                goto done;
            }
            if ((rc = berth_buf_put(&spki, p, n, err)) < 0)
                goto done;
        } else if (label_is(label, label_len, "PUBLIC KEY") ||
                   label_is(label, label_len, "RSA PUBLIC KEY")) {
            mbedtls_pk_context pk;
            mbedtls_pk_init(&pk);
            if (mbedtls_pk_parse_public_key(
                    &pk, (const unsigned char *)der.ptr, der.len) != 0) {
                mbedtls_pk_free(&pk);
                rc = berth_error_set(err, BERTH_EINVAL,
                                     "%s: malformed public key", what);
                goto done;
            }
            rc = pk_to_spki(&spki, &pk, err);
            mbedtls_pk_free(&pk);
            if (rc < 0)
                goto done;
        } else {
            rc = berth_error_set(
                err, BERTH_EINVAL, "%s: unsupported PEM block %.*s", what,
                (int)(label_len < 40 ? label_len : 40), label);
            goto done;
        }
        if ((rc = key_from_spki(&k, (const unsigned char *)spki.ptr, spki.len,
                                NULL, what, err)) < 0)
            goto done;
        if ((rc = keys_push(ks, k, err)) < 0) {
            key_free(k);
            goto done;
        }
    }
    if (found < 0) {
        rc = berth_error_set(err, BERTH_EINVAL,
                             "key file %s: malformed PEM "
                             "block",
                             path);
        goto done;
    }
    if (ks->count == before)
        rc = berth_error_set(err, BERTH_EINVAL,
                             "key file %s: no public key "
                             "or certificate",
                             path);
done:
    if (rc < 0)
        keys_truncate(ks, before);
    if (text.ptr != NULL) /* it may have held a private key */
        wipe(text.ptr, text.len);
    berth_buf_dispose(&text);
    berth_buf_dispose(&der);
    berth_buf_dispose(&spki);
    return rc;
}

/* A base64url member of a JWK, decoded. */
static int jwk_bytes(berth_buf *out, const cJSON *jwk, const char *name,
                     const char *what, berth_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(jwk, name);

    if (!cJSON_IsString(v))
        return berth_error_set(err, BERTH_EINVAL, "%s: member %s missing",
                               what, name);
    if (berth_base64_decode(out, v->valuestring, strlen(v->valuestring), 1,
                            err) < 0)
        return berth_error_set(err, BERTH_EINVAL,
                               "%s: member %s is not "
                               "base64url",
                               what, name);
    return 0;
}

static int jwk_rsa_spki(berth_buf *der, const cJSON *jwk, const char *what,
                        berth_error *err)
{
    berth_buf n = BERTH_BUF_INIT, e = BERTH_BUF_INIT;
    mbedtls_pk_context pk;
    int rc;

    mbedtls_pk_init(&pk);
    if ((rc = jwk_bytes(&n, jwk, "n", what, err)) < 0 ||
        (rc = jwk_bytes(&e, jwk, "e", what, err)) < 0)
        goto done;
    if (mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)) !=
        0) {
        rc = berth_error_set(err, BERTH_ENOMEM, "out of memory");
        goto done;
    }
    if (mbedtls_rsa_import_raw(
            mbedtls_pk_rsa(pk), (const unsigned char *)n.ptr, n.len, NULL, 0,
            NULL, 0, NULL, 0, (const unsigned char *)e.ptr, e.len) != 0 ||
        mbedtls_rsa_complete(mbedtls_pk_rsa(pk)) != 0 ||
        mbedtls_rsa_check_pubkey(mbedtls_pk_rsa(pk)) != 0) {
        rc = berth_error_set(err, BERTH_EINVAL, "%s: invalid RSA key", what);
        goto done;
    }
    rc = pk_to_spki(der, &pk, err);
done:
    mbedtls_pk_free(&pk);
    berth_buf_dispose(&n);
    berth_buf_dispose(&e);
    return rc;
}

static int jwk_ec_spki(berth_buf *der, const cJSON *jwk, const char *what,
                       berth_error *err)
{
    berth_buf x = BERTH_BUF_INIT, y = BERTH_BUF_INIT;
    int rc;

    if ((rc = jwk_bytes(&x, jwk, "x", what, err)) < 0 ||
        (rc = jwk_bytes(&y, jwk, "y", what, err)) < 0)
        goto done;
    if (x.len != 32 || y.len != 32) {
        rc = berth_error_set(err, BERTH_EINVAL,
                             "%s: P-256 coordinates must "
                             "be 32 bytes",
                             what);
        goto done;
    }
    if ((rc = berth_buf_put(der, EC256_SPKI_PREFIX, sizeof(EC256_SPKI_PREFIX),
                            err)) < 0 ||
        (rc = berth_buf_put(der, "\x04", 1, err)) < 0 ||
        (rc = berth_buf_put(der, x.ptr, 32, err)) < 0 ||
        (rc = berth_buf_put(der, y.ptr, 32, err)) < 0)
        goto done;
done:
    berth_buf_dispose(&x);
    berth_buf_dispose(&y);
    return rc;
}

static const char *json_string(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int berth_auth_keys_add_jwks(berth_auth_keys *ks, const char *path,
                             berth_error *err)
{
    static const char *const PRIVATE[] = { "d",  "p",  "q", "dp",
                                           "dq", "qi", "k" };
    berth_buf text = BERTH_BUF_INIT, der = BERTH_BUF_INIT;
    size_t before = ks->count;
    cJSON *doc = NULL;
    const cJSON *keys, *jwk;
    struct auth_key *k;
    char what[300];
    int rc, i = 0;

    if ((rc = read_file(&text, path, KEY_FILE_MAX, "jwks file", err)) < 0)
        goto done;
    /* a key set two readers would see differently is no key set */
    snprintf(what, sizeof(what), "jwks file %s", path);
    if ((rc = berth__json_parse(&doc, text.ptr ? text.ptr : "", text.len,
                                BERTH_EINVAL, what, err)) < 0)
        goto done;
    keys = cJSON_GetObjectItemCaseSensitive(doc, "keys");
    if (!cJSON_IsArray(keys)) {
        rc = berth_error_set(err, BERTH_EINVAL,
                             "jwks file %s: not a JSON "
                             "object with a \"keys\" array",
                             path);
        goto done;
    }
    cJSON_ArrayForEach(jwk, keys)
    {
        const char *kty, *use, *alg, *kid, *crv;
        i++;
        snprintf(what, sizeof(what), "jwks file %s, key %d", path, i);
        if (!cJSON_IsObject(jwk)) {
            rc = berth_error_set(err, BERTH_EINVAL, "%s: not an object",
                                 what);
            goto done;
        }
        for (size_t j = 0; j < sizeof(PRIVATE) / sizeof(PRIVATE[0]); j++) {
            if (cJSON_GetObjectItemCaseSensitive(jwk, PRIVATE[j]) != NULL) {
                rc = berth_error_set(err, BERTH_EINVAL,
                                     "%s: holds private "
                                     "key material; publish public keys only",
                                     what);
                goto done;
            }
        }
        kty = json_string(jwk, "kty");
        use = json_string(jwk, "use");
        alg = json_string(jwk, "alg");
        kid = json_string(jwk, "kid");
        crv = json_string(jwk, "crv");
        if (use != NULL && strcmp(use, "sig") != 0)
            continue;
        berth_buf_clear(&der);
        if (kty != NULL && strcmp(kty, "RSA") == 0) {
            if (alg != NULL && strcmp(alg, "RS256") != 0)
                continue;
            rc = jwk_rsa_spki(&der, jwk, what, err);
        } else if (kty != NULL && strcmp(kty, "EC") == 0 && crv != NULL &&
                   strcmp(crv, "P-256") == 0) {
            if (alg != NULL && strcmp(alg, "ES256") != 0)
                continue;
            rc = jwk_ec_spki(&der, jwk, what, err);
        } else {
            continue;
        }
        if (rc < 0)
            goto done;
        if ((rc = key_from_spki(&k, (const unsigned char *)der.ptr, der.len,
                                kid, what, err)) < 0)
            goto done;
        if (k->kid[0] == '\0')
            strcpy(k->kid, k->thumbprint);
        if ((rc = keys_push(ks, k, err)) < 0) {
            key_free(k);
            goto done;
        }
    }
    if (ks->count == before)
        rc = berth_error_set(err, BERTH_EINVAL,
                             "jwks file %s: no RS256 or "
                             "ES256 signing key",
                             path);
done:
    if (rc < 0)
        keys_truncate(ks, before);
    cJSON_Delete(doc);
    berth_buf_dispose(&text);
    berth_buf_dispose(&der);
    return rc;
}

/* ---- tokens ------------------------------------------------------------- */

/* ES256 signatures are r || s (32 bytes each); mbedTLS reads DER. */
static size_t der_int(unsigned char *out, const unsigned char *v, size_t len)
{
    size_t o = 0;

    while (len > 1 && v[0] == 0) {
        v++;
        len--;
    }
    out[o++] = MBEDTLS_ASN1_INTEGER;
    out[o++] = (unsigned char)(len + (v[0] & 0x80 ? 1 : 0));
    if (v[0] & 0x80)
        out[o++] = 0;
    memcpy(out + o, v, len);
    return o + len;
}

static size_t es256_der(unsigned char out[72], const unsigned char rs[64])
{
    unsigned char body[70];
    size_t n = der_int(body, rs, 32);

    n += der_int(body + n, rs + 32, 32);
    out[0] = MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE;
    out[1] = (unsigned char)n;
    memcpy(out + 2, body, n);
    return n + 2;
}

/* Print at most 32 characters of a client-given name, control bytes as
 * '?', for a message. */
static void printable(char out[33], const char *s)
{
    size_t i;

    for (i = 0; i < 32 && s[i] != '\0'; i++)
        out[i] = isprint((unsigned char)s[i]) ? s[i] : '?';
    out[i] = '\0';
}

static int key_has_id(const struct auth_key *k, const char *kid)
{
    return (k->kid[0] != '\0' && strcmp(k->kid, kid) == 0) ||
           strcmp(k->libtrust, kid) == 0 || strcmp(k->thumbprint, kid) == 0;
}

/* Header and signature: -> 0 when some candidate key verifies. */
static int verify_signature(const berth_auth_keys *ks, const char *token,
                            size_t signed_len, const berth_buf *header,
                            const berth_buf *sig, berth_error *err)
{
    cJSON *h = NULL;
    const char *alg, *kid = NULL;
    const cJSON *kid_item;
    enum key_kind kind;
    unsigned char hash[32], der[72];
    const unsigned char *s = (const unsigned char *)sig->ptr;
    size_t slen = sig->len, tried = 0;
    char shown[33];
    int rc;

    if ((rc = berth__json_parse(&h, header->ptr, header->len,
                                BERTH_EUNAUTHORIZED,
                                "token malformed: header", err)) < 0)
        goto done;
    if (!cJSON_IsObject(h)) {
        rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                             "token malformed: header is not a JSON object");
        goto done;
    }
    alg = json_string(h, "alg");
    if (alg == NULL) {
        rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                             "token malformed: header has no alg");
        goto done;
    }
    if (strcmp(alg, "RS256") == 0) {
        kind = KEY_RSA;
    } else if (strcmp(alg, "ES256") == 0) {
        kind = KEY_EC256;
    } else {
        printable(shown, alg);
        rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                             "token algorithm %s not accepted (RS256, ES256)",
                             shown);
        goto done;
    }
    if (cJSON_GetObjectItemCaseSensitive(h, "crit") != NULL) {
        rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                             "token header has critical extensions");
        goto done;
    }
    kid_item = cJSON_GetObjectItemCaseSensitive(h, "kid");
    if (kid_item != NULL) {
        if (!cJSON_IsString(kid_item)) {
            rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                                 "token malformed: kid is not a string");
            goto done;
        }
        kid = kid_item->valuestring;
    }
    if (kind == KEY_EC256) {
        if (slen != 64) {
            rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                                 "token signature invalid");
            goto done;
        }
        slen = es256_der(der, s);
        s = der;
    }
    if ((rc = sha256(hash, token, signed_len, err)) < 0)
        goto done;
    rc = berth_error_set(err, BERTH_EUNAUTHORIZED, "token signature invalid");
    for (size_t i = 0; i < ks->count; i++) {
        const struct auth_key *k = ks->keys[i];
        if (kid != NULL && !key_has_id(k, kid))
            continue;
        if (k->kind != kind)
            continue;
        tried++;
        if (mbedtls_pk_verify((mbedtls_pk_context *)&k->pk, MBEDTLS_MD_SHA256,
                              hash, sizeof(hash), s, slen) == 0) {
            rc = 0;
            break;
        }
    }
    if (rc < 0 && tried == 0) {
        if (kid != NULL) {
            printable(shown, kid);
            rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                                 "token key id %s unknown (or not an %s key)",
                                 shown, alg);
        } else {
            rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                                 "no %s key to verify the token", alg);
        }
    }
done:
    cJSON_Delete(h);
    return rc;
}

static int number_claim(double *out, const cJSON *claims, const char *name,
                        int *present, berth_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(claims, name);

    *present = v != NULL;
    if (v == NULL)
        return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return berth_error_set(err, BERTH_EUNAUTHORIZED,
                               "token malformed: %s is not a number", name);
    *out = v->valuedouble;
    return 0;
}

static int audience_ok(const cJSON *aud, const char *want)
{
    const cJSON *a;

    if (cJSON_IsString(aud))
        return strcmp(aud->valuestring, want) == 0;
    if (!cJSON_IsArray(aud))
        return 0;
    cJSON_ArrayForEach(a, aud)
    {
        if (cJSON_IsString(a) && strcmp(a->valuestring, want) == 0)
            return 1;
    }
    return 0;
}

static int check_claims(berth_buf *subject_out, berth_buf *access_out,
                        int64_t *expires_out, const berth_buf *payload,
                        const berth_jwt_options *opts, berth_error *err)
{
    cJSON *c = NULL;
    double now = (double)(opts->now ? opts->now : (int64_t)time(NULL));
    double leeway = (double)(opts->leeway > 0 ? opts->leeway : 0);
    double exp = 0, nbf = 0, iat = 0;
    int has_exp, has_nbf, has_iat, rc;
    const cJSON *access, *sub;
    char *text = NULL;

    if ((rc = berth__json_parse(&c, payload->ptr, payload->len,
                                BERTH_EUNAUTHORIZED,
                                "token malformed: claims", err)) < 0)
        goto done;
    if (!cJSON_IsObject(c)) {
        rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                             "token malformed: claims are not a JSON object");
        goto done;
    }
    if ((rc = number_claim(&exp, c, "exp", &has_exp, err)) < 0 ||
        (rc = number_claim(&nbf, c, "nbf", &has_nbf, err)) < 0 ||
        (rc = number_claim(&iat, c, "iat", &has_iat, err)) < 0)
        goto done;
    if (!has_exp) {
        rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                             "token has no expiry (exp)");
        goto done;
    }
    if (now >= exp + leeway) {
        rc = berth_error_set(err, BERTH_EUNAUTHORIZED, "token expired");
        goto done;
    }
    if (has_nbf && now + leeway < nbf) {
        rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                             "token not valid yet (nbf)");
        goto done;
    }
    if (has_iat && iat > now + leeway) {
        rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                             "token issued in the future (iat)");
        goto done;
    }
    if (has_iat && iat > exp) {
        rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                             "token issued after it expires (iat)");
        goto done;
    }
    if (opts->issuer != NULL) {
        const char *iss = json_string(c, "iss");
        if (iss == NULL || strcmp(iss, opts->issuer) != 0) {
            rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                                 "token issuer not accepted");
            goto done;
        }
    }
    if (opts->audience != NULL &&
        !audience_ok(cJSON_GetObjectItemCaseSensitive(c, "aud"),
                     opts->audience)) {
        rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                             "token audience is not this service");
        goto done;
    }
    sub = cJSON_GetObjectItemCaseSensitive(c, "sub");
    if (sub != NULL && !cJSON_IsString(sub)) {
        rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                             "token malformed: sub is not a string");
        goto done;
    }
    access = cJSON_GetObjectItemCaseSensitive(c, "access");
    if (access != NULL && !cJSON_IsArray(access)) {
        rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                             "token malformed: access is not an array");
        goto done;
    }
    if (sub != NULL &&
        (rc = berth_buf_put(subject_out, sub->valuestring,
                            strlen(sub->valuestring), err)) < 0)
        goto done;
    if (access != NULL) {
        text = cJSON_PrintUnformatted(access);
        if (text == NULL) {
            rc = berth_error_set(err, BERTH_ENOMEM, "out of memory");
            goto done;
        }
        rc = berth_buf_put(access_out, text, strlen(text), err);
    } else {
        rc = berth_buf_put(access_out, "[]", 2, err);
    }
    if (rc < 0)
        goto done;
    if (expires_out) /* a double beyond int64_t: no cast (UB) */
        *expires_out = exp < 9.2e18 ? (int64_t)exp : INT64_MAX;
done:
    free(text);
    cJSON_Delete(c);
    return rc;
}

int berth_jwt_verify(berth_buf *subject_out, berth_buf *access_out,
                     int64_t *expires_out, const berth_auth_keys *ks,
                     const char *token, size_t len,
                     const berth_jwt_options *opts, berth_error *err)
{
    static const berth_jwt_options defaults = BERTH_JWT_OPTIONS_INIT;
    berth_buf header = BERTH_BUF_INIT, payload = BERTH_BUF_INIT;
    berth_buf sig = BERTH_BUF_INIT;
    const char *d1, *d2;
    int rc;

    if (opts == NULL)
        opts = &defaults;
    if (len == 0 || len > BERTH_JWT_MAX)
        return berth_error_set(err, BERTH_EUNAUTHORIZED,
                               "token malformed: length %zu", len);
    d1 = memchr(token, '.', len);
    d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (d2 == NULL ||
        memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL) {
        return berth_error_set(err, BERTH_EUNAUTHORIZED,
                               "token malformed: not three parts");
    }
    if (berth_base64_decode(&header, token, (size_t)(d1 - token), 1, NULL) <
            0 ||
        berth_base64_decode(&sig, d2 + 1, len - (size_t)(d2 + 1 - token), 1,
                            NULL) < 0) {
        rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                             "token malformed: not base64url");
        goto done;
    }
    if ((rc = verify_signature(ks, token, (size_t)(d2 - token), &header, &sig,
                               err)) < 0)
        goto done;
    /* Only a genuine token's claims are read. */
    if (berth_base64_decode(&payload, d1 + 1, (size_t)(d2 - d1 - 1), 1,
                            NULL) < 0) {
        rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                             "token malformed: not base64url");
        goto done;
    }
    rc = check_claims(subject_out, access_out, expires_out, &payload, opts,
                      err);
done:
    berth_buf_dispose(&header);
    berth_buf_dispose(&payload);
    berth_buf_dispose(&sig);
    return rc;
}

/* ---- htpasswd ----------------------------------------------------------- */

#define BCRYPT_LEN 60
/* bcrypt reads this many bytes of a password and ignores the rest */
#define BCRYPT_PASSWORD_MAX 72

struct htpasswd_entry {
    char *user;
    size_t user_len;
    char hash[BCRYPT_LEN + 1];
};

struct berth_htpasswd {
    struct htpasswd_entry *entries;
    size_t count;
    char dummy[BCRYPT_LEN + 1]; /* what an unknown user is checked against */
};

/* "$2y$NN$" + 53 characters of bcrypt's base64, cost 04..31. */
static int is_bcrypt(const char *h, size_t len)
{
    static const char ALPHABET[] =
        "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    int cost;

    if (len != BCRYPT_LEN || h[0] != '$' || h[1] != '2' ||
        (h[2] != 'y' && h[2] != 'a' && h[2] != 'b') || h[3] != '$' ||
        !isdigit((unsigned char)h[4]) || !isdigit((unsigned char)h[5]) ||
        h[6] != '$')
        return 0;
    cost = (h[4] - '0') * 10 + (h[5] - '0');
    if (cost < 4 || cost > 31)
        return 0;
    for (size_t i = 7; i < len; i++)
        if (h[i] == '\0' || strchr(ALPHABET, h[i]) == NULL)
            return 0;
    return 1;
}

static const char *hash_kind(const char *h, size_t len)
{
    if (len >= 6 && memcmp(h, "$apr1$", 6) == 0)
        return "an MD5 (apr1) hash";
    if (len >= 5 && memcmp(h, "{SHA}", 5) == 0)
        return "a SHA-1 hash";
    if (len >= 3 && memcmp(h, "$1$", 3) == 0)
        return "an MD5-crypt hash";
    if (len >= 3 && (memcmp(h, "$5$", 3) == 0 || memcmp(h, "$6$", 3) == 0))
        return "a SHA-crypt hash";
    if (len >= 2 && memcmp(h, "$2", 2) == 0)
        return "a malformed bcrypt hash";
    return "plain text or a DES crypt hash";
}

void berth_htpasswd_free(berth_htpasswd *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->count; i++) {
        wipe(h->entries[i].hash, sizeof(h->entries[i].hash));
        free(h->entries[i].user);
    }
    free(h->entries);
    free(h);
}

size_t berth_htpasswd_count(const berth_htpasswd *h)
{
    return h->count;
}

int berth_htpasswd_load(berth_htpasswd **out, const char *path,
                        berth_error *err)
{
    berth_buf text = BERTH_BUF_INIT;
    berth_htpasswd *h = NULL;
    size_t cap = 0, lineno = 0;
    char *line, *next;
    int rc;

    *out = NULL;
    if ((rc = read_file(&text, path, HTPASSWD_MAX, "htpasswd file", err)) < 0)
        goto done;
    if (memchr(text.ptr, '\0', text.len) != NULL) {
        rc = berth_error_set(err, BERTH_EINVAL,
                             "htpasswd file %s: binary "
                             "content",
                             path);
        goto done;
    }
    if ((h = calloc(1, sizeof(*h))) == NULL) {
        rc = berth_error_set(err, BERTH_ENOMEM, "out of memory");
        goto done;
    }
    for (line = text.ptr; line != NULL && *line != '\0'; line = next) {
        char *colon, *hash, *end;
        size_t user_len, hash_len;
        struct htpasswd_entry *e;

        lineno++;
        next = strchr(line, '\n');
        end = next ? next : line + strlen(line);
        if (next)
            next++;
        while (end > line &&
               (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end == line || line[0] == '#')
            continue;
        colon = memchr(line, ':', (size_t)(end - line));
        if (colon == NULL || colon == line) {
            rc = berth_error_set(err, BERTH_EINVAL,
                                 "htpasswd file %s line "
                                 "%zu: not user:hash",
                                 path, lineno);
            goto done;
        }
        user_len = (size_t)(colon - line);
        hash = colon + 1;
        hash_len = (size_t)(end - hash);
        if (!is_bcrypt(hash, hash_len)) {
            rc = berth_error_set(err, BERTH_EINVAL,
                                 "htpasswd file %s line "
                                 "%zu: user %.*s has %s; only bcrypt entries "
                                 "are accepted (htpasswd -B)",
                                 path, lineno,
                                 (int)(user_len < 64 ? user_len : 64), line,
                                 hash_kind(hash, hash_len));
            goto done;
        }
        for (size_t i = 0; i < h->count; i++) {
            if (h->entries[i].user_len == user_len &&
                memcmp(h->entries[i].user, line, user_len) == 0) {
                rc = berth_error_set(
                    err, BERTH_EINVAL,
                    "htpasswd file %s "
                    "line %zu: user %.*s appears twice",
                    path, lineno, (int)(user_len < 64 ? user_len : 64), line);
                goto done;
            }
        }
        if (h->count == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            struct htpasswd_entry *n = realloc(h->entries, ncap * sizeof(*n));
            if (n == NULL) {
                rc = berth_error_set(err, BERTH_ENOMEM, "out of memory");
                goto done;
            }
            h->entries = n;
            cap = ncap;
        }
        e = &h->entries[h->count];
        if ((e->user = malloc(user_len + 1)) == NULL) {
            rc = berth_error_set(err, BERTH_ENOMEM, "out of memory");
            goto done;
        }
        memcpy(e->user, line, user_len);
        e->user[user_len] = '\0';
        e->user_len = user_len;
        memcpy(e->hash, hash, BCRYPT_LEN);
        e->hash[BCRYPT_LEN] = '\0';
        h->count++;
    }
    /* An unknown user is checked against a hash of the same cost as the
     * first entry's (a valid salt; the hash part can never match). */
    snprintf(h->dummy, sizeof(h->dummy), "$2y$%.2s$%s",
             h->count ? h->entries[0].hash + 4 : "10",
             "abcdefghijklmnopqrstuvABCDEFGHIJKLMNOPQRSTUVWXYZ01234");
    *out = h;
    h = NULL;
done:
    berth_htpasswd_free(h);
    if (text.ptr != NULL)
        wipe(text.ptr, text.len);
    berth_buf_dispose(&text);
    return rc;
}

int berth_htpasswd_verify(const berth_htpasswd *h, const char *user,
                          size_t user_len, const char *password,
                          size_t password_len, berth_error *err)
{
    const char *setting = h->dummy;
    struct crypt_data *cd = NULL;
    char *pw = NULL;
    const char *res;
    int found = 0, ok = 0, rc;

    /* every entry is looked at, so the time does not tell where the user
     * is in the file */
    for (size_t i = 0; i < h->count; i++) {
        const struct htpasswd_entry *e = &h->entries[i];
        int same = e->user_len == user_len &&
                   ct_equal(e->user, user, user_len);
        if (same && !found) {
            setting = e->hash;
            found = 1;
        }
    }
    cd = calloc(1, sizeof(*cd));
    pw = malloc(password_len + 1);
    if (cd == NULL || pw == NULL) {
        rc = berth_error_set(err, BERTH_ENOMEM, "out of memory");
        goto done;
    }
    memcpy(pw, password, password_len);
    pw[password_len] = '\0';
    res = crypt_rn(pw, setting, cd, (int)sizeof(*cd));
    ok = res != NULL && strlen(res) == BCRYPT_LEN &&
         ct_equal(res, setting, BCRYPT_LEN);
    /* a password with a NUL byte inside was cut short for crypt, and one
     * longer than bcrypt reads was checked only in part: never ok */
    if (memchr(password, '\0', password_len) != NULL ||
        password_len > BCRYPT_PASSWORD_MAX)
        ok = 0;
    if (found && ok)
        rc = 0;
    else
        rc = berth_error_set(err, BERTH_EUNAUTHORIZED,
                             "invalid user name or password");
done:
    if (pw != NULL) {
        wipe(pw, password_len);
        free(pw);
    }
    if (cd != NULL) {
        wipe(cd, sizeof(*cd));
        free(cd);
    }
    return rc;
}
