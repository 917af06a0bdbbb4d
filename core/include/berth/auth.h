/*
 * Access control primitives: JSON Web Tokens (the Docker/OCI token
 * protocol) and htpasswd files of bcrypt hashes.
 *
 * Policy (which actions a request needs, challenges, rate limits) is Lua's:
 * lua/berth/auth.lua. C only answers "is this token genuine and current,
 * and what does it grant" and "is this the user's password".
 *
 * Tokens: JWS compact serialisation, alg RS256 (RSA, 2048 bits or more) or
 * ES256 (EC P-256) only; "none", HS* and anything else are refused, and so
 * is an alg that does not fit the key. Keys come from PEM files (public
 * keys or certificates; a private key is refused) or a JWKS file.
 *
 * No error message carries a token, a password or a hash.
 *
 * A library of its own, libberth-auth (pkg-config berth-auth, CMake
 * berth::berth_auth), over libberth: a storage embedder links neither
 * libcrypt nor mbedTLS's public-key layer.
 */
#ifndef BERTH_AUTH_H
#define BERTH_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include "berth/errors.h"
#include "berth/buf.h"
#include "berth/base64.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A set of public keys that tokens may be signed with. */
typedef struct berth_auth_keys berth_auth_keys;

/** An empty key set. @return 0 or BERTH_ENOMEM. */
BERTH_API
int berth_auth_keys_new(berth_auth_keys **out, berth_error *err);

/**
 * Add every key of a PEM file: "PUBLIC KEY", "RSA PUBLIC KEY" and
 * "CERTIFICATE" blocks (of a certificate only its key is used: the file is
 * the trust anchor). Each key is known by two ids, which a token's "kid"
 * may name: its libtrust key id (what Docker's token servers put in kid)
 * and its RFC 7638 JWK thumbprint.
 * @return 0, BERTH_EINVAL (unreadable file, no key, a private key, an
 * unsupported key type or size) or BERTH_ENOMEM. On error no key of the
 * file has been added.
 */
BERTH_API
int berth_auth_keys_add_pem(berth_auth_keys *ks, const char *path,
                            berth_error *err);

/**
 * Add the keys of a JWKS file ({"keys": [...]}): kty RSA (n, e) and EC
 * with crv P-256 (x, y). A key's "kid" names it, else its RFC 7638
 * thumbprint. Keys for another use ("use": "enc"), of other types or for
 * other algorithms are skipped; a key with private members is refused.
 * @return 0, BERTH_EINVAL (unreadable, malformed, no usable key) or
 * BERTH_ENOMEM. On error no key of the file has been added.
 */
BERTH_API
int berth_auth_keys_add_jwks(berth_auth_keys *ks, const char *path,
                             berth_error *err);

/** Number of keys in the set. */
BERTH_API
size_t berth_auth_keys_count(const berth_auth_keys *ks);

/**
 * Ids of the i-th key (i < count): `kid_out` its JWKS kid or "" for a PEM
 * key, `libtrust_out` its libtrust key id, `thumbprint_out` its RFC 7638
 * thumbprint, `alg_out` "RS256" or "ES256". Any out pointer may be NULL.
 * Strings are owned by the set; valid until it is freed.
 */
BERTH_API
void berth_auth_keys_info(const berth_auth_keys *ks, size_t i,
                          const char **alg_out, const char **kid_out,
                          const char **libtrust_out,
                          const char **thumbprint_out);

/** Free a key set; NULL does nothing. */
BERTH_API
void berth_auth_keys_free(berth_auth_keys *ks);

/** What a token is checked against. */
typedef struct berth_jwt_options {
    unsigned version;
    const char *issuer;   /* "iss" must equal it; NULL: not checked */
    const char *audience; /* "aud" (a string or an array) must hold it;
                             NULL: not checked */
    int64_t now;          /* seconds since the epoch; 0: the clock */
    int64_t leeway;       /* seconds of clock skew allowed on exp, nbf
                             and iat */
} berth_jwt_options;

#define BERTH_JWT_OPTIONS_VERSION 1
#define BERTH_JWT_OPTIONS_INIT                                               \
    {                                                                        \
        BERTH_JWT_OPTIONS_VERSION, NULL, NULL, 0, 60                         \
    }

/** Longest token accepted, in bytes: what fits in one of the header buffers
 * berth serve gives nginx (lua/berth/serve.lua). */
#define BERTH_JWT_MAX 65536

/**
 * Verify a compact JWS token: header (alg RS256/ES256, kid selects the
 * keys tried; without kid every key that fits alg is tried), signature,
 * then the claims: "exp" is required (now < exp + leeway), "nbf" (now +
 * leeway >= nbf) and "iat" (not in the future, not after exp) are checked
 * when present, "iss" and "aud" as opts says.
 * @param subject_out the "sub" claim ("" when absent); appended to.
 * @param access_out the "access" claim as JSON text, an array ("[]" when
 *   absent); appended to.
 * @param expires_out the "exp" claim; may be NULL.
 * @return 0, BERTH_EUNAUTHORIZED (malformed, refused algorithm, unknown
 * key id, bad signature, expired, not yet valid, wrong issuer or audience)
 * or BERTH_ENOMEM. The caller disposes both buffers in every case.
 */
BERTH_API
int berth_jwt_verify(berth_buf *subject_out, berth_buf *access_out,
                     int64_t *expires_out, const berth_auth_keys *ks,
                     const char *token, size_t len,
                     const berth_jwt_options *opts, berth_error *err);

/** Users and their bcrypt password hashes, from an htpasswd file. */
typedef struct berth_htpasswd berth_htpasswd;

/**
 * Load an htpasswd file as `htpasswd -B` writes it: "user:$2y$NN$..." per
 * line (also $2a$, $2b$). Any other kind of entry (MD5 "$apr1$", "{SHA}",
 * crypt, SHA-crypt, plain text) is refused, naming the user and line.
 * Blank lines and lines starting with '#' are skipped.
 * @return 0, BERTH_EINVAL (unreadable, malformed, non-bcrypt entry,
 * duplicate user) or BERTH_ENOMEM.
 */
BERTH_API
int berth_htpasswd_load(berth_htpasswd **out, const char *path,
                        berth_error *err);

/**
 * Check a user's password with bcrypt (libcrypt's crypt_rn). An unknown
 * user costs a bcrypt too, and the hash comparison is constant time, so
 * timing tells neither. This is slow on purpose (the entry's cost: 2^cost
 * rounds).
 * @return 0, BERTH_EUNAUTHORIZED (unknown user or wrong password: the
 * message does not say which) or BERTH_ENOMEM.
 */
BERTH_API
int berth_htpasswd_verify(const berth_htpasswd *h, const char *user,
                          size_t user_len, const char *password,
                          size_t password_len, berth_error *err);

/** Number of users. */
BERTH_API
size_t berth_htpasswd_count(const berth_htpasswd *h);

/** Free; NULL does nothing. */
BERTH_API
void berth_htpasswd_free(berth_htpasswd *h);

#ifdef __cplusplus
}
#endif
#endif
