-- The only file that declares C (ffi.cdef) and loads libberth and
-- libberth-auth (ffi.load). The declarations mirror core/include/berth/*.h;
-- spec/01-unit/ffi_spec.lua checks that every declared function exists in
-- its library.
local ffi = require "ffi"

local ffi_load = ffi.load
local getenv = os.getenv
local io_open = io.open
local concat = table.concat
local type = type

ffi.cdef [[
/* errors.h */
typedef struct berth_error {
    int code;
    int sys_errno;
    char message[256];
} berth_error;
int berth_error_set(berth_error *err, int code, const char *fmt, ...);
int berth_error_sys(berth_error *err, int code, int sys_errno,
                    const char *fmt, ...);
size_t berth_error_escape(char *out, size_t cap, const char *in, size_t len);
void berth_error_clear(berth_error *err);
int berth_error_info(int code, const char **name_out, const char **oci_out,
                     int *http_out, const char **api_out,
                     const char **message_out);
int berth_error_count(void);
int berth_error_code_at(int index);

/* buf.h */
typedef struct berth_buf { char *ptr; size_t len; size_t cap; } berth_buf;
int berth_buf_grow(berth_buf *b, size_t extra, berth_error *err);
int berth_buf_put(berth_buf *b, const void *data, size_t len,
                  berth_error *err);
int berth_buf_printf(berth_buf *b, berth_error *err, const char *fmt, ...);
void berth_buf_clear(berth_buf *b);
void berth_buf_dispose(berth_buf *b);

/* digest.h */
typedef enum berth_digest_algo {
    BERTH_DIGEST_NONE = 0, BERTH_DIGEST_SHA256 = 1,
    BERTH_DIGEST_SHA384 = 2, BERTH_DIGEST_SHA512 = 3
} berth_digest_algo;
typedef struct berth_digest {
    berth_digest_algo algo;
    char str[136];
} berth_digest;
typedef enum berth_hasher_impl {
    BERTH_HASHER_AUTO = 0, BERTH_HASHER_MBEDTLS = 1, BERTH_HASHER_SHANI = 2
} berth_hasher_impl;
typedef struct berth_hasher berth_hasher;
int berth_digest_parse(berth_digest *out, const char *s, size_t len,
                       berth_error *err);
const char *berth_digest_hex(const berth_digest *d);
const char *berth_digest_algo_name(berth_digest_algo algo);
berth_digest_algo berth_digest_algo_from_name(const char *name, size_t len);
int berth_digest_compute(berth_digest *out, berth_digest_algo algo,
                         const void *data, size_t len, berth_error *err);
int berth_hasher_new(berth_hasher **out, berth_digest_algo algo,
                     berth_hasher_impl impl, berth_error *err);
int berth_hasher_update(berth_hasher *h, const void *data, size_t len,
                        berth_error *err);
int berth_hasher_digest(berth_digest *out, const berth_hasher *h,
                        berth_error *err);
uint64_t berth_hasher_size(const berth_hasher *h);
berth_digest_algo berth_hasher_algo(const berth_hasher *h);
berth_hasher_impl berth_hasher_impl_of(const berth_hasher *h);
int berth_hasher_save(void *buf, size_t *len_inout, const berth_hasher *h,
                      berth_error *err);
int berth_hasher_restore(berth_hasher **out, const void *buf, size_t len,
                         berth_hasher_impl impl, berth_error *err);
void berth_hasher_free(berth_hasher *h);
const char *berth_hasher_auto_name(void);
int berth_hmac_sha256(unsigned char out[32], const void *key, size_t key_len,
                      const void *msg, size_t msg_len, berth_error *err);

/* base64.h */
int berth_base64_decode(berth_buf *out, const char *in, size_t len, int mode,
                        berth_error *err);
int berth_base64_encode(berth_buf *out, const void *in, size_t len, int mode,
                        berth_error *err);

/* libc: berth.busy's blocking sleep */
int poll(void *fds, unsigned long nfds, int timeout);

/* sys/driver.h */
typedef struct berth_driver berth_driver;
typedef struct berth_reader berth_reader;
typedef struct berth_writer berth_writer;
enum { BERTH_DRIVER_VERSION = 3, BERTH_LIST_VERSION_MAX = 96,
       BERTH_STAT_VERSION_MAX = 64 };
