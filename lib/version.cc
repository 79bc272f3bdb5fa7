#include "braid/info.h"

namespace braid {
const char* versionString() { return BRAID_VERSION_STRING; }
}  // namespace braid

#include "core/params.h"

namespace braid {
std::vector<ParamInfo> listParams() {
  std::vector<ParamInfo> out;
  for (auto& r : core::listParams(core::processEnv()))
    out.push_back({r.name, r.type, r.defaultValue, r.value, r.isSet, r.doc});
  return out;
}
}  // namespace braid
