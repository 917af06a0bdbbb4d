/* The error table (errors.def) and the berth_error record. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "berth/errors.h"

struct error_row {
    int code;
    const char *name;
    const char *oci;
    int http;
    const char *api;
    const char *message;
};

static const struct error_row error_table[] = {
#define BERTH_ERR(name, value, code, http, api, msg)                         \
    { value, #name, code, http, api, msg },
#include "berth/errors.def"
#undef BERTH_ERR
};

#define ERROR_ROWS ((int)(sizeof(error_table) / sizeof(error_table[0])))

size_t berth_error_escape(char *out, size_t cap, const char *in, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;

    assert(out != NULL && cap > 0 && (in != NULL || len == 0));
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        char esc[4];
        size_t k = 0;

        if (c == '\n' || c == '\r' || c == '\t') {
            esc[k++] = '\\';
            esc[k++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        } else if (c < 0x20 || c == 0x7f) {
            esc[k++] = '\\';
            esc[k++] = 'x';
            esc[k++] = hex[c >> 4];
            esc[k++] = hex[c & 15];
        } else {
            esc[k++] = (char)c;
        }
        if (n + k >= cap)
            break;
        memcpy(out + n, esc, k);
        n += k;
    }
    out[n] = '\0';
    return n;
}

/* The one place a message is formatted: printed in full, then escaped
 * into the record, so untrusted bytes never break its one line. */
static void error_vformat(berth_error *err, int code, int sys_errno,
                          const char *fmt, va_list ap)
{
    char raw[BERTH_ERROR_MESSAGE_MAX];
    size_t used;

    vsnprintf(raw, sizeof(raw), fmt, ap);
    if (sys_errno) {
        used = strlen(raw);
        snprintf(raw + used, sizeof(raw) - used, ": %s", strerror(sys_errno));
    }
    err->code = code;
    err->sys_errno = sys_errno;
    berth_error_escape(err->message, sizeof(err->message), raw, strlen(raw));
}

int berth_error_set(berth_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return code;
    va_start(ap, fmt);
    error_vformat(err, code, 0, fmt, ap);
    va_end(ap);
    return code;
}

int berth_error_sys(berth_error *err, int code, int sys_errno,
                    const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return code;
    va_start(ap, fmt);
    error_vformat(err, code, sys_errno, fmt, ap);
    va_end(ap);
    return code;
}

void berth_error_clear(berth_error *err)
{
    if (err == NULL)
        return;
    err->code = 0;
    err->sys_errno = 0;
    err->message[0] = '\0';
}

int berth_error_info(int code, const char **name_out, const char **oci_out,
                     int *http_out, const char **api_out,
                     const char **message_out)
{
    for (int i = 0; i < ERROR_ROWS; i++) {
        const struct error_row *row = &error_table[i];
        if (row->code != code)
            continue;
        if (name_out)
            *name_out = row->name;
        if (oci_out)
            *oci_out = row->oci;
        if (http_out)
            *http_out = row->http;
        if (api_out)
            *api_out = row->api;
        if (message_out)
            *message_out = row->message;
        return 0;
    }
    return BERTH_ENOTFOUND;
}

int berth_error_count(void)
{
    return ERROR_ROWS;
}

int berth_error_code_at(int index)
{
    if (index < 0 || index >= ERROR_ROWS)
        return 0;
    return error_table[index].code;
}