typedef struct berth_lease berth_lease;
typedef struct berth_stat_info {
    uint64_t size; int64_t mtime_ns; int is_dir;
    char version[BERTH_STAT_VERSION_MAX];
} berth_stat_info;
typedef enum berth_send_kind {
    BERTH_SEND_FILE = 1, BERTH_SEND_URL = 2
} berth_send_kind;
typedef struct berth_strlist { char **items; size_t count; size_t cap; }
    berth_strlist;
int berth_strlist_add(berth_strlist *l, const char *s, size_t len,
                      berth_error *err);
void berth_strlist_sort(berth_strlist *l);
void berth_strlist_dispose(berth_strlist *l);
int berth_driver_get(berth_driver *d, berth_buf *out, const char *path,
                     size_t max, berth_error *err);
int berth_driver_put(berth_driver *d, const char *path, const void *data,
                     size_t len, berth_error *err);
int berth_driver_reader(berth_driver *d, berth_reader **out,
                        const char *path, uint64_t offset, berth_error *err);
int berth_driver_writer(berth_driver *d, berth_writer **out,
                        const char *path, int append, berth_error *err);
int berth_driver_stat(berth_driver *d, berth_stat_info *out, const char *path,
                      berth_error *err);
int berth_driver_list(berth_driver *d, berth_strlist *out, const char *path,
                      berth_error *err);
int berth_driver_list_page(berth_driver *d, berth_strlist *out,
                           const char *path, const char *cursor,
                           berth_buf *next, berth_error *err);
int berth_driver_move(berth_driver *d, const char *from, const char *to,
                      berth_error *err);
int berth_driver_remove(berth_driver *d, const char *path, berth_error *err);
int berth_driver_local_path(berth_driver *d, berth_buf *out,
                            const char *path, berth_error *err);
int berth_driver_import(berth_driver *d, const char *path,
                        const char *local_file, berth_error *err);
int berth_driver_leftover(berth_driver *d, const char *path,
                          int64_t cutoff_ns, int remove, berth_error *err);
int berth_driver_send(berth_driver *d, berth_send_kind *kind,
                      berth_buf *where, const char *path, berth_error *err);
int berth_driver_list_version(berth_driver *d, const char *path,
                              char out[BERTH_LIST_VERSION_MAX],
                              berth_error *err);
int berth_driver_put_if(berth_driver *d, const char *path, const void *data,
                        size_t len, const char *expected, berth_error *err);
int berth_driver_lock(berth_driver *d, berth_lease **out, const char *path,
                      berth_error *err);
void berth_lease_free(berth_lease *l);
void berth_driver_free(berth_driver *d);
int berth_reader_read(berth_reader *r, void *buf, size_t cap, size_t *n_out,
                      berth_error *err);
void berth_reader_free(berth_reader *r);
int berth_writer_write(berth_writer *w, const void *data, size_t len,
                       berth_error *err);
uint64_t berth_writer_size(berth_writer *w);
int berth_writer_commit(berth_writer *w, berth_error *err);
int berth_writer_cancel(berth_writer *w, berth_error *err);
int berth_writer_truncate(berth_writer *w, uint64_t size, berth_error *err);
void berth_writer_free(berth_writer *w);
int berth_driver_path_valid(const char *path);
typedef enum berth_fsync {
    BERTH_FSYNC_NONE = 0, BERTH_FSYNC_DATA = 1, BERTH_FSYNC_FULL = 2
} berth_fsync;
int berth_driver_fs_new(berth_driver **out, const char *root,
                        berth_fsync fsync_policy, berth_error *err);
int berth_driver_mem_new(berth_driver **out, berth_error *err);
/* s3.h: the S3 driver, in libberth-s3 (load_s3 below) */
enum { BERTH_S3_OPTIONS_VERSION = 1 };
typedef struct berth_s3_options {
    unsigned version;
    const char *endpoint;
    const char *bucket;
    const char *region;
    const char *access_key;
    const char *secret_key;
    const char *root;
    int attempts;
} berth_s3_options;
int berth_driver_s3_new(berth_driver **out, const berth_s3_options *opts,
                        berth_error *err);
