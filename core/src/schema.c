/*
 * Manifest objects and the built-in schemas: OCI image manifest and index,
 * Docker schema2 manifest and manifest list.
 *
 * Parsing is strict about types, stricter than Distribution's Go structs:
 * a field of the wrong type, a missing required field, a size that is not a
 * non-negative integer, a digest that does not parse, a duplicated key or
 * one that differs from a known key only by case (which two parsers could
 * read differently) makes the manifest invalid. Unknown fields are
 * allowed, as the specs require.
 *
 * A berth_manifest owns copies of everything: the body (kept NUL terminated
 * past its length), the strings of its descriptors, its annotations. The
 * cJSON tree lives only for the duration of a parse.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "internal.h"

#define MT_DOCKER_V1 "application/vnd.docker.distribution.manifest.v1+json"
#define MT_DOCKER_V1_SIGNED                                                  \
    "application/vnd.docker.distribution.manifest.v1+prettyjws"

/* Media types are copied into berth_manifest_info.media_type[256]. */
#define MEDIA_TYPE_MAX 255

/* Largest size accepted in a descriptor: beyond 2^53 a double (cJSON's
 * number) no longer holds every integer. */
#define SIZE_LIMIT 9007199254740992.0

struct berth_manifest {
    char *body; /* len + 1 bytes, NUL terminated */
    size_t len;
    char *media_type;
    berth_digest digest;
    berth_descriptor *refs;
    size_t nrefs, cap;
    berth_descriptor subject;
    int has_subject;
    char *artifact_type; /* explicit artifactType, or NULL */
    char *annotations;   /* JSON object text, or NULL */
};

static const char *const schema_types[] = {
    [BERTH_SCHEMA_OCI_MANIFEST] = BERTH_MT_OCI_MANIFEST,
    [BERTH_SCHEMA_OCI_INDEX] = BERTH_MT_OCI_INDEX,
    [BERTH_SCHEMA_DOCKER_MANIFEST] = BERTH_MT_DOCKER_MANIFEST,
    [BERTH_SCHEMA_DOCKER_LIST] = BERTH_MT_DOCKER_LIST,
};

#define SCHEMAS ((int)(sizeof(schema_types) / sizeof(schema_types[0])))

const char *berth_schema_media_type(berth_schema kind)
{
    return kind > BERTH_SCHEMA_NONE && (int)kind < SCHEMAS
               ? schema_types[kind]
               : NULL;
}

size_t berth_manifest_max(void)
{
    return BERTH_MANIFEST_MAX;
}

static berth_schema schema_of(const char *media_type)
{
    for (int i = BERTH_SCHEMA_NONE + 1; i < SCHEMAS; i++)
        if (strcmp(schema_types[i], media_type) == 0)
            return (berth_schema)i;
    return BERTH_SCHEMA_NONE;
}

static int is_schema1(const char *media_type)
{
    return strcmp(media_type, MT_DOCKER_V1) == 0 ||
           strcmp(media_type, MT_DOCKER_V1_SIGNED) == 0;
}

static int schema1_error(berth_error *err)
{
    return berth_error_set(err, BERTH_EMANIFEST_INVALID,
                           "manifest invalid: schema1 manifests are not "
                           "supported");
}

static int oom(berth_error *err)
{
    return berth_error_set(err, BERTH_ENOMEM, "out of memory");
}

static int too_large(size_t len, berth_error *err)
{
    return berth_error_set(err, BERTH_ETOOLARGE,
                           "manifest too large: %zu bytes, at most %d", len,
                           BERTH_MANIFEST_MAX);
}

/*
 * "manifest invalid: <where>.<field>: <why>". where or field may be NULL or
 * empty. Returns BERTH_EMANIFEST_INVALID.
 */
