// lib/coll/reduce.cc — reduction kernels (see reduce.h for the contract).
//
// Why it looks like this:
// - One switch per call on (type, op) picks a loop template instantiated for that pair; the
//   loops are plain element-wise code the compiler vectorises. GCC 12 vectorises at -O2 only
//   loops whose trip count is a multiple of the vector width (the "very-cheap" cost model),
//   so lib/CMakeLists.txt builds this file with -O3 (clang vectorises at -O2 already).
// - The loops are compiled with __restrict pointers; since dst may be exactly a or b, each
//   alias case goes to a loop with one pointer fewer (acc[i] = acc[i] op x[i]) instead of
//   breaking the restrict promise.
// - fp16 has no portable vector conversion before AVX-512 FP16: the x86-64 baseline (SSE2)
//   build converts with integer tricks; where the CPU has F16C and AVX2 a second loop uses
//   VCVTPH2PS/VCVTPS2PH, picked at run time. Both give bit-identical results (same rounding,
//   same NaN quieting; only a NaN made from two NaNs may carry either one's payload, as the
//   compiler may swap a commutative operation's operands), and the tests compare them.
#include "coll/reduce.h"

#include <cstring>
#include <type_traits>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BRAID_REDUCE_F16C 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define BRAID_REDUCE_F16C 0
#endif