typedef enum berth_fault_mode {
    BERTH_FAULT_OFF = 0, BERTH_FAULT_FAIL_ONE = 1, BERTH_FAULT_CRASH = 2,
    BERTH_FAULT_SHORT_WRITE = 3
} berth_fault_mode;
int berth_driver_fault_new(berth_driver **out, berth_driver *inner,
                           berth_error *err);
void berth_driver_fault_arm(berth_driver *d, berth_fault_mode mode,
                            uint64_t nth);
uint64_t berth_driver_fault_count(berth_driver *d);
typedef void (*berth_fault_watch_fn)(void *arg, const char *op,
                                     const char *path, const char *to);
void berth_driver_fault_watch(berth_driver *d, berth_fault_watch_fn fn,
                              void *arg);

/* sys/alloc.h: allocation failures, for tests */
void berth_alloc_fail_at(uint64_t nth);
uint64_t berth_alloc_count(void);

/* store.h */
typedef struct berth_store berth_store;
typedef struct berth_store_options {
    unsigned version;
    const char *root;
    const char *driver;
    berth_fsync fsync;
    berth_driver *custom;
} berth_store_options;
int berth_store_open(berth_store **out, const berth_store_options *opts,
                     berth_error *err);
berth_driver *berth_store_driver(berth_store *st);
int berth_store_new_epoch(berth_store *st, berth_error *err);
void berth_store_free(berth_store *st);
int berth_name_validate(const char *name, size_t len, berth_error *err);
int berth_tag_validate(const char *tag, size_t len, berth_error *err);
const char *berth_version(void);

/* blob.h */
int berth_blob_stat(uint64_t *size_out, berth_store *st, const char *repo,
                    const berth_digest *dgst, berth_error *err);
int berth_blob_get(berth_buf *out, berth_store *st, const char *repo,
                   const berth_digest *dgst, size_t max, berth_error *err);
int berth_blob_open(berth_reader **out, berth_store *st, const char *repo,
                    const berth_digest *dgst, uint64_t offset,
                    berth_error *err);
int berth_blob_send(berth_send_kind *kind, berth_buf *out,
                    berth_buf *rel_out, berth_store *st, const char *repo,
                    const berth_digest *dgst, berth_error *err);
int berth_blob_local_path(berth_buf *out, berth_buf *rel_out,
                          berth_store *st, const char *repo,
                          const berth_digest *dgst, berth_error *err);
const char *berth_blob_dir(void);
int berth_blob_put(berth_digest *out, berth_store *st, const char *repo,
                   berth_digest_algo algo, const void *data, size_t len,
                   berth_error *err);
int berth_blob_mount(berth_store *st, const char *repo, const char *from,
                     const berth_digest *dgst, berth_error *err);
int berth_blob_unlink(berth_store *st, const char *repo,
                      const berth_digest *dgst, berth_error *err);
int berth_blob_purge(berth_store *st, const berth_digest *dgst,
                     berth_error *err);
int berth_blob_condemn(berth_store *st, const berth_digest *dgst,
                       berth_error *err);
int berth_blob_reprieve(berth_store *st, const berth_digest *dgst,
                        berth_error *err);
int berth_blob_purge_condemned(berth_store *st, const berth_digest *dgst,
                               berth_error *err);
int berth_blob_link_withdraw(berth_store *st, const char *repo,
                             const berth_digest *dgst, berth_error *err);
int berth_blob_link_restore(berth_store *st, const char *repo,
                            const berth_digest *dgst, berth_error *err);
int berth_blob_links_condemn(berth_store *st, const berth_digest *dgst,
                             berth_error *err);
int berth_blob_link_reprieve(berth_store *st, const char *repo,
                             const berth_digest *dgst, berth_error *err);
int berth_blob_links_purge(berth_store *st, const berth_digest *dgst,
                           berth_error *err);
int berth_gc_reprieve_all(int *count_out, berth_store *st, berth_error *err);
int berth_gc_restore_links(int *count_out, berth_store *st,
                           berth_error *err);
typedef struct berth_blob_iter berth_blob_iter;
int berth_blob_iter_new(berth_blob_iter **out, berth_store *st,
                        const char *repo, berth_error *err);
int berth_blob_iter_next(berth_digest *out, berth_blob_iter *it,
                         berth_error *err);