static int invalid(berth_error *err, const char *where, const char *field,
                   const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int invalid(berth_error *err, const char *where, const char *field,
                   const char *fmt, ...)
{
    char why[160];
    va_list ap;
    int has_where = where && *where, has_field = field && *field;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    return berth_error_set(
        err, BERTH_EMANIFEST_INVALID, "manifest invalid: %s%s%s%s%s",
        has_where ? where : "", has_where && has_field ? "." : "",
        has_field ? field : "", has_where || has_field ? ": " : "", why);
}

/* ---- the object ---- */

static char *dup_or_null(const char *s, int *failed)
{
    char *copy;

    if (s == NULL)
        return NULL;
    if ((copy = strdup(s)) == NULL)
        *failed = 1;
    return copy;
}

static void descriptor_dispose(berth_descriptor *d)
{
    free((char *)d->media_type);
    free((char *)d->artifact_type);
    free((char *)d->platform_os);
    free((char *)d->platform_arch);
    memset(d, 0, sizeof(*d));
}

/* Copy d into out, with copies of its strings. */
static int descriptor_copy(berth_descriptor *out, const berth_descriptor *d,
                           berth_error *err)
{
    int failed = 0;

    *out = *d;
    out->media_type = dup_or_null(d->media_type, &failed);
    out->artifact_type = dup_or_null(d->artifact_type, &failed);
    out->platform_os = dup_or_null(d->platform_os, &failed);
    out->platform_arch = dup_or_null(d->platform_arch, &failed);
    if (failed) {
        descriptor_dispose(out);
        return oom(err);
    }
    return 0;
}

int berth_manifest_new(berth_manifest **out, const char *media_type,
                       const void *body, size_t len, berth_error *err)
{
    berth_manifest *m = NULL;
    int rc;

    assert(out != NULL && media_type != NULL && (body != NULL || len == 0));
    *out = NULL;
    if (media_type[0] == '\0' || strlen(media_type) > MEDIA_TYPE_MAX)
        return berth_error_set(err, BERTH_EINVAL,
                               "manifest media type empty or longer than %d "
                               "characters",
                               MEDIA_TYPE_MAX);
    /* Whatever is stored must be readable by berth_manifest_get. */
    if (len > BERTH_MANIFEST_MAX)
        return too_large(len, err);
    if ((m = calloc(1, sizeof(*m))) == NULL ||
        (m->body = malloc(len + 1)) == NULL ||
        (m->media_type = strdup(media_type)) == NULL) {
        rc = oom(err);
        goto done;
    }
    if (len)
        memcpy(m->body, body, len);
    m->body[len] = '\0';
    m->len = len;
    rc = berth_digest_compute(&m->digest, BERTH_DIGEST_SHA256, m->body, len,
                              err);
done:
    if (rc < 0)
        berth_manifest_free(m);
    else
        *out = m;
    return rc;
}

int berth_manifest_add_ref(berth_manifest *m, const berth_descriptor *d,
                           int is_subject, berth_error *err)
{
    int rc;

    assert(m != NULL && d != NULL);
    if (d->kind < BERTH_REF_CONFIG || d->kind > BERTH_REF_BLOB)
        return berth_error_set(err, BERTH_EINVAL,
                               "descriptor kind %d unknown", (int)d->kind);
    if (berth_digest_algo_name(d->digest.algo) == NULL)
        return berth_error_set(err, BERTH_EINVAL,
                               "descriptor digest not parsed");
    if (is_subject) {
        if (m->has_subject)
            return berth_error_set(err, BERTH_EINVAL,
                                   "manifest has a subject already");
        if ((rc = descriptor_copy(&m->subject, d, err)) < 0)
            return rc;
        m->has_subject = 1;
        return 0;
    }
    if (m->nrefs == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        berth_descriptor *refs;

        if (cap > SIZE_MAX / sizeof(*refs))
            return oom(err);
        if ((refs = realloc(m->refs, cap * sizeof(*refs))) == NULL)
            return oom(err);
        m->refs = refs;
        m->cap = cap;
    }
    if ((rc = descriptor_copy(&m->refs[m->nrefs], d, err)) < 0)
        return rc;
    m->nrefs++;
    return 0;
}

int berth_manifest_set_artifact_type(berth_manifest *m, const char *type,
                                     berth_error *err)
{
    char *copy = NULL;

    assert(m != NULL);
    if (type && (copy = strdup(type)) == NULL)
        return oom(err);
    free(m->artifact_type);
    m->artifact_type = copy;
    return 0;
}

/* Each member of an annotations object must be a string. */
static int check_string_map(const cJSON *obj, const char *where,
                            const char *field, berth_error *err)
{
    const cJSON *item;

    if (!cJSON_IsObject(obj))
        return invalid(err, where, field, "must be an object");
    cJSON_ArrayForEach(item, obj)
    {
        if (!cJSON_IsString(item))
            return invalid(err, where, field,
                           "value of \"%.64s\" must be "
                           "a string",
                           item->string);
    }
    return 0;
}

/* Store the compact JSON text of an annotations object (already checked). */
static int take_annotations(berth_manifest *m, const cJSON *obj,
                            berth_error *err)
{
    char *text = cJSON_PrintUnformatted(obj);
    char *copy;

    if (text == NULL)
        return oom(err);
    copy = strdup(text);
    cJSON_free(text);
    if (copy == NULL)
        return oom(err);
    free(m->annotations);
    m->annotations = copy;
    return 0;
}

int berth_manifest_set_annotations(berth_manifest *m, const char *json,
                                   berth_error *err)
{
    cJSON *obj;
    int rc;

    assert(m != NULL);
    if (json == NULL) {
        free(m->annotations);
        m->annotations = NULL;
        return 0;
    }
    if ((obj = cJSON_Parse(json)) == NULL)
        return invalid(err, NULL, "annotations", "not a JSON object");
    if ((rc = check_string_map(obj, NULL, "annotations", err)) == 0)
        rc = take_annotations(m, obj, err);
    cJSON_Delete(obj);
    return rc;
}

const char *berth_manifest_media_type(const berth_manifest *m)
{
    return m->media_type;
}

const berth_digest *berth_manifest_digest(const berth_manifest *m)
{
    return &m->digest;
}

const void *berth_manifest_body(const berth_manifest *m, size_t *len_out)
{
    if (len_out)
        *len_out = m->len;
    return m->body;
}

size_t berth_manifest_ref_count(const berth_manifest *m)
{
    return m->nrefs;
}

const berth_descriptor *berth_manifest_ref(const berth_manifest *m, size_t i)
{
    return i < m->nrefs ? &m->refs[i] : NULL;
}

const berth_descriptor *berth_manifest_subject(const berth_manifest *m)
{
    return m->has_subject ? &m->subject : NULL;
}

const char *berth_manifest_artifact_type(const berth_manifest *m)
{
    if (m->artifact_type)
        return m->artifact_type;
    /* OCI referrers rule: an image manifest without artifactType reports
     * its config's media type. */
    for (size_t i = 0; i < m->nrefs; i++)
        if (m->refs[i].kind == BERTH_REF_CONFIG)
            return m->refs[i].media_type;
    return NULL;
}

const char *berth_manifest_annotations(const berth_manifest *m)
{
    return m->annotations;
}

void berth_manifest_free(berth_manifest *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nrefs; i++)
        descriptor_dispose(&m->refs[i]);
    if (m->has_subject)
        descriptor_dispose(&m->subject);
    free(m->refs);
    free(m->body);
    free(m->media_type);
    free(m->artifact_type);
    free(m->annotations);
    free(m);
}

