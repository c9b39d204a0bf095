/*
 * avx - the extended vector register state (XSAVE) survives C/R.
 *
 * Distinct patterns are loaded into ymm0-ymm15, or, if the CPU supports
 * AVX-512F, into zmm0-zmm31 (whose low halves are ymm0-ymm15) and the opmask
 * registers k1-k7 (64 bits wide with AVX512BW, otherwise 16).  The process
 * then spins in an asm loop that only reads the stop flag from memory and
 * touches no vector register, so a checkpoint catches the registers live.
 * When the flag is set the same asm block stores the registers, and they
 * must still hold the patterns.
 *
 * Load, spin and store are a single asm statement so that the compiler
 * cannot use vector registers in between.  "ready" is printed before the
 * registers are loaded, as printf() may clobber them.  AVX-512 code is only
 * run if __builtin_cpu_supports() says the CPU (and OS) support it.
 *
 * Build: gcc -O2 -g -Wall -Werror -mavx2 -mavx512f ...
 * Those flags would let gcc use AVX-512 for ordinary C code (memset, struct
 * copies), which would crash on CPUs without it.  So only the functions
 * that hold the asm blocks (and no C code) come before the
 * "#pragma GCC target" that compiles everything after it without AVX.
 */
#include <stdint.h>

#include "zdtm.h"

static uint8_t vpat[32][64] __attribute__((aligned(64)));	/* patterns */
static uint8_t vout[32][64] __attribute__((aligned(64)));	/* stored regs */
static uint64_t kpat[8], kout[8];				/* k0 unused */

#define SPIN_UNTIL_STOPPED			\
	"1:\n\t"				\
	"cmpl $0, %[flag]\n\t"			\
	"jne 2f\n\t"				\
	"pause\n\t"				\
	"jmp 1b\n"				\
	"2:\n\t"

/* --- AVX2: ymm0-ymm15 (the first 32 bytes of each 64-byte row) ----------- */

#define YLOAD(i)  "vmovdqu " #i "*64(%[pat]), %%ymm" #i "\n\t"
#define YSTORE(i) "vmovdqu %%ymm" #i ", " #i "*64(%[out])\n\t"
#define Y16(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) \
	M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)

static void __attribute__((noinline)) run_avx2(void)
{
	__asm__ volatile(
		Y16(YLOAD)
		SPIN_UNTIL_STOPPED
		Y16(YSTORE)
		"vzeroupper\n\t"
		:
		: [pat] "r"(vpat), [out] "r"(vout), [flag] "m"(test_stop_flag)
		: "memory", "cc",
		  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
		  "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
		  "xmm15");
}

/* --- AVX-512: zmm0-zmm31 and k1-k7 ---------------------------------------- */

#define ZLOAD(i)  "vmovdqu64 " #i "*64(%[pat]), %%zmm" #i "\n\t"
#define ZSTORE(i) "vmovdqu64 %%zmm" #i ", " #i "*64(%[out])\n\t"
#define Z32(M) Y16(M) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) \
	M(24) M(25) M(26) M(27) M(28) M(29) M(30) M(31)
#define K7(M, op) M(op, 1) M(op, 2) M(op, 3) M(op, 4) M(op, 5) M(op, 6) M(op, 7)
#define KLOAD(op, i)  op " " #i "*8(%[kpat]), %%k" #i "\n\t"
#define KSTORE(op, i) op " %%k" #i ", " #i "*8(%[kout])\n\t"

/* kmov is kmovq with AVX512BW and kmovw (16 bits) with plain AVX512F. */
#define DEFINE_RUN_AVX512(name, kmov)					\
static void __attribute__((noinline)) name(void)			\
{									\
	__asm__ volatile(						\
		Z32(ZLOAD)						\
		K7(KLOAD, kmov)						\
		SPIN_UNTIL_STOPPED					\
		Z32(ZSTORE)						\
		K7(KSTORE, kmov)					\
		"vzeroupper\n\t"					\
		:							\
		: [pat] "r"(vpat), [out] "r"(vout), [kpat] "r"(kpat),	\
		  [kout] "r"(kout), [flag] "m"(test_stop_flag)		\
		: "memory", "cc",					\
		  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",	\
		  "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",	\
		  "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18",	\
		  "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24",	\
		  "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30",	\
		  "xmm31", "k1", "k2", "k3", "k4", "k5", "k6", "k7");	\
}
DEFINE_RUN_AVX512(run_avx512_kmovq, "kmovq")
DEFINE_RUN_AVX512(run_avx512_kmovw, "kmovw")

/* All C code from here on: no AVX, let alone AVX-512. */
#pragma GCC target("no-avx")

int main(void)
{
	int avx512, kbytes, nregs, rbytes, r, i;
	const char *rname;

	test_init();
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx2"))
		fail("CPU or OS does not support AVX2; this test needs it");
	avx512 = __builtin_cpu_supports("avx512f");
	kbytes = __builtin_cpu_supports("avx512bw") ? 8 : 2;

	for (r = 0; r < 32; r++)
		fill_pattern(vpat[r], sizeof(vpat[r]), 0x7e9000 + r);
	for (r = 1; r < 8; r++)
		kpat[r] = zdtm_mix(0x3a5c + r);

	test_ready();	/* before the asm: printf may use vector registers */
	if (!avx512)
		run_avx2();
	else if (kbytes == 8)
		run_avx512_kmovq();
	else
		run_avx512_kmovw();

	nregs = avx512 ? 32 : 16;
	rbytes = avx512 ? 64 : 32;
	rname = avx512 ? "zmm" : "ymm";
	for (r = 0; r < nregs; r++)
		for (i = 0; i < rbytes; i++)
			if (vout[r][i] != vpat[r][i])
				fail("%s%d byte %d is 0x%02x, expected 0x%02x "
				     "(register state lost or corrupted)", rname,
				     r, i, vout[r][i], vpat[r][i]);
	if (avx512) {
		uint64_t mask = kbytes == 8 ? ~0ULL : 0xffff;

		for (r = 1; r < 8; r++)
			if ((kout[r] & mask) != (kpat[r] & mask))
				fail("k%d is %#llx, expected %#llx (low %d bits "
				     "compared)", r,
				     (unsigned long long)(kout[r] & mask),
				     (unsigned long long)(kpat[r] & mask),
				     kbytes * 8);
	}
	pass();
}
