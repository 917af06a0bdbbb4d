/* The error table (errors.def) and the berth_error record. */
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
#define BERTH_ERR(name, value, code, http, api, msg) \
    { value, #name, code, http, api, msg },
#include "berth/errors.def"
#undef BERTH_ERR
};

#define ERROR_ROWS ((int)(sizeof(error_table) / sizeof(error_table[0])))

static void error_vformat(berth_error *err, int code, const char *fmt,
                          va_list ap)
{
    err->code = code;
    err->sys_errno = 0;
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
}

int berth_error_set(berth_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return code;
    va_start(ap, fmt);
    error_vformat(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int berth_error_sys(berth_error *err, int code, int sys_errno,
                    const char *fmt, ...)
{
    va_list ap;
    size_t used;

    if (err == NULL)
        return code;
    va_start(ap, fmt);
    error_vformat(err, code, fmt, ap);
    va_end(ap);
    err->sys_errno = sys_errno;
    used = strlen(err->message);
    if (used < sizeof(err->message))
        snprintf(err->message + used, sizeof(err->message) - used, ": %s",
                 strerror(sys_errno));
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
