// Reduction kernels and fp16/bf16 conversions (lib/coll/reduce.h), checked against slow
// scalar references written here from the formats' definitions: values decoded with ldexp,
// rounding done in double with nearbyint (round to nearest even), integer wraparound done
// in uint64_t.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "braid/coll.h"
#include "coll/reduce.h"

using braid::coll::DataType;
using braid::coll::ReduceOp;

namespace {

// ---------------------------------------------------------------------------------------
// Reference formats.

struct Fp16 {
  uint16_t bits;
};
struct Bf16 {
  uint16_t bits;
};

uint32_t bitsOf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
float floatOf(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
uint64_t bitsOf(double d) {
  uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  return u;
}

bool halfIsNan(uint16_t h) {
  return (h & 0x7c00) == 0x7c00 && (h & 0x03ff) != 0;
}
bool bf16IsNan(uint16_t b) {
  return (b & 0x7f80) == 0x7f80 && (b & 0x007f) != 0;
}

// binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
double refHalfToDouble(uint16_t h) {
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (exp == 0x1f) return mant ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  return sign * std::ldexp(1024 + mant, exp - 25);
}

// Rounds to the grid of a binary format with `mantBits` explicit mantissa bits, minimum
// normal exponent `minExp`; returns the encoding without sign, or `infBits` on overflow.
uint32_t refRoundMagnitude(double ax, int mantBits, int minExp, int bias, uint32_t infBits) {
  if (ax == 0) return 0;
  if (std::isinf(ax)) return infBits;
  int e2 = 0;
  std::frexp(ax, &e2);                     // ax = m * 2^e2, m in [0.5, 1)
  const int e = std::max(e2 - 1, minExp);  // floor(log2 ax), clamped to subnormals
  const double ulp = std::ldexp(1.0, e - mantBits);
  const double q = std::nearbyint(ax / ulp);      // exact quotient, ties to even
  const double base = std::ldexp(1.0, mantBits);  // the implicit bit
  // Subnormals (e == minExp, q < base) come out as q with a zero exponent field; q == 2*base
  // (rounded up) carries into the exponent.
  const uint64_t bits = (static_cast<uint64_t>(e + bias) << mantBits) + static_cast<uint64_t>(q) -
                        static_cast<uint64_t>(base);
  return bits >= infBits ? infBits : static_cast<uint32_t>(bits);
}

uint16_t refDoubleToHalf(double x) {
  if (std::isnan(x)) return 0x7e00;
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  return static_cast<uint16_t>(sign | refRoundMagnitude(std::fabs(x), 10, -14, 15, 0x7c00));
}

// bfloat16: the top half of a binary32.
double refBf16ToDouble(uint16_t b) {
  const int exp = (b >> 7) & 0xff;
  const int mant = b & 0x7f;
  const double sign = (b & 0x8000) ? -1.0 : 1.0;
  if (exp == 0xff) return mant ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
  if (exp == 0) return sign * std::ldexp(mant, -133);
  return sign * std::ldexp(128 + mant, exp - 134);
}

uint16_t refDoubleToBf16(double x) {
  if (std::isnan(x)) return 0x7fc0;
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  return static_cast<uint16_t>(sign | refRoundMagnitude(std::fabs(x), 7, -126, 127, 0x7f80));
}

// ---------------------------------------------------------------------------------------
// Reference reductions, one element at a time.

template <typename T>
T refIntOp(T a, T b, ReduceOp op) {
  // Sign-extended to 64 bits, computed modulo 2^64, truncated: modulo 2^bits.
  const uint64_t x = static_cast<uint64_t>(
      static_cast<std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>>(a));
  const uint64_t y = static_cast<uint64_t>(
      static_cast<std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>>(b));
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return static_cast<T>(static_cast<std::make_unsigned_t<T>>(x + y));
    case ReduceOp::kProd:
      return static_cast<T>(static_cast<std::make_unsigned_t<T>>(x * y));
    case ReduceOp::kMin:
      return b <= a ? b : a;
    case ReduceOp::kMax:
      return b >= a ? b : a;
  }
  return 0;
}

// min/max rule of reduce.h: NaN propagates, a's first; equal values give b.
template <typename V>
bool refPickA(V a, V b, ReduceOp op) {
  if (std::isnan(a)) return true;
  if (std::isnan(b)) return false;
  return op == ReduceOp::kMin ? a < b : a > b;
}

float refFloatOp(float a, float b, ReduceOp op) {
  // Sums and products of two floats, done in double and rounded once to float, are the
  // correctly rounded float results (53 >= 2 * 24 + 2).
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return static_cast<float>(static_cast<double>(a) + static_cast<double>(b));
    case ReduceOp::kProd:
      return static_cast<float>(static_cast<double>(a) * static_cast<double>(b));
    default:
      return refPickA(a, b, op) ? a : b;
  }
}

