#include "verbs/mr_cache.h"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>

#include "core/log.h"

namespace braid::verbs {

Registrar::~Registrar() = default;

// ------------------------------------------------------------------ PdRegistrar

Result<RegisteredRange> PdRegistrar::reg(uintptr_t addr, size_t len, int access) {
  BRAID_ASSIGN_OR_RETURN(Mr mr, pd_->regMr(reinterpret_cast<void*>(addr), len, access));
  RegisteredRange r;
  r.addr = addr;
  r.len = len;
  r.lkey = mr.lkey();
  r.rkey = mr.rkey();
  r.handle = new Mr(std::move(mr));
  return r;
}

void PdRegistrar::dereg(const RegisteredRange& range) noexcept {
  delete static_cast<Mr*>(range.handle);  // ~Mr deregisters, logging any failure
}

// ------------------------------------------------------------------ shared state

namespace detail {

struct MrCacheShared {
  explicit MrCacheShared(std::unique_ptr<Registrar> r) : registrar(std::move(r)) {}
  std::unique_ptr<Registrar> registrar;
  // Atomics: updated by whoever drops the last reference, possibly after the cache died.
  std::atomic<uint64_t> hits{0}, misses{0}, invalidations{0}, evictions{0}, registered{0},
      deregistered{0};
};

struct MrEntry {
  RegisteredRange range;
  int access = 0;
  uint64_t lastUse = 0;  // guarded by the cache's mutex
  std::shared_ptr<MrCacheShared> shared;
  ~MrEntry() {
    shared->registrar->dereg(range);
    shared->deregistered.fetch_add(1, std::memory_order_relaxed);
  }
};
}  // namespace detail

// ------------------------------------------------------------------ MrRef

uint32_t MrRef::lkey() const {
  return entry_->range.lkey;
}
uint32_t MrRef::rkey() const {
  return entry_->range.rkey;
}
uintptr_t MrRef::addr() const {
  return entry_->range.addr;
}
size_t MrRef::length() const {
  return entry_->range.len;
}
bool MrRef::covers(const void* p, size_t len) const {
  auto a = reinterpret_cast<uintptr_t>(p);
  return entry_ && a >= entry_->range.addr && len <= entry_->range.len &&
         a - entry_->range.addr <= entry_->range.len - len;
}

// ------------------------------------------------------------------ MrCache

MrCache::MrCache(std::unique_ptr<Registrar> registrar, size_t maxEntries)
    : shared_(std::make_shared<detail::MrCacheShared>(std::move(registrar))),
      pageSize_(static_cast<size_t>(::sysconf(_SC_PAGESIZE))),
      maxEntries_(maxEntries) {}

MrCache::~MrCache() {
  // Entries still referenced by an MrRef keep `shared_` (and the registrar) alive.
  std::multimap<uintptr_t, std::shared_ptr<detail::MrEntry>> dropped;
  {
    std::lock_guard<std::mutex> lk(mu_);
    dropped.swap(entries_);
  }
}

Result<MrRef> MrCache::get(const void* addr, size_t len, int access) {
  auto a = reinterpret_cast<uintptr_t>(addr);
  if (len == 0 || a + len < a)
    return Status(
        Code::kInvalidArgument,
        fmt::format("MrCache::get of {} bytes at {}: empty or wrapping range", len, addr));
  uintptr_t start = a & ~(pageSize_ - 1);
  uintptr_t end = (a + len + pageSize_ - 1) & ~(pageSize_ - 1);
  if (end == 0)
    return Status(Code::kInvalidArgument,
                  fmt::format("MrCache::get of {} bytes at {}: range ends past the address space",
                              len, addr));

  std::shared_ptr<detail::MrEntry> evicted;  // released after the lock, outside it
  std::lock_guard<std::mutex> lk(mu_);
  ++tick_;
  // Any entry containing [a, a+len) starts at or before a.
  for (auto it = entries_.upper_bound(a); it != entries_.begin();) {
    --it;
    detail::MrEntry& e = *it->second;
    if (e.range.addr + e.range.len >= a + len && (e.access & access) == access) {
      e.lastUse = tick_;
      shared_->hits.fetch_add(1, std::memory_order_relaxed);
      return MrRef(it->second);
    }
  }
  shared_->misses.fetch_add(1, std::memory_order_relaxed);
  auto reg = shared_->registrar->reg(start, end - start, access);
  if (!reg) return reg.status();
  shared_->registered.fetch_add(1, std::memory_order_relaxed);
  auto entry = std::make_shared<detail::MrEntry>();
  entry->range = *reg;
  entry->access = access;
  entry->lastUse = tick_;
  entry->shared = shared_;
  if (maxEntries_ > 0 && entries_.size() >= maxEntries_) {
    auto lru = entries_.begin();
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (it->second->lastUse < lru->second->lastUse) lru = it;
    evicted = std::move(lru->second);
    entries_.erase(lru);
    shared_->evictions.fetch_add(1, std::memory_order_relaxed);
  }
  entries_.emplace(start, entry);
  return MrRef(std::move(entry));
}

void MrCache::invalidate(const void* addr, size_t len) {
  auto a = reinterpret_cast<uintptr_t>(addr);
  if (len == 0) return;
  uintptr_t start = a & ~(pageSize_ - 1);
  uintptr_t end = a + len < a ? UINTPTR_MAX : ((a + len + pageSize_ - 1) & ~(pageSize_ - 1));
  if (end == 0) end = UINTPTR_MAX;
  std::vector<std::shared_ptr<detail::MrEntry>> dropped;  // deregistered after unlocking
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto it = entries_.begin(); it != entries_.end() && it->first < end;) {
      const RegisteredRange& r = it->second->range;
      if (r.addr + r.len > start) {
        dropped.push_back(std::move(it->second));
        it = entries_.erase(it);
        shared_->invalidations.fetch_add(1, std::memory_order_relaxed);
      } else {
        ++it;
      }
    }
  }
}

MrCacheStats MrCache::stats() const {
  MrCacheStats s;
  s.hits = shared_->hits.load(std::memory_order_relaxed);
  s.misses = shared_->misses.load(std::memory_order_relaxed);
  s.invalidations = shared_->invalidations.load(std::memory_order_relaxed);
  s.evictions = shared_->evictions.load(std::memory_order_relaxed);
  s.registered = shared_->registered.load(std::memory_order_relaxed);
  s.deregistered = shared_->deregistered.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> lk(mu_);
  s.entries = entries_.size();
  return s;
}

}  // namespace braid::verbs
