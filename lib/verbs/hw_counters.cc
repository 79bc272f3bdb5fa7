#include "verbs/hw_counters.h"

#include <dirent.h>

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

namespace braid::verbs {

namespace {
bool readValue(const std::string& path, uint64_t* v) {
  std::FILE* f = std::fopen(path.c_str(), "re");
  if (f == nullptr) return false;
  char buf[64] = {};
  const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  if (n == 0) return false;
  char* end = nullptr;
  *v = std::strtoull(buf, &end, 10);
  return end != buf;
}
}  // namespace

Result<CounterMap> readPortCounters(const std::string& device, int port,
                                    const std::string& sysfsRoot) {
  const std::string base =
      fmt::format("{}/class/infiniband/{}/ports/{}/", sysfsRoot, device, port);
  CounterMap out;
  bool any = false;
  if (DIR* d = ::opendir((base + "hw_counters").c_str())) {
    any = true;
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      uint64_t v = 0;
      if (readValue(base + "hw_counters/" + e->d_name, &v)) out[e->d_name] = v;
    }
    ::closedir(d);
  }
  for (const char* name : {"port_xmit_packets", "port_rcv_packets"}) {
    uint64_t v = 0;
    if (readValue(base + "counters/" + name, &v)) {
      out[name] = v;
      any = true;
    }
  }
  if (!any)
    return Status(Code::kNotFound, fmt::format("{}: no hw_counters or counters directory", base));
  return out;
}

}  // namespace braid::verbs
