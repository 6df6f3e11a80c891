# CTest driver (cmake -P): installs the build tree into a scratch prefix, checks the layout, then
# configures, builds and runs two projects against the install tree with find_package(curv):
#   examples/hvp           links curv::core alone, computes one HVP and checks it (exit 0 = agree)
#   cmake/install_check/   includes every installed header and links curv::quant and curv::train
#
#   cmake -DBUILD_DIR=<build> -DSOURCE_DIR=<source> -DWORK_DIR=<scratch> [-DCXX=<compiler>]
#         -P cmake/install_check.cmake
foreach(_v BUILD_DIR SOURCE_DIR WORK_DIR)
  if(NOT ${_v})
    message(FATAL_ERROR "install_check: -D${_v}=... is required")
  endif()
endforeach()
set(_prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "install_check: '${ARGN}' failed (${_rc}):\n${_out}")
  endif()
  set(_last_output "${_out}" PARENT_SCOPE)
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${_prefix})

# The layout consumers rely on.
foreach(_f bin/curv include/curv/src/core/objective.h include/curv/src/core/builder.h
           include/curv/src/io/onnx_import.h include/curv/curvature/eigen_solver.h include/curv/quant/plan.h
           lib/cmake/curv/curvConfig.cmake lib/cmake/curv/curvConfigVersion.cmake lib/cmake/curv/curvTargets.cmake)
  if(NOT EXISTS ${_prefix}/${_f})
    message(FATAL_ERROR "install_check: ${_prefix}/${_f} was not installed")
  endif()
endforeach()
foreach(_lib core io train curvature quant)
  file(GLOB _a ${_prefix}/lib*/libcurv_${_lib}.a)
  if(NOT _a)
    message(FATAL_ERROR "install_check: no libcurv_${_lib}.a under ${_prefix}/lib*")
  endif()
endforeach()
file(GLOB_RECURSE _internal ${_prefix}/include/curv/*/internal/*)
if(_internal)
  message(FATAL_ERROR "install_check: private headers were installed: ${_internal}")
endif()

set(_cfg -DCMAKE_PREFIX_PATH=${_prefix} -DCMAKE_BUILD_TYPE=Release)
if(CXX)
  list(APPEND _cfg -DCMAKE_CXX_COMPILER=${CXX})
endif()
foreach(_project hvp headers)
  if(_project STREQUAL "hvp")
    set(_src ${SOURCE_DIR}/examples/hvp)
  else()
    set(_src ${SOURCE_DIR}/cmake/install_check)
  endif()
  run(${CMAKE_COMMAND} -S ${_src} -B ${WORK_DIR}/${_project} ${_cfg})
  run(${CMAKE_COMMAND} --build ${WORK_DIR}/${_project} -j2)
endforeach()

run(${WORK_DIR}/hvp/hvp)
message("${_last_output}")
if(NOT _last_output MATCHES "OK: exact HVP agrees")
  message(FATAL_ERROR "install_check: examples/hvp did not report agreement")
endif()
run(${WORK_DIR}/headers/all_headers)
message("${_last_output}")
file(REMOVE_RECURSE ${WORK_DIR})
