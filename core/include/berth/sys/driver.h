/*
 * Storage drivers: for people writing one, and for tests.
 *
 * A driver is a versioned vtable embedded as the first member of its own
 * struct (libgit2's git_odb_backend, SQLite's sqlite3_vfs). Paths are
 * driver-absolute: "/docker/registry/v2/blobs/...", '/'-separated, made of
 * [A-Za-z0-9._-] components, never "." or "..". berth_driver_* below check
 * every path before the driver sees it, so a driver can trust its input.
 *
 * The contract is written so that object storage (S3) can meet it: nothing
 * depends on hard links, move may be copy-then-delete, a writer may be a
 * multipart upload resumed from another process.
 */
#ifndef BERTH_SYS_DRIVER_H
#define BERTH_SYS_DRIVER_H

#include <stddef.h>
#include <stdint.h>
#include "berth/errors.h"
#include "berth/buf.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The version a driver is written for. Versions grow as SQLite's
 * sqlite3_vfs does: each appends slots to struct berth_driver. The
 * library takes a driver of any version it knows (the slots a version
 * lacks count as NULL) and refuses any other; a NULL slot answers
 * BERTH_EUNSUPPORTED.
 */
#define BERTH_DRIVER_VERSION                                                 \
    3 /* 2: writers truncate; 3: locks,
                                  conditional puts, pages, hand-offs */

typedef struct berth_driver berth_driver;
typedef struct berth_reader berth_reader;
typedef struct berth_writer berth_writer;
typedef struct berth_lease berth_lease;

/* Longest list version token, with its NUL. */
#define BERTH_LIST_VERSION_MAX 96

/* Longest file version (an etag), with its NUL. */
#define BERTH_STAT_VERSION_MAX 64

typedef struct berth_stat_info {
    uint64_t size;    /* bytes; 0 for a directory */
    int64_t mtime_ns; /* modification time, ns since the epoch */
    int is_dir;
    /* Version 3: changes whenever the file's content does (it may stay
     * when a put writes the same bytes again), for put_if; "" for a
     * directory or a driver that has none. */
    char version[BERTH_STAT_VERSION_MAX];
} berth_stat_info;

/* How a server sends a file's bytes (berth_driver_send). */
typedef enum berth_send_kind {
    BERTH_SEND_FILE = 1, /* a local file: its absolute path, for sendfile */
    BERTH_SEND_URL = 2   /* a URL that answers the bytes (object storage: a
                            presigned GET), to redirect to or proxy */
} berth_send_kind;

/* Names of a directory's children, sorted bytewise. */
typedef struct berth_strlist {
    char **items;
    size_t count;
    size_t cap;
} berth_strlist;

#define BERTH_STRLIST_INIT                                                   \
    {                                                                        \
        NULL, 0, 0                                                           \
    }

/** Append a copy of a string. @return 0 or BERTH_ENOMEM. */
BERTH_API
int berth_strlist_add(berth_strlist *l, const char *s, size_t len,
                      berth_error *err);
/** Sort bytewise. */
BERTH_API
void berth_strlist_sort(berth_strlist *l);
/** Free the items; the list is then BERTH_STRLIST_INIT again. */
BERTH_API
void berth_strlist_dispose(berth_strlist *l);

/* A sequential reader from some offset. */
struct berth_reader {
    /** Read up to cap bytes; *n_out = 0 at end of file. @return 0 or EIO. */
    int (*read)(berth_reader *r, void *buf, size_t cap, size_t *n_out,
                berth_error *err);
    void (*free)(berth_reader *r);
};

/*
 * An append writer. One writer per path at a time: opening a second one on a
 * path that has an open writer answers BERTH_EBUSY (the fs driver holds an
 * flock, so this holds across processes). Freeing a writer without commit
 * keeps what was written, so a later writer with append=1 goes on from there.
 */
