/*
 * The repositories of a store: the catalog (those holding a manifest) and
 * gc's list (every repository). One loop over path.c's repository walk,
 * which yields names in Distribution's catalog order.
 */
#include <stdint.h>
#include <string.h>

#include "internal.h"

/*
 * 1 when the repository has a revision link, so a repository whose last
 * manifest was deleted (the link removed, perhaps its directory left, as
 * Distribution leaves it) is not in the catalog.
 */
static int has_revision(berth_store *st, const char *repo, berth_error *err)
{
    berth_gc_link_iter *it = NULL;
    berth_gc_link link;
    int rc;

    if ((rc = berth_gc_link_iter_new(&it, st, repo, BERTH_GC_LINK_REVISION,
                                     err)) < 0)
        return rc;
    rc = berth_gc_link_iter_next(&link, it, err);
    berth_gc_link_iter_free(it);
    if (rc == BERTH_EITEROVER)
        return 0;
    return rc < 0 ? rc : 1;
}

/* The repositories after last, at most n, only those holding a manifest
 * when with_manifest. */
static int repo_list(berth_strlist *out, berth_store *st, const char *last,
                     size_t n, int with_manifest, berth_error *err)
{
    berth__repo_walk walk = { 0 };
    const char *name;
    int rc = 0;

    berth_strlist_dispose(out);
    berth__repo_walk_start(&walk, st, last);
    while (out->count < n &&
           (rc = berth__repo_walk_next(&name, &walk, err)) == 0) {
        if (!with_manifest || (rc = has_revision(st, name, err)) == 1)
            rc = berth_strlist_add(out, name, strlen(name), err);
        if (rc < 0)
            break;
    }
    if (rc == BERTH_EITEROVER)
        rc = 0;
    if (rc < 0)
        berth_strlist_dispose(out);
    berth__repo_walk_dispose(&walk);
    return rc;
}

int berth_catalog_list(berth_strlist *out, berth_store *st, const char *last,
                       size_t n, berth_error *err)
{
    return repo_list(out, st, last, n, 1, err);
}

int berth_gc_repo_list(berth_strlist *out, berth_store *st, berth_error *err)
{
    return repo_list(out, st, NULL, SIZE_MAX, 0, err);
}
