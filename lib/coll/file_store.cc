// lib/coll/file_store.cc — a Store in a directory: one file per key.
//
// set writes a temporary file in the same directory and rename(2)s it over the key's file,
// so a reader sees the old value, the new one, or none, never a partial one (rename is
// atomic within one file system, local or NFS). add read-modify-writes under flock(2) on a
// lock file, which serialises processes and threads alike (each call opens its own file
// description). get polls for the file with short sleeps: there is no portable way to wait
// for a file on a shared file system.
//
// File names: "k." + the key with every byte outside [A-Za-z0-9_.-] as %XX; a name longer
// than kMaxNameBytes keeps a readable head and ends in the key's FNV-1a hash. Temporary
// files are "tmp.*" and the lock is "lock", which no key's name can be.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "braid/coll.h"
#include "coll/store_internal.h"
#include "core/clock.h"
#include "core/log.h"
#include "tcp/socket.h"

namespace braid::coll {
namespace {

constexpr size_t kMaxNameBytes = 200;  // NAME_MAX is 255 on Linux file systems

std::string errnoText(int e) {
  return fmt::format("{} (errno {})", std::strerror(e), e);
}

Status sysError(Code code, const std::string& what, int e, const std::string& hint) {
  return Status(code,
                fmt::format("{}: {}{}{}", what, errnoText(e), hint.empty() ? "" : "; ", hint));
}

std::string fileNameOf(const std::string& key) {
  std::string name = "k.";
  for (unsigned char c : key) {
    bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '-' || c == '.';
    if (safe)
      name.push_back(static_cast<char>(c));
    else
      name += fmt::format("%{:02X}", c);
  }
  if (name.size() > kMaxNameBytes)
    name = fmt::format("{}~{:016x}", name.substr(0, kMaxNameBytes - 17), detail::fnv1a64(key));
  return name;
}

// mkdir -p.
Status makeDirs(const std::string& dir) {
  std::string path;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    path = dir.substr(0, pos);
    if (path.empty() || path == "/") continue;
    if (::mkdir(path.c_str(), 0777) == 0 || errno == EEXIST) continue;
    int e = errno;
    return sysError(Code::kSystemError, fmt::format("cannot create the store directory {}", path),
                    e, "check the path and its permissions (BRAID_STORE=file:DIR)");
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0)
    return sysError(Code::kSystemError, fmt::format("store directory {}", dir), errno, "");
  if (!S_ISDIR(st.st_mode))
    return Status(Code::kInvalidArgument,
                  fmt::format("store directory {} exists but is not a directory: give another "
                              "path (BRAID_STORE=file:DIR)",
                              dir));
  return Status::ok();
}

// Reads a whole file; nullopt when it does not exist.
Result<std::optional<std::string>> readFile(const std::string& path, const std::string& key) {
  tcp::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return std::optional<std::string>();
    return sysError(Code::kSystemError, fmt::format("store key '{}': open {}", key, path), errno,
                    "check the store directory's permissions");
  }
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n > 0) {
      data.append(buf, static_cast<size_t>(n));
      if (data.size() > detail::kMaxValueBytes)
        return Status(Code::kProtocolError,
                      fmt::format("store key '{}': {} holds more than {} MiB: was it written by "
                                  "something other than braid?",
                                  key, path, detail::kMaxValueBytes >> 20));
      continue;
    }
    if (n == 0) break;
    if (errno == EINTR) continue;
    return sysError(Code::kSystemError, fmt::format("store key '{}': read {}", key, path), errno,
                    "");
  }
  return std::optional<std::string>(std::move(data));
}

class FileStore final : public Store {
 public:
  explicit FileStore(std::string dir) : dir_(std::move(dir)) {}

  Status set(const std::string& key, const std::string& value) override {
    BRAID_RETURN_IF_ERROR(detail::checkKey(key));
    BRAID_RETURN_IF_ERROR(detail::checkValue(key, value));
    return writeAtomically(key, value);
  }