struct berth_writer {
    /** Append bytes. @return 0, BERTH_EIO. A failed write may be partial. */
    int (*write)(berth_writer *w, const void *data, size_t len,
                 berth_error *err);
    /** Bytes in the file, including what this writer appended. */
    uint64_t (*size)(berth_writer *w);
    /** Make the content durable (per the driver's fsync policy). */
    int (*commit)(berth_writer *w, berth_error *err);
    /** Remove the file. */
    int (*cancel)(berth_writer *w, berth_error *err);
    /** Close and release the writer's lock. */
    void (*free)(berth_writer *w);
    /** Cut the file back to size bytes (not more than it has) and make
     *  that durable as commit does; appends go on from there. */
    int (*truncate)(berth_writer *w, uint64_t size, berth_error *err);
};

/* A held lock (berth_driver_lock). Freeing it releases the lock; it
 * touches only the lease, never the driver, so the two may be freed in
 * either order. */
struct berth_lease {
    void (*free)(berth_lease *l);
};

struct berth_driver {
    unsigned version; /* BERTH_DRIVER_VERSION */
    const char *name;

    /** Whole content of a small file. BERTH_ENOTFOUND, BERTH_ETOOLARGE
     *  (larger than max; out is then empty). */
    int (*get)(berth_driver *d, berth_buf *out, const char *path, size_t max,
               berth_error *err);
    /** Replace a file atomically: readers see the old or the new content,
     *  never a mix. Parents are created. */
    int (*put)(berth_driver *d, const char *path, const void *data,
               size_t len, berth_error *err);
    /** Reader from offset. BERTH_ENOTFOUND; BERTH_ERANGE past the end. */
    int (*reader)(berth_driver *d, berth_reader **out, const char *path,
                  uint64_t offset, berth_error *err);
    /** Writer; append=0 truncates. BERTH_EBUSY, BERTH_ENOTFOUND (append=1
     *  and no file is fine: it starts empty). Parents are created. */
    int (*writer)(berth_driver *d, berth_writer **out, const char *path,
                  int append, berth_error *err);
    /** BERTH_ENOTFOUND. */
    int (*stat)(berth_driver *d, berth_stat_info *out, const char *path,
                berth_error *err);
    /** Names of the children of a directory, sorted. BERTH_ENOTFOUND.
     *  A driver of version 3 may leave it NULL and page (list_page). */
    int (*list)(berth_driver *d, berth_strlist *out, const char *path,
                berth_error *err);
    /** Move a file or directory, replacing a destination file. Parents of
     *  the destination are created. BERTH_ENOTFOUND. */
    int (*move)(berth_driver *d, const char *from, const char *to,
                berth_error *err);
    /** Remove a file or a whole directory tree. BERTH_ENOTFOUND. */
    int (*remove)(berth_driver *d, const char *path, berth_error *err);
    /** Local filesystem path of a file, for sendfile; NULL slot or
     *  BERTH_EUNSUPPORTED when the driver has none. */
    int (*local_path)(berth_driver *d, berth_buf *out, const char *path,
                      berth_error *err);
    void (*free)(berth_driver *d);
    /** Move a local file (outside the store) to path, replacing a file
     *  there; parents are created. Optional: NULL slot or
     *  BERTH_EUNSUPPORTED (e.g. another filesystem) and the caller copies.
     *  BERTH_ENOTFOUND when local_file is missing. */
    int (*import)(berth_driver *d, const char *path, const char *local_file,
                  berth_error *err);
    /** A token that changes whenever the names of a directory's children
     *  may have, for callers that cache listings. Optional: NULL slot or
     *  BERTH_EUNSUPPORTED when the driver cannot tell (or not yet: a
     *  change in the same clock tick would go unseen). BERTH_ENOTFOUND. */
    int (*list_version)(berth_driver *d, const char *path,
                        char out[BERTH_LIST_VERSION_MAX], berth_error *err);
    /** Is directory path a leftover of a write cut short (a crash)? It is
     *  when it holds nothing but the driver's own temp files of puts, or
     *  nothing (made for a file that never arrived), and neither it nor
     *  they changed since cutoff_ns. With remove, that is then removed:
     *  the temp files, then the directory only while empty, so a writer
     *  arriving meanwhile keeps it. @return 0 (a leftover; gone with
     *  remove), BERTH_EEXISTS (not one), BERTH_ENOTFOUND. Optional: NULL
     *  slot or BERTH_EUNSUPPORTED when the driver's writes leave none
     *  (object storage has no directories and no temp files). */
    int (*leftover)(berth_driver *d, const char *path, int64_t cutoff_ns,
                    int remove, berth_error *err);

