/*
 * Manifests: parsed by media type, verified against the repository's blobs,
 * stored as blobs byte for byte with a revision link, plus the referrers
 * index (subject -> referring manifests).
 *
 * Built-in schemas: OCI image manifest and index, Docker schema2 manifest and
 * manifest list. Docker schema1 is refused. Other media types are stored
 * through a caller-built berth_manifest (the Lua handler registry does this).
 */
#ifndef BERTH_MANIFEST_H
#define BERTH_MANIFEST_H

#include <stddef.h>
#include <stdint.h>
#include "berth/errors.h"
#include "berth/buf.h"
#include "berth/digest.h"
#include "berth/store.h"
#include "berth/sys/driver.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest manifest accepted (the OCI spec's suggested minimum limit). */
#define BERTH_MANIFEST_MAX (4 * 1024 * 1024)

#define BERTH_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define BERTH_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define BERTH_MT_DOCKER_MANIFEST                                             \
    "application/vnd.docker.distribution.manifest.v2+json"
#define BERTH_MT_DOCKER_LIST                                                 \
    "application/vnd.docker.distribution.manifest.list.v2+json"

/* The built-in schemas, for bindings that cannot read the macros above. */
typedef enum berth_schema {
    BERTH_SCHEMA_NONE = 0, /* no built-in schema (a Lua handler's type) */
    BERTH_SCHEMA_OCI_MANIFEST = 1,
    BERTH_SCHEMA_OCI_INDEX = 2,
    BERTH_SCHEMA_DOCKER_MANIFEST = 3,
    BERTH_SCHEMA_DOCKER_LIST = 4
} berth_schema;

/** The media type of a built-in schema (a BERTH_MT_*); NULL for
 *  BERTH_SCHEMA_NONE or any other value. Static storage. */
BERTH_API
const char *berth_schema_media_type(berth_schema kind);

/** BERTH_MANIFEST_MAX, for bindings. */
BERTH_API
size_t berth_manifest_max(void);

/* What a descriptor is to the manifest that holds it. */
typedef enum berth_ref_kind {
    BERTH_REF_CONFIG = 1,   /* a blob */
    BERTH_REF_LAYER = 2,    /* a blob */
    BERTH_REF_MANIFEST = 3, /* an index child: a manifest */
    BERTH_REF_BLOB = 4      /* any other blob (artifact blobs, Lua types) */
} berth_ref_kind;

/* Strings are borrowed from the berth_manifest that returned them. */
typedef struct berth_descriptor {
    berth_ref_kind kind;
    berth_digest digest;
    int64_t size;
    const char *media_type;    /* NULL when absent */
    const char *artifact_type; /* NULL when absent */
    int has_urls;              /* a non-distributable layer with "urls" */
    const char *platform_os;   /* index children; NULL when absent */
    const char *platform_arch;
} berth_descriptor;

typedef struct berth_manifest berth_manifest;

/**
 * The media type of a manifest sent with this Content-Type: the one rule
 * every caller uses (the parser below, the Lua handler registry).
 * The Content-Type's media type (parameters dropped, lower case) unless it
 * is missing or generic ("", application/json, application/octet-stream,
 * text/plain, the wildcard); then the body's "mediaType", else an OCI
 * index when the body has "manifests", else an OCI image manifest. A
 * body's mediaType that contradicts the Content-Type, an empty one, and
 * schema1 are refused. A body that is not JSON is refused only when its
 * type had to be read from it (a Lua handler may take other bodies).
 * @param out at least 256 bytes (media types are at most 255 characters)
 * @return 0, BERTH_EMANIFEST_INVALID, BERTH_ETOOLARGE (over
 *         BERTH_MANIFEST_MAX), BERTH_EBUFS (cap too small), BERTH_ENOMEM.
 */
BERTH_API
int berth_manifest_detect(char *out, size_t cap, const char *content_type,
                          const void *body, size_t len, berth_error *err);

