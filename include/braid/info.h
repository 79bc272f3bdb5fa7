// braid/info.h — version and the list of BRAID_* knobs (what braid_info --params prints).
#pragma once

#include <string>
#include <vector>

namespace braid {

/// "MAJOR.MINOR.PATCH".
const char* versionString();

/// One BRAID_* environment knob with the value in force.
struct ParamInfo {
  std::string name;
  std::string type;
  std::string defaultValue;
  std::string value;
  bool isSet = false;
  std::string doc;
};

/// Every knob braid reads, in declaration order. Never fails (values are not validated
/// here: Context::create reports bad ones).
std::vector<ParamInfo> listParams();

}  // namespace braid
