# tunnelkit_add_gtest(<name> SOURCES ... LIBS ...)
# One GoogleTest binary; every TEST becomes its own ctest entry.
function(tunnelkit_add_gtest name)
  # SERIAL: the tests run alone (RUN_SERIAL), for suites that measure a process's memory,
  # CPU and latency and would be skewed by other tests running beside them.
  cmake_parse_arguments(ARG "SERIAL" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  set(serial FALSE)
  if(ARG_SERIAL)
    set(serial TRUE)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} tunnelkit_test_support GTest::gtest GTest::gmock GTest::gtest_main)
  target_compile_definitions(${name} PRIVATE
    TUNNELKIT_TEST_DATA_DIR="${PROJECT_SOURCE_DIR}/tests/data"
    TUNNELKIT_PLUGIN_BUILD_DIR="${TUNNELKIT_PLUGIN_BUILD_DIR}"
    TUNNELKIT_BINARY_DIR="${CMAKE_BINARY_DIR}")
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}"
                       RUN_SERIAL ${serial})
endfunction()

# tunnelkit_add_plugin(<backend> CORE <static-lib> SOURCES <factory sources>)
# A backend is a MODULE library named libtunnelkit_<backend>.so placed in the plugin folder.
function(tunnelkit_add_plugin backend)
  cmake_parse_arguments(ARG "" "CORE" "SOURCES" ${ARGN})
  set(target tunnelkit_${backend})
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE ${ARG_CORE} tunnelkit)
  set_target_properties(${target} PROPERTIES
    PREFIX "lib"
    LIBRARY_OUTPUT_DIRECTORY ${TUNNELKIT_PLUGIN_BUILD_DIR}
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    INSTALL_RPATH "$ORIGIN/..")
  install(TARGETS ${target} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/tunnelkit)
  add_dependencies(tunnelkit_plugins ${target})
endfunction()