void berth_blob_iter_free(berth_blob_iter *it);
typedef struct berth_upload berth_upload;
int berth_upload_create(berth_upload **out, berth_store *st,
                        const char *repo, berth_error *err);
int berth_upload_open(berth_upload **out, berth_store *st, const char *repo,
                      const char *id, unsigned flags, berth_error *err);
const char *berth_upload_id(const berth_upload *up);
uint64_t berth_upload_size(const berth_upload *up);
int64_t berth_upload_started(const berth_upload *up);
int berth_upload_write(berth_upload *up, const void *data, size_t len,
                       berth_error *err);
typedef struct berth_follower berth_follower;
int berth_follower_start(berth_follower **out, const char *file,
                         unsigned flags, berth_error *err);
int berth_follower_progress(const berth_follower *f, uint64_t *hashed,
                            berth_error *err);
void berth_follower_free(berth_follower *f);
int berth_upload_adopt(berth_upload *up, const char *local_file,
                       berth_follower *follower, berth_error *err);
int berth_upload_flush(berth_upload *up, berth_error *err);
int berth_upload_commit(berth_upload *up, const berth_digest *expected,
                        int64_t expected_size, berth_error *err);
int berth_upload_cancel(berth_upload *up, berth_error *err);
void berth_upload_free(berth_upload *up);

/* manifest.h */
typedef enum berth_ref_kind {
    BERTH_REF_CONFIG = 1, BERTH_REF_LAYER = 2, BERTH_REF_MANIFEST = 3,
    BERTH_REF_BLOB = 4
} berth_ref_kind;
typedef struct berth_descriptor {
    berth_ref_kind kind;
    berth_digest digest;
    int64_t size;
    const char *media_type;
    const char *artifact_type;
    int has_urls;
    const char *platform_os;
    const char *platform_arch;
} berth_descriptor;
typedef enum berth_schema {
    BERTH_SCHEMA_NONE = 0, BERTH_SCHEMA_OCI_MANIFEST = 1,
    BERTH_SCHEMA_OCI_INDEX = 2, BERTH_SCHEMA_DOCKER_MANIFEST = 3,
    BERTH_SCHEMA_DOCKER_LIST = 4
} berth_schema;
const char *berth_schema_media_type(berth_schema kind);
size_t berth_manifest_max(void);
typedef struct berth_manifest berth_manifest;
int berth_manifest_detect(char *out, size_t cap, const char *content_type,
                          const void *body, size_t len, berth_error *err);
int berth_manifest_parse(berth_manifest **out, const char *content_type,
                         const void *body, size_t len, berth_error *err);
int berth_manifest_new(berth_manifest **out, const char *media_type,
                       const void *body, size_t len, berth_error *err);
int berth_manifest_add_ref(berth_manifest *m, const berth_descriptor *d,
                           int is_subject, berth_error *err);
int berth_manifest_set_artifact_type(berth_manifest *m, const char *type,
                                     berth_error *err);
int berth_manifest_set_annotations(berth_manifest *m, const char *json,
                                   berth_error *err);
const char *berth_manifest_media_type(const berth_manifest *m);
const berth_digest *berth_manifest_digest(const berth_manifest *m);
const void *berth_manifest_body(const berth_manifest *m, size_t *len_out);
size_t berth_manifest_ref_count(const berth_manifest *m);
const berth_descriptor *berth_manifest_ref(const berth_manifest *m,
                                           size_t i);
const berth_descriptor *berth_manifest_subject(const berth_manifest *m);
const char *berth_manifest_artifact_type(const berth_manifest *m);
const char *berth_manifest_annotations(const berth_manifest *m);
void berth_manifest_free(berth_manifest *m);
typedef struct berth_manifest_put_options {
    unsigned version;
    const char *tag;
    const berth_digest *expected;
    unsigned flags;
    int allow_foreign_layers;
    const berth_digest *tag_expected;
} berth_manifest_put_options;
int berth_manifest_put(berth_store *st, const char *repo,
                       const berth_manifest *m,
                       const berth_manifest_put_options *opts,
                       berth_error *err);
