/* berth_buf: growable, NUL-terminated byte buffer. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "berth/buf.h"

int berth_buf_grow(berth_buf *b, size_t extra, berth_error *err)
{
    size_t need, cap;
    char *p;

    if (extra > SIZE_MAX - b->len - 1)
        return berth_error_set(err, BERTH_ENOMEM, "buffer size overflow");
    need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    p = realloc(b->ptr, cap);
    if (p == NULL)
        return berth_error_set(err, BERTH_ENOMEM, "out of memory");
    b->ptr = p;
    b->cap = cap;
    return 0;
}

int berth_buf_put(berth_buf *b, const void *data, size_t len,
                  berth_error *err)
{
    int rc;

    if ((rc = berth_buf_grow(b, len, err)) < 0)
        return rc;
    if (len)
        memcpy(b->ptr + b->len, data, len);
    b->len += len;
    b->ptr[b->len] = '\0';
    return 0;
}

int berth_buf_printf(berth_buf *b, berth_error *err, const char *fmt, ...)
{
    va_list ap;
    int n, rc;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return berth_error_set(err, BERTH_ERROR, "bad format: %s", fmt);
    if ((rc = berth_buf_grow(b, (size_t)n, err)) < 0)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void berth_buf_clear(berth_buf *b)
{
    b->len = 0;
    if (b->ptr)
        b->ptr[0] = '\0';
}

void berth_buf_dispose(berth_buf *b)
{
    free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}
