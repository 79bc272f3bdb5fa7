// lib/coll/launch.cc — where this process sits in the job, from the launcher's environment.
//
// Order (first match wins, coll.h): BRAID_RANK/BRAID_WORLD_SIZE, torchrun, Slurm, Open MPI.
// torchrun inside a Slurm allocation sets both torchrun's and Slurm's variables, and the
// processes are torchrun's; likewise mpirun inside Slurm. A launcher whose variables are only
// partly there (or not numbers) is an error naming the variable, never a silent fall-through
// to the next launcher: that would give each process a different idea of the job.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <string>
#include <vector>

#include "braid/coll.h"
#include "coll/store_internal.h"
#include "core/params.h"

namespace braid::coll {
namespace {

constexpr int64_t kMaxRanks = int64_t{1} << 24;  // as BRAID_WORLD_SIZE's bound
constexpr size_t kMaxExpandedNodes = 1 << 20;

std::optional<std::string> lookup(const EnvLookup& env, const std::string& name) {
  auto v = env(name);
  if (v && v->empty()) return std::nullopt;  // VAR= is as good as unset
  return v;
}

Result<int64_t> parseInt(const std::string& name, const std::string& text, int64_t lo, int64_t hi) {
  int64_t v = 0;
  const char* first = text.data();
  const char* last = first + text.size();
  auto [ptr, ec] = std::from_chars(first, last, v);
  if (ec != std::errc() || ptr != last || v < lo || v > hi)
    return Status(Code::kInvalidArgument,
                  fmt::format("{}='{}' is not an integer from {} to {}: check how the job was "
                              "launched",
                              name, text, lo, hi));
  return v;
}

// A launcher's variable that must be there once the launcher is recognised.
Result<int64_t> requireInt(const EnvLookup& env, const std::string& name,
                           const std::string& because, int64_t lo, int64_t hi) {
  auto v = lookup(env, name);
  if (!v)
    return Status(Code::kInvalidArgument,
                  fmt::format("{} is set but {} is not: the launcher's environment is "
                              "incomplete (set {} too, or unset {} and use BRAID_RANK, "
                              "BRAID_WORLD_SIZE and BRAID_STORE)",
                              because, name, name, because));
  return parseInt(name, *v, lo, hi);
}

Result<int64_t> optionalInt(const EnvLookup& env, const std::string& name, int64_t lo, int64_t hi,
                            int64_t dflt) {
  auto v = lookup(env, name);
  if (!v) return dflt;
  return parseInt(name, *v, lo, hi);
}

Status checkRank(const std::string& rankVar, int64_t rank, const std::string& sizeVar,
                 int64_t size) {
  if (rank >= size)
    return Status(Code::kInvalidArgument,
                  fmt::format("{}={} is not below {}={}: ranks are 0 to size - 1", rankVar, rank,
                              sizeVar, size));
  return Status::ok();
}

std::string hostPort(const std::string& host, int64_t port) {
  if (host.find(':') != std::string::npos && host.front() != '[')
    return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

// "host:port" (host may be [v6]) or "file:DIR".
Status checkStoreSpec(const std::string& spec, const std::string& from) {
  if (spec.rfind("file:", 0) == 0) {
    if (spec.size() == 5)
      return Status(Code::kInvalidArgument,
                    fmt::format("{}='{}' names no directory: write file:DIR", from, spec));
    return Status::ok();
  }
  size_t colon = spec.rfind(':');
  std::string host = colon == std::string::npos ? "" : spec.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  int64_t port = 0;
  bool portOk = false;
  if (colon != std::string::npos) {
    const char* first = spec.data() + colon + 1;
    const char* last = spec.data() + spec.size();
    auto [ptr, ec] = std::from_chars(first, last, port);
    portOk = ec == std::errc() && ptr == last && port >= 1 && port <= 65535;
  }
  if (host.empty() || !portOk)
    return Status(Code::kInvalidArgument,
                  fmt::format("{}='{}' is neither host:port (port 1 to 65535; [addr]:port for "
                              "IPv6) nor file:DIR",
                              from, spec));
  return Status::ok();
}

bool isFileStore(const std::string& spec) {
  return spec.rfind("file:", 0) == 0;
}

std::string safeForPath(const std::string& s) {
  std::string out;
  for (char c : s)
    out.push_back(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ? c : '_');
  return out;
}

Status fromBraid(const core::Params& p, LaunchInfo& info) {
  if (p.rank < 0)
    return Status(Code::kInvalidArgument,
                  fmt::format("BRAID_WORLD_SIZE={} is set but BRAID_RANK is not: set both (or "
                              "neither, to use the launcher's variables)",
                              p.worldSize));
  if (p.worldSize <= 0)
    return Status(Code::kInvalidArgument,
                  fmt::format("BRAID_RANK={} is set but BRAID_WORLD_SIZE is not: set both (or "
                              "neither, to use the launcher's variables)",
                              p.rank));
  BRAID_RETURN_IF_ERROR(checkRank("BRAID_RANK", p.rank, "BRAID_WORLD_SIZE", p.worldSize));
  if (p.store.empty())
    return Status(Code::kInvalidArgument,
                  "BRAID_RANK and BRAID_WORLD_SIZE are set but BRAID_STORE is not: set "
                  "BRAID_STORE=host:port (a TCP store that rank 0 serves on its host) or "
                  "BRAID_STORE=file:DIR (a directory every rank sees)");
  info.launcher = "braid";
  info.rank = static_cast<int>(p.rank);
  info.size = static_cast<int>(p.worldSize);
  info.localRank = static_cast<int>(p.localRank);
  return Status::ok();  // the store is BRAID_STORE, applied by the caller
}

Status fromTorchrun(const EnvLookup& env, const core::Params& p, LaunchInfo& info) {
  std::string because = lookup(env, "RANK") ? "RANK" : "WORLD_SIZE";
  BRAID_ASSIGN_OR_RETURN(int64_t size, requireInt(env, "WORLD_SIZE", because, 1, kMaxRanks));
  BRAID_ASSIGN_OR_RETURN(int64_t rank, requireInt(env, "RANK", because, 0, kMaxRanks - 1));
  BRAID_RETURN_IF_ERROR(checkRank("RANK", rank, "WORLD_SIZE", size));
  BRAID_ASSIGN_OR_RETURN(int64_t local, optionalInt(env, "LOCAL_RANK", 0, kMaxRanks - 1, -1));
  info.launcher = "torchrun";
  info.rank = static_cast<int>(rank);
  info.size = static_cast<int>(size);
  info.localRank = static_cast<int>(local);
  // torchrun's default rendezvous id is the literal "none": no job id at all.
  auto runId = lookup(env, "TORCHELASTIC_RUN_ID");
  if (runId && *runId != "none") info.jobId = *runId;
  if (!p.store.empty()) return Status::ok();
  auto addr = lookup(env, "MASTER_ADDR");
  if (!addr)
    return Status(Code::kInvalidArgument,
                  "RANK and WORLD_SIZE are set (torchrun) but MASTER_ADDR is not: set "
                  "MASTER_ADDR and MASTER_PORT, or BRAID_STORE=host:port");
  auto portText = lookup(env, "MASTER_PORT");
  if (!portText)
    return Status(Code::kInvalidArgument,
                  "RANK and WORLD_SIZE are set (torchrun) but MASTER_PORT is not: set "
                  "MASTER_PORT, or BRAID_STORE=host:port");
  // torchrun's agent and PyTorch's TCPStore hold MASTER_PORT itself: braid's store takes the
  // next port.
  BRAID_ASSIGN_OR_RETURN(int64_t port, parseInt("MASTER_PORT", *portText, 1, 65534));
  info.store = hostPort(*addr, port + 1);
  return Status::ok();
}

Status fromSlurm(const EnvLookup& env, const core::Params& p, LaunchInfo& info) {
  BRAID_ASSIGN_OR_RETURN(int64_t rank,
                         parseInt("SLURM_PROCID", *lookup(env, "SLURM_PROCID"), 0, kMaxRanks - 1));
  std::string sizeVar =
      lookup(env, "SLURM_NTASKS") || !lookup(env, "SLURM_NPROCS") ? "SLURM_NTASKS" : "SLURM_NPROCS";
  BRAID_ASSIGN_OR_RETURN(int64_t size, requireInt(env, sizeVar, "SLURM_PROCID", 1, kMaxRanks));
  BRAID_RETURN_IF_ERROR(checkRank("SLURM_PROCID", rank, sizeVar, size));
  BRAID_ASSIGN_OR_RETURN(int64_t local, optionalInt(env, "SLURM_LOCALID", 0, kMaxRanks - 1, -1));
  info.launcher = "slurm";
  info.rank = static_cast<int>(rank);
  info.size = static_cast<int>(size);
  info.localRank = static_cast<int>(local);
  auto jobText = lookup(env, "SLURM_JOB_ID");
  if (!jobText) jobText = lookup(env, "SLURM_JOBID");
  std::optional<int64_t> jobNum;
  if (jobText) {
    BRAID_ASSIGN_OR_RETURN(int64_t j, parseInt("SLURM_JOB_ID", *jobText, 0, INT64_MAX));
    jobNum = j;
    info.jobId = *jobText;
    if (auto step = lookup(env, "SLURM_STEP_ID")) info.jobId += "." + *step;
  }
  if (!p.store.empty()) return Status::ok();
  std::string listVar = "SLURM_STEP_NODELIST";
  auto list = lookup(env, listVar);
  if (!list) {
    listVar = "SLURM_JOB_NODELIST";
    list = lookup(env, listVar);
  }
  if (!list)
    return Status(Code::kInvalidArgument,
                  "SLURM_PROCID is set but neither SLURM_STEP_NODELIST nor SLURM_JOB_NODELIST "
                  "is: start the ranks with srun, or set BRAID_STORE=host:port");
  auto nodes = expandNodeList(*list);
  if (!nodes) return nodes.status().withContext(listVar);
  int64_t port = p.storePort;
  if (port == 0) {
    if (!jobNum)
      return Status(Code::kInvalidArgument,
                    "SLURM_PROCID is set but SLURM_JOB_ID is not, so no store port can be "
                    "derived: set BRAID_STORE_PORT (or BRAID_STORE=host:port)");
    port = 20000 + *jobNum % 20000;
  }
  info.store = hostPort(nodes->front(), port);
  return Status::ok();
}

Status fromOpenMpi(const EnvLookup& env, const core::Params& p, LaunchInfo& info) {
  BRAID_ASSIGN_OR_RETURN(
      int64_t rank,
      parseInt("OMPI_COMM_WORLD_RANK", *lookup(env, "OMPI_COMM_WORLD_RANK"), 0, kMaxRanks - 1));
  BRAID_ASSIGN_OR_RETURN(
      int64_t size, requireInt(env, "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", 1, kMaxRanks));
  BRAID_RETURN_IF_ERROR(checkRank("OMPI_COMM_WORLD_RANK", rank, "OMPI_COMM_WORLD_SIZE", size));
  BRAID_ASSIGN_OR_RETURN(int64_t local,
                         optionalInt(env, "OMPI_COMM_WORLD_LOCAL_RANK", 0, kMaxRanks - 1, -1));
  BRAID_ASSIGN_OR_RETURN(int64_t localSize,
                         optionalInt(env, "OMPI_COMM_WORLD_LOCAL_SIZE", 1, kMaxRanks, 0));
  info.launcher = "openmpi";
  info.rank = static_cast<int>(rank);
  info.size = static_cast<int>(size);
  info.localRank = static_cast<int>(local);
  // Open MPI 4.x (ORTE) sets OMPI_MCA_ess_base_jobid; 5.x (PRRTE) only PMIX_NAMESPACE.
  if (auto id = lookup(env, "OMPI_MCA_ess_base_jobid"))
    info.jobId = *id;
  else if (auto ns = lookup(env, "PMIX_NAMESPACE"))
    info.jobId = *ns;
  if (!p.store.empty()) return Status::ok();
  if (localSize != size)
    return Status(
        Code::kInvalidArgument,
        fmt::format("Open MPI ranks span several hosts (OMPI_COMM_WORLD_LOCAL_SIZE={}, "
                    "OMPI_COMM_WORLD_SIZE={}) and Open MPI does not say which host "
                    "rank 0 is on: set BRAID_STORE=host:port with rank 0's host "
                    "(rank 0 serves it), or BRAID_STORE=file:DIR on a shared file "
                    "system",
                    localSize == 0 ? std::string("unset") : std::to_string(localSize), size));
  // Every rank is on this host: a file store in /tmp. The job id (ORTE's is derived from
  // mpirun's pid) can come back in a later job, so the directory also carries a hash of
  // the per-mpirun random key ORTE gives every rank, so that a stale directory is not reused.
  auto salt = lookup(env, "OMPI_MCA_orte_precondition_transports");
  if (info.jobId.empty() && !salt)
    return Status(Code::kInvalidArgument,
                  "Open MPI set neither OMPI_MCA_ess_base_jobid nor PMIX_NAMESPACE, so braid "
                  "cannot name a directory private to this job: set BRAID_STORE=file:DIR or "
                  "BRAID_STORE=host:port");
  std::string name = "braid-ompi-" + (info.jobId.empty() ? "job" : safeForPath(info.jobId));
  if (salt) name += fmt::format("-{:08x}", detail::fnv1a64(*salt) & 0xffffffffu);
  info.store = "file:/tmp/" + name;
  return Status::ok();
}

}  // namespace

Result<LaunchInfo> detectLaunch(const EnvLookup& envIn) {
  EnvLookup env = envIn ? envIn : core::processEnv();
  BRAID_ASSIGN_OR_RETURN(core::Params p, core::parseParams(env));
  LaunchInfo info;
  if (p.rank >= 0 || p.worldSize > 0) {
    BRAID_RETURN_IF_ERROR(fromBraid(p, info));
  } else if (lookup(env, "RANK") || lookup(env, "WORLD_SIZE")) {
    BRAID_RETURN_IF_ERROR(fromTorchrun(env, p, info));
  } else if (lookup(env, "SLURM_PROCID")) {
    BRAID_RETURN_IF_ERROR(fromSlurm(env, p, info));
  } else if (lookup(env, "OMPI_COMM_WORLD_RANK")) {
    BRAID_RETURN_IF_ERROR(fromOpenMpi(env, p, info));
  } else {
    return Status(Code::kNotFound,
                  "no launcher recognised: looked for BRAID_RANK/BRAID_WORLD_SIZE, torchrun's "
                  "RANK/WORLD_SIZE, Slurm's SLURM_PROCID and Open MPI's OMPI_COMM_WORLD_RANK; "
                  "start the job with one of them or set BRAID_RANK, BRAID_WORLD_SIZE and "
                  "BRAID_STORE");
  }
  if (!p.store.empty()) info.store = p.store;
  BRAID_RETURN_IF_ERROR(checkStoreSpec(info.store, p.store.empty()
                                                       ? "the " + info.launcher + " store"
                                                       : std::string("BRAID_STORE")));
  info.serveStore = info.rank == 0 && !isFileStore(info.store);
  if (p.jobToken)
    info.jobToken = p.jobToken;
  else if (!info.jobId.empty())
    info.jobToken = detail::fnv1a64(info.launcher + ":" + info.jobId);
  return info;
}

Result<std::vector<std::string>> expandNodeList(std::string_view list) {
  auto bad = [&](const std::string& why) {
    return Status(Code::kInvalidArgument,
                  fmt::format("node list '{}': {} (expected e.g. node[01-04,07],gpu3)", list, why));
  };
  if (list.empty()) return bad("empty");
  // Split at the commas outside brackets.
  std::vector<std::string_view> items;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < list.size(); ++i) {
    char c = list[i];
    if (c == '[') {
      if (++depth > 1) return bad("nested '['");
    } else if (c == ']') {
      if (--depth < 0) return bad("']' without '['");
    } else if (c == ',' && depth == 0) {
      items.push_back(list.substr(start, i - start));
      start = i + 1;
    }
  }
  if (depth != 0) return bad("'[' without ']'");
  items.push_back(list.substr(start));