/* ---- JSON ---- */

/* The body as a tree, by the strict reader (json.c); NULL with *rc set. */
static cJSON *parse_json(const char *text, size_t len, int *rc,
                         berth_error *err)
{
    cJSON *root;

    *rc = berth__json_parse(&root, text, len, BERTH_EMANIFEST_INVALID,
                            "manifest invalid", err);
    return root;
}

static int ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : (unsigned char)c;
}

/*
 * Is s the ASCII key under Go's bytes.EqualFold, as encoding/json matches
 * keys to fields? ASCII letters in either case, and the two other runes
 * that fold to ASCII: U+017F (long s) is s, U+212A (Kelvin sign) is k.
 */
static int go_fold_equal(const char *s, const char *key)
{
    for (; *key; key++) {
        int k = ascii_lower(*key);
        if ((unsigned char)*s < 0x80) {
            if (ascii_lower(*s++) != k)
                return 0;
        } else if (k == 's' && strncmp(s, "\xc5\xbf", 2) == 0) {
            s += 2;
        } else if (k == 'k' && strncmp(s, "\xe2\x84\xaa", 3) == 0) {
            s += 3;
        } else {
            return 0;
        }
    }
    return *s == '\0';
}

/*
 * The member key of obj into *out (NULL when absent). A member whose key
 * differs from key only by case is refused: Go's encoding/json takes it
 * for key, the last of them winning, so Distribution and Go clients would
 * read a field berth never checked.
 */
