// lib/coll/scratch_pool.h — the communicator's scratch buffers (reduction staging, the
// halves Rabenseifner receives into), kept across calls with their verbs registrations.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "braid/transport.h"

namespace braid::coll {

/// Buffers come in power-of-two size classes from kMinBytes up. A call takes a free buffer
/// of the class its request rounds up to (or of the next two classes); a released buffer
/// waits for the next call, and at most kFreePerClass free buffers of a class are kept (a
/// burst of non-blocking calls does not pin its peak for the communicator's life).
class ScratchPool {
 public:
  static constexpr size_t kMinBytes = 64 * 1024;
  static constexpr size_t kFreePerClass = 4;
  /// Registers a new buffer for verbs (an unregistered region when it cannot: requests
  /// then register their own, slower and still correct). Empty: nothing is registered.
  using Registrar = std::function<MemoryRegion(uint8_t* base, size_t length)>;

  explicit ScratchPool(Registrar registrar = {}) : registrar_(std::move(registrar)) {}

  /// A buffer of at least `bytes` (at least one byte), marked in use.
  uint8_t* acquire(size_t bytes);
  /// Gives back a buffer acquire() returned.
  void release(uint8_t* p);
  /// The registration of the in-use buffer that holds [p, p + len), if any.
  const MemoryRegion* regionFor(const void* p, size_t len) const;

  size_t buffers() const { return buffers_.size(); }
  size_t bytesHeld() const;
  size_t inUse() const;

  /// The size class a request of `bytes` takes.
  static size_t classFor(size_t bytes);

 private:
  struct Buffer {
    std::unique_ptr<uint8_t[]> mem;
    size_t size = 0;
    bool inUse = false;
    MemoryRegion mr;
  };
  Registrar registrar_;
  std::vector<Buffer> buffers_;
};

}  // namespace braid::coll
