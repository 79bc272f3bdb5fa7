// lib/core/name_list.h — the list syntax of NCCL_SOCKET_IFNAME and NCCL_IB_HCA, shared by
// BRAID_SOCKET_IFNAME (tcp) and BRAID_IB_HCA (verbs).
#pragma once

#include <string>
#include <vector>

#include "braid/status.h"

namespace braid::core {

/// Comma-separated names, matched as prefixes ("eth" matches eth0 and eth1) unless the
/// list starts with '=' (exact names); a leading '^' excludes what the list matches; "^="
/// does both. Empty items are dropped. Pure.
struct NameList {
  bool exclude = false;
  bool exact = false;
  std::vector<std::string> items;

  /// The list `spec` holds, or kInvalidArgument when a '^' or '=' sits anywhere but at the
  /// start ("=a,=b" would look for a device literally named "=b"); the message names `knob`
  /// and shows how to write the list.
  static Result<NameList> parse(const std::string& spec, const std::string& knob) {
    NameList l = split(spec);
    std::string misplaced = l.misplacedMark(knob, spec);
    if (!misplaced.empty()) return Status(Code::kInvalidArgument, misplaced);
    return l;
  }

  /// Whether `name` is what `item` designates: the same name, or (without '=') one that
  /// starts with it.
  bool nameMatches(const std::string& name, const std::string& item) const {
    return exact ? name == item : name.compare(0, item.size(), item) == 0;
  }

 private:
  static NameList split(const std::string& spec) {
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

  /// Empty when every item is a plain name; else why the list is wrong and how to write it:
  /// '^' and '=' go once, at the start, and apply to every name.
  std::string misplacedMark(const std::string& knob, const std::string& spec) const {
    std::string bad, fixed;
    for (const std::string& it : items) {
      size_t n = it.find_first_not_of("^=");
      if (n != 0 && bad.empty()) bad = it;
      fixed += (fixed.empty() ? "" : ",") + it.substr(n == std::string::npos ? it.size() : n);
    }
    if (bad.empty()) return {};
    std::string marks = std::string(exclude ? "^" : "") + (exact ? "=" : "");
    if (marks.empty()) marks = bad.substr(0, bad.find_first_not_of("^="));
    return knob + "='" + spec + "': '" + bad + "': '^' and '=' go once, at the start of the " +
           "list, and apply to every name (NCCL's syntax); write '" + marks + fixed + "'";
  }
};

}  // namespace braid::core
