/*
 * The S3 client (s3.h). One libcurl easy handle per connection, kept in a
 * pool, so a request reuses a kept-alive connection (and its own SigV4
 * key cache) whichever thread sends it; a handle is one request's at a
 * time. Requests are path-style (<endpoint>/<bucket>/<key>), as RGW and
 * Distribution's driver address a bucket.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>

#include "internal.h"
#include "s3.h"

/* Handles kept for reuse; more in use at once are made and then freed. */
#define POOL_MAX 32
/* What is kept of an error answer's body (S3's XML is a few hundred). */
#define ERROR_BODY_MAX (16 * 1024)

typedef struct conn {
    CURL *easy;
    berth__sigv4_cache keys;
    struct conn *next;
} conn;

struct s3_client {
    char *endpoint, *host, *bucket, *region, *access_key, *secret_key;
    int attempts, backoff_ms;
    pthread_mutex_t lock;
    conn *idle;
    int nidle;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void init_curl(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int oom(berth_error *err)
{
    return berth_error_set(err, BERTH_ENOMEM, "out of memory");
}

int s3_client_new(s3_client **out, const s3_config *cfg, berth_error *err)
{
    s3_client *c;
    const char *host;

    *out = NULL;
    pthread_once(&curl_once, init_curl);
    if (curl_init_rc != CURLE_OK)
        return berth_error_set(err, BERTH_EIO, "cannot start libcurl: %s",
                               curl_easy_strerror(curl_init_rc));
    if (!cfg->endpoint || !cfg->bucket || !cfg->access_key ||
        !cfg->secret_key || !cfg->region || !*cfg->bucket)
        return berth_error_set(err, BERTH_EINVAL,
                               "s3: endpoint, bucket, region and keys are "
                               "needed");
    host = strstr(cfg->endpoint, "://");
    host = host ? host + 3 : cfg->endpoint;
    if ((c = calloc(1, sizeof(*c))) == NULL)
        return oom(err);
    c->endpoint = strdup(cfg->endpoint);
    c->host = strdup(host);
    c->bucket = strdup(cfg->bucket);
    c->region = strdup(cfg->region);
    c->access_key = strdup(cfg->access_key);
    c->secret_key = strdup(cfg->secret_key);
    c->attempts = cfg->attempts > 0 ? cfg->attempts : 5;
    c->backoff_ms = cfg->backoff_ms > 0 ? cfg->backoff_ms : 50;
    pthread_mutex_init(&c->lock, NULL);
    if (!c->endpoint || !c->host || !c->bucket || !c->region ||
        !c->access_key || !c->secret_key) {
        s3_client_free(c);
        return oom(err);
    }
    /* the host as signed: what curl sends (no path, no trailing '/') */
    c->host[strcspn(c->host, "/")] = '\0';
    *out = c;
    return 0;
}

static void conn_free(conn *k)
{
    if (!k)
        return;
    curl_easy_cleanup(k->easy);
    berth__sigv4_cache_clear(&k->keys);
    free(k);
}

void s3_client_free(s3_client *c)
{
    if (!c)
        return;
    while (c->idle) {
        conn *k = c->idle;
        c->idle = k->next;
        conn_free(k);
    }
    pthread_mutex_destroy(&c->lock);
    free(c->endpoint);
    free(c->host);
    free(c->bucket);
    free(c->region);
    free(c->access_key);
    if (c->secret_key) {
        memset(c->secret_key, 0, strlen(c->secret_key));
        free(c->secret_key);
    }
    free(c);
}

static conn *take(s3_client *c)
{
    conn *k;

    pthread_mutex_lock(&c->lock);
    if ((k = c->idle) != NULL) {
        c->idle = k->next;
        c->nidle--;
    }
    pthread_mutex_unlock(&c->lock);
    if (k)
        return k;
    if ((k = calloc(1, sizeof(*k))) == NULL)
        return NULL;
    if ((k->easy = curl_easy_init()) == NULL) {
        free(k);
        return NULL;
    }
    return k;
}

static void give(s3_client *c, conn *k)
{
    pthread_mutex_lock(&c->lock);
    if (c->nidle < POOL_MAX) {
        k->next = c->idle;
        c->idle = k;
        c->nidle++;
        k = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    conn_free(k);
}

/* ---- one transfer ---- */

typedef struct transfer {
    const s3_request *req;
    s3_response *resp;
    berth_buf error_body;
    size_t sent; /* of the request body */
    int too_large;
    int oom;
} transfer;

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    transfer *t = arg;
    size_t len = size * n;

    if (t->resp->status >= 300) {
        if (t->error_body.len + len <= ERROR_BODY_MAX &&
            berth_buf_put(&t->error_body, data, len, NULL) < 0)
            t->oom = 1;
        return len;
    }
    if (!t->req->out)
        return len;
    if (t->req->out->len + len > t->req->max) {
        t->too_large = 1;
        return 0; /* stops the transfer */
    }
    if (berth_buf_put(t->req->out, data, len, NULL) < 0) {
        t->oom = 1;
        return 0;
    }
    return len;
}

static size_t on_send(char *buf, size_t size, size_t n, void *arg)
{
    transfer *t = arg;
    const s3_request *req = t->req;
    size_t cap = size * n, len;

    if (req->file) {
        uint64_t left = req->file->size - t->sent;
        ssize_t got;
        len = left < cap ? (size_t)left : cap;
        if (len == 0)
            return 0;
        got = pread(req->file->fd, buf, len,
                    (off_t)(req->file->offset + t->sent));
        if (got <= 0)
            return CURL_READFUNC_ABORT;
        len = (size_t)got;
    } else {
        len = req->body_len - t->sent < cap ? req->body_len - t->sent : cap;
        memcpy(buf, (const char *)req->body + t->sent, len);
    }
    t->sent += len;
    return len;
}

static int on_seek(void *arg, curl_off_t offset, int origin)
{
    transfer *t = arg;

    if (origin != SEEK_SET || offset < 0)
        return CURL_SEEKFUNC_CANTSEEK;
    t->sent = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* The header's value (trimmed) when line is "name: value". */
static int header_is(const char *line, size_t len, const char *name,
                     char *out, size_t cap)
{
    size_t n = strlen(name), end;

    if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
        return 0;
    line += n + 1;
    len -= n + 1;
    while (len && (*line == ' ' || *line == '\t'))
        line++, len--;
    for (end = len; end && (line[end - 1] == '\r' || line[end - 1] == '\n' ||
                            line[end - 1] == ' ');
         end--)
        ;
    if (end >= cap)
        end = cap - 1;
    memcpy(out, line, end);
    out[end] = '\0';
    return 1;
}

static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
    transfer *t = arg;
    s3_response *r = t->resp;
    size_t len = size * n;
    char value[256];
    long status;

    if (len > 5 && strncmp(line, "HTTP/", 5) == 0) {
        const char *sp = memchr(line, ' ', len);
        status = sp ? strtol(sp + 1, NULL, 10) : 0;
        /* a new answer (after a 100): forget the last one's headers */
        memset(r, 0, sizeof(*r));
        r->status = status;
    } else if (header_is(line, len, "etag", value, sizeof(value))) {
        char *v = value;
        size_t vl = strlen(v);
        if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
            v[vl - 1] = '\0';
            v++;
        }
        vl = strlen(v);
        if (vl >= sizeof(r->etag))
            vl = sizeof(r->etag) - 1; /* S3's are 32 hex digits */
        memcpy(r->etag, v, vl);
        r->etag[vl] = '\0';
    } else if (header_is(line, len, "content-length", value, sizeof(value))) {
        r->has_length = 1;
        r->length = strtoull(value, NULL, 10);
    } else if (header_is(line, len, "last-modified", value, sizeof(value))) {
        time_t when = curl_getdate(value, NULL);
        r->mtime_ns = when > 0 ? (int64_t)when * 1000000000 : 0;
    } else if (header_is(line, len, "x-amz-meta-berth-parts", value,
                         sizeof(value))) {
        snprintf(r->parts, sizeof(r->parts), "%.63s", value);
    } else if (header_is(line, len, "content-range", value, sizeof(value))) {
        const char *slash = strchr(value, '/');
        r->total = slash ? strtoull(slash + 1, NULL, 10) : 0;
    }
    return len;
}

/* The hex SHA-256 of a body in memory. */
static int payload_hash(char out[65], const void *body, size_t len,
                        berth_error *err)
{
    berth_digest d;
    int rc;

    if ((rc = berth_digest_compute(&d, BERTH_DIGEST_SHA256, body, len, err)) <
        0)
        return rc;
    snprintf(out, 65, "%s", strchr(d.str, ':') + 1);
    return 0;
}

/* The request's URI path: /<bucket>[/<key>], encoded once. */
static int uri_path(berth_buf *out, const s3_client *c, const char *key,
                    berth_error *err)
{
    int rc;

    if ((rc = berth_buf_put(out, "/", 1, err)) < 0 ||
        (rc = berth__sigv4_uri_encode(out, c->bucket, strlen(c->bucket), 0,
                                      err)) < 0)
        return rc;
    if (key &&
        ((rc = berth_buf_put(out, "/", 1, err)) < 0 ||
         (rc = berth__sigv4_uri_encode(out, key, strlen(key), 1, err)) < 0))
        return rc;
    return 0;
}

int s3_copy_source(berth_buf *out, s3_client *c, const char *key,
                   berth_error *err)
{
    berth_buf_clear(out);
    return uri_path(out, c, key, err);
}

static int add_header(struct curl_slist **list, const char *fmt,
                      const char *a, const char *b)
{
    char line[4096];
    struct curl_slist *grown;

    snprintf(line, sizeof(line), fmt, a, b);
    if ((grown = curl_slist_append(*list, line)) == NULL)
        return -1;
    *list = grown;
    return 0;
}

/* Whether a failed attempt may pass if tried again. */
static int passing(CURLcode cc, long status)
{
    switch (cc) {
    case CURLE_OK:
        return status == 500 || status == 502 || status == 503 ||
               status == 504;
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
        return 1;
    default:
        return 0;
    }
}

static void error_fields(s3_response *r, const berth_buf *body)
{
    berth_buf v = BERTH_BUF_INIT;
    const char *at = body->ptr, *end = body->ptr + body->len;

    if (!body->len)
        return;
    if (s3_xml_next(&v, &at, end, "Code", NULL) == 1)
        snprintf(r->code, sizeof(r->code), "%s", v.ptr);
    at = body->ptr;
    berth_buf_clear(&v);
    if (s3_xml_next(&v, &at, end, "Message", NULL) == 1)
        snprintf(r->message, sizeof(r->message), "%s", v.ptr);
    berth_buf_dispose(&v);
}

/* One attempt with handle k. */
static int attempt(CURLcode *cc_out, conn *k, s3_client *c,
                   const s3_request *req, s3_response *resp, berth_error *err)
{
    berth__sigv4_signed sig = BERTH__SIGV4_SIGNED_INIT;
    berth__sigv4_creds creds;
    berth__sigv4_request sr;
    berth__sigv4_pair headers[34];
    berth_buf path = BERTH_BUF_INIT, url = BERTH_BUF_INIT;
    struct curl_slist *list = NULL;
    transfer t;
    char hash[65];
    CURL *e = k->easy;
    size_t nh = 0;
    uint64_t body_size;
    int rc;

    memset(&t, 0, sizeof(t));
    t.req = req;
    t.resp = resp;
    memset(resp, 0, sizeof(*resp));
    if (req->out)
        berth_buf_clear(req->out);
    if (req->nheaders > 32) {
        rc = berth_error_set(err, BERTH_EINVAL, "s3: too many headers");
        goto done;
    }
    headers[nh].name = "host";
    headers[nh++].value = c->host;
    for (size_t i = 0; i < req->nheaders; i++)
        headers[nh++] = req->headers[i];
    if (req->file)
        snprintf(hash, sizeof(hash), "%s", BERTH_SIGV4_UNSIGNED_PAYLOAD);
    else if ((rc = payload_hash(hash, req->body ? req->body : "",
                                req->body_len, err)) < 0)
        goto done;
    creds.access_key = c->access_key;
    creds.secret_key = c->secret_key;
    creds.region = c->region;
    creds.service = "s3";
    memset(&sr, 0, sizeof(sr));
    sr.method = req->method;
    if ((rc = uri_path(&path, c, req->key, err)) < 0)
        goto done;
    sr.path = path.ptr;
    sr.query = req->query;
    sr.nquery = req->nquery;
    sr.headers = headers;
    sr.nheaders = nh;
    sr.payload_hash = hash;
    sr.time = (int64_t)time(NULL);
    if ((rc = berth__sigv4_sign(&sig, &k->keys, &creds, &sr, err)) < 0)
        goto done;
    if ((rc = berth_buf_printf(&url, err, "%s%s%s%s", c->endpoint, path.ptr,
                               sig.query.len ? "?" : "",
                               sig.query.len ? sig.query.ptr : "")) < 0)
        goto done;
    if (add_header(&list, "Authorization: %s%s", sig.authorization.ptr, "") <
            0 ||
        add_header(&list, "x-amz-date: %s%s", sig.amz_date, "") < 0 ||
        add_header(&list, "x-amz-content-sha256: %s%s", hash, "") < 0 ||
        add_header(&list, "Expect:%s%s", "", "") < 0 ||
        add_header(&list, "Content-Type:%s%s", "", "") < 0) {
        rc = oom(err);
        goto done;
    }
    for (size_t i = 0; i < req->nheaders; i++)
        if (add_header(&list, "%s: %s", req->headers[i].name,
                       req->headers[i].value ? req->headers[i].value : "") <
            0) {
            rc = oom(err);
            goto done;
        }

    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, url.ptr);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    /* a connection that stalls: nothing for 30 s */
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &t);
    body_size = req->file ? req->file->size : req->body_len;
    if (strcmp(req->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(req->method, "PUT") == 0 ||
               strcmp(req->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_send);
        curl_easy_setopt(e, CURLOPT_READDATA, &t);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, &t);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)body_size);
    } else if (strcmp(req->method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    }
    *cc_out = curl_easy_perform(e);
    if (t.oom) {
        rc = oom(err);
        goto done;
    }
    if (t.too_large) {
        rc = berth_error_set(err, BERTH_ETOOLARGE,
                             "s3: %s is larger than %zu bytes", req->key,
                             req->max);
        goto done;
    }
    if (*cc_out == CURLE_OK && resp->status >= 300)
        error_fields(resp, &t.error_body);
    rc = 0;
done:
    curl_slist_free_all(list);
    berth__sigv4_signed_dispose(&sig);
    berth_buf_dispose(&path);
    berth_buf_dispose(&url);
    berth_buf_dispose(&t.error_body);
    return rc;
}

