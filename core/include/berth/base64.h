/*
 * Base64: the standard alphabet (HTTP Basic, PEM), base64url without
 * padding (JWT) and with it (Distribution's upload _state).
 */
#ifndef BERTH_BASE64_H
#define BERTH_BASE64_H

#include <stddef.h>
#include "berth/errors.h"
#include "berth/buf.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Base64 variants (the `mode` of the calls below). */
typedef enum berth_base64_mode {
    BERTH_BASE64_STD = 0,    /* standard alphabet, padded; padding optional
                                when decoding (HTTP Basic) */
    BERTH_BASE64_URL = 1,    /* base64url without padding (JWT) */
    BERTH_BASE64_URL_PAD = 2 /* base64url with its padding, required (Go's
                                base64.URLEncoding: Distribution's _state) */
} berth_base64_mode;

/**
 * Decode base64 of a berth_base64_mode. Non-canonical input (stray
 * characters, leftover bits) is refused.
 * @return 0, BERTH_EINVAL or BERTH_ENOMEM. Appends to out.
 */
BERTH_API
int berth_base64_decode(berth_buf *out, const char *in, size_t len, int mode,
                        berth_error *err);

/**
 * Encode as base64 of a berth_base64_mode.
 * @return 0 or BERTH_ENOMEM. Appends to out, NUL terminated.
 */
BERTH_API
int berth_base64_encode(berth_buf *out, const void *in, size_t len, int mode,
                        berth_error *err);

#ifdef __cplusplus
}
#endif
#endif
