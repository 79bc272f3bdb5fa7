// lib/core/name_list.h — the list syntax of NCCL_SOCKET_IFNAME and NCCL_IB_HCA, shared by
// BRAID_SOCKET_IFNAME (tcp) and BRAID_IB_HCA (verbs).
#pragma once

#include <string>
#include <vector>

namespace braid::core {

/// Comma-separated names, matched as prefixes ("eth" matches eth0 and eth1) unless the
/// list starts with '=' (exact names); a leading '^' excludes what the list matches; "^="
/// does both. Empty items are dropped. Pure.
struct NameList {
  bool exclude = false;
  bool exact = false;
  std::vector<std::string> items;

  static NameList parse(const std::string& spec) {
    NameList l;
    std::string s = spec;
    if (!s.empty() && s[0] == '^') {
      l.exclude = true;
      s.erase(0, 1);
    }
    if (!s.empty() && s[0] == '=') {
      l.exact = true;
      s.erase(0, 1);
    }
    size_t pos = 0;
    while (pos <= s.size()) {
      size_t comma = s.find(',', pos);
      if (comma == std::string::npos) comma = s.size();
      if (comma > pos) l.items.push_back(s.substr(pos, comma - pos));
      pos = comma + 1;
    }
    return l;
  }

  /// Whether `name` is what `item` designates: the same name, or (without '=') one that
  /// starts with it.
  bool nameMatches(const std::string& name, const std::string& item) const {
    return exact ? name == item : name.compare(0, item.size(), item) == 0;
  }
};

}  // namespace braid::core
