/*
 * SHA-256 compression on the x86 SHA extensions (SHA-NI), following the
 * structure of Intel's public-domain reference: the state lives in two
 * registers as ABEF/CDGH, each sha256rnds2 does two rounds, and
 * sha256msg1/msg2 extend the message schedule four words at a time.
 *
 * Only this function is compiled for "sha,sse4.1,ssse3" (a target attribute,
 * not a per-file flag), so the rest of the library runs on any x86-64 and
 * digest.c picks this path only after CPUID agrees.
 */
#include "sha256_shani.h"

#if defined(__x86_64__) || defined(__i386__)

#include <cpuid.h>
#include <immintrin.h>
#include <stdatomic.h>

static const uint32_t K[64] __attribute__((aligned(16))) = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
    0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
    0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* -1 until the first call; CPUID can trap to the hypervisor, so ask once. */
static atomic_int shani_cached = -1;

int berth_sha256__shani_supported(void)
{
    unsigned a, b, c, d;
    int yes;

    yes = atomic_load_explicit(&shani_cached, memory_order_relaxed);
    if (yes >= 0)
        return yes;
    yes = 0;
    if (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_1) &&
        (c & bit_SSSE3) && __get_cpuid_count(7, 0, &a, &b, &c, &d) &&
        (b & bit_SHA))
        yes = 1;
    atomic_store_explicit(&shani_cached, yes, memory_order_relaxed);
    return yes;
}

/*
 * Four rounds, i = 0..15, on schedule vector w (W[4i..4i+3]). While rounds
 * run, the schedule is extended: msg2 finishes the vector used four rounds
 * on (wnext), msg1 starts the one used twelve rounds on (wprev). The
 * conditions are constant, so each expansion compiles to straight code.
 */
#define QUAD(i, w, wprev, wnext)                                             \
    do {                                                                     \
        msg = _mm_add_epi32(w, _mm_load_si128((const __m128i *)&K[4 * i]));  \
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, msg);                       \
        if ((i) >= 3 && (i) <= 14) {                                         \
            tmp = _mm_alignr_epi8(w, wprev, 4);                              \
            wnext = _mm_add_epi32(wnext, tmp);                               \
            wnext = _mm_sha256msg2_epu32(wnext, w);                          \
        }                                                                    \
        msg = _mm_shuffle_epi32(msg, 0x0e);                                  \
        abef = _mm_sha256rnds2_epu32(abef, cdgh, msg);                       \
        if ((i) >= 1 && (i) <= 12)                                           \
            wprev = _mm_sha256msg1_epu32(wprev, w);                          \
    } while (0)

#define LOAD(w, off)                                                         \
    w = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + (off))),   \
                         bswap)

__attribute__((target("sha,sse4.1,ssse3"))) void berth_sha256__shani_blocks(
    uint32_t state[8], const unsigned char *data, size_t nblocks)
{
    /* Byte swap within each 32-bit word: the message is big-endian. */
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL,
                                         0x0405060700010203ULL);
    __m128i abef, cdgh, abef_save, cdgh_save;
    __m128i msg, tmp, w0, w1, w2, w3;

    if (nblocks == 0)
        return;

    /* h0..h7 into the ABEF/CDGH order sha256rnds2 wants. */
    tmp = _mm_loadu_si128((const __m128i *)&state[0]);  /* DCBA */
    cdgh = _mm_loadu_si128((const __m128i *)&state[4]); /* HGFE */
    tmp = _mm_shuffle_epi32(tmp, 0xb1);                 /* CDAB */
    cdgh = _mm_shuffle_epi32(cdgh, 0x1b);               /* EFGH */
    abef = _mm_alignr_epi8(tmp, cdgh, 8);               /* ABEF */
    cdgh = _mm_blend_epi16(cdgh, tmp, 0xf0);            /* CDGH */

    do {
        abef_save = abef;
        cdgh_save = cdgh;

        LOAD(w0, 0);
        LOAD(w1, 16);
        LOAD(w2, 32);
        LOAD(w3, 48);

        QUAD(0, w0, w3, w1);
        QUAD(1, w1, w0, w2);
        QUAD(2, w2, w1, w3);
        QUAD(3, w3, w2, w0);
        QUAD(4, w0, w3, w1);
        QUAD(5, w1, w0, w2);
        QUAD(6, w2, w1, w3);
        QUAD(7, w3, w2, w0);
        QUAD(8, w0, w3, w1);
        QUAD(9, w1, w0, w2);
        QUAD(10, w2, w1, w3);
        QUAD(11, w3, w2, w0);
        QUAD(12, w0, w3, w1);
        QUAD(13, w1, w0, w2);
        QUAD(14, w2, w1, w3);
        QUAD(15, w3, w2, w0);

        abef = _mm_add_epi32(abef, abef_save);
        cdgh = _mm_add_epi32(cdgh, cdgh_save);
        data += 64;
    } while (--nblocks);

    /* Back to h0..h7. */
    tmp = _mm_shuffle_epi32(abef, 0x1b);     /* FEBA */
    cdgh = _mm_shuffle_epi32(cdgh, 0xb1);    /* DCHG */
    abef = _mm_blend_epi16(tmp, cdgh, 0xf0); /* DCBA */
    cdgh = _mm_alignr_epi8(cdgh, tmp, 8);    /* HGFE */
    _mm_storeu_si128((__m128i *)&state[0], abef);
    _mm_storeu_si128((__m128i *)&state[4], cdgh);
}

#else /* not x86 */

int berth_sha256__shani_supported(void)
{
    return 0;
}

void berth_sha256__shani_blocks(uint32_t state[8], const unsigned char *data,
                                size_t nblocks)
{
    (void)state;
    (void)data;
    (void)nblocks;
}

#endif
