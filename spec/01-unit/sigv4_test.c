/*
 * SigV4 (core/src/sigv4.c) against what others sign.
 *
 *   berth_sigv4_test                  the published vectors, the URI
 *                                     encoding, refusals, the key cache
 *   berth_sigv4_test --oracle PYTHON SCRIPT N
 *                                     N generated requests signed by berth
 *                                     and by botocore (SCRIPT, run with
 *                                     PYTHON), compared one by one
 *   berth_sigv4_test --bench          microseconds per signature
 *
 * Exit status 0 when everything matched, 1 otherwise (each difference is
 * printed with both canonical requests).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <berth/berth.h>
#include <berth/sys/alloc.h>

#include "sigv4.h"

#define EMPTY_SHA256                                                         \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static int failures;

static void expect_str(int line, const char *what, const char *got,
                       const char *want)
{
    if (got == NULL)
        got = "(null)";
    if (strcmp(got, want) == 0)
        return;
    failures++;
    fprintf(stderr, "sigv4_test.c:%d: %s\n  got:  %s\n  want: %s\n", line,
            what, got, want);
}

static void expect_int(int line, const char *what, int got, int want)
{
    if (got == want)
        return;
    failures++;
    fprintf(stderr, "sigv4_test.c:%d: %s: got %d, want %d\n", line, what, got,
            want);
}

#define EXPECT_STR(what, got, want) expect_str(__LINE__, what, got, want)
#define EXPECT_INT(what, got, want) expect_int(__LINE__, what, got, want)

static void sha256_hex(char out[65], const char *data, size_t len)
{
    berth_digest d;
    berth_error err;

    if (berth_digest_compute(&d, BERTH_DIGEST_SHA256, data, len, &err) < 0) {
        fprintf(stderr, "sha256: %s\n", err.message);
        exit(2);
    }
    memcpy(out, berth_digest_hex(&d), 65);
}

/* A path from raw segments, each encoded once (as the driver builds it). */
static void encode_path(berth_buf *out, const char *raw)
{
    berth_error err;

    berth_buf_clear(out);
    if (berth__sigv4_uri_encode(out, raw, strlen(raw), 1, &err) < 0) {
        fprintf(stderr, "uri_encode: %s\n", err.message);
        exit(2);
    }
}

/* ---- URI encoding ------------------------------------------------------ */

static void test_uri_encode(void)
{
    berth_buf b = BERTH_BUF_INIT;
    berth_error err;
    char byte[2] = { 0, 0 }, want[4];
    int c;

    berth__sigv4_uri_encode(&b, "a/b c+~", 7, 1, &err);
    EXPECT_STR("path keeps '/'", b.ptr, "a/b%20c%2B~");
    berth_buf_clear(&b);
    berth__sigv4_uri_encode(&b, "a/b c+~", 7, 0, &err);
    EXPECT_STR("value encodes '/'", b.ptr, "a%2Fb%20c%2B~");
    berth_buf_clear(&b);
    /* U+1234 (get-utf8's path): its UTF-8 bytes, uppercase hex */
    berth__sigv4_uri_encode(&b, "\xe1\x88\xb4", 3, 1, &err);
    EXPECT_STR("utf-8", b.ptr, "%E1%88%B4");
    berth_buf_clear(&b);
    /* appends, and a NUL inside is a byte like another */
    berth__sigv4_uri_encode(&b, "x", 1, 1, &err);
    berth__sigv4_uri_encode(&b, "\0%", 2, 1, &err);
    EXPECT_STR("appends", b.ptr, "x%00%25");
    /* every byte: unreserved ones stay, all others are %XX */
    for (c = 1; c < 256; c++) {
        byte[0] = (char)c;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
            (c >= '0' && c <= '9') || strchr("-_.~", c))
            snprintf(want, sizeof(want), "%c", c);
        else
            snprintf(want, sizeof(want), "%%%02X", c);
        berth_buf_clear(&b);
        berth__sigv4_uri_encode(&b, byte, 1, 0, &err);
        EXPECT_STR("byte", b.ptr, want);
    }
    berth_buf_dispose(&b);
}

/* ---- the AWS SigV4 test suite ------------------------------------------ */

/*
 * From AWS's Signature Version 4 test suite (formerly at
 * docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html), as
 * vendored in github.com/bazelbuild/bazel,
 * third_party/aws-sig-v4-test-suite/<name>/<name>.req (the request) and
 * .authz (the expected Authorization), .creq (the canonical request)
 * where quoted here. Credentials AKIDEXAMPLE, region us-east-1, service
 * "service", 20150830T123600Z. The suite's services take no
 * x-amz-content-sha256. Left out: normalize-path/ but get-space (S3 does
 * not normalise paths: botocore's S3 signers do not either), the
 * multi-line header value (refused here: a line break in a header), the
 * session-token cases.
 */
typedef struct suite_case {
    const char *name;
    const char *method;
    const char *raw_path; /* as in the .req, before encoding */
    berth__sigv4_pair query[3];
    size_t nquery;
    berth__sigv4_pair headers[6];
    size_t nheaders;
    const char *body;
    const char *authz;
    const char *creq; /* NULL: not checked */
} suite_case;

#define SUITE_HOST                                                           \
    {                                                                        \
        "Host", "example.amazonaws.com"                                      \
    }
#define SUITE_CRED                                                           \
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"    \
    "aws4_request, "

