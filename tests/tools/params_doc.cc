// braid_params_doc: writes docs/params.md from the registry (lib/core/params.cc).
// Run by `cmake --build build --target params_doc`; the unit test "docs/params.md is what
// the registry generates" fails until it has been run after a change to a knob.
#include <cstdio>
#include <fstream>
#include <iostream>

#include "core/params.h"

int main(int argc, char** argv) {
  std::string md = braid::core::paramsMarkdown();
  if (argc < 2) {
    std::cout << md;
    return 0;
  }
  std::ofstream out(argv[1], std::ios::binary | std::ios::trunc);
  out << md;
  out.close();
  if (!out) {
    std::fprintf(stderr, "braid_params_doc: cannot write %s\n", argv[1]);
    return 1;
  }
  return 0;
}
