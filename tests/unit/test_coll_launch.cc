// Launcher detection (detectLaunch) from fake environments, and Slurm node lists.
#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "braid/coll.h"
#include "coll/store_internal.h"

using namespace braid;
using namespace braid::coll;

namespace {

using Env = std::map<std::string, std::string>;

EnvLookup fake(Env m) {
  return [m](const std::string& k) -> std::optional<std::string> {
    auto it = m.find(k);
    if (it == m.end()) return std::nullopt;
    return it->second;
  };
}

LaunchInfo detect(const Env& e) {
  auto r = detectLaunch(fake(e));
  INFO(r.status().toString());
  REQUIRE(r.isOk());
  return *r;
}

Status detectError(const Env& e) {
  auto r = detectLaunch(fake(e));
  REQUIRE_FALSE(r.isOk());
  return r.status();
}

/// What every launcher fills in: who, which rank of how many, and (with a job id) the
/// token derived from "<launcher>:<job id>". The store is checked by each test.
void checkIdentity(const LaunchInfo& i, const std::string& launcher, int rank, int size,
                   int localRank, const std::string& jobId) {
  CHECK(i.launcher == launcher);
  CHECK(i.rank == rank);
  CHECK(i.size == size);
  CHECK(i.localRank == localRank);
  CHECK_FALSE(i.serveStore);
  CHECK(i.jobId == jobId);
  if (jobId.empty()) {
    CHECK_FALSE(i.jobToken.has_value());
  } else {
    REQUIRE(i.jobToken.has_value());
    CHECK(*i.jobToken == detail::fnv1a64(launcher + ":" + jobId));
  }
}

Env merge(Env a, const Env& b) {
  for (auto& [k, v] : b) a[k] = v;
  return a;
}

const Env kBraid = {{"BRAID_RANK", "1"}, {"BRAID_WORLD_SIZE", "4"}, {"BRAID_STORE", "head:29400"}};
const Env kTorchrun = {{"RANK", "2"},
                       {"WORLD_SIZE", "8"},
                       {"LOCAL_RANK", "2"},
                       {"MASTER_ADDR", "10.0.0.1"},
                       {"MASTER_PORT", "29500"},
                       {"TORCHELASTIC_RUN_ID", "run7"}};
const Env kSlurm = {{"SLURM_PROCID", "3"},
                    {"SLURM_NTASKS", "8"},
                    {"SLURM_LOCALID", "1"},
                    {"SLURM_JOB_ID", "1234"},
                    {"SLURM_STEP_ID", "0"},
                    {"SLURM_STEP_NODELIST", "node[01-04]"},
                    {"SLURM_JOB_NODELIST", "node[00-07]"}};
// What Open MPI 4.1.4's mpirun sets on one host (`mpirun -n 2 env`, trimmed).
const Env kOmpi = {{"OMPI_COMM_WORLD_RANK", "1"},
                   {"OMPI_COMM_WORLD_SIZE", "2"},
                   {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                   {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                   {"OMPI_MCA_ess_base_jobid", "99745793"},
                   {"OMPI_MCA_orte_precondition_transports", "157adc83583554fb-a431b06fcb1525fa"},
                   {"PMIX_NAMESPACE", "99745793"}};

}  // namespace

TEST_CASE(
    "launch detection reads BRAID_RANK, BRAID_WORLD_SIZE and BRAID_STORE as the braid launcher") {
  auto i = detect(kBraid);
  checkIdentity(i, "braid", 1, 4, -1, "");
  CHECK(i.store == "head:29400");

  auto zero = detect(merge(kBraid, {{"BRAID_RANK", "0"}, {"BRAID_LOCAL_RANK", "0"}}));
  CHECK(zero.serveStore);
  CHECK(zero.localRank == 0);
  auto file = detect(merge(kBraid, {{"BRAID_RANK", "0"}, {"BRAID_STORE", "file:/shared/x"}}));
  CHECK(file.store == "file:/shared/x");
  CHECK_FALSE(file.serveStore);  // nobody serves a file store
  auto v6 = detect(merge(kBraid, {{"BRAID_STORE", "[fd00::1]:29400"}}));
  CHECK(v6.store == "[fd00::1]:29400");
}

TEST_CASE("launch detection rejects a half-configured braid launcher, naming the variable") {
  auto noSize = detectError({{"BRAID_RANK", "0"}, {"BRAID_STORE", "h:1"}});
  CHECK(noSize.code() == Code::kInvalidArgument);
  CHECK_THAT(noSize.message(), Catch::Contains("BRAID_WORLD_SIZE is not"));
  auto noRank = detectError({{"BRAID_WORLD_SIZE", "4"}, {"BRAID_STORE", "h:1"}});
  CHECK(noRank.code() == Code::kInvalidArgument);
  CHECK_THAT(noRank.message(), Catch::Contains("BRAID_RANK is not"));
  auto noStore = detectError({{"BRAID_RANK", "0"}, {"BRAID_WORLD_SIZE", "4"}});
  CHECK(noStore.code() == Code::kInvalidArgument);
  CHECK_THAT(noStore.message(), Catch::Contains("BRAID_STORE"));
  auto tooBig = detectError(merge(kBraid, {{"BRAID_RANK", "4"}}));
  CHECK(tooBig.code() == Code::kInvalidArgument);
  CHECK_THAT(tooBig.message(), Catch::Contains("BRAID_RANK=4"));
  auto notNumber = detectError(merge(kBraid, {{"BRAID_RANK", "one"}}));
  CHECK(notNumber.code() == Code::kInvalidArgument);
  CHECK_THAT(notNumber.message(), Catch::Contains("BRAID_RANK"));
  auto badStore = detectError(merge(kBraid, {{"BRAID_STORE", "head"}}));
  CHECK(badStore.code() == Code::kInvalidArgument);
  CHECK_THAT(badStore.message(), Catch::Contains("BRAID_STORE='head'"));
  CHECK(detectError(merge(kBraid, {{"BRAID_STORE", "head:70000"}})).code() ==
        Code::kInvalidArgument);
  CHECK(detectError(merge(kBraid, {{"BRAID_STORE", "file:"}})).code() == Code::kInvalidArgument);
}

TEST_CASE("launch detection puts torchrun's store on MASTER_PORT plus one, served by rank 0") {
  auto i = detect(kTorchrun);
  checkIdentity(i, "torchrun", 2, 8, 2, "run7");
  CHECK(i.store == "10.0.0.1:29501");

  auto zero = detect(merge(kTorchrun, {{"RANK", "0"}, {"LOCAL_RANK", "0"}}));
  CHECK(zero.serveStore);
  Env noLocal = kTorchrun;
  noLocal.erase("LOCAL_RANK");
  CHECK(detect(noLocal).localRank == -1);
  // torchrun's default run id "none" is no job id.
  auto none = detect(merge(kTorchrun, {{"TORCHELASTIC_RUN_ID", "none"}}));
  CHECK(none.jobId.empty());
  CHECK_FALSE(none.jobToken.has_value());
  CHECK(detect(merge(kTorchrun, {{"MASTER_ADDR", "fd00::1"}})).store == "[fd00::1]:29501");
}

TEST_CASE("launch detection rejects a half-configured torchrun environment, naming the variable") {
  auto noSize = detectError({{"RANK", "0"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}});
  CHECK(noSize.code() == Code::kInvalidArgument);
  CHECK_THAT(noSize.message(), Catch::Contains("RANK is set but WORLD_SIZE is not"));
  auto noRank = detectError({{"WORLD_SIZE", "2"}});
  CHECK_THAT(noRank.message(), Catch::Contains("WORLD_SIZE is set but RANK is not"));
  auto word = detectError(merge(kTorchrun, {{"RANK", "two"}}));
  CHECK(word.code() == Code::kInvalidArgument);
  CHECK_THAT(word.message(), Catch::Contains("RANK='two'"));
  auto over = detectError(merge(kTorchrun, {{"RANK", "8"}}));
  CHECK_THAT(over.message(), Catch::Contains("RANK=8"));
  CHECK_THAT(over.message(), Catch::Contains("WORLD_SIZE=8"));
  CHECK_THAT(detectError(merge(kTorchrun, {{"WORLD_SIZE", "0"}})).message(),
             Catch::Contains("WORLD_SIZE='0'"));
  CHECK_THAT(detectError(merge(kTorchrun, {{"LOCAL_RANK", "-3"}})).message(),
             Catch::Contains("LOCAL_RANK='-3'"));
  Env noAddr = kTorchrun;
  noAddr.erase("MASTER_ADDR");
  CHECK_THAT(detectError(noAddr).message(), Catch::Contains("MASTER_ADDR"));
  Env noPort = kTorchrun;
  noPort.erase("MASTER_PORT");
  CHECK_THAT(detectError(noPort).message(), Catch::Contains("MASTER_PORT"));
  CHECK_THAT(detectError(merge(kTorchrun, {{"MASTER_PORT", "65535"}})).message(),
             Catch::Contains("MASTER_PORT='65535'"));
  // BRAID_STORE makes MASTER_ADDR and MASTER_PORT unnecessary.
  CHECK(detect(merge(noAddr, {{"BRAID_STORE", "h:5"}})).store == "h:5");
}

TEST_CASE("launch detection puts slurm's store on the step's first node, port from the job id") {
  auto i = detect(kSlurm);
  checkIdentity(i, "slurm", 3, 8, 1, "1234.0");
  CHECK(i.store == "node01:21234");
  CHECK(i.describe() ==
        "rank 3 of 8 (local 1) from slurm, job 1234.0, store node01:21234 (rank 0 serves it)");

  CHECK(detect(merge(kSlurm, {{"SLURM_PROCID", "0"}})).serveStore);
  CHECK(detect(merge(kSlurm, {{"BRAID_STORE_PORT", "29999"}})).store == "node01:29999");
  CHECK(detect(merge(kSlurm, {{"SLURM_JOB_ID", "45678"}})).store == "node01:25678");
  Env jobList = kSlurm;
  jobList.erase("SLURM_STEP_NODELIST");
  CHECK(detect(jobList).store == "node00:21234");
  Env noStep = kSlurm;
  noStep.erase("SLURM_STEP_ID");
  CHECK(detect(noStep).jobId == "1234");

  Env noLists = jobList;
  noLists.erase("SLURM_JOB_NODELIST");
  CHECK_THAT(detectError(noLists).message(), Catch::Contains("SLURM_JOB_NODELIST"));
  Env noJob = kSlurm;
  noJob.erase("SLURM_JOB_ID");
  CHECK_THAT(detectError(noJob).message(), Catch::Contains("BRAID_STORE_PORT"));
  CHECK(detect(merge(noJob, {{"BRAID_STORE_PORT", "30000"}})).store == "node01:30000");
  Env noTasks = kSlurm;
  noTasks.erase("SLURM_NTASKS");
  auto e = detectError(noTasks);
  CHECK(e.code() == Code::kInvalidArgument);
  CHECK_THAT(e.message(), Catch::Contains("SLURM_NTASKS"));
  CHECK_THAT(detectError(merge(kSlurm, {{"SLURM_PROCID", "8"}})).message(),
             Catch::Contains("SLURM_PROCID=8"));
  CHECK_THAT(detectError(merge(kSlurm, {{"SLURM_STEP_NODELIST", "node[01-"}})).message(),
             Catch::Contains("SLURM_STEP_NODELIST"));
}

TEST_CASE("launch detection gives open mpi on one host a job-private file store") {
  auto i = detect(kOmpi);
  checkIdentity(i, "openmpi", 1, 2, 1, "99745793");
  CHECK(i.store.rfind("file:/tmp/braid-ompi-99745793-", 0) == 0);
  // Another mpirun that happens to get the same job id gets another directory.
  auto again = detect(merge(kOmpi, {{"OMPI_MCA_orte_precondition_transports", "0-1"}}));
  CHECK(again.store != i.store);
  // Every rank of the job computes the same one.
  CHECK(detect(merge(kOmpi, {{"OMPI_COMM_WORLD_RANK", "0"}})).store == i.store);
  CHECK(i.describe() == "rank 1 of 2 (local 1) from openmpi, job 99745793, store " + i.store);
}

TEST_CASE("launch detection asks for BRAID_STORE when open mpi ranks span several hosts") {
  auto e = detectError(merge(kOmpi, {{"OMPI_COMM_WORLD_SIZE", "4"}}));
  CHECK(e.code() == Code::kInvalidArgument);
  CHECK_THAT(e.message(), Catch::Contains("BRAID_STORE=host:port"));
  CHECK_THAT(e.message(), Catch::Contains("OMPI_COMM_WORLD_LOCAL_SIZE=2"));
  auto i = detect(merge(
      kOmpi,
      {{"OMPI_COMM_WORLD_SIZE", "4"}, {"BRAID_STORE", "n0:29400"}, {"OMPI_COMM_WORLD_RANK", "0"}}));
  CHECK(i.store == "n0:29400");
  CHECK(i.serveStore);
  auto noSize = detectError({{"OMPI_COMM_WORLD_RANK", "0"}});
  CHECK_THAT(noSize.message(), Catch::Contains("OMPI_COMM_WORLD_SIZE"));
}

TEST_CASE("launch detection prefers braid over torchrun over slurm over open mpi") {
  auto all = merge(merge(merge(kBraid, kTorchrun), kSlurm), kOmpi);
  CHECK(detect(all).launcher == "braid");
  all.erase("BRAID_RANK");
  all.erase("BRAID_WORLD_SIZE");
  CHECK(detect(all).launcher == "torchrun");
  all.erase("RANK");
  all.erase("WORLD_SIZE");
  CHECK(detect(all).launcher == "slurm");
  all.erase("SLURM_PROCID");
  CHECK(detect(all).launcher == "openmpi");
  // A half-configured launcher is an error, not a reason to fall through to the next one.
  CHECK(detectError(merge(kSlurm, {{"RANK", "1"}})).code() == Code::kInvalidArgument);
}

TEST_CASE("launch detection lets BRAID_STORE override every launcher's store") {
  for (const Env& e : {kTorchrun, kSlurm, kOmpi}) {
    auto i = detect(merge(e, {{"BRAID_STORE", "file:/shared/job"}}));
    CHECK(i.store == "file:/shared/job");
    CHECK_FALSE(i.serveStore);
  }
  auto tcp = detect(merge(kSlurm, {{"BRAID_STORE", "login1:4000"}, {"SLURM_PROCID", "0"}}));
  CHECK(tcp.store == "login1:4000");
  CHECK(tcp.serveStore);
}

TEST_CASE("launch detection takes BRAID_JOB_TOKEN over a token derived from the job id") {
  auto i = detect(merge(kSlurm, {{"BRAID_JOB_TOKEN", "0x1234"}}));
  REQUIRE(i.jobToken.has_value());
  CHECK(*i.jobToken == 0x1234);
  auto b = detect(merge(kBraid, {{"BRAID_JOB_TOKEN", "99"}}));
  CHECK(b.jobToken == std::optional<uint64_t>(99));
  // Derived tokens differ between launchers and jobs.
  CHECK(detail::fnv1a64("slurm:1234.0") != detail::fnv1a64("slurm:1234.1"));
  CHECK(detail::fnv1a64("a") == 0xaf63dc4c8601ec8cull);  // the FNV-1a 64 test vector
  auto bad = detectError(merge(kSlurm, {{"BRAID_JOB_TOKEN", "xyz"}}));
  CHECK_THAT(bad.message(), Catch::Contains("BRAID_JOB_TOKEN"));
}

TEST_CASE(
    "launch detection reports kNotFound, listing what it looked for, when no launcher is there") {
  auto e = detectError({{"HOME", "/root"}, {"LOCAL_RANK", "0"}});
  CHECK(e.code() == Code::kNotFound);
  for (const char* name : {"BRAID_RANK", "RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK"})
    CHECK_THAT(e.message(), Catch::Contains(name));
}

TEST_CASE("launch info describes itself in one line") {
  LaunchInfo i;
  i.rank = 0;
  i.size = 2;
  i.launcher = "braid";
  i.store = "h:1";
  i.serveStore = true;
  CHECK(i.describe() == "rank 0 of 2 from braid, store h:1 (this rank serves it)");
}

TEST_CASE("a slurm node list expands ranges, keeping zero padding") {
  auto n = expandNodeList("node[01-04,07],gpu3");
  REQUIRE(n.isOk());
  CHECK(*n == std::vector<std::string>{"node01", "node02", "node03", "node04", "node07", "gpu3"});
  CHECK(*expandNodeList("a[1-2]-ib,b") == std::vector<std::string>{"a1-ib", "a2-ib", "b"});
  CHECK(*expandNodeList("n[8-11]") == std::vector<std::string>{"n8", "n9", "n10", "n11"});
  CHECK(*expandNodeList("n[098-101]") == std::vector<std::string>{"n098", "n099", "n100", "n101"});
  CHECK(*expandNodeList("single") == std::vector<std::string>{"single"});
  CHECK(*expandNodeList("[1-2]") == std::vector<std::string>{"1", "2"});
  CHECK(*expandNodeList("x[5]") == std::vector<std::string>{"x5"});
}

TEST_CASE("a malformed slurm node list is an error naming the list") {
  for (const char* bad : {"", "node[01-", "node01]", "node[]", "node[1-2][3-4]", "a,,b", "a,",
                          "n[4-2]", "n[a-b]", "n[1,]", "n[[1]]", "n[1-2-3]", "n[0-99999999]"}) {
    INFO(bad);
    auto r = expandNodeList(bad);
    REQUIRE_FALSE(r.isOk());
    CHECK(r.status().code() == Code::kInvalidArgument);
    CHECK_THAT(r.status().message(), Catch::Contains(std::string("'") + bad + "'"));
  }
}
