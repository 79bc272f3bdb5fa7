# Installs braid into a scratch prefix and builds examples/consumer against it, once with
# find_package(braid) and once with pkg-config, then runs the result.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}\n${out}\n${err}")
  endif()
endfunction()
run(${CMAKE_COMMAND} --install ${BRAID_BUILD_DIR} --prefix ${prefix})
foreach(f include/braid/transport.h include/braid/status.h lib/cmake/braid/braidConfig.cmake
          lib/pkgconfig/braid.pc)
  file(GLOB hit ${prefix}/${f} ${prefix}/lib*/${f} ${prefix}/lib/*/${f})
  if(NOT EXISTS ${prefix}/${f})
    file(GLOB_RECURSE hit ${prefix}/*/${f})
  endif()
endforeach()
# CMake consumer.
run(${CMAKE_COMMAND} -S ${BRAID_SOURCE_DIR}/examples/consumer -B ${WORK_DIR}/cmake-build
    -DCMAKE_PREFIX_PATH=${prefix})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/cmake-build)
run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${prefix}/lib:${prefix}/lib/x86_64-linux-gnu
    BRAID_SOCKET_IFNAME=lo ${WORK_DIR}/cmake-build/braid_consumer)
# pkg-config consumer.
file(GLOB_RECURSE pcs ${prefix}/*/braid.pc)
list(GET pcs 0 pc)
get_filename_component(pcdir ${pc} DIRECTORY)
execute_process(COMMAND ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pcdir} pkg-config --cflags --libs braid
                OUTPUT_VARIABLE flags RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config does not find braid in ${pcdir}")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
run(c++ -std=c++20 ${BRAID_SOURCE_DIR}/examples/consumer/consumer.cc ${flags}
    -o ${WORK_DIR}/pc_consumer)
run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${pcdir}/.. BRAID_SOCKET_IFNAME=lo ${WORK_DIR}/pc_consumer)
message(STATUS "install check passed: ${prefix}")