double refDoubleOp(double a, double b, ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return a + b;
    case ReduceOp::kProd:
      return a * b;
    default:
      return refPickA(a, b, op) ? a : b;
  }
}

// fp16 and bf16, through double: min and max pick one input (its bits, unchanged); a sum or
// product is computed in double and rounded once. fp16: the sum and product of two halves
// are exact in double, so that is the correctly rounded result, which fp32-then-round-once
// must equal (24 >= 2 * 11 + 2). bf16: double then round equals fp32 then round (both are
// correctly rounded).
uint16_t refNarrowOp(uint16_t a, uint16_t b, ReduceOp op, double (*decode)(uint16_t),
                     uint16_t (*encode)(double)) {
  const double x = decode(a), y = decode(b);
  if (op == ReduceOp::kMin || op == ReduceOp::kMax) return refPickA(x, y, op) ? a : b;
  return encode(refDoubleOp(x, y, op));
}
uint16_t refHalfOp(uint16_t a, uint16_t b, ReduceOp op) {
  return refNarrowOp(a, b, op, refHalfToDouble, refDoubleToHalf);
}
uint16_t refBf16Op(uint16_t a, uint16_t b, ReduceOp op) {
  return refNarrowOp(a, b, op, refBf16ToDouble, refDoubleToBf16);
}

// ---------------------------------------------------------------------------------------
// Test data and the generic harness.

template <typename T>
struct Traits;
template <typename T>
struct IntTraits {
  using Storage = T;
  static Storage ref(Storage a, Storage b, ReduceOp op) { return refIntOp(a, b, op); }
  static bool same(Storage x, Storage y) { return x == y; }
  static std::vector<Storage> values(size_t n, std::mt19937_64& rng) {
    std::vector<Storage> v(n);
    const Storage edges[] = {0,
                             1,
                             static_cast<Storage>(-1),
                             std::numeric_limits<T>::min(),
                             std::numeric_limits<T>::max(),
                             2};
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<Storage>(rng());
    for (size_t i = 0; i < n; i += 13) v[i] = edges[(i / 13) % 6];
    return v;
  }
  static Storage divRef(Storage x, int n) {
    if constexpr (std::is_signed_v<T>)
      return static_cast<Storage>(static_cast<int64_t>(x) / n);
    else
      return static_cast<Storage>(static_cast<uint64_t>(x) / static_cast<uint64_t>(n));
  }
};
template <>
struct Traits<int8_t> : IntTraits<int8_t> {
  static constexpr DataType kType = DataType::kInt8;
};
template <>
struct Traits<uint8_t> : IntTraits<uint8_t> {
  static constexpr DataType kType = DataType::kUint8;
};
template <>
struct Traits<int32_t> : IntTraits<int32_t> {
  static constexpr DataType kType = DataType::kInt32;
};
template <>
struct Traits<uint32_t> : IntTraits<uint32_t> {
  static constexpr DataType kType = DataType::kUint32;
};
template <>
struct Traits<int64_t> : IntTraits<int64_t> {
  static constexpr DataType kType = DataType::kInt64;
};
template <>
struct Traits<uint64_t> : IntTraits<uint64_t> {
  static constexpr DataType kType = DataType::kUint64;
};

