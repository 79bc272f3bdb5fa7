// tests/coll/reference.h — inputs every rank can generate for every other, and the
// expected results computed from them by plain serial loops (independent of lib/coll).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "braid/coll.h"

namespace braid::coll::test {

inline const DataType kAllTypes[] = {DataType::kInt8,    DataType::kUint8,    DataType::kInt32,
                                     DataType::kUint32,  DataType::kInt64,    DataType::kUint64,
                                     DataType::kFloat16, DataType::kBfloat16, DataType::kFloat32,
                                     DataType::kFloat64};
inline const ReduceOp kAllOps[] = {ReduceOp::kSum, ReduceOp::kProd, ReduceOp::kMin, ReduceOp::kMax,
                                   ReduceOp::kAvg};

inline bool isFloat(DataType t) {
  return t == DataType::kFloat16 || t == DataType::kBfloat16 || t == DataType::kFloat32 ||
         t == DataType::kFloat64;
}
inline bool isSigned(DataType t) {
  return t == DataType::kInt8 || t == DataType::kInt32 || t == DataType::kInt64 || isFloat(t);
}
inline size_t sizeOf(DataType t) {
  switch (t) {
    case DataType::kInt8: case DataType::kUint8: return 1;
    case DataType::kFloat16: case DataType::kBfloat16: return 2;
    case DataType::kInt32: case DataType::kUint32: case DataType::kFloat32: return 4;
    default: return 8;
  }
}

// Half and bfloat16 by their definitions (exact for the values these tests use, and
// round-to-nearest-even otherwise), written apart from lib/coll/reduce.cc on purpose.
inline double fromHalf(uint16_t h) {
  int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  double v = e == 0 ? std::ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : std::ldexp(1024 + m, e - 25);
  return (h & 0x8000) ? -v : v;
}
inline uint16_t toHalf(double v) {
  // Scale to the grid of the value's binade and round there (nearbyint: ties to even).
  if (std::isnan(v)) return 0x7e00;
  uint16_t sign = std::signbit(v) ? 0x8000 : 0;
  double a = std::fabs(v);
  if (a >= 65520.0) return sign | 0x7c00;
  if (a < std::ldexp(1.0, -14)) {  // subnormal: multiples of 2^-24 (1024 is the first normal)
    return sign | static_cast<uint16_t>(std::nearbyint(std::ldexp(a, 24)));
  }
  int e;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1): the binade is 2^(e-1)
  int exp = e - 1;
  double q = std::nearbyint(std::ldexp(a, 10 - exp));  // 1024 .. 2048
  if (q >= 2048) {
    q = 1024;
    ++exp;
  }
  if (exp + 15 >= 31) return sign | 0x7c00;
  return sign | static_cast<uint16_t>(((exp + 15) << 10) | (static_cast<int>(q) - 1024));
}
inline double fromBf16(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t toBf16(double v) {
  float f = static_cast<float>(v);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return 0x7fc0;
  uint32_t lsb = (u >> 16) & 1;
  u += 0x7fff + lsb;
  return static_cast<uint16_t>(u >> 16);
}

/// Element i of a buffer of `type`, as a double (integers exactly).
inline double get(DataType t, const void* p, size_t i) {
  switch (t) {
    case DataType::kInt8: return static_cast<const int8_t*>(p)[i];
    case DataType::kUint8: return static_cast<const uint8_t*>(p)[i];
    case DataType::kInt32: return static_cast<const int32_t*>(p)[i];
    case DataType::kUint32: return static_cast<const uint32_t*>(p)[i];
    case DataType::kInt64: return static_cast<double>(static_cast<const int64_t*>(p)[i]);
    case DataType::kUint64: return static_cast<double>(static_cast<const uint64_t*>(p)[i]);
    case DataType::kFloat16: return fromHalf(static_cast<const uint16_t*>(p)[i]);
    case DataType::kBfloat16: return fromBf16(static_cast<const uint16_t*>(p)[i]);
    case DataType::kFloat32: return static_cast<const float*>(p)[i];
    case DataType::kFloat64: return static_cast<const double*>(p)[i];
  }
  return 0;
}

/// Stores `v` (integers wrap modulo 2^bits, as the reductions do).
inline void put(DataType t, void* p, size_t i, double v) {
  auto wrap = [&](double x) { return static_cast<uint64_t>(static_cast<int64_t>(x)); };
  switch (t) {
    case DataType::kInt8: case DataType::kUint8: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(wrap(v)); break;
    case DataType::kInt32: case DataType::kUint32: static_cast<uint32_t*>(p)[i] = static_cast<uint32_t>(wrap(v)); break;
    case DataType::kInt64: case DataType::kUint64: static_cast<uint64_t*>(p)[i] = wrap(v); break;
    case DataType::kFloat16: static_cast<uint16_t*>(p)[i] = toHalf(v); break;
    case DataType::kBfloat16: static_cast<uint16_t*>(p)[i] = toBf16(v); break;
    case DataType::kFloat32: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    case DataType::kFloat64: static_cast<double*>(p)[i] = v; break;
  }
}

/// Rank r's input element i for `op`: small integers, so every sum and product over up
/// to 8 ranks is exact in every type (integer types wrap the same way on both sides).
inline double input(DataType t, ReduceOp op, int r, size_t i) {
  if (op == ReduceOp::kProd) return ((static_cast<size_t>(r) + i) % 3 == 0) ? 2.0 : 1.0;
  double v = static_cast<double>((static_cast<size_t>(r) * 7 + i * 3) % 11);
  return isSigned(t) ? v - 5.0 : v;
}

/// The reduction over ranks 0..n-1 of input(t, op, r, i), stored as `type` would hold it.
inline void expectReduced(DataType t, ReduceOp op, int n, size_t i, void* out, size_t j,
                          size_t inputIndex) {
  double acc = input(t, op, 0, inputIndex);
  // Integers: reduce in int64 and wrap once (wraparound arithmetic is associative).
  int64_t iacc = static_cast<int64_t>(acc);
  for (int r = 1; r < n; ++r) {
    double x = input(t, op, r, inputIndex);
    auto ix = static_cast<int64_t>(x);
    switch (op) {
      case ReduceOp::kSum: case ReduceOp::kAvg: acc += x; iacc += ix; break;
      case ReduceOp::kProd: acc *= x; iacc *= ix; break;
      case ReduceOp::kMin: acc = std::min(acc, x); iacc = std::min(iacc, ix); break;
      case ReduceOp::kMax: acc = std::max(acc, x); iacc = std::max(iacc, ix); break;
    }
  }
  (void)i;
  if (isFloat(t)) {
    if (op == ReduceOp::kAvg) acc /= n;
    put(t, out, j, acc);
    return;
  }
  put(t, out, j, static_cast<double>(iacc));
  if (op == ReduceOp::kAvg) {
    // The wrapped sum, divided as the type divides (truncation toward zero).
    double wrapped = get(t, out, j);
    double q = std::trunc(wrapped / n);
    if (t == DataType::kUint64 || t == DataType::kInt64) {
      if (t == DataType::kUint64) {
        uint64_t u = static_cast<uint64_t*>(out)[j] / static_cast<uint64_t>(n);
        static_cast<uint64_t*>(out)[j] = u;
      } else {
        int64_t s = static_cast<int64_t*>(out)[j] / n;
        static_cast<int64_t*>(out)[j] = s;
      }
      return;
    }
    put(t, out, j, q);
  }
}

/// How far a float result may be from the reference: avg divides after the sum (rounded
/// once in the type, or via fp32 for fp16/bf16); everything else here is exact.
inline double tolerance(DataType t, ReduceOp op, double expected) {
  if (!isFloat(t) || op != ReduceOp::kAvg) return 0;
  double rel = t == DataType::kFloat16 ? 1.0 / 1024 : t == DataType::kBfloat16 ? 1.0 / 128
             : t == DataType::kFloat32 ? 1e-6 : 1e-14;
  return std::fabs(expected) * rel + 1e-30;
}

/// Compares `count` elements; returns "" or the first mismatches.
inline std::string compare(DataType t, ReduceOp op, const void* got, const void* want, size_t count,
                           const std::string& what) {
  std::string out;
  int shown = 0;
  size_t wrong = 0;
  const size_t es = sizeOf(t);
  for (size_t i = 0; i < count; ++i) {
    bool same = std::memcmp(static_cast<const uint8_t*>(got) + i * es,
                            static_cast<const uint8_t*>(want) + i * es, es) == 0;
    if (!same && isFloat(t)) {
      double g = get(t, got, i), w = get(t, want, i);
      same = std::fabs(g - w) <= tolerance(t, op, w);
    }
    if (!same) {
      ++wrong;
      if (shown++ < 3) {
        out += what + ": element " + std::to_string(i) + " is " + std::to_string(get(t, got, i)) +
               ", expected " + std::to_string(get(t, want, i)) + "; ";
      }
    }
  }
  if (wrong) out += what + ": " + std::to_string(wrong) + " of " + std::to_string(count) + " wrong\n";
  return out;
}

}  // namespace braid::coll::test
