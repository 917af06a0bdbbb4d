/*
 * Tags and the repository catalog.
 *
 * Besides Distribution's tags/<tag>/{current,index} links, berth keeps a
 * reverse index digest -> tags outside the Distribution tree, so the tags of
 * a digest are found without reading every tag. It is a superset that is
 * checked against current/link on every lookup, and rebuildable.
 */
#ifndef BERTH_TAG_H
#define BERTH_TAG_H

#include <stddef.h>
#include "berth/errors.h"
#include "berth/digest.h"
#include "berth/store.h"
#include "berth/sys/driver.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The manifest a tag points at.
 * @return 0, BERTH_EMANIFEST_UNKNOWN (no such tag), BERTH_ETAG_INVALID,
 *         BERTH_ENAME_INVALID.
 */
int berth_tag_get(berth_digest *out, berth_store *st, const char *repo,
                  const char *tag, berth_error *err);

/**
 * Point a tag at a manifest of the repository (index link, then current).
 * @return 0, BERTH_EMANIFEST_UNKNOWN (no such manifest), BERTH_ETAG_INVALID,
 *         BERTH_ENAME_INVALID.
 */
int berth_tag_set(berth_store *st, const char *repo, const char *tag,
                  const berth_digest *dgst, berth_error *err);

/**
 * Remove a tag; the manifest stays.
 * @return 0, BERTH_EMANIFEST_UNKNOWN (no such tag), BERTH_ETAG_INVALID.
 */
int berth_tag_delete(berth_store *st, const char *repo, const char *tag,
                     berth_error *err);

/**
 * Tags of a repository in lexical order, those after `last` (NULL: from
 * the start), at most n (SIZE_MAX: all).
 * @return 0, BERTH_ENAME_UNKNOWN (no such repository), BERTH_ENAME_INVALID.
 */
int berth_tag_list(berth_strlist *out, berth_store *st, const char *repo,
                   const char *last, size_t n, berth_error *err);

/**
 * Tags that point at dgst, sorted. @return 0 or BERTH_ENAME_INVALID.
 */
int berth_tag_lookup(berth_strlist *out, berth_store *st, const char *repo,
                     const berth_digest *dgst, berth_error *err);

/**
 * Repositories that hold at least one manifest, sorted, after `last`, at
 * most n (SIZE_MAX: all).
 */
int berth_catalog_list(berth_strlist *out, berth_store *st, const char *last,
                       size_t n, berth_error *err);

#ifdef __cplusplus
}
#endif
#endif