template <typename F>
std::vector<F> floatValues(size_t n, std::mt19937_64& rng) {
  using L = std::numeric_limits<F>;
  const F specials[] = {L::quiet_NaN(), -L::quiet_NaN(), L::infinity(),   -L::infinity(),
                        F(0),           -F(0),           L::denorm_min(), -L::denorm_min(),
                        L::max(),       L::lowest(),     L::min(),        F(1)};
  std::uniform_real_distribution<F> uniform(F(-1000), F(1000));
  std::vector<F> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = uniform(rng);
  for (size_t i = 0; i < n; i += 11) v[i] = specials[(i / 11) % 12];
  return v;
}
template <>
struct Traits<float> {
  using Storage = float;
  static constexpr DataType kType = DataType::kFloat32;
  static Storage ref(Storage a, Storage b, ReduceOp op) { return refFloatOp(a, b, op); }
  static bool same(Storage x, Storage y) {
    return (std::isnan(x) && std::isnan(y)) || bitsOf(x) == bitsOf(y);
  }
  static std::vector<Storage> values(size_t n, std::mt19937_64& rng) {
    return floatValues<float>(n, rng);
  }
  static Storage divRef(Storage x, int n) {
    return static_cast<float>(static_cast<double>(x) / n);  // exact quotient rounded once
  }
};
template <>
struct Traits<double> {
  using Storage = double;
  static constexpr DataType kType = DataType::kFloat64;
  static Storage ref(Storage a, Storage b, ReduceOp op) { return refDoubleOp(a, b, op); }
  static bool same(Storage x, Storage y) {
    return (std::isnan(x) && std::isnan(y)) || bitsOf(x) == bitsOf(y);
  }
  static std::vector<Storage> values(size_t n, std::mt19937_64& rng) {
    return floatValues<double>(n, rng);
  }
  static Storage divRef(Storage x, int n) { return x / n; }
};

// 16-bit floats: random bit patterns (every exponent, NaN and inf included), and every
// fourth value a moderate one so that sums are not all dominated by huge magnitudes.
template <>
struct Traits<Fp16> {
  using Storage = uint16_t;
  static constexpr DataType kType = DataType::kFloat16;
  static Storage ref(Storage a, Storage b, ReduceOp op) { return refHalfOp(a, b, op); }
  static bool same(Storage x, Storage y) { return (halfIsNan(x) && halfIsNan(y)) || x == y; }
  static std::vector<Storage> values(size_t n, std::mt19937_64& rng) {
    std::vector<Storage> v(n);
    for (size_t i = 0; i < n; ++i) {
      v[i] = static_cast<Storage>(rng());
      if (i % 4 == 0) v[i] = static_cast<Storage>((v[i] & 0x83ff) | (0x3800 + (i % 8) * 0x100));
    }
    return v;
  }
  static Storage divRef(Storage x, int n) { return refDoubleToHalf(refHalfToDouble(x) / n); }
};
template <>
struct Traits<Bf16> {
  using Storage = uint16_t;
  static constexpr DataType kType = DataType::kBfloat16;
  static Storage ref(Storage a, Storage b, ReduceOp op) { return refBf16Op(a, b, op); }
  static bool same(Storage x, Storage y) { return (bf16IsNan(x) && bf16IsNan(y)) || x == y; }
  static std::vector<Storage> values(size_t n, std::mt19937_64& rng) {
    std::vector<Storage> v(n);
    for (size_t i = 0; i < n; ++i) {
      v[i] = static_cast<Storage>(rng());
      if (i % 4 == 0) v[i] = static_cast<Storage>((v[i] & 0x807f) | (0x3e00 + (i % 8) * 0x80));
    }
    return v;
  }
  static Storage divRef(Storage x, int n) { return refDoubleToBf16(refBf16ToDouble(x) / n); }
};

constexpr size_t kCounts[] = {0, 1, 7, 1000, 4099};  // odd sizes reach the vector tails
constexpr ReduceOp kOps[] = {ReduceOp::kSum, ReduceOp::kProd, ReduceOp::kMin, ReduceOp::kMax,
                             ReduceOp::kAvg};
constexpr size_t kGuard = 8;  // elements either side that must stay untouched

enum class Alias { kNone, kDstIsA, kDstIsB, kAll };
const char* aliasName(Alias a) {
  switch (a) {
    case Alias::kNone:
      return "distinct";
    case Alias::kDstIsA:
      return "dst==a";
    case Alias::kDstIsB:
      return "dst==b";
    case Alias::kAll:
      return "dst==a==b";
  }
  return "?";
}

template <typename S>
std::string hex(S v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx",
                static_cast<unsigned long long>(static_cast<std::make_unsigned_t<S>>(v)));
  return buf;
}
std::string hex(float v) {
  return hex(bitsOf(v)) + " (" + std::to_string(v) + ")";
}
std::string hex(double v) {
  return hex(bitsOf(v)) + " (" + std::to_string(v) + ")";
}

using Kernel = std::function<void(void* dst, const void* a, const void* b, size_t n, ReduceOp)>;