typedef struct berth_manifest_info {
    berth_digest digest;
    uint64_t size;
    char media_type[256];
} berth_manifest_info;
int berth_manifest_get(berth_buf *body, berth_manifest_info *info,
                       berth_store *st, const char *repo, const char *ref,
                       berth_error *err);
int berth_manifest_delete(berth_store *st, const char *repo,
                          const berth_digest *dgst, berth_error *err);
int berth_manifest_delete_if(berth_store *st, const char *repo,
                             const berth_digest *dgst,
                             berth_strlist *expected_tags, berth_error *err);
int berth_manifest_list(berth_strlist *out, berth_store *st,
                        const char *repo, berth_error *err);
int berth_referrers_list(berth_buf *json_out, berth_store *st,
                         const char *repo, const berth_digest *subject,
                         const char *artifact_type, berth_error *err);
int berth_referrers_rebuild(berth_store *st, const char *repo,
                            berth_error *err);

/* tag.h */
int berth_tag_get(berth_digest *out, berth_store *st, const char *repo,
                  const char *tag, berth_error *err);
int berth_tag_set(berth_store *st, const char *repo, const char *tag,
                  const berth_digest *dgst, berth_error *err);
int berth_tag_delete(berth_store *st, const char *repo, const char *tag,
                     berth_error *err);
int berth_tag_set_if(berth_store *st, const char *repo, const char *tag,
                     const berth_digest *dgst, const berth_digest *expected,
                     berth_error *err);
int berth_tag_delete_if(berth_store *st, const char *repo, const char *tag,
                        const berth_digest *expected, berth_error *err);
int berth_tag_list_version(berth_store *st, const char *repo, char out[96],
                           berth_error *err);
int berth_tag_list(berth_strlist *out, berth_store *st, const char *repo,
                   const char *last, size_t n, berth_error *err);
int berth_tag_list_all(berth_strlist *out, berth_strlist *unset_out,
                       berth_store *st, const char *repo, berth_error *err);
int berth_tag_lookup(berth_strlist *out, berth_store *st, const char *repo,
                     const berth_digest *dgst, berth_error *err);
int berth_tag_reindex(berth_store *st, const char *repo, berth_error *err);
/* catalog.h */
int berth_catalog_list(berth_strlist *out, berth_store *st, const char *last,
                       size_t n, berth_error *err);
/* gc.h: garbage collection and fsck primitives */
int berth_gc_repo_list(berth_strlist *out, berth_store *st,
                       berth_error *err);
int berth_gc_blob_stat(berth_stat_info *out, berth_store *st,
                       const berth_digest *dgst, berth_error *err);
int berth_gc_blob_verify(berth_digest *actual_out, uint64_t *size_out,
                         berth_store *st, const berth_digest *dgst,
                         berth_error *err);
typedef enum berth_gc_link_kind {
    BERTH_GC_LINK_LAYER = 1, BERTH_GC_LINK_REVISION = 2,
    BERTH_GC_LINK_TAG_CURRENT = 4, BERTH_GC_LINK_TAG_INDEX = 8
} berth_gc_link_kind;
typedef enum berth_gc_link_state {
    BERTH_GC_LINK_OK = 0, BERTH_GC_LINK_ABSENT = 1,
    BERTH_GC_LINK_DAMAGED = 2, BERTH_GC_LINK_MISMATCH = 3
} berth_gc_link_state;
typedef struct berth_gc_link {
    berth_gc_link_kind kind;
    berth_gc_link_state state;
    berth_digest digest;
    berth_digest target;
    char tag[129];
    int64_t mtime_ns;
} berth_gc_link;
typedef struct berth_gc_link_iter berth_gc_link_iter;
int berth_gc_link_iter_new(berth_gc_link_iter **out, berth_store *st,
                           const char *repo, unsigned kinds,
                           berth_error *err);
int berth_gc_link_iter_next(berth_gc_link *out, berth_gc_link_iter *it,
                            berth_error *err);
void berth_gc_link_iter_free(berth_gc_link_iter *it);
int berth_gc_link_stat(berth_gc_link *out, berth_store *st, const char *repo,
                       berth_gc_link_kind kind, const berth_digest *dgst,
                       const char *tag, berth_error *err);
int berth_gc_link_remove(berth_store *st, const char *repo,
                         berth_gc_link_kind kind, const berth_digest *dgst,
                         const char *tag, berth_error *err);
