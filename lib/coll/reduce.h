// lib/coll/reduce.h — element-wise reduction kernels of the collectives (the "op" step of
// ring/tree allreduce, reduce, reduce_scatter) and the half/bfloat16 conversions they use.
//
// Pure functions on host memory: no allocation, no logging, thread-safe on disjoint
// buffers. They run at memory bandwidth: one switch per call picks a loop specialised for
// the type and op, which the compiler vectorises (reduce.cc is built with -O3; fp16 uses
// F16C when the CPU has it).
//
// Buffers hold `count` elements of `type`, aligned to the element size (as any typed array).
#pragma once

#include <cstddef>
#include <cstdint>

#include "braid/coll.h"

namespace braid::coll {

/// dst[i] = a[i] op b[i] for i < count. dst may be the same pointer as a or b (or both);
/// no other overlap is allowed. kAvg reduces as kSum (the caller divides once at the end
/// with divideBy).
///
/// Semantics per type:
/// - Integers: sum and prod wrap around modulo 2^bits (signed types as two's complement).
/// - Floats: IEEE in the element's type; fp16 and bf16 are converted to fp32, combined, and
///   rounded once to nearest even (for sum and prod this equals the correctly rounded
///   result, fp32 having more than 2p+2 bits of precision).
/// - min/max: NaN propagates (if either input is NaN, the result is a NaN: a's when a is
///   one, else b's). Equal inputs (-0 and +0 included) give b. A result is always one of
///   the two inputs (fp16/bf16 NaNs come back quieted).
void reduce(void* dst, const void* a, const void* b, size_t count, DataType type, ReduceOp op);

/// buf[i] = buf[i] / n, kAvg's last step: integer division (rounding toward zero) for
/// integer types; IEEE division for fp32/fp64; fp16/bf16 divided in fp32 and rounded once.
/// n must be >= 1 (n <= 1 leaves buf unchanged).
void divideBy(void* buf, size_t count, DataType type, int n);

/// IEEE binary16 and bfloat16 <-> float. Exact towards float; towards 16 bits, round to
/// nearest even, overflow -> inf, subnormals rounded correctly, NaN stays NaN (quieted,
/// sign and top payload bits kept, as F16C's VCVTPS2PH does).
float halfToFloat(uint16_t h);
uint16_t floatToHalf(float f);
float bfloat16ToFloat(uint16_t b);
uint16_t floatToBfloat16(float f);

namespace detail {
/// The two fp16 reduce() paths, callable directly so that tests cover both; reduce() picks
/// F16C at run time when haveF16c(). Same contract as reduce(), and bit-identical results
/// but for the payload of a NaN computed from two NaNs (either input's may survive).
void reduceHalfPortable(uint16_t* dst, const uint16_t* a, const uint16_t* b, size_t count,
                        ReduceOp op);
/// Requires haveF16c() (AVX2 and F16C); never call it otherwise.
void reduceHalfF16c(uint16_t* dst, const uint16_t* a, const uint16_t* b, size_t count, ReduceOp op);
/// Whether this CPU (and build: x86-64 with GCC or clang) can run reduceHalfF16c.
bool haveF16c();
/// The two bf16 reduce() paths, as the fp16 ones: reduce() picks AVX2 when haveAvx2().
void reduceBf16Portable(uint16_t* dst, const uint16_t* a, const uint16_t* b, size_t count,
                        ReduceOp op);
/// Requires haveAvx2(); never call it otherwise.
void reduceBf16Avx2(uint16_t* dst, const uint16_t* a, const uint16_t* b, size_t count, ReduceOp op);
/// Whether this CPU (and build: x86-64 with GCC or clang) can run reduceBf16Avx2.
bool haveAvx2();
}  // namespace detail

}  // namespace braid::coll