// Runs `kernel` for every op, count, alias case and alignment offset, comparing each
// element with Traits<T>::ref and checking that nothing outside [0, count) is written.
template <typename T>
void checkAgainstReference(const Kernel& kernel, uint64_t seed) {
  using Tr = Traits<T>;
  using S = typename Tr::Storage;
  std::mt19937_64 rng(seed);
  const size_t maxCount = 4099;
  const std::vector<S> valuesA = Tr::values(maxCount, rng);
  const std::vector<S> valuesB = Tr::values(maxCount, rng);
  const std::vector<S> guard = Tr::values(kGuard * 2 + 1, rng);

  for (ReduceOp op : kOps) {
    for (size_t count : kCounts) {
      for (size_t offset : {size_t{0}, size_t{1}}) {
        for (Alias alias : {Alias::kNone, Alias::kDstIsA, Alias::kDstIsB, Alias::kAll}) {
          // Buffers: guard, then (offset elements of guard), data, guard.
          auto makeBuf = [&](const std::vector<S>& data) {
            std::vector<S> buf(kGuard + offset + count + kGuard);
            for (size_t i = 0; i < buf.size(); ++i) buf[i] = guard[i % guard.size()];
            std::copy(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(count),
                      buf.begin() + static_cast<std::ptrdiff_t>(kGuard + offset));
            return buf;
          };
          std::vector<S> bufA = makeBuf(valuesA);
          std::vector<S> bufB = makeBuf(alias == Alias::kAll ? valuesA : valuesB);
          std::vector<S> bufD = makeBuf(std::vector<S>(maxCount, S{}));
          const std::vector<S> origA = bufA, origB = bufB;
          S* a = bufA.data() + kGuard + offset;
          S* b = bufB.data() + kGuard + offset;
          S* dst = bufD.data() + kGuard + offset;
          std::vector<S>* dstBuf = &bufD;
          switch (alias) {
            case Alias::kNone:
              break;
            case Alias::kDstIsA:
              dst = a;
              dstBuf = &bufA;
              break;
            case Alias::kDstIsB:
              dst = b;
              dstBuf = &bufB;
              break;
            case Alias::kAll:
              b = a;
              dst = a;
              dstBuf = &bufA;
              break;
          }
          kernel(dst, a, b, count, op);

          size_t bad = 0;
          std::string first;
          for (size_t i = 0; i < count; ++i) {
            const S x = valuesA[i];
            const S y = alias == Alias::kAll ? valuesA[i] : valuesB[i];
            const S want = Tr::ref(x, y, op);
            if (!Tr::same(dst[i], want)) {
              if (bad++ == 0)
                first = "at " + std::to_string(i) + ": " + hex(x) + " op " + hex(y) + " gave " +
                        hex(dst[i]) + ", want " + hex(want);
            }
          }
          const std::vector<S>& d = *dstBuf;
          bool guardsIntact = true;
          for (size_t i = 0; i < kGuard + offset; ++i)
            guardsIntact &= std::memcmp(&d[i], &guard[i % guard.size()], sizeof(S)) == 0;
          for (size_t i = kGuard + offset + count; i < d.size(); ++i)
            guardsIntact &= std::memcmp(&d[i], &guard[i % guard.size()], sizeof(S)) == 0;
          // Inputs that are not the destination are read only.
          bool inputsKept = true;
          if (dstBuf != &bufA)
            inputsKept &= std::memcmp(bufA.data(), origA.data(), bufA.size() * sizeof(S)) == 0;
          if (dstBuf != &bufB)
            inputsKept &= std::memcmp(bufB.data(), origB.data(), bufB.size() * sizeof(S)) == 0;

          INFO(braid::coll::typeName(Tr::kType)
               << " " << braid::coll::opName(op) << " count " << count << " offset " << offset
               << " " << aliasName(alias) << ": " << bad << " wrong, first " << first);
          CHECK(bad == 0);
          CHECK(guardsIntact);
          CHECK(inputsKept);
        }
      }
    }
  }
}

template <typename T>
void checkReduce(uint64_t seed) {
  checkAgainstReference<T>(
      [](void* dst, const void* a, const void* b, size_t n, ReduceOp op) {
        braid::coll::reduce(dst, a, b, n, Traits<T>::kType, op);
      },
      seed);
}

