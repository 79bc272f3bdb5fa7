// lib/coll/types.cc — names and sizes of the collectives' element types and reductions.
// Canonical names are nccl-tests' (-d int8 ... double, -o sum ... avg) so that results
// printed by braid's tools line up with theirs; the aliases are what people type.
#include <cctype>
#include <string>

#include "braid/coll.h"

namespace braid::coll {
namespace {

struct TypeAlias {
  std::string_view name;
  DataType type;
};

// Canonical names first (in enum order), then the aliases.
constexpr TypeAlias kTypeNames[] = {
    {"int8", DataType::kInt8},       {"uint8", DataType::kUint8},
    {"int32", DataType::kInt32},     {"uint32", DataType::kUint32},
    {"int64", DataType::kInt64},     {"uint64", DataType::kUint64},
    {"half", DataType::kFloat16},    {"bfloat16", DataType::kBfloat16},
    {"float", DataType::kFloat32},   {"double", DataType::kFloat64},
    {"fp16", DataType::kFloat16},    {"float16", DataType::kFloat16},
    {"bf16", DataType::kBfloat16},   {"fp32", DataType::kFloat32},
    {"float32", DataType::kFloat32}, {"fp64", DataType::kFloat64},
    {"float64", DataType::kFloat64}, {"char", DataType::kInt8},
    {"int", DataType::kInt32},       {"uint", DataType::kUint32},
};

// typeName() indexes the table by the enum's value.
constexpr bool canonicalNamesInEnumOrder() {
  for (int i = 0; i < kDataTypeCount; ++i)
    if (kTypeNames[i].type != static_cast<DataType>(i)) return false;
  return true;
}
static_assert(canonicalNamesInEnumOrder());

constexpr std::string_view kOpNames[kReduceOpCount] = {"sum", "prod", "min", "max", "avg"};

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

}  // namespace

size_t typeSize(DataType t) {
  switch (t) {
    case DataType::kInt8:
    case DataType::kUint8:
      return 1;
    case DataType::kFloat16:
    case DataType::kBfloat16:
      return 2;
    case DataType::kInt32:
    case DataType::kUint32:
    case DataType::kFloat32:
      return 4;
    case DataType::kInt64:
    case DataType::kUint64:
    case DataType::kFloat64:
      return 8;
  }
  return 0;  // not a DataType (a corrupted value): callers validate with parse or the enum
}

std::string_view typeName(DataType t) {
  auto i = static_cast<size_t>(t);
  if (i >= static_cast<size_t>(kDataTypeCount)) return "invalid";
  return kTypeNames[i].name;
}

Result<DataType> parseDataType(std::string_view name) {
  for (const TypeAlias& a : kTypeNames) {
    if (equalsIgnoreCase(name, a.name)) return a.type;
  }
  std::string accepted;
  for (const TypeAlias& a : kTypeNames) {
    if (!accepted.empty()) accepted += ", ";
    accepted += a.name;
  }
  return Status(Code::kInvalidArgument,
                "unknown data type '" + std::string(name) + "' (accepted: " + accepted + ")");
}

std::string_view opName(ReduceOp op) {
  auto i = static_cast<size_t>(op);
  if (i >= static_cast<size_t>(kReduceOpCount)) return "invalid";
  return kOpNames[i];
}

Result<ReduceOp> parseReduceOp(std::string_view name) {
  for (int i = 0; i < kReduceOpCount; ++i) {
    if (equalsIgnoreCase(name, kOpNames[i])) return static_cast<ReduceOp>(i);
  }
  std::string accepted;
  for (std::string_view n : kOpNames) {
    if (!accepted.empty()) accepted += ", ";
    accepted += n;
  }
  return Status(Code::kInvalidArgument,
                "unknown reduction '" + std::string(name) + "' (accepted: " + accepted + ")");
}

}  // namespace braid::coll
