#include <fmt/format.h>

#include "core/log.h"
#include "transport/internal.h"

namespace braid {

Context::Context(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Context::~Context() = default;

Result<std::shared_ptr<Context>> Context::create(const ContextOptions& o) {
  BRAID_ASSIGN_OR_RETURN(core::Params p, core::params());
  auto impl = std::make_unique<Impl>();
  impl->params = p;
  Transport t = p.transport == "verbs" ? Transport::kVerbs
                : p.transport == "tcp" ? Transport::kTcp
                                       : Transport::kAuto;
  if (o.transport) t = *o.transport;
  if (t == Transport::kVerbs)
    return Status(Code::kUnsupported,
                  "the verbs transport is not built into this braid yet; use "
                  "BRAID_TRANSPORT=tcp or auto");
  impl->transport = Transport::kTcp;  // auto: verbs rails join when the verbs layer lands
  impl->socketsPerRail = o.socketsPerRail ? *o.socketsPerRail : static_cast<int>(p.socketNsocks);
  if (impl->socketsPerRail < 1 || impl->socketsPerRail > static_cast<int>(wire::kMaxSocketsPerRail))
    return Status(Code::kInvalidArgument,
                  fmt::format("socketsPerRail={} outside 1..{}", impl->socketsPerRail,
                              wire::kMaxSocketsPerRail));
  impl->jobToken = o.jobToken ? o.jobToken : p.jobToken;
  impl->timeoutMs = o.timeoutMs ? *o.timeoutMs : static_cast<int>(p.timeoutMs);
  if (impl->timeoutMs <= 0)
    return Status(Code::kInvalidArgument, fmt::format("timeoutMs={} must be > 0", impl->timeoutMs));
  impl->eagerMax = o.eagerMax ? *o.eagerMax : static_cast<uint64_t>(p.eagerMax);
  if (impl->eagerMax > (1u << 20))
    return Status(Code::kInvalidArgument, "eagerMax above 1 MiB");
  impl->chunkSize = o.chunkSize ? *o.chunkSize : static_cast<uint64_t>(p.chunkSize);
  if (impl->chunkSize < 4096 || impl->chunkSize > wire::kMaxFrameLength)
    return Status(Code::kInvalidArgument, "chunkSize outside 4 KiB..1 GiB");
  impl->spinUs = static_cast<int>(p.spinUs);

  BRAID_ASSIGN_OR_RETURN(auto all, tcp::listInterfaces());
  std::string spec = o.socketIfname ? *o.socketIfname : p.socketIfname;
  BRAID_ASSIGN_OR_RETURN(impl->tcpRails, tcp::selectRails(spec, all));
  if (impl->tcpRails.size() > wire::kMaxRails) impl->tcpRails.resize(wire::kMaxRails);
  for (const auto& i : impl->tcpRails) {
    RailInfo r;
    r.transport = Transport::kTcp;
    r.name = i.name;
    tcp::SockAddr a = i.addr;
    std::string s = a.toString();
    r.address = s.substr(0, s.rfind(':'));
    r.sockets = impl->socketsPerRail;
    impl->rails.push_back(r);
  }
  std::string names;
  for (auto& r : impl->rails) names += fmt::format(" {}({})", r.name, r.address);
  BRAID_LOG_INFO(kTransport, "tcp rails:{}; {} data sockets per rail, eager <= {} B, chunks {} B",
                 names, impl->socketsPerRail, impl->eagerMax, impl->chunkSize);
  return std::shared_ptr<Context>(new Context(std::move(impl)));
}

const std::vector<RailInfo>& Context::rails() const { return impl_->rails; }
Transport Context::transport() const { return impl_->transport; }
int Context::timeoutMs() const { return impl_->timeoutMs; }

}  // namespace braid
