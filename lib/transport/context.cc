#include <map>

#include <fmt/format.h>

#include "core/log.h"
#include "transport/internal.h"

namespace braid {

namespace {

/// Opens every usable verbs port (BRAID_IB_HCA, ACTIVE, a GID chosen) with its device's
/// PD, registration cache and async-event watcher. An empty result is not an error: the
/// caller decides whether TCP may serve instead.
Result<std::vector<VerbsRail>> openVerbsRails(const core::Params& p, std::string* why) {
  std::vector<VerbsRail> out;
  auto lib = verbs::Lib::load();
  if (!lib) {
    *why = lib.status().message();
    return out;
  }
  BRAID_ASSIGN_OR_RETURN(auto ports, verbs::discoverPorts(**lib, p));
  struct Dev {
    std::shared_ptr<verbs::Context> ctx;
    std::shared_ptr<verbs::Pd> pd;
    std::shared_ptr<verbs::MrCache> cache;
    std::shared_ptr<verbs::AsyncWatcher> watcher;
  };
  std::map<std::string, Dev> devs;
  std::string skipped;
  for (const verbs::PortInfo& port : ports) {
    if (!port.usableAsRail()) {
      skipped += fmt::format(" {}:{} ({})", port.device, port.port,
                             !port.selected ? "excluded by BRAID_IB_HCA"
                             : !port.active ? "state " + port.state
                                            : "no GID: " + port.gidError);
      continue;
    }
    if (out.size() == wire::kMaxRails) break;
    Dev& d = devs[port.device];
    if (!d.ctx) {
      BRAID_ASSIGN_OR_RETURN(verbs::Context c, verbs::Context::open(**lib, port.device));
      d.ctx = std::make_shared<verbs::Context>(std::move(c));
      BRAID_ASSIGN_OR_RETURN(verbs::Pd pd, verbs::Pd::alloc(*d.ctx));
      d.pd = std::make_shared<verbs::Pd>(std::move(pd));
      d.cache = std::make_shared<verbs::MrCache>(std::make_unique<verbs::PdRegistrar>(*d.pd));
      auto w = verbs::AsyncWatcher::start(**lib, *d.ctx);
      if (w)
        d.watcher = std::shared_ptr<verbs::AsyncWatcher>(std::move(w).value());
      else
        BRAID_LOG_WARN(kTransport, "{}: no async-event watcher: {}", port.device,
                       w.status().toString());
    }
    VerbsRail r;
    r.lib = *lib;
    r.port = port;
    r.gidIndex = port.gid->index;
    for (const auto& g : port.gids)
      if (g.index == r.gidIndex) r.gid = g.gid;
    r.dev = d.ctx;
    r.pd = d.pd;
    r.cache = d.cache;
    r.watcher = d.watcher;
    r.tuning = verbs::QpTuning::fromParams(p, port.port, r.gidIndex);
    BRAID_LOG_INFO(kTransport, "verbs rail {}: {} {} gid[{}] {} ({})", r.name(),
                   verbs::linkLayerName(port.linkLayer), port.state, r.gidIndex,
                   verbs::gidToString(r.gid), port.gid->reason);
    out.push_back(std::move(r));
  }
  if (out.empty())
    *why = ports.empty() ? "no RDMA device found (ibv_get_device_list is empty)"
                         : "no usable port:" + skipped;
  return out;
}

}  // namespace

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
  if (o.ibHca) impl->params.ibHca = *o.ibHca;
  if (o.ibGidIndex) impl->params.ibGidIndex = *o.ibGidIndex;
  impl->transport = Transport::kTcp;
  if (t != Transport::kTcp) {
    std::string why;
    auto rails = openVerbsRails(impl->params, &why);
    if (!rails) {
      if (t == Transport::kVerbs) return rails.status().withContext("verbs transport");
      // A host without RDMA is normal under BRAID_TRANSPORT=auto: news, not a warning.
      BRAID_LOG_INFO(kTransport, "verbs rails unavailable ({}); using TCP",
                     rails.status().toString());
    } else if (rails->empty()) {
      if (t == Transport::kVerbs)
        return Status(Code::kNotFound,
                      fmt::format("BRAID_TRANSPORT=verbs but {}; check `braid_info`, "
                                  "BRAID_IB_HCA, or use BRAID_TRANSPORT=auto|tcp",
                                  why));
      BRAID_LOG_INFO(kTransport, "no verbs rails ({}); using TCP", why);
    } else {
      impl->verbsRails = std::move(rails).value();
      impl->transport = Transport::kVerbs;
    }
  }
  impl->wantVerbsOnly = t == Transport::kVerbs;
  impl->qpsPerRail = o.ibQpsPerRail ? *o.ibQpsPerRail : static_cast<int>(p.ibQpsPerRail);
  if (impl->qpsPerRail < 1 || impl->qpsPerRail > static_cast<int>(wire::kMaxRails))
    return Status(Code::kInvalidArgument,
                  fmt::format("ibQpsPerRail={} outside 1..{}", impl->qpsPerRail, wire::kMaxRails));
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
  if (!o.eagerMax && o.usage == ContextOptions::Usage::kCollective && impl->verbsRails.empty() &&
      !p.isSet("BRAID_EAGER_MAX")) {
    // Collectives over TCP: a rendezvous costs a clear-to-send round trip, which on ranks
    // that share cores is a context switch each way (4 ranks on 2 cores: a 32 KiB allreduce
    // ~170 -> ~100 us, 256 KiB ~560 -> ~400 us with 128 KiB eager).
    impl->eagerMax = kCollectiveTcpEagerMax;
  }
  if (impl->eagerMax > wire::kMaxEagerLimit)
    return Status(Code::kInvalidArgument, "eagerMax above 1 MiB");
  impl->chunkSize = o.chunkSize ? *o.chunkSize : static_cast<uint64_t>(p.chunkSize);
  if (impl->chunkSize < 4096 || impl->chunkSize > wire::kMaxFrameLength)
    return Status(Code::kInvalidArgument, "chunkSize outside 4 KiB..1 GiB");
  impl->unexpectedMax = o.unexpectedMax ? *o.unexpectedMax : static_cast<uint64_t>(p.unexpectedMax);
  if (impl->unexpectedMax < (1u << 20))
    return Status(Code::kInvalidArgument,
                  fmt::format("unexpectedMax={} below 1 MiB (the largest eager message)",
                              impl->unexpectedMax));
  const std::string policy = o.stripePolicy ? *o.stripePolicy : p.stripePolicy;
  if (!transport::parseStripePolicy(policy, &impl->stripePolicy))
    return Status(Code::kInvalidArgument,
                  fmt::format("stripePolicy='{}': use adaptive, weighted, roundrobin or single",
                              policy));
  impl->spinUs = static_cast<int>(p.spinUs);
#ifndef BRAID_THREAD_CHECKS_DEFAULT
#define BRAID_THREAD_CHECKS_DEFAULT 0
#endif
  impl->threadChecks = o.threadChecks ? *o.threadChecks
                       : p.threadChecks == "on" ? true
                       : p.threadChecks == "off" ? false
                                                 : BRAID_THREAD_CHECKS_DEFAULT != 0;