static int member(const cJSON **out, const cJSON *obj, const char *key,
                  const char *where, berth_error *err)
{
    const cJSON *item;

    *out = NULL;
    if (!cJSON_IsObject(obj))
        return 0;
    cJSON_ArrayForEach(item, obj)
    {
        if (item->string == NULL)
            continue;
        if (strcmp(item->string, key) == 0)
            *out = item;
        else if (go_fold_equal(item->string, key))
            return invalid(err, where, NULL,
                           "key \"%.64s\" differs from "
                           "\"%s\" only by case",
                           item->string, key);
    }
    return 0;
}

/* An optional (or required) string member; *out is NULL when absent. */
static int get_string(const char **out, const cJSON *obj, const char *key,
                      int required, const char *where, berth_error *err)
{
    const cJSON *item;
    int rc;

    *out = NULL;
    if ((rc = member(&item, obj, key, where, err)) < 0)
        return rc;
    if (item == NULL)
        return required ? invalid(err, where, key, "required") : 0;
    if (!cJSON_IsString(item) || item->valuestring == NULL)
        return invalid(err, where, key, "must be a string");
    *out = item->valuestring;
    return 0;
}

/* An optional array of strings; *count_out is its length. */
static int get_string_array(size_t *count_out, const cJSON *obj,
                            const char *key, const char *where,
                            berth_error *err)
{
    const cJSON *arr, *item;
    size_t n = 0;
    int rc;

    *count_out = 0;
    if ((rc = member(&arr, obj, key, where, err)) < 0)
        return rc;
    if (arr == NULL)
        return 0;
    if (!cJSON_IsArray(arr))
        return invalid(err, where, key, "must be an array of strings");
    cJSON_ArrayForEach(item, arr)
    {
        if (!cJSON_IsString(item))
            return invalid(err, where, key, "[%zu] must be a string", n);
        n++;
    }
    *count_out = n;
    return 0;
}

static int check_optional_map(const cJSON *obj, const char *key,
                              const char *where, berth_error *err)
{
    const cJSON *item;
    int rc;

    if ((rc = member(&item, obj, key, where, err)) < 0)
        return rc;
    return item ? check_string_map(item, where, key, err) : 0;
}

/* platform: architecture and os required; the rest typed when present. */
static int parse_platform(berth_descriptor *d, const cJSON *p,
                          const char *where, berth_error *err)
{
    char here[96];
    const char *ignored;
    size_t n;
    int rc;

    snprintf(here, sizeof(here), "%s.platform", where);
    if (!cJSON_IsObject(p))
        return invalid(err, here, NULL, "must be an object");
    if ((rc = get_string(&d->platform_arch, p, "architecture", 1, here,
                         err)) < 0 ||
        (rc = get_string(&d->platform_os, p, "os", 1, here, err)) < 0 ||
        (rc = get_string(&ignored, p, "os.version", 0, here, err)) < 0 ||
        (rc = get_string(&ignored, p, "variant", 0, here, err)) < 0 ||
        (rc = get_string_array(&n, p, "os.features", here, err)) < 0 ||
        (rc = get_string_array(&n, p, "features", here, err)) < 0)
        return rc;
    return 0;
}

enum { PLATFORM_OPTIONAL = 0, PLATFORM_REQUIRED = 1 };

/*
 * A descriptor. Its strings are borrowed from the cJSON tree: the caller
 * copies it with berth_manifest_add_ref before the tree goes.
 */
