/*
 * berth error codes and the error record every call fills in.
 *
 * Functions return int: 0 is success, a negative BERTH_E* is a failure. Each
 * function lists the two or three codes a caller should expect; anything else
 * is BERTH_ERROR or BERTH_EIO. The optional berth_error carries a one-line
 * message and never allocates, so out-of-memory can be reported too.
 */
#ifndef BERTH_ERRORS_H
#define BERTH_ERRORS_H

#include <stddef.h>

/* The public API (on its own line before each declaration, as GLib's
 * markers): the libraries are built with -fvisibility=hidden, so what is
 * not marked (core/src/internal.h's berth__*) is not exported. Every
 * header includes this one. */
#if defined(__GNUC__)
#define BERTH_API __attribute__((visibility("default")))
#else
#define BERTH_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

enum {
    BERTH_OK = 0,
#define BERTH_ERR(name, value, code, http, api, msg) BERTH_##name = value,
#include "berth/errors.def"
#undef BERTH_ERR
};

#define BERTH_ERROR_MESSAGE_MAX 256

typedef struct berth_error {
    int code;                              /* BERTH_E*, negative; 0 if none */
    int sys_errno;                         /* errno when the OS caused it */
    char message[BERTH_ERROR_MESSAGE_MAX]; /* one line, lower case */
} berth_error;

/**
 * Record an error and return its code, so a failure is one statement:
 *   return berth_error_set(err, BERTH_EBLOB_UNKNOWN, "blob unknown: %s", d);
 * The message is kept one line whatever the arguments hold (see
 * berth_error_escape), cut to BERTH_ERROR_MESSAGE_MAX - 1 bytes.
 * @param err may be NULL; the message is then dropped.
 * @return code, unchanged.
 */
BERTH_API
int berth_error_set(berth_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Like berth_error_set, appending strerror(sys_errno) and keeping it. */
BERTH_API
int berth_error_sys(berth_error *err, int code, int sys_errno,
                    const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/**
 * Copy len bytes of in to out as one line, as every message is kept:
 * control bytes become \n, \r, \t or \xNN; other bytes (UTF-8 too) stay.
 * Cut to fit cap - 1 bytes, never inside an escape; out is NUL terminated.
 * @return the length written.
 */
BERTH_API
size_t berth_error_escape(char *out, size_t cap, const char *in, size_t len);

/** Reset an error record to "no error". */
BERTH_API
void berth_error_clear(berth_error *err);

/**
 * Describe a code from the table (errors.def). Any pointer argument may be
 * NULL; strings are static.
 * @param name_out enum name without BERTH_ ("EBLOB_UNKNOWN")
 * @param oci_out OCI code ("BLOB_UNKNOWN") or NULL when it has none
 * @param http_out HTTP status a client gets for it
 * @param api_out OCI error code of that answer ("UNKNOWN" for berth's own
 *        failures)
 * @param message_out default message
 * @return 0, or BERTH_ENOTFOUND for a code not in the table.
 */
BERTH_API
int berth_error_info(int code, const char **name_out, const char **oci_out,
                     int *http_out, const char **api_out,
                     const char **message_out);

/** Number of rows in the table; berth_error_code_at(i) walks them. */
BERTH_API
int berth_error_count(void);
BERTH_API
int berth_error_code_at(int index);

#ifdef __cplusplus
}
#endif
#endif