/**
 * Parse a manifest with the built-in schemas, of the media type
 * berth_manifest_detect gives for content_type (NULL or "" to read it from
 * the body). Owned by the caller: berth_manifest_free().
 * @return 0, BERTH_EMANIFEST_INVALID (message says why), BERTH_ETOOLARGE
 *         (over BERTH_MANIFEST_MAX), BERTH_EUNSUPPORTED (a media type with no
 *         built-in schema), BERTH_ENOMEM.
 */
BERTH_API
int berth_manifest_parse(berth_manifest **out, const char *content_type,
                         const void *body, size_t len, berth_error *err);

/**
 * An empty manifest of any media type, for callers that parse themselves:
 * add its references with berth_manifest_add_ref, then berth_manifest_put.
 * The body is copied.
 */
BERTH_API
int berth_manifest_new(berth_manifest **out, const char *media_type,
                       const void *body, size_t len, berth_error *err);
/** Add a reference (or, with is_subject, set the subject).
 *  @return 0, BERTH_EINVAL (a second subject), BERTH_ENOMEM. */
BERTH_API
int berth_manifest_add_ref(berth_manifest *m, const berth_descriptor *d,
                           int is_subject, berth_error *err);
/** Set the artifact type reported to the referrers API (copied). */
BERTH_API
int berth_manifest_set_artifact_type(berth_manifest *m, const char *type,
                                     berth_error *err);
/** Set the annotations reported to the referrers API: a JSON object's text
 *  (copied; validated). @return 0, BERTH_EMANIFEST_INVALID, BERTH_ENOMEM. */
BERTH_API
int berth_manifest_set_annotations(berth_manifest *m, const char *json,
                                   berth_error *err);

BERTH_API
const char *berth_manifest_media_type(const berth_manifest *m);
/** Digest of the body (sha256). */
BERTH_API
const berth_digest *berth_manifest_digest(const berth_manifest *m);
BERTH_API
const void *berth_manifest_body(const berth_manifest *m, size_t *len_out);
BERTH_API
size_t berth_manifest_ref_count(const berth_manifest *m);
BERTH_API
const berth_descriptor *berth_manifest_ref(const berth_manifest *m, size_t i);
/** The subject descriptor, or NULL. */
BERTH_API
const berth_descriptor *berth_manifest_subject(const berth_manifest *m);
/** artifactType, else the config's media type (OCI's rule for the
 *  referrers API), else NULL. */
BERTH_API
const char *berth_manifest_artifact_type(const berth_manifest *m);
/** Annotations as JSON object text, or NULL. */
BERTH_API
const char *berth_manifest_annotations(const berth_manifest *m);
BERTH_API
void berth_manifest_free(berth_manifest *m);

enum {
    /* Store without checking that references exist (a pull-through
     * cache stores a manifest before its blobs). */
    BERTH_MANIFEST_SKIP_VERIFY = 1,
    /* Tag only if the tag still points at tag_expected: see
     * berth_tag_set_if. */
    BERTH_MANIFEST_TAG_IF = 2
};

/* Version 1 ends at allow_foreign_layers. */
#define BERTH_MANIFEST_PUT_OPTIONS_VERSION 2

typedef struct berth_manifest_put_options {
    unsigned version;
    const char *tag;              /* tag it too; NULL for none */
    const berth_digest *expected; /* PUT by digest: body must hash to it */
    unsigned flags;               /* BERTH_MANIFEST_* */
    /* Non-distributable layers ("urls"): allowed to be absent from the
     * repository when this is set. */
    int allow_foreign_layers;
    /* With BERTH_MANIFEST_TAG_IF: what the tag must point at when it is
     * written (NULL: it must not exist). */
    const berth_digest *tag_expected;
} berth_manifest_put_options;

#define BERTH_MANIFEST_PUT_OPTIONS_INIT                                      \
    {                                                                        \
        BERTH_MANIFEST_PUT_OPTIONS_VERSION, NULL, NULL, 0, 1, NULL           \
    }

