// lib/coll/scratch_pool.cc — see scratch_pool.h.
#include "coll/scratch_pool.h"

#include <algorithm>

namespace braid::coll {

size_t ScratchPool::classFor(size_t bytes) {
  size_t size = kMinBytes;
  while (size < bytes) size *= 2;
  return size;
}

uint8_t* ScratchPool::acquire(size_t bytes) {
  const size_t want = classFor(std::max<size_t>(bytes, 1));
  Buffer* best = nullptr;
  for (auto& b : buffers_) {
    // Its own class, or up to two classes above (a 4x larger buffer is still cheaper than
    // allocating, registering and touching a new one).
    if (!b.inUse && b.size >= want && b.size <= want * 4 && (!best || b.size < best->size)) best = &b;
  }
  if (best) {
    best->inUse = true;
    return best->mem.get();
  }
  Buffer b;
  b.mem.reset(new uint8_t[want]);
  b.size = want;
  b.inUse = true;
  if (registrar_) b.mr = registrar_(b.mem.get(), want);
  buffers_.push_back(std::move(b));
  return buffers_.back().mem.get();
}

void ScratchPool::release(uint8_t* p) {
  auto it = std::find_if(buffers_.begin(), buffers_.end(),
                         [&](const Buffer& b) { return b.mem.get() == p; });
  if (it == buffers_.end()) return;
  it->inUse = false;
  const size_t size = it->size;
  size_t free = 0;
  for (const auto& b : buffers_) free += !b.inUse && b.size == size;
  // Beyond kFreePerClass free buffers of its class, it goes, and its registration with it
  // (nothing posted uses it any more).
  if (free > kFreePerClass) buffers_.erase(it);
}

const MemoryRegion* ScratchPool::regionFor(const void* p, size_t len) const {
  for (const auto& b : buffers_) {
    if (b.inUse && b.mr.registered() && b.mr.contains(p, len)) return &b.mr;
  }
  return nullptr;
}

size_t ScratchPool::bytesHeld() const {
  size_t n = 0;
  for (const auto& b : buffers_) n += b.size;
  return n;
}

size_t ScratchPool::inUse() const {
  size_t n = 0;
  for (const auto& b : buffers_) n += b.inUse;
  return n;
}

}  // namespace braid::coll