static void pause_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int s3_send(s3_client *c, const s3_request *req, s3_response *resp,
            berth_error *err)
{
    conn *k = take(c);
    CURLcode cc = CURLE_OK;
    int rc = 0, wait = c->backoff_ms, attempts = 0;

    if (!k)
        return oom(err);
    for (int i = 1;; i++) {
        attempts = i;
        cc = CURLE_OK;
        if ((rc = attempt(&cc, k, c, req, resp, err)) < 0)
            break;
        if (!passing(cc, resp->status))
            break;
        if (i >= c->attempts) {
            rc = cc != CURLE_OK
                     ? berth_error_set(err, BERTH_EUNAVAILABLE,
                                       "s3: %s %s: %s (%d attempts)",
                                       req->method, req->key ? req->key : "",
                                       curl_easy_strerror(cc), i)
                     : berth_error_set(err, BERTH_EUNAVAILABLE,
                                       "s3: %s %s: HTTP %ld %s (%d attempts)",
                                       req->method, req->key ? req->key : "",
                                       resp->status, resp->code, i);
            break;
        }
        /* the store says it is busy, or a connection went: a fresh
         * connection after a pause */
        pause_ms(wait);
        wait *= 2;
    }
    if (rc == 0)
        resp->attempts = attempts;
    if (rc == 0 && cc != CURLE_OK)
        rc = berth_error_set(err, BERTH_EIO, "s3: %s %s: %s", req->method,
                             req->key ? req->key : "",
                             curl_easy_strerror(cc));
    give(c, k);
    return rc;
}

