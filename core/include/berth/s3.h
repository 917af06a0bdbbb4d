/*
 * The S3 driver, in a library of its own (libberth-s3, over libberth and
 * libcurl), so that a store on a local disk maps no HTTP client.
 */
#ifndef BERTH_S3_H
#define BERTH_S3_H

#include "berth/sys/driver.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BERTH_S3_OPTIONS_VERSION 1

/* Where an S3 driver's bucket is, named as Distribution's s3 storage
 * section names them. */
typedef struct berth_s3_options {
    unsigned version;       /* BERTH_S3_OPTIONS_VERSION */
    const char *endpoint;   /* regionendpoint: "http://127.0.0.1:7480" */
    const char *bucket;     /* bucket, addressed path-style */
    const char *region;     /* region; NULL: "us-east-1" */
    const char *access_key; /* accesskey */
    const char *secret_key; /* secretkey */
    const char *root;       /* rootdirectory: a key prefix; NULL: none */
    int attempts; /* tries of a request S3 answers busy (503, SlowDown) or
                     whose connection fails; 0: 5 */
} berth_s3_options;

/**
 * The S3 driver (object storage: Ceph RGW, AWS S3), work in progress:
 * core/src/driver_s3.c says what it does not do yet.
 * @return 0, BERTH_EINVAL (options missing), BERTH_EIO, BERTH_ENOMEM.
 */
BERTH_API
int berth_driver_s3_new(berth_driver **out, const berth_s3_options *opts,
                        berth_error *err);

#ifdef __cplusplus
}
#endif
#endif