namespace braid::coll {
namespace {

inline uint32_t floatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float bitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// binary16 -> binary32, exact. Written as selects so that the loops using it vectorise.
inline float halfToFloatInline(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;  // exponent and mantissa
  // Normal: rebias the exponent (15 -> 127) and widen the mantissa (10 -> 23 bits).
  uint32_t normal = (em << 13) + ((127u - 15u) << 23);
  // Inf/NaN (exponent 31): exponent 255, mantissa kept, NaNs quieted (as VCVTPH2PS).
  const uint32_t special = (em << 13) | 0x7f800000u | (em > 0x7c00u ? 0x00400000u : 0u);
  // Zero and subnormals: em * 2^-24, exact in float (em < 2^10).
  const uint32_t tiny = floatBits(static_cast<float>(static_cast<int32_t>(em)) * 0x1p-24f);
  uint32_t r = em >= 0x7c00u ? special : normal;
  r = em < 0x0400u ? tiny : r;
  return bitsFloat(r | sign);
}

// binary32 -> binary16, round to nearest even (after F. Giesen's float_to_half_fast3_rtne).
inline uint16_t floatToHalfInline(float f) {
  uint32_t u = floatBits(f);
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;
  // |f| >= 65520 (2^15 * (2 - 2^-11), the midpoint above the largest half): inf; NaN stays
  // NaN, quieted with its top payload bits kept (as VCVTPS2PH).
  const uint32_t special = u > 0x7f800000u ? (0x7e00u | ((u >> 13) & 0x3ffu)) : 0x7c00u;
  // |f| < 2^-14 (half subnormal or zero): adding 0.5f puts the result's units (2^-24) in the
  // float's last mantissa bit, and the FPU's round-to-nearest-even does the rounding.
  const uint32_t tiny = floatBits(bitsFloat(u) + 0.5f) - floatBits(0.5f);
  // Normal: rebias, then add half an ulp minus one, plus one if the kept mantissa is odd
  // (ties to even); a carry out of the mantissa correctly bumps the exponent (to inf too).
  const uint32_t normal = (u - ((127u - 15u) << 23) + 0xfffu + ((u >> 13) & 1u)) >> 13;
  uint32_t r = u >= 0x47800000u ? special : normal;
  r = u < 0x38800000u ? tiny : r;
  return static_cast<uint16_t>(r | (sign >> 16));
}

inline float bfloat16ToFloatInline(uint16_t b) {
  return bitsFloat(static_cast<uint32_t>(b) << 16);
}

// Round to nearest even on the top 16 bits; NaN keeps its top bits and is quieted (the
// rounding increment could otherwise turn a NaN into inf).
inline uint16_t floatToBfloat16Inline(float f) {
  const uint32_t u = floatBits(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t nan = (u >> 16) | 0x0040u;
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

// How an element is stored and in which type it is combined.
template <typename T>
struct Native {
  using Storage = T;
  using Value = T;
  static Value load(Storage s) { return s; }
  static Storage store(Value v) { return v; }
};
struct Half {
  using Storage = uint16_t;
  using Value = float;
  static Value load(Storage s) { return halfToFloatInline(s); }
  static Storage store(Value v) { return floatToHalfInline(v); }
};
struct Bf16 {
  using Storage = uint16_t;
  using Value = float;
  static Value load(Storage s) { return bfloat16ToFloatInline(s); }
  static Storage store(Value v) { return floatToBfloat16Inline(v); }
};

// Integer sum and product in the unsigned type: wraparound without signed overflow (UB).
// The conversion back to a signed type is modular (C++20, and GCC/clang before it).
struct OpSum {
  template <typename V>
  static V apply(V a, V b) {
    if constexpr (std::is_integral_v<V>) {
      using U = std::make_unsigned_t<V>;
      return static_cast<V>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
    } else {
      return a + b;
    }
  }
};
struct OpProd {
  template <typename V>
  static V apply(V a, V b) {
    if constexpr (std::is_integral_v<V>) {
      using U = std::make_unsigned_t<V>;
      // uint8_t promotes to int: 255 * 255 fits; 32- and 64-bit types stay unsigned.
      return static_cast<V>(static_cast<U>(static_cast<U>(a) * static_cast<U>(b)));
    } else {
      return a * b;
    }
  }
};
// NaN propagates (a's first); equal values give b. `a != a` is the NaN test that vectorises.
struct OpMin {
  template <typename V>
  static V apply(V a, V b) {
    if constexpr (std::is_floating_point_v<V>) {
      return ((a < b) | (a != a)) ? a : b;
    } else {
      return a < b ? a : b;
    }
  }
};
struct OpMax {
  template <typename V>
  static V apply(V a, V b) {
    if constexpr (std::is_floating_point_v<V>) {
      return ((a > b) | (a != a)) ? a : b;
    } else {
      return a > b ? a : b;
    }
  }
};

template <typename C, typename Op>
void loopDistinct(typename C::Storage* __restrict dst, const typename C::Storage* __restrict a,
                  const typename C::Storage* __restrict b, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = C::store(Op::apply(C::load(a[i]), C::load(b[i])));
}
// acc = acc op x (dst == a).
template <typename C, typename Op>
void loopAccLeft(typename C::Storage* __restrict acc, const typename C::Storage* __restrict x,
                 size_t n) {
  for (size_t i = 0; i < n; ++i) acc[i] = C::store(Op::apply(C::load(acc[i]), C::load(x[i])));
}
// acc = x op acc (dst == b): the operand order matters for NaNs and for min/max of -0/+0.
template <typename C, typename Op>
void loopAccRight(typename C::Storage* __restrict acc, const typename C::Storage* __restrict x,
                  size_t n) {
  for (size_t i = 0; i < n; ++i) acc[i] = C::store(Op::apply(C::load(x[i]), C::load(acc[i])));
}
// acc = acc op acc (dst == a == b).
template <typename C, typename Op>
void loopSelf(typename C::Storage* __restrict acc, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const auto v = C::load(acc[i]);
    acc[i] = C::store(Op::apply(v, v));
  }
}

template <typename C, typename Op>
void runLoop(void* dstv, const void* av, const void* bv, size_t n) {
  using S = typename C::Storage;
  auto* dst = static_cast<S*>(dstv);
  const auto* a = static_cast<const S*>(av);
  const auto* b = static_cast<const S*>(bv);
  if (dst == a && dst == b) {
    loopSelf<C, Op>(dst, n);
  } else if (dst == a) {
    loopAccLeft<C, Op>(dst, b, n);
  } else if (dst == b) {
    loopAccRight<C, Op>(dst, a, n);
  } else {
    loopDistinct<C, Op>(dst, a, b, n);
  }
}

/// Calls f(Op{}) with the op type of `op` (kAvg reduces as a sum; divideBy finishes it).
template <typename F>
void withOp(ReduceOp op, F&& f) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return f(OpSum{});
    case ReduceOp::kProd:
      return f(OpProd{});
    case ReduceOp::kMin:
      return f(OpMin{});
    case ReduceOp::kMax:
      return f(OpMax{});
  }
}

template <typename C>
void runOp(void* dst, const void* a, const void* b, size_t n, ReduceOp op) {
  withOp(op, [&](auto o) { runLoop<C, decltype(o)>(dst, a, b, n); });
}

template <typename C>
void divideLoop(void* bufv, size_t n, int d) {
  using S = typename C::Storage;
  using V = typename C::Value;
  auto* __restrict buf = static_cast<S*>(bufv);
  if constexpr (std::is_integral_v<V>) {
    // In a type wide enough for d (n ranks may exceed int8's range); d >= 2 here.
    using W = std::common_type_t<V, int>;
    const W w = static_cast<W>(d);
    for (size_t i = 0; i < n; ++i) buf[i] = static_cast<S>(static_cast<W>(buf[i]) / w);
  } else {
    const V w = static_cast<V>(d);
    for (size_t i = 0; i < n; ++i) buf[i] = C::store(C::load(buf[i]) / w);
  }
}

#if BRAID_REDUCE_F16C
#define BRAID_TARGET_F16C __attribute__((target("avx2,f16c")))

template <typename Op>
BRAID_TARGET_F16C inline __m256 applyVec(__m256 a, __m256 b) {
  if constexpr (std::is_same_v<Op, OpSum>) {
    return _mm256_add_ps(a, b);
  } else if constexpr (std::is_same_v<Op, OpProd>) {
    return _mm256_mul_ps(a, b);
  } else {
    // Same rule as OpMin/OpMax: a where (a < b, resp. a > b) or a is NaN, else b.
    constexpr int kCmp = std::is_same_v<Op, OpMin> ? _CMP_LT_OQ : _CMP_GT_OQ;
    const __m256 takeA = _mm256_or_ps(_mm256_cmp_ps(a, b, kCmp), _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
    return _mm256_blendv_ps(b, a, takeA);
  }
}

// Loads a[i..i+8) and b[i..i+8) before storing dst[i..i+8): exact aliasing is fine.
template <typename Op>
BRAID_TARGET_F16C void halfLoopF16c(uint16_t* dst, const uint16_t* a, const uint16_t* b, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)));
    const __m256 a1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i + 8)));
    const __m256 b0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i)));
    const __m256 b1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i + 8)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(applyVec<Op>(a0, b0), _MM_FROUND_TO_NEAREST_INT));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i + 8),
                     _mm256_cvtps_ph(applyVec<Op>(a1, b1), _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 a0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)));
    const __m256 b0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(applyVec<Op>(a0, b0), _MM_FROUND_TO_NEAREST_INT));
  }
  // The tail (< 8 elements) in scalar code, which rounds identically.
  for (; i < n; ++i) dst[i] = Half::store(Op::apply(Half::load(a[i]), Half::load(b[i])));
}