int berth_gc_link_leftover(berth_store *st, const char *repo,
                           berth_gc_link_kind kind, const berth_digest *dgst,
                           const char *tag, int64_t cutoff_ns, int remove,
                           berth_error *err);
int berth_gc_blob_leftover(berth_store *st, const berth_digest *dgst,
                           int64_t cutoff_ns, int remove, berth_error *err);
typedef struct berth_gc_upload {
    char id[37];
    int64_t started;
    int has_startedat;
    uint64_t size;
} berth_gc_upload;
typedef struct berth_gc_upload_iter berth_gc_upload_iter;
int berth_gc_upload_iter_new(berth_gc_upload_iter **out, berth_store *st,
                             const char *repo, berth_error *err);
int berth_gc_upload_iter_next(berth_gc_upload *out, berth_gc_upload_iter *it,
                              berth_error *err);
void berth_gc_upload_iter_free(berth_gc_upload_iter *it);
int berth_gc_upload_purge(berth_store *st, const char *repo, const char *id,
                          berth_error *err);
int berth_gc_manifest_restore(berth_store *st, const char *repo,
                              const berth_digest *dgst, berth_error *err);
typedef struct berth_gc_options {
    unsigned version;
    int64_t now_ns;
    int64_t grace_ns;
    int64_t upload_grace_ns;
    int dry_run;
    int delete_untagged;
} berth_gc_options;
typedef enum berth_gc_phase {
    BERTH_GC_PHASE_MARK = 1, BERTH_GC_PHASE_SWEEP = 2,
    BERTH_GC_PHASE_SETTLE = 3, BERTH_GC_PHASE_PURGE = 4,
    BERTH_GC_PHASE_UPLOADS = 5
} berth_gc_phase;
typedef struct berth_gc_progress {
    berth_gc_phase phase;
    size_t done;
    size_t total;
} berth_gc_progress;
typedef struct berth_gc_report {
    uint64_t blobs_total;
    uint64_t blobs_kept;
    uint64_t blobs_kept_bytes;
    uint64_t blobs_young;
    uint64_t blobs_young_bytes;
    uint64_t blobs_removed;
    uint64_t blobs_removed_bytes;
    uint64_t blobs_reprieved;
    uint64_t manifests_removed;
    uint64_t manifests_restored;
    uint64_t links_removed;
    uint64_t links_restored;
    uint64_t uploads_total;
    uint64_t uploads_removed;
    uint64_t uploads_removed_bytes;
    uint64_t uploads_busy;
    uint64_t lost;
} berth_gc_report;
typedef enum berth_gc_removal_kind {
    BERTH_GC_REMOVED_BLOB = 1, BERTH_GC_REMOVED_MANIFEST = 2,
    BERTH_GC_REMOVED_UPLOAD = 3
} berth_gc_removal_kind;
typedef struct berth_gc_removal {
    berth_gc_removal_kind kind;
    const char *repo;
    const char *name;
    uint64_t size;
    int64_t started;
} berth_gc_removal;
typedef struct berth_gc berth_gc;
enum { BERTH_GC_OPTIONS_VERSION = 1 };
int berth_gc_new(berth_gc **out, berth_store *st,
                 const berth_gc_options *opts, berth_error *err);
int berth_gc_step(berth_gc_progress *out, berth_gc *gc, berth_error *err);
const berth_gc_report *berth_gc_report_of(const berth_gc *gc);
int berth_gc_removed(berth_gc_removal *out, const berth_gc *gc, size_t i);
const char *berth_gc_warning(const berth_gc *gc, size_t i);
void berth_gc_free(berth_gc *gc);
/* end gc.h */

/* auth.h: tokens and passwords, in libberth-auth (load_auth below) */
typedef struct berth_auth_keys berth_auth_keys;
int berth_auth_keys_new(berth_auth_keys **out, berth_error *err);
int berth_auth_keys_add_pem(berth_auth_keys *ks, const char *path,
                            berth_error *err);
int berth_auth_keys_add_jwks(berth_auth_keys *ks, const char *path,
                             berth_error *err);
