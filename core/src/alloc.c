/*
 * The one allocator of libberth's own code, for the allocation-failure
 * tests (berth/sys/alloc.h). The link wraps malloc, calloc, realloc and
 * strdup (-Wl,--wrap in CMakeLists.txt): every call any core/src file
 * makes comes here, and no other code in the process does.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "berth/sys/alloc.h"

/* What the linker gives for the wrapped names (ld --wrap). */
void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
char *__wrap_strdup(const char *s);

static atomic_uint_least64_t count;
static atomic_uint_least64_t fail_at; /* 0: none */

void berth_alloc_fail_at(uint64_t nth)
{
    atomic_store(&fail_at, 0);
    atomic_store(&count, 0);
    atomic_store(&fail_at, nth);
}

uint64_t berth_alloc_count(void)
{
    return atomic_load(&count);
}

/* Count one allocation. -> 1 when it is the one to fail. */
static int fails(void)
{
    uint64_t n = atomic_fetch_add(&count, 1) + 1;

    return n == atomic_load(&fail_at);
}

void *__wrap_malloc(size_t size)
{
    return fails() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return fails() ? NULL : __real_calloc(n, size);
}

/* A failed realloc leaves p as it was, as realloc's own failure does. */
void *__wrap_realloc(void *p, size_t size)
{
    return fails() ? NULL : __real_realloc(p, size);
}

char *__wrap_strdup(const char *s)
{
    size_t len = strlen(s) + 1;
    char *copy = __wrap_malloc(len);

    if (copy != NULL)
        memcpy(copy, s, len);
    return copy;
}