  BRAID_ASSIGN_OR_RETURN(auto all, tcp::listInterfaces());
  std::string spec = o.socketIfname ? *o.socketIfname : p.socketIfname;
  BRAID_ASSIGN_OR_RETURN(impl->tcpRails, tcp::selectRails(spec, all));
  if (impl->tcpRails.size() > wire::kMaxRails) impl->tcpRails.resize(wire::kMaxRails);
  for (const VerbsRail& v : impl->verbsRails) {
    RailInfo r;
    r.transport = Transport::kVerbs;
    r.name = v.name();
    r.address = verbs::gidToString(v.gid);
    r.gidIndex = v.gidIndex;
    r.linkLayer = verbs::linkLayerName(v.port.linkLayer);
    r.mtuBytes = v.port.activeMtuBytes;
    r.speedMbps = v.port.speedMbps;
    r.numaNode = v.port.numaNode;
    r.pciPath = v.port.pciPath;
    r.guid = v.port.guid;
    r.port = v.port.port;
    r.maxQp = v.port.maxQp;
    impl->rails.push_back(r);
  }
  for (const auto& i : impl->tcpRails) {
    RailInfo r;
    r.transport = Transport::kTcp;
    r.name = i.name;
    tcp::SockAddr a = i.addr;
    std::string s = a.toString();
    r.address = s.substr(0, s.rfind(':'));
    r.sockets = impl->socketsPerRail;
    r.pciPath = tcp::interfacePciPath(i.name);
    r.speedMbps = tcp::linkSpeedMbps(i.name);
    impl->rails.push_back(r);
  }
  std::string names;
  for (auto& r : impl->rails)
    names += fmt::format(" {}:{}({})", r.transport == Transport::kVerbs ? "verbs" : "tcp", r.name,
                         r.address);
  BRAID_LOG_INFO(kTransport,
                 "rails:{}; {} sockets per tcp rail, {} QPs per verbs rail, eager <= {} B, "
                 "chunks {} B",
                 names, impl->socketsPerRail, impl->qpsPerRail, impl->eagerMax, impl->chunkSize);
  return std::shared_ptr<Context>(new Context(std::move(impl)));
}