int s3_presign(berth_buf *url, s3_client *c, const char *key,
               unsigned expires, berth_error *err)
{
    berth__sigv4_signed sig = BERTH__SIGV4_SIGNED_INIT;
    berth__sigv4_creds creds;
    berth__sigv4_request sr;
    berth__sigv4_pair host = { "host", NULL };
    berth_buf path = BERTH_BUF_INIT;
    int rc;

    host.value = c->host;
    creds.access_key = c->access_key;
    creds.secret_key = c->secret_key;
    creds.region = c->region;
    creds.service = "s3";
    memset(&sr, 0, sizeof(sr));
    sr.method = "GET";
    sr.headers = &host;
    sr.nheaders = 1;
    sr.time = (int64_t)time(NULL);
    if ((rc = uri_path(&path, c, key, err)) < 0)
        goto done;
    sr.path = path.ptr;
    if ((rc = berth__sigv4_presign(&sig, NULL, &creds, &sr, expires, err)) <
        0)
        goto done;
    berth_buf_clear(url);
    rc = berth_buf_printf(url, err, "%s%s?%s", c->endpoint, path.ptr,
                          sig.query.ptr);
done:
    berth__sigv4_signed_dispose(&sig);
    berth_buf_dispose(&path);
    return rc;
}

int s3_fail(berth_error *err, int code, const s3_response *resp,
            const char *what, const char *key)
{
    return berth_error_set(err, code, "s3: %s %s: HTTP %ld %s%s%s", what,
                           key ? key : "", resp->status, resp->code,
                           resp->message[0] ? ": " : "", resp->message);
}