    /* ---- version 3 ---- */

    /** Take the lock named path, never waiting: BERTH_EBUSY while another
     *  holder has it, in this process or another (object storage: a
     *  lease that expires). The driver may keep a file at path for it.
     *  Optional: with a NULL slot every lock is granted (*out NULL), for
     *  a store that one process uses at a time. */
    int (*lock)(berth_driver *d, berth_lease **out, const char *path,
                berth_error *err);
    /** put, only if path is as the caller saw it: with expected NULL,
     *  only if nothing is there (create-only); else only if stat's
     *  version of the file is expected. BERTH_ECHANGED otherwise, and
     *  BERTH_EBUSY while another put_if on path runs (retry). Atomic
     *  against other put_ifs, in any process; a plain put is not
     *  ordered against it. Optional: NULL slot or BERTH_EUNSUPPORTED. */
    int (*put_if)(berth_driver *d, const char *path, const void *data,
                  size_t len, const char *expected, berth_error *err);
    /** A page of list: the names after cursor (opaque; "" for the first
     *  page), sorted, appended to out, as many as the driver likes (object
     *  storage lists 1,000 a page), and the next page's cursor into next
     *  ("" after the last page). BERTH_ENOTFOUND. Optional: with a NULL
     *  slot, list is the one page. */
    int (*list_page)(berth_driver *d, berth_strlist *out, const char *path,
                     const char *cursor, berth_buf *next, berth_error *err);
    /** How a server hands the bytes of the file at path to a client:
     *  *kind, and where (a file path or a URL). BERTH_ENOTFOUND. Optional:
     *  with a NULL slot, local_path's file; else BERTH_EUNSUPPORTED, and
     *  a server reads the bytes itself. */
    int (*send)(berth_driver *d, berth_send_kind *kind, berth_buf *where,
                const char *path, berth_error *err);
};

/*
 * Checked entry points. Every caller goes through these (never through the
 * vtable), so paths are validated in one place and fault injection sees
 * every call. Each returns BERTH_EINVAL for a path that is not valid.
 */
BERTH_API
int berth_driver_get(berth_driver *d, berth_buf *out, const char *path,
                     size_t max, berth_error *err);
BERTH_API
int berth_driver_put(berth_driver *d, const char *path, const void *data,
                     size_t len, berth_error *err);
BERTH_API
int berth_driver_reader(berth_driver *d, berth_reader **out, const char *path,
                        uint64_t offset, berth_error *err);
BERTH_API
int berth_driver_writer(berth_driver *d, berth_writer **out, const char *path,
                        int append, berth_error *err);
BERTH_API
int berth_driver_stat(berth_driver *d, berth_stat_info *out, const char *path,
                      berth_error *err);
/** All pages of list_page (out must be empty; it is again on failure). */
BERTH_API
int berth_driver_list(berth_driver *d, berth_strlist *out, const char *path,
                      berth_error *err);
/** One page (out must be empty; it is again on failure); next is "" after
 *  the last page. */
BERTH_API
int berth_driver_list_page(berth_driver *d, berth_strlist *out,
                           const char *path, const char *cursor,
                           berth_buf *next, berth_error *err);
BERTH_API
int berth_driver_move(berth_driver *d, const char *from, const char *to,
                      berth_error *err);
BERTH_API
int berth_driver_remove(berth_driver *d, const char *path, berth_error *err);
BERTH_API
int berth_driver_local_path(berth_driver *d, berth_buf *out, const char *path,
                            berth_error *err);
BERTH_API
int berth_driver_send(berth_driver *d, berth_send_kind *kind,
                      berth_buf *where, const char *path, berth_error *err);
BERTH_API
int berth_driver_list_version(berth_driver *d, const char *path,
                              char out[BERTH_LIST_VERSION_MAX],
                              berth_error *err);
BERTH_API
int berth_driver_import(berth_driver *d, const char *path,
                        const char *local_file, berth_error *err);