const std::vector<RailInfo>& Context::rails() const { return impl_->rails; }

Result<MemoryRegion> Context::registerMemory(void* base, size_t length) const {
  if (base == nullptr && length > 0)
    return Status(Code::kInvalidArgument, "registerMemory: null buffer with a non-zero length");
  MemoryRegion mr(base, length);
  if (!impl_->verbsRails.empty() && length > 0) {
    BRAID_ASSIGN_OR_RETURN(mr.impl_, registerOnRails(impl_->verbsRails, base, length, true));
  }
  return mr;
}

Result<MemoryRegion> Context::registerDmabuf(void* base, size_t length, int fd,
                                             uint64_t offset) const {
  if (impl_->verbsRails.empty())
    return Status(Code::kUnsupported,
                  "registerDmabuf: this context has no verbs rails (TCP moves data with the CPU, "
                  "which cannot read device memory)");
  if (base == nullptr || length == 0 || fd < 0)
    return Status(Code::kInvalidArgument,
                  fmt::format("registerDmabuf: base {}, length {}, fd {}", base, length, fd));
  MemoryRegion mr(base, length);
  BRAID_ASSIGN_OR_RETURN(mr.impl_,
                         registerDmabufOnRails(impl_->verbsRails, base, length, fd, offset));
  return mr;
}

bool Context::dmabufSupported(std::string* why) const {
  std::string w;
  bool ok = dmabufOnRails(impl_->verbsRails, &w);
  if (why != nullptr) *why = w;
  return ok;
}

Context::RegistrationStats Context::registrationStats() const {
  RegistrationStats out;
  std::vector<const verbs::MrCache*> seen;
  for (const VerbsRail& r : impl_->verbsRails) {
    if (std::find(seen.begin(), seen.end(), r.cache.get()) != seen.end()) continue;
    seen.push_back(r.cache.get());
    verbs::MrCacheStats s = r.cache->stats();
    out.hits += s.hits;
    out.misses += s.misses;
    out.registered += s.registered;
    out.deregistered += s.deregistered;
  }
  return out;
}
Transport Context::transport() const { return impl_->transport; }
int Context::timeoutMs() const { return impl_->timeoutMs; }

}  // namespace braid

namespace braid {

Result<RemoteKey> MemoryRegion::remoteKey() const {
  if (!impl_ || impl_->perRail.empty())
    return Status(Code::kUnsupported,
                  "remoteKey: the region is not registered on verbs rails (a TCP-only context, "
                  "or deregistered)");
  return encodeRemoteKey(*impl_);
}

void MemoryRegion::deregister() {
  if (!impl_) return;
  // Requests holding impl_ keep the struct alive, but its keys go now, like ibv_dereg_mr.
  impl_->perRail.clear();
  for (auto& c : impl_->caches)
    if (c) c->invalidate(base_, length_);
  impl_.reset();
}

}  // namespace braid
