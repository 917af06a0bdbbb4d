/*
 * The layout of what lua/berth/ffi.lua declares, from the headers as the C
 * compiler sees them: each struct's size and its fields' offsets, each
 * enum constant's value. spec/01-unit/ffi_layout_spec.lua compares them
 * with LuaJIT's ffi.sizeof/ffi.offsetof and the cdef's constants.
 */
#include <stddef.h>
#include <stdio.h>

#include <berth/berth.h>
#include <berth/auth.h>
#include <berth/s3.h>

#define S(t) printf("size %s %zu\n", #t, sizeof(t));
#define F(t, f) printf("offset %s %s %zu\n", #t, #f, offsetof(t, f));
#define K(c) printf("const %s %lld\n", #c, (long long)(c));

int main(void)
{
    /* one line per struct, as the cdef reads */
    /* clang-format off */
    S(berth_error) F(berth_error, code) F(berth_error, sys_errno)
    F(berth_error, message)
    S(berth_buf) F(berth_buf, ptr) F(berth_buf, len) F(berth_buf, cap)
    S(berth_digest) F(berth_digest, algo) F(berth_digest, str)
    S(berth_stat_info) F(berth_stat_info, size) F(berth_stat_info, mtime_ns)
    F(berth_stat_info, is_dir) F(berth_stat_info, version)
    S(berth_strlist) F(berth_strlist, items) F(berth_strlist, count)
    F(berth_strlist, cap)
    S(berth_store_options) F(berth_store_options, version)
    F(berth_store_options, root) F(berth_store_options, driver)
    F(berth_store_options, fsync) F(berth_store_options, custom)
    S(berth_descriptor) F(berth_descriptor, kind) F(berth_descriptor, digest)
    F(berth_descriptor, size) F(berth_descriptor, media_type)
    F(berth_descriptor, artifact_type) F(berth_descriptor, has_urls)
    F(berth_descriptor, platform_os) F(berth_descriptor, platform_arch)
    S(berth_manifest_put_options) F(berth_manifest_put_options, version)
    F(berth_manifest_put_options, tag) F(berth_manifest_put_options, expected)
    F(berth_manifest_put_options, flags)
    F(berth_manifest_put_options, allow_foreign_layers)
    F(berth_manifest_put_options, tag_expected)
    S(berth_manifest_info) F(berth_manifest_info, digest)
    F(berth_manifest_info, size) F(berth_manifest_info, media_type)
    S(berth_gc_link) F(berth_gc_link, kind) F(berth_gc_link, state)
    F(berth_gc_link, digest) F(berth_gc_link, target) F(berth_gc_link, tag)
    F(berth_gc_link, mtime_ns)
    S(berth_gc_upload) F(berth_gc_upload, id) F(berth_gc_upload, started)
    F(berth_gc_upload, has_startedat) F(berth_gc_upload, size)
    S(berth_s3_options) F(berth_s3_options, version)
    F(berth_s3_options, endpoint) F(berth_s3_options, bucket)
    F(berth_s3_options, region) F(berth_s3_options, access_key)
    F(berth_s3_options, secret_key) F(berth_s3_options, root)
    F(berth_s3_options, attempts)
    S(berth_gc_options) F(berth_gc_options, version)
    F(berth_gc_options, now_ns) F(berth_gc_options, grace_ns)
    F(berth_gc_options, upload_grace_ns) F(berth_gc_options, dry_run)
    F(berth_gc_options, delete_untagged)
    S(berth_gc_progress) F(berth_gc_progress, phase)
    F(berth_gc_progress, done) F(berth_gc_progress, total)
    S(berth_gc_report) F(berth_gc_report, blobs_total)
    F(berth_gc_report, blobs_kept) F(berth_gc_report, blobs_kept_bytes)
    F(berth_gc_report, blobs_young) F(berth_gc_report, blobs_young_bytes)
    F(berth_gc_report, blobs_removed) F(berth_gc_report, blobs_removed_bytes)
    F(berth_gc_report, blobs_reprieved) F(berth_gc_report, manifests_removed)
    F(berth_gc_report, manifests_restored) F(berth_gc_report, links_removed)
    F(berth_gc_report, links_restored) F(berth_gc_report, uploads_total)
    F(berth_gc_report, uploads_removed)
    F(berth_gc_report, uploads_removed_bytes) F(berth_gc_report, uploads_busy)
    F(berth_gc_report, lost)
    S(berth_gc_removal) F(berth_gc_removal, kind) F(berth_gc_removal, repo)
    F(berth_gc_removal, name) F(berth_gc_removal, size)
    F(berth_gc_removal, started)
    S(berth_jwt_options) F(berth_jwt_options, version)
    F(berth_jwt_options, issuer) F(berth_jwt_options, audience)
    F(berth_jwt_options, now) F(berth_jwt_options, leeway)

    K(BERTH_DIGEST_NONE) K(BERTH_DIGEST_SHA256) K(BERTH_DIGEST_SHA384)
    K(BERTH_DIGEST_SHA512)
    K(BERTH_HASHER_AUTO) K(BERTH_HASHER_MBEDTLS) K(BERTH_HASHER_SHANI)
    K(BERTH_FSYNC_NONE) K(BERTH_FSYNC_DATA) K(BERTH_FSYNC_FULL)
    K(BERTH_FAULT_OFF) K(BERTH_FAULT_FAIL_ONE) K(BERTH_FAULT_CRASH)
    K(BERTH_FAULT_SHORT_WRITE)
    K(BERTH_DRIVER_VERSION) K(BERTH_LIST_VERSION_MAX)
    K(BERTH_STAT_VERSION_MAX) K(BERTH_SEND_FILE) K(BERTH_SEND_URL)
    K(BERTH_REF_CONFIG) K(BERTH_REF_LAYER) K(BERTH_REF_MANIFEST)
    K(BERTH_REF_BLOB)
    K(BERTH_SCHEMA_NONE) K(BERTH_SCHEMA_OCI_MANIFEST)
    K(BERTH_SCHEMA_OCI_INDEX)
    K(BERTH_SCHEMA_DOCKER_MANIFEST) K(BERTH_SCHEMA_DOCKER_LIST)
    K(BERTH_GC_LINK_LAYER) K(BERTH_GC_LINK_REVISION)
    K(BERTH_GC_LINK_TAG_CURRENT) K(BERTH_GC_LINK_TAG_INDEX)
    K(BERTH_GC_LINK_OK) K(BERTH_GC_LINK_ABSENT) K(BERTH_GC_LINK_DAMAGED)
    K(BERTH_GC_LINK_MISMATCH)
    K(BERTH_S3_OPTIONS_VERSION)
    K(BERTH_GC_OPTIONS_VERSION) K(BERTH_GC_PHASE_MARK)
    K(BERTH_GC_PHASE_SWEEP) K(BERTH_GC_PHASE_SETTLE)
    K(BERTH_GC_PHASE_PURGE) K(BERTH_GC_PHASE_UPLOADS)
    K(BERTH_GC_REMOVED_BLOB) K(BERTH_GC_REMOVED_MANIFEST)
    K(BERTH_GC_REMOVED_UPLOAD)
    return 0;
    /* clang-format on */
}
