# tunnelkit_add_gtest(<name> SOURCES ... LIBS ...)
# One GoogleTest binary; every TEST becomes its own ctest entry.
function(tunnelkit_add_gtest name)
  # SERIAL: the tests run alone (RUN_SERIAL), for suites that measure a process's memory,
  # CPU and latency and would be skewed by other tests running beside them.
  cmake_parse_arguments(ARG "SERIAL" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  # Only the properties that apply: an empty LABELS would take the next keyword as its value.
  set(properties TIMEOUT ${ARG_TIMEOUT})
  if(ARG_LABELS)
    list(APPEND properties LABELS "${ARG_LABELS}")
  endif()
  if(ARG_SERIAL)
    list(APPEND properties RUN_SERIAL TRUE)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} tunnelkit_test_support GTest::gtest GTest::gmock GTest::gtest_main)
  target_compile_definitions(${name} PRIVATE
    TUNNELKIT_TEST_DATA_DIR="${PROJECT_SOURCE_DIR}/tests/data"
    TUNNELKIT_PLUGIN_BUILD_DIR="${TUNNELKIT_PLUGIN_BUILD_DIR}"
    TUNNELKIT_BINARY_DIR="${CMAKE_BINARY_DIR}")
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES ${properties})
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
