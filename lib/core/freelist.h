// lib/core/freelist.h — fixed-object pool and a growable ring, so the post/poll path
// does not allocate once it has warmed up.
#pragma once

#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

namespace braid::core {

/// Pool of T. get() reuses a released object (reset by the caller) or makes a new one;
/// put() returns it. Objects never move, so raw pointers stay valid while held.
template <typename T>
class Freelist {
 public:
  T* get() {
    if (free_.empty()) return grow();
    T* t = free_.back();
    free_.pop_back();
    return t;
  }
  void put(T* t) { free_.push_back(t); }
  size_t allocated() const { return all_.size(); }
  size_t available() const { return free_.size(); }

 private:
  [[gnu::noinline]] T* grow() {
    all_.push_back(std::make_unique<T>());
    return all_.back().get();
  }

  std::vector<std::unique_ptr<T>> all_;
  std::vector<T*> free_;
};

/// FIFO ring buffer over a vector that doubles when full (amortised, then allocation-free).
template <typename T>
class Ring {
 public:
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  T& front() { return buf_[head_]; }
  T& operator[](size_t i) { return buf_[(head_ + i) & (buf_.size() - 1)]; }
  const T& operator[](size_t i) const { return buf_[(head_ + i) & (buf_.size() - 1)]; }
  T& back() { return buf_[(head_ + size_ - 1) & (buf_.size() - 1)]; }
  void push_back(T v) { emplace_back() = std::move(v); }
  /// The new last slot, to fill in place. For trivially copyable T it holds whatever the
  /// slot held before (pop_front does not clear those).
  T& emplace_back() {
    if (size_ == buf_.size()) grow();
    T& slot = buf_[(head_ + size_) & (buf_.size() - 1)];
    ++size_;
    return slot;
  }
  void pop_front() {
    // Only types that own something are reset (to release it now); plain entries stay.
    if constexpr (!std::is_trivially_copyable_v<T>) buf_[head_] = T();
    head_ = (head_ + 1) & (buf_.size() - 1);
    --size_;
  }
  /// Removes element i, keeping the order of the others (O(size): rare paths only).
  void erase(size_t i) {
    for (; i + 1 < size_; ++i) (*this)[i] = std::move((*this)[i + 1]);
    --size_;
  }
  void clear() {
    while (!empty()) pop_front();
  }

 private:
  [[gnu::noinline]] void grow() {
    std::vector<T> n(buf_.empty() ? 16 : buf_.size() * 2);
    for (size_t i = 0; i < size_; ++i) n[i] = std::move((*this)[i]);
    buf_ = std::move(n);
    head_ = 0;
  }
  std::vector<T> buf_;
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace braid::core