template <typename T>
void checkDivide(uint64_t seed) {
  using Tr = Traits<T>;
  using S = typename Tr::Storage;
  std::mt19937_64 rng(seed);
  const std::vector<S> values = Tr::values(4099, rng);
  for (int n : {1, 2, 3, 7, 200, 1000}) {
    for (size_t count : kCounts) {
      std::vector<S> buf(count + 2, S{});
      std::copy(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(count),
                buf.begin() + 1);
      const S sentinel = values[count % values.size()];
      buf.front() = sentinel;
      buf.back() = sentinel;
      braid::coll::divideBy(buf.data() + 1, count, Tr::kType, n);
      size_t bad = 0;
      std::string first;
      for (size_t i = 0; i < count; ++i) {
        const S want = n == 1 ? values[i] : Tr::divRef(values[i], n);
        if (!Tr::same(buf[i + 1], want) && bad++ == 0)
          first = hex(values[i]) + " / " + std::to_string(n) + " gave " + hex(buf[i + 1]) +
                  ", want " + hex(want);
      }
      INFO(braid::coll::typeName(Tr::kType)
           << " count " << count << " n " << n << ": " << bad << " wrong, first " << first);
      CHECK(bad == 0);
      CHECK(std::memcmp(&buf.front(), &sentinel, sizeof(S)) == 0);
      CHECK(std::memcmp(&buf.back(), &sentinel, sizeof(S)) == 0);
    }
  }
}

void halfPortable(void* dst, const void* a, const void* b, size_t n, ReduceOp op) {
  braid::coll::detail::reduceHalfPortable(static_cast<uint16_t*>(dst),
                                          static_cast<const uint16_t*>(a),
                                          static_cast<const uint16_t*>(b), n, op);
}
void halfF16c(void* dst, const void* a, const void* b, size_t n, ReduceOp op) {
  braid::coll::detail::reduceHalfF16c(static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(a),
                                      static_cast<const uint16_t*>(b), n, op);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Conversions.

TEST_CASE("fp16 to float is exact for all 65536 values and float to fp16 round-trips them") {
  size_t bad = 0;
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const auto bits = static_cast<uint16_t>(h);
    const float f = braid::coll::halfToFloat(bits);
    const double want = refHalfToDouble(bits);
    if (halfIsNan(bits)) {
      // NaN stays NaN: sign and payload kept, quieted (as VCVTPH2PS).
      const uint32_t wantBits =
          (static_cast<uint32_t>(bits & 0x8000) << 16) | 0x7fc00000u | ((bits & 0x3ffu) << 13);
      bad += bitsOf(f) != wantBits;
      bad += braid::coll::floatToHalf(f) != (bits | 0x0200);
    } else {
      bad += bitsOf(static_cast<double>(f)) != bitsOf(want);  // -0 stays -0
      bad += braid::coll::floatToHalf(f) != bits;
    }
  }
  CHECK(bad == 0);
}

