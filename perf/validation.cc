// perf/validation.cc — data patterns and the validation tally.
#include <fmt/format.h>

#include <cstring>

#include "perf_common.h"

namespace braid::perf {

// ------------------------------------------------------------------ validation

namespace {

inline uint64_t seedOf(uint64_t iter, uint64_t size) {
  // splitmix64 of (iter, size): neighbouring iterations get unrelated patterns.
  uint64_t z = iter * 0x9E3779B97F4A7C15ull + size * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr uint64_t kStride = 0x9E3779B97F4A7C15ull;  // odd: word k is unique within 2^64 words

}  // namespace

void fillPattern(void* buf, size_t len, uint64_t iter, uint64_t size) {
  auto* p = static_cast<uint8_t*>(buf);
  uint64_t w = seedOf(iter, size);
  size_t words = len / 8;
  for (size_t k = 0; k < words; ++k, w += kStride) std::memcpy(p + 8 * k, &w, 8);
  if (len % 8) std::memcpy(p + 8 * words, &w, len % 8);
}

std::optional<Mismatch> checkPattern(const void* buf, size_t len, uint64_t iter, uint64_t size) {
  const auto* p = static_cast<const uint8_t*>(buf);
  uint64_t w = seedOf(iter, size);
  size_t words = len / 8;
  auto first = [&](size_t base, uint64_t expect, size_t n) -> std::optional<Mismatch> {
    uint8_t e[8];
    std::memcpy(e, &expect, 8);
    for (size_t b = 0; b < n; ++b)
      if (p[base + b] != e[b]) return Mismatch{base + b, e[b], p[base + b]};
    return std::nullopt;
  };
  for (size_t k = 0; k < words; ++k, w += kStride) {
    uint64_t got;
    std::memcpy(&got, p + 8 * k, 8);
    if (got != w) return first(8 * k, w, 8);
  }
  if (len % 8) return first(8 * words, w, len % 8);
  return std::nullopt;
}

void maybeInjectError(const Options& o, uint8_t* buf, size_t len, uint64_t iter) {
  if (iter == o.injectError && len > 0) buf[len / 2] ^= 0x5a;
}

void Verdict::record(const std::optional<Mismatch>& m, uint64_t iter, uint64_t size) {
  if (!m) return;
  if (!hasBad) {
    hasBad = true;
    badSize = size;
    badIter = iter;
    badOffset = m->offset;
    badExpected = m->expected;
    badActual = m->actual;
  }
  ++badMessages;
}

void Verdict::check(const void* buf, size_t len, uint64_t iter, uint64_t size) {
  ++messages;
  bytes += len;
  auto m = checkPattern(buf, len, iter, size);
  record(m, iter, size);
}

void Verdict::checkMarked(const void* buf, size_t len, uint64_t iter, uint64_t size) {
  if (len == 0) return;
  ++messages;
  bytes += len;
  const auto* p = static_cast<const uint8_t*>(buf);
  auto m = checkPattern(p, len - 1, iter, size);
  if (!m && p[len - 1] != markerOf(iter)) m = Mismatch{len - 1, markerOf(iter), p[len - 1]};
  record(m, iter, size);
}

void Verdict::merge(const Verdict& v) {
  enabled = enabled || v.enabled;
  messages += v.messages;
  bytes += v.bytes;
  badMessages += v.badMessages;
  if (!hasBad && v.hasBad) {
    hasBad = true;
    badSize = v.badSize;
    badIter = v.badIter;
    badOffset = v.badOffset;
    badExpected = v.badExpected;
    badActual = v.badActual;
  }
}

void Verdict::mergeReply(const ReplyMsg& r, uint64_t size) {
  Verdict v;
  v.enabled = true;
  v.messages = r.messagesChecked;
  v.bytes = r.bytesChecked;
  v.badMessages = r.badMessages;
  if (r.badValid) {
    v.hasBad = true;
    v.badSize = size;
    v.badIter = r.badIter;
    v.badOffset = r.badOffset;
    v.badExpected = r.badExpected;
    v.badActual = r.badActual;
  }
  merge(v);
}

void Verdict::toReply(ReplyMsg& r) const {
  r.messagesChecked = messages;
  r.bytesChecked = bytes;
  r.badMessages = badMessages;
  r.badValid = hasBad ? 1 : 0;
  r.badIter = badIter;
  r.badOffset = badOffset;
  r.badExpected = badExpected;
  r.badActual = badActual;
}

std::string Verdict::line() const {
  if (passed())
    return fmt::format("validation: PASSED ({} messages, {} bytes checked)", messages, bytes);
  return fmt::format(
      "validation: FAILED ({} of {} messages bad; first bad byte at offset {} of message {} "
      "of size {}: expected 0x{:02x}, got 0x{:02x})",
      badMessages, messages, badOffset, badIter, badSize, badExpected, badActual);
}

}  // namespace braid::perf