// bf16 in AVX2 integer ops: widening to fp32 is a shift; narrowing is floatToBfloat16Inline's
// rounding (to nearest even; NaN keeps its top bits and is quieted), eight lanes at a time.
BRAID_TARGET_F16C inline __m256 bf16Load8(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

BRAID_TARGET_F16C inline void bf16Store8(uint16_t* p, __m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i top = _mm256_srli_epi32(u, 16);
  const __m256i odd = _mm256_and_si256(top, _mm256_set1_epi32(1));
  const __m256i rounded =
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), odd), 16);
  const __m256i nan = _mm256_or_si256(top, _mm256_set1_epi32(0x40));
  const __m256i isNan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                           _mm256_set1_epi32(0x7f800000));
  const __m256i r = _mm256_blendv_epi8(rounded, nan, isNan);
  // Every lane holds 0..0xffff: the saturating pack keeps it; it packs within 128-bit
  // halves, so the permute brings lanes 0-3 and 4-7 together.
  const __m256i packed =
      _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), _MM_SHUFFLE(3, 1, 2, 0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
}

// Loads a[i..i+8) and b[i..i+8) before storing dst[i..i+8): exact aliasing is fine.
template <typename Op>
BRAID_TARGET_F16C void bf16LoopAvx2(uint16_t* dst, const uint16_t* a, const uint16_t* b, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 r0 = applyVec<Op>(bf16Load8(a + i), bf16Load8(b + i));
    const __m256 r1 = applyVec<Op>(bf16Load8(a + i + 8), bf16Load8(b + i + 8));
    bf16Store8(dst + i, r0);
    bf16Store8(dst + i + 8, r1);
  }
  for (; i + 8 <= n; i += 8) bf16Store8(dst + i, applyVec<Op>(bf16Load8(a + i), bf16Load8(b + i)));
  for (; i < n; ++i) dst[i] = Bf16::store(Op::apply(Bf16::load(a[i]), Bf16::load(b[i])));
}
#endif

}  // namespace