static int parse_descriptor(berth_descriptor *d, const cJSON *j,
                            berth_ref_kind kind, int platform,
                            const char *where, berth_error *err)
{
    const cJSON *size, *plat;
    const char *digest, *ignored;
    berth_error derr;
    size_t nurls;
    int rc;

    memset(d, 0, sizeof(*d));
    d->kind = kind;
    if (!cJSON_IsObject(j))
        return invalid(err, where, NULL, "must be an object");
    if ((rc = get_string(&d->media_type, j, "mediaType", 1, where, err)) < 0)
        return rc;
    if ((rc = get_string(&digest, j, "digest", 1, where, err)) < 0)
        return rc;
    if (berth_digest_parse(&d->digest, digest, strlen(digest), &derr) < 0)
        return invalid(err, where, "digest", "%s", derr.message);
    if ((rc = member(&size, j, "size", where, err)) < 0)
        return rc;
    if (size == NULL)
        return invalid(err, where, "size", "required");
    if (!cJSON_IsNumber(size))
        return invalid(err, where, "size", "must be a number");
    if (!(size->valuedouble >= 0 && size->valuedouble <= SIZE_LIMIT) ||
        (double)(int64_t)size->valuedouble != size->valuedouble)
        return invalid(err, where, "size", "must be an integer >= 0");
    d->size = (int64_t)size->valuedouble;
    if ((rc = get_string_array(&nurls, j, "urls", where, err)) < 0)
        return rc;
    d->has_urls = nurls > 0;
    if ((rc = get_string(&d->artifact_type, j, "artifactType", 0, where,
                         err)) < 0 ||
        (rc = get_string(&ignored, j, "data", 0, where, err)) < 0 ||
        (rc = check_optional_map(j, "annotations", where, err)) < 0)
        return rc;
    if ((rc = member(&plat, j, "platform", where, err)) < 0)
        return rc;
    if (plat)
        return parse_platform(d, plat, where, err);
    if (platform == PLATFORM_REQUIRED)
        return invalid(err, where, "platform", "required");
    return 0;
}

static int add_descriptor(berth_manifest *m, const cJSON *j,
                          berth_ref_kind kind, int platform, int is_subject,
                          const char *where, berth_error *err)
{
    berth_descriptor d;
    int rc;

    if ((rc = parse_descriptor(&d, j, kind, platform, where, err)) < 0)
        return rc;
    return berth_manifest_add_ref(m, &d, is_subject, err);
}

static int add_descriptors(berth_manifest *m, const cJSON *root,
                           const char *key, berth_ref_kind kind, int platform,
                           berth_error *err)
{
    const cJSON *arr, *item;
    char where[64];
    size_t i = 0;
    int rc;

    if ((rc = member(&arr, root, key, NULL, err)) < 0)
        return rc;
    if (arr == NULL)
        return invalid(err, NULL, key, "required");
    if (!cJSON_IsArray(arr))
        return invalid(err, NULL, key, "must be an array");
    cJSON_ArrayForEach(item, arr)
    {
        snprintf(where, sizeof(where), "%s[%zu]", key, i++);
        if ((rc = add_descriptor(m, item, kind, platform, 0, where, err)) < 0)
            return rc;
    }
    return 0;
}

/* The OCI 1.1 fields shared by image manifests and indexes. */
static int parse_oci_extras(berth_manifest *m, const cJSON *root,
                            berth_error *err)
{
    const cJSON *subject, *annotations;
    const char *artifact_type;
    int rc;

    if ((rc = member(&subject, root, "subject", NULL, err)) < 0 ||
        (rc = member(&annotations, root, "annotations", NULL, err)) < 0)
        return rc;
    if ((rc = get_string(&artifact_type, root, "artifactType", 0, NULL,
                         err)) < 0)
        return rc;
    if (artifact_type &&
        (rc = berth_manifest_set_artifact_type(m, artifact_type, err)) < 0)
        return rc;
    if (annotations) {
        if ((rc = check_string_map(annotations, NULL, "annotations", err)) <
                0 ||
            (rc = take_annotations(m, annotations, err)) < 0)
            return rc;
    }
    if (subject)
        return add_descriptor(m, subject, BERTH_REF_MANIFEST,
                              PLATFORM_OPTIONAL, 1, "subject", err);
    return 0;
}

