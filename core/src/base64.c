/* Base64 in the three variants berth's protocols use (berth/base64.h). */
#include <stdint.h>

#include "berth/base64.h"

static int b64_value(unsigned char c, int url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

int berth_base64_decode(berth_buf *out, const char *in, size_t len, int mode,
                        berth_error *err)
{
    int url = mode != BERTH_BASE64_STD;
    uint32_t acc = 0;
    int bits = 0, rc;
    size_t i;

    if (mode != BERTH_BASE64_URL) {
        /* padding: at most two '=', only at the end, to a multiple of 4 */
        size_t pad = 0;
        while (pad < 2 && len > 0 && in[len - 1] == '=') {
            len--;
            pad++;
        }
        if ((pad > 0 || mode == BERTH_BASE64_URL_PAD) && (len + pad) % 4 != 0)
            return berth_error_set(err, BERTH_EINVAL, "base64: bad padding");
    }
    if (len % 4 == 1)
        return berth_error_set(err, BERTH_EINVAL, "base64: bad length");
    if ((rc = berth_buf_grow(out, len / 4 * 3 + 3, err)) < 0)
        return rc;
    for (i = 0; i < len; i++) {
        int v = b64_value((unsigned char)in[i], url);
        if (v < 0)
            return berth_error_set(err, BERTH_EINVAL,
                                   "base64: invalid character");
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out->ptr[out->len++] = (char)((acc >> bits) & 0xff);
        }
    }
    /* what is left must be zero bits, or two encodings mean one value */
    if ((acc & ((1u << bits) - 1)) != 0)
        return berth_error_set(err, BERTH_EINVAL, "base64: non-canonical");
    out->ptr[out->len] = '\0';
    return 0;
}

static const char B64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char B64URL[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Encode into out, NUL terminated; cap >= B64_CAP(len).
 * @return the length written. */
#define B64_CAP(len) (((len) + 2) / 3 * 4 + 1)
static size_t b64_encode(char *out, const unsigned char *in, size_t len,
                         int mode)
{
    const char *abc = mode == BERTH_BASE64_STD ? B64 : B64URL;
    size_t i, o = 0;

    for (i = 0; i < len; i += 3) {
        size_t n = len - i < 3 ? len - i : 3;
        uint32_t v = (uint32_t)in[i] << 16;
        if (n > 1)
            v |= (uint32_t)in[i + 1] << 8;
        if (n > 2)
            v |= in[i + 2];
        /* n bytes are n + 1 characters; padding makes four */
        for (size_t k = 0; k < 4; k++) {
            if (k <= n)
                out[o++] = abc[v >> (18 - 6 * k) & 63];
            else if (mode != BERTH_BASE64_URL)
                out[o++] = '=';
        }
    }
    out[o] = '\0';
    return o;
}

int berth_base64_encode(berth_buf *out, const void *in, size_t len, int mode,
                        berth_error *err)
{
    int rc;

    if ((rc = berth_buf_grow(out, B64_CAP(len), err)) < 0)
        return rc;
    out->len += b64_encode(out->ptr + out->len, in, len, mode);
    return 0;
}