BERTH_API
int berth_driver_leftover(berth_driver *d, const char *path,
                          int64_t cutoff_ns, int remove, berth_error *err);
BERTH_API
int berth_driver_put_if(berth_driver *d, const char *path, const void *data,
                        size_t len, const char *expected, berth_error *err);
BERTH_API
int berth_driver_lock(berth_driver *d, berth_lease **out, const char *path,
                      berth_error *err);
/** Release a lock; NULL is fine. */
BERTH_API
void berth_lease_free(berth_lease *l);
BERTH_API
void berth_driver_free(berth_driver *d);

/* Reader and writer calls, for FFI users that cannot call function
 * pointers conveniently. */
BERTH_API
int berth_reader_read(berth_reader *r, void *buf, size_t cap, size_t *n_out,
                      berth_error *err);
BERTH_API
void berth_reader_free(berth_reader *r);
BERTH_API
int berth_writer_write(berth_writer *w, const void *data, size_t len,
                       berth_error *err);
BERTH_API
uint64_t berth_writer_size(berth_writer *w);
BERTH_API
int berth_writer_commit(berth_writer *w, berth_error *err);
BERTH_API
int berth_writer_cancel(berth_writer *w, berth_error *err);
/** @return 0, BERTH_EINVAL (size past the end), BERTH_EIO. */
BERTH_API
int berth_writer_truncate(berth_writer *w, uint64_t size, berth_error *err);
BERTH_API
void berth_writer_free(berth_writer *w);

/** 1 when path is a valid driver path, else 0. */
BERTH_API
int berth_driver_path_valid(const char *path);

/* How much the filesystem driver fsyncs. */
typedef enum berth_fsync {
    BERTH_FSYNC_NONE = 0, /* leave it to the kernel (fastest; a power cut
                              may lose recent writes, a killed process not) */
    BERTH_FSYNC_DATA = 1, /* fsync file content before it is renamed */
    BERTH_FSYNC_FULL = 2  /* and fsync the directories renamed into */
} berth_fsync;

/**
 * The filesystem driver, rooted at an existing or new directory.
 * @return 0, BERTH_EIO (root cannot be created) or BERTH_ENOMEM.
 */
BERTH_API
int berth_driver_fs_new(berth_driver **out, const char *root,
                        berth_fsync fsync_policy, berth_error *err);

/** An in-memory driver, for tests. */
BERTH_API
int berth_driver_mem_new(berth_driver **out, berth_error *err);

/* What the fault driver does at the chosen operation. */
typedef enum berth_fault_mode {
    BERTH_FAULT_OFF = 0,
    BERTH_FAULT_FAIL_ONE = 1,   /* the Nth operation fails with BERTH_EIO */
    BERTH_FAULT_CRASH = 2,      /* the Nth and every later one fail: the
                                   process "died" before doing them */
    BERTH_FAULT_SHORT_WRITE = 3 /* the Nth, if a write, writes half then
                                   fails; otherwise like FAIL_ONE */
} berth_fault_mode;

/**
 * Wrap a driver so that its Nth operation (1-based, counting every vtable,
 * reader and writer call) fails. Takes ownership of `inner`.
 */
BERTH_API
int berth_driver_fault_new(berth_driver **out, berth_driver *inner,
                           berth_error *err);
/** Arm the fault at operation `nth` counted from now; resets the count. */
BERTH_API
void berth_driver_fault_arm(berth_driver *d, berth_fault_mode mode,
                            uint64_t nth);
/** Operations counted since the last arm. */
BERTH_API
uint64_t berth_driver_fault_count(berth_driver *d);

/*
 * Called before each vtable operation reaches the inner driver (not for
 * reader and writer calls), with its name ("put", "move", ...), its path
 * and, for a move, its destination (NULL otherwise). Lets a spec run
 * another actor, a gc say, at an exact point of an operation.
 */
typedef void (*berth_fault_watch_fn)(void *arg, const char *op,
                                     const char *path, const char *to);
/** Set (or, with NULL, clear) the watcher. */
BERTH_API
void berth_driver_fault_watch(berth_driver *d, berth_fault_watch_fn fn,
                              void *arg);

#ifdef __cplusplus
}
#endif
#endif
