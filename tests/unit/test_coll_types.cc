// Names and sizes of the collectives' data types and reductions (braid/coll.h).
#include <catch2/catch.hpp>
#include <string>

#include "braid/coll.h"

using braid::Code;
using braid::coll::DataType;
using braid::coll::ReduceOp;

TEST_CASE("every data type has its nccl-tests name and size, and the name parses back") {
  struct Expected {
    DataType type;
    const char* name;
    size_t size;
  };
  const Expected table[] = {
      {DataType::kInt8, "int8", 1},     {DataType::kUint8, "uint8", 1},
      {DataType::kInt32, "int32", 4},   {DataType::kUint32, "uint32", 4},
      {DataType::kInt64, "int64", 8},   {DataType::kUint64, "uint64", 8},
      {DataType::kFloat16, "half", 2},  {DataType::kBfloat16, "bfloat16", 2},
      {DataType::kFloat32, "float", 4}, {DataType::kFloat64, "double", 8},
  };
  STATIC_REQUIRE(sizeof table / sizeof table[0] == braid::coll::kDataTypeCount);
  for (const Expected& e : table) {
    CAPTURE(e.name);
    CHECK(braid::coll::typeName(e.type) == e.name);
    CHECK(braid::coll::typeSize(e.type) == e.size);
    auto parsed = braid::coll::parseDataType(e.name);
    REQUIRE(parsed.isOk());
    CHECK(*parsed == e.type);
  }
}

TEST_CASE("data type aliases parse to the same types, ignoring case") {
  const std::pair<const char*, DataType> aliases[] = {
      {"fp16", DataType::kFloat16},      {"float16", DataType::kFloat16},
      {"HALF", DataType::kFloat16},      {"bf16", DataType::kBfloat16},
      {"BFloat16", DataType::kBfloat16}, {"fp32", DataType::kFloat32},
      {"float32", DataType::kFloat32},   {"Float", DataType::kFloat32},
      {"fp64", DataType::kFloat64},      {"float64", DataType::kFloat64},
      {"char", DataType::kInt8},         {"int", DataType::kInt32},
      {"uint", DataType::kUint32},       {"UINT64", DataType::kUint64},
  };
  for (const auto& [name, type] : aliases) {
    CAPTURE(name);
    auto parsed = braid::coll::parseDataType(name);
    REQUIRE(parsed.isOk());
    CHECK(*parsed == type);
  }
}

TEST_CASE("an unknown data type name is rejected with the accepted names listed") {
  for (const char* bad : {"", "int16", "float8", "halff", " int8"}) {
    CAPTURE(bad);
    auto parsed = braid::coll::parseDataType(bad);
    REQUIRE_FALSE(parsed.isOk());
    CHECK(parsed.status().code() == Code::kInvalidArgument);
    const std::string msg = parsed.status().message();  // status() returns a copy
    CHECK(msg.find("accepted") != std::string::npos);
    for (const char* name : {"int8", "uint64", "half", "bfloat16", "float", "double", "bf16"})
      CHECK(msg.find(name) != std::string::npos);
  }
}

TEST_CASE("reduction ops have names that parse back, and unknown ones are rejected") {
  const std::pair<ReduceOp, const char*> table[] = {
      {ReduceOp::kSum, "sum"}, {ReduceOp::kProd, "prod"}, {ReduceOp::kMin, "min"},
      {ReduceOp::kMax, "max"}, {ReduceOp::kAvg, "avg"},
  };
  STATIC_REQUIRE(sizeof table / sizeof table[0] == braid::coll::kReduceOpCount);
  for (const auto& [op, name] : table) {
    CAPTURE(name);
    CHECK(braid::coll::opName(op) == name);
    auto parsed = braid::coll::parseReduceOp(name);
    REQUIRE(parsed.isOk());
    CHECK(*parsed == op);
  }
  auto upper = braid::coll::parseReduceOp("MAX");
  REQUIRE(upper.isOk());
  CHECK(*upper == ReduceOp::kMax);

  auto bad = braid::coll::parseReduceOp("mean");
  REQUIRE_FALSE(bad.isOk());
  CHECK(bad.status().code() == Code::kInvalidArgument);
  CHECK(bad.status().message().find("mean") != std::string::npos);
  CHECK(bad.status().message().find("avg") != std::string::npos);
}