namespace detail {

bool haveAvx2() {
#if BRAID_REDUCE_F16C
  static const bool have = [] {
    __builtin_cpu_init();  // may run before libgcc's constructor (static initialisers)
    // avx2 includes the OS's consent to YMM state (XGETBV).
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return have;
#else
  return false;
#endif
}

bool haveF16c() {
#if BRAID_REDUCE_F16C
  static const bool have = [] {
    // clang 14 knows no "f16c" for __builtin_cpu_supports, so that bit comes from CPUID
    // leaf 1 (ECX bit 29).
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
    return f16c && haveAvx2();
  }();
  return have;
#else
  return false;
#endif
}

void reduceBf16Portable(uint16_t* dst, const uint16_t* a, const uint16_t* b, size_t count,
                        ReduceOp op) {
  runOp<Bf16>(dst, a, b, count, op);
}

void reduceBf16Avx2(uint16_t* dst, const uint16_t* a, const uint16_t* b, size_t count,
                    ReduceOp op) {
#if BRAID_REDUCE_F16C
  withOp(op, [&](auto o) { bf16LoopAvx2<decltype(o)>(dst, a, b, count); });
#else
  reduceBf16Portable(dst, a, b, count, op);  // not reached: haveAvx2() is false
#endif
}

void reduceHalfPortable(uint16_t* dst, const uint16_t* a, const uint16_t* b, size_t count,
                        ReduceOp op) {
  runOp<Half>(dst, a, b, count, op);
}

void reduceHalfF16c(uint16_t* dst, const uint16_t* a, const uint16_t* b, size_t count,
                    ReduceOp op) {
#if BRAID_REDUCE_F16C
  withOp(op, [&](auto o) { halfLoopF16c<decltype(o)>(dst, a, b, count); });
#else
  reduceHalfPortable(dst, a, b, count, op);  // not reached: haveF16c() is false
#endif
}

}  // namespace detail

void reduce(void* dst, const void* a, const void* b, size_t count, DataType type, ReduceOp op) {
  switch (type) {
    case DataType::kInt8:
      return runOp<Native<int8_t>>(dst, a, b, count, op);
    case DataType::kUint8:
      return runOp<Native<uint8_t>>(dst, a, b, count, op);
    case DataType::kInt32:
      return runOp<Native<int32_t>>(dst, a, b, count, op);
    case DataType::kUint32:
      return runOp<Native<uint32_t>>(dst, a, b, count, op);
    case DataType::kInt64:
      return runOp<Native<int64_t>>(dst, a, b, count, op);
    case DataType::kUint64:
      return runOp<Native<uint64_t>>(dst, a, b, count, op);
    case DataType::kFloat16: {
      auto* d = static_cast<uint16_t*>(dst);
      const auto* x = static_cast<const uint16_t*>(a);
      const auto* y = static_cast<const uint16_t*>(b);
      if (detail::haveF16c()) return detail::reduceHalfF16c(d, x, y, count, op);
      return detail::reduceHalfPortable(d, x, y, count, op);
    }
    case DataType::kBfloat16: {
      auto* d = static_cast<uint16_t*>(dst);
      const auto* x = static_cast<const uint16_t*>(a);
      const auto* y = static_cast<const uint16_t*>(b);
      if (detail::haveAvx2()) return detail::reduceBf16Avx2(d, x, y, count, op);
      return detail::reduceBf16Portable(d, x, y, count, op);
    }
    case DataType::kFloat32:
      return runOp<Native<float>>(dst, a, b, count, op);
    case DataType::kFloat64:
      return runOp<Native<double>>(dst, a, b, count, op);
  }
}

void divideBy(void* buf, size_t count, DataType type, int n) {
  if (n <= 1) return;
  switch (type) {
    case DataType::kInt8:
      return divideLoop<Native<int8_t>>(buf, count, n);
    case DataType::kUint8:
      return divideLoop<Native<uint8_t>>(buf, count, n);
    case DataType::kInt32:
      return divideLoop<Native<int32_t>>(buf, count, n);
    case DataType::kUint32:
      return divideLoop<Native<uint32_t>>(buf, count, n);
    case DataType::kInt64:
      return divideLoop<Native<int64_t>>(buf, count, n);
    case DataType::kUint64:
      return divideLoop<Native<uint64_t>>(buf, count, n);
    case DataType::kFloat16:
      return divideLoop<Half>(buf, count, n);
    case DataType::kBfloat16:
      return divideLoop<Bf16>(buf, count, n);
    case DataType::kFloat32:
      return divideLoop<Native<float>>(buf, count, n);
    case DataType::kFloat64:
      return divideLoop<Native<double>>(buf, count, n);
  }
}

float halfToFloat(uint16_t h) {
  return halfToFloatInline(h);
}
uint16_t floatToHalf(float f) {
  return floatToHalfInline(f);
}
float bfloat16ToFloat(uint16_t b) {
  return bfloat16ToFloatInline(b);
}
uint16_t floatToBfloat16(float f) {
  return floatToBfloat16Inline(f);
}

}  // namespace braid::coll
