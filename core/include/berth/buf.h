/*
 * A growable byte buffer (libgit2's git_str without abort-on-OOM). The
 * content is always NUL terminated past len, so text can be used as a string.
 */
#ifndef BERTH_BUF_H
#define BERTH_BUF_H

#include <stddef.h>
#include "berth/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct berth_buf {
    char *ptr;
    size_t len;
    size_t cap;
} berth_buf;

#define BERTH_BUF_INIT                                                       \
    {                                                                        \
        NULL, 0, 0                                                           \
    }

/** Make room for at least `extra` more bytes. @return 0 or BERTH_ENOMEM. */
BERTH_API
int berth_buf_grow(berth_buf *b, size_t extra, berth_error *err);
/** Append bytes. @return 0 or BERTH_ENOMEM. */
BERTH_API
int berth_buf_put(berth_buf *b, const void *data, size_t len,
                  berth_error *err);
/** Append a formatted string. @return 0 or BERTH_ENOMEM. */
BERTH_API
int berth_buf_printf(berth_buf *b, berth_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/** Empty the buffer, keeping its memory. */
BERTH_API
void berth_buf_clear(berth_buf *b);
/** Free the memory; the buffer is then BERTH_BUF_INIT again. */
BERTH_API
void berth_buf_dispose(berth_buf *b);

#ifdef __cplusplus
}
#endif
#endif