/* ---- XML ---- */

static int put_decoded(berth_buf *out, const char *s, size_t len,
                       berth_error *err)
{
    static const struct {
        const char *name;
        char c;
    } entities[] = { { "&amp;", '&' },
                     { "&lt;", '<' },
                     { "&gt;", '>' },
                     { "&quot;", '"' },
                     { "&apos;", '\'' } };
    int rc;

    while (len > 0) {
        const char *amp = memchr(s, '&', len);
        size_t plain = amp ? (size_t)(amp - s) : len;
        if ((rc = berth_buf_put(out, s, plain, err)) < 0)
            return rc;
        s += plain;
        len -= plain;
        if (!len)
            break;
        for (size_t i = 0; i < sizeof(entities) / sizeof(entities[0]); i++) {
            size_t n = strlen(entities[i].name);
            if (len >= n && memcmp(s, entities[i].name, n) == 0) {
                if ((rc = berth_buf_put(out, &entities[i].c, 1, err)) < 0)
                    return rc;
                s += n;
                len -= n;
                goto next;
            }
        }
        /* numeric or unknown: kept as it is */
        if ((rc = berth_buf_put(out, s, 1, err)) < 0)
            return rc;
        s++;
        len--;
    next:;
    }
    return 0;
}

int s3_xml_next(berth_buf *out, const char **at, const char *end,
                const char *tag, berth_error *err)
{
    char open[80], close[80];
    const char *p = *at, *start, *stop;
    size_t no, nc;
    int rc;

    no = (size_t)snprintf(open, sizeof(open), "<%s>", tag);
    nc = (size_t)snprintf(close, sizeof(close), "</%s>", tag);
    for (start = NULL; p + no <= end; p++)
        if (memcmp(p, open, no) == 0) {
            start = p + no;
            break;
        }
    if (!start)
        return 0;
    for (stop = NULL, p = start; p + nc <= end; p++)
        if (memcmp(p, close, nc) == 0) {
            stop = p;
            break;
        }
    if (!stop)
        return 0;
    berth_buf_clear(out);
    if ((rc = put_decoded(out, start, (size_t)(stop - start), err)) < 0 ||
        (rc = berth_buf_put(out, "", 0, err)) < 0)
        return rc;
    *at = stop + nc;
    return 1;
}
