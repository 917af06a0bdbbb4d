/*
 * Tags (the repository catalog: berth/catalog.h).
 *
 * Besides Distribution's tags/<tag>/{current,index} links, berth keeps a
 * reverse index digest -> tags outside the Distribution tree, so the tags of
 * a digest are found without reading every tag. It is a superset that is
 * checked against current/link on every lookup, and rebuildable.
 *
 * Lists (berth_strlist) are returned in `out`, which must be
 * BERTH_STRLIST_INIT or a list from an earlier call: it is emptied first,
 * and is empty after a failure. The caller owns the result:
 * berth_strlist_dispose().
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
 *         BERTH_ENAME_INVALID, BERTH_EIO (a damaged link).
 */
BERTH_API
int berth_tag_get(berth_digest *out, berth_store *st, const char *repo,
                  const char *tag, berth_error *err);

/**
 * Point a tag at a manifest of the repository: reverse-index entry, index
 * link, then current link, each an atomic put. Tag writes take the
 * repository's tag lock, never waiting for it.
 * @return 0, BERTH_EMANIFEST_UNKNOWN (no such manifest), BERTH_ETAG_INVALID,
 *         BERTH_ENAME_INVALID, BERTH_EBUSY (another process holds the tag
 *         lock: call again; nothing is half done).
 */
BERTH_API
int berth_tag_set(berth_store *st, const char *repo, const char *tag,
                  const berth_digest *dgst, berth_error *err);

/**
 * berth_tag_set, only if the tag still points at expected (NULL: only if
 * it does not exist), checked and set as one step against every other tag
 * write berth makes to the repository (a policy decided on what it read
 * stays true when its write lands). Distribution takes no part.
 * @return what berth_tag_set does, and BERTH_ETAG_CHANGED (the tag points
 *         elsewhere now: read it again).
 */
BERTH_API
int berth_tag_set_if(berth_store *st, const char *repo, const char *tag,
                     const berth_digest *dgst, const berth_digest *expected,
                     berth_error *err);

/**
 * Remove a tag and its history (tags/<tag>); the manifest stays.
 * @return 0, BERTH_EMANIFEST_UNKNOWN (no such tag), BERTH_ETAG_INVALID,
 *         BERTH_ENAME_INVALID, BERTH_EBUSY (as berth_tag_set).
 */
BERTH_API
int berth_tag_delete(berth_store *st, const char *repo, const char *tag,
                     berth_error *err);

/**
 * berth_tag_delete, only if the tag still points at expected (NULL: only
 * if it has no current link), as one step (see berth_tag_set_if).
 * @return what berth_tag_delete does, and BERTH_ETAG_CHANGED.
 */
BERTH_API
int berth_tag_delete_if(berth_store *st, const char *repo, const char *tag,
                        const berth_digest *expected, berth_error *err);

/**
 * A token that changes whenever the repository's list of tags may have,
 * for callers that cache berth_tag_list's answers.
 * @return 0, BERTH_EUNSUPPORTED (no token now: do not cache),
 *         BERTH_ENOTFOUND (no tags directory), BERTH_ENAME_INVALID.
 */
BERTH_API
int berth_tag_list_version(berth_store *st, const char *repo,
                           char out[BERTH_LIST_VERSION_MAX],
                           berth_error *err);

/**
 * Tags of a repository in lexical order, those after `last` (NULL: from
 * the start), at most n (SIZE_MAX: all). A repository with _manifests but
 * no tags has an empty list. A tag directory without a current link names
 * no manifest and is not listed.
 * @return 0, BERTH_ENAME_UNKNOWN (no such repository), BERTH_ENAME_INVALID,
 *         BERTH_EIO.
 */
BERTH_API
int berth_tag_list(berth_strlist *out, berth_store *st, const char *repo,
                   const char *last, size_t n, berth_error *err);

/**
 * All tags, as berth_tag_list, and in unset_out the tag directories it
 * passed over for having no current link: a first set under way (it
 * writes the index link first) or cut short. For callers that cache the
 * list under berth_tag_list_version: a set completing writes its current
 * link without changing that version, so these names must be looked at
 * again (berth_tag_get) before the cached list is trusted.
 * @return as berth_tag_list.
 */
BERTH_API
int berth_tag_list_all(berth_strlist *out, berth_strlist *unset_out,
                       berth_store *st, const char *repo, berth_error *err);

/**
 * Tags that point at dgst, sorted; an unknown repository has none. Each
 * answer is checked against the tag's current link. The first lookup in a
 * repository without a complete index (a store Distribution wrote) builds
 * it, or, when it cannot be written, reads every tag instead.
 * @return 0, BERTH_ENAME_INVALID or BERTH_EIO.
 */
BERTH_API
int berth_tag_lookup(berth_strlist *out, berth_store *st, const char *repo,
                     const berth_digest *dgst, berth_error *err);

/**
 * Rebuild repo's reverse index from the current links: add what is
 * missing, drop what is stale, then mark it complete. Needed after
 * Distribution wrote tags into a store berth had indexed (fsck runs it).
 * @return 0, BERTH_ENAME_UNKNOWN, BERTH_ENAME_INVALID or BERTH_EIO.
 */
BERTH_API
int berth_tag_reindex(berth_store *st, const char *repo, berth_error *err);

#ifdef __cplusplus
}
#endif
#endif