static int parse_schema(berth_manifest *m, berth_schema kind,
                        const cJSON *root, berth_error *err)
{
    const cJSON *config;
    int rc;

    switch (kind) {
    case BERTH_SCHEMA_OCI_MANIFEST:
    case BERTH_SCHEMA_DOCKER_MANIFEST:
        if ((rc = member(&config, root, "config", NULL, err)) < 0)
            return rc;
        if (config == NULL)
            return invalid(err, NULL, "config", "required");
        if ((rc = add_descriptor(m, config, BERTH_REF_CONFIG,
                                 PLATFORM_OPTIONAL, 0, "config", err)) < 0)
            return rc;
        /* Foreign (Docker) and non-distributable (OCI) layers are told
         * apart by their "urls", not by their media type. */
        if ((rc = add_descriptors(m, root, "layers", BERTH_REF_LAYER,
                                  PLATFORM_OPTIONAL, err)) < 0)
            return rc;
        break;
    case BERTH_SCHEMA_OCI_INDEX:
        if ((rc = add_descriptors(m, root, "manifests", BERTH_REF_MANIFEST,
                                  PLATFORM_OPTIONAL, err)) < 0)
            return rc;
        break;
    case BERTH_SCHEMA_DOCKER_LIST:
        if ((rc = add_descriptors(m, root, "manifests", BERTH_REF_MANIFEST,
                                  PLATFORM_REQUIRED, err)) < 0)
            return rc;
        break;
    default:
        return berth_error_set(err, BERTH_ERROR, "unknown schema %d",
                               (int)kind);
    }
    if (kind == BERTH_SCHEMA_OCI_MANIFEST || kind == BERTH_SCHEMA_OCI_INDEX)
        return parse_oci_extras(m, root, err);
    return 0;
}

/* ---- the media type ---- */

/* Content-Types that say nothing of the manifest: the body says. */
static const char *const generic_types[] = {
    "application/json",
    "application/octet-stream",
    "text/plain",
    "*/*",
};

/*
 * The Content-Type's media type into out[MEDIA_TYPE_MAX + 1]: parameters
 * and surrounding blanks dropped, in lower case (media types are
 * case-insensitive; Go's mime.ParseMediaType lowers them too). Empty when
 * the Content-Type is missing or generic.
 */
