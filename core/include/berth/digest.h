/*
 * Content digests ("sha256:<hex>") and streaming hashers.
 *
 * A hasher's state can be saved to bytes and restored in another process, so
 * an upload started on one nginx worker continues on any other. The saved form
 * is Go's crypto/sha256 and crypto/sha512 MarshalBinary encoding, the one CNCF
 * Distribution writes under _uploads/<id>/hashstates/, so either registry can
 * resume an upload the other began.
 */
#ifndef BERTH_DIGEST_H
#define BERTH_DIGEST_H

#include <stddef.h>
#include <stdint.h>
#include "berth/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum berth_digest_algo {
    BERTH_DIGEST_NONE = 0,
    BERTH_DIGEST_SHA256 = 1,
    BERTH_DIGEST_SHA384 = 2,
    BERTH_DIGEST_SHA512 = 3
} berth_digest_algo;

/* "sha512:" + 128 hex digits + NUL */
#define BERTH_DIGEST_STR_MAX 136
/* Largest saved hasher state (sha384/sha512: 4 + 64 + 128 + 8). */
#define BERTH_HASHER_STATE_MAX 204

typedef struct berth_digest {
    berth_digest_algo algo;
    char
        str[BERTH_DIGEST_STR_MAX]; /* "algo:hex", lowercase, NUL terminated */
} berth_digest;

/**
 * Parse and validate "algo:hex": a known algorithm and lowercase hex of its
 * exact length. `len` is the length of `s` (it need not be NUL terminated).
 * @return 0 or BERTH_EDIGEST_INVALID.
 */
BERTH_API
int berth_digest_parse(berth_digest *out, const char *s, size_t len,
                       berth_error *err);

/** The hex part of a parsed digest; borrowed from `d`. */
BERTH_API
const char *berth_digest_hex(const berth_digest *d);

/** "sha256", "sha384", "sha512"; NULL for an unknown algorithm. */
BERTH_API
const char *berth_digest_algo_name(berth_digest_algo algo);

/** Algorithm by name, BERTH_DIGEST_NONE when unknown. */
BERTH_API
berth_digest_algo berth_digest_algo_from_name(const char *name, size_t len);

/** Digest of a buffer in one call. @return 0, BERTH_EINVAL or BERTH_ENOMEM. */
BERTH_API
int berth_digest_compute(berth_digest *out, berth_digest_algo algo,
                         const void *data, size_t len, berth_error *err);

/** Which SHA-256 implementation a hasher uses. */
typedef enum berth_hasher_impl {
    BERTH_HASHER_AUTO = 0,    /* fastest the CPU supports */
    BERTH_HASHER_MBEDTLS = 1, /* portable reference */
    BERTH_HASHER_SHANI =
        2 /* x86 SHA extensions; BERTH_EUNSUPPORTED if absent */
} berth_hasher_impl;

typedef struct berth_hasher berth_hasher;

/**
 * Start hashing. The hasher is owned by the caller: berth_hasher_free().
 * @return 0, BERTH_EINVAL (unknown algorithm), BERTH_EUNSUPPORTED (impl not
 *         available on this CPU) or BERTH_ENOMEM.
 */
BERTH_API
int berth_hasher_new(berth_hasher **out, berth_digest_algo algo,
                     berth_hasher_impl impl, berth_error *err);

/** Feed bytes. @return 0 or BERTH_ERROR (mbedTLS failure). */
BERTH_API
int berth_hasher_update(berth_hasher *h, const void *data, size_t len,
                        berth_error *err);

/**
 * The digest of everything fed so far. The hasher is left unchanged, so more
 * bytes may follow. @return 0 or BERTH_ERROR.
 */
BERTH_API
int berth_hasher_digest(berth_digest *out, const berth_hasher *h,
                        berth_error *err);

/** Bytes fed so far. */
BERTH_API
uint64_t berth_hasher_size(const berth_hasher *h);

/** Algorithm and implementation in use. */
BERTH_API
berth_digest_algo berth_hasher_algo(const berth_hasher *h);
BERTH_API
berth_hasher_impl berth_hasher_impl_of(const berth_hasher *h);

/**
 * Save the state (Go MarshalBinary encoding) into buf.
 * @param len_inout capacity in, bytes written out; on BERTH_EBUFS the size
 *        needed. BERTH_HASHER_STATE_MAX always suffices.
 * @return 0 or BERTH_EBUFS.
 */
BERTH_API
int berth_hasher_save(void *buf, size_t *len_inout, const berth_hasher *h,
                      berth_error *err);

/**
 * Make a hasher from a saved state.
 * @return 0, BERTH_EINVAL (not a state berth or Go wrote), BERTH_EUNSUPPORTED
 *         or BERTH_ENOMEM.
 */
BERTH_API
int berth_hasher_restore(berth_hasher **out, const void *buf, size_t len,
                         berth_hasher_impl impl, berth_error *err);

/** Free a hasher; NULL is fine. */
BERTH_API
void berth_hasher_free(berth_hasher *h);

/** Name of the SHA-256 implementation AUTO picks here ("sha-ni", "mbedtls"). */
BERTH_API
const char *berth_hasher_auto_name(void);

#define BERTH_HMAC_SHA256_LEN 32

/**
 * HMAC-SHA256 (RFC 2104) of msg under key, as raw bytes: what CNCF
 * Distribution signs an upload's _state with (its http.secret).
 * @return 0 or BERTH_ERROR (mbedTLS failure).
 */
BERTH_API
int berth_hmac_sha256(unsigned char out[BERTH_HMAC_SHA256_LEN],
                      const void *key, size_t key_len, const void *msg,
                      size_t msg_len, berth_error *err);

#ifdef __cplusplus
}
#endif
#endif
