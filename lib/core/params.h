// lib/core/params.h — the one registry of BRAID_* environment knobs.
//
// Every knob is declared once (params.cc: name, type, default, bounds, one line of doc).
// Nothing else in braid calls getenv. Values are parsed and validated together into a
// Params snapshot; a bad value is an error naming the variable, the value and the range.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "braid/status.h"

namespace braid::core {

/// All knobs, parsed. Field docs live in the registry table (params.cc).
struct Params {
  std::string logLevel;          // BRAID_LOG_LEVEL
  std::string logFile;           // BRAID_LOG_FILE
  std::optional<uint64_t> jobToken;  // BRAID_JOB_TOKEN (unset: generated per listener)
  int64_t timeoutMs = 0;         // BRAID_TIMEOUT_MS
  std::string transport;         // BRAID_TRANSPORT
  std::string socketIfname;      // BRAID_SOCKET_IFNAME
  int64_t socketNsocks = 0;      // BRAID_SOCKET_NSOCKS
  int64_t socketBufSize = 0;     // BRAID_SOCKET_BUFSIZE
  int64_t eagerMax = 0;          // BRAID_EAGER_MAX
  int64_t chunkSize = 0;         // BRAID_CHUNK_SIZE
  int64_t unexpectedMax = 0;     // BRAID_UNEXPECTED_MAX
  std::string stripePolicy;      // BRAID_STRIPE_POLICY
  int64_t spinUs = 0;            // BRAID_SPIN_US
  std::string threadChecks;      // BRAID_THREAD_CHECKS
  bool ncclMergeAll = false;     // BRAID_NCCL_MERGE_ALL
  // collectives (issue 11)
  int64_t rank = -1;             // BRAID_RANK
  int64_t worldSize = 0;         // BRAID_WORLD_SIZE
  int64_t localRank = -1;        // BRAID_LOCAL_RANK
  std::string store;             // BRAID_STORE
  int64_t storePort = 0;         // BRAID_STORE_PORT
  std::string algo;              // BRAID_ALGO
  int64_t collSegment = 0;       // BRAID_COLL_SEGMENT
  bool collThread = false;       // BRAID_COLL_THREAD
  int64_t collSpinUs = 1000;     // BRAID_COLL_SPIN_US
  // verbs (issue 3)
  std::string ibHca;             // BRAID_IB_HCA
  int64_t ibGidIndex = -1;       // BRAID_IB_GID_INDEX
  int64_t ibRoceVersion = 0;     // BRAID_IB_ROCE_VERSION
  std::string ibAddrFamily;      // BRAID_IB_ADDR_FAMILY
  std::string ibAddrRange;       // BRAID_IB_ADDR_RANGE
  int64_t ibTimeout = 0;         // BRAID_IB_TIMEOUT
  int64_t ibRetryCnt = 0;        // BRAID_IB_RETRY_CNT
  int64_t ibTc = 0;              // BRAID_IB_TC
  int64_t ibSl = 0;              // BRAID_IB_SL
  int64_t ibQpsPerRail = 1;      // BRAID_IB_QPS_PER_RAIL

  /// Whether `name` was set in the environment this snapshot was parsed from (a default that
  /// depends on how a knob is used, such as the collectives' TCP eager limit, applies only
  /// when the user did not set the knob; asking this snapshot, not the live environment,
  /// keeps the two views from disagreeing when the environment changes after the parse).
  bool isSet(std::string_view name) const {
    return std::find(setNames.begin(), setNames.end(), name) != setNames.end();
  }
  std::vector<std::string> setNames;  ///< the knobs set in the environment, registry order
};

/// One row of the registry, with the value in force.
struct ParamRow {
  std::string name;
  std::string type;          // "int", "size", "string", "enum", "token"
  std::string defaultValue;  // as text
  std::string value;         // in force (the default when unset)
  bool isSet = false;        // set in the environment
  std::string doc;
};

/// Looks a variable up; returns nullopt when unset. Injected for tests.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

/// The process environment (the only getenv in braid).
EnvLookup processEnv();

/// Parses every knob from `env`. Errors name the variable, the value and what is allowed.
Result<Params> parseParams(const EnvLookup& env);

/// The process-wide snapshot, parsed once on first use (errors are returned each time).
/// Each call also warns, through the logging facade and once per process per name, about
/// BRAID_* variables of the environment that are not knobs (unknownKnobWarnings): a
/// misspelled knob would otherwise be ignored without a word.
Result<Params> params();

/// The same snapshot without the warnings: for the logging facade, which params() logs
/// through (the warnings would recurse into the logger being built).
Result<Params> paramsWithoutWarnings();

/// One warning per distinct name in `envNames` that starts with BRAID_ (in any case) but is
/// no knob, naming the closest knob when one is near, e.g. "BRAID_SOCKET_IFNAMES is not a
/// braid knob (ignored); did you mean BRAID_SOCKET_IFNAME?". Pure: params() feeds it the
/// environment's names. The variables of braid's own scripts (BRAID_SOFTROCE_*, BRAID_VM_*,
/// BRAID_IN_VM, BRAID_BUILD_DIR) are no knobs but no typos either: no warning.
std::vector<std::string> unknownKnobWarnings(const std::vector<std::string>& envNames);

/// The names of the process environment's variables (values are read only by processEnv).
std::vector<std::string> processEnvNames();

/// Every knob with its current value, in declaration order.
std::vector<ParamRow> listParams(const EnvLookup& env);

/// docs/params.md: the value grammar and every knob with its type, default and doc.
std::string paramsMarkdown();

/// A size knob's value -> bytes: decimal digits (no sign, no leading zeros, no spaces),
/// optionally followed by K, M or G in either case (x1024, x1024^2, x1024^3): "4096", "64K",
/// "1m", "2G". Errors say what is wrong ("unknown suffix 'KB'", "no leading zeros ...: write
/// 16K"), without the variable's name. Exposed for tests and tools.
Result<int64_t> parseSize(std::string_view text);

/// A job token: "0x" or "0X" then 1..16 hex digits, or decimal digits without leading zeros
/// (never octal). 0 parses (callers that need a nonzero token check). Used for
/// BRAID_JOB_TOKEN and the token of a braid:// address.
Result<uint64_t> parseToken(std::string_view text);

}  // namespace braid::core