TEST_CASE("float to fp16 rounds ties to even, overflows to inf and rounds subnormals correctly") {
  struct Case {
    float in;
    uint16_t want;
  };
  const Case cases[] = {
      {1.0f, 0x3c00},
      {1.0f + 0x1p-11f, 0x3c00},             // tie between 1 and 1+2^-10: even (1)
      {1.0f + 3 * 0x1p-11f, 0x3c02},         // tie between 1+2^-10 and 1+2^-9: even
      {1.0f + 0x1p-11f + 0x1p-20f, 0x3c01},  // just above the tie
      {-1.0f - 0x1p-11f, 0xbc00},
      {65504.0f, 0x7bff},   // largest half
      {65519.99f, 0x7bff},  // just below the midpoint to 2^16
      {65520.0f, 0x7c00},   // the midpoint rounds to even: inf
      {1e10f, 0x7c00},
      {-1e10f, 0xfc00},
      {INFINITY, 0x7c00},
      {-INFINITY, 0xfc00},
      {0.0f, 0x0000},
      {-0.0f, 0x8000},
      {0x1p-24f, 0x0001},             // smallest subnormal
      {0x1p-25f, 0x0000},             // tie between 0 and 2^-24: even (0)
      {0x1p-25f + 0x1p-40f, 0x0001},  // just above that tie
      {-0x1p-25f, 0x8000},            // rounds to -0
      {3 * 0x1p-25f, 0x0002},         // tie between 1 and 2 units: even (2)
      {5 * 0x1p-25f, 0x0002},         // tie between 2 and 3 units: even (2)
      {0x1p-14f - 0x1p-25f, 0x0400},  // tie between largest subnormal and 2^-14: even
      {0x1p-14f - 0x1p-24f, 0x03ff},  // largest subnormal, exact
      {0x1p-14f, 0x0400},             // smallest normal
      {1e-10f, 0x0000},
      {std::numeric_limits<float>::denorm_min(), 0x0000},
      {2048.0f + 1.0f, 0x6800},  // tie at ulp 2: even (2048)
      {2048.0f + 3.0f, 0x6802},  // tie: even (2052)
  };
  for (const Case& c : cases) {
    // The reference decides (it rounds in double from the definition); the table documents
    // what it says, and the two must agree.
    const uint16_t ref = refDoubleToHalf(static_cast<double>(c.in));
    const uint16_t got = braid::coll::floatToHalf(c.in);
    CAPTURE(c.in, hex(c.want), hex(ref), hex(got));
    CHECK(ref == c.want);
    CHECK(got == ref);
  }
  // NaN stays NaN (quiet, sign kept), never inf.
  const uint16_t n1 = braid::coll::floatToHalf(std::numeric_limits<float>::quiet_NaN());
  const uint16_t n2 = braid::coll::floatToHalf(-std::numeric_limits<float>::quiet_NaN());
  const uint16_t n3 = braid::coll::floatToHalf(floatOf(0x7f800001u));  // signalling, tiny payload
  CHECK(halfIsNan(n1));
  CHECK(halfIsNan(n2));
  CHECK((n2 & 0x8000) != 0);
  CHECK(halfIsNan(n3));
  CHECK((n3 & 0x0200) != 0);
}

TEST_CASE("float to fp16 matches a double-precision reference across the float range") {
  size_t bad = 0;
  std::string first;
  auto check = [&](float f) {
    if (std::isnan(f)) return;
    const uint16_t want = refDoubleToHalf(f);
    const uint16_t got = braid::coll::floatToHalf(f);
    if (got != want && bad++ == 0) first = hex(f) + " gave " + hex(got) + " want " + hex(want);
  };
  // Every float on a stride through all bit patterns.
  for (uint64_t u = 0; u <= 0xffffffffu; u += 4093) check(floatOf(static_cast<uint32_t>(u)));
  // Each midpoint between neighbouring halves (exact in float), and its float neighbours.
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    const double lo = refHalfToDouble(static_cast<uint16_t>(h));
    const double hi = h + 1 < 0x7c00 ? refHalfToDouble(static_cast<uint16_t>(h + 1)) : 65536.0;
    const auto mid = static_cast<float>((lo + hi) / 2);
    for (float f :
         {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY), static_cast<float>(lo)}) {
      check(f);
      check(-f);
    }
  }
  INFO(bad << " wrong, first " << first);
  CHECK(bad == 0);
}

TEST_CASE("bfloat16 converts exactly to float and rounds back to nearest even") {
  size_t bad = 0;
  for (uint32_t v = 0; v <= 0xffff; ++v) {
    const auto bits = static_cast<uint16_t>(v);
    const float f = braid::coll::bfloat16ToFloat(bits);
    if (bf16IsNan(bits)) {
      bad += !std::isnan(f);
      const uint16_t back = braid::coll::floatToBfloat16(f);
      bad += back != (bits | 0x0040);  // quieted, sign and payload kept
    } else {
      bad += bitsOf(static_cast<double>(f)) != bitsOf(refBf16ToDouble(bits));
      bad += braid::coll::floatToBfloat16(f) != bits;
    }
  }
  CHECK(bad == 0);

  CHECK(braid::coll::floatToBfloat16(1.0f + 0x1p-8f) == 0x3f80);      // tie: even (1)
  CHECK(braid::coll::floatToBfloat16(1.0f + 3 * 0x1p-8f) == 0x3f82);  // tie: even
  CHECK(braid::coll::floatToBfloat16(std::numeric_limits<float>::max()) == 0x7f80);  // inf
  CHECK(braid::coll::floatToBfloat16(floatOf(0x7f800001u)) == 0x7fc0);  // sNaN: NaN, not inf
  CHECK(braid::coll::floatToBfloat16(floatOf(0xffffffffu)) == 0xffff);  // NaN stays NaN

  std::string first;
  for (uint64_t u = 0; u <= 0xffffffffu; u += 997) {
    const float f = floatOf(static_cast<uint32_t>(u));
    if (std::isnan(f)) continue;
    const uint16_t want = refDoubleToBf16(f), got = braid::coll::floatToBfloat16(f);
    if (got != want && bad++ == 0) first = hex(f) + " gave " + hex(got) + " want " + hex(want);
  }
  INFO(first);
  CHECK(bad == 0);
}

