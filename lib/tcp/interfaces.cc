#include "tcp/interfaces.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

namespace braid::tcp {

Result<IfFilter> IfFilter::parse(const std::string& spec) {
  IfFilter f;
  BRAID_ASSIGN_OR_RETURN(f.list_, core::NameList::parse(spec, "BRAID_SOCKET_IFNAME"));
  return f;
}

bool IfFilter::matches(const std::string& ifname) const {
  bool hit = false;
  for (const auto& it : list_.items) {
    if (list_.nameMatches(ifname, it)) {
      hit = true;
      break;
    }
  }
  return list_.exclude ? !hit : hit;
}

Result<std::vector<Interface>> listInterfaces() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0)
    return Status(Code::kSystemError, fmt::format("getifaddrs: {}", std::strerror(errno)));
  std::vector<Interface> v4, v6;
  for (ifaddrs* a = list; a; a = a->ifa_next) {
    if (!a->ifa_addr || !(a->ifa_flags & IFF_UP) || !(a->ifa_flags & IFF_RUNNING)) continue;
    int fam = a->ifa_addr->sa_family;
    if (fam != AF_INET && fam != AF_INET6) continue;
    Interface i;
    i.name = a->ifa_name;
    i.loopback = (a->ifa_flags & IFF_LOOPBACK) != 0;
    if (fam == AF_INET) {
      std::memcpy(&i.addr.storage, a->ifa_addr, sizeof(sockaddr_in));
      i.addr.len = sizeof(sockaddr_in);
      v4.push_back(i);
    } else {
      auto* s6 = reinterpret_cast<sockaddr_in6*>(a->ifa_addr);
      if (IN6_IS_ADDR_LINKLOCAL(&s6->sin6_addr)) continue;  // needs a scope id: not a rail
      std::memcpy(&i.addr.storage, a->ifa_addr, sizeof(sockaddr_in6));
      i.addr.len = sizeof(sockaddr_in6);
      v6.push_back(i);
    }
  }
  freeifaddrs(list);
  std::vector<Interface> out;
  auto seen = [&](const std::string& n) {
    for (auto& o : out)
      if (o.name == n) return true;
    return false;
  };
  for (auto& i : v4)
    if (!seen(i.name)) out.push_back(i);
  for (auto& i : v6)
    if (!seen(i.name)) out.push_back(i);
  return out;
}

Result<std::vector<Interface>> selectRails(const std::string& spec,
                                           const std::vector<Interface>& all) {
  std::vector<Interface> out;
  if (spec.empty()) {
    for (const auto& i : all)
      if (!i.loopback && i.name.compare(0, 6, "docker") != 0) out.push_back(i);
    if (out.empty())
      for (const auto& i : all)
        if (i.loopback) out.push_back(i);
  } else {
    BRAID_ASSIGN_OR_RETURN(IfFilter f, IfFilter::parse(spec));
    for (const auto& i : all)
      if (f.matches(i.name)) out.push_back(i);
  }
  if (out.empty()) {
    std::string names;
    for (const auto& i : all) names += (names.empty() ? "" : ", ") + i.name;
    return Status(Code::kNotFound,
                  fmt::format("BRAID_SOCKET_IFNAME='{}' matches no usable interface (up, with an "
                              "address); interfaces here: {}",
                              spec, names.empty() ? "none" : names));
  }
  return out;
}

int linkSpeedMbps(const std::string& ifname) {
  if (ifname.empty() || ifname.find('/') != std::string::npos) return 0;
  std::FILE* f = std::fopen(("/sys/class/net/" + ifname + "/speed").c_str(), "r");
  if (!f) return 0;
  int mbps = 0;
  if (std::fscanf(f, "%d", &mbps) != 1 || mbps < 0) mbps = 0;
  std::fclose(f);
  return mbps;
}

std::string interfacePciPath(const std::string& ifname) {
  if (ifname.empty() || ifname.find('/') != std::string::npos) return "";
  char resolved[PATH_MAX];
  if (::realpath(("/sys/class/net/" + ifname + "/device").c_str(), resolved) == nullptr) return "";
  return resolved;
}

}  // namespace braid::tcp
