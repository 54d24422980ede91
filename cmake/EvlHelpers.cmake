# evl_test(NAME SOURCES... [LABELS l...] [TIMEOUT s]): one executable, one ctest test.
function(evl_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LABELS;LIBS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE evlog ${T_LIBS})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_SOURCE_DIR}/tests)
  add_test(NAME ${name} COMMAND ${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}"
    ENVIRONMENT "EVL_BIN_DIR=${CMAKE_BINARY_DIR};EVL_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
endfunction()

# evl_script_test(NAME SCRIPT [LABELS ...]): a shell or python test run from the build dir.
function(evl_script_test name script)
  cmake_parse_arguments(T "" "TIMEOUT" "LABELS" ${ARGN})
  add_test(NAME ${name} COMMAND ${script} WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}"
    ENVIRONMENT "EVL_BIN_DIR=${CMAKE_BINARY_DIR};EVL_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
endfunction()
