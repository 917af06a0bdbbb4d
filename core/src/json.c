/*
 * The one strict JSON reader: manifests, token headers and claims, key
 * sets. cJSON is lenient where two readers of one document could disagree;
 * this refuses those documents instead.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "internal.h"

static int compare_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Refuse repeated members anywhere in the document: cJSON reads the first,
 * Go's encoding/json the last, so a repeat lets two registries (or a
 * registry and a client, or a token server) see different documents behind
 * one digest or one signature.
 */
static int check_duplicates(const cJSON *node, int code, const char *what,
                            berth_error *err)
{
    const cJSON *item;
    const char **keys = NULL;
    size_t n = 0;
    int rc = 0;

    if (cJSON_IsObject(node)) {
        cJSON_ArrayForEach(item, node) n++;
        if (n > 1) {
            size_t i = 0;
            if ((keys = malloc(n * sizeof(*keys))) == NULL)
                return berth_error_set(err, BERTH_ENOMEM, "out of memory");
            cJSON_ArrayForEach(item, node)
                keys[i++] = item->string ? item->string : "";
            qsort(keys, n, sizeof(*keys), compare_keys);
            for (i = 1; i < n; i++)
                if (strcmp(keys[i - 1], keys[i]) == 0) {
                    rc = berth_error_set(err, code,
                                         "%s: duplicate key \"%.64s\"", what,
                                         keys[i]);
                    goto done;
                }
        }
    }
    if (cJSON_IsObject(node) || cJSON_IsArray(node))
        cJSON_ArrayForEach(
            item, node) if ((rc = check_duplicates(item, code, what, err)) <
                            0) goto done;
done:
    free(keys);
    return rc;
}

int berth__json_parse(cJSON **out, const char *text, size_t len, int code,
                      const char *what, berth_error *err)
{
    const char *end = NULL;
    cJSON *root;
    int rc;

    *out = NULL;
    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (root == NULL)
        /* cJSON cannot tell OOM apart from bad syntax; a document of a few
         * MiB at most failing for memory is unlikely enough. */
        return berth_error_set(err, code, "%s: not valid JSON", what);
    if (end == NULL)
        end = text + len;
    while (end < text + len &&
           (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        end++;
    if (end != text + len) {
        cJSON_Delete(root);
        return berth_error_set(
            err, code, "%s: not valid JSON: trailing data at byte %zu", what,
            (size_t)(end - text));
    }
    if ((rc = check_duplicates(root, code, what, err)) < 0) {
        cJSON_Delete(root);
        return rc;
    }
    *out = root;
    return 0;
}