// ---------------------------------------------------------------------------------------
// Reductions.

TEST_CASE("integer reductions wrap around and match a scalar reference for every op") {
  checkReduce<int8_t>(1);
  checkReduce<uint8_t>(2);
  checkReduce<int32_t>(3);
  checkReduce<uint32_t>(4);
  checkReduce<int64_t>(5);
  checkReduce<uint64_t>(6);

  // Explicit wraparound.
  int32_t a[2] = {std::numeric_limits<int32_t>::max(), std::numeric_limits<int32_t>::min()};
  int32_t b[2] = {1, -1};
  int32_t d[2];
  braid::coll::reduce(d, a, b, 2, DataType::kInt32, ReduceOp::kSum);
  CHECK(d[0] == std::numeric_limits<int32_t>::min());
  CHECK(d[1] == std::numeric_limits<int32_t>::max());
  int8_t c[1] = {100}, e[1] = {3}, r[1];
  braid::coll::reduce(r, c, e, 1, DataType::kInt8, ReduceOp::kProd);
  CHECK(r[0] == static_cast<int8_t>(44));  // 300 mod 256
  uint64_t u[1] = {~0ull}, w[1] = {2}, q[1];
  braid::coll::reduce(q, u, w, 1, DataType::kUint64, ReduceOp::kSum);
  CHECK(q[0] == 1);
}

TEST_CASE("fp32 and fp64 reductions are IEEE and propagate NaN through min and max") {
  checkReduce<float>(7);
  checkReduce<double>(8);

  const float nan = std::numeric_limits<float>::quiet_NaN();
  float a[4] = {nan, 1.0f, -0.0f, 0.0f};
  float b[4] = {1.0f, nan, 0.0f, -0.0f};
  float d[4];
  braid::coll::reduce(d, a, b, 4, DataType::kFloat32, ReduceOp::kMin);
  CHECK(std::isnan(d[0]));
  CHECK(std::isnan(d[1]));
  CHECK(std::signbit(d[2]) == false);  // equal values give b
  CHECK(std::signbit(d[3]) == true);
  braid::coll::reduce(d, a, b, 4, DataType::kFloat32, ReduceOp::kMax);
  CHECK(std::isnan(d[0]));
  CHECK(std::isnan(d[1]));
}

TEST_CASE("fp16 sums are computed in fp32 and rounded once to nearest even") {
  checkReduce<Fp16>(9);

  // 2048 + 1 is a tie at fp16's ulp of 2 there: rounds to even (2048), where rounding each
  // partial result separately would not matter but truncation or round-half-up would.
  const uint16_t a[3] = {0x6800 /* 2048 */, 0x6801 /* 2050 */, 0x3c00 /* 1 */};
  const uint16_t b[3] = {0x3c00 /* 1 */, 0x3c00 /* 1 */, 0x1400 /* 2^-10 */};
  uint16_t d[3];
  braid::coll::reduce(d, a, b, 3, DataType::kFloat16, ReduceOp::kSum);
  CHECK(d[0] == 0x6800);  // 2049 -> 2048
  CHECK(d[1] == 0x6802);  // 2051 -> 2052
  CHECK(d[2] == 0x3c01);  // 1 + 2^-10 exact
}

TEST_CASE("fp16 reductions are right on both the portable and the F16C paths") {
  checkAgainstReference<Fp16>(halfPortable, 10);
  if (!braid::coll::detail::haveF16c()) {
    WARN("this CPU has no F16C/AVX2: only the portable fp16 path was tested");
    return;
  }
  checkAgainstReference<Fp16>(halfF16c, 11);
}

using Path16 = void (*)(uint16_t*, const uint16_t*, const uint16_t*, size_t, ReduceOp);

