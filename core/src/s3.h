/*
 * An S3 client for the S3 driver (driver_s3.c): requests signed with
 * SigV4 (sigv4.c), sent through libcurl over a pool of kept-alive
 * connections shared by the threads of a process, retried with backoff on
 * what S3 says is passing (503 SlowDown, 500, connection resets).
 * Internal to libberth.
 */
#ifndef BERTH_S3_CLIENT_H
#define BERTH_S3_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "berth/buf.h"
#include "berth/errors.h"
#include "berth/sys/driver.h"
#include "sigv4.h"

typedef struct s3_client s3_client;

typedef struct s3_config {
    const char *endpoint; /* "http://127.0.0.1:7480", no trailing '/' */
    const char *bucket;   /* path-style: <endpoint>/<bucket>/<key> */
    const char *region;   /* signed; RGW takes any */
    const char *access_key;
    const char *secret_key;
    int attempts;   /* tries of a request that fails passingly */
    int backoff_ms; /* the first pause; doubles each try */
} s3_config;

/* A request body read from a file, at an offset. */
typedef struct s3_file_body {
    int fd;
    uint64_t offset;
    uint64_t size;
} s3_file_body;

typedef struct s3_request {
    const char *method;
    const char *key; /* the object's key, raw; NULL: the bucket itself */
    const berth__sigv4_pair *query;
    size_t nquery;
    const berth__sigv4_pair *headers; /* besides host and x-amz-* */
    size_t nheaders;
    const void *body; /* a body in memory, or */
    size_t body_len;
    const s3_file_body *file; /* one from a file (unsigned payload) */
    berth_buf *out;           /* a 2xx answer's body; NULL: dropped */
    size_t max;               /* more than this: BERTH_ETOOLARGE */
} s3_request;

typedef struct s3_response {
    long status;
    int attempts; /* how many were sent: more than one, the first may have
                     been done by the store, its answer lost */
    char etag[BERTH_STAT_VERSION_MAX]; /* unquoted; "" when none */
    int has_length;
    uint64_t length;   /* Content-Length */
    int64_t mtime_ns;  /* Last-Modified; 0 when none */
    uint64_t total;    /* a 206's Content-Range total; 0 when none */
    char parts[64];    /* x-amz-meta-berth-parts (driver_s3.c) */
    char code[64];     /* an error answer's S3 code: "NoSuchKey" */
    char message[256]; /* and its message */
} s3_response;

int s3_client_new(s3_client **out, const s3_config *cfg, berth_error *err);
void s3_client_free(s3_client *c);

/*
 * Send req, retrying what fails passingly, and fill *resp with the answer
 * whatever its status (the caller says what a status means).
 * @return 0, BERTH_EUNAVAILABLE (still failing after the last attempt),
 *         BERTH_ETOOLARGE (a body over req->max), BERTH_EIO (a transport
 *         failure that is no passing one), BERTH_ENOMEM.
 */
int s3_send(s3_client *c, const s3_request *req, s3_response *resp,
            berth_error *err);

/* A presigned GET of key, valid for expires seconds. */
int s3_presign(berth_buf *url, s3_client *c, const char *key,
               unsigned expires, berth_error *err);

/* The value of x-amz-copy-source for key: /<bucket>/<key>, encoded. */
int s3_copy_source(berth_buf *out, s3_client *c, const char *key,
                   berth_error *err);

/* The answer of a failed request as an error: its status, S3 code and
 * message, under code. */
int s3_fail(berth_error *err, int code, const s3_response *resp,
            const char *what, const char *key);

/*
 * XML answers: the text of the next <tag>...</tag> at or after *at within
 * [*at, end), entities decoded into out; *at moves past it.
 * @return 1 found, 0 not, BERTH_ENOMEM.
 */
int s3_xml_next(berth_buf *out, const char **at, const char *end,
                const char *tag, berth_error *err);

#endif
