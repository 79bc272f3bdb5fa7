// lib/coll/store_internal.h — what the stores (store.cc, file_store.cc), launcher detection
// (launch.cc) and their tests share: key/value bounds, the integer format of add(), the TCP
// store's wire constants, and test hooks into a serving TCP store.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "braid/coll.h"
#include "braid/status.h"

namespace braid::coll::detail {

/// Longest key any store accepts (the TCP store's frame bound; file names are hashed).
inline constexpr size_t kMaxKeyBytes = 4096;
/// Largest value any store accepts.
inline constexpr size_t kMaxValueBytes = size_t{64} << 20;

/// kInvalidArgument naming the key when it is empty or longer than kMaxKeyBytes.
Status checkKey(const std::string& key);
/// kInvalidArgument naming the key when `value` is larger than kMaxValueBytes.
Status checkValue(const std::string& key, const std::string& value);
/// add()'s arithmetic on a stored value: decimal text (as PyTorch's TCPStore), "" or unset
/// is 0. kInvalidArgument naming the key when the value is no integer or the sum overflows.
Result<int64_t> addToStored(const std::string& key, const std::string* stored, int64_t delta);

/// FNV-1a, 64 bits: job tokens derived from a job id, file names of long keys.
inline uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 14695981039346656037ull;  // 0xcbf29ce484222325
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// ---- TCP store wire (documented at the top of store.cc) ----
inline constexpr uint32_t kStoreMagic = 0x53444942;  // "BIDS" little-endian
inline constexpr uint16_t kStoreVersion = 1;
/// Largest frame body: a set of the longest key and the largest value, plus its fields.
inline constexpr uint32_t kMaxFrameBody =
    static_cast<uint32_t>(1 + 4 + kMaxKeyBytes + 4 + kMaxValueBytes);

enum class Frame : uint8_t {
  // client -> server
  kHello = 1,
  kSet = 2,
  kGet = 3,
  kAdd = 4,
  kErase = 5,
  kContains = 6,
  // server -> client
  kHelloOk = 64,
  kReject = 65,
  kOk = 66,
  kValue = 67,
  kInt = 68,
  kBool = 69,
  kTimedOut = 70,
  kError = 71,
};

/// A serving TCP store's state, for tests (all zero for any other store).
struct ServedStats {
  size_t clients = 0;      ///< connections the server thread holds (hello'd or not)
  size_t pendingGets = 0;  ///< get()s waiting for their key: remote and local
};
ServedStats servedStats(const Store& store);

}  // namespace braid::coll::detail