/// A 16-bit float type's portable and vector reduce() paths, on every value against a
/// shuffled partner and a few fixed ones, for every op: bit for bit (but for the payload
/// of a NaN computed from two NaNs, which C++ and the compiler's operand order leave open),
/// and both right against the double-precision reference.
void checkPathsAgree(Path16 portable, Path16 vector, bool (*isNan)(uint16_t),
                     uint16_t (*ref)(uint16_t, uint16_t, ReduceOp),
                     std::initializer_list<uint16_t> fixed) {
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<uint16_t> shuffled = all;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937_64(12));
  std::vector<std::vector<uint16_t>> others{shuffled};
  for (uint16_t f : fixed) others.emplace_back(all.size(), f);

  for (ReduceOp op : kOps) {
    for (const auto& other : others) {
      // One element short of a multiple of 16: the vector loops and the scalar tail.
      const size_t n = all.size() - 1;
      std::vector<uint16_t> p(n), v(n);
      portable(p.data(), all.data(), other.data(), n, op);
      vector(v.data(), all.data(), other.data(), n, op);
      size_t bad = 0, wrong = 0;
      for (size_t i = 0; i < n; ++i) {
        if (isNan(all[i]) && isNan(other[i]))
          bad += !(isNan(p[i]) && isNan(v[i]));
        else
          bad += p[i] != v[i];
        const uint16_t want = ref(all[i], other[i], op);
        wrong += !((isNan(want) && isNan(p[i])) || want == p[i]);
      }
      INFO(braid::coll::opName(op) << " with b[0] = " << hex(other[0]));
      CHECK(bad == 0);
      CHECK(wrong == 0);
    }
  }
}

TEST_CASE("the F16C and portable fp16 paths agree bit for bit on every half value") {
  if (!braid::coll::detail::haveF16c()) {
    WARN("this CPU has no F16C/AVX2: nothing to compare");
    return;
  }
  checkPathsAgree(braid::coll::detail::reduceHalfPortable, braid::coll::detail::reduceHalfF16c,
                  halfIsNan, refHalfOp,
                  {0x0000, 0x8000, 0x3c00, 0xbc00, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x7d01, 0x0001,
                   0x03ff, 0x6800});
}

TEST_CASE("the AVX2 and portable bfloat16 paths agree bit for bit on every bfloat16 value") {
  if (!braid::coll::detail::haveAvx2()) {
    WARN("this CPU has no AVX2: nothing to compare");
    return;
  }
  // Zeros, +-1, the largest finite, infinities, a quiet and a signalling NaN, the smallest
  // subnormal, the largest subnormal, 2^23 (where a sum of 1s stops growing) and -2^-126.
  checkPathsAgree(braid::coll::detail::reduceBf16Portable, braid::coll::detail::reduceBf16Avx2,
                  bf16IsNan, refBf16Op,
                  {0x0000, 0x8000, 0x3f80, 0xbf80, 0x7f7f, 0x7f80, 0xff80, 0x7fc0, 0x7f81, 0x0001,
                   0x007f, 0x4b00, 0x8080});
}

TEST_CASE("bfloat16 reductions are computed in fp32 and rounded once to nearest even") {
  checkReduce<Bf16>(13);
}

TEST_CASE("avg reduces as a sum and divideBy finishes it") {
  // kAvg through reduce() is covered as a sum by the reference tests; here the whole step.
  const float a[3] = {1.0f, 2.0f, 4.0f}, b[3] = {2.0f, 2.0f, 5.0f};
  float d[3];
  braid::coll::reduce(d, a, b, 3, DataType::kFloat32, ReduceOp::kAvg);
  braid::coll::divideBy(d, 3, DataType::kFloat32, 2);
  CHECK(d[0] == 1.5f);
  CHECK(d[1] == 2.0f);
  CHECK(d[2] == 4.5f);
  const int32_t x[2] = {7, -7}, y[2] = {0, 0};
  int32_t r[2];
  braid::coll::reduce(r, x, y, 2, DataType::kInt32, ReduceOp::kAvg);
  braid::coll::divideBy(r, 2, DataType::kInt32, 2);
  CHECK(r[0] == 3);  // integer division rounds toward zero
  CHECK(r[1] == -3);
}

TEST_CASE("divideBy divides integers toward zero and floats with one rounding") {
  checkDivide<int8_t>(20);
  checkDivide<uint8_t>(21);
  checkDivide<int32_t>(22);
  checkDivide<uint32_t>(23);
  checkDivide<int64_t>(24);
  checkDivide<uint64_t>(25);
  checkDivide<Fp16>(26);
  checkDivide<Bf16>(27);
  checkDivide<float>(28);
  checkDivide<double>(29);
}