/**
 * Store a parsed manifest in repo: verify that each reference exists in the
 * repository (blobs linked in _layers, child manifests as revisions), write
 * the body as a blob, the revision link, the referrers entry, then the tag
 * (index link before current link). Storing it again is a success.
 * @return 0, BERTH_ENAME_INVALID, BERTH_ETAG_INVALID,
 *         BERTH_EMANIFEST_BLOB_UNKNOWN (a blob reference is missing),
 *         BERTH_EMANIFEST_UNKNOWN (a child manifest is missing),
 *         BERTH_EDIGEST_INVALID (expected digest differs), BERTH_EIO,
 *         BERTH_ETAG_CHANGED (BERTH_MANIFEST_TAG_IF: the manifest is stored,
 *         the tag was not written).
 */
BERTH_API
int berth_manifest_put(berth_store *st, const char *repo,
                       const berth_manifest *m,
                       const berth_manifest_put_options *opts,
                       berth_error *err);

typedef struct berth_manifest_info {
    berth_digest digest;
    uint64_t size;
    char media_type[256];
} berth_manifest_info;

/**
 * Fetch a manifest by tag or digest ("sha256:..."), verified against its
 * digest, with its media type (read from the body: "mediaType", else index
 * when it has "manifests", else OCI image manifest). body may be NULL (HEAD).
 * @return 0, BERTH_EMANIFEST_UNKNOWN, BERTH_EDIGEST_INVALID (ref looks like
 *         a digest but does not parse), BERTH_ETAG_INVALID,
 *         BERTH_ENAME_INVALID, BERTH_EMANIFEST_INVALID (stored content is
 *         not a manifest), BERTH_EIO.
 */
BERTH_API
int berth_manifest_get(berth_buf *body, berth_manifest_info *info,
                       berth_store *st, const char *repo, const char *ref,
                       berth_error *err);

/**
 * Delete a manifest by digest: its revision link, every tag that points at
 * it, and its referrers entry. The blob data stays for garbage collection.
 * @return 0, BERTH_EMANIFEST_UNKNOWN, BERTH_ENAME_INVALID, BERTH_EIO,
 *         BERTH_EBUSY (as berth_tag_set).
 */
BERTH_API
int berth_manifest_delete(berth_store *st, const char *repo,
                          const berth_digest *dgst, berth_error *err);

/**
 * berth_manifest_delete, only if the tags pointing at the manifest are
 * exactly expected_tags (in any order; sorted on return), as one step
 * against berth's tag writes (a policy decided on those tags).
 * @return what berth_manifest_delete does, and BERTH_ETAG_CHANGED.
 */
BERTH_API
int berth_manifest_delete_if(berth_store *st, const char *repo,
                             const berth_digest *dgst,
                             berth_strlist *expected_tags, berth_error *err);

/**
 * Digests of a repository's manifests, sorted (pull-style, like blobs).
 */
BERTH_API
int berth_manifest_list(berth_strlist *out, berth_store *st, const char *repo,
                        berth_error *err);

/**
 * The referrers of subject in repo as an OCI image index (JSON text), each
 * a descriptor with mediaType, size, digest, artifactType and annotations,
 * sorted by digest; only those of artifact_type when it is not NULL.
 * A subject with no referrers gives an empty index.
 * @return 0, BERTH_ENAME_INVALID, BERTH_EIO.
 */
BERTH_API
int berth_referrers_list(berth_buf *json_out, berth_store *st,
                         const char *repo, const berth_digest *subject,
                         const char *artifact_type, berth_error *err);

/**
 * Rebuild repo's referrers index from its manifests (the index is a cache).
 */
BERTH_API
int berth_referrers_rebuild(berth_store *st, const char *repo,
                            berth_error *err);

#ifdef __cplusplus
}
#endif
#endif
