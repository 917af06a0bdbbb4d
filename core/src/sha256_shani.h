/*
 * SHA-256 block function on the x86 SHA extensions. Private to digest.c: the
 * caller keeps the buffering, padding and length; this only compresses.
 */
#ifndef BERTH_SHA256_SHANI_H
#define BERTH_SHA256_SHANI_H

#include <stddef.h>
#include <stdint.h>

/**
 * Whether this CPU has SHA, SSE4.1 and SSSE3 (CPUID, cached after the first
 * call). Always 0 when not built for x86.
 */
int berth_sha256__shani_supported(void);

/**
 * Compress nblocks 64-byte blocks of data into state (h0..h7, native
 * order). Only call when berth_sha256__shani_supported() said yes; elsewhere
 * it does nothing.
 */
void berth_sha256__shani_blocks(uint32_t state[8], const unsigned char *data,
                                size_t nblocks);

#endif