static int content_media_type(char *out, const char *ct, berth_error *err)
{
    size_t start = 0, end, n;

    out[0] = '\0';
    if (ct == NULL)
        return 0;
    while (ct[start] == ' ' || ct[start] == '\t')
        start++;
    end = start;
    while (ct[end] && ct[end] != ';')
        end++;
    while (end > start && (ct[end - 1] == ' ' || ct[end - 1] == '\t'))
        end--;
    if ((n = end - start) > MEDIA_TYPE_MAX)
        return invalid(err, NULL, NULL,
                       "content type longer than %d "
                       "characters",
                       MEDIA_TYPE_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = ct[start + i];
        out[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    out[n] = '\0';
    for (size_t i = 0; i < sizeof(generic_types) / sizeof(*generic_types);
         i++)
        if (strcmp(out, generic_types[i]) == 0)
            out[0] = '\0';
    return 0;
}

/*
 * The one detector (see berth_manifest_detect). ct is content_media_type's
 * answer; root the body's JSON, or NULL with json_err saying why it is
 * none. *out points into ct, into the tree, or at a static string.
 */
static int detect(const char **out, const char *ct, const cJSON *root,
                  const berth_error *json_err, berth_error *err)
{
    const cJSON *manifests;
    const char *body_mt = NULL;
    int rc;

    *out = NULL;
    if (is_schema1(ct))
        return schema1_error(err);
    if (cJSON_IsObject(root)) {
        if ((rc = get_string(&body_mt, root, "mediaType", 0, NULL, err)) < 0)
            return rc;
        if (body_mt && is_schema1(body_mt))
            return schema1_error(err);
        if (body_mt && body_mt[0] == '\0')
            return invalid(err, NULL, "mediaType", "must not be empty");
        if (body_mt && strlen(body_mt) > MEDIA_TYPE_MAX)
            return invalid(err, NULL, "mediaType",
                           "longer than %d "
                           "characters",
                           MEDIA_TYPE_MAX);
    }
    if (ct[0]) {
        if (body_mt && strcmp(body_mt, ct) != 0)
            return invalid(err, NULL, "mediaType",
                           "%.100s does not match "
                           "the content type",
                           body_mt);
        *out = ct;
        return 0;
    }
    if (root == NULL) {
        if (err)
            *err = *json_err;
        return json_err->code;
    }
    if (!cJSON_IsObject(root))
        return invalid(err, NULL, NULL, "not a JSON object");
    if (body_mt) {
        *out = body_mt;
        return 0;
    }
    if ((rc = member(&manifests, root, "manifests", NULL, err)) < 0)
        return rc;
    *out = manifests ? BERTH_MT_OCI_INDEX : BERTH_MT_OCI_MANIFEST;
    return 0;
}

int berth_manifest_detect(char *out, size_t cap, const char *content_type,
                          const void *body, size_t len, berth_error *err)
{
    char ct[MEDIA_TYPE_MAX + 1];
    berth_buf text = BERTH_BUF_INIT;
    berth_error json_err = { 0 };
    cJSON *root = NULL;
    const char *mt;
    int rc;

    assert(out != NULL && cap > 0 && (body != NULL || len == 0));
    out[0] = '\0';
    if (len > BERTH_MANIFEST_MAX)
        return too_large(len, err);
    if ((rc = content_media_type(ct, content_type, err)) < 0)
        return rc;
    /* cJSON parses a NUL-terminated copy, as berth_manifest_parse does. */
    if ((rc = berth_buf_put(&text, body, len, err)) < 0)
        goto done;
    root = parse_json(text.ptr ? text.ptr : "", len, &rc, &json_err);
    if ((rc = detect(&mt, ct, root, &json_err, err)) < 0)
        goto done;
    if (strlen(mt) >= cap) {
        rc = berth_error_set(err, BERTH_EBUFS,
                             "media type longer than %zu "
                             "characters",
                             cap - 1);
        goto done;
    }
    strcpy(out, mt);
done:
    cJSON_Delete(root);
    berth_buf_dispose(&text);
    return rc;
}

int berth_manifest_parse(berth_manifest **out, const char *content_type,
                         const void *body, size_t len, berth_error *err)
{
    char ct[MEDIA_TYPE_MAX + 1];
    berth_manifest *m = NULL;
    berth_error json_err = { 0 };
    cJSON *root = NULL;
    const cJSON *version, *body_mt;
    const char *mt;
    berth_schema kind;
    int rc;

    assert(out != NULL && (body != NULL || len == 0));
    *out = NULL;
    if ((rc = content_media_type(ct, content_type, err)) < 0)
        return rc;
    /* The object copies the body; cJSON parses that NUL-terminated copy.
     * Its media type is set once known. */
    if ((rc = berth_manifest_new(&m, BERTH_MT_OCI_MANIFEST, body, len, err)) <
        0)
        goto done;
    root = parse_json(m->body, m->len, &rc, &json_err);
    if ((rc = detect(&mt, ct, root, &json_err, err)) < 0)
        goto done;
    /* An unknown type goes to the Lua handlers, whatever the body is. */
    if ((kind = schema_of(mt)) == BERTH_SCHEMA_NONE) {
        rc = berth_error_set(err, BERTH_EUNSUPPORTED,
                             "unsupported manifest media type: %.200s", mt);
        goto done;
    }
    if (root == NULL) {
        if (err)
            *err = json_err;
        rc = json_err.code;
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        rc = invalid(err, NULL, NULL, "not a JSON object");
        goto done;
    }

    if ((rc = member(&version, root, "schemaVersion", NULL, err)) < 0 ||
        (rc = member(&body_mt, root, "mediaType", NULL, err)) < 0)
        goto done;
    if (cJSON_IsNumber(version) && version->valuedouble == 1) {
        rc = schema1_error(err);
        goto done;
    }
    mt = berth_schema_media_type(kind);
    if (strcmp(m->media_type, mt) != 0) {
        char *copy = strdup(mt);
        if (copy == NULL) {
            rc = oom(err);
            goto done;
        }
        free(m->media_type);
        m->media_type = copy;
    }

    /* Docker's formats have no other way to say what they are. */
    if ((kind == BERTH_SCHEMA_DOCKER_MANIFEST ||
         kind == BERTH_SCHEMA_DOCKER_LIST) &&
        body_mt == NULL) {
        rc = invalid(err, NULL, "mediaType", "required");
        goto done;
    }
    if (version == NULL) {
        rc = invalid(err, NULL, "schemaVersion", "required");
        goto done;
    }
    if (!cJSON_IsNumber(version) || version->valuedouble != 2) {
        rc = invalid(err, NULL, "schemaVersion", "must be the number 2");
        goto done;
    }
    rc = parse_schema(m, kind, root, err);
done:
    cJSON_Delete(root);
    if (rc < 0)
        berth_manifest_free(m);
    else
        *out = m;
    return rc;
}

/* ---- stored manifests ---- */

/*
 * The manifest fields the referrers index needs, from a manifest of a type
 * with no built-in schema: mediaType, and the standard subject,
 * artifactType and annotations when present.
 */
static int parse_generic(berth_manifest **out, const void *body, size_t len,
                         berth_error *err)
{
    berth_manifest *m = NULL;
    cJSON *root = NULL;
    const char *mt;
    int rc;

    *out = NULL;
    if ((root = parse_json(body, len, &rc, err)) == NULL)
        goto done;
    if (!cJSON_IsObject(root)) {
        rc = invalid(err, NULL, NULL, "not a JSON object");
        goto done;
    }
    if ((rc = get_string(&mt, root, "mediaType", 1, NULL, err)) < 0)
        goto done;
    if ((rc = berth_manifest_new(&m, mt, body, len, err)) < 0)
        goto done;
    rc = parse_oci_extras(m, root, err);
done:
    cJSON_Delete(root);
    if (rc < 0)
        berth_manifest_free(m);
    else
        *out = m;
    return rc;
}

int berth__manifest_parse_stored(berth_manifest **out, const char *body,
                                 size_t len, berth_error *err)
{
    int rc = berth_manifest_parse(out, NULL, body, len, err);

    if (rc == BERTH_EUNSUPPORTED)
        rc = parse_generic(out, body, len, err);
    return rc;
}

/* A member by its exact key: berth__manifest_media_type only names the
 * type of stored content (others may have written it) to serve it. */
static const cJSON *exact(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

int berth__manifest_media_type(char *out, size_t cap, const char *body,
                               size_t len, berth_error *err)
{
    cJSON *root;
    const cJSON *version, *mt, *config;
    const char *found = NULL;
    int rc = 0;

    assert(cap > 0);
    out[0] = '\0';
    if ((root = parse_json(body, len, &rc, err)) == NULL)
        return rc == BERTH_ENOMEM
                   ? rc
                   : berth_error_set(
                         err, BERTH_EMANIFEST_INVALID,
                         "manifest invalid: stored content is not a "
                         "manifest (not JSON)");
    if (!cJSON_IsObject(root)) {
        rc = berth_error_set(err, BERTH_EMANIFEST_INVALID,
                             "manifest invalid: stored content is not a "
                             "manifest (not a JSON object)");
        goto done;
    }
    version = exact(root, "schemaVersion");
    mt = exact(root, "mediaType");
    if ((cJSON_IsNumber(version) && version->valuedouble == 1) ||
        (cJSON_IsString(mt) && is_schema1(mt->valuestring))) {
        rc = schema1_error(err);
        goto done;
    }
    if (mt && !cJSON_IsString(mt)) {
        rc = invalid(err, NULL, "mediaType", "must be a string");
        goto done;
    }
    /* Distribution's nil type assertion came from an empty mediaType:
     * treat it as absent, and answer an error for what is no manifest. */
    config = exact(root, "config");
    if (mt && mt->valuestring[0])
        found = mt->valuestring;
    else if (cJSON_IsArray(exact(root, "manifests")))
        found = BERTH_MT_OCI_INDEX;
    /* An image config has a "config" too, but no descriptor in it. */
    else if (cJSON_IsArray(exact(root, "layers")) ||
             cJSON_IsString(exact(config, "digest")))
        found = BERTH_MT_OCI_MANIFEST;
    if (found == NULL) {
        rc = berth_error_set(err, BERTH_EMANIFEST_INVALID,
                             "manifest invalid: stored content is not a "
                             "manifest (no media type)");
        goto done;
    }
    if (strlen(found) >= cap) {
        rc = invalid(err, NULL, "mediaType", "longer than %zu characters",
                     cap - 1);
        goto done;
    }
    strcpy(out, found);
done:
    cJSON_Delete(root);
    return rc;
}