static const suite_case suite[] = {
    /* get-vanilla-query.sreq: the same request as get-vanilla */
    { "get-vanilla",
      "GET",
      "/",
      { { 0 } },
      0,
      { SUITE_HOST },
      1,
      "",
      SUITE_CRED "SignedHeaders=host;x-amz-date, Signature="
                 "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d7"
                 "63fbf31",
      NULL },
    { "post-vanilla",
      "POST",
      "/",
      { { 0 } },
      0,
      { SUITE_HOST },
      1,
      "",
      SUITE_CRED "SignedHeaders=host;x-amz-date, Signature="
                 "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92e"
                 "fbe5d6b",
      NULL },
    { "get-vanilla-query-order-key-case",
      "GET",
      "/",
      { { "Param2", "value2" }, { "Param1", "value1" } },
      2,
      { SUITE_HOST },
      1,
      "",
      SUITE_CRED "SignedHeaders=host;x-amz-date, Signature="
                 "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94"
                 "cdf2500",
      NULL },
    { "get-vanilla-query-order-value",
      "GET",
      "/",
      { { "Param1", "value2" }, { "Param1", "value1" } },
      2,
      { SUITE_HOST },
      1,
      "",
      SUITE_CRED "SignedHeaders=host;x-amz-date, Signature="
                 "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd4"
                 "71c4694",
      "GET\n/\nParam1=value1&Param1=value2\nhost:example.amazonaws.com\n"
      "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_SHA256 },
    { "get-vanilla-empty-query-key",
      "GET",
      "/",
      { { "Param1", "value1" } },
      1,
      { SUITE_HOST },
      1,
      "",
      SUITE_CRED "SignedHeaders=host;x-amz-date, Signature="
                 "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec720"
                 "11b9aeb",
      NULL },
    { "post-vanilla-empty-query-value",
      "POST",
      "/",
      { { "Param1", "value1" } },
      1,
      { SUITE_HOST },
      1,
      "",
      SUITE_CRED "SignedHeaders=host;x-amz-date, Signature="
                 "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d13"
                 "8af7f11",
      NULL },
    { "get-vanilla-query-unreserved",
      "GET",
      "/",
      { { "-._~"
          "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
          "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxy"
          "z" } },
      1,
      { SUITE_HOST },
      1,
      "",
      SUITE_CRED "SignedHeaders=host;x-amz-date, Signature="
                 "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb14"
                 "3a40197",
      NULL },
    /* the .req's "?\u1234=bar", decoded */
    { "get-vanilla-utf8-query",
      "GET",
      "/",
      { { "\xe1\x88\xb4", "bar" } },
      1,
      { SUITE_HOST },
      1,
      "",
      SUITE_CRED "SignedHeaders=host;x-amz-date, Signature="
                 "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027"
                 "818dd04",
      NULL },
    { "get-utf8",
      "GET",
      "/\xe1\x88\xb4",
      { { 0 } },
      0,
      { SUITE_HOST },
      1,
      "",
      SUITE_CRED "SignedHeaders=host;x-amz-date, Signature="
                 "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd0314"
                 "1be5d85",
      NULL },
    /* normalize-path/get-space: nothing to normalise, only to encode */
    { "get-space",
      "GET",
      "/example space/",
      { { 0 } },
      0,
      { SUITE_HOST },
      1,
      "",
      SUITE_CRED "SignedHeaders=host;x-amz-date, Signature="
                 "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec"
                 "1366741",
      NULL },
    { "get-unreserved",
      "GET",
      "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
      { { 0 } },
      0,
      { SUITE_HOST },
      1,
      "",
      SUITE_CRED "SignedHeaders=host;x-amz-date, Signature="
                 "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65b"
                 "bf5f24f",
      NULL },
    /* the values as the .req has them after the colon */
    { "get-header-value-trim",
      "GET",
      "/",
      { { 0 } },
      0,
      { SUITE_HOST,
        { "My-Header1", " value1" },
        { "My-Header2", " \"a   b   c\"" } },
      3,
      "",
      SUITE_CRED "SignedHeaders=host;my-header1;my-header2;x-amz-date, "
                 "Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b3670"
                 "55dee359757a9c736",
      NULL },
    { "get-header-key-duplicate",
      "GET",
      "/",
      { { 0 } },
      0,
      { SUITE_HOST,
        { "My-Header1", "value2" },
        { "My-Header1", "value2" },
        { "My-Header1", "value1" } },
      4,
      "",
      SUITE_CRED "SignedHeaders=host;my-header1;x-amz-date, Signature="
                 "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531"
                 "a5138ea",
      NULL },
    { "get-header-value-order",
      "GET",
      "/",
      { { 0 } },
      0,
      { SUITE_HOST,
        { "My-Header1", "value4" },
        { "My-Header1", "value1" },
        { "My-Header1", "value3" },
        { "My-Header1", "value2" } },
      5,
      "",
      SUITE_CRED "SignedHeaders=host;my-header1;x-amz-date, Signature="
                 "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830"
                 "c755c01",
      NULL },
    { "post-header-key-sort",
      "POST",
      "/",
      { { 0 } },
      0,
      { SUITE_HOST, { "My-Header1", "value1" } },
      2,
      "",
      SUITE_CRED "SignedHeaders=host;my-header1;x-amz-date, Signature="
                 "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fd"
                 "f18852c",
      NULL },
    { "post-header-value-case",
      "POST",
      "/",
      { { 0 } },
      0,
      { SUITE_HOST, { "My-Header1", "VALUE1" } },
      2,
      "",
      SUITE_CRED "SignedHeaders=host;my-header1;x-amz-date, Signature="
                 "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58"
                 "b974b7d",
      NULL },
    { "post-x-www-form-urlencoded",
      "POST",
      "/",
      { { 0 } },
      0,
      { { "Content-Type", "application/x-www-form-urlencoded" }, SUITE_HOST },
      2,
      "Param1=value1",
      SUITE_CRED "SignedHeaders=content-type;host;x-amz-date, Signature="
                 "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0f"
                 "e09473a",
      "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\n"
      "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
      "content-type;host;x-amz-date\n"
      "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e" },
    { "post-x-www-form-urlencoded-parameters",
      "POST",
      "/",
      { { 0 } },
      0,
      { { "Content-Type", "application/x-www-form-urlencoded; charset=utf8" },
        SUITE_HOST },
      2,
      "Param1=value1",
      SUITE_CRED "SignedHeaders=content-type;host;x-amz-date, Signature="
                 "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39f"
                 "a77a6fe",
      NULL },
};

static void test_suite(void)
{
    const berth__sigv4_creds creds = {
        "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "us-east-1", "service"
    };
    berth__sigv4_signed s = BERTH__SIGV4_SIGNED_INIT;
    berth_buf path = BERTH_BUF_INIT;
    berth_error err;
    char hash[65];
    size_t i;
    int rc;

    for (i = 0; i < sizeof(suite) / sizeof(suite[0]); i++) {
        const suite_case *c = &suite[i];
        berth__sigv4_request req = { 0 };

        encode_path(&path, c->raw_path);
        sha256_hex(hash, c->body, strlen(c->body));
        req.method = c->method;
        req.path = path.ptr;
        req.query = c->query;
        req.nquery = c->nquery;
        req.headers = c->headers;
        req.nheaders = c->nheaders;
        req.payload_hash = hash;
        req.time = 1440938160; /* 20150830T123600Z */
        req.no_content_sha256 = 1;
        rc = berth__sigv4_sign(&s, NULL, &creds, &req, &err);
        EXPECT_INT(c->name, rc, 0);
        if (rc < 0) {
            fprintf(stderr, "  %s\n", err.message);
            continue;
        }
        EXPECT_STR(c->name, s.authorization.ptr, c->authz);
        EXPECT_STR(c->name, s.amz_date, "20150830T123600Z");
        if (c->creq)
            EXPECT_STR(c->name, s.canonical_request.ptr, c->creq);
    }
    berth__sigv4_signed_dispose(&s);
    berth_buf_dispose(&path);
}

/* ---- S3's documented examples ------------------------------------------ */

/*
 * From the Amazon S3 API reference, "Signature Calculations for the
 * Authorization Header: Transferring Payload in a Single Chunk"
 * (docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html:
 * GET Object, PUT Object, GET Bucket Lifecycle, Get Bucket (List
 * Objects)) and "Authenticating Requests: Using Query Parameters"
 * (sigv4-query-string-auth.html: the presigned GET). Bucket examplebucket,
 * AKIAIOSFODNN7EXAMPLE, 20130524T000000Z. The pages print Authorization
 * without a space after each comma; S3 takes both, the suite's form is
 * used here, so the signature and signed headers are compared.
 */
static const berth__sigv4_creds s3_creds = {
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "us-east-1", "s3"
};
#define S3_TIME 1369353600 /* 20130524T000000Z */
#define S3_HOST                                                              \
    {                                                                        \
        "Host", "examplebucket.s3.amazonaws.com"                             \
    }

static void test_s3_examples(void)
{
    static const berth__sigv4_pair get_h[] = { S3_HOST,
                                               { "Range", "bytes=0-9" } };
    static const berth__sigv4_pair put_h[] = {
        S3_HOST,
        { "Date", "Fri, 24 May 2013 00:00:00 GMT" },
        { "x-amz-storage-class", "REDUCED_REDUNDANCY" }
    };
    static const berth__sigv4_pair host_h[] = { S3_HOST };
    static const berth__sigv4_pair lifecycle_q[] = { { "lifecycle", NULL } };
    static const berth__sigv4_pair list_q[] = { { "prefix", "J" },
                                                { "max-keys", "2" } };
    berth__sigv4_signed s = BERTH__SIGV4_SIGNED_INIT;
    berth__sigv4_request req = { 0 };
    berth_buf path = BERTH_BUF_INIT;
    berth_error err;
    char hash[65];
    int rc;

    /* GET Object, with a Range header */
    req.method = "GET";
    req.path = "/test.txt";
    req.headers = get_h;
    req.nheaders = 2;
    req.payload_hash = EMPTY_SHA256;
    req.time = S3_TIME;
    rc = berth__sigv4_sign(&s, NULL, &s3_creds, &req, &err);
    EXPECT_INT("GET Object", rc, 0);
    EXPECT_STR("GET Object canonical request", s.canonical_request.ptr,
               "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\n"
               "range:bytes=0-9\nx-amz-content-sha256:" EMPTY_SHA256 "\n"
               "x-amz-date:20130524T000000Z\n\n"
               "host;range;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA256);
    EXPECT_STR("GET Object string to sign", s.string_to_sign.ptr,
               "AWS4-HMAC-SHA256\n20130524T000000Z\n"
               "20130524/us-east-1/s3/aws4_request\n"
               "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc439649"
               "46972");
    EXPECT_STR("GET Object signature", s.signature,
               "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036"
               "bdb41");
    EXPECT_STR("GET Object signed headers", s.signed_headers.ptr,
               "host;range;x-amz-content-sha256;x-amz-date");
    EXPECT_STR("GET Object authorization", s.authorization.ptr,
               "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/"
               "us-east-1/s3/aws4_request, SignedHeaders=host;range;"
               "x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420"
               "e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    EXPECT_STR("GET Object x-amz-date", s.amz_date, "20130524T000000Z");

    /* PUT Object: a key with '$', a signed payload */
    encode_path(&path, "/test$file.text");
    EXPECT_STR("PUT Object path", path.ptr, "/test%24file.text");
    sha256_hex(hash, "Welcome to Amazon S3.", 21);
    EXPECT_STR("PUT Object payload", hash,
               "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f"
               "8b072");
    req.method = "PUT";
    req.path = path.ptr;
    req.headers = put_h;
    req.nheaders = 3;
    req.payload_hash = hash;
    rc = berth__sigv4_sign(&s, NULL, &s3_creds, &req, &err);
    EXPECT_INT("PUT Object", rc, 0);
    EXPECT_STR("PUT Object string to sign", s.string_to_sign.ptr,
               "AWS4-HMAC-SHA256\n20130524T000000Z\n"
               "20130524/us-east-1/s3/aws4_request\n"
               "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b415834"
               "2019d");
    EXPECT_STR("PUT Object signature", s.signature,
               "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece"
               "108bd");
    EXPECT_STR("PUT Object signed headers", s.signed_headers.ptr,
               "date;host;x-amz-content-sha256;x-amz-date;"
               "x-amz-storage-class");

    /* GET Bucket Lifecycle: "?lifecycle", a parameter without a value */
    req.method = "GET";
    req.path = "/";
    req.query = lifecycle_q;
    req.nquery = 1;
    req.headers = host_h;
    req.nheaders = 1;
    req.payload_hash = EMPTY_SHA256;
    rc = berth__sigv4_sign(&s, NULL, &s3_creds, &req, &err);
    EXPECT_INT("GET Lifecycle", rc, 0);
    EXPECT_STR("GET Lifecycle query", s.query.ptr, "lifecycle=");
    EXPECT_STR("GET Lifecycle string to sign", s.string_to_sign.ptr,
               "AWS4-HMAC-SHA256\n20130524T000000Z\n"
               "20130524/us-east-1/s3/aws4_request\n"
               "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77"
               "395ca");
    EXPECT_STR("GET Lifecycle signature", s.signature,
               "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a01367"
               "83543");

    /* Get Bucket (List Objects): parameters given out of order */
    req.query = list_q;
    req.nquery = 2;
    rc = berth__sigv4_sign(&s, NULL, &s3_creds, &req, &err);
    EXPECT_INT("List Objects", rc, 0);
    EXPECT_STR("List Objects query", s.query.ptr, "max-keys=2&prefix=J");
    EXPECT_STR("List Objects signature", s.signature,
               "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69"
               "dc6f7");

    /* the presigned GET, 24 hours */
    req.path = "/test.txt";
    req.query = NULL;
    req.nquery = 0;
    req.payload_hash = NULL;
    rc = berth__sigv4_presign(&s, NULL, &s3_creds, &req, 86400, &err);
    EXPECT_INT("presign", rc, 0);
    EXPECT_STR("presign canonical request", s.canonical_request.ptr,
               "GET\n/test.txt\nX-Amz-Algorithm=AWS4-HMAC-SHA256&"
               "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
               "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&"
               "X-Amz-Expires=86400&X-Amz-SignedHeaders=host\n"
               "host:examplebucket.s3.amazonaws.com\n\nhost\n"
               "UNSIGNED-PAYLOAD");
    EXPECT_STR("presign string to sign", s.string_to_sign.ptr,
               "AWS4-HMAC-SHA256\n20130524T000000Z\n"
               "20130524/us-east-1/s3/aws4_request\n"
               "3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf5"
               "8ad04");
    EXPECT_STR("presign signature", s.signature,
               "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f60"
               "4d404");
    EXPECT_STR("presign query", s.query.ptr,
               "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
               "AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2F"
               "aws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
               "X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c"
               "0109b86d86835f995330da4c265957d157751f604d404");
    EXPECT_INT("presign: no authorization", (int)s.authorization.len, 0);

    berth__sigv4_signed_dispose(&s);
    berth_buf_dispose(&path);
}

/* ---- refusals ---------------------------------------------------------- */

static void test_refusals(void)
{
    static const berth__sigv4_pair host[] = { { "host", "h" } };
    static const berth__sigv4_pair no_host[] = { { "range", "bytes=0-1" } };
    static const berth__sigv4_pair crlf[] = { { "host", "h" },
                                              { "x-a", "1\r\nx-b: 2" } };
    static const berth__sigv4_pair own[] = { { "host", "h" },
                                             { "X-Amz-Date", "x" } };
    static const berth__sigv4_pair bad_name[] = { { "host", "h" },
                                                  { "a b", "1" } };
    static const berth__sigv4_pair amz_q[] = { { "X-Amz-Expires", "1" } };
    static const struct {
        const char *what, *method, *path, *payload;
        const berth__sigv4_pair *headers, *query;
        size_t nheaders, nquery;
        int64_t time;
        int presign;
        unsigned expires;
    } cases[] = {
        { "no host", "GET", "/", EMPTY_SHA256, no_host, NULL, 1, 0, 0, 0, 0 },
        { "raw path", "GET", "/a b", EMPTY_SHA256, host, NULL, 1, 0, 0, 0,
          0 },
        { "lowercase escape", "GET", "/%2f", EMPTY_SHA256, host, NULL, 1, 0,
          0, 0, 0 },
        { "cut escape", "GET", "/%2", EMPTY_SHA256, host, NULL, 1, 0, 0, 0,
          0 },
        { "relative path", "GET", "a", EMPTY_SHA256, host, NULL, 1, 0, 0, 0,
          0 },
        { "method", "get", "/", EMPTY_SHA256, host, NULL, 1, 0, 0, 0, 0 },
        { "payload hash", "GET", "/", "E3B0", host, NULL, 1, 0, 0, 0, 0 },
        { "no payload hash", "GET", "/", NULL, host, NULL, 1, 0, 0, 0, 0 },
        { "line break", "GET", "/", EMPTY_SHA256, crlf, NULL, 2, 0, 0, 0, 0 },
        { "signer's header", "GET", "/", EMPTY_SHA256, own, NULL, 2, 0, 0, 0,
          0 },
        { "header name", "GET", "/", EMPTY_SHA256, bad_name, NULL, 2, 0, 0, 0,
          0 },
        { "time", "GET", "/", EMPTY_SHA256, host, NULL, 1, 0, -1, 0, 0 },
        { "year 10000", "GET", "/", EMPTY_SHA256, host, NULL, 1, 0,
          INT64_C(253402300800), 0, 0 },
        { "expires 0", "GET", "/", NULL, host, NULL, 1, 0, 0, 1, 0 },
        { "expires 7d+1", "GET", "/", NULL, host, NULL, 1, 0, 0, 1, 604801 },
        { "presign PUT", "PUT", "/", NULL, host, NULL, 1, 0, 0, 1, 60 },
        { "presign X-Amz-", "GET", "/", NULL, host, amz_q, 1, 1, 0, 1, 60 },
    };
    static const berth__sigv4_creds bad_creds = { "AK/IA", "s", "us-east-1",
                                                  "s3" };
    berth__sigv4_signed s = BERTH__SIGV4_SIGNED_INIT;
    berth_error err;
    size_t i;
    int rc;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        berth__sigv4_request req = { 0 };

        req.method = cases[i].method;
        req.path = cases[i].path;
        req.payload_hash = cases[i].payload;
        req.headers = cases[i].headers;
        req.nheaders = cases[i].nheaders;
        req.query = cases[i].query;
        req.nquery = cases[i].nquery;
        req.time = cases[i].time;
        berth_error_clear(&err);
        rc = cases[i].presign
                 ? berth__sigv4_presign(&s, NULL, &s3_creds, &req,
                                        cases[i].expires, &err)
                 : berth__sigv4_sign(&s, NULL, &s3_creds, &req, &err);
        EXPECT_INT(cases[i].what, rc, BERTH_EINVAL);
        EXPECT_INT(cases[i].what, err.code, BERTH_EINVAL);
        if (strncmp(err.message, "sigv4: ", 7) != 0) {
            failures++;
            fprintf(stderr, "%s: message %s\n", cases[i].what, err.message);
        }
        EXPECT_INT(cases[i].what, (int)s.authorization.len, 0);
    }
    {
        berth__sigv4_request req = { "GET", "/",          NULL, 0, host,
                                     1,     EMPTY_SHA256, 0,    0 };

        rc = berth__sigv4_sign(&s, NULL, &bad_creds, &req, &err);
        EXPECT_INT("access key with '/'", rc, BERTH_EINVAL);
    }
    berth__sigv4_signed_dispose(&s);
}

/* ---- the key cache ----------------------------------------------------- */

static void sign_at(berth__sigv4_signed *s, berth__sigv4_cache *cache,
                    const berth__sigv4_creds *cr, int64_t t)
{
    static const berth__sigv4_pair host[] = { { "host", "127.0.0.1:7480" } };
    berth__sigv4_request req = {
        "GET", "/b/k", NULL, 0, host, 1, BERTH_SIGV4_UNSIGNED_PAYLOAD, t, 0
    };
    berth_error err;

    if (berth__sigv4_sign(s, cache, cr, &req, &err) < 0) {
        fprintf(stderr, "sign: %s\n", err.message);
        exit(2);
    }
}

/* A cached key must sign as a fresh one, and never outlive what it was
 * derived from: another day, region, service or secret derives again. */
static void test_cache(void)
{
    berth__sigv4_creds cr = s3_creds, other[4];
    berth__sigv4_signed a = BERTH__SIGV4_SIGNED_INIT;
    berth__sigv4_signed b = BERTH__SIGV4_SIGNED_INIT;
    berth__sigv4_cache cache = BERTH__SIGV4_CACHE_INIT;
    char long_secret[400];
    size_t i;

    sign_at(&a, NULL, &cr, S3_TIME);
    sign_at(&b, &cache, &cr, S3_TIME);
    EXPECT_STR("cache, first", b.signature, a.signature);
    EXPECT_INT("cache filled", cache.id_len > 0, 1);
    sign_at(&b, &cache, &cr, S3_TIME + 3600);
    sign_at(&a, NULL, &cr, S3_TIME + 3600);
    EXPECT_STR("cache, same day", b.signature, a.signature);
    sign_at(&b, &cache, &cr, S3_TIME + 86400);
    sign_at(&a, NULL, &cr, S3_TIME + 86400);
    EXPECT_STR("cache, next day", b.signature, a.signature);

    for (i = 0; i < 4; i++)
        other[i] = cr;
    other[0].secret_key = "another secret";
    other[1].region = "eu-west-3";
    other[2].service = "sts";
    /* too long to cache: signed without it, correctly */
    memset(long_secret, 'k', sizeof(long_secret) - 1);
    long_secret[sizeof(long_secret) - 1] = '\0';
    other[3].secret_key = long_secret;
    for (i = 0; i < 4; i++) {
        sign_at(&b, &cache, &cr, S3_TIME);
        sign_at(&b, &cache, &other[i], S3_TIME);
        sign_at(&a, NULL, &other[i], S3_TIME);
        EXPECT_STR("cache, other credentials", b.signature, a.signature);
        sign_at(&b, &cache, &cr, S3_TIME);
        sign_at(&a, NULL, &cr, S3_TIME);
        EXPECT_STR("cache, back", b.signature, a.signature);
    }
    berth__sigv4_cache_clear(&cache);
    EXPECT_INT("cache cleared", (int)cache.id_len, 0);
    berth__sigv4_signed_dispose(&a);
    berth__sigv4_signed_dispose(&b);
}

/* ---- allocation failures ---------------------------------------------- */

/*
 * Each allocation berth's buffers make fails in turn (berth/sys/alloc.h;
 * sigv4.c's own calloc is counted in libberth, not in this program): the
 * answer is BERTH_ENOMEM with nothing half-signed (a key cached on the way
 * is the right one), until a run needs no more and signs as always. The ASan build checks for leaks at exit.
 */
static void test_alloc_failures(void)
{
    static const berth__sigv4_pair h[] = { S3_HOST,
                                           { "Range", "bytes=0-9" } };
    static const berth__sigv4_pair q[] = { { "prefix", "a b/" },
                                           { "uploads", NULL } };
    berth__sigv4_request req = { "GET", "/test.txt",  q,       2, h,
                                 2,     EMPTY_SHA256, S3_TIME, 0 };
    berth__sigv4_signed s = BERTH__SIGV4_SIGNED_INIT;
    berth__sigv4_cache cache = BERTH__SIGV4_CACHE_INIT;
    char want[2][65];
    berth_error err;
    int form, rc;
    uint64_t n;

    for (form = 0; form < 2; form++) {
        rc = form ? berth__sigv4_presign(&s, NULL, &s3_creds, &req, 60, &err)
                  : berth__sigv4_sign(&s, NULL, &s3_creds, &req, &err);
        EXPECT_INT("unfailed", rc, 0);
        memcpy(want[form], s.signature, 65);
        berth__sigv4_signed_dispose(&s);
        for (n = 1; n < 1000; n++) {
            berth__sigv4_cache_clear(&cache);
            berth_alloc_fail_at(n);
            rc = form ? berth__sigv4_presign(&s, &cache, &s3_creds, &req, 60,
                                             &err)
                      : berth__sigv4_sign(&s, &cache, &s3_creds, &req, &err);
            berth_alloc_fail_at(0);
            if (rc == 0)
                break;
            EXPECT_INT("failed allocation", rc, BERTH_ENOMEM);
            EXPECT_INT("nothing signed", (int)s.query.len, 0);
            berth__sigv4_signed_dispose(&s);
            /* a key cached before the failure is the right one */
            rc = form ? berth__sigv4_presign(&s, &cache, &s3_creds, &req, 60,
                                             &err)
                      : berth__sigv4_sign(&s, &cache, &s3_creds, &req, &err);
            EXPECT_INT("after a failure", rc, 0);
            EXPECT_STR("after a failure", s.signature, want[form]);
            berth__sigv4_signed_dispose(&s);
        }
        EXPECT_INT("allocations counted", n > 3, 1);
        EXPECT_STR("signed after the sweep", s.signature, want[form]);
        berth__sigv4_signed_dispose(&s);
    }
}

/* ---- the botocore oracle ----------------------------------------------- */

/*
 * Generated requests: keys with spaces, UTF-8, reserved and percent
 * characters, repeated slashes; query parameters with empty or missing
 * values, repeated names, characters to encode; headers in any case,
 * repeated, with blanks to trim and collapse; signed and unsigned
 * payloads; presigned GET and HEAD. berth signs each, and
 * spec/01-unit/sigv4_oracle.py has botocore sign it from the raw parts
 * (it builds the path with Python's own quote()).
 */
#define MAXQ 6
#define MAXH 7
#define STR 160

typedef struct gen_case {
    int presign, signed_payload;
    int64_t time;
    unsigned expires;
    const char *region, *method;
    char access[24], secret[48], bucket[24], host[32];
    char key[STR], body[STR];
    size_t nq, nh;
    char qn[MAXQ][STR], qv[MAXQ][STR], hn[MAXH][STR], hv[MAXH][STR];
} gen_case;

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64*: reproducible from the seed printed */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

static size_t below(size_t n)
{
    return (size_t)(rnd() % n);
}

#define PICK(arr) (arr[below(sizeof(arr) / sizeof(arr[0]))])

/* Up to max pieces from pool, joined, into out (cap STR). */
static void gen_string(char *out, const char *const *pool, size_t npool,
                       size_t max)
{
    size_t n = below(max + 1), len = 0, i;

    out[0] = '\0';
    for (i = 0; i < n; i++) {
        const char *p = pool[below(npool)];
        size_t pl = strlen(p);

        if (len + pl >= STR)
            break;
        memcpy(out + len, p, pl + 1);
        len += pl;
    }
}

static const char *const key_pool[] = { "a",
                                        "b",
                                        "z",
                                        "Q",
                                        "0",
                                        "9",
                                        "blobs",
                                        " ",
                                        "  ",
                                        "/",
                                        "//",
                                        "+",
                                        "%",
                                        "%2F",
                                        "?",
                                        "#",
                                        "&",
                                        "=",
                                        "~",
                                        "-",
                                        "_",
                                        ".",
                                        "..",
                                        "*",
                                        "'",
                                        "(",
                                        ")",
                                        "!",
                                        "$",
                                        ",",
                                        ";",
                                        ":",
                                        "@",
                                        "[",
                                        "]",
                                        "\"",
                                        "<",
                                        ">",
                                        "\\",
                                        "^",
                                        "`",
                                        "{",
                                        "|",
                                        "}",
                                        "\t",
                                        "\xe1\x88\xb4",
                                        "\xc3\xa9",
                                        "\xe6\x97\xa5\xe6\x9c\xac",
                                        "\xf0\x9f\x98\x80",
                                        "sha256:ab" };
static const char *const qname_pool[] = { "uploads",
                                          "uploadId",
                                          "partNumber",
                                          "list-type",
                                          "prefix",
                                          "delimiter",
                                          "continuation-token",
                                          "max-keys",
                                          "a",
                                          "A",
                                          "Z",
                                          "z",
                                          "-",
                                          "_",
                                          ".",
                                          "~",
                                          "0",
                                          " ",
                                          "+",
                                          "=",
                                          "&",
                                          "/",
                                          "%",
                                          "\xc3\xa9",
                                          "\xe1\x88\xb4",
                                          "x-id",
                                          "response-content-type" };
static const char *const qvalue_pool[] = {
    "",      "2",        "a",
    "B",     " ",        "+",
    "/",     "=",        "&",
    "%",     "%20",      "~",
    "-",     ".",        "*",
    "!",     "'",        "(",
    ")",     ",",        ";",
    ":",     "@",        "#",
    "?",     "\xc3\xa9", "\xf0\x9f\x98\x80",
    "beta/", "1/2+3=4"
};
static const char *const hname_pool[] = {
    "range",       "content-type", "if-none-match",
    "if-match",    "x-amz-meta-a", "x-amz-copy-source",
    "content-md5", "x-amz-acl",    "my-header",
    "a",           "z-last"
};
static const char *const hvalue_pool[] = {
    "a", "Z", "0", " ", "  ", "\t", "\"",        ",",        ";",         "=",
    "/", "*", "(", ")", "~",  "%",  "bytes=0-9", "\"etag\"", "text/plain"
};
static const char *const regions[] = { "us-east-1", "eu-west-3", "default",
                                       "zg1" };
static const char *const methods[] = { "GET", "HEAD", "PUT", "POST",
                                       "DELETE" };

static void gen_alnum(char *out, size_t n, const char *alphabet)
{
    size_t i, na = strlen(alphabet);

    for (i = 0; i < n; i++)
        out[i] = alphabet[below(na)];
    out[n] = '\0';
}

static void gen_case_make(gen_case *c)
{
    size_t i;

    memset(c, 0, sizeof(*c));
    c->presign = below(4) == 0;
    c->time = 946684800 + (int64_t)below(UINT64_C(3155760000));
    c->region = PICK(regions);
    c->method = c->presign ? (below(2) ? "GET" : "HEAD") : PICK(methods);
    gen_alnum(c->access, 20, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
    gen_alnum(c->secret, 40,
              "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
              "0123456789+/");
    gen_alnum(c->bucket, 3 + below(10),
              "abcdefghijklmnopqrstuvwxyz0123456789-");
    snprintf(c->host, sizeof(c->host), "127.0.0.1:%u",
             (unsigned)(1024 + below(60000)));
    gen_string(c->key, key_pool, sizeof(key_pool) / sizeof(key_pool[0]), 12);
    c->signed_payload = !c->presign && below(2);
    if (c->signed_payload)
        gen_string(c->body, key_pool, sizeof(key_pool) / sizeof(key_pool[0]),
                   8);
    c->expires = 1 + (unsigned)below(BERTH_SIGV4_EXPIRES_MAX);

    c->nq = below(MAXQ + 1);
    for (i = 0; i < c->nq; i++) {
        gen_string(c->qn[i], qname_pool,
                   sizeof(qname_pool) / sizeof(qname_pool[0]), 3);
        if (i > 0 && !c->presign && below(4) == 0)
            strcpy(c->qn[i], c->qn[i - 1]); /* a repeated name */
        gen_string(c->qv[i], qvalue_pool,
                   sizeof(qvalue_pool) / sizeof(qvalue_pool[0]), 4);
    }
    if (c->presign) {
        /* botocore's presign keeps one value per name: the index makes
         * them distinct */
        for (i = 0; i < c->nq; i++) {
            char tmp[STR + 8];

            snprintf(tmp, sizeof(tmp), "%s%zu", c->qn[i], i);
            snprintf(c->qn[i], STR, "%.*s", STR - 1, tmp);
        }
    }

    /* host first or anywhere, then headers of any case, some repeated */
    c->nh = c->presign ? below(2) + 1 : 1 + below(MAXH);
    for (i = 0; i < c->nh; i++) {
        size_t k;

        strcpy(c->hn[i], PICK(hname_pool));
        if (i > 0 && below(3) == 0)
            strcpy(c->hn[i], c->hn[i - 1]);
        for (k = 0; c->hn[i][k]; k++)
            if (below(3) == 0 && c->hn[i][k] >= 'a' && c->hn[i][k] <= 'z')
                c->hn[i][k] = (char)(c->hn[i][k] - 'a' + 'A');
        gen_string(c->hv[i], hvalue_pool,
                   sizeof(hvalue_pool) / sizeof(hvalue_pool[0]), 6);
    }
    i = below(c->nh);
    strcpy(c->hn[i], below(2) ? "Host" : "host");
    strcpy(c->hv[i], c->host);
}

static void put_hex(FILE *f, const char *s)
{
    fputc('x', f);
    for (; *s; s++)
        fprintf(f, "%02x", (unsigned char)*s);
    fputc(' ', f);
}

static void gen_case_write(FILE *f, const gen_case *c)
{
    size_t i;

    fprintf(f, "%s %lld %u %s ", c->presign ? "presign" : "sign",
            (long long)c->time, c->expires,
            c->signed_payload ? "signed" : "unsigned");
    put_hex(f, c->region);
    put_hex(f, c->access);
    put_hex(f, c->secret);
    put_hex(f, c->method);
    put_hex(f, c->bucket);
    put_hex(f, c->key);
    put_hex(f, c->body);
    fprintf(f, "%zu ", c->nq);
    for (i = 0; i < c->nq; i++) {
        put_hex(f, c->qn[i]);
        put_hex(f, c->qv[i]);
    }
    fprintf(f, "%zu ", c->nh);
    for (i = 0; i < c->nh; i++) {
        put_hex(f, c->hn[i]);
        put_hex(f, c->hv[i]);
    }
    fputc('\n', f);
}

/* berth's answer for c: the Authorization value, or the presigned query. */
static int gen_case_sign(berth__sigv4_signed *s, const gen_case *c,
                         berth_buf *path, berth_error *err)
{
    berth__sigv4_pair q[MAXQ], h[MAXH];
    berth__sigv4_creds cr = { c->access, c->secret, c->region, "s3" };
    berth__sigv4_request req = { 0 };
    char hash[65];
    size_t i;
    int rc;

    berth_buf_clear(path);
    if ((rc = berth_buf_printf(path, err, "/%s/", c->bucket)) < 0 ||
        (rc = berth__sigv4_uri_encode(path, c->key, strlen(c->key), 1, err)) <
            0)
        return rc;
    for (i = 0; i < c->nq; i++) {
        q[i].name = c->qn[i];
        q[i].value = c->qv[i];
    }
    for (i = 0; i < c->nh; i++) {
        h[i].name = c->hn[i];
        h[i].value = c->hv[i];
    }
    sha256_hex(hash, c->body, strlen(c->body));
    req.method = c->method;
    req.path = path->ptr;
    req.query = q;
    req.nquery = c->nq;
    req.headers = h;
    req.nheaders = c->nh;
    req.payload_hash = c->signed_payload ? hash
                                         : BERTH_SIGV4_UNSIGNED_PAYLOAD;
    req.time = c->time;
    if (c->presign)
        return berth__sigv4_presign(s, NULL, &cr, &req, c->expires, err);
    return berth__sigv4_sign(s, NULL, &cr, &req, err);
}

static int unhex(berth_buf *out, const char *s)
{
    berth_error err;

    berth_buf_clear(out);
    if (*s++ != 'x')
        return -1;
    for (; s[0] && s[1] && s[0] != ' ' && s[0] != '\n'; s += 2) {
        char c = (char)strtol((char[]){ s[0], s[1], 0 }, NULL, 16);

        if (berth_buf_put(out, &c, 1, &err) < 0)
            return -1;
    }
    return 0;
}

/* Run argv with its stdout into a pipe. */
static FILE *spawn(char *const argv[], pid_t *pid)
{
    int fds[2];

    if (pipe(fds) < 0)
        return NULL;
    if ((*pid = fork()) < 0)
        return NULL;
    if (*pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    return fdopen(fds[0], "r");
}

static int oracle(const char *python, const char *script, int n)
{
    char tmpl[] = "/tmp/berth-sigv4-XXXXXX";
    berth__sigv4_signed s = BERTH__SIGV4_SIGNED_INIT;
    berth_buf path = BERTH_BUF_INIT, theirs = BERTH_BUF_INIT;
    berth_buf their_creq = BERTH_BUF_INIT;
    char **ours = NULL, **our_creq = NULL;
    gen_case *cases = NULL;
    char *line = NULL, *sp;
    size_t cap = 0;
    uint64_t seed = UINT64_C(0x5eed5147);
    int fd, i, got = 0, bad = 0, presigned = 0, status = 0;
    berth_error err;
    FILE *f = NULL, *in = NULL;
    pid_t pid = -1;

    if (getenv("BERTH_SIGV4_SEED"))
        seed = strtoull(getenv("BERTH_SIGV4_SEED"), NULL, 0);
    rng_state = seed ? seed : 1;
    cases = calloc((size_t)n, sizeof(*cases));
    ours = calloc((size_t)n, sizeof(*ours));
    our_creq = calloc((size_t)n, sizeof(*our_creq));
    if (!cases || !ours || !our_creq || (fd = mkstemp(tmpl)) < 0 ||
        (f = fdopen(fd, "w")) == NULL) {
        fprintf(stderr, "oracle: setup: %s\n", strerror(errno));
        bad = 1;
        goto done;
    }
    for (i = 0; i < n; i++) {
        gen_case_make(&cases[i]);
        gen_case_write(f, &cases[i]);
        if (gen_case_sign(&s, &cases[i], &path, &err) < 0) {
            fprintf(stderr, "case %d: berth refused: %s\n", i, err.message);
            bad++;
            ours[i] = strdup("");
        } else {
            ours[i] = strdup(cases[i].presign ? s.query.ptr
                                              : s.authorization.ptr);
        }
        our_creq[i] = strdup(s.canonical_request.ptr ? s.canonical_request.ptr
                                                     : "");
        presigned += cases[i].presign;
    }
    fclose(f);
    f = NULL;

    {
        char *argv[] = { (char *)python, (char *)script, tmpl, NULL };

        if ((in = spawn(argv, &pid)) == NULL) {
            fprintf(stderr, "oracle: cannot run %s\n", python);
            bad++;
            goto done;
        }
    }
    while (getline(&line, &cap, in) > 0 && got < n) {
        sp = strchr(line, ' ');
        if (sp == NULL || unhex(&theirs, line) < 0 ||
            unhex(&their_creq, sp + 1) < 0) {
            fprintf(stderr, "oracle: bad line %d: %s", got, line);
            bad++;
            break;
        }
        if (strcmp(theirs.ptr ? theirs.ptr : "", ours[got]) != 0) {
            if (bad < 5)
                fprintf(stderr,
                        "case %d (%s) differs:\n  berth:    %s\n"
                        "  botocore: %s\nberth's canonical request:\n%s\n"
                        "botocore's canonical request:\n%s\n\n",
                        got, cases[got].presign ? "presign" : "sign",
                        ours[got], theirs.ptr, our_creq[got], their_creq.ptr);
            bad++;
        }
        got++;
    }
    fclose(in);
    in = NULL;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "oracle: %s %s failed (status %d)%s\n", python,
                script, status,
                WIFEXITED(status) && WEXITSTATUS(status) == 3
                    ? ": no botocore (Debian: python3-botocore, "
                      "bin/setup --test)"
                    : "");
        bad++;
    }
    if (got != n) {
        fprintf(stderr, "oracle: %d answers for %d cases\n", got, n);
        bad++;
    }
    printf("botocore oracle (seed %#llx): %d requests (%d presigned), %d "
           "differ\n",
           (unsigned long long)seed, n, presigned, bad);
done:
    if (f)
        fclose(f);
    unlink(tmpl);
    for (i = 0; ours && i < n; i++) {
        free(ours[i]);
        free(our_creq[i]);
    }
    free(ours);
    free(our_creq);
    free(cases);
    free(line);
    berth__sigv4_signed_dispose(&s);
    berth_buf_dispose(&path);
    berth_buf_dispose(&theirs);
    berth_buf_dispose(&their_creq);
    return bad ? 1 : 0;
}

/* ---- timing ------------------------------------------------------------ */

static double now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* The driver's typical request: a ranged GET of a blob, UNSIGNED-PAYLOAD. */
static int bench(void)
{
    static const berth__sigv4_pair h[] = { { "host", "127.0.0.1:7480" },
                                           { "range", "bytes=0-1048575" } };
    berth__sigv4_request req = {
        "GET",
        "/registry/docker/registry/v2/blobs/sha256/ab/"
        "ab5c2f7d8e9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c/"
        "data",
        NULL,
        0,
        h,
        2,
        BERTH_SIGV4_UNSIGNED_PAYLOAD,
        S3_TIME,
        0
    };
    berth__sigv4_signed s = BERTH__SIGV4_SIGNED_INIT;
    berth__sigv4_cache cache = BERTH__SIGV4_CACHE_INIT;
    const int n = 20000;
    berth_error err;
    double t0, t1, t2;
    int i, rc = 0;

    t0 = now_us();
    for (i = 0; i < n && rc == 0; i++)
        rc = berth__sigv4_sign(&s, NULL, &s3_creds, &req, &err);
    t1 = now_us();
    for (i = 0; i < n && rc == 0; i++)
        rc = berth__sigv4_sign(&s, &cache, &s3_creds, &req, &err);
    t2 = now_us();
    if (rc == 0)
        printf("one signature: %.2f us without the key cache, %.2f us with "
               "it (%d each)\n",
               (t1 - t0) / n, (t2 - t1) / n, n);
    berth__sigv4_signed_dispose(&s);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--oracle") == 0)
        return oracle(argv[2], argv[3], atoi(argv[4]));
    if (argc == 2 && strcmp(argv[1], "--bench") == 0)
        return bench();
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--oracle PYTHON SCRIPT N | --bench]\n",
                argv[0]);
        return 2;
    }
    test_uri_encode();
    test_suite();
    test_s3_examples();
    test_refusals();
    test_cache();
    test_alloc_failures();
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("sigv4: %zu suite vectors, 5 S3 examples, refusals, key cache, "
           "allocation failures: ok\n",
           sizeof(suite) / sizeof(suite[0]));
    return 0;
}