  std::vector<std::string> out;
  for (std::string_view item : items) {
    if (item.empty()) return bad("an empty name");
    size_t open = item.find('[');
    if (open == std::string_view::npos) {
      out.emplace_back(item);
      continue;
    }
    size_t close = item.find(']', open);
    std::string_view prefix = item.substr(0, open);
    std::string_view ranges = item.substr(open + 1, close - open - 1);
    std::string_view suffix = item.substr(close + 1);
    if (suffix.find('[') != std::string_view::npos)
      return bad("several bracket groups in one name are not supported");
    if (ranges.empty()) return bad("empty brackets");
    size_t rs = 0;
    while (rs <= ranges.size()) {
      size_t comma = ranges.find(',', rs);
      std::string_view range =
          ranges.substr(rs, comma == std::string_view::npos ? std::string_view::npos : comma - rs);
      rs = comma == std::string_view::npos ? ranges.size() + 1 : comma + 1;
      size_t dash = range.find('-');
      std::string_view loText = range.substr(0, dash);
      std::string_view hiText = dash == std::string_view::npos ? loText : range.substr(dash + 1);
      auto num = [](std::string_view t, uint64_t* v) {
        if (t.empty() || t.size() > 18) return false;
        auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), *v);
        return ec == std::errc() && ptr == t.data() + t.size();
      };
      uint64_t lo = 0, hi = 0;
      if (!num(loText, &lo) || !num(hiText, &hi))
        return bad(fmt::format("'{}' is not a number or a range a-b", range));
      if (hi < lo) return bad(fmt::format("range '{}' runs backwards", range));
      if (hi - lo >= kMaxExpandedNodes || out.size() + (hi - lo) >= kMaxExpandedNodes)
        return bad("more than a million names");
      // Slurm pads to the width of the range's first number: node[01-10] -> node01..node10.
      size_t width = loText.size();
      for (uint64_t n = lo; n <= hi; ++n)
        out.push_back(fmt::format("{}{:0{}}{}", prefix, n, width, suffix));
    }
  }
  return out;
}

std::string LaunchInfo::describe() const {
  std::string s = fmt::format("rank {} of {}", rank, size);
  if (localRank >= 0) s += fmt::format(" (local {})", localRank);
  s += fmt::format(" from {}", launcher.empty() ? "an unknown launcher" : launcher);
  if (!jobId.empty()) s += fmt::format(", job {}", jobId);
  s += fmt::format(", store {}", store.empty() ? "unset" : store);
  if (!isFileStore(store) && !store.empty())
    s += serveStore ? " (this rank serves it)" : " (rank 0 serves it)";
  return s;
}

}  // namespace braid::coll
