// lib/verbs/mr_cache.h — a registration cache: registering memory pins pages and costs
// a system call (tens of microseconds to milliseconds), so a buffer sent from again and
// again is registered once.
//
// Ranges are registered page-aligned (start rounded down, end up), because the device
// maps whole pages anyway and neighbours in the same pages then hit. A request fully
// inside a cached range whose access flags include the requested ones is a hit. Entries
// are shared: MrRef keeps its registration alive (and its keys valid) even after
// invalidate() or the cache's destruction drops it from the cache; the last reference
// deregisters. The registrar is injected, so the cache is tested without hardware.
//
// The caller must invalidate() a range before it frees or unmaps that memory (the
// cache does not intercept munmap; a stale entry would pin freed pages and alias a new
// allocation at the same address). Thread-safe: one mutex; a miss registers while
// holding it, so concurrent misses on one range register it once. Internal header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "braid/status.h"
#include "verbs/handles.h"

namespace braid::verbs {

/// One registration as the registrar made it.
struct RegisteredRange {
  uintptr_t addr = 0;  ///< start (page-aligned by the cache)
  size_t len = 0;      ///< bytes (whole pages)
  uint32_t lkey = 0;
  uint32_t rkey = 0;
  void* handle = nullptr;  ///< the registrar's own (PdRegistrar: its Mr)
};

/// Makes and releases registrations. Called with the cache's lock held; must not call
/// back into the cache. reg and dereg may be called from any thread.
class Registrar {
 public:
  virtual ~Registrar();
  [[nodiscard]] virtual Result<RegisteredRange> reg(uintptr_t addr, size_t len, int access) = 0;
  virtual void dereg(const RegisteredRange& range) noexcept = 0;
};

/// Registers on a Pd (ibv_reg_mr). The Pd must outlive every registration made.
class PdRegistrar final : public Registrar {
 public:
  explicit PdRegistrar(const Pd& pd) : pd_(&pd) {}
  Result<RegisteredRange> reg(uintptr_t addr, size_t len, int access) override;
  void dereg(const RegisteredRange& range) noexcept override;

 private:
  const Pd* pd_;
};

struct MrCacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t invalidations = 0;  ///< entries dropped by invalidate()
  uint64_t evictions = 0;      ///< entries dropped to stay within maxEntries
  uint64_t registered = 0;     ///< successful Registrar::reg calls
  uint64_t deregistered = 0;   ///< Registrar::dereg calls
  uint64_t entries = 0;        ///< entries in the cache now
};

namespace detail {
struct MrEntry;
struct MrCacheShared;
}  // namespace detail

/// A registration in use: cheap to copy (shared ownership), valid while held. Empty
/// when default-constructed.
class MrRef {
 public:
  MrRef() = default;
  uint32_t lkey() const;
  uint32_t rkey() const;
  /// The registered (page-aligned) range, which covers the range asked for.
  uintptr_t addr() const;
  size_t length() const;
  bool covers(const void* p, size_t len) const;
  explicit operator bool() const { return entry_ != nullptr; }

 private:
  friend class MrCache;
  explicit MrRef(std::shared_ptr<const detail::MrEntry> e) : entry_(std::move(e)) {}
  std::shared_ptr<const detail::MrEntry> entry_;
};

class MrCache {
 public:
  /// `maxEntries` > 0 bounds the cache: a new entry evicts the least recently used one
  /// (still-referenced registrations survive until released). 0: unbounded.
  explicit MrCache(std::unique_ptr<Registrar> registrar, size_t maxEntries = 0);
  ~MrCache();
  MrCache(const MrCache&) = delete;
  MrCache& operator=(const MrCache&) = delete;

  /// A registration covering [addr, addr+len) with at least `access` (IBV_ACCESS_*).
  /// Blocking on a miss (registers). Errors from the registrar pass through; len 0 or a
  /// range that wraps is kInvalidArgument.
  [[nodiscard]] Result<MrRef> get(const void* addr, size_t len, int access);

  /// Drops every cached entry overlapping the pages of [addr, addr+len). Entries still
  /// referenced by an MrRef stay registered until released.
  void invalidate(const void* addr, size_t len);

  MrCacheStats stats() const;
  size_t pageSize() const { return pageSize_; }

 private:
  // The registrar and the counters; shared with every entry, so a registration that
  // outlives the cache can still be deregistered and counted.
  std::shared_ptr<detail::MrCacheShared> shared_;
  size_t pageSize_;
  size_t maxEntries_;
  mutable std::mutex mu_;
  // Keyed by start address; ranges may overlap (a request straddling two entries gets a
  // registration of its own), so a lookup scans the entries starting at or before it.
  std::multimap<uintptr_t, std::shared_ptr<detail::MrEntry>> entries_;  // guarded by mu_
  uint64_t tick_ = 0;                                                   // guarded by mu_
};

}  // namespace braid::verbs