  Result<std::string> get(const std::string& key, std::chrono::milliseconds timeout) override {
    BRAID_RETURN_IF_ERROR(detail::checkKey(key));
    std::string path = pathOf(key);
    auto start = std::chrono::steady_clock::now();
    auto nap = std::chrono::microseconds(1000);
    for (;;) {
      BRAID_ASSIGN_OR_RETURN(std::optional<std::string> v, readFile(path, key));
      if (v) return std::move(*v);
      // In milliseconds: a timeout of milliseconds::max() would overflow in nanoseconds.
      auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - start);
      if (elapsed >= timeout)
        return Status(Code::kTimedOut,
                      fmt::format("store key '{}' was not set within {} ms (file store: {} does "
                                  "not exist): the rank that sets it has not started, is "
                                  "slower, or failed, or the ranks do not share this directory",
                                  key, timeout.count(), path));
      auto left = timeout - elapsed;  // >= 1 ms
      std::this_thread::sleep_for(left >= std::chrono::milliseconds(10)
                                      ? nap
                                      : std::min(nap, std::chrono::microseconds(left)));
      nap = std::min(nap * 2, std::chrono::microseconds(10000));
    }
  }

  Result<int64_t> add(const std::string& key, int64_t delta) override {
    BRAID_RETURN_IF_ERROR(detail::checkKey(key));
    std::string lockPath = dir_ + "/lock";
    tcp::Fd lock(::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666));
    if (!lock.valid())
      return sysError(Code::kSystemError, fmt::format("store key '{}': open {}", key, lockPath),
                      errno, "check the store directory's permissions");
    while (::flock(lock.get(), LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      return sysError(Code::kSystemError, fmt::format("store key '{}': flock {}", key, lockPath),
                      errno, "the file system may not support locks (NFS without lockd?)");
    }
    // The lock is released when `lock` closes.
    BRAID_ASSIGN_OR_RETURN(std::optional<std::string> old, readFile(pathOf(key), key));
    BRAID_ASSIGN_OR_RETURN(int64_t sum, detail::addToStored(key, old ? &*old : nullptr, delta));
    BRAID_RETURN_IF_ERROR(writeAtomically(key, std::to_string(sum)));
    return sum;
  }

  Status erase(const std::string& key) override {
    BRAID_RETURN_IF_ERROR(detail::checkKey(key));
    std::string path = pathOf(key);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return sysError(Code::kSystemError, fmt::format("store key '{}': unlink {}", key, path),
                      errno, "check the store directory's permissions");
    return Status::ok();
  }

  Result<bool> contains(const std::string& key) override {
    BRAID_RETURN_IF_ERROR(detail::checkKey(key));
    std::string path = pathOf(key);
    if (::access(path.c_str(), F_OK) == 0) return true;
    if (errno == ENOENT) return false;
    return sysError(Code::kSystemError, fmt::format("store key '{}': access {}", key, path), errno,
                    "check the store directory's permissions");
  }

 private:
  std::string pathOf(const std::string& key) const { return dir_ + "/" + fileNameOf(key); }

  Status writeAtomically(const std::string& key, const std::string& value) {
    std::string path = pathOf(key);
    std::string tmp = fmt::format("{}/tmp.{}.{:016x}", dir_, static_cast<long>(::getpid()),
                                  core::randomNonZero());
    tcp::Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666));
    if (!fd.valid())
      return sysError(Code::kSystemError, fmt::format("store key '{}': create {}", key, tmp), errno,
                      "check that the store directory is writable and not full");
    size_t off = 0;
    while (off < value.size()) {
      ssize_t n = ::write(fd.get(), value.data() + off, value.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        return sysError(Code::kSystemError, fmt::format("store key '{}': write {}", key, tmp), e,
                        "is the file system full?");
      }
      off += static_cast<size_t>(n);
    }
    fd.reset();
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      int e = errno;
      ::unlink(tmp.c_str());
      return sysError(Code::kSystemError,
                      fmt::format("store key '{}': rename {} to {}", key, tmp, path), e, "");
    }
    return Status::ok();
  }

  std::string dir_;
};

}  // namespace

Result<std::shared_ptr<Store>> openFileStore(const std::string& directory) {
  if (directory.empty())
    return Status(Code::kInvalidArgument,
                  "the file store needs a directory: give one every rank sees, e.g. "
                  "BRAID_STORE=file:/shared/braid-job42");
  std::string dir = directory;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  BRAID_RETURN_IF_ERROR(makeDirs(dir));
  BRAID_LOG_INFO(kColl, "file store in {}", dir);
  return std::shared_ptr<Store>(std::make_shared<FileStore>(dir));
}

}  // namespace braid::coll