size_t berth_auth_keys_count(const berth_auth_keys *ks);
void berth_auth_keys_info(const berth_auth_keys *ks, size_t i,
                          const char **alg_out, const char **kid_out,
                          const char **libtrust_out,
                          const char **thumbprint_out);
void berth_auth_keys_free(berth_auth_keys *ks);
typedef struct berth_jwt_options {
    unsigned version;
    const char *issuer;
    const char *audience;
    int64_t now;
    int64_t leeway;
} berth_jwt_options;
int berth_jwt_verify(berth_buf *subject_out, berth_buf *access_out,
                     int64_t *expires_out, const berth_auth_keys *ks,
                     const char *token, size_t len,
                     const berth_jwt_options *opts, berth_error *err);
typedef struct berth_htpasswd berth_htpasswd;
int berth_htpasswd_load(berth_htpasswd **out, const char *path,
                        berth_error *err);
int berth_htpasswd_verify(const berth_htpasswd *h, const char *user,
                          size_t user_len, const char *password,
                          size_t password_len, berth_error *err);
size_t berth_htpasswd_count(const berth_htpasswd *h);
void berth_htpasswd_free(berth_htpasswd *h);
/* end auth.h */
]]

-- Find libberth: $BERTH_LIB, then package.cpath, then the checkout's build/
-- directory, then an installed tree's lib/ (CMakeLists.txt). On failure,
-- say every path that was tried.
local function load_shared_lib()
  local tried = {}
  local candidates = {}
  local env = getenv("BERTH_LIB")
  if env and env ~= "" then
    candidates[#candidates + 1] = env
  end
  for pattern in package.cpath:gmatch("[^;]+") do
    candidates[#candidates + 1] = pattern:gsub("%?", "libberth")
  end
  local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")
  if here then
    candidates[#candidates + 1] = here .. "/../../build/libberth.so"
    candidates[#candidates + 1] = here .. "/../../lib/libberth.so"
  end
  for _, path in ipairs(candidates) do
    local f = io_open(path, "rb")
    if f then
      f:close()
      local ok, lib = pcall(ffi_load, path)
      if ok then
        return lib, path
      end
      tried[#tried + 1] = path .. " (" .. tostring(lib) .. ")"
    else
      tried[#tried + 1] = path
    end
  end
  error("libberth not found; tried:\n  " .. concat(tried, "\n  "), 2)
end

local C, path = load_shared_lib()

-- libberth-auth (berth/auth.h), beside the libberth just loaded; else by
-- name, through the dynamic linker's search path. Loaded once, when the
-- first caller asks (berth.auth), so a store alone does not load it.
local function load_beside(name)
  local beside = path:match("^(.*/)[^/]*$")
  local file = beside and beside .. "lib" .. name .. ".so"
  local f = file and io_open(file, "rb")
  if f then
    f:close()
  else
    file = name
  end
  return ffi_load(file)
end

local auth_lib
local function load_auth()
  auth_lib = auth_lib or load_beside("berth-auth")
  return auth_lib
end

-- libberth-s3 (berth/s3.h) the same way, when the first S3 driver is made.
local s3_lib
local function load_s3()
  s3_lib = s3_lib or load_beside("berth-s3")
  return s3_lib
end

-- C takes strings NUL-terminated and would read "a\0evil" as "a", so every
-- binding hands its string arguments over through here (berth.store's
-- names() for the store's). Not a string is a contract violation: raised
-- at level, as error() would take it in the caller.
-- c_string(s, what, code, optional, level) -> true | nil, err, code
local function c_string(s, what, code, optional, level)
  if type(s) ~= "string" then
    if s == nil and optional then
      return true
    end
    error(what .. " must be a string", level + 1)
  end
  if s:find("\0", 1, true) then
    return nil, "invalid " .. what .. ": contains a NUL byte", code
  end
  return true
end

-- strlist_take(l) -> the berth_strlist's names as a Lua array; its C
-- memory is released (l is empty again).
local function strlist_take(l)
  local t = {}
  for i = 0, tonumber(l.count) - 1 do
    t[i + 1] = ffi.string(l.items[i])
  end
  C.berth_strlist_dispose(l)
  return t
end

return { C = C, path = path, load_auth = load_auth, load_s3 = load_s3,
  c_string = c_string,
  strlist_take = strlist_take }
