# Installs braid into a scratch prefix and builds examples/consumer against it, once with
# find_package(braid) and once with pkg-config, then runs the result; and runs the
# installed tools from the prefix with no LD_LIBRARY_PATH (they find libbraid by RPATH), and
# loads the installed NCCL plugin by name.
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
# The NCCL plugin is installed next to libbraid, and NCCL_NET_PLUGIN=braid finds it there by
# NCCL's name rules (the harness dlopen()s "braid", then libnccl-net-braid.so).
file(GLOB_RECURSE plugin ${prefix}/*/libnccl-net-braid.so)
if(NOT plugin)
  message(FATAL_ERROR "libnccl-net-braid.so is not installed under ${prefix}")
endif()
list(GET plugin 0 plugin)
get_filename_component(plugindir ${plugin} DIRECTORY)
if(NCCL_HARNESS)
  run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${plugindir} BRAID_SOCKET_IFNAME=lo
      BRAID_LOG_LEVEL=error ${NCCL_HARNESS} pair --plugin braid --max-size 65536)
endif()
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
# Installed tools, as a user runs them: no LD_LIBRARY_PATH, from another directory.
if(EXISTS ${prefix}/bin/braid_send_bw)
  foreach(tool braid_send_bw braid_send_lat braid_write_bw braid_read_bw braid_write_lat)
    execute_process(COMMAND ${CMAKE_COMMAND} -E env --unset=LD_LIBRARY_PATH
                            ${prefix}/bin/${tool} --help
                    WORKING_DIRECTORY ${WORK_DIR} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                    ERROR_VARIABLE err)
    if(NOT rc EQUAL 0 OR NOT out MATCHES "--validate")
      message(FATAL_ERROR "installed ${tool} --help failed (${rc}): ${err}${out}")
    endif()
  endforeach()
  # A real run of the installed tool: server and client over loopback.
  execute_process(
    COMMAND ${CMAKE_COMMAND} -E env --unset=LD_LIBRARY_PATH BRAID_SOCKET_IFNAME=lo
            BRAID_LOG_LEVEL=error sh -c "p=$((20000 + $$ % 20000)); \
              timeout -k 2 30 '${prefix}/bin/braid_send_lat' -p $p >/dev/null & \
              timeout -k 2 30 '${prefix}/bin/braid_send_lat' 127.0.0.1 -p $p -n 100 && wait $!"
    WORKING_DIRECTORY ${WORK_DIR} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "installed braid_send_lat server + client failed (${rc}): ${err}${out}")
  endif()
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E env --unset=LD_LIBRARY_PATH
                        ${prefix}/bin/braid_info --params
                WORKING_DIRECTORY ${WORK_DIR} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
if(EXISTS ${prefix}/bin/braid_info AND NOT rc EQUAL 0)
  message(FATAL_ERROR "installed braid_info --params failed (${rc}): ${err}${out}")
endif()
message(STATUS "install check passed: ${prefix}")
